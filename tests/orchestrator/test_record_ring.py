"""The flight recorder's ring on a host: its layout from free space, its tcpdump command,
and its pruner (run here by a real `sh` on real files), and `--until` parsing."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from hopcap.errors import OptionError
from hopcap.model import CapturePoint, Host, Inventory
from hopcap.orchestrator.record import (
    MAX_RECORD_BYTES,
    RING_FILES_MAX,
    RingSpec,
    parse_until,
    ring_layout,
)


def _spec(tmp_path: Path, keep_s: float = 30) -> RingSpec:
    return RingSpec(
        point=CapturePoint("fw", "eth1"),
        remote_dir=str(tmp_path),
        filter="tcp",
        bound_s=3615,
        ring_mb=1,
        sudo=False,
        drop_to_root=True,
        files=500,
        keep_s=keep_s,
    )


def test_ring_layout_follows_free_space() -> None:
    assert ring_layout(None, 1) == (1, RING_FILES_MAX)  # 1 GB of 1 MB files
    file_mb, files = ring_layout(100 * 1024 * 1024, 2)  # 100 GiB free, two points
    assert file_mb * files * 1_000_000 <= MAX_RECORD_BYTES
    file_mb, files = ring_layout(40 * 1024, 2)  # 40 MiB free: 10 MiB per point at most
    assert file_mb * files * 1_000_000 <= 40 * 1024 * 1024 // 2 // 2 + 1_000_000
    assert files >= 4


def spec_base(tmp_path: Path) -> str:
    return f"{tmp_path}/eth1.pcap"


def test_ring_command_is_bounded_in_time_and_disk(tmp_path: Path) -> None:
    cmd = _spec(tmp_path).command()
    inner = shlex.split(cmd)[2]  # sh -c INNER
    tcpdump = shlex.split(inner.split("exec ", 1)[1].removesuffix("; }"))
    assert tcpdump[:6] == ["timeout", "-s", "INT", "-k", "5", "3615"]
    i = tcpdump.index("-C")
    assert tcpdump[i : i + 4] == ["-C", "1", "-W", "500"]
    assert tcpdump[-1] == "tcp"
    # the pruner runs beside it, ends with it (and after the bound's rounds at the most),
    # and holds none of the channel's descriptors
    assert 'prune "$$" ' + f"{spec_base(tmp_path)} 30 3625 </dev/null >/dev/null 2>&1 &" in inner


def test_pruner_keeps_the_newest_file_and_the_last_seconds(tmp_path: Path) -> None:
    spec = _spec(tmp_path, keep_s=30)
    now = time.time()
    ages = {"000": 300, "001": 200, "002": 45, "003": 20, "004": 5}  # seconds old
    for suffix, age in ages.items():
        f = Path(spec.base + suffix)
        f.write_bytes(b"x" * 100)
        os.utime(f, (now - age, now - age))
    lone = tmp_path / "other.pcap000"  # not this ring's
    lone.write_bytes(b"y")
    os.utime(lone, (now - 999, now - 999))
    owner = subprocess.Popen(["sleep", "30"])
    try:
        pruner = subprocess.Popen(
            ["sh", "-c", spec.prune_script(), "prune", str(owner.pid), spec.base, "30", "100"]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(spec.base + "002").exists():
            time.sleep(0.2)
        left = sorted(p.name[-3:] for p in tmp_path.glob("eth1.pcap*"))
        assert left == ["003", "004"]
        assert lone.exists()
        # when nothing was written for long, the newest file (tcpdump's open one) stays
        for suffix in ("003", "004"):
            os.utime(spec.base + suffix, (now - 500, now - 500))
        os.utime(spec.base + "004", (now - 400, now - 400))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(spec.base + "003").exists():
            time.sleep(0.2)
        assert sorted(p.name[-3:] for p in tmp_path.glob("eth1.pcap*")) == ["004"]
        # the pruner ends with the capture it serves
        owner.kill()
        owner.wait()
        assert pruner.wait(timeout=10) == 0
    finally:
        owner.kill()
        owner.wait()


def _inv() -> Inventory:
    hosts = {
        "client": Host("client", "198.51.100.10", role="client", capture=("eth0",)),
        "fw": Host("fw", "198.51.100.11", role="firewall", capture=("eth0",)),
    }
    return Inventory(source="x.yml", hosts=hosts, path=("client", "fw"))


def test_parse_until() -> None:
    u = parse_until("client: curl -sf http://203.0.113.80/ | grep -q ok", _inv())
    assert (u.host, u.command) == ("client", "curl -sf http://203.0.113.80/ | grep -q ok")
    assert parse_until("fw:journalctl -fu x", _inv()).command == "journalctl -fu x"
    for bad, msg in [
        ("srv: true", "no host 'srv' in the inventory (hosts: client, fw)"),
        ("client", "expected HOST: COMMAND"),
        ("client:   ", "expected HOST: COMMAND"),
        (": true", "expected HOST: COMMAND"),
    ]:
        with pytest.raises(OptionError) as e:
            parse_until(bad, _inv())
        assert msg in str(e.value) and "\n" not in str(e.value)


def test_ring_on_a_host_without_timeout_keeps_the_pruner(tmp_path: Path) -> None:
    from dataclasses import replace

    inner = shlex.split(replace(_spec(tmp_path), timeout=None).command())[2]
    assert "exec tcpdump " in inner and "kill -INT $$" in inner  # the shell watchdog
    assert 'prune "$$" ' in inner and inner.index("prune") < inner.index("exec tcpdump")
