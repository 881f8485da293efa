"""A capture that ended before the others without saying so (tcpdump -c N, the first of
several rotated files given alone, a full disk, a reboot): what should have crossed it
after its last packet is a gap there, not a drop, an injection or a connection answered
before it; and what is not such an end (a quiet end, a device that drops every SYN after
some time, a RST injected right after a point's last packet) stays what it was."""

from __future__ import annotations

from pathlib import Path

from pcapgen import C2S, S2C, Conv, Seg, UConv, View, render, render_dgrams, write
from test_path import HTTP_REQ, all_findings
from test_slices import _same

from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict

T0 = 1_763_790_000.0


def _convs(n: int = 3, *, gap: float = 1.0) -> list[Conv]:
    out = []
    for i in range(n):
        c = Conv(client=("203.0.113.10", 40000 + i), seed=i + 1, t0=T0 + i * gap)
        c.handshake()
        c.request(b"GET / HTTP/1.1\r\n\r\n")
        c.response(b"x" * 3000)
        c.close()
        out.append(c)
    return out


def _write(tmp: Path, name: str, convs: list[Conv], view: View, until: float | None = None) -> Path:
    pk = render(convs, view)
    if until is not None:
        pk = [x for x in pk if x[0] < until]
    return write(tmp / f"{name}.pcap", pk)


def _kinds(v: Verdict) -> list[str]:
    return [f.kind for f in all_findings(v)]


def test_a_capture_that_ended_early_makes_gaps_not_drops_or_answers(tmp_path: Path) -> None:
    """b's capture stops in the middle of the second of three connections (its last
    packet is the first response segment): the second's rest and the third are gaps at b,
    with a warning naming b and when its capture ended; the first is delivered."""
    cs = _convs()
    cut = cs[1].segs[5].t
    a = _write(tmp_path, "a", cs, View())
    b = _write(tmp_path, "b", cs, View(delay=0.0002), until=cut)
    pts = [PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)]
    v = correlate(pts)
    kinds = _kinds(v)
    assert "drop" not in kinds and "inject" not in kinds, [f.what for f in all_findings(v)]
    by_port = {fl.client: fl for fl in v.flows}
    assert by_port["203.0.113.10:40000"].summary.startswith("OK: delivered both ways")
    for port in (40001, 40002):
        fl = by_port[f"203.0.113.10:{port}"]
        assert fl.summary.startswith("incomplete evidence between a and b"), fl.summary
        assert "answered before b (a device" not in fl.summary
        assert {f.kind for f in fl.findings} == {"gap"}
        assert all("the capture at b ended before these packets" in f.what for f in fl.findings)
    [w] = [w for w in v.warnings if "point b" in w]
    assert "its capture ended at 05:40:01.002 UTC" in w and "a gap" in w
    assert _same(pts, (10, 30)) == v.to_dict()  # (by time slices: the same)


def test_a_stop_time_given_makes_a_connection_answered_after_it_a_gap(tmp_path: Path) -> None:
    """With b's stop time given (a bundle's manifest), a connection answered at a after
    it is a gap at b, not one answered by a device before b."""
    cs = _convs()
    cut = cs[1].segs[5].t
    a = _write(tmp_path, "a", cs, View())
    b = _write(tmp_path, "b", cs, View(delay=0.0002), until=cut)
    v = correlate([
        PointInput(name="a", pcap=a),
        PointInput(name="b", pcap=b, start_ts=T0 - 1, stop_ts=cut + 0.0001),
    ])  # fmt: skip
    [fl] = [fl for fl in v.flows if fl.client == "203.0.113.10:40002"]
    [f] = fl.findings
    assert f.kind == "gap" and f.between == ("a", "b") and f.packet == "SYN", f
    assert "answered, never at b, but the capture at b ended before" in f.what
    assert not [w for w in v.warnings if "point b" in w]  # (its end was given, not inferred)


