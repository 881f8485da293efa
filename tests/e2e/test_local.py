"""`connection: local`: the controller itself is the client of the path.

The "laptop" is a network namespace of its own, in which hopcap runs: it reaches the lab's
hosts over the management bridge (SSH, as any controller) and the service through a veth
into fw (its `eth0`, fw's `eth2`), so its capture point is on the path, before fw. The
repro (curl) runs on the laptop, without SSH, and so do its tcpdump, facts and clock.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED
from hopcap.lab.topology import VIP
from tests.e2e.conftest import (
    HOPCAP,
    MGMT,
    PREFIX,
    RunResult,
    inventory_variant,
    start_until_listening,
)

pytestmark = pytest.mark.lab

NS = f"{PREFIX}-lap"
LAPTOP = "192.0.2.10"
FW_SIDE = "192.0.2.1"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture()
def laptop(clean_lab: lab.LabInfo) -> Iterator[lab.LabInfo]:
    """The laptop namespace, wired to the management bridge and to fw; removed after."""
    mgmt_addr = str(ipaddress.IPv4Network(MGMT).network_address + 20)
    try:
        _ip("netns", "add", NS)
        _ip("-n", NS, "link", "set", "lo", "up")
        _ip("link", "add", f"{PREFIX}-lpm", "type", "veth", "peer", "name", "mgmt0", "netns", NS)
        _ip("link", "set", f"{PREFIX}-lpm", "master", f"{PREFIX}-mgmt", "up")
        _ip("-n", NS, "addr", "add", f"{mgmt_addr}/24", "dev", "mgmt0")
        _ip("-n", NS, "link", "set", "mgmt0", "up")
        _ip("link", "add", f"{PREFIX}-lpd", "type", "veth", "peer", "name", f"{PREFIX}-lpf")
        _ip("link", "set", f"{PREFIX}-lpd", "netns", NS, "name", "eth0")
        _ip("link", "set", f"{PREFIX}-lpf", "netns", f"{PREFIX}-fw", "name", "eth2")
        _ip("-n", NS, "addr", "add", f"{LAPTOP}/24", "dev", "eth0")
        _ip("-n", NS, "link", "set", "eth0", "up")
        _ip("-n", f"{PREFIX}-fw", "addr", "add", f"{FW_SIDE}/24", "dev", "eth2")
        _ip("-n", f"{PREFIX}-fw", "link", "set", "eth2", "up")
        _ip("-n", NS, "route", "add", f"{VIP}/32", "via", FW_SIDE)
        yield clean_lab
    finally:
        for pid in _ns_pids():
            subprocess.run(["kill", "-9", str(pid)], capture_output=True)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)  # takes its veths along
        subprocess.run(["ip", "-n", f"{PREFIX}-fw", "link", "del", "eth2"], capture_output=True)


def _ns_pids() -> list[int]:
    res = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True)
    return [int(p) for p in res.stdout.split()]


def _local_tcpdumps() -> list[int]:
    found = []
    for pid in _ns_pids():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"tcpdump" in cmd:
            found.append(pid)
    return found


def _inventory(info: lab.LabInfo, dest: Path, repro: bool) -> Path:
    curl = f"curl -s -o /dev/null -m 5 http://{VIP}/"
    inv = inventory_variant(
        info.inventory,
        dest,
        top={
            "path": ["laptop", "fw", "lb", "srv"],
            "repro": {"on": "laptop", "run": curl} if repro else None,
        },
        fw={"capture": ["eth2", "eth1"]},
    )
    doc = yaml.safe_load(inv.read_text())
    doc["hosts"] = {"laptop": {"connection": "local", "role": "client", "capture": ["eth0"]}} | {
        k: v for k, v in doc["hosts"].items() if k != "client"
    }
    inv.write_text(yaml.safe_dump(doc, sort_keys=False))
    return inv


def _hopcap_in_laptop(*args: str) -> list[str]:
    return ["ip", "netns", "exec", NS, *HOPCAP, *args]


def _start_until_listening(args: list[str], points: int) -> subprocess.Popen[str]:
    return start_until_listening(_hopcap_in_laptop(*args), points)


def test_killed_controller_then_a_normal_run(laptop: lab.LabInfo, tmp_path: Path) -> None:
    """kill -9 of hopcap: the local tcpdump is not tied to hopcap's life but ends by its own
    bound, and the next run removes the local directory the dead one left; that next run,
    with the repro on the laptop, sees the flow from the laptop to srv, with nothing left."""
    inv = _inventory(laptop, tmp_path / "idle.yml", repro=False)
    proc = _start_until_listening(
        ["run", "-i", str(inv), "--window", "5s", "--out", str(tmp_path / "killed")], 6
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    alive = _local_tcpdumps()
    assert alive, "the local capture must not depend on hopcap being alive"
    for pid in alive:  # a session of its own: a Ctrl-C at hopcap's terminal does not reach it
        assert os.getsid(pid) != os.getsid(os.getpid())
    # window 5 s + grace 15 s, then SIGKILL 5 s later at the latest
    deadline = time.monotonic() + 40
    while _local_tcpdumps() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _local_tcpdumps() == []
    (left,) = Path("/tmp").glob("hopcap.*.*.laptop")
    (pcap,) = left.glob("eth0.pcap*")  # the first file of its ring
    assert pcap.stat().st_size >= 24  # what it captured before its bound is intact
    # hopcap.<expiry>.<run>.<host>: the bound's passing (window + grace + 30 s), as the next
    # run reads it from the name
    assert int(left.name.split(".")[1]) > time.time()
    left = left.rename(
        left.with_name(re.sub(r"^hopcap\.\d+\.", f"hopcap.{int(time.time()) - 1}.", left.name))
    )

    out = tmp_path / "b"
    proc2 = subprocess.run(
        _hopcap_in_laptop(
            "run", "-i", str(_inventory(laptop, tmp_path / "inv.yml", True)), "--out", str(out)
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    res = RunResult(proc2.returncode, proc2.stdout, proc2.stderr, out)
    assert res.code == 0, res.stderr
    assert not left.exists(), "the next run removes what the killed one left"
    man = res.manifest
    assert man["complete"] is True
    assert man["inventory"]["hosts"]["laptop"]["connection"] == "local"
    assert man["repro"]["on"] == "laptop" and man["repro"]["exit_status"] == 0
    lap = man["points"][0]
    assert lap["name"] == "laptop:eth0" and lap["packets"] > 0 and lap["error"] is None
    assert (lap["clock_offset_s"], lap["clock_error_s"]) == (0.0, 0.0)
    # run here, without sudo, bounded by timeout; no SSH session to exclude
    assert lap["command"].startswith("sh -c ") and "timeout -s INT" in lap["command"]
    assert "not (tcp and host" not in lap["command"]
    assert "not (tcp and host" in man["points"][1]["command"]
    (flow,) = [f for f in res.verdict["flows"] if f["client"].startswith(LAPTOP)]
    points = [leg["point"] for leg in flow["legs"]]
    assert points[:2] == ["laptop:eth0", "fw:eth2"] and points[-1] == "srv:eth0"
    assert res.findings("drop", "inject", "rewrite", "gap") == []
    assert (out / "facts" / "laptop" / "before" / "route.txt").read_text().count(FW_SIDE)
    assert _local_tcpdumps() == []
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


def test_ctrl_c_stops_the_local_capture(laptop: lab.LabInfo, tmp_path: Path) -> None:
    inv = _inventory(laptop, tmp_path / "inv.yml", repro=False)
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "120s", "--out", str(out)], 6)
    assert _local_tcpdumps()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    man = json.loads((out / "manifest.json").read_text())
    assert man["interrupted"] is True
    lap = man["points"][0]
    assert lap["name"] == "laptop:eth0" and lap["error"] is None
    assert (out / lap["file"]).stat().st_size >= 24
    assert _local_tcpdumps() == []
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


def test_check_runs_the_local_host_without_ssh(laptop: lab.LabInfo, tmp_path: Path) -> None:
    inv = _inventory(laptop, tmp_path / "inv.yml", repro=True)
    res = subprocess.run(
        _hopcap_in_laptop("check", "-i", str(inv)), capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (row,) = [ln for ln in res.stdout.splitlines() if ln.startswith("laptop ")]
    assert "localhost" in row and "eth0" in row and "+0.0 ms (±0.0)" in row and row.endswith("ok")
    assert "all hosts ready" in res.stdout
