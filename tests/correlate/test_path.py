"""correlate() on generated multi-point captures, one hazard per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pcapgen import C2S, S2C, Conv, Seg, View, render, write

from hopcap.correlate import correlate
from hopcap.correlate.link import ATTEMPT
from hopcap.model import Finding, PointInput, Verdict

HTTP_REQ = (
    b"GET /index.html HTTP/1.1\r\nHost: www.example.test\r\n"
    b"User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"
)
HTTP_RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 6000\r\n\r\n" + bytes(range(256)) * 23 + b"z" * 112


def http_conv(
    port: int = 51234, seed: int = 1, t0: float = 1_763_790_000.0, lost: str = "", **kw: object
) -> Conv:
    """An HTTP exchange; `lost` ("req", "resp"): that one's segments lost on the way once,
    sent again before the receiver's ACK (`Conv.send`'s `resent`)."""
    c = Conv(client=("203.0.113.10", port), server=("203.0.113.80", 80), seed=seed, t0=t0, **kw)  # type: ignore[arg-type]
    c.handshake()
    every = tuple(range(len(HTTP_RESP) // 1448 + 1))
    c.request(HTTP_REQ, (0,) if lost == "req" else ())
    c.response(HTTP_RESP, every if lost == "resp" else ())
    c.close()
    return c


def nat_map(
    conv: Conv,
    src: str = "198.18.1.1",
    sport: int = 31378,
    dst: str = "198.18.1.2",
    dport: int = 80,
) -> dict[str, tuple[str, int, str, int]]:
    return {C2S: (src, sport, dst, dport), S2C: (dst, dport, src, sport)}


def points(
    tmp: Path,
    convs: list[Conv],
    spec: list[tuple[str, Callable[[Conv], View]]],
    *,
    link: str = "ether",
    **kw: object,
) -> list[PointInput]:
    out = []
    for name, mkview in spec:
        pk: list[tuple[float, object]] = []
        for c in convs:
            pk += render([c], mkview(c))
        pk.sort(key=lambda x: x[0])
        p = write(tmp / (name.replace(":", "_") + ".pcap"), pk, link=link)
        out.append(PointInput(name=name, pcap=p, **kw))  # type: ignore[arg-type]
    return out


def only(v: Verdict, kind: str) -> list[Finding]:
    return [f for fl in v.flows for f in fl.findings if f.kind == kind]


def all_findings(v: Verdict) -> list[Finding]:
    return [f for fl in v.flows for f in fl.findings]


def test_fw_drops_syn_four_points_dnat_masquerade(tmp_path: Path) -> None:
    good = http_conv(51234, seed=1)
    bad = Conv(client=("203.0.113.10", 51235), server=("203.0.113.80", 80), seed=2, t0=good.t + 0.5)
    bad.handshake(answered=False, syn_retries=2)
    nat = {id(good): nat_map(good, sport=31378), id(bad): nat_map(bad, sport=40999)}

    def after_fw(delay: float) -> Callable[[Conv], View]:
        return lambda c: View(delay=delay, nat=nat[id(c)], ttl_dec={C2S: 1, S2C: 0},
                              drop=lambda s: s.conv is bad)  # fmt: skip

    v = correlate(points(tmp_path, [good, bad], [
        ("client:eth0", lambda c: View(tso=True, ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001, ttl_dec={S2C: 1})),
        ("fw:eth1", after_fw(0.0002)),
        ("lb:eth0", after_fw(0.0003)),
    ]))  # fmt: skip
    findings = all_findings(v)
    assert len(findings) == 1, findings
    f = findings[0]
    assert (f.kind, f.direction, f.between) == ("drop", "c2s", ("fw:eth0", "fw:eth1"))
    assert f.packets == 3 and f.what.startswith("SYN")
    assert v.flows[0].summary == "SYN dropped inside fw (seen on fw:eth0, never on fw:eth1)"
    assert v.flows[0].client == "203.0.113.10:51235"
    ok = v.flows[1]
    assert [leg.link for leg in ok.legs] == ["same", "same", "nat", "same"]
    assert ok.legs[2].tuple == "198.18.1.1:31378 > 198.18.1.2:80"
    assert ok.client == "203.0.113.10:51234" and ok.server == "203.0.113.80:80"
    assert [fl.id for fl in v.flows] == ["f1", "f2"]


def test_segmentation_difference_is_not_loss(tmp_path: Path) -> None:
    conv = http_conv()
    big = Conv(client=("203.0.113.10", 50000), server=("203.0.113.80", 80), seed=5)
    big.handshake()
    big.send(C2S, b"u" * 15928)  # eleven 1,448-byte segments in one burst
    big.close()
    v = correlate(points(tmp_path, [conv, big], [
        ("client:eth0", lambda c: View(tso=True)),  # one 15,928-byte packet
        ("srv:eth0", lambda c: View(delay=0.001)),  # eleven segments
    ]))  # fmt: skip
    assert all_findings(v) == []
    assert all(fl.summary.startswith("OK") for fl in v.flows)


def test_pat_random_ports_and_isn_randomisation(tmp_path: Path) -> None:
    convs = [http_conv(40000 + i, seed=10 + i, t0=1_763_790_000.0 + i * 0.01) for i in range(20)]
    ports = {id(c): 20000 + (i * 7919) % 30000 for i, c in enumerate(convs)}
    offs = {id(c): (i * 0x9E3779B1) & 0xFFFFFFFF for i, c in enumerate(convs)}
    v = correlate(points(tmp_path, convs, [
        ("fw:eth0", lambda c: View()),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=ports[id(c)]),
                                   seq_off={C2S: offs[id(c)], S2C: 0}, ttl_dec={C2S: 1})),
    ]))  # fmt: skip
    assert all_findings(v) == []
    assert len(v.flows) == 20
    for fl in v.flows:
        assert [leg.link for leg in fl.legs] == ["same", "nat"]
        port = int(fl.client.rsplit(":", 1)[1])
        conv = convs[port - 40000]
        assert fl.legs[1].tuple == f"198.18.1.1:{ports[id(conv)]} > 198.18.1.2:80"


def dropped_original(tmp: Path) -> tuple[list[PointInput], Seg]:
    """A request fw dropped, its retransmission 0.2 s later delivered: the points, the
    dropped copy."""
    c = Conv(seed=3)
    c.handshake()
    first = c.send(C2S, HTTP_REQ)[0]
    c.retransmit(first)
    c.response(HTTP_RESP)
    c.close()
    return points(tmp, [c], [
        ("fw:eth0", lambda c: View()),
        ("fw:eth1", lambda c: View(delay=0.0001, drop=lambda s: s is first)),
    ]), first  # fmt: skip


def test_dropped_original_with_delivered_retransmission(tmp_path: Path) -> None:
    pts, first = dropped_original(tmp_path)
    v = correlate(pts)
    drops = only(v, "drop")
    assert len(drops) == 1 and len(all_findings(v)) == 1
    d = drops[0]
    assert d.between == ("fw:eth0", "fw:eth1") and d.direction == "c2s"
    assert d.packets == 1 and d.bytes == len(HTTP_REQ)
    assert f"ipid={first.ipid}" in d.what


def test_forged_rst_mid_path_is_inject(tmp_path: Path) -> None:
    c = http_conv()
    forged = Seg(d=S2C, t=c.segs[4].t + 0.0005, flags="R", seq=c.segs[4].seq, ack=0, conv=c, ipid=0)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View(delay=0.0002, extra=[forged])),
        ("fw:eth0", lambda x: View(delay=0.0001, extra=[forged])),
        ("fw:eth1", lambda x: View(delay=0.0)),
    ]))  # fmt: skip
    # the RST appears at fw:eth0 (towards the client) but never crossed fw:eth1
    inj = only(v, "inject")
    assert len(inj) == 1, all_findings(v)
    assert inj[0].between == ("fw:eth1", "fw:eth0") and inj[0].direction == "s2c"
    assert inj[0].what.startswith("RST")
    # it then travelled on to the client: no further finding
    assert len(all_findings(v)) == 1
    assert v.flows[0].summary.startswith("RST injected inside fw")


def test_a_device_that_drops_a_request_and_answers_it_with_a_reset_says_both(
    tmp_path: Path,
) -> None:
    """An IPS or a firewall rule that blocks a request drops it and resets the connection
    in the server's name (the lab's fw-rst-get). The flow's one line says both: the
    injected RST is what the client saw, and "data dropped inside fw; 1 more finding" hid
    it. The RST acknowledges the request (fw saw it): not the server's acknowledgement,
    no sign it got through."""
    c = Conv(client=("203.0.113.10", 51234), server=("203.0.113.80", 80), seed=3)
    c.handshake()
    req = c.seg(C2S, "PA", HTTP_REQ, tag="req")  # (the server never gets it: no ACK of it)
    rst = c.seg(S2C, "RA", tag="rst", dt=0.0005)

    def blocked(s: Seg) -> bool:
        return s is req or s is rst

    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View(delay=0.0002)),
        ("fw:eth0", lambda x: View(delay=0.0001)),
        ("fw:eth1", lambda x: View(delay=0.0, drop=blocked)),
    ]))  # fmt: skip
    (drop,) = only(v, "drop")
    (inj,) = only(v, "inject")
    assert drop.between == ("fw:eth0", "fw:eth1") and inj.between == ("fw:eth1", "fw:eth0")
    assert v.flows[0].summary == (
        "data dropped inside fw (seen on fw:eth0, never on fw:eth1) and answered with a RST "
        "injected there (seen on fw:eth0, never sent through fw:eth1)"
    ), v.flows[0].summary


def test_payload_byte_changed_is_rewrite(tmp_path: Path) -> None:
    c = http_conv()

    def change(s: Seg) -> Seg:
        if s.tag == "req":
            s.data = s.data.replace(b"curl", b"cURL")
        return s

    v = correlate(points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, change=change)),
    ]))  # fmt: skip
    rw = only(v, "rewrite")
    assert [(f.field, f.direction, f.between) for f in rw] == [
        ("payload", "c2s", ("fw:eth0", "fw:eth1"))
    ]
    assert "curl" in str(rw[0].before) and "cURL" in str(rw[0].after)
    assert len(all_findings(v)) == 1


@pytest.mark.parametrize("link", ["ether", "sll", "raw"])
def test_ipv6_and_link_types(tmp_path: Path, link: str) -> None:
    c = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 443), seed=4)
    c.handshake()
    c.request(HTTP_REQ)
    c.response(HTTP_RESP, resent=(1,))  # (segs[6], lost before a:eth0)
    c.close()
    v = correlate(points(tmp_path, [c], [
        ("a:eth0", lambda x: View(delay=0.0001, drop=lambda s: s.tag == "resp" and s is c.segs[6])),
        ("b:eth0", lambda x: View()),
    ], link=link))  # fmt: skip
    assert v.flows[0].client == "[2001:db8::10]:40000"
    drops = only(v, "drop")
    assert (
        len(drops) == 1 and drops[0].direction == "s2c" and drops[0].between == ("b:eth0", "a:eth0")
    )
    assert drops[0].bytes == len(c.segs[6].data)


def test_tuple_reuse_makes_two_flows(tmp_path: Path) -> None:
    a = http_conv(51000, seed=7)
    # same tuple, new SYN, new ISN; its request lost before fw:eth1 once, sent again
    b = Conv(client=("203.0.113.10", 51000), server=("203.0.113.80", 80), seed=8, t0=a.t + 1.0)
    b.handshake()
    b.request(HTTP_REQ, resent=(0,))
    b.response(HTTP_RESP)
    b.close()
    v = correlate(points(tmp_path, [a, b], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, drop=lambda s: s.conv is b and s.tag == "req")),
    ]))  # fmt: skip
    assert len(v.flows) == 2
    assert v.flows[0].findings[0].kind == "drop"
    assert v.flows[0].first_ts and v.flows[1].first_ts
    assert v.flows[0].first_ts > v.flows[1].first_ts  # the second connection is the broken one
    assert v.flows[1].findings == ()


def test_syn_unanswered_at_server(tmp_path: Path) -> None:
    c = Conv(seed=9)
    c.handshake(answered=False, syn_retries=2)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("srv:eth0", lambda x: View(delay=0.0001)),
    ]))  # fmt: skip
    f = all_findings(v)
    assert [(x.kind, x.direction, x.between) for x in f] == [("drop", "c2s", ("srv:eth0", "srv"))]


def _proxy_pair(seed: int = 11, resent: tuple[int, ...] = ()) -> tuple[Conv, Conv]:
    """A client's request through a proxy (`back`: its own connection to the server);
    `resent`: the response's segments to the client lost once and sent again."""
    front = Conv(client=("203.0.113.10", 51500), server=("203.0.113.80", 80), seed=seed)
    front.handshake()
    back = Conv(
        client=("198.18.2.1", 33000), server=("198.18.2.2", 8080), seed=seed + 1, t0=front.t
    )
    back.handshake()
    req = front.request(HTTP_REQ)
    back.t = front.t
    fwd = HTTP_REQ.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n")
    back.request(fwd)
    back.response(HTTP_RESP)
    front.t = back.t
    front.response(HTTP_RESP, resent)
    front.close()
    back.close()
    assert req
    return front, back


