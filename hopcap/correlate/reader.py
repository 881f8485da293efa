"""Streaming capture reader: classic pcap and pcapng into columnar numpy arrays.

The file is memory-mapped; a record walk collects (data offset, caplen, timestamp, link
type) per record, then every header field is gathered with vectorised numpy indexing.
Payloads are never copied: `pl_off`/`pl_cap` point into the mapped file.

Supported: pcap (both byte orders, micro- and nanosecond), pcapng (SHB/IDB/EPB/SPB/obsolete
PB, per-interface `if_tsresol`/`if_tsoffset`, several interfaces and sections); link types
Ethernet (1, with 802.1Q/802.1ad tags), Linux cooked v1 (113) and v2 (276), raw IP (101,
12, 14, 228, 229), BSD loopback (0, 108); IPv4 and IPv6 (TCP after the fixed header or
after hop-by-hop/routing/destination-options headers). UDP, ICMP/ICMPv6 and ESP records
are not parsed here: both walks hand where their IP and L4 headers are to
`hopcap.correlate.dgram`, which gathers them (`PacketTable.dgram`).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.errors import CorrelationError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
MAX_RECORD = 1 << 20  # no sane capture record is bigger than 1 MiB (TSO tops at 256 KiB)

LINK_ETHERNET = 1
LINK_SLL = 113
LINK_SLL2 = 276
LINK_RAW = (101, 12, 14)
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_NULL = 0
LINK_LOOP = 108
SUPPORTED_LINKS = {LINK_ETHERNET, LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6, LINK_NULL, LINK_LOOP}
SUPPORTED_LINKS.update(LINK_RAW)

# TCP flag bits
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128


@dataclass
class Records:
    """The record walk's output: one row per captured record (any protocol)."""

    off: I64  # offset of the link-layer frame in the buffer
    cap: I64  # captured length
    ts: I64  # nanoseconds since the epoch
    link: I64  # link type of the record
    warnings: list[str] = field(default_factory=list)
    kernel_drops: int | None = None  # from pcapng interface statistics, when present


@dataclass
class PacketTable:
    """TCP packets of one capture point, columnar; every array has one row per packet."""

    path: Path
    buf: Any  # the mapped file (mmap or bytes); payload slices come from here
    records: int  # every record in the file, TCP or not
    ts: I64
    v: npt.NDArray[np.uint8]  # 4 or 6
    src_hi: npt.NDArray[np.uint64]  # an address as two u64 words; IPv4 in lo, hi 0
    src_lo: npt.NDArray[np.uint64]  # (hi columns of IPv4-only captures take no memory)
    dst_hi: npt.NDArray[np.uint64]
    dst_lo: npt.NDArray[np.uint64]
    sport: I64
    dport: I64
    seq: I64
    ack: I64
    flags: I64
    win: I64
    ipid: I64  # -1 for IPv6
    ttl: I64
    tos: I64
    plen: I64  # payload length per the IP header (what was sent)
    pl_off: I64  # payload offset in buf
    pl_cap: I64  # captured payload bytes (<= plen when the snap length cut it)
    tsval: I64  # -1: no timestamp option
    tsecr: npt.NDArray[np.uint32]  # meaningful only where tsval >= 0
    mss: I64  # -1: no MSS option
    wscale: I64
    opt_back: npt.NDArray[np.int16]  # the TCP options start this many bytes before pl_off
    opt_len: npt.NDArray[np.int16]
    warnings: list[str] = field(default_factory=list)
    kernel_drops: int | None = None
    # the UDP, ICMP and ESP datagrams of the same capture (hopcap.correlate.dgram)
    dgram: Any = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def payload(self, i: int, start: int = 0, end: int | None = None) -> bytes:
        """Captured payload bytes of packet `i` (a slice of them)."""
        o = int(self.pl_off[i])
        n = int(self.pl_cap[i])
        e = n if end is None else min(end, n)
        s = min(max(start, 0), e)
        return bytes(self.buf[o + s : o + e])

    def options(self, i: int) -> bytes:
        o = int(self.pl_off[i]) - int(self.opt_back[i])
        return bytes(self.buf[o : o + int(self.opt_len[i])])

    def close(self) -> None:
        if isinstance(self.buf, mmap.mmap):
            with contextlib.suppress(BufferError):  # a numpy view is still alive
                self.buf.close()


