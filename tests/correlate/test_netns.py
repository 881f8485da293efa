"""correlate() on real captures: a tiny namespace path client -> fw (DNAT + masquerade with
random ports) -> srv, tcpdump on all four interfaces, real kernel, real offloads."""

from __future__ import annotations

import dataclasses
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

pytestmark = pytest.mark.lab

P = f"hcc{os.getpid() % 10000}"  # namespace prefix, unique per run
NS = {"cli": f"{P}-cli", "fw": f"{P}-fw", "srv": f"{P}-srv"}
VIP = "203.0.113.80"


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@pytest.fixture
def path(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "tcpdump", "curl")):
        pytest.fail("needs root, ip, nft, tcpdump and curl")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in NS.values():
            sh("ip", "netns", "add", n)
        sh(
            "ip",
            "link",
            "add",
            "c0",
            "netns",
            NS["cli"],
            "type",
            "veth",
            "peer",
            "f0",
            "netns",
            NS["fw"],
        )
        sh(
            "ip",
            "link",
            "add",
            "f1",
            "netns",
            NS["fw"],
            "type",
            "veth",
            "peer",
            "s0",
            "netns",
            NS["srv"],
        )
        for ns, dev, addr in (
            ("cli", "c0", "198.18.100.2/30"),
            ("fw", "f0", "198.18.100.1/30"),
            ("fw", "f1", "198.18.101.1/30"),
            ("srv", "s0", "198.18.101.2/30"),
        ):
            sh("ip", "addr", "add", addr, "dev", dev, ns=NS[ns])
            sh("ip", "link", "set", dev, "up", ns=NS[ns])
            sh("ip", "link", "set", "lo", "up", ns=NS[ns])
        sh("ip", "route", "add", "default", "via", "198.18.100.1", ns=NS["cli"])
        sh("ip", "route", "add", "default", "via", "198.18.101.1", ns=NS["srv"])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS["fw"])
        rules = tmp_path / "fw.nft"
        rules.write_text(
            "table ip hc {\n"
            "  chain pre {\n    type nat hook prerouting priority -100;\n"
            f"    ip daddr {VIP} tcp dport 80 dnat to 198.18.101.2:8080\n  }}\n"
            "  chain post {\n    type nat hook postrouting priority 100;\n"
            '    oifname "f1" masquerade random\n  }\n'
            "  chain filt {\n    type filter hook forward priority 0;\n  }\n"
            "}\n"
        )
        sh("nft", "-f", str(rules), ns=NS["fw"])
        www = tmp_path / "www"
        www.mkdir()
        (www / "big").write_bytes(os.urandom(200_000))
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", NS["srv"], "python3", "-m", "http.server", "8080",
                 "--bind", "198.18.101.2", "--directory", str(www)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        for _ in range(50):
            if sh("ss", "-ltn", ns=NS["srv"]).stdout.count(":8080"):
                break
            time.sleep(0.1)
        yield tmp_path
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(timeout=5)
        for n in NS.values():
            sh("ip", "netns", "del", n, check=False)


POINTS = [("client:eth0", "cli", "c0"), ("fw:eth0", "fw", "f0"), ("fw:eth1", "fw", "f1"),
          ("srv:eth0", "srv", "s0")]  # fmt: skip


Dump = tuple[str, Path, "subprocess.Popen[bytes]"]


