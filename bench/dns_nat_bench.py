"""A busy resolver's clients behind a NAT: many tiny datagram flows, end to end.

Generates (numpy, no scapy) two points of one NAT hop, `a` (inside) and `b` (outside):
`--queries` DNS-like conversations (a 40-byte query from one of 5,000 clients, its 56-byte
answer 0.4 ms later) to one server over 60 s, each masqueraded to its own port of a pool
of public addresses; 1 % of the datagrams are lost at the hop (a lost query gets no
answer). Then, as a user runs it, `hopcap correlate a=A b=B --json > v.json` in a new
process, `--runs` times (and, with `--before DIR`, the same with that checkout on
PYTHONPATH, interleaved): wall and CPU time, and the verdict checked against the
generator (every lost query a c2s drop, every lost answer an s2c drop, nothing else).
Exits 1 when a verdict is wrong.

    .venv/bin/python bench/dns_nat_bench.py --queries 100000 [--before DIR] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pcapgen import put_be, write_pcap

CLIENTS = 5000
SERVER = 0xC6336401  # 198.51.100.1


def generate(n: int, out: Path, exchanges: int = 1) -> tuple[Path, Path, int, int]:
    """The two capture files and the datagrams lost each way. `exchanges` > 1: QUIC-like
    conversations to port 443 instead, that many 60-109-byte requests each answered by a
    1,101-1,200-byte datagram, 20 ms apart (a lost request still gets its answer)."""
    rng = np.random.default_rng(3)
    ex = exchanges
    c = np.repeat(np.arange(n), 2 * ex)
    d = np.tile([0, 1], n * ex)
    e = np.tile(np.repeat(np.arange(ex), 2), n)  # the exchange
    start = np.sort(rng.integers(0, 60 * 10**9, n))
    ts = 1_763_790_000 * 10**9 + start[c] + e * 20_000_000 + d * 400_000
    cli = 0xC6120000 + 10 + np.arange(n) % CLIENTS  # 198.18.x.y
    cport = 1024 + (np.arange(n) // CLIENTS) % 60000  # a client's ports in turn
    nat = 1024 + rng.permutation(64000)[np.arange(n) % 64000]
    pub = 0xCB007100 + (np.arange(n) // 64000) % 200  # 203.0.113.x
    lost = rng.random(2 * n * ex) < 0.01
    answered = np.ones(2 * n * ex, bool)
    if ex == 1:
        answered[1::2] = ~lost[0::2]  # no answer to a lost query
    ipid = rng.integers(0, 65536, 2 * n * ex)
    port_s = 53 if ex == 1 else 443
    size = np.where(d == 0, 40, 56) if ex == 1 else np.where(d == 0, 60 + e % 50, 1200 - e % 100)

    def view(inside: bool) -> dict[str, np.ndarray]:
        ours = cli[c] if inside else pub[c]
        port = cport[c] if inside else nat[c]
        # a query lost at the hop is at a only, an answer lost at the hop at b only
        k = answered & ~(lost & (d == 0) & (not inside)) & ~(lost & (d == 1) & inside)
        m = int(k.sum())
        v = {
            "ts": (ts + np.where(d == 0, 0 if inside else 50_000, 50_000 if inside else 0))[k],
            "plen": size[k], "ipid": ipid[k],
            "ttl": np.where(d == 0, 64 if inside else 63, 63 if inside else 64)[k],
            "src": np.where(d == 0, ours, SERVER)[k], "dst": np.where(d == 0, SERVER, ours)[k],
            "sport": np.where(d == 0, port, port_s)[k],
            "dport": np.where(d == 0, port_s, port)[k],
            "proto": np.full(m, 17), "conv": c[k], "d": d[k], "e": e[k],
            **{x: np.zeros(m, np.int64) for x in ("seq", "ack", "flags", "tsval", "tsecr")},
        }  # fmt: skip
        o = np.argsort(v["ts"], kind="stable")
        return {x: y[o] for x, y in v.items()}

    def payload(buf: np.ndarray, off: np.ndarray, v: dict[str, np.ndarray]) -> None:
        # a DNS-like header (the answer has its query's ID, and QR set), then bytes of
        # this datagram's own
        put_be(buf, off, v["conv"] & 0xFFFF, 2)
        put_be(buf, off + 2, np.where(v["d"] == 0, 0x0100, 0x8180), 2)
        put_be(buf, off + 4, ((v["conv"] * 2 + v["d"]) * 100003 + v["e"]) * 2654435761 + 7, 8)

    out.mkdir(parents=True, exist_ok=True)
    a, b = out / f"dns_a_{n}x{ex}.pcap", out / f"dns_b_{n}x{ex}.pcap"
    write_pcap(a, view(True), payload)
    write_pcap(b, view(False), payload)
    return a, b, int((lost & (d == 0)).sum()), int((lost & (d == 1) & answered).sum())


def run(a: Path, b: Path, tree: Path | None, out: Path) -> tuple[float, float]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # (or each run compiles the tree it imports)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-m", "hopcap", "correlate", f"a={a}", f"b={b}", "--json"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with out.open("wb") as fh:  # (cwd: `-m` puts it first on sys.path, before PYTHONPATH)
        subprocess.run(cmd, check=True, stdout=fh, env=env, cwd=out.parent)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def check(v: Path, n: int, lost_c: int, lost_s: int) -> str | None:
    """What is wrong with the verdict, or None."""
    got = json.loads(v.read_bytes())
    count: dict[tuple[str, str], int] = {}
    for fl in got["flows"]:
        for f in fl["findings"]:
            count[(f["kind"], f["direction"])] = (
                count.get((f["kind"], f["direction"]), 0) + f["packets"]
            )
    want = {k: x for k, x in {("drop", "c2s"): lost_c, ("drop", "s2c"): lost_s}.items() if x}
    if len(got["flows"]) != n or count != want:
        return f"{len(got['flows'])} flows ({n} generated), findings {count}, expected {want}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=100_000, help="conversations")
    ap.add_argument("--exchanges", type=int, default=1,
                    help="> 1: QUIC-like conversations of this many exchanges")  # fmt: skip
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-dnsbench"))
    args = ap.parse_args()
    a, b, lost_c, lost_s = generate(args.queries, args.dir, args.exchanges)
    size = a.stat().st_size + b.stat().st_size
    trees: dict[str, Path | None] = {"this": None}
    if args.before:
        trees["before"] = args.before
    what = "DNS-like" if args.exchanges == 1 else f"QUIC-like ({args.exchanges} exchanges)"
    print(f"{args.queries:,} {what} conversations through a NAT, {size / 1e6:.0f} MB of "
          f"captures; lost at the hop: {lost_c} requests, {lost_s} answers")  # fmt: skip
    best: dict[str, tuple[float, float]] = {}
    wrong = False
    for r in range(args.runs):
        for label, tree in trees.items():
            v = args.dir / f"v_{label}.json"
            wall, cpu = run(a, b, tree, v)
            bad = check(v, args.queries, lost_c, lost_s)
            wrong |= bad is not None
            print(f"run {r + 1} {label}: wall {wall:.2f} s, cpu {cpu:.2f} s; "
                  f"{'VERDICT WRONG: ' + bad if bad else 'verdict OK'}", flush=True)  # fmt: skip
            if label not in best or cpu < best[label][1]:
                best[label] = (wall, cpu)
    for label, (wall, cpu) in best.items():
        print(f"best {label}: wall {wall:.2f} s, cpu {cpu:.2f} s "
              f"({cpu / args.queries * 1e6:.0f} us of CPU a conversation)")  # fmt: skip
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