def test_proxy_inserting_header_is_proxied_leg_with_details(tmp_path: Path) -> None:
    front, back = _proxy_pair()
    v = correlate(points(tmp_path, [front, back], [
        ("client:eth0", lambda c: View(drop=lambda s: s.conv is back)),
        ("lb:eth0", lambda c: View(delay=0.0001, drop=lambda s: s.conv is back)),
        ("lb:eth1", lambda c: View(delay=0.0002, drop=lambda s: s.conv is front)),
        ("srv:eth0", lambda c: View(delay=0.0003, drop=lambda s: s.conv is front)),
    ]))  # fmt: skip
    assert all_findings(v) == []
    assert len(v.flows) == 1
    legs = v.flows[0].legs
    assert [(leg.point, leg.link) for leg in legs] == [
        ("client:eth0", "same"), ("lb:eth0", "same"), ("lb:eth1", "proxied"), ("srv:eth0", "same"),
    ]  # fmt: skip
    assert legs[2].tuple == "198.18.2.1:33000 > 198.18.2.2:8080"
    assert legs[2].details == ("c2s inserted: x-forwarded-for: 203.0.113.10",), legs[2].details
    assert v.flows[0].summary.startswith("OK")


def test_nat_then_proxy_clean_curl(tmp_path: Path) -> None:
    front, back = _proxy_pair(seed=21)
    nat = nat_map(front, sport=29999)
    not_back = lambda s: s.conv is back  # noqa: E731
    not_front = lambda s: s.conv is front  # noqa: E731
    v = correlate(points(tmp_path, [front, back], [
        ("client:eth0", lambda c: View(drop=not_back, tso=True, ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001, drop=not_back, ttl_dec={S2C: 1})),
        ("fw:eth1", lambda c: View(delay=0.0002, drop=not_back, nat=nat, ttl_dec={C2S: 1})),
        ("lb:eth0", lambda c: View(delay=0.0003, drop=not_back, nat=nat, ttl_dec={C2S: 1})),
        ("lb:eth1", lambda c: View(delay=0.0004, drop=not_front)),
        ("srv:eth0", lambda c: View(delay=0.0005, drop=not_front, tso=True)),
    ]))  # fmt: skip
    assert [f for f in all_findings(v) if f.kind in ("drop", "inject", "rewrite")] == []
    assert len(v.flows) == 1
    assert [leg.link for leg in v.flows[0].legs] == [
        "same",
        "same",
        "nat",
        "same",
        "proxied",
        "same",
    ]


def test_clock_offset_two_seconds(tmp_path: Path) -> None:
    convs = [http_conv(41000 + i, seed=30 + i, t0=1_763_790_000.0 + i * 0.05) for i in range(5)]
    v = correlate(points(tmp_path, convs, [
        ("client:eth0", lambda c: View()),
        ("srv:eth0", lambda c: View(delay=0.0005, clock=2.0)),
    ]))  # fmt: skip
    assert all_findings(v) == []
    srv = v.points[1]
    assert srv.clock_offset_s is not None and abs(srv.clock_offset_s - 2.0) < 0.0002
    assert srv.clock_error_s is not None and srv.clock_error_s < 0.001
    assert v.points[0].clock_offset_s == 0.0
    lat = v.flows[0].legs[1].latency_s
    assert lat is not None and abs(lat - 0.0005) < 0.0002


def test_clock_hint_seeds_offset_without_both_directions(tmp_path: Path) -> None:
    c = Conv(seed=40)
    c.handshake(answered=False)
    v = correlate(
        [
            *points(tmp_path, [c], [("client:eth0", lambda x: View())]),
            PointInput(
                name="srv:eth0",
                pcap=points(tmp_path, [c], [("srv:eth0", lambda x: View(delay=0.001, clock=-3.0))])[
                    0
                ].pcap,
                clock_offset_hint_s=-3.0,
            ),
        ]
    )
    assert v.points[1].clock_offset_s is not None and abs(v.points[1].clock_offset_s + 3.0) < 0.01


def test_kernel_drops_give_gap_not_drop(tmp_path: Path) -> None:
    c = http_conv()
    pts = points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, drop=lambda s: s.tag == "resp")),
    ])  # fmt: skip
    # the response never shows at fw:eth1 (upstream for s2c) but fw:eth1's kernel dropped packets
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=17)
    v = correlate(pts)
    kinds = {f.kind for f in all_findings(v)}
    assert kinds == {"gap"}, all_findings(v)
    g = all_findings(v)[0]
    assert "kernel" in g.what and g.between == ("fw:eth1", "fw:eth0")
    assert not v.flows[0].broken


def test_missing_point_is_gap(tmp_path: Path) -> None:
    c = Conv(seed=41)
    c.handshake(answered=False)
    pts = points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("fw:eth0", lambda x: View(delay=0.0001)),
    ])  # fmt: skip
    pts.insert(1, PointInput(name="sw:eth0", pcap=None, missing_reason="ssh: connection refused"))
    v = correlate(pts)
    gaps = only(v, "gap")
    assert gaps and gaps[0].between == ("client:eth0", "sw:eth0")
    assert "connection refused" in gaps[0].what
    assert v.points[1].packets == 0 and v.points[1].clock_offset_s is None
    assert any("sw:eth0" in w for w in v.warnings)


