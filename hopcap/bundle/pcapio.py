"""Small streaming pcap / pcapng reader and pcapng writer (stdlib only).

The reader understands classic pcap (micro- and nanosecond, either byte order) and pcapng
(any number of sections and interfaces, `if_tsresol`, `if_tsoffset`, EPB, SPB and the
obsolete PB). It yields one `RawPacket` per packet, in file order, with the timestamp in
integer nanoseconds since the epoch. A file cut short (tcpdump killed mid-write) ends the
iteration quietly; `PcapReader.truncated` says so.

The writer produces pcapng (little-endian): one SHB, IDBs with `if_name` and
`if_tsresol` = 9 (nanoseconds), EPBs with an optional `opt_comment`.

Header helpers (`l3_offset`, `packet_tuple`) find the IP header behind the common link
types (Ethernet with VLAN tags, PPPoE and MPLS, PPP, Cisco HDLC, Linux cooked v1/v2, raw
IP, BSD loopback); tunnels are not opened here (the outer header is the packet's).
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from hopcap.errors import BundleError

# link types
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_ALT = 12  # DLT_RAW on most BSDs / old libpcap
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_CHDLC = 104
_PPP_ET = {0x21: 0x0800, 0x57: 0x86DD, 0x281: 0x8847, 0x283: 0x8847}  # PPP protocol -> ethertype

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_SHB = 0x0A0D0D0A
_IDB = 0x00000001
_PB = 0x00000002
_SPB = 0x00000003
_EPB = 0x00000006
_BOM = 0x1A2B3C4D


@dataclass(frozen=True, slots=True)
class RawPacket:
    ts_ns: int
    linktype: int
    data: bytes  # captured bytes
    orig_len: int
    interface: int = 0  # interface index inside the source file (pcapng), 0 for classic pcap


@dataclass
class _Iface:
    linktype: int
    snaplen: int
    units_per_s: int  # timestamp units per second
    pow2: bool
    resol_exp: int
    offset_s: int


def _ts_to_ns(units: int, iface: _Iface) -> int:
    if iface.pow2:
        ns = (units * 1_000_000_000) >> iface.resol_exp
    elif iface.units_per_s >= 1_000_000_000:
        ns = units // (iface.units_per_s // 1_000_000_000)
    else:
        ns = units * (1_000_000_000 // iface.units_per_s)
    return ns + iface.offset_s * 1_000_000_000


class PcapReader:
    """Iterate the packets of a classic pcap or pcapng file.

    Use as a context manager or call `close()`; iterating twice re-reads from the start.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.truncated = False
        self.format = ""
        self.linktypes: list[int] = []
        try:
            self._fh: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise BundleError(f"cannot open capture {self.path}: {exc.strerror}") from exc
        size = self.path.stat().st_size
        if size < 4:
            self._fh.close()
            raise BundleError(f"{self.path} is not a pcap or pcapng file (only {size} bytes)")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        head = bytes(self._mm[:4])
        if struct.unpack("<I", head)[0] == _SHB:
            self.format = "pcapng"
        elif struct.unpack("<I", head)[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS) or struct.unpack(
            ">I", head
        )[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            self.format = "pcap"
            if size < 24:
                self.close()
                raise BundleError(f"{self.path}: pcap header cut short ({size} bytes)")
            endian = (
                "<" if struct.unpack("<I", head)[0] in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS) else ">"
            )
            self.linktypes = [struct.unpack_from(endian + "I", self._mm, 20)[0] & 0x0FFFFFFF]
        else:
            self.close()
            raise BundleError(f"{self.path} is not a pcap or pcapng file (magic {head.hex()})")

    def close(self) -> None:
        mm = getattr(self, "_mm", None)
        if mm is not None:
            mm.close()
            self._mm = None  # type: ignore[assignment]
        self._fh.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[RawPacket]:
        if self.format == "pcap":
            return self._iter_pcap()
        return self._iter_pcapng()

    # ---------------------------------------------------------------- classic pcap
    def _iter_pcap(self) -> Iterator[RawPacket]:
        mm = self._mm
        size = len(mm)
        magic_le = struct.unpack_from("<I", mm, 0)[0]
        endian = "<" if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS) else ">"
        magic = struct.unpack_from(endian + "I", mm, 0)[0]
        mult = 1 if magic == _PCAP_MAGIC_NS else 1000
        linktype = struct.unpack_from(endian + "I", mm, 20)[0] & 0x0FFFFFFF
        rec = struct.Struct(endian + "IIII")
        unpack = rec.unpack_from
        pos = 24
        while pos + 16 <= size:
            sec, frac, incl, orig = unpack(mm, pos)
            pos += 16
            if pos + incl > size:
                self.truncated = True
                return
            yield RawPacket(sec * 1_000_000_000 + frac * mult, linktype, mm[pos : pos + incl], orig)
            pos += incl
        if pos != size:
            self.truncated = True

    # ---------------------------------------------------------------- pcapng
    def _iter_pcapng(self) -> Iterator[RawPacket]:
        mm = self._mm
        size = len(mm)
        pos = 0
        endian = "<"
        ifaces: list[_Iface] = []
        while pos + 12 <= size:
            btype_le = struct.unpack_from("<I", mm, pos)[0]
            if btype_le == _SHB:
                bom = struct.unpack_from("<I", mm, pos + 8)[0]
                if bom == _BOM:
                    endian = "<"
                elif struct.unpack_from(">I", mm, pos + 8)[0] == _BOM:
                    endian = ">"
                else:
                    raise BundleError(f"{self.path}: bad pcapng byte-order magic at {pos}")
                ifaces = []
            btype, blen = struct.unpack_from(endian + "II", mm, pos)
            if blen < 12 or blen % 4:
                raise BundleError(f"{self.path}: damaged pcapng block at offset {pos}")
            if pos + blen > size:
                self.truncated = True
                return
            body = pos + 8
            end = pos + blen - 4
            if btype == _IDB:
                linktype, _res, snaplen = struct.unpack_from(endian + "HHI", mm, body)
                iface = _Iface(linktype, snaplen, 1_000_000, False, 6, 0)
                for code, val in _options(mm, body + 8, end, endian):
                    if code == 9 and val:
                        r = val[0]
                        if r & 0x80:
                            iface.pow2 = True
                            iface.resol_exp = r & 0x7F
                            iface.units_per_s = 1 << iface.resol_exp
                        else:
                            iface.resol_exp = r
                            iface.units_per_s = 10**r
                    elif code == 14 and len(val) == 8:
                        iface.offset_s = struct.unpack(endian + "q", val)[0]
                ifaces.append(iface)
                self.linktypes.append(linktype)
            elif btype == _EPB:
                ifid, hi, lo, incl, orig = struct.unpack_from(endian + "IIIII", mm, body)
                if ifid >= len(ifaces):
                    raise BundleError(f"{self.path}: packet for undeclared interface {ifid}")
                iface = ifaces[ifid]
                start = body + 20
                yield RawPacket(
                    _ts_to_ns((hi << 32) | lo, iface),
                    iface.linktype,
                    mm[start : start + incl],
                    orig,
                    ifid,
                )
            elif btype == _PB:
                ifid, _drops, hi, lo, incl, orig = struct.unpack_from(endian + "HHIIII", mm, body)
                if ifid < len(ifaces):
                    iface = ifaces[ifid]
                    start = body + 20
                    yield RawPacket(
                        _ts_to_ns((hi << 32) | lo, iface),
                        iface.linktype,
                        mm[start : start + incl],
                        orig,
                        ifid,
                    )
            elif btype == _SPB and ifaces:
                (orig,) = struct.unpack_from(endian + "I", mm, body)
                iface = ifaces[0]
                incl = min(orig, blen - 16, iface.snaplen or orig)
                yield RawPacket(0, iface.linktype, mm[body + 4 : body + 4 + incl], orig, 0)
            pos += blen
        if pos != size:
            self.truncated = True


