"""CPU time of the engine's prepare (linking, flows, datagram flows) and matching phases
on a pair of captures, for this checkout and one before it, interleaved in one run.

Each run is a new process that reads and indexes both captures (not timed), then times
`engine.prepare` and `engine.match_part` (every flow) with `time.process_time`; the best
of `--runs` per checkout is printed, with the ratio. The pair is e.g. the one
bench/firewall_bench.py generates (`fw_a.pcap`, `fw_b.pcap` in one folder).

    .venv/bin/python bench/prepare_match_bench.py DIR --before /path/to/checkout --runs 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ONE = r"""
import gc, sys, time
gc.disable()
from hopcap.correlate import engine as E
from hopcap.correlate.stages import plan_stages
from hopcap.model import PointInput
d = sys.argv[1]
plan = plan_stages([PointInput(name="a", pcap=f"{d}/fw_a.pcap"),
                    PointInput(name="b", pcap=f"{d}/fw_b.pcap")])
pts = E.read_points(plan.points, tables=plan.tables, threads=1)
t0 = time.process_time()
prep = E.prepare(pts, {})
t1 = time.process_time()
E.match_part(prep, list(range(len(prep.flows))))
t2 = time.process_time()
print(t1 - t0, t2 - t1)
"""


def one(code: Path, folder: Path) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(folder)],
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        cwd="/",  # not a folder with a hopcap package of its own (`-c` puts it first)
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.runs):
        for name, code in (("before", args.before), ("this", here)):
            p, m = one(code, args.folder)
            bp, bm = best.get(name, (p, m))
            best[name] = (min(bp, p), min(bm, m))
    for name, (p, m) in best.items():
        print(f"{name:7s} prepare {p:.3f} s  match {m:.3f} s  both {p + m:.3f} s")
    (bp, bm), (tp, tm) = best["before"], best["this"]
    print(f"ratio   prepare {tp / bp:.2f}  match {tm / bm:.2f}  both {(tp + tm) / (bp + bm):.2f}")


if __name__ == "__main__":
    main()
