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

import numpy as np

from hopcap.capfile.layers import L3, buffer_u8
from hopcap.capfile.walk import PCAP_MAGICS, CaptureFileError, RecordWalk

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
    """The share of datagrams among the first `sample` records of a capture whose IP
    packets the capture-file layer finds (classic pcap or pcapng; the innermost packet of
    a tunnel, as the reader counts it); 0 for anything else."""
    size = path.stat().st_size
    if size < 32:
        return 0.0
    with (
        path.open("rb") as f,
        mmap.mmap(f.fileno(), min(size, 24 + sample * 1600), prot=mmap.PROT_READ) as head,
    ):
        try:
            rec = next(RecordWalk(path, head).chunks(sample), None)
        except CaptureFileError:
            return 0.0
        if rec is None or not len(rec):
            return 0.0
        end = rec.off + rec.cap
        l3, _et, _l4, proto, _lim, _tun = L3(buffer_u8(head)).find(rec.off, end, end, rec.link)
        ip = l3 >= 0
        seen = int(np.count_nonzero(ip))
        dgrams = int(np.count_nonzero(ip & np.isin(proto, DATAGRAMS)))
        del rec, l3, proto, ip  # (no view of the mapping outlives it)
    return dgrams / seen if seen else 0.0


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
