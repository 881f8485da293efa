"""A BusyBox router as a lab host (`hopcap lab up --fw busybox`): dropbear instead of
OpenSSH (so no SFTP, scp only), and a login whose PATH holds only BusyBox applets plus
tcpdump and nft — no coreutils, no sudo, no ss/nstat/conntrack; `ip` is BusyBox's too.

dropbear reads the user's `~/.ssh/authorized_keys` and login shell from /etc/passwd, so it
runs in a mount namespace of its own (the one `ip netns exec` makes) in which /etc is
overlaid with copies of passwd, shadow and shells: root's home is `<state>/fw/home`
(with the lab's key) and its shell `<state>/fw/bbsh`, a BusyBox `sh` whose PATH is
`<state>/fw/bin`. Nothing outside that namespace sees these mounts.

State-dir files (per host): `dropbear_ed25519_host_key`, `dropbear.pid`, `dropbear.log`,
`bin/`, `bbsh`, `home/.ssh/authorized_keys`, `etc/{passwd,shadow,shells}` (+ `etc-work/`),
and `no-sftp-server`, an empty file bind-mounted over the sftp-server dropbear would run.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

from hopcap.errors import LabError

from ._proc import ns_exec, run
from .topology import Layout

BUSYBOX = "/usr/bin/busybox"
DROPBEAR = "/usr/sbin/dropbear"
DROPBEARKEY = "/usr/bin/dropbearkey"
SFTP_SERVER = "/usr/lib/sftp-server"  # where Debian's dropbear looks for one
# the router's own tools besides BusyBox
EXTRA_TOOLS = ("tcpdump", "nft")


def available() -> list[str]:
    """Programs a BusyBox lab host needs that are missing here."""
    missing = [p for p in (BUSYBOX, DROPBEAR, DROPBEARKEY) if not os.access(p, os.X_OK)]
    missing += [t for t in EXTRA_TOOLS if shutil.which(t) is None]
    return missing


def _applets() -> list[str]:
    out = run([BUSYBOX, "--list"]).stdout
    return [a for a in out.split() if a and "/" not in a]


def make_bin(bindir: Path) -> None:
    """A directory of BusyBox applet symlinks, plus tcpdump and nft."""
    bindir.mkdir(parents=True, exist_ok=True)
    for applet in _applets():
        (bindir / applet).symlink_to(BUSYBOX)
    for tool in EXTRA_TOOLS:
        path = shutil.which(tool)
        assert path is not None
        (bindir / tool).unlink(missing_ok=True)
        (bindir / tool).symlink_to(path)


def prepare(layout: Layout, state: Path, host: str) -> str:
    """Write everything dropbear of `host` needs; return its known_hosts line."""
    hdir = state / host
    hdir.mkdir(exist_ok=True)
    key = hdir / "dropbear_ed25519_host_key"
    key.unlink(missing_ok=True)
    run([DROPBEARKEY, "-t", "ed25519", "-f", str(key)])
    pub = run([DROPBEARKEY, "-y", "-f", str(key)]).stdout
    line = next((x for x in pub.splitlines() if x.startswith("ssh-ed25519 ")), None)
    if line is None:
        raise LabError(f"dropbearkey printed no public key for {key}")
    make_bin(hdir / "bin")
    shell = hdir / "bbsh"
    shell.write_text(
        f"#!{BUSYBOX} sh\n"
        "# the login shell of a lab BusyBox router: BusyBox applets, tcpdump and nft only\n"
        f"PATH={shlex.quote(str(hdir / 'bin'))}; export PATH\n"
        f'exec {BUSYBOX} sh "$@"\n'
    )
    shell.chmod(0o755)
    home = hdir / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)
    (home / ".ssh").chmod(0o700)
    ak = home / ".ssh" / "authorized_keys"
    ak.write_text((state / "authorized_keys").read_text())
    ak.chmod(0o600)
    etc = hdir / "etc"
    etc.mkdir(exist_ok=True)
    passwd = [
        x for x in Path("/etc/passwd").read_text().splitlines() if x and not x.startswith("root:")
    ]
    (etc / "passwd").write_text("\n".join([f"root:x:0:0:root:{home}:{shell}", *passwd]) + "\n")
    (etc / "shadow").write_text("root:*:20000:0:99999:7:::\n")
    (etc / "shadow").chmod(0o600)
    (etc / "shells").write_text(f"{shell}\n")
    (hdir / "etc-work").mkdir(exist_ok=True)
    (hdir / "no-sftp-server").write_text("")
    (hdir / "no-sftp-server").chmod(0o644)
    return f"{layout.mgmt_addr(host)} {' '.join(line.split()[:2])}"


def start(layout: Layout, state: Path, host: str) -> None:
    """Start dropbear in `host`'s namespace; it forks once it listens."""
    hdir = state / host
    etc = hdir / "etc"
    # an overlay on /etc, not bind mounts on the files: tools such as useradd replace
    # /etc/passwd by a rename, which silently drops a mount on the file in every namespace
    binds = " && ".join(
        [
            f"mount -t overlay hopcap-lab -o lowerdir=/etc,upperdir={shlex.quote(str(etc))},"
            f"workdir={shlex.quote(str(hdir / 'etc-work'))} /etc",
            # dropbear would run OpenSSH's sftp-server if it found one; a router has none
            f"mount --bind {shlex.quote(str(hdir / 'no-sftp-server'))} {SFTP_SERVER}",
        ]
    )
    argv = [
        DROPBEAR,
        "-r",
        str(hdir / "dropbear_ed25519_host_key"),
        "-p",
        f"{layout.mgmt_addr(host)}:22",
        "-P",
        str(hdir / "dropbear.pid"),
        "-s",  # keys only
        "-E",
    ]
    log = hdir / "dropbear.log"
    script = f"{binds} && exec {shlex.join(argv)} </dev/null >/dev/null 2>>{shlex.quote(str(log))}"
    run(ns_exec(layout.ns(host), ["sh", "-c", script]))
