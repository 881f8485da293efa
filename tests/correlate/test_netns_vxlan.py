"""A real VXLAN segment (Linux vxlan devices over a veth, in two namespaces): the inner
TCP flow is correlated across the points that see it plain (the vxlan devices) and the
points that see it encapsulated (the underlay veth), with the tunnel as a leg detail and
no false finding."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopcap.correlate import correlate
from hopcap.model import PointInput
from tests.labnames import prefix

pytestmark = pytest.mark.lab

P = f"{prefix('hcv')}{os.getpid() % 1000}"  # namespace prefix, unique per checkout and run
NS = {"a": f"{P}-a", "b": f"{P}-b"}
SRV = "198.18.201.2"


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@pytest.fixture
def segment(tmp_path: Path) -> Iterator[Path]:
    """a (client) and b (server) joined by a veth underlay (198.18.200.0/30) carrying a
    VXLAN segment, VNI 42 on UDP 4789, with the overlay 198.18.201.0/24 on vx0."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "tcpdump", "curl")):
        pytest.fail("needs root, ip, tcpdump and curl")
    srv: subprocess.Popen[bytes] | None = None
    try:
        for n in NS.values():
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", "u0", "netns", NS["a"], "type", "veth",
           "peer", "u0", "netns", NS["b"])  # fmt: skip
        ends = (("a", "198.18.200.1", "198.18.200.2"), ("b", "198.18.200.2", "198.18.200.1"))
        for h, me, peer in ends:
            ns = NS[h]
            sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("ip", "addr", "add", f"{me}/30", "dev", "u0", ns=ns)
            sh("ip", "link", "set", "u0", "up", ns=ns)
            sh("ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", me, "remote", peer,
               "dstport", "4789", "dev", "u0", ns=ns)  # fmt: skip
            overlay = "198.18.201.1/24" if h == "a" else f"{SRV}/24"
            sh("ip", "addr", "add", overlay, "dev", "vx0", ns=ns)
            sh("ip", "link", "set", "vx0", "up", ns=ns)
        www = tmp_path / "www"
        www.mkdir()
        (www / "big").write_bytes(os.urandom(300_000))
        srv = subprocess.Popen(
            ["ip", "netns", "exec", NS["b"], "python3", "-m", "http.server", "8080",
             "--bind", SRV, "--directory", str(www)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(50):
            if ":8080" in sh("ss", "-ltn", ns=NS["b"]).stdout:
                break
            time.sleep(0.1)
        yield tmp_path
    finally:
        if srv is not None:
            srv.terminate()
            srv.wait(timeout=5)
        for n in NS.values():
            sh("ip", "netns", "del", n, check=False)


# path order from the client: its vxlan device, its underlay, the server's underlay, vxlan
POINTS = [("a:vx0", "a", "vx0", "tcp"), ("a:u0", "a", "u0", "udp port 4789"),
          ("b:u0", "b", "u0", "udp port 4789"), ("b:vx0", "b", "vx0", "tcp")]  # fmt: skip


def test_vxlan_flow_correlated_across_encapsulated_and_plain_points(segment: Path) -> None:
    dumps = []
    for name, ns, dev, flt in POINTS:
        f = segment / f"{name.replace(':', '_')}.pcap"
        pr = subprocess.Popen(
            ["ip", "netns", "exec", NS[ns], "tcpdump", "-i", dev, "-n", "--immediate-mode", "-U",
             "-w", str(f), flt],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert pr.stderr is not None
        first = pr.stderr.readline().decode()
        assert "listening" in first, first
        dumps.append((name, f, pr))
    time.sleep(0.2)
    got = sh("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{size_download}",
             f"http://{SRV}:8080/big", ns=NS["a"], check=False)  # fmt: skip
    time.sleep(0.5)
    pts = []
    for name, f, pr in dumps:
        pr.send_signal(signal.SIGINT)
        _, err = pr.communicate(timeout=10)
        drops = sum(
            int(x.split()[0]) for x in err.decode().splitlines() if "dropped by kernel" in x
        )
        pts.append(PointInput(name=name, pcap=f, kernel_drops=drops))
    assert got.stdout == "300000", (got.stdout, got.stderr)
    v = correlate(pts)
    assert [p.packets > 0 for p in v.points] == [True] * 4
    assert len(v.flows) == 1, [f.to_dict() for f in v.flows]
    f = v.flows[0]
    assert f.server == f"{SRV}:8080"
    assert [leg.point for leg in f.legs] == [p[0] for p in POINTS]
    assert [leg.link for leg in f.legs] == ["same"] * 4
    assert [leg.tunnel for leg in f.legs] == [None, "vxlan vni 42", "vxlan vni 42", None]
    assert f.findings == (), f.to_dict()
    assert not v.warnings, v.warnings
