"""One F5 BIG-IP capture on `0.0:nnnp` holding both sides of its proxied connections: split
into lb:client-side and lb:server-side by the trailers' flow ids (and by address where a
connection has no pair), then linked exactly; frames built from the trailer description
(tests/f5gen.py), legacy and 14.1+ (DPT) formats."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from pcapgen import C2S, Conv, Seg, View, render, write, write_pcap_raw
from typer.testing import CliRunner

from hopcap.cli import app
from hopcap.correlate import correlate
from hopcap.correlate.stages import plan_stages
from hopcap.model import Flow, PointInput, Verdict
from tests import f5gen as g

MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
T0 = 1_763_790_000.0
REQ = b"GET /api HTTP/1.1\r\nHost: app\r\nUser-Agent: probe\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"x" * 64
VIP = ("203.0.113.80", 80)
SNAT = "198.51.100.5"
SELF = "198.51.100.4"  # the monitor's source: a self IP no proxied connection used
P1, P2 = ("198.51.100.80", 8080), ("198.51.100.81", 8080)
VER, CMD = "BIG-IP 17.1.0", "tcpdump -ni 0.0:nnnp -s0 -w /var/tmp/case.pcap"


@dataclass
class Side:
    conv: Conv
    flow: int
    peer: int
    peer_t: float  # when the peer flow appeared (the client side learns it then)
    client_side: bool  # on the client side of BIG-IP (else on the server side)


@dataclass
class Run:
    sides: list[Side]
    expect: dict[str, str]  # client endpoint -> server-side endpoint BIG-IP used
    lost: Seg  # the server-side segment lost between BIG-IP and the pool member


def _scenario() -> Run:
    """Three clients send the same request to one virtual server within 0.6 ms; BIG-IP
    opens the server-side connections in another order, to two pool members (two to P1),
    all carrying the same bytes, and answers the clients together: content and time alone
    cannot tell which is whose (they pair every one wrongly).
    The request on c1's server-side connection is lost on its way to P1 and resent. A
    monitor from a self IP to P2 and a client whose SYNs got no answer have no peer."""
    routes = [  # client, pool member, SNAT port, server side opened (after T0)
        (("203.0.113.10", 40001), P1, 50001, 0.0046),
        (("203.0.113.11", 40002), P2, 50002, 0.0052),
        (("203.0.113.12", 40003), P1, 50003, 0.0049),
    ]
    sides: list[Side] = []
    expect = {}
    lost = None
    pairs = []
    for i, (client, member, sport, opened) in enumerate(routes):
        front = Conv(client=client, server=VIP, t0=T0 + i * 0.0003, rtt=0.004, seed=10 + i)
        front.handshake()
        front.seg(C2S, "PA", REQ, tag="req", dt=0.0002)
        back = Conv(client=(SNAT, sport), server=member, t0=T0 + opened, rtt=0.0002, seed=20 + i)
        back.handshake()
        if i == 0:
            lost = back.seg(C2S, "PA", REQ, tag="req")
            back.retransmit(lost, dt=0.0006)
            back.seg("s2c", "A", tag="ack", dt=back.rtt / 2)
        else:
            back.request(REQ)
        back.response(RESP)
        back.close()
        pairs.append((front, back))
        expect[f"{client[0]}:{client[1]}"] = f"{SNAT}:{sport}"
    # BIG-IP answers the three clients together, once every server side has answered
    answer = max(b.t for _f, b in pairs) + 0.0005
    for i, (front, back) in enumerate(pairs):
        front.t = answer + i * 0.00002
        front.seg("s2c", "A", tag="ack", dt=0)
        front.send("s2c", RESP, tag="resp")
        front.close()
        ff, bf = 0x1000 + i, 0xB000 + i
        sides.append(Side(front, ff, bf, back.segs[0].t, True))
        sides.append(Side(back, bf, ff, 0.0, False))
    mon = Conv(client=(SELF, 40100), server=P2, t0=T0 + 1.0, rtt=0.0002, seed=30)
    mon.handshake()
    mon.request(b"GET /health HTTP/1.0\r\n\r\n")
    mon.response(b"HTTP/1.0 200 OK\r\n\r\n")
    mon.close()
    sides.append(Side(mon, 0xC000, 0, 0.0, False))
    lone = Conv(client=("203.0.113.13", 40009), server=VIP, t0=T0 + 2.0, seed=31)
    lone.handshake(answered=False, syn_retries=1)
    sides.append(Side(lone, 0xD000, 0, 0.0, True))
    assert lost is not None
    return Run(sides, expect, lost)


def _f5_frames(run: Run, *, fmt: str | None) -> list[tuple[int, bytes]]:
    """What one tcpdump on 0.0:nnnp wrote: every connection of both sides, each packet
    with its trailer (`fmt` None: an ordinary capture, no trailer, no information packet)."""
    out = []
    if fmt is not None:
        out.append((round(T0 * 1e9) - 1_000_000, g.fileinfo_frame(CMD, VER, "lb1.example")))
    for s in run.sides:
        segs = sorted(s.conv.segs, key=lambda x: x.t)  # in render's order
        for seg, (t, pkt) in zip(segs, render([s.conv], View()), strict=True):
            fr = MAC + b"\x08\x00" + bytes(pkt)
            if fmt is not None:
                fr += b"\x00" * max(0, 60 - len(fr))
                peer = s.peer if t >= s.peer_t else 0
                # into TMM: what the client sends on the client side, what the member
                # answers on the server side
                ingress = (seg.d == C2S) == s.client_side
                if fmt == "dpt":
                    fr += g.dpt(
                        g.dpt_low(ingress=ingress, tmm=0, vip="/Common/vs_app"),
                        g.dpt_med(flow=s.flow, peer=peer),
                        *([g.dpt_high(*_peer(run, s))] if peer else []),
                    )
                else:
                    fr += (
                        g.legacy_low(ingress=ingress, vip="/Common/vs_app")
                        + g.legacy_med(flow=s.flow, peer=peer)
                        + (g.legacy_high(*_peer(run, s)) if peer else b"")
                    )
            out.append((round(t * 1e9), fr))
    return sorted(out)


def _peer(run: Run, s: Side) -> tuple[str, int, str, int]:
    """High detail: the peer flow's remote and local address."""
    p = next(x for x in run.sides if x.flow == s.peer)
    c, v = p.conv.client, p.conv.server
    return (v[0], v[1], c[0], c[1]) if p.client_side else (c[0], c[1], v[0], v[1])


