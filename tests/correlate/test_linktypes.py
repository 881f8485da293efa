"""Link layers, tunnels and trailers: every kind read the same by the compiled and the
numpy paths, the inner flow correlated across encapsulated and plain points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pcapgen import (
    C2S,
    S2C,
    Conv,
    View,
    encap,
    link_frame,
    render,
    write_pcap_raw,
    write_pcapng_raw,
)
from typer.testing import CliRunner

from hopcap.correlate import correlate, read_capture
from hopcap.correlate.reader import _COLUMNS, tunnel_str
from hopcap.model import PointInput

T0 = 1_763_790_000.0


def _conv(v6: bool = False, ts: bool = True, seed: int = 5) -> Conv:
    if v6:
        c = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=seed, ts=ts)
    else:
        c = Conv(seed=seed, ts=ts)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 3000)
    c.close()
    return c


def _ips(c: Conv) -> list[tuple[int, bytes]]:
    return [(round(t * 1e9), bytes(p)) for t, p in render([c], View())]


def _write(path: Path, frames: list[tuple[int, int, bytes]]) -> Path:
    """frames: (link type, ts ns, bytes); one link type: classic pcap, else pcapng."""
    links = sorted({lt for lt, _, _ in frames})
    if len(links) == 1:
        return write_pcap_raw(path, [(ts, f) for _, ts, f in frames], linktype=links[0])
    ifs = {lt: i for i, lt in enumerate(links)}
    return write_pcapng_raw(
        path, [(lt, 9) for lt in links], [(ifs[lt], ts, f) for lt, ts, f in frames]
    )


def _same_packets(path: Path, c: Conv, tunnel: str | None = None) -> None:
    """The capture reads as the conversation itself: every segment, inner fields."""
    t = read_capture(path)
    assert t.records == len(c.segs) and len(t) == len(c.segs), (path, t.warnings)
    assert [int(x) for x in t.seq] == [s.seq for s in c.segs]
    assert [int(x) for x in t.plen] == [len(s.data) for s in c.segs]
    assert [int(x) for x in t.pl_cap] == [len(s.data) for s in c.segs]
    assert [int(x) for x in t.ttl] == [s.ttl for s in c.segs]  # the inner header's
    assert [int(x) for x in t.tos] == [0] * len(c.segs)
    assert int(t.mss[0]) == 1460
    for i, s in enumerate(c.segs):
        assert t.payload(i) == s.data
    got = {tunnel_str(int(x)) if x else None for x in t.tun}
    assert got == {tunnel}
    assert not t.warnings
    t.close()


LINKS = [
    ("ether", {}), ("ether", {"tags": (0x8100,)}), ("ether", {"tags": (0x88A8, 0x8100)}),
    ("ether", {"tags": (0x9100, 0x88A8, 0x8100)}), ("ether", {"mpls": 1}),
    ("ether", {"mpls": 3}), ("ether", {"tags": (0x8100,), "mpls": 2}), ("pppoe", {}),
    ("ppp", {}), ("ppp-bare", {}), ("ppp-pfc", {}), ("ppp", {"mpls": 2}), ("ppp-hdlc", {}),
    ("ppp-cisco", {}), ("chdlc", {}), ("null-le", {}), ("null-be", {}), ("loop", {}),
    ("null-le-freebsd", {}), ("loop-darwin", {}), ("sll", {}), ("sll2", {}), ("raw", {}),
    ("raw12", {}), ("raw14", {}),
]  # fmt: skip


def _link_id(p: tuple[str, dict[str, object]]) -> str:
    return p[0] + "".join(f"-{k}{v}" for k, v in p[1].items())


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("spec", LINKS, ids=[_link_id(x) for x in LINKS])
def test_link_types(tmp_path: Path, spec: tuple[str, dict[str, object]], v6: bool) -> None:
    link, kw = spec
    if link.endswith(("freebsd", "darwin")):
        link = link.replace("null-le-", "null-")
    c = _conv(v6)
    frames = [(*link_frame(ip, link, **kw), ts) for ts, ip in _ips(c)]  # type: ignore[arg-type]
    p = _write(tmp_path / "a.pcap", [(lt, ts, f) for lt, f, ts in frames])
    _same_packets(p, c)


@pytest.mark.parametrize("v6", [False, True])
def test_raw_ip_per_version_link_types(tmp_path: Path, v6: bool) -> None:
    c = _conv(v6)
    frames = [(*link_frame(ip, "ipv6" if v6 else "ipv4"), ts) for ts, ip in _ips(c)]
    p = _write(tmp_path / "a.pcap", [(lt, ts, f) for lt, f, ts in frames])
    _same_packets(p, c)


def test_trailers_are_never_payload(tmp_path: Path) -> None:
    """Ethernet padding (small frames padded to 60 bytes) and a vendor trailer after
    every IP packet (F5 BIG-IP `0.0:nnn` captures) read as what the IP header says; a
    point with trailers correlates with one without, no finding."""
    c = _conv(ts=False)  # no TCP options: pure ACKs are 54-byte frames, padded
    plain, trailed = [], []
    for ts, ip in _ips(c):
        lt, fr = link_frame(ip, "ether")
        plain.append((lt, ts, fr))
        fr = fr + b"\x00" * max(0, 60 - len(fr))
        trailed.append((lt, ts + 50_000, fr + b"\x01\x02F5TRAILER" + bytes(range(30))))
    a = _write(tmp_path / "a.pcap", plain)
    b = _write(tmp_path / "b.pcap", trailed)
    _same_packets(b, c)
    raw = [(101, ts, ip + b"\xee" * 9) for ts, ip in _ips(c)]  # raw IP with trailing bytes
    _same_packets(_write(tmp_path / "r.pcap", raw), c)
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b)])
    assert len(v.flows) == 1 and v.flows[0].findings == ()


TUNNELS = [
    ("gre", {}, "gre"), ("gre", {"key": 7, "seq": 1, "csum": True}, "gre key 7"),
    ("gretap", {"key": 9}, "gre key 9"), ("ipip", {}, None), ("vxlan", {}, "vxlan vni 42"),
    ("vxlan8472", {"vni": 7}, "vxlan vni 7"),
    ("geneve", {"opts": b"\x01\x02\x03\x01\xaa\xbb\xcc\xdd", "vni": 5000}, "geneve vni 5000"),
    ("geneve-ip", {"vni": 3}, "geneve vni 3"),
    ("erspan1", {}, "erspan"), ("erspan2", {"vni": 42, "seq": 9}, "erspan session 42"),
    ("erspan3", {"vni": 1023, "seq": 9}, "erspan session 1023"),
    ("erspan3o", {"vni": 5, "seq": 9}, "erspan session 5"),
]  # fmt: skip


def _ipip_name(v6_in: bool, v6_out: bool) -> str:
    return {(False, False): "ipip", (True, False): "ipip 6in4", (False, True): "ipip 4in6",
            (True, True): "ipip 6in6"}[(v6_in, v6_out)]  # fmt: skip


def _tunnel_frames(
    c: Conv, kind: str, kw: dict[str, object], outer_v6: bool, link: str = "ether"
) -> list[tuple[int, int, bytes]]:
    out = []
    for i, (ts, ip) in enumerate(_ips(c)):
        # the outer header varies (TTL, DSCP, source port per packet): none of it is the flow's
        o = encap(ip, kind, outer_v6=outer_v6, ttl=3 + i % 5, tos=(i % 3) << 5, sport=40000 + i,
                  **kw)  # type: ignore[arg-type]  # fmt: skip
        lt, fr = link_frame(o, link)
        out.append((lt, ts + 100_000, fr + b"\xff" * 6))  # trailing bytes after the outer
    return out


@pytest.mark.parametrize("outer_v6", [False, True])
@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("tun", TUNNELS, ids=[f"{t[0]}-{len(t[1])}" for t in TUNNELS])
def test_tunnel_correlated_with_plain(
    tmp_path: Path, tun: tuple[str, dict[str, object], str | None], v6: bool, outer_v6: bool
) -> None:
    kind, kw, want = tun
    if want is None:
        want = _ipip_name(v6, outer_v6)
    c = _conv(v6)
    plain = [(*link_frame(ip, "ether"), ts) for ts, ip in _ips(c)]
    a = _write(tmp_path / "a.pcap", [(lt, ts, f) for lt, f, ts in plain])
    b = _write(tmp_path / "b.pcap", _tunnel_frames(c, kind, kw, outer_v6))
    _same_packets(b, c, want)
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b)])
    assert len(v.flows) == 1, [f.to_dict() for f in v.flows]
    f = v.flows[0]
    assert f.findings == (), f.to_dict()
    assert [leg.link for leg in f.legs] == ["same", "same"]
    assert [leg.tunnel for leg in f.legs] == [None, want]
    d = v.to_dict()["flows"][0]["legs"]
    assert "tunnel" not in d[0] and d[1]["tunnel"] == want


def test_tunnel_nested_and_over_vlan_mpls(tmp_path: Path) -> None:
    """VXLAN inside GRE over a QinQ + MPLS Ethernet: the outermost tunnel is the leg's."""
    c = _conv()
    frames = []
    for ts, ip in _ips(c):
        o = encap(encap(ip, "vxlan", vni=77), "gre", key=5)
        frames.append((*link_frame(o, "ether", tags=(0x88A8, 0x8100), mpls=2), ts))
    p = _write(tmp_path / "a.pcap", [(lt, ts, f) for lt, f, ts in frames])
    _same_packets(p, c, "gre key 5")