def start_dump(f: Path, name: str, ns: str, dev: str) -> Dump:
    """tcpdump on `dev` in namespace `ns` into `f`, ready to capture, as point `name`."""
    pr = subprocess.Popen(
        # --immediate-mode: without it, packets of the last ring-buffer block (up to a
        # second) are lost when tcpdump is stopped
        ["ip", "netns", "exec", NS[ns], "tcpdump", "-i", dev, "-n", "--immediate-mode", "-U",
         "-w", str(f), "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert pr.stderr is not None
    first = pr.stderr.readline().decode()  # "listening on ...": ready to capture
    assert "listening" in first, first
    return name, f, pr


def stop_dumps(dumps: list[Dump]) -> list[PointInput]:
    """Each capture stopped, as a point with its kernel drops."""
    out = []
    for name, f, pr in dumps:
        pr.send_signal(signal.SIGINT)
        _, err = pr.communicate(timeout=10)
        drops = 0
        for line in err.decode().splitlines():
            if "dropped by kernel" in line:
                drops = int(line.split()[0])
        out.append(PointInput(name=name, pcap=f, kernel_drops=drops))
    return out


def capture(
    tmp: Path, tag: str, action: list[str], points: list[tuple[str, str, str]] = POINTS
) -> list[PointInput]:
    dumps = [
        start_dump(tmp / f"{tag}-{name.replace(':', '_')}.pcap", name, ns, dev)
        for name, ns, dev in points
    ]
    time.sleep(0.2)
    subprocess.run(["ip", "netns", "exec", NS["cli"], *action], capture_output=True, timeout=30)
    time.sleep(0.5)
    return stop_dumps(dumps)


def test_clean_download_through_dnat_masquerade(path: Path) -> None:
    pts = capture(path, "ok", ["curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{VIP}/big"])
    v = correlate(pts)
    assert all(p.packets > 0 for p in v.points), [(p.name, p.packets) for p in v.points]
    assert [f for fl in v.flows for f in fl.findings if f.kind != "gap"] == []
    assert len(v.flows) == 1
    if any(p.kernel_drops for p in v.points):
        return  # tcpdump dropped packets on a loaded machine: gaps are the right answer
    fl = v.flows[0]
    assert [leg.link for leg in fl.legs] == ["same", "same", "nat", "same"]
    assert fl.server == f"{VIP}:80" and fl.legs[3].tuple.endswith("198.18.101.2:8080")
    assert fl.summary.startswith("OK")


def test_syn_dropped_inside_fw(path: Path) -> None:
    rule = ["tcp", "dport", "8080", "tcp", "flags", "syn", "drop"]
    sh("nft", "add", "rule", "ip", "hc", "filt", *rule, ns=NS["fw"])
    pts = capture(path, "drop", ["curl", "-s", "-m", "2", "-o", "/dev/null", f"http://{VIP}/big"])
    v = correlate(pts)
    findings = [f for fl in v.flows for f in fl.findings]
    assert [(f.kind, f.direction, f.between) for f in findings] == [
        ("drop", "c2s", ("fw:eth0", "fw:eth1"))
    ], findings
    assert findings[0].what.startswith("SYN") and findings[0].packets >= 2
    assert v.flows[0].summary == "SYN dropped inside fw (seen on fw:eth0, never on fw:eth1)"


def test_ttl_set_inside_fw_is_a_rewrite_not_policy(path: Path) -> None:
    """fw sets the TTL of the client's packets to 3 (`ip ttl set 3`) and clamps the
    server's MSS: the MSS is device policy, the TTL a rewrite inside fw with its counts
    (it was 'TTL decrement', expected; one host's routing takes one)."""
    sh("nft", "add rule ip hc filt tcp dport 8080 ip ttl set 3 counter", ns=NS["fw"])
    clamp = "tcp sport 8080 tcp flags syn,ack tcp option maxseg size set 1200"
    sh("nft", f"add rule ip hc filt {clamp}", ns=NS["fw"])
    pts = capture(path, "ttl", ["curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{VIP}/big"])
    v = correlate(pts)
    counted = sh("nft", "list chain ip hc filt", ns=NS["fw"]).stdout
    n = int(counted.split("ip ttl set 3 counter packets ")[1].split()[0])
    got = {(p.field, p.label) for p in v.patterns}
    assert got == {("ip.ttl", None), ("tcp.mss", "MSS clamping")}, v.patterns
    (ttl,) = [p for p in v.patterns if p.field == "ip.ttl"]
    assert (ttl.before, ttl.after, ttl.between, ttl.policy) == (
        64,
        3,
        ("fw:eth0", "fw:eth1"),
        False,
    )
    if not any(p.kernel_drops for p in v.points):
        assert ttl.packets == n, counted


def test_requests_the_servers_own_firewall_drops(path: Path) -> None:
    """srv's input chain drops every other request segment: the first copy of each
    request, seen on srv:eth0, never acknowledged, sent again by the client 0.2 s later
    and taken. Each is a drop by srv at srv:eth0, exactly as many as the rule counted,
    and nothing else ('OK: delivered both ways' was said of them)."""
    sh("nft", "add table inet hcs", ns=NS["srv"])
    sh("nft", "add chain inet hcs inp { type filter hook input priority 0; }", ns=NS["srv"])
    rule = "tcp dport 8080 ip length > 60 numgen inc mod 2 == 0 counter drop"
    sh("nft", f"add rule inet hcs inp {rule}", ns=NS["srv"])
    get = " ".join(f"curl -s -m 5 -o /dev/null http://{VIP}/;" for _ in range(3))
    pts = capture(path, "srvdrop", ["sh", "-c", get])
    v = correlate(pts)
    listing = sh("nft", "list chain inet hcs inp", ns=NS["srv"]).stdout
    n = int(listing.split("counter packets ")[1].split()[0])
    assert n == 3, listing
    if any(p.kernel_drops for p in v.points):
        return  # tcpdump dropped packets on a loaded machine: gaps are the right answer
    assert len(v.flows) == 3
    for fl in v.flows:
        got = [(f.kind, f.direction, f.between, f.packets) for f in fl.findings]
        assert got == [("drop", "c2s", ("srv:eth0", "srv"), 1)], fl.findings
        assert fl.summary == "data dropped by srv itself (seen on srv:eth0, never on srv)"


def test_segments_a_capture_lost_are_no_drop(path: Path) -> None:
    """A real download, then every fifth of the server's data packets cut out of the
    client's pcap (what a tcpdump with a tiny buffer loses under load; a pcap keeps no
    count of it): the client acknowledged them and the server never sent them again, so
    they are a gap at client:eth0, not drops between fw:eth0 and client:eth0."""
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap, wrpcap

    pts = capture(path, "lossy", ["curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{VIP}/big"])
    if any(p.kernel_drops for p in pts):
        return  # tcpdump dropped packets on a loaded machine: not the loss made here
    frames = rdpcap(str(pts[0].pcap))
    data = [
        i for i, f in enumerate(frames) if TCP in f and f[TCP].sport == 80 and len(f[TCP].payload)
    ]
    cut = set(data[1:-1:5])
    wrpcap(str(pts[0].pcap), [f for i, f in enumerate(frames) if i not in cut])
    v = correlate([dataclasses.replace(pts[0], kernel_drops=None), *pts[1:]])
    (fl,) = v.flows
    assert not [f for f in fl.findings if f.kind != "gap"], fl.findings
    gaps = [f for f in fl.findings if f.between == ("fw:eth0", "client:eth0")]
    assert sum(f.packets for f in gaps) == len(cut), fl.findings
    assert "the receiver acknowledged them and they were never sent again" in gaps[0].what


def test_clean_curl_through_nat_and_haproxy(path: Path) -> None:
    if not shutil.which("haproxy"):
        pytest.fail("needs haproxy")
    # haproxy in srv on :8080 (option forwardfor) -> python http.server on 127.0.0.1:8081
    cfg = path / "haproxy.cfg"
    cfg.write_text(
        "global\n  maxconn 100\n"
        "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n  timeout server 5s\n"
        "frontend fe\n  bind 198.18.101.2:8081\n  option forwardfor\n  default_backend be\n"
        "backend be\n  server s1 127.0.0.1:8082\n"
    )
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", NS["srv"], "python3", "-m", "http.server", "8082",
             "--bind", "127.0.0.1", "--directory", str(path / "www")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            ["ip", "netns", "exec", NS["srv"], "haproxy", "-db", "-f", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]  # fmt: skip
    try:
        sh("nft", "add", "rule", "ip", "hc", "pre", "ip", "daddr", VIP, "tcp", "dport", "81",
           "dnat", "to", "198.18.101.2:8081", ns=NS["fw"])  # fmt: skip
        for _ in range(50):
            out = sh("ss", "-ltn", ns=NS["srv"]).stdout
            if ":8081" in out and ":8082" in out:
                break
            time.sleep(0.1)
        points = [*POINTS, ("srv:lo", "srv", "lo")]
        pts = capture(path, "px", ["curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{VIP}:81/big"],
                      points=points)  # fmt: skip
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(timeout=5)
    v = correlate(pts)
    bad = [f for fl in v.flows for f in fl.findings if f.kind in ("drop", "inject", "rewrite")]
    assert bad == []
    front = next(fl for fl in v.flows if fl.server == f"{VIP}:81")
    # tcpdump itself may drop packets on a loaded machine: then gaps, never a false drop
    assert not front.broken
    if any(p.kernel_drops for p in v.points):
        return
    assert [leg.link for leg in front.legs] == ["same", "same", "nat", "same", "proxied"]
    details = front.legs[4].details
    assert "c2s inserted: x-forwarded-for: 198.18.101.1" in details, details
    assert not any("other" in d or "removed" in d for d in details), details
    assert front.summary.startswith("OK")


_ROUNDS_SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("198.18.101.2", 9090)); s.listen(8)
while True:
    c, _ = s.accept()
    while True:
        got = c.recv(4096)
        if not got:
            break
        c.sendall(b"r" * 3000)
    c.close()
"""
_ROUNDS_CLIENT = """
import socket, sys, time
c = socket.create_connection(("198.18.101.2", 9090))
for _ in range(int(sys.argv[1])):
    c.sendall(b"q" * 100)
    n = 0
    while n < 3000:
        n += len(c.recv(4096))
    time.sleep(0.1)
c.close()
"""


def test_two_captures_begun_by_hand_mid_connection(path: Path) -> None:
    """A connection carrying a request and its answer every 0.1 s (a DB pool's) through
    fw's masquerade; `tcpdump -w` begun by hand on the client's host (a) 1 s into it and
    on the server's (b) 0.3 s later, no start time given, and a new connection opened
    after both: what a saw of the first before b's capture began was read as drops (the
    client's packets) and injections (the server's); they are gaps at b, and the new
    connection is clean."""
    srv = subprocess.Popen(["ip", "netns", "exec", NS["srv"], "python3", "-c", _ROUNDS_SERVER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    dumps: list[Dump] = []
    run = ["ip", "netns", "exec", NS["cli"], "python3", "-c", _ROUNDS_CLIENT]
    long: subprocess.Popen[bytes] | None = None
    try:
        for _ in range(50):
            if ":9090" in sh("ss", "-ltn", ns=NS["srv"]).stdout:
                break
            time.sleep(0.1)
        long = subprocess.Popen([*run, "30"], stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        dumps.append(start_dump(path / "mid-a.pcap", "a", "cli", "c0"))
        time.sleep(0.3)
        dumps.append(start_dump(path / "mid-b.pcap", "b", "srv", "s0"))
        subprocess.run([*run, "5"], timeout=30, check=True)
        long.wait(timeout=30)
        time.sleep(0.3)
    finally:
        for pr in (long, srv):
            if pr is not None and pr.poll() is None:
                pr.kill()
                pr.wait(timeout=5)
        pts = stop_dumps(dumps)
    v = correlate(pts)
    assert len(v.flows) == 2, [fl.summary for fl in v.flows]
    every = [f for fl in v.flows for f in fl.findings]
    assert not [f for f in every if f.kind != "gap"], [(f.kind, f.what) for f in every]
    if any(p.kernel_drops for p in pts):
        return  # tcpdump dropped packets on a loaded machine: gaps, never a false drop
    assert every and all("the capture at b started after these packets" in f.what
                         for f in every), [f.what for f in every]  # fmt: skip
    assert [fl.legs[1].link for fl in v.flows] == ["nat", "nat"]
