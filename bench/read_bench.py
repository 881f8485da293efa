"""Start-up, reading and indexing (issue 12), against an older checkout in the same run.

For two captures A and B (e.g. the 1.6 M-packet pair of bench/firewall_bench.py), this
tree and the --before checkout (each by PYTHONPATH, same interpreter) take turns, best of
--runs each:

  read+index  a new process reads and indexes both points (engine.read_points, one
              thread): CPU (user + sys) of that phase alone, its minor page faults, and
              the process's peak RSS beyond the mapped files (VmHWM - RssFile), per packet
  end to end  `python -m hopcap correlate a=A b=B --json --jobs 1`: CPU, minor faults,
              and the verdict compared byte for byte with the --before one
  start-up    the same command on tests/data's tcpreplay capture and its TTL-rewritten
              copy (179 packets each; hopcap refuses one file given twice): CPU

read+index runs with OPENBLAS_NUM_THREADS=1 NUMPY_MADVISE_HUGEPAGE=0 in both trees (the
code's own cost); the other two as a user runs them (each tree's `main` sets what it sets).

    .venv/bin/python bench/read_bench.py A B --before /path/to/checkout [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
TINY = HERE / "tests" / "data" / "tcpreplay" / "test.pcap"
TINY_B = HERE / "tests" / "data" / "tcpreplay" / "test.rewrite_1ttl"

READ = r"""
import json, resource, sys
from pathlib import Path
def ru():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt
from hopcap.correlate import engine
from hopcap.correlate.stages import plan_stages
from hopcap.model import PointInput
import gc; gc.disable()
a, b = (PointInput(name=x, pcap=f) for x, f in zip("ab", sys.argv[1:3]))
plan = plan_stages([a, b])
c0, f0 = ru()
pts = engine.read_points(plan.points, tables=plan.tables, threads=1)
c1, f1 = ru()
st = dict(line.split()[:2] for line in open("/proc/self/status") if len(line.split()) > 1)
n = sum(len(p.pc.table) + len(p.pc.table.dgram) for p in pts)
beyond = int(st["VmHWM:"]) - int(st["RssFile:"])
import hopcap
print(json.dumps({"cpu": c1 - c0, "faults": f1 - f0, "beyond_kb": beyond, "rows": n,
                  "tree": str(Path(hopcap.__file__).parent.parent)}))
"""


def _env(tree: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.pop("NUMPY_MADVISE_HUGEPAGE", None)
    env.pop("OPENBLAS_NUM_THREADS", None)
    env["PYTHONPATH"] = str(tree)
    env.update(extra)
    return env


def _child(cmd: list[str], env: dict[str, str]) -> tuple[float, int, bytes]:
    """CPU (user + sys) and minor faults of one child process, and its stdout. It runs in
    its tree (`python -c` and `-m` put the working directory first on sys.path)."""
    p = subprocess.Popen(
        cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    out = p.stdout.read() if p.stdout else b""
    _pid, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode not in (0, 4):
        raise SystemExit(f"{cmd}: exit {p.returncode}")
    return ru.ru_utime + ru.ru_stime, ru.ru_minflt, out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--before", type=Path, required=True, help="a checkout of an older hopcap")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    trees = {"this": HERE, "before": args.before.resolve()}
    args.a, args.b = args.a.resolve(), args.b.resolve()
    py = sys.executable
    best: dict[tuple[str, str], dict[str, Any]] = {}
    verdicts: dict[str, bytes] = {}

    def keep(key: tuple[str, str], got: dict[str, Any]) -> None:
        if key not in best or got["cpu"] < best[key]["cpu"]:
            best[key] = got

    e2e = ["-m", "hopcap", "correlate", f"a={args.a}", f"b={args.b}", "--json", "--jobs", "1"]
    tiny = ["-m", "hopcap", "correlate", f"a={TINY}", f"b={TINY_B}", "--json", "--jobs", "1"]
    for _ in range(args.runs):
        for name, tree in trees.items():  # interleaved: both see the same machine
            env = _env(tree, OPENBLAS_NUM_THREADS="1", NUMPY_MADVISE_HUGEPAGE="0")
            _cpu, _f, out = _child([py, "-c", READ, str(args.a), str(args.b)], env)
            which = json.loads(out)
            assert which["tree"] == str(tree), (which["tree"], tree)
            keep((name, "read"), which)
            cpu, faults, out = _child([py, *e2e], _env(tree))
            verdicts[name] = out
            keep((name, "e2e"), {"cpu": cpu, "faults": faults})
            cpu, faults, _out = _child([py, *tiny], _env(tree))
            keep((name, "tiny"), {"cpu": cpu, "faults": faults})
    rows = best["this", "read"]["rows"]
    print(f"{rows:,} rows (TCP and datagrams, both points); best of {args.runs}, CPU = user + sys")
    print("| phase | this tree | before | ratio |")
    print("| --- | --- | --- | --- |")
    for what, label in (("read", "read+index"), ("e2e", "end to end"), ("tiny", "start-up")):
        a, b = best["this", what], best["before", what]
        print(f"| {label} CPU | {a['cpu']:.3f} s | {b['cpu']:.3f} s | {b['cpu'] / a['cpu']:.2f}x |")
        print(f"| {label} minor faults | {a['faults']:,} | {b['faults']:,} | |")
    a, b = best["this", "read"], best["before", "read"]
    print(
        f"| read+index peak RSS beyond the mapped files | {a['beyond_kb'] / 1024:.0f} MB "
        f"({a['beyond_kb'] * 1024 / rows:.0f} B/row) | {b['beyond_kb'] / 1024:.0f} MB "
        f"({b['beyond_kb'] * 1024 / rows:.0f} B/row) | |"
    )
    same = verdicts["this"] == verdicts["before"]
    print(f"verdicts byte-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
