"""Connections at one capture point: half-connections (one direction of one tuple between
SYN boundaries) and their pairing into connections."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar, cast

import numpy as np
import numpy.typing as npt
import xxhash

from hopcap import npsets
from hopcap.correlate._fastwalk import fingerprint_rows, index_halves, mix_columns
from hopcap.correlate._objects import make_halves
from hopcap.correlate.reader import ACK, FIN, RST, SYN, PacketTable, endpoint_str

if TYPE_CHECKING:
    from hopcap.correlate.link import ConnExchanges

I64 = npt.NDArray[np.int64]
M32 = 0xFFFFFFFF
U64 = npt.NDArray[np.uint64]

_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x27D4EB2F165667C5)


def mix(*cols: npt.NDArray[np.uint64] | I64) -> U64:
    """A 64-bit hash of several integer columns, row by row (vectorised)."""
    fast = mix_columns(cols)
    if fast is not None:
        return fast
    h = np.zeros(cols[0].shape[0], np.uint64)
    primes = (_P1, _P2, _P3, _P4)
    with np.errstate(over="ignore"):
        for i, c in enumerate(cols):
            x = c.astype(np.uint64) * primes[i % 4] + np.uint64(i + 1)
            x ^= x >> np.uint64(29)
            h = (h ^ x) * _P1
            h ^= h >> np.uint64(32)
    return h


def signed32(x: I64) -> I64:
    """Differences of 32-bit sequence numbers (mod 2**32) as signed values."""
    return ((x + (1 << 31)) & M32) - (1 << 31)


def _last_before(mask: npt.NDArray[np.bool_], ar: I64) -> I64:
    """For each row, the last row before it where `mask` holds (-1: none)."""
    last = np.maximum.accumulate(np.where(mask, ar, -1))
    out = np.empty_like(last)
    out[:1] = -1
    out[1:] = last[:-1]
    return out


T = TypeVar("T")


class _once(Generic[T]):
    """functools.cached_property without its lock (Python 3.11 takes an RLock on every
    first read: a few % of a run that formats the tuple of every half)."""

    def __init__(self, f: Callable[[Any], T]) -> None:
        self.f = f
        self.name = f.__name__

    def __get__(self, obj: Any, cls: Any = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]  # read on the class
        v = self.f(obj)
        obj.__dict__[self.name] = v  # the instance's value hides the descriptor from now on
        return v


class _HalfRow(NamedTuple):
    """The fields of a Half, in the order of its tuple (see `Half`)."""

    hid: int
    tkey: int
    rkey: int  # tuple key of the reverse direction
    v: int
    src: tuple[int, int]
    dst: tuple[int, int]
    sport: int
    dport: int
    syn: bool  # starts with a SYN (SYN or SYN-ACK)
    synack: bool
    isn: int  # seq of the SYN, else the first seq seen
    first_ts: int
    last_ts: int
    has_ts: bool
    ack0: int  # the ack field of its first packet (-1: not read)
    rows_: I64  # its packet rows are rows_[lo_:hi_] (the point's rows by half)
    lo_: int
    hi_: int
    pt_: HalvesOf  # what the point's halves share: their connections, rows set in place


class HalvesOf:
    """What the halves of one point share: the connection of each (`conn[hid]`, -1: none)
    and the rows set on a half in place of its own (`rows[hid]`: a time slice keeps those
    inside it)."""

    def __init__(self, conn: list[int] | dict[int, int]) -> None:
        self.conn = conn
        self.rows: dict[int, I64] = {}


class Half(_HalfRow):
    """One direction of one TCP connection at one point.

    A tuple (made in C for every half of a point at once: `_build_halves`), read by name;
    `idx` (its packet rows in time order) is a view of the point's rows sliced when read
    (unless rows were set in its place), and `conn` is kept in a column the point's halves
    share (filled when they are paired into connections). Built by hand as the dataclass it was:
    `Half(hid, idx, tkey, rkey, v, src, dst, sport, dport, syn, synack, isn, first_ts,
    last_ts, has_ts, conn=-1, ack0=-1)`."""

    def __new__(
        cls, hid: int, idx: I64, tkey: int, rkey: int, v: int, src: tuple[int, int],
        dst: tuple[int, int], sport: int, dport: int, syn: bool, synack: bool, isn: int,
        first_ts: int, last_ts: int, has_ts: bool, conn: int = -1, ack0: int = -1,
    ) -> Half:  # fmt: skip
        row = (hid, tkey, rkey, v, src, dst, sport, dport, syn, synack, isn, first_ts,
               last_ts, has_ts, ack0, idx, 0, int(idx.shape[0]), HalvesOf({hid: conn}))  # fmt: skip
        return tuple.__new__(cls, row)

    def __reduce__(self) -> tuple[Any, ...]:
        return _half_of, (tuple(self),), self.__dict__ or None

    @property
    def conn(self) -> int:
        return self.pt_.conn[self.hid]

    @conn.setter
    def conn(self, cid: int) -> None:
        self.pt_.conn[self.hid] = cid

    @property
    def idx(self) -> I64:
        got = self.pt_.rows.get(self.hid) if self.pt_.rows else None
        return self.rows_[self.lo_ : self.hi_] if got is None else got

    @idx.setter
    def idx(self, rows: I64) -> None:
        self.pt_.rows[self.hid] = rows

    @_once
    def tuple_str(self) -> str:
        return f"{self.src_str} > {self.dst_str}"

    @_once
    def src_str(self) -> str:
        return endpoint_str(self.v, *self.src, self.sport)

    @_once
    def dst_str(self) -> str:
        return endpoint_str(self.v, *self.dst, self.dport)


def _half_of(row: tuple[Any, ...]) -> Half:
    """A Half from its tuple (unpickling)."""
    return tuple.__new__(Half, row)


class Conn(NamedTuple):
    cid: int
    c: Half | None  # client -> server half
    s: Half | None  # server -> client half

    @property
    def first_ts(self) -> int:
        return min(h.first_ts for h in (self.c, self.s) if h is not None)

    @property
    def last_ts(self) -> int:
        return max(h.last_ts for h in (self.c, self.s) if h is not None)

    def half(self, d: int) -> Half | None:
        return self.c if d == 0 else self.s

    @property
    def tuple_str(self) -> str:
        if self.c is not None:
            return self.c.tuple_str
        assert self.s is not None
        return f"{self.s.dst_str} > {self.s.src_str}"


@dataclass
class HalfCols:
    """Fields of every half at a point as columns (row k: the half with hid k), for work
    done on all halves at once; `mate`: the hid of the other direction of its connection
    (-1: none)."""

    syn: npt.NDArray[np.bool_]
    synack: npt.NDArray[np.bool_]
    has_ts: npt.NDArray[np.bool_]
    tkey: U64
    isn: I64
    sport: I64
    dport: I64
    first_ts: I64
    row0: I64  # its first packet's row
    last_ts: I64
    rkey: U64
    ack0: I64
    start: I64  # its rows are order[start:end] of the point (`PointConns.order`)
    end: I64
    v4: npt.NDArray[np.bool_]
    mate: I64


def _mates(n: int, pairs: I64) -> I64:
    """The hid of each half's other direction (-1: none), from (client, server) pairs."""
    mate = np.full(n, -1, np.int64)
    both = pairs[(pairs[:, 0] >= 0) & (pairs[:, 1] >= 0)]
    mate[both[:, 0]] = both[:, 1]
    mate[both[:, 1]] = both[:, 0]
    return mate


