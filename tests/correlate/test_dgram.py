"""correlate() on generated UDP / ICMP captures: datagram flows through NAT, drops,
injections and rewrites per datagram, ICMP errors attached to the flow they quote, and a
path-MTU black hole."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pcapgen import (
    C2S,
    S2C,
    Conv,
    Dg,
    UConv,
    View,
    dns_answer,
    dns_query,
    icmp_error,
    render,
    render_dgrams,
    write,
)

from hopcap.correlate import correlate
from hopcap.model import Flow, PointInput, Verdict

PATH4 = ["client:eth0", "fw:eth0", "fw:eth1", "srv:eth0"]


def nat(conv: UConv | Conv, sport: int, dst: str = "198.18.1.2", dport: int | None = None) -> Any:
    dp = conv.server[1] if dport is None else dport
    if isinstance(conv, UConv) and conv.proto == "icmp":
        dp = sport  # an echo id is translated as one "port"
    return {C2S: ("198.18.1.1", sport, dst, dp), S2C: (dst, dp, "198.18.1.1", sport)}


def write_points(
    tmp: Path,
    convs: list[Any],
    views: list[tuple[str, Callable[[Any], View]]],
    extra: dict[str, list[tuple[float, Any]]] | None = None,
) -> list[PointInput]:
    out = []
    for name, mk in views:
        pk: list[tuple[float, Any]] = []
        for c in convs:
            pk += render_dgrams([c], mk(c)) if isinstance(c, UConv) else render([c], mk(c))
        pk += (extra or {}).get(name, [])
        pk.sort(key=lambda x: x[0])
        out.append(PointInput(name=name, pcap=write(tmp / f"{name.replace(':', '_')}.pcap", pk)))
    return out


def four_points(nat_of: Callable[[Any], Any], **kw: Any) -> list[tuple[str, Callable[[Any], View]]]:
    """client -> fw (DNAT + masquerade: `nat_of`) -> srv; kw: View arguments per point."""
    return [
        ("client:eth0", lambda c: View(**kw.get("client:eth0", {}))),
        ("fw:eth0", lambda c: View(delay=0.0001, **kw.get("fw:eth0", {}))),
        ("fw:eth1", lambda c: View(delay=0.0002, nat=nat_of(c), ttl_dec={C2S: 1},
                                   **kw.get("fw:eth1", {}))),
        ("srv:eth0", lambda c: View(delay=0.0003, nat=nat_of(c), ttl_dec={C2S: 1},
                                    **kw.get("srv:eth0", {}))),
    ]  # fmt: skip


def dns_flows(n: int, every: float = 0.01) -> list[UConv]:
    """`n` DNS queries, each answered, `every` seconds apart."""
    out = []
    for i in range(n):
        c = UConv(("203.0.113.10", 40000 + i), ("203.0.113.53", 53),
                  t0=1_763_790_000.0 + i * every, seed=i)  # fmt: skip
        q = dns_query(0x1000 + i, f"host{i}.example.test")
        c.send(C2S, q)
        c.send(S2C, dns_answer(q, "192.0.2.7"), dt=0.0004)
        out.append(c)
    return out


def findings(fl: Flow) -> list[tuple[str, str, tuple[str, str]]]:
    return [(f.kind, f.direction, f.between) for f in fl.findings]


def udp(v: Verdict) -> list[Flow]:
    return [fl for fl in v.flows if fl.proto == "udp"]


def through_nat(tmp: Path, convs: list[UConv]) -> Verdict:
    """`convs` at the four points, conversation k masqueraded to port 20000 + k * 7919
    (mod 30000)."""
    ports = {id(c): 20000 + (i * 7919) % 30000 for i, c in enumerate(convs)}
    return correlate(write_points(tmp, convs, four_points(lambda c: nat(c, ports[id(c)]))))


def test_dns_through_dnat_and_masquerade(tmp_path: Path) -> None:
    v = through_nat(tmp_path, dns_flows(30))
    flows = udp(v)
    assert len(flows) == 30 and len(v.flows) == 30
    for fl in flows:
        assert fl.findings == (), fl
        assert [leg.link for leg in fl.legs] == ["same", "same", "nat", "same"]
        assert fl.summary.startswith("OK: delivered both ways"), fl.summary
        assert fl.server == "203.0.113.53:53"
    by_client = {fl.client: fl for fl in flows}
    fl = by_client["203.0.113.10:40007"]
    assert fl.legs[2].tuple == f"198.18.1.1:{20000 + 7 * 7919 % 30000} > 198.18.1.2:53"
    assert v.to_dict()["flows"][0]["proto"] == "udp"


def test_answers_to_a_nat_port_that_is_a_tunnel_port_are_no_tunnel(
    tmp_path: Path, compiled: bool
) -> None:
    """A masquerade picks any of 64 k ports, VXLAN's 4789 and 8472 and GENEVE's 6081 too:
    the answers sent to that port are DNS, not tunnel transport (they were dropped from
    the capture's datagrams: 'never answered' and an injected answer, on 1 conversation
    of a 100 k-query resolver bench). Query IDs whose first byte passed the old checks."""
    convs = []
    for i, port in enumerate((4789, 8472, 6081)):
        c = UConv(("203.0.113.10", 40000 + i), ("203.0.113.53", 53),
                  t0=1_763_790_000.0 + i * 0.01, seed=i)  # fmt: skip
        q = dns_query(0x0800 + i, f"host{i}.example.test")
        c.send(C2S, q)
        c.send(S2C, dns_answer(q, "192.0.2.7"), dt=0.0004)
        convs.append((c, port))
    ports = {id(c): port for c, port in convs}
    v = correlate(
        write_points(tmp_path, [c for c, _ in convs], four_points(lambda c: nat(c, ports[id(c)])))
    )
    flows = udp(v)
    assert len(flows) == 3 and len(v.flows) == 3
    for fl in flows:
        assert fl.findings == (), fl
        assert [leg.tuple.split(" > ")[0].rsplit(":")[-1] for leg in fl.legs[2:]] == [
            str(ports[id(c)]) for c, _ in convs if fl.client.endswith(str(c.client[1]))
        ] * 2


@pytest.mark.parametrize("near", [False, True])
def test_the_same_dns_query_from_many_ports_through_nat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, near: bool
) -> None:
    """60 flows with the same query and answer (and DNS id) through the NAT: payloads tell
    none apart, time does. With the payload's 3,600 pairs beyond HEAVY_ALL (`near`), each
    flow's nearest in time stand for them: the same flows, each to its own port."""
    from hopcap.correlate import udp as udp_mod

    if near:
        monkeypatch.setattr(udp_mod, "HEAVY_ALL", 100)
    convs = []
    for i in range(60):
        c = UConv(("203.0.113.10", 40000 + i), ("203.0.113.53", 53),
                  t0=1_763_790_000.0 + i * 0.01, seed=i)  # fmt: skip
        q = dns_query(0x1234, "health.example.test")
        c.send(C2S, q)
        c.send(S2C, dns_answer(q, "192.0.2.7"), dt=0.0004)
        convs.append(c)
    v = through_nat(tmp_path, convs)
    flows = udp(v)
    assert len(flows) == 60 and len(v.flows) == 60
    for fl in flows:
        assert fl.findings == (), fl
        i = int(fl.client.rsplit(":", 1)[1]) - 40000
        assert fl.legs[2].tuple == f"198.18.1.1:{20000 + i * 7919 % 30000} > 198.18.1.2:53"


