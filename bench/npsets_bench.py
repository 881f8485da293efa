"""numpy's set functions against hopcap.npsets (sorting) on integer codes like the
correlator's, in one run on this machine; optionally a bundle correlated end to end with
this checkout and another one (e.g. before npsets), interleaved.

    python bench/npsets_bench.py [--sizes 10k,100k,1M,4M] [--bundle DIR --before CHECKOUT]
                                 [--same N] [--scan N] [--dns N] [--reuse N]
                                 [--dir D --before CHECKOUT]

numpy >= 2.3 answers `np.unique(x)` (and `np.isin`, which calls it) with a hash table;
on mostly distinct values that is far slower than a sort. Printed: the best of 3 of each
function on each size, and the ratio numpy / npsets. `--same N` writes (scapy) two points
of N connections sending the same health check through a NAT, without TCP timestamps, their
handshakes unseen (the test `test_many_halves_with_the_same_payload`'s capture), and
correlates them like `--bundle` (CPU and peak RSS); `--scan N`: N SYNs of a scanner (IP ID
54321, one source port) to N ports, seen at both points of a router; `--dns N`: N flows
(ports) sending the same DNS query and getting the same answer through a NAT; `--reuse N`:
N connections one after another on one tuple (a client that binds its source port).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from hopcap import npsets  # noqa: E402

sys.path.insert(0, str(HERE / "tests" / "correlate"))
from pcapgen import C2S, S2C, Conv, UConv, View, render, render_dgrams, write  # noqa: E402


def _size(s: str) -> int:
    mult = {"k": 1_000, "M": 1_000_000}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def best(fn: Callable[..., object], *args: object, runs: int = 3) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return min(out)


def cpu_of(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """User + sys seconds of one process running `cmd` in `cwd` (with `cwd` on PYTHONPATH:
    `python -m` imports the package of its working directory), and its peak RSS in MB, as
    GNU time gives them (a child of this process would inherit its high-water mark)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.NamedTemporaryFile("r") as out:
        timed = ["/usr/bin/time", "-o", out.name, "-f", "%U %S %M", *cmd]
        subprocess.run(timed, cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True)
        user, sys_, rss = out.read().split()[-3:]
    return float(user) + float(sys_), int(rss) // 1024


Packets = list[tuple[float, object]]


def _scan(n: int) -> tuple[Packets, Packets]:
    """`n` SYNs of a scanner (IP ID 54321, one source port) seen at both points."""
    pk_a: Packets = []
    pk_b: Packets = []
    for i in range(n):
        c = Conv(client=("198.51.100.7", 61000), server=("203.0.113.80", 1 + i),
                 seed=5000 + i, ts=False, t0=1_763_790_000.0 + i * 0.001)  # fmt: skip
        c.ipid[C2S] = 54321
        c.handshake(answered=False)
        pk_a += render([c], View())
        pk_b += render([c], View(delay=0.0005))
    return pk_a, pk_b


def _dns(n: int) -> tuple[Packets, Packets]:
    """`n` flows (ports) with the same DNS query and answer, through a NAT."""
    pk_a: Packets = []
    pk_b: Packets = []
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x06health\x00\x00\x01\x00\x01"
    for i in range(n):
        u = UConv(client=("198.18.0.10", 20000 + i), server=("203.0.113.80", 53), seed=i,
                  t0=1_763_790_000.0 + i * 0.003)  # fmt: skip
        u.send(C2S, query)
        u.send(S2C, query[:2] + b"\x81\x80" + query[4:])
        nat = {C2S: ("198.19.0.1", 30000 + i, "203.0.113.80", 53),
               S2C: ("203.0.113.80", 53, "198.19.0.1", 30000 + i)}  # fmt: skip
        pk_a += render_dgrams([u], View())
        pk_b += render_dgrams([u], View(delay=0.0005, nat=nat))
    return pk_a, pk_b


