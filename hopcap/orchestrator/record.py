"""`hopcap record`: the flight recorder for intermittent faults.

Every point captures continuously into a ring on its host, bounded there in disk and time
whatever happens to the controller:
- disk: tcpdump's own `-C MB -W FILES` ring, FILES x MB at most half the free space shared
  by the host's points (the hard bound, kept by tcpdump itself), and a pruner beside it
  that deletes ring files older than `--ring` + `--post` + a margin (so under steady
  traffic the disk use is flat at about `--ring` seconds of packets);
- time: the capture's bound (`timeout`, or the shell watchdog where a host has none)
  with `--max-duration` + `--post` + a grace; the pruner ends with the capture.

The trigger is a command on an inventory host: with `--probe-every` it is run
periodically and fires on a non-zero exit; without, it is a watcher started once that
fires when it exits (bounded on its host by `timeout` as well). On the trigger: facts
are taken at once, the points keep capturing `--post`, then stop; only the ring files
holding the last `--ring` before the trigger (and the post time) are pulled, verified
and joined. Ctrl-C or `--max-duration` end the recording the same way, as an
interrupted record. Facts are also snapshotted every `SNAPSHOT_EVERY_S` (the cheap,
counter-like ones), so that `before` in the bundle is the state about a minute before
the failure and the deltas show what moved then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from hopcap.errors import CaptureError, HopcapError, OptionError, RunInterrupted, TransportError
from hopcap.model import HostFacts, Inventory, RunRecord, pcap_filename
from hopcap.orchestrator.capture import (
    CaptureSpec,
    CaptureStats,
    RunningCapture,
)
from hopcap.orchestrator.facts import clock_offset, collect_facts
from hopcap.orchestrator.run import (
    GRACE_S,
    _concat_pcaps,
    _facts,
    _get_verified,
    _prepare,
    _sha256,
    _shielded,
    arm_captures,
    fire_and_listen,
    host_spec_args,
    new_run_id,
    point_captures,
    run_repro,
    stop_captures,
)
from hopcap.orchestrator.session import (
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
    remove_remote_dir,
    resolve_all_points,
    ssh_connector,
)
from hopcap.orchestrator.transport import CommandResult, RemoteProcess, as_root, quote

MAX_RECORD_BYTES = 1_000_000_000  # ring budget per point, unless the disk has less
# many small files: the pruner frees space in small steps, so the disk use follows the
# last --ring seconds closely even at a few hundred kB/s
RING_FILES_MIN = 4
RING_FILES_MAX = 1000
KEEP_MARGIN_S = 10.0  # ring files are kept this much longer than --ring + --post
PRUNE_EVERY_S = 1
SNAPSHOT_EVERY_S = 10.0
LOOKBACK_S = 60.0  # `before` facts: the snapshot about this long before the trigger
SNAPSHOT_FACTS = ("nstat", "ss-s", "nft", "iptables", "sysctl")
PROBE_TIMEOUT_S = 60.0
STATUS_EVERY_S = 60.0
OUTPUT_TAIL = 4000
PULL_MARGIN_S = 2.0
NOT_RUNNABLE = (126, 127)  # the shell could not run the command at all


@dataclass(frozen=True)
class Until:
    host: str
    command: str


def parse_until(text: str, inv: Inventory) -> Until:
    """`--until "HOST: COMMAND"`; the host must be in the inventory."""
    host, sep, command = text.partition(":")
    host, command = host.strip(), command.strip()
    if not sep or not host or not command or " " in host:
        raise OptionError(
            f"--until {text!r}: expected HOST: COMMAND, e.g. "
            "--until 'client: curl -sf -m 5 http://203.0.113.80/'"
        )
    if host not in inv.hosts:
        raise OptionError(
            f"--until {text!r}: no host {host!r} in the inventory "
            f"(hosts: {', '.join(sorted(inv.hosts))})"
        )
    return Until(host, command)


@dataclass
class RecordOptions:
    out: Path  # the bundle directory; pcaps go to out/pcaps
    ring_s: float
    until: Until
    probe_every_s: float | None = None  # None: the command is a watcher
    post_s: float = 3.0
    max_duration_s: float = 8 * 3600.0
    run_id: str = ""
    collect_facts: bool = True
    snapshot_every_s: float = SNAPSHOT_EVERY_S
    connector: Connector = ssh_connector


def ring_layout(free_kb: int | None, points: int) -> tuple[int, int]:
    """(size of one ring file in MB, number of files) for one point of a host."""
    budget = MAX_RECORD_BYTES
    if free_kb is not None:
        budget = min(budget, free_kb * 1024 // 2 // max(points, 1))
    file_mb = max(1, budget // RING_FILES_MAX // 1_000_000)
    files = max(RING_FILES_MIN, min(RING_FILES_MAX, budget // (file_mb * 1_000_000)))
    return file_mb, files


@dataclass(frozen=True)
class RingSpec(CaptureSpec):
    """A capture into a ring of `files` files, pruned to the last `keep_s` seconds."""

    files: int = RING_FILES_MIN
    keep_s: float = 70.0

    def tcpdump_argv(self) -> list[str]:
        argv = super().tcpdump_argv()
        argv[argv.index("-W") + 1] = str(self.files)
        return argv

    def prune_script(self) -> str:
        # $1: the pid of the capture ($$ of its shell: tcpdump, or the `timeout` running
        # it); $2: the ring's base name; $3: keep seconds; $4: at most this many rounds
        # (the capture's bound: the pruner needs no `timeout` of its own). The newest file
        # (the one tcpdump writes) is never removed.
        return (
            'n=0; while [ "$n" -lt "$4" ] && kill -0 "$1" 2>/dev/null; do '
            'ls -1t "$2"* 2>/dev/null | tail -n +2 | xargs -r stat -c "%Y %n" 2>/dev/null '
            "| awk -v cut=$(( $(date +%s) - $3 )) '$1 < cut {print $2}' | xargs -r rm -f --; "
            f"sleep {PRUNE_EVERY_S}; n=$((n + 1)); done"
        )

    def sidecar(self) -> str:
        rounds = f"{(self.bound_s + 10) / PRUNE_EVERY_S:.0f}"
        return (
            quote(["sh", "-c", self.prune_script(), "prune"])
            + ' "$$" '
            + quote([self.base, f"{self.keep_s:.0f}", rounds])
            + " </dev/null >/dev/null 2>&1 & "
            + f"echo $! > {quote([self.prune_pidfile])}; "
        )

    @property
    def prune_pidfile(self) -> str:
        return self.pidfile + ".prune"

    def signal_command(self) -> str:
        # the pruner would notice the capture's end only at its next round
        return super().signal_command() + f"; kill $(cat {quote([self.prune_pidfile])}) 2>/dev/null"


@dataclass
class _Snapshot:
    ts: float
    outputs: dict[str, str]
    missing: dict[str, str]


@dataclass
class _State:
    sessions: dict[str, HostSession] = field(default_factory=dict)
    running: dict[str, RunningCapture] = field(default_factory=dict)
    point_errors: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    snapshots: dict[str, collections.deque[_Snapshot]] = field(default_factory=dict)
    snapshots_taken: int = 0
    probes: int = 0


def _stopped_before_captures(stop: asyncio.Event, doing: str) -> None:
    """Ctrl-C before any ring started: the recording ends there, with nothing to keep."""
    if stop.is_set():
        raise RunInterrupted(
            f"interrupted while {doing}, before any capture started: nothing was "
            "recorded, no bundle written"
        )


async def record(
    inv: Inventory,
    opts: RecordOptions,
    *,
    emit: EventSink = no_events,
    stop: asyncio.Event | None = None,
) -> RunRecord:
    """Record until the trigger fires (or Ctrl-C / `--max-duration`) and return the run.

    Raises `CaptureError` when the trigger host is unreachable, its command cannot run at
    all (exit 126/127), or no point could capture."""
    run_id = opts.run_id or new_run_id()
    bound = opts.max_duration_s + opts.post_s + GRACE_S
    stop = stop or asyncio.Event()
    started = time.time()
    pcaps = opts.out / "pcaps"
    st = _State()
    clocks: dict[str, tuple[float, float]] = {}
    clocks_after: dict[str, tuple[float, float]] = {}
    facts_start: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    facts_now: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    stats: dict[str, CaptureStats] = {}
    pulled: dict[str, tuple[Path, str]] = {}
    pull_info: dict[str, dict[str, object]] = {}
    ring_info: dict[str, dict[str, object]] = {}
    trigger: dict[str, object] | None = None
    ended = "ctrl-c"
    fired_ts: float | None = None
    watcher: _Watcher | None = None
    sessions = st.sessions

    names = hosts_to_connect(inv)
    chain: list[str] = []
    h: str | None = opts.until.host
    while h is not None and h not in names and h not in chain:
        chain.insert(0, h)
        h = inv.hosts[h].jump
    names += chain

    try:
        try:
            sessions.update(await connect_all(inv, names, emit, opts.connector, stop))
            unreachable = {n for n, s in sessions.items() if s.error}
            _stopped_before_captures(stop, "connecting to the hosts")
            await asyncio.gather(*(_prepare(s, clocks) for s in sessions.values() if s.ok))
            tsess = sessions[opts.until.host]
            if not tsess.ok or tsess.transport is None:
                raise CaptureError(
                    f"the trigger host is not ready: {tsess.error}",
                    hint="the recorder needs the --until host to watch for the failure",
                )
            if opts.probe_every_s is None and tsess.caps.timeout not in ("coreutils", "busybox"):
                raise CaptureError(
                    f"{tsess.name}: coreutils `timeout` is missing; the watcher cannot be bounded",
                    hint="install coreutils there, or use --probe-every",
                )
            await resolve_all_points(sessions, inv)
            for s in sessions.values():
                if s.error:
                    st.errors.append(s.error)
                    if s.name not in unreachable:  # connect_all said those
                        emit(Event("failed", host=s.name, text=s.error))
            if opts.collect_facts:
                facts_start.update(await _facts(sessions))
                now = time.time()
                for n, (out, miss) in facts_start.items():
                    st.snapshots[n] = collections.deque([_Snapshot(now, out, miss)])

            path_sessions = [sessions[n] for n in inv.path if n in sessions]

            async def mkdir(s: HostSession) -> None:
                try:
                    await make_remote_dir(s, run_id, bound)
                except HopcapError as exc:
                    s.error = str(exc)
                    st.errors.append(s.error)
                    emit(Event("failed", host=s.name, text=s.error))

            _stopped_before_captures(stop, "probing the hosts")
            try:  # nothing to write before
                pcaps.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CaptureError(f"cannot write {pcaps}: {exc.strerror}") from None
            dirs = [s for s in path_sessions if s.ok and s.points]
            if opts.probe_every_s is None and tsess not in dirs:
                dirs.append(tsess)
            await asyncio.gather(*(mkdir(s) for s in dirs))
            if opts.probe_every_s is None and tsess.remote_dir is None:
                raise CaptureError(f"{tsess.name}: cannot start the watcher: {tsess.error}")

            keep = opts.ring_s + opts.post_s + KEEP_MARGIN_S
            specs: list[tuple[HostSession, RingSpec]] = []
            for s in path_sessions:
                if not s.ok or not s.points:
                    continue
                file_mb, files = ring_layout(s.free_kb, len(s.points))
                for p in s.points:
                    spec = RingSpec(
                        point=p,
                        ring_mb=file_mb,
                        files=files,
                        keep_s=keep,
                        **host_spec_args(s, inv.filter, bound),
                    )
                    specs.append((s, spec))
                    ring_info[p.name] = {
                        "file_mb": file_mb,
                        "files": files,
                        "max_mb": file_mb * files,
                        "keep_s": keep,
                    }
            await arm_captures(specs, pcaps, st.running, st.point_errors, emit)
            await fire_and_listen(st.running, st.point_errors, emit)
            live = [n for n in st.running if n not in st.point_errors]
            if not live:
                raise CaptureError(
                    "no capture point could start:\n  "
                    + "\n  ".join(list(st.point_errors.values()) + st.errors)
                )

            # the trigger, the periodic facts, the status line; until one of the ends
            mode = "probe" if opts.probe_every_s is not None else "watcher"
            emit(
                Event(
                    "recording",
                    text=f"recording, ring {opts.ring_s:g}s; trigger: {mode} on "
                    f"{opts.until.host}: {opts.until.command} (Ctrl-C to stop)",
                )
            )
            assert tsess.transport is not None
            if opts.probe_every_s is not None:
                trig = asyncio.ensure_future(_probe_loop(tsess, opts, st, emit))
            else:
                watcher = _Watcher(
                    tsess, opts.until.command, f"{tsess.remote_dir}/watcher.pid", bound
                )
                await watcher.start()
                trig = asyncio.ensure_future(watcher.wait())
            helpers = [
                asyncio.ensure_future(_snapshot_loop(opts, st)),
                asyncio.ensure_future(_status_loop(opts, st, started, emit)),
            ]
            stopper = asyncio.ensure_future(stop.wait())
            limit = asyncio.ensure_future(asyncio.sleep(opts.max_duration_s))
            try:
                await asyncio.wait({trig, stopper, limit}, return_when=asyncio.FIRST_COMPLETED)
                if trig.done():
                    trigger = trig.result()  # raises CaptureError for a command that cannot run
                    fired_ts = float(trigger["fired_ts"])  # type: ignore[arg-type]
                    ended = "trigger"
                    emit(
                        Event(
                            "trigger",
                            host=opts.until.host,
                            text=f"fired ({_why(trigger)}); capturing {opts.post_s:g}s more",
                        )
                    )
                    facts_task = asyncio.ensure_future(_facts(sessions))
                    post = asyncio.ensure_future(asyncio.sleep(opts.post_s))
                    await asyncio.wait({post, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    post.cancel()
                    facts_now.update(await facts_task)
                else:
                    ended = "ctrl-c" if stopper.done() else "max-duration"
                    emit(Event("stopping", text=f"recording ended ({ended}) without a trigger"))
            finally:
                fired = trig.done()
                for t in (trig, stopper, limit, *helpers):
                    t.cancel()
                if watcher is not None and not fired:
                    await _shielded(watcher.stop(), timeout=20)
        finally:
            await stop_captures(st.running, st.point_errors, stats, emit)
        stopped_ts = time.time()
        end_ts = stopped_ts if fired_ts is None else fired_ts + opts.post_s
        from_ts = (fired_ts if fired_ts is not None else stopped_ts) - opts.ring_s

        if opts.collect_facts and not facts_now:
            facts_now.update(await _facts(sessions))

        async def clock_end(s: HostSession) -> None:
            if s.ok and s.transport is not None:
                with contextlib.suppress(HopcapError):
                    clocks_after[s.name] = await clock_offset(s.transport, date_ns=s.caps.date_ns)

        await asyncio.gather(*(clock_end(s) for s in sessions.values()))

        async def pull(name: str, rc: RunningCapture) -> None:
            clk = clocks.get(rc.transport.name)
            since = from_ts + (clk[0] if clk else 0.0) - PULL_MARGIN_S
            try:
                pulled[name], pull_info[name] = await _pull_ring(
                    rc, pcaps / pcap_filename(name), since, emit, sessions[rc.spec.point.host].caps
                )
            except HopcapError as exc:
                st.point_errors[name] = f"pull failed: {exc}"
                emit(Event("pull-failed", point=name, text=str(exc)))

        await asyncio.gather(
            *(pull(n, rc) for n, rc in st.running.items() if n not in st.point_errors or n in stats)
        )
    finally:
        await asyncio.gather(*(remove_remote_dir(s) for s in sessions.values()))
        await close_all(sessions)

    captures = point_captures(inv, sessions, st.running, stats, pulled, clocks, st.point_errors)
    for n in inv.path:
        if n in sessions and not sessions[n].points and sessions[n].error is None:
            st.errors.append(f"{n}: no capture points")
    reference = fired_ts if fired_ts is not None else stopped_ts
    host_facts, before_info = _host_facts(
        sessions, facts_start, facts_now, st, clocks, clocks_after, reference
    )
    warnings = [
        f"{n}: the ring held only {info['covered_s']:.0f}s before the trigger (its "
        f"{ring_info[n]['max_mb']} MB filled up faster than --ring)"
        for n, info in pull_info.items()
        if info.get("covered_s") is not None
        and float(info["covered_s"]) < opts.ring_s - PULL_MARGIN_S  # type: ignore[arg-type]
    ]
    interrupted = ended != "trigger"
    complete = all(c.pcap is not None and c.error is None for c in captures)
    recording: dict[str, object] = {
        "ring_s": opts.ring_s,
        "post_s": opts.post_s,
        "probe_every_s": opts.probe_every_s,
        "max_duration_s": opts.max_duration_s,
        "ended": ended,
        "recording_started_ts": started,
        "stopped_ts": stopped_ts,
        "kept_from_ts": from_ts,
        "kept_to_ts": end_ts,
        "ring": ring_info,
        "pulled": pull_info,
        "snapshots": st.snapshots_taken,
        "snapshot_every_s": opts.snapshot_every_s,
        "facts_before": before_info,
        "warnings": warnings,
    }
    if opts.probe_every_s is not None:
        recording["probes"] = st.probes
    return RunRecord(
        run_id=run_id,
        started_ts=started,
        finished_ts=time.time(),
        inventory=inv.to_public_dict(),
        captures=captures,
        facts=host_facts,
        complete=complete and not st.errors and not interrupted,
        interrupted=interrupted,
        errors=tuple(st.errors + [e for e in st.point_errors.values() if e not in st.errors]),
        trigger=trigger,
        recording=recording,
    )


def _why(trigger: dict[str, object]) -> str:
    if trigger.get("error"):
        return str(trigger["error"])
    return f"exit {trigger.get('exit_status')}"


def _tail(res: CommandResult) -> str:
    return (res.stdout + res.stderr)[-OUTPUT_TAIL:]


async def _probe_loop(
    s: HostSession, opts: RecordOptions, st: _State, emit: EventSink
) -> dict[str, object]:
    """Run the probe every `probe_every_s` until it exits non-zero (or cannot finish)."""
    assert s.transport is not None and opts.probe_every_s is not None
    cmd = opts.until.command
    while True:
        t0 = time.time()
        base: dict[str, object] = {
            "host": s.name,
            "command": cmd,
            "mode": "probe",
            "started_ts": t0,
        }
        try:
            res = await run_repro(s, cmd, PROBE_TIMEOUT_S, "the probe's time")
        except TransportError as exc:
            return {**base, "exit_status": None, "error": str(exc), "fired_ts": time.time()}
        st.probes += 1
        if res.exit_status in NOT_RUNNABLE and st.probes == 1:
            raise CaptureError(
                f"{s.name}: the probe cannot run (exit {res.exit_status}): "
                + (_tail(res).strip().splitlines() or ["no output"])[-1],
                hint="check the --until command by hand on that host",
            )
        if not res.ok:
            return {
                **base,
                "exit_status": res.exit_status,
                "exit_signal": res.exit_signal,
                "output": _tail(res),
                "fired_ts": time.time(),
                "probes": st.probes,
            }
        emit(Event("probe", host=s.name, text=f"ok ({st.probes} so far)"))
        await asyncio.sleep(max(0.0, t0 + opts.probe_every_s - time.time()))


class _Watcher:
    """The watcher: started once, fires when it exits (bounded on its host by `timeout`);
    only the end of its output is kept (a watcher may print for hours)."""

    def __init__(self, s: HostSession, command: str, pidfile: str, bound: float) -> None:
        assert s.transport is not None
        self.s = s
        self.transport = s.transport
        self.command = command
        self.pidfile = pidfile
        self.bound = bound
        self.proc: RemoteProcess | None = None
        self.t0 = 0.0

    async def start(self) -> None:
        script = (
            f'( timeout -k 5 {self.bound:.0f} sh -c "$1" 2>&1 & echo $! > "$2"; wait $!; '
            'echo "@@hopcap-rc $?" ) | tail -c ' + str(OUTPUT_TAIL)
        )
        self.t0 = time.time()
        self.proc = await self.transport.spawn(
            quote(["sh", "-c", script, "watch", self.command, self.pidfile])
        )

    async def wait(self) -> dict[str, object]:
        assert self.proc is not None
        res = await self.proc.wait()
        fired = time.time()
        out = res.stdout
        status: int | None = res.exit_status
        head, sep, rc = out.rstrip().rpartition("@@hopcap-rc ")
        if sep and rc.strip().isdigit():
            status, out = int(rc.strip()), head
        if status in NOT_RUNNABLE and fired - self.t0 < 5:
            raise CaptureError(
                f"{self.s.name}: the watcher cannot run (exit {status}): "
                + (out.strip().splitlines() or ["no output"])[-1],
                hint="check the --until command by hand on that host",
            )
        return {
            "host": self.s.name,
            "command": self.command,
            "mode": "watcher",
            "started_ts": self.t0,
            "exit_status": status,
            "output": out[-OUTPUT_TAIL:],
            "fired_ts": fired,
        }

    async def stop(self) -> None:
        """End a watcher that has not fired (its pid file may be a moment late)."""
        pidfile = quote([self.pidfile])
        with contextlib.suppress(HopcapError):
            await self.transport.run(
                f"for i in 1 2 3 4 5 6 7 8 9 10; do [ -s {pidfile} ] && break; sleep 0.2; "
                f"done; kill -TERM $(cat {pidfile}) 2>/dev/null; true",
                timeout=15,
            )
        if self.proc is not None:
            self.proc.close()


async def _snapshot_loop(opts: RecordOptions, st: _State) -> None:
    """Counters every `snapshot_every_s`; per host only those needed to look back
    `LOOKBACK_S` from any moment are kept (memory stays flat however long it runs)."""
    if not opts.collect_facts:
        return
    while True:
        await asyncio.sleep(opts.snapshot_every_s)

        async def one(s: HostSession) -> None:
            assert s.transport is not None
            out, miss = await collect_facts(
                s.transport, sudo=s.host.sudo, is_root=s.is_root, only=SNAPSHOT_FACTS
            )
            now = time.time()
            q = st.snapshots.setdefault(s.name, collections.deque())
            q.append(_Snapshot(now, out, miss))
            while len(q) >= 2 and q[1].ts <= now - LOOKBACK_S:
                q.popleft()

        await asyncio.gather(
            *(one(s) for s in st.sessions.values() if s.ok and s.transport is not None),
            return_exceptions=True,
        )
        st.snapshots_taken += 1


async def _status_loop(opts: RecordOptions, st: _State, started: float, emit: EventSink) -> None:
    """A line a minute (how long, probes, ring bytes on disk) and per-point disk use."""
    while True:
        await asyncio.sleep(STATUS_EVERY_S)
        total = 0
        for name, rc in list(st.running.items()):
            if name in st.point_errors:
                continue
            with contextlib.suppress(HopcapError):
                size = await rc.bytes_written()
                total += size
                emit(Event("captured", point=name, done=size))
        mins = (time.time() - started) / 60
        probes = f", {st.probes} probes ok" if opts.probe_every_s is not None else ""
        emit(
            Event(
                "recording",
                text=f"recording for {mins:.0f} min{probes}, rings {total / 1e6:.1f} MB on disk",
            )
        )


async def _pull_ring(
    rc: RunningCapture, local: Path, since_remote: float, emit: EventSink, caps: HostCaps
) -> tuple[tuple[Path, str], dict[str, object]]:
    """Pull the ring files written since `since_remote` (host clock), oldest first,
    verified, joined into one pcap."""
    t = rc.transport
    name = rc.spec.point.name
    pattern = quote([rc.spec.base]) + "*"
    res = await t.run(
        as_root(f"ls -1tr {pattern} 2>/dev/null | xargs -r stat -c '%Y %n'", rc.spec.sudo),
        timeout=30,
    )
    files: list[tuple[float, str]] = []  # (mtime, path), oldest first
    for line in res.stdout.splitlines():
        stamp, _, path = line.partition(" ")
        if stamp.isdigit() and path:
            files.append((float(stamp), path))
    if not files:
        raise CaptureError(f"{name}: tcpdump wrote no file")
    # the newest file is the one tcpdump wrote last: it covers until the stop, even when
    # nothing has been written to it since before the range started
    wanted = [f for f in files[:-1] if f[0] >= since_remote] + files[-1:]
    # a file holds the packets from the previous file's mtime to its own: those with an
    # mtime after the start hold the range (mtimes are whole seconds: PULL_MARGIN_S)
    covered = None
    if len(files) == getattr(rc.spec, "files", 0) and files[0][0] > since_remote:
        covered = files[-1][0] - files[0][0]  # the ring wrapped: older data is gone
    parts: list[Path] = []
    for i, (_, remote) in enumerate(wanted):
        part = local.with_suffix(f".part{i}")
        await _get_verified(rc, remote, part, emit, caps)
        parts.append(part)
    if len(parts) == 1:
        parts[0].replace(local)
    else:
        for w in _concat_pcaps(parts, local):
            emit(Event("warning", point=name, text=w))
    emit(Event("pulled", point=name, done=local.stat().st_size))
    info: dict[str, object] = {"files": len(wanted), "ring_files": len(files)}
    if covered is not None:
        info["covered_s"] = covered
    return (local, _sha256(local)), info


def _host_facts(
    sessions: dict[str, HostSession],
    start: dict[str, tuple[dict[str, str], dict[str, str]]],
    now: dict[str, tuple[dict[str, str], dict[str, str]]],
    st: _State,
    clocks: dict[str, tuple[float, float]],
    clocks_after: dict[str, tuple[float, float]],
    reference: float,
) -> tuple[tuple[HostFacts, ...], dict[str, object]]:
    """`before`: the start's facts updated with the newest snapshot taken at least
    `LOOKBACK_S` before `reference` (or the oldest kept); `after`: at the trigger."""
    out: list[HostFacts] = []
    info: dict[str, object] = {}
    for n in sessions:
        if n not in start and n not in now:
            continue
        before = dict(start.get(n, ({}, {}))[0])
        missing = dict(start.get(n, ({}, {}))[1])
        q = st.snapshots.get(n) or collections.deque()
        older = [x for x in q if x.ts <= reference - LOOKBACK_S]
        snap = older[-1] if older else (q[0] if q else None)
        if snap is not None:
            before.update(snap.outputs)
            info[n] = {"ts": snap.ts, "seconds_before": round(reference - snap.ts, 3)}
        after, miss_after = now.get(n, ({}, {}))
        out.append(
            HostFacts(
                host=n,
                before=before,
                after=after,
                missing={**missing, **miss_after},
                clock_before=clocks.get(n),
                clock_after=clocks_after.get(n),
            )
        )
    return tuple(out), info
