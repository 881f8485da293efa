"""Streaming capture reader: classic pcap and pcapng into columnar numpy arrays.

The file is memory-mapped; the record walk (hopcap.capfile.walk, or its C twin for
classic pcap) gives (data offset, caplen, timestamp, link type) per record, the layered
decoder (hopcap.capfile.layers, or its C twin) finds each record's innermost IP header,
then every header field is gathered with vectorised numpy indexing. Payloads are never
copied: `pl_off`/`pl_cap` point into the mapped file.

What is read (formats, link types, tunnels) is what hopcap.capfile reads. Tunnels are
decapsulated: the columns are the innermost packet's, `tun` says which tunnel it came out
of. A packet's payload ends where its IP length (and every outer one) says, never at the
caplen: padding and trailers are not payload.
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

from hopcap import npsets
from hopcap.capfile import layers as _layers
from hopcap.capfile import walk as _walk
from hopcap.capfile.layers import L3, SUPPORTED_LINKS
from hopcap.capfile.walk import MAX_RECORD, PCAP_MAGICS, CaptureFileError, Records, record_warning
from hopcap.errors import CorrelationError

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
# the names these had here before they moved to hopcap.capfile (the engine, dgram, tests)
_L3 = L3
_be16, _be32, _be64 = _layers.be16, _layers.be32, _layers.be64
link_name = _layers.link_name
tunnel_str = _layers.tunnel_str
TUNNEL_KINDS = _layers.TUNNEL_KINDS


def unreadable(t: PacketTable) -> str | None:
    """Why nothing of a capture could be read, when it is its link type or a file without
    even a capture's header; else None."""
    return unreadable_of(len(t), t.records, t.link_types, len(t.buf))


def unreadable_of(
    tcp_rows: int, records: int, link_types: dict[int, int], size: int | None = None
) -> str | None:
    if size is not None and size < 24 and not records:
        # not a capture that saw nothing (that has its header): one never written (a
        # tcpdump killed before it flushed, a copy that failed)
        what = "an empty file" if not size else f"{size} bytes, less than a capture's header"
        return f"{what}: the capture was never written"
    bad = sorted(lk for lk in link_types if lk not in SUPPORTED_LINKS)
    if tcp_rows or not records or not bad or len(bad) != len(link_types):
        return None
    kinds = ", ".join(link_name(lk) for lk in bad)
    return f"link type {kinds} is not supported, {records} packets unread"


def captured_tcp(t: PacketTable) -> int:
    """TCP packets of a table's whole capture (a time slice's table holds fewer)."""
    return len(t) if t.tcp_rows is None else t.tcp_rows


def captured_first(t: PacketTable) -> int | None:
    """The first TCP packet of a table's whole capture (its own clock), None: none."""
    if t.first_ns is not None:
        return t.first_ns
    return int(t.ts.min()) if len(t) else None


def captured_dgrams(t: PacketTable) -> int:
    """Datagrams (UDP, ICMP, ESP) of a table's whole capture."""
    if t.dgram_rows is not None:
        return t.dgram_rows
    return len(t.dgram) if t.dgram is not None else 0


def captured_proto(t: PacketTable, proto: int) -> bool:
    """Whether a table's whole capture holds flow datagrams (not ICMP errors) of `proto`."""
    if t.dgram_protos is not None:
        return proto in t.dgram_protos
    d = t.dgram
    if d is None:
        return False
    if d.flow_protos is None:
        # (once: asked of every flow that ends at the point before, each a pass over all
        # the rows: 1,000 lost DNS queries through a NAT cost 0.3 s)
        d.flow_protos = frozenset(npsets.unique(d.proto[d.role == 0]).tolist())
    return proto in d.flow_protos


def last_ts(t: Any) -> int:
    """The last packet of a (TCP or datagram) table's capture, on its own clock."""
    end = getattr(t, "last_ns", None)
    return int(t.ts.max()) if end is None else int(end)


def rows_last_ts(ts: npt.NDArray[np.int64], rows: list[int], offset_ns: int) -> float | None:
    """`Finding.last_ts` of the packets `rows` of a table whose capture times are `ts`: its
    last packet's time (seconds, on the first point's clock), None when all are one."""
    if len(rows) < 2:
        return None
    x = ts[rows]
    t1 = int(x.max())
    return (t1 - offset_ns) / 1_000_000_000 if t1 > int(x.min()) else None


