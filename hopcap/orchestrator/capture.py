"""The life of one remote tcpdump: build its command, start it, wait for "listening", stop it
with SIGINT, read its statistics, list its files.

Where it runs: a capture written to files on a host with a command shell (a Linux host
over SSH) runs as a background job of that shell (`ShellCapture`, `arm_in_shell`): no
session of its own, its stderr ("listening", errors, statistics) comes back tagged
through the shell's. A streamed capture (`-w -`: the packets are the channel's output)
and a capture on a host without a command shell have an exec channel each
(`RunningCapture`).

Every point starts on "go", once all are armed: an armed capture is a shell that knows its
pid and waits for a line (on its channel's stdin, or on a FIFO of its own that the command
shell's feeder writes into at once, `JobShell.go`); "go" to every point of a host is one
write on the connection.

Every capture is bounded on the remote host itself, so that it can never outlive its window
even if the controller dies or the SSH connection drops:
- in time by `timeout -s INT -k 5 BOUND` (SIGINT first, so the pcap is complete): coreutils'
  or BusyBox's (whose tcpdump keeps the shell's pid: BusyBox's timeout execs the program and
  leaves a watchdog behind); `timeout -t BOUND -s INT` for BusyBox before 1.30; on a host
  without any `timeout`, a shell watchdog that polls tcpdump every second and SIGINTs it
  at the bound (SIGKILL 5 s later), and ends with it;
- in disk by a `-C`/`-W` ring sized from the free space of the remote directory.

A capture in the command shell also ends with the connection: a guard beside it watches the
shell's feeder (which ends at the end of the channel's input: the controller closed it,
died, or lost the connection) every second and then SIGTERMs the capture (tcpdump ends
as on SIGINT), SIGKILL 5 s later if it is still there; the guard ends with the capture.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hopcap.errors import CaptureError, HopcapError
from hopcap.inventory.values import VALID_INTERFACE
from hopcap.model import CapturePoint
from hopcap.orchestrator.transport import (
    HostTransport,
    JobShell,
    RemoteProcess,
    SSHTransport,
    as_root,
    plain_path,
    quote,
)

F5_NOISE = re.compile(r":n{1,3}p?\Z")  # BIG-IP tcpdump: `0.0:nnnp`, `external:nn`
F5_ALL_TMM = "0.0"  # BIG-IP tcpdump: every TMM interface; no kernel interface has the name


def is_f5_name(interface: str) -> bool:
    """Whether `interface` is one only a BIG-IP's tcpdump knows (`0.0`, a noise suffix)."""
    return F5_NOISE.search(interface) is not None or interface == F5_ALL_TMM


def interface_present(interface: str, have: Iterable[str]) -> bool:
    """Whether a host whose kernel interfaces are `have` can capture on `interface`: a
    BIG-IP noise suffix names no other interface, and `0.0` is tcpdump's own."""
    dev = F5_NOISE.sub("", interface)
    return dev == F5_ALL_TMM or dev in set(have)


_STAT_RE = re.compile(r"^(\d+) packets? (captured|received by filter|dropped by kernel)")
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
RING_FILES = 4
RING_BUFFER_KIB = 32768  # tcpdump -B: the kernel capture buffer per point


