"""Captures larger than memory: `hopcap correlate` by time slices, with its memory.

Generates firewall_bench.py's busy firewall (two points of one NAT hop, 1 % loss, MSS
clamping) in blocks of `--block` packets, one after the other in time (each block its own
seed, client addresses and NAT pool), appended to two files until they hold `--gb` GB
together: captures larger than this machine's memory. Then

  * `hopcap correlate a=A b=B --json --memory M > v.json` as a new process: wall and CPU
    time, and its peak *anonymous* resident memory (RssAnon, sampled from /proc every
    0.1 s: the heap, not the pages of the mapped capture files, which the kernel can
    drop), checked against the generator (every lost packet a drop, one tcp.mss rewrite
    per direction and connection, nothing else);
  * with `--compare SIZE`: on SIZE packets (in page cache), the same command unsliced and
    forced into ~8 slices (`--memory` small), their CPU and whether the verdict JSON is
    byte for byte the same.

  * with `--huge 3x2M --short 1M`: a few connections of millions of packets that last
    the whole capture among `--short` packets of short ones (the same firewall): the
    sliced run of this code (those connections cut across the slices) against the old
    code's (`--old DIR`, a checkout run with PYTHONPATH: they are read whole into every
    slice) with the same `--memory`, their peak anonymous memory and CPU, each verdict
    checked against the generator and compared byte for byte with the unsliced one.

    .venv/bin/python bench/slice_bench.py --gb 30 --memory 4G --compare 6.4M --dir /tmp/sb
    .venv/bin/python bench/slice_bench.py --gb 0 --huge 3x2M --short 1M --memory 400M \
        --old /tmp/hopcap-main --dir /tmp/sb

  * with `--dgram 3x2M` (and or instead of `--huge`): UDP conversations of millions of
    datagrams (RTP-like streams, a NATed DNS-like exchange), the same comparison; with
    `--quiet N` each falls silent N times for more than a minute (N + 1 flows each); with
    `--esp` every other one is IPsec ESP (between two routers: cut like UDP).

    .venv/bin/python bench/slice_bench.py --gb 0 --dgram 3x2M --short 1M --memory 600M \
        --old /tmp/hopcap-main --dir /tmp/sb
    .venv/bin/python bench/slice_bench.py --gb 0 --dgram 3x2M --quiet 2 --short 1M \
        --memory 600M --old /tmp/hopcap-main --dir /tmp/sb
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from firewall_bench import _payload, _size, check_verdict, generate, ground_truth, point_view
from pcapgen import write_pcap


def _blocks(out: Path, gb: float, block: int) -> tuple[list[Path], dict[str, int]]:
    files = [out / "big_a.pcap", out / "big_b.pcap"]
    for f in files:
        f.unlink(missing_ok=True)
    exp = {"conns": 0, "packets": 0, "drops_c2s": 0, "drops_s2c": 0}
    shift = 0
    b = 0
    while sum(f.stat().st_size for f in files if f.exists()) < gb * 1e9:
        t0 = time.perf_counter()
        g, conns = ground_truth(block, seed=1000 + b)
        g["ts"] = g["ts"] + shift
        shift = int(g["ts"].max()) - 1_763_790_000 * 10**9 + 120 * 10**9  # next: 2 min later
        g["cli"] = g["cli"] + b * 2000  # 198.18.1.0 and up, 2,000 hosts a block
        g["nat"] = g["nat"] + b * 8  # 198.51.100.1 + 8 a block
        g["conn"] = g["conn"] + b * 10**7  # the payload bytes differ between blocks
        lost = g["lost"]
        exp["conns"] += conns
        exp["drops_c2s"] += int((lost & (g["d"] == 0)).sum())
        exp["drops_s2c"] += int((lost & (g["d"] == 1)).sum())
        for name, f in zip(("a", "b"), files, strict=True):
            part = out / f"block_{name}.pcap"
            exp["packets"] += write_pcap(part, point_view(g, name), _payload)
            with f.open("ab") as dst, part.open("rb") as src:
                if b:
                    src.seek(24)  # one file header
                while chunk := src.read(1 << 24):
                    dst.write(chunk)
            part.unlink()
        del g
        size = sum(f.stat().st_size for f in files) / 1e9
        print(f"block {b}: {conns:,} connections, files now {size:.1f} GB "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
        b += 1
    return files, exp


def _anon_kb(pid: int) -> tuple[int, int]:
    """RssAnon and Pss_Anon (kB) of `pid` (Pss: pages shared copy-on-write with a forked
    worker are counted once over the processes that share them)."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    rss = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _tree(pid: int) -> list[int]:
    """`pid` and its children (a sliced run's worker processes)."""
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _run(cmd: list[str], out: Path, err: Path) -> tuple[float, float, int, int]:
    """wall s, cpu s, peak RssAnon of the process, peak Pss_Anon of the process and its
    workers together (bytes) of `cmd`, stdout to `out`."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    peak = peak_tree = 0
    with out.open("wb") as fo, err.open("wb") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd="/")
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, peak_tree
            while not done.is_set():
                peak = max(peak, _anon_kb(p.pid)[0])
                peak_tree = max(peak_tree, sum(_anon_kb(x)[1] for x in _tree(p.pid)))
                time.sleep(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = p.wait()
        done.set()
        th.join()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc:
        raise SystemExit(f"{cmd} failed ({rc}): {err.read_text()[-2000:]}")
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return wall, cpu, peak * 1024, peak_tree * 1024


def _jobs_compare(
    files: list[Path], exp: dict[str, int], memory: str, d: Path, rounds: int
) -> None:
    """The same sliced run with `-j 1` and `-j 2`, interleaved `rounds` times."""
    hopcap = Path(sys.executable).with_name("hopcap")
    n = exp["packets"]
    got: dict[int, bytes] = {}
    times: dict[int, list[float]] = {1: [], 2: []}
    for r in range(rounds):
        for jobs in (1, 2):
            out, err = d / f"v_j{jobs}.json", d / f"err_j{jobs}.txt"
            cmd = [str(hopcap), "correlate", f"a={files[0]}", f"b={files[1]}", "--json",
                   "--memory", memory, "-j", str(jobs)]  # fmt: skip
            load = os.getloadavg()[0]
            w, c, anon, tree = _run(cmd, out, err)
            slices = [x for x in err.read_text().splitlines() if x.endswith("findings")]
            times[jobs].append(w)
            if got.get(jobs) is None:
                got[jobs] = out.read_bytes()
            elif got[jobs] != out.read_bytes():
                print(f"-j {jobs}: the verdict differs between rounds!")
            print(f"round {r + 1} -j {jobs} --memory {memory}: wall {w:.1f} s, cpu {c:.1f} s, "
                  f"{len(slices)} slices, peak RssAnon {anon / 1e6:.0f} MB (main process), "
                  f"Pss_Anon of all its processes {tree / 1e6:.0f} MB; load {load:.1f} before, "
                  f"{os.getloadavg()[0]:.1f} after; {check_verdict(out, exp)}",
                  flush=True)  # fmt: skip
    med = {j: sorted(t)[rounds // 2] for j, t in times.items()}
    print(f"{n:,} packets: -j 1 / -j 2 wall, best of {rounds}: "
          f"{min(times[1]) / min(times[2]):.2f}x (median {med[1] / med[2]:.2f}x); "
          f"verdict JSON identical: {got[1] == got[2]}")  # fmt: skip


def _many(spec: str | None) -> tuple[int, ...]:
    """`3x2M` -> (2000000, 2000000, 2000000)."""
    if not spec:
        return ()
    n, size = spec.split("x")
    return (_size(size),) * int(n)


def _huge(args: argparse.Namespace) -> None:
    """Huge connections: this code's sliced run against the old code's, same budget."""
    huge, dgram = _many(args.huge), _many(args.dgram)
    d = args.dir
    files, exp = generate(args.short, d, huge=huge, dgram=dgram, quiet=args.quiet, esp=args.esp)
    for f in files:  # in page cache: both runs read the same
        with f.open("rb") as fh:
            while fh.read(1 << 24):
                pass
    base = ["correlate", f"a={files[0]}", f"b={files[1]}", "--json", "-j", str(args.huge_jobs)]
    new = [sys.executable, "-c", "from hopcap.cli import main; main()"]
    here = str(Path(__file__).resolve().parents[1])
    runs = [("unsliced", here, []), ("new sliced", here, ["--memory", args.memory])]
    if args.old:
        runs.append(("old sliced", str(args.old), ["--memory", args.memory]))
    print(f"{exp['packets']:,} packets, {exp['conns']:,} connections; TCP ones of "
          f"{', '.join(f'{x:,}' for x in huge) or 'none'}, UDP ones of "
          f"{', '.join(f'{x:,}' for x in dgram) or 'none'} packets (both files"
          f"{f', each silent {args.quiet} times for 75 s' if args.quiet else ''})",
          flush=True)  # fmt: skip
    got = {}
    env0 = dict(os.environ)
    for label, path, extra in runs:
        os.environ["PYTHONPATH"] = path
        out, err = d / f"v_{label.replace(' ', '_')}.json", d / f"err_{label.replace(' ', '_')}.txt"
        try:
            w, c, anon, tree = _run([*new, *base, *extra], out, err)
        finally:
            os.environ.clear()
            os.environ.update(env0)
        slices = [x for x in err.read_text().splitlines() if x.endswith("findings")]
        got[label] = out.read_bytes()
        print(f"{label} {' '.join(extra)}: wall {w:.1f} s, cpu {c:.1f} s, {len(slices)} slices, "
              f"peak RssAnon {anon / 1e6:.0f} MB (all processes: Pss_Anon {tree / 1e6:.0f} MB); "
              f"{check_verdict(out, exp)}", flush=True)  # fmt: skip
    for label in got:
        if label != "unsliced":
            print(f"{label}: verdict JSON identical to the unsliced one: "
                  f"{got[label] == got['unsliced']}")  # fmt: skip
    if not args.keep:
        for f in (*files, *(d / f"v_{x.replace(' ', '_')}.json" for x in got)):
            f.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gb", type=float, default=30.0, help="GB of pcap, both files together")
    ap.add_argument("--block", type=_size, default=_size("4M"), help="packets per block")
    ap.add_argument("--memory", default="4G", help="hopcap correlate --memory")
    ap.add_argument("--compare", type=_size, help="also: unsliced vs sliced on this size")
    ap.add_argument("--compare-slices", type=int, default=8, help="slices of --compare")
    ap.add_argument("--jobs-compare", type=int, default=0, metavar="ROUNDS",
                    help="with --compare: the sliced run with -j 1 and -j 2, ROUNDS times "
                         "interleaved")  # fmt: skip
    ap.add_argument("--jobs", help="-j of the --gb run, or several: 2,1 (default: all cores)")
    ap.add_argument("--reuse", action="store_true",
                    help="--compare: reuse the files --keep left in --dir")  # fmt: skip
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-slicebench"))
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument(
        "--huge",
        metavar="NxSIZE",
        help="N connections of SIZE packets each (both files), cut by slices",
    )
    ap.add_argument(
        "--short",
        type=_size,
        default=_size("1M"),
        help="--huge: packets of the short connections around them",
    )
    ap.add_argument(
        "--dgram",
        metavar="NxSIZE",
        help="(with or without --huge) N UDP conversations of SIZE datagrams each (both "
        "files: RTP-like and NATed DNS-like in turn, firewall_bench.dgram_truth)",
    )
    ap.add_argument(
        "--quiet",
        type=int,
        default=0,
        metavar="N",
        help="--dgram: each UDP conversation falls silent N times for 75 s (N + 1 flows)",
    )
    ap.add_argument(
        "--esp",
        action="store_true",
        help="--dgram: the RTP-like conversations (every other one) are IPsec ESP instead",
    )
    ap.add_argument("--huge-jobs", type=int, default=1, help="--huge: -j of the runs")
    ap.add_argument(
        "--old", type=Path, help="--huge: a checkout of the old code, run with the same --memory"
    )
    args = ap.parse_args()
    hopcap = Path(sys.executable).with_name("hopcap")
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.huge or args.dgram:
        _huge(args)
    if args.compare:
        saved = args.dir / "exp.json"
        if args.reuse and saved.exists():
            files = [args.dir / "fw_a.pcap", args.dir / "fw_b.pcap"]
            exp = json.loads(saved.read_text())
        else:
            files, exp = generate(args.compare, args.dir)
            saved.write_text(json.dumps(exp))
        for f in files:
            with f.open("rb") as fh:
                while fh.read(1 << 24):
                    pass
        n = exp["packets"]
        base = [str(hopcap), "correlate", f"a={files[0]}", f"b={files[1]}", "--json", "-j", "1"]
        got = {}
        # bytes: the verdict's share (~4 kB a connection, ~145 packets each) + 1/N of the
        # packets at 320 bytes, as `hopcap correlate` counts them
        small = str(
            (96 << 20) + args.compare // 145 * 4096 + args.compare * 320 // args.compare_slices
        )
        for label, extra in (("unsliced", []), ("sliced", ["--memory", small])):
            out = args.dir / f"v_{label}.json"
            w, c, anon, _tree_anon = _run([*base, *extra], out, args.dir / f"err_{label}.txt")
            slices = [x for x in (args.dir / f"err_{label}.txt").read_text().splitlines()
                      if x.endswith("findings")]  # fmt: skip
            got[label] = out.read_bytes()
            print(f"{n:,} packets {label}: wall {w:.1f} s, cpu {c:.1f} s, peak RssAnon "
                  f"{anon / 1e6:.0f} MB = {anon / n:.0f} bytes/packet, "
                  f"{len(slices)} slices; {check_verdict(out, exp)}", flush=True)  # fmt: skip
        print(f"verdict JSON identical: {got['unsliced'] == got['sliced']}")
        if args.jobs_compare:
            _jobs_compare(files, exp, small, args.dir, args.jobs_compare)
        if not args.keep:
            for f in (*files, *(args.dir / f"v_{x}.json" for x in got), saved):
                f.unlink()
    if args.gb <= 0:
        return 0
    files, exp = _blocks(args.dir, args.gb, args.block)
    n = exp["packets"]
    gb = sum(f.stat().st_size for f in files) / 1e9
    print(f"\n== {n:,} packets, {exp['conns']:,} connections, {gb:.1f} GB of pcap")
    for jobs in args.jobs.split(",") if args.jobs else [None]:
        cmd = [str(hopcap), "correlate", f"a={files[0]}", f"b={files[1]}", "--json",
               "--memory", args.memory]  # fmt: skip
        if jobs:
            cmd += ["-j", jobs]
        out, err = args.dir / "v.json", args.dir / "err.txt"
        load = os.getloadavg()[0]
        w, c, anon, tree = _run(cmd, out, err)
        slices = [x for x in err.read_text().splitlines() if x.endswith("findings")]
        print(f"hopcap correlate --memory {args.memory} -j {jobs or 'all'}: wall {w:.0f} s "
              f"({n / w / 1e6:.2f} M packets/s), cpu {c:.0f} s, {len(slices)} slices; peak "
              f"RssAnon {anon / 1e6:.0f} MB = {anon / n:.1f} bytes/packet (Pss_Anon of all "
              f"its processes {tree / 1e6:.0f} MB); load {load:.1f} before, "
              f"{os.getloadavg()[0]:.1f} after; {check_verdict(out, exp)}", flush=True)  # fmt: skip
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if not args.keep:
        for f in (*files, out):
            f.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
