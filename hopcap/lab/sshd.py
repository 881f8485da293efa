"""One OpenSSH sshd per lab host, on its management address, with generated keys.

State-dir files: `id_ed25519` (+`.pub`): the user key the inventory uses; `authorized_keys`;
`known_hosts` (every host's key under its management address); per host
`<host>/ssh_host_ed25519_key`, `<host>/sshd_config`, `<host>/sshd.pid`, `<host>/sshd.log`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from hopcap.errors import LabError

from ._proc import ns_exec, run
from .topology import HOSTS, Layout

SSHD = "/usr/sbin/sshd"  # absolute: sshd re-executes itself


def _keygen(path: Path, comment: str) -> None:
    for p in (path, path.with_name(path.name + ".pub")):
        p.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def config_text(layout: Layout, host: str, state: Path) -> str:
    hdir = state / host
    return "\n".join(
        [
            f"# sshd of lab host {host} ({layout.ns(host)}), written by hopcap lab",
            f"ListenAddress {layout.mgmt_addr(host)}:22",
            f"HostKey {hdir / 'ssh_host_ed25519_key'}",
            f"PidFile {hdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {state / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            # a user's ~/.ssh/environment may set PATH (e.g. to a tcpdump with capabilities)
            "PermitUserEnvironment PATH",
            "AllowTcpForwarding yes",
            # hopcap opens several sessions per host at once; the default 10:30:100
            # refuses part of a burst
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ]
    )


def prepare(layout: Layout, state: Path) -> None:
    """Generate the user key, host keys, configs, authorized_keys and known_hosts."""
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    _keygen(state / "id_ed25519", f"hopcap-lab-{layout.prefix}")
    (state / "authorized_keys").write_text((state / "id_ed25519.pub").read_text())
    known: list[str] = []
    for host in HOSTS:
        hdir = state / host
        hdir.mkdir(exist_ok=True)
        key = hdir / "ssh_host_ed25519_key"
        _keygen(key, f"{layout.prefix}-{host}")
        pub = key.with_name(key.name + ".pub").read_text().split()
        known.append(f"{layout.mgmt_addr(host)} {pub[0]} {pub[1]}")
        cfg = hdir / "sshd_config"
        cfg.write_text(config_text(layout, host, state))
        run([SSHD, "-t", "-f", str(cfg)])
    (state / "known_hosts").write_text("\n".join(known) + "\n")


def start(layout: Layout, state: Path, host: str) -> None:
    """sshd daemonises itself (after binding), so this returns once it is listening
    or has failed."""
    hdir = state / host
    run(
        ns_exec(
            layout.ns(host),
            [SSHD, "-f", str(hdir / "sshd_config"), "-E", str(hdir / "sshd.log")],
        )
    )


def accepts(addr: str, port: int = 22, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def wait_all(layout: Layout, state: Path, deadline_s: float = 10) -> None:
    end = time.monotonic() + deadline_s
    for host in HOSTS:
        addr = layout.mgmt_addr(host)
        while not accepts(addr):
            if time.monotonic() > end:
                log = state / host / "sshd.log"
                tail = log.read_text()[-500:] if log.exists() else ""
                raise LabError(f"sshd of {host} does not accept on {addr}:22: {tail.strip()}")
            time.sleep(0.05)
