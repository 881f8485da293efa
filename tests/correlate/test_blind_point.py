"""A point whose capture lost every packet of a connection (tcpdump's kernel drops): the
connection is one flow across the points that saw it, its missing packets there gaps;
and a point's kernel drops are one budget for every gap put down to them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import HTTP_REQ, all_findings, http_conv, nat_map, only, points

from hopcap.correlate import correlate
from hopcap.model import Flow, PointInput, Verdict

T0 = 1_763_790_000.0


def _fw_rst_get(
    tmp: Path,
    kernel_drops: int,
    *,
    lost_at_fw: bool = True,
    listening: tuple[float, float] | None = None,
    **kw: object,
) -> tuple[Verdict, Conv]:
    """client:eth0 -> fw:eth0 -> fw:eth1 (fw masquerades): three good connections, and one
    whose GET fw drops and answers with a RST of its own toward the client (the lab's
    fault `fw-rst-get`); fw:eth0's capture lost every packet of that one (`lost_at_fw`)
    and reports `kernel_drops` (`listening`: when it was, else not known). The verdict and
    the victim."""
    good = [http_conv(43000 + i, seed=500 + i, t0=T0 + i * 0.01) for i in range(3)]
    victim = Conv(client=("203.0.113.10", 43010), server=("203.0.113.80", 80), seed=510,
                  t0=T0 + 0.05)  # fmt: skip
    victim.handshake()
    get = victim.seg(C2S, "PA", HTTP_REQ, tag="get")
    rst = Seg(d=S2C, t=get.t + 0.00002, flags="R", seq=victim.nxt[S2C], ack=0, conv=victim)
    convs = [*good, victim]
    port = {id(c): c.client[1] - 20000 for c in convs}

    def at(c: Conv) -> list[Seg]:
        return [rst] if c is victim else []

    lost: Callable[[Seg], bool] = (lambda s: s.conv is victim) if lost_at_fw else (lambda s: False)
    pts = points(tmp, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1}, extra=at(c))),
        ("fw:eth0", lambda c: View(delay=0.00005, ttl_dec={S2C: 1}, drop=lost, extra=at(c))),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=port[id(c)]),
                                   ttl_dec={C2S: 1}, drop=lambda s: s.tag == "get")),
    ])  # fmt: skip
    start, stop = listening or (None, None)
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=kernel_drops,
                        start_ts=start, stop_ts=stop)  # fmt: skip
    return correlate(pts, **kw), victim  # type: ignore[arg-type]


def _flows_of(v: Verdict, port: int) -> list[Flow]:
    return [fl for fl in v.flows if fl.client == f"203.0.113.10:{port}"]


def test_connection_the_capture_lost_whole_is_one_flow_of_gaps(tmp_path: Path) -> None:
    # fw:eth0 dropped 5 packets in the kernel: exactly the victim's five (SYN, SYN-ACK, ACK,
    # GET, fw's RST). Before: a flow at client:eth0 alone ("reset by client": the RST,
    # seen only there, taken for the client's) and another starting at fw:eth1
    v, victim = _fw_rst_get(tmp_path, kernel_drops=5)
    assert len(v.flows) == 4, [fl.summary for fl in v.flows]
    (fl,) = _flows_of(v, victim.client[1])
    assert [leg.point for leg in fl.legs] == ["client:eth0", "fw:eth1"]
    assert fl.legs[1].link == "nat" and fl.legs[1].tuple == "198.18.1.1:23010 > 198.18.1.2:80"
    assert {f.kind for f in fl.findings} == {"gap"}, fl.findings
    assert sum(f.packets for f in fl.findings) == 5
    assert all("fw:eth0" in f.between for f in fl.findings)
    assert not fl.broken
    assert all_findings(v) == list(fl.findings)  # the other connections are clean


def test_the_same_with_two_jobs_and_in_slices(tmp_path: Path) -> None:
    v, _ = _fw_rst_get(tmp_path, kernel_drops=5)
    for name, kw in (("j2", {"jobs": 2, "min_packets_per_job": 0}), ("sl", {"slice_packets": 20})):
        (tmp_path / name).mkdir()
        assert _fw_rst_get(tmp_path / name, kernel_drops=5, **kw)[0] == v, name


def test_fewer_kernel_drops_than_missing_packets_leave_drops(tmp_path: Path) -> None:
    # fw:eth0 dropped 3 packets but misses 5: SYN, SYN-ACK and ACK crossed it (fw:eth1 has
    # them) and the RST could come from nothing on the client's wire: its capture lost
    # those 4 at least, more than its 3; the GET, seen at the client alone, may have been
    # lost on the way: a drop (as with a connection fw:eth0 saw in part)
    v, victim = _fw_rst_get(tmp_path, kernel_drops=3)
    assert len(_flows_of(v, victim.client[1])) == 1
    (drop,) = only(v, "drop")
    assert drop.between == ("client:eth0", "fw:eth0") and drop.what.startswith("PSH,ACK")
    assert "fw:eth0 dropped 3 packets in the kernel but misses" in drop.what
    assert sum(f.packets for f in only(v, "gap")) == 4
    assert not only(v, "reset") and not only(v, "inject")


def test_without_kernel_drops_a_missing_connection_went_around(tmp_path: Path) -> None:
    # fw:eth0 says it lost nothing and was listening all along: the connection did not
    # cross it (it reached fw another way): one flow from client:eth0 to fw:eth1 that
    # went around fw:eth0, nothing of it put down to capture loss; fw's own drop of the
    # GET and its RST stay what they are. Before: two flows, "answered before fw:eth0"
    # at the client (fw's RST taken for an answer) and another starting at fw:eth1
    v, victim = _fw_rst_get(tmp_path, kernel_drops=0, listening=(T0 - 1, T0 + 5))
    assert len(v.flows) == 4, [fl.summary for fl in v.flows]
    (fl,) = _flows_of(v, victim.client[1])
    assert [leg.point for leg in fl.legs] == ["client:eth0", "fw:eth1"]
    assert not only(v, "gap")
    kinds = {(f.kind, f.direction) for f in fl.findings}
    assert kinds == {("drop", "c2s"), ("inject", "s2c"), ("around", "c2s"), ("around", "s2c")}
    (drop,) = only(v, "drop")
    assert drop.between == ("client:eth0", "fw:eth1") and drop.what.startswith("PSH,ACK")
    around = {f.direction: f for f in only(v, "around")}
    assert around["c2s"].between == ("client:eth0", "fw:eth1")
    assert around["c2s"].around == ("fw:eth0",) and around["c2s"].packets == 3
    assert around["s2c"].between == ("fw:eth1", "client:eth0") and around["s2c"].packets == 1
    assert "went around fw:eth0" in fl.summary


def test_a_missing_connection_outside_the_capture_window_is_a_gap(tmp_path: Path) -> None:
    # fw:eth0 stopped listening before the connection: not seen there, but that says
    # nothing about its path: gaps, no `around`
    v, victim = _fw_rst_get(tmp_path, kernel_drops=0, listening=(T0 - 1, T0 + 0.04))
    assert len(_flows_of(v, victim.client[1])) == 1
    assert not only(v, "around")
    gaps = only(v, "gap")
    assert sum(f.packets for f in gaps) == 4
    assert all("the capture at fw:eth0 ended before these packets" in f.what for f in gaps)


def test_a_firewall_dropping_a_whole_connection_is_a_drop(tmp_path: Path) -> None:
    # fw drops every SYN of a connection: seen at fw:eth0 (whose capture lost 2 packets
    # of the others: not this one), never beyond. Nothing to join: a drop
    good = [http_conv(43100 + i, seed=600 + i, t0=T0 + i * 0.01) for i in range(3)]
    bad = Conv(client=("203.0.113.10", 43110), server=("203.0.113.80", 80), seed=610,
               t0=T0 + 0.05)  # fmt: skip
    bad.handshake(answered=False, syn_retries=2)
    lost = {id(good[0].segs[-1]), id(good[1].segs[-1])}
    pts = points(tmp_path, [*good, bad], [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.00005, ttl_dec={S2C: 1}, drop=lambda s: id(s) in lost)),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=c.client[1] - 20000),
                                   ttl_dec={C2S: 1}, drop=lambda s: s.conv is bad)),
    ])  # fmt: skip
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=2)
    v = correlate(pts)
    (drop,) = only(v, "drop")
    assert drop.between == ("fw:eth0", "fw:eth1") and drop.packets == 3
    assert sum(f.packets for f in only(v, "gap")) == 2


def test_two_blind_points_in_a_row(tmp_path: Path) -> None:
    """A busy firewall's two captures (fw:eth0, fw:eth1: one host's tcpdumps under the same
    load) both dropped packets in the kernel and both lost every packet of one connection,
    seen at the client and beyond fw (lb:eth0, fw masquerades): one flow, its packets gaps
    (seen on both sides: the captures' loss for certain, whatever their drops), each
    direction's at the first blind point it met; not a connection answered before fw and
    another that began after it."""
    good = [http_conv(43200 + i, seed=700 + i, t0=T0 + i * 0.01) for i in range(3)]
    victim = http_conv(43210, seed=710, t0=T0 + 0.05)
    convs = [*good, victim]
    port = {id(c): c.client[1] - 20000 for c in convs}

    def lost(s: Seg) -> bool:
        return s.conv is victim

    pts = points(tmp_path, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.00005, ttl_dec={S2C: 1}, drop=lost)),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=port[id(c)]),
                                   ttl_dec={C2S: 1}, drop=lost)),
        ("lb:eth0", lambda c: View(delay=0.00015, nat=nat_map(c, sport=port[id(c)]),
                                   ttl_dec={C2S: 1})),
    ])  # fmt: skip
    n = len(victim.segs)
    for i in (1, 2):
        pts[i] = PointInput(name=pts[i].name, pcap=pts[i].pcap, kernel_drops=n)
    for kw in ({}, {"jobs": 2, "min_packets_per_job": 0}, {"slice_packets": 20}):
        v = correlate(pts, **kw)  # type: ignore[arg-type]
        assert len(v.flows) == 4, [fl.summary for fl in v.flows]
        (fl,) = _flows_of(v, victim.client[1])
        assert [leg.point for leg in fl.legs] == ["client:eth0", "lb:eth0"], kw
        assert fl.legs[1].link == "nat"
        assert {f.kind for f in fl.findings} == {"gap"}, fl.findings
        got = {(f.direction, f.between): f.packets for f in fl.findings}
        assert got == {
            ("c2s", ("client:eth0", "fw:eth0")): sum(s.d == C2S for s in victim.segs),
            ("s2c", ("lb:eth0", "fw:eth1")): sum(s.d == S2C for s in victim.segs),
        }, fl.findings
        assert all(" and at " in f.what and "its capture lost them" in f.what for f in fl.findings)
        assert not fl.broken
        assert all_findings(v) == list(fl.findings)


def test_cut_across_small_slices_the_lost_connection_stays_gaps(tmp_path: Path) -> None:
    # slices of 8 packets cut the victim between the client's packets and fw:eth1's: the
    # slice judging the client's GET side must still see that fw:eth1 had the SYN, SYN-ACK
    # and ACK (rows it read beyond its window). Was: those 3 a "drop" before fw:eth0
    v, victim = _fw_rst_get(tmp_path, kernel_drops=5, slice_packets=8)
    (fl,) = _flows_of(v, victim.client[1])
    assert {f.kind for f in fl.findings} == {"gap"}, fl.findings
    assert sum(f.packets for f in fl.findings) == 5
