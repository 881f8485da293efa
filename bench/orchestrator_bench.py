"""Orchestrator speed on the lab, as ratios against a reference run in the same go.

    sudo .venv/bin/python bench/orchestrator_bench.py [--runs 3] [--size-mb 200]

- start skew: spread of tcpdump "listening" times across points, with the lab's 4 hosts
  (6 points) and with 50 inventory hosts (50 points; they are aliases of the lab's 4 sshd,
  so this measures hopcap's side of the fan-out, not 50 machines);
- pull throughput: hopcap's SFTP pull (aes128-gcm preferred) of one file, and its pull
  over an exec channel (`cat`, for servers without SFTP), against `scp` of the same file
  over the same management link;
- end to end: `hopcap run` on the lab minus its capture window.
Builds its own lab (prefix "hcb") and removes it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hopcap import lab
from hopcap.inventory import load
from hopcap.model import Host, Inventory
from hopcap.orchestrator.run import RunOptions, run_capture
from hopcap.orchestrator.transport import connect

PREFIX = "hcb"
MGMT = "198.19.220.0/24"


def skew(inv: Inventory, runs: int) -> tuple[list[float], list[str]]:
    """Start skew per run (over the points that listened), and what failed."""
    out: list[float] = []
    failed: list[str] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            rec = asyncio.run(
                run_capture(inv, RunOptions(out=Path(d), collect_facts=False, window_s=3))
            )
            assert rec.start_skew_s is not None
            out.append(rec.start_skew_s)
            failed += list(rec.errors)
    return out, failed


def fifty(inv: Inventory) -> Inventory:
    """50 capture hosts, each an alias of one of the lab's hosts (capturing on lo)."""
    base = [inv.hosts[n] for n in inv.path]
    hosts: dict[str, Host] = {}
    for i in range(50):
        b = base[i % len(base)]
        name = f"h{i:02d}"
        hosts[name] = Host(
            name=name,
            address=b.address,
            user=b.user,
            identity=b.identity,
            known_hosts=b.known_hosts,
            role="router" if 0 < i < 49 else ("client" if i == 0 else "server"),
            capture=("lo",),
        )
    return Inventory(source="bench", hosts=hosts, path=tuple(hosts), window_s=1)


async def pull_vs_scp(inv: Inventory, size_mb: int, runs: int) -> tuple[float, float, float]:
    srv = inv.hosts["srv"]
    remote = f"/var/tmp/hopcap-bench-{size_mb}mb.bin"
    local = Path(tempfile.mkdtemp()) / "x.bin"
    # the lab's hosts share this machine's file system: the file exists "remotely" once made
    subprocess.run(
        ["dd", "if=/dev/urandom", f"of={remote}", "bs=1M", f"count={size_mb}"],
        check=True,
        capture_output=True,
    )
    try:
        t = await connect(srv)
        ours, theirs, exe = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            await t.get(remote, local)
            ours.append(size_mb / (time.perf_counter() - t0))
            local.unlink()
            # the pull of a host without SFTP: `cat` over an exec channel
            t0 = time.perf_counter()
            proc = await t.spawn(f"cat {remote}", stdout_to=local)
            assert (await proc.wait(timeout=600)).ok
            exe.append(size_mb / (time.perf_counter() - t0))
            assert local.stat().st_size == size_mb * 1024 * 1024
            local.unlink()
            t0 = time.perf_counter()
            subprocess.run(
                [
                    "scp",
                    "-q",
                    "-i",
                    str(srv.identity),
                    "-o",
                    f"UserKnownHostsFile={srv.known_hosts}",
                    "-o",
                    "StrictHostKeyChecking=yes",
                    f"root@{srv.address}:{remote}",
                    str(local),
                ],
                check=True,
            )
            theirs.append(size_mb / (time.perf_counter() - t0))
            local.unlink()
        await t.close()
        return statistics.median(ours), statistics.median(theirs), statistics.median(exe)
    finally:
        Path(remote).unlink(missing_ok=True)


def end_to_end(inventory: Path, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "hopcap", "run", "-i", str(inventory), "--out", d + "/b"],
                check=True,
                capture_output=True,
            )
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=200)
    args = ap.parse_args()
    info = lab.up(PREFIX, mgmt_net=MGMT)
    try:
        inv = load(info.inventory)
        s4, f4 = skew(inv, args.runs)
        s50, f50 = skew(fifty(inv), args.runs)
        for f in f4 + f50:
            print(f"  failed: {f}")
        print(
            f"start skew, 4 hosts / 6 points: median {statistics.median(s4) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{x * 1000:.0f}' for x in s4)} ms)"
        )
        print(
            f"start skew, 50 hosts / 50 points: median {statistics.median(s50) * 1000:.0f} ms "
            f"(runs: {', '.join(f'{x * 1000:.0f}' for x in s50)} ms)"
        )
        ours, scp, exe = asyncio.run(pull_vs_scp(inv, args.size_mb, args.runs))
        print(
            f"pull {args.size_mb} MB: hopcap {ours:.0f} MB/s, scp {scp:.0f} MB/s, "
            f"ratio {ours / scp:.2f}x; over exec (no SFTP) {exe:.0f} MB/s, "
            f"ratio {exe / scp:.2f}x"
        )
        e2e = end_to_end(info.inventory, args.runs)
        # the lab's repro (a 300 kB curl) ends the window early; report the whole run
        print(
            f"hopcap run end to end on the lab (repro ~0.1 s): median "
            f"{statistics.median(e2e):.1f} s (runs: {', '.join(f'{x:.1f}' for x in e2e)} s)"
        )
    finally:
        lab.down(PREFIX)


if __name__ == "__main__":
    main()
