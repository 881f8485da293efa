"""`hopcap run`: capture on every point at once, run the repro step, stop, pull, collect facts.

The sequence (each step concurrent across hosts):
connect -> probe -> resolve points -> clean stale + make remote dirs -> clock + facts (before)
-> start every tcpdump -> barrier on "listening" -> repro (or wait for the window / Ctrl-C)
-> SIGINT every tcpdump -> facts + clock (after) -> pull with sha256 check -> remove remote
dirs -> close. Cleanup runs in `finally`, also when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hopcap.capfile import CaptureFileError, concat_pcaps
from hopcap.errors import CaptureError, HopcapError, TransportError
from hopcap.model import CapturePoint, HostFacts, Inventory, PointCapture, RunRecord, pcap_filename
from hopcap.orchestrator.capture import (
    RING_FILES,
    CaptureSpec,
    CaptureStats,
    RunningCapture,
    build_filter,
    ssh_exclusion,
)
from hopcap.orchestrator.facts import clock_offset, collect_facts
from hopcap.orchestrator.fortigate import (
    ANY,
    FortiGateCapture,
    SnifferSpec,
    fortigate_facts,
    own_session_filter,
    probe_fortigate,
    sniffer_spec,
)
from hopcap.orchestrator.session import (
    Connector,
    Event,
    EventSink,
    HostCaps,
    HostSession,
    capture_error,
    close_all,
    connect_all,
    hosts_to_connect,
    make_remote_dir,
    no_events,
    probe,
    remove_remote_dir,
    resolve_all_points,
    ssh_connector,
)
from hopcap.orchestrator.transport import CommandResult, quote

T = TypeVar("T")

GRACE_S = 15.0  # the remote bound is window + grace: room for the repro to end and for stopping
SETTLE_S = 1.0  # after the repro, let the last packets cross every point
PULL_RETRIES = 3
MONITOR_INTERVAL_S = 2.0
STOP_ALL_TIMEOUT_S = 40.0
MAX_RING_BYTES = 2_000_000_000  # per point, unless the disk has less
STREAM_BELOW_KB = 64 * 1024  # a host with less free space streams its captures instead


# what happens while the captures run: (inventory, sessions, window, stop, emit) ->
# (interrupted, repro record); `_window` by default, `schedule.repeat_window` for --repeat
WindowFn = Callable[
    [Inventory, dict[str, HostSession], float, asyncio.Event, EventSink],
    Awaitable[tuple[bool, dict[str, object] | None]],
]


@dataclass
class RunOptions:
    out: Path  # the bundle directory; pcaps are pulled into out/pcaps
    run_id: str = ""
    require_all: bool = False
    collect_facts: bool = True
    window_s: float | None = None  # overrides the inventory's window
    connector: Connector = ssh_connector  # tests substitute transports here
    stream: bool | None = None  # True: stream every capture; None: only hosts short of disk
    window_fn: WindowFn | None = None  # None: `_window` (the repro once, or the window)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


async def run_capture(
    inv: Inventory,
    opts: RunOptions,
    *,
    emit: EventSink = no_events,
    stop: asyncio.Event | None = None,
) -> RunRecord:
    """Run a capture over the whole inventory and return what happened.

    Never raises for a host's failure: that host's points get `error`, the record says
    `complete: False`. Raises `CaptureError` only when `require_all` and a host failed, or
    when no point at all could capture.
    """
    run_id = opts.run_id or new_run_id()
    window = opts.window_s if opts.window_s is not None else inv.window_s
    bound = window + GRACE_S
    stop = stop or asyncio.Event()
    started = time.time()
    pcaps = opts.out / "pcaps"
    pcaps.mkdir(parents=True, exist_ok=True)

    errors: list[str] = []
    sessions: dict[str, HostSession] = {}
    running: dict[str, RunningCapture] = {}
    stats: dict[str, CaptureStats] = {}
    point_errors: dict[str, str] = {}
    facts_before: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    facts_after: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    clocks: dict[str, tuple[float, float]] = {}
    clocks_after: dict[str, tuple[float, float]] = {}
    repro_result: dict[str, object] | None = None
    interrupted = False
    pulled: dict[str, tuple[Path, str]] = {}

    try:
        try:
            sessions = await connect_all(inv, hosts_to_connect(inv), emit, opts.connector)

            await asyncio.gather(*(_prepare(s, clocks) for s in sessions.values() if s.ok))

            path_sessions = [sessions[n] for n in inv.path if n in sessions]
            await resolve_all_points(sessions, inv)

            for s in sessions.values():
                if s.error:
                    errors.append(s.error)
                    emit(Event("failed", host=s.name, text=s.error))
            if opts.require_all and errors:
                raise CaptureError(
                    "not every host is ready and --require-all was given:\n  " + "\n  ".join(errors)
                )

            if opts.collect_facts:
                facts_before.update(await _facts(sessions))

            # the remote directories are made just before the captures start, so that their
            # expiry (after which a later run may remove them) follows the capture's bound
            async def mkdir(s: HostSession) -> None:
                try:
                    await make_remote_dir(s, run_id, bound)
                except HopcapError as exc:
                    s.error = str(exc)
                    errors.append(s.error)
                    emit(Event("failed", host=s.name, text=s.error))

            await asyncio.gather(
                *(mkdir(s) for s in path_sessions if s.ok and s.points and s.host.kind == "linux")
            )

            # start every capture at once, then the barrier
            specs: list[tuple[HostSession, CaptureSpec]] = []
            for s in path_sessions:
                if not s.ok or not s.points:
                    continue
                if s.host.kind == "fortigate":  # one sniffer for every point of the box
                    assert s.transport is not None
                    bpf = own_session_filter(s.transport, inv.filter)
                    specs.append((s, sniffer_spec(s.name, s.host.capture, bpf, bound)))
                    continue
                per_point = _ring_mb(s.free_kb, len(s.points))
                for p in s.points:
                    spec = CaptureSpec(
                        point=p,
                        ring_mb=per_point,
                        stream=bool(opts.stream) or (opts.stream is None and _short_of_disk(s)),
                        **host_spec_args(s, inv.filter, bound),
                    )
                    specs.append((s, spec))

            await start_captures(specs, pcaps, running, point_errors, emit)
            live = [n for n in running if n not in point_errors]
            if not live:
                raise CaptureError(
                    "no capture point could start:\n  "
                    + "\n  ".join(list(point_errors.values()) + errors)
                )
            if opts.require_all and point_errors:
                raise CaptureError(
                    "a capture failed and --require-all was given:\n  "
                    + "\n  ".join(point_errors.values())
                )

            # the repro step, or the window, or the user's Ctrl-C, whichever comes first
            monitor = asyncio.ensure_future(
                _monitor({n: rc for n, rc in running.items() if n not in point_errors}, emit)
            )
            try:
                interrupted, repro_result = await (opts.window_fn or _window)(
                    inv, sessions, window, stop, emit
                )
            finally:
                monitor.cancel()
        finally:
            # stop whatever is running, also when the run is being cancelled (a second
            # Ctrl-C): the stop itself is shielded, so no tcpdump is left behind
            await stop_captures(running, point_errors, stats, emit)

        if opts.collect_facts:
            facts_after.update(await _facts(sessions))

        async def clock_end(s: HostSession) -> None:
            if s.ok and s.host.kind == "linux":
                with contextlib.suppress(HopcapError):
                    clocks_after[s.name] = await clock_offset(
                        s.transport,  # type: ignore[arg-type]
                        date_ns=s.caps.date_ns,
                    )

        await asyncio.gather(*(clock_end(s) for s in sessions.values()))

        async def pull(name: str, rc: RunningCapture) -> None:
            if isinstance(rc, FortiGateCapture):
                _sniffed(rc, sessions[rc.host], pcaps, running, stats, pulled, point_errors)
                return
            try:
                caps = sessions[rc.spec.point.host].caps
                pulled[name] = await _pull(rc, pcaps / pcap_filename(name), emit, caps)
            except HopcapError as exc:
                point_errors[name] = f"pull failed: {exc}"
                emit(Event("pull-failed", point=name, text=str(exc)))

        await asyncio.gather(
            *(pull(n, rc) for n, rc in running.items() if n not in point_errors or n in stats)
        )
    finally:
        await asyncio.gather(*(remove_remote_dir(s) for s in sessions.values()))
        await close_all(sessions)

    captures = point_captures(inv, sessions, running, stats, pulled, clocks, point_errors)
    for n in inv.path:
        if n in sessions and not sessions[n].points and sessions[n].error is None:
            errors.append(f"{n}: no capture points")

    # a host with no tool to hash a file: its pulls could not be verified; the bundle says so
    notes = {
        s.name: {"sha256": "no sha256sum or openssl on the host: its pulls were not verified"}
        for s in sessions.values()
        if s.caps.hash is None
        and any(p.host == s.name and rc.stream_to is None for p, rc in _pulled(running, pulled))
    }
    host_facts = tuple(
        HostFacts(
            host=n,
            before=facts_before.get(n, ({}, {}))[0],
            after=facts_after.get(n, ({}, {}))[0],
            missing={
                **facts_before.get(n, ({}, {}))[1],
                **facts_after.get(n, ({}, {}))[1],
                **notes.get(n, {}),
            },
            clock_before=clocks.get(n),
            clock_after=clocks_after.get(n),
        )
        for n in sessions
        if n in facts_before or n in facts_after or n in notes
    )
    complete = not interrupted and all(c.pcap is not None and c.error is None for c in captures)
    return RunRecord(
        run_id=run_id,
        started_ts=started,
        finished_ts=time.time(),
        inventory=inv.to_public_dict(),
        captures=captures,
        facts=host_facts,
        complete=complete and not errors,
        interrupted=interrupted,
        errors=tuple(errors + [e for e in point_errors.values() if e not in errors]),
        repro=repro_result,
    )


async def start_captures(
    specs: Sequence[tuple[HostSession, CaptureSpec]],
    pcaps: Path,
    running: dict[str, RunningCapture],
    point_errors: dict[str, str],
    emit: EventSink,
) -> None:
    """Arm every capture, fire them in one go, then wait for each to listen (the barrier).
    A point that fails gets its `point_errors` entry; the others go on."""

    async def arm(s: HostSession, spec: CaptureSpec) -> None:
        assert s.transport is not None
        rc: RunningCapture
        if isinstance(spec, SnifferSpec):
            rc = FortiGateCapture(s.transport, spec, pcaps / f"{s.name}.sniffer.txt")
        else:
            rc = RunningCapture(s.transport, spec, pcaps / pcap_filename(spec.point.name))
        running[spec.point.name] = rc
        try:
            await rc.arm()
        except HopcapError as exc:
            point_errors[spec.point.name] = str(exc)
            emit(Event("capture-failed", host=s.name, point=spec.point.name, text=str(exc)))

    async def listening(name: str, rc: RunningCapture) -> None:
        try:
            await rc.until_listening()
            emit(Event("listening", host=rc.transport.name, point=name))
        except HopcapError as exc:
            point_errors[name] = str(exc)
            emit(Event("capture-failed", host=rc.transport.name, point=name, text=str(exc)))

    await asyncio.gather(*(arm(s, spec) for s, spec in specs))
    armed = {n: rc for n, rc in running.items() if n not in point_errors}
    for ready_to_go in armed.values():
        ready_to_go.fire()
    await asyncio.gather(*(listening(n, rc) for n, rc in armed.items()))


async def stop_captures(
    running: dict[str, RunningCapture],
    point_errors: dict[str, str],
    stats: dict[str, CaptureStats],
    emit: EventSink,
) -> None:
    """SIGINT every running capture and collect its statistics into `stats`; shielded, so
    that a cancelled run (a second Ctrl-C) still leaves no tcpdump behind."""
    emit(Event("stopping", text=f"{len(running)} captures"))
    stop_results = await _shielded(
        asyncio.gather(
            *(_stop(name, rc) for name, rc in running.items() if name not in point_errors),
            return_exceptions=True,
        ),
        timeout=STOP_ALL_TIMEOUT_S,
    )
    for r in stop_results:
        if isinstance(r, tuple):
            name, st, err = r
            if st is not None:
                stats[name] = st
            if err:
                point_errors[name] = err


def point_captures(
    inv: Inventory,
    sessions: dict[str, HostSession],
    running: dict[str, RunningCapture],
    stats: dict[str, CaptureStats],
    pulled: dict[str, tuple[Path, str]],
    clocks: dict[str, tuple[float, float]],
    point_errors: dict[str, str],
) -> tuple[PointCapture, ...]:
    """What the bundle records of every point of the path, captured or not."""
    captures: list[PointCapture] = []
    for n in inv.path:
        if n not in sessions:
            continue
        s = sessions[n]
        points = s.points or _declared_points(s)
        for p in points:
            rc = running.get(p.name)
            st = stats.get(p.name)
            local = pulled.get(p.name)
            err = point_errors.get(p.name) or (s.error if rc is None else None)
            clk = clocks.get(n)
            captures.append(
                PointCapture(
                    point=p,
                    pcap=local[0] if local else None,
                    command=rc.spec.command() if rc else "",
                    tcpdump_version=s.tcpdump_version,
                    start_ts=rc.start_ts if rc else None,
                    ready_ts=rc.ready_ts if rc else None,
                    stop_ts=rc.stop_ts if rc else None,
                    packets=st.captured if st else None,
                    received=st.received if st else None,
                    kernel_drops=st.dropped if st else None,
                    clock_offset_s=clk[0] if clk else None,
                    clock_error_s=clk[1] if clk else None,
                    sha256=local[1] if local else None,
                    error=err,
                )
            )
    return tuple(captures)


async def _prepare(s: HostSession, clocks: dict[str, tuple[float, float]]) -> None:
    """Probe a connected host and take its clock; a problem becomes `s.error`."""
    assert s.transport is not None
    try:
        if s.host.kind == "fortigate":
            version, clock = await probe_fortigate(s.transport)
            s.tcpdump_version = f"FortiOS sniffer ({version})"
            if clock is not None:
                clocks[s.name] = (clock[0], clock[1])
            ifaces = () if s.host.capture == "auto" else tuple(s.host.capture)
            s.points = [CapturePoint(host=s.name, interface=i) for i in ifaces or (ANY,)]
            return
        await probe(s)
        if s.error:
            return
        problem = capture_error(s) if s.host.on_path else None
        if problem:
            s.error = problem
        else:
            clocks[s.name] = await clock_offset(s.transport, date_ns=s.caps.date_ns)
    except HopcapError as exc:
        s.error = str(exc)


def host_spec_args(s: HostSession, user_filter: str, bound_s: float) -> dict[str, Any]:
    """What every capture spec of a host shares: where, what, how long, with which rights."""
    return {
        "remote_dir": s.remote_dir or "/tmp",
        "filter": build_filter(user_filter, ssh_exclusion(s.ssh_connection)),
        "bound_s": bound_s,
        "sudo": s.host.sudo and not s.is_root,
        # tcpdump started as root would setuid to `tcpdump`; a user's tcpdump with
        # capabilities stays who it is
        "drop_to_root": s.caps.capture in ("root", "sudo"),
        "timeout": s.caps.timeout,
    }


def _sniffed(
    rc: FortiGateCapture,
    s: HostSession,
    pcaps: Path,
    running: dict[str, RunningCapture],
    stats: dict[str, CaptureStats],
    pulled: dict[str, tuple[Path, str]],
    point_errors: dict[str, str],
) -> None:
    """A box's sniffer text -> its points (one pcapng each, the text kept beside them)."""
    name = rc.spec.point.name
    try:
        points = rc.convert(pcaps)
    except HopcapError as exc:
        point_errors[name] = f"{name}: the sniffer's text could not be converted: {exc}"
        return
    whole = stats.pop(name, None)
    running.pop(name, None)
    s.points = [p for p, _f, _h, _n in points]
    for p, path, digest, n in points:
        running[p.name] = rc
        pulled[p.name] = (path, digest)
        stats[p.name] = CaptureStats(n, n, whole.dropped if whole else None)
    if not points:
        point_errors[name] = f"{name}: the sniffer saw no packet on any interface"


