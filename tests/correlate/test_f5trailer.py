"""F5 BIG-IP Ethernet trailers: both formats decoded from frames built from the format's
description, damaged ones ignored, and the flow ids linking the client side and the server
side of a proxied connection exactly where content alone cannot tell."""

from __future__ import annotations

from pathlib import Path

import pytest
from pcapgen import Conv, View, render, write_pcap_raw, write_pcapng_raw

from hopcap.correlate import correlate, read_capture
from hopcap.correlate.f5trailer import (
    PROBE_BYTES,
    fileinfo,
    parse_trailer,
    probe_capture,
    read_table_trailers,
)
from hopcap.model import PointInput
from tests import f5gen as g

MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"


# ------------------------------------------------------------------ decoding, legacy


def test_legacy_low_medium_high_v11() -> None:
    raw = (
        g.legacy_low(ingress=True, slot=1, tmm=3, vip="/Common/vs_http")
        + g.legacy_med(flow=0x1122334455667788, peer=0x99AABBCCDDEEFF00, ver=3)
        + g.legacy_high("198.51.100.5", 50001, "198.51.100.80", 8080)
    )
    t = parse_trailer(raw)
    assert t is not None and t.fmt == "legacy" and t.length == len(raw)
    assert (t.flow_id, t.peer_id) == (0x1122334455667788, 0x99AABBCCDDEEFF00)
    assert (t.ingress, t.slot, t.tmm, t.vip) == (True, 2, 3, "/Common/vs_http")
    assert t.peer is not None
    assert (t.peer.remote, t.peer.remote_port, t.peer.local, t.peer.local_port) == (
        "198.51.100.5", 50001, "198.51.100.80", 8080)  # fmt: skip
    assert t.peer.proto == 6 and t.peer.route_domain is None


@pytest.mark.parametrize("ver", [0, 1, 2, 3])
def test_legacy_medium_versions(ver: int) -> None:
    rst = "No server selected" if ver else None
    t = parse_trailer(g.legacy_med(flow=7, peer=9, ver=ver, rst=rst))
    assert t is not None and (t.flow_id, t.peer_id) == (7, 9)
    assert t.rst_cause == rst


def test_legacy_10x_and_94_layouts() -> None:
    t = parse_trailer(
        g.legacy_low(ingress=False, vip="vs", ver=0) + g.legacy_med_10(flow=5, peer=6)
    )
    assert t is not None and (t.flow_id, t.peer_id, t.vip, t.ingress) == (5, 6, "vs", False)
    t = parse_trailer(g.legacy_low_94(ingress=True, flow=0xAB, peer=0xCD, vip="v94"))
    assert t is not None and (t.flow_id, t.peer_id, t.vip) == (0xAB, 0xCD, "v94")


def test_route_domain_and_ipv6_peer() -> None:
    t = parse_trailer(
        g.legacy_med(flow=1, peer=2) + g.legacy_high("10.1.2.3", 1, "10.1.2.4", 2, rd=12)
    )
    assert t is not None and t.peer is not None
    assert (t.peer.remote, t.peer.route_domain) == ("10.1.2.3", 12)
    t = parse_trailer(
        g.dpt(g.dpt_med(flow=1, peer=2), g.dpt_high("2001:db8::5", 3, "2001:db8::6", 4))
    )
    assert t is not None and t.peer is not None and t.peer.remote == "2001:db8::5"


def test_no_peer_no_peer_addresses() -> None:
    """High detail of a flow without a peer (yet) says nothing: not read as addresses."""
    t = parse_trailer(g.legacy_med(flow=1, peer=0) + bytes([3, 41, 0]) + bytes(39))
    assert t is not None and t.flow_id == 1 and t.peer_id == 0 and t.peer is None


# ------------------------------------------------------------------ decoding, DPT (14.1+)