def test_missing_point_at_either_end_is_gap_never_drop(tmp_path: Path) -> None:
    c = Conv(seed=43)
    c.handshake(answered=False)  # a SYN nobody answers: where it died is unknown
    pts = points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001)),
    ])  # fmt: skip
    pts.insert(0, PointInput(name="client:eth0", pcap=None, missing_reason="tcpdump missing"))
    pts.append(PointInput(name="srv:eth0", pcap=None, missing_reason="connection refused"))
    v = correlate(pts)
    assert not only(v, "drop")
    between = {g.between for g in only(v, "gap")}
    assert ("client:eth0", "fw:eth0") in between
    assert ("fw:eth1", "srv:eth0") in between
    far = next(g for g in only(v, "gap") if g.between == ("fw:eth1", "srv:eth0"))
    assert "connection refused" in far.what


def test_capture_started_late_is_gap(tmp_path: Path) -> None:
    early = http_conv(42000, seed=50)
    late = http_conv(42001, seed=51, t0=early.t + 1.0)
    cut = early.segs[3].t  # fw:eth1 starts listening mid-way through the first connection
    v = correlate(points(tmp_path, [early, late], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, drop=lambda s: s.t < cut)),
    ]))  # fmt: skip
    assert not only(v, "drop") and not only(v, "inject")
    assert only(v, "gap")


def test_port_closed_is_reset_by_server(tmp_path: Path) -> None:
    c = Conv(seed=60)
    c.handshake(answered=False)
    c.seg(S2C, "RA", tag="rst", dt=0.0005)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("srv:eth0", lambda x: View(delay=0.0001)),
    ]))  # fmt: skip
    f = all_findings(v)
    assert [(x.kind, x.direction, x.between) for x in f] == [("reset", "s2c", ("srv", "srv:eth0"))]
    assert v.flows[0].broken and "srv" in v.flows[0].summary and "RST" in v.flows[0].summary


def test_packet_appearing_on_a_wire_is_gap_not_inject(tmp_path: Path) -> None:
    c = http_conv()
    # fw:eth0 saw an ACK the client's own capture never recorded: capture loss at the client
    lost = c.segs[2]
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View(drop=lambda s: s is lost)),
        ("fw:eth0", lambda x: View(delay=0.0001)),
    ]))  # fmt: skip
    f = all_findings(v)
    assert [(x.kind, x.direction, x.between) for x in f] == [
        ("gap", "c2s", ("client:eth0", "fw:eth0"))
    ]
    assert not v.flows[0].broken


def test_conntrack_is_ground_truth_for_ambiguous_nat(tmp_path: Path) -> None:
    # two connections with the same bytes, no TCP timestamps, ISNs randomised and IP IDs
    # rewritten by the firewall: only conntrack says which is which
    a = Conv(client=("203.0.113.10", 50001), seed=70, ts=False)
    b = Conv(client=("203.0.113.11", 50002), seed=71, ts=False, t0=a.t0 + 0.001)
    for c in (a, b):
        c.handshake()
        c.request(HTTP_REQ)
        c.response(HTTP_RESP)
        c.close()
    port = {id(a): 40001, id(b): 40002}
    delay = {id(a): 0.005, id(b): 0.0}  # timing alone would pair them the wrong way round

    def scramble(s: Seg) -> Seg:
        s.ipid = (s.ipid * 7919 + 13) & 0xFFFF
        return s

    v = correlate(
        points(
            tmp_path,
            [a, b],
            [
                ("fw:eth0", lambda c: View()),
                (
                    "fw:eth1",
                    lambda c: View(
                        delay=delay[id(c)],
                        nat=nat_map(c, sport=port[id(c)]),
                        seq_off={C2S: 12345 + port[id(c)], S2C: 0},
                        change=scramble,
                    ),
                ),
            ],
        ),
        conntrack={
            "fw": (
                "tcp      6 431999 ESTABLISHED src=203.0.113.10 dst=203.0.113.80 sport=50001 "
                "dport=80 src=198.18.1.2 dst=198.18.1.1 sport=80 dport=40001 [ASSURED] use=1\n"
                "tcp      6 431999 ESTABLISHED src=203.0.113.11 dst=203.0.113.80 sport=50002 "
                "dport=80 src=198.18.1.2 dst=198.18.1.1 sport=80 dport=40002 [ASSURED] use=1\n"
            )
        },
    )
    by_client = {fl.client: fl for fl in v.flows}
    assert by_client["203.0.113.10:50001"].legs[1].tuple == "198.18.1.1:40001 > 198.18.1.2:80"
    assert by_client["203.0.113.11:50002"].legs[1].tuple == "198.18.1.1:40002 > 198.18.1.2:80"
    assert all_findings(v) == []


def test_point_that_captured_nothing_is_gap(tmp_path: Path) -> None:
    from pcapgen import write_pcap_raw

    c = http_conv()
    pts = points(tmp_path, [c], [("fw:eth0", lambda x: View())])
    pts.append(PointInput(name="fw:eth1", pcap=write_pcap_raw(tmp_path / "empty.pcap", [])))
    v = correlate(pts)
    f = all_findings(v)
    assert [(x.kind, x.between) for x in f] == [("gap", ("fw:eth0", "fw:eth1"))]
    assert "no TCP packets" in f[0].what


def test_verdict_is_json_and_round_trips(tmp_path: Path) -> None:
    import json

    front, back = _proxy_pair(seed=80)
    v = correlate(points(tmp_path, [front, back], [
        ("lb:eth0", lambda c: View(drop=lambda s: s.conv is back or s.tag == "resp")),
        ("lb:eth1", lambda c: View(delay=0.0002, drop=lambda s: s.conv is front)),
    ]))  # fmt: skip
    text = json.dumps(v.to_dict())
    again = Verdict.from_dict(json.loads(text))
    assert again.to_dict() == v.to_dict()
    assert v.flows[0].legs[1].link == "proxied" and v.flows[0].legs[1].details


def test_syn_at_the_very_end_of_the_capture_is_gap(tmp_path: Path) -> None:
    c = Conv(seed=10)
    c.handshake(answered=False)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("srv:eth0", lambda x: View(delay=0.0001)),
    ]))  # fmt: skip
    f = all_findings(v)
    assert [(x.kind, x.between) for x in f] == [("gap", ("srv:eth0", "srv"))]
    assert "ended" in f[0].what


def test_mss_clamp_dscp_and_ttl_rewrites_inside_fw(tmp_path: Path) -> None:
    c = http_conv()

    def change(s: Seg) -> Seg:
        if s.mss is not None and s.d == C2S:
            s.mss = 1400  # MSS clamping
        if s.tag == "req":
            s.tos = 0xB8  # DSCP 46 (EF)
        if s.tag == "resp":
            s.ttl = 20  # far beyond one routed hop
        return s

    v = correlate(points(tmp_path, [c], [
        ("fw:eth0", lambda x: View(ttl_dec={S2C: 1})),
        ("fw:eth1", lambda x: View(delay=0.0001, ttl_dec={C2S: 1}, change=change)),
    ]))  # fmt: skip
    got = {(f.field, f.direction, f.before, f.after) for f in only(v, "rewrite")}
    assert ("tcp.mss", "c2s", 1460, 1400) in got
    assert ("ip.dscp", "c2s", 0, 46) in got
    assert any(f == "ip.ttl" and d == "s2c" and a == 63 for f, d, _b, a in got)
    assert {f for f, *_ in got} == {"tcp.mss", "ip.dscp", "ip.ttl"}
    assert not only(v, "drop") and not only(v, "inject")


def test_interfaces_of_one_host_share_its_clock(tmp_path: Path) -> None:
    convs = [http_conv(43000 + i, seed=90 + i, t0=1_763_790_000.0 + i * 0.05) for i in range(3)]
    v = correlate(points(tmp_path, convs, [
        ("client:eth0", lambda c: View()),
        ("fw:eth0", lambda c: View(delay=0.0003, clock=2.0)),
        ("fw:eth1", lambda c: View(delay=0.0004, clock=2.0)),
    ]))  # fmt: skip
    assert all_findings(v) == []
    off = [p.clock_offset_s for p in v.points]
    assert off[0] == 0.0 and off[1] == off[2]
    assert off[1] is not None and abs(off[1] - 2.0) < 0.0002
    lat = v.flows[0].legs[2].latency_s
    assert lat is not None and abs(lat - 0.0001) < 0.0001


