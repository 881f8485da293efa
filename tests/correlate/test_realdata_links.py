"""Real captures of tunnels and serial links: tcpdump's and Zeek's test data (the reader
finds every inner TCP packet tcpdump decodes, with the same endpoints, lengths and
tunnels, on both parse paths) and ns-3's PPP captures of a transfer across a router."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import write_pcap_raw

from hopcap.correlate import _fastwalk, correlate, read_capture
from hopcap.correlate.reader import _COLUMNS, _L3, ACK, addr_str, tunnel_str, walk_records
from hopcap.model import PointInput

DATA = Path(__file__).resolve().parents[1] / "data" / "tcpdump-tunnels"
ZEEK = Path(__file__).resolve().parents[1] / "data" / "zeek-tunnels"
PKT = re.compile(r"^\s+\d+\s+\d{4}-\d\d-\d\d ")
TCP = re.compile(r"(\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\](.*)")
CASES = [
    ("geneve.pcap", "geneve-tcp.out"),
    ("geneve-gcp.pcap", "geneve-gcp.out"),
    *[(f"gso-ipv{a}-{k}-ipv{b}.pcap", f"gso-ipv{a}-{k}-ipv{b}.out")
      for a in (4, 6) for k in ("vxlan", "geneve") for b in (4, 6)],
    ("bigtcp-ipv4-vxlan-ipv4.pcap", "bigtcp-ipv4-vxlan-ipv4.out"),
    ("bigtcp-ipv6-geneve-ipv6.pcap", "bigtcp-ipv6-geneve-ipv6.out"),
]  # fmt: skip


def oracle(out: Path) -> list[tuple[str, int, str, int, int | None, int, str]]:
    """Per TCP packet in tcpdump's decoding: the innermost endpoints, seq (SYNs only:
    tcpdump prints the others relative), payload length and the tunnel."""
    pkts: list[str] = []
    for line in out.read_text().splitlines():
        if PKT.match(line) or not pkts:
            pkts.append(line)
        else:
            pkts[-1] += " " + line
    got = []
    for p in pkts:
        m = list(TCP.finditer(p))
        if not m:
            continue
        src, sport, dst, dport, flags, rest = m[-1].groups()
        seq = re.search(r"seq (\d+)", rest)
        length = re.search(r"length (\d+)", rest)
        assert length is not None, p
        vni = re.search(r"vni (0x[0-9a-f]+|\d+)", p)
        kind = "vxlan" if "VXLAN" in p else "geneve"
        tun = f"{kind} vni {int(vni.group(1), 0)}" if vni else ""  # GRE, IPIP: see the caller
        syn_seq = int(seq.group(1)) if seq and "S" in flags else None
        got.append((src, int(sport), dst, int(dport), syn_seq, int(length.group(1)), tun))
    return got


def _read_both(path: Path) -> list[list[tuple[object, ...]]]:
    """Per parse path: every TCP packet as (src, sport, dst, dport, seq, payload length,
    tunnel); every byte of payload captured, none beyond the IP length."""
    out = []
    for compiled in (True, False):
        _fastwalk.disabled = not compiled
        try:
            t = read_capture(path)
        finally:
            _fastwalk.disabled = False
        rows: list[tuple[object, ...]] = []
        for i in range(len(t)):
            v = int(t.v[i])
            rows.append((
                addr_str(v, int(t.src_hi[i]), int(t.src_lo[i])), int(t.sport[i]),
                addr_str(v, int(t.dst_hi[i]), int(t.dst_lo[i])), int(t.dport[i]),
                int(t.seq[i]), int(t.plen[i]), tunnel_str(int(t.tun[i])),
            ))  # fmt: skip
        assert int(t.pl_cap.sum()) == int(t.plen.sum()) and not t.warnings
        out.append(rows)
        t.close()
    return out


ZEEK_CASES = [("gre-sample", {"gre"}), ("4in6", {"ipip 4in6"}),
              ("vxlan-encapsulated-http", {"vxlan vni 1"})]  # fmt: skip


@pytest.mark.parametrize(("name", "tunnels"), ZEEK_CASES, ids=[c[0] for c in ZEEK_CASES])
def test_gre_ipip_vxlan_as_tcpdump_decodes_them(name: str, tunnels: set[str]) -> None:
    want = oracle(ZEEK / f"{name}.tcpdump.txt")
    assert want
    for rows in _read_both(ZEEK / f"{name}.pcap"):
        assert len(rows) == len(want)
        for r, w in zip(rows, want, strict=True):
            assert r[:4] == w[:4] and r[5] == w[5], (r, w)
            assert w[4] is None or r[4] == w[4]
        assert {r[6] for r in rows} == tunnels


def test_mirrored_vxlan_http_session_is_one_flow() -> None:
    v = correlate([PointInput(name="tap:eth0", pcap=ZEEK / "vxlan-encapsulated-http.pcap")])
    assert len(v.flows) == 1
    f = v.flows[0]
    assert (f.client, f.server) == ("172.16.11.201:40354", "54.86.237.188:80")
    assert f.legs[0].tunnel == "vxlan vni 1"


@pytest.mark.parametrize(("pcap", "out"), CASES, ids=[c[0] for c in CASES])
def test_inner_tcp_as_tcpdump_decodes_it(pcap: str, out: str) -> None:
    want = oracle(DATA / out)
    assert want, out
    for rows in _read_both(DATA / pcap):
        # seq: tcpdump prints it absolute on SYNs only
        got = [(*r[:4], r[4] if w[4] is not None else None, r[5], r[6])
               for r, w in zip(rows, want, strict=True)]  # fmt: skip
        assert got == want, pcap


def test_both_paths_identical_on_real_captures() -> None:
    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    for f in sorted([*DATA.glob("*.pcap"), *ZEEK.glob("*.pcap")]):
        fast = read_capture(f)
        _fastwalk.disabled = True
        try:
            slow = read_capture(f)
        finally:
            _fastwalk.disabled = False
        assert fast.records == slow.records and len(fast) == len(slow), f
        for col in _COLUMNS:
            a, b = np.asarray(getattr(fast, col)), np.asarray(getattr(slow, col))
            assert a.shape == b.shape and (a == b).all(), (f, col)


def test_geneve_session_is_one_flow_with_its_tunnels() -> None:
    """The SSH session inside GENEVE (VNI 11 from the client, 10 back): one flow, the
    tunnels as the leg's detail, nothing found (the capture is complete). The pings in the
    same tunnels are a second flow (datagrams are read inside tunnels too), also complete."""
    v = correlate([PointInput(name="gw:eth0", pcap=DATA / "geneve.pcap")])
    assert sorted(f.proto for f in v.flows) == ["icmp", "tcp"]
    ping = next(f for f in v.flows if f.proto == "icmp")
    assert (ping.client, ping.server) == ("30.0.0.1:10578", "30.0.0.2:10578")
    assert not ping.findings
    f = next(f for f in v.flows if f.proto == "tcp")
    assert (f.client, f.server) == ("30.0.0.2:51225", "30.0.0.1:22")
    assert f.legs[0].tunnel == "geneve vni 10, geneve vni 11"
    assert not any(x.kind in ("drop", "inject", "rewrite") for x in f.findings)


def test_ppp_with_mpls_and_cisco_hdlc_reach_the_network_layer() -> None:
    """PPP (9) carrying MPLS-labelled and plain IPv4; Cisco HDLC (104) carrying SLARP,
    pings and an unknown protocol: both link types are read (no warning, not a missing
    point, their datagrams are flows); every IPv4 header is found (as tcpdump decodes
    them), nothing else is."""
    for name, link in (("mpls-traceroute.pcap", 9), ("HDLC.pcap", 104)):
        t = read_capture(DATA / name)
        assert t.link_types == {link: t.records} and t.records > 0 and not t.warnings
        assert len(t) == 0 and len(t.dgram) > 0  # no TCP; the pings/probes are datagrams
        t.close()
        v = correlate([PointInput(name="r:ser0", pcap=DATA / name)])
        assert v.points[0].missing is None and v.points[0].packets > 0
        assert not any(f"link type {link} (" in w for w in v.warnings)  # flows were read
        assert v.flows and {f.proto for f in v.flows} <= {"udp", "icmp"}
    p = DATA / "mpls-traceroute.pcap"
    buf = p.read_bytes()
    rec = walk_records(p, buf)
    u8 = np.frombuffer(buf, np.uint8)
    l3, et, _l4, proto, _lim, tun = _L3(u8).find(
        rec.off, rec.off + rec.cap, rec.off + rec.cap, rec.link
    )
    assert (l3 >= 0).all() and (et == 0x0800).all() and not tun.any()
    assert set(proto.tolist()) == {1, 17}
    labelled = l3 - rec.off == 8  # PPP header 4 + one MPLS label 4
    assert labelled.sum() == 9 and ((l3 - rec.off)[~labelled] == 4).all()
    h = DATA / "HDLC.pcap"
    hb = h.read_bytes()
    hr = walk_records(h, hb)
    found = _L3(np.frombuffer(hb, np.uint8)).find(hr.off, hr.off + hr.cap, hr.off + hr.cap, hr.link)
    ip = found[0] >= 0
    assert ip.sum() == 10 and set(found[3][ip].tolist()) == {1}  # the 10 pings, nothing else
    assert ((found[0] - hr.off)[ip] == 4).all()


NS3 = Path(__file__).resolve().parents[1] / "data" / "ns3-ppp"
NS3_POINTS = [("n0:ppp0", "0-0"), ("n1:ppp0", "1-0"), ("n1:ppp1", "1-1"), ("n2:ppp0", "2-0")]


def test_ns3_ppp_transfer_across_a_router() -> None:
    """ns-3's PPP captures of a TCP transfer through a router: one flow seen the same at
    the four points, the TTL decrement not a finding, nothing lost."""
    pts = [PointInput(name=n, pcap=NS3 / f"tcp-large-transfer-{f}.pcap") for n, f in NS3_POINTS]
    v = correlate(pts)
    assert [p.packets for p in v.points] == [231] * 4 and not v.warnings
    assert len(v.flows) == 1
    f = v.flows[0]
    assert (f.client, f.server) == ("10.1.3.1:49153", "10.1.2.2:4000")
    assert [leg.link for leg in f.legs] == ["same"] * 4
    assert f.findings == () and f.summary.startswith("OK: delivered both ways")


def _ns3_cut(out: Path, name: str, pick: Callable[[Any], int]) -> Path:
    """ns-3's capture `name` with the record `pick` chooses (of its table) taken out."""
    src = NS3 / f"tcp-large-transfer-{name}.pcap"
    buf = src.read_bytes()
    rec = walk_records(src, buf)
    t = read_capture(src)
    assert len(t) == t.records  # every record is TCP: row i is record i
    row = pick(t)
    t.close()
    frames = [(int(ts), buf[o : o + c]) for i, (o, c, ts) in enumerate(zip(rec.off, rec.cap, rec.ts,
              strict=True)) if i != row]  # fmt: skip
    return write_pcap_raw(out / f"{name}.pcap", frames, linktype=9, nano=False)