def quic_flow() -> UConv:
    c = UConv(("203.0.113.10", 50123), ("203.0.113.80", 443), seed=3)
    for i in range(20):
        c.send(C2S, c.rnd.randbytes(1200 if i < 2 else 60 + i), tag=f"c{i}")
        c.send(S2C, c.rnd.randbytes(1200 - i), tag=f"s{i}", dt=0.0003)
    return c


def test_udp_drop_inject_rewrite_per_datagram(tmp_path: Path) -> None:
    c = quic_flow()
    dropped = {"c3", "c7"}
    t_inj = c.segs[10].t + 0.0001
    forged = Dg(S2C, t_inj, b"\x40" + b"\x00" * 40, 777, tag="forged", conv=c)

    def change(g: Dg) -> Dg:
        if g.tag == "c5":  # a byte inside the identity hash
            return Dg(g.d, g.t, b"X" + g.data[1:], g.ipid, tag=g.tag, conv=g.conv)
        if g.tag == "c0":  # a byte far beyond it (a 1,200-byte datagram)
            return Dg(g.d, g.t, g.data[:900] + b"Y" + g.data[901:], g.ipid, tag=g.tag, conv=g.conv)
        if g.tag == "c9":
            return Dg(g.d, g.t, g.data, g.ipid, tos=0x28, ttl=g.ttl, tag=g.tag, conv=g.conv)
        return g

    inside: dict[str, Any] = {"drop": lambda g: g.tag in dropped, "change": change}
    injected = {"extra": [forged]}  # fw sends it toward the client
    kw = {"fw:eth1": inside, "srv:eth0": inside, "client:eth0": injected, "fw:eth0": injected}
    v = correlate(write_points(tmp_path, [c], four_points(lambda x: nat(x, 31000), **kw)))
    (fl,) = v.flows
    assert fl.proto == "udp" and [leg.link for leg in fl.legs] == ["same", "same", "nat", "same"]
    got = {(f.kind, f.field, f.direction, f.between, f.packets) for f in fl.findings}
    inside_fw = ("fw:eth0", "fw:eth1")
    assert got == {
        ("drop", None, "c2s", inside_fw, 2),
        ("inject", None, "s2c", ("fw:eth1", "fw:eth0"), 1),
        ("rewrite", "payload", "c2s", inside_fw, 2),
        ("rewrite", "ip.dscp", "c2s", inside_fw, 1),
    }, fl.findings
    drop = next(f for f in fl.findings if f.kind == "drop")
    assert drop.what.startswith("UDP len=") and "(2 datagrams)" in drop.what
    assert fl.summary == (
        "UDP datagram dropped inside fw (seen on fw:eth0, never on fw:eth1); 3 more findings"
    )


def test_ping_through_pat_reply_lost(tmp_path: Path) -> None:
    p = UConv(("203.0.113.10", 4242), ("203.0.113.80", 0), proto="icmp", seed=9)
    p.ping(5)
    lost = {id(g) for g in p.segs if g.d == S2C and g.seq == 3}
    kw = {
        "client:eth0": {"drop": lambda g: id(g) in lost},
        "fw:eth0": {"drop": lambda g: id(g) in lost},
    }
    v = correlate(write_points(tmp_path, [p], four_points(lambda x: nat(x, 61000), **kw)))
    (fl,) = v.flows
    assert fl.proto == "icmp" and fl.client == "203.0.113.10:4242"
    assert [leg.link for leg in fl.legs] == ["same", "same", "nat", "same"]
    assert fl.legs[2].tuple == "198.18.1.1:61000 > 198.18.1.2:61000"
    assert findings(fl) == [("drop", "s2c", ("fw:eth1", "fw:eth0"))]
    assert fl.findings[0].what.startswith("ICMP echo reply id=61000 seq=3")  # as at fw:eth1
    assert fl.summary == "echo reply dropped inside fw (seen on fw:eth1, never on fw:eth0)"


def test_ping_never_answered(tmp_path: Path) -> None:
    p = UConv(("203.0.113.10", 4242), ("203.0.113.80", 0), proto="icmp", seed=9)
    p.ping(3, answered=False)
    p.send(C2S, b"late", dt=3.0, tag="x", seq=9)  # the capture goes on after the last one
    v = correlate(write_points(tmp_path, [p], four_points(lambda x: nat(x, 61000))))
    (fl,) = v.flows
    assert findings(fl) == [("drop", "c2s", ("srv:eth0", "srv"))]
    assert fl.summary == "echo request reached srv:eth0 but srv never answered it"


