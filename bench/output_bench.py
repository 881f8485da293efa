"""The verdict's tail and output, in process, as `hopcap correlate` runs them (issue 12).

    python bench/output_bench.py A B [--before DIR] [--runs 5]

runs `hopcap correlate a=A b=B --json > FILE` (and the terminal tables: the default
verdict, and `--all`, also into a file) as new processes with this checkout's code and,
given `--before`, another checkout's (each with its own directory as PYTHONPATH and
cwd), interleaved, and times in each process the steps after the flows are finished:
`engine.assemble`, `localize`, `with_patterns`, then the output: the verdict's dict and
its JSON (`Verdict.to_dict` + `jsonout.dumps` + the write to stdout, or
`jsonout.write_verdict`, which does all three) or the tables (`_print_verdict`). Best of
`--runs` for each step (process CPU time: user + sys), and the best whole process (user +
sys from wait4) with the output's share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

# run in the child: wraps the steps, runs the CLI, reports at the quick exit
PROBE = r"""
import json, os, sys, time
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
T = {}
ON = set()  # the steps being timed (one inside another is counted once)
def timing(key, f, *a, **k):
    if key in ON:
        return f(*a, **k)
    ON.add(key)
    t0 = time.process_time()
    try:
        return f(*a, **k)
    finally:
        T[key] = T.get(key, 0.0) + time.process_time() - t0
        ON.discard(key)
def wrap(owner, name, key):
    f = getattr(owner, name, None)
    if f is not None:
        setattr(owner, name, lambda *a, **k: timing(key, f, *a, **k))
import hopcap.cli as C
import hopcap.correlate.engine as E
import hopcap.jsonout as J
import hopcap.model as M
wrap(E, "assemble", "assemble")
wrap(E, "localize", "localize")
wrap(E, "with_patterns", "patterns")
wrap(M.Verdict, "to_dict", "output")
wrap(J, "dumps", "output")
wrap(J, "write_verdict", "output")
wrap(C, "_print_verdict", "output")
class Timed:  # stdout's bytes: the JSON written there (the tables go through `echo`)
    def __init__(self, raw):
        self.raw = raw
    def write(self, b):
        return timing("output", self.raw.write, b)
    def flush(self):
        self.raw.flush()
sys.stdout = type("Out", (), {"buffer": Timed(sys.stdout.buffer), "write": sys.stdout.write,
                              "flush": sys.stdout.flush, "isatty": lambda self: False})()
def done(code):
    sys.stdout.buffer.flush()
    os.write(2, ("PHASES " + json.dumps(T) + "\n").encode())
    os._exit(code)
C._quick_exit = done
sys.argv = ["hopcap", *sys.argv[1:]]
C.main()
"""

MODES = {"json": ["--json"], "table": [], "all": ["--all"]}


def run(code: Path, a: str, b: str, mode: str, out: Path) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "PYTHONPATH": str(code)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as users run it: modules from .pyc
    args = ["correlate", f"a={a}", f"b={b}", "--jobs", "1", *MODES[mode]]
    with out.open("wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-c", PROBE, *args],
            cwd=code,
            env=env,
            stdout=f,
            stderr=subprocess.PIPE,
        )
        assert p.stderr is not None
        err = p.stderr.read().decode()
        _pid, status, use = os.wait4(p.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{code} {mode}: failed\n{err}")
    line = next(x for x in err.splitlines() if x.startswith("PHASES "))
    return use.ru_utime + use.ru_stime, json.loads(line[len("PHASES ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--before", type=Path, help="another checkout to time in the same run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-outbench"))
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    codes = {"this": HERE, **({"before": args.before.resolve()} if args.before else {})}
    best: dict[tuple[str, str], tuple[float, dict[str, float]]] = {}
    for _ in range(args.runs):
        for mode in MODES:
            for name, code in codes.items():
                total, ph = run(code, args.a, args.b, mode, args.dir / f"{name}-{mode}.out")
                t0, p0 = best.get((name, mode), (float("inf"), {}))
                best[(name, mode)] = (
                    min(t0, total),
                    {k: min(v, p0.get(k, v)) for k, v in ph.items()},
                )
    for mode in MODES:
        texts = {(args.dir / f"{n}-{mode}.out").read_bytes() for n in codes}
        same = "same output" if len(texts) == 1 else "OUTPUT DIFFERS"
        print(f"\n{mode} ({same}; best of {args.runs}, CPU ms)")
        print("code     assemble  localize  patterns  output  process  output share")
        for name in codes:
            total, ph = best[(name, mode)]
            print(
                f"{name:<8} {ph.get('assemble', 0) * 1e3:8.1f}  {ph.get('localize', 0) * 1e3:8.1f}"
                f"  {ph.get('patterns', 0) * 1e3:8.1f}  {ph.get('output', 0) * 1e3:6.1f}"
                f"  {total * 1e3:7.0f}  {ph.get('output', 0) / total * 100:11.1f} %"
            )


if __name__ == "__main__":
    main()
