"""Building, inspecting and removing a lab: `up`, `down`, `status`, `ns_run`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hopcap.errors import LabError

from . import dropbear, services, sshd, state, topology
from ._proc import alive as is_alive
from ._proc import ns_exec, run
from .topology import BRIDGE_HOST, HOSTS, VIP, Layout

# program -> Debian package that provides it
PROGRAMS: dict[str, str] = {
    "ip": "iproute2",
    "ss": "iproute2",
    "nft": "nftables",
    "sshd": "openssh-server",
    "tcpdump": "tcpdump",
    "haproxy": "haproxy",
    "curl": "curl",
    "ssh-keygen": "openssh-client",
    "setsid": "util-linux",
}


FW_KINDS = ("openssh", "busybox")


@dataclass(frozen=True)
class LabInfo:
    prefix: str
    state_dir: Path
    inventory: Path
    mgmt: dict[str, str]  # host name -> management address
    namespaces: tuple[str, ...]


@dataclass(frozen=True)
class LabStatus:
    prefix: str
    up: bool
    namespaces: tuple[str, ...]
    processes: dict[str, list[str]]  # namespace -> ["pid cmd", ...]
    sshd: dict[str, bool]  # host -> accepts SSH on its management address
    fault: str | None
    inventory: Path | None


def check_prerequisites() -> None:
    """Raise LabError unless we are root and every program the lab runs is installed."""
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (network namespaces, veth, nftables)",
            hint="run it with sudo",
        )
    missing: dict[str, list[str]] = {}
    for prog, pkg in PROGRAMS.items():
        found = os.access(sshd.SSHD, os.X_OK) if prog == "sshd" else shutil.which(prog) is not None
        if not found:
            missing.setdefault(pkg, []).append(prog)
    if missing:
        progs = ", ".join(p for ps in missing.values() for p in ps)
        pkgs = " ".join(sorted(missing))
        raise LabError(
            f"the lab needs programs that are not installed: {progs}",
            hint=f"apt-get install {pkgs}",
        )


def _layout(prefix: str) -> Layout:
    data = state.lookup(prefix)
    net = str(data["mgmt_net"]) if data else topology.default_mgmt_net(prefix)
    return Layout(prefix, net)


def ns_run(
    prefix: str,
    host: str,
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside lab host `host` (client, fw, lb, srv or br) of lab `prefix`."""
    if host not in (*HOSTS, BRIDGE_HOST):
        raise LabError(f"unknown lab host {host!r}: one of {', '.join((*HOSTS, BRIDGE_HOST))}")
    return run(ns_exec(f"{prefix}-{host}", argv), check=check, timeout=timeout)


def _kill_all(pids: list[int]) -> None:
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 2.0)):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait
        while alive and time.monotonic() < end:
            alive = [p for p in alive if is_alive(p)]
            time.sleep(0.02)
        pids = alive
        if not pids:
            return


def _ns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(x) for x in out.split() if x.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def down(prefix: str = topology.DEFAULT_PREFIX) -> list[str]:
    """Remove everything of lab `prefix`: processes, namespaces, root links, state dir.
    Idempotent; works on a half-built or crashed lab. Returns what it removed."""
    topology.check_prefix(prefix)
    if os.geteuid() != 0:
        raise LabError("removing the lab needs root", hint="run it with sudo")
    removed: list[str] = []
    for ns in topology.lab_namespaces(prefix):
        pids = _ns_pids(ns)
        _kill_all(pids)
        run(["ip", "netns", "del", ns], check=False)
        removed.append(f"namespace {ns}" + (f" ({len(pids)} processes)" if pids else ""))
    left = topology.lab_namespaces(prefix)
    if left:
        raise LabError(f"cannot remove namespaces {', '.join(left)}")
    for _ in range(50):  # veth ends vanish with their peer's namespace, asynchronously
        links = topology.lab_root_links(prefix)
        if not links:
            break
        for link in links:
            if run(["ip", "link", "del", link], check=False).returncode == 0:
                removed.append(f"link {link}")
        time.sleep(0.02)
    else:
        raise LabError(f"cannot remove links {', '.join(links)}")
    removed += state.forget(prefix)
    return removed