def test_dpt_all_levels_and_other_providers() -> None:
    raw = g.dpt(
        g.dpt_low(ingress=False, slot=0, tmm=5, vip="/Common/vs_api"),
        g.dpt_other(b"CLIENT_RANDOM 00 11"),
        g.dpt_med(flow=0xDEAD, peer=0xBEEF, rst="idle timeout"),
        g.dpt_high("203.0.113.10", 40001, "203.0.113.80", 80),
    )
    t = parse_trailer(raw)
    assert t is not None and t.fmt == "dpt" and t.length == len(raw)
    assert (t.flow_id, t.peer_id, t.tmm, t.vip, t.ingress, t.slot) == (
        0xDEAD, 0xBEEF, 5, "/Common/vs_api", False, 1)  # fmt: skip
    assert t.rst_cause == "idle timeout"
    assert t.peer is not None and (t.peer.remote, t.peer.local_port) == ("203.0.113.10", 80)


def test_padding_before_a_trailer_is_skipped() -> None:
    """A short frame is padded to 60 bytes before TMM appends its trailer."""
    t = parse_trailer(bytes(6) + g.dpt(g.dpt_med(flow=3, peer=4)))
    assert t is not None and (t.flow_id, t.peer_id) == (3, 4)


# ------------------------------------------------------------------ damaged trailers


def _damaged() -> list[bytes]:
    good_dpt = g.dpt(g.dpt_low(ingress=True, vip="vs"), g.dpt_med(flow=1, peer=2))
    good_old = g.legacy_low(ingress=True, vip="vs") + g.legacy_med(flow=1, peer=2)
    out = [good_dpt[:n] for n in range(len(good_dpt))]
    out += [good_old[:n] for n in range(len(good_old))]
    out += [
        bytes(40),  # padding only
        b"\xff" * 40,
        g.DPT_MAGIC + b"\xff\xff\x00\x01" + bytes(30),  # DPT length past the end
        g.DPT_MAGIC + b"\x00\x30\x00\x01" + b"\x00\x01\x00\x02\xff\xf0\x00\x04" + bytes(40),
        bytes([2, 40, 1]) + bytes(20),  # legacy medium whose length runs past the end
        bytes([2, 28, 3]) + bytes(27),  # legacy medium v3 shorter than its fixed part
        bytes([1, 20, 1]) + bytes([1, 0, 0, 99]) + bytes(17),  # VIP length that does not fit
        bytes([2, 28, 1]) + bytes(26) + bytes([200]),  # RST cause length that does not fit
    ]
    return out


def test_damaged_or_truncated_trailers_are_ignored() -> None:
    """Every prefix of a valid trailer, garbage and lengths that lie: no crash, and never
    a flow id that is not in the bytes."""
    for raw in _damaged():
        t = parse_trailer(raw)
        assert t is None or t.flow_id in (None, 1), raw.hex()
    # a medium block cut short has no flow id; the intact low block before it still reads
    old = g.legacy_low(ingress=True, vip="vs") + g.legacy_med(flow=1, peer=2)
    t = parse_trailer(old[:-1])
    assert t is not None and t.vip == "vs" and t.flow_id is None
    # a DPT block whose length runs past the frame (snap length) is not read at all
    full = g.dpt(g.dpt_low(ingress=True, vip="vs"), g.dpt_med(flow=1, peer=2))
    assert parse_trailer(full[:-1]) is None


def test_fileinfo_pseudo_packet() -> None:
    fr = g.fileinfo_frame("tcpdump -ni 0.0:nnnp -w /var/tmp/a.pcap", "BIG-IP 15.1.8", "bigip1.x")
    info = fileinfo(fr)
    assert info is not None
    assert info["CMD"] == "tcpdump -ni 0.0:nnnp -w /var/tmp/a.pcap"
    assert (info["VER"], info["HOST"], info["PLAT"]) == ("BIG-IP 15.1.8", "bigip1.x", "Z100")
    assert fileinfo(MAC + b"\x08\x00" + bytes(40)) is None


# ------------------------------------------------------------------ captures

