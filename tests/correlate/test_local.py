"""correlate.local on verdicts built by hand: which traffic is a host's own (model types in,
model types out), and the addresses of a run's `ip addr` facts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hopcap.bundle.facts import (
    bundle_conntrack,
    bundle_host_addresses,
    host_addresses,
    parse_ip_addr,
    write_facts,
)
from hopcap.correlate.local import localize
from hopcap.model import Finding, Flow, HostFacts, Leg, PointSummary, Verdict

POINTS = tuple(PointSummary(n, n, "", 10) for n in ("client", "fw", "srv"))
FW_ADDR = "198.18.1.1"
VIP = "203.0.113.80"


def refused(fid: str, legs: tuple[Leg, ...]) -> Flow:
    """A SYN seen last at fw, never at srv; a RST seen at fw, never sent through srv."""
    last = legs[-1].point
    return Flow(
        fid,
        "tcp",
        legs[0].tuple.split(" > ")[0],
        legs[0].tuple.split(" > ")[1],
        legs,
        (
            Finding("drop", "c2s", (last, "srv"), 1, 0, 1.0, "SYN seq=1 ipid=54321"),
            Finding("inject", "s2c", ("srv", last), 1, 0, 1.1, "RST,ACK seq=0 ipid=0"),
        ),
        "SYN dropped between fw and srv",
        first_ts=1.0,
    )


def scanner(i: int) -> Flow:
    return refused(f"s{i}", (Leg("fw", f"192.0.2.{i}:4000{i} > {FW_ADDR}:{20 + i}", "same"),))


def test_a_scanners_syn_to_fws_own_address_is_set_apart() -> None:
    v = localize(Verdict(POINTS, (scanner(1), scanner(2))))
    assert [(h.host, h.addresses, h.source) for h in v.hosts] == [("fw", (FW_ADDR,), "inferred")]
    assert all(not f.path and f.local_to == "fw" and not f.findings for f in v.flows)
    want = f"local to fw: addressed to fw itself ({FW_ADDR}); refused with RST"
    assert v.flows[0].summary == want


def test_a_path_connection_a_device_refuses_stays_a_drop_and_an_injection() -> None:
    """Seen at the client first: the client's connection, refused at fw (nft reject with
    tcp reset). Nothing says the VIP is fw's own, so nothing is trimmed."""
    path = refused(
        "p1",
        (
            Leg("client", f"198.51.100.10:5000 > {VIP}:80", "same"),
            Leg("fw", f"198.51.100.10:5000 > {VIP}:80", "same"),
        ),
    )
    v = localize(Verdict(POINTS, (scanner(1), path)))
    p = next(f for f in v.flows if f.client == "198.51.100.10:5000")
    assert p.path and [f.kind for f in p.findings] == ["drop", "inject"]
    # the target is never a host's own, even when the VIP is on fw's interface
    v = localize(Verdict(POINTS, (path,)), {"fw": [VIP, FW_ADDR]}, f"{VIP}:80")
    p = v.flows[0]
    assert p.target and p.path and [f.kind for f in p.findings] == ["drop", "inject"]


def test_a_path_connection_to_a_hosts_own_address_is_that_hosts_reset() -> None:
    """The client's connection to a proxy on fw, refused by fw's stack: not a drop beyond
    fw nor an injection, but fw's reset."""
    path = refused(
        "p1",
        (
            Leg("client", f"198.51.100.10:5000 > {FW_ADDR}:3128", "same"),
            Leg("fw", f"198.51.100.10:5000 > {FW_ADDR}:3128", "same"),
        ),
    )
    v = localize(Verdict(POINTS, (path,)), {"fw": [FW_ADDR]})
    (f,) = v.flows[0].findings
    assert (f.kind, f.direction, f.between) == ("reset", "s2c", ("fw", "fw"))
    assert v.flows[0].path and "fw reset the connection" in v.flows[0].summary


