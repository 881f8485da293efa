"""Will the captures fit the memory budget? (decided before any is read)

Every correlation asks this first; only the captures that may not fit are correlated by
time slices (`hopcap.correlate.slices`, which is imported then and only then: its
machinery, forked workers and all, costs ~7 ms to import).
"""

from __future__ import annotations

import contextlib
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
_FIRST_READ = 1 << 18  # bytes of a file's head read at first (most samples fit)


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
    24 + 1600 * `sample` bytes; the head is read as far as they need (256 KiB, then
    doubled), not all of those bytes at once."""
    size = path.stat().st_size
    limit = 24 + sample * 1600
    with path.open("rb") as f:
        head = f.read(min(_FIRST_READ, limit))
        kind = PCAP_MAGICS.get(head[:4])
        if kind is None:
            return size // 76
        endian = kind[0] + "I"
        pos, n = 24, 0
        while True:
            while n < sample and pos + 16 <= len(head):
                pos += 16 + struct.unpack_from(endian, head, pos + 8)[0]
                n += 1
            if n >= sample or len(head) >= limit or pos + 16 <= len(head):
                break
            more = f.read(min(len(head), limit - len(head)))
            if not more:
                break
            head += more
    if n < 64 or pos <= 24:
        return size // 76
    return int((size - 24) / ((pos - 24) / n) * 1.25) + 1
