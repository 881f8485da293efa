"""`hopcap run` with big captures on the lab, phase by phase, with references in the same go.

    sudo .venv/bin/python bench/run_scale_bench.py [--rounds 3] [--requests 40000]
         [--short 3000] [--big 300] [--prefix rsb] [--keep-lab] [--inventory INV]

Builds its own lab (prefix "rsb", or uses `--inventory` of a lab that is up) and drives,
from the client through fw (NAT) and lb (haproxy, `http-server-close`) to srv, with the
lab's own curl: `--requests` keep-alive requests on 16 client connections (each a new
short connection between lb and srv), `--short` short connections (`Connection: close`)
and `--big` downloads of the 300 kB /big.bin. With the defaults each point captures some
130,000 (client side) to 500,000 (server side) packets, ~0.75 GB in all, in a window of
~25 s on a 2-core machine.

1. `hopcap -v run` once, as a user runs it: every phase as the user waits for it, from
   the progress lines (each stamped as it arrives) and the `-v` phase lines.
2. The pull: the run's captures put back on their hosts, then, interleaved, `--rounds`
   times each: hopcap's collect phase (listing, host digests, pulls, verification, the
   local sha256), every file at once with `ssh HOST cat FILE > x` (the plain reference:
   no verification) and with `scp`. Best of the rounds, MB/s and ratios.
3. What follows the pull, on the same captures (best of `--rounds`): correlation, the
   bundle (with the shares of merged.pcapng and of hashing, which are being rewritten
   elsewhere), the terminal output.

Wall-clock times on a shared machine: read the ratios, and the load average printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from hopcap import lab
from hopcap.inventory import load
from hopcap.model import CapturePoint, Inventory, RunRecord
from hopcap.orchestrator.capture import CaptureSpec, RunningCapture, safe_name
from hopcap.orchestrator.run import CaptureRun, RunOptions
from hopcap.orchestrator.session import close_all, connect_all, no_events, prepare_host

PREFIX = "rsb"  # its management network is derived from the prefix (lab.up)
VIP = "http://203.0.113.80"


def repro(requests: int, short: int, big: int) -> str:
    """The heavy repro step, run on the client: three curls at once."""
    parts = []
    if requests:
        parts.append(f"curl -s --parallel --parallel-max 16 -o /dev/null '{VIP}/#[1-{requests}]'")
    if short:
        parts.append(
            "curl -s --parallel --parallel-max 4 -H 'Connection: close' -o /dev/null "
            f"'{VIP}/#[1-{short}]'"
        )
    if big:
        parts.append(
            "curl -s --parallel --parallel-max 2 -H 'Connection: close' -o /dev/null "
            f"'{VIP}/big.bin#[1-{big}]'"
        )
    return " & ".join(parts) + "; wait"


def heavy_inventory(src: Path, dst: Path, command: str, window_s: int) -> None:
    lines = [
        line for line in src.read_text().splitlines() if not line.startswith(("repro:", "window:"))
    ]
    lines.append(f"window: {window_s}s")
    lines.append(f'repro: {{"on": client, run: {json.dumps(command)}}}')
    dst.write_text("\n".join(lines) + "\n")


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------ 1. the run as a user sees it

_PHASE = re.compile(r"DEBUG: phase (\w+): ([\d.]+) s")


def user_run(inventory: Path, out: Path) -> dict[str, Any]:
    """`hopcap -v run` in a child process; its lines stamped as they arrive."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hopcap", "-v", "run", "-i", str(inventory), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str, str]] = []

    def pump(stream: Any, tag: str) -> None:
        for line in stream:
            lines.append((time.perf_counter() - t0, tag, line.rstrip("\n")))

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, "out")),
        threading.Thread(target=pump, args=(proc.stderr, "err")),
    ]
    for p in pumps:
        p.start()
    rc = proc.wait()
    for p in pumps:
        p.join()
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines.sort()
    phases: dict[str, float] = {}
    for _t, _tag, line in lines:
        m = _PHASE.search(line)
        if m:
            phases[m.group(1)] = float(m.group(2))

    def first(pred: Callable[[str, str], bool]) -> float | None:
        return next((t for t, tag, line in lines if pred(tag, line)), None)

    correlating = first(lambda tag, line: line.startswith("correlating"))
    verdict = first(lambda tag, line: tag == "out")
    if correlating is not None and verdict is not None:
        # correlation, the bundle and the terminal output, as the user waits for them
        phases["after pull (correlate+bundle+print)"] = verdict - correlating
    manifest = json.loads((out / "manifest.json").read_text()) if rc == 0 else {}
    return {
        "rc": rc,
        "total": total,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "phases": phases,
        "points": [
            (p["name"], p.get("packets"), p.get("kernel_drops"), (out / p["file"]).stat().st_size)
            for p in manifest.get("points", [])
            if p.get("file")
        ],
        "stdout_lines": sum(1 for _t, tag, _l in lines if tag == "out"),
        "stderr_lines": sum(1 for _t, tag, _l in lines if tag == "err"),
    }


