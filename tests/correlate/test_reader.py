"""The capture reader: formats, link types, damage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import (
    LINKTYPES,
    Conv,
    View,
    frame_bytes,
    render,
    write,
    write_pcap_raw,
    write_pcapng_raw,
)

from hopcap.correlate import correlate, read_capture, read_points_from_args
from hopcap.correlate.reader import ACK, SYN
from hopcap.errors import CorrelationError
from hopcap.model import PointInput
from tests.realdata import REALDATA


def _conv(v6: bool = False) -> Conv:
    if v6:
        c = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=3)
    else:
        c = Conv(seed=3)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 3000)
    c.close()
    return c


def _frames(c: Conv, link: str = "ether", vlan: int | None = None) -> list[tuple[int, bytes]]:
    return [(round(t * 1e9), frame_bytes(p, link, vlan)) for t, p in render([c], View())]


def _check(t_path: Path, c: Conv) -> None:
    t = read_capture(t_path)
    assert len(t) == len(c.segs)
    assert t.records == len(c.segs)
    assert int(t.flags[0]) & SYN and not int(t.flags[0]) & ACK
    assert int(t.seq[0]) == c.isn["c2s"]
    assert int(t.mss[0]) == 1460
    assert int(t.tsval[0]) == c.segs[0].tsval
    assert int(t.plen.sum()) == sum(len(s.data) for s in c.segs)
    assert abs(int(t.ts[0]) - round(c.segs[0].t * 1e9)) < 1000
    req = int(next(i for i in range(len(t)) if t.plen[i] > 0))
    assert t.payload(req).startswith(b"GET / HTTP/1.1")
    t.close()


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(
    tmp_path: Path, big_endian: bool, nano: bool
) -> None:
    c = _conv()
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c), big_endian=big_endian, nano=nano)
    _check(p, c)


@pytest.mark.parametrize("link", ["ether", "sll", "sll2", "raw", "ipv4"])
def test_link_types(tmp_path: Path, link: str) -> None:
    c = _conv()
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c, link), linktype=LINKTYPES[link])
    _check(p, c)


@pytest.mark.parametrize("link", ["ether", "sll2", "ipv6"])
def test_ipv6(tmp_path: Path, link: str) -> None:
    c = _conv(v6=True)
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c, link), linktype=LINKTYPES[link])
    _check(p, c)
    t = read_capture(p)
    assert set(t.v.tolist()) == {6} and set(t.ipid.tolist()) == {-1}


def test_vlan_tagged(tmp_path: Path) -> None:
    c = _conv()
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c, "ether", vlan=45))
    _check(p, c)


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_several_interfaces_and_tsresol(tmp_path: Path, big_endian: bool) -> None:
    c = _conv()
    fr_eth = _frames(c, "ether")
    fr_raw = _frames(c, "raw")
    # interface 0: ethernet at microseconds; interface 1: raw IP at nanoseconds
    pkts = [(0, ts, f) for ts, f in fr_eth[:5]] + [(1, ts, f) for ts, f in fr_raw[5:]]
    p = write_pcapng_raw(tmp_path / "a.pcapng", [(1, 6), (101, 9)], pkts, big_endian=big_endian)
    _check(p, c)
    t = read_capture(p)
    assert int(t.ts[-1]) == fr_raw[-1][0]  # nanoseconds kept exactly on interface 1


def test_pcapng_simple_packet_blocks_and_interface_drops(tmp_path: Path) -> None:
    c = _conv()
    pkts = [(0, ts, f) for ts, f in _frames(c)]
    p = write_pcapng_raw(tmp_path / "a.pcapng", [(1, 9)], pkts, spb=True, isb_drops=12)
    t = read_capture(p)
    assert len(t) == len(c.segs) and t.kernel_drops == 12


def test_scapy_pcap_nanosecond(tmp_path: Path) -> None:
    c = _conv()
    p = write(tmp_path / "a.pcap", render([c], View()))
    _check(p, c)


def test_truncated_file_reads_up_to_damage_and_warns(tmp_path: Path) -> None:
    c = _conv()
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 30])
    t = read_capture(p)
    assert len(t) == len(c.segs) - 1
    assert any("truncated" in w for w in t.warnings)
    # correlate does not crash and the warning reaches the verdict
    v = correlate([PointInput(name="a:eth0", pcap=p), PointInput(name="b:eth0", pcap=p)])
    assert any("truncated" in w for w in v.points[0].warnings)
    assert any("truncated" in w for w in v.warnings)


def test_corrupt_record_header_stops_with_warning(tmp_path: Path) -> None:
    c = _conv()
    frames = _frames(c)
    p = write_pcap_raw(tmp_path / "a.pcap", frames)
    data = bytearray(p.read_bytes())
    off = 24 + 16 + len(frames[0][1])  # second record header
    data[off + 8 : off + 12] = (10**8).to_bytes(4, "little")  # absurd caplen
    p.write_bytes(bytes(data))
    t = read_capture(p)
    assert len(t) == 1 and any("corrupt" in w for w in t.warnings)


def test_truncated_pcapng(tmp_path: Path) -> None:
    c = _conv()
    p = write_pcapng_raw(tmp_path / "a.pcapng", [(1, 9)], [(0, ts, f) for ts, f in _frames(c)])
    p.write_bytes(p.read_bytes()[:-10])
    t = read_capture(p)
    assert len(t) == len(c.segs) - 1 and any("truncated" in w for w in t.warnings)


def test_not_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("12:00:01.000 IP 203.0.113.10.51234 > 203.0.113.80.80: Flags [S]\n")
    with pytest.raises(CorrelationError, match="not a pcap or pcapng"):
        read_capture(p)
    with pytest.raises(CorrelationError, match="not a pcap or pcapng"):
        correlate([PointInput(name="a", pcap=p)])


def test_empty_file_is_a_warning(tmp_path: Path) -> None:
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    t = read_capture(p)
    assert len(t) == 0 and t.warnings


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorrelationError, match="no such capture file"):
        read_capture(tmp_path / "nope.pcap")


def test_read_points_from_args(tmp_path: Path) -> None:
    a = write_pcap_raw(tmp_path / "a.pcap", [])
    b = write_pcap_raw(tmp_path / "b.pcap", [])
    pts = read_points_from_args([f"client={a}", f"fw:eth1={b}"])
    assert [(p.name, p.host, p.interface, p.pcap) for p in pts] == [
        ("client", "client", "", a),
        ("fw:eth1", "fw", "eth1", b),
    ]
    with pytest.raises(CorrelationError, match="are given the same file"):
        read_points_from_args([f"client={a}", f"fw:eth1={a}"])
    with pytest.raises(CorrelationError, match="NAME=PCAP"):
        read_points_from_args(["client"])
    with pytest.raises(CorrelationError, match="does not exist"):
        read_points_from_args([f"fw:eth0={tmp_path / 'missing.pcap'}"])
    with pytest.raises(CorrelationError, match="twice"):
        read_points_from_args([f"a={a}", f"a={a}"])
    with pytest.raises(CorrelationError, match="no capture points"):
        read_points_from_args([])


def _all_captures(tmp: Path) -> list[Path]:
    c4, c6 = _conv(), _conv(v6=True)
    both = [(0, t, f) for t, f in _frames(c4)] + [(1, t, f) for t, f in _frames(c6, "sll")]
    files = [
        write_pcap_raw(tmp / "e.pcap", _frames(c4, "ether", vlan=7)),
        write_pcap_raw(tmp / "s2.pcap", _frames(c6, "sll2"), linktype=276),
        write_pcap_raw(tmp / "r.pcap", _frames(c4, "raw"), linktype=101, big_endian=True),
        write_pcapng_raw(tmp / "n.pcapng", [(1, 6), (113, 9)], both),
    ]
    real = REALDATA
    assert real.is_dir(), f"the real captures are missing: {real}"
    tr = real / "tcpreplay"
    files += [
        *sorted((real / "haka").glob("*.pcap")),
        tr / "test.pcap",
        tr / "test.rewrite_config",
        tr / "test.rewrite_mtutrunc",
    ]
    return files


def test_compiled_and_numpy_paths_agree(tmp_path: Path) -> None:
    from hopcap.correlate import _fastwalk
    from hopcap.correlate.reader import _COLUMNS

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    from hopcap.correlate.dgram import _COLS as DGRAM_COLUMNS

    dgrams = 0
    for f in _all_captures(tmp_path):
        fast = read_capture(f)
        _fastwalk.disabled = True
        try:
            slow = read_capture(f)
        finally:
            _fastwalk.disabled = False
        assert fast.records == slow.records and len(fast) == len(slow), f
        for col in _COLUMNS:
            a, b = getattr(fast, col), getattr(slow, col)
            assert a.shape == b.shape and (a == b).all(), (f, col)
        # the UDP/ICMP/ESP datagrams too
        assert len(fast.dgram) == len(slow.dgram), f
        for col in DGRAM_COLUMNS:
            a, b = getattr(fast.dgram, col), getattr(slow.dgram, col)
            assert a.shape == b.shape and (a == b).all(), (f, col)
        dgrams += len(fast.dgram)
    assert dgrams > 100  # the real captures carry DNS, pings and ICMP errors


@pytest.mark.parametrize("compiled", [True, False])
def test_chunked_reading_equals_one_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    from hopcap.correlate import _fastwalk, reader

    c = _conv()
    p = write_pcap_raw(tmp_path / "a.pcap", _frames(c))
    monkeypatch.setattr(_fastwalk, "disabled", not compiled)
    whole = read_capture(p)
    monkeypatch.setattr(reader, "CHUNK", 3)
    parts = read_capture(p)
    for col in reader._COLUMNS:
        a, b = getattr(whole, col), getattr(parts, col)
        assert a.dtype == b.dtype and (a == b).all(), col
    assert parts.seq.dtype == np.int64 and parts.ts.dtype == np.int64


def test_batched_fingerprints_equal_per_half(tmp_path: Path) -> None:
    """The batched fingerprints (columns gathered once, exact integer codes) are the
    per-half ones, exactly: with and without TCP timestamps (SYN IP IDs, payload hashes,
    IP IDs), IPv4 and IPv6."""
    from hopcap.correlate.conns import build_point, fingerprint_codes, fingerprints, key_code

    convs = [(_conv(), 0), (_conv(v6=True), 0)]
    for ts in (True, False):
        c = Conv(client=("203.0.113.11", 41000 + ts), seed=8 + ts, ts=ts)
        c.handshake(syn_retries=1)
        c.request(b"x" * 3000)
        c.response(b"y" * 100)
        c.close()
        convs.append((c, 3 if not ts else 0))
    for cut in (0, 2):  # no TCP timestamps, no answer: SYN IP IDs; without the SYNs: IP IDs
        c = Conv(client=("203.0.113.12", 42000 + cut), seed=20 + cut, ts=False)
        c.handshake()
        c.request(b"z" * 500)
        c.close()
        convs.append((c, cut))
    kinds: set[object] = set()
    for i, (c, cut) in enumerate(convs):
        p = write_pcap_raw(tmp_path / f"{i}.pcap", _frames(c)[cut:])
        t = read_capture(p)
        pc = build_point(t)
        assert pc.halves
        ids: dict[tuple[object, ...], int] = {}
        hid, code = fingerprint_codes(t, pc.halves, ids)
        want = sorted({(h.hid, key_code(k, ids)) for h in pc.halves for k in fingerprints(t, h)})
        assert list(zip(hid.tolist(), code.tolist(), strict=True)) == want
        # the codes are exact: distinct keys, distinct codes
        keys = {k for h in pc.halves for k in fingerprints(t, h)}
        assert len({key_code(k, ids) for k in keys}) == len(keys)
        kinds |= {k[0] for k in keys}
        assert [pc.fingerprints(h) for h in pc.halves] == [fingerprints(t, h) for h in pc.halves]
        t.close()
    assert kinds == {"isn", "ts", "sid", "h", "id"}


def test_columns_grown_while_reading_equal_one_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-pass reader writes every chunk into the table's own columns and grows them
    by doubling: started at 3 rows (grown many times, across several parser chunks) it
    gives the very table it gives when they never grow."""
    from hopcap.correlate import reader

    path = REALDATA / "ns3-ppp" / "tcp-large-transfer-1-0.pcap"  # 231 TCP packets
    whole = reader.read_capture(path)
    monkeypatch.setattr(reader, "FIRST_ROWS", 3)
    monkeypatch.setattr(reader, "PARSE_CHUNK", 64)
    grown = reader.read_capture(path)
    assert len(whole) > 200 and len(grown) == len(whole)
    for c in reader._COLUMNS:
        a, b = getattr(whole, c), getattr(grown, c)
        assert a.dtype == b.dtype, c
        assert np.array_equal(a, b), c
    assert (grown.records, grown.warnings, grown.link_types) == (
        whole.records,
        whole.warnings,
        whole.link_types,
    )