# --------------------------------------------------------------------------- record walk


def _open(path: Path) -> Any:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise CorrelationError(f"{path}: no such capture file") from None
    except OSError as e:
        raise CorrelationError(f"{path}: cannot open: {e.strerror or e}") from None
    with f:
        size = path.stat().st_size
        if size == 0:
            return b""
        # MAP_POPULATE: map the whole file at once (one pass in the kernel) instead of
        # taking a page fault per 4 KiB on first touch
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)


def walk_records(path: Path, buf: Any) -> Records:
    head = bytes(buf[:4])
    if len(buf) == 0:
        return _empty_records([f"{path.name}: empty file"])
    if head in PCAP_MAGICS:
        return _walk_pcap(path, buf)
    if head == PCAPNG_SHB:
        return _walk_pcapng(path, buf)
    if len(buf) < 4:
        return _empty_records(
            [f"{path.name}: file truncated inside the header ({len(buf)} bytes)"],
        )
    raise CorrelationError(
        f"{path}: not a pcap or pcapng capture (starts with {head.hex()})",
        hint="give the files tcpdump -w wrote; text output of tcpdump cannot be correlated",
    )


def _empty_records(warnings: list[str]) -> Records:
    z = np.zeros(0, np.int64)
    return Records(z, z.copy(), z.copy(), z.copy(), warnings)


def _walk_pcap(path: Path, buf: Any) -> Records:
    endian, mult = PCAP_MAGICS[bytes(buf[:4])]
    warnings: list[str] = []
    size = len(buf)
    if size < 24:
        return _empty_records(
            [f"{path.name}: file truncated inside the pcap header"],
        )
    _snaplen, link = struct.unpack_from(endian + "II", buf, 16)
    link &= 0x0FFFFFFF
    offs, caps, tss = _walk_pcap_records(buf, endian, mult, size, warnings, path.name)
    n = offs.shape[0]
    return Records(offs, caps, tss, np.full(n, link, np.int64), warnings)


def _walk_pcap_records(
    buf: Any, endian: str, mult: int, size: int, warnings: list[str], name: str
) -> tuple[I64, I64, I64]:
    from hopcap.correlate import _fastwalk

    res = _fastwalk.walk_pcap(buf, endian == ">", mult, MAX_RECORD)
    if res is not None:
        offs, caps, tss, stop, reason = res
    else:
        offs, caps, tss, stop, reason = _walk_pcap_python(buf, endian, mult, size)
    w = _walk_warning(name, reason, stop, int(offs.shape[0]))
    if w:
        warnings.append(w)
    return offs, caps, tss


def _walk_warning(name: str, reason: int, stop: int, count: int) -> str | None:
    if reason == 1:
        return (
            f"{name}: truncated: record at byte {stop} runs past the end of the file "
            f"(read {count} packets before it)"
        )
    if reason == 2:
        return (
            f"{name}: corrupt record header at byte {stop} "
            f"(read {count} packets before it; the rest is ignored)"
        )
    return None


def _walk_pcap_python(
    buf: Any, endian: str, mult: int, size: int
) -> tuple[I64, I64, I64, int, int]:
    hdr = struct.Struct(endian + "IIII")
    unpack = hdr.unpack_from
    offs: list[int] = []
    caps: list[int] = []
    tss: list[int] = []
    pos = 24
    reason = 0
    while pos < size:
        if pos + 16 > size:
            reason = 1
            break
        sec, frac, cap, orig = unpack(buf, pos)
        if cap > MAX_RECORD or (cap > orig and orig != 0) or (mult == 1000 and frac >= 1_000_000):
            reason = 2
            break
        if pos + 16 + cap > size:
            reason = 1
            break
        offs.append(pos + 16)
        caps.append(cap)
        tss.append(sec * 1_000_000_000 + frac * mult)
        pos += 16 + cap
    return (
        np.array(offs, np.int64),
        np.array(caps, np.int64),
        np.array(tss, np.int64),
        pos,
        reason,
    )


def _tsres_ns(code: int) -> tuple[int, int]:
    """if_tsresol -> (multiplier, divisor) turning ticks into nanoseconds."""
    v = code & 0x7F
    if code & 0x80:
        return 1_000_000_000, 1 << v
    if v <= 9:
        return 10 ** (9 - v), 1
    return 1, 10 ** (v - 9)


