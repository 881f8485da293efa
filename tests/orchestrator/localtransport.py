"""A `HostTransport` that runs its commands on this machine (`sh -c`), for failure paths
that a real sshd will not produce on demand: a host without tcpdump, a transfer that
breaks, a file that arrives damaged. Everything else about the run is real: tcpdump on
`lo`, the orchestrator's commands, files, signals.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hopcap.errors import ConnectError, TransportError
from hopcap.model import Host
from hopcap.orchestrator.transport import CommandResult, HostTransport, RemoteProcess

SSH_CONNECTION = "127.0.0.1 40000 127.0.0.1 22"


class _Proc:
    def __init__(self, command: str, proc: asyncio.subprocess.Process) -> None:
        self.command = command
        self.proc = proc
        self.err: list[str] = []

    async def readline_stderr(self) -> str:
        assert self.proc.stderr is not None
        line = (await self.proc.stderr.readline()).decode()
        if line:
            self.err.append(line)
        return line

    async def readline_stdout(self) -> str:
        assert self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode()

    def write(self, data: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data.encode())

    async def wait(self, timeout: float | None = None) -> CommandResult:
        out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        return CommandResult(
            self.command,
            self.proc.returncode,
            (out or b"").decode(),
            "".join(self.err) + (err or b"").decode(),
        )

    def close(self) -> None:
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()


class LocalTransport:
    def __init__(
        self,
        name: str,
        *,
        path: str | None = None,
        get_hook: Callable[[int, Path], None] | None = None,
    ) -> None:
        self.name = name
        self.env = dict(os.environ, SSH_CONNECTION=SSH_CONNECTION)
        if path is not None:
            self.env["PATH"] = path
        self.get_hook = get_hook
        self.gets = 0

    async def _exec(
        self, command: str, stdin: bool, stdout_to: Path | None = None
    ) -> asyncio.subprocess.Process:
        out = stdout_to.open("wb") if stdout_to is not None else asyncio.subprocess.PIPE
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

    async def run(
        self, command: str, *, timeout: float = 30.0, input: str | None = None
    ) -> CommandResult:
        p = await self._exec(command, input is not None)
        try:
            out, err = await asyncio.wait_for(
                p.communicate(input.encode() if input else None), timeout
            )
        except TimeoutError as exc:
            p.kill()
            raise TransportError(self.name, f"`{command}` did not finish") from exc
        return CommandResult(command, p.returncode, out.decode(), err.decode())

    async def spawn(
        self, command: str, *, stdin: bool = False, stdout_to: Path | None = None
    ) -> RemoteProcess:
        return _Proc(command, await self._exec(command, stdin, stdout_to))

    async def get(
        self, remote: str, local: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.gets += 1
        shutil.copyfile(remote, local)
        if self.get_hook is not None:
            self.get_hook(self.gets, local)
        if progress is not None:
            size = local.stat().st_size
            progress(size, size)

    async def close(self) -> None:
        pass


def connector(
    transports: dict[str, LocalTransport | Exception],
) -> Callable[[Host, HostTransport | None], object]:
    async def connect(host: Host, via: HostTransport | None) -> HostTransport:
        t = transports[host.name]
        if isinstance(t, Exception):
            raise t
        return t

    return connect


def path_without(tmp: Path, *missing: str) -> str:
    """A PATH of symlinks to every system program except `missing`."""
    d = tmp / "bin"
    d.mkdir()
    for src in ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"):
        if not os.path.isdir(src):
            continue
        for name in os.listdir(src):
            if name in missing or (d / name).exists():
                continue
            (d / name).symlink_to(os.path.join(src, name))
    return str(d)


__all__ = ["ConnectError", "LocalTransport", "connector", "path_without"]
