"""Connecting to every host of an inventory at once (jump hosts first) and learning what a
run needs to know about each: our own SSH session, root or sudo, tcpdump, free space,
interfaces. One host's failure is data (`HostSession.error`), never a crash of the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hopcap.errors import AuthError, HopcapError, InventoryError, RunInterrupted, TransportError
from hopcap.inventory import interface_problem
from hopcap.model import CapturePoint, Host, Inventory
from hopcap.orchestrator.capture import interface_present, is_f5_name
from hopcap.orchestrator.local import LocalTransport
from hopcap.orchestrator.transport import (
    HostTransport,
    PasswordPrompt,
    SSHTransport,
    as_root,
    connect,
    quote,
)

log = logging.getLogger(__name__)

REMOTE_TMP = "/tmp"
REMOTE_PREFIX = "hopcap."
MAX_PARALLEL_CONNECTS = 32  # OpenSSH's MaxStartups refuses part of larger bursts to one sshd


# what a run tells the CLI, in the order a run goes through them
EventKind = Literal[
    "checking",  # a scheduled run connects and checks every host before its first window
    "checked",
    "connected",
    "failed",  # a host cannot take part (text: why)
    "listening",  # a capture point's tcpdump is capturing
    "capture-failed",
    "countdown",  # waiting for a window (done: seconds left)
    "window-start",
    "window",  # the capture window runs
    "window-failed",
    "recording",
    "probe",
    "trigger",
    "repro",
    "repro-done",
    "repro-failed",
    "stopping",
    "captured",
    "pull",  # done/total bytes of a point's pull
    "pulled",
    "pull-failed",
    "warning",
]


@dataclass(frozen=True)
class Event:
    """Progress of a run, for the CLI to display (the orchestrator never prints)."""

    kind: EventKind
    host: str | None = None
    point: str | None = None
    text: str = ""
    done: int | None = None
    total: int | None = None


EventSink = Callable[[Event], None]


def no_events(_: Event) -> None:
    pass


FACT_TOOLS = ("ss", "nstat", "conntrack", "nft", "iptables-save", "sysctl")
# the host's command for a file's digest and the same algorithm here, in order of preference
HASHES: dict[str, tuple[str, str]] = {
    "sha256sum": ("sha256sum", "sha256"),
    "openssl": ("openssl dgst -sha256 -r", "sha256"),
    "sha1sum": ("sha1sum", "sha1"),
    "md5sum": ("md5sum", "md5"),
}
HASH_TOOLS = tuple(HASHES)


@dataclass
class HostCaps:
    """What one host offers, learnt by `probe` in one remote script (plus one SFTP try).

    `pull`: "sftp" (the SSH server has the SFTP subsystem), "exec" (it has not: files are
    streamed with `cat` over an exec channel), "local" (a `connection: local` host: a copy),
    or "direct" (another transport that is not SSH).
    `timeout`: which `timeout` bounds the capture ("coreutils"; "busybox": `-s SIG -k N
    SECS`; "busybox-t": BusyBox before 1.30, `-t SECS -s SIG`), or None: a shell watchdog
    does. `capture`: how tcpdump gets its rights: "root", "sudo", "capabilities" (file
    capabilities on tcpdump, or the login's own), "group" (tcpdump with capabilities,
    executable only by a group the user is in), "unchecked" (not root, no sudo, and no
    `getcap` to read tcpdump's capabilities: tcpdump is tried as the user), or None (none
    of these: `capture_problem` says why). `hash`: the tool that hashes a remote file (of
    `HASH_TOOLS`; None: a pull is verified by reading the file twice). `tools`: the fact
    tools found (ss, nstat, conntrack, nft, iptables-save, sysctl). `date_ns`: `date +%N`
    gives nanoseconds (BusyBox's does not).
    """

    pull: str = "sftp"
    timeout: str | None = None
    capture: str | None = None
    capture_problem: str | None = None
    hash: str | None = "sha256sum"
    tools: frozenset[str] = frozenset()
    date_ns: bool = True
    has_sudo: bool = False
    tcpdump_path: str | None = None


@dataclass
class HostSession:
    host: Host
    transport: HostTransport | None = None
    error: str | None = None
    ssh_connection: str = ""
    is_root: bool = False
    tcpdump_version: str | None = None
    free_kb: int | None = None
    bigip: bool = False  # an F5 BIG-IP (its /VERSION says so): `0.0`, noise suffixes
    interfaces: dict[str, bool] = field(default_factory=dict)  # name -> up
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (interface, address)
    points: list[CapturePoint] = field(default_factory=list)
    sudo_ok: bool | None = None
    remote_dir: str | None = None
    # what the host offers, probed once (`probe`): see `HostCaps`
    caps: HostCaps = field(default_factory=lambda: HostCaps())

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def ok(self) -> bool:
        return self.transport is not None and self.error is None

    def root(self, command: str) -> str:
        return as_root(command, self.host.sudo and not self.is_root)


def hosts_to_connect(inv: Inventory) -> list[str]:
    """Path hosts, the repro host, and every jump host they need, jump hosts first."""
    wanted: list[str] = []

    def add(name: str) -> None:
        h = inv.hosts[name]
        if h.jump and h.jump not in wanted:
            add(h.jump)
        if name not in wanted:
            wanted.append(name)

    for n in inv.path:
        add(n)
    if inv.repro and inv.repro.on in inv.hosts:
        add(inv.repro.on)
    return wanted


Connector = Callable[[Host, HostTransport | None], Awaitable[HostTransport]]


def host_connector(ask_password: PasswordPrompt | None = None) -> Connector:
    """The real connector: this machine for a `connection: local` host, else asyncssh
    (through the jump host's connection if there is one). `ask_password` (from the CLI,
    only when there is a terminal) is asked once per host whose keys were refused and that
    has no `password_env`; prompts never overlap."""
    prompting = asyncio.Lock()

    async def ask(host: Host, where: str) -> str | None:
        assert ask_password is not None
        async with prompting:  # one prompt on the terminal at a time
            return await _in_daemon_thread(ask_password, host.name, where)

    async def connect_one(host: Host, via: HostTransport | None) -> HostTransport:
        if host.is_local:
            return LocalTransport(host.name, sudo=host.sudo)
        if via is not None and not isinstance(via, SSHTransport):
            raise TransportError(host.name, "a jump host must be reached over SSH")
        return await connect(host, via=via, ask_password=ask if ask_password else None)

    return connect_one


async def _in_daemon_thread(fn: PasswordPrompt, host: str, where: str) -> str | None:
    """Run a blocking prompt without tying the run to it: if the run is aborted meanwhile
    (Ctrl-C), hopcap exits without waiting for the user to answer (asyncio's own worker
    threads would be waited for)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str | None] = loop.create_future()

    def settle(value: str | None, exc: BaseException | None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)

    def work() -> None:
        try:
            value = fn(host, where)
        except Exception as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=work, name=f"hopcap-prompt-{host}", daemon=True).start()
    return await fut