@pytest.mark.parametrize("first_rows", [3, 1 << 20])
def test_wide_columns_given_mid_read_equal_the_numpy_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first_rows: int
) -> None:
    """The compiled reader writes the high address words, tun, the IP version and the
    captured payload and options lengths only once a row needs them: IPv4 rows first,
    then IPv6 (or a record cut inside its TCP options), then IPv4 again (the columns grown
    on the way or not) give the numpy path's table; an IPv4-only capture of whole packets
    keeps them without memory (a broadcast value; plen, opt_back themselves)."""
    from hopcap.correlate import _fastwalk, reader

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    v4, v6 = _frames(_conv()), _frames(_conv(v6=True))
    mixed = write_pcap_raw(tmp_path / "mixed.pcap", v4[:5] + v6 + v4[5:])
    only4 = write_pcap_raw(tmp_path / "v4.pcap", v4)
    # the 6th record cut 6 bytes into its TCP options (its TSval option)
    cut = write_pcap_raw(tmp_path / "cut.pcap", [*v4[:5], (v4[5][0], v4[5][1][:60]), *v4[6:]])
    monkeypatch.setattr(reader, "FIRST_ROWS", first_rows)
    for p in (mixed, only4, cut):
        fast = read_capture(p)
        monkeypatch.setattr(_fastwalk, "disabled", True)
        slow = read_capture(p)
        monkeypatch.setattr(_fastwalk, "disabled", False)
        assert len(fast) == len(slow) > 0 and fast.records == slow.records
        for col in reader._COLUMNS:
            a, b = getattr(fast, col), getattr(slow, col)
            assert a.dtype == b.dtype and np.array_equal(a, b), (p.name, col)
    t = read_capture(mixed)
    assert (t.v == 6).sum() == len(v6) and t.src_hi.any()
    assert t.opt_len is t.opt_back and t.pl_cap is t.plen  # every packet whole
    t = read_capture(only4)
    assert all(getattr(t, c).strides == (0,) for c in ("src_hi", "dst_hi", "tun", "v"))
    assert (t.v == 4).all() and t.opt_len is t.opt_back and (t.opt_back == 12).sum() > 5
    assert t.pl_cap is t.plen and t.plen.sum() > 3000
    t = read_capture(cut)
    assert t.v.strides == (0,) and t.opt_len is not t.opt_back and t.pl_cap is not t.plen
    assert np.nonzero(t.opt_len != t.opt_back)[0].tolist() == [5] and t.opt_len[5] == 6
    assert np.nonzero(t.pl_cap != t.plen)[0].tolist() == [5] and t.pl_cap[5] == 0


