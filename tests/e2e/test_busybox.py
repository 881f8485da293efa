"""A BusyBox router on the path: fw runs dropbear (no SFTP) and its login has only BusyBox
applets plus tcpdump and nft (`hopcap lab up --fw busybox`). hopcap must pick commands
that exist there and keep every guarantee: the fw fault cases give the same findings as
with the Debian fw, facts come from /proc, the capture is bounded by BusyBox's `timeout`,
and nothing is left running after a normal run or a controller killed with -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED
from tests import labnames
from tests.e2e import test_faults
from tests.e2e.conftest import RunResult, hopcap_cli, hopcap_run, inventory_variant
from tests.e2e.test_lifecycle import _start_until_listening

pytestmark = pytest.mark.lab

PREFIX = labnames.prefix("hcr")
MGMT = labnames.mgmt("hcr")


@pytest.fixture(scope="module")
def bb_lab() -> Iterator[lab.LabInfo]:
    lab.check_prerequisites()
    try:
        yield lab.up(PREFIX, mgmt_net=MGMT, fw="busybox")
    finally:
        lab.down(PREFIX)


@pytest.fixture()
def clean_bb(bb_lab: lab.LabInfo) -> Iterator[lab.LabInfo]:
    lab.fault_clear(PREFIX)
    try:
        yield bb_lab
    finally:
        lab.fault_clear(PREFIX)


def _fw_processes() -> dict[int, str]:
    """pid -> command line of every process in the BusyBox fw's namespace."""
    out = subprocess.run(
        ["ip", "netns", "pids", f"{PREFIX}-fw"], capture_output=True, text=True
    ).stdout
    procs = {}
    for pid in out.split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        procs[int(pid)] = cmd.strip()
    return procs


def _until_only(baseline: dict[int, str], seconds: float) -> dict[int, str]:
    """Wait until the fw runs nothing but `baseline` (dropbear), at most `seconds`; return
    what else still runs."""
    deadline = time.monotonic() + seconds
    while True:
        extra = {p: c for p, c in _fw_processes().items() if p not in baseline}
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.5)


def test_the_fw_is_a_busybox_router(bb_lab: lab.LabInfo) -> None:
    """The lab host really is what the test claims: dropbear, BusyBox-only tools."""
    procs = _fw_processes()
    assert any("dropbear" in c for c in procs.values()), procs
    assert not any("sshd" in c for c in procs.values()), procs
    key = str(bb_lab.state_dir / "id_ed25519")
    known = str(bb_lab.state_dir / "known_hosts")
    ssh = ["ssh", "-i", key, "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes"]
    probe = (
        "for t in timeout sudo ss nstat conntrack ip; do echo $t $(readlink $(command -v $t)); done"
    )
    out = subprocess.run(
        [*ssh, f"root@{bb_lab.mgmt['fw']}", probe], capture_output=True, text=True, timeout=30
    ).stdout.splitlines()
    assert "timeout /usr/bin/busybox" in out and "ip /usr/bin/busybox" in out, out
    assert {"sudo", "ss", "nstat", "conntrack"} == {x.strip() for x in out if " " not in x.strip()}


def test_check_shows_exec_pull_and_resolves_auto_with_busybox_ip(
    bb_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(bb_lab.inventory, tmp_path / "inv.yml", fw={"capture": "auto"})
    res = hopcap_cli("check", "--inventory", str(inv))
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines() if line.strip()}
    assert rows["fw"][rows["host"].index("pull")] == "exec"  # dropbear has no SFTP
    assert rows["fw"][rows["host"].index("rights")] == "root"
    assert rows["lb"][rows["host"].index("pull")] == "sftp"
    assert "eth0, eth1" in " ".join(rows["fw"])  # `ip route get` of BusyBox, both ways