# ------------------------------------------------------------------ 2. the pull


def place_captures(pcaps: Path, remote: Path) -> dict[str, list[tuple[str, Path]]]:
    """The captures back on their hosts (the lab's hosts share this file system): host ->
    [(interface, remote file)], one directory per host, named as a capture names them."""
    shutil.rmtree(remote, ignore_errors=True)
    out: dict[str, list[tuple[str, Path]]] = {}
    for p in sorted(pcaps.glob("*.pcap")):
        host, _, iface = p.stem.partition("_")
        d = remote / host
        d.mkdir(parents=True, exist_ok=True)
        dst = d / f"{safe_name(iface)}.pcap"
        shutil.copyfile(p, dst)
        out.setdefault(host, []).append((iface, dst))
    return out


async def hopcap_collect(
    inv: Inventory, files: dict[str, list[tuple[str, Path]]], local: Path
) -> float:
    """hopcap's collect phase (clock, listing, digests, pulls, checks) over the placed
    files, as after a run: seconds."""
    sessions = await connect_all(inv, list(files), no_events)
    await asyncio.gather(*(prepare_host(s, clock=False) for s in sessions.values()))
    run = CaptureRun(inv, RunOptions(out=local, collect_facts=False), no_events, None)
    run.sessions = sessions
    for host, fs in files.items():
        s = sessions[host]
        assert s.transport is not None
        for iface, path in fs:
            spec = CaptureSpec(
                point=CapturePoint(host, iface),
                remote_dir=str(path.parent),
                filter="tcp",
                bound_s=60,
                ring_mb=1000,
                sudo=False,
                drop_to_root=False,
            )
            run.running[spec.point.name] = RunningCapture(s.transport, spec)
    run.pcaps.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    await run.collect()
    dt = time.perf_counter() - t0
    await close_all(sessions)
    if run.point_errors or len(run.pulled) != sum(map(len, files.values())):
        raise SystemExit(f"hopcap's pull failed: {run.point_errors}")
    return dt


def plain_pull(
    inv: Inventory, files: dict[str, list[tuple[str, Path]]], local: Path, how: str
) -> float:
    """Every file at once with `ssh HOST cat FILE > x` or with `scp`: seconds."""
    local.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    procs = []
    for host, fs in files.items():
        h = inv.hosts[host]
        opts = [
            "-i",
            str(h.identity),
            "-o",
            f"UserKnownHostsFile={h.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        for _iface, path in fs:
            dst = local / f"{host}_{path.name}"
            if how == "cat":
                with dst.open("wb") as f:
                    procs.append(
                        subprocess.Popen(
                            ["ssh", *opts, f"root@{h.address}", "cat", str(path)], stdout=f
                        )
                    )
            else:
                procs.append(
                    subprocess.Popen(["scp", "-q", *opts, f"root@{h.address}:{path}", str(dst)])
                )
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"{how} failed")
    return time.perf_counter() - t0


def pulls(inv: Inventory, pcaps: Path, work: Path, rounds: int) -> dict[str, list[float]]:
    files = place_captures(pcaps, work / "remote")
    times: dict[str, list[float]] = {"hopcap": [], "ssh cat": [], "scp": []}
    for _ in range(rounds):
        for how in times:
            local = work / "local"
            shutil.rmtree(local, ignore_errors=True)
            if how == "hopcap":
                times[how].append(asyncio.run(hopcap_collect(inv, files, local)))
            else:
                times[how].append(plain_pull(inv, files, local, how.split()[-1]))
    shutil.rmtree(work / "local", ignore_errors=True)
    shutil.rmtree(work / "remote", ignore_errors=True)
    return times


