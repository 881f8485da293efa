"""`hopcap run`: capture on every point at once, run the repro step, stop, pull, collect facts.

The phases (`CaptureRun`, each concurrent across hosts): connect -> prepare (probe and clock,
the facts before start reading; points; clean stale + make remote dirs) -> start (arm every
tcpdump, fire them together, barrier on "listening"; the facts before are in) -> window (the
repro, or the window, or Ctrl-C) -> stop (SIGINT every tcpdump, one command per host) ->
collect (per host: facts after, clock again, pulls verified) -> cleanup (remove remote dirs,
close). Stop and cleanup run in `finally`, also when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hopcap.capfile import CaptureFileError, concat_pcaps
from hopcap.errors import CaptureError, HopcapError, RunInterrupted, TransportError
from hopcap.model import CapturePoint, HostFacts, Inventory, PointCapture, RunRecord, pcap_filename
from hopcap.orchestrator.capture import (
    RING_FILES,
    CaptureSpec,
    CaptureStats,
    RunningCapture,
    ShellCapture,
    arm_in_shell,
    build_filter,
    kill_command,
    runs_in_shell,
    ssh_exclusion,
)
from hopcap.orchestrator.facts import clock_offset, collect_facts
from hopcap.orchestrator.fortigate import (
    FortiGateCapture,
    SnifferSpec,
    fortigate_facts,
    own_session_filter,
    sniffer_spec,
)
from hopcap.orchestrator.session import (
    HASHES,
    Connector,
    Event,
    EventSink,
    HostCaps,
    HostSession,
    close_all,
    connect_all,
    hosts_to_connect,
    make_remote_dir,
    no_events,
    prepare_host,
    remove_remote_dir,
    resolve_all_points,
    ssh_connector,
)
from hopcap.orchestrator.transport import (
    CommandResult,
    HostTransport,
    SSHTransport,
    as_root,
    quote,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

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
    return await CaptureRun(inv, opts, emit, stop).execute()


Facts = tuple[dict[str, str], dict[str, str]]  # (outputs, why each missing one is missing)


class CaptureRun:
    """One run over an inventory: a method per phase, in the order of `execute`; what the
    phases learn is kept on the object, and `record` turns it into the `RunRecord`.

    Within a phase the hosts go at once, and per host a phase's round trips overlap where
    they can: the facts before the window are read while the captures are armed, and the
    facts after it while the captures are pulled."""

    def __init__(
        self, inv: Inventory, opts: RunOptions, emit: EventSink, stop: asyncio.Event | None
    ) -> None:
        self.inv = inv
        self.opts = opts
        self.emit = emit
        self.stop_requested = stop or asyncio.Event()
        self.run_id = opts.run_id or new_run_id()
        self.window_s = opts.window_s if opts.window_s is not None else inv.window_s
        self.bound_s = self.window_s + GRACE_S
        self.started = time.time()
        self.pcaps = opts.out / "pcaps"
        self.errors: list[str] = []  # host-level problems, in the order met
        self.sessions: dict[str, HostSession] = {}
        self.running: dict[str, RunningCapture] = {}  # point name -> its capture
        self.point_errors: dict[str, str] = {}
        self.stats: dict[str, CaptureStats] = {}
        self.pulled: dict[str, tuple[Path, str]] = {}  # point name -> (local pcap, sha256)
        self.clocks: dict[str, tuple[float, float]] = {}
        self.clocks_after: dict[str, tuple[float, float]] = {}
        self.facts_before: dict[str, Facts] = {}
        self.facts_after: dict[str, Facts] = {}
        self.reread: set[str] = set()  # hosts whose pulls were verified by a second read
        self.interrupted = False
        self.repro: dict[str, object] | None = None
        self._facts_reading: dict[str, asyncio.Future[Facts]] = {}

    async def execute(self) -> RunRecord:
        try:
            try:
                with _timed("connect"):
                    await self.connect()
                self._stopped_before_captures("connecting to the hosts")
                with _timed("prepare"):
                    await self.prepare()
                self._stopped_before_captures("probing the hosts")
                # made once there is something to write: a run refused before (Ctrl-C, a
                # host not ready with --require-all) leaves no empty bundle behind
                try:
                    self.pcaps.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CaptureError(f"cannot write {self.pcaps}: {exc.strerror}") from None
                with _timed("start"):
                    await self.start()
                with _timed("window"):
                    await self.window()
            finally:
                # also when the run is being cancelled (a second Ctrl-C): the stop itself is
                # shielded, so no tcpdump is left behind
                with _timed("stop"):
                    await self.stop()
            with _timed("collect"):
                await self.collect()
        finally:
            with _timed("cleanup"):
                await self.cleanup()
        return self.record()

    def _stopped_before_captures(self, doing: str) -> None:
        """Ctrl-C before any capture started: the run ends here (no capture is armed, the
        repro never runs); nothing was captured, so there is no bundle."""
        if self.stop_requested.is_set():
            raise RunInterrupted(
                f"interrupted while {doing}, before any capture started: nothing was "
                "captured, no bundle written"
            )

    def _fail_host(self, s: HostSession, error: str) -> None:
        s.error = error
        self.errors.append(error)
        self.emit(Event("failed", host=s.name, text=error))

    async def connect(self) -> None:
        self.sessions = await connect_all(
            self.inv,
            hosts_to_connect(self.inv),
            self.emit,
            self.opts.connector,
            self.stop_requested,
        )

    async def prepare(self) -> None:
        """Probe every host (the readiness rule of `check`), resolve the points."""

        async def one(s: HostSession) -> None:
            clock = await prepare_host(s, clock=False)
            if clock is not None:
                self.clocks[s.name] = clock

        unreachable = {n for n, s in self.sessions.items() if s.error}  # said by connect_all
        await asyncio.gather(*(one(s) for s in self.sessions.values() if s.ok))
        await resolve_all_points(self.sessions, self.inv)
        for s in self.sessions.values():
            if s.error:
                self.errors.append(s.error)
                if s.name not in unreachable:
                    self.emit(Event("failed", host=s.name, text=s.error))
        if self.opts.require_all and self.errors:
            raise CaptureError(
                "not every host is ready and --require-all was given:\n  "
                + "\n  ".join(self.errors)
            )

    async def start(self) -> None:
        """Per host at once: its remote directory, its captures armed (in its command shell:
        one command, then the clock there; with sessions of their own: while the clock is
        read), its facts read; then every capture fired in one go, and the barrier on
        "listening"; the clocks and facts are in before the window."""
        path = {s.name for s in self._path()}
        armed: list[asyncio.Future[None]] = []

        async def one(s: HostSession) -> None:
            if s.name in path and s.points:
                if s.host.kind == "linux":
                    try:
                        # made just before the captures start, so that its expiry (after
                        # which a later run may remove it) follows the capture's bound
                        await make_remote_dir(s, self.run_id, self.bound_s)
                    except HopcapError as exc:
                        self._fail_host(s, str(exc))
                        return
                specs = self.specs(s)
                arming = asyncio.ensure_future(
                    arm_captures(specs, self.pcaps, self.running, self.point_errors, self.emit)
                )
                armed.append(arming)
                if all(runs_in_shell(s.transport, spec) for _, spec in specs):
                    await arming  # a few milliseconds; the shell is then free for the clock
            await self._clock(s, self.clocks, "before the window")
            if self.opts.collect_facts:
                self._facts_reading[s.name] = asyncio.ensure_future(_host_facts(s))

        await asyncio.gather(*(one(s) for s in self.sessions.values() if s.ok))
        await asyncio.gather(*armed)
        await fire_and_listen(self.running, self.point_errors, self.emit)
        if not any(n not in self.point_errors for n in self.running):
            raise CaptureError(
                "no capture point could start:\n  "
                + "\n  ".join(list(self.point_errors.values()) + self.errors)
            )
        if self.opts.require_all and self.point_errors:
            raise CaptureError(
                "a capture failed and --require-all was given:\n  "
                + "\n  ".join(self.point_errors.values())
            )
        self.facts_before = await _settled(self._facts_reading, "facts before the window")

    async def _clock(self, s: HostSession, into: dict[str, tuple[float, float]], when: str) -> None:
        if s.host.kind != "linux":  # an appliance's comes with its probe (before) or not at all
            return
        try:
            into[s.name] = await clock_offset(
                s.transport,  # type: ignore[arg-type]
                date_ns=s.caps.date_ns,
            )
        except HopcapError as exc:
            log.warning("%s: clock %s not taken: %s", s.name, when, exc)

    def _path(self) -> list[HostSession]:
        return [self.sessions[n] for n in self.inv.path if n in self.sessions]

    def specs(self, s: HostSession) -> list[tuple[HostSession, CaptureSpec]]:
        """What each point of a ready path host captures with."""
        if s.host.kind == "fortigate":  # one sniffer for every point of the box
            assert s.transport is not None
            bpf = own_session_filter(s.transport, self.inv.filter)
            return [(s, sniffer_spec(s.name, s.host.capture, bpf, self.bound_s))]
        per_point = _ring_mb(s.free_kb, len(s.points))
        stream = bool(self.opts.stream) or (self.opts.stream is None and _short_of_disk(s))
        args = host_spec_args(s, self.inv.filter, self.bound_s)
        return [
            (s, CaptureSpec(point=p, ring_mb=per_point, stream=stream, **args)) for p in s.points
        ]

    async def window(self) -> None:
        """The repro step, or the window, or the user's Ctrl-C, whichever comes first."""
        if self.stop_requested.is_set():  # Ctrl-C while the captures started: no repro
            self.interrupted = True
            if self.inv.repro is not None:
                self.repro = {"command": self.inv.repro.run, "error": "interrupted"}
            return
        live = {n: rc for n, rc in self.running.items() if n not in self.point_errors}
        monitor = asyncio.ensure_future(_monitor(live, self.emit))
        try:
            self.interrupted, self.repro = await (self.opts.window_fn or _window)(
                self.inv, self.sessions, self.window_s, self.stop_requested, self.emit
            )
        finally:
            monitor.cancel()

    async def stop(self) -> None:
        await stop_captures(self.running, self.point_errors, self.stats, self.emit)

    async def collect(self) -> None:
        """Per host, at once: the facts after the window, the clock again, the pulls."""
        by_host: dict[str, list[tuple[str, RunningCapture]]] = {}
        for n, rc in self.running.items():
            if n not in self.point_errors or n in self.stats:
                by_host.setdefault(rc.transport.name, []).append((n, rc))

        async def one(s: HostSession) -> None:
            # one command shell, in turn: the clock (first: a pull's data on the same
            # connection would delay its answers), the files of every capture; then, at
            # once, the pulls, the host's digests of those files (hashing a large capture
            # on the host takes as long as a good part of its transfer: it need not
            # hold the transfer back, only its check) and the facts
            await self._clock(s, self.clocks_after, "after the window")
            mine = by_host.get(s.name, [])
            rcs = [rc for _, rc in mine]
            listed: dict[str, list[RemoteFile]] = {}
            try:
                listed = await host_files(rcs, None)
            except HopcapError as exc:  # each pull then lists its own
                log.warning("%s: listing the capture files failed: %s", s.name, exc)
            digests: Digests | None = None
            if listed and s.caps.hash is not None:
                digests = asyncio.ensure_future(host_files(rcs, s.caps.hash))
            facts: asyncio.Future[dict[str, Facts]] | None = None
            if self.opts.collect_facts and s.name in self._facts_reading:
                facts = asyncio.ensure_future(self._facts_after(s, digests))
            try:
                await asyncio.gather(*(self._pull(n, rc, listed.get(n), digests) for n, rc in mine))
            finally:
                if digests is not None and digests.done():
                    if not digests.cancelled():
                        digests.exception()  # retrieved: a failure was each pull's to handle
                elif digests is not None:  # every pull that wanted it failed first
                    digests.cancel()
                if facts is not None:
                    self.facts_after.update(await facts)

        await asyncio.gather(*(one(s) for s in self.sessions.values() if s.ok))

    @staticmethod
    async def _facts_after(s: HostSession, digests: Digests | None) -> dict[str, Facts]:
        """The facts after the window, once the host's digests are in: the facts' dozen
        commands share the host's command shell with the digests' one, which the pulls'
        checks wait for (behind the facts, a run of the lab collected in 0.52 s, not 0.12)."""
        if digests is not None:
            await asyncio.wait({digests})  # (its failure is the pulls' to handle)
        tasks = {s.name: asyncio.ensure_future(_host_facts(s))}
        return await _settled(tasks, "facts after the window")

    async def _pull(
        self,
        name: str,
        rc: RunningCapture,
        listed: list[RemoteFile] | None = None,
        digests: Digests | None = None,
    ) -> None:
        if isinstance(rc, FortiGateCapture):
            _sniffed(
                rc,
                self.sessions[rc.host],
                self.pcaps,
                self.running,
                self.stats,
                self.pulled,
                self.point_errors,
            )
            return
        s = self.sessions[rc.spec.point.host]
        try:
            local = self.pcaps / pcap_filename(name)
            self.pulled[name] = await _pull(rc, local, self.emit, s.caps, listed, digests)
            if s.caps.hash is None and rc.stream_to is None:
                self.reread.add(s.name)
        except HopcapError as exc:
            self.point_errors[name] = f"pull failed: {exc}"
            self.emit(Event("pull-failed", point=name, text=str(exc)))

    async def cleanup(self) -> None:
        for task in self._facts_reading.values():
            task.cancel()
        await asyncio.gather(*self._facts_reading.values(), return_exceptions=True)
        await asyncio.gather(*(remove_remote_dir(s) for s in self.sessions.values()))
        await close_all(self.sessions)

    def record(self) -> RunRecord:
        inv, sessions = self.inv, self.sessions
        captures = point_captures(
            inv, sessions, self.running, self.stats, self.pulled, self.clocks, self.point_errors
        )
        errors = list(self.errors)
        for n in inv.path:
            if n in sessions and not sessions[n].points and sessions[n].error is None:
                errors.append(f"{n}: no capture points")
        notes = {n: {"sha256": REREAD_NOTE} for n in self.reread}
        host_facts = tuple(
            HostFacts(
                host=n,
                before=self.facts_before.get(n, ({}, {}))[0],
                after=self.facts_after.get(n, ({}, {}))[0],
                missing={
                    **self.facts_before.get(n, ({}, {}))[1],
                    **self.facts_after.get(n, ({}, {}))[1],
                    **notes.get(n, {}),
                },
                clock_before=self.clocks.get(n),
                clock_after=self.clocks_after.get(n),
            )
            for n in sessions
            if n in self.facts_before or n in self.facts_after or n in notes
        )
        complete = not self.interrupted and all(
            c.pcap is not None and c.error is None for c in captures
        )
        return RunRecord(
            run_id=self.run_id,
            started_ts=self.started,
            finished_ts=time.time(),
            inventory=inv.to_public_dict(),
            captures=captures,
            facts=host_facts,
            complete=complete and not errors,
            interrupted=self.interrupted,
            errors=tuple(errors + [e for e in self.point_errors.values() if e not in errors]),
            repro=self.repro,
        )


