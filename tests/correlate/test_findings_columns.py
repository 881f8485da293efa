"""The findings of the common flows built from columns across flows (`finish_flows`) are
exactly those of the per-flow path (`finish_flow`): on a busy firewall with losses and
MSS clamping (also with the far point's capture cut short, where drops become gaps and
the per-flow path decides), on two points of one real capture, and on the ns-3 PPP path."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import busy_firewall

from hopcap.correlate import _fastwalk
from hopcap.correlate import engine as E
from hopcap.correlate import findings as F
from hopcap.correlate.findings import Built, finish_flow, finish_flows
from hopcap.correlate.stages import plan_stages
from hopcap.model import PointInput
from tests.realdata import REALDATA


def _prepared(points: list[PointInput]) -> E.Prepared:
    plan = plan_stages(points)
    pts = E.read_points(plan.points, tables=plan.tables)
    prep = E.prepare(pts, {})
    every = list(range(len(prep.flows)))
    E.set_clocks(prep, [E.match_part(prep, every)])
    return prep


def _facts(b: Built) -> tuple[Any, ...]:
    """Everything of a built flow, with the finding fields that equality leaves out (every
    attribute of its findings and legs)."""
    return (repr(b), [_fields(x) for x in b.findings], [_fields(x) for x in b.legs])


def _fields(x: Any) -> dict[str, Any]:
    return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}


def _check(prep: E.Prepared, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Both paths agree on every flow; returns (flows, flows the columns did not take)."""
    slow = [finish_flow(prep.pts, prep.present, f) for f in prep.flows]
    fell_back: list[int] = []

    def counted(pts: Any, present: Any, f: Any) -> Built:
        fell_back.append(1)
        return finish_flow(pts, present, f)

    monkeypatch.setattr(F, "finish_flow", counted)
    fast = finish_flows(prep.pts, prep.present, prep.flows)
    n_slow = len(fell_back)
    monkeypatch.setattr(F, "FINISH_CHUNK", 7)  # many chunks, the last one short
    chunked = finish_flows(prep.pts, prep.present, prep.flows)
    monkeypatch.setattr(_fastwalk, "disabled", True)  # texts and tuples without C
    plain = finish_flows(prep.pts, prep.present, prep.flows)
    monkeypatch.undo()
    assert len(fast) == len(slow) == len(chunked) == len(plain)
    for a, b, c, d in zip(fast, slow, chunked, plain, strict=True):
        assert _facts(a) == _facts(b) == _facts(c) == _facts(d)
    return len(prep.flows), n_slow


@pytest.mark.parametrize(("loss", "seed"), [(0.05, 3), (0.15, 5)])
def test_busy_firewall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: float, seed: int
) -> None:
    a, b = busy_firewall(tmp_path, 150, loss=loss, seed=seed)
    prep = _prepared([PointInput("fw:eth0", str(a)), PointInput("fw:eth1", str(b))])
    n, slow = _check(prep, monkeypatch)
    kinds = {x.kind for f in finish_flows(prep.pts, prep.present, prep.flows) for x in f.findings}
    assert {"drop", "rewrite"} <= kinds
    assert n >= 150 and slow < n // 2  # most flows went the column way