def _check_data_path(prefix: str) -> None:
    url = f"http://{VIP}/"
    proc = ns_run(
        prefix,
        "client",
        ["curl", "-s", "-o", "/dev/null", "-m", "5", "-w", "%{http_code}", url],
        check=False,
    )
    if proc.stdout.strip() != "200":
        raise LabError(
            f"lab built but the client cannot fetch {url} (curl exit {proc.returncode}, "
            f"HTTP {proc.stdout.strip() or 'none'})"
        )


def up(
    prefix: str = topology.DEFAULT_PREFIX,
    *,
    mgmt_net: str | None = None,
    state_dir: Path | None = None,
    fw: str = "openssh",
) -> LabInfo:
    """Build lab `prefix` (tearing down any previous one first) and return where it is.
    On failure everything built so far is removed again.

    `fw="busybox"`: the firewall is a BusyBox router reached over dropbear (see
    `dropbear`): no SFTP, no coreutils, no sudo, no ss/nstat/conntrack."""
    topology.check_prefix(prefix)
    check_prerequisites()
    if fw not in FW_KINDS:
        raise LabError(f"unknown fw kind {fw!r}: one of {', '.join(FW_KINDS)}")
    if fw == "busybox" and dropbear.available():
        raise LabError(
            f"a BusyBox fw needs {', '.join(dropbear.available())}",
            hint="apt-get install busybox dropbear-bin (scripts/setup.sh does)",
        )
    net = topology.check_mgmt_net(mgmt_net or topology.default_mgmt_net(prefix))
    layout = Layout(prefix, net)
    sdir = Path(state_dir) if state_dir is not None else state.default_state_dir(prefix)
    down(prefix)
    topology.check_mgmt_net_free(layout)
    state.prepare_state_dir(sdir)
    state.record(layout, sdir)
    try:
        topology.build(layout)
        sshd.prepare(layout, sdir)
        if fw == "busybox":
            known = sdir / "known_hosts"
            lines = [
                x
                for x in known.read_text().splitlines()
                if not x.startswith(layout.mgmt_addr("fw") + " ")
            ]
            lines.append(dropbear.prepare(layout, sdir, "fw"))
            known.write_text("\n".join(lines) + "\n")
        for host in HOSTS:
            if host == "fw" and fw == "busybox":
                dropbear.start(layout, sdir, host)
            else:
                sshd.start(layout, sdir, host)
        services.start_httpd(layout, sdir)
        services.start_haproxy(layout, sdir)
        sshd.wait_all(layout, sdir)
        _check_data_path(prefix)
        inventory = state.write_inventory(layout, sdir)
    except BaseException:
        down(prefix)
        raise
    return LabInfo(
        prefix=prefix,
        state_dir=sdir,
        inventory=inventory,
        mgmt=layout.mgmt,
        namespaces=layout.namespaces,
    )


def status(prefix: str = topology.DEFAULT_PREFIX) -> LabStatus:
    topology.check_prefix(prefix)
    layout = _layout(prefix)
    present = tuple(topology.lab_namespaces(prefix))
    processes = {ns: [f"{pid} {_cmdline(pid)}" for pid in _ns_pids(ns)] for ns in present}
    sdir = state.state_dir_of(prefix)
    ssh_ok = {
        h: layout.ns(h) in present and sshd.accepts(layout.mgmt_addr(h), timeout=0.3) for h in HOSTS
    }
    inv = sdir / "inventory.yml" if sdir is not None else None
    return LabStatus(
        prefix=prefix,
        up=set(layout.namespaces) <= set(present) and sdir is not None,
        namespaces=present,
        processes=processes,
        sshd=ssh_ok,
        fault=state.read_fault(sdir),
        inventory=inv if inv is not None and inv.exists() else None,
    )