def test_repeated_identical_requests_through_a_proxy_pair_up_in_order(tmp_path: Path) -> None:
    pairs = []
    t = 1_763_790_000.0
    for i in range(5):
        front = Conv(
            client=("203.0.113.10", 52000 + i), server=("203.0.113.80", 80), seed=100 + i, t0=t
        )
        front.handshake()
        back = Conv(
            client=("198.18.2.1", 34000 + i), server=("198.18.2.2", 8080), seed=200 + i, t0=front.t
        )
        back.handshake()
        front.request(HTTP_REQ)
        back.t = front.t
        back.request(HTTP_REQ.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n"))
        back.response(HTTP_RESP)
        front.t = back.t
        front.response(HTTP_RESP)
        front.close()
        back.close()
        pairs.append((front, back))
        t = front.t + 0.05
    fronts = {id(f) for f, _ in pairs}
    v = correlate(points(tmp_path, [c for p in pairs for c in p], [
        ("lb:eth0", lambda c: View(drop=lambda s: id(s.conv) not in fronts)),
        ("lb:eth1", lambda c: View(delay=0.0001, drop=lambda s: id(s.conv) in fronts)),
    ]))  # fmt: skip
    assert len(v.flows) == 5 and all_findings(v) == []
    for fl in v.flows:
        i = int(fl.client.rsplit(":", 1)[1]) - 52000
        assert fl.legs[1].link == "proxied"
        assert fl.legs[1].tuple == f"198.18.2.1:{34000 + i} > 198.18.2.2:8080"


def _front_back(i: int, t: float, *, back_port: int) -> tuple[Conv, Conv]:
    """One request through an L7 proxy: the client's connection and the proxy's backend
    connection, the same deterministic content every time."""
    front = Conv(
        client=("203.0.113.10", 53000 + i), server=("203.0.113.80", 80), seed=300 + i, t0=t
    )
    front.handshake()
    back = Conv(
        client=("198.18.2.1", back_port), server=("198.18.2.2", 8080), seed=400 + i, t0=front.t
    )
    back.handshake()
    front.request(HTTP_REQ)
    back.t = front.t
    back.request(HTTP_REQ.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.10\r\n\r\n"))
    back.response(HTTP_RESP)
    front.t = back.t
    front.response(HTTP_RESP)
    front.close()
    back.close()
    return front, back


def test_stale_front_connection_does_not_steal_a_later_backend_leg(tmp_path: Path) -> None:
    """Two identical requests 1 s apart through a proxy; the first one's backend leg was
    not captured. The first front connection's bytes had all passed before the second
    backend connection opened: it must not be linked to it (time order), and the second
    front keeps its own backend leg (never two fronts on one backend)."""
    f1, b1 = _front_back(0, 1_763_790_000.0, back_port=35000)
    f2, b2 = _front_back(1, 1_763_790_001.0, back_port=35001)
    fronts = {id(f1), id(f2)}
    v = correlate(points(tmp_path, [f1, b1, f2, b2], [
        ("lb:eth0", lambda c: View(drop=lambda s: id(s.conv) not in fronts)),
        ("lb:eth1", lambda c: View(delay=0.0001, drop=lambda s: s.conv is not b2)),
    ]))  # fmt: skip
    by_client = {fl.client: fl for fl in v.flows}
    first, second = by_client["203.0.113.10:53000"], by_client["203.0.113.10:53001"]
    assert [leg.point for leg in first.legs] == ["lb:eth0"], first
    assert [(leg.point, leg.link) for leg in second.legs] == [
        ("lb:eth0", "same"), ("lb:eth1", "proxied"),
    ]  # fmt: skip
    assert second.legs[1].tuple == "198.18.2.1:35001 > 198.18.2.2:8080"
    claims = [leg.tuple for fl in v.flows for leg in fl.legs if leg.point == "lb:eth1"]
    assert claims == ["198.18.2.1:35001 > 198.18.2.2:8080"], v.flows
    assert len(v.flows) == 2


def test_front_connection_prefers_the_backend_that_follows_it_in_time(tmp_path: Path) -> None:
    """Both backend legs captured, the later request's first: each front takes the backend
    whose request followed its own and whose response preceded its own."""
    f1, b1 = _front_back(0, 1_763_790_000.0, back_port=35000)
    f2, b2 = _front_back(1, 1_763_790_001.0, back_port=35001)
    fronts = {id(f1), id(f2)}
    v = correlate(points(tmp_path, [f2, b2, f1, b1], [
        ("lb:eth0", lambda c: View(drop=lambda s: id(s.conv) not in fronts)),
        ("lb:eth1", lambda c: View(delay=0.0001, drop=lambda s: id(s.conv) in fronts)),
    ]))  # fmt: skip
    assert len(v.flows) == 2 and all_findings(v) == []
    got = {fl.client: fl.legs[1].tuple for fl in v.flows}
    assert got == {
        "203.0.113.10:53000": "198.18.2.1:35000 > 198.18.2.2:8080",
        "203.0.113.10:53001": "198.18.2.1:35001 > 198.18.2.2:8080",
    }


def _front_unserved(t: float, *, answer: bytes | None) -> tuple[Conv, list[Conv]]:
    """The client's request reaches the proxy; the proxy's backend connections (a first
    one and a retry) get their SYNs to the server, which never answers them. The proxy
    answers `answer` after its timeout, or (None) the client gives up after 5 s."""
    front = Conv(client=("203.0.113.10", 54000), server=("203.0.113.80", 80), seed=500, t0=t)
    front.handshake()
    front.request(HTTP_REQ)
    backs = []
    for k in range(2):
        back = Conv(
            client=("198.18.2.1", 36000 + k), server=("198.18.2.2", 8080), seed=600 + k,
            t0=front.t + 0.0005 + 1.5 * k,
        )  # fmt: skip
        back.handshake(answered=False, syn_retries=1)
        backs.append(back)
    if answer is not None:
        front.t += 3.0
        front.response(answer)
    else:
        front.t += 5.0
    front.close()
    return front, backs


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 503 Service Unavailable\r\n\r\nno server"])
def test_backend_that_never_carried_data_is_linked_by_time(
    tmp_path: Path, answer: bytes | None
) -> None:
    front, backs = _front_unserved(1_763_790_000.0, answer=answer)
    bk = {id(b) for b in backs}
    v = correlate(points(tmp_path, [front, *backs], [
        ("client:eth0", lambda c: View(drop=lambda s: id(s.conv) in bk)),
        ("lb:eth0", lambda c: View(delay=0.0001, drop=lambda s: id(s.conv) in bk)),
        ("lb:eth1", lambda c: View(delay=0.0002, drop=lambda s: s.conv is front)),
        ("srv:eth0", lambda c: View(delay=0.0003, drop=lambda s: s.conv is front)),
    ]))  # fmt: skip
    fl = next(x for x in v.flows if x.client == "203.0.113.10:54000")
    # the proxy's first attempt and its retry are both legs of the client's flow, in order
    assert [(leg.point, leg.link) for leg in fl.legs] == [
        ("client:eth0", "same"), ("lb:eth0", "same"),
        ("lb:eth1", "proxied"), ("srv:eth0", "same"), ("lb:eth1", "proxied"), ("srv:eth0", "same"),
    ]  # fmt: skip
    assert fl.legs[2].tuple == "198.18.2.1:36000 > 198.18.2.2:8080"  # the nearest in time
    assert fl.legs[4].tuple == "198.18.2.1:36001 > 198.18.2.2:8080"
    assert fl.legs[2].details == ("linked by time only (no payload crossed)", ATTEMPT)
    assert fl.legs[4].details == ("linked by time only (no payload crossed)",)
    assert [(x.kind, x.direction, x.between) for x in fl.findings] == [
        ("drop", "c2s", ("srv:eth0", "srv")), ("drop", "c2s", ("srv:eth0", "srv")),
    ]  # fmt: skip
    assert [x.packets for x in fl.findings] == [2, 2]  # each SYN and its retransmission
    assert "srv:eth0" in fl.summary and "never answered" in fl.summary, fl.summary
    assert not fl.summary.startswith("OK")
    assert len(v.flows) == 1  # the retry is not a flow of its own


def test_time_link_never_takes_a_backend_linked_by_content(tmp_path: Path) -> None:
    """A front whose request got nowhere and, right after it, another front served by a
    backend that carried its bytes: the first is not linked to that backend."""
    f1, _ = _front_unserved(1_763_790_000.0, answer=b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
    f2, b2 = _front_back(1, 1_763_790_000.01, back_port=35001)
    fronts = {id(f1), id(f2)}
    v = correlate(points(tmp_path, [f1, f2, b2], [
        ("lb:eth0", lambda c: View(drop=lambda s: id(s.conv) not in fronts)),
        ("lb:eth1", lambda c: View(delay=0.0001, drop=lambda s: s.conv is not b2)),
    ]))  # fmt: skip
    by_client = {fl.client: fl for fl in v.flows}
    assert [leg.point for leg in by_client["203.0.113.10:54000"].legs] == ["lb:eth0"]
    assert by_client["203.0.113.10:53001"].legs[1].tuple == "198.18.2.1:35001 > 198.18.2.2:8080"


def test_request_never_answered_is_not_ok(tmp_path: Path) -> None:
    c = Conv(seed=70)
    c.handshake()
    c.request(HTTP_REQ)
    c.t += 5.0
    c.close()
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("srv:eth0", lambda x: View(delay=0.0001)),
    ]))  # fmt: skip
    assert len(v.flows) == 1 and all_findings(v) == []
    s = v.flows[0].summary
    assert not s.startswith("OK") and "no response" in s, s