def test_busy_firewall_blind_far_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outside capture stops half way: drops after that are gaps, decided per flow."""
    a, b = busy_firewall(tmp_path, 150, loss=0.1, seed=9)
    prep = _prepared([PointInput("fw:eth0", str(a)), PointInput("fw:eth1", str(b))])
    t = prep.pts[1].table
    prep.pts[1].stop_ns = int(t.ts.min()) + (int(t.ts.max()) - int(t.ts.min())) // 2
    n, slow = _check(prep, monkeypatch)
    gaps = [x for f in finish_flows(prep.pts, prep.present, prep.flows) for x in f.findings
            if x.kind == "gap"]  # fmt: skip
    assert gaps and 0 < slow < n


@pytest.mark.parametrize(
    "names",
    [
        ("haka/http_request-modif.pcap", "haka/http_request-modif-ref.pcap"),
        ("tcpreplay/test.pcap", "tcpreplay/test.rewrite_sequence"),
        ("tcpreplay/test.pcap", "tcpreplay/test.rewrite_1ttl"),
        ("ns3-ppp/tcp-large-transfer-0-0.pcap", "ns3-ppp/tcp-large-transfer-1-0.pcap",
         "ns3-ppp/tcp-large-transfer-1-1.pcap", "ns3-ppp/tcp-large-transfer-2-0.pcap"),
    ],
)  # fmt: skip
def test_real_captures(names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [REALDATA / x for x in names]
    if not all(p.exists() for p in paths):
        pytest.fail(f"missing test capture among {names}")
    prep = _prepared([PointInput(f"p{i}", str(p)) for i, p in enumerate(paths)])
    n, _slow = _check(prep, monkeypatch)
    assert n > 0


def _odd_pair(out: Path) -> tuple[Path, Path]:
    """Two points of a firewall (MSS clamping, masquerading) and flows off the common
    shape among common ones: a tuple reused by a second connection, a server's RST, a
    FIN with data lost with other segments (a several-packet drop tallied by kind), one
    IPv6 flow, several fields rewritten (DSCP with two values, the MSS, the window), a
    segment lost both ways, a connection whose SYN-ACK never came back, and a segment the
    far capture lost (the server acknowledged it: a gap, not a drop)."""
    from dataclasses import replace

    from pcapgen import C2S, S2C, Conv, Seg, View, render, write

    t0 = 1_763_790_000.0
    convs: list[Conv] = []

    def conv(i: int, client: tuple[str, int] | None = None, **kw: Any) -> Conv:
        c = Conv(client=client or (f"198.18.7.{1 + i}", 30000 + i),
                 server=("203.0.113.80", 80), t0=t0 + i * 0.05, seed=1000 + i, **kw)  # fmt: skip
        convs.append(c)
        return c

    for i in range(6):  # common: clamped, nothing lost
        c = conv(i)
        c.handshake()
        c.request(b"GET / HTTP/1.1\r\n\r\n")
        c.response(b"x" * 3000)
        c.close()
    reused = [conv(6, ("198.18.7.99", 31000)), conv(7, ("198.18.7.99", 31000))]
    for c in reused:  # the same tuple twice, one after the other
        c.handshake()
        c.request(b"GET /a HTTP/1.1\r\n\r\n")
        c.response(b"y" * 500)
        c.close()
    rst = conv(8)  # the server resets
    rst.handshake()
    rst.request(b"GET /r HTTP/1.1\r\n\r\n")
    rst.seg(S2C, "RA", tag="rst", dt=0.001)
    fin = conv(9)  # data and a FIN carrying data lost c2s, sent again once it timed out
    fin.handshake()
    lost = [fin.seg(C2S, "A", b"z" * 1448, tag="lost"),
            fin.seg(C2S, "PA", b"z" * 552, tag="lost", dt=0.00001),
            fin.seg(C2S, "FPA", b"bye", tag="lost", dt=0.001)]  # fmt: skip
    for k, s in enumerate(lost):
        fin.retransmit(s, dt=0.2 if k == 0 else 0.00001)
    fin.seg(S2C, "A", tag="ack", dt=0.001)
    fin.seg(S2C, "FA", tag="fin", dt=0.001)
    v6 = conv(10, ("2001:db8::7", 40000))
    v6.server = ("2001:db8:1::80", 80)
    v6.handshake()
    v6.request(b"GET /6 HTTP/1.1\r\n\r\n")
    v6.response(b"w" * 800)
    v6.close()
    remark = conv(11)  # DSCP remarked to two values, window rewritten
    remark.handshake()
    for k in range(4):
        remark.send(C2S, bytes([k]) * 300, tag=f"remark{k % 2}")
    remark.close()
    both = conv(12)  # one segment lost each way (and sent again, then acknowledged)
    both.handshake()
    for d, data, tag, back in ((C2S, b"q" * 600, "lost", S2C), (S2C, b"r" * 600, "lost_in", C2S)):
        both.retransmit(both.seg(d, "PA", data, tag=tag))
        both.seg(back, "A", tag="ack", dt=both.rtt / 2)
    both.close()
    silent = conv(13)  # the SYN-ACK never came back through the firewall: no ACK of it
    silent.handshake(answered=False)
    silent.seg(S2C, "SA", mss=1460, tag="lost_in", dt=silent.rtt / 2)
    unseen = conv(14)  # fw:out's capture lost a request segment the server acknowledged
    unseen.handshake()
    unseen.send(C2S, b"u" * 900, tag="unseen")
    unseen.response(b"v" * 400)
    unseen.close()

    def inside_drop(s: Seg) -> bool:
        return s.tag == "lost_in"

    def change(s: Seg) -> Seg:
        if s.d == C2S and s.mss is not None and s.mss > 1400:
            s = replace(s, mss=1400)
        if s.tag.startswith("remark"):
            s = replace(s, tos=32 if s.tag == "remark0" else 64, win=1000)
        return s

    p0 = write(out / "a.pcap", render(convs, View(drop=inside_drop)))
    pkts: list[tuple[float, Any]] = []
    for i, c in enumerate(convs):
        v6c = ":" in c.client[0]
        pub = (c.client[0], c.client[1]) if v6c else ("198.51.100.1", 2000 + i)
        nat = {C2S: (*pub, *c.server), S2C: (*c.server, *pub)}
        drop = lambda s: s.tag == "unseen" or (s.tag == "lost" and s.d == C2S)  # noqa: E731
        pkts += render([c], View(nat=nat, delay=0.0003, drop=drop, change=change))
    return p0, write(out / "b.pcap", pkts)


def test_odd_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _odd_pair(tmp_path)
    prep = _prepared([PointInput("fw:in", str(a)), PointInput("fw:out", str(b))])
    n, slow = _check(prep, monkeypatch)
    built = finish_flows(prep.pts, prep.present, prep.flows)
    what = {(x.kind, x.field) for f in built for x in f.findings}
    assert {("drop", None), ("rewrite", "tcp.mss"), ("rewrite", "ip.dscp")} <= what
    tallied = [x.what for f in built for x in f.findings if x.kind == "drop" and x.packets > 1]
    # two segments and the FIN carrying data, counted as data (not as a FIN)
    assert any(w.endswith("(3 data)") for w in tallied)
    # the segment fw:out's capture lost: got through (acknowledged, sent once), a gap
    (lost,) = [f for f in built if f.client.endswith(":30014")]
    assert [(x.kind, x.direction, x.packets) for x in lost.findings if x.kind != "rewrite"] == [
        ("gap", "c2s", 1)
    ]
    assert 0 < slow < n  # the lost SYN-ACK and the gap went the per-flow way


def test_odd_flows_with_a_missing_point_and_a_capture_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing point: every flow the per-flow way, and the same; the far capture cut
    short: drops after its end become gaps (decided per flow), the rest by columns."""
    a, b = _odd_pair(tmp_path)
    prep = _prepared([PointInput("fw:in", str(a)), PointInput("gone", None),
                      PointInput("fw:out", str(b))])  # fmt: skip
    n, slow = _check(prep, monkeypatch)
    assert slow == n
    prep = _prepared([PointInput("fw:in", str(a)), PointInput("fw:out", str(b))])
    t = prep.pts[1].table
    prep.pts[1].stop_ns = int(t.ts.min()) + (int(t.ts.max()) - int(t.ts.min())) // 2
    n, slow = _check(prep, monkeypatch)
    assert 0 < slow < n