ssh_connector = host_connector()  # no prompts: keys, agent, and `password_env`


def require_password_envs(inv: Inventory, names: Iterable[str]) -> None:
    """An `AuthError` (before anything is connected) for the first host of `names` whose
    `password_env` is not set."""
    for n in names:
        h = inv.hosts[n]
        if h.is_local or not h.password_env:
            continue
        if h.password_env not in os.environ:
            raise AuthError(
                n,
                f"password_env names {h.password_env}, which is not set in the environment",
                hint=f"export {h.password_env}=... in the shell that runs hopcap (or remove "
                "password_env to be asked for the password on a terminal)",
            )


async def connect_all(
    inv: Inventory,
    names: Iterable[str],
    emit: EventSink,
    connector: Connector = ssh_connector,
    stop: asyncio.Event | None = None,
) -> dict[str, HostSession]:
    """Connect every host of `names` at once (a jump host before the hosts behind it); a
    host that fails gets `error`. When `stop` is set meanwhile (Ctrl-C) the connecting
    ends at once, the connections made are closed, and `RunInterrupted` is raised: a host
    that does not answer took its whole connect timeout (10 s, per jump) before."""
    names = list(names)
    require_password_envs(inv, names)
    # a local command (a repro) must never see a password of the inventory
    hidden = {h.password_env for h in inv.hosts.values() if h.password_env}
    sessions = {n: HostSession(inv.hosts[n]) for n in names}
    futures: dict[str, asyncio.Future[HostTransport | None]] = {
        n: asyncio.get_running_loop().create_future() for n in sessions
    }
    gate = asyncio.Semaphore(MAX_PARALLEL_CONNECTS)

    async def one(name: str) -> None:
        s = sessions[name]
        via: HostTransport | None = None
        try:
            if s.host.jump:
                if s.host.jump not in futures:
                    raise TransportError(name, f"jump host {s.host.jump!r} is not connected")
                via = await futures[s.host.jump]
                if via is None:
                    raise TransportError(name, f"jump host {s.host.jump} is unreachable")
            async with gate:
                t = await connector(s.host, via)
            if isinstance(t, LocalTransport):
                t.hide_env(hidden)
            s.transport = t
            futures[name].set_result(t)
            emit(Event("connected", host=name, text=s.host.address))
        except HopcapError as exc:
            s.error = str(exc)
            if not futures[name].done():
                futures[name].set_result(None)
            hint = f" ({exc.hint})" if exc.hint else ""
            emit(Event("failed", host=name, text=str(exc) + hint))

    connecting = asyncio.ensure_future(asyncio.gather(*(one(n) for n in sessions)))
    if stop is None:
        await connecting
        return sessions
    stopped = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {connecting, stopped}
    interrupted = True
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        interrupted = not connecting.done()
    finally:
        stopped.cancel()
        if interrupted:  # Ctrl-C (or the run cancelled): what is open is closed
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
            await close_all(sessions)
    if interrupted:
        raise RunInterrupted(
            "interrupted while connecting to the hosts, before any capture started: "
            "nothing was captured, no bundle written"
        )
    connecting.result()
    return sessions