def _pulled(
    running: dict[str, RunningCapture], pulled: dict[str, tuple[Path, str]]
) -> list[tuple[CapturePoint, RunningCapture]]:
    return [(rc.spec.point, rc) for n, rc in running.items() if n in pulled]


def _declared_points(s: HostSession) -> list[CapturePoint]:
    """Points of a host that failed before resolving them (so the bundle can name them)."""
    if s.host.capture == "auto":
        return [CapturePoint(host=s.name, interface="auto")]
    return [CapturePoint(host=s.name, interface=i) for i in s.host.capture]


def _short_of_disk(s: HostSession) -> bool:
    return s.free_kb is not None and s.free_kb < STREAM_BELOW_KB


def _ring_mb(free_kb: int | None, points: int) -> int:
    """Size of one ring file: at most half the free space, shared by the host's points."""
    budget = MAX_RING_BYTES
    if free_kb is not None:
        budget = min(budget, free_kb * 1024 // 2 // max(points, 1))
    return max(1, budget // RING_FILES // 1_000_000)


async def _facts(
    sessions: dict[str, HostSession],
) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    async def one(s: HostSession) -> tuple[str, tuple[dict[str, str], dict[str, str]]]:
        assert s.transport is not None
        if s.host.kind == "fortigate":
            return s.name, await fortigate_facts(s.transport)
        return s.name, await collect_facts(s.transport, sudo=s.host.sudo, is_root=s.is_root)

    results = await asyncio.gather(
        *(one(s) for s in sessions.values() if s.ok), return_exceptions=True
    )
    return dict(r for r in results if isinstance(r, tuple))


async def _window(
    inv: Inventory,
    sessions: dict[str, HostSession],
    window: float,
    stop: asyncio.Event,
    emit: EventSink,
) -> tuple[bool, dict[str, object] | None]:
    """Wait for the repro step, the window or a stop request. Returns (interrupted, repro)."""
    stopper: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    repro_task: asyncio.Future[object]
    result: dict[str, object] | None = None
    repro_started = 0.0
    try:
        if inv.repro is not None:
            s = sessions.get(inv.repro.on)
            if s is None or not s.ok:
                result = {"command": inv.repro.run, "error": f"{inv.repro.on} is not reachable"}
                emit(Event("repro-failed", host=inv.repro.on, text=str(result["error"])))
                repro_task = asyncio.ensure_future(asyncio.sleep(window))
            else:
                assert s.transport is not None
                emit(Event("repro", host=s.name, text=inv.repro.run))
                repro_started = time.time()
                repro_task = asyncio.ensure_future(s.transport.run(inv.repro.run, timeout=window))
        else:
            emit(Event("window", text=f"capturing for {window:g}s (Ctrl-C to stop early)"))
            repro_task = asyncio.ensure_future(asyncio.sleep(window))
        done, _ = await asyncio.wait({repro_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            repro_task.cancel()
            return True, result or (
                {"command": inv.repro.run, "error": "interrupted"} if inv.repro else None
            )
        if inv.repro is not None and result is None:
            try:
                res = repro_task.result()
                assert isinstance(res, CommandResult)
                result = {
                    "on": inv.repro.on,
                    "command": inv.repro.run,
                    "exit_status": res.exit_status,
                    "started_ts": repro_started,
                    "finished_ts": time.time(),
                    "stdout": res.stdout[-4000:],
                    "stderr": res.stderr[-4000:],
                }
                emit(Event("repro-done", host=inv.repro.on, text=f"exit {res.exit_status}"))
            except TransportError as exc:
                result = {"on": inv.repro.on, "command": inv.repro.run, "error": str(exc)}
                emit(Event("repro-failed", host=inv.repro.on, text=str(exc)))
        await asyncio.sleep(SETTLE_S)
        return False, result
    finally:
        stopper.cancel()


async def _shielded(aw: Awaitable[T], timeout: float) -> T:
    """Await `aw` to the end even if the caller is cancelled meanwhile (then re-raise the
    cancellation once it is done, or after `timeout`)."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, timeout)
        raise


async def _monitor(running: dict[str, RunningCapture], emit: EventSink) -> None:
    """Report how much each capture has written, every couple of seconds."""
    while True:
        await asyncio.sleep(MONITOR_INTERVAL_S)

        async def one(name: str, rc: RunningCapture) -> None:
            with contextlib.suppress(HopcapError):
                size = await rc.bytes_written()
                emit(Event("captured", point=name, done=size))

        await asyncio.gather(*(one(n, rc) for n, rc in running.items()))


async def _stop(name: str, rc: RunningCapture) -> tuple[str, CaptureStats | None, str | None]:
    try:
        return name, await asyncio.wait_for(rc.stop(), 30), None
    except (HopcapError, TimeoutError) as exc:
        return name, None, f"{name}: stopping tcpdump failed: {exc}"


async def _pull(
    rc: RunningCapture, local: Path, emit: EventSink, caps: HostCaps
) -> tuple[Path, str]:
    """Pull every ring file of a capture (oldest first) into one local pcap, verified.
    A streamed capture is already here (SSH's MAC protected it on the way)."""
    if rc.stream_to is not None:
        if not rc.stream_to.exists() or rc.stream_to.stat().st_size < 24:
            raise CaptureError(f"{rc.spec.point.name}: the streamed capture is empty")
        emit(Event("pulled", point=rc.spec.point.name, done=rc.stream_to.stat().st_size))
        return rc.stream_to, _sha256(rc.stream_to)
    files = await rc.files()
    if not files:
        raise CaptureError(f"{rc.spec.point.name}: tcpdump wrote no file")
    parts: list[Path] = []
    for i, remote in enumerate(files):
        part = local if len(files) == 1 else local.with_suffix(f".part{i}")
        await _get_verified(rc, remote, part, emit, caps)
        parts.append(part)
    if len(parts) > 1:
        for w in _concat_pcaps(parts, local):
            emit(Event("warning", point=rc.spec.point.name, text=w))
    digest = _sha256(local)
    emit(Event("pulled", point=rc.spec.point.name, done=local.stat().st_size))
    return local, digest


async def _get_verified(
    rc: RunningCapture, remote: str, local: Path, emit: EventSink, caps: HostCaps
) -> None:
    """Pull one remote file (SFTP, or `cat` over an exec channel where the server has no
    SFTP), check it against the remote sha256, retry a damaged or broken transfer."""
    t = rc.transport
    name = rc.spec.point.name
    want = None
    if caps.hash is not None:
        argv = (
            ["openssl", "dgst", "-sha256", "-r", remote]
            if caps.hash == "openssl"
            else [
                "sha256sum",
                remote,
            ]
        )
        res = await t.run(quote(argv), timeout=120)
        want = res.stdout.split()[0].lower() if res.ok and res.stdout.split() else None
    if want is None:
        emit(Event("warning", point=name, text=f"{remote} cannot be verified (no sha256 tool)"))
    last: str = ""
    for _attempt in range(PULL_RETRIES):
        try:
            if caps.pull == "exec":
                await _get_exec(rc, remote, local, emit)
            else:
                await t.get(
                    remote,
                    local,
                    progress=lambda done, total: emit(
                        Event("pull", point=name, done=done, total=total)
                    ),
                )
        except TransportError as exc:
            last = str(exc)
            continue
        if want is None or _sha256(local) == want:
            return
        last = "sha256 of the pulled file differs from the remote file"
    raise CaptureError(f"{name}: pulling {remote} failed after {PULL_RETRIES} tries: {last}")


EXEC_PULL_TIMEOUT_S = 600.0


async def _get_exec(rc: RunningCapture, remote: str, local: Path, emit: EventSink) -> None:
    """Stream a remote file with `cat` over an exec channel into `local` (for servers
    without the SFTP subsystem, such as dropbear)."""
    proc = await rc.transport.spawn(quote(["cat", "--", remote]), stdout_to=local)
    try:
        res = await proc.wait(timeout=EXEC_PULL_TIMEOUT_S)
    except TimeoutError as exc:
        raise TransportError(rc.transport.name, f"`cat {remote}` did not finish") from exc
    finally:
        proc.close()
    if not res.ok:
        raise TransportError(
            rc.transport.name,
            f"`cat {remote}` failed (exit {res.exit_status}): {res.stderr.strip()}",
        )
    size = local.stat().st_size if local.exists() else 0
    emit(Event("pull", point=rc.spec.point.name, done=size, total=size))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _concat_pcaps(parts: list[Path], out: Path) -> list[str]:
    """Join the ring files of one capture (hopcap.capfile.concat_pcaps): its warnings
    (a part read up to its damage)."""
    try:
        return concat_pcaps(parts, out)
    except CaptureFileError as exc:
        raise CaptureError(exc.message) from None
