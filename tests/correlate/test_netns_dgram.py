"""correlate() on real captures of UDP and ICMP: namespaces with real kernels, nftables and
tcpdump on every interface.

- UDP through a firewall's DNAT + masquerade (random ports): DNS-like queries and answers,
  then one kind of query dropped by an nftables rule inside fw.
- Pings to the server, some of which its own firewall drops: exactly those unanswered;
  the same to fw's own address.
- A path-MTU black hole: client - rt - fw - srv, rt's link toward the client carries at
  most 1,400 bytes, fw drops ICMP "fragmentation needed" on its way back to the server,
  and a download stalls.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopcap.correlate import correlate
from hopcap.model import PointInput
from tests.labnames import prefix

pytestmark = pytest.mark.lab

P = f"{prefix('hcd')}-{os.getpid() % 10000}"  # namespace prefix, unique per run and checkout
VIP = "203.0.113.53"


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def need_root() -> None:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "tcpdump", "curl")):
        pytest.fail("needs root, ip, nft, tcpdump and curl")


def build(names: list[str], links: list[tuple[str, str, str, str, str, str]]) -> dict[str, str]:
    """Namespaces `names` (prefixed) and veth links (ns_a, dev_a, addr_a, ns_b, dev_b,
    addr_b); returns name -> namespace."""
    ns = {n: f"{P}-{n}" for n in names}
    for n in ns.values():
        sh("ip", "netns", "add", n)
        sh("ip", "link", "set", "lo", "up", ns=n)
    for a, da, xa, b, db, xb in links:
        sh("ip", "link", "add", da, "netns", ns[a], "type", "veth", "peer", db, "netns", ns[b])
        for n, d, x in ((a, da, xa), (b, db, xb)):
            sh("ip", "addr", "add", x, "dev", d, ns=ns[n])
            sh("ip", "link", "set", d, "up", ns=ns[n])
    return ns


def teardown(ns: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> None:
    for pr in procs:
        pr.terminate()
        try:
            pr.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pr.kill()
    for n in ns.values():
        sh("ip", "netns", "del", n, check=False)


def capture(
    tmp: Path, tag: str, ns: dict[str, str], points: list[tuple[str, str, str]], action: list[str]
) -> list[PointInput]:
    dumps = []
    for name, n, dev in points:
        f = tmp / f"{tag}-{name.replace(':', '_')}.pcap"
        pr = subprocess.Popen(
            ["ip", "netns", "exec", ns[n], "tcpdump", "-i", dev, "-n", "--immediate-mode", "-U",
             "-B", "8192", "-w", str(f), "tcp or udp or icmp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert pr.stderr is not None
        first = pr.stderr.readline().decode()
        assert "listening" in first, first
        dumps.append((name, f, pr))
    time.sleep(0.2)
    subprocess.run(["ip", "netns", "exec", ns["cli"], *action], capture_output=True, timeout=30)
    time.sleep(0.5)
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


# --------------------------------------------------------------------------- UDP via DNAT

DNS_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    q, a = s.recvfrom(2048)
    # an answer: the query with the QR bit, one A record
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + b"\x00\x01\x00\x00\x00\x00" + q[12:]
             + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x07", a)
"""

DNS_CLIENT = r"""
import socket, struct, sys
for i, name in enumerate(sys.argv[2:]):
    q = struct.pack(">HHHHHH", 0x4000 + i, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\x00\x00\x01\x00\x01"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a new source port per query
    s.settimeout(0.5)
    s.sendto(q, (sys.argv[1], 53))
    try:
        s.recvfrom(2048)
    except OSError:
        pass
    s.close()
"""

NAMES = ["a.example.test", "bb.example.test", "ccc.example.test", "dropped-by-fw.example.test",
         "eeee.example.test"]  # fmt: skip