@pytest.mark.parametrize("which", ["odd", "busy"])
def test_verdicts_the_same_with_every_flow_finished_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """The whole verdict (assembled, localised, patterns, JSON) from the columns' flows is
    byte for byte the one of the per-flow path."""
    from hopcap.correlate import correlate
    from hopcap.jsonout import dumps

    if which == "odd":
        a, b = _odd_pair(tmp_path)
    else:
        a, b = busy_firewall(tmp_path, 120, loss=0.1, seed=11)
    points = [PointInput("fw:in", str(a)), PointInput("fw:out", str(b))]
    fast = dumps(correlate(points).to_dict())

    def one_by_one(pts: Any, present: Any, flows: Any) -> list[Built]:
        return [finish_flow(pts, present, f) for f in flows]

    monkeypatch.setattr(F, "_finish_chunk", one_by_one)
    assert dumps(correlate(points).to_dict()) == fast


def test_compiled_texts_and_tuples_are_the_python_ones() -> None:
    """`_fastwalk.finding_texts` and `endpoint_texts` write what the Python loops write:
    every flag combination, SYN (its own seq) or not (relative, negative too), with and
    without payload, TSval and IP ID; IPv4 edges and ports; IPv6 rows left to Python."""
    if not _fastwalk.available():
        pytest.fail("no C compiler: the compiled path cannot be compared")
    rng = np.random.default_rng(7)
    n = 4096
    fl = np.arange(n, dtype=np.int64) % 256
    seq = rng.integers(0, 1 << 32, n)
    rel = rng.integers(-(1 << 31), 1 << 31, n)
    rel[:5] = [0, -1, 1, -(1 << 31), (1 << 31) - 1]
    plen = np.where(rng.random(n) < 0.5, 0, rng.integers(1, 65536, n))
    tsval = np.where(rng.random(n) < 0.3, -1, rng.integers(0, 1 << 32, n))
    v = np.where(rng.random(n) < 0.2, 6, 4).astype(np.uint8)
    ipid = np.where(v == 4, rng.integers(0, 1 << 16, n), -1)
    big = (1 << 63) - 1  # the longest numbers a row can hold (none of a real capture)
    for k, f in ((5, 255), (6, 255 & ~2)):
        fl[k], seq[k], rel[k], plen[k], tsval[k], v[k], ipid[k] = f, big, -big - 1, big, big, 4, big
    got = _fastwalk.finding_texts(fl, seq, rel, plen, tsval, v, ipid)
    assert got == F._texts(fl, seq, rel, plen.tolist(), tsval, v, ipid)
    assert got is not None and got[2].startswith(f"SYN seq={seq[2]}")  # its own seq

    lo = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    lo[:3] = [0, (1 << 32) - 1, 0x0A000001]
    port = rng.integers(0, 65536, n)
    port[:3] = [0, 65535, (1 << 63) - 1]
    lo[3] = (1 << 64) - 1  # (the low word only of an IPv4 address is read)
    v[:4] = 4
    ends = _fastwalk.endpoint_texts(v, lo, port)
    assert ends is not None and ends[:2] == ["0.0.0.0:0", "255.255.255.255:65535"]
    for i in range(n):
        want = F.endpoint_str(int(v[i]), 0, int(lo[i]), int(port[i])) if v[i] == 4 else ""
        assert ends[i] == want


