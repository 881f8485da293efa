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

from hopcap.errors import HopcapError
from hopcap.model import CapturePoint, Inventory
from hopcap.orchestrator.facts import clock_offset
from hopcap.orchestrator.fortigate import ANY, probe_fortigate
from hopcap.orchestrator.session import (
    REMOTE_TMP,
    Connector,
    EventSink,
    HostSession,
    capture_error,
    close_all,
    connect_all,
    hosts_to_connect,
    no_events,
    probe,
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
                results[n].problems.append(s.error)
            else:
                results[n].connected = True

        async def one(s: HostSession) -> None:
            r = results[s.name]
            if s.host.kind == "fortigate":
                await _check_fortigate(s, r)
                return
            try:
                await probe(s)
                r.tcpdump = s.tcpdump_version
                r.free_mb = s.free_kb // 1024 if s.free_kb is not None else None
                r.pull = s.caps.pull
                r.capture = s.caps.capture or "none"
                if s.host.sudo and not s.is_root:
                    r.sudo = "ok" if s.sudo_ok else "needs a password"
                if s.error:
                    r.problems.append(s.error)
                r.clock_offset_s, r.clock_error_s = await clock_offset(
                    s.transport,  # type: ignore[arg-type]
                    date_ns=s.caps.date_ns,
                )
            except HopcapError as exc:
                r.problems.append(str(exc))
                return
            if not s.host.on_path:
                return
            problem = capture_error(s)
            if problem:
                r.problems.append(problem.removeprefix(f"{s.name}: "))
            if s.free_kb is not None and s.free_kb < MIN_FREE_KB:
                r.problems.append(f"only {s.free_kb // 1024} MB free in {REMOTE_TMP}")

        await asyncio.gather(*(one(s) for s in sessions.values() if s.ok))

        await resolve_all_points(sessions, inv)
        for n in inv.path:
            if n not in sessions or sessions[n].transport is None:
                continue
            s = sessions[n]
            r = results[n]
            r.points = [p.interface for p in s.points]
            if s.error and s.error not in r.problems:
                r.problems.append(s.error)
            for p in s.points:
                if not s.interfaces.get(p.interface, True):
                    r.problems.append(f"interface {p.interface} is down")
        return [results[n] for n in sessions]
    finally:
        await close_all(sessions)


async def _check_fortigate(s: HostSession, r: HostCheck) -> None:
    """A FortiGate: its CLI answers `get system status`; it captures with its own sniffer."""
    assert s.transport is not None
    try:
        version, clock = await probe_fortigate(s.transport)
    except HopcapError as exc:
        r.problems.append(str(exc).removeprefix(f"{s.name}: "))
        return
    r.tcpdump = f"FortiOS sniffer ({version})"
    r.pull = "cli text"
    r.capture = "sniffer"
    if clock is not None:
        r.clock_offset_s, r.clock_error_s = clock[0], clock[1]
    ifaces = () if s.host.capture == "auto" else tuple(s.host.capture)
    s.points = [CapturePoint(host=s.name, interface=i) for i in ifaces or (ANY,)]
