"""What everything after matching costs: findings, datagrams, assembly, `localize`,
patterns, `Verdict.to_dict` and the JSON, each timed (`time.process_time`) in one process
on two captures, after reading, linking, matching and the clocks (not timed).

    .venv/bin/python bench/verdict_bench.py A.pcap B.pcap [--runs 3] [--before DIR]

`--before DIR` runs the same in a new process with `PYTHONPATH=DIR` (another checkout's
`hopcap` package), interleaved with this checkout's runs; the best of `--runs` per phase
is printed for each. A pair of `bench/firewall_bench.py` (its `--keep --dir D`) is the
workload of issue 12.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("findings", "datagrams", "assemble", "localize", "patterns", "to_dict", "json")


def one_run(a: str, b: str) -> dict[str, float]:
    """Every phase's CPU seconds, once (a process of its own: nothing of it cached)."""
    import gc

    from hopcap.correlate import engine as E
    from hopcap.correlate.local import localize
    from hopcap.correlate.stages import finish_stages, plan_stages
    from hopcap.jsonout import dumps
    from hopcap.model import PointInput
    from hopcap.patterns import with_patterns

    gc.disable()  # as `correlate` runs
    plan = plan_stages([PointInput(name="a", pcap=Path(a)), PointInput(name="b", pcap=Path(b))])
    pts = E.read_points(plan.points, tables=plan.tables)
    prep = E.prepare(pts, {})
    every = list(range(len(prep.flows)))
    E.set_clocks(prep, [E.match_part(prep, every)])
    out: dict[str, float] = {}
    t = time.process_time()

    def lap(name: str) -> None:
        nonlocal t
        now = time.process_time()
        out[name] = now - t
        t = now

    built = E.finish_part(prep, every)
    lap("findings")
    built = E.finish_datagrams(prep, built)
    lap("datagrams")
    v = E.assemble(prep.pts, built, prep.warnings, E.point_facts(prep.pts))
    lap("assemble")
    v = localize(finish_stages(v, plan), None, None)
    lap("localize")
    v = with_patterns(v)
    lap("patterns")
    d = v.to_dict()
    lap("to_dict")
    dumps(d)
    lap("json")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before", type=Path, default=None)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.a, args.b)))
        return
    here = Path(__file__).resolve().parent.parent
    who = {"this": here} | ({"before": args.before.resolve()} if args.before else {})
    best: dict[str, dict[str, float]] = {w: {} for w in who}
    for _ in range(args.runs):
        for w, code in who.items():
            env = {**os.environ, "PYTHONPATH": str(code)}
            cmd = [sys.executable, __file__, args.a, args.b, "--one"]
            got = json.loads(subprocess.run(cmd, env=env, capture_output=True, check=True).stdout)
            for k, s in got.items():
                best[w][k] = min(best[w].get(k, s), s)
    print("| phase | " + " | ".join(who) + " |")
    print("| --- |" + " --- |" * len(who))
    for k in PHASES:
        print(f"| {k} | " + " | ".join(f"{best[w].get(k, 0.0):.3f} s" for w in who) + " |")
    print("| total | " + " | ".join(f"{sum(best[w].values()):.3f} s" for w in who) + " |")


if __name__ == "__main__":
    main()