@pytest.fixture
def udp_path(tmp_path: Path) -> Iterator[dict[str, str]]:
    need_root()
    ns: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ns = build(["cli", "fw", "srv"], [
            ("cli", "c0", "198.18.120.2/30", "fw", "f0", "198.18.120.1/30"),
            ("fw", "f1", "198.18.121.1/30", "srv", "s0", "198.18.121.2/30"),
        ])  # fmt: skip
        sh("ip", "route", "add", "default", "via", "198.18.120.1", ns=ns["cli"])
        sh("ip", "route", "add", "default", "via", "198.18.121.1", ns=ns["srv"])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns["fw"])
        rules = tmp_path / "fw.nft"
        rules.write_text(
            "table ip hc {\n"
            "  chain pre {\n    type nat hook prerouting priority -100;\n"
            f"    ip daddr {VIP} udp dport 53 dnat to 198.18.121.2:5353\n  }}\n"
            "  chain post {\n    type nat hook postrouting priority 100;\n"
            '    oifname "f1" masquerade random\n  }\n'
            "  chain filt {\n    type filter hook forward priority 0;\n  }\n"
            "}\n"
        )
        sh("nft", "-f", str(rules), ns=ns["fw"])
        srv = tmp_path / "dns_server.py"
        srv.write_text(DNS_SERVER)
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns["srv"], sys.executable, str(srv), "198.18.121.2",
                 "5353"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        for _ in range(50):
            if ":5353" in sh("ss", "-lun", ns=ns["srv"]).stdout:
                break
            time.sleep(0.1)
        (tmp_path / "dns_client.py").write_text(DNS_CLIENT)
        yield ns
    finally:
        teardown(ns, procs)


UDP_POINTS = [("client:eth0", "cli", "c0"), ("fw:eth0", "fw", "f0"), ("fw:eth1", "fw", "f1"),
              ("srv:eth0", "srv", "s0")]  # fmt: skip


def test_udp_through_dnat_then_dropped_inside_fw(udp_path: dict[str, str], tmp_path: Path) -> None:
    ns = udp_path
    ask = [sys.executable, str(tmp_path / "dns_client.py"), VIP, *NAMES]
    v = correlate(capture(tmp_path, "ok", ns, UDP_POINTS, ask))
    flows = [fl for fl in v.flows if fl.proto == "udp"]
    assert len(flows) == len(NAMES), [(fl.client, fl.summary) for fl in flows]
    assert not any(f.kind in ("drop", "inject", "rewrite") for fl in v.flows for f in fl.findings)
    if not any(p.kernel_drops for p in v.points):
        for fl in flows:
            assert [leg.link for leg in fl.legs] == ["same", "same", "nat", "same"], fl
            assert fl.server == f"{VIP}:53" and fl.legs[3].tuple.endswith("198.18.121.2:5353")
            assert fl.summary.startswith("OK: delivered both ways"), fl.summary
    # one query (the only one this long) dropped by a rule inside fw, after DNAT
    qlen = 12 + len(NAMES[3]) + 2 + 4
    rule = ["udp", "length", str(qlen + 8), "drop"]
    sh("nft", "add", "rule", "ip", "hc", "filt", *rule, ns=ns["fw"])
    v = correlate(capture(tmp_path, "drop", ns, UDP_POINTS, ask))
    bad = [fl for fl in v.flows if fl.broken]
    assert len(bad) == 1, [(fl.client, fl.summary) for fl in v.flows]
    (fl,) = bad
    drops = [f for f in fl.findings if f.kind == "drop"]
    assert [(f.direction, f.between) for f in drops] == [("c2s", ("fw:eth0", "fw:eth1"))]
    assert "DNS query 0x4003 A dropped-by-fw.example.test" in drops[0].what
    assert fl.summary == "DNS query dropped inside fw (seen on fw:eth0, never on fw:eth1)"
    assert not any(f.kind in ("drop", "inject", "rewrite") for o in v.flows if o is not fl
                   for f in o.findings)  # fmt: skip


