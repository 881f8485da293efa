"""ESP tunnels at an endpoint cut across time slices (docs/scale.md, "ESP at a tunnel
endpoint").

`tunnel.find_tunnels` decides over a whole outer flow: whether it is a tunnel (half of a
direction's datagrams paired with an inner packet, 80 % of the overheads alike), per
direction whether the endpoint decrypts or encrypts (whichever pairs more), and pairs
them greedily in time order — a chain: a datagram whose inner packet was lost takes the
next one's, and so on until a pause. A time slice holds its window's part only, so:

- pass 1: each slice sends, for every cut ESP flow at a possible endpoint, its window's
  datagrams of each direction and the inner point's packets of its window (times and
  lengths: `Window`, a few dozen bytes a packet);
- the main process runs the pairing on them as a stream, in window order (`Streams`:
  `tunnel.greedy` a window at a time, holding the packets of ~50 ms): exactly the
  unsliced run's pairs, every way; from their counts and overheads it decides as
  `tunnel._match` does, and keeps, for the start of each window (less half the margin),
  the state of the pairing there (the inner packets already taken);
- pass 2: each slice pairs its part the decided way from that state (`applier`): the
  pairs of its window are the unsliced run's, and so are the datagrams it reports lost
  inside the endpoint (those of its window) and the inner packets the tunnel carried
  (the inner flows' `tunnel` legs).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from hopcap.correlate.dgram import ESP, UDP
from hopcap.correlate.tunnel import (
    JITTER_NS,
    MIN_DATAGRAMS,
    MIN_SHARE,
    OVERHEAD,
    SPREAD,
    WINDOW_NS,
    Decided,
    Tunnel,
    greedy,
    inner_rows,
    mark,
    report_lost,
)
from hopcap.correlate.udp import DFlowB, dtable, is_local
from hopcap.model import Direction

if TYPE_CHECKING:
    from collections.abc import Callable

    from hopcap.correlate.flows import Point

log = logging.getLogger("hopcap.correlate")

I64 = npt.NDArray[np.int64]
Key = tuple[int, int, int]  # outer point, the flow's conversation there (scan key), inner point
Part = tuple[I64, I64]  # times and lengths
Snap = tuple[int, list[tuple[int, int]]]  # from the first `first` at or after this time: the
# `second`s (time, length) already taken then
_LO, _HI = -(1 << 62), 1 << 62
# the margin a slice needs around its window for the pairing: the window of a datagram,
# the snapshot's place (half the margin before the window), clock estimates moving
MIN_MARGIN_NS = 200_000_000


def _i64(x: Any) -> I64:
    out: I64 = np.asarray(x).astype(np.int64)
    return out


def candidates(
    pts: list[Point], present: list[int], dflows: list[DFlowB], dcut: dict[int, Any]
) -> dict[int, list[Key]]:
    """Of a slice's cut datagram flows (`dcut`: flow -> (point, scan key) of its legs),
    the ESP and UDP ones where `find_tunnels` looks for a tunnel (two adjacent points of
    one host, a leg at one and none at the other; UDP not to a broadcast or multicast
    address, its count of datagrams checked over the run: `_decide`): flow -> its keys."""
    out: dict[int, list[Key]] = {}
    for a, b in pairwise(present):
        pa, pb = pts[a], pts[b]
        if not (pa.host == pb.host and pa.iface and pb.iface):
            continue
        for x, y in ((a, b), (b, a)):
            for n, ms in dcut.items():
                fl = dflows[n]
                leg = next((lg for lg in fl.legs if lg.point == x), None)
                if leg is None or leg.f.proto not in (ESP, UDP):
                    continue
                if any(lg.point == y for lg in fl.legs) or (leg.f.proto == UDP and is_local(leg.f)):
                    continue
                out.setdefault(n, []).append((x, dict(ms)[x], y))
    return out


def _raw(t: int, off: int) -> int:
    return t if t in (_LO, _HI) else t + off


@dataclass
class Window:
    """One slice's part of the pairing's input (pass 1)."""

    # per candidate: its c2s and s2c datagrams in the window, the inner packets' range
    outer: dict[Key, tuple[Part, Part, int, int]] = field(default_factory=dict)
    kind: dict[Key, str] = field(default_factory=dict)  # "esp" or "encrypted udp"
    inner: dict[int, Part] = field(default_factory=dict)  # inner point -> its window's
    upto: dict[int, int] = field(default_factory=dict)  # point -> all its items before this


def window_inputs(
    pts: list[Point],
    dflows: list[DFlowB],
    cands: dict[int, list[Key]],
    lo: int,
    hi: int,
    offsets: list[int],
) -> Window | None:
    """The window [lo, hi)'s (first point's clock) part of every candidate's pairing."""
    if not cands:
        return None
    w = Window()
    for n, keys in cands.items():
        fl = dflows[n]
        for key in keys:
            x, _ck, y = key
            f = next(lg.f for lg in fl.legs if lg.point == x)
            tx = dtable(pts[x])
            assert tx is not None
            a, b = _raw(lo, offsets[x]), _raw(hi, offsets[x])
            dirs = []
            for rows in (f.c, f.s):
                ts = _i64(tx.ts[rows])
                m = (ts >= a) & (ts < b)
                dirs.append((ts[m], _i64(tx.plen[rows][m])))
            w.outer[key] = (dirs[0], dirs[1], f.first_ts - WINDOW_NS - JITTER_NS,
                            f.last_ts + WINDOW_NS + JITTER_NS)  # fmt: skip
            w.kind[key] = "esp" if f.proto == ESP else "encrypted udp"
            if y not in w.inner:
                its, ilen, _isd, _irow = inner_rows(pts[y])
                m = (its >= _raw(lo, offsets[y])) & (its < _raw(hi, offsets[y]))
                w.inner[y] = (_i64(its[m]), _i64(ilen[m]))
            for p in (x, y):
                w.upto[p] = _raw(hi, offsets[p])
    return w


