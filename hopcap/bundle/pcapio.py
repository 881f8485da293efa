"""The bundle's side of capture files: packets one by one, and a pcapng writer.

`PcapReader` hands out the packets of a classic pcap or pcapng file in file order (one
`RawPacket` each, timestamps in integer nanoseconds since the epoch), or whole chunks of
them with their headers decoded (`chunks`), for the merge and the anonymiser. Both come
from hopcap.capfile: the same record walk and the same link -> tunnel -> IP -> transport
decoder as the correlation's reader, so the bundle sees the packets the verdict was made
of. A damaged file is read up to its damage (`warnings` says where; `truncated`).

The writer produces pcapng (little-endian): one SHB, IDBs with `if_name` and
`if_tsresol` = 9 (nanoseconds), EPBs with an optional `opt_comment`.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import queue
import struct
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from hopcap.capfile import CaptureFileError, Layers, Records, RecordWalk, buffer_u8, decode
from hopcap.capfile.layers import be16
from hopcap.capfile.walk import CHUNK, open_capture
from hopcap.correlate import _fastwalk
from hopcap.errors import BundleError

LINKTYPE_ETHERNET = 1
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_EPB = 0x00000006
_BOM = 0x1A2B3C4D

RawTuple = tuple[bytes, int, bytes, int]


@dataclass(frozen=True, slots=True)
class RawPacket:
    ts_ns: int
    linktype: int
    data: bytes  # captured bytes
    orig_len: int
    interface: int = 0  # interface index inside the source file (pcapng), 0 for classic pcap


class PcapReader:
    """The packets of a classic pcap or pcapng file.

    Use as a context manager or call `close()`; iterating twice re-reads from the start.
    """

    def __init__(self, path: Path, *, populate: bool = True) -> None:
        self.path = Path(path)
        self.warnings: list[str] = []
        try:
            self.buf: Any = open_capture(self.path, populate=populate)
            probe = RecordWalk(self.path, self.buf)
        except CaptureFileError as exc:
            self.close()
            raise BundleError(exc.message, hint=exc.hint) from None
        self.format = probe.format
        self.linktypes: list[int] = list(probe.links)
        self.warnings = list(probe.warnings)

    @property
    def truncated(self) -> bool:
        """The file is damaged (cut short, a corrupt record): read up to the damage."""
        return bool(self.warnings)

    def close(self) -> None:
        buf = getattr(self, "buf", None)
        if buf is not None and not isinstance(buf, bytes):
            with contextlib.suppress(BufferError):  # a chunk's view is still alive
                buf.close()
        self.buf = None

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def chunks(
        self, *, layers: bool = False, chunk: int = CHUNK
    ) -> Generator[tuple[Records, Layers | None], None, None]:
        """The records `chunk` at a time, with their headers decoded if `layers`."""
        walk = RecordWalk(self.path, self.buf, _fastwalk.walk_pcap, _fastwalk.walk_pcapng)
        u8 = buffer_u8(self.buf) if layers else None
        for rec in walk.chunks(chunk):
            lay = decode(u8, rec.off, rec.cap, rec.link) if u8 is not None else None
            yield rec, lay
        self.linktypes = list(walk.links)
        self.warnings = list(walk.warnings)

    def __iter__(self) -> Iterator[RawPacket]:
        buf = self.buf
        for rec, _ in self.chunks():
            cols = (rec.ts, rec.link, rec.off, rec.cap, rec.orig, rec.iface)
            for ts, lt, o, c, orig, i in zip(*(x.tolist() for x in cols), strict=True):
                yield RawPacket(ts, lt, buf[o : o + c], orig, i)


def first_linktype(path: Path) -> int:
    """The link type of the first interface of a capture file."""
    with PcapReader(path, populate=False) as r:
        if r.linktypes:
            return r.linktypes[0]
        for pkt in r:
            return pkt.linktype
    return LINKTYPE_ETHERNET


def one_packet(linktype: int, data: bytes) -> tuple[Any, Records, Layers]:
    """One packet as a chunk of its own, decoded (for single-packet helpers and tests)."""
    z = np.zeros(1, np.int64)
    n = np.array([len(data)], np.int64)
    rec = Records(z, n, z.copy(), np.array([linktype], np.int64), n.copy(), z.copy())
    buf = bytes(data) + bytes(8)  # the decoder may look a few bytes past (masked)
    return buf, rec, decode(buffer_u8(buf), rec.off, rec.cap, rec.link)


class Heads(Protocol):
    """Where each record's innermost IP header and the header after it are (`Layers`'
    columns of those, or the compiled decoder's)."""

    l3: npt.NDArray[np.int64]
    et: npt.NDArray[np.int64]
    l4: npt.NDArray[np.int64]
    proto: npt.NDArray[np.int64]


