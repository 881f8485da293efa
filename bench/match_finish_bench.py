"""CPU time of the engine's matching and finishing phases on a pair of captures, and of
the whole `hopcap correlate --json --jobs 1` run, for this checkout and one before it,
interleaved in one run.

Each in-process run is a new process that reads and prepares both captures (not timed),
then times `engine.match_part` (every flow, with the clocks set from its minima) and
`engine.finish_part` (every flow) with `time.process_time`. Each end-to-end run is the
CLI in a new process (its user + system time from `os.wait4`, PYTHONDONTWRITEBYTECODE
unset). The best of `--runs` per checkout and figure is printed, with the ratios. The
pair is e.g. the one bench/firewall_bench.py generates (`fw_a.pcap`, `fw_b.pcap` in one
folder).

    .venv/bin/python bench/match_finish_bench.py DIR --before /path/to/checkout --runs 5
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prepare_match_bench import compared

ONE = r"""
import gc, sys, time
from pathlib import Path
gc.disable()
from hopcap.correlate import engine as E
from hopcap.model import PointInput
d = sys.argv[1]
pts = E.read_points([PointInput("a", Path(f"{d}/fw_a.pcap")),
                     PointInput("b", Path(f"{d}/fw_b.pcap"))])
prep = E.prepare(pts, {})
every = list(range(len(prep.flows)))
t0 = time.process_time()
E.set_clocks(prep, [E.match_part(prep, every)])
t1 = time.process_time()
E.finish_part(prep, every)
t2 = time.process_time()
print(t1 - t0, t2 - t1)
"""


def _env(code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(code)
    return env


def in_process(code: Path, folder: Path) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", ONE, str(folder)],
        env=_env(code),
        cwd="/",  # not a folder with a hopcap package of its own (`-c` puts it first)
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


def end_to_end(code: Path, folder: Path) -> float:
    """User + system CPU of one `hopcap correlate --json --jobs 1` (output discarded)."""
    argv = [sys.executable, "-m", "hopcap", "correlate", f"a={folder}/fw_a.pcap",
            f"b={folder}/fw_b.pcap", "--json", "--jobs", "1"]  # fmt: skip
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(argv, env=_env(code), cwd=code, stdout=null)
        _pid, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"{code}: correlate failed ({status})")
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    best = compared(__doc__, lambda code, folder: (*in_process(code, folder),
                                                   end_to_end(code, folder)))  # fmt: skip
    for name, (m, f, e) in best.items():
        print(f"{name:7s} match {m:.3f} s  finish {f:.3f} s  both {m + f:.3f} s"
              f"  end to end {e:.3f} s")  # fmt: skip
    b, t = best["before"], best["this"]
    print(f"ratio   match {t[0] / b[0]:.2f}  finish {t[1] / b[1]:.2f}"
          f"  both {(t[0] + t[1]) / (b[0] + b[1]):.2f}  end to end {t[2] / b[2]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