@dataclass(frozen=True)
class CaptureSpec:
    point: CapturePoint
    remote_dir: str
    filter: str  # the complete BPF expression, own SSH session already excluded
    bound_s: float  # hard upper bound of the capture's life on the remote host
    ring_mb: int  # size of each ring file in millions of bytes (tcpdump -C)
    sudo: bool
    drop_to_root: bool  # pass `-Z root` (tcpdump running as root would otherwise setuid)
    stream: bool = False  # `-w -`: packets flow over the SSH channel, nothing is written remotely
    timeout: str | None = "coreutils"  # HostCaps.timeout: which bound; None: a shell watchdog

    @property
    def base(self) -> str:
        return f"{self.remote_dir}/{safe_name(self.point.interface)}.pcap"

    @property
    def pidfile(self) -> str:
        return f"{self.remote_dir}/{safe_name(self.point.interface)}.pid"

    @property
    def guard_pidfile(self) -> str:
        return self.pidfile + ".guard"

    @property
    def go_fifo(self) -> str:
        """The FIFO a capture in the command shell reads its "go" from."""
        return f"{self.remote_dir}/{safe_name(self.point.interface)}.go"

    def tcpdump_argv(self) -> list[str]:
        argv = [
            "tcpdump",
            "-i",
            self.point.interface,
            "-n",
            "-s",
            "0",
            "-U",
            "--time-stamp-precision=nano",
            # without it the last block of the kernel ring (up to a second of packets) is
            # lost when tcpdump is stopped with SIGINT
            "--immediate-mode",
            # immediate mode uses one ring frame per packet, each as large as the biggest
            # (offloaded) packet: the default 2 MB ring drops bursts of a few dozen
            "-B",
            str(RING_BUFFER_KIB),
        ]
        if self.stream:
            argv += ["-w", "-"]
        else:
            argv += ["-C", str(self.ring_mb), "-W", str(RING_FILES), "-w", self.base]
        if self.drop_to_root:
            argv[1:1] = ["-Z", "root"]
        argv.append(self.filter)
        return argv

    def signal_command(self) -> str:
        """The shell command that SIGINTs this capture (and ends what runs beside it)."""
        return f"kill -INT $(cat {quote([self.pidfile])}) 2>/dev/null"

    def sidecar(self) -> str:
        """A background job started beside tcpdump (`... & `), for subclasses: it must hold
        none of the channel's descriptors and end with the capture (whose pid is `$$`)."""
        return ""

    def _bounded(self) -> tuple[str, bool]:
        """The time-bounded tcpdump command, and whether that needs a shell watchdog."""
        bound = f"{self.bound_s:.0f}"
        argv = self.tcpdump_argv()
        if self.timeout in ("coreutils", "busybox"):
            return quote(["timeout", "-s", "INT", "-k", "5", bound, *argv]), False
        if self.timeout == "busybox-t":
            return quote(["timeout", "-t", bound, "-s", "INT", *argv]), False
        return quote(argv), True

    def command(self) -> str:
        """The command line of a capture with a session of its own: record our pid, then
        exec the time-bounded tcpdump on a "go" line on stdin."""
        bounded, needs_watchdog = self._bounded()
        watchdog = ""
        if needs_watchdog:
            # `$$` stays the pid of tcpdump (exec); the watchdog holds none of the channel's
            # descriptors, so the session ends with tcpdump, and the watchdog a second later
            watchdog = (
                _guard(f"[ $n -lt {self.bound_s:.0f} ] && kill -0 $$", "INT")
                + " </dev/null >/dev/null 2>&1 & "
            )
        # armed first (shell up, pid known), then tcpdump on a "go" line, so that every point
        # starts within one network write of the others; EOF instead of "go" starts nothing
        inner = (
            f"echo $$ > {quote([self.pidfile])} && echo armed >&2 && read go && "
            f"{{ {self.sidecar()}{watchdog}exec {bounded}; }}"
        )
        return as_root(quote(["sh", "-c", inner]), self.sudo)

    def shell_command(self, feed_pid: int) -> str:
        """The command line of a capture run as a job of the command shell whose feeder
        is `feed_pid` (`ShellCapture`): record our pid, open the "go" FIFO, start the
        guard, say "armed", exec the time-bounded tcpdump on the "go" line."""
        bounded, needs_watchdog = self._bounded()
        alive = "kill -0 $$ && kill -0 " + str(feed_pid)
        if needs_watchdog:  # the guard is the bound too
            alive = f"[ $n -lt {self.bound_s:.0f} ] && " + alive
        # SIGTERM: an armed shell is a background job, which ignores SIGINT
        guard = (
            _guard(alive, "TERM")
            + f" </dev/null >/dev/null 2>&1 4<&- & echo $! > {quote([self.guard_pidfile])}; "
        )
        fifo = quote([self.go_fifo])
        inner = (
            f"echo $$ > {quote([self.pidfile])} && exec 4<>{fifo} || exit 1; {guard}"
            "echo armed >&2; read go <&4 || exit 1; exec 4<&-; "
            f"{self.sidecar()}exec {bounded}"
        )
        return as_root(quote(["sh", "-c", inner]), self.sudo)


def _guard(alive: str, signal: str) -> str:
    """A watchdog subshell: while the shell test `alive` holds (`$n`: seconds so far),
    sleep; then send `signal` to `$$`, and SIGKILL 5 s later if it is still there. Each
    test's complaints are silenced."""
    test = " && ".join(f"{t.strip()} 2>/dev/null" for t in alive.split("&&"))
    wait5 = "while [ $n -lt 5 ] && kill -0 $$ 2>/dev/null; do sleep 1; n=$((n+1)); done"
    return (
        f"(n=0; while {test}; do sleep 1; n=$((n+1)); done; kill -{signal} $$ 2>/dev/null && "
        f"{{ n=0; {wait5}; kill -0 $$ 2>/dev/null && kill -KILL $$; }})"
    )


@dataclass(frozen=True)
class CaptureStats:
    captured: int | None
    received: int | None
    dropped: int | None


def safe_name(interface: str) -> str:
    """The interface's name for a remote file name, once checked by the inventory's rule
    (the only one); a BIG-IP noise suffix's ':' becomes '_' (`0.0:nnnp` -> `0.0_nnnp`)."""
    if not VALID_INTERFACE.match(interface):
        raise CaptureError(f"refusing interface name {interface!r}: not a valid interface name")
    return interface.replace(":", "_")


