"""The transport seam: one small interface to a remote host, and its asyncssh implementation.

Everything above this module (captures, facts, clocks) talks to a `HostTransport`; only
this module imports asyncssh, and asyncssh's exceptions are translated into hopcap's
error tree in one place (`_translate`). Tests can substitute any object with the same
three methods for failure paths a real sshd will not produce on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

with warnings.catch_warnings():
    # cryptography 51 deprecates DSA, and asyncssh (2.24) names its DSA classes when it is
    # imported: every command that talks to hosts printed a CryptographyDeprecationWarning
    # that no user can act on (hopcap never offers DSA; the hosts' keys decide)
    warnings.filterwarnings("ignore", message="DSA is deprecated")
    import asyncssh

from hopcap.errors import AuthError, ConnectError, HostKeyError, TransportError
from hopcap.model import Host

# aes128-gcm moved SFTP data 1.5x faster than asyncssh's default (chacha20) on the lab
# (BENCHMARKS.md, "Orchestrator on the lab"); every other default algorithm stays as a
# fallback so that any server that speaks one of them still works.
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)

CONNECT_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int | None  # None when the command was ended by a signal
    stdout: str
    stderr: str
    exit_signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class RemoteProcess(Protocol):
    async def readline_stderr(self) -> str: ...  # "" at EOF

    async def readline_stdout(self) -> str: ...  # "" at EOF

    def write(self, data: str) -> None: ...  # to stdin (spawned with stdin=True)

    async def wait(self, timeout: float | None = None) -> CommandResult: ...

    def close(self) -> None: ...


class HostTransport(Protocol):
    name: str

    async def run(
        self, command: str, *, timeout: float = 30.0, input: str | None = None
    ) -> CommandResult: ...

    async def spawn(
        self, command: str, *, stdin: bool = False, stdout_to: Path | None = None
    ) -> RemoteProcess: ...  # stdout_to: the command's stdout goes, as bytes, into that file

    async def get(
        self,
        remote: str,
        local: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> None: ...

    async def close(self) -> None: ...


# the CLI's password prompt: (host name, "user@address[:port]") -> the password, or None
PasswordPrompt = Callable[[str, str], str | None]
AskPassword = Callable[[Host, str], Awaitable[str | None]]


def quote(argv: Sequence[str]) -> str:
    """A remote command line built only from quoted arguments."""
    return shlex.join(argv)


def as_root(command: str, sudo: bool) -> str:
    """Wrap a shell command so that it runs as root via non-interactive sudo if asked."""
    if not sudo:
        return command
    return quote(["sudo", "-n", "--", "sh", "-c", command])


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data if isinstance(data, str) else ""


class _SSHProcess:
    """A running remote command; a lost connection surfaces as a `TransportError`."""

    def __init__(
        self,
        host: str,
        command: str,
        proc: asyncssh.SSHClientProcess[Any],
        binary: bool,
        release: Callable[[], None] | None = None,
    ) -> None:
        self._host = host
        self._binary = binary
        self._command = command
        self._proc = proc
        self._stderr_seen: list[str] = []
        self._release = release  # the transport's channel gate, held until the command ends

    def _done(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    async def readline_stderr(self) -> str:
        try:
            line = _text(await self._proc.stderr.readline())
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self._host, exc) from exc
        if line:
            self._stderr_seen.append(line)
        return line

    async def readline_stdout(self) -> str:
        try:
            return _text(await self._proc.stdout.readline())
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self._host, exc) from exc

    def write(self, data: str) -> None:
        try:
            self._proc.stdin.write(data.encode() if self._binary else data)
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self._host, exc) from exc

    async def wait(self, timeout: float | None = None) -> CommandResult:
        try:
            done = await self._proc.wait(check=False, timeout=timeout)
        except asyncssh.TimeoutError as exc:
            raise TimeoutError(f"{self._host}: `{self._command}` still running") from exc
        except (asyncssh.Error, OSError) as exc:
            self._done()
            raise _translate(self._host, exc) from exc
        self._done()
        return CommandResult(
            command=self._command,
            exit_status=done.exit_status,
            stdout=_text(done.stdout),
            stderr="".join(self._stderr_seen) + _text(done.stderr),
            exit_signal=done.exit_signal[0] if done.exit_signal else None,
        )

    def close(self) -> None:
        self._proc.close()
        self._done()


# A server may refuse a session request now and then under concurrent channels (dropbear
# does); the command has not started then, so asking again is safe.
SESSION_RETRIES = 4
SESSION_RETRY_DELAY_S = 0.1


class ShellProcess:
    """An interactive login shell on a terminal (an appliance's CLI): raw bytes both ways."""

    def __init__(self, host: str, proc: asyncssh.SSHClientProcess[Any]) -> None:
        self._host = host
        self._proc = proc

    async def read(self, n: int = 65536) -> bytes:  # b"" at EOF
        try:
            data = await self._proc.stdout.read(n)
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self._host, exc) from exc
        return data if isinstance(data, bytes) else data.encode()

    def write(self, data: bytes) -> None:
        try:
            self._proc.stdin.write(data)
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self._host, exc) from exc

    def close(self) -> None:
        self._proc.close()