def test_pcapng_packet_blocks_walked_in_c_equal_the_python_loop(tmp_path: Path) -> None:
    """The C walk of pcapng's enhanced packet blocks hands every other block, and every
    damage, back to the Python loop: records, timestamps (two clock resolutions), links,
    warnings and drop counts are the loop's for both byte orders, simple packet blocks,
    two sections in one file, a cut file and a corrupt block length, in any chunking."""
    import struct

    from hopcap.capfile.walk import RecordWalk
    from hopcap.correlate import _fastwalk, reader

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    frames = _frames(_conv()) + _frames(_conv(v6=True))
    packets = [(i % 2, ts, fr) for i, (ts, fr) in enumerate(frames)]
    cases = []
    for be in (False, True):
        for spb in (False, True):
            p = tmp_path / f"{be}-{spb}.pcapng"
            kw: dict[str, Any] = {"big_endian": be, "spb": spb, "isb_drops": 5}
            cases.append(write_pcapng_raw(p, [(1, 9), (1, 6)], packets, **kw))
    data = cases[0].read_bytes()
    two = tmp_path / "two.pcapng"
    two.write_bytes(data + cases[3].read_bytes())
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[:-37])
    pos, blocks = 0, []  # the blocks of the first file: corrupt the 10th packet block's length
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        blocks.append((btype, pos))
        pos += blen
    tenth = [at for btype, at in blocks if btype == 6][9]
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(data[: tenth + 4] + struct.pack("<I", 13) + data[tenth + 8 :])
    walked = []

    def fast(*args: Any) -> Any:
        got = reader._fast_pcapng(*args)
        walked.append(0 if got is None else int(got[0][0].shape[0]))
        return got

    for p in [*cases, two, cut, bad]:
        buf = p.read_bytes()
        for chunk in (3, 1000):
            fw, sw = RecordWalk(p, buf, None, fast), RecordWalk(p, buf)
            a, b = list(fw.chunks(chunk)), list(sw.chunks(chunk))
            assert [len(x) for x in a] == [len(x) for x in b], (p.name, chunk)
            for col in ("off", "cap", "ts", "link", "orig", "iface"):
                for x, y in zip(a, b, strict=True):
                    assert np.array_equal(getattr(x, col), getattr(y, col)), (p.name, col)
            assert (fw.records, fw.warnings, fw.kernel_drops, fw.links) == (
                sw.records, sw.warnings, sw.kernel_drops, sw.links,
            ), p.name  # fmt: skip
    assert sum(walked) > len(packets) * 4  # the C walk took most of the packet blocks
