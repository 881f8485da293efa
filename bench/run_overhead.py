"""Where the time of `hopcap run` goes, besides the window and the repro (issue 12).

    .venv/bin/python bench/run_overhead.py [--runs 5] [--before /path/to/other/checkout]

Builds a lab once (prefix "hco3", management 198.18.253.0/24; removed at the end), then
runs a capture on its 4 hosts / 6 points with the lab's repro (a 300 kB curl) `--runs`
times, each in a fresh Python process as `hopcap run` does: imports, `run_capture`,
correlation, the bundle. With `--before`, the same child runs from that checkout's code
in the same go, alternating with this one, as the reference.

The phases are read from the orchestrator's progress events, which every version emits:
- start: interpreter start-up and imports (the process's wall time to `run_capture`);
- connect: to the last host connected;
- prepare: probe, clocks, points, facts before, remote directories, arm, fire, listening;
- repro: the repro command itself (not overhead);
- settle: after the repro, the wait that lets the last packets cross every point;
- finish: stop every tcpdump, facts and clocks after, pull and verify, clean up, close;
- correlate, bundle: `hopcap run`'s own steps after the orchestrator.
Overhead = everything but the repro; it is also given without the settle (a fixed wait for
late packets, part of the capture rather than work hopcap does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "hco3"
MGMT = "198.18.253.0/24"
PHASES = ("start", "connect", "prepare", "repro", "settle", "finish", "correlate", "bundle")


def child(inventory: str, out: str, t_exec: float) -> None:
    """One run in this process; prints its phases as JSON."""
    t_start = time.time()
    import asyncio

    from hopcap.bundle import write_bundle
    from hopcap.cli import _correlate_run
    from hopcap.inventory import load
    from hopcap.orchestrator.run import RunOptions, run_capture

    inv = load(Path(inventory))
    seen: dict[str, float] = {}

    def emit(ev: object) -> None:
        kind = getattr(ev, "kind", "")
        now = time.time()
        if kind in ("connected", "listening", "repro-done"):
            seen[kind] = now  # the last of each
        elif kind not in seen:
            seen[kind] = now  # the first of each

    t0 = time.time()
    rec = asyncio.run(run_capture(inv, RunOptions(out=Path(out), window_s=10), emit=emit))
    t1 = time.time()
    verdict = _correlate_run(rec, None)
    t2 = time.time()
    write_bundle(Path(out), rec, verdict, tarball=False, anonymise=False)
    t3 = time.time()
    phases = {
        "start": t0 - t_exec,
        "connect": seen["connected"] - t0,
        "prepare": seen["listening"] - seen["connected"],
        "repro": seen["repro-done"] - seen["repro"],
        "settle": seen["stopping"] - seen["repro-done"],
        "finish": t1 - seen["stopping"],
        "correlate": t2 - t1,
        "bundle": t3 - t2,
    }
    print(
        json.dumps(
            {
                "phases": phases,
                "complete": rec.complete,
                "errors": list(rec.errors),
                "imports": t0 - t_start,
            }
        )
    )


def one_run(src: Path, inventory: Path) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="hopcap-overhead-") as d:
        env = {**os.environ, "PYTHONPATH": str(src)}
        t_exec = time.time()
        res = subprocess.run(
            [sys.executable, __file__, "--child", str(inventory), d + "/b", str(t_exec)],
            env=env,
            capture_output=True,
            text=True,
            cwd=src,
        )
        if res.returncode != 0:
            raise SystemExit(f"run from {src} failed:\n{res.stderr}")
        out: dict[str, object] = json.loads(res.stdout.strip().splitlines()[-1])
        return out


def report(name: str, runs: list[dict[str, object]]) -> dict[str, float]:
    med: dict[str, float] = {}
    for p in PHASES:
        med[p] = statistics.median(float(r["phases"][p]) for r in runs)  # type: ignore[index]
    totals = [sum(float(v) for k, v in r["phases"].items() if k != "repro") for r in runs]  # type: ignore[attr-defined]
    med["overhead"] = statistics.median(totals)
    med["overhead_no_settle"] = statistics.median(
        t - float(r["phases"]["settle"]) for t, r in zip(totals, runs, strict=True)
    )  # type: ignore[index]
    bad = [e for r in runs for e in r["errors"]]  # type: ignore[attr-defined]
    print(f"\n{name}: {len(runs)} runs, every run complete: {all(r['complete'] for r in runs)}")
    for e in bad:
        print(f"  error: {e}")
    print("  " + "  ".join(f"{p} {med[p]:.2f}" for p in PHASES) + "  (median s)")
    print(
        f"  overhead (all but the repro): median {med['overhead']:.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in totals)}); "
        f"without the settle: {med['overhead_no_settle']:.2f} s"
    )
    return med


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--before", type=Path, help="another checkout: the reference")
    args = ap.parse_args()
    here = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(here))
    from hopcap import lab

    info = lab.up(PREFIX, mgmt_net=MGMT)
    try:
        ours: list[dict[str, object]] = []
        theirs: list[dict[str, object]] = []
        for _ in range(args.runs):
            if args.before is not None:
                theirs.append(one_run(args.before.resolve(), info.inventory))
            ours.append(one_run(here, info.inventory))
        load = os.getloadavg()[0]
        print(f"load average (1 min) at the end: {load:.1f}")
        a = report("this checkout", ours)
        if theirs:
            b = report(f"reference ({args.before})", theirs)
            print(f"\noverhead ratio, this / reference: {a['overhead'] / b['overhead']:.2f}")
    finally:
        lab.down(PREFIX)


if __name__ == "__main__":
    main()