def _options(
    buf: mmap.mmap | bytes, pos: int, end: int, endian: str
) -> Iterator[tuple[int, bytes]]:
    while pos + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, pos)
        if code == 0:
            return
        pos += 4
        yield code, bytes(buf[pos : pos + length])
        pos += (length + 3) & ~3


def first_linktype(path: Path) -> int:
    """The link type of the first interface of a capture file."""
    with PcapReader(path) as r:
        if r.linktypes:
            return r.linktypes[0]
        for pkt in r:
            return pkt.linktype
    return LINKTYPE_ETHERNET


# --------------------------------------------------------------------------- writer


def _opt(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


_OPT_END = b"\0\0\0\0"


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class PcapngWriter:
    """Write a pcapng file: `add_interface` first, then `write_packet` for each packet."""

    def __init__(self, path: Path, *, application: str = "hopcap") -> None:
        self.path = Path(path)
        try:
            self._fh: BinaryIO = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115
        except OSError as exc:
            raise BundleError(f"cannot write {self.path}: {exc.strerror}") from exc
        opts = _opt(4, application.encode()) + _OPT_END  # shb_userappl
        body = struct.pack("<IHHq", _BOM, 1, 0, -1) + opts
        self._fh.write(_block(_SHB, body))
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
        self._fh.write(_block(_IDB, struct.pack("<HHI", linktype, 0, snaplen) + opts))
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
        self._fh.write(
            self._epb_head.pack(
                _EPB, total, iface, ts >> 32, ts & 0xFFFFFFFF, incl, max(orig_len, incl)
            )
        )
        self._fh.write(data)
        self._fh.write(b"\0" * pad + opts + struct.pack("<I", total))
        self.packets += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PcapngWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- headers


def _past_l2(data: bytes, off: int, et: int) -> tuple[int, int]:
    """A PPPoE session header or an MPLS label stack at `off`: (offset, ethertype) after it."""
    n = len(data)
    if et == 0x8864 and n >= off + 8:  # PPPoE session: 6-byte header, PPP protocol
        et = _PPP_ET.get((data[off + 6] << 8) | data[off + 7], 0)
        off += 8
    if et in (0x8847, 0x8848):  # MPLS: labels up to bottom-of-stack, then IP by version
        for _ in range(8):
            if off + 4 > n:
                return off, 0
            off += 4
            if data[off - 2] & 1:
                v = data[off] >> 4 if off < n else 0
                return off, 0x0800 if v == 4 else 0x86DD if v == 6 else 0
        return off, 0
    return off, et


def l3_offset(linktype: int, data: bytes) -> tuple[int, int] | None:
    """(offset of the IP header, IP version) or None when the packet is not IP."""
    n = len(data)
    if linktype == LINKTYPE_ETHERNET:
        off = 12
        while off + 2 <= n:
            et = (data[off] << 8) | data[off + 1]
            if et in (0x8100, 0x88A8, 0x9100):
                off += 4
                continue
            off, et = _past_l2(data, off + 2, et)
            if et == 0x0800:
                return (off, 4) if n >= off + 20 else None
            if et == 0x86DD:
                return (off, 6) if n >= off + 40 else None
            return None
        return None
    if linktype in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC, LINKTYPE_CHDLC):
        framed = n >= 2 and data[0] == 0xFF and data[1] == 0x03
        if linktype == LINKTYPE_CHDLC or (
            linktype == LINKTYPE_PPP_HDLC and not framed and n >= 4 and data[0] in (0x0F, 0x8F)
        ):  # Cisco HDLC: address, control, ethertype
            if n < 4:
                return None
            et, off = (data[2] << 8) | data[3], 4
        else:  # PPP: [0xFF 0x03] protocol, 1 byte when compressed
            off = 2 if framed else 0
            if off >= n:
                return None
            if data[off] & 1:
                et, off = _PPP_ET.get(data[off], 0), off + 1
            elif off + 2 <= n:
                et, off = _PPP_ET.get((data[off] << 8) | data[off + 1], 0), off + 2
            else:
                return None
        off, et = _past_l2(data, off, et)
    elif linktype == LINKTYPE_LINUX_SLL:
        if n < 16:
            return None
        et = (data[14] << 8) | data[15]
        off = 16
    elif linktype == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return None
        et = (data[0] << 8) | data[1]
        off = 20
    elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_ALT, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return None
        v = data[0] >> 4
        et = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
        off = 0
    elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 5:
            return None
        v = data[4] >> 4
        et = 0x0800 if v == 4 else 0x86DD if v == 6 else 0
        off = 4
    else:
        return None
    if et == 0x0800 and n >= off + 20:
        return off, 4
    if et == 0x86DD and n >= off + 40:
        return off, 6
    return None