def _resets_pair(out: Path, names: tuple[str, str]) -> E.Prepared:
    """Two points of an MSS-clamping, masquerading firewall, flows (by client port)
    ending in the server's RST: 31000 a SYN answered by RST|ACK (a closed port, a scan),
    31001 a request segment lost at the hop (sent again) then the server's RST, 31002 a
    RST lost between the points (a drop of the RST and the reset), 31003 two RSTs
    (tallied: per flow), 31004 a FIN then a RST (a close with RST: per flow), 31005 a
    reset after a response; 31099 a common exchange seconds later."""
    from dataclasses import replace

    from pcapgen import C2S, S2C, Conv, View, render, write

    t0 = 1_763_790_000.0
    cs = [Conv(client=(f"198.18.9.{1 + i}", 31000 + i), server=("203.0.113.80", 443),
               t0=t0 + i * 0.05, seed=2000 + i) for i in range(6)]  # fmt: skip
    cs[0].seg(C2S, "S", mss=1460)
    cs[0].seg(S2C, "RA", dt=0.0002)
    for c in cs[1:]:
        c.handshake()
    cs[1].retransmit(cs[1].seg(C2S, "PA", b"a" * 600, tag="lost_at_hop"))
    cs[1].seg(S2C, "A", dt=0.001)
    cs[1].seg(S2C, "RA", dt=0.001)
    for c in cs[2:]:
        c.request(b"GET / HTTP/1.1\r\n\r\n")
    cs[2].seg(S2C, "RA", tag="rst_lost", dt=0.001)
    cs[3].seg(S2C, "RA", dt=0.001)
    cs[3].seg(S2C, "R", dt=0.001)
    cs[4].seg(S2C, "FA", dt=0.001)
    cs[4].seg(S2C, "RA", dt=0.001)
    cs[5].response(b"r" * 2000)
    cs[5].seg(S2C, "RA", dt=0.001)
    late = Conv(client=("198.18.9.99", 31099), server=("203.0.113.80", 443), t0=t0 + 3, seed=9)
    late.handshake()
    late.request(b"GET / HTTP/1.1\r\n\r\n")
    late.close()
    cs.append(late)

    def clamp(s: Any) -> Any:
        return replace(s, mss=1400) if s.d == C2S and s.mss else s

    a = write(out / "a.pcap", render(cs, View(drop=lambda s: s.tag == "rst_lost")))
    pkts: list[tuple[float, Any]] = []
    for i, c in enumerate(cs):
        pub = ("198.51.100.1", 4000 + i)
        nat = {C2S: (*pub, *c.server), S2C: (*c.server, *pub)}
        pkts += render([c], View(nat=nat, delay=0.0003, change=clamp,
                                 drop=lambda s: s.tag == "lost_at_hop"))  # fmt: skip
    b = write(out / "b.pcap", sorted(pkts, key=lambda x: x[0]))
    return _prepared([PointInput(names[0], str(a)), PointInput(names[1], str(b))])