@dataclass
class PointConns:
    """A point's table with its halves and connections (and what linking caches)."""

    table: PacketTable
    halves: list[Half]
    conns: list[Conn]
    _fps: dict[int, list[tuple[object, ...]]] = field(default_factory=dict)
    # a cache for proxy linking (link.py): exchanges per connection
    exchanges: dict[int, ConnExchanges] = field(default_factory=dict)
    # of each connection proxy linking took for a proxy's front: its exchanges that a
    # connection beyond the proxy carried, and whether any did (`link.plan_proxied`; a
    # sliced run numbers the rest over the whole connection: `slices._fronts`)
    served: dict[int, tuple[frozenset[int], bool]] = field(default_factory=dict)
    # F5 BIG-IP trailer flow ids per connection (link.py, read on first need); False: none
    f5: object = None
    cols: HalfCols | None = None
    order: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # rows by half
    # the connections as (client hid, server hid) rows (-1: none), and every half's
    pairs: I64 = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    conn_of: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    _by_tkey: dict[int, list[Half]] | None = None

    @property
    def by_tkey(self) -> dict[int, list[Half]]:
        """The halves of every tuple key, in order (made on first need)."""
        got = self._by_tkey
        if got is None:
            got = self._by_tkey = {}
            for h in self.halves:
                lst = got.get(h.tkey)
                if lst is None:
                    got[h.tkey] = [h]
                else:
                    lst.append(h)
        return got

    def drop_link_caches(self) -> None:
        """Free what only linking needs (the fingerprints) once flows are built."""
        self._fps = {}

    def fingerprints(self, h: Half) -> list[tuple[object, ...]]:
        fp = self._fps.get(h.hid)
        if fp is None:
            fp = self._fps[h.hid] = fingerprints(self.table, h)
        return fp

    def half_cols(self) -> HalfCols:
        assert self.cols is not None
        return self.cols

    def rows_of(self, hid: I64) -> tuple[I64, I64]:
        """The rows of the halves `hid` of this point (-1: none) one after the other, and
        the position in `hid` of each: the concatenation of their `idx`, gathered at
        once."""
        c = self.half_cols()
        has = hid >= 0
        st = np.where(has, c.start[hid], 0)
        lens = np.where(has, c.end[hid], 0) - st
        total = int(lens.sum())
        first = np.cumsum(lens) - lens
        pos = np.repeat(st - first, lens) + np.arange(total, dtype=np.int64)
        return self.order[pos], np.repeat(np.arange(hid.shape[0], dtype=np.int64), lens)