def test_run_with_facts_from_proc_and_nothing_left(clean_bb: lab.LabInfo, tmp_path: Path) -> None:
    baseline = _fw_processes()
    res = hopcap_run(clean_bb.inventory, tmp_path / "b")
    assert res.code == 0, res.stderr
    man = res.manifest
    assert man["complete"] is True
    fw = [p for p in man["points"] if p["host"] == "fw"]
    for p in fw:
        assert "timeout -s INT -k 5" in p["command"] and p["packets"] > 0, p
        assert p["packets"] == p["packets_in_file"], p  # pulled whole over `cat`
    assert res.findings("drop", "inject", "rewrite", "gap") == []
    facts = res.out / "facts" / "fw"
    nstat = (facts / "before" / "nstat.txt").read_text()
    assert nstat.startswith("#kernel (no nstat on this host") and "TcpExtListenDrops" in nstat
    assert "src=203.0.113.10" in (facts / "after" / "conntrack.txt").read_text()
    assert (facts / "before" / "nft.txt").read_text().strip()
    # BusyBox timeout's watchdog ends a second after tcpdump; then only dropbear is left
    assert _until_only(baseline, 5) == {}
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


FW_FAULTS: dict[str, Callable[[RunResult, str], None]] = {
    "fw-drop-syn": test_faults.assert_fw_drop_syn,
    "fw-drop-large-response": test_faults.assert_fw_drop_large_response,
    "fw-rst-get": test_faults.assert_fw_rst_get,
    "fw-clamp-mss": test_faults.assert_fw_clamp_mss,
}


@pytest.mark.parametrize("fault", list(FW_FAULTS))
def test_fw_faults_on_a_busybox_router(clean_bb: lab.LabInfo, tmp_path: Path, fault: str) -> None:
    """The fault catalogue's fw cases, pinned exactly as on the Debian fw."""
    res = test_faults._run_fault(clean_bb, tmp_path, fault)
    FW_FAULTS[fault](res, PREFIX)


def test_controller_killed_leaves_nothing_on_the_router(
    clean_bb: lab.LabInfo, tmp_path: Path
) -> None:
    baseline = _fw_processes()
    inv = inventory_variant(clean_bb.inventory, tmp_path / "inv.yml", top={"repro": None})
    proc = _start_until_listening(
        ["run", "-i", str(inv), "--window", "120s", "--out", str(tmp_path / "b")], 6
    )
    assert any("tcpdump" in c for c in _fw_processes().values())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the connection's end stops the captures (their guards watch the command shell's
    # feeder, which ends with the channel's input) long before their bound (135 s)
    left = _until_only(baseline, 8)
    assert left == {}, left


def test_ctrl_c_leaves_nothing_on_the_router(clean_bb: lab.LabInfo, tmp_path: Path) -> None:
    baseline = _fw_processes()
    inv = inventory_variant(clean_bb.inventory, tmp_path / "inv.yml", top={"repro": None})
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "120s", "--out", str(out)], 6)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["interrupted"] is True
    fw = [p for p in man["points"] if p["host"] == "fw"]
    assert fw and all(p["packets"] is not None and (out / p["file"]).exists() for p in fw), fw
    assert _until_only(baseline, 5) == {}
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


def test_a_scheduled_window_pulls_from_the_router_without_sftp(
    clean_bb: lab.LabInfo, tmp_path: Path
) -> None:
    """A window's pooled connection is used as the router's own: exec pulls (every window
    was partial before, its fw points "failed after 3 tries" over SFTP, which dropbear
    lacks)."""
    out = tmp_path / "w"
    res = hopcap_cli(
        "run", "-i", str(clean_bb.inventory), "--out", str(out), "--no-facts",
        "--at", "+1s", "--window", "4s",
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (w,) = sorted(out.glob("w01-*"))
    man = json.loads((w / "manifest.json").read_text())
    assert man["complete"] is True, man["errors"]
    assert all(p["error"] is None and p["packets"] > 0 for p in man["points"]), man["points"]
