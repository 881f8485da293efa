"""The built lab: data path through NAT and the L7 proxy, sshd on every host, status,
inventory."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from hopcap import inventory, lab
from hopcap.lab.httpd import PAGE, big_body

from .conftest import PREFIX, curl, nft_counter

pytestmark = pytest.mark.lab


def test_client_fetches_page_and_big_file_through_vip(hct: lab.LabInfo, tmp_path: Path) -> None:
    page = lab.ns_run(PREFIX, "client", ["curl", "-s", "-m", "5", "http://203.0.113.80/"])
    assert page.stdout.encode() == PAGE
    out = tmp_path / "big.bin"
    assert curl("/big.bin", out=str(out)) == (0, "200")
    assert out.read_bytes() == big_body()
    assert len(out.read_bytes()) == 300_000


def test_fw_translates_both_ways(hct: lab.LabInfo) -> None:
    before = nft_counter("fw", "ip", "hopcap_nat")
    assert curl() == (0, "200")
    assert nft_counter("fw", "ip", "hopcap_nat") >= before + 2  # DNAT and masquerade
    # conntrack on fw: client -> VIP becomes fw inside -> lb front, source port randomised
    ct = lab.ns_run(PREFIX, "fw", ["conntrack", "-L", "-p", "tcp", "--dport", "80"], check=False)
    assert "src=203.0.113.10 dst=203.0.113.80" in ct.stdout
    assert "src=198.18.1.2 dst=198.18.1.1" in ct.stdout


def test_lb_proxies_with_forwardfor(hct: lab.LabInfo) -> None:
    cfg = (hct.state_dir / "lb" / "haproxy.cfg").read_text()
    assert "option forwardfor" in cfg
    # srv sees haproxy's own connection from lb's back side, not the client
    ss = lab.ns_run(PREFIX, "lb", ["ss", "-Hltn", "src 198.18.1.2:80"]).stdout
    assert "198.18.1.2:80" in ss


def test_ssh_with_lab_key_and_known_hosts(hct: lab.LabInfo) -> None:
    key = hct.state_dir / "id_ed25519"
    known = hct.state_dir / "known_hosts"
    for host, addr in hct.mgmt.items():
        proc = subprocess.run(
            ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", f"root@{addr}", "ip -o -4 addr show mgmt0"],
            capture_output=True, text=True, timeout=15,
        )  # fmt: skip
        assert proc.returncode == 0, f"{host}: {proc.stderr}"
        assert f"{addr}/24" in proc.stdout  # we landed in that host's namespace


def test_ssh_refuses_unknown_host_key(hct: lab.LabInfo, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = subprocess.run(
        ["ssh", "-i", str(hct.state_dir / "id_ed25519"), "-o", f"UserKnownHostsFile={empty}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
         f"root@{hct.mgmt['fw']}", "true"],
        capture_output=True, text=True, timeout=15,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "Host key verification failed" in proc.stderr


def test_status_reports_running_lab(hct: lab.LabInfo) -> None:
    st = lab.status(PREFIX)
    assert st.up
    assert set(hct.namespaces) <= set(st.namespaces)
    assert st.sshd == {"client": True, "fw": True, "lb": True, "srv": True}
    assert st.inventory == hct.inventory
    assert any("haproxy" in p for p in st.processes[f"{PREFIX}-lb"])
    assert any("httpd.py serve" in p for p in st.processes[f"{PREFIX}-srv"])


def test_status_of_absent_lab() -> None:
    st = lab.status("hcnone")
    assert not st.up
    assert st.namespaces == ()
    assert st.inventory is None
    assert st.fault is None


def test_inventory_follows_contract(hct: lab.LabInfo) -> None:
    raw = yaml.safe_load(hct.inventory.read_text())
    assert raw["path"] == ["client", "fw", "lb", "srv"]
    assert raw["target"] == "203.0.113.80:80"
    assert raw["defaults"]["identity"] == str(hct.state_dir / "id_ed25519")
    assert raw["repro"]["on"] == "client"
    inv = inventory.load(str(hct.inventory))
    assert inv.path == ("client", "fw", "lb", "srv")
    assert inv.hosts["fw"].capture == ("eth0", "eth1")
    assert inv.hosts["srv"].role == "server"
    assert {h: inv.hosts[h].address for h in inv.path} == hct.mgmt
    assert inv.window_s == 20
    assert inv.repro is not None and "big.bin" in inv.repro.run