TimedLine = tuple[float, str, float]  # (written at, the line answered, answered at)
COMMAND_SHELLS = 2  # per host: short commands run through at most this many shells at once
FEED_TIMEOUT_S = 15.0
# a command shell ends by itself once it has heard nothing from hopcap for SHELL_IDLE_S
# (hopcap says it is alive every ALIVE_EVERY_S): a connection cut without a close (a
# network cut, a failover, a suspended laptop) left it, and its jobs' guards, idle on the
# host until sshd noticed the dead connection (two hours and more by default)
ALIVE_EVERY_S = 10.0
SHELL_IDLE_S = 120.0
# a FIFO the command shell writes "go" into: no blank, quote or pattern character
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.,:+@/-]+\Z")


def plain_path(path: str) -> bool:
    """Whether `path` can be named to a command shell's feeder as it is (`JobShell.go`)."""
    return bool(_PLAIN_PATH.match(path))


def _shell_program(tag: str, go: str, alive: str, idle_s: float) -> str:
    """The session's command of a command shell: a feeder that reads the channel's stdin
    line by line and passes each line on to a `sh` (which runs the commands), except a
    `go` line, which it carries out itself at once, whatever that `sh` is busy with: it
    writes "go" into each FIFO named (`JobShell.go`), and an `alive` line, which only
    tells its watchdog that hopcap is there. The feeder tells its pid first (the
    background jobs watch it: it ends at the end of the channel's input, also while a
    command runs) and ends at the end of its input, or when its watchdog has heard of no
    line for `idle_s` seconds (the connection is gone without a close); the `sh` then
    ends after its command. The watchdog hears of a line by a SIGURG (ignored by default:
    one sent before its trap is set is lost, not fatal) and ends with the feeder.
    """
    n = f"{max(int(idle_s), 1)}"
    watchdog = (
        f"(trap 'n=0' URG; n=0; while [ $n -lt {n} ] && kill -0 $$ 2>/dev/null; "
        "do sleep 1; n=$((n+1)); done; kill $$ 2>/dev/null) </dev/null >/dev/null 2>&1 & w=$!; "
    )
    feeder = (
        f'echo "{tag}feed $$" >&2; {watchdog}'
        "while IFS= read -r l; do kill -URG $w 2>/dev/null; case $l in "
        f'"{go} "*) set -f; for f in ${{l#"{go} "}}; do echo go 1<>"$f"; done 2>/dev/null; '
        f"set +f;; {alive}) ;; "
        "*) printf '%s\\n' \"$l\";; esac; done"
    )
    return quote(["exec", "sh", "-c", 'sh -c "$0" | sh', feeder])


