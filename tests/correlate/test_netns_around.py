"""Connections around a captured firewall, on real captures: an active-active pair fw and
fw2 (each DNAT of the VIP + masquerade with random ports, real nftables) between two L2
segments (Linux bridges); the client's policy routing (`ip rule` on the source port)
sends some connections through fw2, the others through fw. tcpdump runs on the client,
on both of fw's interfaces and on the server, as a user who captured one member of the
pair would: the connections through fw2 are seen at the client and the server, never at
fw, whose captures lose nothing. Each is one flow that went around fw, not a connection
"answered before fw:eth0" and another "local to srv". And the same pair routing only,
the server's answers to some client ports through fw2 (asymmetric routing): their
answers went around fw, not "dropped" after srv and a gap at the client."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_lb_reuse_netns import sh, wait_listening

from hopcap.correlate import correlate
from hopcap.model import PointInput
from hopcap.patterns import split_patterns, triage
from tests import labnames

pytestmark = pytest.mark.lab

P = f"{labnames.prefix('hca')}p{os.getpid() % 10000}"  # namespace prefix, unique per run
HOSTS = ("cli", "bra", "fw", "fw2", "brb", "srv")
NS = {h: f"{P}-{h}" for h in HOSTS}
VIP = "203.0.113.80"
CLI, FW_OUT, FW2_OUT = "198.18.110.10", "198.18.110.1", "198.18.110.2"
FW_IN, FW2_IN, SRV = "198.18.111.1", "198.18.111.3", "198.18.111.2"
AROUND_PORTS = (41000, 41999)  # the client's source ports routed through fw2


def _veth(a: str, dev_a: str, b: str, dev_b: str) -> None:
    sh("ip", "link", "add", dev_a, "netns", NS[a], "type", "veth", "peer", dev_b, "netns", NS[b])


def _firewall(tmp: Path, host: str, inside: str) -> None:
    """The pair's ruleset (the same on both members): DNAT of the VIP to the server,
    masquerade with random ports on the inside."""
    rules = tmp / f"{host}.nft"
    rules.write_text(
        "table ip hca {\n"
        "  chain pre {\n    type nat hook prerouting priority -100;\n"
        f"    ip daddr {VIP} tcp dport 80 dnat to {SRV}:8080\n  }}\n"
        "  chain post {\n    type nat hook postrouting priority 100;\n"
        f'    oifname "{inside}" masquerade random\n  }}\n'
        "}\n"
    )
    sh("nft", "-f", str(rules), ns=NS[host])
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS[host])


@pytest.fixture(params=["nat"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """The pair, doing NAT ("nat": the client's policy routing sends AROUND_PORTS through
    fw2) or only routing ("routed": every request through fw, srv's policy routing sends
    its answers to AROUND_PORTS through fw2: asymmetric routing)."""
    nat = request.param == "nat"
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "tcpdump", "curl")):
        pytest.fail("needs root, ip, nft, tcpdump and curl")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in NS.values():
            sh("ip", "netns", "add", n)
            sh("ip", "link", "set", "lo", "up", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", ns=n)
        # outside segment: client, fw, fw2 on bridge bra; inside: fw, fw2, srv on brb
        _veth("cli", "eth0", "bra", "p-cli")
        _veth("fw", "eth0", "bra", "p-fw")
        _veth("fw2", "eth0", "bra", "p-fw2")
        _veth("fw", "eth1", "brb", "p-fw")
        _veth("fw2", "eth1", "brb", "p-fw2")
        _veth("srv", "eth0", "brb", "p-srv")
        for br in ("bra", "brb"):
            sh("ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay",
               "0", ns=NS[br])  # fmt: skip
            for dev in ("p-cli", "p-fw", "p-fw2", "p-srv"):
                if sh("ip", "link", "show", dev, ns=NS[br], check=False).returncode == 0:
                    sh("ip", "link", "set", dev, "master", "br0", "up", ns=NS[br])
            sh("ip", "link", "set", "br0", "up", ns=NS[br])
        for host, dev, addr in (
            ("cli", "eth0", CLI), ("fw", "eth0", FW_OUT), ("fw", "eth1", FW_IN),
            ("fw2", "eth0", FW2_OUT), ("fw2", "eth1", FW2_IN), ("srv", "eth0", SRV),
        ):  # fmt: skip
            sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=NS[host])
            sh("ip", "link", "set", dev, "up", ns=NS[host])
        lo, hi = AROUND_PORTS
        sh("ip", "route", "add", "default", "via", FW_OUT, ns=NS["cli"])
        if nat:
            _firewall(tmp_path, "fw", "eth1")
            _firewall(tmp_path, "fw2", "eth1")
            # the client's policy routing: its source ports AROUND_PORTS through fw2
            sh("ip", "route", "add", "default", "via", FW2_OUT, "table", "100", ns=NS["cli"])
            sh("ip", "rule", "add", "ipproto", "tcp", "sport", f"{lo}-{hi}", "table", "100",
               "pref", "100", ns=NS["cli"])  # fmt: skip
        else:
            for host in ("fw", "fw2"):
                sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=NS[host])
            # srv's policy routing: its answers to AROUND_PORTS through fw2
            sh("ip", "route", "add", "default", "via", FW_IN, ns=NS["srv"])
            sh("ip", "route", "add", "default", "via", FW2_IN, "table", "100", ns=NS["srv"])
            sh("ip", "rule", "add", "ipproto", "tcp", "dport", f"{lo}-{hi}", "table", "100",
               "pref", "100", ns=NS["srv"])  # fmt: skip
        www = tmp_path / "www"
        www.mkdir()
        (www / "page").write_bytes(os.urandom(20_000))
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", NS["srv"], "python3", "-m", "http.server", "8080",
                 "--bind", SRV, "--directory", str(www)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_listening(NS["srv"], 8080)
        yield tmp_path
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(timeout=5)
        for n in NS.values():
            sh("ip", "netns", "del", n, check=False)


POINTS = [("client:eth0", "cli", "eth0"), ("fw:eth0", "fw", "eth0"), ("fw:eth1", "fw", "eth1"),
          ("srv:eth0", "srv", "eth0")]  # fmt: skip


def _capture(tmp: Path, ports: list[int], url: str = f"http://{VIP}/page") -> list[PointInput]:
    """Every point's capture while the client fetches /page once from each source port of
    `ports`, one after the other; each point with its kernel drops and when it listened."""
    dumps = []
    for name, host, dev in POINTS:
        f = tmp / f"{name.replace(':', '_')}.pcap"
        pr = subprocess.Popen(
            ["ip", "netns", "exec", NS[host], "tcpdump", "-i", dev, "-n", "--immediate-mode",
             "-U", "-w", str(f), "tcp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert pr.stderr is not None
        first = pr.stderr.readline().decode()  # "listening on ...": ready to capture
        assert "listening" in first, first
        dumps.append((name, f, pr, time.time()))
    time.sleep(0.2)
    for port in ports:
        r = sh("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
               "--local-port", str(port), url, ns=NS["cli"], check=False)  # fmt: skip
        assert r.stdout == "200", (port, r.stdout, r.stderr)
    time.sleep(0.5)
    out = []
    for name, f, pr, start in dumps:
        stop = time.time()
        pr.send_signal(signal.SIGINT)
        _, err = pr.communicate(timeout=10)
        drops = 0
        for line in err.decode().splitlines():
            if "dropped by kernel" in line:
                drops = int(line.split()[0])
        out.append(PointInput(name=name, pcap=f, kernel_drops=drops, start_ts=start,
                              stop_ts=stop))  # fmt: skip
    return out


@pytest.mark.parametrize("pair", ["routed"], indirect=True)
def test_answers_through_the_other_member_are_asymmetric_routing(pair: Path) -> None:
    # every request through fw, the answers to four of them through fw2. Before: on each of
    # those "SYN-ACK dropped between srv:eth0 and fw:eth1" and a gap at the client
    ports = [40100 + i for i in range(6)]
    around = [41100 + i for i in range(4)]
    order = [p for pair_ in zip(ports, [*around, 0, 0], strict=True) for p in pair_ if p]
    pts = _capture(pair, order, f"http://{SRV}:8080/page")
    v = correlate(pts)
    by_port = {int(fl.client.rpartition(":")[2]): fl for fl in v.flows}
    assert sorted(by_port) == sorted(order), [fl.summary for fl in v.flows]
    if any(p.kernel_drops for p in v.points):
        pytest.skip("tcpdump dropped packets on a loaded machine: not this case")
    for port in order:
        fl = by_port[port]
        assert [leg.point for leg in fl.legs] == [n for n, _h, _d in POINTS]
        if port in ports:
            assert not fl.findings, fl.findings
            continue
        (f,) = fl.findings
        assert (f.kind, f.direction, f.between) == ("around", "s2c", ("srv:eth0", "client:eth0"))
        assert f.around == ("fw:eth0", "fw:eth1")
        assert "answers (s2c) went around fw (fw:eth0, fw:eth1)" in fl.summary
    problems, around_p, _policy = split_patterns(v.patterns)
    assert not problems, [p.text for p in problems]
    (p,) = around_p
    assert "on 4 of 10 flows (4 answers (s2c) only; " in p.text, p.text


def test_connections_through_the_other_member_went_around_fw(pair: Path) -> None:
    ports = [40100 + i for i in range(6)]
    around = [41100 + i for i in range(4)]
    order = [p for pair_ in zip(ports, [*around, 0, 0], strict=True) for p in pair_ if p]
    pts = _capture(pair, order)
    # (the policy routing did its part: fw saw none of the connections through fw2)
    v = correlate(pts)
    by_port = {int(fl.client.rpartition(":")[2]): fl for fl in v.flows}
    assert sorted(by_port) == sorted(order), [fl.summary for fl in v.flows]
    if any(p.kernel_drops for p in v.points):
        pytest.skip("tcpdump dropped packets on a loaded machine: not this case")
    for port in ports:
        fl = by_port[port]
        assert [leg.point for leg in fl.legs] == [n for n, _h, _d in POINTS]
        assert not fl.findings, fl.findings
    for port in around:
        fl = by_port[port]
        assert [leg.point for leg in fl.legs] == ["client:eth0", "srv:eth0"], fl.summary
        assert fl.legs[1].link == "nat" and fl.legs[1].tuple.startswith(f"{FW2_IN}:")
        assert {(f.kind, f.direction) for f in fl.findings} == {("around", "c2s"),
                                                               ("around", "s2c")}  # fmt: skip
        assert all(f.around == ("fw:eth0", "fw:eth1") for f in fl.findings)
        assert "went around fw (fw:eth0, fw:eth1): never seen there" in fl.summary
    problems, around_p, _policy = split_patterns(v.patterns)
    assert not problems, [p.text for p in problems]
    (p,) = around_p
    assert p.text.startswith(
        "went around fw (fw:eth0, fw:eth1) on 4 of 10 flows (4 both directions; "
    ), p.text
    t = triage(v)
    assert not t.alarms and len(t.around) == 4 and len(t.healthy) == 6