def test_compiled_and_numpy_paths_give_the_same_verdict(tmp_path: Path) -> None:
    """The whole correlation (walk, hashes, joins, payload compares), with and without
    the C helper, on NAT + proxy + a drop + a GRO'd response: the same verdict."""
    from hopcap.correlate import _fastwalk

    if not _fastwalk.available():
        pytest.skip("no C compiler: only the numpy path exists here")
    front, back = _proxy_pair(seed=31, resent=(0,))
    nat = nat_map(front, sport=29998)
    lost = next(s for s in front.segs if s.tag == "resp")
    not_back = lambda s: s.conv is back  # noqa: E731
    not_front = lambda s: s.conv is front  # noqa: E731
    gone = lambda s: s.conv is back or s is lost  # noqa: E731
    pts = points(tmp_path, [front, back], [
        ("client:eth0", lambda c: View(drop=gone, tso=True, ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001, drop=gone, ttl_dec={S2C: 1})),
        ("fw:eth1", lambda c: View(delay=0.0002, drop=not_back, nat=nat, ttl_dec={C2S: 1})),
        ("lb:eth0", lambda c: View(delay=0.0003, drop=not_back, nat=nat, ttl_dec={C2S: 1})),
        ("lb:eth1", lambda c: View(delay=0.0004, drop=not_front)),
        ("srv:eth0", lambda c: View(delay=0.0005, drop=not_front, tso=True)),
    ])  # fmt: skip
    fast = correlate(pts)
    _fastwalk.disabled = True
    try:
        slow = correlate(pts)
    finally:
        _fastwalk.disabled = False
    assert fast == slow
    drops = [(f.kind, f.direction, f.between) for f in all_findings(fast) if f.kind == "drop"]
    assert drops == [("drop", "s2c", ("fw:eth1", "fw:eth0"))], all_findings(fast)


def test_time_link_skips_an_answered_connection_that_carried_nothing(tmp_path: Path) -> None:
    """A health check (answered, closed with RST, no payload) opened right after the
    request is nearer in time than the proxy's real, unanswered attempt: not linked."""
    front, backs = _front_unserved(1_763_790_000.0, answer=None)
    t_req = next(s.t for s in front.segs if s.data)
    check = Conv(
        client=("198.18.2.1", 37000), server=("198.18.2.2", 8080), seed=700, t0=t_req + 0.0001
    )
    check.handshake()
    check.seg(C2S, "R", tag="rst")
    bk = {id(b) for b in backs} | {id(check)}
    v = correlate(points(tmp_path, [front, check, *backs], [
        ("lb:eth0", lambda c: View(drop=lambda s: id(s.conv) in bk)),
        ("lb:eth1", lambda c: View(delay=0.0001, drop=lambda s: s.conv is front)),
        ("srv:eth0", lambda c: View(delay=0.0002, drop=lambda s: s.conv is front)),
    ]))  # fmt: skip
    fl = next(x for x in v.flows if x.client == "203.0.113.10:54000")
    assert fl.legs[1].tuple == "198.18.2.1:36000 > 198.18.2.2:8080", fl.legs
    assert ("drop", "c2s", ("srv:eth0", "srv")) in [
        (x.kind, x.direction, x.between) for x in fl.findings
    ]


def _stale_answer(conv: Conv, held: Conv) -> None:
    """`conv`'s SYN (its tuple still held by `held`'s server side, in TIME_WAIT) answered by
    a challenge ACK in `held`'s sequence space, and the client's RST to that ACK; the SYN
    is then sent again (the same ISN) by a conversation made with `_retry`."""
    conv.seg(C2S, "S", mss=1460, tag="syn", advance=False)
    ch = conv.seg(S2C, "A", seq=held.nxt[S2C], dt=conv.rtt / 2, tag="challenge")
    ch.ack = held.nxt[C2S] & 0xFFFFFFFF
    conv.seg(C2S, "R", seq=ch.ack, dt=0.00002, tag="rst")


def _retry(first: Conv, seed: int) -> Conv:
    """The same client's SYN sent again 10 ms after `first`'s RST: same port, ISN, clock."""
    again = Conv(client=first.client, server=first.server, seed=seed, t0=first.t + 0.01)
    again.isn[C2S] = again.nxt[C2S] = first.isn[C2S]
    again.ipid[C2S], again.tsoff[C2S] = first.ipid[C2S], first.tsoff[C2S]
    again.t0 = first.t0
    again.handshake()
    again.request(HTTP_REQ)
    again.response(HTTP_RESP)
    again.close()
    return again


def _through_pat(
    tmp: Path, convs: list[Conv], ports: dict[int, int], **kw: object
) -> tuple[Verdict, list[tuple[str, str]]]:
    """`convs` through fw, which routes them and masquerades each to its port in `ports`
    (by id): the verdict, and each flow's client with its tuple at fw:eth1, sorted."""
    v = correlate(points(tmp, convs, [
        ("fw:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=ports[id(c)]),
                                   ttl_dec={C2S: 1})),
    ]), **kw)  # type: ignore[arg-type]  # fmt: skip
    return v, sorted((fl.client, fl.legs[1].tuple) for fl in v.flows)


def test_syn_retried_after_a_reset_leaves_the_nat_on_another_port(tmp_path: Path) -> None:
    # a busy PAT picked a port its server still held in TIME_WAIT: the server's challenge
    # ACK, the client's RST (which frees the mapping), then the same SYN, mapped anew
    held = http_conv(47000, seed=30)
    first = Conv(client=("203.0.113.10", 47922), server=("203.0.113.80", 80), seed=31,
                 t0=held.t + 1.0)  # fmt: skip
    _stale_answer(first, held)
    again = _retry(first, seed=32)
    ports = {id(held): 1063, id(first): 1063, id(again): 22313}
    v, got = _through_pat(tmp_path, [held, first, again], ports)
    assert all_findings(v) == []
    assert got == [
        ("203.0.113.10:47000", "198.18.1.1:1063 > 198.18.1.2:80"),
        ("203.0.113.10:47922", "198.18.1.1:1063 > 198.18.1.2:80"),
        ("203.0.113.10:47922", "198.18.1.1:22313 > 198.18.1.2:80"),
    ]


def test_challenge_ack_through_a_nat_onto_another_clients_old_tuple(tmp_path: Path) -> None:
    # the NAT gave a client port that had carried an earlier connection (old2) the port
    # of another client's connection (old1) that the server still held: the challenge
    # ACK is old1's at fw:eth1 and comes back on old2's tuple at fw:eth0
    old1 = http_conv(47810, seed=40)
    old2 = http_conv(49092, seed=41, t0=old1.t0 + 0.05)
    first = Conv(client=("203.0.113.10", 49092), server=("203.0.113.80", 80), seed=42,
                 t0=max(old1.t, old2.t) + 1.0)  # fmt: skip
    _stale_answer(first, old1)
    again = _retry(first, seed=43)
    ports = {id(old1): 46354, id(old2): 58697, id(first): 46354, id(again): 21991}
    v, got = _through_pat(tmp_path, [old1, old2, first, again], ports)
    assert all_findings(v) == []
    assert got == [
        ("203.0.113.10:47810", "198.18.1.1:46354 > 198.18.1.2:80"),
        ("203.0.113.10:49092", "198.18.1.1:21991 > 198.18.1.2:80"),
        ("203.0.113.10:49092", "198.18.1.1:46354 > 198.18.1.2:80"),
        ("203.0.113.10:49092", "198.18.1.1:58697 > 198.18.1.2:80"),
    ]


def test_new_connection_on_a_reused_tuple_whose_syn_the_capture_lost(tmp_path: Path) -> None:
    # a proxy's connections to its server reuse a source port; the capture at lb:eth1
    # lost (kernel drops) the second connection's first packets: what it kept of it is a
    # connection of its own, not the first one's tail (which it was: "dropped between
    # lb:eth1 and srv:eth0" for packets srv:eth0 has)
    old = http_conv(40646, seed=50)
    new = http_conv(40646, seed=51, t0=old.t + 0.2)
    lost = {id(s) for s in new.segs[:5]}  # the handshake and the request
    pts = points(tmp_path, [old, new], [
        ("lb:eth1", lambda c: View(drop=lambda s: id(s) in lost)),
        ("srv:eth0", lambda c: View(delay=0.0001)),
    ])  # fmt: skip
    pts[0] = PointInput(name=pts[0].name, pcap=pts[0].pcap, kernel_drops=5)
    v = correlate(pts)
    kinds = sorted({f.kind for f in all_findings(v)})
    assert kinds == ["gap"]
    assert len(v.flows) == 2
    gaps = only(v, "gap")
    assert sum(f.packets for f in gaps) == 5
    assert all(
        f.between == ("lb:eth1", "srv:eth0") or f.between == ("srv:eth0", "lb:eth1") for f in gaps
    )


