"""Correlation throughput against tshark merely reading the same files.

Generates (with numpy, not scapy) a four-point capture set
client:eth0 -> fw:eth0 -> fw:eth1 -> lb:eth0 of N packets per point: masquerade + DNAT at
fw with random ports and a sequence offset on some connections, GRO at the client on some
response bursts (one big packet there, ten segments elsewhere), a few packets dropped
inside fw (never a SYN or FIN; those with data sent again 3 ms later). Then, in one run:
`hopcap.correlate.correlate` on the four files, and `tshark -n -T fields ...` reading each
file. Prints packets/s, the ratio and memory per packet; exits 1 when the verdict is not
exactly the generator's drops.

    .venv/bin/python bench/correlate_bench.py [--packets 1000000] [--dir /tmp/hopcap-bench]
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
import tracemalloc
from pathlib import Path

import numpy as np
from pcapgen import put_be
from pcapgen import write_pcap as pcapgen_write

ROUND = 16  # per request/response round: 1 request, 10 response segments, 5 ACKs
RESP_SEGS = 10
REQ_LEN = 300
SEG_LEN = 1000


def template(rounds: int) -> dict[str, np.ndarray]:
    """One connection's packets: direction (0 c2s), flags, relative seq/ack, length, burst."""
    d, fl, sq, ak, ln, burst = [], [], [], [], [], []
    cs, ss = 0, 0  # next relative seq per direction (ISN = 0)

    def add(dd: int, f: int, n: int, b: int = -1) -> None:
        nonlocal cs, ss
        d.append(dd)
        fl.append(f)
        ln.append(n)
        burst.append(b)
        if dd == 0:
            sq.append(cs)
            ak.append(ss)
            cs += n + (1 if f & 0x03 else 0)
        else:
            sq.append(ss)
            ak.append(cs)
            ss += n + (1 if f & 0x03 else 0)

    add(0, 0x02, 0)  # SYN
    add(1, 0x12, 0)  # SYN-ACK
    add(0, 0x10, 0)
    for r in range(rounds):
        add(0, 0x18, REQ_LEN)
        for k in range(RESP_SEGS):
            add(1, 0x10 if k < RESP_SEGS - 1 else 0x18, SEG_LEN, r)
            if k % 2 == 1:
                add(0, 0x10, 0)
    add(0, 0x11, 0)
    add(1, 0x11, 0)
    add(0, 0x10, 0)
    return {
        "d": np.array(d, np.int64),
        "flags": np.array(fl, np.int64),
        "seq": np.array(sq, np.int64),
        "ack": np.array(ak, np.int64),
        "plen": np.array(ln, np.int64),
        "burst": np.array(burst, np.int64),
    }


