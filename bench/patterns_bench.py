"""Patterns and the terminal verdict on many flows, against serialising the same verdict.

Builds a verdict by hand like a busy firewall's (every flow MSS-clamped, 1 % with a drop,
every seventh with its own sequence-number rewrite), then times in one run:
`json.dumps(verdict.to_dict())` (the reference: what every bundle does anyway),
`find_patterns`, `triage`, and the terminal output as `hopcap correlate` prints it, by
default (capped) and with `--all`. Prints seconds and the ratio to the reference; linear
growth shows as the same ratio at 10x the flows.

    .venv/bin/python bench/patterns_bench.py [--flows 10000 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import Callable

from tabulate import tabulate

from hopcap import cli
from hopcap.model import Finding, Flow, Leg, PointSummary, Verdict
from hopcap.patterns import FLOW_HEADERS, find_patterns, flow_row, triage

A, B = "fw:eth0", "fw:eth1"


def make(n: int) -> Verdict:
    flows = []
    for i in range(n):
        fs = [Finding("rewrite", "c2s", (A, B), 1, 0, 1.0, "SYN seq=1", "tcp.mss", 1460, 1400)]
        if i % 100 == 0:
            fs.insert(0, Finding("drop", "c2s", (A, B), 1, 60, 2.0, "PSH,ACK seq=1 len=60"))
        if i % 7 == 0:
            fs.append(Finding("rewrite", "c2s", (A, B), 3, 0, 1.0, "data", "tcp.seq", i, i + 5))
        flows.append(
            Flow(
                f"f{i + 1}",
                "tcp",
                f"198.18.{i // 250 % 250}.{i % 250}:{1024 + i % 60000}",
                "203.0.113.80:80",
                (Leg(A, "a > b", "same"), Leg(B, "c > d", "nat")),
                tuple(fs),
                "data dropped inside fw (seen on fw:eth0, never on fw:eth1)",
                1.0,
            )
        )
    pts = (PointSummary(A, "fw", "eth0", 1), PointSummary(B, "fw", "eth1", 1))
    return Verdict(pts, tuple(flows))


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(n: int) -> None:
    v = make(n)
    ref = timed(lambda: json.dumps(v.to_dict()))
    tp = timed(lambda: find_patterns(v))
    vv = dataclasses.replace(v, patterns=find_patterns(v))
    tt = timed(lambda: triage(vv))
    sink = io.StringIO()

    def show(all_: bool) -> None:
        with contextlib.redirect_stdout(sink):
            cli._print_verdict(vv, show_all=all_)

    td = timed(lambda: show(False))
    ta = timed(lambda: show(True))
    rows = [flow_row(f) for f in vv.flows]
    tab = timed(lambda: tabulate(rows, headers=list(FLOW_HEADERS)))
    print(
        f"{n:,} flows, {len(vv.patterns)} patterns; reference json.dumps of the verdict {ref:.3f} s"
    )
    for name, t in (
        ("find_patterns", tp),
        ("triage", tt),
        ("terminal output (default, capped)", td),
        ("terminal output --all", ta),
        ("tabulate of the same rows (for scale)", tab),
    ):
        print(f"  {name:<38} {t:7.3f} s  {t / ref:5.2f}x the reference")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flows", type=int, nargs="+", default=[10_000, 100_000])
    for n in ap.parse_args().flows:
        measure(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
