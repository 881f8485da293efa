"""F5 BIG-IP Ethernet trailers: what TMM appends after the IP packet on `tcpdump -i 0.0:nnn`.

BIG-IP's tcpdump on a TMM interface or VLAN with a noise suffix (`:n` low, `:nn` medium,
`:nnn` high detail; a trailing `p` also captures the peer flow) writes, after the end of
the IP packet in each Ethernet frame, a trailer of TMM's own. hopcap never reads it as
payload (the reader takes lengths from the IP header); this module reads what it says.

Two formats (facts from the Wireshark F5 Ethernet trailer dissector's notes):

* Legacy (BIG-IP up to 14.0): type-length-version blocks, `type` 1 low / 2 medium /
  3 high, `length` the bytes after the type and length bytes, `version` 0-3.
  - low: ingress, slot, TMM, VIP name (16 bytes in v0; `vip_len` + name in v1); the
    9.4 layout (v0, 35 bytes) also has 32-bit flow and peer ids;
  - medium: flow id and peer flow id (32-bit in the 10.x layout, 64-bit after), flags,
    flow type, HA unit, ingress slot/port, priority (v2+), and an RST cause (v1+);
  - high: the peer flow's IP protocol, VLAN, remote and local address (16 bytes each,
    IPv4 mapped as ::ffff:a.b.c.d or with F5's route-domain prefix) and ports.
* DPT (BIG-IP 14.1 and later): a header `f5 de b0 f5`, total length (2), version (2),
  then TLVs of provider (2), type (2), length (2, the TLV's own header included) and
  version (2). Provider 1 ("noise") carries the same three levels: low (type 1, v2/v3:
  flags, slot, TMM, `vip_len`, VIP name), medium (type 2, v4: flow id, peer id, two flag
  words, flow type, HA unit, slot, port, priority, RST cause) and high (type 3, v1: the
  peer as above). Other providers (e.g. TLS secrets) are skipped.

On a full proxy the client-side connection's flow id is the server-side connection's
peer id and the other way round: that links both sides exactly (`hopcap.correlate.link`).

The first record of a capture with noise is often a pseudo packet (`F5-Pseudo-pkt`:
tcpdump's command line, the BIG-IP version, host name, platform): `fileinfo` reads it.

Everything here is pure and defensive: a damaged or truncated trailer is ignored.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hopcap import npsets

if TYPE_CHECKING:
    from hopcap.correlate.reader import PacketTable

DPT_MAGIC = b"\xf5\xde\xb0\xf5"
LOW, MED, HIGH = 1, 2, 3
PROVIDER_NOISE = 1
_MIN_SANE, _MAX_SANE = 7, 140  # legacy block lengths (type and length bytes included)
_V4_MAPPED = bytes(10) + b"\xff\xff"
_RTDOM = bytes.fromhex("26200000 0c10f501 0000".replace(" ", ""))
FILEINFO_MAGIC = bytes(12) + b"\x05\xff" + b"F5-Pseudo-pkt\x00"
MIN_TRAILER = 7  # fewer bytes after the IP packet are Ethernet padding or an FCS
PROBE_BYTES = 1 << 18  # how much of a file is looked at before deciding to read all of it


@dataclass(frozen=True)
class Peer:
    """The other side of a proxied flow, from high detail noise."""

    proto: int
    vlan: int
    remote: str
    remote_port: int
    local: str
    local_port: int
    route_domain: int | None = None


@dataclass(frozen=True)
class Trailer:
    flow_id: int | None = None  # None: no medium detail in the trailer
    peer_id: int | None = None  # 0: no peer flow (yet)
    ingress: bool | None = None
    slot: int | None = None
    tmm: int | None = None
    vip: str | None = None
    peer: Peer | None = None
    rst_cause: str | None = None
    fmt: str = "legacy"  # or "dpt"
    length: int = 0  # trailer bytes understood


# ------------------------------------------------------------------------- decoding


def _addr(raw: bytes) -> tuple[str, int | None]:
    if raw[:12] == _V4_MAPPED:
        return str(ipaddress.IPv4Address(raw[12:16])), None
    if raw[:10] == _RTDOM:
        return str(ipaddress.IPv4Address(raw[12:16])), int.from_bytes(raw[10:12], "big")
    return str(ipaddress.IPv6Address(raw)), None


def _peer(b: bytes, o: int) -> Peer:
    """High detail at `o`: proto, vlan, remote, local, remote port, local port (39 bytes)."""
    proto, vlan = b[o], int.from_bytes(b[o + 1 : o + 3], "big")
    remote, rd = _addr(b[o + 3 : o + 19])
    local, _ = _addr(b[o + 19 : o + 35])
    rport, lport = struct.unpack_from(">HH", b, o + 35)
    return Peer(proto, vlan, remote, rport, local, lport, rd)


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace")


def _rst(b: bytes, at: int, end: int) -> str | None:
    """An RST cause whose length byte is at `at`: version/peer byte, 8 bytes of cause
    and line, then its text."""
    n = b[at]
    if n < 9 or at + 1 + n > end or b[at + 1] >> 1 != 0:
        return None
    return _text(b[at + 10 : at + 1 + n]) or None


def _legacy(b: bytes, o: int, kind: int, n: int, ver: int, f: dict[str, object]) -> bool:
    """One legacy block of `n` bytes at `o`; its fields into `f`. False: not valid."""
    if kind == LOW:
        if ver == 0 and n in (22, 35):
            f.update(ingress=b[o + 3] != 0, slot=b[o + 4] + (0 if n == 35 else 1), tmm=b[o + 5])
            if n == 35:  # 9.4: the flow ids are here
                f["flow_id"], f["peer_id"] = struct.unpack_from(">II", b, o + 6)
            f["vip"] = _text(b[o + n - 16 : o + n]) or None
            return True
        if ver == 1 and n >= 7 and b[o + 6] + 7 == n:
            f.update(ingress=b[o + 3] != 0, slot=b[o + 4] + 1, tmm=b[o + 5])
            f["vip"] = _text(b[o + 7 : o + n]) or None
            return True
        return False
    if kind == MED:
        if ver == 0:
            if n == 8:  # 9.4: no flow ids in medium
                return True
            if n == 21:
                f["flow_id"], f["peer_id"] = struct.unpack_from(">II", b, o + 3)
                return True
            if n == 29:
                f["flow_id"], f["peer_id"] = struct.unpack_from(">QQ", b, o + 3)
                return True
            return False
        fixed = {1: 30, 2: 31, 3: 35}.get(ver)
        if fixed is None or n < fixed or b[o + fixed - 1] + fixed != n:
            return False
        f["flow_id"], f["peer_id"] = struct.unpack_from(">QQ", b, o + 3)
        if n > fixed:
            f["rst_cause"] = _rst(b, o + fixed - 1, o + n)
        return True
    if kind == HIGH:
        if ver != 0 or n != 42:
            return False
        f["_high"] = (o + 3,)
        return True
    return False


def _dpt(b: bytes, o: int, n: int, f: dict[str, object]) -> None:
    """The TLVs of one DPT block of `n` bytes at `o` (version already checked)."""
    p = o + 8
    end = o + n
    while end - p >= 8:
        prov, kind, tlen, ver = struct.unpack_from(">HHHH", b, p)
        if tlen < 8 or tlen > end - p:
            return  # a bad length: the next TLV cannot be found
        d = p + 8
        if prov == PROVIDER_NOISE:
            if kind == LOW and ver in (2, 3) and tlen >= 12:
                flags, vlen = b[d], b[d + 3]
                f.update(ingress=(flags if ver == 2 else flags & 1) != 0, slot=b[d + 1] + 1)
                f["tmm"] = b[d + 2]
                if d + 4 + vlen <= p + tlen:
                    f["vip"] = _text(b[d + 4 : d + 4 + vlen]) or None
            elif kind == MED and ver == 4 and tlen >= 8 + 32:
                f["flow_id"], f["peer_id"] = struct.unpack_from(">QQ", b, d)
                if tlen > 8 + 32:
                    f["rst_cause"] = _rst(b, d + 31, p + tlen)
            elif kind == HIGH and ver == 1 and tlen >= 8 + 39:
                f["_high"] = (d,)
        p += tlen


def parse_trailer(data: bytes) -> Trailer | None:
    """The trailer in `data` (the bytes after the IP packet), or None when there is none
    that can be read. Like Wireshark, bytes that start no valid block are skipped one at
    a time (Ethernet padding may precede the trailer in short frames)."""
    b = bytes(data)
    f: dict[str, object] = {}
    fmt = None
    used = 0
    o = 0
    size = len(b)
    while size - o > 4:
        if b[o : o + 4] == DPT_MAGIC and size - o >= 8:
            n, ver = struct.unpack_from(">HH", b, o + 4)
            if 8 <= n <= size - o:
                if ver == 1:
                    _dpt(b, o, n, f)
                fmt, used, o = "dpt", used + n, o + n
                continue
        kind, n, ver = b[o], b[o + 1] + 2, b[o + 2]
        if (
            LOW <= kind <= HIGH
            and _MIN_SANE <= n <= min(_MAX_SANE, size - o)
            and ver <= 3
            and _legacy(b, o, kind, n, ver, f)
        ):
            fmt, used, o = fmt or "legacy", used + n, o + n
            continue
        o += 1
    if fmt is None:
        return None
    high = f.pop("_high", None)
    peer = None
    # high detail is meaningful only for a flow that has a peer (medium says so)
    if isinstance(high, tuple) and f.get("peer_id"):
        peer = _peer(b, high[0])
    return Trailer(peer=peer, fmt=fmt, length=used, **f)  # type: ignore[arg-type]


def fileinfo(frame: bytes) -> dict[str, str] | None:
    """The F5 capture-information pseudo packet (the first record of a capture with noise):
    {"CMD": tcpdump's command line, "VER": BIG-IP version, "HOST", "PLAT", "PROD"}."""
    if not frame.startswith(FILEINFO_MAGIC):
        return None
    out: dict[str, str] = {}
    for item in frame[len(FILEINFO_MAGIC) :].split(b"\x00"):
        key, sep, val = item.decode("ascii", "replace").partition(": ")
        if sep and key in ("CMD", "VER", "HOST", "PLAT", "PROD"):
            out[key] = val
    return out


# ------------------------------------------------------------------------- a capture


@dataclass(frozen=True)
class TableTrailers:
    """The trailers of a capture's TCP packets or datagrams: row -> (flow id, peer id)."""

    rows: np.ndarray  # rows (of the PacketTable, or of its DgramTable) with flow ids
    flow: np.ndarray  # uint64
    peer: np.ndarray  # uint64
    info: dict[str, str] | None  # the fileinfo pseudo packet, when there was one


def _trailing(
    t: Any, off: np.ndarray, cap: np.ndarray, link: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, start, end) of the bytes after the IP packet of each row of `t` (a
    PacketTable or a DgramTable: payload offset and lengths) whose record is among
    `off`/`cap` (record data offsets, in file order) and has enough of them."""
    from hopcap.capfile.layers import LINK_ETHERNET

    if not off.shape[0] or not len(t):
        z = np.zeros(0, np.int64)
        return z, z, z
    pl_off = t.pl_off.astype(np.int64)
    k = np.searchsorted(off, pl_off, "right") - 1
    ok = k >= 0
    k = np.clip(k, 0, None)
    rec_end = off[k] + cap[k]
    ip_end = pl_off + t.plen.astype(np.int64)
    ok &= (pl_off < rec_end) & (link[k] == LINK_ETHERNET)
    # a packet cut by the snap length has no trailer to read; tunnels are not F5's
    ok &= t.pl_cap.astype(np.int64) == t.plen.astype(np.int64)
    if getattr(t, "tun", None) is not None:
        ok &= np.asarray(t.tun) == 0
    ok &= rec_end - ip_end >= MIN_TRAILER
    rows = np.nonzero(ok)[0]
    return rows, ip_end[rows], rec_end[rows]


def probe_head(path: Path, head: Any) -> tuple[bool, dict[str, str] | None]:
    """Do the first records in `head` (the start of a capture file) carry F5 trailers?
    And the capture-information pseudo packet, when it is the first record. Every
    Ethernet record with bytes after its IP packet is looked at, whatever it carries."""
    from hopcap.capfile.layers import LINK_ETHERNET, be16, buffer_u8, decode
    from hopcap.correlate.reader import walk_records

    rec = walk_records(path, head)
    if not rec.off.shape[0]:
        return False, None
    o0, c0 = int(rec.off[0]), int(rec.cap[0])
    info = fileinfo(bytes(head[o0 : o0 + c0]))
    if info is not None:
        return True, info
    eth = rec.link == LINK_ETHERNET
    off, cap = rec.off[eth], rec.cap[eth]
    if not off.shape[0]:
        return False, None
    u8 = buffer_u8(head)
    lay = decode(u8, off, cap, rec.link[eth])
    end = off + cap
    ip = (lay.l3 >= 0) & (lay.tun == 0) & (lay.l3 + 40 <= end)  # tunnels are not F5's
    l3, et, end = lay.l3[ip], lay.et[ip], end[ip]
    ip_end = np.where(et == 0x86DD, l3 + 40 + be16(u8, l3 + 4), l3 + be16(u8, l3 + 2))
    ok = end - ip_end >= MIN_TRAILER  # a frame cut by the snap length has no trailer
    found = any(
        parse_trailer(bytes(head[s:e])) is not None
        for s, e in zip(ip_end[ok].tolist(), end[ok].tolist(), strict=True)
    )
    return found, None


def probe_capture(path: Path) -> bool:
    """Does the capture file at `path` carry F5 trailers (a look at its first 256 KiB
    only, read, not mapped)? False for a file that cannot be read (the reader says why,
    later)."""
    from hopcap.capfile.walk import CaptureFileError, read_head
    from hopcap.errors import CorrelationError

    try:
        head = read_head(path, PROBE_BYTES)
    except CaptureFileError:
        return False
    if not head:
        return False
    try:
        return probe_head(path, head)[0]
    except (CaptureFileError, CorrelationError, ValueError):
        return False


def has_trailers(t: PacketTable, *, dgram: bool = False) -> bool:
    """Whether `read_table_trailers(t, ..., dgram=dgram)` may find any trailers (the same
    probe of the start of the file): a caller that prepares its `wanted` rows at some
    cost learns first that an ordinary capture needs none."""
    return _probe_table(t, dgram=dgram)[0]


def _probe_table(t: PacketTable, *, dgram: bool) -> tuple[bool, dict[str, str] | None]:
    from hopcap.capfile.layers import LINK_ETHERNET

    rows_of = t.dgram if dgram else t
    if LINK_ETHERNET not in t.link_types or rows_of is None or not len(rows_of):
        return False, None
    buf = t.buf
    head = bytes(buf[:PROBE_BYTES]) if len(buf) > PROBE_BYTES else buf
    return probe_head(t.path, head)


def read_table_trailers(
    t: PacketTable, wanted: np.ndarray | None = None, *, dgram: bool = False
) -> TableTrailers | None:
    """The F5 trailers of a capture's TCP packets (`dgram`: of its datagrams, `t.dgram`)
    (of the rows `wanted` only, when given), or None when it has none. A probe of the
    start of the file decides whether to walk all of it (an ordinary capture costs one
    short walk). `t` may be a part of a capture
    (`hopcap.correlate.stages`: its rows point into the whole file)."""
    from hopcap.correlate.reader import walk_records

    found, info = _probe_table(t, dgram=dgram)
    if not found:
        return None
    rows_of = t.dgram if dgram else t
    assert rows_of is not None
    buf = t.buf
    rec = walk_records(t.path, buf)
    rows, start, end = _trailing(rows_of, rec.off, rec.cap, rec.link)
    if wanted is not None:
        m = npsets.isin(rows, wanted)
        rows, start, end = rows[m], start[m], end[m]
    keep: list[int] = []
    flows: list[int] = []
    peers: list[int] = []
    for r, s, e in zip(rows.tolist(), start.tolist(), end.tolist(), strict=True):
        tr = parse_trailer(bytes(buf[s:e]))
        if tr is not None and tr.flow_id:
            keep.append(r)
            flows.append(tr.flow_id)
            peers.append(tr.peer_id or 0)
    return TableTrailers(
        np.array(keep, np.int64), np.array(flows, np.uint64), np.array(peers, np.uint64), info
    )