def test_icmp_port_unreachable_quotes_the_flow_through_nat(tmp_path: Path) -> None:
    """The server answers a DNS query with port unreachable; fw translates the error (outer
    and quoted header) back: at every point the quote names the flow as it is there."""
    convs = dns_flows(3)
    bad = UConv(("203.0.113.10", 45000), ("203.0.113.53", 53), t0=1_763_790_001.0, seed=77)
    q = bad.send(C2S, dns_query(0xBEEF, "down.example.test"))
    convs.append(bad)
    from scapy.layers.inet import IP, UDP

    t = q.t
    inner_out = (
        IP(src="198.18.1.1", dst="198.18.1.2", id=q.ipid, ttl=63)
        / UDP(sport=31999, dport=53)
        / q.data
    )
    inner_in = (
        IP(src="203.0.113.10", dst="203.0.113.53", id=q.ipid, ttl=64)
        / UDP(sport=45000, dport=53)
        / q.data
    )
    extra = {
        "srv:eth0": [icmp_error(t + 0.0004, "198.18.1.2", "198.18.1.1", inner_out, code=3)],
        "fw:eth1": [icmp_error(t + 0.0005, "198.18.1.2", "198.18.1.1", inner_out, code=3)],
        "fw:eth0": [icmp_error(t + 0.0006, "203.0.113.53", "203.0.113.10", inner_in, code=3)],
        "client:eth0": [icmp_error(t + 0.0007, "203.0.113.53", "203.0.113.10", inner_in, code=3)],
    }
    ports = {id(c): 31000 + i for i, c in enumerate(convs)}
    ports[id(bad)] = 31999
    v = correlate(write_points(tmp_path, convs, four_points(lambda c: nat(c, ports[id(c)])), extra))
    fl = next(f for f in v.flows if f.client == "203.0.113.10:45000")
    assert [f.kind for f in fl.findings] == ["icmp"]
    f = fl.findings[0]
    assert f.direction == "s2c" and f.between == ("srv", "client:eth0")
    assert f.what.startswith("ICMP port unreachable from 198.18.1.2 about a ")
    assert "generated by srv, last seen at client:eth0" in f.what
    assert fl.summary.startswith("ICMP port unreachable from 198.18.1.2")
    assert fl.broken and v.flows[0] is fl  # broken flows first
    assert all(o.findings == () for o in v.flows if o is not fl)


def test_time_exceeded_quoting_a_tcp_syn(tmp_path: Path) -> None:
    """A router (fw) answers a SYN whose TTL ran out with time exceeded: an `icmp` finding
    on the TCP flow, generated inside fw, delivered to the client."""
    conv = Conv(client=("203.0.113.10", 51234), server=("203.0.113.80", 80), seed=4)
    conv.handshake(answered=False)
    syn = conv.segs[0]
    inner = render([conv], View())[0][1]
    extra = {
        "fw:eth0": [icmp_error(syn.t + 0.0002, "198.51.100.1", "203.0.113.10", inner, type=11,
                               code=0)],
        "client:eth0": [icmp_error(syn.t + 0.0003, "198.51.100.1", "203.0.113.10", inner,
                                   type=11, code=0)],
    }  # fmt: skip
    views = four_points(lambda c: nat(c, 31000))
    views = [(n, mk) for n, mk in views]
    pts = write_points(tmp_path, [conv], views[:2], extra)
    pts += write_points(tmp_path, [], views[2:])  # the SYN died in fw
    v = correlate(pts)
    (fl,) = v.flows
    assert fl.proto == "tcp"
    icmp = [f for f in fl.findings if f.kind == "icmp"]
    assert len(icmp) == 1 and icmp[0].direction == "s2c"
    assert icmp[0].between == ("fw", "client:eth0")
    assert icmp[0].what.startswith("ICMP time exceeded from 198.51.100.1 about a ")
    assert "-byte TCP packet" in icmp[0].what and "generated inside fw" in icmp[0].what
    # the SYN itself: dropped inside fw, as before
    assert ("drop", "c2s", ("fw:eth0", "fw:eth1")) in findings(fl)