BIGIP_VERSION = "/VERSION"  # "Product: BIG-IP", "Version: 17.1.0", ... on every BIG-IP
# an F5 BIG-IP: its tcpdump knows `0.0` and the noise suffixes (`:nnnp`)
BIGIP_CHECK = f"grep -q '^Product: *BIG-IP' {BIGIP_VERSION} 2>/dev/null && echo bigip=1; true"

_PROBE = (
    'echo "ssh=$SSH_CONNECTION"; echo "uid=$(id -u)"; echo "gids=$(id -G)"; '
    'echo "tcpdump=$(tcpdump --version 2>&1 | head -n 1)"; '
    'tp=$(command -v tcpdump 2>/dev/null) && echo "has_tcpdump=$tp"; '
    # which `timeout`: GNU's answers --version; BusyBox's prints its usage instead
    "command -v timeout >/dev/null 2>&1 && "
    """echo "timeout=$(timeout --version 2>&1 | head -n 4 | tr '\\n' ' ')"; """
    f"for t in {' '.join(FACT_TOOLS + HASH_TOOLS)} sudo; do "
    'command -v "$t" >/dev/null 2>&1 && echo "tool=$t"; done; '
    'echo "date=$(date +%N)"; '
    # capture rights without root: the login's own capabilities, tcpdump's file capabilities
    # and who may execute it
    "echo \"capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status 2>/dev/null)\"; "
    'if [ -n "$tp" ]; then '
    "g=$(command -v getcap 2>/dev/null || "
    "ls /usr/sbin/getcap /sbin/getcap 2>/dev/null | head -n 1); "
    '[ -n "$g" ] && echo "getcap=$("$g" "$tp" 2>/dev/null | head -n 1)"; '
    'echo "tcpdump_mode=$(stat -L -c \'%a %g\' "$tp" 2>/dev/null)"; fi; '
    f"echo \"free=$(df -Pk {REMOTE_TMP} | awk 'NR==2 {{print $4}}')\"; "
    # admin flags and carrier, not operstate: the kernel updates operstate lazily
    "for i in /sys/class/net/*; do "
    'echo "if=${i##*/} $(cat $i/flags) $(cat $i/carrier 2>/dev/null || echo 0)"; done; '
    # iproute2 and BusyBox `ip` both print "N: IFACE    inet ADDR/LEN ..." with -o
    'ip -o addr show 2>/dev/null | awk \'{split($4, a, "/"); sub(":$", "", $2); '
    'print "addr=" $2 " " a[1]}\'; ' + BIGIP_CHECK
)