def captured_last(t: Any) -> int | None:
    """`last_ts`, None when the capture has no such packet."""
    if getattr(t, "last_ns", None) is None and not len(t):
        return None
    return last_ts(t)


FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128
# `mss` of a packet whose TCP options the capture cut (its snap length, `tcpdump -s 54`)
# before an MSS option was seen: whether it had one is not known (-1: it had none)
MSS_UNKNOWN = -2


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
    mss: I64  # -1: no MSS option; MSS_UNKNOWN: the options were not captured whole
    opt_back: npt.NDArray[np.int16]  # the TCP options start this many bytes before pl_off
    opt_len: npt.NDArray[np.int16]  # (opt_back itself while every row's were captured whole)
    tun: I64  # the tunnel the packet was decapsulated from (see TUNNEL_KINDS); 0: none
    warnings: list[str] = field(default_factory=list)
    kernel_drops: int | None = None
    link_types: dict[int, int] = field(default_factory=dict)  # link type -> records
    # the UDP, ICMP and ESP datagrams of the same capture (hopcap.correlate.dgram)
    dgram: Any = None
    # when the table holds a time slice of the capture (hopcap.correlate.slices): the
    # capture's last TCP packet (its own clock), which `ts` of a slice may not hold
    last_ns: int | None = None
    tcp_rows: int | None = None  # and its TCP packets (`captured_tcp`)
    first_ns: int | None = None  # its first TCP packet (`captured_first`)
    # its datagrams (`captured_dgrams`) and the protocols of its flow datagrams
    # (`captured_proto`): a slice's `dgram` may hold none of them
    dgram_rows: int | None = None
    dgram_protos: frozenset[int] | None = None

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
        return _walk.open_capture(path)
    except CaptureFileError as e:
        raise CorrelationError(e.message, hint=e.hint) from None


def _fast_pcap(buf: Any, pos: int, be: bool, mult: int, maxrec: int, maxn: int) -> Any:
    from hopcap.correlate import _fastwalk

    return _fastwalk.walk_pcap(buf, pos, be, mult, maxrec, maxn)


def _fast_pcapng(
    buf: Any, pos: int, be: bool, maxrec: int, ifaces: list[tuple[int, int, int, int, int]], n: int
) -> Any:
    from hopcap.correlate import _fastwalk

    return _fastwalk.walk_pcapng(buf, pos, be, maxrec, ifaces, n)


def walk_records(path: Path, buf: Any) -> Records:
    """Every record of a mapped capture (hopcap.capfile's walk, the C loop for classic
    pcap when there is a compiler)."""
    try:
        return _walk.walk_records(path, buf, _fast_pcap)
    except CaptureFileError as e:
        raise CorrelationError(e.message, hint=e.hint) from None


# --------------------------------------------------------------------------- field gather


HEAD = 256  # header bytes of a record parsed: link, tags, tunnels, IPv6 + extensions, TCP options
# records per chunk of the other formats (pcapng): each chunk's headers are parsed into 24
# int64 columns this many rows apart (fresh memory each chunk, and never a power of two:
# see PARSE_CHUNK); 64 k rows read a 400 MB pcapng 25 % faster than 256 k
CHUNK = (1 << 16) + 24
# records per call of the chunked C parser (`_fastwalk.walk_parse_pcap`, the time slices'
# reader): its column buffer (24 int64 columns) is reused for every chunk, and at ~32 k rows
# (6.5 MB) it stays in the caches between the C loop that writes it and the numpy copies
# that read it; 256 k rows (51 MB) made reading a 1.6 M-packet pair ~15 % slower. The
# columns are this many rows apart: never a power of two, or row j of all 24 falls in one
# cache set and they evict each other (1 << 15 parsed a 390 MB capture 3x slower)
PARSE_CHUNK = (1 << 15) + 24

# what the C reader (`_read_pcap`) writes, in its order; TSecr and the window scale are
# parsed but not kept (nothing reads them: 6 bytes a packet of memory, and its page faults)
_C_OUT = ("ts", "v", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq", "ack",
          "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap", "tsval", "tsecr",
          "mss", "wscale", "opt_back", "opt_len", "tun")  # fmt: skip
_UNKEPT = ("tsecr", "wscale")
_COLUMNS = tuple(c for c in _C_OUT if c not in _UNKEPT)  # a PacketTable's columns


