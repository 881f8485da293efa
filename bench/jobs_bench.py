"""`hopcap correlate --jobs N` against `--jobs 1`: wall and CPU time, and where the time goes.

    .venv/bin/python bench/jobs_bench.py --dir D [--sizes 1.6M,6.4M] [--runs 3] [--phases]
        [--bench-set DIR]   # also bench/correlate_bench.py's four points (its --keep --dir)

For every size: the firewall workload of `firewall_bench.py` is generated into D/<size>/
(kept: `--reuse` uses it again), then `hopcap correlate a=A b=B --json --jobs J > v.json`
runs as a new process for J = 1 and 2, interleaved, `--runs` times; printed: wall and CPU
(user + sys of the process and its children) of each run, the best wall of each and their
ratio, the load average (1 min) before each run, and whether every verdict is byte for
byte that of the first `--jobs 1` run. On a shared machine `--wait-quiet S` waits (up to S
seconds) before each run for 1.8 of the 2 cores to be idle for a second, and prints what
was idle.

`--phases` (with `--jobs-phases J`, default 2) runs the engine in this process with a
timestamp at the start and end of every phase, in the parent and in each forked child
(pid), with its minor page faults: where the wall time of a run with J jobs goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

SIZES = {"100k": 100_000, "400k": 400_000, "1.6M": 1_600_000, "6.4M": 6_400_000}


def _files(d: Path, n: int, reuse: bool) -> tuple[Path, Path]:
    a, b = d / "fw_a.pcap", d / "fw_b.pcap"
    if not (reuse and a.exists() and b.exists()):
        from firewall_bench import generate

        d.mkdir(parents=True, exist_ok=True)
        generate(n, d)
    return a, b


def _load() -> float:
    return os.getloadavg()[0]


def _idle(seconds: float = 1.0) -> float:
    """Cores idle over the next `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)

    i0, t0 = sample()
    time.sleep(seconds)
    i1, t1 = sample()
    return (i1 - i0) / max(t1 - t0, 1) * (os.cpu_count() or 1)


def _wait_quiet(wait: float, cores: float) -> float:
    """Wait (up to `wait` seconds) for `cores` idle cores; what was idle last."""
    end = time.monotonic() + wait
    idle = _idle()
    while idle < cores and time.monotonic() < end:
        idle = _idle()
    return idle


def _run(pts: list[str], jobs: int, out: Path, code: Path | None) -> tuple[float, float]:
    """(wall, cpu) of one `hopcap correlate --json` as a new process (of the code in the
    checkout `code`, when given)."""
    env = dict(os.environ)
    # both codes started alike (`python -m hopcap`; the venv's `hopcap` script goes
    # through the editable install's import finder: a slower start than the other's)
    code = code or ROOT
    cmd = [sys.executable, "-m", "hopcap"]
    env["PYTHONPATH"] = str(code)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with out.open("wb") as f:
        subprocess.run(
            [*cmd, "correlate", *pts, "--json", "--jobs", str(jobs)],
            stdout=f,
            check=True,
            env=env,
            # `python -m` puts the current directory first on sys.path: run the code
            # before from its own checkout, not this one
            cwd=code,
        )
    wall = time.perf_counter() - t
    # hopcap's worker processes outlive it by their exit (it does not wait for them):
    # orphans come to this process (a subreaper), and their CPU counts once reaped
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def compare(
    pts: list[str], runs: int, d: Path, jobs: list[str], wait: float, code: Path | None
) -> None:
    """`jobs`: numbers of jobs; one ending in `b` runs the code before (`code`)."""
    best: dict[str, tuple[float, float]] = {}
    ref: bytes | None = None
    same = True
    for r in range(runs):
        for j in jobs:
            idle = _wait_quiet(wait, 1.8) if wait else None
            load = _load()
            out = d / f"v{j}.json"
            wall, cpu = _run(pts, int(j.rstrip("b")), out, code if j.endswith("b") else None)
            got = out.read_bytes()
            if ref is None:
                ref = got
            same &= got == ref
            quiet = "" if idle is None else f", {idle:.2f} cores idle the second before"
            what = f"--jobs {j.rstrip('b')}" + (" (before)" if j.endswith("b") else "")
            print(
                f"  run {r + 1} {what}: wall {wall:.2f} s, cpu {cpu:.2f} s (load {load:.2f}{quiet})"
            )
            if j not in best or wall < best[j][0]:
                best[j] = (wall, cpu)
    one = best[jobs[0]]
    for j in jobs[1:]:
        print(
            f"  best of {runs}: --jobs {jobs[0]} {one[0]:.2f} / {one[1]:.2f} s, --jobs {j} "
            f"{best[j][0]:.2f} / {best[j][1]:.2f} s (wall / cpu): {one[0] / best[j][0]:.2f}x"
        )
    print(f"  verdicts identical: {same}")


# --------------------------------------------------------------------------- phases

T0 = time.perf_counter()


def _say(what: str) -> None:
    r = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r.ru_utime + r.ru_stime
    print(
        f"  {time.perf_counter() - T0:7.3f} s  pid {os.getpid():<7d} {what:32s} "
        f"cpu {cpu:6.2f} s  minflt {r.ru_minflt}",
        flush=True,
    )


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrap(*args: Any, **kw: Any) -> Any:
        _say(f"{name} start")
        try:
            return fn(*args, **kw)
        finally:
            _say(f"{name} end")

    return wrap


def phases(a: Path, b: Path, jobs: int) -> None:
    global T0
    T0 = time.perf_counter()
    import gc

    from hopcap.correlate import engine
    from hopcap.correlate import parallel as par
    from hopcap.jsonout import dumps
    from hopcap.model import PointInput

    _say("imported")
    for mod, names in (
        (engine, ("read_points", "prepare", "finish_datagrams", "assemble", "finish_stages")),
        (engine, ("_correlate",)),
        (engine, ("localize",)),
        (engine, ("with_patterns", "match_part", "finish_part", "set_clocks")),
        (par, ("match_part", "finish_part", "set_clocks", "partition")),
    ):
        for n in names:
            setattr(mod, n, _timed(n, getattr(mod, n)))
    take = par._Kid.take
    par._Kid.take = _timed("take child's pieces", take)  # type: ignore[method-assign]
    gc.disable()
    engine.keep_state_until_exit()  # as the CLI's correlate: no teardown
    v = engine.correlate([PointInput("a", pcap=str(a)), PointInput("b", pcap=str(b))], jobs=jobs)
    d = _timed("to_dict", v.to_dict)()
    _timed("json", dumps)(d)
    _say("done")


def _subreaper() -> None:
    """Orphaned descendants (hopcap's workers, still exiting) are reparented here, so that
    their CPU time is counted (Linux; elsewhere they are not)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def main() -> None:
    _subreaper()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--sizes", default="1.6M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--jobs", default="1,2", help="e.g. 1,2,1b,2b: jobs; with b, of the code at --before"
    )
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--phases", action="store_true")
    ap.add_argument("--jobs-phases", type=int, default=2)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each run, wait up to this many seconds for 1.8 idle cores",
    )
    ap.add_argument(
        "--bench-set",
        type=Path,
        help="also compare on the four points bench/correlate_bench.py --keep left in this "
        "directory (client_eth0.pcap ... lb_eth0.pcap)",
    )
    o = ap.parse_args()
    for size in [x for x in o.sizes.split(",") if x]:
        a, b = _files(o.dir / size, SIZES[size], o.reuse)
        print(f"{size}: {a.stat().st_size + b.stat().st_size:,} bytes of captures")
        if not o.no_compare:
            pts = [f"a={a}", f"b={b}"]
            compare(pts, o.runs, o.dir / size, o.jobs.split(","), o.wait_quiet, o.before)
        if o.phases:
            phases(a, b, o.jobs_phases)
    if o.bench_set is not None:
        names = ["client:eth0", "fw:eth0", "fw:eth1", "lb:eth0"]
        files = [o.bench_set / (n.replace(":", "_") + ".pcap") for n in names]
        total = sum(f.stat().st_size for f in files)
        print(f"correlate_bench's four points: {total:,} bytes of captures")
        pts = [f"{n}={f}" for n, f in zip(names, files, strict=True)]
        compare(pts, o.runs, o.dir, o.jobs.split(","), o.wait_quiet, o.before)


if __name__ == "__main__":
    main()