CAP_NET_RAW = 13  # its bit in a capability mask (linux/capability.h)


def timeout_flavour(text: str) -> str | None:
    """Which `timeout` answered `timeout --version` (its first lines)."""
    if "coreutils" in text:
        return "coreutils"
    if "BusyBox" in text or "Usage: timeout" in text:
        return "busybox-t" if "-t SECS" in text else "busybox"
    return None


def capture_method(
    *,
    is_root: bool,
    sudo: bool,
    sudo_ok: bool | None,
    capeff: str,
    getcap: str | None,
    mode: str,
    gids: set[str],
) -> tuple[str | None, str | None]:
    """How tcpdump gets its rights on a host: (method, problem when there is none)."""
    if is_root:
        return "root", None
    if sudo:
        return ("sudo", None) if sudo_ok else (None, "`sudo -n` is not allowed")
    try:
        own = int(capeff or "0", 16)
    except ValueError:
        own = 0
    if own & (1 << CAP_NET_RAW):
        return "capabilities", None
    if getcap is None:  # no getcap on the host: tcpdump itself will tell, with the fix
        return "unchecked", None
    if "cap_net_raw" in getcap and ("=" in getcap or "+" in getcap):
        perm, _, group = mode.partition(" ")
        if perm.isdigit() and int(perm, 8) & 0o001:
            return "capabilities", None
        if perm.isdigit() and int(perm, 8) & 0o010 and group.strip() in gids:
            return "group", None
        return None, "tcpdump has capabilities but this user may not execute it"
    return None, "not root, `sudo` is false, and tcpdump has no capabilities"


CAPTURE_HINT = (
    "fix: set `sudo: true` (passwordless sudo), or give tcpdump the rights to capture: "
    "`setcap cap_net_raw,cap_net_admin=eip $(command -v tcpdump)` (restricted to a group: "
    "`chgrp pcap` + `chmod 750`, and add the user to it)"
)


# Remove what a crashed run left: directories are named hopcap.<expiry epoch>.<run id>.
_CLEAN_STALE = (
    f"now=$(date +%s); for d in {REMOTE_TMP}/{REMOTE_PREFIX}*.*; do "
    '[ -d "$d" ] || continue; e=${d#*/hopcap.}; e=${e%%.*}; '
    'case "$e" in *[!0-9]*|"") continue;; esac; '
    '[ "$e" -lt "$now" ] && rm -rf -- "$d"; done; true'
)


# asked only of a host with `sudo: true`, in the probe's own script
_SUDO_CHECK = (
    'if [ "$(id -u)" != 0 ]; then e=$(sudo -n true 2>&1); echo "sudo_rc=$?"; '
    'echo "sudo_err=$e" | head -n 1; fi'
)


