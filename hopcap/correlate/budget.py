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
