"""One capture-file module (hopcap.capfile) for every consumer: the columnar reader (C and
numpy paths), the bundle's merge and anonymiser and the ring concatenation see the same
packets (same records, same IP and transport offsets) on every link type and tunnel, read
damage the same way, and the anonymiser leaves no original address behind."""

from __future__ import annotations

import ipaddress
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from pcapgen import encap, link_frame, write_pcap_raw, write_pcapng_raw
from test_linktypes import LINKS, _all_files, _conv, _ips, _write

from hopcap.bundle.anon import Anonymiser
from hopcap.bundle.merge import MergePoint, anonymise_pcap, collect_addresses, write_merged
from hopcap.bundle.pcapio import PcapReader
from hopcap.capfile import CaptureFileError, buffer_u8, concat_pcaps, decode, walk_records
from hopcap.correlate import _fastwalk, read_capture
from hopcap.correlate import reader as creader
from hopcap.correlate.reader import PacketTable
from hopcap.model import Verdict

DATA = Path(__file__).resolve().parents[1] / "data"


def _real_files() -> list[Path]:
    return sorted(p for p in DATA.rglob("*") if p.suffix == ".pcap" or p.name.startswith("test."))


def _empty_verdict() -> Verdict:
    return Verdict.from_dict({"points": [], "flows": []})


def _need_cc() -> None:
    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")


def _both_paths(path: Path) -> list[tuple[bool, PacketTable]]:
    """The capture read by the C helper, then by the numpy fallback (exact copies kept:
    the records as walked; linktypes' cut.pcap is one packet cut at every length, so the
    same IP packet with more or less of its frame's padding)."""
    out = []
    for compiled in (True, False):
        _fastwalk.disabled = not compiled
        try:
            out.append((compiled, read_capture(path, exact_copies=False)))
        finally:
            _fastwalk.disabled = False
    return out


def _decoded(path: Path) -> tuple[bytes, list[tuple[int, ...]]]:
    """Per record, what the shared decoder finds, record-relative: (link, IP header,
    ethertype, next header, protocol, tun)."""
    buf = path.read_bytes()
    rec = walk_records(path, buf)
    lay = decode(buffer_u8(buf), rec.off, rec.cap, rec.link)
    rel = [np.where(x >= 0, x - rec.off, -1) for x in (lay.l3, lay.l4)]
    rows = zip(rec.link.tolist(), rel[0].tolist(), lay.et.tolist(), rel[1].tolist(),
               lay.proto.tolist(), lay.tun.tolist(), strict=True)  # fmt: skip
    return buf, [(lk, a, e if a >= 0 else 0, b if a >= 0 else -1, p if a >= 0 else 0, t)
                 for lk, a, e, b, p, t in rows]  # fmt: skip