def test_a_lone_fin_of_a_reused_tuple_leaves_the_next_connection_its_answer(
    tmp_path: Path,
) -> None:
    # srv:eth0's capture lost all of the second connection on a reused tuple but its
    # client's FIN; a third connection follows on the tuple. The FIN is a half of its own
    # and must not take the third connection's SYN-ACK (its packets then "rewritten")
    old = http_conv(45384, seed=60)
    new = http_conv(45384, seed=61, t0=old.t + 0.2)
    later = http_conv(45384, seed=62, t0=new.t + 0.2)
    fin = next(s for s in new.segs if s.d == C2S and "F" in s.flags)
    lost = {id(s) for s in new.segs if s is not fin}
    pts = points(tmp_path, [old, new, later], [
        ("lb:eth1", lambda c: View()),
        ("srv:eth0", lambda c: View(delay=0.0001, drop=lambda s: id(s) in lost)),
    ])  # fmt: skip
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=len(lost))
    v = correlate(pts)
    assert sorted({f.kind for f in all_findings(v)}) == ["gap"]
    assert sum(f.packets for f in only(v, "gap")) == len(lost)
    assert len(v.flows) == 3


def test_conntrack_maps_a_reused_tuple_as_its_last_connection_had_it(tmp_path: Path) -> None:
    # conntrack, read at the end, maps client X's tuple to port 40001: where X's SYN went
    # the second time. Its first SYN went to 40019; the 40001 of that moment was another
    # client's first attempt (a challenge ACK and a RST on both). The table must not pull
    # X's first attempt onto Y's
    held1 = http_conv(47001, seed=80)
    held2 = http_conv(47002, seed=81, t0=held1.t0 + 0.01)
    y1 = Conv(client=("203.0.113.10", 56658), server=("203.0.113.80", 80), seed=82,
              t0=max(held1.t, held2.t) + 1.0)  # fmt: skip
    _stale_answer(y1, held1)
    y2 = _retry(y1, seed=83)
    x1 = Conv(client=("203.0.113.10", 56954), server=("203.0.113.80", 80), seed=84,
              t0=y2.t + 1.0)  # fmt: skip
    _stale_answer(x1, held2)
    x2 = _retry(x1, seed=85)
    ports = {id(held1): 40001, id(held2): 40019, id(y1): 40001, id(y2): 40039,
             id(x1): 40019, id(x2): 40001}  # fmt: skip
    entry = (
        "tcp      6 117 TIME_WAIT src=203.0.113.10 dst=203.0.113.80 sport={} dport=80 "
        "src=198.18.1.2 dst=198.18.1.1 sport=80 dport={} [ASSURED] use=1\n"
    )
    table = entry.format(56954, 40001) + entry.format(56658, 40039)
    v, got = _through_pat(tmp_path, [held1, held2, y1, y2, x1, x2], ports, conntrack={"fw": table})
    assert all_findings(v) == []
    assert got == sorted(
        (f"203.0.113.10:{c.client[1]}", f"198.18.1.1:{ports[id(c)]} > 198.18.1.2:80")
        for c in (held1, held2, y1, y2, x1, x2)
    )


def _fw_resets_the_server(tmp_path: Path, kernel_drops: int, jobs: int = 1) -> Verdict:
    """fw (NAT) answers 40 connections' responses with a RST of its own toward the server
    (seen at fw:eth1 only) and drops those responses; fw:eth0's capture dropped
    `kernel_drops` packets."""
    convs = [http_conv(41000 + i, seed=300 + i, t0=1_763_790_000.0 + i * 0.01) for i in range(40)]
    made = []
    for c in convs:
        resp = next(s for s in c.segs if s.tag == "resp")
        made.append(Seg(d=C2S, t=resp.t + 0.00001, flags="R", seq=resp.ack, ack=0, conv=c))
    pts = points(tmp_path, convs, [
        ("fw:eth0", lambda c: View(ttl_dec={S2C: 1}, drop=lambda s: s.tag == "resp")),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=c.client[1] - 20000),
                                   ttl_dec={C2S: 1}, extra=[m for m in made if m.conv is c])),
    ])  # fmt: skip
    pts[0] = PointInput(name=pts[0].name, pcap=pts[0].pcap, kernel_drops=kernel_drops)
    return correlate(pts, jobs=jobs, min_packets_per_job=0)


def test_a_few_kernel_drops_do_not_hide_what_a_hop_made_and_dropped(tmp_path: Path) -> None:
    # fw:eth0 dropped 5 packets in the kernel but misses 40 RSTs and 40 x 5 response
    # segments fw:eth1 has: no capture loss of 5 explains them (they were all "gaps")
    v = _fw_resets_the_server(tmp_path, kernel_drops=5)
    assert only(v, "gap") == []
    inj = only(v, "inject")
    assert len(inj) == 40 and all(f.between == ("fw:eth0", "fw:eth1") for f in inj)
    assert all("fw:eth0 dropped 5 packets in the kernel but misses" in f.what for f in inj)
    drops = only(v, "drop")
    assert {f.between for f in drops} == {("fw:eth1", "fw:eth0")} and len(drops) == 40
    assert all(fl.summary.startswith("data dropped inside fw") for fl in v.flows), [
        fl.summary for fl in v.flows
    ]
    # the same verdict from two jobs (the budget is the whole verdict's)
    (tmp_path / "j2").mkdir()
    assert _fw_resets_the_server(tmp_path / "j2", kernel_drops=5, jobs=2) == v


def test_kernel_drops_that_could_explain_every_missing_packet_leave_gaps(tmp_path: Path) -> None:
    v = _fw_resets_the_server(tmp_path, kernel_drops=100_000)
    assert only(v, "inject") == [] and only(v, "drop") == []
    assert len(only(v, "gap")) == 80


def test_kernel_drops_are_one_budget_for_both_hops_of_a_point(tmp_path: Path) -> None:
    # fw:eth0 dropped 12 packets in the kernel. It misses 4 of the client's last ACKs
    # (seen at client:eth0 only) and 10 RSTs fw made toward the server (fw:eth1 only):
    # 14 in all, each hop's fewer than 12. Its capture lost 12 at most: the 4 may be
    # its (gaps), the 10 RSTs cannot all be: fw made them (injections)
    convs = [http_conv(43200 + i, seed=700 + i, t0=1_763_790_000.0 + i * 0.01) for i in range(10)]
    made = []
    for c in convs:
        resp = next(s for s in c.segs if s.tag == "resp")
        made.append(Seg(d=C2S, t=resp.t + 0.00001, flags="R", seq=resp.ack, ack=0, conv=c))
    last = {id(c.segs[-1]) for c in convs[:4]}  # the client's last ACK
    pts = points(tmp_path, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.00005, ttl_dec={S2C: 1}, drop=lambda s: id(s) in last)),
        ("fw:eth1", lambda c: View(delay=0.0001, nat=nat_map(c, sport=c.client[1] - 20000),
                                   ttl_dec={C2S: 1}, drop=lambda s: id(s) in last,
                                   extra=[m for m in made if m.conv is c])),
    ])  # fmt: skip
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=12)
    v = correlate(pts)
    gaps = only(v, "gap")
    assert sum(f.packets for f in gaps) == 4
    assert all(f.between == ("client:eth0", "fw:eth0") for f in gaps)
    inj = only(v, "inject")
    assert len(inj) == 10 and all(f.between == ("fw:eth0", "fw:eth1") for f in inj)
    assert all("fw:eth0 dropped 12 packets in the kernel but misses 14" in f.what for f in inj)


def test_conntrack_of_a_later_connection_the_capture_lost_maps_no_earlier_one(
    tmp_path: Path,
) -> None:
    # client port 44616 carried a connection at t0 (fw mapped it to 22362) and another
    # 40 s later (mapped to 13862) that fw:eth0's capture lost (kernel drops); conntrack
    # knows the later mapping only. The earlier connection is not pulled onto 13862
    early = http_conv(44616, seed=90, ts=False)  # (no TCP timestamps: fewer fingerprints)
    late = http_conv(44616, seed=91, t0=early.t + 40.0, ts=False)
    lost = {id(s) for s in late.segs}
    spec = [
        ("fw:eth0", lambda c: View(ttl_dec={S2C: 1}, drop=lambda s: id(s) in lost)),
        ("fw:eth1", lambda c: View(delay=0.0001, ttl_dec={C2S: 1},
                                   nat=nat_map(c, sport=22362 if c is early else 13862))),
    ]  # fmt: skip
    pts = points(tmp_path, [early, late], spec)
    pts[0] = PointInput(name=pts[0].name, pcap=pts[0].pcap, kernel_drops=len(lost))
    table = (
        "tcp      6 117 TIME_WAIT src=203.0.113.10 dst=203.0.113.80 sport=44616 dport=80 "
        "src=198.18.1.2 dst=198.18.1.1 sport=80 dport=13862 [ASSURED] use=1\n"
    )
    v = correlate(pts, conntrack={"fw": table})
    [first] = [fl for fl in v.flows if fl.client == "203.0.113.10:44616"]
    assert first.legs[1].tuple == "198.18.1.1:22362 > 198.18.1.2:80"
    assert first.findings == ()
    assert not {"drop", "inject", "rewrite"} & {f.kind for f in all_findings(v)}