def _write(tmp: Path, run: Run, fmt: str | None) -> dict[str, Path]:
    fronts = [s.conv for s in run.sides if s.client_side]
    backs = [s.conv for s in run.sides if not s.client_side]
    return {
        "client": write(tmp / "c.pcap", render(fronts, View(delay=-0.0002))),
        "lb": write_pcap_raw(tmp / f"f5-{fmt}.pcap", _f5_frames(run, fmt=fmt)),
        "srv": write(
            tmp / "s.pcap", render(backs, View(delay=0.0001, drop=lambda x: x is run.lost))
        ),
    }


def _points(files: dict[str, Path]) -> list[PointInput]:
    return [PointInput(name, path) for name, path in files.items()]


def _flow_of(v: Verdict, client: str) -> Flow:
    return next(f for f in v.flows if f.legs[0].tuple.startswith(client + " > "))


def _server_side(v: Verdict, client: str, point: str) -> str:
    leg = next(leg for leg in _flow_of(v, client).legs if leg.point == point)
    return leg.tuple.split(" > ")[0]


def test_content_alone_is_a_guess_here(tmp_path: Path) -> None:
    """The scenario is ambiguous: the same connections without trailers, captured one
    point per VLAN, are linked by content and time alone, one server side each, and every
    server side fits the time order of more than one client (by the nearest start every
    link came out wrong; by the shortest relay of the answer they come out right here, by
    luck of the order BIG-IP answered in: the trailers are what says it)."""
    run = _scenario()
    files = _write(tmp_path, run, "dpt")
    fronts = [s.conv for s in run.sides if s.client_side]
    backs = [s.conv for s in run.sides if not s.client_side]
    pts = [
        PointInput("client", files["client"]),
        PointInput("lb:external", write(tmp_path / "ext.pcap", render(fronts, View()))),
        PointInput("lb:internal", write(tmp_path / "int.pcap", render(backs, View()))),
        PointInput("srv", files["srv"]),
    ]
    v = correlate(pts)
    got = {client: _server_side(v, client, "lb:internal") for client in run.expect}
    assert sorted(got.values()) == sorted(run.expect.values())  # (one each)
    assert not any("F5 trailer" in d for f in v.flows for leg in f.legs for d in leg.details)

    # each client's request arrived before every server side's left, and every server
    # side's answer before each client's: content and time allow any pairing
    def times(convs: list[Conv], tag: str, key: str) -> list[float]:
        return [
            max(x.t for x in c.segs if x.tag == tag)
            for c in convs
            if f"{c.client[0]}:{c.client[1]}" in (run.expect if key == "c" else got.values())
        ]

    assert max(times(fronts, "req", "c")) < min(times(backs, "req", "b"))
    assert max(times(backs, "resp", "b")) < min(times(fronts, "resp", "c"))