@dataclass(frozen=True, slots=True)
class Headers:
    """Where the interesting headers of one packet are."""

    l3: int  # offset of the IP header
    version: int
    proto: int
    l4: int  # offset of the transport header (== len(data) if none)
    src: bytes
    dst: bytes
    sport: int | None
    dport: int | None
    l4_header_len: int  # 0 when unknown / not captured


def parse_headers(linktype: int, data: bytes) -> Headers | None:
    loc = l3_offset(linktype, data)
    if loc is None:
        return None
    off, ver = loc
    n = len(data)
    if ver == 4:
        ihl = (data[off] & 0x0F) * 4
        if ihl < 20:
            return None
        proto = data[off + 9]
        src = bytes(data[off + 12 : off + 16])
        dst = bytes(data[off + 16 : off + 20])
        frag = ((data[off + 6] & 0x1F) << 8) | data[off + 7]
        l4 = off + ihl
        if frag:  # not the first fragment: no transport header here
            return Headers(off, 4, proto, l4, src, dst, None, None, 0)
    else:
        proto = data[off + 6]
        src = bytes(data[off + 8 : off + 24])
        dst = bytes(data[off + 24 : off + 40])
        l4 = off + 40
    sport = dport = None
    hlen = 0
    if proto in (6, 17) and n >= l4 + 4:
        sport = (data[l4] << 8) | data[l4 + 1]
        dport = (data[l4 + 2] << 8) | data[l4 + 3]
        if proto == 6 and n >= l4 + 13:
            hlen = (data[l4 + 12] >> 4) * 4
        elif proto == 17:
            hlen = 8
    elif proto in (1, 58):
        hlen = 8
    return Headers(off, ver, proto, min(l4, n), src, dst, sport, dport, hlen)