def _half_starts(t: PacketTable, order: I64, tk: U64) -> tuple[I64, npt.NDArray[np.bool_]]:
    """Where each half starts among the rows in `order` (`tk` their tuple keys), and
    whether it has a TSval: a tuple's first row starts one, and a SYN whose seq is not
    that of the tuple's previous SYN, or that follows a RST of the tuple (numpy;
    `_fastwalk.index_halves` in C).

    The SYN after a RST: a client whose SYN met a stale connection (a challenge ACK from a
    server still holding the port in TIME_WAIT) resets it and sends the SYN again, with
    the same ISN; a NAT that saw the RST maps the retried SYN to another port. Cut here at
    every point, each attempt links to its own tuple beyond the NAT.

    A packet far in sequence from the FIN or RST that closed its tuple (more than 64 KB
    beyond it, 16 MB before it; the FIN or RST within 16 MB of the last packet before it
    that was neither) starts a half too: a new connection on a reused tuple whose SYN the
    capture lost (a kernel drop) was the old connection's tail at that point and a
    connection of its own at the next (false drops, gaps)."""
    n = int(order.shape[0])
    ar = np.arange(n, dtype=np.int64)
    gstart = np.ones(n, bool)
    gstart[1:] = tk[1:] != tk[:-1]
    fl = t.flags[order]
    syn = (fl & SYN) != 0
    sq = t.seq[order]
    prev_syn = _last_before(syn, ar)
    gfirst = np.maximum.accumulate(np.where(gstart, ar, 0))
    prev_in_group = prev_syn >= gfirst
    prev_isn = np.where(prev_in_group, sq[np.maximum(prev_syn, 0)], -1)
    prev_rst = _last_before(((fl & RST) != 0) & ~syn, ar)
    reset = (prev_rst > prev_syn) & (prev_rst >= gfirst)
    boundary = gstart | (syn & ((prev_isn != sq) | reset))
    # after a FIN or RST (since the last SYN), a packet whose seq is far from the one that
    # closed it: a new connection whose SYN the capture lost; the first such packet only.
    # A FIN or RST closes only in sequence with the last packet before it that was neither
    # (not a forged RST). A RST,ACK with seq 0 starts nothing: it answers a segment
    # without ACK (RFC 793), here a stray one of the closed connection (a NAT in front of
    # a client answering its RST, on real captures: a false injection of its own as a
    # half). Another RST far in sequence can start one: a new connection that was reset,
    # whose other packets the capture lost (kernel drops at a haproxy backend, lab runs)
    ends = (fl & (FIN | RST)) != 0
    prev_plain = _last_before(~ends, ar)
    step = signed32(sq - sq[np.maximum(prev_plain, 0)])
    close = ~syn & ends & ((prev_plain < gfirst) | (np.abs(step) <= 1 << 24))
    prev_close = _last_before(close, ar)
    pc = np.maximum(prev_close, 0)
    closed_at = np.where((fl[pc] & RST) != 0, sq[pc], (sq[pc] + 1) & M32)
    d = signed32(sq - closed_at)
    answer0 = ((fl & (RST | ACK)) == (RST | ACK)) & (sq == 0)
    far = ~syn & ~answer0 & (prev_close >= gfirst) & (prev_close > prev_syn)
    far &= (d > 65536) | (d < -(1 << 24))
    cand = np.nonzero(far)[0]
    if cand.shape[0]:
        by = prev_close[cand]
        first = np.ones(cand.shape[0], bool)
        first[1:] = by[1:] != by[:-1]
        boundary[cand[first]] = True
    starts = np.nonzero(boundary)[0]
    has_ts_rows = (t.tsval[order] >= 0).astype(np.int64)
    has_ts = np.add.reduceat(has_ts_rows, starts) > 0
    return starts, has_ts


def _split_answers(
    t: PacketTable, order: I64, starts: I64, has_ts: npt.NDArray[np.bool_], tkey0: U64
) -> tuple[I64, npt.NDArray[np.bool_], U64]:
    """`starts` (with each half's TSval flag and tuple key) and a half more wherever a
    client's SYN reused a tuple and the first packet back on the reverse tuple is not a
    SYN: that answer (a challenge ACK or a RST from a server still holding the old
    connection) starts a half of its own instead of ending the old connection's.

    A NAT maps the answer to the new client's tuple, which may have carried an old
    connection of another client: left in the old halves on either side, it was one
    connection's packet at one point and another's at the next (a false drop and a false
    injection). The answer follows the SYN at every point: each cuts it alike."""
    nh = int(starts.shape[0])
    if nh < 2:
        return starts, has_ts, tkey0
    r0 = order[starts]
    f0 = t.flags[r0]
    # client SYNs that start a half after another of their tuple (the halves are grouped
    # by tuple key, sorted, each tuple's in order)
    again = np.zeros(nh, bool)
    again[1:] = tkey0[1:] == tkey0[:-1]
    cand = np.nonzero(again & ((f0 & SYN) != 0) & ((f0 & ACK) == 0))[0]
    if not cand.shape[0]:
        return starts, has_ts, tkey0
    rc = r0[cand]
    rkey = mix(t.dst_hi[rc], t.dst_lo[rc], t.src_hi[rc], t.src_lo[rc], t.dport[rc], t.sport[rc])
    h0 = np.searchsorted(tkey0, rkey, "left")
    h1 = np.searchsorted(tkey0, rkey, "right")
    n = int(order.shape[0])
    # the first row of the reverse tuple after each SYN, for all at once: places keyed by
    # (their tuple's rank, row), ascending (a tuple's rows are in file order)
    rank = np.zeros(nh, np.int64)
    rank[1:] = np.cumsum(tkey0[1:] != tkey0[:-1])
    key = np.repeat(rank, np.diff(np.append(starts, n))) * (n + 1) + order
    has = h0 < h1
    h0, h1, rc = h0[has], h1[has], rc[has]
    q = np.searchsorted(key, rank[h0] * (n + 1) + rc)
    p0 = starts[h0]
    p1 = np.where(h1 < nh, starts[np.minimum(h1, nh - 1)], n)
    inside = (p0 < q) & (q < p1)
    q = q[inside]
    q = q[(t.flags[order[q]] & SYN) == 0]
    add = npsets.setdiff(q, starts)
    if not add.shape[0]:
        return starts, has_ts, tkey0
    at = np.searchsorted(starts, add)  # `add[k]` cuts half at[k] - 1
    starts = np.insert(starts, at, add)
    tkey0 = np.insert(tkey0, at, tkey0[at - 1])
    has_ts = np.insert(has_ts, at, False)
    ends = np.append(starts[1:], n)
    new = at + np.arange(add.shape[0])  # the cut halves' places now: new - 1 and new
    for i in npsets.union(new - 1, new).tolist():
        has_ts[i] = bool((t.tsval[order[starts[i] : ends[i]]] >= 0).any())
    return starts, has_ts, tkey0