def _walk_pcapng(path: Path, buf: Any) -> Records:
    size = len(buf)
    offs: list[int] = []
    caps: list[int] = []
    tss: list[int] = []
    links: list[int] = []
    warnings: list[str] = []
    kernel_drops: int | None = None
    ifaces: list[tuple[int, int, int, int, int]] = []  # link, snaplen, mul, div, tsoffset_s
    endian = "<"
    pos = 0
    last_ts = 0
    unsupported: set[int] = set()
    while pos < size:
        if pos + 12 > size:
            warnings.append(f"{path.name}: truncated: block at byte {pos} is incomplete")
            break
        btype_raw = bytes(buf[pos : pos + 4])
        if btype_raw == PCAPNG_SHB:
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                warnings.append(f"{path.name}: corrupt section header at byte {pos}")
                break
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", buf, pos)
        if blen < 12 or blen % 4 or blen > MAX_RECORD + 4096:
            warnings.append(
                f"{path.name}: corrupt block length {blen} at byte {pos} "
                f"(read {len(offs)} packets before it)"
            )
            break
        if pos + blen > size:
            warnings.append(
                f"{path.name}: truncated: block at byte {pos} runs past the end of the file "
                f"(read {len(offs)} packets before it)"
            )
            break
        body = pos + 8
        if btype == 1:  # IDB
            link, _r, snap = struct.unpack_from(endian + "HHI", buf, body)
            mul, div, tsoff = 1000, 1, 0
            opos = body + 8
            end = pos + blen - 4
            while opos + 4 <= end:
                code, olen = struct.unpack_from(endian + "HH", buf, opos)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    mul, div = _tsres_ns(buf[opos + 4])
                elif code == 14 and olen >= 8:
                    (tsoff,) = struct.unpack_from(endian + "q", buf, opos + 4)
                opos += 4 + ((olen + 3) & ~3)
            ifaces.append((link, snap, mul, div, tsoff))
        elif btype in (6, 2):  # EPB, obsolete packet block
            if btype == 6:
                iface, th, tl, cap, _orig = struct.unpack_from(endian + "IIIII", buf, body)
            else:
                iface, _d, th, tl, cap, _orig = struct.unpack_from(endian + "HHIIII", buf, body)
            data = body + 20
            if iface >= len(ifaces) or data + cap > pos + blen:
                warnings.append(f"{path.name}: corrupt packet block at byte {pos}")
                break
            link, _snap, mul, div, tsoff = ifaces[iface]
            ticks = (th << 32) | tl
            last_ts = ticks * mul // div + tsoff * 1_000_000_000
            offs.append(data)
            caps.append(cap)
            tss.append(last_ts)
            links.append(link)
        elif btype == 3:  # SPB: no timestamp, interface 0
            if not ifaces:
                warnings.append(f"{path.name}: simple packet block before any interface")
                break
            (orig,) = struct.unpack_from(endian + "I", buf, body)
            cap = min(orig, blen - 16)
            offs.append(body + 4)
            caps.append(cap)
            tss.append(last_ts)
            links.append(ifaces[0][0])
        elif btype == 5:  # ISB: interface statistics; isb_ifdrop (code 5)
            opos = body + 12
            end = pos + blen - 4
            while opos + 4 <= end:
                code, olen = struct.unpack_from(endian + "HH", buf, opos)
                if code == 0:
                    break
                if code in (5, 8) and olen == 8:  # ifdrop / osdrop
                    (v,) = struct.unpack_from(endian + "Q", buf, opos + 4)
                    kernel_drops = (kernel_drops or 0) + int(v)
                opos += 4 + ((olen + 3) & ~3)
        pos += blen
    for lk in links:
        if lk not in SUPPORTED_LINKS:
            unsupported.add(lk)
    if unsupported:
        warnings.append(
            f"{path.name}: link types {sorted(unsupported)} are not supported; "
            "their packets are ignored"
        )
    return Records(
        np.array(offs, np.int64),
        np.array(caps, np.int64),
        np.array(tss, np.int64),
        np.array(links, np.int64),
        warnings,
        kernel_drops,
    )


# --------------------------------------------------------------------------- field gather


def _be16(u8: U8, o: I64) -> I64:
    return (u8[o].astype(np.int64) << 8) | u8[o + 1]


