"""Exact copies of packets in one capture, removed as it is read.

A switch's mirror (SPAN) port that copies both directions of a link, or a bridge and its
ports in one `tcpdump -i any`, hands the very same packet twice, microseconds apart. As one
point of a path the second copies read as drops and injections. They are removed here
(what `editcap -D` does by hand), and the reader says how many.

Exact means every column the reader keeps of the packet (addresses, ports, sequence and
acknowledgement numbers, flags, window, IP ID, TTL, TOS, lengths, TSval, MSS, tunnel) and
the bytes of its TCP options and payload alike; of a datagram, every column and its
payload. Not the link layer: the copies of `-i any` differ in their interface index (so
`editcap -D`, which hashes whole frames, misses them), a trunk's in its VLAN tag, a remote
mirror's in its ERSPAN header; nor the checksums, which the rest determines. A router or
firewall that forwards a packet lowers its TTL: not a copy (`reader.forwarded_twice` warns
about it). A retransmission has another IP ID or TSval, or comes later: it stays.

The rule: row j is a copy when the latest earlier row (file order) with the same key came
within MIRRORED_NS of it (and is not older than 2 * MIRRORED_NS before the latest packet
so far: all that a reader of the file in chunks must carry from one chunk to the next).
They are removed, every one in the file, when they are `many` (a tenth of its packets):
a few exact copies among many are the network's own duplicates, which the verdict shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.correlate._fastwalk import find_copies, payloads_differ
from hopcap.correlate.conns import mix
from hopcap.correlate.dgram import DgramTable, take_rows
from hopcap.correlate.reader import PacketTable, row_columns

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

MIRRORED_NS = 1_000_000  # a copy made by a mirror port or a bridge comes within this
# the key columns (the first HASHED of each hashed: those that tell one packet from the
# next); `pl_off` is where, not what
TCP_KEY = ("seq", "ack", "tsval", "ipid", "sport", "dport", "src_lo", "dst_lo", "src_hi",
           "dst_hi", "v", "flags", "win", "ttl", "tos", "plen", "pl_cap", "mss", "opt_back",
           "opt_len", "tun")  # fmt: skip
# (not the `in_*` columns of the packet an ICMP error quotes: the payload compared holds
# it, and a row that is no error has whatever bytes followed it there)
DGRAM_KEY = ("h", "ipid", "iseq", "sport", "dport", "src_lo", "dst_lo", "src_hi", "dst_hi",
             "v", "proto", "ttl", "tos", "ip_len", "plen", "pl_cap", "itype", "icode", "spi",
             "mtu", "role")  # fmt: skip
HASHED = 4


def _arrays(t: PacketTable | DgramTable) -> tuple[list[Any], int]:
    """The key columns of `t`, then its regions of bytes (offset, back, length), and how
    many key columns."""
    tcp = isinstance(t, PacketTable)
    key = TCP_KEY if tcp else DGRAM_KEY
    arrs: list[Any] = [getattr(t, c) for c in key]
    arrs += [t.pl_off, None, t.pl_cap]  # the payload
    if isinstance(t, PacketTable):
        arrs += [t.pl_off, t.opt_back, t.opt_len]  # the TCP options
    return arrs, len(key)


def _mask(buf: Any, ts: I64, arrs: list[Any], ncols: int) -> Mask:
    got = find_copies(buf, ts, arrs, ncols, HASHED, MIRRORED_NS)
    return got if got is not None else _numpy(buf, ts, arrs, ncols)


def _numpy(buf: Any, ts: I64, arrs: list[Any], ncols: int) -> Mask:
    """`_mask` without a compiler: the same rule, by a sort of the rows' key hashes."""
    n = int(ts.shape[0])
    out = np.zeros(n, np.bool_)
    if n < 2:
        return out
    cols = [np.asarray(a) for a in arrs[:ncols]]
    h = mix(*cols)
    o = np.argsort(h, kind="stable")
    hs = h[o]
    same = hs[1:] == hs[:-1]
    j, p = o[1:][same], o[:-1][same]  # p: the latest earlier row of j's hash
    t64 = np.asarray(ts, np.int64)
    top = np.maximum.accumulate(t64)[j - 1]  # the latest packet before j
    ok = (t64[p] >= top - 2 * MIRRORED_NS) & (np.abs(t64[j] - t64[p]) <= MIRRORED_NS)
    j, p = j[ok], p[ok]
    ok = np.ones(j.shape[0], np.bool_)
    for c in cols:
        ok &= c[j] == c[p]
    for g in range(ncols, len(arrs), 3):
        off, back, ln = (None if a is None else np.asarray(a, np.int64) for a in arrs[g : g + 3])
        assert off is not None and ln is not None
        oj, op = off[j], off[p]
        if back is not None:
            oj, op = oj - back[j], op - back[p]
        ok &= ln[j] == ln[p]
        ok &= ~payloads_differ(buf, oj, buf, op, np.where(ok, ln[j], 0))
    out[j[ok]] = True
    return out