async def probe(s: HostSession) -> None:
    """Learn what a run needs about an already-connected host, in one remote script (with
    a try of SFTP over SSH at the same time); sets `s.error` when the host cannot be used."""
    assert s.transport is not None
    script = _PROBE + ("; " + _SUDO_CHECK if s.host.sudo else "")
    sftp: asyncio.Future[bool] | None = None
    if isinstance(s.transport, SSHTransport):  # its answer is awaited after the script's
        sftp = asyncio.ensure_future(s.transport.sftp_available())
    try:
        res = await s.transport.run(script, timeout=20)
    except BaseException:
        if sftp is not None:
            sftp.cancel()
        raise
    sftp_ok = await sftp if sftp is not None else False
    caps = s.caps
    tools: set[str] = set()
    capeff = mode = ""
    getcap: str | None = None
    gids: set[str] = set()
    sudo_rc: str | None = None
    sudo_err = ""
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "ssh":
            s.ssh_connection = value
        elif key == "uid":
            s.is_root = value == "0"
        elif key == "gids":
            gids = set(value.split())
        elif key == "tcpdump" and value:
            s.tcpdump_version = value
        elif key == "has_tcpdump":
            caps.tcpdump_path = value
        elif key == "timeout":
            caps.timeout = timeout_flavour(value)
        elif key == "tool":
            tools.add(value)
        elif key == "date":
            caps.date_ns = value.isdigit()
        elif key == "capeff":
            capeff = value
        elif key == "getcap":
            getcap = value
        elif key == "tcpdump_mode":
            mode = value
        elif key == "free" and value.isdigit():
            s.free_kb = int(value)
        elif key == "bigip":
            s.bigip = value == "1"
        elif key == "sudo_rc":
            sudo_rc = value
        elif key == "sudo_err":
            sudo_err = value
        elif key == "addr":
            ifc, _, addr = value.partition(" ")
            s.addresses.append((ifc, addr.strip()))
        elif key == "if":
            name, _, state = value.partition(" ")
            flags, _, carrier = state.strip().partition(" ")
            try:
                admin_up = bool(int(flags, 16) & 0x1)
            except ValueError:
                admin_up = False
            s.interfaces[name] = admin_up and carrier.strip() == "1"
    if caps.tcpdump_path is None:
        s.tcpdump_version = None
    caps.tools = frozenset(t for t in tools if t in FACT_TOOLS)
    caps.has_sudo = "sudo" in tools
    caps.hash = next((t for t in HASH_TOOLS if t in tools), None)
    if isinstance(s.transport, SSHTransport):
        caps.pull = "sftp" if sftp_ok else "exec"
    else:
        caps.pull = "local" if s.host.is_local else "direct"
    if s.host.sudo and not s.is_root:
        s.sudo_ok = sudo_rc == "0"
        if not s.sudo_ok:
            why = sudo_err or ("sudo is not installed" if not caps.has_sudo else "")
            s.error = (
                f"{s.name}: `sudo -n` is not allowed (it wants a password or is not "
                f"configured): {why}"
            )
    caps.capture, caps.capture_problem = capture_method(
        is_root=s.is_root,
        sudo=s.host.sudo,
        sudo_ok=s.sudo_ok,
        capeff=capeff,
        getcap=getcap,
        mode=mode,
        gids=gids,
    )


async def prepare_host(s: HostSession, *, clock: bool = True) -> tuple[float, float] | None:
    """The readiness rule of `run` and `check` (one for both): probe a connected host,
    decide whether it can capture (`capture_error`, path hosts only), and take its clock
    (remote - local, error bound). A problem becomes `s.error`; the clock is taken
    whenever the host answers (also for a host that cannot capture: check shows it).
    `clock` False: only an appliance's clock, which comes with its probe (a run takes
    the others' while the captures are armed)."""
    from hopcap.orchestrator.facts import clock_offset
    from hopcap.orchestrator.fortigate import ANY, probe_fortigate

    assert s.transport is not None
    try:
        if s.host.kind == "fortigate":
            version, status_clock = await probe_fortigate(s.transport)
            s.tcpdump_version = f"FortiOS sniffer ({version})"
            s.caps.pull, s.caps.capture = "cli text", "sniffer"
            ifaces = () if s.host.capture == "auto" else tuple(s.host.capture)
            s.points = [CapturePoint(host=s.name, interface=i) for i in ifaces or (ANY,)]
            return (status_clock[0], status_clock[1]) if status_clock is not None else None
        await probe(s)
        if s.error is None and s.host.on_path:
            s.error = capture_error(s)
        return await clock_offset(s.transport, date_ns=s.caps.date_ns) if clock else None
    except HopcapError as exc:
        s.error = s.error or str(exc)
        return None