def test_a_point_between_two_others_that_ended_early(tmp_path: Path) -> None:
    """a -> b -> c, b's capture stops in the middle of a connection: what a and c saw of
    it afterwards are gaps at b (not a drop before b and an injection after it)."""
    cs = _convs()
    cut = cs[1].segs[5].t
    a = _write(tmp_path, "a", cs, View())
    b = _write(tmp_path, "b", cs, View(delay=0.0001), until=cut)
    c = _write(tmp_path, "c", cs, View(delay=0.0002))
    v = correlate([PointInput(name=n, pcap=p) for n, p in (("a", a), ("b", b), ("c", c))])
    assert set(_kinds(v)) == {"gap"}, [f.what for f in all_findings(v)]
    assert [w for w in v.warnings if w.startswith("point b: its capture ended at")]


def test_one_long_download_cut_at_one_point(tmp_path: Path) -> None:
    """One connection: b's capture stops while the download it carried goes on at a for
    seconds (the server's data and the client's ACKs): gaps at b, not drops."""
    c = Conv(client=("203.0.113.10", 40100), seed=9, t0=T0)
    c.handshake()
    c.request(b"GET /big HTTP/1.1\r\n\r\n")
    for _ in range(40):
        c.send(S2C, b"y" * 2896, burst=False)
        c.t += 0.1
    c.close()
    cut = c.segs[20].t
    a = _write(tmp_path, "a", [c], View())
    b = _write(tmp_path, "b", [c], View(delay=0.0002), until=cut)
    pts = [PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)]
    v = correlate(pts)
    assert set(_kinds(v)) == {"gap"}, [f.what for f in all_findings(v)]
    assert [w for w in v.warnings if w.startswith("point b: its capture ended at")]
    assert _same(pts, (10,)) == v.to_dict()


def test_syns_dropped_after_some_time_stay_drops(tmp_path: Path) -> None:
    """fw starts dropping every SYN after two good connections (the lab's fw-drop-syn,
    applied during the capture): fw:eth1 sees nothing after them, but nothing answered the
    later SYNs either: dropped inside fw, not a capture that ended."""
    good = _convs(2)
    bad = []
    for i in range(3):
        c = Conv(client=("203.0.113.10", 41000 + i), seed=20 + i, t0=T0 + 3 + i)
        c.handshake(answered=False, syn_retries=2)
        bad.append(c)
    e0 = _write(tmp_path, "fw_eth0", good + bad, View())
    e1 = _write(tmp_path, "fw_eth1", good, View(delay=0.0001, ttl_dec={C2S: 1}))
    v = correlate([PointInput(name="fw:eth0", pcap=e0), PointInput(name="fw:eth1", pcap=e1)])
    drops = [f for f in all_findings(v) if f.kind == "drop"]
    assert len(drops) == 3 and all(f.packet == "SYN" for f in drops), _kinds(v)
    assert "gap" not in _kinds(v)
    assert not [w for w in v.warnings if "capture ended" in w]


def test_a_quiet_end_and_a_reset_injected_after_the_last_packet(tmp_path: Path) -> None:
    """The last connection's GET is dropped inside fw and answered with a RST of fw's own
    (the lab's fw-rst-get): fw:eth1's last packet is that connection's handshake, then
    nothing more happens anywhere. A drop and an injection, not a capture that ended."""
    good = _convs(2)
    victim = Conv(client=("203.0.113.10", 43010), seed=510, t0=T0 + 3)
    victim.handshake()
    get = victim.seg(C2S, "PA", HTTP_REQ, tag="get")
    rst = Seg(d=S2C, t=get.t + 0.00002, flags="R", seq=victim.nxt[S2C], ack=0, conv=victim)
    e0 = _write(tmp_path, "fw_eth0", [*good, victim], View(extra=[rst]))
    e1 = write(tmp_path / "fw_eth1.pcap", [
        x for x in render([*good, victim], View(delay=0.0001, drop=lambda s: s.tag == "get"))
    ])  # fmt: skip
    v = correlate([PointInput(name="fw:eth0", pcap=e0), PointInput(name="fw:eth1", pcap=e1)])
    [fl] = [fl for fl in v.flows if fl.client == "203.0.113.10:43010"]
    assert fl.summary.startswith("data dropped inside fw"), fl.summary
    assert "answered with a RST injected there" in fl.summary
    assert not [w for w in v.warnings if "capture ended" in w]