# ------------------------------------------------------------------ 3. after the pull


@contextlib.contextmanager
def timing(targets: list[tuple[Any, str, str]], into: dict[str, float]) -> Iterator[None]:
    """Sum the time spent in each `getattr(obj, name)` under `label` while inside."""
    saved = []
    for obj, name, label in targets:
        f = getattr(obj, name, None)
        if f is None:  # not in this version of hopcap
            continue
        saved.append((obj, name, f))

        def wrapped(*a: Any, _f: Any = f, _label: str = label, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                into[_label] = into.get(_label, 0.0) + time.perf_counter() - t

        setattr(obj, name, functools.wraps(f)(wrapped))
    try:
        yield
    finally:
        for obj, name, f in saved:
            setattr(obj, name, f)


def after_pull(record: RunRecord, pcaps: Path, work: Path) -> dict[str, float]:
    """Correlation, the bundle and the terminal output of `run`, on copies of the captures."""
    import hopcap.bundle.core as core
    from hopcap import cli
    from hopcap.bundle import write_bundle
    from hopcap.model import Verdict

    out = work / "bundle"
    shutil.rmtree(out, ignore_errors=True)
    (out / "pcaps").mkdir(parents=True)
    caps = []
    for c in record.captures:
        if c.pcap is not None:
            dst = out / "pcaps" / c.pcap.name
            shutil.copyfile(pcaps / c.pcap.name, dst)
            c = replace(c, pcap=dst)
        caps.append(c)
    record = replace(record, captures=tuple(caps))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    verdict, crash = cli._correlate_kept(record, None)
    times["correlate"] = time.perf_counter() - t0
    if crash is not None:
        raise SystemExit(f"correlation failed: {crash}")
    parts = [
        (core, "write_merged", "  merged.pcapng (write_merged)"),
        # summed over the files, in whichever thread hashed them
        (core, "_sha256", "  sha256 of files (summed)"),
        (core, "render_markdown", "  report.md"),
        (core, "render_html", "  report.html"),
        (core, "write_facts", "  facts"),
        (Verdict, "to_dict", "  verdict to_dict"),
        (Verdict, "from_dict", "  verdict from_dict"),
        (core, "_dump", "  json dumps + write"),
    ]
    shares: dict[str, float] = {}
    with timing(parts, shares):
        t0 = time.perf_counter()
        write_bundle(out, record, verdict)
        times["bundle"] = time.perf_counter() - t0
    times.update((label, shares.get(label, 0.0)) for _obj, _name, label in parts)
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        cli._print_verdict(verdict)
    times["terminal output"] = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return times


def record_of(bundle: Path) -> RunRecord:
    """The run's record, as the orchestrator made it, rebuilt from the bundle's manifest."""
    from hopcap.model import HostFacts, PointCapture

    m = json.loads((bundle / "manifest.json").read_text())
    captures = []
    for p in m["points"]:
        host, _, iface = p["name"].partition(":")
        captures.append(
            PointCapture(
                point=CapturePoint(host, iface),
                pcap=bundle / p["file"] if p.get("file") else None,
                packets=p.get("packets"),
                kernel_drops=p.get("kernel_drops"),
                clock_offset_s=p.get("clock_offset_s"),
                clock_error_s=p.get("clock_error_s"),
                start_ts=p.get("start_ts"),
                ready_ts=p.get("ready_ts"),
                stop_ts=p.get("stop_ts"),
                # as pulled: the bundle checks the file against it (one more read)
                sha256=(m.get("files") or {}).get(p.get("file")),
            )
        )
    facts = []
    for d in sorted((bundle / "facts").iterdir()) if (bundle / "facts").is_dir() else []:
        if d.is_dir():
            before, after = (
                {f.stem: f.read_text() for f in (d / w).glob("*.txt")} for w in ("before", "after")
            )
            facts.append(HostFacts(host=d.name, before=before, after=after, missing={}))
    return RunRecord(
        run_id=m["run_id"],
        started_ts=m["started_ts"],
        finished_ts=m["finished_ts"],
        inventory=m.get("inventory") or {},
        captures=tuple(captures),
        facts=tuple(facts),
        repro=m.get("repro"),
    )


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--short", type=int, default=3000)
    ap.add_argument("--big", type=int, default=300)
    ap.add_argument("--window", type=int, default=90, help="the run's window (the repro ends it)")
    ap.add_argument("--prefix", default=PREFIX)
    ap.add_argument("--mgmt-net", help="default: derived from the prefix")
    ap.add_argument("--inventory", type=Path, help="a lab that is up (else one is built)")
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument(
        "--work", type=Path, help="keep the run's bundle here (default: a temporary dir)"
    )
    ap.add_argument("--bundle", type=Path, help="skip step 1: use this run's bundle")
    ap.add_argument("--steps", default="123", help="which steps (default 123)")
    args = ap.parse_args()

    on_lab = "1" in args.steps or "2" in args.steps  # step 3 works on the bundle alone
    built = on_lab and args.inventory is None
    work = args.work or Path(tempfile.mkdtemp(prefix="hopcap-runscale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        command = repro(args.requests, args.short, args.big)
        heavy = work / "heavy.yml"
        if on_lab:
            inventory = args.inventory or lab.up(args.prefix, mgmt_net=args.mgmt_net).inventory
            heavy_inventory(inventory, heavy, command, args.window)
        bundle = args.bundle or work / "run"
        print(f"load average {load_avg()}")
        if "1" in args.steps and args.bundle is None:
            step_run(heavy, bundle, command)
        if "2" in args.steps:
            step_pull(load(heavy), bundle / "pcaps", work, args.rounds)
        if "3" in args.steps:
            step_after(bundle, work, args.rounds)
    finally:
        if built and not args.keep_lab:
            lab.down(args.prefix)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def step_run(heavy: Path, bundle: Path, command: str) -> None:
    print(f"1. hopcap -v run, repro: {command}")
    shutil.rmtree(bundle, ignore_errors=True)
    r = user_run(heavy, bundle)
    if r["rc"] not in (0, 4):
        raise SystemExit(f"hopcap run exited {r['rc']}")
    for name, packets, drops, size in r["points"]:
        print(f"   {name:12s} {packets:>9,} packets  {drops} kernel drops  {size / 1e6:.0f} MB")
    for phase, s in r["phases"].items():
        print(f"   {phase:40s} {s:8.3f} s")
    print(
        f"   {'total':40s} {r['total']:8.3f} s (CPU, hopcap and children: {r['cpu']:.1f} s); "
        f"{r['stdout_lines']} lines on stdout, {r['stderr_lines']} on stderr"
    )
    print(f"load average {load_avg()}")


def step_pull(inv: Inventory, pcaps: Path, work: Path, rounds: int) -> None:
    files = list(pcaps.glob("*.pcap"))
    total = sum(p.stat().st_size for p in files)
    print(f"2. pull of the {len(files)} captures ({total / 1e6:.0f} MB), best of {rounds}:")
    t = pulls(inv, pcaps, work, rounds)
    best = {k: min(v) for k, v in t.items()}
    for k, v in t.items():
        print(
            f"   {k:8s} {best[k]:6.2f} s  {total / 1e6 / best[k]:5.0f} MB/s  "
            f"(runs {', '.join(f'{x:.2f}' for x in v)})"
        )
    print(
        f"   hopcap / ssh cat: {best['hopcap'] / best['ssh cat']:.2f}x the time; "
        f"hopcap / scp: {best['hopcap'] / best['scp']:.2f}x"
    )
    print(f"load average {load_avg()}")


def step_after(bundle: Path, work: Path, rounds: int) -> None:
    print(f"3. after the pull, best of {rounds}:")
    record = record_of(bundle)
    runs = [after_pull(record, bundle / "pcaps", work) for _ in range(rounds)]
    for k in runs[0]:
        print(f"   {k:45s} {min(x[k] for x in runs):8.3f} s")
    print(f"load average {load_avg()}")


if __name__ == "__main__":
    main()