def test_not_a_tunnel_is_left_alone(tmp_path: Path) -> None:
    """UDP to 4789 that is no VXLAN (no I flag), GRE with the routing bit, a later
    fragment of a tunnel packet: not decapsulated (and, not TCP, not read)."""
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    c = _conv()
    ts, ip = _ips(c)[3]
    bad = [
        bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(dport=4789) / Raw(b"\x00" * 8 + ip)),
        bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=47) / Raw(b"\x40\x00\x08\x00" + ip)),
        bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=4, frag=100) / Raw(ip)),
        encap(ip, "vxlan")[:60],  # cut inside the inner Ethernet header
    ]
    p = _write(tmp_path / "a.pcap", [(1, ts, link_frame(b, "ether")[1]) for b in bad])
    t = read_capture(p)
    assert t.records == 4 and len(t) == 0


def _all_files(tmp: Path) -> list[Path]:
    files = []
    c4, c6 = _conv(), _conv(v6=True, seed=9)
    for i, (link, kw) in enumerate(LINKS):
        link = link.replace("null-le-", "null-")
        fr = [(*link_frame(ip, link, **kw), ts) for ts, ip in _ips(c4) + _ips(c6)]  # type: ignore[arg-type]
        files.append(_write(tmp / f"l{i}.pcap", [(lt, ts, f) for lt, f, ts in fr]))
    for i, (kind, kw, _want) in enumerate(TUNNELS):
        for outer_v6 in (False, True):
            fr = _tunnel_frames(c4, kind, kw, outer_v6) + _tunnel_frames(c6, kind, kw, outer_v6)
            files.append(_write(tmp / f"t{i}{outer_v6}.pcap", fr))
            # the same in pcapng with a second interface of another link type
            fr += [(9, ts, link_frame(ip, "ppp")[1]) for ts, ip in _ips(c4)]
            files.append(_write(tmp / f"t{i}{outer_v6}.pcapng", fr))
    # damaged headers: every frame cut at every length up to 120 bytes
    base = _tunnel_frames(c4, "vxlan", {}, False)[4][2]
    cut = [(1, 1_000 + n, base[:n]) for n in range(1, 120)]
    files.append(_write(tmp / "cut.pcap", cut))
    return files