REREAD_NOTE = (
    "no hash tool on the host (sha256sum, openssl, sha1sum, md5sum): each pull was verified "
    "by reading the file a second time over another channel (the two reads and the size "
    "the host gives agree), not by a hash computed on the host"
)


@contextlib.contextmanager
def _timed(phase: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        log.debug("phase %s: %.3f s", phase, time.perf_counter() - t0)


async def _settled(tasks: Mapping[str, asyncio.Future[Facts]], what: str) -> dict[str, Facts]:
    """The results of facts tasks per host; a task that failed is logged and noted as
    missing, never fatal."""
    out: dict[str, Facts] = {}
    for name, task in tasks.items():
        try:
            out[name] = await task
        except HopcapError as exc:  # the bundle says so too (facts/<host>/missing.txt)
            log.warning("%s: %s not collected: %s", name, what, exc)
            out[name] = ({}, {"facts": f"{what} not collected: {exc}"})
    return out


async def _host_facts(s: HostSession) -> Facts:
    assert s.transport is not None
    if s.host.kind == "fortigate":
        return await fortigate_facts(s.transport)
    return await collect_facts(s.transport, sudo=s.host.sudo, is_root=s.is_root)


async def arm_captures(
    specs: Sequence[tuple[HostSession, CaptureSpec]],
    pcaps: Path,
    running: dict[str, RunningCapture],
    point_errors: dict[str, str],
    emit: EventSink,
) -> None:
    """Start every capture up to tcpdump: a host's captures in its command shell at once
    (`arm_in_shell`), the others each in a session of its own (`RunningCapture.arm`)."""
    in_shell: dict[str, list[ShellCapture]] = {}

    def failed(host: str, point: str, error: str) -> None:
        point_errors[point] = error
        emit(Event("capture-failed", host=host, point=point, text=error))

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
            failed(s.name, spec.point.name, str(exc))

    async def arm_host(host: str, captures: list[ShellCapture]) -> None:
        for point, error in (await arm_in_shell(captures)).items():
            failed(host, point, error)

    alone = []
    for s, spec in specs:
        if runs_in_shell(s.transport, spec):
            assert isinstance(s.transport, SSHTransport)
            rc = ShellCapture(s.transport, spec)
            running[spec.point.name] = rc
            in_shell.setdefault(s.name, []).append(rc)
        else:
            alone.append(arm(s, spec))
    await asyncio.gather(*alone, *(arm_host(h, rcs) for h, rcs in in_shell.items()))


async def fire_and_listen(
    running: dict[str, RunningCapture], point_errors: dict[str, str], emit: EventSink
) -> None:
    """Fire every armed capture in one go, then wait for each to listen."""

    async def listening(name: str, rc: RunningCapture) -> None:
        try:
            await rc.until_listening()
            emit(Event("listening", host=rc.transport.name, point=name))
        except HopcapError as exc:
            point_errors[name] = str(exc)
            emit(Event("capture-failed", host=rc.transport.name, point=name, text=str(exc)))

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
    """SIGINT every running capture (one command per host) and collect its statistics into
    `stats`; shielded, so that a cancelled run (a second Ctrl-C) still leaves no tcpdump
    behind."""
    if running:  # a run refused before its captures (--require-all, Ctrl-C) stops none
        emit(Event("stopping", text=f"{len(running)} captures"))
    live = {n: rc for n, rc in running.items() if n not in point_errors}
    stop_results = await _shielded(_stop_all(live), timeout=STOP_ALL_TIMEOUT_S)
    for r in stop_results:
        if isinstance(r, tuple):
            name, st, err = r
            if st is not None:
                stats[name] = st
            if err:
                point_errors[name] = err


async def _stop_all(
    live: dict[str, RunningCapture],
) -> list[tuple[str, CaptureStats | None, str | None] | BaseException]:
    """Signal the plain tcpdumps of each host in one command, then wait for every capture
    (an appliance's sniffer stops its own way)."""
    by_host: dict[tuple[int, bool], list[RunningCapture]] = {}
    for rc in live.values():
        if type(rc).stop is RunningCapture.stop and rc.proc is not None:
            by_host.setdefault((id(rc.transport), rc.spec.sudo), []).append(rc)

    async def signal(group: list[RunningCapture]) -> set[int]:
        t = group[0].transport
        now = time.time()
        for rc in group:
            rc.stop_ts = now
        try:
            await t.run(as_root(kill_command(group), group[0].spec.sudo), timeout=15)
            return {id(rc) for rc in group}
        except HopcapError as exc:  # each capture then tries on its own
            log.warning("%s: stopping its captures in one command failed: %s", t.name, exc)
            return set()

    signalled = set().union(*await asyncio.gather(*(signal(g) for g in by_host.values())))
    return await asyncio.gather(
        *(_stop(n, rc, id(rc) in signalled) for n, rc in live.items()), return_exceptions=True
    )


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
                    command=rc.recorded_command() if rc else "",
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
    """Probe a connected host and take its clock (`prepare_host`, the rule `check` shares)."""
    clock = await prepare_host(s)
    if clock is not None:
        clocks[s.name] = clock


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


async def _facts(sessions: dict[str, HostSession]) -> dict[str, Facts]:
    """The facts of every ready host, at once; a host whose facts fail is logged."""
    tasks = {s.name: asyncio.ensure_future(_host_facts(s)) for s in sessions.values() if s.ok}
    return await _settled(tasks, "facts")


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
                repro_task = asyncio.ensure_future(run_repro(s, inv.repro.run, window))
        else:
            emit(Event("window", text=f"capturing for {window:g}s (Ctrl-C to stop early)"))
            repro_task = asyncio.ensure_future(asyncio.sleep(window))
        done, _ = await asyncio.wait({repro_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            repro_task.cancel()
            # its end on the host (`run_repro`) is done before the captures stop
            await asyncio.gather(repro_task, return_exceptions=True)
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


REPRO_KILL_TIMEOUT_S = 10.0


async def run_repro(
    s: HostSession, command: str, timeout: float, within: str = "the window"
) -> CommandResult:
    """The repro step (or the recorder's probe) on its host, for at most `timeout` (what
    is left of the window; `within` names it in the error).

    A repro that outlasts it, or that the run gives up on (Ctrl-C), is ended on its host
    with every process it started, as a local command's is (`LocalTransport.run`): left
    alone, a remote command (a load generator, a `sleep 600`, a slow curl) went on after
    hopcap's end, and into the next scheduled window. On a Linux host it runs in a
    session of its own (`setsid`, when the host has it) whose pid a file in /tmp holds
    while it runs; hopcap sends SIGTERM to that process group (its children otherwise),
    SIGKILL 2 s later."""
    t = s.transport
    assert t is not None
    # a scheduled window's transport is the pool's, kept open across windows (`_Kept`)
    if not isinstance(getattr(t, "inner", t), SSHTransport) or s.host.kind != "linux":
        return await t.run(command, timeout=timeout)  # a local one ends with its session
    pidfile = f"/tmp/hopcap-repro.{secrets.token_hex(6)}"
    q, f = quote([command]), quote([pidfile])
    wrapped = (
        f"if command -v setsid >/dev/null 2>&1; then setsid sh -c {q} & else sh -c {q} & fi; "
        f"p=$!; {{ echo $p > {f}; }} 2>/dev/null; wait $p; s=$?; rm -f {f}; exit $s"
    )
    task = asyncio.ensure_future(t.run(wrapped, timeout=timeout + REPRO_KILL_TIMEOUT_S))
    task.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: see below
    try:
        res = await asyncio.wait_for(asyncio.shield(task), timeout)
    except BaseException as exc:
        if task.done() and not task.cancelled() and not isinstance(exc, TimeoutError):
            raise  # it failed by itself (the connection lost): nothing runs to be ended
        task.cancel()
        await _shielded(_end_repro(t, pidfile), REPRO_KILL_TIMEOUT_S)
        if isinstance(exc, TimeoutError):
            raise TransportError(
                s.name, f"`{command}` did not finish within {within} ({timeout:g}s): ended it"
            ) from None
        raise
    return CommandResult(command, res.exit_status, res.stdout, res.stderr, res.exit_signal)


async def _end_repro(t: HostTransport, pidfile: str) -> None:
    f = quote([pidfile])
    end = (
        f'p=$(cat {f} 2>/dev/null) && [ -n "$p" ] || exit 0; rm -f {f}; '
        "kill -TERM -$p 2>/dev/null || { pkill -TERM -P $p; kill -TERM $p; } 2>/dev/null; "
        "( sleep 2; kill -KILL -$p || kill -KILL $p ) </dev/null >/dev/null 2>&1 & exit 0"
    )
    try:
        await t.run(end, timeout=REPRO_KILL_TIMEOUT_S)
    except HopcapError as exc:
        log.warning("%s: the repro could not be ended: %s", t.name, exc)


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


async def _stop(
    name: str, rc: RunningCapture, signalled: bool = False
) -> tuple[str, CaptureStats | None, str | None]:
    try:
        return name, await asyncio.wait_for(rc.stop(signalled=signalled), 30), None
    except (HopcapError, TimeoutError) as exc:
        return name, None, f"{name}: stopping tcpdump failed: {exc}"


async def _pull(
    rc: RunningCapture,
    local: Path,
    emit: EventSink,
    caps: HostCaps,
    listed: list[RemoteFile] | None = None,
    digests: Digests | None = None,
) -> tuple[Path, str]:
    """Pull every ring file of a capture (oldest first; `listed`: already listed, see
    `host_files`; `digests`: the host's digests of them, still being computed) into one
    local pcap, verified. A streamed capture is already here (SSH's MAC protected it on
    the way). Files are hashed here in a worker thread, once: the event loop keeps
    serving the other pulls meanwhile."""
    if rc.stream_to is not None:
        if not rc.stream_to.exists() or rc.stream_to.stat().st_size < 24:
            raise CaptureError(f"{rc.spec.point.name}: the streamed capture is empty")
        emit(Event("pulled", point=rc.spec.point.name, done=rc.stream_to.stat().st_size))
        return rc.stream_to, await asyncio.to_thread(_sha256, rc.stream_to)
    files = listed or await remote_files(rc, [quote([rc.spec.base]) + "*"], caps.hash)
    if not files:
        raise CaptureError(f"{rc.spec.point.name}: tcpdump wrote no file")
    parts: list[Path] = []
    digest: str | None = None
    for i, remote in enumerate(files):
        part = local if len(files) == 1 else local.with_suffix(f".part{i}")
        digest = await _get_verified(rc, remote.path, part, emit, caps, remote, digests)
        parts.append(part)
    if len(parts) > 1:
        for w in await asyncio.to_thread(_concat_pcaps, parts, local):
            emit(Event("warning", point=rc.spec.point.name, text=w))
        digest = None
    if digest is None:  # verified otherwise than by a sha256 of this very file
        digest = await asyncio.to_thread(_sha256, local)
    emit(Event("pulled", point=rc.spec.point.name, done=local.stat().st_size))
    return local, digest


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    digest: str | None  # by the host's hash tool (`HostCaps.hash`); None: it has none


# a host's digests of its capture files, being computed: point name -> files (`host_files`)
Digests = asyncio.Future[dict[str, list[RemoteFile]]]


async def remote_files(
    rc: RunningCapture, patterns: Sequence[str], hash_tool: str | None
) -> list[RemoteFile]:
    """The files matching the (shell) `patterns`, oldest first, with their sizes and
    digests, in one round trip."""
    digest = "-"
    if hash_tool is not None:
        digest = f'$({HASHES[hash_tool][0]} "$f" 2>/dev/null | cut -d" " -f1)'
    script = (
        f"ls -1tr {' '.join(patterns)} 2>/dev/null | while read -r f; do "
        f'echo "$(($(wc -c < "$f"))) {digest} $f"; done'
    )
    res = await rc.transport.run(as_root(script, rc.spec.sudo), timeout=120)
    out: list[RemoteFile] = []
    for line in res.stdout.splitlines():
        size, _, rest = line.partition(" ")
        dig, _, path = rest.partition(" ")
        if path:
            out.append(
                RemoteFile(
                    path,
                    int(size) if size.isdigit() else None,
                    dig.lower() if dig not in ("-", "") and hash_tool else None,
                )
            )
    return out


async def host_files(
    captures: Sequence[RunningCapture], hash_tool: str | None
) -> dict[str, list[RemoteFile]]:
    """The ring files of a host's (written, not streamed) captures, each oldest first, with
    sizes and digests, in one round trip: point name -> files."""
    written = [
        rc for rc in captures if rc.stream_to is None and type(rc) in (RunningCapture, ShellCapture)
    ]
    if not written:
        return {}
    patterns = [quote([rc.spec.base]) + "*" for rc in written]
    files = await remote_files(written[0], patterns, hash_tool)
    return {
        rc.spec.point.name: [f for f in files if f.path.startswith(rc.spec.base)] for rc in written
    }


async def _get_verified(
    rc: RunningCapture,
    remote: str,
    local: Path,
    emit: EventSink,
    caps: HostCaps,
    known: RemoteFile | None = None,
    digests: Digests | None = None,
) -> str | None:
    """Pull one remote file (SFTP, or `cat` over an exec channel where the server has no
    SFTP), verify it, retry a damaged or broken transfer. Returns the local copy's sha256
    when the check computed it (None: it was verified another way).

    Verified means: the digest the host's own tool computes over the file equals the one
    computed here over the local copy; on a host without any hash tool, the file is read a
    second time over another exec channel (`cat`) and hashed here as it arrives, and both
    reads, and the size the host gives, must agree (this catches damage in either transfer
    or in the local write, not a file that reads back wrong the same way twice on the host
    itself, which a hash computed on the host would not catch either).

    `digests` (see `host_files`) brings the host's digest of `known` when `known` has
    none; it is awaited only once the file is here, so that hashing on the host and the
    transfer overlap."""
    t = rc.transport
    name = rc.spec.point.name
    if known is None:
        found = await remote_files(rc, [quote([remote])], caps.hash)
        known = found[0] if found else RemoteFile(remote, None, None)
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
            if known.digest is None and caps.hash is not None:
                known = await _host_digest(rc, known, caps.hash, digests)
            problem, digest = await _verify(rc, known, local, caps)
        except TransportError as exc:
            last = str(exc)
            continue
        if problem is None:
            return digest
        last = problem
    raise CaptureError(f"{name}: pulling {remote} failed after {PULL_RETRIES} tries: {last}")


async def _host_digest(
    rc: RunningCapture, known: RemoteFile, hash_tool: str, digests: Digests | None
) -> RemoteFile:
    """`known` with the host's digest: from `digests` when it has it, else asked for."""
    if digests is not None:
        try:
            for f in (await digests).get(rc.spec.point.name, []):
                if f.path == known.path and f.digest is not None:
                    return RemoteFile(known.path, known.size, f.digest)
        except HopcapError as exc:
            log.info("%s: the host's digests failed (%s); asking per file", rc.spec.point.name, exc)
    found = await remote_files(rc, [quote([known.path])], hash_tool)
    if found and found[0].digest is not None:
        return RemoteFile(known.path, known.size, found[0].digest)
    return known


async def _verify(
    rc: RunningCapture, remote: RemoteFile, local: Path, caps: HostCaps
) -> tuple[str | None, str | None]:
    """(why the local copy is not the remote file, None when it is; the local copy's
    sha256 if it was computed); see `_get_verified`."""
    if caps.hash is not None and remote.digest is not None:
        algorithm = HASHES[caps.hash][1]
        digest = await asyncio.to_thread(_digest, local, algorithm)
        if digest != remote.digest:
            return f"{algorithm} of the pulled file differs from the remote file", None
        return None, digest if algorithm == "sha256" else None
    size = local.stat().st_size if local.exists() else -1
    if remote.size is not None and size != remote.size:
        return f"the pulled file has {size} bytes, the remote file {remote.size}", None
    again = local.with_name(local.name + ".reread")
    try:
        await _get_exec(rc, remote.path, again, no_events)
        first, second = await asyncio.gather(
            asyncio.to_thread(_sha256, local), asyncio.to_thread(_sha256, again)
        )
        if first != second:
            return "a second read of the remote file differs from the pulled file", None
    finally:
        again.unlink(missing_ok=True)
    return None, first


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
    return _digest(path, "sha256")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
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