def capture_error(s: HostSession) -> str | None:
    """The one-line reason a path host cannot capture (None when it can)."""
    if s.tcpdump_version is None:
        return f"{s.name}: tcpdump is not installed (install the tcpdump package)"
    if s.caps.capture is None and s.caps.capture_problem and not s.host.sudo:
        return f"{s.name}: cannot capture: {s.caps.capture_problem} ({CAPTURE_HINT})"
    return None


async def resolve_all_points(sessions: dict[str, HostSession], inv: Inventory) -> None:
    """Turn every path host's `capture` into capture points (setting `error` where it
    cannot), checking that each interface exists on the host.

    `auto` asks the host's routing table which interfaces lead to its neighbours on the
    path (the previous host for the ingress, the next one for the egress); this finds the
    backend side of a proxy and the inside of a DNAT firewall, which routes to the target
    alone cannot. The addresses of a neighbour used are its data addresses: every address
    but loopback and the one hopcap reached it over, unless that is all it has.
    """
    path = [n for n in inv.path if n in sessions]

    async def one(i: int, s: HostSession) -> None:
        try:
            if s.host.capture == "auto":
                ifaces = await _auto(s, inv, [sessions[n] for n in path], i)
            else:
                ifaces = tuple(s.host.capture)
            s.points = []
            for iface in ifaces:
                problem = interface_problem(iface)
                if problem:
                    raise InventoryError(f"{s.name}: {problem}")
                s.points.append(CapturePoint(host=s.name, interface=iface))
            f5 = [p.interface for p in s.points if is_f5_name(p.interface)]
            if f5 and not s.bigip:
                raise InventoryError(
                    f"{s.name}: {', '.join(f5)}: BIG-IP interface name(s) (`0.0`, a ':n' to "
                    "':nnnp' noise suffix), but the host is not an F5 BIG-IP (its /VERSION "
                    "does not say so): name its interfaces as its kernel does"
                )
            missing = [
                p.interface for p in s.points if not interface_present(p.interface, s.interfaces)
            ]
            if missing:
                have = ", ".join(sorted(s.interfaces)) or "none"
                s.error = f"{s.name}: no interface {', '.join(missing)} (the host has: {have})"
        except HopcapError as exc:
            s.error = str(exc)

    # an appliance's points come from its own driver (orchestrator.fortigate)
    linux = [(i, sessions[n]) for i, n in enumerate(path) if sessions[n].host.kind == "linux"]
    await asyncio.gather(*(one(i, s) for i, s in linux if s.ok))


def _data_addresses(s: HostSession) -> list[str]:
    ssh_addr = s.ssh_connection.split()[2] if len(s.ssh_connection.split()) == 4 else None
    addrs = [a for ifc, a in s.addresses if ifc != "lo"]
    data = [a for a in addrs if a != ssh_addr and not a.startswith("fe80:")]
    return data or addrs


async def _route_devs(s: HostSession, wanted: Sequence[Sequence[str]]) -> list[str | None]:
    """For each list of addresses, the interface this host uses toward the first of them
    it has a route to, preferring a directly connected one; every lookup in one command."""
    from hopcap.inventory import parse_route

    assert s.transport is not None
    addresses = list(dict.fromkeys(a for group in wanted for a in group))
    if not addresses:
        return [None for _ in wanted]
    marker = "@@hopcap-route "
    script = "; ".join(
        f"echo {quote([marker + a])}; ip -o route get {quote([a])} 2>&1" for a in addresses
    )
    res = await s.transport.run(script)
    routes: dict[str, str] = {}
    current: str | None = None
    for line in res.stdout.splitlines(keepends=True):
        if line.startswith(marker):
            current = line[len(marker) :].strip()
            routes[current] = ""
        elif current is not None:
            routes[current] += line
    out: list[str | None] = []
    for group in wanted:
        found: list[tuple[bool, str]] = []
        for a in group:
            r = parse_route(routes.get(a, ""))
            if r.dev and not r.local and r.dev != "lo":
                found.append((" via " in r.text, r.dev))
        found.sort(key=lambda x: x[0])
        out.append(found[0][1] if found else None)
    return out


