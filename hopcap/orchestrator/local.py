"""The `HostTransport` of a `connection: local` host: this machine, without SSH.

Commands run as `/bin/sh -c COMMAND`, exactly the command lines the SSH transport sends,
so a local point has the same barrier, bounds, facts, sudo and cleanup as a remote one.
Every command starts in a session of its own: a Ctrl-C at the terminal reaches hopcap
only (which stops the captures itself), and a capture outlives a killed hopcap only up
to its own `timeout` bound, exactly as on a remote host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from hopcap.errors import ConnectError, TransportError
from hopcap.orchestrator.transport import CommandResult, RemoteProcess, as_root, quote

_COPY_CHUNK = 1 << 20


class LocalProcess:
    """A command running on this machine (the `RemoteProcess` of a local host)."""

    def __init__(self, host: str, command: str, proc: asyncio.subprocess.Process) -> None:
        self._host = host
        self.command = command
        self.proc = proc
        self._stderr_seen: list[str] = []

    async def readline_stderr(self) -> str:
        assert self.proc.stderr is not None
        line = (await self.proc.stderr.readline()).decode("utf-8", "replace")
        if line:
            self._stderr_seen.append(line)
        return line

    async def readline_stdout(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode("utf-8", "replace")

    def write(self, data: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data.encode())
        except (OSError, RuntimeError) as exc:  # the command has ended
            raise TransportError(self._host, f"`{self.command}` is not running: {exc}") from exc

    async def wait(self, timeout: float | None = None) -> CommandResult:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"{self._host}: `{self.command}` still running") from exc
        return _result(self.command, self.proc.returncode, out, err, "".join(self._stderr_seen))

    def close(self) -> None:
        """Close our end of its stdin (as closing an SSH channel does); never kills."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()


class LocalTransport:
    """A `HostTransport` to this machine: commands are run here as the user running hopcap
    (through `sudo -n` where the inventory says so, as on any host); `get` is a copy.

    The environment of every command is hopcap's, without `SSH_CONNECTION` (there is no
    session of ours to exclude from a local capture) and without the variables named in
    `hide` (the password variables of the inventory: a repro command must not see them).
    """

    def __init__(self, name: str, *, sudo: bool = False, hide: Iterable[str] = ()) -> None:
        self.name = name
        self.sudo = sudo
        self.env = dict(os.environ)
        self.env.pop("SSH_CONNECTION", None)
        self.hide_env(hide)

    def hide_env(self, names: Iterable[str]) -> None:
        for n in names:
            self.env.pop(n, None)

    async def _exec(
        self, command: str, stdin: bool, stdout_to: Path | None = None
    ) -> asyncio.subprocess.Process:
        out: IO[bytes] | int = asyncio.subprocess.PIPE
        try:
            if stdout_to is not None:
                out = stdout_to.open("wb")
            return await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ConnectError(self.name, f"cannot run a local command: {exc}") from exc
        finally:
            if not isinstance(out, int):
                out.close()  # the child has its own copy

    async def run(
        self, command: str, *, timeout: float = 30.0, input: str | None = None
    ) -> CommandResult:
        p = await self._exec(command, input is not None)
        try:
            out, err = await asyncio.wait_for(
                p.communicate(input.encode() if input is not None else None), timeout
            )
        except TimeoutError as exc:
            await _end(p)
            raise TransportError(self.name, f"`{command}` did not finish in {timeout:g}s") from exc
        except asyncio.CancelledError:
            await _end(p)
            raise
        return _result(command, p.returncode, out, err)

    async def spawn(
        self, command: str, *, stdin: bool = False, stdout_to: Path | None = None
    ) -> RemoteProcess:
        return LocalProcess(self.name, command, await self._exec(command, stdin, stdout_to))

    async def get(
        self,
        remote: str,
        local: Path,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Copy a file of this machine (through `sudo -n cat` when only root may read it)."""
        try:
            await asyncio.to_thread(
                _copy, Path(remote), local, progress, asyncio.get_running_loop()
            )
            return
        except PermissionError as exc:
            if not self.sudo:
                raise TransportError(self.name, f"cannot read {remote}: {exc.strerror}") from exc
        except OSError as exc:
            raise TransportError(self.name, f"cannot copy {remote}: {exc.strerror}") from exc
        p = await self._exec(as_root(quote(["cat", "--", remote]), True), False, local)
        _, err = await p.communicate()
        if p.returncode != 0:
            raise TransportError(self.name, f"cannot read {remote}: {err.decode().strip()}")
        if progress is not None:
            size = local.stat().st_size
            progress(size, size)

    async def close(self) -> None:
        pass


def _result(
    command: str, code: int | None, out: bytes | None, err: bytes | None, seen: str = ""
) -> CommandResult:
    """A finished command as the SSH transport reports it (a signal is not an exit status)."""
    sig = signal.Signals(-code).name.removeprefix("SIG") if code and code < 0 else None
    return CommandResult(
        command=command,
        exit_status=code if code is None or code >= 0 else None,
        stdout=(out or b"").decode("utf-8", "replace"),
        stderr=seen + (err or b"").decode("utf-8", "replace"),
        exit_signal=sig,
    )


def _copy(
    src: Path,
    dst: Path,
    progress: Callable[[int, int], None] | None,
    loop: asyncio.AbstractEventLoop,
) -> None:
    total = src.stat().st_size
    done = 0
    with src.open("rb") as r, dst.open("wb") as w:
        while chunk := r.read(_COPY_CHUNK):
            w.write(chunk)
            done += len(chunk)
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)
    if progress is not None and total == 0:
        loop.call_soon_threadsafe(progress, 0, 0)


async def _end(p: asyncio.subprocess.Process) -> None:
    """End a command that overran its time (or whose caller gave up), with what it started
    (its own session), and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        p.kill()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(p.wait(), 5)
