"""Connections that went around capture points: seen at the points before and after a
firewall whose captures lost nothing and never there (the other member of an HA pair,
another ECMP next hop, asymmetric routing, a capture filter). One flow each, linked by
identity (ISN, TSval, IP ID, the NAT mapping), whose verdict says it went around: not a
drop before the firewall and an injection (or a flow "local to" the next host) after it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import HTTP_REQ, http_conv, nat_map, only, points
from typer.testing import CliRunner

from hopcap.correlate import correlate
from hopcap.model import Flow, PointInput, Verdict
from hopcap.patterns import split_patterns, triage

T0 = 1_763_790_000.0


def _site(
    tmp: Path,
    convs: list[Conv],
    around: Callable[[Seg], bool],
    *,
    kernel_drops: int = 0,
    lost_on_the_way: Callable[[Seg], bool] | None = None,
    **kw: object,
) -> Verdict:
    """client:eth0 -> fw:eth0 -> fw:eth1 -> lb:eth0; fw (and its HA peer) masquerade to
    198.18.1.1. The packets `around` selects took the peer: neither of fw's captures saw
    them (each captured from before the first connection to after the last, and lost
    `kernel_drops`); `lost_on_the_way`: packets lost on the path after client:eth0 (an
    answer: after lb:eth0)."""
    pts = _site_points(tmp, convs, around, kernel_drops=kernel_drops,
                       lost_on_the_way=lost_on_the_way)  # fmt: skip
    return correlate(pts, **kw)  # type: ignore[arg-type]


def _site_points(
    tmp: Path,
    convs: list[Conv],
    around: Callable[[Seg], bool],
    *,
    kernel_drops: int = 0,
    lost_on_the_way: Callable[[Seg], bool] | None = None,
    listening: tuple[float, float] | None = (T0 - 1, T0 + 30),
) -> list[PointInput]:
    """`_site`'s points; `listening`: fw's captures' start and stop (None: not given, as
    for files from elsewhere)."""
    port = {id(c): c.client[1] - 20000 for c in convs}
    lost = lost_on_the_way or (lambda s: False)

    def at_fw(delay: float, nat: bool) -> Callable[[Conv], View]:
        return lambda c: View(
            delay=delay,
            ttl_dec={C2S: 1} if nat else {S2C: 1},
            nat=nat_map(c, sport=port[id(c)]) if nat else {},
            drop=lambda s: around(s) or ((nat or s.d == S2C) and lost(s)),
        )

    pts = points(tmp, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1}, drop=lambda s: s.d == S2C and lost(s))),
        ("fw:eth0", at_fw(0.00005, False)),
        ("fw:eth1", at_fw(0.0001, True)),
        ("lb:eth0", lambda c: View(delay=0.0002, ttl_dec={C2S: 1},
                                   drop=lambda s: s.d == C2S and lost(s),
                                   nat=nat_map(c, sport=port[id(c)]))),
    ])  # fmt: skip
    # (fw's captures as a run records them: listening from before to after the flows)
    start, stop = listening if listening is not None else (None, None)
    return [
        PointInput(name=p.name, pcap=p.pcap, kernel_drops=kernel_drops, start_ts=start,
                   stop_ts=stop) if p.name.startswith("fw:") else p
        for p in pts
    ]  # fmt: skip


def _convs(n: int = 20) -> list[Conv]:
    return [http_conv(44000 + i, seed=700 + i, t0=T0 + i * 0.01) for i in range(n)]


def _of(v: Verdict, c: Conv) -> list[Flow]:
    return [fl for fl in v.flows if fl.client == f"{c.client[0]}:{c.client[1]}"]


def test_connections_around_an_ha_member_are_one_flow_each_not_drops(tmp_path: Path) -> None:
    # every fourth connection through fw's peer. Before: each was a flow "answered before
    # fw:eth0 (a device)" at the client and one "local to lb: entered the path at lb"
    convs = _convs()
    peer = {id(c) for c in convs[1::4]}
    v = _site(tmp_path, convs, lambda s: id(s.conv) in peer)
    assert len(v.flows) == 20
    assert not only(v, "drop") and not only(v, "inject") and not only(v, "gap")
    for c in convs[1::4]:
        (fl,) = _of(v, c)
        assert [leg.point for leg in fl.legs] == ["client:eth0", "lb:eth0"]
        assert fl.legs[1].link == "nat" and fl.legs[1].tuple.startswith("198.18.1.1:")
        assert fl.path and not fl.broken
        ways = {f.direction: f for f in fl.findings}
        assert set(ways) == {"c2s", "s2c"} and {f.kind for f in fl.findings} == {"around"}
        assert ways["c2s"].between == ("client:eth0", "lb:eth0")
        assert ways["s2c"].between == ("lb:eth0", "client:eth0")
        assert ways["c2s"].around == ("fw:eth0", "fw:eth1") == ways["s2c"].around
        assert ways["c2s"].packets == 6 and ways["s2c"].packets == 8  # every packet
        assert fl.summary.startswith("OK: delivered both ways through client:eth0 -> lb:eth0")
        assert "; went around fw (fw:eth0, fw:eth1): never seen there" in fl.summary
    # one line for all of them
    problems, around, policy = split_patterns(v.patterns)
    assert not problems and not policy
    (p,) = around
    assert (p.kind, p.direction, p.between) == ("around", "c2s", ("client:eth0", "lb:eth0"))
    assert (p.flows, p.of, p.packets) == (5, 20, 70)
    assert p.text.startswith(
        "went around fw (fw:eth0, fw:eth1) on 5 of 20 flows (5 both directions; 70 packets), "
        "between client:eth0 and lb:eth0: never seen there"
    )
    t = triage(v)
    assert not t.alarms and len(t.around) == 5 and len(t.healthy) == 15


def test_answers_around_the_firewall_are_asymmetric_routing_not_drops(tmp_path: Path) -> None:
    # requests through fw, answers through its peer. Before: "SYN-ACK dropped between
    # lb:eth0 and fw:eth1" and a gap "seen at client:eth0, not at fw:eth0" on each
    convs = _convs()
    asym = {id(c) for c in convs[2::5]}
    v = _site(tmp_path, convs, lambda s: id(s.conv) in asym and s.d == S2C)
    assert len(v.flows) == 20
    assert not only(v, "drop") and not only(v, "inject") and not only(v, "gap")
    for c in convs[2::5]:
        (fl,) = _of(v, c)
        assert [leg.point for leg in fl.legs] == ["client:eth0", "fw:eth0", "fw:eth1", "lb:eth0"]
        (f,) = fl.findings
        assert (f.kind, f.direction, f.between) == ("around", "s2c", ("lb:eth0", "client:eth0"))
        assert f.around == ("fw:eth0", "fw:eth1") and f.packets == 8
        assert "answers (s2c) went around fw (fw:eth0, fw:eth1)" in fl.summary
    (p,) = split_patterns(v.patterns)[1]
    assert "on 4 of 20 flows (4 answers (s2c) only; 32 packets)" in p.text
    assert p.between == ("client:eth0", "lb:eth0")


def test_a_loss_on_the_way_around_is_a_drop_between_the_points_around(tmp_path: Path) -> None:
    # a connection through fw's peer loses its request's retransmitted original on the way:
    # a drop between client:eth0 and lb:eth0 (where the evidence places it), the rest of it
    # around fw
    convs = _convs(8)
    c = Conv(client=("203.0.113.10", 44100), server=("203.0.113.80", 80), seed=800,
             t0=T0 + 0.2)  # fmt: skip
    c.handshake()
    (req,) = c.send(C2S, HTTP_REQ)[:1]
    c.retransmit(req)
    c.response(b"ok" * 300)
    c.close()
    v = _site(tmp_path, [*convs, c], lambda s: s.conv is c, lost_on_the_way=lambda s: s is req)
    (fl,) = _of(v, c)
    (drop,) = only(v, "drop")
    assert drop.between == ("client:eth0", "lb:eth0") and drop.what.startswith("PSH,ACK")
    assert fl.summary.startswith("data dropped between client:eth0 and lb:eth0")
    assert "went around fw (fw:eth0, fw:eth1)" in fl.summary
    assert {(f.kind, f.direction) for f in fl.findings} == {
        ("drop", "c2s"),
        ("around", "c2s"),
        ("around", "s2c"),
    }


def test_a_syn_lost_before_the_firewall_stays_a_drop(tmp_path: Path) -> None:
    # nothing of it beyond client:eth0: nothing to link, not "around" anything
    convs = _convs(6)
    bad = Conv(client=("203.0.113.10", 44200), server=("203.0.113.80", 80), seed=900,
               t0=T0 + 0.2)  # fmt: skip
    bad.handshake(answered=False, syn_retries=1)
    gone: Callable[[Seg], bool] = lambda s: s.conv is bad  # noqa: E731
    v = _site(tmp_path, [*convs, bad], gone, lost_on_the_way=gone)
    (drop,) = only(v, "drop")
    assert drop.between == ("client:eth0", "fw:eth0") and drop.packets == 2
    assert not only(v, "around")


def test_with_kernel_drops_at_the_firewall_nothing_is_said_to_go_around(tmp_path: Path) -> None:
    # fw's captures lost packets: a connection missing at both could be their loss as well
    # as another path: not `around`. One flow each all the same (two points in a row that
    # lost it whole: `flows.crossing` "blind"; was two flows each), its packets gaps (seen
    # on both sides of fw), which say that fw's captures miss more such packets than they
    # dropped (3 each): not all their loss
    convs = _convs()
    peer = {id(c) for c in convs[1::4]}
    v = _site(tmp_path, convs, lambda s: id(s.conv) in peer, kernel_drops=3)
    assert not only(v, "around") and not only(v, "drop") and not only(v, "inject")
    assert len(v.flows) == 20
    for c in convs[1::4]:
        (fl,) = _of(v, c)
        assert [leg.point for leg in fl.legs] == ["client:eth0", "lb:eth0"]
        assert {f.kind for f in fl.findings} == {"gap"} and not fl.broken
        for f in fl.findings:
            assert "more than its capture dropped: not all its loss" in f.what, f.what


def test_the_same_with_two_jobs_in_slices_and_through_json(tmp_path: Path) -> None:
    convs = _convs()
    peer = {id(c) for c in convs[1::4]}
    asym = {id(c) for c in convs[2::4]}

    def around(s: Seg) -> bool:
        return id(s.conv) in peer or (id(s.conv) in asym and s.d == S2C)

    v = _site(tmp_path, convs, around)
    assert len(only(v, "around")) == 5 * 2 + 5
    for name, kw in (("j2", {"jobs": 2, "min_packets_per_job": 0}), ("sl", {"slice_packets": 60})):
        (tmp_path / name).mkdir()
        assert _site(tmp_path / name, convs, around, **kw) == v, name
    d = json.loads(json.dumps(v.to_dict()))
    f = next(x for fl in d["flows"] for x in fl["findings"] if x["kind"] == "around")
    assert f["around"] == ["fw:eth0", "fw:eth1"]
    assert Verdict.from_dict(d) == v
    pat = next(p for p in d["patterns"] if p["kind"] == "around")
    assert pat["label"] == "path around fw (fw:eth0, fw:eth1)" and pat["policy"] is False


def test_the_text_verdict_gives_one_line_for_them(tmp_path: Path) -> None:
    from hopcap import cli

    convs = _convs()
    peer = {id(c) for c in convs[1::4]}
    _site(tmp_path, convs, lambda s: id(s.conv) in peer)
    args = ["correlate"]
    for n in ("client:eth0", "fw:eth0", "fw:eth1", "lb:eth0"):
        args.append(f"{n}={tmp_path / (n.replace(':', '_') + '.pcap')}")
    r = CliRunner().invoke(cli.app, [*args, "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    i = lines.index("paths around capture points (not drops) (1):")
    assert lines[i + 1].startswith("  went around fw (fw:eth0, fw:eth1) on 5 of 20 flows")
    assert "no flow had drops, injections, resets or gaps" in r.output
    assert "5 that went around capture points (see above)" in r.output
    md = (tmp_path / "b" / "report.md").read_text()
    assert "## Paths around capture points (1)" in md
    assert "5 around capture points" in md
    html = (tmp_path / "b" / "report.html").read_text()
    assert "<h2>Paths around capture points (1)</h2>" in html


def test_a_point_that_captured_no_tcp_at_all_is_doubted_not_gone_around(tmp_path: Path) -> None:
    # fw's captures hold nothing (the wrong interface, a filter, a capture that failed):
    # what happened after client:eth0 is a gap, as it was; nothing said to go around
    v = _site(tmp_path, _convs(6), lambda s: True)
    assert not only(v, "around") and not only(v, "drop") and not only(v, "inject")
    gaps = only(v, "gap")
    assert gaps and all("captured no TCP packets at all" in f.what for f in gaps)


def test_connections_around_cut_across_slices_count_each_packet_once(tmp_path: Path) -> None:
    # keep-alive connections through fw's peer, cut across time slices: one both ways for
    # 15 s, from before fw's captures started (5 s in: what went around before is a gap),
    # the other its answers only (some lost between lb:eth0 and the client) for 10 s.
    # Before: every slice counted the packets it read of them (their first 64 and its
    # margins): 40 packets a slice said 999 packets around where there were 64, 785 gaps
    # for 20, 180 answers dropped for 9 and 114 injected, and no "went around fw"
    from test_slices import _same, keepalive

    both = keepalive(("203.0.113.10", 41000), 90, T0, 30, 0.5)
    asym = keepalive(("203.0.113.10", 41001), 91, T0 + 5.2, 20, 0.5)
    lost = {id(s) for s in [s for s in asym.segs if s.d == S2C][5::20]}
    shorts = [http_conv(44000 + i, seed=700 + i, t0=T0 + i * 0.4) for i in range(40)]

    def around(s: Seg) -> bool:
        return s.conv is both or (s.conv is asym and s.d == S2C) or s.t < T0 + 5

    pts = _site_points(tmp_path, [both, asym, *shorts], around,
                       lost_on_the_way=lambda s: id(s) in lost,
                       listening=(T0 + 5, T0 + 30))  # fmt: skip
    one = _same(pts, (40, 120))
    by = {fl["client"]: fl for fl in one["flows"]}
    for c in (both, asym):
        fl = by[f"{c.client[0]}:{c.client[1]}"]
        assert "went around fw (fw:eth0, fw:eth1)" in fl["summary"]
        for d in ("c2s", "s2c") if c is both else ("s2c",):
            sent = [s for s in c.segs if s.d == d]  # (every one seen before fw's peer)
            early = len([s for s in sent if s.t < T0 + 5])
            got = {f["kind"]: f["packets"] for f in fl["findings"] if f["direction"] == d}
            got.pop("drop", None)
            assert (
                got == {"gap": early, "around": len(sent) - early}
                if early
                else {"around": len(sent)}
            ), (c.client, d, got)
    drops = [f for f in by["203.0.113.10:41001"]["findings"] if f["kind"] == "drop"]
    assert [(f["between"], f["packets"]) for f in drops] == [
        (["lb:eth0", "client:eth0"], len(lost))
    ]


def test_around_or_not_by_the_whole_capture_in_slices(tmp_path: Path) -> None:
    # fw's captures with no start or stop given (files from elsewhere): they listened from
    # their first packet to their last. Connections through fw's peer before fw's first
    # packet are gaps, those after it went around. Before: a time slice took its own
    # first packet of fw's capture for the start: 5 of them were gaps in slices
    convs = [http_conv(44000 + i, seed=700 + i, t0=T0 + i * 0.4) for i in range(40)]
    peer = {id(c) for c in convs[0:3] + convs[10::7]}
    pts = _site_points(tmp_path, convs, lambda s: id(s.conv) in peer, listening=None)
    from test_slices import _same

    one = _same(pts, (40, 120))
    by = {fl["client"]: {f["kind"] for f in fl["findings"]} for fl in one["flows"]}
    for i, c in enumerate(convs):
        want = {"gap"} if i < 3 else {"around"} if id(c) in peer else set()
        assert by[f"{c.client[0]}:{c.client[1]}"] == want, i


def test_not_around_a_possible_tunnel_endpoint_in_any_slice(tmp_path: Path) -> None:
    # gw's two interfaces, its outer one carrying UDP (DNS early on): a connection seen at
    # gw:eth0 and srv:eth0 and not at gw:eth1 may have crossed it in a tunnel, not around
    # it (`flows.tunnel_end`). Before: a time slice with no datagram at gw:eth1 said it
    # went around gw:eth1 (the unsliced verdict: answered before gw:eth1, and a flow
    # local to srv)
    from test_dgram import dns_flows, write_points
    from test_slices import _same

    dns = dns_flows(6, every=0.3)
    tcp = [http_conv(44000 + i, seed=700 + i, t0=T0 + i * 0.4) for i in range(30)]
    x = tcp[20]
    views = [
        ("client:eth0", lambda c: View()),
        ("gw:eth0", lambda c: View(delay=0.0001)),
        ("gw:eth1", lambda c: View(delay=0.0002, drop=lambda s: s.conv is x)),
        ("srv:eth0", lambda c: View(delay=0.0003)),
    ]
    one = _same(write_points(tmp_path, [*dns, *tcp], views), (40, 120))
    assert not [f for fl in one["flows"] for f in fl["findings"] if f["kind"] == "around"]
    mine = [fl for fl in one["flows"] if fl["client"] == "203.0.113.10:44020"]
    assert [[leg["point"] for leg in fl["legs"]] for fl in mine] == [
        ["client:eth0", "gw:eth0"],
        ["srv:eth0"],
    ]