def test_the_first_point_ended_early(tmp_path: Path) -> None:
    """The client side's capture (a) stops in the middle of the second connection: the
    rest of it and the third, seen at b only, are gaps at a (not data dropped between b
    and a, nor a connection of b's own)."""
    cs = _convs()
    cut = cs[1].segs[5].t
    a = _write(tmp_path, "a", cs, View(), until=cut)
    b = _write(tmp_path, "b", cs, View(delay=0.0002))
    pts = [PointInput(name="client:eth0", pcap=a), PointInput(name="fw:eth0", pcap=b)]
    v = correlate(pts)
    assert set(_kinds(v)) == {"gap"}, [f.what for f in all_findings(v)]
    [fl] = [fl for fl in v.flows if fl.client == "203.0.113.10:40002"]
    assert fl.summary.startswith("incomplete evidence between client:eth0 and fw:eth0: seen at ")
    assert "cannot tell whether it came through client:eth0" in fl.summary
    [w] = v.warnings
    assert w.startswith("point client:eth0: its capture ended at 05:40:01.003 UTC")
    assert "connections from its side went on at fw:eth0" in w
    assert _same(pts, (10, 30)) == v.to_dict()


def test_a_host_own_connections_after_its_other_interface_went_quiet(tmp_path: Path) -> None:
    """lb:eth0 sees the clients' connections, lb:eth1 the same connections masqueraded
    and then lb's own health checks from the same address, after the clients stopped: a
    host's own connections, not a capture of lb:eth0 that ended."""
    cs = _convs(2)
    checks = []
    for i in range(3):
        c = Conv(client=("198.18.0.12", 50000 + i), seed=40 + i, t0=T0 + 3 + i)
        c.handshake()
        c.request(b"GET /health HTTP/1.1\r\n\r\n")
        c.response(b"ok")
        c.close()
        checks.append(c)

    def masq(c: Conv) -> View:
        return View(delay=0.0001, nat={
            C2S: ("198.18.0.12", c.client[1] + 1000, *c.server),
            S2C: (*c.server, "198.18.0.12", c.client[1] + 1000),
        })  # fmt: skip

    e0 = _write(tmp_path, "lb_eth0", cs, View())
    rows = [x for c in cs for x in render([c], masq(c))] + render(checks, View(delay=0.0001))
    e1 = write(tmp_path / "lb_eth1.pcap", sorted(rows, key=lambda x: x[0]))
    v = correlate([PointInput(name="lb:eth0", pcap=e0), PointInput(name="lb:eth1", pcap=e1)])
    assert not [w for w in v.warnings if "capture ended" in w], v.warnings
    assert "gap" not in _kinds(v)


def test_a_datagram_flow_answered_after_the_end_is_a_gap(tmp_path: Path) -> None:
    """Two DNS-like exchanges, one before b's capture ended and one after it: the one
    after is a gap at b, not answered by a device before b."""
    cs = _convs()
    # (not port 53: these payloads are no DNS, whose answers are paired by their ids)
    early = UConv(client=("203.0.113.10", 5300), server=("203.0.113.80", 7000), t0=T0 + 0.5)
    late = UConv(client=("203.0.113.10", 5353), server=("203.0.113.80", 7000), t0=T0 + 2.5)
    for u in (early, late):
        u.send(C2S, b"q" * 30)
        u.send(S2C, b"a" * 60)
    cut = cs[1].segs[5].t

    def rows(view: View) -> list[tuple[float, object]]:
        return sorted(render(cs, view) + render_dgrams([early, late], view), key=lambda x: x[0])

    a = write(tmp_path / "a.pcap", rows(View()))
    b = write(tmp_path / "b.pcap", [x for x in rows(View(delay=0.0002)) if x[0] < cut])
    v = correlate([PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)])
    [fl] = [fl for fl in v.flows if fl.client == "203.0.113.10:5353"]
    assert fl.proto == "udp" and [f.kind for f in fl.findings] == ["gap"], fl.summary
    assert "answered, never at b, but the capture at b ended before these packets" in fl.summary
    [ok] = [fl for fl in v.flows if fl.client == "203.0.113.10:5300"]
    assert ok.summary.startswith("OK: delivered both ways"), ok.summary
