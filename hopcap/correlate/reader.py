"""Streaming capture reader: classic pcap and pcapng into columnar numpy arrays.

The file is memory-mapped; a record walk collects (data offset, caplen, timestamp, link
type) per record, then every header field is gathered with vectorised numpy indexing.
Payloads are never copied: `pl_off`/`pl_cap` point into the mapped file.

Supported: pcap (both byte orders, micro- and nanosecond), pcapng (SHB/IDB/EPB/SPB/obsolete
PB, per-interface `if_tsresol`/`if_tsoffset`, several interfaces and sections); link types
Ethernet (1; 802.1Q/802.1ad/0x9100 tags up to 16 deep, PPPoE sessions, MPLS label stacks),
PPP (9) and PPP in HDLC framing (50), Cisco HDLC (104), Linux cooked v1 (113) and v2 (276),
raw IP (101, 12, 14, 228, 229), BSD loopback (0, 108); IPv4 and IPv6 (TCP after the fixed
header or after hop-by-hop/routing/destination-options headers). Tunnels are
decapsulated (GRE, IP-in-IP, VXLAN, GENEVE; up to three levels): the columns are the
innermost packet's, `tun` says which tunnel it came out of. A packet's payload ends where
its IP length (and every outer one) says, never at the caplen: padding and trailers are
not payload.
UDP, ICMP/ICMPv6 and ESP records (also inside those tunnels) are not parsed here: both
walks hand where their innermost IP and L4 headers are, and where their data ends, to
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
LINK_PPP = 9
LINK_PPP_HDLC = 50
LINK_CHDLC = 104
LINK_NAMES = {
    0: "BSD loopback", 1: "Ethernet", 9: "PPP", 12: "raw IP", 14: "raw IP", 50: "PPP in HDLC",
    101: "raw IP", 104: "Cisco HDLC", 105: "IEEE 802.11", 108: "OpenBSD loopback",
    113: "Linux cooked", 119: "802.11 Prism", 127: "802.11 radiotap", 195: "IEEE 802.15.4",
    228: "raw IPv4", 229: "raw IPv6", 239: "Linux NFLOG", 276: "Linux cooked v2",
}  # fmt: skip
SUPPORTED_LINKS = {LINK_ETHERNET, LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6, LINK_NULL, LINK_LOOP,
                   LINK_PPP, LINK_PPP_HDLC, LINK_CHDLC, *LINK_RAW}  # fmt: skip

# the `tun` column: 0, or kind | 16 (the tunnel has an id: GRE key, VNI) | id << 8
TUNNEL_KINDS = {1: "gre", 2: "ipip", 3: "ipip 6in4", 4: "ipip 4in6", 5: "ipip 6in6",
                6: "vxlan", 7: "geneve"}  # fmt: skip


def link_name(link: int) -> str:
    """`9 (PPP)`: a link type as a message names it."""
    name = LINK_NAMES.get(link)
    return f"{link} ({name})" if name else str(link)


def unreadable(t: PacketTable) -> str | None:
    """Why nothing of a capture could be read, when it is its link type; else None."""
    bad = sorted(lk for lk in t.link_types if lk not in SUPPORTED_LINKS)
    if len(t) or not t.records or not bad or len(bad) != len(t.link_types):
        return None
    kinds = ", ".join(link_name(lk) for lk in bad)
    return f"link type {kinds} is not supported, {t.records} packets unread"


def tunnel_str(code: int) -> str:
    """A `tun` value as a leg detail: `vxlan vni 42`, `gre key 7`, `ipip`."""
    kind = TUNNEL_KINDS.get(code & 15, "tunnel")
    if not code & 16:
        return kind
    word = "key" if kind == "gre" else "vni"
    return f"{kind} {word} {code >> 8}"


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
    tun: I64  # the tunnel the packet was decapsulated from (see TUNNEL_KINDS); 0: none
    warnings: list[str] = field(default_factory=list)
    kernel_drops: int | None = None
    link_types: dict[int, int] = field(default_factory=dict)  # link type -> records
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


HEAD = 256  # header bytes of a record parsed: link, tags, tunnels, IPv6 + extensions, TCP options
CHUNK = 1 << 18

_COLUMNS = ("ts", "v", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq", "ack",
            "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap", "tsval", "tsecr",
            "mss", "wscale", "opt_back", "opt_len", "tun")  # fmt: skip


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
            return _finish(path, buf, _one_pass(path, buf, gen, link & 0x0FFFFFFF, dgs), dgs)
    rec = walk_records(path, buf)
    n = int(rec.off.shape[0])
    parts: list[PacketTable] = []
    dgs = []
    for s in range(0, max(n, 1), CHUNK):
        e = min(n, s + CHUNK)
        off, cap = rec.off[s:e], rec.cap[s:e]
        fast = parse_records(buf, off, cap, rec.link[s:e], HEAD)
        if fast is not None:
            rows, cols, (ri, l3, l4, dend) = fast
            dgs.append((rec.ts[s:e][ri], l3, l4, dend))
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
    lts, counts = np.unique(rec.link, return_counts=True)
    links = dict(zip(lts.tolist(), counts.tolist(), strict=True))
    return _finish(path, buf, (parts, n, list(rec.warnings), rec.kernel_drops, links), dgs)


def _narrow(t: PacketTable) -> PacketTable:
    """Own, compact columns (chunk buffers of the parser are released)."""
    for c in _COLUMNS:
        a = getattr(t, c)
        dt = _NARROW.get(c)
        if c in ("src_hi", "dst_hi", "tun") and not a.any():
            # IPv4 only, no tunnel: no memory
            zero = np.int64(0) if c == "tun" else np.uint64(0)
            setattr(t, c, np.broadcast_to(zero, a.shape))
        elif dt is not None and a.dtype != dt:
            setattr(t, c, a.astype(dt))
        elif a.base is not None:
            setattr(t, c, a.copy())
    return t


_Got = tuple[list["PacketTable"], int, list[str], int | None, dict[int, int]]


def _one_pass(path: Path, buf: Any, gen: Any, link: int, dgs: list[tuple[I64, ...]]) -> _Got:
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
    return parts, nrec, warnings, None, {link: nrec} if nrec else {}


def _finish(path: Path, buf: Any, got: _Got, dgs: list[tuple[I64, ...]]) -> PacketTable:
    from hopcap.correlate.dgram import parse_dgrams

    parts, n, warnings, kernel_drops, links = got
    bad = {lk: k for lk, k in links.items() if lk not in SUPPORTED_LINKS}
    if bad:
        what = ", ".join(link_name(lk) for lk in sorted(bad))
        warnings.append(
            f"{path.name}: link type {what} is not supported: "
            f"{sum(bad.values())} of {n} packets could not be read"
        )
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
    t.link_types = links
    z = np.zeros(0, np.int64)
    cat = [np.concatenate([d[i] for d in dgs]) if dgs else z for i in range(4)]
    t.dgram = parse_dgrams(path, buf, *cat)
    return t


_FAST_COLUMNS = ("v", "src_hi", "src_lo", "dst_hi", "dst_lo", *(c for c in ("sport", "dport",
                 "seq", "ack", "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap",
                 "tsval", "tsecr", "mss", "wscale", "opt_off", "opt_len", "tun")))  # fmt: skip


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


# ------------------------------------------------ link and network layer (numpy mirror)
# Where the innermost IP header of each record is: the same rules, in the same order, as
# find_l3() in _fastwalk's C source (a test compares both paths on every link type and
# tunnel). Reads past a record are harmless here (indices are clipped to the buffer and
# every value read is masked by the same bounds checks as in C).

_VLAN = (0x8100, 0x88A8, 0x9100)
_TUNNEL_PROTOS = (4, 41, 47, 17)


def _nib_et(b: I64) -> I64:
    v = b >> 4
    return np.where(v == 4, 0x0800, np.where(v == 6, 0x86DD, 0))


def _ppp_et(p: I64) -> I64:
    return np.select(
        [p == 0x21, p == 0x57, (p == 0x281) | (p == 0x283)], [0x0800, 0x86DD, 0x8847], 0
    )


class _L3:
    """Vectorised header walk over the bytes `u8` (records end at `end`)."""

    def __init__(self, u8: U8) -> None:
        self.u8 = u8
        self.top = max(u8.shape[0] - 8, 0)

    def b(self, o: I64) -> I64:
        return self.u8[np.clip(o, 0, self.top)].astype(np.int64)

    def b16(self, o: I64) -> I64:
        return _be16(self.u8, np.clip(o, 0, self.top))

    def b32(self, o: I64) -> I64:
        return _be32(self.u8, np.clip(o, 0, self.top))

    def link_hdr(self, off: I64, end: I64, link: I64) -> tuple[I64, I64]:
        """(offset of the network layer or -1, its ethertype) per record."""
        n = off.shape[0]
        pos = np.full(n, -1, np.int64)
        et = np.zeros(n, np.int64)
        hc = end - off

        def put(m: npt.NDArray[np.bool_], ok: Any, p: Any, e: Any) -> None:
            pos[m] = np.where(ok, p, -1)
            et[m] = e

        for lk, hl, eto in ((1, 14, 12), (113, 16, 14), (276, 20, 0), (104, 4, 2)):
            m = link == lk
            if m.any():
                put(m, hc[m] >= hl, off[m] + hl, self.b16(off[m] + eto))
        m = np.isin(link, (*LINK_RAW, LINK_IPV4, LINK_IPV6))
        if m.any():
            put(m, hc[m] >= 1, off[m], _nib_et(self.b(off[m])))
        m = (link == LINK_NULL) | (link == LINK_LOOP)
        if m.any():
            o = off[m]
            b0, b3 = self.b(o), self.b(o + 3)
            fam = np.where(b0 != 0, b0, b3)
            e = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (24, 28, 30)), 0x86DD, 0))
            put(m, hc[m] >= 4, o + 4, e)
        m = (link == LINK_PPP) | (link == LINK_PPP_HDLC)
        if m.any():
            o, h = off[m], hc[m]
            b0, b1 = self.b(o), self.b(o + 1)
            framed = (h >= 2) & (b0 == 0xFF) & (b1 == 0x03)
            cisco = (link[m] == LINK_PPP_HDLC) & ~framed & (h >= 4) & ((b0 == 0x0F) | (b0 == 0x8F))
            p = o + np.where(framed, 2, 0)
            bp = self.b(p)
            short = (bp & 1) == 1
            proto = np.where(short, bp, self.b16(p))
            ok = np.where(short, p + 1 <= o + h, p + 2 <= o + h)
            pe = np.where(short, p + 1, p + 2)
            put(m, cisco | ok, np.where(cisco, o + 4, pe),
                np.where(cisco, self.b16(o + 2), _ppp_et(proto)))  # fmt: skip
        return pos, et

    def l2_walk(self, pos: I64, et: I64, end: I64) -> tuple[I64, I64]:
        """VLAN tags (any depth), PPPoE session, then an MPLS label stack."""
        for _ in range(16):
            vlan = np.isin(et, _VLAN) & (pos + 4 <= end)
            pppoe = ~vlan & (et == 0x8864) & (pos + 8 <= end)
            if not (vlan.any() or pppoe.any()):
                break
            et = np.where(vlan, self.b16(pos + 2), np.where(pppoe, _ppp_et(self.b16(pos + 6)), et))
            pos = np.where(vlan, pos + 4, np.where(pppoe, pos + 8, pos))
        mpls = (et == 0x8847) | (et == 0x8848)
        if mpls.any():
            bos = np.zeros(pos.shape[0], bool)
            live = mpls.copy()
            for _ in range(8):
                live &= pos + 4 <= end
                if not live.any():
                    break
                b = live & ((self.b(pos + 2) & 1) == 1)
                pos = np.where(live, pos + 4, pos)
                bos |= b
                live &= ~b
            et = np.where(mpls, np.where(bos & (pos + 1 <= end), _nib_et(self.b(pos)), 0), et)
        return pos, et

    def ip_ok(self, l3: I64, et: I64, end: I64) -> npt.NDArray[np.bool_]:
        b = self.b(l3)
        v4 = (et == 0x0800) & (l3 + 20 <= end) & ((b >> 4) == 4) & ((b & 15) >= 5)
        v6 = (et == 0x86DD) & (l3 + 40 <= end) & ((b >> 4) == 6)
        ok: npt.NDArray[np.bool_] = (l3 >= 0) & (v4 | v6)
        return ok

    def ip_next(self, l3: I64, et: I64, end: I64) -> tuple[I64, I64]:
        """(offset of the header after IP, -1 for a later fragment; its protocol)."""
        v4 = et == 0x0800
        nh = self.b(l3 + 6)
        p = l3 + 40
        for _ in range(3):
            ext = ~v4 & np.isin(nh, (0, 43, 60)) & (p + 8 <= end)
            if not ext.any():
                break
            nh = np.where(ext, self.b(p), nh)
            p = np.where(ext, p + (self.b(p + 1) + 1) * 8, p)
        frag = (self.b16(l3 + 6) & 0x1FFF) != 0
        l4 = np.where(v4, np.where(frag, -1, l3 + (self.b(l3) & 15) * 4), p)
        return np.where(l3 >= 0, l4, -1), np.where(v4, self.b(l3 + 9), nh)

    def decap(
        self, l4: I64, proto: I64, oet: I64, end: I64
    ) -> tuple[npt.NDArray[np.bool_], I64, I64, I64]:
        """A tunnel header at l4: (decapsulated, inner network offset, its ethertype,
        the `tun` code)."""
        k = l4.shape[0]
        pos = np.full(k, -1, np.int64)
        et = np.zeros(k, np.int64)
        tun = np.zeros(k, np.int64)
        ipip = (proto == 4) | (proto == 41)
        pos[ipip] = l4[ipip]
        et[ipip] = np.where(proto[ipip] == 4, 0x0800, 0x86DD)
        tun[ipip] = np.where(oet[ipip] == 0x0800, 2, 4) + (proto[ipip] == 41)
        # GRE version 0, no routing: [checksum] [key] [sequence]
        fl, pt = self.b16(l4), self.b16(l4 + 2)
        gre = (proto == 47) & (l4 + 4 <= end) & ((fl & 0x4007) == 0)
        p = l4 + 4 + np.where(fl & 0x8000, 4, 0)
        key = (fl & 0x2000) != 0
        gre &= ~key | (p + 4 <= end)
        t_gre = np.where(key, 1 | 16 | (self.b32(p) << 8), 1)
        p_gre = p + np.where(key, 4, 0) + np.where(fl & 0x1000, 4, 0)
        # VXLAN (4789, 8472) and GENEVE (6081) over UDP
        udp = (proto == 17) & (l4 + 16 <= end)
        dport, b8 = self.b16(l4 + 2), self.b(l4 + 8)
        vni = self.b32(l4 + 12) >> 8
        vx = udp & ((dport == 4789) | (dport == 8472)) & ((b8 & 8) != 0) & (l4 + 30 <= end)
        gn = udp & (dport == 6081) & ((b8 >> 6) == 0)
        p_gn = l4 + 16 + (b8 & 0x3F) * 4
        start = np.where(gre, p_gre, np.where(vx, l4 + 16, p_gn))
        ptype = np.where(gre, pt, np.where(vx, 0x6558, self.b16(l4 + 10)))
        teb = ptype == 0x6558  # an Ethernet frame inside (gretap, VXLAN, GENEVE)
        m = (gre | vx | gn) & (~teb | (start + 14 <= end))
        ptype = np.where(teb, self.b16(start + 12), ptype)
        start = np.where(teb, start + 14, start)
        if m.any():
            pos[m], et[m] = self.l2_walk(start[m], ptype[m], end[m])
        vni_code = 16 | (vni << 8)
        tun = np.where(gre, t_gre, np.where(vx, 6 | vni_code, np.where(gn, 7 | vni_code, tun)))
        return ipip | m, pos, et, tun

    def find(
        self, off: I64, end: I64, cap_end: I64, link: I64
    ) -> tuple[I64, I64, I64, I64, I64, I64]:
        """Per record: (innermost IP header offset or -1, its ethertype, offset of the
        header after it or -1, that header's protocol, where the data ends: `cap_end` cut
        at every outer IP packet's end, the `tun` code)."""
        pos, et = self.link_hdr(off, end, link)
        pos, et = self.l2_walk(pos, et, end)
        l3 = np.where(self.ip_ok(pos, et, end), pos, -1)
        l4, proto = self.ip_next(l3, et, end)
        lim = cap_end.copy()
        tun = np.zeros(off.shape[0], np.int64)
        rows = np.nonzero((l4 >= 0) & np.isin(proto, _TUNNEL_PROTOS))[0]
        for _ in range(3):
            if not rows.shape[0]:
                break
            got, ipos, iet, t = self.decap(l4[rows], proto[rows], et[rows], end[rows])
            got &= self.ip_ok(ipos, iet, end[rows])
            g = rows[got]
            o3, oet = l3[g], et[g]
            ln = np.where(oet == 0x0800, self.b16(o3 + 2), self.b16(o3 + 4))
            iend = np.where(ln == 0, cap_end[g], o3 + ln + np.where(oet == 0x0800, 0, 40))
            lim[g] = np.minimum(lim[g], iend)
            tun[g] = np.where(tun[g] == 0, t[got], tun[g])
            l3[g], et[g] = ipos[got], iet[got]
            l4[g], proto[g] = self.ip_next(l3[g], et[g], end[g])
            rows = g[(l4[g] >= 0) & np.isin(proto[g], _TUNNEL_PROTOS)]
        return l3, et, l4, proto, lim, tun


def _find_l3(
    u8: U8, off: I64, end: I64, cap_end: I64, link: I64
) -> tuple[I64, I64, I64, I64, I64, I64]:
    return _L3(u8).find(off, end, cap_end, link)


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
    go to `dgs` as (ts, IP header offset, L4 header offset, end of its data) in `buf`."""
    n = rec.off.shape[0]
    size = u8.shape[0]
    if true_off is None or true_cap is None:
        true_off, true_cap = rec.off, rec.cap
    # Pad reads: indices past the end of a record are clipped to the buffer; a `valid`
    # mask tracks whether the headers really fit inside the captured bytes.
    end = rec.off + rec.cap

    def safe(o: I64, need: int) -> npt.NDArray[np.bool_]:
        return (o >= 0) & (o + need <= end)

    def clip(o: I64) -> I64:
        return np.clip(o, 0, max(size - 8, 0))

    l3, et, l4, proto, lim, tun = _find_l3(u8, rec.off, end, rec.off + true_cap, rec.link)
    v4all = et == 0x0800
    tcp = (l3 >= 0) & (l4 >= 0) & (proto == 6) & safe(l4, 20)
    if dgs is not None:
        # UDP, ICMP/ICMPv6, ESP at the innermost IP level (not a later fragment): for dgram
        ok = (l3 >= 0) & (l4 >= 0)
        dg = ok & ((proto == 17) | (proto == 50) | (proto == np.where(et == 0x0800, 1, 58)))
        # a VXLAN/GENEVE datagram whose content is no IP packet (the overlay's ARP) is
        # tunnel transport, not a flow of its own
        ru = np.nonzero(dg & (proto == 17))[0]
        if ru.shape[0]:
            dg[ru] &= ~_L3(u8).decap(l4[ru], proto[ru], et[ru], end[ru])[0]
        di = np.nonzero(dg)[0]
        if di.shape[0]:
            sh = true_off[di] - rec.off[di]
            dgs.append((rec.ts[di], l3[di] + sh, l4[di] + sh, lim[di] + sh))
    doff = (u8[clip(l4 + 12)] >> 4).astype(np.int64) * 4
    tcp &= doff >= 20
    # keep only TCP from here
    idx = np.nonzero(tcp)[0]
    l3 = l3[idx]
    l4 = l4[idx]
    doff = doff[idx]
    v4 = v4all[idx]
    ts = rec.ts[idx]
    endk = end[idx]
    shift = true_off[idx] - rec.off[idx]  # compact block -> file offset
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
    # bytes after the IP packet (Ethernet padding, vendor trailers, the rest of an outer
    # packet) are never payload: `lim` is the caplen cut at every outer IP packet's end
    ip_end = ip_end + shift
    lim_t = lim[idx] + shift
    ip_end = np.where((v4 & (totlen4 == 0)) | (~v4 & (pl6 == 0)), lim_t, ip_end)
    pl_off = l4 + doff + shift
    plen = np.maximum(ip_end - pl_off, 0)
    pl_cap = np.clip(np.minimum(ip_end, lim_t) - pl_off, 0, None)
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
        tun=tun[idx],
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