# columns that never need 64 bits; sequence numbers, timestamps and offsets keep int64 so
# that arithmetic with Python ints cannot wrap
_NARROW: dict[str, type] = {
    "sport": np.int32, "dport": np.int32, "win": np.int32, "ipid": np.int32, "plen": np.int32,
    "pl_cap": np.int32, "mss": np.int32, "flags": np.int16, "ttl": np.int16, "tos": np.int16,
    "opt_len": np.int16, "opt_back": np.int16,
}  # fmt: skip
# columns that usually hold one value (or another column's): the high address words and
# the tunnel (0 in an IPv4 capture without tunnels), the IP version (4), the captured
# payload and options lengths (plen and opt_back: the whole packet was captured). Such a
# column takes no memory: a broadcast value, or the other column itself (C code that
# reads columns by pointer gets the other column, contiguous and of the same type)
_USUAL = {"src_hi": 0, "dst_hi": 0, "tun": 0, "v": 4}
_SAME = {"pl_cap": "plen", "opt_len": "opt_back"}  # (after it in _COLUMNS)
_LAZY = (*_USUAL, *_SAME)


def row_columns(t: PacketTable, m: Any) -> dict[str, Any]:
    """The packet columns of `t` at the rows `m` (a mask or indices)."""
    return {c: np.asarray(getattr(t, c))[m] for c in _COLUMNS}


def read_capture(path: Path, *, exact_copies: bool = True) -> PacketTable:
    """Read one capture file into a PacketTable (TCP over IPv4/IPv6 only), its exact copies
    removed (`copies`; `exact_copies` False: kept, for a reader that splits the file
    first and removes them from each part).

    The headers of each record (its first HEAD bytes) are copied into a small contiguous
    block, a chunk of records at a time, and parsed there: random access into a large
    mapped file costs a cache and TLB miss per field, a packed block does not."""
    from hopcap.correlate._fastwalk import gather_heads, parse_records

    buf = _open(path)
    magic = bytes(buf[:4])
    if magic in PCAP_MAGICS and len(buf) >= 24:
        endian, mult = PCAP_MAGICS[magic]
        _snaplen, link = struct.unpack_from(endian + "II", buf, 16)
        dgs: list[tuple[I64, ...]] = []
        got = _read_pcap(path, buf, endian == ">", mult, link & 0x0FFFFFFF, dgs)
        if got is not None:
            return _forwarded(_finish(path, buf, got, dgs), exact_copies)
    try:
        walk = _walk.RecordWalk(path, buf, _fast_pcap, _fast_pcapng)
    except CaptureFileError as e:
        raise CorrelationError(e.message, hint=e.hint) from None
    parts: list[PacketTable] = []
    dgs = []
    links: dict[int, int] = {}
    for rec in walk.chunks(CHUNK):
        off, cap = rec.off, rec.cap
        for lk, k in zip(
            *(x.tolist() for x in np.unique(rec.link, return_counts=True)), strict=True
        ):
            links[lk] = links.get(lk, 0) + k
        fast = parse_records(buf, off, cap, rec.link, HEAD)
        if fast is not None:
            rows, cols, (ri, l3, l4, dend) = fast
            dgs.append((rec.ts[ri], l3, l4, dend))
            parts.append(_narrow(_from_columns(path, buf, rec.ts, rows, cols)))
            continue
        heads = gather_heads(buf, off, cap, HEAD)
        k = len(rec)
        sub = Records(
            off=np.arange(k, dtype=np.int64) * HEAD,
            cap=np.minimum(cap, HEAD),
            ts=rec.ts,
            link=rec.link,
            orig=rec.orig,
            iface=rec.iface,
        )
        parts.append(_parse(path, buf, heads.reshape(-1), sub, off, cap, dgs))
    got = (parts, walk.records, list(walk.warnings), walk.kernel_drops, links)
    return _forwarded(_finish(path, buf, got, dgs), exact_copies)


# the first TCP packets of a capture looked at by `forwarded_twice`
TWICE_ROWS = 1 << 12  # (~0.6 ms)
_TWICE_COLUMNS = ("seq", "ack", "flags", "plen", "ipid", "tsval", "ttl", "ts")


def _forwarded(t: PacketTable, exact_copies: bool = True) -> PacketTable:
    """The exact copies of a whole capture removed (`copies`: a mirror port, a bridge in
    `-i any`) and said, then the warning about packets forwarded twice."""
    from hopcap.correlate.copies import remove_copies

    if exact_copies:
        remove_copies(t)
    w = forwarded_twice(t.path.name, {c: getattr(t, c)[:TWICE_ROWS] for c in _TWICE_COLUMNS})
    if w is not None:
        t.warnings.append(w)
    return t