def test_compiled_and_numpy_paths_agree_on_links_and_tunnels(tmp_path: Path) -> None:
    from hopcap.correlate import _fastwalk

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    for f in _all_files(tmp_path):
        fast = read_capture(f)
        _fastwalk.disabled = True
        try:
            slow = read_capture(f)
        finally:
            _fastwalk.disabled = False
        assert fast.records == slow.records and len(fast) == len(slow), f
        assert len(fast) or f.name == "cut.pcap", f
        for col in _COLUMNS:
            a, b = np.asarray(getattr(fast, col)), np.asarray(getattr(slow, col))
            assert a.shape == b.shape and (a == b).all(), (f, col)


def test_unsupported_link_type_is_a_missing_point(tmp_path: Path) -> None:
    """A point whose link type cannot be read: a warning naming the point and the link
    type, the point marked missing, gaps for the flows, and `correlate` exits 4."""
    from hopcap.cli import app

    c = _conv()
    a = _write(tmp_path / "a.pcap", [(1, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)])
    b = write_pcap_raw(tmp_path / "wifi.pcap", [(ts, b"\x08\x01" + ip) for ts, ip in _ips(c)],
                       linktype=105)  # fmt: skip
    t = read_capture(b)
    assert len(t) == 0 and t.records == len(c.segs)
    assert any("105 (IEEE 802.11) is not supported" in w for w in t.warnings)
    t.close()
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:wlan0", pcap=b)])
    pb = v.points[1]
    assert pb.missing is not None and "link type 105 (IEEE 802.11)" in pb.missing
    assert pb.packets == len(c.segs) and v.to_dict()["points"][1]["missing"] == pb.missing
    assert any(
        w.startswith("point b:wlan0 is missing") and "link type 105" in w for w in v.warnings
    )
    assert len(v.flows) == 1
    gaps = [x for x in v.flows[0].findings if x.kind == "gap"]
    assert gaps and all(x.kind == "gap" for x in v.flows[0].findings)
    assert "b:wlan0" in gaps[0].what
    res = CliRunner().invoke(app, ["correlate", f"a:eth0={a}", f"b:wlan0={b}"])
    assert res.exit_code == 4, res.output
    assert "link type 105 (IEEE 802.11) is not supported" in res.output
    assert "incomplete: nothing could be used of b:wlan0" in res.output
    # alone, the point gives no flow: said so, not a silent empty verdict
    res = CliRunner().invoke(app, ["correlate", f"b:wlan0={b}"])
    assert res.exit_code == 4, res.output
    assert "no TCP, UDP or ICMP flows were seen at the points that could be read" in res.output