@pytest.mark.parametrize("fmt", ["dpt", "legacy"])
def test_one_capture_links_each_client_to_its_server_side(tmp_path: Path, fmt: str) -> None:
    run = _scenario()
    v = correlate(_points(_write(tmp_path, run, fmt)))
    assert [p.name for p in v.points] == ["client", "lb:client-side", "lb:server-side", "srv"]
    for client, back in run.expect.items():
        f = _flow_of(v, client)
        legs = {leg.point: leg for leg in f.legs}
        assert legs["lb:client-side"].tuple == f"{client} > {VIP[0]}:{VIP[1]}"
        ss = legs["lb:server-side"]
        assert ss.tuple.startswith(f"{back} > "), (client, ss.tuple)
        assert ss.details[0].startswith("linked by the F5 trailer: flow id 0x"), ss.details
        assert legs["srv"].tuple == ss.tuple
    # the lost request: between BIG-IP and P1, nowhere else
    bad = _flow_of(v, "203.0.113.10:40001")
    assert [(x.kind, x.direction, x.between, x.packets) for x in bad.findings] == [
        ("drop", "c2s", ("lb:server-side", "srv"), 1)
    ]
    for client in ("203.0.113.11:40002", "203.0.113.12:40003"):
        assert _flow_of(v, client).findings == ()
    # no pair in the capture: placed by address (a pool member; the virtual server)
    mon = _flow_of(v, f"{SELF}:40100")
    assert [leg.point for leg in mon.legs] == ["lb:server-side", "srv"] and mon.findings == ()
    lone = _flow_of(v, "203.0.113.13:40009")
    assert [leg.point for leg in lone.legs][:2] == ["client", "lb:client-side"]
    assert len(v.flows) == 5
    split = next(w for w in v.warnings if "one BIG-IP capture" in w)
    assert "lb:client-side (4 connection(s)" in split and "(4 of BIG-IP" in split
    assert "placed 6 by the trailers' flow ids, 2 by address" in split
    dev = {p.name: p.device for p in v.points}
    assert dev["lb:client-side"] == dev["lb:server-side"]
    assert dev["lb:client-side"] == f"{VER}, lb1.example, Z100, captured with `{CMD}`"
    assert dev["client"] is None and dev["srv"] is None


def test_a_capture_without_trailers_is_not_touched(tmp_path: Path) -> None:
    run = _scenario()
    files = _write(tmp_path, run, None)
    plan = plan_stages(_points(files))
    assert [p.name for p in plan.points] == ["client", "lb", "srv"]
    assert plan.tables == {} and plan.f5 == {} and plan.devices == {}
    v = correlate(_points(files))
    assert [p.name for p in v.points] == ["client", "lb", "srv"]
    assert not any("BIG-IP" in w for w in v.warnings)
    assert all(p.device is None for p in v.points)


def test_one_vlan_with_trailers_is_not_split(tmp_path: Path) -> None:
    """Trailers, but only the client side's connections (a capture of one VLAN without
    `p`): no pair, nothing to split; its table is read once and handed on."""
    run = _scenario()
    run.sides = [s for s in run.sides if s.client_side]
    for s in run.sides:
        s.peer_t = float("inf")  # peer ids of flows not in the capture: no pair
    files = _write(tmp_path, run, "dpt")
    plan = plan_stages(_points(files))
    assert [p.name for p in plan.points] == ["client", "lb", "srv"]
    assert list(plan.tables) == ["lb"] and plan.f5 == {}
    for t in plan.tables.values():
        t.close()


def test_two_points_of_one_bigip_are_not_split(tmp_path: Path) -> None:
    """Two points of the same BIG-IP (its VLANs) are one side each already."""
    run = _scenario()
    f5 = write_pcap_raw(tmp_path / "f5.pcap", _f5_frames(run, fmt="dpt"))
    pts = [PointInput("lb:external:nnnp", f5), PointInput("lb:internal:nnnp", f5)]
    plan = plan_stages(pts)
    assert [p.name for p in plan.points] == ["lb:external:nnnp", "lb:internal:nnnp"]
    assert plan.f5 == {}