def test_the_same_scanner_syn_to_two_hosts_is_two_connections() -> None:
    """A ZMap-like scanner sends one SYN (ISN, IP ID, no options) to fw and to srv; linked
    as one NAT'd connection it would be a TTL rewrite. Split: each is its host's own."""
    legs = (
        Leg("fw", f"192.0.2.7:40000 > {FW_ADDR}:8884", "same"),
        Leg("srv", "192.0.2.99:46358 > 198.18.2.2:49695", "nat"),
    )
    fl = Flow(
        "x1",
        "tcp",
        "192.0.2.7:40000",
        f"{FW_ADDR}:8884",
        legs,
        (
            Finding("rewrite", "c2s", ("fw", "srv"), 1, 0, 1.0, "SYN", "ip.ttl", 250, 236),
            Finding("reset", "s2c", ("srv", "srv"), 1, 0, 1.1, "srv answered with RST"),
        ),
        "ip.ttl rewritten",
    )
    v = localize(Verdict(POINTS, (fl, scanner(1), scanner(2))))
    split = [(f.legs[0].point, f.path, f.local_to, f.findings) for f in v.flows]
    assert ("fw", False, "fw", ()) in split and ("srv", False, "srv", ()) in split
    assert not any(f.findings for f in v.flows)
    assert len(v.flows) == 4


IP_D_ADDR = """\
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000
    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0 minmtu 0 maxmtu 0
    inet 127.0.0.1/8 scope host lo
       valid_lft forever preferred_lft forever
    inet6 ::1/128 scope host noprefixroute
2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default
    link/ether 5a:1c:3e:00:00:01 brd ff:ff:ff:ff:ff:ff link-netnsid 0 promiscuity 0
    veth numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535
    inet 198.18.1.1/24 scope global eth0
       valid_lft forever preferred_lft forever
    inet 203.0.113.80/32 scope global eth0
    inet6 2001:db8::1/64 scope global
    inet6 fe80::581c:3eff:fe00:1/64 scope link
"""


def test_a_runs_ip_addr_facts_give_the_hosts_addresses() -> None:
    assert parse_ip_addr(IP_D_ADDR) == [
        "127.0.0.1",
        "::1",
        "198.18.1.1",
        "203.0.113.80",
        "2001:db8::1",
        "fe80::581c:3eff:fe00:1",
    ]
    facts = [
        HostFacts("fw", before={"addr": IP_D_ADDR}, after={"addr": IP_D_ADDR}),
        HostFacts("srv", before={}, missing={"addr": "ip: not found"}),
    ]
    assert host_addresses(facts) == {"fw": parse_ip_addr(IP_D_ADDR)}


def test_a_bundles_facts_give_the_same_addresses(tmp_path: Path) -> None:
    """What `write_facts` put in a bundle reads back as the run's own host addresses."""
    facts = [
        HostFacts("fw", before={"addr": IP_D_ADDR}, after={"addr": "inet 198.51.100.9/24"}),
        HostFacts("srv", before={}, missing={"addr": "ip: not found"}),
    ]
    write_facts(tmp_path / "facts", facts)
    assert bundle_host_addresses(tmp_path) == host_addresses(facts)
    assert bundle_host_addresses(tmp_path)["fw"][-1] == "198.51.100.9"
    assert bundle_host_addresses(tmp_path / "nowhere") == {}


def test_a_bundles_facts_give_the_runs_conntrack(tmp_path: Path) -> None:
    """`correlate BUNDLE` hands the correlator each host's conntrack table after the
    window, as `hopcap run` did (cli._correlate_run): the run's own verdict again."""
    table = (
        "tcp      6 117 TIME_WAIT src=203.0.113.10 dst=203.0.113.80 sport=56954 dport=80 "
        "src=198.18.1.2 dst=198.18.1.1 sport=80 dport=40001 [ASSURED] use=1\n"
    )
    facts = [
        HostFacts("fw", before={"conntrack": ""}, after={"conntrack": table}),
        HostFacts("srv", before={}, missing={"conntrack": "conntrack: not found"}),
    ]
    write_facts(tmp_path / "facts", facts)
    assert bundle_conntrack(tmp_path) == {
        f.host: f.after["conntrack"] for f in facts if "conntrack" in f.after
    }
    assert bundle_conntrack(tmp_path / "nowhere") == {}