def forwarded_twice(name: str, cols: dict[str, Any]) -> str | None:
    """The warning for a capture that holds the same packets twice, the second time with a
    lower TTL: the host that captured them forwarded them, and the file holds both of its
    sides (`tcpdump -i any` on a router or a firewall, a pcapng of two interfaces, a trunk
    port that carries a packet in and out). As one point, what that host did in between
    reads as drops and injections around it (a healthy path: every SYN dropped after the
    point, and injected before it). The same segment, acknowledgement, flags, length, IP
    ID and TSval (addresses and ports left out: a NAT rewrote them) within a second; a
    retransmission keeps its TTL. (The very same packet again, TTL and all, is an exact
    copy: `copies` removed it before.)

    `cols`: `_TWICE_COLUMNS` of the first TWICE_ROWS TCP packets (the reader's and the
    time slices' scan give the same)."""
    n = int(cols["ts"].shape[0])
    if n < 8:
        return None
    names = ("ts", "tsval", "ipid", "plen", "flags", "ack", "seq")
    keys = [np.asarray(cols[c], np.int64) for c in names]
    o = np.lexsort(keys)
    k = [x[o] for x in keys]
    same = np.ones(n - 1, np.bool_)
    for x in k[1:]:
        same &= x[1:] == x[:-1]
    dt = k[0][1:] - k[0][:-1]
    ttl = np.asarray(cols["ttl"], np.int64)[o]
    routed = int((same & (ttl[1:] != ttl[:-1]) & (dt < 1_000_000_000)).sum())
    if routed >= 4 and routed * 10 >= n:
        return (
            f"{name}: {routed} of its first {n} TCP packets were captured twice, the second "
            "time with a lower TTL: the host that captured them forwarded them, and the file "
            "holds both of its sides (`tcpdump -i any`, or one file of several interfaces); as "
            "one point, what that host did in between reads as drops and injections: capture "
            "each interface as a point of its own (tcpdump -i eth0), or split the file by "
            "interface (tshark -Y 'sll.ifindex == N', or 'frame.interface_name == \"eth0\"' "
            "for a pcapng)"
        )
    return None


def _narrow(t: PacketTable) -> PacketTable:
    """Own, compact columns (chunk buffers of the parser are released); the columns of
    `_LAZY` that hold their usual value take no memory (`_usual`)."""
    for c in _COLUMNS:
        a = getattr(t, c)
        if a.strides == (0,) or (c in _SAME and a is getattr(t, _SAME[c])):
            continue  # already no memory of its own
        dt = _dtype(c)
        if c in _LAZY and (a == (getattr(t, _SAME[c]) if c in _SAME else _USUAL[c])).all():
            setattr(t, c, _usual(c, a.shape[0], vars(t)))
        elif a.dtype != dt:
            setattr(t, c, a.astype(dt))
        elif a.base is not None:
            setattr(t, c, a.copy())
    return t


def _usual(c: str, n: int, cols: dict[str, Any]) -> Any:
    """Column `c` (of `_LAZY`) of `n` rows that all hold its usual value, taking no memory:
    a broadcast value, or the column of `cols` it equals (`_SAME`) itself."""
    if c in _SAME:
        return cols[_SAME[c]]
    return np.broadcast_to(_dtype(c).type(_USUAL[c]), (n,))


_Got = tuple[list["PacketTable"], int, list[str], int | None, dict[int, int]]


# rows of the columns before they first grow (tests make it small): enough to tell how
# many the file holds (they are copied once into columns of that size: `_grown`)
FIRST_ROWS = 1 << 16
_WORDS = ("src_hi", "src_lo", "dst_hi", "dst_lo")  # address words: uint64


def _dtype(c: str) -> np.dtype[Any]:
    return np.dtype(
        _NARROW.get(c) or (np.uint8 if c == "v" else np.uint64 if c in _WORDS else np.int64)
    )


_DG_ROWS = 1 << 16  # datagram rows before they first grow


def _grown(a: npt.NDArray[Any], n: int, rows: int) -> npt.NDArray[Any]:
    """A column of `rows` rows with the first `n` of `a`. Not `a.resize(rows)`: that
    zero-fills the new rows with the interpreter lock held (~0.1 s a 3 M-packet capture,
    while another point is read in a thread); here the copy runs without it, and the new
    rows' pages are mapped in at once (also without it) for the C walk to fill."""
    b = _walk.mapped_in(np.empty(rows, a.dtype))
    b[:n] = a[:n]
    return b


