"""SSH servers in the test process (asyncssh's own server), whose sessions run their
commands on this machine with `/bin/sh -c`, as the user running the tests: the client side
is hopcap's real transport (keys, host key check, exec channels, command shells, SFTP),
and what the host does is what this machine's programs do. No root, no namespaces.

A server can leave out the SFTP subsystem (as dropbear does), give its sessions a PATH
without some programs, or damage the data of its first SFTP reads (a real fault in the
transfer: the client must notice)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from hopcap.inventory import loads
from hopcap.model import Inventory


class DamagingSFTP(asyncssh.SFTPServer):
    """The local file system over SFTP, flipping one byte of the first `damage` reads."""

    damage = 0
    opened = 0  # SFTP sessions started (every server of a `serve`)

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        DamagingSFTP.opened += 1
        super().__init__(chan)

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:
        data = super().read(file_obj, offset, size)  # type: ignore[arg-type]
        if inspect.isawaitable(data):
            data = await data
        assert isinstance(data, bytes)
        if DamagingSFTP.damage > 0 and data:
            DamagingSFTP.damage -= 1
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data


@dataclass
class Server:
    port: int = 0
    sftp: bool = True
    path: str | None = None  # PATH of its sessions (None: this process's)
    sessions: int = 0  # channels opened (exec, shell and subsystem)
    acceptor: Any = None
    extra: dict[str, str] = field(default_factory=dict)

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.sessions += 1
        peer = process.get_extra_info("peername")
        local = process.get_extra_info("sockname")
        env = dict(os.environ)
        env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {local[0]} {local[1]}"
        if self.path is not None:
            env["PATH"] = self.path
        command = process.command or "sh"
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert proc.stdin and proc.stdout and proc.stderr

        async def pump_in() -> None:
            with contextlib.suppress(OSError, asyncssh.Error):
                while data := await process.stdin.read(65536):
                    proc.stdin.write(data)  # type: ignore[union-attr]
                    await proc.stdin.drain()  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]

        async def pump_out(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

        feeding = asyncio.ensure_future(pump_in())
        try:
            await asyncio.gather(
                pump_out(proc.stdout, process.stdout), pump_out(proc.stderr, process.stderr)
            )
            status = await proc.wait()
            process.exit(status if status >= 0 else 128 - status)
        except (asyncssh.Error, OSError):
            process.close()
        finally:
            feeding.cancel()
            if proc.returncode is None:  # the client went away: so does the command
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


@dataclass
class Site:
    """Hosts served in this process, and the files a client needs to reach them."""

    dir: Path
    key: Path
    known_hosts: Path
    servers: dict[str, Server]

    def inventory(self, extra: str = "", **hosts: str) -> Inventory:
        """An inventory of the served hosts (in the order given); `hosts`: each host's
        extra YAML fields, e.g. `a="capture: [lo]"`; the first is the client, the last the
        server, any others routers."""
        lines = ["hosts:"]
        names = list(hosts)
        for i, (name, fields) in enumerate(hosts.items()):
            port = self.servers[name].port if name in self.servers else 1  # 1: refused
            role = "client" if i == 0 else "server" if i == len(names) - 1 else "router"
            more = f", {fields}" if fields else ""
            lines.append(
                f"  {name}: {{address: 127.0.0.1, port: {port}, identity: {self.key}, "
                f"known_hosts: {self.known_hosts}, role: {role}{more}}}"
            )
        lines.append(f"path: [{', '.join(hosts)}]")
        lines.append(extra)
        return loads("\n".join(lines) + "\n", "site.yml")


@asynccontextmanager
async def serve(tmp: Path, **servers: Server) -> AsyncIterator[Site]:
    """Start one SSH server per name on 127.0.0.1 (their host keys trusted in a
    known_hosts file of their own, our key authorised), stop them all at the end."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    key = tmp / "id_ed25519"
    user_key.write_private_key(str(key))
    key.chmod(0o600)
    authorized = asyncssh.import_authorized_keys(user_key.export_public_key().decode())
    try:
        for server in servers.values():
            server.acceptor = await asyncssh.create_server(
                asyncssh.SSHServer,
                "127.0.0.1",
                0,
                server_host_keys=[host_key],
                authorized_client_keys=authorized,
                process_factory=server._session,
                sftp_factory=DamagingSFTP if server.sftp else None,
                encoding=None,
            )
            server.port = server.acceptor.sockets[0].getsockname()[1]
        known = tmp / "known_hosts"
        public = host_key.export_public_key().decode().strip()
        known.write_text("".join(f"[127.0.0.1]:{s.port} {public}\n" for s in servers.values()))
        yield Site(tmp, key, known, dict(servers))
    finally:
        DamagingSFTP.damage = DamagingSFTP.opened = 0
        for server in servers.values():
            if server.acceptor is not None:
                server.acceptor.close()
                await server.acceptor.wait_closed()