def _be32(u8: U8, o: I64) -> I64:
    return (
        (u8[o].astype(np.int64) << 24)
        | (u8[o + 1].astype(np.int64) << 16)
        | (u8[o + 2].astype(np.int64) << 8)
        | u8[o + 3]
    )


def _be64(u8: U8, o: I64) -> npt.NDArray[np.uint64]:
    hi = _be32(u8, o).astype(np.uint64)
    lo = _be32(u8, o + 4).astype(np.uint64)
    return (hi << np.uint64(32)) | lo


HEAD = 160  # header bytes of a record parsed: link + VLANs + IPv6 + extensions + TCP options
CHUNK = 1 << 18

_COLUMNS = ("ts", "v", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq", "ack",
            "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap", "tsval", "tsecr",
            "mss", "wscale", "opt_back", "opt_len")  # fmt: skip


# columns that never need 64 bits; sequence numbers, timestamps and offsets keep int64 so
# that arithmetic with Python ints cannot wrap
_NARROW: dict[str, type] = {
    "sport": np.int32, "dport": np.int32, "win": np.int32, "ipid": np.int32, "plen": np.int32,
    "pl_cap": np.int32, "mss": np.int32, "flags": np.int16, "ttl": np.int16, "tos": np.int16,
    "wscale": np.int16, "opt_len": np.int16, "opt_back": np.int16, "tsecr": np.uint32,
}  # fmt: skip


def read_capture(path: Path) -> PacketTable:
    """Read one capture file into a PacketTable (TCP over IPv4/IPv6 only).

    The headers of each record (its first HEAD bytes) are copied into a small contiguous
    block, a chunk of records at a time, and parsed there: random access into a large
    mapped file costs a cache and TLB miss per field, a packed block does not."""
    from hopcap.correlate._fastwalk import gather_heads, parse_records, walk_parse_pcap

    buf = _open(path)
    magic = bytes(buf[:4])
    if magic in PCAP_MAGICS and len(buf) >= 24:
        endian, mult = PCAP_MAGICS[magic]
        _snaplen, link = struct.unpack_from(endian + "II", buf, 16)
        gen = walk_parse_pcap(buf, endian == ">", mult, MAX_RECORD, link & 0x0FFFFFFF, HEAD, CHUNK)
        if gen is not None:
            dgs: list[tuple[I64, ...]] = []
            return _finish(path, buf, _one_pass(path, buf, gen, dgs), dgs)
    rec = walk_records(path, buf)
    n = int(rec.off.shape[0])
    parts: list[PacketTable] = []
    dgs = []
    for s in range(0, max(n, 1), CHUNK):
        e = min(n, s + CHUNK)
        off, cap = rec.off[s:e], rec.cap[s:e]
        fast = parse_records(buf, off, cap, rec.link[s:e], HEAD)
        if fast is not None:
            rows, cols, (ri, l3, l4) = fast
            dgs.append((rec.ts[s:e][ri], l3, l4, off[ri] + cap[ri]))
            parts.append(_narrow(_from_columns(path, buf, rec.ts[s:e], rows, cols)))
            continue
        heads = gather_heads(buf, off, cap, HEAD)
        k = e - s
        sub = Records(
            off=np.arange(k, dtype=np.int64) * HEAD,
            cap=np.minimum(cap, HEAD),
            ts=rec.ts[s:e],
            link=rec.link[s:e],
        )
        parts.append(_parse(path, buf, heads.reshape(-1), sub, off, cap, dgs))
    return _finish(path, buf, (parts, n, list(rec.warnings), rec.kernel_drops), dgs)


def _narrow(t: PacketTable) -> PacketTable:
    """Own, compact columns (chunk buffers of the parser are released)."""
    for c in _COLUMNS:
        a = getattr(t, c)
        dt = _NARROW.get(c)
        if c in ("src_hi", "dst_hi") and not a.any():
            setattr(t, c, np.broadcast_to(np.uint64(0), a.shape))  # IPv4 only: no memory
        elif dt is not None and a.dtype != dt:
            setattr(t, c, a.astype(dt))
        elif a.base is not None:
            setattr(t, c, a.copy())
    return t