@pytest.mark.parametrize("before", [False, True])  # the hop a flow's first, or a later one
def test_a_lost_answer_the_server_gave_again_with_another_isn(tmp_path: Path, before: bool) -> None:
    # srv answered the SYN; that SYN-ACK was lost on the wire; the client sent the SYN
    # again and srv, having forgotten the first (SYN cookies under a full backlog), answered
    # it with another ISN. The lost answer is a drop of its own (it had vanished: the flow
    # took the second answer, and the first's half was left to nobody)
    c = Conv(client=("198.18.2.1", 53320), server=("198.18.2.2", 80), seed=95)
    c.seg(C2S, "S", mss=1460, tag="syn", advance=False)
    first = c.seg(S2C, "SA", mss=1460, seq=c.isn[S2C] ^ 0x5A5A5A5A, tag="lost", advance=False)
    first.ack = (c.isn[C2S] + 1) & 0xFFFFFFFF
    c.seg(C2S, "S", mss=1460, tag="syn", dt=1.0, advance=False)
    c.nxt[C2S] += 1
    c.seg(S2C, "SA", mss=1460, tag="synack", dt=c.rtt / 2)
    c.seg(C2S, "A", tag="ack", dt=c.rtt / 2)
    c.request(HTTP_REQ)
    c.response(HTTP_RESP)
    c.close()
    spec = [
        ("lb:eth1", lambda x: View(drop=lambda s: s.tag == "lost")),
        ("srv:eth0", lambda x: View(delay=0.0001)),
    ]
    if before:
        spec.insert(0, ("gw:eth0", lambda x: View(delay=-0.0001, drop=lambda s: s.tag == "lost")))
    v = correlate(points(tmp_path, [c], spec))
    [fl] = v.flows
    [f] = fl.findings
    assert (f.kind, f.direction, f.between, f.packets) == (
        "drop",
        "s2c",
        ("srv:eth0", "lb:eth1"),
        1,
    )
    assert f.what.startswith("SYN,ACK") and fl.summary.startswith("SYN-ACK dropped between")


def test_conntrack_of_a_reused_client_port_maps_no_other_clients_connection(
    tmp_path: Path,
) -> None:
    # the lab's fw-rst-get run: fw answers each request with a RST of its own (the request
    # never leaves it). Client port 42322 carried a connection at t0 (fw mapped it to
    # 28355) and another 40 s later (mapped to 30704); conntrack, read after the window,
    # knows the later mapping only. Just after the first, another client's connection
    # (port 44960) had been mapped to 30704 too (random ports come round again): it
    # overlaps the first in time, but the first's SYN crossed fw on 28355 (its ISN is
    # there), so conntrack must not pull the first connection onto 30704 (it did: a SYN
    # "dropped" in fw, another "injected", a tcp.ack "rewrite" on the SYN-ACK)
    def rejected(port: int, seed: int, t0: float) -> Conv:
        c = Conv(client=("203.0.113.10", port), server=("203.0.113.80", 80), seed=seed, t0=t0)
        c.handshake()
        c.seg(C2S, "PA", HTTP_REQ, tag="get")
        c.seg(S2C, "R", tag="fw-rst", dt=0.00001)
        return c

    early = rejected(42322, 90, 1_763_790_000.0)
    other = rejected(44960, 92, early.t + 0.04)
    # (other clients' connections in between: time slices of a few of them each)
    between = [http_conv(45000 + i, seed=100 + i, t0=other.t + 1.0 + 3.0 * i) for i in range(12)]
    late = http_conv(42322, seed=91, t0=other.t + 40.0)
    port = {id(early): 28355, id(other): 30704, id(late): 30704}
    port.update({id(c): 20000 + i for i, c in enumerate(between)})
    spec = [
        ("fw:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth1", lambda c: View(delay=0.0001, ttl_dec={C2S: 1},
                                   nat=nat_map(c, sport=port[id(c)]),
                                   drop=lambda s: s.tag in ("get", "fw-rst"))),
    ]  # fmt: skip
    table = (
        "tcp      6 7 CLOSE src=203.0.113.10 dst=203.0.113.80 sport=42322 dport=80 "
        "src=198.18.1.2 dst=198.18.1.1 sport=80 dport=30704 [ASSURED] use=1\n"
    )
    pts = points(tmp_path, [early, other, *between, late], spec)
    v = correlate(pts, conntrack={"fw": table})
    flows = sorted(v.flows, key=lambda fl: fl.first_ts)
    del flows[2:-1]
    assert [(fl.client, fl.legs[1].tuple) for fl in flows] == [
        ("203.0.113.10:42322", "198.18.1.1:28355 > 198.18.1.2:80"),
        ("203.0.113.10:44960", "198.18.1.1:30704 > 198.18.1.2:80"),
        ("203.0.113.10:42322", "198.18.1.1:30704 > 198.18.1.2:80"),
    ]
    # each rejected request: dropped in fw, which answered with a RST of its own
    for fl in flows[:2]:
        got = sorted((f.kind, f.direction, f.packets) for f in fl.findings)
        assert got == [("drop", "c2s", 1), ("inject", "s2c", 1)]
    assert flows[2].findings == ()
    assert not [f for fl in v.flows if fl not in flows for f in fl.findings]
    # time slices (of a few connections each) decide alike
    said: list[str] = []
    sliced = correlate(pts, conntrack={"fw": table}, slice_packets=40, slice_margin_s=0.001,
                       progress=said.append)  # fmt: skip
    assert len([x for x in said if x.endswith("findings")]) > 2
    assert sliced.to_dict() == v.to_dict()


def test_a_packet_seen_on_both_sides_of_a_blind_capture_is_not_charged_to_the_device(
    tmp_path: Path,
) -> None:
    # fw:eth0's capture lost one packet in the kernel: the client's handshake ACK of one
    # connection, seen at client:eth0 and at fw:eth1. fw itself sent RSTs of its own to
    # the server on three other connections (seen at fw:eth1 only): more packets missing
    # at fw:eth0 than it dropped, so those are fw's injections (`charge_capture_loss`).
    # The ACK is not one of them: it crossed fw:eth0's wire (the lab's fw-rst-get run
    # called it "injected" by fw)
    reset = [http_conv(41000 + i, seed=60 + i, t0=1_763_790_000.0 + i) for i in range(3)]
    lossy = http_conv(42000, seed=70, t0=1_763_790_003.5)
    [ack] = [s for s in lossy.segs if s.tag == "ack" and s.d == C2S][:1]
    fw_rst = [Seg(C2S, c.t + 0.001, "R", c.nxt[C2S], 0, conv=c) for c in reset]
    convs = [*reset, lossy]
    port = {id(c): 30000 + i for i, c in enumerate(convs)}
    pts = points(tmp_path, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001, ttl_dec={S2C: 1}, drop=lambda s: s is ack)),
        ("fw:eth1", lambda c: View(delay=0.0002, ttl_dec={C2S: 1},
                                   nat=nat_map(c, sport=port[id(c)]),
                                   extra=[s for s in fw_rst if s.conv is c])),
    ])  # fmt: skip
    pts[1] = PointInput(name=pts[1].name, pcap=pts[1].pcap, kernel_drops=1)
    v = correlate(pts)
    injected = only(v, "inject")
    assert [(f.packets, f.what.split()[0]) for f in injected] == [(1, "RST")] * 3
    [fl] = [fl for fl in v.flows if fl.client == "203.0.113.10:42000"]
    [gap] = fl.findings
    assert (gap.kind, gap.between) == ("gap", ("client:eth0", "fw:eth0"))
    assert gap.what.startswith("seen at client:eth0 and at fw:eth1, not at fw:eth0")


def test_a_reset_after_the_close_answered_by_a_local_nat_is_not_a_connection(
    tmp_path: Path,
) -> None:
    # a real capture (proxydetection base_https2, a VirtualBox NAT at the client): after
    # both FINs the client resets twice (RST without ACK) and the NAT in front of it
    # answers with RST,ACK seq=0 ack=<the client's RST>, seen at the client only. That
    # answer is far in sequence from the server's FIN, but a RST starts no connection
    # (it gave a half of its own: "RST injected" between the server and the client)
    c = http_conv(34710, seed=90)
    end = c.nxt[C2S] & 0xFFFFFFFF
    for _ in range(2):
        c.segs.append(Seg(d=C2S, t=c.t + 0.00003, flags="R", seq=end, ack=0, conv=c, ipid=0))
    answer = Seg(d=S2C, t=c.t + 0.0002, flags="RA", seq=0, ack=end, conv=c, ipid=0x2E9A)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View(extra=[answer])),
        ("srv:eth0", lambda x: View(delay=0.005, nat=nat_map(x))),
    ]))  # fmt: skip
    assert len(v.flows) == 1
    assert [f for f in all_findings(v) if f.kind in ("drop", "inject", "reset")] == []


def _end_host_path(c: Conv, tmp: Path, lost: Callable[[Seg], bool] | None = None) -> Verdict:
    nat = nat_map(c)
    return correlate(points(tmp, [c], [
        ("client:eth0", lambda x: View()),
        ("fw:eth0", lambda x: View(delay=0.0001)),
        ("fw:eth1", lambda x: View(delay=0.0002, nat=nat, ttl_dec={C2S: 1})),
        ("srv:eth0", lambda x: View(delay=0.0003, nat=nat, ttl_dec={C2S: 1}, drop=lost)),
    ]))  # fmt: skip