class _ShellJob:
    """A background job of a command shell (`JobShell.start`): the lines it writes to its
    stderr, as they come, and its exit status. A `RemoteProcess` without stdin or stdout;
    it ends by itself (or by a signal sent with another command), never by `close`."""

    def __init__(self, host: str, command: str) -> None:
        self._host = host
        self._command = command
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._seen: list[str] = []
        self._ended = asyncio.Event()
        self._read_all = False
        self.status: int | None = None
        self.lost = False  # the shell ended before the job said its exit status

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def _line(self, text: str) -> None:
        self._seen.append(text)
        self._lines.put_nowait(text)

    def _exit(self, status: int | None, *, lost: bool = False) -> None:
        if self._ended.is_set():
            return
        self.status, self.lost = status, lost
        self._ended.set()
        self._lines.put_nowait("")

    async def readline_stderr(self) -> str:
        if self._read_all:
            return ""
        line = await self._lines.get()
        self._read_all = line == ""
        return line

    async def readline_stdout(self) -> str:
        return ""  # its stdout is /dev/null

    def write(self, data: str) -> None:
        raise TransportError(self._host, "a background job has no input")

    async def wait(self, timeout: float | None = None) -> CommandResult:
        try:
            await asyncio.wait_for(self._ended.wait(), timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{self._host}: `{self._command}` still running") from exc
        if self.lost:
            raise TransportError(self._host, "the command shell ended before the job")
        return CommandResult(self._command, self.status, "", "".join(self._seen))

    def close(self) -> None:
        pass


def _retrieved(f: asyncio.Future[Any]) -> None:
    """Count `f`'s exception as seen (whoever awaits `f` still gets it)."""
    if not f.cancelled():
        f.exception()


class _CommandShell:
    """One long-lived `sh` on the host that runs short commands one after the other, and
    background jobs beside them.

    Every exec channel costs the host a session and a start of the login's shell with its
    start-up files (a third of a second on the lab, whose logins run `pyenv init`); a run
    issues a dozen short commands per host, and a capture per point. Each command still
    runs in a `sh -c` of its own (a syntax error or an `exit` cannot end this shell), with
    stdin from /dev/null; a marker line on stdout (with the exit status) and on stderr
    ends its output. The session's stdout and stderr are read all the time: a background
    job's stderr lines come tagged (`JobShell.start`), each in one write, and are handed
    to the job wherever they fall among a command's output."""

    def __init__(self, host: str, conn: asyncssh.SSHClientConnection) -> None:
        self.host = host
        self.conn = conn
        token = secrets.token_hex(6)
        self.marker = "@@hopcap-done-" + token
        self.tag = f"@@hopcap-job-{token}:"
        self.exit_line = "@@hopcap-exit-" + token
        self.go_line = "@@hopcap-go-" + token
        self.alive_line = "@@hopcap-alive-" + token
        self.alive = True
        self.usable = True  # False: a command of it timed out while it holds jobs
        self.jobs: dict[str, _ShellJob] = {}
        self._out: asyncio.Queue[str] = asyncio.Queue()
        self._err: asyncio.Queue[str] = asyncio.Queue()
        self.feed: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # only `job_shell` awaits it: a shell that ends before it said its feeder's pid (one
        # opened as the connection closes) must not print "never retrieved" when collected
        self.feed.add_done_callback(_retrieved)
        self._pumps: list[asyncio.Future[None]] = []
        self.proc: asyncssh.SSHClientProcess[Any] | None = None

    async def open(self) -> None:
        self.proc = await self.conn.create_process(
            _shell_program(self.tag, self.go_line, self.alive_line, SHELL_IDLE_S),
            stdin=asyncssh.PIPE,
        )
        self._pumps = [
            asyncio.ensure_future(self._pump(self.proc.stdout, self._out)),
            asyncio.ensure_future(self._pump(self.proc.stderr, self._err)),
            asyncio.ensure_future(self._say_alive()),
        ]

    async def _say_alive(self) -> None:
        """Tell the shell's watchdog hopcap is there, every ALIVE_EVERY_S, while it lives."""
        while self.alive:
            await asyncio.sleep(ALIVE_EVERY_S)
            if not self.alive:
                break
            try:
                self._write(self.alive_line + "\n")
            except (asyncssh.Error, OSError):
                break

    async def _pump(self, stream: asyncssh.SSHReader[Any], into: asyncio.Queue[str]) -> None:
        pending = ""  # a command's unfinished line that a job's line cut in two
        try:
            while True:
                line = _text(await stream.readline())
                if not line:
                    break
                i = line.find(self.tag)
                if i >= 0:
                    self._job_line(line[i + len(self.tag) :])
                    pending += line[:i]
                    continue
                line, pending = pending + line, ""
                if self.usable:
                    into.put_nowait(line)
        except (asyncssh.Error, OSError):
            pass
        finally:
            into.put_nowait("")
            self.alive = False
            for job in self.jobs.values():
                job._exit(None, lost=True)
            if not self.feed.done():
                self.feed.set_exception(TransportError(self.host, "the command shell ended"))

    def _job_line(self, text: str) -> None:
        key, _, rest = text.partition(" ")
        if key == "feed":
            if not self.feed.done() and rest.strip().isdigit():
                self.feed.set_result(int(rest))
            return
        job = self.jobs.get(key)
        if job is None:
            return
        if rest.startswith(self.exit_line):
            status = rest[len(self.exit_line) :].strip()
            job._exit(int(status) if status.isdigit() else None)
        else:
            job._line(rest)

    def _write(self, text: str) -> None:
        assert self.proc is not None
        self.proc.stdin.write(text)

    async def _next(self, queue: asyncio.Queue[str]) -> str:
        line = await queue.get()
        if not line:
            queue.put_nowait("")  # every later reader sees the end too
            raise TransportError(self.host, "the command shell ended unexpectedly")
        return line

    def _abandon(self) -> None:
        """After a command failed or timed out somewhere in its output: never reuse the
        shell; end it, unless it holds running jobs (they report through it)."""
        if any(not j.ended for j in self.jobs.values()):
            self.usable = False
            for q in (self._out, self._err):
                while not q.empty():
                    q.get_nowait()
        else:
            self.close()

    async def run(self, command: str, timeout: float) -> CommandResult:
        m = self.marker
        self._write(
            f"sh -c {shlex.quote(command)} </dev/null; "
            f"printf '\\n{m} %d\\n' $?; printf '\\n{m}\\n' >&2\n"
        )
        both = asyncio.gather(self._read(self._out), self._read(self._err))
        # a run cancelled while the shell ends (a second Ctrl-C): the reads' error then
        # reaches nobody, and must not be printed as "never retrieved"
        both.add_done_callback(_retrieved)
        try:
            (out, status), (err, _) = await asyncio.wait_for(both, timeout)
        except BaseException:
            self._abandon()
            raise
        return CommandResult(
            command=command,
            exit_status=int(status) if status.isdigit() else None,
            stdout=out,
            stderr=err,
        )

    async def lines(self, command: str, count: int, timeout: float) -> list[TimedLine]:
        """Write `command` (a simple command that prints one line, such as `date`) `count`
        times, each once the previous answer is in, straight to this shell (no `sh -c`
        in between: the clock's round trips stay short)."""
        out: list[TimedLine] = []
        try:
            for _ in range(count):
                t0 = time.time()
                self._write(f"{{ {command}; }} 2>/dev/null\n")
                line = await asyncio.wait_for(self._next(self._out), timeout)
                out.append((t0, line, time.time()))
        except TransportError as exc:
            self._abandon()
            raise TransportError(self.host, f"`{command}` gave no answer") from exc
        except BaseException:
            self._abandon()
            raise
        return out

    async def _read(self, queue: asyncio.Queue[str]) -> tuple[str, str]:
        """The command's text on one stream and what follows the marker on its line."""
        lines: list[str] = []
        while True:
            line = await self._next(queue)
            if line.startswith(self.marker):
                text = "".join(lines)
                return text[:-1] if text.endswith("\n") else text, line[len(self.marker) :].strip()
            lines.append(line)

    def close(self) -> None:
        if self.alive:
            self.alive = False
            if self.proc is not None:
                self.proc.close()

    def stop_pumps(self) -> None:
        for p in self._pumps:
            p.cancel()


class JobShell:
    """Background jobs in one of a host's command shells (`SSHTransport.job_shell`): they
    cost no session of their own, and the shell goes on running short commands beside
    them. `feed_pid`: the pid of the shell's feeder, which ends with the channel's input
    (a job can watch it and end with the connection)."""

    def __init__(self, host: str, shell: _CommandShell, feed_pid: int) -> None:
        self.host = host
        self._shell = shell
        self.feed_pid = feed_pid

    async def start(
        self, commands: Sequence[str], *, before: str = "", timeout: float = 20.0
    ) -> list[RemoteProcess]:
        """Start each command as a background job (stdin and stdout /dev/null, stderr
        read line by line), after `before` (a command that must succeed first), in one
        command of the shell; a job's exit status comes when it ends."""
        sh = self._shell
        jobs: list[_ShellJob] = []
        parts: list[str] = []
        for command in commands:
            key = f"j{len(sh.jobs)}"
            sh.jobs[key] = job = _ShellJob(self.host, command)
            jobs.append(job)
            # each line of the job's stderr in one write (a pipe write of a line is whole)
            parts.append(
                f'{{ ( {command} ) 2>&1 >/dev/null </dev/null; echo "{sh.exit_line} $?"; }} '
                f"| while IFS= read -r l; do printf '%s\\n' \"{sh.tag}{key} $l\" >&2; done "
                ">/dev/null & "
            )
        script = (f"{before} && " if before else "") + "{ " + "".join(parts) + "}"
        try:
            res = await sh.run(script, timeout)
        except TimeoutError as exc:
            raise TransportError(self.host, f"starting jobs took over {timeout:g}s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self.host, exc) from exc
        if not res.ok:
            for job in jobs:
                job._exit(res.exit_status)
            raise TransportError(self.host, res.stderr.strip() or f"exit {res.exit_status}")
        return list(jobs)

    def go(self, fifos: Sequence[str]) -> None:
        """Write "go" into each FIFO at once (one write on the channel; the feeder does it
        even while the shell runs a command)."""
        bad = [f for f in fifos if not plain_path(f)]
        if bad:
            raise TransportError(self.host, f"cannot name {bad[0]!r} to the command shell")
        try:
            self._shell._write(f"{self._shell.go_line} {' '.join(fifos)}\n")
        except (asyncssh.Error, OSError) as exc:
            raise _translate(self.host, exc) from exc


class _Client(asyncssh.SSHClient):
    """Records when and why the connection was lost (not closed by hopcap): what a
    command that fails afterwards says (`SSHTransport.lost`)."""

    def __init__(self) -> None:
        self.lost: tuple[float, str] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.lost is None:
            reason = str(getattr(exc, "reason", "") or exc) or type(exc).__name__
            self.lost = (time.time(), reason[:1].lower() + reason[1:])


class SSHTransport:
    """A `HostTransport` over one asyncssh connection.

    With `command_shell` (a Linux host), short commands without input run through a few
    long-lived shells (`_CommandShell`) instead of an exec channel each, and background
    jobs (a host's captures) run in one of them (`job_shell`).

    dropbear (2022.83) refuses session requests, and now and then drops the whole
    connection on a failed assertion, when several short commands run on one connection at
    once; with a dropbear server, short commands therefore run one at a time (long-lived
    ones, spawned with stdin, only open their channel one at a time)."""

    def __init__(
        self,
        name: str,
        conn: asyncssh.SSHClientConnection,
        *,
        command_shell: bool = False,
        client: _Client | None = None,
    ) -> None:
        self.name = name
        self.conn = conn
        self._client = client
        server = str(conn.get_extra_info("server_version", "") or "")
        self.server_version = server
        self._gate = asyncio.Semaphore(1) if "dropbear" in server.lower() else None
        self.command_shell = command_shell
        self._idle: list[_CommandShell] = []
        self._shells = 0
        self._shell_freed = asyncio.Condition()
        self._opened: list[_CommandShell] = []  # every command shell, to close them all
        # one SFTP session for every transfer (a server running an external sftp-server
        # starts it through the login's shell and its start-up files, per session)
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_lock = asyncio.Lock()

    @property
    def lost(self) -> tuple[float, str] | None:
        """When and why the connection was lost (None: it was not)."""
        return self._client.lost if self._client is not None else None

    def _translate(self, exc: BaseException) -> TransportError:
        """`exc` in hopcap's words; after the connection was lost, that loss: "cannot
        open a channel: SSH connection closed" told nothing of when or why."""
        lost = self.lost
        if lost is not None and not isinstance(exc, TransportError):
            at = time.strftime("%H:%M:%S UTC", time.gmtime(lost[0]))
            return ConnectError(self.name, f"the SSH connection was lost at {at} ({lost[1]})")
        return _translate(self.name, exc)

    async def _shell(self) -> _CommandShell:
        """An idle command shell, a new one while there are fewer than `COMMAND_SHELLS`,
        or the next to be freed."""
        async with self._shell_freed:
            while not self._idle and self._shells >= COMMAND_SHELLS:
                await self._shell_freed.wait()
            if self._idle:
                return self._idle.pop()
            self._shells += 1
        shell = _CommandShell(self.name, self.conn)
        try:
            async with self._gated():  # dropbear: one channel opening at a time
                await self._retrying(shell.open)
        except BaseException:
            await self._release(None)
            raise
        self._opened.append(shell)
        return shell

    async def _release(self, shell: _CommandShell | None) -> None:
        async with self._shell_freed:
            if shell is not None and shell.alive and shell.usable:
                self._idle.append(shell)
            else:
                self._shells -= 1
            self._shell_freed.notify()

    async def timed_lines(self, command: str, count: int, timeout: float) -> list[TimedLine]:
        """(sent, answer, received) of `command` written `count` times to one command shell
        (see `_CommandShell.lines`)."""
        try:
            shell = await self._shell()
        except (asyncssh.Error, OSError) as exc:
            raise self._translate(exc) from exc
        try:
            return await shell.lines(command, count, timeout)
        except TransportError:
            raise
        except TimeoutError as exc:
            raise TransportError(self.name, f"`{command}` gave no answer") from exc
        except (asyncssh.Error, OSError) as exc:
            raise self._translate(exc) from exc
        finally:
            await asyncio.shield(self._release(shell))

    async def _run_in_shell(self, command: str, timeout: float) -> CommandResult:
        shell = await self._shell()
        try:
            return await shell.run(command, timeout)
        finally:
            await asyncio.shield(self._release(shell))

    @contextlib.asynccontextmanager
    async def job_shell(self) -> AsyncIterator[JobShell]:
        """One of the command shells, held for the block, to start background jobs in
        (`JobShell.start`); they outlive the block, and so does `JobShell.go`."""
        if not self.command_shell:
            raise TransportError(self.name, "this host has no command shell")
        try:
            shell = await self._shell()
        except (asyncssh.Error, OSError) as exc:
            raise self._translate(exc) from exc
        try:
            try:
                pid = await asyncio.wait_for(asyncio.shield(shell.feed), FEED_TIMEOUT_S)
            except TimeoutError as exc:
                shell.close()
                raise TransportError(self.name, "the command shell did not start") from exc
            yield JobShell(self.name, shell, pid)
        finally:
            await asyncio.shield(self._release(shell))

    @contextlib.asynccontextmanager
    async def _gated(self) -> AsyncIterator[None]:
        if self._gate is None:
            yield
            return
        async with self._gate:
            yield

    async def _retrying(self, open_channel: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(SESSION_RETRIES):
            try:
                return await open_channel()
            except asyncssh.ChannelOpenError as exc:
                if "Session request failed" not in exc.reason or attempt == SESSION_RETRIES - 1:
                    raise
                await asyncio.sleep(SESSION_RETRY_DELAY_S * (attempt + 1))
        raise AssertionError("unreachable")

    async def run(
        self, command: str, *, timeout: float = 30.0, input: str | None = None
    ) -> CommandResult:
        if self.command_shell and input is None:
            try:
                return await self._run_in_shell(command, timeout)
            except TimeoutError as exc:
                raise TransportError(
                    self.name, f"`{command}` did not finish in {timeout:g}s"
                ) from exc
            except (asyncssh.Error, OSError) as exc:
                raise self._translate(exc) from exc
        try:
            async with self._gated():
                res = await self._retrying(
                    lambda: self.conn.run(command, check=False, timeout=timeout, input=input)
                )
        except asyncssh.TimeoutError as exc:
            raise TransportError(self.name, f"`{command}` did not finish in {timeout:g}s") from exc
        except (asyncssh.Error, OSError) as exc:
            raise self._translate(exc) from exc
        return CommandResult(
            command=command,
            exit_status=res.exit_status,
            stdout=res.stdout if isinstance(res.stdout, str) else "",
            stderr=res.stderr if isinstance(res.stderr, str) else "",
            exit_signal=res.exit_signal[0] if res.exit_signal else None,
        )

    async def spawn(
        self, command: str, *, stdin: bool = False, stdout_to: Path | None = None
    ) -> RemoteProcess:
        def open_process() -> Awaitable[asyncssh.SSHClientProcess[Any]]:
            if stdout_to is not None:
                return self.conn.create_process(
                    command,
                    stdin=asyncssh.PIPE if stdin else asyncssh.DEVNULL,
                    stdout=stdout_to,
                    encoding=None,
                )
            return self.conn.create_process(
                command, stdin=asyncssh.PIPE if stdin else asyncssh.DEVNULL
            )

        release: Callable[[], None] | None = None
        if self._gate is not None:
            await self._gate.acquire()
            release = self._gate.release
        try:
            proc = await self._retrying(open_process)
        except (asyncssh.Error, OSError) as exc:
            if release is not None:
                release()
            raise self._translate(exc) from exc
        if stdin and release is not None:  # long-lived: only its opening was gated
            release()
            release = None
        return _SSHProcess(self.name, command, proc, binary=stdout_to is not None, release=release)

    async def get(
        self,
        remote: str,
        local: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        def handler(_src: bytes, _dst: bytes, done: int, total: int) -> None:
            if progress is not None:
                progress(done, total)

        try:
            sftp = await self._sftp_client()
            await sftp.get(remote, local, progress_handler=handler)
        except (asyncssh.Error, OSError) as exc:
            self._drop_sftp()  # a failed session is not reused; a retry opens another
            raise self._translate(exc) from exc

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        async with self._sftp_lock:
            if self._sftp is None:
                async with self._gated():  # dropbear: one channel opening at a time
                    self._sftp = await self.conn.start_sftp_client()
            return self._sftp

    def _drop_sftp(self) -> None:
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None

    async def sftp_available(self) -> bool:
        """Whether the server offers the SFTP subsystem (appliances and dropbear often do
        not: then files are pulled over an exec channel instead). The session opened to
        find out is the one later transfers use."""
        try:
            await self._sftp_client()
            return True
        except (asyncssh.Error, OSError):
            return False

    async def shell(self, term_type: str = "vt100") -> ShellProcess:
        """The login shell on a terminal, as a person gets it (appliance CLIs need one)."""
        try:
            proc: asyncssh.SSHClientProcess[Any] = await self.conn.create_process(
                term_type=term_type, term_size=(200, 50), encoding=None
            )
        except (asyncssh.Error, OSError) as exc:
            raise self._translate(exc) from exc
        return ShellProcess(self.name, proc)

    def endpoints(self) -> tuple[str, int, str, int] | None:
        """(our address, our port, the host's address, its port) of this connection, as
        the host sees it when there is no jump host in between."""
        local = self.conn.get_extra_info("sockname")
        peer = self.conn.get_extra_info("peername")
        if not local or not peer:
            return None
        return str(local[0]), int(local[1]), str(peer[0]), int(peer[1])

    async def close(self) -> None:
        for shell in self._opened:
            shell.close()
        self._drop_sftp()
        self.conn.close()
        with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
            await asyncio.wait_for(self.conn.wait_closed(), timeout=5)
        for shell in self._opened:
            shell.stop_pumps()


def _connect_options(host: Host) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "encryption_algs": list(PREFERRED_CIPHERS),
        "keepalive_interval": 5,
        "keepalive_count_max": 3,
    }
    if host.port is not None:
        opts["port"] = host.port
    if host.user:
        opts["username"] = host.user
    if host.identity:
        opts["client_keys"] = [host.identity]
    if host.known_hosts:
        opts["known_hosts"] = host.known_hosts
    return opts


async def connect(
    host: Host, *, via: SSHTransport | None = None, ask_password: AskPassword | None = None
) -> SSHTransport:
    """Open an SSH connection to `host`, through `via` when the host has a jump host.

    Host keys are always verified (against the host's known_hosts, or ~/.ssh/known_hosts);
    ~/.ssh/config and ssh-agent apply as they do for OpenSSH. Keys are tried first; then
    the password of `password_env` (for `password` and keyboard-interactive authentication),
    or, with `ask_password` and the keys refused, one password asked for this host.
    """
    opts = _connect_options(host)
    if via is not None:
        opts["tunnel"] = via.conn
    if host.password_env:
        secret = os.environ.get(host.password_env)
        if secret is None:
            raise AuthError(host.name, f"{host.password_env} is not set in the environment")
        opts["password"] = secret
    elif ask_password is not None:
        # keys only first: the user is asked only by a host that refused them, and the
        # prompt is not inside asyncssh's connect timeout
        try:
            return await _connect(host, via, {**opts, "password_auth": False, "kbdint_auth": False})
        except AuthError:
            pass
        where = f"{host.user + '@' if host.user else ''}{host.address}"
        secret = await ask_password(host, where + (f":{host.port}" if host.port else ""))
        if not secret:
            raise AuthError(host.name, "keys were refused and no password was given")
        opts["password"] = secret
    return await _connect(host, via, opts)


async def _connect(host: Host, via: SSHTransport | None, opts: dict[str, Any]) -> SSHTransport:
    try:
        client = _Client()
        conn = await asyncssh.connect(host.address, client_factory=lambda: client, **opts)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise await _host_key_error(host, via, exc) from exc
    except asyncssh.PermissionDenied as exc:
        raise _auth_error(host, exc, password="password" in opts) from exc
    except (asyncssh.Error, OSError, TimeoutError) as exc:
        raise _translate(host.name, exc) from exc
    return SSHTransport(host.name, conn, command_shell=host.kind == "linux", client=client)


def _auth_error(host: Host, exc: asyncssh.PermissionDenied, *, password: bool) -> AuthError:
    if not password:
        plain = _translate(host.name, exc)
        assert isinstance(plain, AuthError)
        return plain
    source = f"${host.password_env}" if host.password_env else "the password typed"
    return AuthError(
        host.name,
        f"authentication refused: keys and {source} were not accepted ({exc.reason})",
        hint=f"check the user ({host.user or 'your local user'}) and the password; "
        "`ssh` to the host by hand with the same password should work",
    )


async def _host_key_error(host: Host, via: SSHTransport | None, exc: Exception) -> HostKeyError:
    known = host.known_hosts or "~/.ssh/known_hosts"
    port = host.port or 22
    where = host.address if port == 22 else f"[{host.address}]:{port}"
    fingerprint = ""
    try:
        key = await asyncssh.get_server_host_key(host.address, port, tunnel=via.conn if via else ())
        if key is not None:
            fingerprint = f" (it offers {key.get_algorithm()} {key.get_fingerprint('sha256')})"
    except (asyncssh.Error, OSError, TimeoutError):
        pass
    scan = f"ssh-keyscan -p {port} {host.address}"
    trusted = _known_keys(known, host.address, port)
    if trusted:
        # a key for this host is known, and it is not the one offered: as OpenSSH's
        # "REMOTE HOST IDENTIFICATION HAS CHANGED"; appending the new one (the hint for
        # an unknown host) would trust whoever answers now
        return HostKeyError(
            host.name,
            f"host key of {where} has CHANGED{fingerprint}; {known} trusts "
            f"{', '.join(trusted)} for it: the host was reinstalled, or someone is "
            "intercepting the connection",
            hint=(
                "ask the host's owner whether its keys changed and for the new fingerprint; "
                f"only then replace the old key: `ssh-keygen -R {where} -f {known}`, then "
                f"`{scan} >> {known}`"
            ),
        )
    return HostKeyError(
        host.name,
        f"host key of {where} is not trusted{fingerprint}: {known} has no key for it",
        hint=(
            f"check the fingerprint with the host's owner, then trust it with "
            f"`{scan} >> {known}` (or connect once with `ssh` and accept it)"
        ),
    )


def _known_keys(known: str, address: str, port: int) -> list[str]:
    """The fingerprints `known` (a known_hosts file) trusts for `address`:`port`."""
    try:
        hosts = asyncssh.read_known_hosts(os.path.expanduser(known))
        keys = hosts.match(address, address, port)[0]
    except (OSError, ValueError, asyncssh.Error):
        return []
    return list(dict.fromkeys(f"{k.get_algorithm()} {k.get_fingerprint('sha256')}" for k in keys))


def _translate(name: str, exc: BaseException) -> TransportError:
    """Map an asyncssh / socket exception to hopcap's error tree (the only place that does)."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, asyncssh.PermissionDenied):
        return AuthError(
            name,
            f"authentication refused: {exc.reason}",
            hint="check user, identity and ssh-agent (a host that takes a password needs "
            "password_env, or hopcap run on a terminal); `ssh` to the host by hand should work",
        )
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return HostKeyError(name, f"host key not trusted: {exc.reason}")
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(name, f"disconnected: {exc.reason}")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return ConnectError(name, f"cannot open a channel: {exc.reason}")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return ConnectError(name, f"no answer within {CONNECT_TIMEOUT_S:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(name, "connection refused (is sshd running on that port?)")
    if isinstance(exc, OSError):
        return ConnectError(name, exc.strerror or str(exc))
    if isinstance(exc, asyncssh.Error):
        return TransportError(name, exc.reason)
    return TransportError(name, str(exc))
