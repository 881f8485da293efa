"""Scheduled reproduction windows: `hopcap run --at TIME [--every D] [--count N]`, and the
repro repeated inside one window (`--repeat N`, `--until-fail`).

Every host is connected and checked (the preflight of `hopcap check`) when the schedule is
set up, so that a broken host is reported now, not at 03:00. The connections are kept in
a pool and reused by every window (each one re-verified with a `true` before use and
re-opened if it died; asyncssh's keepalives hold them open while waiting). Each window is
a plain `run_capture` into its own directory; what becomes of its record (correlate,
bundle, summary) is the caller's `after_window`, run in a thread so that the connections'
keepalives go on meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hopcap.errors import HopcapError, OptionError, PreflightError, TransportError
from hopcap.model import Host, Inventory, RunRecord
from hopcap.orchestrator.check import check
from hopcap.orchestrator.run import (
    SETTLE_S,
    RunOptions,
    WindowFn,
    _window,
    new_run_id,
    run_capture,
    run_repro,
)
from hopcap.orchestrator.session import (
    Connector,
    Event,
    EventSink,
    HostSession,
    no_events,
    ssh_connector,
)
from hopcap.orchestrator.transport import CommandResult, HostTransport, RemoteProcess

ALIVE_TIMEOUT_S = 10.0
_AT_HELP = "expected HH:MM, an ISO date-time (2026-12-04T03:00) or +DURATION (+15m)"


# --------------------------------------------------------------------------- when


def _duration(option: str, text: str) -> float:
    from hopcap.inventory import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise OptionError(f"{option} {text}: {exc}") from None


def parse_at(text: str, now: float | None = None) -> float:
    """`--at`: `HH:MM[:SS]` (the next such time, local), an ISO date-time (local unless it
    names a zone) or `+DURATION` from now. Returns epoch seconds."""
    now = time.time() if now is None else now
    s = text.strip()
    if s.startswith("+"):
        return now + _duration("--at", s[1:])
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", s)
    if m:
        h, mi, se = int(m[1]), int(m[2]), int(m[3] or 0)
        if h > 23 or mi > 59 or se > 59:
            raise OptionError(f"--at {text}: not a time of day ({_AT_HELP})")
        today = _dt.datetime.fromtimestamp(now).date()
        for day in (today, today + _dt.timedelta(days=1)):
            ts = _dt.datetime.combine(day, _dt.time(h, mi, se)).astimezone().timestamp()
            if ts > now:
                return ts
        raise OptionError(f"--at {text}: cannot place this time of day")  # pragma: no cover
    try:
        dt = _dt.datetime.fromisoformat(s)
    except ValueError:
        raise OptionError(f"--at {text}: {_AT_HELP}") from None
    ts = (dt if dt.tzinfo is not None else dt.astimezone()).timestamp()
    if ts < now - 1:
        raise OptionError(f"--at {text} is in the past")
    return ts


@dataclass(frozen=True)
class Schedule:
    first_ts: float
    every_s: float | None = None
    count: int | None = 1  # None: until stopped (Ctrl-C)

    def start(self, i: int) -> float:
        return self.first_ts + i * (self.every_s or 0.0)


def make_schedule(
    at: str | None, every: str | None, count: int | None, now: float | None = None
) -> Schedule:
    """Validate `--at/--every/--count` (an `OptionError`, exit 3, for a bad value)."""
    now = time.time() if now is None else now
    every_s = None
    if every is not None:
        every_s = _duration("--every", every)
        if every_s <= 0:
            raise OptionError(f"--every {every}: must be longer than 0 (e.g. --every 10m)")
    if count is not None and count < 1:
        raise OptionError(f"--count {count}: must be at least 1")
    if count is not None and count > 1 and every_s is None:
        raise OptionError("--count needs --every (the time from one window's start to the next)")
    first = parse_at(at, now) if at is not None else now
    if every_s is None:
        count = 1
    return Schedule(first, every_s, count)


async def wait_until(ts: float, stop: asyncio.Event, emit: EventSink, what: str) -> bool:
    """Count down to `ts` (an event a second); False when `stop` was set meanwhile."""
    while True:
        left = ts - time.time()
        if left <= 0:
            return True
        emit(Event("countdown", text=what, done=int(left + 0.999)))
        try:
            await asyncio.wait_for(stop.wait(), min(1.0, left))
            return False
        except TimeoutError:
            pass


# --------------------------------------------------------------------------- connections


class _Kept:
    """A pooled transport handed to one window: `close()` leaves the connection open.

    It passes for the transport it keeps (`isinstance(kept, SSHTransport)`): the run asks
    that to choose how a host works (captures as jobs of its command shell, the clock
    through that shell, SFTP or exec pulls); a window saw none of it before and ran every
    capture in a session of its own, its clock over a session a sample, and probed the
    pull as "direct" (SFTP), which a host without SFTP (dropbear) cannot serve."""

    def __init__(self, inner: HostTransport) -> None:
        self.inner = inner
        self.name = inner.name

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self.inner)

    async def run(
        self, command: str, *, timeout: float = 30.0, input: str | None = None
    ) -> CommandResult:
        return await self.inner.run(command, timeout=timeout, input=input)

    async def spawn(
        self, command: str, *, stdin: bool = False, stdout_to: Path | None = None
    ) -> RemoteProcess:
        return await self.inner.spawn(command, stdin=stdin, stdout_to=stdout_to)

    async def get(
        self, remote: str, local: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        await self.inner.get(remote, local, progress=progress)

    async def close(self) -> None:
        pass  # the pool closes it

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class SessionPool:
    """Connections kept open across windows; `connect` is a `Connector` for run/check."""

    def __init__(self, connector: Connector = ssh_connector) -> None:
        self._connector = connector
        self._open: dict[str, HostTransport] = {}

    async def connect(self, host: Host, via: HostTransport | None) -> HostTransport:
        t = self._open.get(host.name)
        if t is not None:
            if await _alive(t):
                return _Kept(t)
            del self._open[host.name]
            await t.close()
        real_via = via.inner if isinstance(via, _Kept) else via
        t = await self._connector(host, real_via)
        self._open[host.name] = t
        return _Kept(t)

    async def close(self) -> None:
        # hosts reached through a jump host were opened after it: close them first
        for t in reversed(list(self._open.values())):
            await t.close()
        self._open.clear()


async def _alive(t: HostTransport) -> bool:
    try:
        res = await asyncio.wait_for(t.run("true", timeout=ALIVE_TIMEOUT_S), ALIVE_TIMEOUT_S + 2)
    except (HopcapError, TimeoutError):
        return False
    return res.ok


async def preflight(inv: Inventory, pool: SessionPool, emit: EventSink) -> None:
    """`hopcap check` through the pool: every problem at once, as one PreflightError."""
    results = await check(inv, emit=emit, connector=pool.connect)
    problems = [f"{r.host}: {p}" for r in results for p in r.problems]
    if problems:
        raise PreflightError(
            "a host is not ready (checked before the first window):\n  " + "\n  ".join(problems),
            hint="fix it (`hopcap check` shows every host), then schedule again",
        )


# --------------------------------------------------------------------------- windows

AfterWindow = Callable[[int, float, Path, RunRecord | None, str | None], None]


@dataclass(frozen=True)
class WindowsOutcome:
    done: int  # windows run
    interrupted: bool  # Ctrl-C (between or during windows)


def window_name(i: int, count: int | None, started: float) -> str:
    width = max(2, len(str(count))) if count else 2
    return f"w{i + 1:0{width}d}-{time.strftime('%Y%m%dT%H%M%S', time.localtime(started))}"


async def run_windows(
    inv: Inventory,
    schedule: Schedule,
    out: Path,
    base: RunOptions,
    after_window: AfterWindow,
    *,
    emit: EventSink = no_events,
    stop: asyncio.Event | None = None,
) -> WindowsOutcome:
    """Check every host now, then run one capture per window of `schedule` into
    `out/wNN-<start>/`, calling `after_window(index, scheduled_ts, dir, record, error)`
    after each (in a thread). A window that cannot capture at all is reported through
    `error` and the schedule goes on; Ctrl-C between windows ends it cleanly."""
    stop = stop or asyncio.Event()
    pool = SessionPool(base.connector)
    done = 0
    try:
        emit(Event("checking", text="connecting to and checking every host before the window"))
        await preflight(inv, pool, emit)
        emit(Event("checked", text="every host is ready"))
        i = 0
        while schedule.count is None or i < schedule.count:
            at = schedule.start(i)
            total = f"/{schedule.count}" if schedule.count else ""
            if not await wait_until(at, stop, emit, f"window {i + 1}{total}"):
                return WindowsOutcome(done, True)
            started = time.time()
            wdir = out / window_name(i, schedule.count, started)
            late = started - at
            emit(
                Event(
                    "window-start",
                    text=f"window {i + 1}{total} -> {wdir}"
                    + (f" (late by {late:.0f}s: the previous window ran over)" if late > 2 else ""),
                )
            )
            opts = replace(base, out=wdir, run_id=new_run_id(), connector=pool.connect)
            record: RunRecord | None = None
            error: str | None = None
            try:
                record = await run_capture(inv, opts, emit=emit, stop=stop)
            except HopcapError as exc:
                error = str(exc)
                emit(Event("window-failed", text=error))
            await asyncio.to_thread(after_window, i + 1, at, wdir, record, error)
            done += 1
            i += 1
            if stop.is_set() or (record is not None and record.interrupted):
                return WindowsOutcome(done, True)
        return WindowsOutcome(done, False)
    finally:
        await pool.close()


# --------------------------------------------------------------------------- repeat


def repeat_window(repeat: int | None, until_fail: bool) -> WindowFn:
    """A window that runs the inventory's repro `repeat` times (or, `until_fail`, until it
    exits non-zero), one after the other, until the window's time is up or Ctrl-C.

    The repro record keeps every run's exit status and times (`runs`), the output of the
    failing run (or the last), and `failed_run` (1-based) when one failed."""

    async def fn(
        inv: Inventory,
        sessions: dict[str, HostSession],
        window: float,
        stop: asyncio.Event,
        emit: EventSink,
    ) -> tuple[bool, dict[str, object] | None]:
        s = sessions.get(inv.repro.on) if inv.repro else None
        if inv.repro is None or s is None or not s.ok or s.transport is None:
            return await _window(inv, sessions, window, stop, emit)
        deadline = time.monotonic() + window
        runs: list[dict[str, object]] = []
        shown: CommandResult | None = None
        failed: int | None = None
        interrupted = False
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while repeat is None or len(runs) < repeat:
                left = deadline - time.monotonic()
                if left <= 0.5:
                    break
                n = len(runs) + 1
                emit(Event("repro", host=s.name, text=f"{inv.repro.run} (run {n})", done=n))
                t0 = time.time()
                task = asyncio.ensure_future(run_repro(s, inv.repro.run, left))
                await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)  # ended on its host
                    interrupted = True
                    break
                try:
                    res = task.result()
                except TransportError as exc:
                    runs.append({"error": str(exc), "started_ts": t0, "finished_ts": time.time()})
                    emit(Event("repro-failed", host=s.name, text=str(exc)))
                    break
                runs.append(
                    {"exit_status": res.exit_status, "started_ts": t0, "finished_ts": time.time()}
                )
                emit(Event("repro-done", host=s.name, text=f"exit {res.exit_status}"))
                shown = res
                if until_fail and res.exit_status != 0:
                    failed = len(runs)
                    break
            if not interrupted:
                await asyncio.sleep(SETTLE_S)
        finally:
            stopper.cancel()
        result: dict[str, object] = {
            "on": inv.repro.on,
            "command": inv.repro.run,
            "runs": runs,
            "repeat": repeat,
            "until_fail": until_fail,
            "failed_run": failed,
            "exit_status": shown.exit_status if shown else None,
            "started_ts": runs[0]["started_ts"] if runs else None,
            "finished_ts": runs[-1]["finished_ts"] if runs else None,
            "stdout": shown.stdout[-4000:] if shown else "",
            "stderr": shown.stderr[-4000:] if shown else "",
        }
        if interrupted:
            result["error"] = "interrupted"
        return interrupted, result

    return fn