def _files(tmp: Path) -> list[Path]:
    files = _all_files(tmp)
    c = _conv()
    spb = [(0, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    files.append(write_pcapng_raw(tmp / "spb.pcapng", [(1, 9)], spb, spb=True))
    return files + _real_files()


def test_every_consumer_sees_the_same_packets(tmp_path: Path) -> None:
    """Every generated link type and tunnel (classic pcap and pcapng) and every real
    capture: the record walk in Python and in C, the decoder in numpy and in C, the
    reader's TCP rows on both paths, the bundle's reader, its merged file and its
    anonymised copy all agree packet by packet."""
    _need_cc()
    for f in _files(tmp_path):
        buf = f.read_bytes()
        py = walk_records(f, buf)  # the pure-Python walk
        cw = creader.walk_records(f, buf)  # the C loop for classic pcap
        for col in ("off", "cap", "ts", "link", "orig", "iface"):
            assert (getattr(py, col) == getattr(cw, col)).all(), (f, col)
        assert py.warnings == cw.warnings, f
        # the decoder in numpy and in C, every record
        lay = decode(buffer_u8(buf), py.off, py.cap, py.link)
        c = _fastwalk.find_layers(buf, py.off, py.cap, py.link)
        assert c is not None
        ip = lay.l3 >= 0
        assert (c[:, 0] == lay.l3).all(), f
        for i, col in enumerate((lay.et, lay.l4, lay.proto, lay.lim, lay.tun)):
            assert (c[ip, i + 1] == col[ip]).all(), (f, i)
        # the reader's TCP rows (both paths) are the decoder's TCP records
        end = py.off + py.cap
        u8 = buffer_u8(buf)
        doff = np.where(lay.l4 + 13 <= end, u8[np.clip(lay.l4 + 12, 0, len(buf) - 1)] >> 4, 0)
        tcp = ip & (lay.l4 >= 0) & (lay.proto == 6) & (lay.l4 + 20 <= end) & (doff >= 5)
        for compiled, t in _both_paths(f):
            assert t.records == len(py) and len(t) == int(tcp.sum()), (f, compiled)
            l4 = np.asarray(t.pl_off) - np.asarray(t.opt_back) - 20
            assert (l4 == lay.l4[tcp]).all(), (f, compiled)
            assert (np.asarray(t.tun) == lay.tun[tcp]).all(), (f, compiled)
            t.close()
        # the bundle: its reader, the merged file, the anonymised copy
        with PcapReader(f) as r:
            got = [(p.ts_ns, p.linktype, p.data, p.orig_len) for p in r]
        datas = [buf[o : o + k] for o, k in zip(py.off.tolist(), py.cap.tolist(), strict=True)]
        want = list(zip(py.ts.tolist(), py.link.tolist(), datas, py.orig.tolist(), strict=True))
        assert got == want, f
        merged = tmp_path / "merged.pcapng"
        stats = write_merged(merged, [MergePoint("a:eth0", f)], _empty_verdict())
        assert stats.packets == {"a:eth0": len(py)}
        m = walk_records(merged, merged.read_bytes())
        mb = merged.read_bytes()
        assert [mb[o : o + k] for o, k in zip(m.off.tolist(), m.cap.tolist(), strict=True)] == [
            w[2] for w in want
        ], f
        assert _decoded(merged)[1] == _decoded(f)[1], f
        copy = _anonymised_copy(f, tmp_path / "copy.pcap")
        _, before = _decoded(f)
        _, after = _decoded(copy)
        assert len(after) == len(before), f
        # the same headers at the same offsets (payload gone, addresses rewritten)
        assert after == before, f


def _addresses(buf: bytes, path: Path) -> set[bytes]:
    """Every address (IPv4, IPv6, MAC) of every header the decoder finds, kept ones aside."""
    rec = walk_records(path, buf)
    lay = decode(buffer_u8(buf), rec.off, rec.cap, rec.link)
    out: set[bytes] = set()
    tr = lay.trace
    for k in range(tr.ips.shape[1]):
        for ip in tr.ips[:, k][tr.ips[:, k] >= 0].tolist():
            w, a = (4, 12) if buf[ip] >> 4 == 4 else (16, 8)
            for s in (ip + a, ip + a + w):
                if not ipaddress.ip_address(buf[s : s + w]).is_loopback:
                    out.add(buf[s : s + w])
        for e in tr.eths[:, k][tr.eths[:, k] >= 0].tolist():
            out |= {buf[e : e + 6], buf[e + 6 : e + 12]} - {b"\xff" * 6, bytes(6)}
    for m in tr.mac[tr.mac >= 0].tolist():
        out.add(buf[m : m + 6])
    return out


def _anonymised_copy(src: Path, copy: Path) -> Path:
    """`src` copied to `copy` and anonymised in place, as a bundle's pcaps/ copies are."""
    shutil.copyfile(src, copy)
    anon = Anonymiser()
    collect_addresses(anon, [copy])
    anon.freeze()
    anonymise_pcap(copy, anon, "a:eth0")
    return copy


def _leak_frames() -> list[tuple[int, int, bytes]]:
    """Every link type and tunnel, IPv4 and IPv6, each frame also cut at every length."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrRouting

    frames: list[tuple[int, int, bytes]] = []
    t = 1_763_790_000_000_000_000
    ips = [ip for _, ip in _ips(_conv())[2:4] + _ips(_conv(v6=True))[2:4]]
    ips.append(bytes(IP(src="198.51.100.7", dst="198.51.100.8", options=b"\x07\x07\x04"
                        + bytes([198, 51, 100, 9]) + b"\x00") / TCP()))  # fmt: skip
    ips.append(bytes(IPv6(src="2001:db8::7", dst="2001:db8::8")
                     / IPv6ExtHdrRouting(addresses=["2001:db8::9"]) / TCP()))  # fmt: skip
    for ip in ips:
        for link, kw in LINKS:
            lt, fr = link_frame(ip, link.replace("null-le-", "null-"), **kw)  # type: ignore[arg-type]
            frames += [(lt, t, fr[:n]) for n in range(1, len(fr) + 1, 3)] + [(lt, t, fr)]
        for kind in ("gre", "gretap", "ipip", "vxlan", "geneve", "erspan2", "erspan3o"):
            lt, fr = link_frame(encap(ip, kind), "sll")
            frames += [(lt, t, fr[:n]) for n in range(1, len(fr) + 1, 5)] + [(lt, t, fr)]
    return frames


def test_anonymised_bundle_leaks_no_address(tmp_path: Path) -> None:
    """The leak test. Every link type (link type 14 among them) and every tunnel, frames
    whole and cut at every length (a snap length inside the IP header, where the
    anonymiser once kept the first 16 bytes, a raw IPv4 header's source address with
    them), IPv4 options with an address, an IPv6 routing header: the anonymised merged
    file and capture copy hold none of the original addresses (IP and MAC, tunnel inner
    headers included), not even in part, and an unknown link type keeps nothing."""
    frames = _leak_frames()
    wifi = b"\x08\x01\x00\x00" + b"\xaa\xbb\xcc\xdd\xee\x01" * 3 + b"\x00\x00" + _ips(_conv())[3][1]
    src = _write(tmp_path / "all.pcapng", [*frames, (105, frames[0][1], wifi)])
    orig = src.read_bytes()
    secrets = _addresses(orig, src) | {wifi[4:10]}
    assert len(secrets) >= 12  # inner and outer IPv4/IPv6, Ethernet and cooked MACs
    anon = Anonymiser()
    collect_addresses(anon, [src])
    anon.freeze()
    merged = tmp_path / "merged.pcapng"
    write_merged(merged, [MergePoint("a:eth0", src)], _empty_verdict(), anon)
    copy = tmp_path / "copy.pcapng"
    shutil.copyfile(src, copy)
    anonymise_pcap(copy, anon, "a:eth0")
    for out in (merged, copy):
        data = out.read_bytes()
        left = {s.hex() for s in secrets if s in data}
        assert not left, (out.name, left)
        with PcapReader(out) as r:
            pkts = list(r)
        assert len(pkts) == len(frames) + 1
        assert pkts[-1].data == b"" and pkts[-1].orig_len == len(wifi)
        # no partial address either: where the original had address bytes in a cut
        # header, the anonymised packet has none of them (the IP header is dropped)
        for (_lt, _ts, fr), p in zip(frames, pkts, strict=False):
            assert len(p.data) <= len(fr)
            if len(p.data) < len(fr):
                assert p.data != fr[: len(p.data)] or len(p.data) <= _net(fr, _lt), fr.hex()


def _net(fr: bytes, lt: int) -> int:
    """Where the network layer of one frame starts (0 when the link is not understood)."""
    buf = fr + bytes(8)
    z = np.zeros(1, np.int64)
    lay = decode(buffer_u8(buf), z, z + len(fr), z + lt)
    return max(int(lay.trace.net[0]), 0)


def _damaged(tmp: Path) -> list[tuple[Path, int]]:
    """(damaged file, packets before the damage)."""
    c = _conv()
    fr = [(ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    n = len(fr)
    out = []
    p = write_pcap_raw(tmp / "cut.pcap", fr)
    p.write_bytes(p.read_bytes()[:-30])
    out.append((p, n - 1))
    p = write_pcap_raw(tmp / "corrupt.pcap", fr)
    d = bytearray(p.read_bytes())
    at = 24 + 16 + len(fr[0][1])
    d[at + 8 : at + 12] = (10**8).to_bytes(4, "little")
    p.write_bytes(bytes(d))
    out.append((p, 1))
    pk = [(0, ts, f) for ts, f in fr]
    p = write_pcapng_raw(tmp / "cut.pcapng", [(1, 9)], pk)
    p.write_bytes(p.read_bytes()[:-10])
    out.append((p, n - 1))
    p = write_pcapng_raw(tmp / "badlen.pcapng", [(1, 9)], pk)
    d = bytearray(p.read_bytes())
    rec = walk_records(p, bytes(d))
    at = int(rec.off[3]) - 28  # the fourth EPB
    d[at + 4 : at + 8] = (13).to_bytes(4, "little")
    p.write_bytes(bytes(d))
    out.append((p, 3))
    p = write_pcapng_raw(tmp / "iface.pcapng", [(1, 9)], pk)
    d = bytearray(p.read_bytes())
    at = int(walk_records(p, bytes(d)).off[2]) - 20  # the third EPB's interface id
    d[at : at + 4] = (5).to_bytes(4, "little")
    p.write_bytes(bytes(d))
    out.append((p, 2))
    for name, data in (("empty.pcap", b""), ("short.pcap", b"\xd4\xc3\xb2\xa1" + bytes(10))):
        (tmp / name).write_bytes(data)
        out.append((tmp / name, 0))
    return out


def test_damage_is_read_up_to_and_warned_alike(tmp_path: Path) -> None:
    """A file cut short, a corrupt record header, a broken pcapng block, a packet for an
    undeclared interface, an empty or too short file: the reader (both paths), the
    bundle's reader and its merge read the same packets up to the damage and give the
    same warning, which says at which byte and after how many packets."""
    for f, before in _damaged(tmp_path):
        ws = []
        for compiled, t in _both_paths(f):
            assert t.records == before, (f, compiled)
            ws.append(t.warnings)
            t.close()
        with PcapReader(f) as r:
            assert len(list(r)) == before and r.truncated
            ws.append(r.warnings)
        assert ws[0] == ws[1] == ws[2] and len(ws[0]) == 1, (f, ws)
        if before:
            assert "at byte " in ws[0][0] and f"read {before} packets before it" in ws[0][0]
        stats = write_merged(tmp_path / "m.pcapng", [MergePoint("a:eth0", f)], _empty_verdict())
        assert stats.packets == {"a:eth0": before} and stats.warnings == [f"a:eth0: {ws[0][0]}"]


def test_not_a_capture_is_an_error_everywhere(tmp_path: Path) -> None:
    from hopcap.errors import BundleError, CorrelationError

    p = tmp_path / "notes.txt"
    p.write_text("12:00:01.000 IP 203.0.113.10.51234 > 203.0.113.80.80: Flags [S]\n")
    for call, err in ((read_capture, CorrelationError), (PcapReader, BundleError)):
        with pytest.raises(err, match="not a pcap or pcapng capture"):
            call(p)
    with pytest.raises(CaptureFileError, match="not a pcap or pcapng capture"):
        concat_pcaps([p], tmp_path / "out.pcap")


def _ring(tmp: Path) -> tuple[list[Path], list[tuple[int, bytes]]]:
    c = _conv()
    fr = [(ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    parts = [write_pcap_raw(tmp / f"r.pcap{i}", fr[i * 4 : i * 4 + 4]) for i in range(3)]
    return parts, fr


def test_ring_files_joined_past_a_damaged_part(tmp_path: Path) -> None:
    """A middle ring file cut mid-record: its complete records, then the next file's;
    the joined file reads to its end with no damage, the cut is a warning."""
    parts, fr = _ring(tmp_path)
    parts[1].write_bytes(parts[1].read_bytes()[:-20])
    out = tmp_path / "joined.pcap"
    warnings = concat_pcaps(parts, out)
    assert len(warnings) == 1 and "r.pcap1: truncated: record at byte" in warnings[0]
    assert "read 3 packets before it" in warnings[0]
    assert not any(p.exists() for p in parts)
    t = read_capture(out)
    assert t.records == len(fr) - 1 and not t.warnings
    assert [int(x) for x in t.ts] == [ts for i, (ts, _) in enumerate(fr) if i != 7]
    t.close()


def test_ring_files_of_other_formats_are_rewritten(tmp_path: Path) -> None:
    """Parts in another byte order, another time resolution, pcapng: each record is
    rewritten in the first part's format; different link types are refused."""
    c = _conv()
    fr = [(ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    parts = [
        write_pcap_raw(tmp_path / "a", fr[:5], nano=True),
        write_pcap_raw(tmp_path / "b", fr[5:10], big_endian=True, nano=False),
        write_pcapng_raw(tmp_path / "c", [(1, 9)], [(0, ts, f) for ts, f in fr[10:]]),
    ]
    out = tmp_path / "joined.pcap"
    assert concat_pcaps(parts, out) == []
    with PcapReader(out) as r:
        got = [(p.ts_ns, p.data) for p in r]
        assert not r.warnings
    # microseconds lose the nanoseconds; the data is the same
    assert [d for _, d in got] == [f for _, f in fr]
    assert [ts // 1000 for ts, _ in got] == [ts // 1000 for ts, _ in fr]
    mixed = [write_pcap_raw(tmp_path / "x", fr[:3]),
             write_pcap_raw(tmp_path / "y", [(fr[3][0], fr[3][1][14:])], linktype=101)]  # fmt: skip
    with pytest.raises(CaptureFileError, match="different link types"):
        concat_pcaps(mixed, tmp_path / "j2.pcap")


def test_merge_annotates_tunnelled_points_by_their_inner_flow(tmp_path: Path) -> None:
    """A point inside VXLAN: the merged file's comment on the first packet of its leg
    (the merge finds the inner tuple with the reader's decoder, not the outer one)."""
    import subprocess

    from hopcap.bundle import write_offline_bundle
    from hopcap.correlate import correlate
    from hopcap.model import PointInput

    c = _conv()
    a = _write(tmp_path / "a.pcap", [(1, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)])
    b = _write(
        tmp_path / "b.pcap",
        [(1, ts + 50_000, link_frame(encap(ip, "vxlan"), "ether")[1]) for ts, ip in _ips(c)],
    )
    pts = [PointInput(name="a:eth0", pcap=a), PointInput(name="b:eth0", pcap=b)]
    out = write_offline_bundle(tmp_path / "bundle", pts, correlate(pts))
    res = subprocess.run(
        ["tshark", "-r", str(out / "merged.pcapng"), "-T", "fields", "-e", "frame.comment"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    comments = [x for x in res.stdout.splitlines() if x]
    assert any(x.startswith("b:eth0: first packet of") for x in comments), comments
    assert any(x.startswith("a:eth0: first packet of") for x in comments), comments


def test_simple_packet_blocks_take_the_previous_timestamp(tmp_path: Path) -> None:
    """An SPB has no timestamp: the previous packet's, in the reader and in the bundle
    (the bundle's reader once put them at 1970, first in the merged timeline)."""
    c = _conv()
    pk = [(0, ts, link_frame(ip, "ether")[1]) for ts, ip in _ips(c)]
    ep = write_pcapng_raw(tmp_path / "e.pcapng", [(1, 9)], pk[:3])
    data = ep.read_bytes()
    spb = pk[3][2] + bytes(-len(pk[3][2]) % 4)
    blk = (
        struct.pack("<III", 3, 16 + len(spb), len(pk[3][2]))
        + spb
        + struct.pack("<I", 16 + len(spb))
    )
    p = tmp_path / "s.pcapng"
    p.write_bytes(data + blk)
    t = read_capture(p)
    assert t.records == 4 and int(t.ts[-1]) == pk[2][1]
    t.close()
    with PcapReader(p) as r:
        assert [x.ts_ns for x in r][-1] == pk[2][1]


def test_python_and_c_record_walks_agree_on_random_damage() -> None:
    """The classic-pcap record loop in Python and its C twin: the same records, stop byte
    and reason on a real capture with random bytes changed and cut at random lengths,
    walked in small chunks and whole."""
    import random

    from hopcap.capfile.walk import MAX_RECORD, pcap_chunk

    _need_cc()
    base = (DATA / "tcpreplay" / "test.pcap").read_bytes()
    rnd = random.Random(7)
    for _ in range(400):
        d = bytearray(base)
        for _ in range(rnd.randint(1, 4)):
            d[rnd.randrange(24, len(d))] = rnd.randrange(256)
        cut = bytes(d[: rnd.randrange(24, len(d) + 1)])
        for maxn in (7, 1000):
            pos = 24
            while True:
                py = pcap_chunk(cut, pos, False, 1000, MAX_RECORD, maxn)
                c = _fastwalk.walk_pcap(cut, pos, False, 1000, MAX_RECORD, maxn)
                assert py[3:5] == c[3:5]  # where and why it stopped; the columns:
                assert all((py[k] == c[k]).all() for k in (0, 1, 2, 5))
                if py[4] != 3:
                    break
                pos = py[3]


def test_anonymised_geneve_options_keep_no_address(tmp_path: Path) -> None:
    """A real Google Cloud GENEVE packet (tests/data/tcpdump-tunnels/geneve-gcp.pcap)
    carries the inner source address 192.168.100.2 in its options as well as in the inner
    IP header: the anonymised copy keeps the options' class, type and length (Wireshark
    still lists them) and none of their data."""
    src = Path(__file__).resolve().parents[1] / "data" / "tcpdump-tunnels" / "geneve-gcp.pcap"
    orig = src.read_bytes()
    addr = bytes([192, 168, 100, 2])
    options = [b"\x01\x32\x01\x01", b"\x01\x32\x02\x04", b"\x01\x32\x03\x02"]
    assert orig.count(addr) == 2 and all(o in orig for o in options)
    copy = _anonymised_copy(src, tmp_path / "gcp.pcap")
    data = copy.read_bytes()
    assert addr not in data
    for o in options:
        at = data.index(o)  # the option header kept, its data zeroed
        n = (o[3] & 0x1F) * 4
        assert data[at + 4 : at + 4 + n] == bytes(n)
    assert _decoded(copy)[1] == _decoded(src)[1]  # the same headers at the same offsets


def _mapped_kib(addr: int) -> int:
    """Rss of this process's mapping that starts at `addr` (/proc/self/smaps)."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        if "-" in line.split()[0] and int(line.split("-")[0], 16) == addr:
            rss = next(x for x in lines[i + 1 :] if x.startswith("Rss:"))
            return int(rss.split()[1])
    raise AssertionError(f"no mapping at {addr:#x}")


def test_a_capture_is_mapped_populated_outside_the_interpreter_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_capture maps the file in by madvise(MADV_POPULATE_READ) on this (Linux >= 5.14)
    system, a piece at a time: once open, every page of it is mapped (its Rss is the
    file's size before any is read), the mapping holds the file's bytes and can be closed
    (no view of it left exported); an empty file is b""."""
    import mmap
    import platform

    from hopcap.capfile import open_capture
    from hopcap.capfile import walk as cwalk

    kernel = tuple(int(x) for x in platform.release().split(".")[:2])
    assert kernel < (5, 14) or cwalk._populator() is not None
    monkeypatch.setattr(cwalk, "POPULATE_PIECE", 1 << 20)  # 4 pieces and the rest of one
    f = tmp_path / "x.pcap"
    data = bytes(range(256)) * 4096 * 4 + b"\x5a" * 3 * mmap.PAGESIZE  # 4 MiB + 3 pages
    f.write_bytes(data)
    buf = open_capture(f)
    assert isinstance(buf, mmap.mmap)
    view = np.frombuffer(buf, np.uint8)
    assert _mapped_kib(view.ctypes.data) * 1024 == len(data)  # before any read
    assert view.tobytes() == data
    del view
    buf.close()  # no view of it left
    with f.open("rb") as fh:  # against: a plain mapping has nothing mapped until read
        plain = mmap.mmap(fh.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    view = np.frombuffer(plain, np.uint8)
    assert _mapped_kib(view.ctypes.data) == 0
    del view
    plain.close()
    (tmp_path / "empty.pcap").write_bytes(b"")
    assert open_capture(tmp_path / "empty.pcap") == b""


def test_a_new_array_mapped_in_is_written_without_a_fault_per_page() -> None:
    """capfile.walk.mapped_in: the reader's columns get their pages in one system call
    (MADV_POPULATE_WRITE) instead of a page fault per 4 KiB when the C walk first writes
    them (3-4 us each on a virtual machine); an array written without it, the control,
    shows the faults this counts."""
    import mmap
    import resource

    from hopcap.capfile.walk import mapped_in

    def faults_writing(a: np.ndarray) -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a[:] = 1
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    def fresh(size: int) -> np.ndarray:
        """Memory never touched (np.empty may get pages the allocator had already), in
        4 KiB pages (with huge pages: 8 faults either way)."""
        m = mmap.mmap(-1, size)
        m.madvise(mmap.MADV_NOHUGEPAGE)
        return np.frombuffer(m, np.uint8)

    size = 16 << 20  # 4,096 pages
    plain = faults_writing(fresh(size))
    mapped = faults_writing(mapped_in(fresh(size)))
    assert plain > 2000, plain
    assert mapped < 50, mapped
    small = np.empty(1000, np.uint8)
    assert mapped_in(small) is small
