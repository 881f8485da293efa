"""CPU time of the engine's index (halves and connections of each point), prepare
(linking, flows, datagram flows) and matching phases on a pair of captures, for this
checkout and one before it, interleaved in one run.

Each run is a new process that reads both captures (not timed), then times
`conns.build_point` of each, `engine.prepare` and `engine.match_part` (every flow) with
`time.process_time`, and how much of the three went to the compiled helper's functions
(`_fastwalk`'s, their Python wrappers included): the rest is the Python (and numpy)
around them. The best of `--runs` per checkout and figure is printed, with the ratios.
The pair is e.g. the one bench/firewall_bench.py generates (`fw_a.pcap`, `fw_b.pcap` in
one folder).

    .venv/bin/python bench/prepare_match_bench.py DIR --before /path/to/checkout --runs 5
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ONE = r"""
import gc, sys, time, types
from pathlib import Path
gc.disable()
from hopcap.correlate import _fastwalk as FW, engine as E
from hopcap.correlate.conns import build_point
from hopcap.correlate.flows import Point, host_of
from hopcap.correlate.reader import read_capture
from hopcap.correlate.stages import plan_stages
from hopcap.model import PointInput
d = sys.argv[1]
plan = plan_stages([PointInput(name="a", pcap=f"{d}/fw_a.pcap"),
                    PointInput(name="b", pcap=f"{d}/fw_b.pcap")])
tables = [read_capture(Path(inp.pcap)) for inp in plan.points]
in_c = [0.0, 0]
def timed(f):
    def w(*a, **k):
        if in_c[1]:
            return f(*a, **k)
        in_c[1] = 1
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            in_c[0] += time.process_time() - t
            in_c[1] = 0
    return w
mods = [m for n, m in sys.modules.items() if n.startswith("hopcap.correlate")]
for n, f in list(vars(FW).items()):
    if isinstance(f, types.FunctionType) and f.__module__ == FW.__name__ and n[0] != "_":
        for m in mods:
            if getattr(m, n, None) is f:
                setattr(m, n, timed(f))
t0 = time.process_time()
pcs = [build_point(t) for t in tables]
t1 = time.process_time()
pts = [Point(i, inp, inp.name, *host_of(inp), pc) for i, (inp, pc)
       in enumerate(zip(plan.points, pcs))]
t2 = time.process_time()
prep = E.prepare(pts, {})
t3 = time.process_time()
E.match_part(prep, list(range(len(prep.flows))))
t4 = time.process_time()
print(t1 - t0, t3 - t2, t4 - t3, in_c[0])
"""


def one(code: Path, folder: Path) -> tuple[float, ...]:
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(folder)],
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        cwd="/",  # not a folder with a hopcap package of its own (`-c` puts it first)
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return tuple(float(x) for x in out)


def compared(doc: str, measure: Callable[[Path, Path], tuple[float, ...]]) -> dict[str, Any]:
    """The command line (a folder, `--before`, `--runs`; `doc`: the script's docstring),
    and `measure(code, folder)` of the checkout before and this one, interleaved: the
    best of every figure of each ("before", "this")."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    best: dict[str, tuple[float, ...]] = {}
    for _ in range(args.runs):
        for name, code in (("before", args.before), ("this", here)):
            got = measure(code, args.folder)
            best[name] = tuple(map(min, zip(best.get(name, got), got, strict=True)))
    return best


def main() -> None:
    best = compared(__doc__, one)
    for name, (i, p, m, c) in best.items():
        all_ = i + p + m
        print(f"{name:7s} index {i:.3f} s  prepare {p:.3f} s  match {m:.3f} s  all {all_:.3f} s"
              f"  (in C {c:.3f} s, around it {all_ - c:.3f} s)")  # fmt: skip
    b, t = best["before"], best["this"]
    r = [x / y for x, y in zip(t[:3], b[:3], strict=True)] + [sum(t[:3]) / sum(b[:3])]
    py = (sum(t[:3]) - t[3]) / (sum(b[:3]) - b[3])
    print(f"ratio   index {r[0]:.2f}  prepare {r[1]:.2f}  match {r[2]:.2f}  all {r[3]:.2f}"
          f"  around C {py:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
