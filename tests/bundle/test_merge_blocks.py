"""merged.pcapng written in blocks (`merge._merge_blocks`: numpy and the compiled helper)
is byte for byte the one written a packet at a time (`merge._merge_packets`, the
reference, used without a compiler and for anonymised bundles), with the same stats."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

from hopcap.bundle import merge, pcapio
from hopcap.bundle.anon import Anonymiser
from hopcap.bundle.pcapio import PcapngWriter
from hopcap.correlate import _fastwalk, correlate
from hopcap.model import PointInput, Verdict
from hopcap.units import size_text

DATA = Path(__file__).resolve().parents[1] / "data"

pytestmark = pytest.mark.skipif(not _fastwalk.available(), reason="needs a C compiler")


def _both(
    points: list[PointInput],
    verdict: Verdict,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    offsets: dict[str, float] | None = None,
    anonymise: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """Write the merge both ways (the verdict's clock offsets, or `offsets`; anonymised
    as a bundle is); assert they are the same; the bytes and stats."""
    if offsets is None:
        offsets = {p.name: p.clock_offset_s or 0.0 for p in verdict.points}
    mps = [
        merge.MergePoint(p.name, Path(p.pcap) if p.pcap else None, offsets.get(p.name, 0.0))
        for p in points
    ]
    anon = None
    if anonymise:
        anon = Anonymiser()
        anon.add_obj(verdict.to_dict())
        merge.collect_addresses(anon, [Path(p.pcap) for p in points if p.pcap])
        anon.freeze()
    got: dict[str, tuple[bytes, dict[str, Any]]] = {}
    for way in ("blocks", "packets"):
        if way == "packets":
            monkeypatch.setattr(_fastwalk, "available", lambda: False)
        out = tmp / f"merged-{way}.pcapng"
        stats = merge.write_merged(out, mps, verdict, anon)
        got[way] = (out.read_bytes(), dataclasses.asdict(stats))
        if anon is not None:  # and each capture's anonymised copy
            for p in points:
                if p.pcap:
                    copy = tmp / f"{p.name}-{way}.pcapng"
                    shutil.copyfile(p.pcap, copy)
                    merge.anonymise_pcap(copy, anon, p.name)
        monkeypatch.undo()
    assert got["blocks"][1] == got["packets"][1]
    assert got["blocks"][0] == got["packets"][0]
    if anon is not None:
        # the copies written while merging (the captures replaced by them)
        copied = []
        for p in points:
            if p.pcap:
                shutil.copyfile(p.pcap, tmp / f"{p.name}-merged.pcap")
                copied.append(
                    dataclasses.replace(mps[points.index(p)], pcap=tmp / f"{p.name}-merged.pcap")
                )
        stats = merge.write_merged(tmp / "m2.pcapng", copied, verdict, anon, copies=True)
        assert (tmp / "m2.pcapng").read_bytes() == got["blocks"][0]
        assert stats.anonymised == [p.name for p in points if p.pcap]
        for p in points:
            if p.pcap:
                one, two, three = (
                    (tmp / f"{p.name}-{way}.pcap{'ng' if way != 'merged' else ''}").read_bytes()
                    for way in ("blocks", "packets", "merged")
                )
                assert one == two == three, p.name
        assert not list(tmp.glob("*.anon.tmp"))
    return got["blocks"]


SETS = {
    "haka-http-modif": ["haka/http_request-modif.pcap", "haka/http_request-modif-ref.pcap"],
    "haka-stream-rst": ["haka/tcp_stream-rst.pcap", "haka/tcp_stream-rst-ref.pcap"],
    "haka-httpmodif": ["haka/sample_httpmodif.pcap", "haka/sample_httpmodif-ref.pcap"],
    "ns3-nat": [f"ns3-ppp/ipv4-nat-{x}.pcap" for x in ("0-0", "1-0", "1-1", "2-0")],
    "tunnels": [
        "zeek-tunnels/gre-sample.pcap",
        "zeek-tunnels/vxlan-encapsulated-http.pcap",
        "tcpdump-tunnels/geneve.pcap",
    ],
    "tcpreplay": ["tcpreplay/test.pcap"],
}


@pytest.mark.parametrize("anonymise", [False, True])
@pytest.mark.parametrize("name", sorted(SETS))
def test_blocks_are_the_packets_merge(
    name: str, anonymise: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = [PointInput(f"p{i}", pcap=str(DATA / f)) for i, f in enumerate(SETS[name])]
    verdict = correlate(points, jobs=1)
    _data, stats = _both(points, verdict, tmp_path, monkeypatch, anonymise=anonymise)
    assert sum(stats["packets"].values()) > 10
    assert stats["comments"] > 0


# --------------------------------------------------------------------------- edge cases

T0 = 1_763_790_000.0
C4, S4 = "198.18.0.10", "198.18.1.2"
C6, S6 = "2001:db8::10", "2001:db8::2"


def _tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int) -> Any:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq) / Raw(b"x" * (seq % 7))


def _edge_set(d: Path) -> list[PointInput]:
    """Four points: `a` out of time order in places (classic pcap, Ethernet), `b` a pcapng
    with an Ethernet and a raw-IP interface (the second link type first seen mid-file),
    its clock 0.5 s ahead (`EDGE_OFFSETS`: its packets at the very same aligned time as
    `a`'s), `c` a copy of `a` (every packet a tie) cut in the middle of its last record,
    `d` an empty file. A connection both ways (one segment of it lost before `b`: a drop,
    notes), one whose SYNs only `a` saw, one over IPv6."""
    pkts: list[tuple[float, Any]] = []
    for k in range(40):
        fl = "S" if k == 0 else ("SA" if k == 1 else "A")
        src, dst = (S4, C4) if k % 3 == 1 else (C4, S4)
        sp, dp = (80, 40001) if src == S4 else (40001, 80)
        pkts.append((T0 + k * 0.001, _tcp(src, dst, sp, dp, fl, 1000 + k)))
    for k in range(3):
        pkts.append((T0 + 0.0105 + k, _tcp(C4, S4, 40002, 80, "S", 7000)))
    for k in range(12):
        pkts.append((T0 + 0.0003 + k * 0.002, _tcp(C6, S6, 40003, 443, "A", 50 + k)))
    pkts.sort(key=lambda x: x[0])
    a = d / "a.pcap"
    w = PcapWriter(str(a), linktype=1, nano=True)
    order = list(range(len(pkts)))
    for i in (5, 17, 30):  # out of time order: a later packet written first
        order[i], order[i + 2] = order[i + 2], order[i]
    for i in order:
        ts, p = pkts[i]
        e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
        e.time = ts
        w.write(e)
    w.close()
    b = d / "b.pcapng"
    with PcapngWriter(b) as nw:
        eth = nw.add_interface(1, "b")
        raw = -1
        for ts, p in pkts:
            if IP in p and p[TCP].sport == 40002:
                continue  # the drop: never at b
            if IP in p and p[TCP].seq == 1020:
                continue  # one segment lost between a and b (a drop: its note; the empty
                # `d` is a missing point, whose gaps have none)
            ns = round(ts * 1e9) + 500_000_000  # b's clock half a second ahead
            if IPv6 in p:
                if raw < 0:
                    raw = nw.add_interface(101, "b-raw")
                nw.write_packet(raw, ns, bytes(p), len(p))
            else:
                e = Ether(src="02:00:00:00:00:03", dst="02:00:00:00:00:04") / p
                nw.write_packet(eth, ns, bytes(e), len(e))
    c = d / "c.pcap"
    shutil.copyfile(a, c)
    with open(c, "r+b") as f:
        f.truncate(c.stat().st_size - 20)
    e = d / "d.pcap"
    e.write_bytes(b"")
    return [PointInput(n, pcap=str(x)) for n, x in zip("abcd", (a, b, c, e), strict=True)]


EDGE_OFFSETS = {"a": 0.0, "b": 0.5, "c": 0.0, "d": 0.0}


@pytest.mark.parametrize(("chunk", "piece"), [(1, 64), (2, 200), (3, 4096), (7, 100), (1 << 18, 0)])
def test_blocks_in_every_batch_size_out_of_order_ties_links_damage(
    chunk: int, piece: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of any size, written in pieces of the writer's buffers of any size (one
    buffer reused: a block larger than a buffer gets one of its own)."""
    points = _edge_set(tmp_path)
    verdict = correlate(points, jobs=1)
    monkeypatch.setattr(merge, "CHUNK", chunk)
    if piece:
        monkeypatch.setattr(pcapio._Sink, "PIECE", piece)
        monkeypatch.setattr(pcapio._Sink, "BUFFERS", 1)
    with monkeypatch.context() as m:
        _both(points, verdict, tmp_path, m, EDGE_OFFSETS, anonymise=True)
    with monkeypatch.context() as m:
        data, stats = _both(points, verdict, tmp_path, m, EDGE_OFFSETS)
    assert stats["truncated"] == ["d", "c"]  # the empty file at once, c after its last packet
    assert stats["packets"]["d"] == 0 and stats["packets"]["a"] == 55
    assert stats["comments"] > 3 and stats["annotated_findings"] > 0
    assert b"b#101" in data  # an interface for b's raw IP packets, where first needed


def test_blocks_when_every_tuple_has_the_same_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first packet of each leg is found by its tuple, not its hash: with every hash
    alike (all tuples collide), the comments are still the reference's."""
    points = _edge_set(tmp_path)
    verdict = correlate(points, jobs=1)
    monkeypatch.setattr(merge, "CHUNK", 5)
    monkeypatch.setattr(
        merge, "_ends_hash", lambda words, ports, alen: np.zeros(ports.shape[0], np.uint64)
    )
    packets = _fastwalk.tuple_hashes

    def alike(*a: Any) -> Any:
        got = packets(*a)
        return None if got is None else (np.zeros_like(got[0]), got[1])

    monkeypatch.setattr(_fastwalk, "tuple_hashes", alike)
    with monkeypatch.context() as m:
        _data, stats = _both(points, verdict, tmp_path, m, EDGE_OFFSETS)
    assert stats["comments"] > 3


def test_a_full_disk_is_an_error_not_a_short_file() -> None:
    """The writer's bytes are written by a thread: a failed write (here /dev/full:
    ENOSPC) is raised to the writer, by its next write or when it closes."""
    import errno
    import threading

    before = threading.active_count()
    with pytest.raises(OSError) as exc, PcapngWriter(Path("/dev/full"), digest=True) as w:
        iface = w.add_interface(1, "x")
        for k in range(2000):
            w.write_packet(iface, k, bytes(1500), 1500)
    assert exc.value.errno == errno.ENOSPC
    assert threading.active_count() == before  # its thread ended


@pytest.mark.parametrize("blocks", [True, False])
def test_merge_tells_how_far_it_is(
    blocks: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long merge says how far it is, by the captures' bytes read, up to 100 %."""
    points = _edge_set(tmp_path)
    verdict = correlate(points, jobs=1)
    monkeypatch.setattr(merge, "CHUNK", 4)
    if not blocks:
        monkeypatch.setattr(_fastwalk, "available", lambda: False)
    said: list[str] = []
    mps = [merge.MergePoint(p.name, Path(str(p.pcap)), EDGE_OFFSETS[p.name]) for p in points]
    merge.write_merged(tmp_path / "m.pcapng", mps, verdict, progress=said.append)
    pcts = [int(x.split("merged.pcapng ")[1].split(" %")[0]) for x in said]
    assert pcts == sorted(pcts) and len(pcts) > 3 and pcts[-1] == 100
    # the sizes as the pull's lines give them: "(18.4 kB of 18.4 kB of captures)", not
    # "(0 of 0 MB ...)" for captures of less than a megabyte
    total = size_text(sum(p.pcap.stat().st_size for p in mps))
    assert said[-1].endswith(f"({total} of {total} of captures)"), said[-1]
    assert not total.startswith("0")


def test_tuple_hashes_of_a_busy_site_do_not_collide() -> None:
    """Collisions are handled (above) but cost a scan of the chunk each: the hashes of
    many clients' connections (addresses and ports a few apart, as behind a NAT) must
    be distinct. (The port XORed into the address's bits made 98 % of them collide.)"""
    import ipaddress

    keys = []
    for c in range(2000):
        src = ipaddress.ip_address(f"198.18.{c // 250}.{c % 250}").packed
        for port in range(32768, 32778):
            keys.append((src, port, ipaddress.ip_address("203.0.113.11").packed, 443))
    v6 = ipaddress.ip_address("2001:db8::1").packed
    keys += [(v6, p, ipaddress.ip_address("2001:db8::2").packed, 443) for p in range(1000)]
    h = merge._tuple_hashes(keys)
    assert len(set(h.tolist())) == len(keys)
    back = merge._tuple_hashes([(d, dp, s, sp) for s, sp, d, dp in keys])
    assert (back == h).all()  # either way


def test_packet_hashes_are_the_tuples_hashes(tmp_path: Path) -> None:
    """The compiled hash of each packet's tuple is `_tuple_hashes` of its tuple (as
    chunk_tuples reads it), wherever it has one."""
    from hopcap.bundle.pcapio import PcapReader, chunk_tuples
    from hopcap.capfile import buffer_u8, decode

    files = [Path(str(p.pcap)) for p in _edge_set(tmp_path)][:3]
    files += [DATA / f for fs in SETS.values() for f in fs]
    checked = 0
    for f in files:
        with PcapReader(f) as r:
            for rec, _ in r.chunks():
                got = _fastwalk.tuple_hashes(r.buf, rec.off, rec.cap, rec.link)
                assert got is not None
                h, ok = got
                lay = decode(buffer_u8(r.buf), rec.off, rec.cap, rec.link)
                keys = chunk_tuples(r.buf, rec, lay)
                rows = [i for i, k in enumerate(keys) if k is not None]
                assert set(np.nonzero(ok)[0].tolist()) <= set(rows)
                rows = [i for i in rows if ok[i]]
                want = merge._tuple_hashes([keys[i] for i in rows])
                assert (h[rows] == want).all(), f
                checked += len(rows)
    assert checked > 500
