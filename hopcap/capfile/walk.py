"""The record walk: where every packet record of a classic pcap or pcapng file is.

One walk for every consumer (the columnar reader, the bundle's merge and anonymiser, the
ring concatenation). It yields the records as columns (data offset, captured and original
length, timestamp in nanoseconds, link type, interface), a chunk of at most `chunk` records
at a time, so that a consumer holds one chunk of a big file, not the whole file's columns.

Damage is treated one way: the walk reads up to the damage, stops there and warns with
the byte offset and the number of packets read before it (a file cut short by a killed
tcpdump, a corrupt record header, a broken pcapng block). Only a file that is no capture
at all (another magic number) is an error (`CaptureFileError`).

Classic pcap: both byte orders, micro- and nanoseconds. pcapng: SHB/IDB/EPB/SPB/obsolete
PB, per-interface `if_tsresol` and `if_tsoffset`, several interfaces and sections, kernel
drops from interface statistics (ISB `isb_ifdrop`/`isb_osdrop`).

The classic-pcap record loop can be handed a compiled twin (`fast`, same arguments and
result as `pcap_chunk`): hopcap.correlate passes its C helper; a test checks both walk
every file the same.
"""

from __future__ import annotations

import functools
import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.errors import HopcapError

I64 = npt.NDArray[np.int64]

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
MAX_RECORD = 1 << 20  # no sane capture record is bigger than 1 MiB (TSO tops at 256 KiB)
CHUNK = 1 << 18

# (offs, caps, ts, stop byte, reason, original lengths): reason 0 end of file, 1 truncated
# record, 2 corrupt record header, 3 `maxn` records read (call again from the stop byte)
PcapChunk = tuple[I64, I64, I64, int, int, I64]
FastPcap = Callable[[Any, int, bool, int, int, int], PcapChunk | None]
# pcapng's packet blocks in C (hopcap.correlate._fastwalk.walk_pcapng)
FastPcapng = Callable[
    [Any, int, bool, int, list[tuple[int, int, int, int, int]], int],
    tuple[tuple[npt.NDArray[np.int64], ...], int] | None,
]


class CaptureFileError(HopcapError):
    """A file that cannot be read as a capture at all (missing, unreadable, another format).
    The consumers turn it into their own error (CorrelationError, BundleError)."""


@dataclass
class Records:
    """One row per captured record (any protocol)."""

    off: I64  # offset of the link-layer frame in the buffer
    cap: I64  # captured length
    ts: I64  # nanoseconds since the epoch
    link: I64  # link type of the record
    orig: I64  # original length on the wire
    iface: I64  # interface index in its pcapng section (0 for classic pcap)
    warnings: list[str] = field(default_factory=list)
    kernel_drops: int | None = None  # from pcapng interface statistics, when present

    def __len__(self) -> int:
        return int(self.off.shape[0])