def _one_pass(
    path: Path, buf: Any, gen: Any, dgs: list[tuple[I64, ...]]
) -> tuple[list[PacketTable], int, list[str], None]:
    parts: list[PacketTable] = []
    nrec = 0
    warnings: list[str] = []
    for item in gen:
        if len(item) == 2:
            stop, reason = item
            w = _walk_warning(path.name, reason, stop, nrec)
            if w:
                warnings.append(w)
            break
        k, ts, cols, dg = item
        nrec += k
        if dg[0].shape[0]:
            dgs.append(dg)
        parts.append(_narrow(_from_columns(path, buf, ts.copy(), None, cols)))
    return parts, nrec, warnings, None


def _finish(
    path: Path,
    buf: Any,
    got: tuple[list[PacketTable], int, list[str], int | None],
    dgs: list[tuple[I64, ...]],
) -> PacketTable:
    from hopcap.correlate.dgram import parse_dgrams

    parts, n, warnings, kernel_drops = got
    if not parts:
        z = np.zeros(0, np.int64)
        parts = [_from_columns(path, buf, z, None, {c: z for c in _FAST_COLUMNS})]
    parts = [_narrow(x) for x in parts]
    t = parts[0]
    if len(parts) > 1:
        for c in _COLUMNS:
            setattr(t, c, np.concatenate([getattr(x, c) for x in parts]))
            for x in parts[1:]:
                setattr(x, c, None)  # free as we go: the peak stays near one copy
        _narrow(t)
    t.records = n
    t.warnings = warnings
    t.kernel_drops = kernel_drops
    z = np.zeros(0, np.int64)
    cat = [np.concatenate([d[i] for d in dgs]) if dgs else z for i in range(4)]
    t.dgram = parse_dgrams(path, buf, *cat)
    return t


_FAST_COLUMNS = ("v", "src_hi", "src_lo", "dst_hi", "dst_lo", *(c for c in ("sport", "dport",
                 "seq", "ack", "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap",
                 "tsval", "tsecr", "mss", "wscale", "opt_off", "opt_len")))  # fmt: skip


def _from_columns(
    path: Path, buf: Any, ts: I64, rows: I64 | None, c: dict[str, I64]
) -> PacketTable:
    return PacketTable(
        path=path,
        buf=buf,
        records=0,
        ts=ts[rows] if rows is not None else ts,
        v=c["v"].astype(np.uint8),
        src_hi=c["src_hi"].view(np.uint64),
        src_lo=c["src_lo"].view(np.uint64),
        dst_hi=c["dst_hi"].view(np.uint64),
        dst_lo=c["dst_lo"].view(np.uint64),
        opt_back=c["pl_off"] - c["opt_off"],
        **{name: c[name] for name in _COLUMNS[6:] if name != "opt_back"},  # type: ignore[arg-type]
    )