def raw_tuple(linktype: int, data: bytes) -> tuple[bytes, int, bytes, int] | None:
    """(src, sport, dst, dport) of a TCP/UDP packet with packed addresses (fast path)."""
    loc = l3_offset(linktype, data)
    if loc is None:
        return None
    off, ver = loc
    if ver == 4:
        if data[off + 9] not in (6, 17) or ((data[off + 6] & 0x1F) << 8) | data[off + 7]:
            return None
        l4 = off + (data[off] & 0x0F) * 4
        if len(data) < l4 + 4:
            return None
        return (
            data[off + 12 : off + 16],
            (data[l4] << 8) | data[l4 + 1],
            data[off + 16 : off + 20],
            (data[l4 + 2] << 8) | data[l4 + 3],
        )
    l4 = off + 40
    if data[off + 6] not in (6, 17) or len(data) < l4 + 4:
        return None
    return (
        data[off + 8 : off + 24],
        (data[l4] << 8) | data[l4 + 1],
        data[off + 24 : off + 40],
        (data[l4 + 2] << 8) | data[l4 + 3],
    )


def addr_str(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def packet_tuple(linktype: int, data: bytes) -> tuple[str, int, str, int] | None:
    """(src, sport, dst, dport) of a TCP/UDP packet, addresses as text."""
    h = parse_headers(linktype, data)
    if h is None or h.sport is None or h.dport is None:
        return None
    return addr_str(h.src), h.sport, addr_str(h.dst), h.dport