def test_cli_one_capture(tmp_path: Path) -> None:
    run = _scenario()
    files = _write(tmp_path, run, "dpt")
    args = ["correlate", *(f"{k}={p}" for k, p in files.items())]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "lb:client-side" in r.output and "lb:server-side" in r.output
    assert f"lb:client-side, lb:server-side: {VER}, lb1.example" in r.output
    assert "drop" in r.output and "lb:server-side" in r.output
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [p["name"] for p in d["points"]] == ["client", "lb:client-side", "lb:server-side", "srv"]
    assert d["points"][1]["device"].startswith(VER)
    linked = [
        leg["details"][0]
        for f in d["flows"]
        for leg in f["legs"]
        if leg["point"] == "lb:server-side" and leg.get("details")
    ]
    assert len(linked) == 3 and all("linked by the F5 trailer" in x for x in linked)


def test_fastl4_same_tuple_split_by_flow(tmp_path: Path) -> None:
    """A fastL4 virtual server that changes no address: each packet is in the capture
    twice, with the client flow's id as it came in and the server flow's as it left. The
    tuple is the same: the flow ids alone put each copy on its side."""
    conv = Conv(client=("203.0.113.20", 41000), server=P1, t0=T0, rtt=0.002, seed=40)
    conv.handshake()
    conv.request(REQ)
    conv.response(RESP)
    conv.close()
    frames = []
    for seg, (t, pkt) in zip(conv.segs, render([conv], View()), strict=True):
        for k, flow in enumerate((0xF1, 0xF2)):  # in on one side, out on the other
            peer = 0xF2 if flow == 0xF1 else 0xF1
            ingress = (seg.d == C2S) == (flow == 0xF1)
            dt = 10_000 * (k if seg.d == C2S else 1 - k)  # the copy going out is later
            fr = MAC + b"\x08\x00" + bytes(pkt)
            fr += b"\x00" * max(0, 60 - len(fr))
            fr += g.dpt(
                g.dpt_low(ingress=ingress, vip="/Common/vs_l4"), g.dpt_med(flow=flow, peer=peer)
            )
            frames.append((round(t * 1e9) + dt, fr))
    f5 = write_pcap_raw(tmp_path / "l4.pcap", sorted(frames))
    plan = plan_stages([PointInput("lb", f5)])
    assert [p.name for p in plan.points] == ["lb:client-side", "lb:server-side"]
    n = len(conv.segs)
    for name in ("lb:client-side", "lb:server-side"):
        t = plan.tables[name]
        assert len(t) == n
        # each side holds one copy of every packet, in order
        assert t.seq.tolist() == plan.tables["lb:client-side"].seq.tolist()
    cs, ss = plan.tables["lb:client-side"], plan.tables["lb:server-side"]
    # the client's packets enter on the client side first, the server's on the server side
    c2s = [i for i, s in enumerate(conv.segs) if s.d == C2S]
    s2c = [i for i, s in enumerate(conv.segs) if s.d != C2S]
    assert all(int(cs.ts[i]) < int(ss.ts[i]) for i in c2s)
    assert all(int(ss.ts[i]) < int(cs.ts[i]) for i in s2c)
    for t in plan.tables.values():
        t.close()
    v = correlate([PointInput("lb", f5)])
    assert len(v.flows) == 1 and v.flows[0].findings == ()
    assert [leg.point for leg in v.flows[0].legs] == ["lb:client-side", "lb:server-side"]


DNS_VIP = ("203.0.113.53", 53)
MEMBERS = ("198.51.100.90", "198.51.100.91")