def _parse(
    path: Path,
    buf: Any,
    u8: U8,
    rec: Records,
    true_off: I64 | None = None,
    true_cap: I64 | None = None,
    dgs: list[tuple[I64, ...]] | None = None,
) -> PacketTable:
    """Parse records at `rec.off` of `u8` (headers only); `true_off`/`true_cap` are where
    the records really are in `buf` (payload offsets point there). UDP/ICMP/ESP datagrams
    go to `dgs` as (ts, IP header offset, L4 header offset, record end) in `buf`."""
    n = rec.off.shape[0]
    size = u8.shape[0]
    if true_off is None or true_cap is None:
        true_off, true_cap = rec.off, rec.cap
    # Pad reads: indices past the end of a record are clipped to the buffer; a `valid`
    # mask tracks whether the headers really fit inside the captured bytes.
    end = rec.off + rec.cap
    l3 = np.full(n, -1, np.int64)
    ethertype = np.zeros(n, np.int64)

    def safe(o: I64, need: int) -> npt.NDArray[np.bool_]:
        return (o >= 0) & (o + need <= end)

    def clip(o: I64) -> I64:
        return np.clip(o, 0, max(size - 8, 0))

    link = rec.link
    m = link == LINK_ETHERNET
    if m.any():
        o = rec.off[m]
        e = end[m]
        et = _be16(u8, clip(o + 12))
        pos = o + 14
        for _ in range(2):  # up to two VLAN tags (802.1Q, 802.1ad/QinQ)
            tagged = ((et == 0x8100) | (et == 0x88A8) | (et == 0x9100)) & (pos + 4 <= e)
            et = np.where(tagged, _be16(u8, clip(pos + 2)), et)
            pos = np.where(tagged, pos + 4, pos)
        ok = o + 14 <= e
        l3[m] = np.where(ok, pos, -1)
        ethertype[m] = et
    m = link == LINK_SLL
    if m.any():
        o = rec.off[m]
        l3[m] = np.where(o + 16 <= end[m], o + 16, -1)
        ethertype[m] = _be16(u8, clip(o + 14))
    m = link == LINK_SLL2
    if m.any():
        o = rec.off[m]
        l3[m] = np.where(o + 20 <= end[m], o + 20, -1)
        ethertype[m] = _be16(u8, clip(o))
    m = np.isin(link, (*LINK_RAW, LINK_IPV4, LINK_IPV6))
    if m.any():
        o = rec.off[m]
        l3[m] = np.where(o + 1 <= end[m], o, -1)
        ver = u8[clip(o)] >> 4
        ethertype[m] = np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, 0))
    m = (link == LINK_NULL) | (link == LINK_LOOP)
    if m.any():
        o = rec.off[m]
        fam_le = u8[clip(o)].astype(np.int64)
        fam_be = u8[clip(o + 3)].astype(np.int64)
        fam = np.where(fam_le != 0, fam_le, fam_be)
        l3[m] = np.where(o + 4 <= end[m], o + 4, -1)
        ethertype[m] = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (24, 28, 30)), 0x86DD, 0))

    is4 = (ethertype == 0x0800) & (l3 >= 0)
    is6 = (ethertype == 0x86DD) & (l3 >= 0)
    is4 &= safe(l3, 20)
    is6 &= safe(l3, 40)
    l3c = clip(l3)
    ver = u8[l3c] >> 4
    is4 &= ver == 4
    is6 &= ver == 6

    ihl = (u8[l3c] & 0x0F).astype(np.int64) * 4
    proto4 = u8[clip(l3 + 9)]
    frag = _be16(u8, clip(l3 + 6)) & 0x1FFF
    tcp4 = is4 & (proto4 == 6) & (frag == 0) & (ihl >= 20)
    # IPv6: TCP directly, or after hop-by-hop (0), routing (43), destination options (60)
    nh = u8[clip(l3 + 6)].astype(np.int64)
    l4_6 = l3 + 40
    for _ in range(3):
        ext = is6 & np.isin(nh, (0, 43, 60)) & safe(l4_6, 8)
        nxt = u8[clip(l4_6)].astype(np.int64)
        ln = (u8[clip(l4_6 + 1)].astype(np.int64) + 1) * 8
        nh = np.where(ext, nxt, nh)
        l4_6 = np.where(ext, l4_6 + ln, l4_6)
    tcp6 = is6 & (nh == 6)
    if dgs is not None:
        d4 = is4 & np.isin(proto4, (1, 17, 50)) & (frag == 0) & (ihl >= 20)
        d6 = is6 & np.isin(nh, (17, 58, 50))
        di = np.nonzero(d4 | d6)[0]
        if di.shape[0]:
            sh = true_off[di] - rec.off[di]
            dl4 = np.where(d4[di], l3[di] + ihl[di], l4_6[di])
            dgs.append((rec.ts[di], l3[di] + sh, dl4 + sh, true_off[di] + true_cap[di]))
    l4 = np.where(tcp4, l3 + ihl, np.where(tcp6, l4_6, -1))
    tcp = (tcp4 | tcp6) & safe(l4, 20)
    doff = (u8[clip(l4 + 12)] >> 4).astype(np.int64) * 4
    tcp &= doff >= 20
    # keep only TCP from here
    idx = np.nonzero(tcp)[0]
    l3 = l3[idx]
    l4 = l4[idx]
    doff = doff[idx]
    v4 = tcp4[idx]
    ts = rec.ts[idx]
    endk = end[idx]
    shift = true_off[idx] - rec.off[idx]  # compact block -> file offset
    true_end = true_off[idx] + true_cap[idx]
    k = idx.shape[0]
    l3c = clip(l3)
    l4c = clip(l4)

    src = np.zeros((k, 2), np.uint64)
    dst = np.zeros((k, 2), np.uint64)
    if k:
        src[:, 1] = np.where(
            v4, _be32(u8, clip(l3 + 12)).astype(np.uint64), _be64(u8, clip(l3 + 16))
        )
        src[:, 0] = np.where(v4, np.uint64(0), _be64(u8, clip(l3 + 8)))
        dst[:, 1] = np.where(
            v4, _be32(u8, clip(l3 + 16)).astype(np.uint64), _be64(u8, clip(l3 + 32))
        )
        dst[:, 0] = np.where(v4, np.uint64(0), _be64(u8, clip(l3 + 24)))
    totlen4 = _be16(u8, clip(l3 + 2))
    pl6 = _be16(u8, clip(l3 + 4))
    ip_end = np.where(v4, l3 + totlen4, l3 + 40 + pl6)
    # TSO/GSO captures on the sender may carry a zero total length: trust the capture then
    ip_end = ip_end + shift
    ip_end = np.where((v4 & (totlen4 == 0)) | (~v4 & (pl6 == 0)), true_end, ip_end)
    pl_off = l4 + doff + shift
    plen = np.maximum(ip_end - pl_off, 0)
    pl_cap = np.clip(np.minimum(ip_end, true_end) - pl_off, 0, None)
    ipid = np.where(v4, _be16(u8, clip(l3 + 4)), -1)
    ttl = np.where(v4, u8[clip(l3 + 8)].astype(np.int64), u8[clip(l3 + 7)].astype(np.int64))
    tos6 = ((_be16(u8, l3c) >> 4) & 0xFF).astype(np.int64)
    tos = np.where(v4, u8[clip(l3 + 1)].astype(np.int64), tos6)

    sport = _be16(u8, l4c)
    dport = _be16(u8, clip(l4 + 2))
    seq = _be32(u8, clip(l4 + 4))
    ack = _be32(u8, clip(l4 + 8))
    flags = u8[clip(l4 + 13)].astype(np.int64)
    win = _be16(u8, clip(l4 + 14))

    tsval = np.full(k, -1, np.int64)
    tsecr = np.full(k, -1, np.int64)
    mss = np.full(k, -1, np.int64)
    wscale = np.full(k, -1, np.int64)
    opt_off = l4 + 20
    opt_end = np.minimum(l4 + doff, endk)
    pos = opt_off.copy()
    active = pos < opt_end
    for _ in range(40):
        if not active.any():
            break
        pc = clip(pos)
        kind = u8[pc].astype(np.int64)
        active &= kind != 0
        nop = active & (kind == 1)
        olen = u8[clip(pos + 1)].astype(np.int64)
        opt = active & ~nop
        bad = opt & ((olen < 2) | (pos + olen > opt_end))
        opt &= ~bad
        m = opt & (kind == 8) & (olen == 10)
        if m.any():
            tsval[m] = _be32(u8, clip(pos[m] + 2))
            tsecr[m] = _be32(u8, clip(pos[m] + 6))
        m = opt & (kind == 2) & (olen == 4)
        if m.any():
            mss[m] = _be16(u8, clip(pos[m] + 2))
        m = opt & (kind == 3) & (olen == 3)
        if m.any():
            wscale[m] = u8[clip(pos[m] + 2)]
        pos = np.where(nop, pos + 1, np.where(opt, pos + olen, pos))
        active &= ~bad
        active &= pos < opt_end

    return PacketTable(
        path=path,
        buf=buf,
        records=int(n),
        ts=ts,
        v=np.where(v4, 4, 6).astype(np.uint8),
        src_hi=src[:, 0].copy(),
        src_lo=src[:, 1].copy(),
        dst_hi=dst[:, 0].copy(),
        dst_lo=dst[:, 1].copy(),
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        win=win,
        ipid=ipid,
        ttl=ttl,
        tos=tos,
        plen=plen,
        pl_off=pl_off,
        pl_cap=pl_cap,
        tsval=tsval,
        tsecr=tsecr.astype(np.uint32),
        mss=mss,
        wscale=wscale,
        opt_back=(l4 + doff) - opt_off,
        opt_len=np.maximum(opt_end - opt_off, 0),
        warnings=list(rec.warnings),
        kernel_drops=rec.kernel_drops,
    )


@functools.lru_cache(maxsize=1 << 16)
def addr_str(v: int, hi: int, lo: int) -> str:
    import ipaddress

    if v == 4:
        return str(ipaddress.IPv4Address(lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


def endpoint_str(v: int, hi: int, lo: int, port: int) -> str:
    a = addr_str(v, hi, lo)
    return f"[{a}]:{port}" if v == 6 else f"{a}:{port}"
