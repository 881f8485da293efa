"""Hosts that are not the lab's Debian-as-root defaults: an OpenSSH server without the SFTP
subsystem, and logins that capture without root or sudo (tcpdump with file capabilities,
or executable only by a capture group) — and one that has no way to capture at all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PREFLIGHT
from hopcap.lab import sshd
from tests import labnames
from tests.e2e.conftest import PREFIX, hopcap_cli, hopcap_run, inventory_variant
from tests.e2e.test_lifecycle import _lab_tcpdumps, _start_until_listening

pytestmark = pytest.mark.lab

NO_SFTP_PORT = 2200

CAPUSER = labnames.prefix("hccap")  # a copy of tcpdump with capabilities on its PATH
GRPUSER = labnames.prefix("hcgrp")  # member of the group that may run such a copy
NOUSER = labnames.prefix("hcnone")  # neither: no way to capture
CAPGROUP = labnames.prefix("hcpcap")


def _flows(verdict: dict[str, Any]) -> list[tuple[list[tuple[str, str]], list[Any]]]:
    """What a verdict says about its flows, without tuples and times that change per run."""
    return sorted(
        ([(leg["point"], leg["link"]) for leg in f["legs"]], [x["kind"] for x in f["findings"]])
        for f in verdict["flows"]
    )


@pytest.fixture(scope="module")
def srv_without_sftp(
    e2e_lab: lab.LabInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A second OpenSSH sshd on srv (port 2200) whose config has no `Subsystem sftp`;
    yields an inventory that reaches srv through it."""
    d = tmp_path_factory.mktemp("nosftp")
    state = e2e_lab.state_dir
    addr = e2e_lab.mgmt["srv"]
    cfg = sshd.config_text(lab.control._layout(PREFIX), "srv", state)
    cfg = cfg.replace(f"ListenAddress {addr}:22", f"ListenAddress {addr}:{NO_SFTP_PORT}")
    cfg = cfg.replace(f"PidFile {state / 'srv' / 'sshd.pid'}", f"PidFile {d / 'sshd.pid'}")
    cfg = "\n".join(x for x in cfg.splitlines() if not x.startswith("Subsystem"))
    assert "Subsystem" not in cfg
    (d / "sshd_config").write_text(cfg + "\n")
    key = (state / "srv" / "ssh_host_ed25519_key.pub").read_text().split()
    known = (state / "known_hosts").read_text() + f"[{addr}]:{NO_SFTP_PORT} {key[0]} {key[1]}\n"
    (d / "known_hosts").write_text(known)
    lab.ns_run(PREFIX, "srv", [sshd.SSHD, "-f", str(d / "sshd_config"), "-E", str(d / "log")])
    try:
        yield inventory_variant(
            e2e_lab.inventory,
            d / "inv.yml",
            srv={"port": NO_SFTP_PORT, "known_hosts": str(d / "known_hosts")},
        )
    finally:
        pid = (d / "sshd.pid").read_text().strip()
        subprocess.run(["kill", pid], check=False)


def test_no_sftp_subsystem_pulls_over_exec_with_the_same_verdict(
    clean_lab: lab.LabInfo, srv_without_sftp: Path, tmp_path: Path
) -> None:
    check = hopcap_cli("check", "--inventory", str(srv_without_sftp))
    assert check.returncode == EXIT_OK, check.stdout + check.stderr
    rows = [line.split() for line in check.stdout.splitlines() if line.strip()]
    col = rows[0].index("pull")
    pulls = {r[0]: r[col] for r in rows[2:] if len(r) > col}
    assert pulls == {"client": "sftp", "fw": "sftp", "lb": "sftp", "srv": "exec"}, check.stdout

    with_sftp = hopcap_run(clean_lab.inventory, tmp_path / "sftp", "--no-facts")
    without = hopcap_run(srv_without_sftp, tmp_path / "exec", "--no-facts")
    assert with_sftp.code == 0 and without.code == 0, without.stderr
    man = without.manifest
    assert man["complete"] is True
    srv = next(p for p in man["points"] if p["host"] == "srv")
    assert srv["error"] is None and srv["packets"] > 0
    assert srv["packets"] == srv["packets_in_file"]  # the whole file came over `cat`
    assert _flows(without.verdict) == _flows(with_sftp.verdict)
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


# --------------------------------------------------------------------------- capture rights


def _user(name: str, *groups: str) -> Path:
    subprocess.run(["userdel", "-r", name], capture_output=True)
    argv = ["useradd", "-m", "-s", "/bin/sh"]
    if groups:
        argv += ["-G", ",".join(groups)]
    subprocess.run([*argv, name], check=True)
    subprocess.run(["usermod", "-p", "*", name], check=True)  # unlocked for sshd without PAM
    return Path(f"/home/{name}")