def _build_halves(t: PacketTable) -> tuple[list[Half], HalfCols | None, I64]:
    """The halves of `t`, their fields as columns (no mates yet), the rows by half."""
    n = len(t)
    if n == 0:
        return [], None, np.zeros(0, np.int64)
    # rows grouped by tuple key, in file order within a tuple: a capture writes packets as
    # the kernel saw them, and a bogus timestamp (some tools write 0 for packets they
    # forge) must not move them
    tuple_cols = (t.src_hi, t.src_lo, t.dst_hi, t.dst_lo, t.sport, t.dport)
    fast = index_halves(tuple_cols, t.flags, t.seq, t.tsval)
    if fast is not None:
        order, starts, has_ts, tkey0 = fast
    else:
        tkey = mix(*tuple_cols)
        order = np.argsort(tkey, kind="stable")
        starts, has_ts = _half_starts(t, order, tkey[order])
        tkey0 = tkey[order[starts]]
    starts, has_ts, tkey0 = _split_answers(t, order, starts, has_ts, tkey0)
    ends = np.append(starts[1:], n)
    # every half's first-row fields gathered at once (a numpy scalar read per field and
    # half costs more than the rest of this function)
    r0 = order[starts]
    rkey = mix(t.dst_hi[r0], t.dst_lo[r0], t.src_hi[r0], t.src_lo[r0], t.dport[r0], t.sport[r0])
    f0 = t.flags[r0]
    syn0 = (f0 & SYN) != 0
    syn_ack = syn0 & ((f0 & ACK) != 0)
    first_ts = t.ts[r0].astype(np.int64)
    cols = HalfCols(
        syn0, syn_ack, has_ts, tkey0, t.seq[r0].astype(np.int64), t.sport[r0].astype(np.int64),
        t.dport[r0].astype(np.int64), first_ts, r0, t.ts[order[ends - 1]].astype(np.int64),
        rkey, t.ack[r0].astype(np.int64), starts, ends, t.v[r0] == 4,
        np.full(starts.shape[0], -1, np.int64),
    )  # fmt: skip
    # every Half made in C from the columns' values (one tuple each; see `Half`); a half's
    # end is the next one's start: the same int objects
    nh = int(starts.shape[0])
    made = make_halves(Half, n, order, HalvesOf([-1] * nh), (
        starts, tkey0, rkey, t.v[r0], cols.sport, cols.dport, syn0, syn_ack, cols.isn,
        first_ts, cols.last_ts, has_ts, cols.ack0, t.src_hi[r0], t.src_lo[r0], t.dst_hi[r0],
        t.dst_lo[r0],
    ))  # fmt: skip
    if made is not None:
        return cast(list[Half], made), cols, order
    lo = starts.tolist()
    hi = lo[1:]
    hi.append(n)
    src, dst = _addresses(t, r0)
    fields = zip(
        range(nh), tkey0.tolist(), rkey.tolist(), t.v[r0].tolist(), src, dst,
        cols.sport.tolist(), cols.dport.tolist(), syn0.tolist(), syn_ack.tolist(),
        cols.isn.tolist(), first_ts.tolist(), cols.last_ts.tolist(), has_ts.tolist(),
        cols.ack0.tolist(), repeat(order), lo, hi,
        repeat(HalvesOf([-1] * nh)),
    )  # fmt: skip
    halves = cast(list[Half], list(map(tuple.__new__, repeat(Half), fields)))
    return halves, cols, order


