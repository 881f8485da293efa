"""A busy firewall's capture, correlated end to end as a user runs it.

Generates (numpy, no scapy) two points of one NAT hop, `a` (inside) and `b` (outside):
thousands of short connections (6-20 request/response rounds, 60-600-byte requests,
1-4 response segments of 100-1,360 bytes, delayed ACKs), an MSS-clamping router (SYN and
SYN-ACK MSS 1460 -> 1360 at the hop), masquerade to a pool of public addresses with
random ports (IP IDs, sequence numbers and TSvals kept, as Linux NAT does), TTL
decrement, and 1 % loss at the hop of data and pure ACK packets in both directions (a
lost data segment is retransmitted 200 ms later with a new TSval and IP ID and arrives).
Handshakes and FINs are not lost (the timeline stays simple).

Then, in one run and on the same files (in page cache):
  * `hopcap correlate a=A b=B --json --jobs J > v.json` as a new process (start-up,
    reading, correlation and output included), per size;
  * `tshark -n -T fields` with 11 fields reading both files (the reference);
  * a C walk of both files (mmap, record walk, the same header fields) compiled with cc:
    the physical floor on this machine.
The verdict is checked against the generator every run: every lost packet reported as a
drop between a and b, one tcp.mss rewrite per direction per connection, nothing else.

    .venv/bin/python bench/firewall_bench.py --sizes 100k,400k,1.6M [--jobs 1] [--dir D]
        [--rounds 1-2]   (shorter connections: ~28 packets each at both points, not ~145)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pcapgen import put_be, write_pcap

PER_CONN = 71  # packets of one connection at one point, on average (before loss)
RTO_NS = 200_000_000
HOP_NS = 80_000  # a -> b for c2s, b -> a for s2c
MSS_IN, MSS_OUT = 1460, 1360
N_TEMPLATES = 64
ROUNDS = (6, 20)  # request/response rounds of a connection, the fewest and most


def _template(rng: np.random.Generator, rounds: tuple[int, int] = ROUNDS) -> dict[str, np.ndarray]:
    """One connection's packets: direction (0 c2s), flags, relative seq/ack, length, time;
    `rounds`: the fewest and most request/response rounds."""
    d: list[int] = []
    fl: list[int] = []
    sq: list[int] = []
    ak: list[int] = []
    ln: list[int] = []
    tt: list[int] = []
    nxt = [0, 0]
    now = 0

    def add(dd: int, f: int, n: int, dt: int) -> None:
        nonlocal now
        now += dt
        d.append(dd)
        fl.append(f)
        ln.append(n)
        tt.append(now)
        sq.append(nxt[dd])
        ak.append(nxt[1 - dd] if f & 0x10 else 0)
        nxt[dd] += n + (1 if f & 0x03 else 0)

    rtt = int(rng.integers(2_000_000, 40_000_000))
    add(0, 0x02, 0, 0)
    add(1, 0x12, 0, rtt // 2)
    add(0, 0x10, 0, rtt // 2)
    for _ in range(int(rng.integers(rounds[0], rounds[1] + 1))):
        add(0, 0x18, int(rng.integers(60, 601)), int(rng.integers(100_000, 5_000_000)))
        segs = int(rng.integers(1, 5))
        for k in range(segs):
            n = int(rng.integers(100, MSS_OUT + 1))
            add(1, 0x18 if k == segs - 1 else 0x10, n, rtt // 2 if k == 0 else 30_000)
            if k % 2 == 1 or k == segs - 1:
                add(0, 0x10, 0, rtt // 2 if k == segs - 1 else 20_000)
    if rng.integers(0, 2):
        add(0, 0x11, 0, 1_000_000)
        add(1, 0x11, 0, rtt // 2)
        add(0, 0x10, 0, rtt // 2)
    else:
        add(1, 0x11, 0, 1_000_000)
        add(0, 0x11, 0, rtt // 2)
        add(1, 0x10, 0, rtt // 2)
    return {
        "d": np.array(d, np.int64),
        "flags": np.array(fl, np.int64),
        "seq": np.array(sq, np.int64),
        "ack": np.array(ak, np.int64),
        "plen": np.array(ln, np.int64),
        "t": np.array(tt, np.int64),
    }


def _long_template(rng: np.random.Generator, packets: int, span: int) -> dict[str, np.ndarray]:
    """One long connection of about `packets` packets over `span` ns: a request, a
    response and an ACK every round (a transfer that lasts the whole capture)."""
    rounds = max(packets // 3 - 2, 1)
    rtt = 2_000_000
    step = max(span // rounds, 3)
    d = np.tile(np.array([0, 1, 0]), rounds)
    fl = np.tile(np.array([0x18, 0x18, 0x10]), rounds)
    ln = np.zeros(3 * rounds, np.int64)
    ln[0::3] = rng.integers(60, 601, rounds)
    ln[1::3] = rng.integers(100, MSS_OUT + 1, rounds)
    t = np.repeat(np.arange(1, rounds + 1, dtype=np.int64) * step, 3)
    t += np.tile(np.array([0, step // 3, 2 * step // 3]), rounds)
    # handshake before, FIN exchange after
    d = np.concatenate([[0, 1, 0], d, [0, 1, 0]])
    fl = np.concatenate([[0x02, 0x12, 0x10], fl, [0x11, 0x11, 0x10]])
    ln = np.concatenate([[0, 0, 0], ln, [0, 0, 0]])
    end = int(t[-1])
    t = np.concatenate([[0, rtt // 2, rtt], t + rtt, [end + rtt + step, end + 2 * rtt + step,
                                                      end + 3 * rtt + step]])  # fmt: skip
    seq = np.zeros(d.shape[0], np.int64)
    ack = np.zeros(d.shape[0], np.int64)
    adv = ln + ((fl & 0x03) != 0)
    for dd in (0, 1):
        m = d == dd
        nxt = np.cumsum(adv[m]) - adv[m]  # this direction's next sequence before each
        seq[m] = nxt
        # the other direction's next sequence when this packet is sent
        o = d != dd
        other_end = np.cumsum(adv[o])
        at = np.searchsorted(np.nonzero(o)[0], np.nonzero(m)[0])
        ack[m] = np.where(at > 0, other_end[np.maximum(at - 1, 0)], 0)
    ack = np.where(fl & 0x10, ack, 0)
    return {"d": d.astype(np.int64), "flags": fl.astype(np.int64), "seq": seq, "ack": ack,
            "plen": ln.astype(np.int64), "t": t.astype(np.int64)}  # fmt: skip


def ground_truth(
    total_packets: int, seed: int = 12, huge: tuple[int, ...] = (), rounds: tuple[int, int] = ROUNDS
) -> tuple[dict[str, np.ndarray], int]:
    """Every transmission of every connection, with `lost` (1 % of data and pure ACKs).
    `huge`: connections of that many packets each besides, lasting the whole capture."""
    rng = np.random.default_rng(seed)
    tpls = [_template(rng, rounds) for _ in range(N_TEMPLATES)]
    mean = float(np.mean([t["d"].shape[0] for t in tpls]))
    conns = max(1, round(total_packets / 2 / mean))
    which = rng.integers(0, N_TEMPLATES, size=conns)
    parts: list[dict[str, np.ndarray]] = []
    for i, t in enumerate(tpls):
        cs = np.nonzero(which == i)[0]
        if not cs.shape[0]:
            continue
        per = t["d"].shape[0]
        g = {k: np.tile(v, cs.shape[0]) for k, v in t.items()}
        g["conn"] = np.repeat(cs, per)
        parts.append(g)
    span = max(10 * 10**9, conns * 5_000_000)  # ~200 new connections a second
    for j, n in enumerate(huge):
        g = _long_template(rng, n // 2, span)
        g["conn"] = np.full(g["d"].shape[0], conns + j, np.int64)
        parts.append(g)
    conns += len(huge)
    g = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    c = g["conn"]
    start = 1_763_790_000 * 10**9 + rng.integers(0, span, size=conns)
    start[conns - len(huge) :] = 1_763_790_000 * 10**9 + np.arange(len(huge)) * 1_000_000
    g["ts"] = start[c] + g["t"]
    n = c.shape[0]
    # 1 % loss at the hop (data and pure ACKs); lost data is retransmitted after an RTO
    lossy = (g["flags"] & 0x07) == 0
    g["lost"] = lossy & (rng.random(n) < 0.01)
    g["retx"] = np.zeros(n, bool)
    rt = g["lost"] & (g["plen"] > 0)
    again = {k: v[rt] for k, v in g.items()}
    again["ts"] = again["ts"] + RTO_NS
    again["lost"] = np.zeros(int(rt.sum()), bool)
    again["retx"] = np.ones(int(rt.sum()), bool)
    g = {k: np.concatenate([g[k], again[k]]) for k in g}
    c, dd = g["conn"], g["d"]
    o = np.lexsort((g["ts"], dd, c))
    g = {k: v[o] for k, v in g.items()}
    c, dd = g["conn"], g["d"]
    n = c.shape[0]
    # per direction: ISN, TSval clock (ms), IP ID counter (Linux: per socket, +1 a packet)
    isn = rng.integers(0, 1 << 32, size=(conns, 2))
    tsoff = rng.integers(0, 1 << 31, size=(conns, 2))
    ipbase = rng.integers(0, 1 << 16, size=(conns, 2))
    grp = c * 2 + dd
    first = np.ones(n, bool)
    first[1:] = grp[1:] != grp[:-1]
    ar = np.arange(n)
    cnt = ar - np.maximum.accumulate(np.where(first, ar, 0))
    g["ipid"] = (ipbase[c, dd] + cnt) & 0xFFFF
    g["oseq"] = g["seq"]
    g["seq"] = (g["seq"] + isn[c, dd]) & 0xFFFFFFFF
    g["ack"] = np.where(g["flags"] & 0x10, (g["ack"] + isn[c, 1 - dd]) & 0xFFFFFFFF, 0)
    ms = (g["ts"] - start[c]) // 1_000_000
    g["tsval"] = (tsoff[c, dd] + ms) & 0xFFFFFFFF
    g["tsecr"] = np.where(g["flags"] & 0x10, (tsoff[c, 1 - dd] + ms) & 0xFFFFFFFF, 0)
    hosts = 2000
    g["cli"] = 0xC6120000 + 256 + (c % hosts)  # 198.18.1.0 and up
    g["cport"] = 32768 + (c // hosts) % 28000
    g["srv"] = 0xCB00710A + (c % 10)  # 203.0.113.10-19
    g["nat"] = 0xC6336401 + c // 60000  # 198.51.100.1 and up
    g["natport"] = 1024 + np.argsort(rng.random(60000))[c % 60000]
    g["win"] = np.where(dd == 0, 502, 509)
    return g, conns


def point_view(g: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    dd = g["d"]
    c2s = dd == 0
    v = dict(g)
    if name == "a":  # inside: the client's own addresses
        v["src"] = np.where(c2s, g["cli"], g["srv"])
        v["dst"] = np.where(c2s, g["srv"], g["cli"])
        v["sport"] = np.where(c2s, g["cport"], 443)
        v["dport"] = np.where(c2s, 443, g["cport"])
        v["ttl"] = np.where(c2s, 64, 52)
        v["mss"] = np.where(g["flags"] & 0x02, np.where(c2s, MSS_IN, MSS_OUT), -1)
        keep = ~(g["lost"] & ~c2s)  # s2c lost at the hop never reach a
        v["ts"] = np.where(c2s, g["ts"], g["ts"] + HOP_NS)
    else:  # outside, after masquerade and clamping
        v["src"] = np.where(c2s, g["nat"], g["srv"])
        v["dst"] = np.where(c2s, g["srv"], g["nat"])
        v["sport"] = np.where(c2s, g["natport"], 443)
        v["dport"] = np.where(c2s, 443, g["natport"])
        v["ttl"] = np.where(c2s, 63, 53)
        v["mss"] = np.where(g["flags"] & 0x02, np.where(c2s, MSS_OUT, MSS_IN), -1)
        keep = ~(g["lost"] & c2s)
        v["ts"] = np.where(c2s, g["ts"] + HOP_NS, g["ts"])
    v = {k: x[keep] for k, x in v.items()}
    o = np.argsort(v["ts"], kind="stable")
    return {k: x[o] for k, x in v.items()}


def _payload(buf: np.ndarray, p: np.ndarray, v: dict[str, np.ndarray]) -> None:
    # 8 bytes every 256 that depend on (connection, direction, stream position): the same
    # bytes at both points, different between packets
    for j in range(0, MSS_OUT, 256):
        has = v["plen"] >= j + 8
        if not has.any():
            break
        key = (v["conn"][has] << 34) + (v["d"][has] << 33) + ((v["oseq"][has] + j) & 0xFFFFFFFF)
        put_be(buf, p[has] + j, key * 7919 + 12345, 8)


QUIET_NS = 75 * 10**9  # a silence of `dgram_truth(quiet=...)`: more than a minute


def dgram_truth(
    sizes: tuple[int, ...], span: int, seed: int = 13, quiet: int = 0, esp: bool = False
) -> dict[str, np.ndarray]:
    """UDP conversations through the same NAT hop, of about `sizes` datagrams each (both
    points together) over `span` ns: even ones RTP-like (one way, 172-byte datagrams at a
    steady rate, a 32-byte receiver report back every 500), odd ones a NATed DNS-like
    exchange on fixed ports (a 40-byte query, its 56-byte answer 0.4 ms later). 1 % of
    the datagrams are lost at the hop (a lost query gets no answer). With `quiet`, each
    conversation falls silent `quiet` times for 75 s (evenly over its datagrams): it is
    `quiet` + 1 flows (a flow ends after a minute of silence). With `esp`, the RTP-like
    ones are IPsec ESP instead (the same sizes and times; routed, not NATed)."""
    rng = np.random.default_rng(seed)
    parts = []
    for j, n in enumerate(sizes):
        k = max(n // 2, 2)  # at one point
        if j % 2 == 0:
            d = np.zeros(k, np.int64)
            d[250::500] = 1
            plen = np.where(d == 0, 172, 32)
            base = np.arange(k, dtype=np.int64) * max(span // k, 1)
            t = base + d * 300_000
        else:
            k -= k % 2
            d = np.tile(np.array([0, 1], np.int64), k // 2)
            plen = np.where(d == 0, 40, 56)
            base = np.repeat(np.arange(k // 2, dtype=np.int64) * max(2 * span // k, 1), 2)
            t = base + d * 400_000
        if quiet:
            t += np.minimum(base * (quiet + 1) // span, quiet) * QUIET_NS
        parts.append({"uconv": np.full(k, j, np.int64), "d": d, "plen": plen.astype(np.int64),
                      "t": t, "idx": np.arange(k, dtype=np.int64)})  # fmt: skip
    u = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    n = u["d"].shape[0]
    lost = rng.random(n) < 0.01
    # a DNS-like answer exists only when its query got through
    odd = (u["uconv"] % 2) == 1
    ans = odd & (u["d"] == 1)
    q_lost = np.zeros(n, bool)
    q_lost[1:] = lost[:-1]
    keep = ~(ans & q_lost)
    u = {c: x[keep] for c, x in u.items()}
    u["lost"] = lost[keep]
    u["ts"] = 1_763_790_000 * 10**9 + 500_000 + u["uconv"] * 1_000_000 + u["t"]
    grp = u["uconv"] * 2 + u["d"]
    o = np.lexsort((u["ts"], grp))
    u = {c: x[o] for c, x in u.items()}
    grp = grp[o]
    first = np.ones(grp.shape[0], bool)
    first[1:] = grp[1:] != grp[:-1]
    ar = np.arange(grp.shape[0])
    base = rng.integers(0, 1 << 16, size=2 * len(sizes))
    u["ipid"] = (base[grp] + ar - np.maximum.accumulate(np.where(first, ar, 0))) & 0xFFFF
    # ESP: the RTP-like ones (even), numbered from 1 in each direction
    u["esp"] = (u["uconv"] % 2 == 0) & esp
    u["eseq"] = ar - np.maximum.accumulate(np.where(first, ar, 0)) + 1
    return u


def dgram_view(u: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """`dgram_truth`'s datagrams at point `name`, in `point_view`'s columns (`proto` 17)."""
    j, c2s = u["uconv"], u["d"] == 0
    dns = (j % 2) == 1
    cli = 0xC612C800 + j  # 198.18.200.x
    srv = 0xCB007150 + j  # 203.0.113.80 and up
    cport = np.where(dns, 45353, 16384 + 2 * j)
    sport = np.where(dns, 53, 5004)
    if name == "a":
        src, dst = np.where(c2s, cli, srv), np.where(c2s, srv, cli)
        sp, dp = np.where(c2s, cport, sport), np.where(c2s, sport, cport)
        ttl = np.where(c2s, 64, 52)
        keep = ~(u["lost"] & ~c2s)
        ts = np.where(c2s, u["ts"], u["ts"] + HOP_NS)
    else:
        nat, nport = 0xC63364C8, 20000 + j  # 198.51.100.200
        src, dst = np.where(c2s, nat, srv), np.where(c2s, srv, nat)
        sp, dp = np.where(c2s, nport, sport), np.where(c2s, sport, nport)
        ttl = np.where(c2s, 63, 53)
        keep = ~(u["lost"] & c2s)
        ts = np.where(c2s, u["ts"] + HOP_NS, u["ts"])
    e = u["esp"]
    if e.any():  # ESP: the same addresses at both points, the SPI of each direction
        src = np.where(e, np.where(c2s, cli, srv), src)
        dst = np.where(e, np.where(c2s, srv, cli), dst)
        sp = np.where(e, 0x1000 + 2 * j + u["d"], sp)
        dp = np.where(e, 0, dp)
    n = ts.shape[0]
    z = np.zeros(n, np.int64)
    v = {
        "ts": ts, "plen": u["plen"], "ipid": u["ipid"], "ttl": ttl, "src": src, "dst": dst,
        "sport": sp, "dport": dp, "seq": np.where(e, u["eseq"], 0), "ack": z, "flags": z,
        "tsval": z, "tsecr": z, "mss": z - 1, "win": z, "proto": np.where(e, 50, 17),
        "conn": 10**8 + j, "d": u["d"], "oseq": u["idx"],
    }  # fmt: skip
    return {k: x[keep] for k, x in v.items()}


_VIEW_COLUMNS = ("ts", "plen", "ipid", "ttl", "src", "dst", "sport", "dport", "seq", "ack",
                 "flags", "tsval", "tsecr", "mss", "win", "proto", "conn", "d", "oseq")  # fmt: skip


def _dgram_payload(buf: np.ndarray, p: np.ndarray, v: dict[str, np.ndarray]) -> None:
    """`_payload` for TCP rows; a datagram's: a DNS header (port 53) or an RTP one, then
    8 bytes unique to it (its conversation, direction and number)."""
    udp = (v["proto"] == 17) | (v["proto"] == 50)
    if (~udp).any():
        _payload(buf, p[~udp], {k: x[~udp] for k, x in v.items()})
    q = p[udp]
    if not q.shape[0]:
        return
    dns = (v["sport"][udp] == 53) | (v["dport"][udp] == 53)
    idx, dd = v["oseq"][udp], v["d"][udp]
    put_be(buf, q, np.where(dns, (idx // 2) & 0xFFFF, 0x8060), 2)
    put_be(buf, q + 2, np.where(dns, np.where(dd == 0, 0x0100, 0x8180), idx & 0xFFFF), 2)
    key = (v["conn"][udp] << 34) + (dd << 33) + idx
    put_be(buf, q + 12, key * 7919 + 12345, 8)


def generate(
    total: int,
    out: Path,
    huge: tuple[int, ...] = (),
    dgram: tuple[int, ...] = (),
    quiet: int = 0,
    esp: bool = False,
    rounds: tuple[int, int] = ROUNDS,
) -> tuple[list[Path], dict[str, int]]:
    """Both points' files of `total` packets of short connections (and `huge` ones), and
    with `dgram` UDP conversations of that many datagrams each (`dgram_truth`, each with
    `quiet` silences of more than a minute)."""
    g, conns = ground_truth(total, huge=huge, rounds=rounds)
    u = None
    if dgram:
        span = max(10 * 10**9, (conns - len(huge)) * 5_000_000)  # as `ground_truth`'s
        u = dgram_truth(dgram, span, quiet=quiet, esp=esp)
    files = []
    counts = {}
    for name in ("a", "b"):
        v = point_view(g, name)
        pay = _payload
        if u is not None:
            w = dgram_view(u, name)
            v["proto"] = np.full(v["ts"].shape[0], 6, np.int64)
            both = {c: np.concatenate([v[c], w[c]]) for c in _VIEW_COLUMNS}
            o = np.argsort(both["ts"], kind="stable")
            v = {c: x[o] for c, x in both.items()}
            pay = _dgram_payload
        f = out / f"fw_{name}.pcap"
        counts[name] = write_pcap(f, v, pay)
        files.append(f)
    lost = g["lost"]
    exp = {
        "conns": conns,
        "tcp_conns": conns,
        "packets": sum(counts.values()),
        "drops_c2s": int((lost & (g["d"] == 0)).sum()),
        "drops_s2c": int((lost & (g["d"] == 1)).sum()),
    }
    if u is not None:
        exp["conns"] += len(dgram) * (quiet + 1)
        exp["drops_c2s"] += int((u["lost"] & (u["d"] == 0)).sum())
        exp["drops_s2c"] += int((u["lost"] & (u["d"] == 1)).sum())
    return files, exp


_CWALK = r"""
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
static uint32_t b16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t b32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
int main(int argc, char **argv) {
    uint64_t sum = 0, n = 0;
    for (int a = 1; a < argc; a++) {
        int fd = open(argv[a], O_RDONLY);
        struct stat st;
        fstat(fd, &st);
        const uint8_t *m = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        long pos = 24;
        while (pos + 16 <= st.st_size) {
            const uint8_t *r = m + pos + 16;
            uint32_t cap = *(const uint32_t *)(m + pos + 8);
            uint64_t ts = *(const uint32_t *)(m + pos) * 1000000000ULL
                          + *(const uint32_t *)(m + pos + 4);
            if (cap >= 54 && b16(r + 12) == 0x0800 && r[23] == 6) {
                const uint8_t *ip = r + 14, *t = ip + (ip[0] & 15) * 4;
                sum += ts + b32(ip + 12) + b32(ip + 16) + b16(t) + b16(t + 2) + b32(t + 4)
                       + b32(t + 8) + b16(ip + 4) + (b16(ip + 2) - (ip[0] & 15) * 4
                       - (t[12] >> 4) * 4) + t[13] + ip[8];
            }
            n++;
            pos += 16 + cap;
        }
        munmap((void *)m, st.st_size);
        close(fd);
    }
    printf("%llu %llu\n", (unsigned long long)n, (unsigned long long)sum);
    return 0;
}
"""

TSHARK_FIELDS = [
    "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq",
    "tcp.ack", "ip.id", "tcp.len", "tcp.flags", "tcp.options.timestamp.tsval",
]  # fmt: skip


def _timed(
    cmd: list[str], stdout: object = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> tuple[float, float]:
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=stdout, stderr=subprocess.DEVNULL, env=env, cwd="/")  # type: ignore[arg-type]
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return wall, cpu


def _peak_child_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def check_verdict(path: Path, exp: dict[str, int]) -> str:
    v = json.loads(path.read_text())
    drops = {"c2s": 0, "s2c": 0}
    mss = 0
    other: dict[str, int] = {}
    for f in v["flows"]:
        for x in f["findings"]:
            ok_dir = tuple(x["between"]) == (("a", "b") if x["direction"] == "c2s" else ("b", "a"))
            if x["kind"] == "drop" and ok_dir:
                drops[x["direction"]] += x["packets"]
            elif x["kind"] == "rewrite" and x.get("field") == "tcp.mss" and ok_dir:
                mss += 1
            else:
                key = f"{x['kind']} {x.get('field') or ''}".strip()
                other[key] = other.get(key, 0) + 1
    ok = (
        drops["c2s"] == exp["drops_c2s"]
        and drops["s2c"] == exp["drops_s2c"]
        and mss == 2 * exp.get("tcp_conns", exp["conns"])
        and not other
        and len(v["flows"]) == exp["conns"]
    )
    return (
        f"{'OK' if ok else 'MISMATCH'}: {len(v['flows'])} flows ({exp['conns']} generated), "
        f"drops c2s {drops['c2s']}/{exp['drops_c2s']} s2c {drops['s2c']}/{exp['drops_s2c']}, "
        f"tcp.mss rewrites {mss}/{2 * exp.get('tcp_conns', exp['conns'])}, "
        f"other findings {other or 0}"
    )


def _heap_peak(files: list[Path]) -> int:
    import tracemalloc

    from hopcap.correlate import correlate
    from hopcap.model import PointInput

    tracemalloc.start()
    correlate([PointInput(name="a", pcap=files[0]), PointInput(name="b", pcap=files[1])])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def _output_cost(path: Path, files: list[Path]) -> tuple[float, float]:
    """Seconds to write the verdict as `--json` does (encoded and written to a file) and
    to draw it as the terminal table of every flow (`--all`), in this process (the output
    step of a run, timed on its own). The verdict is correlated here, as the command has
    it (one read back from `path` by `Verdict.from_dict` is the same verdict, but its
    strings and objects, made by the JSON parser, cost ~1.7x as much to draw), and checked
    to be the one in `path`."""
    import contextlib
    import io

    from hopcap.cli import _print_verdict
    from hopcap.correlate import correlate
    from hopcap.jsonout import write_verdict
    from hopcap.model import PointInput

    gc.disable()  # as the command runs it
    v = correlate([PointInput(name="a", pcap=files[0]), PointInput(name="b", pcap=files[1])])
    js, tb = [], []
    again = path.with_name("v-again.json")
    for _ in range(3):
        t0 = time.perf_counter()
        with again.open("wb") as fh:  # as `--json > v.json` writes it
            write_verdict(v, fh)
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            _print_verdict(v, show_all=True)  # the terminal tables, every flow
        js.append(t1 - t0)
        tb.append(time.perf_counter() - t1)
    gc.enable()
    assert again.read_bytes() == path.read_bytes(), "the verdict in process differs"
    return min(js), min(tb)


def _size(s: str) -> int:
    s = s.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
    return round(float(s.rstrip("km")) * mult)


def _command(
    j: str, files: list[Path], hopcap: Path, scheduler: str, args: argparse.Namespace
) -> tuple[list[str], dict[str, str] | None]:
    """`hopcap correlate` of the two files as jobs variant `j` runs it (and its env)."""
    cmd = [str(hopcap), "correlate", f"a={files[0]}", f"b={files[1]}", "--json"]
    env = None
    if j == "dask":
        cmd += ["--dask", scheduler]
    elif j.startswith("before"):  # the same command on an older checkout
        cmd = [sys.executable, "-m", "hopcap", *cmd[1:]]
        env = {**os.environ, "PYTHONPATH": str(args.before)}
        if j[6:]:  # beforeN: with --jobs N (`before`: its default)
            cmd += ["--jobs", j[6:]]
    elif j != "-":
        cmd += ["--jobs", j]
    return [*cmd, *args.extra.split()], env


def _startup(
    jobs: list[str], hopcap: Path, scheduler: str, args: argparse.Namespace
) -> dict[str, float]:
    """The fixed cost of a run of each jobs variant (interpreter, imports, output): the
    best CPU of 5 runs on 2,000 packets of the same workload."""
    tiny = args.dir / "tiny"
    tiny.mkdir(exist_ok=True)
    files, exp = generate(2_000, tiny)
    out = tiny / "v.json"
    cost = {}
    for j in jobs:
        cmd, env = _command(j, files, hopcap, scheduler, args)
        runs = []
        for _ in range(5):
            with out.open("wb") as fh:
                runs.append(_timed(cmd, fh, env)[1])
            assert check_verdict(out, exp).startswith("OK"), check_verdict(out, exp)
        cost[j] = min(runs)
        print(f"start-up (2,000 packets) --jobs {j}: cpu {cost[j]:.3f} s")
    for f in [*files, out]:
        f.unlink()
    return cost


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sizes", default="100k,400k,1.6M", help="packets, both points together")
    ap.add_argument(
        "--jobs",
        default="1,2",
        help="hopcap correlate --jobs, a comma list (each is run); `dask`: --dask on a "
        "LocalCluster of 2 worker processes; `-`: no --jobs (the default, all cores); "
        "`before` / `beforeN`: the --before checkout, with its default / --jobs N",
    )
    ap.add_argument("--runs", type=int, default=1, help="hopcap runs per size (min reported)")
    ap.add_argument("--rounds", default="6-20",
                    help="request/response rounds of a connection, LO-HI (1-2: ~28 packets "
                    "a connection at both points, against ~145)")  # fmt: skip
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-fwbench"))
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--tshark-max", type=_size, default=_size("1.6M"),
                    help="skip tshark above this size (it takes ~25 s per million)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--heap", action="store_true", help="also measure correlate()'s heap peak")
    ap.add_argument(
        "--before",
        type=Path,
        help="a checkout of an older hopcap: `before` in --jobs runs it (same interpreter)",
    )
    ap.add_argument("--extra", default="", help="more arguments for hopcap correlate")
    ap.add_argument(
        "--startup",
        action="store_true",
        help="also measure each variant's fixed cost (a run on 2,000 packets) and give the "
        "CPU per packet beyond it",
    )
    args = ap.parse_args()
    hopcap = Path(sys.executable).with_name("hopcap")
    if not hopcap.exists():
        print(f"{hopcap} not found: run from the project's .venv", file=sys.stderr)
        return 2
    args.dir.mkdir(parents=True, exist_ok=True)
    cwalk = None
    if shutil.which("cc"):
        src = args.dir / "cwalk.c"
        src.write_text(_CWALK)
        cwalk = args.dir / "cwalk"
        subprocess.run(["cc", "-O2", "-o", str(cwalk), str(src)], check=True)
    jobs = [j.strip() for j in args.jobs.split(",")]
    scheduler = ""
    if "dask" in jobs:  # a local cluster of 2 worker processes, started once
        from dask.distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        scheduler = cluster.scheduler_address
        print(f"dask: LocalCluster of 2 worker processes at {scheduler}")
    rows: list[str] = []
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    fixed = _startup(jobs, hopcap, scheduler, args) if args.startup else {}
    linear: list[str] = []
    for size_s in args.sizes.split(","):
        total = _size(size_s)
        t0 = time.perf_counter()
        lo, _, hi = args.rounds.partition("-")
        files, exp = generate(total, args.dir, rounds=(int(lo), int(hi or lo)))
        gen_s = time.perf_counter() - t0
        mb = sum(f.stat().st_size for f in files) / 1e6
        n = exp["packets"]
        print(f"\n== {size_s}: {n:,} packets, {exp['conns']:,} connections, {mb:.0f} MB "
              f"(generated in {gen_s:.1f} s)")  # fmt: skip
        for f in files:  # page cache, as tshark and the C walk will have it
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass
        out = args.dir / "v.json"
        res: dict[str, tuple[float, float]] = {}  # the best wall time's run
        cpu: dict[str, float] = {}  # the best CPU time
        for _ in range(args.runs):  # the variants interleaved
            for j in jobs:
                cmd, env = _command(j, files, hopcap, scheduler, args)
                # (the first variant's verdict is the one compared in process below)
                vj = out if j == jobs[0] else out.with_name(f"v-{j}.json")
                with vj.open("wb") as fh:
                    w, c = _timed(cmd, fh, env)
                print(f"hopcap correlate --jobs {j}: wall {w:.2f} s ({n / w / 1e6:.2f} M "
                      f"packets/s), cpu {c:.2f} s; {check_verdict(vj, exp)}")  # fmt: skip
                if j not in res or w < res[j][0]:
                    res[j] = (w, c)
                cpu[j] = min(cpu.get(j, c), c)
        if args.heap:
            heap = _heap_peak(files)
            print(
                f"heap peak of correlate() in this process (tracemalloc, not the mapped "
                f"files): {heap / 1e6:.0f} MB = {heap / n:.0f} bytes/packet"
            )
        out_s, table_s = _output_cost(out, files)
        print(f"output: verdict written as JSON {out_s:.3f} s = "
              f"{out_s / res[jobs[0]][0] * 100:.1f} % of the run; text table (--all) "
              f"{table_s:.3f} s "
              f"= {table_s / res[jobs[0]][0] * 100:.1f} %")  # fmt: skip
        rss = _peak_child_rss_mb()
        ts_w = ts_c = None
        if not args.no_tshark and shutil.which("tshark") and total <= args.tshark_max:
            cmd = ["tshark", "-n", "-T", "fields"]
            for fld in TSHARK_FIELDS:
                cmd += ["-e", fld]
            ts_w = ts_c = 0.0
            for f in files:
                w, c = _timed([*cmd, "-r", str(f)])
                ts_w += w
                ts_c += c
            print(f"tshark -n -T fields ({len(TSHARK_FIELDS)} fields) on both files: wall "
                  f"{ts_w:.2f} s ({n / ts_w / 1e6:.3f} M packets/s), cpu {ts_c:.2f} s")  # fmt: skip
        cw = None
        if cwalk is not None:
            cw = min(_timed([str(cwalk), *map(str, files)])[0] for _ in range(3))
            print(f"C walk (mmap, 12 fields): {cw:.3f} s ({n / cw / 1e6:.1f} M packets/s)")
        j0 = jobs[0]
        w0, c0 = res[j0]
        # wall / cpu; cpu is what one core does when other jobs share the machine
        cols = [
            size_s, f"{n:,}", f"{exp['conns']:,}",
            *(f"{res[j][0]:.2f} / {res[j][1]:.2f} s" for j in jobs),
            f"{n / w0 / 1e6:.2f} / {n / c0 / 1e6:.2f}",
            f"{w0 / n * 1e9:.0f} / {c0 / n * 1e9:.0f} ns",
            f"{ts_w:.1f} / {ts_c:.1f} s ({ts_w / w0:.1f}x / {ts_c / c0:.1f}x)" if ts_w else "-",
            f"{cw:.3f} s ({w0 / cw:.0f}x / {c0 / cw:.0f}x)" if cw else "-",
            f"{out_s / c0 * 100:.1f} %",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cols) + " |")
        if fixed:  # CPU per packet, and beyond the fixed cost of a run
            per = [
                f"{cpu[j]:.2f} s: {cpu[j] / n * 1e9:.0f} / {(cpu[j] - fixed[j]) / n * 1e9:.0f} ns"
                for j in jobs
            ]
            linear.append(f"| {n:,} | {exp['conns']:,} | " + " | ".join(per) + " |")
        # every page of the files is read once, so the mapped files count in full
        beyond = (rss - mb) * 1e6 / n
        print(f"peak RSS of the largest child so far: {rss:.0f} MB; beyond the {mb:.0f} MB of "
              f"mapped files: {beyond:.0f} bytes/packet")  # fmt: skip
        if not args.keep:
            for f in files:
                f.unlink()
    names = {"dask": "hopcap --dask, 2 workers", "before": f"before ({args.before})"}
    for j in jobs:
        if j.startswith("before") and j[6:]:
            names[j] = f"before ({args.before}) --jobs {j[6:]}"
    labels = [names.get(j, f"hopcap --jobs {j}") for j in jobs]
    print("\nwall / cpu everywhere; ratios are of the first column (" + labels[0] + ")")
    print("\n| packets | packets (exact) | connections | " + " | ".join(labels)
          + " | M packets/s | per packet | tshark (slower by) | C walk (hopcap slower by) "
          "| JSON output / run cpu |")  # fmt: skip
    print("| --- " * (8 + len(jobs)) + "|")
    print("\n".join(rows))
    if fixed:
        print(
            "\nCPU (best of --runs): per packet / per packet beyond the fixed cost of a run ("
            + ", ".join(f"{labels[i]}: {fixed[j]:.3f} s" for i, j in enumerate(jobs))
            + ")"
        )
        print("\n| packets | connections | " + " | ".join(labels) + " |")
        print("| --- " * (2 + len(jobs)) + "|")
        print("\n".join(linear))
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
