"""Many two-packet TCP connections: a scanner's SYNs, each answered by a RST, end to end.

Generates (numpy, no scapy) two points `a` and `b` of one routed hop: `--conns` SYNs from
one scanner to 1,000 ports of many addresses, 0.6 ms apart, each answered by a RST|ACK
0.2 ms later; `b` sees each packet 50 us after `a` with the TTL one lower each way. Then,
as a user runs it, `hopcap correlate a=A b=B --json [--memory M] [--jobs J] > v.json` in a
new process for every `--memory` value given (and without), `--runs` times (and, with
`--before DIR`, the same with that checkout on PYTHONPATH, interleaved): wall and CPU
time, peak RSS, whether it was sliced, and the verdict checked (every connection one
flow, "server reset the connection", nothing else) and compared with the unsliced one.
Exits 1 when a verdict is wrong.

    .venv/bin/python bench/syn_scan_bench.py --conns 200000 [--memory 1G,2G] [--runs 1] \
        [--jobs 1] [--before DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from pcapgen import write_pcap

SCANNER = 0xC6120001  # 198.18.0.1
TARGETS = 0xC6130000  # 198.19.0.0


def generate(n: int, out: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(5)
    k = np.repeat(np.arange(n), 2)
    d = np.tile([0, 1], n)
    srv = TARGETS + (k // 1000) % 60000
    sport = 40000 + k % 20000
    dport = 1 + k % 1000
    isn = rng.integers(0, 2**32, n)[k]
    v = {
        "ts": (1_763_790_000 * 10**9 + k * 600_000 + d * 200_000).astype(np.int64),
        "plen": np.zeros(2 * n, np.int64),
        "ipid": (k % 65536).astype(np.int64),
        "ttl": np.full(2 * n, 64),
        "src": np.where(d == 0, SCANNER, srv),
        "dst": np.where(d == 0, srv, SCANNER),
        "sport": np.where(d == 0, sport, dport),
        "dport": np.where(d == 0, dport, sport),
        "seq": np.where(d == 0, isn, 0),
        "ack": np.where(d == 0, 0, isn + 1),
        "flags": np.where(d == 0, 0x02, 0x14),  # SYN; RST|ACK
        "tsval": np.zeros(2 * n, np.int64),
        "tsecr": np.zeros(2 * n, np.int64),
        "mss": np.where(d == 0, 1460, -1),
    }
    out.mkdir(parents=True, exist_ok=True)
    a, b = out / f"syn_a_{n}.pcap", out / f"syn_b_{n}.pcap"
    write_pcap(a, v, lambda buf, o, v: None)
    v["ts"] = v["ts"] + 50_000  # b is after a going out, before it coming back
    v["ttl"] = np.where(d == 0, 63, 65)
    write_pcap(b, v, lambda buf, o, v: None)
    return a, b


def run(
    a: Path, b: Path, memory: str | None, out: Path, tree: Path | None, jobs: str
) -> tuple[float, float, int, bool]:
    """Wall, CPU (user + sys: the process and the workers it waited for), peak RSS (KB),
    and whether it sliced."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # (or each run compiles the tree it imports)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, "-m", "hopcap", "correlate", f"a={a}", f"b={b}", "--json"]
    if memory:
        cmd += ["--memory", memory]
    if jobs:
        cmd += ["--jobs", jobs]
    err = out.with_suffix(".err")
    t0 = time.perf_counter()
    with out.open("wb") as fh, err.open("wb") as eh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=eh, env=env, cwd=out.parent)
        _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    text = err.read_text(errors="replace")
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"hopcap failed: {text}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, "slice " in text


def check(v: Path, n: int) -> str | None:
    got = json.loads(v.read_bytes())
    flows = got["flows"]
    bad = [
        f["summary"] for f in flows if f["summary"] != "server reset the connection (RST seen on b)"
    ]
    if len(flows) != n or bad:
        return f"{len(flows)} flows ({n} generated), {len(bad)} other summaries, e.g. {bad[:1]}"
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=200_000)
    ap.add_argument("--memory", default="", help="budgets to run with too, e.g. 1G,2G")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-synbench"))
    ap.add_argument("--jobs", default="", help="--jobs of every run (default: hopcap's)")
    ap.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    args = ap.parse_args()
    a, b = generate(args.conns, args.dir)
    size = a.stat().st_size + b.stat().st_size
    print(f"{args.conns:,} SYNs each answered by a RST at two points, {size / 1e6:.0f} MB")
    trees: dict[str, Path | None] = {"this": None}
    if args.before:
        trees["before"] = args.before
    wrong = False
    best: dict[tuple[str, str], tuple[float, float, int]] = {}
    for r in range(args.runs):
        for memory in ["", *[m for m in args.memory.split(",") if m]]:
            for label, tree in trees.items():
                v = args.dir / f"v_{label}_{memory or 'whole'}.json"
                wall, cpu, rss, sliced = run(a, b, memory or None, v, tree, args.jobs)
                bad = check(v, args.conns)
                whole = args.dir / "v_this_whole.json"
                if (
                    bad is None
                    and (memory or label != "this")
                    and (v.read_bytes() != whole.read_bytes())
                ):
                    bad = "not the unsliced verdict of this code"
                wrong |= bad is not None
                said = "VERDICT WRONG: " + bad if bad else "verdict OK"
                print(f"run {r + 1} {label} --memory {memory or '(default)'}: wall {wall:.2f} "
                      f"s, cpu {cpu:.2f} s, peak RSS {rss / 1024:.0f} MB, "
                      f"{'sliced' if sliced else 'whole'}; {said}", flush=True)  # fmt: skip
                k = (label, memory)
                if k not in best or cpu < best[k][1]:
                    best[k] = (wall, cpu, rss)
    for (label, memory), (wall, cpu, rss) in best.items():
        print(f"best {label} --memory {memory or '(default)'}: wall {wall:.2f} s, cpu "
              f"{cpu:.2f} s ({cpu / args.conns * 1e6:.0f} us of CPU a connection), peak RSS "
              f"{rss / 1024:.0f} MB")  # fmt: skip
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