def _reuse(n: int) -> tuple[Packets, Packets]:
    """`n` connections one after another on one tuple, seen at both points."""
    pk_a: Packets = []
    pk_b: Packets = []
    for i in range(n):
        c = Conv(client=("198.18.0.10", 5000), server=("203.0.113.80", 80), seed=300 + i,
                 t0=1_763_790_000.0 + i * 0.05)  # fmt: skip
        c.handshake()
        c.request(b"GET /health HTTP/1.1\r\n\r\n")
        c.response(b"ok" * 100)
        c.close()
        pk_a += render([c], View())
        pk_b += render([c], View(delay=0.0005))
    return pk_a, pk_b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1M,4M")
    ap.add_argument("--bundle", type=Path, help="a bundle to correlate end to end")
    ap.add_argument("--before", type=Path, help="a checkout to compare with (with --bundle)")
    ap.add_argument("--same", type=int, help="connections with the same request (see above)")
    ap.add_argument("--scan", type=int, help="scanner SYNs (see above)")
    ap.add_argument("--dns", type=int, help="flows with the same DNS query (see above)")
    ap.add_argument("--reuse", type=int, help="connections on one tuple (see above)")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-npsets"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"numpy {np.__version__}; load {os.getloadavg()[0]:.2f}")
    print(
        "| values | distinct | np.unique | npsets.unique | ratio | np.isin | npsets.isin | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(1)
    for s in args.sizes.split(","):
        n = _size(s)
        # link codes: (half at a) * halves at b + (half at b), mostly distinct
        a = rng.integers(0, 30_000, n) * 30_000 + rng.integers(0, 30_000, n)
        b = np.concatenate([a[::2], rng.integers(0, 30_000**2, n // 2)])
        u0, u1 = best(np.unique, a), best(npsets.unique, a)
        i0, i1 = best(np.isin, a, b), best(npsets.isin, a, b)
        d = npsets.unique(a).shape[0]
        print(f"| {n:,} | {d:,} | {u0 * 1e3:.1f} ms | {u1 * 1e3:.1f} ms | {u0 / u1:.0f}x "
              f"| {i0 * 1e3:.1f} ms | {i1 * 1e3:.1f} ms | {i0 / i1:.0f}x |")  # fmt: skip
    jobs: list[tuple[str, list[str]]] = []
    if args.bundle:
        jobs.append((str(args.bundle), [str(args.bundle.resolve())]))
    if args.same:
        from tests.correlate.test_conns_columns import _same_requests

        args.dir.mkdir(parents=True, exist_ok=True)
        pa, pb = _same_requests(args.dir, args.same)
        jobs.append((f"{args.same} same requests", [f"a={pa}", f"b={pb}", "--jobs", "1"]))
    gens = {"scan": (_scan, "scanner SYNs"), "dns": (_dns, "same DNS queries"),
            "reuse": (_reuse, "connections on one tuple")}  # fmt: skip
    for opt, (gen, what) in gens.items():
        n = getattr(args, opt)
        if n:
            args.dir.mkdir(parents=True, exist_ok=True)
            pair = [write(args.dir / f"{opt}-{p}.pcap", sorted(pk, key=lambda x: x[0]))
                    for p, pk in zip("ab", gen(n), strict=True)]  # fmt: skip
            jobs.append((f"{n} {what}", [f"a={pair[0]}", f"b={pair[1]}", "--jobs", "1"]))
    py = sys.executable
    trees = [("this", HERE)] + ([("before", args.before.resolve())] if args.before else [])
    for name, what in jobs:
        got: dict[str, list[tuple[float, int]]] = {k: [] for k, _ in trees}
        for _ in range(args.runs):
            for k, tree in trees:
                got[k].append(cpu_of([py, "-m", "hopcap", "correlate", *what, "--json"], tree))
        for k, xs in got.items():
            print(f"hopcap correlate {name} --json ({k}): CPU best {min(xs)[0]:.2f} s "
                  f"(runs {', '.join(f'{x:.2f}' for x, _ in xs)}), peak RSS "
                  f"{max(m for _, m in xs)} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