def _ready(first_ts: I64, upto: int) -> int:
    """How many of the `first`s (in order) have every `second` they may take before
    `upto` (the seconds known)."""
    if upto >= _HI:
        return int(first_ts.shape[0])
    late = np.nonzero(first_ts + WINDOW_NS >= upto)[0]
    return int(late[0]) if late.shape[0] else int(first_ts.shape[0])


class _Stream:
    """`tunnel.greedy` over a stream of windows in time order: `first`s wait until every
    `second` they may take is here; the state before the first `first` at or after each
    of `snap_at` (raw times, sorted; one a window) is kept for that window's slice."""

    def __init__(self, outer_first: bool, snap_at: list[int]) -> None:
        self.outer_first = outer_first
        self.snap_at, self.nsnap = snap_at, 0
        self.snaps: dict[int, Snap] = {}
        z = np.zeros(0, np.int64)
        self.fts, self.flen, self.sts, self.slen = z, z, z, z
        self.used = np.zeros(0, bool)
        self.firsts = self.pairs = 0
        self.ovh = np.zeros(OVERHEAD[1] + 1, np.int64)  # pairs by overhead

    def feed(self, first: Part, second: Part, upto: int, first_upto: int) -> None:
        """A window's `first`s and `second`s: all those before `first_upto` and `upto`
        (raw times) are here."""
        self.fts = np.concatenate([self.fts, first[0]])
        self.flen = np.concatenate([self.flen, first[1]])
        self.sts = np.concatenate([self.sts, second[0]])
        self.slen = np.concatenate([self.slen, second[1]])
        self.used = np.concatenate([self.used, np.zeros(second[0].shape[0], bool)])
        self._run(upto)
        # no `first` to come looks at a `second` before this (without this, a direction
        # with few datagrams would keep every inner packet of the run here)
        floor = min(first_upto, int(self.fts.min()) if self.fts.shape[0] else first_upto)
        self._drop_seconds(int(np.searchsorted(self.sts, floor - JITTER_NS, "left")))

    def _run(self, upto: int) -> None:
        n = _ready(self.fts, upto)
        i = 0
        while i < n:
            end = n
            if self.nsnap < len(self.snap_at):
                at = self.snap_at[self.nsnap]
                if int(self.fts[i]) >= at:
                    t = int(self.fts[i])
                    m = self.used & (self.sts >= t - JITTER_NS)
                    state = zip(self.sts[m].tolist(), self.slen[m].tolist(), strict=True)
                    self.snaps[self.nsnap] = (at, list(state))
                    self.nsnap += 1
                    continue
                after = np.nonzero(self.fts[i:n] >= at)[0]
                if after.shape[0]:
                    end = i + int(after[0])
            got, lo_ptr = greedy(self.fts[i:end], self.flen[i:end], self.sts, self.slen,
                                 self.outer_first, self.used)  # fmt: skip
            if got:
                fi = np.fromiter(got.keys(), np.int64, len(got)) + i
                si = np.fromiter(got.values(), np.int64, len(got))
                o = self.flen[fi] - self.slen[si]
                np.add.at(self.ovh, o if self.outer_first else -o, 1)
            self.pairs += len(got)
            self.firsts += end - i
            # no later `first` looks before the last one's earliest `second`
            self._drop_seconds(lo_ptr)
            i = end
        # copies: a view would keep the whole array it was cut from alive
        self.fts, self.flen = self.fts[n:].copy(), self.flen[n:].copy()

    def _drop_seconds(self, k: int) -> None:
        if k:
            self.sts, self.slen = self.sts[k:].copy(), self.slen[k:].copy()
            self.used = self.used[k:].copy()