@pytest.mark.parametrize("names", [("fw:in", "fw:out"), ("a", "b"), ("cli:eth0", "srv:eth0")])
def test_server_resets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: Any) -> None:
    """A server's RST at the path's last point (a closed port, a reset after a request,
    with drops and rewrites beside it) is taken by the columns, as the per-flow path
    writes it; two RSTs or a RST after a FIN are left to the per-flow path."""
    prep = _resets_pair(tmp_path, names)
    n, slow = _check(prep, monkeypatch)
    assert (n, slow) == (7, 2)
    built = {int(b.client.rsplit(":", 1)[1]): b for b in finish_flows(prep.pts, prep.present,
                                                                       prep.flows)}  # fmt: skip
    who = "srv" if names[1] == "srv:eth0" else "server"

    def kinds(port: int) -> list[tuple[str, str]]:
        return [(x.kind, x.field or x.direction) for x in built[port].findings]

    assert kinds(31000) == [("rewrite", "tcp.mss"), ("reset", "s2c")]
    at = "inside fw" if names[0] == "fw:in" else f"between {names[0]} and {names[1]}"
    want = f"tcp.mss rewritten {at}: 1460 -> 1400 (1 packet); 1 more finding"
    assert built[31000].summary == want
    assert built[31000].findings[1].what.startswith(f"{who} answered with RST: RST,ACK seq=")
    assert kinds(31001) == [("drop", "c2s"), ("rewrite", "tcp.mss"), ("reset", "s2c")]
    assert kinds(31002) == [("drop", "s2c"), ("rewrite", "tcp.mss"), ("reset", "s2c")]
    assert built[31002].findings[0].packet == "RST"
    assert kinds(31003) == [("rewrite", "tcp.mss"), ("reset", "s2c")]
    assert built[31003].findings[1].packets == 2
    assert kinds(31004) == [("rewrite", "tcp.mss")]
    assert "closed with RST after its FIN" in " ".join(built[31004].legs[1].details)
    assert kinds(31005) == [("rewrite", "tcp.mss"), ("reset", "s2c")]