def test_ppp_capture_alone_is_read(tmp_path: Path) -> None:
    """The issue's case: a PPP capture gave "no TCP connections were seen" and exit 0."""
    from hopcap.cli import app

    c = _conv()
    p = _write(tmp_path / "ppp.pcap", [(9, ts, link_frame(ip, "ppp")[1]) for ts, ip in _ips(c)])
    res = CliRunner().invoke(app, ["correlate", "--json", f"r:ppp0={p}"])
    assert res.exit_code == 0, res.output
    assert '"client": "203.0.113.10:51234"' in res.output


def test_point_with_no_tcp_is_a_warning(tmp_path: Path) -> None:
    """A readable capture with no TCP, UDP or ICMP in it (OSPF): the warning names the
    point and link type."""
    from scapy.layers.inet import IP
    from scapy.packet import Raw

    c = _conv()
    a = _write(tmp_path / "a.pcap", [(1, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)])
    hello = Raw(b"\x02\x01" + bytes(22))
    ospf = bytes(IP(src="198.51.100.1", dst="198.51.100.2", proto=89) / hello)
    b = _write(tmp_path / "b.pcap", [(9, int(T0 * 1e9), link_frame(ospf, "ppp")[1])])
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:ppp0", pcap=b)])
    assert any(
        w.startswith("point b:ppp0: no TCP, UDP or ICMP packet could be read from its 1 packets")
        and "link type 9 (PPP)" in w
        for w in v.warnings
    ), v.warnings
    assert v.points[1].missing is None
    assert any(x.kind == "gap" for x in v.flows[0].findings)


def test_empty_point_is_a_warning(tmp_path: Path) -> None:
    c = _conv()
    a = _write(tmp_path / "a.pcap", [(1, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)])
    b = write_pcap_raw(tmp_path / "b.pcap", [])
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b)])
    assert "point b:eth0 captured no packets" in v.warnings
    assert any(x.kind == "gap" for x in v.flows[0].findings)