def open_capture(path: Path, *, populate: bool = True) -> Any:
    """The file mapped read-only (b"" when empty); `populate`: its pages mapped in now
    (False: on first touch, for a look at a few of them)."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise CaptureFileError(f"{path}: no such capture file") from None
    except OSError as e:
        raise CaptureFileError(f"{path}: cannot open: {e.strerror or e}") from None
    with f:
        size = path.stat().st_size
        if size == 0:
            return b""
        fill = _populator() if populate else None
        # the whole file mapped in at once (one pass in the kernel) instead of a page
        # fault per 4 KiB on first touch: by madvise(MADV_POPULATE_READ) called through
        # ctypes, which lets other threads run meanwhile (the points are read in threads;
        # mmap(MAP_POPULATE) keeps the interpreter lock for the whole populate: 0.1 s a
        # 1.5 GB file), else by MAP_POPULATE
        flags = mmap.MAP_SHARED
        if populate and fill is None:
            flags |= getattr(mmap, "MAP_POPULATE", 0)
        buf = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    if fill is not None:
        view = np.frombuffer(buf, np.uint8)
        addr = view.ctypes.data
        del view  # the mapping cannot be closed while a view of it is exported
        # a piece at a time: populating holds the address space's mmap lock, which every
        # other thread's mmap() and munmap() (a new arena, a large array) waits for,
        # with the interpreter lock if it holds it; between pieces they get in
        for lo in range(0, size, POPULATE_PIECE):
            fill(addr + lo, min(POPULATE_PIECE, size - lo))
    return buf


MADV_POPULATE_READ = 22  # Linux 5.14
MADV_POPULATE_WRITE = 23  # Linux 5.14
POPULATE_PIECE = 32 << 20  # ~1-2 ms of populating


def mapped_in(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """`a`, a new array not written yet, with its pages mapped in at once: one
    madvise(MADV_POPULATE_WRITE) instead of a page fault per 4 KiB when it is first
    written (3-4 us each on a virtual machine: ~0.04 s of CPU for a 1.6 M-packet capture's
    columns). Arrays under a MiB, and systems without it, are left as they are."""
    if a.nbytes >= 1 << 20:
        madvise_ = madvise()
        if madvise_ is not None:
            addr = a.ctypes.data
            lo, hi = -(-addr // mmap.PAGESIZE) * mmap.PAGESIZE, addr + a.nbytes
            hi -= hi % mmap.PAGESIZE
            # a piece at a time, as the files are populated (the address space's lock: the
            # other point's reading thread, allocating, waits for a whole call); a failure
            # leaves the faults, as before
            for at in range(lo, hi, WRITE_PIECE):
                madvise_(at, min(WRITE_PIECE, hi - at), MADV_POPULATE_WRITE)
    return a


WRITE_PIECE = 1 << 20


@functools.cache
def madvise() -> Callable[[int, int, int], int] | None:
    """The C library's madvise(addr, size, advice), called without the interpreter lock
    (ctypes releases it); None where there is none to call (not Linux)."""
    if not hasattr(mmap, "MAP_POPULATE"):  # not Linux
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    out: Callable[[int, int, int], int] = fn
    return out


@functools.cache
def _populator() -> Callable[[int, int], None] | None:
    """madvise(addr, size, MADV_POPULATE_READ) without the interpreter lock, where the
    system has it (Linux >= 5.14), else None."""
    madvise_ = madvise()
    if madvise_ is None:
        return None
    # probe on a page of this process's own: an older kernel says EINVAL
    probe = mmap.mmap(-1, mmap.PAGESIZE)
    view = np.frombuffer(probe, np.uint8)
    ok = madvise_(view.ctypes.data, mmap.PAGESIZE, MADV_POPULATE_READ) == 0
    del view
    probe.close()
    if not ok:
        return None

    def populate(addr: int, size: int) -> None:
        # a failure (e.g. the file shrank under it: EFAULT) is left to the reader, which
        # meets the same pages; populating is only a speed-up
        madvise_(addr, size, MADV_POPULATE_READ)

    return populate


# what a file that is no capture often is instead: compressed (the tool to undo it), or a
# capture format of another tool
_COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip -k"),
    (b"\xfd7zXZ\x00", "xz", "unxz -k"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
    (b"BZh", "bzip2", "bunzip2 -k"),
    (b"\x04\x22\x4d\x18", "lz4", "unlz4"),
    (b"PK\x03\x04", "zip", "unzip"),
)
_OTHER_FORMATS = (
    (b"snoop\x00\x00\x00", "a Solaris snoop capture"),
    (b"GMBU", "a Microsoft Network Monitor capture"),
    (b"\xa1\xb2\xcd\x34", "a modified (Kuznetzov) pcap"),
    (b"\x34\xcd\xb2\xa1", "a modified (Kuznetzov) pcap"),
)


def not_a_capture(path: Path, head: bytes) -> CaptureFileError:
    """The error for a file that is no pcap or pcapng, saying what it looks like instead
    and how to get a capture out of it."""
    for magic, kind, undo in _COMPRESSED:
        if head.startswith(magic):
            return CaptureFileError(
                f"{path}: compressed with {kind}, not a pcap or pcapng capture",
                hint=f"decompress it first: {undo} {path}",
            )
    for magic, kind in _OTHER_FORMATS:
        if head.startswith(magic):
            return CaptureFileError(
                f"{path}: {kind}, not a pcap or pcapng capture",
                hint=f"convert it: editcap -F pcapng {path} OUT.pcapng",
            )
    text = head and all(32 <= c < 127 or c in b"\t\r\n" for c in head)
    return CaptureFileError(
        f"{path}: not a pcap or pcapng capture (starts with {head[:4].hex()}"
        + (f": text, {head.decode()[:16]!r})" if text else ")"),
        hint="give the files tcpdump -w wrote; text output of tcpdump cannot be read",
    )


def read_head(path: Path, size: int) -> bytes:
    """The first `size` bytes of the file (fewer when it is shorter), read without
    mapping it: a look at the head of a large capture costs a read of the head only."""
    try:
        with path.open("rb") as f:
            return f.read(size)
    except FileNotFoundError:
        raise CaptureFileError(f"{path}: no such capture file") from None
    except OSError as e:
        raise CaptureFileError(f"{path}: cannot open: {e.strerror or e}") from None


def _z() -> I64:
    return np.zeros(0, np.int64)


def _empty(warnings: list[str]) -> Records:
    return Records(_z(), _z(), _z(), _z(), _z(), _z(), warnings)


class RecordWalk:
    """Walk a mapped capture: iterate `chunks()`; afterwards `warnings`, `kernel_drops`,
    `records` (how many were walked) and `links` (the link types declared) are final."""

    def __init__(
        self, path: Path, buf: Any, fast: FastPcap | None = None, fast_ng: FastPcapng | None = None
    ) -> None:
        self.path = path
        self.name = path.name
        self.buf = buf
        self.fast = fast
        self.fast_ng = fast_ng
        self.warnings: list[str] = []
        self.kernel_drops: int | None = None
        self.records = 0
        self.links: list[int] = []  # the file's link type, or every pcapng interface's
        head = bytes(buf[:4])
        self.format = ""
        if len(buf) == 0:
            self.warnings.append(f"{self.name}: empty file")
        elif head in PCAP_MAGICS:
            self.format = "pcap"
            if len(buf) < 24:
                self.warnings.append(f"{self.name}: file truncated inside the pcap header")
            else:
                endian = PCAP_MAGICS[head][0]
                self.links = [struct.unpack_from(endian + "I", buf, 20)[0] & 0x0FFFFFFF]
        elif head == PCAPNG_SHB:
            self.format = "pcapng"
        elif len(buf) < 4:
            self.warnings.append(
                f"{self.name}: file truncated inside the header ({len(buf)} bytes)"
            )
        else:
            raise not_a_capture(path, bytes(buf[:16]))

    def chunks(self, chunk: int = CHUNK) -> Iterator[Records]:
        if self.format == "pcap" and self.links:
            yield from self._pcap(chunk)
        elif self.format == "pcapng":
            yield from self._pcapng(chunk)

    def all(self) -> Records:
        """Every record at once."""
        parts = list(self.chunks())
        if not parts:
            out = _empty([])
        elif len(parts) == 1:
            out = parts[0]
        else:
            out = Records(*_cat(parts))
        out.warnings = list(self.warnings)
        out.kernel_drops = self.kernel_drops
        return out

    # ------------------------------------------------------------------ classic pcap
    def _pcap(self, chunk: int) -> Iterator[Records]:
        buf = self.buf
        endian, mult = PCAP_MAGICS[bytes(buf[:4])]
        be = endian == ">"
        link = self.links[0]
        pos = 24
        while True:
            got = self.fast(buf, pos, be, mult, MAX_RECORD, chunk) if self.fast else None
            if got is None:
                got = pcap_chunk(buf, pos, be, mult, MAX_RECORD, chunk)
            offs, caps, tss, pos, reason, orig = got
            n = int(offs.shape[0])
            if n:
                self.records += n
                yield Records(
                    offs, caps, tss, np.full(n, link, np.int64), orig, np.zeros(n, np.int64)
                )
            if reason != 3:
                w = record_warning(self.name, reason, pos, self.records, buf)
                if w:
                    self.warnings.append(w)
                return

    # ------------------------------------------------------------------ pcapng
    def _pcapng(self, chunk: int) -> Iterator[Records]:
        buf = self.buf
        size = len(buf)
        offs: list[int] = []
        caps: list[int] = []
        tss: list[int] = []
        links: list[int] = []
        origs: list[int] = []
        ifs: list[int] = []
        # per interface: link, snaplen, mul, div, tsoffset_s
        ifaces: list[tuple[int, int, int, int, int]] = []
        endian = "<"
        pos = 0
        last_ts = 0
        name = self.name

        # records walked by `fast_ng` (arrays), in file order with those of the lists
        done: list[tuple[npt.NDArray[np.int64], ...]] = []
        held = 0  # records in `done`

        def lists_out() -> None:
            nonlocal held
            if offs:
                held += len(offs)
                done.append(
                    tuple(np.array(x, np.int64) for x in (offs, caps, tss, links, origs, ifs))
                )
                for x in (offs, caps, tss, links, origs, ifs):
                    x.clear()

        def flush() -> Records:
            nonlocal held
            lists_out()
            self.records += sum(int(d[0].shape[0]) for d in done)
            a = [np.concatenate([d[i] for d in done]) if len(done) > 1 else done[0][i]
                 for i in range(6)]  # fmt: skip
            done.clear()
            held = 0
            return Records(a[0], a[1], a[2], a[3], a[4], a[5])

        def damage(what: str, after: str = "") -> None:
            """`name: what at byte N after (read K packets before it...)`, as for pcap."""
            rest = "" if what.startswith("truncated") else "; the rest is ignored"
            self.warnings.append(
                f"{name}: {what} at byte {pos}{after} "
                f"(read {self.records + held + len(offs)} packets before it{rest})"
            )

        while pos < size:
            if len(offs) + held >= chunk:
                yield flush()
            if (
                self.fast_ng is not None
                and ifaces
                and pos + 12 <= size
                and struct.unpack_from(endian + "I", buf, pos)[0] == 6  # a packet block
            ):
                got = self.fast_ng(
                    buf, pos, endian == ">", MAX_RECORD, ifaces, chunk - len(offs) - held
                )
                if got is not None and got[0][0].shape[0]:
                    lists_out()
                    done.append(got[0])
                    held += int(got[0][0].shape[0])
                    last_ts = int(got[0][2][-1])
                    pos = got[1]
                    continue
            if pos + 12 > size:
                damage("truncated: block", " is incomplete")
                break
            if bytes(buf[pos : pos + 4]) == PCAPNG_SHB:
                bom = bytes(buf[pos + 8 : pos + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    damage("corrupt section header")
                    break
                ifaces = []
            btype, blen = struct.unpack_from(endian + "II", buf, pos)
            if blen < 12 or blen % 4 or blen > MAX_RECORD + 4096:
                damage(f"corrupt block length {blen}")
                break
            if pos + blen > size:
                damage("truncated: block", " runs past the end of the file")
                break
            body = pos + 8
            end = pos + blen - 4
            if btype == 1:  # IDB
                if blen < 20:
                    damage("corrupt interface block")
                    break
                link, _r, snap = struct.unpack_from(endian + "HHI", buf, body)
                mul, div, tsoff = 1000, 1, 0
                for code, opos, olen in _options(buf, body + 8, end, endian):
                    if code == 9 and olen >= 1:
                        mul, div = _tsres_ns(buf[opos])
                    elif code == 14 and olen == 8:
                        (tsoff,) = struct.unpack_from(endian + "q", buf, opos)
                ifaces.append((link, snap, mul, div, tsoff))
                self.links.append(link)
            elif btype in (6, 2):  # EPB, obsolete packet block
                if blen < 32:
                    damage("corrupt packet block")
                    break
                if btype == 6:
                    iface, th, tl, cap, orig = struct.unpack_from(endian + "IIIII", buf, body)
                else:
                    iface, _d, th, tl, cap, orig = struct.unpack_from(endian + "HHIIII", buf, body)
                data = body + 20
                if iface >= len(ifaces):
                    damage(f"packet block for undeclared interface {iface}")
                    break
                if data + cap > end:
                    damage("corrupt packet block", " (its captured length runs past its end)")
                    break
                link, _snap, mul, div, tsoff = ifaces[iface]
                last_ts = ((th << 32) | tl) * mul // div + tsoff * 1_000_000_000
                offs.append(data)
                caps.append(cap)
                tss.append(last_ts)
                links.append(link)
                origs.append(orig)
                ifs.append(iface)
            elif btype == 3:  # SPB: interface 0, no timestamp (the previous packet's)
                if not ifaces:
                    damage("simple packet block before any interface")
                    break
                (orig,) = struct.unpack_from(endian + "I", buf, body)
                snap = ifaces[0][1]
                offs.append(body + 4)
                caps.append(min(orig, blen - 16, snap or orig))
                tss.append(last_ts)
                links.append(ifaces[0][0])
                origs.append(orig)
                ifs.append(0)
            elif btype == 5:  # ISB: interface statistics
                for code, opos, olen in _options(buf, body + 12, end, endian):
                    if code in (5, 7) and olen == 8:  # isb_ifdrop, isb_osdrop
                        (v,) = struct.unpack_from(endian + "Q", buf, opos)
                        self.kernel_drops = (self.kernel_drops or 0) + int(v)
            pos += blen
        if offs or held:
            yield flush()


_COLS = ("off", "cap", "ts", "link", "orig", "iface")


def _cat(parts: list[Records]) -> tuple[I64, I64, I64, I64, I64, I64]:
    c = [np.concatenate([getattr(p, c) for p in parts]) for c in _COLS]
    return c[0], c[1], c[2], c[3], c[4], c[5]


def _options(buf: Any, pos: int, end: int, endian: str) -> Iterator[tuple[int, int, int]]:
    """(code, value offset, value length) of each option up to opt_endofopt."""
    while pos + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            return
        yield code, pos + 4, olen
        pos += 4 + ((olen + 3) & ~3)


def _tsres_ns(code: int) -> tuple[int, int]:
    """if_tsresol -> (multiplier, divisor) turning ticks into nanoseconds."""
    v = code & 0x7F
    if code & 0x80:
        return 1_000_000_000, 1 << v
    if v <= 9:
        return 10 ** (9 - v), 1
    return 1, 10 ** (v - 9)


def record_warning(name: str, reason: int, stop: int, count: int, buf: Any = None) -> str | None:
    """The warning for where a classic-pcap walk stopped (None: at the end of the file).
    With the file's `buf`: a damage that is another pcap file's header (files joined with
    `cat`, which is read as a record of no bytes, then damage) says so."""
    if reason == 1:
        return (
            f"{name}: truncated: record at byte {stop} runs past the end of the file "
            f"(read {count} packets before it)"
        )
    if reason == 2:
        joined = ""
        if buf is not None:
            for at in (stop - 16, stop):
                if at >= 24 and at + 24 <= len(buf) and bytes(buf[at : at + 4]) in PCAP_MAGICS:
                    joined = (
                        f"; another capture file starts at byte {at} (files joined with cat?): "
                        "give each file as NAME=FILE of the same point, hopcap joins them"
                    )
                    break
        return (
            f"{name}: corrupt record header at byte {stop} "
            f"(read {count} packets before it; the rest is ignored){joined}"
        )
    return None


def u32_at(u8: npt.NDArray[np.uint8], at: I64, be: bool) -> I64:
    """The 32-bit words at byte offsets `at` (record headers are not aligned), big- or
    little-endian."""
    b = [u8[at + i].astype(np.int64) for i in range(4)]
    if be:
        return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    return (b[3] << 24) | (b[2] << 16) | (b[1] << 8) | b[0]


def pcap_chunk(buf: Any, pos: int, be: bool, mult: int, maxrec: int, maxn: int) -> PcapChunk:
    """Classic pcap records from byte `pos`, at most `maxn` of them. The loop follows the
    caplens; the other header checks (caplen above the original length, microseconds
    past a second) are made on all records at once afterwards, and the walk is cut at
    the first that fails them: the same result as checking each in the loop."""
    unpack = struct.Struct(">I" if be else "<I").unpack_from
    size = len(buf)
    heads: list[int] = []
    reason = 0
    while pos < size:
        if len(heads) >= maxn:
            reason = 3
            break
        if pos + 16 > size:
            reason = 1
            break
        (cap,) = unpack(buf, pos + 8)
        if cap > maxrec:
            reason = 2
            break
        if pos + 16 + cap > size:
            reason = 1
            break
        heads.append(pos)
        pos += 16 + cap
    if reason == 1 and pos + 16 <= size:  # runs past the end: unless its header is corrupt
        _sec, frac, cap, orig = struct.unpack_from(">IIII" if be else "<IIII", buf, pos)
        if (cap > orig and orig != 0) or (mult == 1000 and frac >= 1_000_000):
            reason = 2
    h = np.array(heads, np.int64)
    if not h.shape[0]:
        return h, h.copy(), h.copy(), pos, reason, h.copy()
    u8: npt.NDArray[np.uint8] = np.frombuffer(buf, np.uint8)
    sec, frac, cap, orig = (u32_at(u8, h + k, be) for k in (0, 4, 8, 12))
    bad = (cap > orig) & (orig != 0)
    if mult == 1000:
        bad |= frac >= 1_000_000
    if bad.any():
        k = int(np.argmax(bad))
        h, sec, frac, cap, orig = h[:k], sec[:k], frac[:k], cap[:k], orig[:k]
        pos, reason = int(heads[k]), 2
    return h + 16, cap, sec * 1_000_000_000 + frac * mult, pos, reason, orig


def walk_records(path: Path, buf: Any, fast: FastPcap | None = None) -> Records:
    """Every record of a mapped capture at once, with the walk's warnings."""
    return RecordWalk(path, buf, fast).all()