async def _auto(s: HostSession, inv: Inventory, path: list[HostSession], i: int) -> tuple[str, ...]:
    from hopcap.inventory import resolve_auto_capture

    assert s.transport is not None
    before = _data_addresses(path[i - 1]) if i > 0 and path[i - 1].ok else []
    after = _data_addresses(path[i + 1]) if i + 1 < len(path) and path[i + 1].ok else []
    ingress, egress = await _route_devs(s, [before, after])
    found = tuple(dict.fromkeys(x for x in (ingress, egress) if x))
    if found and (ingress or i == 0) and (egress or i == len(path) - 1):
        return found
    # fall back on the routes to the target and to the client's address
    if inv.target is None:
        raise InventoryError(f"{s.name}: `capture: auto` needs a `target` or path neighbours")
    client_addr = None
    if path and path[0].ok and path[0] is not s:
        client_addr = next(iter(_data_addresses(path[0])), None)
    r1 = await s.transport.run(quote(["ip", "-o", "route", "get", inv.target.host]))
    r2 = None
    if client_addr:
        r2 = await s.transport.run(quote(["ip", "-o", "route", "get", client_addr]))
    links = await s.transport.run("ip -o link show")
    return resolve_auto_capture(
        s.name, r1.stdout, r2.stdout if r2 is not None else None, links.stdout
    )


async def make_remote_dir(s: HostSession, run_id: str, bound_s: float) -> str:
    assert s.transport is not None
    # tcpdump starts right after this and is dead by bound + 5 s (timeout -k 5)
    expiry = int(time.time() + bound_s + 30)
    # the host's name is part of it: hosts may share a file system (the lab's namespaces do)
    d = f"{REMOTE_TMP}/{REMOTE_PREFIX}{expiry}.{run_id}.{s.name}"
    res = await s.transport.run(f"{_CLEAN_STALE}; {quote(['mkdir', '-m', '755', d])}", timeout=20)
    if not res.ok:
        raise TransportError(s.name, f"cannot create {d}: {res.stderr.strip()}")
    s.remote_dir = d
    return d


async def remove_remote_dir(s: HostSession) -> None:
    d = s.remote_dir
    if s.transport is None or not d:
        return
    try:
        await s.transport.run(s.root(quote(["rm", "-rf", "--", d])), timeout=15)
        s.remote_dir = None
    except HopcapError as exc:  # it expires: a later run removes it
        # (the host lost: what it holds may be the only copy of a capture not pulled)
        expiry = d.rpartition("/")[2].removeprefix(REMOTE_PREFIX).partition(".")[0]
        after = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(expiry)))
            if expiry.isdigit()
            else "its bound"
        )
        log.warning(
            "%s: %s not removed (%s): what it holds (any capture not pulled) stays there "
            "until the next hopcap run there after %s removes it",
            s.name, d, exc, after,
        )  # fmt: skip


async def close_all(sessions: dict[str, HostSession]) -> None:
    """Close every connection, at once; a jump host only after the hosts reached through it."""
    closing: dict[str, asyncio.Future[None]] = {}

    async def close(s: HostSession) -> None:
        users = [closing[u.name] for u in sessions.values() if u.host.jump == s.name]
        await asyncio.gather(*users)
        if s.transport is not None:
            await s.transport.close()
            s.transport = None

    for s in sessions.values():
        closing[s.name] = asyncio.ensure_future(close(s))
    await asyncio.gather(*closing.values())