def test_kind_word_names_datagrams_as_their_flows_do() -> None:
    """The words of a summary made again after trimming (`_summary`): a datagram finding's
    text is not a TCP segment's ('data' was said of every echo reply and DNS answer)."""
    from hopcap.correlate.local import kind_word

    assert kind_word("ICMP echo reply id=61000 seq=3 len=64 ipid=7 (9 datagrams)") == "echo reply"
    assert kind_word("ICMP echo request id=1 seq=0 len=64") == "echo request"
    q = "UDP len=38 ipid=9 (DNS query 0x1000 A host0.example.test) (2 datagrams)"
    assert kind_word(q) == "DNS query"
    assert kind_word("UDP len=30 ipid=2621 (3 datagrams)") == "UDP datagram"
    assert kind_word("ESP spi=0x00000001 seq=4 len=120") == "ESP packet"
    assert kind_word("seq=1:101 len=100") == "data"
    assert kind_word("SYN,ACK seq=0") == "SYN-ACK"


def test_a_hosts_own_connection_out_of_its_last_interface_ends_beyond_it() -> None:
    """lb's own connections to a backend that is down (its health checks, its curl),
    captured on lb alone: their only leg is at lb:eth1, which the findings take for the
    connection's end at lb ("lb reset the connection"); lb sent them (their client address
    is lb's), so the RST is the server's, a SYN never answered was never answered by the
    server, and data never acknowledged was lost somewhere beyond lb:eth1 (not told)."""
    pts = (PointSummary("lb:eth0", "lb", "eth0", 0), PointSummary("lb:eth1", "lb", "eth1", 9))
    own = {"lb": ["198.18.1.2", "198.18.2.1"]}

    def flow(fid: str, port: int, *findings: Finding) -> Flow:
        tup = f"198.18.2.1:{port} > 198.18.2.2:80"
        return Flow(fid, "tcp", f"198.18.2.1:{port}", "198.18.2.2:80",
                    (Leg("lb:eth1", tup, "same"),), findings, "", first_ts=1.0)  # fmt: skip

    rst = Finding("reset", "s2c", ("lb", "lb:eth1"), 1, 0, 1.1,
                  "lb answered with RST: RST,ACK seq=0 ipid=0")  # fmt: skip
    syn = Finding("drop", "c2s", ("lb:eth1", "lb"), 1, 0, 1.0,
                  "SYN seq=7 ipid=1: reached lb:eth1, never answered by lb", packet="SYN",
                  unanswered=True)  # fmt: skip
    unacked = Finding("drop", "c2s", ("lb:eth1", "lb"), 1, 100, 1.2,
                      "PA seq=1 len=100: reached lb:eth1, never acknowledged before it came "
                      "again: lost after lb:eth1", packet="data")  # fmt: skip
    flows = (flow("a", 40000, rst), flow("b", 40001, syn), flow("c", 40002, unacked, rst))
    v = {f.client: f for f in localize(Verdict(pts, flows), own).flows}
    (x,) = v["198.18.2.1:40000"].findings
    assert (x.kind, x.between, x.what) == (
        "reset",
        ("server", "lb:eth1"),
        "server answered with RST: RST,ACK seq=0 ipid=0",
    )
    assert v["198.18.2.1:40000"].summary == "server reset the connection (RST seen on lb:eth1)"
    (x,) = v["198.18.2.1:40001"].findings
    assert x.between == ("lb:eth1", "server") and x.what.endswith("never answered by server")
    assert v["198.18.2.1:40001"].summary == "SYN reached lb:eth1 but server never answered it"
    assert [f.kind for f in v["198.18.2.1:40002"].findings] == ["reset"]
    assert all(f.path for f in v.values())
    # another host's connection seen there (its client not lb's): left as it was
    other = flow("d", 40003, rst)
    other = replace(other, client="198.18.2.7:40003",
                    legs=(Leg("lb:eth1", "198.18.2.7:40003 > 198.18.2.2:80", "same"),))  # fmt: skip
    (got,) = localize(Verdict(pts, (other,)), own).flows
    assert got.findings == (rst,)