def _addresses(t: PacketTable, r0: I64) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (hi, lo) source and destination address of the rows `r0`, one tuple object per
    distinct address (a point's halves share a few thousand addresses at most: 4 objects
    a half less, ~4 MB of the interpreter's memory for 22 k halves)."""
    k = r0.shape[0]
    lo = np.concatenate([t.src_lo[r0], t.dst_lo[r0]])
    hi = np.concatenate([t.src_hi[r0], t.dst_hi[r0]])
    if hi.any():
        u, inv = np.unique(np.stack([hi, lo], axis=1), axis=0, return_inverse=True)
        distinct = list(map(tuple, u.tolist()))
    else:
        u, inv = np.unique(lo, return_inverse=True)
        distinct = list(zip(repeat(0), u.tolist()))
    both = list(map(distinct.__getitem__, inv.reshape(-1).tolist()))
    return both[:k], both[k:]


def _is_client_half(h: Half) -> bool:
    if h.syn:
        return not h.synack
    # no handshake seen: the lower (or well-known) port is the server's
    if h.dport < 1024 <= h.sport:
        return True
    if h.sport < 1024 <= h.dport:
        return False
    return h.sport > h.dport


def build_conns(t: PacketTable, halves: list[Half], cols: HalfCols | None = None) -> list[Conn]:
    """Pair the halves of a point into connections, in order of their first packet: each
    half (not yet taken) with the best-scored half of the reverse tuple. With the halves'
    columns (`cols`), the tuples that carry one half each way or one alone (nearly every
    connection) are paired on the columns at once, the others by the loop; the same
    connections in the same order."""
    return _conns_of(halves, _pairs(t, halves, cols))


def _pairs(t: PacketTable, halves: list[Half], cols: HalfCols | None) -> I64:
    """The connections of `halves` as an (n, 2) array of (client hid, server hid), -1 for
    none, in order of their opening half's first packet (`build_conns`)."""
    n = len(halves)
    if cols is None or n == 0:
        pos = {h.hid: i for i, h in enumerate(sorted(halves, key=lambda x: x.first_ts))}
        got = np.array(_conns_loop(t, sorted(halves, key=lambda x: x.first_ts), pos), np.int64)
    else:
        rank = np.empty(n, np.int64)
        rank[np.argsort(cols.first_ts, kind="stable")] = np.arange(n, dtype=np.int64)
        got, simple = _conns_simple(cols, rank)
        others = np.nonzero(~simple)[0]
        if others.shape[0]:
            others = others[np.argsort(rank[others], kind="stable")]
            ranks = rank.tolist()
            more = np.array(_conns_loop(t, [halves[i] for i in others.tolist()], ranks), np.int64)
            got = np.concatenate([got, more.reshape(-1, 3)])
    got = got.reshape(-1, 3)
    # every connection's opening half is its own: ranks are distinct, the order total
    return got[np.argsort(got[:, 0], kind="stable"), 1:]


def _conns_of(halves: list[Half], pairs: I64, conn_of: I64 | None = None) -> list[Conn]:
    """The connections of `pairs` (`_pairs`), each half's `conn` set; `conn_of`: the
    connection of every half of the point (`_conn_of`), when `halves` are all of them
    (their `conn` column is then written at once)."""
    hx: list[Half | None] = [*halves, None]  # -1: none
    conns = cast(
        list[Conn],
        list(map(tuple.__new__, repeat(Conn), zip(
            range(pairs.shape[0]),
            map(hx.__getitem__, pairs[:, 0].tolist()),
            map(hx.__getitem__, pairs[:, 1].tolist()),
            strict=True,
        ))),
    )  # fmt: skip
    col = halves[0].pt_.conn if halves else None
    if conn_of is not None and type(col) is list and len(col) == len(halves):
        col[:] = conn_of.tolist()
        return conns
    for c in conns:
        if c.c is not None:
            c.c.conn = c.cid
        if c.s is not None:
            c.s.conn = c.cid
    return conns


def _conn_of(n: int, pairs: I64) -> I64:
    """The connection of each of `n` halves (-1: none), from `_pairs`."""
    of = np.full(n, -1, np.int64)
    cid = np.arange(pairs.shape[0], dtype=np.int64)
    for side in (pairs[:, 0], pairs[:, 1]):
        has = side >= 0
        of[side[has]] = cid[has]
    return of


def _conns_simple(cols: HalfCols, rank: I64) -> tuple[I64, Any]:
    """The connections of the halves whose tuple carries no other half, and whose reverse
    tuple at most one (which then carries no other either): (rank of the half that opens
    it, client half, server half) each (-1: none) as rows of an (n, 3) array, and which
    halves those are. The decisions of `_conns_loop` for such a pair, on columns."""
    n = rank.shape[0]
    uk, inv, cnt = np.unique(cols.tkey, return_inverse=True, return_counts=True)
    holder = np.empty(uk.shape[0], np.int64)
    holder[inv] = np.arange(n, dtype=np.int64)  # the half of a key held by one
    at = np.minimum(np.searchsorted(uk, cols.rkey), uk.shape[0] - 1)
    found = uk[at] == cols.rkey
    n_rev = np.where(found, cnt[at], 0)
    simple = (cnt[inv] == 1) & (n_rev <= 1)
    me = np.arange(n, dtype=np.int64)
    other = np.where(found & (n_rev == 1), holder[at], -1)
    other[other == me] = -1  # its own reverse (src = dst): alone
    # each pair once, from the half first in time (the one the loop takes first)
    h = np.nonzero(simple & ((other < 0) | (rank < rank[np.maximum(other, 0)])))[0]
    r = other[h]
    has = r >= 0
    rr = np.maximum(r, 0)
    syn, synack, isn, ack0 = cols.syn, cols.synack, cols.isn, cols.ack0
    decisive = (syn[h] & synack[rr] & (ack0[rr] == ((isn[h] + 1) & M32))) | (
        syn[rr] & synack[h] & (ack0[h] == ((isn[rr] + 1) & M32))
    )
    overlap = np.minimum(cols.last_ts[h], cols.last_ts[rr]) - np.maximum(
        cols.first_ts[h], cols.first_ts[rr]
    )
    later_syn = syn[rr] & ~synack[rr] & (cols.first_ts[h] < cols.first_ts[rr]) & ~syn[h]
    two_syns = syn[h] & syn[rr] & ~(synack[h] | synack[rr])
    far = (overlap < 0) & (-overlap > 10**14)  # scored below no candidate at all
    paired = has & (decisive | ~(later_syn | two_syns | far))
    client = _client_cols(cols)
    h_first = client[h] | (paired & syn[rr] & synack[rr])
    # paired: (h, r) or (r, h); alone: h on its side, and r (if any) alone on its own
    other_side = np.where(paired, r, -1)
    first = np.stack([rank[h], np.where(h_first, h, other_side), np.where(h_first, other_side, h)])
    lone = np.nonzero(has & ~paired)[0]
    rl = r[lone]
    second = np.stack([rank[rl], np.where(client[rl], rl, -1), np.where(client[rl], -1, rl)])
    return np.concatenate([first, second], axis=1).T, simple


def _client_cols(c: HalfCols) -> npt.NDArray[np.bool_]:
    """`_is_client_half` of every half."""
    by_port = np.where(
        (c.dport < 1024) & (c.sport >= 1024),
        True,
        np.where((c.sport < 1024) & (c.dport >= 1024), False, c.sport > c.dport),
    )
    return np.where(c.syn, ~c.synack, by_port)


def _conns_loop(t: PacketTable, in_order: list[Half], rank: Any) -> list[tuple[int, int, int]]:
    """The connections of `in_order` (halves sorted by first packet; every half of their
    tuples and reverse tuples among them): (rank of the opening half, client, server)."""
    by_key: dict[int, list[Half]] = defaultdict(list)
    # the SYNs (not SYN-ACKs) of each tuple by the ack that answers them (ISN + 1): a
    # tuple reused k times made `_answers_another` and `_retried` look at all k halves
    # for each of the k * k pairs looked at (300 connections on one tuple: 18 M calls)
    syns: dict[int, dict[int, list[Half]]] = defaultdict(lambda: defaultdict(list))
    # and the halves that can be decisive answers, by what they answer: SYN-ACKs by
    # their ack, SYNs (of either kind) by ISN + 1 (`_decisive`)
    answers: dict[int, dict[int, list[Half]]] = defaultdict(lambda: defaultdict(list))
    opens: dict[int, dict[int, list[Half]]] = defaultdict(lambda: defaultdict(list))
    for h in in_order:
        by_key[h.tkey].append(h)
        if h.syn and not h.synack:
            syns[h.tkey][(h.isn + 1) & 0xFFFFFFFF].append(h)
        if h.synack:
            answers[h.tkey][h.ack0 if h.ack0 >= 0 else int(t.ack[int(h.idx[0])])].append(h)
        if h.syn:
            opens[h.tkey][(h.isn + 1) & 0xFFFFFFFF].append(h)
    order = {h.hid: i for i, h in enumerate(in_order)}
    used: set[int] = set()
    out: list[tuple[int, int, int]] = []
    for h in in_order:
        c: Half | None
        s: Half | None
        if h.hid in used:
            continue
        used.add(h.hid)
        best = _decisive(t, h, answers, opens, syns, used, order)
        best_score = -1.0 if best is None else 1e18
        for r in by_key.get(h.rkey, ()) if best is None else ():
            if r.hid in used:
                continue
            score = 0.0
            # SYN-ACK acknowledging our SYN (or the reverse) is decisive; if the SYN was
            # sent again, after a RST, before it, it answers that attempt, not this one
            if h.syn and r.synack and _acks(t, r, h.isn + 1):
                if _retried(syns, h, r):
                    continue
                score = 1e18
            elif r.syn and h.synack and _acks(t, h, r.isn + 1):
                if _retried(syns, r, h):
                    continue
                score = 1e18
            else:
                overlap = min(h.last_ts, r.last_ts) - max(h.first_ts, r.first_ts)
                if h.syn and not h.synack and r.first_ts < h.first_ts and not r.syn:
                    continue  # a half that began before our SYN belongs to an earlier connection
                if r.syn and not r.synack and h.first_ts < r.first_ts and not h.syn:
                    continue
                if r.synack and _answers_another(t, syns, h, r):
                    continue  # the answer to a SYN of our tuple: that SYN's connection
                score = 1e15 + overlap if overlap >= 0 else 1e15 - abs(overlap) * 10
                if h.syn and r.syn and not (h.synack or r.synack):
                    continue  # two SYNs: a simultaneous open is not worth the risk
            if score > best_score:
                best, best_score = r, score
        if best is not None:
            used.add(best.hid)
        if _is_client_half(h) or (best is not None and best.syn and best.synack):
            c, s = h, best
        else:
            c, s = best, h
        out.append((rank[h.hid], -1 if c is None else c.hid, -1 if s is None else s.hid))
    return out


def _decisive(
    t: PacketTable,
    h: Half,
    answers: dict[int, dict[int, list[Half]]],
    opens: dict[int, dict[int, list[Half]]],
    syns: dict[int, dict[int, list[Half]]],
    used: set[int],
    order: dict[int, int],
) -> Half | None:
    """The half of the reverse tuple that `_conns_loop`'s scan would take for `h` with its
    decisive score (a SYN-ACK acknowledging h's SYN, or a SYN that h's SYN-ACK
    acknowledges), found by lookups instead of the scan: the first such in time order."""
    cands: list[Half] = []
    if h.syn and h.rkey in answers:
        cands += answers[h.rkey].get((h.isn + 1) & 0xFFFFFFFF, ())
    if h.synack and h.rkey in opens:
        cands += opens[h.rkey].get(h.ack0 if h.ack0 >= 0 else int(t.ack[int(h.idx[0])]), ())
    for r in sorted(cands, key=lambda x: order[x.hid]) if len(cands) > 1 else cands:
        if r.hid in used:
            continue
        if h.syn and r.synack and _acks(t, r, h.isn + 1):
            if not _retried(syns, h, r):
                return r
        elif r.syn and h.synack and _acks(t, h, r.isn + 1) and not _retried(syns, r, h):
            return r
    return None


def _answers_another(
    t: PacketTable, syns: dict[int, dict[int, list[Half]]], h: Half, r: Half
) -> bool:
    """Whether SYN-ACK half `r` acknowledges the SYN of a half of `h`'s tuple other than
    `h` (a half that is not a SYN, such as the last packets of a connection whose SYN the
    capture lost, must not take a later connection's answer). `syns`: `_conns_loop`'s."""
    a0 = r.ack0 if r.ack0 >= 0 else int(t.ack[int(r.idx[0])])
    got = syns[h.tkey].get(a0) if h.tkey in syns else None
    return any(o is not h for o in got or ())


def _retried(syns: dict[int, dict[int, list[Half]]], syn: Half, answer: Half) -> bool:
    """Whether another half of `syn`'s tuple sent its SYN (the same ISN) again after it
    and no later than `answer` began (`_half_starts` cuts a SYN after a RST)."""
    return any(
        o is not syn and syn.first_ts < o.first_ts <= answer.first_ts
        for o in syns[syn.tkey].get((syn.isn + 1) & 0xFFFFFFFF, ())
    )


def _acks(t: PacketTable, h: Half, value: int) -> bool:
    a0 = h.ack0 if h.ack0 >= 0 else int(t.ack[int(h.idx[0])])
    return a0 == (value & 0xFFFFFFFF)


def build_point(t: PacketTable) -> PointConns:
    halves, cols, order = _build_halves(t)
    pairs = _pairs(t, halves, cols)
    conn_of = _conn_of(len(halves), pairs)
    conns = _conns_of(halves, pairs, conn_of)
    if cols is None:
        z, no = np.zeros(0, np.int64), np.zeros(0, bool)
        u = z.astype(np.uint64)
        cols = HalfCols(no, no, no, u, z, z, z, z, z, z, u, z, z, z, no, z)
    cols.mate = _mates(len(halves), pairs)
    pc = PointConns(table=t, halves=halves, conns=conns, cols=cols, pairs=pairs, conn_of=conn_of)
    pc.order = order
    return pc


# --------------------------------------------------------------------------- fingerprints


def fingerprints(t: PacketTable, h: Half, limit: int = 4) -> list[tuple[object, ...]]:
    """Keys that survive NAT/PAT/ISN randomisation, for linking a half across points."""
    keys: list[tuple[object, ...]] = []
    rows = h.idx
    fl = t.flags[rows[: limit * 4]]
    r = rows[: limit * 4]
    syn_rows = r[(fl & SYN) != 0]
    for i in syn_rows[:4].tolist():
        keys.append(("isn", int(t.seq[i])))
        if t.tsval[i] >= 0:
            keys.append(("ts", int(t.tsval[i]), int(t.ipid[i])))
        elif t.ipid[i] > 0:
            keys.append(("sid", int(t.ipid[i]), int(t.mss[i]), t.options(i)))
    # first packets of the half by TSval + IP ID (both survive NAT)
    n_ts = 0
    for i in r.tolist():
        if n_ts >= limit:
            break
        if t.flags[i] & SYN:
            continue
        if t.tsval[i] >= 0:
            keys.append(("ts", int(t.tsval[i]), int(t.ipid[i])))
            n_ts += 1
    # payload hashes of the first data packets, when nothing above identifies the half
    data = rows[t.pl_cap[rows] > 0][: 0 if n_ts >= 2 else 2]
    for i in data.tolist():
        keys.append(("h", xxhash.xxh3_64_intdigest(t.payload(int(i)))))
    if not keys:
        for i in rows[:limit].tolist():
            if t.ipid[i] > 0:
                keys.append(("id", int(t.ipid[i]), int(t.flags[i] & (SYN | FIN | RST))))
    return keys


FP_KINDS = ("ts", "isn", "sid", "h", "id")  # the kind of a fingerprint code: code >> 60


def key_code(k: tuple[object, ...], ids: dict[tuple[object, ...], int]) -> int:
    """A fingerprint key as one int64, exactly: its kind in bits 60-62; TSval (or the ISN)
    in bits 17-48 and IP ID + 1 (-1 for IPv6) below; other kinds (SYN IP ID and options,
    payload hash, IP ID and flags) by their number in `ids` (numbered on first sight)."""
    kind = FP_KINDS.index(str(k[0]))
    if kind == 0:
        return (cast(int, k[1]) << 17) | (cast(int, k[2]) + 1)
    if kind == 1:
        return (kind << 60) | (cast(int, k[1]) << 17)
    return (kind << 60) | (ids.setdefault(k, len(ids)) << 17)


def fingerprint_codes(
    t: PacketTable,
    halves: list[Half],
    ids: dict[tuple[object, ...], int],
    limit: int = 4,
    pc: PointConns | None = None,
) -> tuple[I64, I64]:
    """(hid, key code) of every distinct `fingerprints` key of every half (`key_code`),
    sorted by hid then code, with the rows that give keys selected for all halves at once:
    the TSval and ISN keys never become Python tuples. With `pc` (the point of `halves`,
    all of them), those keys come from one C pass over its rows when it is available."""
    if not halves:
        z = np.zeros(0, np.int64)
        return z, z
    fast = None
    if pc is not None and pc.halves is halves and pc.cols is not None:
        c = pc.cols
        fast = fingerprint_rows(pc.order, c.start, c.end, t.flags, t.tsval, t.ipid, t.seq, limit)
    if fast is None:
        return _fingerprint_codes(t, halves, ids, limit)
    h_c, c_c, n_ts, has_syn, sid = fast
    more_h: list[int] = []
    more_c: list[int] = []
    # SYNs without a TSval: IP ID, MSS and options (not in the table as one number)
    for k, r in zip(sid[0::2].tolist(), sid[1::2].tolist(), strict=True):
        more_h.append(k)
        more_c.append(key_code(("sid", int(t.ipid[r]), int(t.mss[r]), t.options(r)), ids))
    assert pc is not None and pc.cols is not None  # (the fast path's)
    if halves[0].pt_.rows or halves[0].rows_ is not pc.order:  # (rows set in place)
        _more_codes(t, halves, ids, limit, n_ts, has_syn, more_h, more_c)
    else:
        cols = pc.cols
        _more_codes_cols(t, pc.order, cols.start, cols.end, ids, limit, n_ts, has_syn, more_h,
                         more_c)  # fmt: skip
    if not more_h:
        return h_c, c_c  # sorted and distinct already
    return _sorted_distinct([h_c, np.array(more_h, np.int64)], [c_c, np.array(more_c, np.int64)])


def _more_codes_cols(
    t: PacketTable, order: I64, start: I64, end: I64, ids: dict[tuple[object, ...], int],
    limit: int, n_ts: I64, has_syn: npt.NDArray[np.bool_], more_h: list[int],
    more_c: list[int],
) -> None:  # fmt: skip
    """`_more_codes` of halves whose rows are `order[start:end]`, the rows chosen for all
    of them at once (a SYN scan's 400 k halves, a packet each: 0.87 s a half at a time);
    the keys made in the same order (their codes are numbered as first met)."""
    ks = np.nonzero(n_ts < 2)[0]
    lens = end[ks] - start[ks]
    total = int(lens.sum())
    if not total:
        return
    first = np.repeat(np.cumsum(lens) - lens, lens)
    within = np.arange(total, dtype=np.int64) - first  # a row's place in its half
    half = np.repeat(ks, lens)
    rows = order[np.repeat(start[ks], lens) + within]
    pay = t.pl_cap[rows] > 0
    seen = np.cumsum(pay)
    before = seen - pay  # payload rows before this one in the whole run
    pay &= before - before[first] < 2  # the half's first two with payload
    got = np.zeros(n_ts.shape[0], bool)
    got[half[pay]] = True
    by_id = ~got[half] & ~has_syn[half] & (n_ts[half] == 0) & (within < limit)
    by_id &= t.ipid[rows] > 0
    pick = np.nonzero(pay | by_id)[0]
    mask = SYN | FIN | RST
    for k, r, is_pay in zip(half[pick].tolist(), rows[pick].tolist(), pay[pick].tolist(),
                            strict=True):  # fmt: skip
        more_h.append(k)
        if is_pay:
            more_c.append(key_code(("h", xxhash.xxh3_64_intdigest(t.payload(r))), ids))
        else:
            more_c.append(key_code(("id", int(t.ipid[r]), int(t.flags[r] & mask)), ids))


def _more_codes(
    t: PacketTable, halves: list[Half], ids: dict[tuple[object, ...], int], limit: int,
    n_ts: I64, has_syn: npt.NDArray[np.bool_], more_h: list[int], more_c: list[int],
) -> None:  # fmt: skip
    """The payload keys of the halves with fewer than two TSval keys, and the IP ID keys of
    those with none of any kind (appended to `more_h`, `more_c`)."""
    for k in np.nonzero(n_ts < 2)[0].tolist():
        rows = halves[k].idx
        got = False
        for i in rows[t.pl_cap[rows] > 0][:2].tolist():
            more_h.append(k)
            more_c.append(key_code(("h", xxhash.xxh3_64_intdigest(t.payload(int(i)))), ids))
            got = True
        if not got and not has_syn[k] and not n_ts[k]:
            for i in rows[:limit].tolist():
                if t.ipid[i] > 0:
                    more_h.append(k)
                    key = ("id", int(t.ipid[i]), int(t.flags[i] & (SYN | FIN | RST)))
                    more_c.append(key_code(key, ids))


def _sorted_distinct(hid: list[I64], code: list[I64]) -> tuple[I64, I64]:
    h_all, c_all = np.concatenate(hid), np.concatenate(code)
    o = np.lexsort((c_all, h_all))
    h_all, c_all = h_all[o], c_all[o]
    new = np.ones(h_all.shape[0], bool)
    new[1:] = (h_all[1:] != h_all[:-1]) | (c_all[1:] != c_all[:-1])
    return h_all[new], c_all[new]


def _fingerprint_codes(
    t: PacketTable, halves: list[Half], ids: dict[tuple[object, ...], int], limit: int
) -> tuple[I64, I64]:
    """`fingerprint_codes` in numpy."""
    head = limit * 4
    firsts = [h.idx[:head] for h in halves]
    lens = np.fromiter(map(len, firsts), np.int64, len(firsts))
    r_all = np.concatenate(firsts)
    grp = np.repeat(np.arange(len(halves), dtype=np.int64), lens)
    fl = t.flags[r_all]
    tsv = t.tsval[r_all].astype(np.int64)
    syn = (fl & SYN) != 0
    ts_row = ~syn & (tsv >= 0)

    def rank(mask: npt.NDArray[np.bool_]) -> I64:
        """Position of each row among the rows of its half where `mask` holds."""
        cs = np.cumsum(mask)
        before = np.zeros(len(halves), np.int64)
        ends = np.cumsum(lens)
        before[1:] = cs[ends[:-1] - 1]
        r: I64 = cs - before[grp] - 1
        return r

    sel_syn = np.nonzero(syn & (rank(syn) < 4))[0]
    sel_ts = np.nonzero(ts_row & (rank(ts_row) < limit))[0]
    ipid = t.ipid[r_all].astype(np.int64)
    hid = [grp[sel_syn]]
    code = [(1 << 60) | (t.seq[r_all[sel_syn]].astype(np.int64) << 17)]  # the ISN
    # TSval + IP ID of the SYNs and of the first other packets
    for sel in (sel_syn[tsv[sel_syn] >= 0], sel_ts):
        hid.append(grp[sel])
        code.append((tsv[sel] << 17) | (ipid[sel] + 1))
    more_h: list[int] = []
    more_c: list[int] = []
    # SYNs without a TSval: IP ID, MSS and options (not in the table as one number)
    for j in sel_syn[(tsv[sel_syn] < 0) & (ipid[sel_syn] > 0)].tolist():
        r = int(r_all[j])
        more_h.append(int(grp[j]))
        more_c.append(key_code(("sid", int(ipid[j]), int(t.mss[r]), t.options(r)), ids))
    n_ts = np.bincount(grp[sel_ts], minlength=len(halves))
    has_syn = np.bincount(grp[sel_syn], minlength=len(halves)) > 0
    _more_codes(t, halves, ids, limit, n_ts, has_syn, more_h, more_c)
    hid.append(np.array(more_h, np.int64))
    code.append(np.array(more_c, np.int64))
    return _sorted_distinct(hid, code)
