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
# and each conversation at a point as this many more: its Python objects (a datagram
# flow at the point, its legs, hops and matches; a TCP connection's halves, flow, legs
# and matches) beyond its packets', ~1.1 kB (session 32: 100 k DNS conversations of two
# datagrams at two points, ~680 MB at the peak; 200 k SYNs answered by a RST, 1.5 GB),
# and the bytes its verdict keeps: a connection's 4 kB, a datagram flow's 1.5 kB (a DNS
# query and its answer: ~1.4 kB)
FLOW_WEIGHT = 4
VERDICT_BYTES_PER_FLOW = 4096
VERDICT_BYTES_PER_DGRAM_FLOW = 1536
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
    times and each conversation (a TCP connection, a datagram flow) as `FLOW_WEIGHT`
    packets more and its verdict's bytes, by their shares among each file's first records
    (`_head`): what the budget is weighed in, rather more than less (then the slices' scan
    decides with exact counts: `slices.correlate_sliced`). Captures of datagrams counted
    as TCP packets, and of many short conversations counted by their packets alone, were
    not sliced when they needed: 100 k DNS conversations under `--memory 400M` were
    correlated whole in ~680 MB, 200 k SYNs each answered by a RST in 1.5 GB."""
    total = 0
    for p in points:
        if p.pcap is not None:
            path = Path(p.pcap)
            with contextlib.suppress(OSError):
                share, flows, conns = _head(path)
                per_flow = FLOW_WEIGHT + VERDICT_BYTES_PER_DGRAM_FLOW / BYTES_PER_PACKET
                per_conn = FLOW_WEIGHT + VERDICT_BYTES_PER_FLOW / BYTES_PER_PACKET
                # (SYNs per TCP packet over all but the datagrams: a little high where
                # other protocols are many, GRE, OSPF)
                weight = (1 + (DGRAM_WEIGHT - 1) * share + per_flow * share * flows
                          + per_conn * (1 - share) * conns)  # fmt: skip
                total += int(_estimate(path) * weight)
    return total


def _datagram_share(path: Path) -> float:
    """The share of datagrams among the first records of a capture (`_head`)."""
    return _head(path)[0]


def _head(path: Path, sample: int = 1024) -> tuple[float, float, float]:
    """Of the first `sample` records of a capture whose IP packets the capture-file layer
    finds (classic pcap or pcapng; the innermost packet of a tunnel, as the reader counts
    it): the share of datagrams among them, their flows per datagram (distinct addresses,
    ports (an echo's id, an SPI) and protocol, either way: 0.5 for DNS queries and their
    answers; rather more than fewer for long flows, a head sees their start) and the TCP
    connections opened (SYNs) per TCP packet; zeros for anything else."""
    size = path.stat().st_size
    if size < 32:
        return 0.0, 0.0, 0.0
    with (
        path.open("rb") as f,
        mmap.mmap(f.fileno(), min(size, 24 + sample * 1600), prot=mmap.PROT_READ) as head,
    ):
        try:
            rec = next(RecordWalk(path, head).chunks(sample), None)
        except CaptureFileError:
            return 0.0, 0.0, 0.0
        if rec is None or not len(rec):
            return 0.0, 0.0, 0.0
        end = rec.off + rec.cap
        u8 = buffer_u8(head)
        l3, _et, l4, proto, _lim, _tun = L3(u8).find(rec.off, end, end, rec.link)
        ip = l3 >= 0
        seen = int(np.count_nonzero(ip))
        dg = np.nonzero(ip & np.isin(proto, DATAGRAMS))[0]
        tcp = np.nonzero(ip & (proto == 6))[0]
        flows = _flows(head, l3[dg].tolist(), l4[dg].tolist(), proto[dg].tolist())
        # (connections opened, not seen: a head sees the middle of every connection under
        # way when the capture began; SYNs per packet are those of the whole capture)
        conns = sum(1 for b in l4[tcp].tolist() if 0 <= b < len(head) - 13
                    and head[b + 13] & 0x12 == 0x02)  # fmt: skip
        del rec, l3, l4, proto, ip, u8  # (no view of the mapping outlives it)
    if not seen:
        return 0.0, 0.0, 0.0
    n_dg, n_tcp = dg.shape[0], tcp.shape[0]
    return n_dg / seen, flows / n_dg if n_dg else 0.0, conns / n_tcp if n_tcp else 0.0


def _flows(buf: mmap.mmap, l3: list[int], l4: list[int], proto: list[int]) -> int:
    """The datagram flows among the packets at `l3`/`l4` of `buf` (a head's few
    hundred)."""
    keys = set()
    for a, b, p in zip(l3, l4, proto, strict=True):
        if b < 0:
            b = a  # (no transport header read: its addresses only)
        v6 = buf[a] >> 4 == 6
        src, dst = (buf[a + 8 : a + 24], buf[a + 24 : a + 40]) if v6 else (
            buf[a + 12 : a + 16], buf[a + 16 : a + 20])  # fmt: skip
        if p == 17:
            sp, dp = buf[b : b + 2], buf[b + 2 : b + 4]
        else:  # an echo's id, an ESP SPI, an ICMP error's type (near enough)
            sp = dp = buf[b + 4 : b + 6] if p != 50 else buf[b : b + 4]
        keys.add((p, frozenset(((src, sp), (dst, dp)))))
    return len(keys)


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