def _read_pcap(
    path: Path, buf: Any, big: bool, mult: int, link: int, dgs: list[tuple[I64, ...]]
) -> _Got | None:
    """Classic pcap parsed by one C pass straight into the table's own (narrow) columns
    (None without a compiler). The columns start at FIRST_ROWS rows (at most what the file
    can hold) and grow, when full, to what the rest of the file will likely need; the
    columns of `_LAZY` are given only when a row needs them (no memory for an IPv4
    capture without tunnels whose TCP headers were captured whole), those of `_UNKEPT`
    never. Cut to length at the end (realloc: large blocks are remapped, not copied)."""
    from hopcap.correlate._fastwalk import available, read_pcap

    if not available():
        return None
    size = len(buf)
    most = (size - 24) // 56 + 1  # 56: the smallest record with TCP
    rows = min(FIRST_ROWS, most)
    out: dict[str, Any] = {
        c: None if c in _LAZY or c in _UNKEPT else np.empty(rows, _dtype(c)) for c in _C_OUT
    }
    dg = [np.empty(min(_DG_ROWS, (size - 24) // 44 + 1), np.int64) for _ in range(4)]
    state = np.array([24, 0, 0, 0, 0], np.int64)  # pos, records, rows, datagrams, why
    while True:
        read_pcap(buf, (big, mult, MAX_RECORD, link, HEAD), list(out.values()), rows, dg, state)
        pos, nrec, n, k, why = state.tolist()
        if why == 4:  # a row whose lazy columns hold other values: give them, rows so far
            for c in _LAZY:  # hold the usual ones
                out[c] = np.zeros(rows, _dtype(c))  # (calloc: pages left untouched)
                out[c][:n] = _usual(c, n, out)[:n]
        elif why == 3:
            # the rows (or datagrams) the whole file likely holds, at the rate so far
            scale = (size - 24) / max(pos - 24, 1)
            if n >= rows:
                rows = min(most, max(int(n * scale * 1.05) + 1024, rows + rows // 2))
                out = {c: None if a is None else _grown(a, n, rows) for c, a in out.items()}
            if k >= dg[0].shape[0]:
                more = max(int(k * scale * 1.05) + 1024, 2 * k)
                dg = [_grown(a, k, more) for a in dg]
        else:
            break
    for c in _UNKEPT:
        del out[c]
    for a in out.values():
        if a is not None:
            a.resize(n, refcheck=False)
    for c in _LAZY:
        if out[c] is None:
            out[c] = _usual(c, n, out)
    for a in dg:
        a.resize(k, refcheck=False)
    if k:
        dgs.append(tuple(dg))
    warnings: list[str] = []
    w = record_warning(path.name, why, pos, nrec, buf)
    if w:
        warnings.append(w)
    t = PacketTable(path=path, buf=buf, records=0, **out)
    return [_narrow(t)], nrec, warnings, None, {link: nrec} if nrec else {}


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
    if len(dgs) == 1:
        cat = list(dgs[0])
    else:
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

    l3, et, l4, proto, lim, tun = L3(u8).find(rec.off, end, rec.off + true_cap, rec.link)
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
            dg[ru] &= ~L3(u8).decap(l4[ru], proto[ru], et[ru], end[ru])[0]
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
    mss = np.full(k, -1, np.int64)
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
        m = opt & (kind == 2) & (olen == 4)
        if m.any():
            mss[m] = _be16(u8, clip(pos[m] + 2))
        pos = np.where(nop, pos + 1, np.where(opt, pos + olen, pos))
        active &= ~bad
        active &= pos < opt_end
    # options cut by the snap length before an MSS was seen: not known (`MSS_UNKNOWN`)
    mss[(mss < 0) & (l4 + doff > endk)] = MSS_UNKNOWN

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
        mss=mss,
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


def endpoint_strs(v: list[int], ends: list[tuple[int, int, int]]) -> list[str]:
    """`endpoint_str` of every (IP version, (address hi, lo, port)), at ~0.8 us each."""
    if 6 in v:
        return [endpoint_str(x, *e) for x, e in zip(v, ends, strict=True)]
    a = addr_str
    return [f"{a(4, hi, lo)}:{pt}" for hi, lo, pt in ends]