def chunk_tuples(
    buf: Any, rec: Records, lay: Heads, rows: npt.NDArray[np.int64] | None = None
) -> list[RawTuple | None]:
    """(src, sport, dst, dport) of each TCP/UDP packet's innermost header (addresses
    packed, as in the packet); None for anything else. Of the rows `rows` only, in their
    order, if given."""
    u8 = buffer_u8(buf)
    at = np.arange(len(rec)) if rows is None else rows
    l3, l4 = lay.l3[at], lay.l4[at]
    ok = (l3 >= 0) & (l4 >= 0) & np.isin(lay.proto[at], (6, 17))
    ok &= l4 + 4 <= rec.off[at] + rec.cap[at]
    out: list[RawTuple | None] = [None] * int(at.shape[0])
    sel = np.nonzero(ok)[0]
    if not sel.shape[0]:
        return out
    l3, l4 = l3[sel], l4[sel]
    alen = np.where(lay.et[at[sel]] == 0x0800, 4, 16)
    src = l3 + np.where(alen == 4, 12, 8)
    sport, dport = be16(u8, l4), be16(u8, l4 + 2)
    for r, s, a, sp, dp in zip(
        sel.tolist(), src.tolist(), alen.tolist(), sport.tolist(), dport.tolist(), strict=True
    ):
        out[r] = (bytes(buf[s : s + a]), sp, bytes(buf[s + a : s + 2 * a]), dp)
    return out


def packet_tuple(linktype: int, data: bytes) -> tuple[str, int, str, int] | None:
    """(src, sport, dst, dport) of a TCP/UDP packet (the innermost, inside tunnels),
    addresses as text."""
    buf, rec, lay = one_packet(linktype, data)
    t = chunk_tuples(buf, rec, lay)[0]
    if t is None:
        return None
    return str(ipaddress.ip_address(t[0])), t[1], str(ipaddress.ip_address(t[2])), t[3]


# --------------------------------------------------------------------------- writer


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


_OPT_END = b"\0\0\0\0"


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class _Sink:
    """Where a writer's bytes go: appended to its file, and hashed (`digest`), in order,
    by a thread of its own, while the writer goes on (writing and hashlib let other
    threads run). Small pieces are gathered first; at most 16 pieces (a few MB) wait.
    An error of the file is raised by the next `put`, or by `close`."""

    PIECE = 4 << 20  # the buffers' size
    BUFFERS = 8  # how many

    def __init__(self, fh: BinaryIO, digest: bool) -> None:
        self._fh = fh
        self._h = hashlib.sha256() if digest else None
        self._q: queue.Queue[Any] = queue.Queue(maxsize=16)
        self._free: queue.Queue[npt.NDArray[np.uint8]] = queue.Queue()
        self._made = 0
        self._small = bytearray()
        self._error: OSError | None = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            b, buf = item
            try:
                if self._error is not None:
                    continue  # (drained: the writer hears of it)
                try:
                    self._fh.write(b)
                except OSError as exc:
                    self._error = exc
                    continue
                if self._h is not None:
                    self._h.update(b)
            finally:
                if buf is not None and buf.shape[0] == self.PIECE:  # (a pool buffer)
                    self._free.put(buf)

    def buffer(self, size: int) -> npt.NDArray[np.uint8]:
        """A buffer of `size` bytes (or a few more) to fill and hand back with `put`: one
        of BUFFERS of PIECE bytes, reused once written (waits for one), or for more than
        PIECE bytes one of its own."""
        if size > self.PIECE:
            return np.empty(size, np.uint8)
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if self._made < self.BUFFERS:
                self._made += 1
                return np.empty(self.PIECE, np.uint8)
        return self._free.get()

    def put(self, b: Any, size: int | None = None) -> None:
        """Write `b` (its first `size` bytes) after what came before (it must not change
        until written; a `buffer` is reused then)."""
        if self._error is not None:
            raise self._error
        buf = b if size is not None else None
        if size is not None:
            b = memoryview(b)[:size]
        if buf is None and len(b) < (64 << 10):
            self._small += memoryview(b)
            if len(self._small) < (1 << 20):
                return
            b = b""
        if self._small:
            self._q.put((bytes(self._small), None))
            self._small.clear()
        if len(b) or buf is not None:
            self._q.put((b, buf))

    def close(self) -> str | None:
        """Wait for every byte to be written; the file's sha256 (with `digest`)."""
        if not self._t.is_alive():
            return self._h.hexdigest() if self._h is not None else None  # (closed)
        try:
            if self._small:
                self._q.put((bytes(self._small), None))
                self._small.clear()
        finally:
            self._q.put(None)
            self._t.join()
            self._fh.close()
        if self._error is not None:
            raise self._error
        return self._h.hexdigest() if self._h is not None else None