PINGER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for i in range(int(sys.argv[2])):
    p = struct.pack("!BBHHH", 8, 0, 0, 0x4242, i) + bytes(range(56))
    t = sum(struct.unpack("!%dH" % (len(p) // 2), p))
    t = (t >> 16) + (t & 0xFFFF)
    p = p[:2] + struct.pack("!H", ~(t + (t >> 16)) & 0xFFFF) + p[4:]
    s.sendto(p, (sys.argv[1], 0))
    time.sleep(1.2 if i == int(sys.argv[2]) - 2 else 0.05)  # the last: a second later
"""


def test_pings_some_of_which_the_servers_firewall_drops(
    udp_path: dict[str, str], tmp_path: Path
) -> None:
    """srv's own input chain drops every third echo request it gets (they reach srv:eth0,
    no reply is made): exactly those, unanswered by srv, nothing else ('OK: delivered both
    ways' was said)."""
    ns = udp_path
    sh("nft", "add table inet hcp", ns=ns["srv"])
    sh("nft", "add chain inet hcp inp { type filter hook input priority 0; }", ns=ns["srv"])
    rule = "icmp type echo-request numgen inc mod 3 == 0 counter drop"
    sh("nft", f"add rule inet hcp inp {rule}", ns=ns["srv"])
    (tmp_path / "pinger.py").write_text(PINGER)
    ping = [sys.executable, str(tmp_path / "pinger.py"), "198.18.121.2", "12"]
    v = correlate(capture(tmp_path, "ping", ns, UDP_POINTS, ping))
    listing = sh("nft", "list chain inet hcp inp", ns=ns["srv"]).stdout
    dropped = int(listing.split("counter packets ")[1].split()[0])
    assert dropped == 4, listing  # requests 1, 4, 7, 10 of 12 (numgen counts from 0)
    (fl,) = [fl for fl in v.flows if fl.proto == "icmp"]
    assert [(f.kind, f.direction, f.between, f.packets) for f in fl.findings] == [
        ("drop", "c2s", ("srv:eth0", "srv"), dropped)
    ], fl.findings
    assert "never answered by srv (others of the flow were answered)" in fl.findings[0].what
    assert fl.summary == "echo request reached srv:eth0 but srv never answered it"
    # the same at fw's own address (beyond it, fw:eth1 and srv:eth0 see no ICMP): fw's
    # own input chain, not trimmed as what the flow lost beyond fw
    sh("nft", "add table inet hcp", ns=ns["fw"])
    sh("nft", "add chain inet hcp inp { type filter hook input priority 0; }", ns=ns["fw"])
    sh("nft", f"add rule inet hcp inp {rule}", ns=ns["fw"])
    ping[2] = "198.18.121.1"
    got = capture(tmp_path, "ping-fw", ns, UDP_POINTS, ping)
    v = correlate(got, hosts={"fw": ["198.18.120.1", "198.18.121.1"]})
    listing = sh("nft", "list chain inet hcp inp", ns=ns["fw"]).stdout
    assert int(listing.split("counter packets ")[1].split()[0]) == 4, listing
    (fl,) = [fl for fl in v.flows if fl.proto == "icmp"]
    assert [(f.kind, f.direction, f.between, f.packets) for f in fl.findings] == [
        ("drop", "c2s", ("fw:eth0", "fw"), 4)
    ], fl.findings
    assert fl.summary == "echo request reached fw:eth0 but fw never answered it"


# --------------------------------------------------------------------------- PMTU black hole


@pytest.fixture
def pmtu_path(tmp_path: Path) -> Iterator[dict[str, str]]:
    need_root()
    ns: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ns = build(["cli", "rt", "fw", "srv"], [
            ("cli", "c0", "198.18.130.2/30", "rt", "r0", "198.18.130.1/30"),
            ("rt", "r1", "198.18.131.1/30", "fw", "f0", "198.18.131.2/30"),
            ("fw", "f1", "198.18.132.1/30", "srv", "s0", "198.18.132.2/30"),
        ])  # fmt: skip
        # rt can send at most 1,400 bytes toward the client (whose own MTU says 1,500, so
        # it advertises an MSS of 1,460): the server's full-size segments cannot pass rt
        sh("ip", "link", "set", "r0", "mtu", "1400", ns=ns["rt"])
        sh("ip", "route", "add", "default", "via", "198.18.130.1", ns=ns["cli"])
        sh("ip", "route", "add", "198.18.132.0/30", "via", "198.18.131.2", ns=ns["rt"])
        sh("ip", "route", "add", "default", "via", "198.18.131.1", ns=ns["fw"])
        sh("ip", "route", "add", "default", "via", "198.18.132.1", ns=ns["srv"])
        for n in ("rt", "fw"):
            sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns[n])
        sh("sysctl", "-qw", "net.ipv4.tcp_mtu_probing=0", ns=ns["srv"])
        # fw drops the "fragmentation needed" that rt sends back to the server
        rules = tmp_path / "fw.nft"
        rules.write_text(
            "table ip hc {\n  chain filt {\n    type filter hook forward priority 0;\n"
            "    icmp type destination-unreachable icmp code frag-needed drop\n  }\n}\n"
        )
        sh("nft", "-f", str(rules), ns=ns["fw"])
        www = tmp_path / "www"
        www.mkdir()
        (www / "big").write_bytes(os.urandom(100_000))
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns["srv"], sys.executable, "-m", "http.server", "8080",
                 "--bind", "198.18.132.2", "--directory", str(www)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        for _ in range(50):
            if ":8080" in sh("ss", "-ltn", ns=ns["srv"]).stdout:
                break
            time.sleep(0.1)
        yield ns
    finally:
        teardown(ns, procs)


def test_pmtu_black_hole(pmtu_path: dict[str, str], tmp_path: Path) -> None:
    points = [("client:eth0", "cli", "c0"), ("rt:eth0", "rt", "r0"), ("rt:eth1", "rt", "r1"),
              ("fw:eth0", "fw", "f0"), ("fw:eth1", "fw", "f1"),
              ("srv:eth0", "srv", "s0")]  # fmt: skip
    get = ["curl", "-s", "-m", "3", "-o", "/dev/null", "http://198.18.132.2:8080/big"]
    v = correlate(capture(tmp_path, "pmtu", pmtu_path, points, get))
    tcp = [fl for fl in v.flows if fl.proto == "tcp"]
    assert len(tcp) == 1, [(fl.client, fl.summary) for fl in v.flows]
    (fl,) = tcp
    if any(p.kernel_drops for p in v.points):
        # tcpdump itself lost packets on a loaded machine: gaps, never a false finding
        assert not any(f.kind in ("inject", "rewrite") for f in fl.findings), fl.findings
        return
    assert fl.summary.startswith(
        "path-MTU black hole: segments over 1400 bytes dropped inside rt; ICMP frag-needed from "
        "rt never reached srv (last seen at fw:eth0, not at fw:eth1)"
    ), (fl.summary, fl.findings)
    icmp = [f for f in fl.findings if f.kind == "icmp"]
    assert icmp and icmp[0].between == ("rt", "fw:eth0") and icmp[0].direction == "c2s"
    assert "fragmentation needed (next-hop MTU 1400) from 198.18.131.1" in icmp[0].what
    seg = [f for f in fl.findings if f.kind == "drop" and f.direction == "s2c"]
    assert seg and seg[0].between == ("rt:eth1", "rt:eth0")


# --------------------------------------------------------------------------- a VPN (tun)

# A userspace VPN in the style of OpenVPN: a tun device inside, UDP outside; every packet
# is "encrypted" (XOR, an 8-byte nonce in front, a 16-byte tag behind: sizes like the real
# thing; the kernel has no WireGuard module here). The gateway's endpoint can be told to
# lose the first N decrypted packets of one length: a drop inside the tunnel endpoint.
VPN = r"""
import fcntl, os, select, socket, struct, sys
name, local, peer, drop_len, drop_n = sys.argv[1:6]
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name.encode(), 0x0001 | 0x1000))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local, 51820))
key = bytes(range(256)) * 8
dropped = 0
print("ready", flush=True)
while True:
    r, _, _ = select.select([fd, s], [], [])
    if fd in r:
        p = os.read(fd, 4096)
        n = len(p)
        c = (int.from_bytes(p, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")
        s.sendto(os.urandom(8) + c + os.urandom(16), (peer, 51820))
    if s in r:
        d, _ = s.recvfrom(4096)
        c = d[8:-16]
        n = len(c)
        p = (int.from_bytes(c, "big") ^ int.from_bytes(key[:n], "big")).to_bytes(n, "big")
        if n == int(drop_len) and dropped < int(drop_n):
            dropped += 1
            continue
        os.write(fd, p)
"""

SINK = r"""
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], 8080))
ls.listen(4)
while True:
    c, _ = ls.accept()
    got = 0
    while got < 5000:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    c.sendall(b"ok")
    c.close()
"""

SEND = r"""
import socket, time
c = socket.create_connection(("198.18.151.2", 8080), timeout=5)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(5):
    c.sendall(bytes([65 + i]) * 1000)
    time.sleep(0.05)
c.recv(16)
c.close()
"""


@pytest.fixture
def vpn_path(tmp_path: Path) -> Iterator[dict[str, str]]:
    need_root()
    if not Path("/dev/net/tun").exists():
        pytest.fail("needs /dev/net/tun")
    ns: dict[str, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ns = build(["cli", "gw", "srv"], [
            ("cli", "c0", "198.18.150.2/30", "gw", "g0", "198.18.150.1/30"),
            ("gw", "g1", "198.18.151.1/30", "srv", "s0", "198.18.151.2/30"),
        ])  # fmt: skip
        vpn = tmp_path / "vpn.py"
        vpn.write_text(VPN)
        # inner packets of 1,052 bytes: a 1,000-byte segment with TCP timestamps
        for n, local, peer, addr, drop in (
            ("cli", "198.18.150.2", "198.18.150.1", "198.18.152.2/30", "0"),
            ("gw", "198.18.150.1", "198.18.150.2", "198.18.152.1/30", "2"),
        ):
            pr = subprocess.Popen(
                ["ip", "netns", "exec", ns[n], sys.executable, str(vpn), "tun0", local, peer,
                 "1052", drop],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(pr)
            assert pr.stdout is not None and pr.stdout.readline().strip() == b"ready"
            sh("ip", "addr", "add", addr, "dev", "tun0", ns=ns[n])
            sh("ip", "link", "set", "tun0", "mtu", "1400", "up", ns=ns[n])
        sh("ip", "route", "add", "198.18.151.0/30", "dev", "tun0", ns=ns["cli"])
        sh("ip", "route", "add", "default", "via", "198.18.151.1", ns=ns["srv"])
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns["gw"])
        sink = tmp_path / "sink.py"
        sink.write_text(SINK)
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", ns["srv"], sys.executable, str(sink), "198.18.151.2"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        for _ in range(50):
            if ":8080" in sh("ss", "-ltn", ns=ns["srv"]).stdout:
                break
            time.sleep(0.1)
        (tmp_path / "send.py").write_text(SEND)
        yield ns
    finally:
        teardown(ns, procs)


def test_vpn_drop_inside_the_tunnel_endpoint(vpn_path: dict[str, str], tmp_path: Path) -> None:
    points = [("client:tun0", "cli", "tun0"), ("client:eth0", "cli", "c0"),
              ("gw:eth0", "gw", "g0"), ("gw:tun0", "gw", "tun0"), ("gw:eth1", "gw", "g1"),
              ("srv:eth0", "srv", "s0")]  # fmt: skip
    send = [sys.executable, str(tmp_path / "send.py")]
    v = correlate(capture(tmp_path, "vpn", vpn_path, points, send))
    outer = [fl for fl in v.flows if fl.proto == "udp"]
    assert len(outer) == 1, [(fl.client, fl.summary) for fl in v.flows]
    (ofl,) = outer
    assert [(leg.point, leg.tunnel) for leg in ofl.legs] == [
        ("client:eth0", "encrypted udp"),
        ("gw:eth0", "encrypted udp"),
    ]
    drops = [f for f in ofl.findings if f.kind == "drop"]
    if any(p.kernel_drops for p in v.points):
        assert not drops or drops[0].between == ("gw:eth0", "gw:tun0")
        return
    assert [(f.direction, f.between, f.packets) for f in drops] == [
        ("c2s", ("gw:eth0", "gw:tun0"), 2)
    ], ofl.findings
    assert ofl.summary.startswith(
        "encrypted datagram arrived on gw:eth0 but the inner packet never appeared on gw:tun0: "
        "dropped inside gw (the tunnel endpoint)"
    ), ofl.summary
    # the inner connection: into the tunnel at the client, out of it at gw; one flow
    (inner,) = [fl for fl in v.flows if fl.proto == "tcp"]
    assert [(leg.point, leg.link) for leg in inner.legs] == [
        ("client:tun0", "same"), ("client:eth0", "tunnel"), ("gw:eth0", "tunnel"),
        ("gw:tun0", "same"), ("gw:eth1", "same"), ("srv:eth0", "same"),
    ]  # fmt: skip
    assert {leg.tunnel for leg in inner.legs[1:3]} == {"encrypted udp"}
    assert inner.legs[1].tuple == ofl.legs[0].tuple
    assert not any(f.kind in ("drop", "inject", "rewrite", "gap") for f in inner.findings)
    assert inner.summary == (
        "OK: delivered both ways through client:tun0 -> client:eth0 -> gw:eth0 -> gw:tun0 -> "
        "gw:eth1 -> srv:eth0 (tunnel at client:eth0, gw:eth0)"
    )
