"""up/down of a second lab next to the first: coexistence, crash recovery, a clean slate."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import LabError
from tests import labnames

from .conftest import PREFIX, curl, ps_lines

pytestmark = pytest.mark.lab

OTHER = labnames.prefix("hcu")
OTHER_MGMT = labnames.mgmt("hcu")


def _leftovers(prefix: str) -> list[str]:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found = [line for line in ns.splitlines() if line.startswith(prefix + "-")]
    found += [line for line in links.splitlines() if f" {prefix}-" in line]
    found += [line for line in ps_lines() if f"hopcap-lab-{prefix}/" in line]
    if Path(f"/var/tmp/hopcap-lab-{prefix}").exists():
        found.append(f"/var/tmp/hopcap-lab-{prefix}")
    return found


def test_second_lab_coexists_and_down_leaves_nothing(hct: lab.LabInfo, tmp_path: Path) -> None:
    try:
        info = lab.up(OTHER, mgmt_net=OTHER_MGMT, state_dir=tmp_path / "state")
        assert info.mgmt["srv"] == OTHER_MGMT.replace(".0/24", ".13")
        assert info.state_dir == tmp_path / "state"
        out = lab.ns_run(OTHER, "client", ["curl", "-s", "-m", "5", "http://203.0.113.80/"])
        assert "hello from srv" in out.stdout
        assert curl() == (0, "200")  # the first lab is untouched
        assert lab.status(OTHER).sshd == {"client": True, "fw": True, "lb": True, "srv": True}
        # the same management network twice is refused
        with pytest.raises(LabError, match="already used"):
            lab.up(labnames.prefix("hcv"), mgmt_net=OTHER_MGMT)
        assert _leftovers(labnames.prefix("hcv")) == []
    finally:
        removed = lab.down(OTHER)
    assert f"namespace {OTHER}-srv (2 processes)" in removed  # sshd and the HTTP server
    assert f"state dir {tmp_path / 'state'}" in removed
    assert _leftovers(OTHER) == []
    assert not (tmp_path / "state").exists()
    assert lab.down(OTHER) == []  # idempotent
    assert curl() == (0, "200")
    assert lab.status(PREFIX).up


def test_down_after_crash_and_half_built_lab(hct: lab.LabInfo) -> None:
    # a half-built lab as a crash would leave it: namespaces, a bridge, a process
    # holding a namespace, no state dir
    subprocess.run(["ip", "netns", "add", f"{OTHER}-client"], check=True)
    subprocess.run(["ip", "netns", "add", f"{OTHER}-fw"], check=True)
    subprocess.run(["ip", "link", "add", f"{OTHER}-mgmt", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "add", f"{OTHER}-m-c", "type", "veth", "peer", "name",
                    "mgmt0", "netns", f"{OTHER}-client"], check=True)  # fmt: skip
    sleeper = subprocess.Popen(["ip", "netns", "exec", f"{OTHER}-fw", "sleep", "300"])
    try:
        for _ in range(100):  # until it runs inside the namespace
            if Path(f"/proc/{sleeper.pid}/cmdline").read_bytes().startswith(b"sleep"):
                break
            time.sleep(0.01)
        removed = lab.down(OTHER)
        assert f"namespace {OTHER}-fw (1 processes)" in removed
        assert f"link {OTHER}-mgmt" in removed
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
        assert _leftovers(OTHER) == []
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        lab.down(OTHER)


def test_up_refuses_foreign_state_dir(hct: lab.LabInfo, tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not a lab's"):
        lab.up(OTHER, mgmt_net=OTHER_MGMT, state_dir=tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert _leftovers(OTHER) == []


def test_up_rebuilds_existing_lab(hct: lab.LabInfo) -> None:
    try:
        first = lab.up(OTHER, mgmt_net=OTHER_MGMT)
        key1 = (first.state_dir / "id_ed25519.pub").read_text()
        second = lab.up(OTHER, mgmt_net=OTHER_MGMT)
        assert (second.state_dir / "id_ed25519.pub").read_text() != key1  # fresh keys
        st = lab.status(OTHER)
        assert st.up and all(st.sshd.values())
        # one sshd per host, not two
        assert sum(p.count("sshd_config") for ps in st.processes.values() for p in ps) == 4
    finally:
        lab.down(OTHER)
    assert _leftovers(OTHER) == []


def test_prerequisites_name_the_package(hct: lab.LabInfo, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:  # fmt: skip
    lab.check_prerequisites()
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing is installed here
    with pytest.raises(LabError) as e:
        lab.check_prerequisites()
    assert "haproxy" in str(e.value)
    assert e.value.hint is not None
    for pkg in ("iproute2", "nftables", "tcpdump", "haproxy", "curl", "openssh-client"):
        assert pkg in e.value.hint
    assert os.geteuid() == 0