def _tcpdump_copy(home: Path, name: str, group: str | None) -> None:
    """A per-user copy of tcpdump with cap_net_raw,cap_net_admin (the system binary stays
    as it is), first on the user's PATH through ~/.ssh/environment."""
    bindir = home / "bin"
    bindir.mkdir()
    copy = bindir / "tcpdump"
    shutil.copy2(shutil.which("tcpdump") or "/usr/bin/tcpdump", copy)
    if group:
        shutil.chown(copy, "root", group)
        copy.chmod(0o750)
    else:
        copy.chmod(0o755)
    subprocess.run(["setcap", "cap_net_raw,cap_net_admin=eip", str(copy)], check=True)
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700)
    (ssh / "environment").write_text(f"PATH={bindir}:/usr/sbin:/usr/bin:/sbin:/bin\n")
    shutil.chown(ssh, name, name)
    shutil.chown(ssh / "environment", name, name)


@pytest.fixture(scope="module")
def capture_users() -> Iterator[None]:
    try:
        subprocess.run(["groupdel", CAPGROUP], capture_output=True)
        subprocess.run(["groupadd", CAPGROUP], check=True)
        _tcpdump_copy(_user(CAPUSER), CAPUSER, None)
        _tcpdump_copy(_user(GRPUSER, CAPGROUP), GRPUSER, CAPGROUP)
        _user(NOUSER)
        yield
    finally:
        for user in (CAPUSER, GRPUSER, NOUSER):
            subprocess.run(["userdel", "-r", user], capture_output=True)
        subprocess.run(["groupdel", CAPGROUP], capture_output=True)


def _check_rows(inv: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, dict[str, str]]]:
    res = hopcap_cli("check", "--inventory", str(inv))
    lines = [x for x in res.stdout.splitlines() if x.strip()]
    head = lines[0].split()
    rows = {}
    for line in lines[2:]:
        parts = line.split()
        if parts and parts[0] in ("client", "fw", "lb", "srv"):
            rows[parts[0]] = dict(zip(head, parts, strict=False))
    return res, rows


def test_check_tells_how_each_host_captures(
    e2e_lab: lab.LabInfo, capture_users: None, tmp_path: Path
) -> None:
    inv = inventory_variant(
        e2e_lab.inventory,
        tmp_path / "inv.yml",
        client={"user": CAPUSER},
        fw={"user": GRPUSER},
    )
    res, rows = _check_rows(inv)
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert rows["client"]["rights"] == "capabilities"
    assert rows["fw"]["rights"] == "group"
    assert rows["lb"]["rights"] == "root"


def test_a_login_that_cannot_capture_is_one_line_with_the_fix(
    e2e_lab: lab.LabInfo, capture_users: None, tmp_path: Path
) -> None:
    inv = inventory_variant(e2e_lab.inventory, tmp_path / "inv.yml", fw={"user": NOUSER})
    res, rows = _check_rows(inv)
    assert res.returncode == EXIT_PREFLIGHT, res.stdout + res.stderr
    assert rows["fw"]["rights"] == "none"
    msg = [x for x in res.stdout.splitlines() if x.startswith("fw: ")]
    assert len(msg) == 1, res.stdout
    assert "cannot capture: not root, `sudo` is false, and tcpdump has no capabilities" in msg[0]
    assert "setcap cap_net_raw,cap_net_admin=eip" in msg[0] and "sudo: true" in msg[0]
    assert "Traceback" not in res.stdout + res.stderr


def test_run_with_capabilities_instead_of_root(
    clean_lab: lab.LabInfo, capture_users: None, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", fw={"user": CAPUSER})
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == EXIT_OK, res.stderr
    fw = [p for p in res.manifest["points"] if p["host"] == "fw"]
    for p in fw:
        assert p["error"] is None and p["packets"] > 0, p
        assert "-Z root" not in p["command"] and "sudo" not in p["command"], p["command"]
    assert res.findings("drop", "inject", "rewrite") == []
    # facts that need root are noted as missing, not fatal; the others are there
    facts = res.out / "facts" / "fw"
    assert (facts / "before" / "nstat.txt").read_text().strip()
    assert not (facts / "before" / "nft.txt").exists()
    missing = (facts / "missing.txt").read_text()
    assert "nft: exit 1" in missing, missing


# --------------------------------------------------------------------------- lifecycle


def test_ctrl_c_and_kill_leave_nothing_on_these_hosts(
    clean_lab: lab.LabInfo, srv_without_sftp: Path, capture_users: None, tmp_path: Path
) -> None:
    """fw captures with capabilities as a plain user, srv has no SFTP: Ctrl-C stops and
    pulls everything; a controller killed with -9 leaves captures that end by their bound."""
    inv = inventory_variant(
        srv_without_sftp, tmp_path / "inv.yml", top={"repro": None}, fw={"user": CAPUSER}
    )
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "120s", "--out", str(out)], 6)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert all((out / p["file"]).exists() for p in man["points"])
    assert _lab_tcpdumps() == []
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []

    proc = _start_until_listening(
        ["run", "-i", str(inv), "--window", "3s", "--out", str(tmp_path / "k")], 6
    )
    assert any(x.startswith("fw:") for x in _lab_tcpdumps())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 35  # window 3 s + grace 15 s, SIGKILL 5 s later at worst
    while _lab_tcpdumps() and time.monotonic() < deadline:
        time.sleep(1)
    assert _lab_tcpdumps() == []
    for d in Path("/tmp").glob("hopcap.*.*.fw"):  # the killed run's, owned by the user
        if d.owner() == CAPUSER:
            shutil.rmtree(d)