def copy_mask(t: PacketTable | DgramTable) -> Mask | None:
    """The rows of a whole capture's table that are exact copies (None: none)."""
    if len(t) < 2:
        return None
    arrs, ncols = _arrays(t)
    m = _mask(t.buf, t.ts, arrs, ncols)
    return m if m.any() else None


def many(copies: int, rows: int) -> bool:
    """Whether `copies` exact copies among `rows` packets (TCP and datagrams, copies
    included) are a mirror port's or a bridge's, to be removed: 4 at least, and a tenth of
    the packets. A few among many are the network's duplicates (a router's, a link
    layer's retransmission): they stay, and read as the duplicates they are."""
    return copies >= 4 and copies * 10 >= rows


def drop_copies(t: PacketTable) -> int:
    """Remove the exact copies of a whole capture's table (TCP and datagrams) in place,
    and from its records, when they are `many`; how many."""
    from hopcap.correlate.reader import _narrow

    m = copy_mask(t)
    d = t.dgram
    dm = copy_mask(d) if d is not None else None
    n = sum(int(x.sum()) for x in (m, dm) if x is not None)
    if not many(n, len(t) + (len(d) if d is not None else 0)):
        return 0
    if m is not None:
        for c, a in row_columns(t, ~m).items():
            setattr(t, c, a)
        _narrow(t)
    if d is not None and dm is not None:
        t.dgram = take_rows(d, ~dm)
    t.records -= n  # (the point's packets in the verdict: those read, copies removed)
    return n


def remove_copies(t: PacketTable) -> None:
    """`drop_copies`, and a warning in the table's that says how many."""
    n = drop_copies(t)
    if n:
        t.warnings.append(copies_warning(t.path.name, n))


def copies_warning(name: str, n: int) -> str:
    what = "exact copy" if n == 1 else "exact copies"
    return (
        f"{name}: {n} {what} within 1 ms removed (a mirror port or a bridge in -i any): the "
        "same packet again, IP ID, TSval and payload alike, which as one point read as drops "
        "and injections; capture one interface to have none"
    )


class Stream:
    """`copy_mask` of a capture read a chunk at a time (the time slices' scan): the same
    rows as over the whole file. It carries the rows of the last 2 * MIRRORED_NS; a chunk
    is looked at alone, and its first rows (up to its last within MIRRORED_NS of the
    latest packet before it: the only ones a carried row can be the copy of) again after
    the carried ones."""

    def __init__(self) -> None:
        self.carry: tuple[I64, list[Any]] | None = None
        self.top = 0  # the latest packet so far (while carry is not None)

    def mask(self, t: PacketTable | DgramTable) -> Mask | None:
        n = len(t)
        if not n:
            return None
        arrs, ncols = _arrays(t)
        ts = np.asarray(t.ts, np.int64)
        m = _mask(t.buf, ts, arrs, ncols)
        if self.carry is not None:
            near = np.flatnonzero(ts <= self.top + MIRRORED_NS)
            if near.shape[0]:
                head = int(near[-1]) + 1
                cts, carr = self.carry
                both = [
                    None if a is None else np.concatenate([c, np.asarray(a)[:head]])
                    for c, a in zip(carr, arrs, strict=True)
                ]
                k = cts.shape[0]
                m[:head] = _mask(t.buf, np.concatenate([cts, ts[:head]]), both, ncols)[k:]
        top = int(ts.max()) if self.carry is None else max(self.top, int(ts.max()))
        keep = np.flatnonzero(ts >= top - 2 * MIRRORED_NS)
        rows = [None if a is None else np.asarray(a)[keep] for a in arrs]
        if self.carry is not None:
            cts, carr = self.carry
            old = np.flatnonzero(cts >= top - 2 * MIRRORED_NS)
            rows = [
                None if a is None else np.concatenate([c[old], a])
                for c, a in zip(carr, rows, strict=True)
            ]
            ts_keep = np.concatenate([cts[old], ts[keep]])
        else:
            ts_keep = ts[keep]
        self.carry, self.top = (ts_keep, rows), top
        return m if m.any() else None