def test_pmtu_black_hole(tmp_path: Path) -> None:
    """client - rt (a 1,400-byte link on the client side) - fw (DNAT; drops ICMP) - srv:
    the server's 1,500-byte segments die inside rt; rt's "fragmentation needed" reaches
    fw:eth0 and no further; the server keeps sending them."""
    conv = Conv(client=("203.0.113.10", 51234), server=("203.0.113.80", 80), seed=6)
    conv.handshake()
    conv.request(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    first = conv.response(b"z" * 4344)  # three 1,448-byte segments: 1,500-byte packets
    again = [conv.retransmit(s, dt=0.3) for s in first[:1]]
    again += [conv.retransmit(s, dt=0.6) for s in first[:1]]
    big = {id(s) for s in first + again}
    # the captures go on (an error is not expected where one ended less than a second after)
    conv.seg(S2C, "A", dt=2.0, seq=conv.nxt[S2C] - 1, tag="keepalive")
    # the acks of the client never come: drop the client's acks of these (it never got them)
    conv.segs = [s for s in conv.segs if not (s.d == C2S and s.tag == "ack" and s.t > first[0].t)]
    errors = []
    for s in first + again:
        pk = render([conv], View(drop=lambda x, s=s: x is not s))  # that segment as at rt
        errors.append((s.t + 0.0003, pk[0][1]))

    def errs(dt: float, to: str = "203.0.113.80") -> list[tuple[float, Any]]:
        return [icmp_error(t + dt, "198.51.100.1", to, q, mtu=1400, ipid=900 + i)
                for i, (t, q) in enumerate(errors)]  # fmt: skip

    before_rt = {"drop": lambda s: id(s) in big}
    views: list[tuple[str, Callable[[Any], View]]] = [
        ("client:eth0", lambda c: View(**before_rt)),
        ("rt:eth0", lambda c: View(delay=0.0001, **before_rt)),
        ("rt:eth1", lambda c: View(delay=0.0002)),
        ("fw:eth0", lambda c: View(delay=0.0003)),
        ("fw:eth1", lambda c: View(delay=0.0004, nat=nat(c, 31000), ttl_dec={C2S: 1})),
        ("srv:eth0", lambda c: View(delay=0.0005, nat=nat(c, 31000), ttl_dec={C2S: 1})),
    ]
    extra = {"rt:eth1": errs(0.0), "fw:eth0": errs(0.0001)}
    v = correlate(write_points(tmp_path, [conv], views, extra))
    (fl,) = v.flows
    assert fl.summary == (
        "path-MTU black hole: segments over 1400 bytes dropped inside rt; ICMP frag-needed "
        "from rt never reached srv (last seen at fw:eth0, not at fw:eth1)"
        + fl.summary[fl.summary.index(")") + 1 :]
    ), fl.summary
    # the five errors (one per lost segment) took the same way: one finding of each kind
    (icmp,) = [f for f in fl.findings if f.kind == "icmp"]
    assert icmp.between == ("rt", "fw:eth0") and icmp.direction == "c2s" and icmp.packets == 5
    assert "fragmentation needed (next-hop MTU 1400) from 198.51.100.1" in icmp.what
    assert "generated inside rt, last seen at fw:eth0, never at fw:eth1" in icmp.what
    (lost,) = [f for f in fl.findings if f.kind == "drop" and f.what.startswith("ICMP")]
    assert lost.between == ("fw:eth0", "fw:eth1") and lost.packets == 5
    seg = [f for f in fl.findings if f.kind == "drop" and f.direction == "s2c"]
    assert seg and seg[0].between == ("rt:eth1", "rt:eth0") and seg[0].bytes >= 4344


def test_compiled_and_numpy_verdicts_agree(tmp_path: Path) -> None:
    from hopcap.correlate import _fastwalk

    c = quic_flow()
    views = four_points(
        lambda x: nat(x, 31000 + x.client[1] % 1000),
        **{"fw:eth1": {"drop": lambda g: g.tag == "c4"}},
    )
    pts = write_points(tmp_path, [c, *dns_flows(4)], views)
    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    fast = correlate(pts).to_dict()
    _fastwalk.disabled = True
    try:
        slow = correlate(pts).to_dict()
    finally:
        _fastwalk.disabled = False
    assert fast == slow
    assert any(f["kind"] == "drop" for fl in fast["flows"] for f in fl["findings"])


# --------------------------------------------------------------------------- tunnels


def test_tunnel_pairing_compiled_is_the_python_loop() -> None:
    """tunnel.greedy in C (a busy endpoint: 200 k ESP datagrams 36 s -> 1.2 s) pairs
    exactly as its Python loop: random times and lengths around a tunnel's overhead,
    both ways, seconds already taken, a scan cut by SCAN, and the pointer it returns."""
    import numpy as np

    from hopcap.correlate import _fastwalk, tunnel

    assert _fastwalk.available(), "no C compiler (install gcc)"
    rng = np.random.default_rng(5)
    for case in range(40):
        n1, n2 = int(rng.integers(0, 400)), int(rng.integers(0, 400))
        busy = case % 4 == 0  # more seconds in a window than SCAN looks at
        span = 10**8 if busy else 5 * 10**9
        t1 = np.sort(rng.integers(0, span, n1)).astype(np.int64)
        t2 = np.sort(rng.integers(0, span, n2)).astype(np.int64)
        l1 = rng.integers(40, 1500, n1).astype(np.int64)
        l2 = np.clip(
            l1[rng.integers(0, max(n1, 1), n2)] - rng.integers(-50, 250, n2) if n1 else
            rng.integers(40, 1500, n2), 0, None).astype(np.int64)  # fmt: skip
        pre = rng.random(n2) < 0.2
        for outer_first in (True, False):
            got = []
            for compiled in (True, False):
                _fastwalk.disabled = not compiled
                try:
                    used = pre.copy()
                    pairs, lo = tunnel.greedy(t1, l1, t2, l2, outer_first, used)
                finally:
                    _fastwalk.disabled = False
                got.append((pairs, lo, used.tolist()))
            assert got[0] == got[1], (case, outer_first)
    assert got[0][0], "the last case paired something"


@pytest.mark.parametrize("outer", ["udp", "esp"])
def test_encrypted_tunnel_drop_inside_the_endpoint(tmp_path: Path, outer: str) -> None:
    """client:eth0 and gw:eth0 see only the encrypted tunnel (WireGuard-like UDP 51820, or
    ESP); gw decrypts onto gw:tun0 (raw IP), srv:eth0 sees the inner TCP plain. Two of the
    client's data segments arrive encrypted on gw:eth0 and never appear on gw:tun0."""
    import random

    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.packet import Raw

    conv = Conv(client=("198.18.50.2", 40000), server=("198.18.60.80", 80), seed=12)
    conv.handshake()
    lost = conv.request(b"P" * 3000)[:2]  # two 1,448-byte segments
    for s in lost:
        conv.retransmit(s, dt=0.2)
    transit = conv.response(b"r" * 2000)[0]  # its datagram is lost between gw and client
    conv.close()
    gone = {id(s) for s in lost}
    inner = render([conv], View())  # as on gw:tun0, before the drop
    rnd = random.Random(3)
    seqs = {C2S: 0, S2C: 0}

    def wrap(t: float, pkt: Any, d: str, at: str) -> tuple[float, Any]:
        n = len(bytes(pkt))
        body = rnd.randbytes(32 + (n + 15) // 16 * 16)  # header, padding, tag
        src, dst = (
            ("198.51.100.10", "198.51.100.1") if d == C2S else ("198.51.100.1", "198.51.100.10")
        )
        ip = IP(src=src, dst=dst, id=rnd.randrange(1 << 16), ttl=64 - (at == "gw"))
        seqs[d] += 1
        if outer == "udp":
            return t, ip / UDP(sport=51820, dport=51820) / Raw(body)
        return t, ip / ESP(spi=0x1000 if d == C2S else 0x2000, seq=seqs[d]) / Raw(body)

    outer_client, outer_gw, tun, srv = [], [], [], []
    segs = sorted(conv.segs, key=lambda s: s.t)
    for s, (t, pkt) in zip(segs, inner, strict=True):
        if s.d == C2S:
            outer_client.append(wrap(t - 0.001, pkt, C2S, "client"))
            outer_gw.append((t - 0.0003, outer_client[-1][1]))
        else:
            o = wrap(t + 0.0003, pkt, S2C, "gw")
            outer_gw.append(o)
            if s is not transit:
                outer_client.append((t + 0.001, o[1]))
        if id(s) not in gone:
            tun.append((t, pkt))
            srv.append((t + 0.0002 * (1 if s.d == C2S else -1), pkt))
    pts = []
    for name, pk, link in (("client:eth0", outer_client, "ether"), ("gw:eth0", outer_gw, "ether"),
                           ("gw:tun0", tun, "raw"), ("srv:eth0", srv, "ether")):  # fmt: skip
        pk.sort(key=lambda x: x[0])
        pts.append(PointInput(name=name, pcap=write(tmp_path / f"{name[:-5]}{name[-4:]}.pcap", pk,
                                                    link=link)))  # fmt: skip
    v = correlate(pts)
    kind = "encrypted udp" if outer == "udp" else "esp"
    (ofl,) = [fl for fl in v.flows if fl.proto == outer]
    assert [(leg.point, leg.tunnel) for leg in ofl.legs] == [
        ("client:eth0", kind),
        ("gw:eth0", kind),
    ]
    # inside the endpoint (by timing and size), and on the way between the tunnel's ends
    # (the outer flow matched datagram by datagram, like any UDP flow)
    assert [(f.kind, f.direction, f.between, f.packets) for f in ofl.findings] == [
        ("drop", "c2s", ("gw:eth0", "gw:tun0"), 2),
        ("drop", "s2c", ("gw:eth0", "client:eth0"), 1),
    ], ofl.findings
    assert ofl.summary == (
        "encrypted datagram arrived on gw:eth0 but the inner packet never appeared on gw:tun0: "
        "dropped inside gw (the tunnel endpoint); 1 more finding"
    )
    (tfl,) = [fl for fl in v.flows if fl.proto == "tcp"]
    assert [(leg.point, leg.link, leg.tunnel) for leg in tfl.legs] == [
        ("gw:eth0", "tunnel", kind),
        ("gw:tun0", "same", None),
        ("srv:eth0", "same", None),
    ]
    assert tfl.legs[0].tuple == ofl.legs[1].tuple
    assert not any(f.kind in ("drop", "inject") for f in tfl.findings), tfl.findings
    d = v.to_dict()["flows"]
    assert any(leg.get("tunnel") == kind for fl in d for leg in fl["legs"])
    # the report shows where a flow is inside the tunnel
    from hopcap.bundle.report import render_html, render_markdown

    assert f"| same ({kind}) |" in render_markdown({}, v, {})  # the broken outer flow
    assert f"same ({kind})" in render_html({}, v, {})


def test_ipv6_udp_and_packet_too_big(tmp_path: Path) -> None:
    """IPv6: a UDP flow matched per datagram (one lost inside fw), and an ICMPv6 packet
    too big from fw about a TCP segment of another flow, delivered to the server."""
    u = UConv(("2001:db8::10", 40001), ("2001:db8:1::53", 53), seed=21)
    for i in range(4):
        q = dns_query(0x2000 + i, f"v6-{i}.example.test", 28)
        u.send(C2S, q, dt=0.01, tag=f"q{i}")
        u.send(S2C, dns_answer(q, "192.0.2.9"), dt=0.0004)
    conv = Conv(client=("2001:db8::10", 51000), server=("2001:db8:1::80", 80), seed=22)
    conv.handshake()
    conv.request(b"GET / HTTP/1.1\r\n\r\n")
    big = [conv.seg(S2C, "A", b"b" * 1448, tag="resp"),
           conv.seg(S2C, "PA", b"b" * 1448, tag="resp", dt=0.00001)]  # fmt: skip
    # the server, told the path's MTU, sends them again in pieces that fit; then the
    # client acknowledges them (what it got: the pieces)
    for k, at in enumerate(range(0, 2896, 1208)):
        conv.seg(S2C, "PA" if at + 1208 >= 2896 else "A", b"b" * min(1208, 2896 - at),
                 seq=big[0].seq + at, tag="resp", dt=0.001 if k == 0 else 0.00001)  # fmt: skip
    conv.seg(C2S, "A", tag="ack", dt=conv.rtt / 2)
    inner = render([conv], View(drop=lambda s: s is not big[0]))[0][1]
    extra = {
        "fw:eth1": [icmp_error(big[0].t + 0.0001, "2001:db8:ff::1", "2001:db8:1::80", inner,
                               mtu=1280)],
        "srv:eth0": [icmp_error(big[0].t + 0.0002, "2001:db8:ff::1", "2001:db8:1::80", inner,
                                mtu=1280)],
    }  # fmt: skip
    gone = {"drop": lambda s: s.tag == "q2" or s in big}
    views: list[tuple[str, Callable[[Any], View]]] = [
        ("client:eth0", lambda c: View(**(gone if isinstance(c, Conv) else {}))),
        ("fw:eth0", lambda c: View(delay=0.0001, **(gone if isinstance(c, Conv) else {}))),
        ("fw:eth1", lambda c: View(delay=0.0002, **(gone if isinstance(c, UConv) else {}))),
        ("srv:eth0", lambda c: View(delay=0.0003, **(gone if isinstance(c, UConv) else {}))),
    ]
    v = correlate(write_points(tmp_path, [u, conv], views, extra))
    (ufl,) = [fl for fl in v.flows if fl.proto == "udp"]
    assert ufl.client == "[2001:db8::10]:40001"
    assert [(f.kind, f.direction, f.between, f.packets) for f in ufl.findings] == [
        ("drop", "c2s", ("fw:eth0", "fw:eth1"), 1)
    ]
    assert "DNS query 0x2002 AAAA v6-2.example.test" in ufl.findings[0].what
    (tfl,) = [fl for fl in v.flows if fl.proto == "tcp"]
    (icmp,) = [f for f in tfl.findings if f.kind == "icmp"]
    assert icmp.between == ("fw", "srv:eth0") and icmp.direction == "c2s"
    assert icmp.what.startswith("ICMPv6 packet too big (next-hop MTU 1280) from 2001:db8:ff::1")
    assert "generated inside fw, last seen at srv:eth0" in icmp.what
    assert ("drop", "s2c", ("fw:eth1", "fw:eth0")) in findings(tfl)


def test_broadcast_and_multicast_are_not_expected_beyond_their_segment(tmp_path: Path) -> None:
    """NetBIOS name queries to the LAN's broadcast address and mDNS to 224.0.0.251 are
    seen on the client side only: never routed, so no drop; a unicast query that never
    left fw is one."""
    bc = UConv(("198.18.7.10", 137), ("198.18.7.255", 137), seed=31)
    md = UConv(("198.18.7.10", 5353), ("224.0.0.251", 5353), seed=32, t0=1_763_790_000.5)
    uni = UConv(("198.18.7.10", 40500), ("203.0.113.53", 53), seed=33, t0=1_763_790_001.0)
    for c in (bc, md):
        for _ in range(3):
            c.send(C2S, dns_query(0, "WORKGROUP.local"), dt=0.5)
    uni.send(C2S, dns_query(0x7777, "lost.example.test"))
    uni.send(C2S, b"x" * 30, dt=2.0)  # the capture goes on
    views: list[tuple[str, Callable[[Any], View]]] = [
        ("client:eth0", lambda c: View()),
        ("fw:eth0", lambda c: View(delay=0.0001)),
        ("fw:eth1", lambda c: View(delay=0.0002, drop=lambda g: g.conv is not other)),
    ]
    other = UConv(("198.18.7.11", 40000), ("203.0.113.53", 53), seed=34)  # a healthy one
    other.send(C2S, dns_query(1, "ok.example.test"))
    other.send(S2C, dns_answer(dns_query(1, "ok.example.test"), "192.0.2.1"), dt=0.001)
    v = correlate(write_points(tmp_path, [bc, md, uni, other], views))
    by = {fl.server: fl for fl in v.flows}
    for server in ("198.18.7.255:137", "224.0.0.251:5353"):
        fl = by[server]
        assert fl.findings == (), fl.findings
        assert fl.summary.endswith("(broadcast/multicast: not routed beyond fw:eth0)"), fl.summary
    lost = next(fl for fl in v.flows if fl.client == "198.18.7.10:40500")
    assert [(f.kind, f.between, f.packets) for f in lost.findings] == [
        ("drop", ("fw:eth0", "fw:eth1"), 2)
    ]
    ok = next(fl for fl in v.flows if fl.client == "198.18.7.11:40000")
    assert ok.findings == () and ok.summary.startswith("OK: delivered both ways")


def test_udp_segmentation_offload_is_not_loss(tmp_path: Path) -> None:
    """QUIC stacks send with UDP GSO: the sender's capture shows one 3,600-byte datagram
    where the wire carries three of 1,200 bytes; the receiver's GRO merges them again."""
    c = UConv(("203.0.113.10", 50999), ("203.0.113.80", 443), seed=41)
    bursts = []
    for i in range(4):
        parts = [c.send(C2S, c.rnd.randbytes(1200), dt=0.01 if k == 0 else 0.00001, tag=f"b{i}")
                 for k in range(3)]  # fmt: skip
        bursts.append(parts)
        c.send(S2C, c.rnd.randbytes(80), dt=0.001)

    def merged(g: Dg) -> bool:  # keep the first piece of a burst, carrying all three
        return g.d == C2S and not any(g is b[0] for b in bursts)

    def merge(g: Dg) -> Dg:
        for b in bursts:
            if g is b[0] or (g.d == C2S and g.t == b[0].t and g.data == b[0].data):
                return Dg(g.d, g.t, b"".join(x.data for x in b), g.ipid, ttl=g.ttl, tag=g.tag,
                          conv=g.conv)  # fmt: skip
        return g

    views: list[tuple[str, Callable[[Any], View]]] = [
        ("client:eth0", lambda x: View(drop=merged, change=merge)),  # GSO: before segmentation
        ("fw:eth0", lambda x: View(delay=0.0001)),
        ("fw:eth1", lambda x: View(delay=0.0002, ttl_dec={C2S: 1})),
        ("srv:eth0", lambda x: View(delay=0.0003, ttl_dec={C2S: 1}, drop=merged, change=merge)),
    ]
    v = correlate(write_points(tmp_path, [c], views))
    (fl,) = v.flows
    assert fl.findings == (), fl.findings
    assert [leg.link for leg in fl.legs] == ["same"] * 4
    assert fl.summary.startswith("OK: delivered both ways")


def test_udp_segmentation_offload_among_lost_and_injected_datagrams(tmp_path: Path) -> None:
    """GSO bursts (one of pieces shorter than the bytes that index them) among many
    datagrams lost on the way and many seen only on the wire, and before each burst a
    datagram on the wire that begins like the burst but is not part of it: the bursts
    are not loss, every other datagram is a drop or (seen only on the wire) a gap."""
    c = UConv(("203.0.113.10", 50999), ("203.0.113.80", 443), seed=43)
    bursts: list[list[Dg]] = []
    decoys: list[Dg] = []
    lost: list[Dg] = []
    wire: list[Dg] = []
    for i in range(6):
        for k in range(8):
            (lost if k % 2 else wire).append(c.send(C2S, c.rnd.randbytes(300), dt=0.002))
        size = 5 if i == 3 else 1200
        parts = [c.rnd.randbytes(size) for _ in range(3)]
        like = parts[0][:8] + c.rnd.randbytes(size - 8) if size > 8 else parts[0][:4] + b"zz"
        decoys.append(c.send(C2S, like, dt=0.002))
        bursts.append([c.send(C2S, x, dt=0.01 if k == 0 else 0.00001, tag=f"b{i}")
                       for k, x in enumerate(parts)])  # fmt: skip
        c.send(S2C, c.rnd.randbytes(80), dt=0.001)
    firsts = {id(b[0]): b"".join(x.data for x in b) for b in bursts}
    rest = {id(x) for b in bursts for x in b[1:]}

    def merged(g: Dg) -> bool:  # the sender's view: a burst is its first piece
        return id(g) in rest or any(g is x for x in (*decoys, *wire))

    def merge(g: Dg) -> Dg:
        for b in bursts:
            if g.d == C2S and g.t == b[0].t and g.data == b[0].data:
                return Dg(g.d, g.t, firsts[id(b[0])], g.ipid, ttl=g.ttl, tag=g.tag, conv=g.conv)
        return g

    views: list[tuple[str, Callable[[Any], View]]] = [
        ("client:eth0", lambda x: View(drop=merged, change=merge)),
        ("srv:eth0", lambda x: View(delay=0.0003, ttl_dec={C2S: 1},
                                    drop=lambda g: any(g is y for y in lost))),
    ]  # fmt: skip
    v = correlate(write_points(tmp_path, [c], views))
    (fl,) = v.flows
    got = sorted((f.kind, f.direction, f.packets) for f in fl.findings)
    assert got == [("drop", "c2s", len(lost)), ("gap", "c2s", len(wire) + len(decoys))], got


def test_ping_to_a_hosts_own_address_names_the_echo_reply(tmp_path: Path) -> None:
    """A ping to fw's own address (stated, as a run's `ip addr` facts give it), one reply
    lost on the wire before the client; fw:eth1 and srv:eth0 carry only a web connection:
    what the echo "lost" beyond fw is trimmed, and the summary, made again after that,
    still says what the packets were (it said 'data dropped')."""
    p = UConv(("203.0.113.10", 4242), ("203.0.113.1", 0), proto="icmp", seed=9)
    p.ping(5)
    lost = {id(g) for g in p.segs if g.d == S2C and g.seq == 3}
    web = Conv(("203.0.113.10", 51234), ("203.0.113.80", 80), t0=1_763_790_000.0, seed=4)
    web.handshake()
    web.request(b"GET / HTTP/1.1\r\n\r\n")
    web.response(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    web.close()

    def at(name: str, **kw: Any) -> Callable[[Any], View]:
        def mk(c: Any) -> View:
            if isinstance(c, UConv) and name in ("fw:eth1", "srv:eth0"):
                return View(drop=lambda g: True)  # the echo ends at fw
            if isinstance(c, UConv):
                return View(drop=(lambda g: id(g) in lost) if name == "client:eth0" else None)
            return four[name](c)

        return mk

    four = dict(four_points(lambda c: nat(c, 61000)))
    views = [(name, at(name)) for name in PATH4]
    v = correlate(write_points(tmp_path, [p, web], views), hosts={"fw": ["203.0.113.1"]})
    (fl,) = [f for f in v.flows if f.proto == "icmp"]
    assert findings(fl) == [("drop", "s2c", ("fw:eth0", "client:eth0"))]
    assert fl.findings[0].packets == 1
    assert fl.summary == (
        "echo reply dropped between fw:eth0 and client:eth0 (seen on fw:eth0, never on client:eth0)"
    )
    (tcp,) = [f for f in v.flows if f.proto == "tcp"]
    assert not tcp.findings


def test_some_pings_never_answered(tmp_path: Path) -> None:
    """srv's host firewall drops 2 of 6 echo requests (they reach srv:eth0, no reply is
    ever made): those 2 are unanswered by srv, the others are not ('OK: delivered both
    ways' was said: only a flow without any answer was looked at)."""
    p = UConv(("203.0.113.10", 4242), ("203.0.113.80", 0), proto="icmp", seed=9)
    p.ping(6)
    p.segs = [g for g in p.segs if not (g.d == S2C and g.seq in (1, 4))]
    p.send(C2S, b"late", dt=3.0, tag="x", seq=9)  # the capture goes on after the last one
    p.send(S2C, b"late", dt=0.0005, tag="x", seq=9)
    v = correlate(write_points(tmp_path, [p], four_points(lambda x: nat(x, 61000))))
    (fl,) = v.flows
    assert findings(fl) == [("drop", "c2s", ("srv:eth0", "srv"))]
    f = fl.findings[0]
    assert f.packets == 2
    assert f.what.startswith("ICMP echo request id=61000 seq=1 ")
    assert f.what.endswith("never answered by srv (others of the flow were answered)")
    assert fl.summary == "echo request reached srv:eth0 but srv never answered it"


def test_some_dns_queries_never_answered(tmp_path: Path) -> None:
    """A resolver that leaves 1 of 4 queries of one socket unanswered (the client's retry
    of another one, same query id, is answered: that one is not)."""
    c = UConv(("203.0.113.10", 40000), ("203.0.113.53", 53), seed=3)
    qs = [dns_query(0x2000 + i, f"h{i}.example.test") for i in range(4)]
    for i, q in enumerate(qs):
        c.send(C2S, q, dt=0.1)
        if i == 3:
            c.send(C2S, q, dt=0.5)  # a retry, answered
        if i != 1:
            c.send(S2C, dns_answer(q, "192.0.2.7"), dt=0.0004)
    c.send(C2S, dns_query(0x2100, "late.example.test"), dt=3.0)
    c.send(S2C, dns_answer(dns_query(0x2100, "late.example.test"), "192.0.2.7"), dt=0.0004)
    (fl,) = udp(through_nat(tmp_path, [c]))
    assert findings(fl) == [("drop", "c2s", ("srv:eth0", "srv"))]
    f = fl.findings[0]
    assert f.packets == 1 and "DNS query 0x2001 A h1.example.test" in f.what
    assert fl.summary == "DNS query reached srv:eth0 but srv never answered it"


def test_healthy_datagram_flows_skip_the_search_with_the_same_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """udp.finish_dflow's shortcut for a flow where nothing can be found (a busy
    resolver's 100 k answered queries through a NAT: 10.0 -> 8.4 s) gives the verdict of
    the whole search, and is not taken for a flow with a finding: a datagram lost at the
    hop, DNS queries left unanswered at the far end, pings without replies."""
    from hopcap.correlate import udp as udp_mod

    c = UConv(("203.0.113.10", 40500), ("203.0.113.53", 53), seed=3)
    qs = [dns_query(0x2000 + i, f"h{i}.example.test") for i in range(3)]
    for i, q in enumerate(qs):
        c.send(C2S, q, dt=0.1)
        if i != 1:  # query 1 never answered
            c.send(S2C, dns_answer(q, "192.0.2.7"), dt=0.0004)
    p = UConv(("203.0.113.11", 4242), ("203.0.113.80", 0), proto="icmp", seed=9)
    p.ping(4)
    p.segs = [g for g in p.segs if not (g.d == S2C and g.seq == 2)]
    for conv in (c, p):  # the capture goes on after them
        conv.send(C2S, b"late", dt=3.0, tag="x", seq=9)
    convs = [quic_flow(), *dns_flows(8), c, p]
    views = four_points(
        lambda x: nat(x, 31000 + x.client[1] % 1000),
        **{"fw:eth1": {"drop": lambda g: g.tag == "c4"}},
    )
    pts = write_points(tmp_path, convs, views)
    seen: list[bool] = []
    healthy = udp_mod._healthy

    def counted(*a: Any) -> bool:
        seen.append(healthy(*a))
        return seen[-1]

    monkeypatch.setattr(udp_mod, "_healthy", counted)
    quick = correlate(pts).to_dict()
    monkeypatch.setattr(udp_mod, "_healthy", lambda *a: False)
    whole = correlate(pts).to_dict()
    assert quick == whole
    broken = [fl for fl in quick["flows"] if fl["findings"]]
    assert len(broken) == 3, [fl["summary"] for fl in broken]  # quic's drop, c, p
    assert seen.count(True) == 8 and seen.count(False) == 3, seen  # the 8 DNS flows


def test_an_unanswered_ping_at_the_capture_end_is_a_gap(tmp_path: Path) -> None:
    """The capture ends right after the last echo request, unanswered: the reply may have
    come after it (a gap); one more than a second before the end is a drop."""
    p = UConv(("203.0.113.10", 4242), ("203.0.113.80", 0), proto="icmp", seed=9)
    p.ping(10)
    p.segs = [g for g in p.segs if not (g.d == S2C and g.seq in (1, 9))]
    v = correlate(write_points(tmp_path, [p], four_points(lambda x: nat(x, 61000))))
    (fl,) = v.flows
    got = [(f.kind, f.between, f.packets, f.what.split(" len=")[0]) for f in fl.findings]
    assert got == [
        ("drop", ("srv:eth0", "srv"), 1, "ICMP echo request id=61000 seq=1"),
        ("gap", ("srv:eth0", "srv"), 1, "ICMP echo request id=61000 seq=9"),
    ]
    assert "ended less than a second after it" in fl.findings[1].what


@pytest.mark.parametrize("beyond", ["tcp only", "other pings"])
def test_pings_to_a_hosts_own_address_some_unanswered(tmp_path: Path, beyond: str) -> None:
    """Pings to fw's own address; fw's input chain drops 2 of 6 echo requests (seen on
    fw:eth0, never answered). fw:eth1 and srv:eth0 see a web connection only, or other
    pings too: either way those 2 are unanswered by fw itself, not trimmed as what the
    flow "lost" beyond fw (the flow was 'OK: ... to fw itself')."""
    p = UConv(("203.0.113.10", 4242), ("203.0.113.1", 0), proto="icmp", seed=9)
    p.ping(6)
    p.segs = [g for g in p.segs if not (g.d == S2C and g.seq in (1, 4))]
    p.send(C2S, b"late", dt=3.0, tag="x", seq=9)
    p.send(S2C, b"late", dt=0.0005, tag="x", seq=9)
    web = Conv(("203.0.113.10", 51234), ("203.0.113.80", 80), t0=1_763_790_000.0, seed=4)
    web.handshake()
    web.request(b"GET / HTTP/1.1\r\n\r\n")
    web.response(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    web.close()
    other = UConv(("203.0.113.10", 4343), ("203.0.113.80", 0), proto="icmp", seed=5)
    other.ping(3)
    convs: list[Any] = [p, web] + ([other] if beyond == "other pings" else [])
    four = dict(four_points(lambda c: nat(c, 61000)))

    def at(name: str) -> Callable[[Any], View]:
        def mk(c: Any) -> View:
            if c is p and name in ("fw:eth1", "srv:eth0"):
                return View(drop=lambda g: True)  # the echo ends at fw
            return four[name](c) if c is not p else View()

        return mk

    views = [(name, at(name)) for name in PATH4]
    v = correlate(write_points(tmp_path, convs, views), hosts={"fw": ["203.0.113.1"]})
    (fl,) = [f for f in v.flows if f.proto == "icmp" and f.client.endswith(":4242")]
    assert findings(fl) == [("drop", "c2s", ("fw:eth0", "fw"))]
    assert fl.findings[0].packets == 2 and "others of the flow were answered" in fl.findings[0].what
    assert fl.summary == "echo request reached fw:eth0 but fw never answered it"
    assert not any(f.findings for f in v.flows if f is not fl)


def test_a_tables_flow_columns_names_and_answer_keys(tmp_path: Path) -> None:
    """What `build_dflows` makes for all flows at once is each flow's own: the columns
    linking reads (first/last time, key, protocol, in flow order), the ends' names (IPv4
    and IPv6); `answer_keys` per datagram: a DNS message's ID, none for a datagram of one
    byte, an echo's sequence number; and whether the capture holds flows of a protocol is
    found by one pass over its rows, not one per flow asking (quadratic in the flows that
    end at the point before: a NAT's lost queries)."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    from hopcap.correlate.dgram import ESP, NO_KEY, build_dflows
    from hopcap.correlate.dgram import UDP as P_UDP
    from hopcap.correlate.reader import captured_proto, endpoint_str, read_capture

    t0 = 1_763_790_000.0
    q = dns_query(0x1234, "a.example.test")
    pk = [
        (t0, IP(src="198.18.0.1", dst="198.18.0.53") / UDP(sport=40000, dport=53) / Raw(q)),
        (t0 + 0.001, IP(src="198.18.0.53", dst="198.18.0.1") / UDP(sport=53, dport=40000)
         / Raw(dns_answer(q, "192.0.2.7"))),
        (t0 + 0.002, IP(src="198.18.0.2", dst="198.18.0.53") / UDP(sport=40001, dport=53)
         / Raw(b"\x07")),
        (t0 + 0.003, IP(src="198.18.0.3", dst="198.18.0.9") / ICMP(type=8, id=77, seq=7)),
        (t0 + 0.004, IPv6(src="2001:db8::1", dst="2001:db8::53") / UDP(sport=40002, dport=53)
         / Raw(q)),
    ]  # fmt: skip
    table = read_capture(write(tmp_path / "x.pcap", pk))
    t = table.dgram
    assert t is not None
    flows = build_dflows(t)
    assert len(flows) == 4 and t.fcols is not None
    assert t.fcols.first.tolist() == [f.first_ts for f in flows]
    assert t.fcols.last.tolist() == [f.last_ts for f in flows]
    assert t.fcols.ukey.tolist() == [f.ukey for f in flows]
    assert t.fcols.proto.tolist() == [f.proto for f in flows]
    for f in flows:
        assert f.client_str == endpoint_str(f.v, *f.cli)
        assert f.server_str == endpoint_str(f.v, *f.srv)
    assert [f.tuple_str for f in flows] == [
        "198.18.0.1:40000 > 198.18.0.53:53",
        "198.18.0.2:40001 > 198.18.0.53:53",
        "198.18.0.3:77 > 198.18.0.9:77",
        "[2001:db8::1]:40002 > [2001:db8::53]:53",
    ]
    assert t.answer_keys().tolist() == [0x1234, 0x1234, NO_KEY, 7, 0x1234]
    assert captured_proto(table, P_UDP) and not captured_proto(table, ESP)
    t.proto[:] = ESP  # (looked at once)
    assert captured_proto(table, P_UDP) and not captured_proto(table, ESP)
