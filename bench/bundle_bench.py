"""Writing the evidence bundle of a large capture set, against doing it by hand.

    .venv/bin/python bench/bundle_bench.py --dir D [--sizes 1.6M] [--runs 3] [--reuse]
        [--out O] [--drop-caches] [--before CHECKOUT]

For every size, the firewall workload of `firewall_bench.py` (two points of a NAT hop:
thousands of short connections) is generated into D/<size>/ (`--reuse`: kept from a run
before), then, interleaved, `--runs` times, each as a new process:

- `hopcap correlate a=A b=B --json` (the correlation alone),
- `hopcap correlate a=A b=B -o O/bundle` (the correlation and the bundle: the captures
  copied in, merged.pcapng with its comments, verdict.json, the reports, every file's
  sha256 in the manifest),
- by hand, the reference: `mergecap -I none -w O/hand/merged.pcapng A B`, `cp A B O/hand/` and
  `sha256sum` of the three files (what a bundle holds besides the verdict and reports,
  without comments), as three processes one after the other (coreutils' sha256sum does
  not use the CPU's SHA instructions where OpenSSL, hence hashlib, does: ~2.5x slower
  here, and most of the reference's time); and mergecap alone;

printed: wall and CPU (user + sys, with children) of each, the best wall of each, the
bundle's time less the correlation's, and its ratio to the reference's. The bundle's
merged.pcapng is checked to hold mergecap's packets, each point's in the same order.
`--drop-caches` (root) empties the page cache before the runs and reads the captures
back in: on a machine whose memory is full of cache, fresh pages (the files written)
come from reclaim, whose cost varies run to run by seconds. `--before CHECKOUT` also
runs the bundle with the code of another checkout (e.g. a `git worktree` of an older
commit).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

SIZES = {"100k": 100_000, "400k": 400_000, "1.6M": 1_600_000, "6.4M": 6_400_000}


def _timed(cmds: list[list[str]], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) of commands run one after the other (stdout discarded)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    for cmd in cmds:
        # (stderr: hopcap's progress lines; shown if the command fails)
        got = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        if got.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({got.returncode}):\n{got.stderr.decode()}")
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _fresh(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    return d


def _same_packets(merged: Path, hand: Path) -> bool:
    """The two merged files hold the same packets, each point's in its file's order (the
    bundle's aligns the points' clocks before merging, mergecap takes the times as they
    are, so the points interleave differently; its blocks carry comments): a sha256 of
    each interface's packets' bytes, in order."""
    from hopcap.bundle.pcapio import PcapReader

    def sums(p: Path) -> list[str]:
        hs: dict[int, Any] = {}
        with PcapReader(p) as r:
            for pkt in r:
                hs.setdefault(pkt.interface, hashlib.sha256()).update(pkt.data)
        return [hs[k].hexdigest() for k in sorted(hs)]

    return sums(merged) == sums(hand)


def bench(a: Path, b: Path, out: Path, runs: int, before: Path | None) -> None:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pts = [f"a={a}", f"b={b}"]
    kinds: dict[str, tuple[Path, list[list[str]]]] = {
        "correlate --json": (ROOT, [[sys.executable, "-m", "hopcap", "correlate", *pts, "--json"]]),
        "correlate -o (bundle)": (
            ROOT,
            [[sys.executable, "-m", "hopcap", "correlate", *pts, "-o", str(out / "bundle")]],
        ),
        "by hand (mergecap, cp, sha256sum)": (
            ROOT,
            [
                [
                    "mergecap",
                    "-I",
                    "none",
                    "-w",
                    str(out / "hand" / "merged.pcapng"),
                    str(a),
                    str(b),
                ],
                ["cp", str(a), str(b), str(out / "hand")],
                ["sha256sum", *(str(out / "hand" / n) for n in ("merged.pcapng", a.name, b.name))],
            ],
        ),
    }
    kinds["mergecap alone"] = (ROOT, [kinds["by hand (mergecap, cp, sha256sum)"][1][0]])
    if before is not None:
        kinds["correlate -o (bundle), before"] = (
            before,
            [[sys.executable, "-m", "hopcap", "correlate", *pts, "-o", str(out / "before")]],
        )
    best: dict[str, tuple[float, float]] = {}
    for r in range(runs):
        for name, (code, cmds) in kinds.items():
            where = cmds[0][cmds[0].index("-o") + 1] if "-o" in cmds[0] else None
            if where is not None:
                _fresh(Path(where))
            if "hand" in name:
                _fresh(out / "hand").mkdir(parents=True)
            load = os.getloadavg()[0]
            wall, cpu = _timed(cmds, cwd=code, env={**env, "PYTHONPATH": str(code)})
            print(f"  run {r + 1} {name}: wall {wall:.2f} s, cpu {cpu:.2f} s (load {load:.2f})")
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    same = _same_packets(out / "bundle" / "merged.pcapng", out / "hand" / "merged.pcapng")
    print(f"  merged.pcapng holds mergecap's packets, each point's in order: {same}")
    c, bnd, hand = (best[k] for k in list(kinds)[:3])
    print(f"  best of {runs} (wall / cpu):")
    for name, (w, u) in best.items():
        print(f"    {name:36s} {w:6.2f} / {u:6.2f} s")
    print(
        f"  the bundle beyond the correlation: {bnd[0] - c[0]:.2f} s wall; by hand "
        f"{hand[0]:.2f} s: {(bnd[0] - c[0]) / hand[0]:.2f}x the reference; whole "
        f"`correlate -o` {bnd[0] / hand[0]:.2f}x"
    )
    for d in ("bundle", "before", "hand"):
        shutil.rmtree(out / d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--sizes", default="1.6M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--out", type=Path, help="where bundles are written (default: DIR/out)")
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--before", type=Path, help="a checkout of other code to run too")
    o = ap.parse_args()
    for size in o.sizes.split(","):
        d = o.dir / size
        a, b = d / "fw_a.pcap", d / "fw_b.pcap"
        if not (o.reuse and a.exists() and b.exists()):
            from firewall_bench import generate

            d.mkdir(parents=True, exist_ok=True)
            generate(SIZES[size], d)
        if o.drop_caches:
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            for f in (a, b):
                with f.open("rb") as fh:
                    while fh.read(1 << 24):
                        pass
        mb = (a.stat().st_size + b.stat().st_size) / 1e6
        print(f"{size}: {mb:,.0f} MB of captures")
        bench(a, b, o.out or d / "out", o.runs, o.before)


if __name__ == "__main__":
    main()