def test_data_the_end_hosts_dropped_after_their_captures(tmp_path: Path) -> None:
    """The server's own firewall drops the request (seen on srv:eth0, never acknowledged;
    the client sends it again 0.2 s later) and the client's drops a response segment:
    each is a drop by that host, at its point, one packet ('OK' was said: every point saw
    every packet)."""
    c = Conv(seed=5)
    c.handshake()
    req = c.seg(C2S, "PA", HTTP_REQ, tag="req")
    c.retransmit(req)
    c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
    resp = c.seg(S2C, "PA", HTTP_RESP[:1000], tag="resp")
    c.retransmit(resp, dt=0.3)
    c.seg(C2S, "A", tag="ack", dt=c.rtt / 2)
    c.close()
    v = _end_host_path(c, tmp_path)
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between, f.packets, f.bytes) for f in fl.findings]
    assert got == [
        ("drop", "c2s", ("srv:eth0", "srv"), 1, len(HTTP_REQ)),
        ("drop", "s2c", ("client:eth0", "client"), 1, 1000),
    ]
    assert f"ipid={req.ipid}" in fl.findings[0].what
    assert fl.findings[0].what.endswith(
        "reached srv:eth0, never acknowledged before it came again: lost after srv:eth0"
    )
    assert fl.summary.startswith("data dropped by srv itself (seen on srv:eth0, never on srv)")


@pytest.mark.parametrize("how", ["below", "within", "none"])
def test_a_copy_the_receiver_reported_twice_is_no_end_host_drop(tmp_path: Path, how: str) -> None:
    """The server sends the last response segment again (a tail-loss probe) before the
    client's delayed ACK left; the client's ACK then reports the copy with a D-SACK (RFC
    2883: its first SACK block below the cumulative ACK, or within the second block): it
    had the first one, nothing was lost (the lab's 40 concurrent downloads: "lost after
    client:eth0" on flows whose client counted TCPDSACKOldSent). Without the D-SACK the
    copy is all there is to go by: the first one is taken for dropped by the client."""
    c = Conv(seed=7)
    c.handshake()
    c.request(HTTP_REQ)
    resp = c.seg(S2C, "PA", HTTP_RESP[:1000], tag="resp")
    c.retransmit(resp, dt=0.02, tag="probe")
    end = (resp.seq + len(resp.data)) & 0xFFFFFFFF
    ack = c.seg(C2S, "A", tag="ack", dt=0.02)
    if how == "below":
        ack.sack = (resp.seq, end)
    elif how == "within":  # (a D-SACK of the copy within a SACK block above the ACK)
        ack.ack = resp.seq
        ack.sack = (resp.seq, end, resp.seq, (end + 500) & 0xFFFFFFFF)
        c.seg(C2S, "A", tag="ack", dt=0.001)
    c.close()
    v = _end_host_path(c, tmp_path)
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between) for f in fl.findings]
    if how == "none":
        assert got == [("drop", "s2c", ("client:eth0", "client"))], fl.findings
    else:
        assert got == [], fl.findings
        assert fl.summary.startswith("OK"), fl.summary


def test_an_end_host_drop_is_a_gap_where_the_capture_dropped_packets(tmp_path: Path) -> None:
    """The same request sent twice with no acknowledgement between, at a point whose
    capture dropped packets in the kernel: the acknowledgement may be among them (the
    lab's loaded bundles: 'data dropped by srv itself' on dozens of flows where srv:eth0
    dropped thousands): a gap that says why, as an unanswered SYN's is."""
    c = Conv(seed=5)
    c.handshake()
    req = c.seg(C2S, "PA", HTTP_REQ, tag="req")
    c.retransmit(req)
    c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
    c.response(HTTP_RESP[:1000])
    c.close()
    nat = nat_map(c)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View()),
        ("fw:eth0", lambda x: View(delay=0.0001)),
        ("fw:eth1", lambda x: View(delay=0.0002, nat=nat, ttl_dec={C2S: 1})),
        ("srv:eth0", lambda x: View(delay=0.0003, nat=nat, ttl_dec={C2S: 1})),
    ], kernel_drops=40))  # fmt: skip
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between, f.packets) for f in fl.findings]
    assert got == [("gap", "c2s", ("srv:eth0", "srv"), 1)], fl.findings
    assert fl.findings[0].what.endswith(
        "no acknowledgement seen before it came again, but srv:eth0 dropped 40 packets in the "
        "kernel"
    ), fl.findings[0].what


def test_a_retransmission_after_an_acknowledgement_is_no_end_host_drop(tmp_path: Path) -> None:
    """The server acknowledged the request (its ACK seen on srv:eth0, lost before fw:eth1):
    the client's copy is spurious, the ACK's loss the only finding; a zero-window probe
    the server refuses on purpose is none either."""
    c = Conv(seed=6)
    c.handshake()
    req = c.seg(C2S, "PA", HTTP_REQ, tag="req")
    ack = c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
    c.retransmit(req)
    c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
    c.response(HTTP_RESP[:1000])
    closed = c.seg(S2C, "A", tag="zero", dt=0.001)
    probe = c.seg(C2S, "A", b"x", tag="probe", dt=0.2, advance=False)
    c.seg(S2C, "A", tag="zero", dt=c.rtt / 2)
    c.retransmit(probe, dt=0.4, tag="probe")
    c.seg(S2C, "A", tag="zero", dt=c.rtt / 2)
    c.close()
    for s in c.segs:
        if s is closed or s.tag == "zero":
            s.win = 0  # the server's window closed: the client probes it

    def lost(s: Seg) -> bool:
        return s is ack

    nat = nat_map(c)

    def view(delay: float, natted: bool, drop: Callable[[Seg], bool] | None = None) -> View:
        return View(delay=delay, nat=nat if natted else {}, ttl_dec={C2S: 1} if natted else {},
                    drop=drop)  # fmt: skip

    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: view(0.0, False, lost)),
        ("fw:eth0", lambda x: view(0.0001, False, lost)),
        ("fw:eth1", lambda x: view(0.0002, True, lost)),
        ("srv:eth0", lambda x: view(0.0003, True)),
    ]))  # fmt: skip
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between, f.packets) for f in fl.findings]
    assert got == [("drop", "s2c", ("srv:eth0", "fw:eth1"), 1)], fl.findings


def test_segments_the_receivers_capture_lost_are_no_drop(tmp_path: Path) -> None:
    """The client's own tcpdump (a plain pcap: no count of its kernel drops) lost two
    response segments and the server's FIN; the client acknowledged all of it and the
    server never sent them again: they got through, a gap at client:eth0, not a drop
    between fw:eth0 and client:eth0. A segment fw really dropped (sent again) stays one."""
    c = Conv(seed=8)
    c.handshake()
    c.request(HTTP_REQ)
    resp = c.response(HTTP_RESP)
    real = c.seg(S2C, "PA", b"y" * 500, tag="resp")
    c.retransmit(real, dt=0.3)
    c.seg(C2S, "A", tag="ack", dt=c.rtt / 2)
    c.close()
    fin = next(s for s in c.segs if s.d == S2C and "F" in s.flags)
    unseen = {id(resp[0]), id(resp[2]), id(fin)}
    nat = nat_map(c)
    v = correlate(points(tmp_path, [c], [
        ("client:eth0", lambda x: View(drop=lambda s: id(s) in unseen or s is real)),
        ("fw:eth0", lambda x: View(delay=0.0001, drop=lambda s: s is real)),
        ("fw:eth1", lambda x: View(delay=0.0002, nat=nat, ttl_dec={C2S: 1})),
        ("srv:eth0", lambda x: View(delay=0.0003, nat=nat, ttl_dec={C2S: 1})),
    ]))  # fmt: skip
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between, f.packets) for f in fl.findings]
    assert got == [
        ("drop", "s2c", ("fw:eth1", "fw:eth0"), 1),
        ("gap", "s2c", ("fw:eth0", "client:eth0"), 3),
    ], fl.findings
    assert fl.findings[1].what.startswith(
        "seen at fw:eth0, not at client:eth0, but the capture at client:eth0 lost them: the "
        "receiver acknowledged them and they were never sent again; "
    ), fl.findings[1].what


def test_a_syn_dropped_and_sent_again_stays_a_drop(tmp_path: Path) -> None:
    """fw drops a SYN; the client sends it again a second later, it gets through and is
    answered (the SYN-ACK acknowledges the SYN's sequence number): the first copy was not
    sent once, so it stays a drop, not capture loss at fw:eth1."""
    c = Conv(seed=12)
    c.handshake(syn_retries=1)
    c.request(HTTP_REQ)
    c.close()
    first = c.segs[0]
    v = correlate(points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, drop=lambda s: s is first)),
    ]))  # fmt: skip
    (fl,) = v.flows
    got = [(f.kind, f.direction, f.between, f.packets, f.packet) for f in fl.findings]
    assert got == [("drop", "c2s", ("fw:eth0", "fw:eth1"), 1, "SYN")], fl.findings