def ground_truth(n_packets: int, seed: int = 7) -> dict[str, np.ndarray]:
    rounds = 31
    t = template(rounds)
    per = t["d"].shape[0]
    conns = max(1, n_packets // per)
    rng = np.random.default_rng(seed)
    c = np.repeat(np.arange(conns), per)
    k = np.tile(np.arange(per), conns)
    g = {name: np.tile(v, conns) for name, v in t.items()}
    g["conn"] = c
    g["k"] = k
    isn = rng.integers(0, 1 << 32, size=(conns, 2))
    g["seq"] = (g["seq"] + isn[c, g["d"]]) & 0xFFFFFFFF
    g["ack"] = np.where(g["flags"] & 0x10, (g["ack"] + isn[c, 1 - g["d"]]) & 0xFFFFFFFF, 0)
    start = 1_763_790_000 * 10**9 + np.sort(rng.integers(0, 20 * 10**9, size=conns))
    g["ts"] = start[c] + k * 20_000  # 20 us apart
    # a burst's segments leave together: same TSval
    tsoff = rng.integers(0, 1 << 31, size=(conns, 2))
    ms = (g["ts"] - start[c]) // 1_000_000
    burst_first = np.where(g["burst"] >= 0, k - (k - 4) % ROUND + 1, k)
    ms = np.where(g["burst"] >= 0, (burst_first * 20_000) // 1_000_000, ms)
    g["tsval"] = (tsoff[c, g["d"]] + ms) & 0xFFFFFFFF
    g["tsecr"] = np.where(g["flags"] & 0x10, (tsoff[c, 1 - g["d"]] + ms) & 0xFFFFFFFF, 0)
    ipbase = rng.integers(0, 1 << 16, size=(conns, 2))
    cnt = np.zeros_like(k)
    for dd in (0, 1):
        m = g["d"] == dd
        cnt[m] = (np.cumsum(m.reshape(conns, per), axis=1) - 1).reshape(-1)[m]
    g["ipid"] = (ipbase[c, g["d"]] + cnt) & 0xFFFF
    g["cli"] = 0xC6120000 + 10 + (c % 200)  # 198.18.0.x
    g["cport"] = 20000 + (c % 40000)
    g["natport"] = 1024 + rng.permutation(60000)[c % 60000]
    g["seqoff"] = np.where(c % 5 == 0, rng.integers(0, 1 << 32, size=conns)[c], 0)
    g["uid"] = np.arange(c.shape[0], dtype=np.int64)
    # handshakes and FINs are not lost (the timeline stays simple: a lost SYN would hold
    # the whole connection back)
    g["dropped"] = ((g["uid"] * 2654435761 % 10007) == 0) & (g["flags"] & 0x03 == 0)
    # a data packet dropped inside fw is sent again RETX_NS later with a new IP ID and
    # TSval, and gets through: as TCP does (the receiver's ACKs here cover it anyway;
    # without the resend hopcap rightly calls it a packet the capture lost, not a drop:
    # it was acknowledged and never sent again)
    again = g["dropped"] & (g["plen"] > 0)
    re = {name: col[again].copy() for name, col in g.items()}
    re["ts"] += RETX_NS
    re["tsval"] = (re["tsval"] + RETX_NS // 1_000_000) & 0xFFFFFFFF
    re["ipid"] = (re["ipid"] + 0x8000) & 0xFFFF
    re["burst"][:] = -1  # (not merged by GRO at the client)
    re["uid"] = c.shape[0] + np.arange(re["uid"].shape[0], dtype=np.int64)
    re["dropped"][:] = False
    return {name: np.concatenate([col, re[name]]) for name, col in g.items()}


RETX_NS = 3_000_000  # (a connection lasts ~10 ms here)


def _dropped(g: dict[str, np.ndarray]) -> np.ndarray:
    return g["dropped"]


def point_view(
    g: dict[str, np.ndarray], name: str, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    natted = name in ("fw:eth1", "lb:eth0")
    v = dict(g)
    v["oseq"] = g["seq"]  # the sender's own sequence number (payload bytes derive from it)
    v["src"] = np.where(g["d"] == 0, g["cli"], 0xCB007150)  # 203.0.113.80
    v["dst"] = np.where(g["d"] == 0, 0xCB007150, g["cli"])
    v["sport"] = np.where(g["d"] == 0, g["cport"], 80)
    v["dport"] = np.where(g["d"] == 0, 80, g["cport"])
    v["ttl"] = np.full(g["d"].shape[0], 64)
    if natted:
        fwside, lbside = 0xC6120101, 0xC6120202  # 198.18.1.1, 198.18.2.2
        v["src"] = np.where(g["d"] == 0, fwside, lbside)
        v["dst"] = np.where(g["d"] == 0, lbside, fwside)
        v["sport"] = np.where(g["d"] == 0, g["natport"], 80)
        v["dport"] = np.where(g["d"] == 0, 80, g["natport"])
        v["seq"] = np.where(g["d"] == 0, (g["seq"] + g["seqoff"]) & 0xFFFFFFFF, g["seq"])
        v["ack"] = np.where(
            (g["d"] == 1) & (g["flags"] & 0x10 != 0),
            (g["ack"] + g["seqoff"]) & 0xFFFFFFFF,
            g["ack"],
        )
        v["ttl"] = np.where(g["d"] == 0, 63, 64)
    else:
        v["ttl"] = np.where(g["d"] == 0, 64, 63)
    keep = np.ones(g["d"].shape[0], bool)
    # a few packets die inside fw: seen at fw:eth0 (c2s) / fw:eth1 (s2c), never beyond
    dropped = _dropped(g)
    if name in ("fw:eth1", "lb:eth0"):
        keep &= ~(dropped & (g["d"] == 0))
    if name in ("fw:eth0", "client:eth0"):
        keep &= ~(dropped & (g["d"] == 1))
    v = {k: a[keep] for k, a in v.items()}
    # GRO at the client: one in ten response bursts arrives as one big packet
    if name == "client:eth0":
        b = v["burst"]
        merge = (b >= 0) & (v["conn"] % 10 == 3)
        first = merge & ~np.concatenate(
            [[False], merge[:-1] & (b[1:] == b[:-1]) & (v["conn"][1:] == v["conn"][:-1])]
        )
        grp = np.cumsum(first) - 1
        sizes = np.bincount(grp[merge], weights=v["plen"][merge]).astype(np.int64)
        keep2 = ~merge | first
        v["plen"] = np.where(first, sizes[np.maximum(grp, 0)], v["plen"])
        v = {k: a[keep2] for k, a in v.items()}
        # the ACKs between the segments now follow the big packet: fine for a capture
    delay = {"client:eth0": 0, "fw:eth0": 50_000, "fw:eth1": 90_000, "lb:eth0": 140_000}[name]
    v["ts"] = np.where(v["d"] == 0, v["ts"] + delay, v["ts"] - delay)
    o = np.argsort(v["ts"], kind="stable")
    return {k: a[o] for k, a in v.items()}


def _payload(buf: np.ndarray, p: np.ndarray, v: dict[str, np.ndarray]) -> None:
    # payload bytes are a function of (connection, direction, stream position), so a
    # GRO-merged packet carries exactly the bytes of the segments it merged
    for j in range(RESP_SEGS):
        has = v["plen"] >= j * SEG_LEN + 8
        if not has.any():
            break
        key = (
            (v["conn"][has] << 34)
            + (v["d"][has] << 33)
            + ((v["oseq"][has] + j * SEG_LEN) & 0xFFFFFFFF)
        )
        put_be(buf, p[has] + j * SEG_LEN, key * 7919 + 12345, 8)


def write_pcap(path: Path, v: dict[str, np.ndarray]) -> int:
    return pcapgen_write(path, v, _payload)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets per point (about)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-bench"))
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true", help="also measure Python heap (slower)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument(
        "--e2e-jobs",
        default="1,2",
        help="also time `hopcap correlate ... --json --jobs J > v.json` end to end (a new "
        "process) for each J; empty: skip",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hopcap.correlate import correlate
    from hopcap.jsonout import dumps as _dumps
    from hopcap.model import PointInput

    args.dir.mkdir(parents=True, exist_ok=True)
    names = ["client:eth0", "fw:eth0", "fw:eth1", "lb:eth0"]
    t0 = time.perf_counter()
    g = ground_truth(args.packets)
    rng = np.random.default_rng(1)
    files = []
    counts = []
    for name in names:
        v = point_view(g, name, rng)
        f = args.dir / (name.replace(":", "_") + ".pcap")
        counts.append(write_pcap(f, v))
        files.append(f)
        del v
    expected_drops = int(_dropped(g).sum())
    del g
    gc.collect()
    gen_s = time.perf_counter() - t0
    total = sum(counts)
    size = sum(f.stat().st_size for f in files)
    print(f"generated {len(files)} points, {total:,} packets ({size / 1e6:.0f} MB) in {gen_s:.1f}s")
    for f in files:  # page cache, like tshark will have it
        with f.open("rb") as fh:
            while fh.read(1 << 24):
                pass

    rss0 = peak_rss_mb()
    if args.tracemalloc:
        tracemalloc.start()
    c0 = time.process_time()
    t0 = time.perf_counter()
    verdict = correlate([PointInput(name=n, pcap=f) for n, f in zip(names, files, strict=True)])
    hop_s = time.perf_counter() - t0
    hop_cpu = time.process_time() - c0
    heap_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    if args.tracemalloc:
        tracemalloc.stop()
    rss1 = peak_rss_mb()
    kinds: dict[str, int] = {}
    for fl in verdict.flows:
        for fd in fl.findings:
            kinds[fd.kind] = kinds.get(fd.kind, 0) + 1
    links: dict[str, int] = {}
    for fl in verdict.flows:
        for leg in fl.legs:
            links[leg.link] = links.get(leg.link, 0) + 1
    print(
        f"hopcap correlate: wall {hop_s:.2f}s ({total / hop_s / 1e6:.2f} M packets/s), "
        f"cpu {hop_cpu:.2f}s ({total / hop_cpu / 1e6:.2f} M packets/s); "
        f"{len(verdict.flows)} flows, findings {kinds}, legs {links}"
    )
    inside = {("fw:eth0", "fw:eth1"), ("fw:eth1", "fw:eth0")}
    all_f = [fd for fl in verdict.flows for fd in fl.findings]
    found = sum(fd.packets for fd in all_f if fd.kind == "drop" and tuple(fd.between) in inside)
    other = sum(1 for fd in all_f if fd.kind != "drop" or tuple(fd.between) not in inside)
    print(
        f"correctness: {found} packets reported dropped inside fw, {expected_drops} dropped by "
        f"the generator; {other} other findings (expected 0)"
    )
    wrong = found != expected_drops or other != 0
    rss_pp = (rss1 - rss0) * 1024 * 1024 / total if rss1 > rss0 else 0.0
    print(
        f"memory: peak RSS {rss1:.0f} MB (before correlate {rss0:.0f} MB, "
        f"files {size / 1e6:.0f} MB mapped): RSS growth {rss_pp:.0f} bytes/packet "
        "including the mapped file pages"
    )
    if heap_peak is not None:
        print(
            f"heap peak (tracemalloc: Python + numpy, not the mapped files): "
            f"{heap_peak / 1e6:.0f} MB = {heap_peak / total:.0f} bytes/packet"
        )

    e2e: dict[str, float] = {}
    hopcap = Path(sys.executable).with_name("hopcap")
    for j in [x for x in args.e2e_jobs.split(",") if x.strip()]:
        cmd = [str(hopcap), "correlate"]
        cmd += [f"{n}={f}" for n, f in zip(names, files, strict=True)]
        cmd += ["--json", "--jobs", j.strip()]
        out = args.dir / "v.json"
        t0 = time.perf_counter()
        with out.open("wb") as fh:
            subprocess.run(cmd, check=True, stdout=fh)
        e2e[j] = time.perf_counter() - t0
        got = json.loads(out.read_text())
        same = got == json.loads(_dumps(verdict.to_dict()))
        print(
            f"end to end `hopcap correlate ... --json --jobs {j} > v.json`: {e2e[j]:.2f} s "
            f"({total / e2e[j] / 1e6:.2f} M packets/s); verdict identical to the in-process "
            f"one: {same}"
        )
        out.unlink()

    if not args.no_tshark and shutil.which("tshark"):
        fields = [
            "frame.time_epoch", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "tcp.seq",
            "tcp.ack", "ip.id", "tcp.len", "tcp.flags", "tcp.options.timestamp.tsval",
        ]  # fmt: skip
        cmd_base = ["tshark", "-n", "-T", "fields"]
        for fld in fields:
            cmd_base += ["-e", fld]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        for f in files:
            subprocess.run(
                [*cmd_base, "-r", str(f)],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        ts_s = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ts_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        print(
            f"tshark -n -T fields ({len(fields)} fields): wall {ts_s:.2f}s "
            f"({total / ts_s / 1e6:.3f} M packets/s), cpu {ts_cpu:.2f}s "
            f"({total / ts_cpu / 1e6:.3f} M packets/s)"
        )
        print(
            f"ratio: hopcap correlate is {ts_s / hop_s:.1f}x faster than tshark merely reading "
            f"(wall), {ts_cpu / hop_cpu:.1f}x (cpu)"
        )
        for j, w in e2e.items():
            print(f"ratio: end to end --jobs {j} is {ts_s / w:.1f}x faster than tshark (wall)")
        print("command: " + " ".join(cmd_base) + " -r FILE")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if not args.keep:
        for f in files:
            os.unlink(f)
    if wrong:
        print("VERDICT WRONG: see the correctness line above", file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
