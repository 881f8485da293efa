"""Captures as people actually have them (snap lengths, IPv6 fragments...): what a
demanding user's audit found the correlator read wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pcapgen import Conv, View, frame_bytes, render, write_pcap_raw

from hopcap.correlate import _fastwalk, correlate, read_capture
from hopcap.correlate.reader import MSS_UNKNOWN, SYN
from hopcap.model import PointInput, Verdict


def _conv(v6: bool = False, seed: int = 5) -> Conv:
    if v6:
        c = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=seed)
    else:
        c = Conv(seed=seed)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 4000)
    c.close()
    return c


def _frames(pkts: list[tuple[float, Any]]) -> list[tuple[int, bytes]]:
    return [(round(t * 1e9), frame_bytes(p)) for t, p in pkts]


def _pair(a: Path, b: Path) -> Verdict:
    return correlate([PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)])


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"])
def compiled(request: pytest.FixtureRequest) -> Any:
    if request.param and not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    _fastwalk.disabled = not request.param
    yield request.param
    _fastwalk.disabled = False


def test_snap_length_that_cuts_the_options_is_no_mss_rewrite(
    tmp_path: Path, compiled: bool
) -> None:
    """`tcpdump -s 54` at one point (Ethernet + IP + the TCP header without its options):
    the SYN's MSS is not known there, which is not the MSS option removed (it was read
    as -1 and reported `tcp.mss rewritten 1460 -> -1`)."""
    c = _conv()
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([c], View())))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([c], View())), snaplen=54)
    t = read_capture(b)
    syns = [i for i in range(len(t)) if int(t.flags[i]) & SYN]
    assert syns and all(int(t.mss[i]) == MSS_UNKNOWN for i in syns)
    t.close()
    v = _pair(a, b)
    assert [f for fl in v.flows for f in fl.findings] == []

    # an MSS that was captured is still compared: the SYN's clamped between a and b
    def clamp(s: Any) -> Any:
        if s.mss is not None and s.d == "c2s":
            s.mss = 1400
        return s

    b2 = write_pcap_raw(tmp_path / "b2.pcap", _frames(render([c], View(change=clamp))))
    v = _pair(a, b2)
    got = {(f.field, f.before, f.after) for fl in v.flows for f in fl.findings}
    assert got == {("tcp.mss", 1460, 1400)}


def test_ipv6_fragments_are_read_like_ipv4_ones(tmp_path: Path, compiled: bool) -> None:
    """A point where the path fragments IPv6 packets (a fragment header after a hop-by-hop
    header): the first fragment carries the TCP header and is that segment; the later
    fragments are no packet of their own. Before, every fragmented segment was unread
    there and reported injected between the points."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6

    c = _conv(v6=True)
    plain = render([c], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(plain))
    frag: list[tuple[float, Any]] = []
    big = 0
    for t, p in plain:
        ip = p[IPv6]
        if len(ip) > 1000:
            big += 1
            whole = IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim) / IPv6ExtHdrFragment(id=big)
            frag += [(t, q) for q in fragment6(whole / ip.payload, 600)]
        else:
            frag.append(
                (t, IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim) / IPv6ExtHdrHopByHop() / ip.payload)
            )
    assert big >= 2
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(frag))
    t = read_capture(b)
    assert len(t) == len(plain)  # one row per segment: the first fragment
    assert int(t.records) > len(plain)
    t.close()
    v = _pair(a, b)
    tcp = [fl for fl in v.flows if fl.proto == "tcp"]
    assert len(tcp) == 1 and tcp[0].findings == ()
    assert tcp[0].summary.startswith("OK: delivered both ways")