def test_tunnel_in_bundle_report_and_verdict_round_trip(tmp_path: Path) -> None:
    """A broken flow through a VXLAN point: the report's leg table names the tunnel, and
    verdict.json read back keeps it (and a missing point's reason)."""
    import json

    from hopcap.bundle import write_offline_bundle
    from hopcap.model import Verdict

    c = Conv(seed=5)
    c.handshake()
    req = c.seg(C2S, "PA", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", tag="req")
    c.retransmit(req)  # lost before b:eth0 (cut below), sent again, then acknowledged
    c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
    c.response(b"r" * 3000)
    c.close()
    plain = [(1, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    a = _write(tmp_path / "a.pcap", plain)
    tunnelled = _tunnel_frames(c, "vxlan", {}, False)
    lost = c.segs.index(req)
    b = _write(tmp_path / "b.pcap", tunnelled[:lost] + tunnelled[lost + 1 :])
    wifi = write_pcap_raw(tmp_path / "w.pcap", [(ts, b"\x08\x01" + ip) for ts, ip in _ips(c)],
                          linktype=105)  # fmt: skip
    pts = [PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b),
           PointInput(name="c:wlan0", pcap=wifi)]  # fmt: skip
    v = correlate(pts)
    assert v.flows[0].broken and v.flows[0].legs[1].tunnel == "vxlan vni 42"
    out = write_offline_bundle(tmp_path / "bundle", pts, v)
    # the report shows the tunnel next to the leg's link
    assert "| same (vxlan vni 42) |" in (out / "report.md").read_text()
    assert "<td>same (vxlan vni 42)</td>" in (out / "report.html").read_text()
    back = Verdict.from_dict(json.loads((out / "verdict.json").read_text()))
    assert back.flows[0].legs[1].tunnel == "vxlan vni 42" and back.flows[0].legs[0].tunnel is None
    assert back.points[2].missing is not None and "105" in back.points[2].missing
    assert back.to_dict() == v.to_dict()


def test_pcapng_with_one_unsupported_interface(tmp_path: Path) -> None:
    """pcapng with an Ethernet and an 802.11 interface: the Ethernet packets are read,
    the others counted in a warning; the point is not missing."""
    c = _conv()
    ips = _ips(c)
    pk = [(0, ts, link_frame(ip, "ether")[1]) for ts, ip in ips]
    pk += [(1, ts + 1, b"\x08\x01" + ip) for ts, ip in ips[:4]]
    p = write_pcapng_raw(tmp_path / "a.pcapng", [(1, 9), (105, 9)], pk)
    t = read_capture(p)
    assert len(t) == len(c.segs) and t.link_types == {1: len(c.segs), 105: 4}
    assert t.warnings == [
        f"a.pcapng: link type 105 (IEEE 802.11) is not supported: 4 of {len(pk)} packets "
        "could not be read"
    ]
    t.close()
    v = correlate([PointInput(name="a:eth0", pcap=p)])
    assert v.points[0].missing is None and len(v.flows) == 1


def test_datagrams_inside_tunnels_and_the_overlays_arp(tmp_path: Path) -> None:
    """DNS inside VXLAN (and GRE) at one point, plain at the next: one UDP flow per query,
    delivered (the datagram layer gets the innermost IP level from the shared L3 walk, the
    same in C and numpy); the overlay's own ARP inside VXLAN is tunnel transport, no flow."""
    import struct

    from pcapgen import dns_answer, dns_query
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import Raw

    from hopcap.correlate import _fastwalk

    plain: list[tuple[int, int, bytes]] = []
    tunnelled: list[tuple[int, int, bytes]] = []
    t = round(T0 * 1e9)
    for i, kind in enumerate(("vxlan", "gre", "vxlan")):
        q = dns_query(100 + i, "example.org")
        for src, dst, sp, dp, data in (
            ("198.51.100.1", "198.51.100.2", 40000 + i, 53, q),
            ("198.51.100.2", "198.51.100.1", 53, 40000 + i, dns_answer(q, "192.0.2.9")),
        ):
            ip = bytes(IP(src=src, dst=dst, id=7 + i, ttl=64) / UDP(sport=sp, dport=dp) / data)
            t += 1_000_000
            plain.append((1, t, link_frame(ip, "ether")[1]))
            tunnelled.append((1, t + 200_000, link_frame(encap(ip, kind), "ether")[1]))
    arp = struct.pack(">BxxxI", 0x08, 42 << 8) + bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP())
    outer = bytes(IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=50000, dport=4789) / Raw(arp))
    for k in range(4):
        tunnelled.append((1, t + k * 1_000_000, link_frame(outer, "ether")[1]))
    a = _write(tmp_path / "a.pcap", plain)
    b = _write(tmp_path / "b.pcap", tunnelled)
    fast = read_capture(b).dgram
    _fastwalk.disabled = True
    try:
        slow = read_capture(b).dgram
    finally:
        _fastwalk.disabled = False
    assert len(fast) == 6
    for col in ("ts", "src_lo", "dst_lo", "sport", "dport", "plen", "pl_off", "pl_cap", "h"):
        assert (getattr(fast, col) == getattr(slow, col)).all(), col
    v = correlate([PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b)])
    assert sorted(f.proto for f in v.flows) == ["udp"] * 3, [f.to_dict() for f in v.flows]
    assert all(len(f.legs) == 2 and not f.findings for f in v.flows), v.flows