@dataclass
class Decision:
    kind: str
    ways: dict[int, bool]  # direction (0 c2s, 1 s2c) -> decrypting (the outer datagram first)


def _decide(st: list[_Stream], kind: str) -> Decision | None:
    """`tunnel._match`'s decisions (and `find_tunnels`' count of a UDP flow's datagrams),
    from the streams' counts (dec c2s, enc c2s, dec s2c, enc s2c)."""
    if kind != "esp" and max(st[0].firsts, st[2].firsts) < MIN_DATAGRAMS:
        return None
    ways: dict[int, bool] = {}
    ovh = np.zeros(OVERHEAD[1] + 1, np.int64)
    share, two = 0.0, False
    for d in (0, 1):
        dec, enc = st[2 * d], st[2 * d + 1]
        if not dec.firsts:
            continue  # no datagram that way
        way = dec.pairs >= enc.pairs
        ways[d] = way
        s = dec if way else enc
        ovh += s.ovh
        share = max(share, s.pairs / dec.firsts)
        two = two or s.pairs >= 2
    total = int(ovh.sum())
    if total:
        v = np.nonzero(ovh)[0]
        c = np.cumsum(ovh[v])
        a = int(v[int(np.searchsorted(c, (total - 1) // 2, "right"))])
        b = int(v[int(np.searchsorted(c, total // 2, "right"))])
        med = (a + b) / 2  # np.median of the overheads
        if int(ovh[v][np.abs(v - med) <= SPREAD].sum()) < 0.8 * total:
            return None
    if share < MIN_SHARE or not two:
        return None
    return Decision(kind, ways)


# per candidate: its decision (None: not a tunnel) and, per direction, the state of the
# pairing the decided way for each window
Decided_ = tuple[Decision | None, dict[int, dict[int, Snap]]]


class Streams:
    """Every candidate's pairing over the run, fed a window at a time in window order."""

    def __init__(self, snap_at: Callable[[int], list[int]]) -> None:
        self.snap_at = snap_at  # point -> the snapshots' places, one a window
        self.by: dict[Key, list[_Stream]] = {}
        self.kind: dict[Key, str] = {}

    def feed(self, w: Window | None) -> None:
        if w is None:
            return
        for key, (c, s, lo, hi) in w.outer.items():
            x, _ck, y = key
            st = self.by.get(key)
            if st is None:
                sx, sy = self.snap_at(x), self.snap_at(y)
                st = self.by[key] = [_Stream(True, sx), _Stream(False, sy),
                                     _Stream(True, sx), _Stream(False, sy)]  # fmt: skip
                self.kind[key] = w.kind[key]
            its, ilen = w.inner[y]
            m = (its >= lo) & (its <= hi)
            inner = (its[m], ilen[m])
            for d, part in enumerate((c, s)):
                st[2 * d].feed(part, inner, w.upto[y], w.upto[x])
                st[2 * d + 1].feed(inner, part, w.upto[x], w.upto[y])

    def decide(self) -> dict[Key, Decided_]:
        out: dict[Key, Decided_] = {}
        for key, st in self.by.items():
            for s in st:
                s._run(_HI)
            dec = _decide(st, self.kind[key])
            snaps = {} if dec is None else {d: st[2 * d + (0 if w else 1)].snaps
                                            for d, w in dec.ways.items()}  # fmt: skip
            out[key] = (dec, snaps)
        self.by = {}
        return out


def _mark_used(s_ts: I64, s_len: I64, taken: list[tuple[int, int]]) -> npt.NDArray[np.bool_]:
    used = np.zeros(s_ts.shape[0], bool)
    for t, n in taken:
        j = int(np.searchsorted(s_ts, t, "left"))
        while j < s_ts.shape[0] and int(s_ts[j]) == t:
            if int(s_len[j]) == n and not used[j]:
                used[j] = True
                break
            j += 1
    return used


def applier(
    dec: Decision,
    snaps: dict[int, Snap],
    ranges: dict[int, tuple[int, int]],
    judged: Callable[[int, I64], npt.NDArray[np.bool_]],
) -> Decided:
    """`tunnel._match` for a slice's part of a cut outer flow: its pairs from the state
    `snaps` (per direction) the decided way, within what the slice read (`ranges`: raw
    times per point); the datagrams lost inside the endpoint that the slice judges
    (`judged`: of rows at a point, those in its window)."""

    def apply(
        pts: list[Point], x: int, y: int, k: int, fl: DFlowB, tx: Any, inner: Any,
        taken: npt.NDArray[np.bool_], blind: Any,
    ) -> Tunnel | None:  # fmt: skip
        f = next(lg for lg in fl.legs if lg.point == x).f
        its, ilen, isd, irow = inner
        (xlo, xhi), (ylo, yhi) = ranges[x], ranges[y]
        lo = max(f.first_ts - WINDOW_NS - JITTER_NS, ylo)
        hi = min(f.last_ts + WINDOW_NS + JITTER_NS, yhi - 1)
        a = int(np.searchsorted(its, lo, side="left"))
        b = int(np.searchsorted(its, hi, side="right"))
        fi = a + np.nonzero(~taken[a:b])[0]
        i_part = (_i64(its[fi]), _i64(ilen[fi]))
        tun = Tunnel(x, y, k, dec.kind)
        px, py = pts[x], pts[y]
        for d, rows in ((0, f.c), (1, f.s)):
            way = dec.ways.get(d)
            if way is None:
                continue
            ots = _i64(tx.ts[rows])
            orow = rows[(ots >= xlo) & (ots < xhi)]
            o_part = (_i64(tx.ts[orow]), _i64(tx.plen[orow]))
            first, second, stop, flo, slo = (
                (o_part, i_part, yhi, xlo, ylo) if way else (i_part, o_part, xhi, ylo, xlo)
            )
            pairs: dict[int, int] = {}  # outer -> inner (indices in orow, fi)
            snap = snaps.get(d)
            if snap is not None:
                at, state = snap
                if at > _LO and (flo > at or slo > at - JITTER_NS):
                    log.warning("tunnel pairing: slice %d reads less than its state needs", k)
                i0 = int(np.searchsorted(first[0], at, "left"))
                i1 = i0 + _ready(first[0][i0:], stop)
                used = _mark_used(second[0], second[1], state)
                got, _lo = greedy(first[0][i0:i1], first[1][i0:i1], second[0], second[1],
                                  way, used)  # fmt: skip
                pairs = {i0 + i: j for i, j in got.items()} if way else {
                    j: i0 + i for i, j in got.items()}  # fmt: skip
            for oi, ii in pairs.items():
                pos = int(fi[ii])
                taken[pos] = True
                tun.carried[(bool(isd[pos]), int(irow[pos]))] = int(orow[oi])
            if way:
                direction: Direction = "c2s" if d == 0 else "s2c"
                mine = np.nonzero(judged(x, orow))[0].tolist()
                lost = [int(orow[i]) for i in mine if i not in pairs]
                text = f"arrived on {px.name}, the inner packet never appeared on {py.name}"
                report_lost(fl, tx, direction, px, py, lost, blind, text)
        mark(fl, x, y, dec.kind)
        return tun

    return apply
