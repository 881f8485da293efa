"""`hopcap check`: the preflight of `hopcap run`, without capturing anything.

Every host in parallel: reachable, authentication, host key, tcpdump (and its version),
`sudo -n` where asked, how captures are pulled (SFTP, or `cat` over exec where the server
has no SFTP) and how tcpdump gets its rights (root, sudo, capabilities, group), capture
interfaces present and up (after `auto`), free space in the
remote temporary directory, clock offset. A host's problems are data, never an exception.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hopcap.model import Inventory
from hopcap.orchestrator.session import (
    REMOTE_TMP,
    Connector,
    EventSink,
    HostSession,
    close_all,
    connect_all,
    hosts_to_connect,
    no_events,
    prepare_host,
    resolve_all_points,
    ssh_connector,
)

MIN_FREE_KB = 100 * 1024  # below this a capture of any length is at risk


@dataclass
class HostCheck:
    host: str
    address: str
    connected: bool = False
    tcpdump: str | None = None
    sudo: str = "-"  # "-" not asked, "ok", or why not
    pull: str = "-"  # how captures come back: sftp, exec (no SFTP subsystem), direct
    capture: str = "-"  # how tcpdump gets its rights: root, sudo, capabilities, group
    points: list[str] = field(default_factory=list)
    free_mb: int | None = None
    clock_offset_s: float | None = None
    clock_error_s: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def check(
    inv: Inventory, *, emit: EventSink = no_events, connector: Connector = ssh_connector
) -> list[HostCheck]:
    sessions = await connect_all(inv, hosts_to_connect(inv), emit, connector)
    try:
        results = {n: HostCheck(n, s.host.address) for n, s in sessions.items()}
        for n, s in sessions.items():
            if s.error:
                results[n].problems.append(s.error.removeprefix(f"{n}: "))
            else:
                results[n].connected = True

        async def one(s: HostSession) -> None:
            r = results[s.name]
            clock = await prepare_host(s)  # the readiness rule `hopcap run` applies
            if clock is not None:
                r.clock_offset_s, r.clock_error_s = clock
            r.tcpdump = s.tcpdump_version
            r.free_mb = s.free_kb // 1024 if s.free_kb is not None else None
            r.pull = s.caps.pull
            r.capture = s.caps.capture or "none"
            if s.host.sudo and not s.is_root and s.sudo_ok is not None:
                r.sudo = "ok" if s.sudo_ok else "needs a password"
            if s.error:
                r.problems.append(s.error.removeprefix(f"{s.name}: "))
            if (
                s.host.on_path
                and s.host.kind == "linux"
                and s.free_kb is not None
                and s.free_kb < MIN_FREE_KB
            ):
                r.problems.append(f"only {s.free_kb // 1024} MB free in {REMOTE_TMP}")

        await asyncio.gather(*(one(s) for s in sessions.values() if s.ok))

        await resolve_all_points(sessions, inv)
        for n in inv.path:
            if n not in sessions or sessions[n].transport is None:
                continue
            s = sessions[n]
            r = results[n]
            r.points = [p.interface for p in s.points]
            problem = (s.error or "").removeprefix(f"{n}: ")
            if problem and problem not in r.problems:
                r.problems.append(problem)
            for p in s.points:
                if not s.interfaces.get(p.interface, True):
                    r.problems.append(f"interface {p.interface} is down")
        return [results[n] for n in sessions]
    finally:
        await close_all(sessions)