def _dns_frames(tmp: Path) -> dict[str, Path]:
    """A DNS virtual server (UDP): each client query goes out on the server side from the
    SNAT address to a pool member and the answer comes back (flow ids paired in the
    trailers; the client side learns its peer once the server side exists). The second
    query is lost between BIG-IP and its member; the third member answers with a port
    unreachable that BIG-IP gave no trailer (placed by the addresses it quotes)."""
    from scapy.layers.inet import ICMP, IP, UDP

    def udp(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes:
        return bytes(IP(src=src[0], dst=dst[0], ttl=60) / UDP(sport=src[1], dport=dst[1]) / data)

    client: list[tuple[int, bytes]] = []
    lb: list[tuple[int, bytes]] = [(round(T0 * 1e9) - 1_000_000, g.fileinfo_frame(CMD, VER, "lb1"))]
    srv: list[tuple[int, bytes]] = []

    def at_lb(t: float, pkt: bytes, flow: int, peer: int, *, ingress: bool) -> None:
        fr = MAC + b"\x08\x00" + pkt
        fr += b"\x00" * max(0, 60 - len(fr))
        trailer = g.dpt(
            g.dpt_low(ingress=ingress, vip="/Common/vs_dns"), g.dpt_med(flow=flow, peer=peer)
        )
        lb.append((round(t * 1e9), fr + trailer))

    def eth(t: float, pkt: bytes) -> tuple[int, bytes]:
        return (round(t * 1e9), MAC + b"\x08\x00" + pkt)

    for i, member in enumerate(MEMBERS[:1] * 2 + MEMBERS[1:]):
        t = T0 + i * 0.01
        c = (f"203.0.113.{30 + i}", 5300 + i)
        snat = (SNAT, 61000 + i)
        q = (
            b"\x12\x34"
            + bytes([i])
            + b"\x01\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x00\x00\x01\x00\x01"
        )
        a = q[:2] + b"\x81\x80" + q[4:] + b"answer"
        cf, sf = 0xE000 + i, 0xE100 + i
        client.append(eth(t, udp(c, DNS_VIP, q)))
        at_lb(t + 0.0001, udp(c, DNS_VIP, q), cf, 0, ingress=True)
        at_lb(t + 0.0002, udp(snat, (member, 53), q), sf, cf, ingress=False)
        if i == 1:
            continue  # lost on its way to the member; the client gets nothing
        if i == 2:  # the member's DNS server is down
            err = (
                bytes(IP(src=member, dst=SNAT, ttl=64) / ICMP(type=3, code=3))
                + udp(snat, (member, 53), q)[:28]
            )
            srv += [eth(t + 0.0003, udp(snat, (member, 53), q)), eth(t + 0.0004, err)]
            lb.append((round((t + 0.0005) * 1e9), MAC + b"\x08\x00" + err))
            continue
        srv += [
            eth(t + 0.0003, udp(snat, (member, 53), q)),
            eth(t + 0.0005, udp((member, 53), snat, a)),
        ]
        at_lb(t + 0.0006, udp((member, 53), snat, a), sf, cf, ingress=True)
        at_lb(t + 0.0007, udp(DNS_VIP, c, a), cf, sf, ingress=False)
        client.append(eth(t + 0.0008, udp(DNS_VIP, c, a)))
    return {
        "client": write_pcap_raw(tmp / "c.pcap", sorted(client)),
        "lb": write_pcap_raw(tmp / "lb.pcap", sorted(lb)),
        "srv": write_pcap_raw(tmp / "s.pcap", sorted(srv)),
    }


def test_udp_virtual_server_is_split_too(tmp_path: Path) -> None:
    """A capture of a DNS virtual server alone (no TCP at all) is split by the datagrams'
    flow ids: the client's queries on the client side, BIG-IP's to the pool members on
    the server side; the lost query is lost between lb:server-side and srv."""
    files = _dns_frames(tmp_path)
    plan = plan_stages(_points(files))
    assert [p.name for p in plan.points] == ["client", "lb:client-side", "lb:server-side", "srv"]
    cs, ss = plan.tables["lb:client-side"].dgram, plan.tables["lb:server-side"].dgram
    assert len(cs) == 4 and len(ss) == 5  # 3 queries + 1 answer; 3 + 1 + the ICMP error
    assert (cs.dport[cs.role == 0] == 53).sum() == 3
    assert set(ss.role.tolist()) == {0, 1}
    for t in plan.tables.values():
        t.close()
    v = correlate(_points(files))
    split = next(w for w in v.warnings if "one BIG-IP capture" in w)
    assert "UDP/ICMP packets: 4 on lb:client-side, 5 on lb:server-side" in split
    lost = [f for f in v.flows if any(x.kind == "drop" for x in f.findings)]
    assert len(lost) == 1
    assert [(x.kind, x.between) for x in lost[0].findings] == [("drop", ("lb:server-side", "srv"))]
    legs = {leg.point: leg.tuple for leg in lost[0].legs}
    assert legs["client"] == f"203.0.113.31:5301 > {DNS_VIP[0]}:53"
    assert legs["lb:server-side"] == f"{SNAT}:61001 > {MEMBERS[0]}:53"
    ok = next(f for f in v.flows if f.legs[0].tuple.startswith("203.0.113.30:5300 > "))
    assert [leg.point for leg in ok.legs] == [p.name for p in v.points] and not ok.findings
    assert [p.packets for p in v.points] == [4, 4, 5, 4]