def ssh_exclusion(ssh_connection: str) -> str | None:
    """A BPF clause excluding our own SSH session, from the remote `$SSH_CONNECTION`
    ("client_ip client_port server_ip server_port")."""
    parts = ssh_connection.split()
    if len(parts) != 4 or not (parts[1].isdigit() and parts[3].isdigit()):
        return None
    cip, cport, sip, sport = parts
    for ip in (cip, sip):
        if not re.fullmatch(r"[0-9A-Fa-f:.]+", ip):
            return None
    return f"not (tcp and host {cip} and host {sip} and port {cport} and port {sport})"


def build_filter(user_filter: str, exclusion: str | None) -> str:
    if exclusion is None:
        return user_filter
    return f"({user_filter}) and {exclusion}"


def parse_stats(stderr: str) -> CaptureStats:
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        m = _STAT_RE.match(line.strip())
        if m:
            found[m.group(2)] = int(m.group(1))
    return CaptureStats(
        captured=found.get("captured"),
        received=found.get("received by filter"),
        dropped=found.get("dropped by kernel"),
    )


class RunningCapture:
    """A started tcpdump on one point."""

    def __init__(
        self, transport: HostTransport, spec: CaptureSpec, stream_to: Path | None = None
    ) -> None:
        self.transport = transport
        self.spec = spec
        self.stream_to = stream_to if spec.stream else None
        self.proc: RemoteProcess | None = None
        self.start_ts: float | None = None
        self.ready_ts: float | None = None
        self.stop_ts: float | None = None
        self.stderr_head: list[str] = []

    def signal_command(self) -> str:
        """The shell command that SIGINTs this capture (`CaptureSpec.signal_command`)."""
        return self.spec.signal_command()

    def recorded_command(self) -> str:
        """The command line the capture ran with, for the record."""
        return self.spec.command()

    async def arm(self) -> None:
        """Open the channel and start the remote shell, up to the point of exec'ing tcpdump."""
        self.proc = await self.transport.spawn(
            self.spec.command(), stdin=True, stdout_to=self.stream_to
        )
        await self.until_armed()

    async def until_armed(self) -> None:
        """Wait for the started shell's "armed"; a `CaptureError` with what it said when it
        ends or stays silent."""
        assert self.proc is not None
        try:
            line = await asyncio.wait_for(self._until_armed(), READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise CaptureError(
                f"{self.spec.point.name}: the remote shell did not start" + self._said()
            ) from exc
        if line is None:
            try:
                res = await self.proc.wait(timeout=5)
                status = f"exit {res.exit_status}"
            except TimeoutError:
                self.proc.close()
                status = "its output ended"
            raise CaptureError(
                f"{self.spec.point.name}: the capture could not start ({status})" + self._said()
            )

    async def _until_armed(self) -> str | None:
        """Read the shell's stderr up to "armed" (a login may print notices first); None
        when it ends before."""
        assert self.proc is not None
        while True:
            line = await self.proc.readline_stderr()
            if not line:
                return None
            if line.strip() == "armed":
                return line
            self.stderr_head.append(line.rstrip())

    def fire(self) -> None:
        """Let the armed shell exec tcpdump (no await: all points are fired in one go)."""
        assert self.proc is not None
        self.start_ts = time.time()
        self.proc.write("go\n")

    async def until_listening(self) -> None:
        """Return once tcpdump says it is listening."""
        try:
            await asyncio.wait_for(self._until_listening(), READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise CaptureError(
                f"{self.spec.point.name}: tcpdump did not report listening within "
                f"{READY_TIMEOUT_S:g}s" + self._said()
            ) from exc

    async def _until_listening(self) -> None:
        assert self.proc is not None
        while True:
            line = await self.proc.readline_stderr()
            if not line:
                res = await self.proc.wait(timeout=5)
                raise CaptureError(
                    f"{self.spec.point.name}: tcpdump exited before listening "
                    f"(exit {res.exit_status})" + self._said(),
                    hint=_hint_for(self.stderr_head),
                )
            self.stderr_head.append(line.rstrip())
            if "listening on" in line:
                self.ready_ts = time.time()
                return

    def _said(self) -> str:
        lines = [s for s in self.stderr_head if s.strip()]
        return f": {lines[-1]}" if lines else ""

    async def stop(self, *, signalled: bool = False) -> CaptureStats:
        """SIGINT the capture (so the pcap is complete) and collect its statistics.
        `signalled`: the SIGINT was already sent (`stop_all` signals a host's captures in
        one command, and noted the time)."""
        if not signalled or self.stop_ts is None:
            self.stop_ts = time.time()
        if self.proc is None:
            return CaptureStats(None, None, None)
        if not signalled:
            await self.transport.run(as_root(kill_command([self]), self.spec.sudo), timeout=15)
        try:
            res = await self.proc.wait(timeout=STOP_TIMEOUT_S)
        except TimeoutError as exc:
            raise CaptureError(f"{self.spec.point.name}: tcpdump did not stop") from exc
        finally:
            self.proc.close()
        return parse_stats(res.stderr)

    async def bytes_written(self) -> int:
        """Bytes in the capture's files so far (for progress)."""
        if self.stream_to is not None:
            return self.stream_to.stat().st_size if self.stream_to.exists() else 0
        pattern = quote([self.spec.base]) + "*"
        res = await self.transport.run(
            as_root(
                f"stat -c %s {pattern} 2>/dev/null | awk '{{s += $1}} END {{print s + 0}}'",
                self.spec.sudo,
            ),
            timeout=10,
        )
        return int(res.stdout.strip() or 0)


class ShellCapture(RunningCapture):
    """A capture run as a background job of its host's command shell (`arm_in_shell`);
    "go" reaches every point of the host in one write (`JobShell.go`)."""

    def __init__(self, transport: SSHTransport, spec: CaptureSpec) -> None:
        super().__init__(transport, spec)
        self.feed_pid: int | None = None
        self.fellows: list[ShellCapture] = [self]  # the host's captures armed with this one
        self.jobs: JobShell | None = None
        self.armed = False
        self.fired = False

    def signal_command(self) -> str:
        # the guard would notice the capture's end only at its next round
        return (
            f"{self.spec.signal_command()}; kill $(cat {quote([self.spec.guard_pidfile])}) "
            "2>/dev/null"
        )

    def recorded_command(self) -> str:
        if self.feed_pid is None:
            return self.spec.command()
        return self.spec.shell_command(self.feed_pid)

    def fire(self) -> None:
        """ "go" to every armed capture of the host that is not yet fired, in one write."""
        assert self.jobs is not None
        go = [rc for rc in self.fellows if rc.armed and not rc.fired]
        now = time.time()
        for rc in go:
            rc.fired, rc.start_ts = True, now
        if go:
            # a lost connection: each point's "listening" then fails with the shell's end
            with contextlib.suppress(HopcapError):
                self.jobs.go([rc.spec.go_fifo for rc in go])


def runs_in_shell(transport: HostTransport | None, spec: CaptureSpec) -> bool:
    """Whether a capture runs as a job of the host's command shell (`ShellCapture`)."""
    return (
        isinstance(transport, SSHTransport)
        and transport.command_shell
        and type(spec).command is CaptureSpec.command  # its own ways: not for the shell
        and not spec.stream
        and plain_path(spec.go_fifo)
    )


async def arm_in_shell(captures: Sequence[ShellCapture]) -> dict[str, str]:
    """Start the captures of one host in its command shell, in one command (their "go"
    FIFOs made first), and wait for each to be armed: point name -> why it failed."""
    first = captures[0]
    assert isinstance(first.transport, SSHTransport)
    failed: dict[str, str] = {}
    try:
        async with first.transport.job_shell() as jobs:
            for rc in captures:
                rc.feed_pid, rc.jobs, rc.fellows = jobs.feed_pid, jobs, list(captures)
            # the user's FIFOs (a `sudo` capture opens them as root); only read and written
            fifos = [rc.spec.go_fifo for rc in captures]
            procs = await jobs.start(
                [rc.spec.shell_command(jobs.feed_pid) for rc in captures],
                before=quote(["mkfifo", "-m", "600", *fifos]),
            )
    except HopcapError as exc:
        return {rc.spec.point.name: f"{rc.spec.point.name}: the capture could not start: {exc}"
                for rc in captures}  # fmt: skip

    async def armed(rc: ShellCapture, proc: RemoteProcess) -> None:
        rc.proc = proc
        try:
            await rc.until_armed()
            rc.armed = True
        except HopcapError as exc:
            failed[rc.spec.point.name] = str(exc)

    await asyncio.gather(*(armed(rc, p) for rc, p in zip(captures, procs, strict=True)))
    return failed


def kill_command(captures: Sequence[RunningCapture]) -> str:
    """One shell command that SIGINTs every capture of `captures` (of one host)."""
    return "".join(rc.signal_command() + "; " for rc in captures) + "true"


def _hint_for(stderr: Sequence[str]) -> str | None:
    text = "\n".join(stderr)
    if "No such device" in text or "doesn't exist" in text:
        return "check the interface name (`ip -br link` on the host) or use `capture: auto`"
    if "ermission" in text or "not permitted" in text:
        return (
            "tcpdump needs root or CAP_NET_RAW: set `sudo: true` for this host, or "
            "`setcap cap_net_raw,cap_net_admin=eip` on its tcpdump"
        )
    return None