class PcapngWriter:
    """Write a pcapng file: `add_interface` first, then `write_packet` for each packet.
    With `digest`, `sha256` is the file's once closed (hashed as it is written)."""

    def __init__(self, path: Path, *, application: str = "hopcap", digest: bool = False) -> None:
        self.path = Path(path)
        self.sha256: str | None = None
        try:
            fh: BinaryIO = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115
        except OSError as exc:
            raise BundleError(f"cannot write {self.path}: {exc.strerror}") from exc
        self._sink = _Sink(fh, digest)
        opts = _opt(4, application.encode()) + _OPT_END  # shb_userappl
        body = struct.pack("<IHHq", _BOM, 1, 0, -1) + opts
        self._put(_block(_SHB, body))
        self._nifaces = 0
        self.packets = 0
        self._epb_head = struct.Struct("<IIIIIII")

    def add_interface(
        self, linktype: int, name: str, *, snaplen: int = 0, description: str | None = None
    ) -> int:
        opts = _opt(2, name.encode())
        if description:
            opts += _opt(3, description.encode())
        opts += _opt(9, b"\x09") + _OPT_END
        self._put(_block(_IDB, struct.pack("<HHI", linktype, 0, snaplen) + opts))
        self._nifaces += 1
        return self._nifaces - 1

    def write_packet(
        self,
        iface: int,
        ts_ns: int,
        data: bytes,
        orig_len: int,
        comment: str | None = None,
        flags: int | None = None,
    ) -> None:
        """`flags`: the pcapng epb_flags word (bits 0-1: 1 inbound, 2 outbound)."""
        incl = len(data)
        pad = (-incl) % 4
        opts = b""
        if comment:
            opts += _opt(1, comment.encode())
        if flags is not None:
            opts += _opt(2, struct.pack("<I", flags))
        if opts:
            opts += _OPT_END
        total = 32 + incl + pad + len(opts)
        ts = ts_ns if ts_ns > 0 else 0
        self._put(
            self._epb_head.pack(
                _EPB, total, iface, ts >> 32, ts & 0xFFFFFFFF, incl, max(orig_len, incl)
            )
        )
        self._put(data)
        self._put(b"\0" * pad + opts + struct.pack("<I", total))
        self.packets += 1

    @property
    def piece(self) -> int:
        """The size of the writer's buffers."""
        return self._sink.PIECE

    def buffer(self, size: int) -> npt.NDArray[np.uint8]:
        """A buffer for `size` bytes of blocks made elsewhere (`write_blocks`)."""
        return self._sink.buffer(size)

    def write_blocks(self, buf: npt.NDArray[np.uint8], size: int, packets: int) -> None:
        """The first `size` bytes of `buf` (from `buffer`): `packets` enhanced packet
        blocks made elsewhere (`_fastwalk.epb_blocks`)."""
        self._sink.put(buf, size)
        self.packets += packets

    def _put(self, b: Any) -> None:
        self._sink.put(b)

    def close(self) -> None:
        self.sha256 = self._sink.close()

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
