"""Will the captures fit the memory budget? (decided before any is read)

Every correlation asks this first; only the captures that may not fit are correlated by
time slices (`hopcap.correlate.slices`, which is imported then and only then: its
machinery, forked workers and all, costs ~7 ms to import).
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hopcap.capfile.walk import PCAP_MAGICS

if TYPE_CHECKING:
    from hopcap.model import PointInput

# anonymous memory the engine takes per packet of a slice (table, halves, matches,
# verdict objects; measured 170-260 bytes at 1.6-6.4 M packets), with headroom
BYTES_PER_PACKET = 320
# a datagram counts as this many packets: its table row (35 columns) and its flows' and
# matches' arrays take more than a TCP packet's (measured ~490 bytes a datagram unsliced,
# 6 M datagrams; ~660 at the peak of reading 800 k QUIC-like ones, session 31)
DGRAM_WEIGHT = 2
DATAGRAMS = (1, 17, 50, 58)  # ICMP, UDP, ESP, ICMPv6


def default_budget() -> int:
    """Half of the memory available now (Linux), else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30


def estimated_packets(points: Sequence[PointInput]) -> int:
    """About the packets of `points`' files, rather more than fewer: a classic pcap's
    size over the mean of its first records (+25 %); other files as 60-byte records."""
    total = 0
    for p in points:
        if p.pcap is not None:
            with contextlib.suppress(OSError):
                total += _estimate(Path(p.pcap))
    return total


def estimated_load(points: Sequence[PointInput]) -> int:
    """`estimated_packets` with each datagram (UDP, ICMP, ESP) counted `DGRAM_WEIGHT`
    times, by their share among each file's first records: what the budget is weighed in
    (a capture of datagrams alike counted as TCP packets was not sliced when it needed)."""
    total = 0
    for p in points:
        if p.pcap is not None:
            path = Path(p.pcap)
            with contextlib.suppress(OSError):
                share = _datagram_share(path)
                total += int(_estimate(path) * (1 + (DGRAM_WEIGHT - 1) * share))
    return total


def _datagram_share(path: Path, sample: int = 1024) -> float:
    """The share of datagrams among the first `sample` records of a classic pcap or
    pcapng file whose link layer is read here (Ethernet with VLAN tags, Linux cooked v1
    and v2, null/loopback, raw IP); 0 for anything else."""
    size = path.stat().st_size
    if size < 32:
        return 0.0
    with (
        path.open("rb") as f,
        mmap.mmap(f.fileno(), min(size, 24 + sample * 1600), prot=mmap.PROT_READ) as head,
    ):
        seen = dgrams = 0
        for link, at, cap in _records(head, sample):
            proto = _ip_proto(head, link, at, at + cap)
            if proto is not None:
                seen += 1
                dgrams += proto in DATAGRAMS
    return dgrams / seen if seen else 0.0


def _records(head: mmap.mmap, sample: int) -> list[tuple[int, int, int]]:
    """(link type, offset, captured length) of the first records in `head`."""
    out: list[tuple[int, int, int]] = []
    kind = PCAP_MAGICS.get(head[:4])
    end = len(head)
    if kind is not None:  # classic pcap
        u32 = struct.Struct(kind[0] + "I").unpack_from
        link = u32(head, 20)[0] & 0xFFFF
        pos = 24
        while len(out) < sample and pos + 16 <= end:
            cap = u32(head, pos + 8)[0]
            out.append((link, pos + 16, min(cap, end - pos - 16)))
            pos += 16 + cap
        return out
    if head[:4] != b"\x0a\x0d\x0d\x0a" or end < 12:
        return out
    e = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    u32, u16 = struct.Struct(e + "I").unpack_from, struct.Struct(e + "H").unpack_from
    links: list[int] = []
    pos = 0
    while len(out) < sample and pos + 12 <= end:
        btype, blen = u32(head, pos)[0], u32(head, pos + 4)[0]
        if blen < 12:
            break
        if btype == 0x0A0D0D0A:  # a new section: its interfaces
            links = []
        elif btype == 1 and pos + 10 <= end:  # interface description
            links.append(u16(head, pos + 8)[0])
        elif btype == 6 and pos + 28 <= end:  # enhanced packet
            iface, cap = u32(head, pos + 8)[0], u32(head, pos + 20)[0]
            if iface < len(links):
                out.append((links[iface], pos + 28, min(cap, end - pos - 28)))
        pos += blen
    return out


def _ip_proto(b: mmap.mmap, link: int, at: int, end: int) -> int | None:
    """The IP protocol (IPv6: the first next header) of the frame at `at`, or None."""
    if link == 1:  # Ethernet, VLAN tags
        et_at = at + 12
        while et_at + 2 <= end and b[et_at : et_at + 2] in (b"\x81\x00", b"\x88\xa8"):
            et_at += 4
        ip = et_at + 2
    elif link == 113:  # Linux cooked
        ip = at + 16
    elif link == 276:  # Linux cooked v2
        ip = at + 20
    elif link in (0, 108):  # null, loopback: a 4-byte address family
        ip = at + 4
    elif link in (12, 14, 101, 228, 229):  # raw IP
        ip = at
    else:
        return None
    if ip + 10 > end:
        return None
    v = b[ip] >> 4
    return b[ip + 9] if v == 4 else b[ip + 6] if v == 6 else None


def _estimate(path: Path, sample: int = 4096) -> int:
    """The estimate of one file from its first `sample` records, found in the first
    24 + 1600 * `sample` bytes (mapped, not read: the walk touches only the pages its
    records start in)."""
    size = path.stat().st_size
    if size < 4:
        return size // 76
    with (
        path.open("rb") as f,
        mmap.mmap(f.fileno(), min(size, 24 + sample * 1600), prot=mmap.PROT_READ) as head,
    ):
        kind = PCAP_MAGICS.get(head[:4])
        if kind is None:
            return size // 76
        caplen = struct.Struct(kind[0] + "I").unpack_from
        pos, n, end = 24, 0, len(head) - 16
        while n < sample and pos <= end:
            pos += 16 + caplen(head, pos + 8)[0]
            n += 1
    if n < 64 or pos <= 24:
        return size // 76
    return int((size - 24) / ((pos - 24) / n) * 1.25) + 1