T0 = 1_763_790_000.0
REQ = b"GET /api HTTP/1.1\r\nHost: app\r\nUser-Agent: probe\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + b"x" * 64
VIP = ("203.0.113.80", 80)
SNAT, POOL = "198.51.100.5", ("198.51.100.80", 8080)


def _conv(
    client: tuple[str, int], server: tuple[str, int], t0: float, rtt: float, seed: int
) -> Conv:
    c = Conv(client=client, server=server, t0=t0, rtt=rtt, seed=seed)
    c.handshake()
    c.request(REQ)
    c.response(RESP)
    c.close()
    return c


def _frames(
    convs: list[tuple[Conv, int, int, float]], *, trailers: bool, fmt: str = "dpt"
) -> list[tuple[int, bytes]]:
    """Ethernet frames of the conversations in time order, each (conv, flow id, peer id,
    time the peer flow appeared) with its trailer: peer id 0 before the peer existed."""
    out = []
    for conv, flow, peer, peer_t in convs:
        for t, pkt in render([conv], View()):
            ip = bytes(pkt)
            fr = MAC + b"\x08\x00" + ip
            if trailers:
                fr += b"\x00" * max(0, 60 - len(fr))
                p = peer if t >= peer_t else 0
                if fmt == "dpt":
                    fr += g.dpt(
                        g.dpt_low(ingress=True, tmm=0, vip="/Common/vs_app"),
                        g.dpt_med(flow=flow, peer=p),
                    )
                else:
                    fr += g.legacy_low(ingress=True, vip="/Common/vs_app") + g.legacy_med(
                        flow=flow, peer=p
                    )
            out.append((round(t * 1e9), fr))
    return sorted(out)


def _scenario() -> tuple[list[tuple[Conv, int, int, float]], list[tuple[Conv, int, int, float]]]:
    """Two clients send the same request at nearly the same time; BIG-IP opens two
    server-side connections that carry the same bytes. Which carried which is only in
    the trailers: c1 went out on A, c2 on B."""
    c1 = _conv(("203.0.113.10", 40001), VIP, T0, 0.004, 1)
    c2 = _conv(("203.0.113.11", 40002), VIP, T0 + 0.0003, 0.004, 2)
    a = _conv((SNAT, 50001), POOL, T0 + 0.0045, 0.0002, 3)
    b = _conv((SNAT, 50002), POOL, T0 + 0.0046, 0.0002, 4)
    f1, f2, fa, fb = 0x1001, 0x2002, 0xA00A, 0xB00B
    front = [(c1, f1, fa, a.segs[0].t), (c2, f2, fb, b.segs[0].t)]
    back = [(a, fa, f1, 0.0), (b, fb, f2, 0.0)]
    return front, back


def _links(v: object) -> dict[str, tuple[str, tuple[str, ...]]]:
    out = {}
    for f in v.flows:  # type: ignore[attr-defined]
        legs = f.legs
        if len(legs) == 2:
            out[legs[0].tuple.split(" > ")[0]] = (legs[1].tuple.split(" > ")[0], legs[1].details)
    return out


@pytest.mark.parametrize("fmt", ["dpt", "legacy"])
def test_trailer_links_proxied_connections_exactly(tmp_path: Path, fmt: str) -> None:
    front, back = _scenario()
    pts = {}
    for trailers in (False, True):
        tag = "t" if trailers else "p"
        ext = write_pcap_raw(
            tmp_path / f"ext{tag}.pcap", _frames(front, trailers=trailers, fmt=fmt)
        )
        # the server side as pcapng: both walks of the module
        fr = _frames(back, trailers=trailers, fmt=fmt)
        inn = write_pcapng_raw(
            tmp_path / f"int{tag}.pcapng", [(1, 9)], [(0, ts, f) for ts, f in fr]
        )
        pts[trailers] = [
            PointInput(name="lb:external:nnnp", pcap=ext),
            PointInput(name="lb:internal:nnnp", pcap=inn),
        ]
    plain = _links(correlate(pts[False]))
    # content alone: the same bytes at nearly the same time; the closest in time wins,
    # which is not what BIG-IP did
    assert {k: v[0] for k, v in plain.items()} == {
        "203.0.113.10:40001": f"{SNAT}:50002", "203.0.113.11:40002": f"{SNAT}:50001"}  # fmt: skip
    assert not any("F5 trailer" in d for _, dd in plain.values() for d in dd)
    v = correlate(pts[True])
    exact = _links(v)
    assert {k: x[0] for k, x in exact.items()} == {
        "203.0.113.10:40001": f"{SNAT}:50001", "203.0.113.11:40002": f"{SNAT}:50002"}  # fmt: skip
    for _k, (_t, details) in exact.items():
        assert any(d.startswith("linked by the F5 trailer: flow id 0x") for d in details), details
    assert all(f.findings == () for f in v.flows), [f.findings for f in v.flows]
    # the trailers are never payload: a point with them reads like one without
    for trailers in (False, True):
        t = read_capture(pts[trailers][0].pcap)
        assert int(t.plen.sum()) == 2 * (len(REQ) + len(RESP))
        t.close()


