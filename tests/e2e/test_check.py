"""`hopcap check` against the lab: real sshd, real host keys."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_OK, EXIT_PREFLIGHT
from tests.e2e.conftest import HOPCAP, hopcap_cli, inventory_variant

pytestmark = pytest.mark.lab


def test_check_all_ready(e2e_lab: lab.LabInfo) -> None:
    res = hopcap_cli("check", "--inventory", str(e2e_lab.inventory))
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for host, ifaces in [
        ("client", "eth0"),
        ("fw", "eth0, eth1"),
        ("lb", "eth0, eth1"),
        ("srv", "eth0"),
    ]:
        row = next(line for line in lines if line.startswith(host + " "))
        assert ifaces in row and row.rstrip().endswith("ok"), row
        assert "4.99" in row or "tcpdump" not in row  # tcpdump's version is shown
    assert "all hosts ready" in res.stdout


def test_check_resolves_auto_capture(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(
        e2e_lab.inventory,
        tmp_path / "auto.yml",
        fw={"capture": "auto"},
        lb={"capture": "auto"},
        srv={"capture": "auto"},
    )
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert res.stdout.splitlines()[0].split()[-1] == "ready"  # the ok / FAIL column
    rows = {line.split()[0]: line for line in res.stdout.splitlines() if line.strip()}
    assert "eth0, eth1" in rows["fw"]  # ingress (client side), then egress (DNAT to lb)
    assert "eth0, eth1" in rows["lb"]  # the proxy's backend side found via its neighbour
    assert " eth0 " in rows["srv"]


def test_check_unknown_host_key(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    srv_addr = e2e_lab.mgmt["srv"]
    lines = (e2e_lab.state_dir / "known_hosts").read_text().splitlines()
    known.write_text("\n".join(x for x in lines if not x.startswith(srv_addr + " ")) + "\n")
    inv = inventory_variant(
        e2e_lab.inventory, tmp_path / "inv.yml", srv={"known_hosts": str(known)}
    )
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == EXIT_PREFLIGHT
    out = res.stdout + res.stderr
    assert "host key of 198.19" in out and "is not trusted" in out
    assert "SHA256:" in out  # the fingerprint, to compare with the host's owner
    assert f"ssh-keyscan -p 22 {srv_addr} >> {known}" in out
    row = next(x for x in res.stdout.splitlines() if x.startswith("srv "))
    assert row.rstrip().endswith("FAIL")
    assert next(x for x in res.stdout.splitlines() if x.startswith("fw ")).rstrip().endswith("ok")


def test_check_host_without_sshd(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    # nothing listens on port 2222 of srv: exactly what a stopped sshd looks like
    inv = inventory_variant(e2e_lab.inventory, tmp_path / "inv.yml", srv={"port": 2222})
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == EXIT_PREFLIGHT
    assert "srv: connection refused (is sshd running on that port?)" in res.stdout
    assert "all hosts ready" not in res.stdout
    assert "srv: srv:" not in res.stdout + res.stderr  # the host named once


def test_check_missing_interface(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(
        e2e_lab.inventory, tmp_path / "inv.yml", fw={"capture": ["eth0", "eth9"]}
    )
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == EXIT_PREFLIGHT
    assert "fw: no interface eth9 (the host has: " in res.stdout
    assert "eth1" in res.stdout.split("fw: no interface eth9")[1].splitlines()[0]


def test_check_bad_inventory_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "site.yml"
    bad.write_text("hosts:\n  fw: {address: 198.19.0.11, role: firewal, capture: [eth0]}\n")
    res = hopcap_cli("check", "--inventory", str(bad))
    assert res.returncode == 3
    assert "did you mean 'firewall'" in res.stderr
    assert "Traceback" not in res.stderr


def test_ssh_config_is_honoured(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    """A host known to ~/.ssh/config needs only its name and role in the inventory."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    state = e2e_lab.state_dir
    (home / ".ssh" / "config").write_text(
        "Host labsrv\n"
        f"  HostName {e2e_lab.mgmt['srv']}\n"
        "  User root\n"
        "  Port 22\n"
        f"  IdentityFile {state / 'id_ed25519'}\n"
        f"  UserKnownHostsFile {state / 'known_hosts'}\n"
    )
    inv = tmp_path / "site.yml"
    inv.write_text("hosts:\n  labsrv: {role: server, capture: [eth0]}\n")
    env = dict(os.environ, HOME=str(home))
    env.pop("SSH_AUTH_SOCK", None)
    res = subprocess.run(
        [*HOPCAP, "check", "--inventory", str(inv)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    row = next(x for x in res.stdout.splitlines() if x.startswith("labsrv "))
    assert "labsrv" in row and " eth0 " in row and row.rstrip().endswith("ok")


def test_jump_host_chain(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    """srv reached through lb, lb through client (ProxyJump chains), all on real sshd."""
    inv = inventory_variant(
        e2e_lab.inventory, tmp_path / "inv.yml", lb={"jump": "client"}, srv={"jump": "lb"}
    )
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == EXIT_OK, res.stdout + res.stderr
    assert "all hosts ready" in res.stdout
    # the capture filter excludes the session as the host sees it: from the jump host
    run = hopcap_cli("run", "--inventory", str(inv), "--out", str(tmp_path / "b"), "--no-facts")
    assert run.returncode == EXIT_OK, run.stderr
    man = json.loads((tmp_path / "b" / "manifest.json").read_text())
    srv = next(p for p in man["points"] if p["host"] == "srv")
    assert f"host {e2e_lab.mgmt['lb']} and host {e2e_lab.mgmt['srv']}" in srv["command"]


def test_check_host_whose_sshd_is_stopped(e2e_lab: lab.LabInfo, tmp_path: Path) -> None:
    import signal

    from hopcap.lab import sshd
    from hopcap.lab.topology import Layout
    from tests.e2e.conftest import MGMT, PREFIX

    pidfile = e2e_lab.state_dir / "srv" / "sshd.pid"
    os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
    try:
        deadline = time.monotonic() + 10
        while sshd.accepts(e2e_lab.mgmt["srv"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        res = hopcap_cli("check", "--inventory", str(e2e_lab.inventory))
        assert res.returncode == EXIT_PREFLIGHT
        assert "srv: connection refused (is sshd running on that port?)" in res.stdout
        row = next(x for x in res.stdout.splitlines() if x.startswith("srv "))
        assert row.rstrip().endswith("FAIL")
        assert next(x for x in res.stdout.splitlines() if x.startswith("lb ")).endswith("ok")
    finally:
        sshd.start(Layout(PREFIX, MGMT), e2e_lab.state_dir, "srv")
        sshd.wait_all(Layout(PREFIX, MGMT), e2e_lab.state_dir)