def test_ns3_ppp_transfer_with_a_segment_lost_inside_the_router(tmp_path: Path) -> None:
    """The same captures, on PPP: one of the receiver's ACKs taken out of the router's
    incoming capture and the sender's (it never came out of n1, and a later ACK covers
    it: nothing is sent again) is a drop inside n1. The sixth data segment taken out of
    the router's outgoing capture only is no drop: n2 got it and acknowledged it, and
    the sender never sent it again: n1:ppp1's capture lost it (a gap)."""

    def ack(t: Any) -> int:  # the receiver's tenth pure ACK
        return int(np.nonzero((t.sport == 4000) & (t.plen == 0) & (t.flags == ACK))[0][10])

    pts = [PointInput(name=n, pcap=NS3 / f"tcp-large-transfer-{f}.pcap") for n, f in NS3_POINTS]
    pts[0] = PointInput(name="n0:ppp0", pcap=_ns3_cut(tmp_path, "0-0", ack))
    pts[1] = PointInput(name="n1:ppp0", pcap=_ns3_cut(tmp_path, "1-0", ack))
    sixth = _ns3_cut(tmp_path, "1-1", lambda t: int(np.nonzero(t.plen > 0)[0][5]))
    pts[2] = PointInput(name="n1:ppp1", pcap=sixth)
    v = correlate(pts)
    (fl,) = v.flows
    got = [(x.kind, x.direction, x.between, x.packets) for x in fl.findings]
    assert got == [
        ("drop", "s2c", ("n1:ppp1", "n1:ppp0"), 1),
        ("gap", "c2s", ("n1:ppp0", "n1:ppp1"), 1),
        ("gap", "c2s", ("n1:ppp1", "n2:ppp0"), 1),
    ], fl.findings
    assert fl.findings[0].what.startswith("ACK ") and "inside n1" in fl.summary
    assert "the receiver acknowledged" in fl.findings[1].what


def test_ns3_ppp_transfer_through_a_nat() -> None:
    """ns-3's PPP captures around a NAT: one flow, the translation a `nat` leg."""
    names = [("n0:ppp0", "0-0"), ("nat:ppp0", "1-0"), ("nat:ppp1", "1-1"), ("srv:ppp0", "2-0")]
    v = correlate([PointInput(name=n, pcap=NS3 / f"ipv4-nat-{f}.pcap") for n, f in names])
    assert [p.packets for p in v.points] == [34] * 4 and not v.warnings
    assert len(v.flows) == 1
    f = v.flows[0]
    assert (f.client, f.server) == ("192.168.1.1:49153", "203.82.48.2:10")
    assert [leg.link for leg in f.legs] == ["same", "same", "nat", "same"]
    assert f.legs[2].tuple == "203.82.48.100:8080 > 203.82.48.2:10"
    assert f.findings == ()