def test_table_trailers_of_a_capture(tmp_path: Path) -> None:
    front, _ = _scenario()
    info = g.fileinfo_frame("tcpdump -ni 0.0:nnnp", "BIG-IP 17.1.0", "lb1")
    frames = [(round(T0 * 1e9) - 1000, info), *_frames(front, trailers=True)]
    t = read_capture(write_pcap_raw(tmp_path / "a.pcap", frames))
    tt = read_table_trailers(t)
    assert tt is not None and tt.info is not None and tt.info["VER"] == "BIG-IP 17.1.0"
    assert len(tt.rows) == len(t)  # every TCP packet has its trailer
    assert set(tt.flow.tolist()) == {0x1001, 0x2002}
    assert set(tt.peer.tolist()) == {0, 0xA00A, 0xB00B}
    t.close()
    # an ordinary capture: nothing, after a probe of its start
    plain = read_capture(write_pcap_raw(tmp_path / "b.pcap", _frames(front, trailers=False)))
    assert read_table_trailers(plain) is None
    plain.close()


def test_probe_reads_the_head_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether a point is one BIG-IP capture to split is decided from the first 256 KiB
    of its file, read without mapping the file (mapping it populated every page of a
    large capture just to look at its head): a capture with trailers, with the
    capture-information pseudo packet, or cut in the middle of a record says yes; an
    ordinary, empty, missing, truncated-header capture or a directory says no (the
    reader says why later); trailers only beyond the head are not looked for."""
    import mmap

    def no_map(*a: object, **k: object) -> None:
        raise AssertionError("the probe maps the file")

    front, _ = _scenario()
    with_tr = _frames(front, trailers=True)
    trailers = write_pcap_raw(tmp_path / "t.pcap", with_tr)
    plain = write_pcap_raw(tmp_path / "p.pcap", _frames(front, trailers=False))
    info = g.fileinfo_frame("tcpdump -ni 0.0:nnnp", "BIG-IP 17.1.0", "lb1")
    pseudo = write_pcap_raw(tmp_path / "i.pcap", [(round(T0 * 1e9), info)])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(trailers.read_bytes()[:-7])  # the last record cut short
    short = tmp_path / "short.pcap"
    short.write_bytes(trailers.read_bytes()[:20])  # not even a file header
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    # trailers only after the head: ordinary frames fill the first 256 KiB
    filler = [(round(T0 * 1e9) - 10_000 + i, MAC + b"\x08\x06" + bytes(1400)) for i in range(200)]
    late = write_pcap_raw(tmp_path / "late.pcap", filler + with_tr)
    assert late.stat().st_size > 200 * 1400 > PROBE_BYTES
    monkeypatch.setattr(mmap, "mmap", no_map)
    assert [probe_capture(p) for p in (trailers, pseudo, cut)] == [True, True, True]
    none = (plain, short, empty, tmp_path / "missing.pcap", tmp_path, late)
    assert [probe_capture(p) for p in none] == [False] * len(none)
