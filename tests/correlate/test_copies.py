"""Exact copies of packets (a mirror port copying both directions, a bridge and its ports in
`tcpdump -i any`) removed as a capture is read: the verdict is the one of the capture
without them, sliced or not, and a warning says how many were removed."""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import (
    C2S,
    S2C,
    Conv,
    UConv,
    View,
    busy_firewall,
    frame_bytes,
    render,
    render_dgrams,
    write_pcap_raw,
)

from hopcap.correlate import copies, correlate, read_capture
from hopcap.correlate import reader as rd
from hopcap.correlate import slices as sl
from hopcap.model import PointInput, Verdict


def records(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp ns, frame) of every record of a little-endian nanosecond pcap."""
    b = path.read_bytes()
    assert struct.unpack_from("<I", b)[0] == 0xA1B23C4D
    out, pos = [], 24
    while pos < len(b):
        sec, ns, cap, _orig = struct.unpack_from("<IIII", b, pos)
        out.append((sec * 1_000_000_000 + ns, b[pos + 16 : pos + 16 + cap]))
        pos += 16 + cap
    return out


def _frames(pkts: list[tuple[float, Any]]) -> list[tuple[int, bytes]]:
    return [(round(t * 1e9), frame_bytes(p)) for t, p in pkts]


def _nat_pair(d: Path) -> tuple[Path, Path]:
    """A masquerading firewall's inside and outside (`busy_firewall`: MSS clamping, loss
    and retransmissions 200 ms later), with a UDP flow and a ping through it."""
    d.mkdir()
    a, b = busy_firewall(d, 60)
    udp = UConv(client=("198.18.9.9", 40000), server=("203.0.113.53", 5000), seed=3)
    ping = UConv(client=("198.18.9.9", 7), server=("203.0.113.53", 0), proto="icmp", seed=4)
    for i in range(20):
        udp.send(C2S, b"q%03d" % i, dt=0.01)
        udp.send(S2C, b"answer %03d" % i, dt=0.0004)
    ping.ping(6)
    pub = {C2S: ("198.51.100.1", 61000, "203.0.113.53", 5000),
           S2C: ("203.0.113.53", 5000, "198.51.100.1", 61000)}  # fmt: skip
    pub_ping = {C2S: ("198.51.100.1", 7, "203.0.113.53", 0),
                S2C: ("203.0.113.53", 0, "198.51.100.1", 7)}  # fmt: skip
    for path, views in (
        (a, [View(), View()]),
        (b, [View(nat=pub, ttl_dec={C2S: 1}, delay=0.0002),
             View(nat=pub_ping, ttl_dec={C2S: 1}, delay=0.0002)]),
    ):  # fmt: skip
        extra = _frames(render_dgrams([udp], views[0]) + render_dgrams([ping], views[1]))
        write_pcap_raw(path, sorted(records(path) + extra, key=lambda r: r[0]))
    return a, b


def _copied(src: Path, dst: Path, gap_ns: int, every: int = 1) -> int:
    """`src` with every `every`-th packet there again `gap_ns` later (a mirror port: the
    same frame); how many copies."""
    recs = records(src)
    twice = [(t + gap_ns, fr) for i, (t, fr) in enumerate(recs) if i % every == 0]
    write_pcap_raw(dst, sorted(recs + twice, key=lambda r: r[0]))
    return len(twice)


def _unsaid(v: Verdict) -> dict[str, Any]:
    """The verdict without its warnings (and its points')."""
    d = v.to_dict()
    d.pop("warnings", None)
    for p in d["points"]:
        p.pop("warnings", None)
    return d


def _said(name: str, n: int) -> str:
    return (
        f"{name}: {n} exact copies within 1 ms removed (a mirror port or a bridge in -i any): "
        "the same packet again, IP ID, TSval and payload alike, which as one point read as "
        "drops and injections; capture one interface to have none"
    )


def test_mirror_copies_through_a_nat_hop_pair_leave_the_verdict_of_no_copies(
    tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both sides of a NAT hop captured on mirror ports: every packet of the outside twice
    7 us apart, every third of the inside again 0.4 ms later (other packets between). The
    copies read as drops and injections (and NAT links of two packets each); now they are
    removed, the verdict is the one of the captures without them (points' packets too),
    sliced or not, and each point says how many copies it lost. Small read chunks: copies
    fall across the scan's chunk edges."""
    a, b = _nat_pair(tmp_path / "plain")
    (tmp_path / "span").mkdir()
    a2, b2 = tmp_path / "span" / a.name, tmp_path / "span" / b.name
    na = _copied(a, a2, 400_000, every=3)
    nb = _copied(b, b2, 7_000)
    clean = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    mirrored = [PointInput("fw:eth0", a2), PointInput("fw:eth1", b2)]
    one = correlate(clean)
    assert not one.warnings
    kinds = {f["kind"] for fl in one.to_dict()["flows"] for f in fl["findings"]}
    assert "drop" in kinds and "rewrite" in kinds  # (the firewall's loss and its MSS clamp)
    got = correlate(mirrored)
    assert _unsaid(got) == one.to_dict()
    assert list(got.warnings) == [_said(a.name, na), _said(b.name, nb)]
    assert [p.get("warnings") for p in got.to_dict()["points"]] == [
        [_said(a.name, na)],
        [_said(b.name, nb)],
    ]
    # sliced: the same copies removed whichever slice (and read chunk) they fall in
    monkeypatch.setattr(rd, "PARSE_CHUNK", 37)
    monkeypatch.setattr(rd, "CHUNK", 37)
    said: list[str] = []
    sliced = correlate(mirrored, slice_packets=200, slice_margin_s=0.001, progress=said.append)
    assert len([s for s in said if s.endswith("findings")]) >= 2, said  # really sliced
    assert sliced.to_dict() == got.to_dict()


def test_a_retransmission_within_a_millisecond_stays(tmp_path: Path, compiled: bool) -> None:
    """The same segment sent again 0.3 ms later has another IP ID: not a copy, every
    packet stays and nothing is said about copies. Every packet there again 0.3 ms later
    byte for byte (a bridge in -i any) goes; a lone one (a network's duplicate) stays, and
    so do copies 1.5 ms later."""
    c = Conv(seed=9)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 4000)
    c.close()
    for s in [s for s in c.segs if s.data]:
        c.retransmit(s, dt=0.0003)  # same seq, ack, flags and payload; a new IP ID
    c.segs.sort(key=lambda s: s.t)
    frames = _frames(render([c], View()))

    def kept(name: str, extra: list[tuple[int, bytes]]) -> tuple[int, list[str]]:
        p = write_pcap_raw(tmp_path / name, sorted([*frames, *extra], key=lambda r: r[0]))
        t = read_capture(p)
        got = len(t), [w for w in t.warnings if "cop" in w]
        t.close()
        return got

    assert len(frames) == len(c.segs)
    assert kept("a.pcap", []) == (len(frames), [])
    assert kept("b.pcap", [(ts + 300_000, fr) for ts, fr in frames]) == (
        len(frames),
        [_said("b.pcap", len(frames))],
    )
    first = next(i for i, (_t, fr) in enumerate(frames) if len(fr) > 80)
    lone = (frames[first][0] + 300_000, frames[first][1])
    assert kept("d.pcap", [lone]) == (len(frames) + 1, [])
    late = [(ts + 1_500_000, fr) for ts, fr in frames]
    assert kept("e.pcap", late) == (2 * len(frames), [])


def test_same_headers_other_payload_is_no_copy(tmp_path: Path, compiled: bool) -> None:
    """Every packet copied 5 us later, and each data segment once more with its every
    header field the same but one byte of its payload not: exact is the bytes too (as
    `editcap -D` compares them), those stay."""
    c = Conv(seed=11)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 3000)
    c.close()
    frames = _frames(render([c], View()))
    other = [(ts + 9_000, fr[:-1] + bytes([fr[-1] ^ 0xFF])) for ts, fr in frames if len(fr) > 80]
    copied = [(ts + 5_000, fr) for ts, fr in frames]
    a = write_pcap_raw(tmp_path / "a.pcap", sorted([*frames, *copied, *other], key=lambda r: r[0]))
    t = read_capture(a)
    assert len(t) == len(frames) + len(other)
    assert [w for w in t.warnings if "cop" in w] == [_said("a.pcap", len(frames))]
    t.close()


def test_chunk_by_chunk_finds_the_copies_of_the_whole(tmp_path: Path, compiled: bool) -> None:
    """The scan's `Stream` over chunks of any size finds the rows `copy_mask` finds in the
    whole table: copies whose first packet is in an earlier chunk, chains of copies, and
    packets sent again after the window (kept)."""
    rnd = random.Random(5)
    convs = []
    for i in range(12):
        c = Conv(client=("198.18.0.10", 30000 + i), seed=40 + i, t0=1_763_790_000.0 + i * 0.0003)
        c.handshake()
        c.request(b"x" * 300)
        c.response(b"y" * 3000)
        c.close()
        convs.append(c)
    frames = _frames(render(convs, View()))
    out = list(frames)
    for ts, fr in frames:
        r = rnd.random()
        if r < 0.3:
            out.append((ts + rnd.randrange(1, 1_000_000), fr))  # a copy within 1 ms
        elif r < 0.4:
            out += [(ts + 300_000, fr), (ts + 900_000, fr), (ts + 1_700_000, fr)]  # a chain
        elif r < 0.5:
            out.append((ts + 2_500_000, fr))  # again, later: kept
    a = write_pcap_raw(tmp_path / "a.pcap", sorted(out, key=lambda r: r[0]))
    t = read_capture(a)  # (its copies removed: the table of them all, by hand)
    whole = rd.PacketTable(path=t.path, buf=t.buf, records=0, **_all_rows(a))
    want = copies.copy_mask(whole)
    assert want is not None and 0 < int(want.sum()) < len(whole)
    arrs, ncols = copies._arrays(whole)  # the numpy path finds the same (compiled or not)
    assert np.array_equal(copies._numpy(whole.buf, whole.ts, arrs, ncols), want)
    assert len(t) == len(whole) - int(want.sum())
    for size in (1, 7, 64, 1000):
        s = copies.Stream()
        got = []
        for lo in range(0, len(whole), size):
            part = sl._take(whole, np.arange(lo, min(lo + size, len(whole))))
            m = s.mask(part)
            got.append(np.zeros(len(part), bool) if m is None else m)
        assert np.array_equal(np.concatenate(got), want), size


def _all_rows(path: Path) -> dict[str, Any]:
    """Every TCP row of a capture, copies and all (the table before they are removed)."""
    w = sl._Walk(path, rd._open(path))
    parts = [t for _i, _pos, t, _dg in w.pieces()]
    return {c: np.concatenate([np.asarray(getattr(x, c)) for x in parts]) for c in rd._COLUMNS}


def test_a_routers_two_sides_are_no_copies(tmp_path: Path) -> None:
    """`tcpdump -i any` on a router: each packet in and, TTL lowered, out. Not copies:
    nothing removed (the warning about the capture of both sides stays)."""
    c = Conv(seed=2)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 2000)
    c.close()
    both = sorted(
        render([c], View(ttl_dec={S2C: 1})) + render([c], View(delay=0.0001, ttl_dec={C2S: 1})),
        key=lambda x: x[0],
    )
    a = write_pcap_raw(tmp_path / "any.pcap", _frames(both))
    t = read_capture(a)
    assert len(t) == len(both)
    assert [w for w in t.warnings if "captured twice" in w]
    assert not [w for w in t.warnings if "cop" in w]
    t.close()
