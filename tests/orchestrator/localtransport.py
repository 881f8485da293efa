"""hopcap's `LocalTransport` (commands run on this machine, `sh -c`) posing as SSH hosts,
for failure paths that a real sshd will not produce on demand: a host without tcpdump, a
transfer that breaks, a file that arrives damaged. Everything else about the run is real:
tcpdump on `lo`, the orchestrator's commands, files, signals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hopcap.errors import ConnectError
from hopcap.model import Host
from hopcap.orchestrator import local
from hopcap.orchestrator.transport import HostTransport

SSH_CONNECTION = "127.0.0.1 40000 127.0.0.1 22"


class LocalTransport(local.LocalTransport):
    """hopcap's own local transport, posing as an SSH host: it has an `$SSH_CONNECTION`,
    may have programs missing from its PATH, and may damage what it transfers."""

    def __init__(
        self,
        name: str,
        *,
        path: str | None = None,
        get_hook: Callable[[int, Path], None] | None = None,
    ) -> None:
        super().__init__(name)
        self.env["SSH_CONNECTION"] = SSH_CONNECTION
        if path is not None:
            self.env["PATH"] = path
        self.get_hook = get_hook
        self.gets = 0

    async def get(
        self, remote: str, local: Path, progress: Callable[[int, int], None] | None = None
    ) -> None:
        self.gets += 1
        await super().get(remote, local, progress)
        if self.get_hook is not None:
            self.get_hook(self.gets, local)


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
