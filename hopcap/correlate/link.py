"""Linking half-connections of adjacent points: identical tuple, NAT/PAT (SYN and data
fingerprints), conntrack ground truth, and proxies (application bytes)."""

from __future__ import annotations

import bisect
import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate._fastwalk import rows_of, same_keys
from hopcap.correlate.conns import (
    FP_KINDS,
    Conn,
    Half,
    HalfCols,
    PointConns,
    fingerprint_codes,
    mix,
)
from hopcap.correlate.reader import ACK, RST, SYN

WEIGHTS = {"ts": 3.0, "isn": 2.0, "sid": 2.0, "h": 1.0, "id": 0.5}


@dataclass
class HalfLinks:
    """The halves linked between two adjacent points, each way (hid -> hid)."""

    fwd: dict[int, int]  # upstream hid -> downstream hid
    back: dict[int, int]


_KIND_W = np.array([WEIGHTS[k] for k in FP_KINDS])
# conntrack's mapping holds for halves at most this far apart in time (clock offsets are
# removed first; what is left is their error and the path's delay)
CT_SLACK_NS = 2_000_000_000
_SID, _H = FP_KINDS.index("sid"), FP_KINDS.index("h")

I64 = npt.NDArray[np.int64]


def link_halves(
    a: PointConns,
    b: PointConns,
    *,
    offset_ns: int = 0,
    conntrack_pairs: Iterable[tuple[tuple[str, int, str, int], tuple[str, int, str, int]]] = (),
    only: tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]] | None = None,
) -> HalfLinks:
    """Link every half at `a` to at most one half at `b`. `offset_ns` is b's clock minus a's
    (a hint: used only to break ties by time). `only`: the halves of `a` and of `b` (by
    hid) that may be linked (the others are no candidates), by an identity key (not
    payload alone: `engine.blind_links`).

    Every candidate pair (a half at `a`, a half at `b`) is scored at once on columns:
    fingerprints both share (each distinct key weighed by its kind), the identical tuple,
    conntrack's translated tuple; pairs that cannot be one connection are dropped; the
    best-scored pairs are taken first, each half at most once."""
    ca, cb = a.half_cols(), b.half_cols()
    nb = len(b.halves)
    # fingerprints as exact integer codes (keys that are not numbers numbered in `ids`)
    ids: dict[tuple[object, ...], int] = {}
    hid_a, kid_a = _codes(a, ids, None if only is None else only[0])
    hid_b, kid_b = _codes(b, ids, None if only is None else only[1])
    # every (a key, b key) with the same id: pairs of halves sharing a fingerprint; keys
    # that many halves share at both points apart (`_Heavy`)
    heavy = _Heavy.of(hid_a, kid_a, hid_b, kid_b, nb)
    la, lb = heavy.light(kid_a), heavy.light(kid_b)
    ea, eb = _same_key(kid_a[la], kid_b[lb])
    ea, eb = np.nonzero(la)[0][ea], np.nonzero(lb)[0][eb]
    pa, pb, pk = hid_a[ea], hid_b[eb], kid_a[ea]
    if only is not None:
        sel = only[0][pa] & only[1][pb]
        pa, pb, pk = pa[sel], pb[sel], pk[sel]
    pkind = pk >> 60
    sid = np.nonzero(pkind == _SID)[0]
    if sid.shape[0]:
        keep = np.ones(pa.shape[0], bool)
        keys = list(ids)
        # a SYN's IP ID (with its MSS and options) identifies it only where no other SYN at
        # either point has the same IP ID: scanners send every SYN with IP ID 54321
        ids_a, ids_b = _sid_ids(kid_a, keys), _sid_ids(kid_b, keys)
        for j, x, y, k in zip(
            sid.tolist(), pa[sid].tolist(), pb[sid].tolist(), pk[sid].tolist(), strict=True
        ):
            ip = keys[(k >> 17) & 0xFFFFFFFF][1]
            if ids_a.get(ip, 0) > 1 or ids_b.get(ip, 0) > 1:
                keep[j] = False
            else:
                # with the ISN rewritten too, a NAT kept one port at least (an IP ID
                # alone does not make two SYNs with every field different one)
                same = (ca.isn[x], ca.sport[x], ca.dport[x]), (cb.isn[y], cb.sport[y], cb.dport[y])
                keep[j] = bool(np.any(np.array(same[0]) == np.array(same[1])))
        pa, pb, pkind = pa[keep], pb[keep], pkind[keep]
    fp_code = pa * nb + pb
    codes = [fp_code]
    weights = [_KIND_W[pkind]]
    strong = [pkind != _H]  # sharing an identity key, not just payload
    # identical tuple: the same connection unless the ISN says otherwise
    ta, tb = _tuple_pairs(ca, cb, fp_code, nb, offset_ns)
    if only is not None:
        sel = only[0][ta] & only[1][tb]
        ta, tb = ta[sel], tb[sel]
    if ta.shape[0]:
        differ = ca.syn[ta] & cb.syn[tb] & (ca.isn[ta] != cb.isn[tb])
        code = ta * nb + tb
        ok = ~differ | npsets.isin(code, fp_code)
        if heavy.keys.shape[0] and differ.any():
            no = np.nonzero(~ok)[0]
            ok[no[heavy.shared(ta[no], tb[no])[0]]] = True
        codes.append(code[ok])
        weights.append(np.full(int(ok.sum()), 2.5))
        strong.append(np.ones(int(ok.sum()), bool))
    # conntrack: ground truth for the translated tuple
    ct = {_tup_key(x): _tup_key(y) for x, y in conntrack_pairs}
    if ct:
        halves_a, halves_b = a.halves, b.halves
        if only is not None:
            halves_a = [halves_a[i] for i in np.nonzero(only[0])[0].tolist()]
            halves_b = [halves_b[i] for i in np.nonzero(only[1])[0].tolist()]
        by_str: dict[tuple[str, str], list[int]] = {}
        for g in halves_b:
            by_str.setdefault((g.src_str, g.dst_str), []).append(g.hid)
        got = np.array([
            h.hid * nb + gid
            for h in halves_a
            if (want := ct.get((h.src_str, h.dst_str))) is not None
            for gid in by_str.get(want, ())
        ], np.int64)  # fmt: skip
        # a table read at one moment maps each tuple once, as its last connection had
        # it: an earlier connection of a reused tuple may have gone elsewhere, and the
        # mapped tuple may have carried another client's connection before (random ports
        # come round again). Where a half at `b` has our SYN's ISN (the same kind of SYN),
        # the SYN crossed there: conntrack means that half or none (a NAT that rewrites
        # ISNs leaves none with ours). And one connection's halves at two points overlap
        # in time (a later connection of the tuple, whose packets this capture lost, is
        # not an earlier one's)
        x, y = got // max(nb, 1), got % max(nb, 1)
        syns = ca.syn[x] & cb.syn[y]
        same = syns & (ca.isn[x] == cb.isn[y])
        crossed = _isn_at(ca, x, cb)
        apart = np.minimum(ca.last_ts[x], cb.last_ts[y] - offset_ns) - np.maximum(
            ca.first_ts[x], cb.first_ts[y] - offset_ns
        )
        keep = (~syns | same | ~crossed) & (apart > -CT_SLACK_NS)
        if only is not None:
            keep &= only[0][x] & only[1][y]
        got = got[keep]
        codes.append(got)
        weights.append(np.full(got.shape[0], 10.0))
        strong.append(np.ones(got.shape[0], bool))
    if heavy.keys.shape[0]:
        heavy.add_pairs(codes, weights, strong, ca.first_ts, cb.first_ts - offset_ns)
    pair, inv = np.unique(np.concatenate(codes), return_inverse=True)
    score = np.bincount(inv, weights=np.concatenate(weights), minlength=pair.shape[0])
    st = np.bincount(inv, np.concatenate(strong).astype(np.float64), pair.shape[0]) > 0
    x, y = pair // max(nb, 1), pair % max(nb, 1)
    ok = ~((ca.synack[x] != cb.synack[y]) & ca.syn[x] & cb.syn[y])
    ok &= st | ~(ca.has_ts[x] & cb.has_ts[y])  # same bytes but other packets: a proxy
    if only is not None:
        # (the pairs of heavy keys too) and across a point that saw none of them, payload
        # alone cannot tell one connection through a NAT from two on either side of a
        # proxy there: an identity key or none
        ok &= only[0][x] & only[1][y] & st
    ok &= score >= 2.0
    ok &= ~_answered_apart(a, b, x, y)  # one SYN sent to two hosts, each answering its own
    for j in np.nonzero(ok & ~st)[0].tolist():
        # the same answer to another question: a proxy, not NAT
        ok[j] = _mates_agree(a, a.halves[int(x[j])], b, b.halves[int(y[j])])
    x, y, score = x[ok], y[ok], score[ok]
    dt = np.abs((cb.first_ts[y] - offset_ns) - ca.first_ts[x]) / 1e9
    final = score - np.minimum(dt, 1e6) * 1e-7
    # best first; ties: the larger hids first (`pair` is sorted, so x and y are in
    # ascending order: a stable sort of `final` is the lexsort of (final, x, y), quicker)
    order = np.argsort(final, kind="stable")[::-1]
    fwd, back = take_best(x[order], y[order])
    if only is None:
        _link_late(a, b, fwd, back, offset_ns)
    return HalfLinks(fwd, back)


# `_link_late`: halves whose TSvals are looked at all (past it: none are; a capture of a
# device between two others sees few connections the other does not), the TSvals (with
# the length) two halves must share, and how many halves a TSval may have at one point
LATE_ROWS = 1 << 20
LATE_SHARED = 3
LATE_SAME_TS = 4


def _link_late(
    a: PointConns, b: PointConns, fwd: dict[int, int], back: dict[int, int], offset_ns: int
) -> None:
    """Link (in place) halves left unlinked that one point saw from its start and the
    other only from the middle (its capture began seconds later, or ended earlier): the
    first packets' fingerprints they are linked by are then packets the other point never
    saw. A half without its SYN at one point, unlinked at both, that shares LATE_SHARED
    (TSval, length) keys with an unlinked half at the other point, overlaps it in time
    and keeps one of its ports (a NAT keeps the server's, or the client's) is the same
    direction of the same connection (a proxy's connections have TSvals of their own)."""
    ca, cb = a.half_cols(), b.half_cols()
    ua = np.nonzero(ca.has_ts)[0]
    ub = np.nonzero(cb.has_ts)[0]
    if fwd:
        ua = ua[~np.isin(ua, np.fromiter(fwd, np.int64, len(fwd)))]
    if back:
        ub = ub[~np.isin(ub, np.fromiter(back, np.int64, len(back)))]
    if not ua.shape[0] or not ub.shape[0]:
        return
    if ca.syn[ua].all() and cb.syn[ub].all():
        return  # (every unlinked half starts with its SYN at both points: the usual case)
    size = int((ca.end[ua] - ca.start[ua]).sum() + (cb.end[ub] - cb.start[ub]).sum())
    if size > LATE_ROWS:
        return

    def keys(pc: PointConns, hids: I64) -> dict[int, list[int]]:
        rows, pos = pc.rows_of(hids)
        t = pc.table
        ok = t.tsval[rows] >= 0
        k = (t.tsval[rows][ok] << 16) | t.plen[rows][ok]  # (a TSval has 32 bits)
        h = hids[pos[ok]]
        o = np.lexsort((h, k))
        k, h = k[o], h[o]
        new = np.ones(k.shape[0], bool)
        new[1:] = (k[1:] != k[:-1]) | (h[1:] != h[:-1])
        out: dict[int, list[int]] = {}
        for kk, hh in zip(k[new].tolist(), h[new].tolist(), strict=True):
            out.setdefault(kk, []).append(hh)
        return out

    ka, kb = keys(a, ua), keys(b, ub)
    score: dict[tuple[int, int], int] = {}
    for k, hs in ka.items():
        gs = kb.get(k)
        if gs is None or len(hs) > LATE_SAME_TS or len(gs) > LATE_SAME_TS:
            continue
        for h in hs:
            for g in gs:
                score[(h, g)] = score.get((h, g), 0) + 1
    best = sorted(((n, h, g) for (h, g), n in score.items() if n >= LATE_SHARED), reverse=True)
    for _n, h, g in best:
        if h in fwd or g in back or (ca.syn[h] and cb.syn[g]):
            continue
        if ca.sport[h] != cb.sport[g] and ca.dport[h] != cb.dport[g]:
            continue
        lo = max(int(ca.first_ts[h]), int(cb.first_ts[g]) - offset_ns)
        hi = min(int(ca.last_ts[h]), int(cb.last_ts[g]) - offset_ns)
        if hi < lo - CT_SLACK_NS:
            continue
        fwd[h] = g
        back[g] = h


def _codes(
    pc: PointConns, ids: dict[tuple[object, ...], int], sel: npt.NDArray[np.bool_] | None
) -> tuple[I64, I64]:
    """`fingerprint_codes` of the halves of `pc` (those of `sel`, when it leaves out most:
    a few halves cost less on their own than every half in one C pass)."""
    idx = np.nonzero(sel)[0] if sel is not None else None
    if idx is None or idx.shape[0] * 4 > len(pc.halves):
        return fingerprint_codes(pc.table, pc.halves, ids, pc=pc)
    hid, code = fingerprint_codes(pc.table, [pc.halves[i] for i in idx.tolist()], ids)
    return idx[hid], code


def _isn_at(ca: HalfCols, x: I64, cb: HalfCols) -> npt.NDArray[np.bool_]:
    """Per half `x` of `ca`: it starts with a SYN (or a SYN-ACK) whose ISN a half of `cb`
    that starts with the same kind of SYN has too."""
    out = np.zeros(x.shape[0], bool)
    for ack in (False, True):
        sa = ca.syn[x] & (ca.synack[x] == ack)
        if sa.any():
            out[sa] = npsets.isin(ca.isn[x[sa]], cb.isn[cb.syn & (cb.synack == ack)])
    return out


def take_best(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]
) -> tuple[dict[int, int], dict[int, int]]:
    """Links (x[k], y[k]) taken in order, each half at most once: (forward, back), each
    in the order they were taken. When no half is a candidate twice (the usual case)
    every pair is taken, at once; else in rounds on the columns (`_greedy`)."""
    if x.shape[0] and (np.bincount(x).max() > 1 or np.bincount(y).max() > 1):
        t = _greedy(x, y)
        x, y = x[t], y[t]
    xl, yl = x.tolist(), y.tolist()
    return dict(zip(xl, yl, strict=True)), dict(zip(yl, xl, strict=True))


# rounds `_greedy` makes on columns before it takes the pairs left one at a time
GREEDY_ROUNDS = 16


def _greedy(x: npt.NDArray[np.int64], y: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The places of the pairs (x[k], y[k]) that taking them in order, each x and each y
    at most once, takes (in order). In rounds: a pair first in order for both its x and
    its y among the pairs still undecided is taken (every pair before it with its x or
    its y was dropped, for a half taken by a pair before it), and the pairs with a half
    so taken are dropped; after `GREEDY_ROUNDS` (chains of pairs, each waiting for the
    one before it), the rest one at a time."""
    n = x.shape[0]
    live = np.arange(n, dtype=np.int64)
    used_x = np.zeros(int(x.max()) + 1, bool)
    used_y = np.zeros(int(y.max()) + 1, bool)
    first_x = np.empty(used_x.shape[0], np.int64)
    first_y = np.empty(used_y.shape[0], np.int64)
    taken: list[npt.NDArray[np.int64]] = []
    for _ in range(GREEDY_ROUNDS):
        lx, ly = x[live], y[live]
        first_x[lx] = n
        first_y[ly] = n
        np.minimum.at(first_x, lx, live)
        np.minimum.at(first_y, ly, live)
        win = (first_x[lx] == live) & (first_y[ly] == live)
        w = live[win]
        taken.append(w)
        used_x[x[w]] = True
        used_y[y[w]] = True
        live = live[~win]
        live = live[~(used_x[x[live]] | used_y[y[live]])]
        if not live.shape[0]:
            break
    if live.shape[0]:
        more: list[int] = []
        ux, uy = set(np.nonzero(used_x)[0].tolist()), set(np.nonzero(used_y)[0].tolist())
        for k, u, v in zip(live.tolist(), x[live].tolist(), y[live].tolist(), strict=True):
            if u in ux or v in uy:
                continue
            ux.add(u)
            uy.add(v)
            more.append(k)
        taken.append(np.array(more, np.int64))
    return np.sort(np.concatenate(taken))


# a key shared by more pairs of halves than this is heavy (one a point's halves have
# m times and the next point's n times makes m * n pairs; ordinary keys make a few)
HEAVY_PAIRS = 1024
# pairs that only heavy keys make are all scored up to this many a key; past it, each
# half's nearest halves in time at the other point (this many each side) stand for all
HEAVY_ALL = 1 << 16
HEAVY_NEAR = 8
# a SYN IP ID key making more pairs than this is dropped (`_Heavy`)
SID_PAIRS = HEAVY_PAIRS


@dataclass
class _Heavy:
    """Fingerprint keys that many halves share at both points: one request sent the same
    way on thousands of connections (a load test, a health check, a proxy's identical
    GETs). Joined like the others, a key on m halves at `a` and n at `b` makes m * n pairs
    (2,000 RST-ended connections with the same GET: 4 M pairs, seconds and hundreds of
    MB), all alike. Scored apart, with the same result: their weight is added to the pairs
    that other evidence makes (`shared`), and the pairs that only heavy keys make are
    made only between halves whose heavy keys weigh enough to pass (>= 2, as `link_halves`
    requires) at both points: all of them up to HEAVY_ALL a key, else each half's
    HEAVY_NEAR nearest in time either side (`link_halves` prefers the nearest). A heavy
    SYN IP ID key is dropped: 3,000 scanner SYNs with IP ID 54321 seen at two points made
    9 M pairs, looked at one by one in Python (17 s, 2 GB)."""

    keys: I64  # the heavy codes, sorted
    apart: I64  # those and the heavy SYN IP ID keys (dropped), sorted
    a_hid: I64  # (half at a, heavy key's index in `keys`), sorted by half
    a_k: I64
    b_hid: I64
    b_k: I64
    nb: int

    @classmethod
    def of(cls, hid_a: I64, kid_a: I64, hid_b: I64, kid_b: I64, nb: int) -> _Heavy:
        ua, na = np.unique(kid_a, return_counts=True)
        ub, nbk = np.unique(kid_b, return_counts=True)
        both, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
        pairs = na[ia] * nbk[ib]
        # a SYN's IP ID (with its MSS and options) on many SYNs at a point identifies
        # none of them (a scanner's 54321 on every SYN; `_sid_ids` counts other keys with
        # the IP ID, not the SYNs with this one): not scored at all
        sid = (both >> 60) == _SID
        keys = both[~sid & (pairs > HEAVY_PAIRS)]
        ra, rb = npsets.isin(kid_a, keys), npsets.isin(kid_b, keys)
        return cls(
            keys,
            npsets.union(keys, both[sid & (pairs > SID_PAIRS)]),
            hid_a[ra],
            np.searchsorted(keys, kid_a[ra]),
            hid_b[rb],
            np.searchsorted(keys, kid_b[rb]),
            nb,
        )

    def light(self, kid: I64) -> npt.NDArray[np.bool_]:
        """The rows of a point's keys that are not heavy."""
        return ~npsets.isin(kid, self.apart) if self.apart.shape[0] else np.ones(kid.shape, bool)

    def shared(self, x: I64, y: I64) -> tuple[I64, I64]:
        """(j, k) for every heavy key k that pair j (half x[j] at a, y[j] at b) shares."""
        nk = self.keys.shape[0]
        lo = np.searchsorted(self.a_hid, x, "left")
        cnt = np.searchsorted(self.a_hid, x, "right") - lo
        j = np.repeat(np.arange(x.shape[0], dtype=np.int64), cnt)
        first = np.cumsum(cnt) - cnt
        k = self.a_k[np.repeat(lo - first, cnt) + np.arange(j.shape[0], dtype=np.int64)]
        got = npsets.isin(y[j] * nk + k, self.b_hid * nk + self.b_k)
        return j[got], k[got]

    def add_pairs(
        self, codes: list[I64], weights: list[Any], strong: list[Any], ts_a: I64, ts_b: I64
    ) -> None:
        """Append the heavy keys' rows (pair code, weight, strong) to `link_halves`' lists:
        on the pairs made so far, and the pairs only heavy keys make that can pass."""
        nb = max(self.nb, 1)
        kind = self.keys >> 60
        w, st = _KIND_W[kind], kind != _H
        made = npsets.unique(np.concatenate(codes))
        j, k = self.shared(made // nb, made % nb)
        codes.append(made[j])
        weights.append(w[k])
        strong.append(st[k])
        # pairs of halves whose heavy keys weigh >= 2 at both points (lower cannot pass)
        na = int(self.a_hid.max()) + 1 if self.a_hid.shape[0] else 0
        wa = np.bincount(self.a_hid, weights=w[self.a_k], minlength=na) >= 2.0
        wb = np.bincount(self.b_hid, weights=w[self.b_k], minlength=nb) >= 2.0
        ra, rb = np.nonzero(wa[self.a_hid])[0], np.nonzero(wb[self.b_hid])[0]
        every = np.arange(self.keys.shape[0])
        by_a, by_b = npsets.groups(self.a_k[ra], every), npsets.groups(self.b_k[rb], every)
        for ki, (ga, gb) in enumerate(zip(by_a, by_b, strict=True)):
            xs, ys = self.a_hid[ra[ga]], self.b_hid[rb[gb]]
            if not xs.shape[0] or not ys.shape[0]:
                continue
            if xs.shape[0] * ys.shape[0] <= HEAVY_ALL:
                px = np.repeat(xs, ys.shape[0])
                py = np.tile(ys, xs.shape[0])
            else:
                px, py = npsets.nearest_pairs(xs, ts_a[xs], ys, ts_b[ys], HEAVY_NEAR)
            code = npsets.setdiff(px * nb + py, made)
            codes.append(code)
            weights.append(np.full(code.shape[0], w[ki]))
            strong.append(np.full(code.shape[0], st[ki]))


def _tuple_pairs(
    ca: HalfCols, cb: HalfCols, fp_code: I64, nb: int, offset_ns: int
) -> tuple[I64, I64]:
    """The pairs of halves with the identical tuple that `link_halves` scores, as
    `_same_key(ca.tkey, cb.tkey)` gives them, but for a tuple reused by many connections
    at both points (a client that binds its port; HEAVY_PAIRS): there, of its m * n pairs
    (2,000 connections: 4 M, 0.5 GB) only those that can be linked and tell something:
    the pairs that share a fingerprint, the SYNs with the same ISN (other SYN pairs are
    dropped by `link_halves` unless they share a fingerprint), and each half's nearest
    halves in time at the other point (HEAVY_NEAR either side) for the rest."""
    ua, na = np.unique(ca.tkey, return_counts=True)
    ub, nbk = np.unique(cb.tkey, return_counts=True)
    both, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    heavy = both[na[ia] * nbk[ib] > HEAVY_PAIRS]
    if not heavy.shape[0]:
        return _same_key(ca.tkey, cb.tkey)
    n = max(nb, 1)
    ha, hb = npsets.isin(ca.tkey, heavy), npsets.isin(cb.tkey, heavy)
    la, lb = np.nonzero(~ha)[0], np.nonzero(~hb)[0]
    ea, eb = _same_key(ca.tkey[la], cb.tkey[lb])
    xs, ys = [la[ea]], [lb[eb]]
    fx, fy = fp_code // n, fp_code % n
    same = (ca.tkey[fx] == cb.tkey[fy]) & ha[fx]
    xs.append(fx[same])
    ys.append(fy[same])
    sa, sb = np.nonzero(ha & ca.syn)[0], np.nonzero(hb & cb.syn)[0]
    kind_a, kind_b = ca.synack[sa].astype(np.int64), cb.synack[sb].astype(np.int64)
    ea, eb = _same_key(mix(ca.tkey[sa], ca.isn[sa], kind_a), mix(cb.tkey[sb], cb.isn[sb], kind_b))
    xs.append(sa[ea])
    ys.append(sb[eb])
    ra, rb = np.nonzero(ha)[0], np.nonzero(hb)[0]
    by_a, by_b = npsets.groups(ca.tkey[ra], heavy), npsets.groups(cb.tkey[rb], heavy)
    for ga, gb in zip(by_a, by_b, strict=True):
        x, y = ra[ga], rb[gb]
        t_y = cb.first_ts[y] - offset_ns
        px, py = npsets.nearest_pairs(x, ca.first_ts[x], y, t_y, HEAVY_NEAR)
        xs.append(px)
        ys.append(py)
    code = npsets.unique(np.concatenate(xs) * n + np.concatenate(ys))
    return code // n, code % n


def _same_key(ka: npt.NDArray[Any], kb: npt.NDArray[Any]) -> tuple[I64, I64]:
    """Every (i, j) with ka[i] == kb[j], by i then j."""
    fast = same_keys(ka, kb)
    if fast is not None:
        return fast
    ob = np.argsort(kb, kind="stable")
    s = kb[ob]
    lo = np.searchsorted(s, ka, "left")
    cnt = np.searchsorted(s, ka, "right") - lo
    ia = np.repeat(np.arange(ka.shape[0], dtype=np.int64), cnt)
    first = np.cumsum(cnt) - cnt
    ib = ob[np.repeat(lo - first, cnt) + np.arange(ia.shape[0], dtype=np.int64)]
    return ia, ib


def _mates_agree(a: PointConns, h: Half, b: PointConns, g: Half) -> bool:
    """Halves linked by payload alone are one connection only if the other directions do
    not contradict it: both carry payload, none of it the same (a proxy that added a
    header to the request and passed the response on unchanged)."""
    mh, mg = _mate(a, h), _mate(b, g)
    if mh is None or mg is None:
        return True
    kh, kg = set(a.fingerprints(mh)), set(b.fingerprints(mg))
    if not any(k[0] == "h" for k in kh) or not any(k[0] == "h" for k in kg):
        return True
    return bool(kh & kg)


def _sid_ids(code: I64, keys: list[tuple[object, ...]]) -> dict[object, int]:
    """How many distinct "sid" keys (halves' SYNs) at a point have each IP ID."""
    out: dict[object, int] = {}
    for k in code[(code >> 60) == _SID].tolist():
        ip = keys[(k >> 17) & 0xFFFFFFFF][1]
        out[ip] = out.get(ip, 0) + 1
    return out


def _answered_apart(a: PointConns, b: PointConns, x: I64, y: I64) -> npt.NDArray[np.bool_]:
    """Per pair (half x at `a`, half y at `b`): SYNs of another tuple (NAT?) whose answers
    cannot be one packet seen twice: a scanner's identical SYNs to two hosts, each host's
    stack answering its own. An answer that travelled from `b` back to `a` arrives at `a`
    later after the SYN than at `b` (each measured on its own point's clock), and a router
    between them lowers the TTL of both the SYN and the answer, or (a device that leaves
    TTLs alone) of neither: never raises one, never lowers one alone."""
    ca, cb = a.half_cols(), b.half_cols()
    mx, my = ca.mate[x], cb.mate[y]
    sel = (
        ca.syn[x] & cb.syn[y] & ~ca.synack[x] & ~cb.synack[y] & (mx >= 0) & (my >= 0)
        & (ca.tkey[x] != cb.tkey[y])
    )  # fmt: skip
    out = np.zeros(x.shape[0], bool)
    j = np.nonzero(sel)[0]
    if not j.shape[0]:
        return out
    ta, tb = a.table, b.table
    ra, rb = ca.row0[x[j]], cb.row0[y[j]]
    qa, qb = ca.row0[mx[j]], cb.row0[my[j]]
    answer = SYN | RST
    answered = ((ta.flags[qa] & answer) != 0) & ((tb.flags[qb] & answer) != 0)
    later = (ta.ts[qa] - ta.ts[ra]) < (tb.ts[qb] - tb.ts[rb])
    down_syn = ta.ttl[ra].astype(np.int64) - tb.ttl[rb]
    down_ans = tb.ttl[qb].astype(np.int64) - ta.ttl[qa]
    odd = (down_syn < 0) | (down_ans < 0) | ((down_syn > 0) != (down_ans > 0))
    out[j] = answered & (later | odd)
    return out


def _mate(pc: PointConns, h: Half) -> Half | None:
    if h.conn < 0:
        return None
    c = pc.conns[h.conn]
    return c.s if c.c is h else c.c


def _tup_key(t: tuple[str, int, str, int]) -> tuple[str, str]:
    def ep(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    return ep(t[0], t[1]), ep(t[2], t[3])


_CT_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


def parse_conntrack(
    text: str,
) -> list[tuple[tuple[str, int, str, int], tuple[str, int, str, int]]]:
    """`conntrack -L` lines -> [(original c2s tuple, tuple of the same packets after NAT)].

    An entry's original tuple is (src, sport -> dst, dport); the reply tuple is how the
    answers look. After NAT the client's packets leave as (reply.dst:reply.dport ->
    reply.src:reply.sport)."""
    out = []
    for line in text.splitlines():
        if " tcp " not in f" {line} " and not line.startswith("tcp"):
            continue
        vals: dict[str, list[str]] = defaultdict(list)
        for k, v in _CT_FIELD.findall(line):
            vals[k].append(v)
        if len(vals["src"]) < 2 or len(vals["sport"]) < 2:
            continue
        try:
            orig = (vals["src"][0], int(vals["sport"][0]), vals["dst"][0], int(vals["dport"][0]))
            rep = (vals["src"][1], int(vals["sport"][1]), vals["dst"][1], int(vals["dport"][1]))
        except (ValueError, IndexError):
            continue
        after = (rep[2], rep[3], rep[0], rep[1])
        out.append((orig, after))
        # answers: reply tuple before NAT -> original reversed after NAT
        out.append(((rep[0], rep[1], rep[2], rep[3]), (orig[2], orig[3], orig[0], orig[1])))
    return out


# --------------------------------------------------------------------------- proxies


def stream_bytes(pc: PointConns, h: Half | None, limit: int = 16384) -> bytes:
    """The first `limit` bytes of a half's stream, reassembled by sequence number."""
    return _stream(pc, h, limit)[0]


def _stream(pc: PointConns, h: Half | None, limit: int = 16384) -> tuple[bytes, bool]:
    """(bytes, cut): cut when the limit or a hole ended the reassembly early."""
    if h is None:
        return b"", False
    t = pc.table
    rows = h.idx[t.pl_cap[h.idx] > 0]
    if rows.shape[0] == 0:
        return b"", False
    base = (h.isn + 1) if h.syn else int(t.seq[rows].min())
    segs: dict[int, bytes] = {}
    for r in rows.tolist():
        off = (int(t.seq[r]) - base) & 0xFFFFFFFF
        if off >= limit or off in segs:
            continue
        segs[off] = t.payload(int(r))
    out = bytearray()
    cut = False
    for off in sorted(segs):
        seg = segs[off]
        if off > len(out):
            cut = True  # a hole: stop at what is contiguous
            break
        out += seg[len(out) - off :]
        if len(out) >= limit:
            cut = True
            break
    return bytes(out[:limit]), cut


_HEADER = re.compile(rb"^([A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}):")


def chunks(data: bytes) -> list[bytes]:
    """Content-defined chunks: lines, and long runs cut where a rolling gear hash says.
    Header names are lowercased (proxies such as HAProxy 2.x rewrite their case)."""
    out: list[bytes] = []
    for line in data.split(b"\n"):
        if len(line) <= 256:
            if line.strip():
                line = line.rstrip(b"\r")
                m = _HEADER.match(line)
                if m:
                    line = m.group(1).lower() + line[m.end(1) :]
                out.append(line)
            continue
        start = 0
        for i in _gear_cuts(line):
            if i - start >= 32:
                out.append(line[start : i + 1])
                start = i + 1
        if start < len(line):
            out.append(line[start:])
    return out


def _gear_cuts(line: bytes) -> list[int]:
    """Where the rolling gear hash of `line`, h = ((h << 1) + GEAR[c]) mod 2**32 from h = 0,
    has its low 6 bits zero (the places `chunks` may cut), in order. Those bits depend on
    the last 6 bytes only (older terms are shifted past them): one vector pass instead
    of a Python step per byte (a 16 kB window: ~1.5 ms -> ~0.05 ms)."""
    g = _GEAR_LOW6[np.frombuffer(line, np.uint8)]
    low = g.copy()
    for k in range(1, 6):
        low[k:] += g[:-k] << k
    return np.flatnonzero((low & 0x3F) == 0).tolist()


def _gear() -> list[int]:
    x = 0x2545F491
    res = []
    for _ in range(256):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        res.append(x & 0xFFFFFFFF)
    return res


_GEAR = _gear()
_GEAR_LOW6 = np.array([g & 0x3F for g in _GEAR], np.uint16)


# ------------------------------------------------------------------ request/response exchanges

M32 = 0xFFFFFFFF


@dataclass
class Exchange:
    """One request/response turn of a connection at one point: the client's bytes up to the
    next request, the server's bytes up to the next response (stream offsets from the
    start of each direction), and the content chunks of the first window of each."""

    c: tuple[int, int]
    s: tuple[int, int]
    t_c: int | None  # capture time of its first c2s payload
    t_s: int | None  # ... and of its first s2c payload
    ch_c: list[bytes]
    ch_s: list[bytes]
    # a direction of over CP_STEP bytes seen from its first byte on (after a SYN, no hole
    # in its first window): when its stream first reached beyond each of its bytes at
    # CP_AT from its first, as far as it is long (-1: never captured); None: another
    # (not compared: what the rest says is the exchange)
    cp_c: I64 | None = field(default=None, compare=False)
    cp_s: I64 | None = field(default=None, compare=False)

    @property
    def t(self) -> int:
        """When it began at this point."""
        if self.t_c is not None:
            return self.t_c
        assert self.t_s is not None
        return self.t_s


@dataclass
class ConnExchanges:
    """The exchanges of one connection at one point. `base_c`/`base_s`: the sequence number
    of stream offset 0 of each direction at this point."""

    cid: int
    base_c: int
    base_s: int
    ex: list[Exchange]

    @property
    def bounds_c(self) -> list[int]:
        return [e.c[0] for e in self.ex]

    @property
    def bounds_s(self) -> list[int]:
        return [e.s[0] for e in self.ex]


def stream_base(h: Half | None) -> int:
    """The sequence number of stream offset 0 of a half: after its SYN, else the first
    seen."""
    if h is None:
        return 0
    return (h.isn + 1) & M32 if h.syn else h.isn


@functools.lru_cache(maxsize=1024)
def _chunks_of(data: bytes) -> tuple[bytes, ...]:
    """`chunks`, remembered: a busy site sends the same requests and answers (headers and
    all) thousands of times, close together; at most 1024 windows of at most 16 kB are kept."""
    return tuple(chunks(data))


def _trimmed_chunks(data: bytes, cut: bool) -> list[bytes]:
    ch = list(_chunks_of(data))
    if cut:
        # the window ends at another place in each stream (a proxy inserts bytes): what
        # lies near the cut compares badly, leave out its end
        tail = 0
        while ch and tail < 512:
            tail += len(ch.pop())
    return ch


def _seg_cummax(v: npt.NDArray[np.int64], seg: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The running maximum of `v` within each run of equal `seg` (sorted, >= 0): one pass
    over all runs at once, each run lifted above the one before it (|v| < 2**33)."""
    lift = seg << 34
    out: npt.NDArray[np.int64] = np.maximum.accumulate(v + lift) - lift
    return out


def _run_starts(seg: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Where each run of equal values of `seg` begins."""
    first = np.ones(seg.shape[0], bool)
    first[1:] = seg[1:] != seg[:-1]
    return first


def _shift_in_runs(v: npt.NDArray[np.int64], first: npt.NDArray[np.bool_], fill: Any) -> Any:
    """v[i - 1] at each i, `fill` where a run begins (`first`)."""
    out = np.empty_like(v)
    out[1:] = v[:-1]
    out[first] = fill[first] if isinstance(fill, np.ndarray) else fill
    return out


def _half_rows(pc: PointConns, halves: list[Half | None]) -> tuple[I64, I64]:
    """The rows of `halves` one after the other (each in its `idx` order), and the position
    in `halves` of each row."""
    if pc.cols is not None and pc.halves and not pc.halves[0].pt_.rows:
        # no half's rows set in place: each half's rows are a slice of the point's rows by half
        hid = np.fromiter((-1 if h is None else h.hid for h in halves), np.int64, len(halves))
        c = pc.cols
        got = rows_of(hid, c.start, c.end, pc.order)
        return got if got is not None else pc.rows_of(hid)
    idx = [np.zeros(0, np.int64) if h is None else h.idx for h in halves]
    lens = np.fromiter((x.shape[0] for x in idx), np.int64, len(idx))
    rows = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    return rows.astype(np.int64), np.repeat(np.arange(len(idx), dtype=np.int64), lens)


def conn_exchanges(pc: PointConns, conn: Conn, limit: int = 16384) -> ConnExchanges:
    """Split a connection into request/response exchanges by turn-taking: a new exchange
    begins where the client sends new bytes after the server has sent new bytes (HTTP/1.1
    keep-alive; pipelined requests stay in one exchange). Cached per point."""
    got = pc.exchanges.get(conn.cid)
    if got is None:
        _split_exchanges(pc, [conn], limit)
        got = pc.exchanges[conn.cid]
    return got


def exchanges_of(pc: PointConns, conns: list[Conn], limit: int = 16384) -> list[ConnExchanges]:
    """`conn_exchanges` of each of `conns`, those not yet cached split all at once."""
    todo = [c for c in conns if c.cid not in pc.exchanges]
    if todo:
        _split_exchanges(pc, todo, limit)
    return [pc.exchanges[c.cid] for c in conns]


def _split_exchanges(pc: PointConns, conns: list[Conn], limit: int) -> None:
    """`conn_exchanges` of `conns` (into the point's cache). A proxy's backend side has tens
    of thousands of short connections, a Python pass of numpy calls each cost ~60 us a
    connection: here every step is one column pass over the payload packets of all of them
    (runs of one connection, of one half, of one exchange's window), and Python touches
    only each window's bytes and each exchange's result."""
    t = pc.table
    n = len(conns)
    halves = [h for c in conns for h in (c.c, c.s)]  # half 2i + d: connection i, direction d
    rows, hp = _half_rows(pc, halves)
    keep = t.plen[rows] > 0
    rows, hp = rows[keep], hp[keep]
    base = np.fromiter((stream_base(h) for h in halves), np.int64, len(halves))
    off = (t.seq[rows].astype(np.int64) - base[hp]) & M32
    off = np.where(off >= 1 << 31, off - (1 << 32), off)  # stream offsets, a wrap allowed
    ends = off + t.plen[rows].astype(np.int64)

    # -- turns: each connection's payload packets in time order (the client's first at
    # equal times: rows are by connection, client half first); how far each direction's
    # stream had got before each packet; new data goes beyond that
    ci = hp >> 1
    o = np.lexsort((t.ts[rows], ci))
    cs, dd, ee, tt = ci[o], hp[o] & 1, ends[o], t.ts[rows[o]].astype(np.int64)
    first = _run_starts(cs)
    run_c = _seg_cummax(np.where(dd == 0, ee, 0), cs)
    run_s = _seg_cummax(np.where(dd == 1, ee, 0), cs)
    prev_c = _shift_in_runs(run_c, first, 0)
    prev_s = _shift_in_runs(run_s, first, 0)
    new = np.nonzero(np.where(dd == 0, ee > prev_c, ee > prev_s))[0]
    dn, cn = dd[new], cs[new]
    # a new exchange: new client bytes right after new server bytes (of one connection)
    turn = (dn == 0) & (_shift_in_runs(dn, _run_starts(cn), 0) == 1)
    # exchange of each new-data packet, numbered over all connections: connection i's first
    # is i plus the turns of the connections before it
    exn = np.cumsum(turn) + cn
    nex = 1 + np.bincount(cn[turn], minlength=n)
    ex0 = np.cumsum(nex) - nex
    ne = int(nex.sum())
    ec = np.repeat(np.arange(n, dtype=np.int64), nex)  # connection of each exchange
    c_lo = np.zeros(ne, np.int64)
    s_lo = np.zeros(ne, np.int64)
    c_lo[exn[turn]] = prev_c[new[turn]]
    s_lo[exn[turn]] = prev_s[new[turn]]
    # how far each stream got (the end of the last exchange)
    cnt = np.bincount(cs, minlength=n)
    last = np.maximum(np.cumsum(cnt) - 1, 0)
    has = cnt > 0
    max_c = np.where(has, run_c[last] if cs.shape[0] else 0, 0)
    max_s = np.where(has, run_s[last] if cs.shape[0] else 0, 0)
    is_last = np.arange(ne) == ex0[ec] + nex[ec] - 1
    c_hi = np.where(is_last, np.maximum(max_c[ec], c_lo), np.append(c_lo[1:], 0))
    s_hi = np.where(is_last, np.maximum(max_s[ec], s_lo), np.append(s_lo[1:], 0))
    # when each exchange began in each direction: its first new packet (time order)
    t_first = []
    for di in (0, 1):
        m = dn == di
        e, tm = exn[m], tt[new[m]]
        at = _run_starts(e)
        ok = np.zeros(ne, bool)
        ok[e[at]] = True
        tv = np.zeros(ne, np.int64)
        tv[e[at]] = tm[at]
        t_first.append([x if y else None for x, y in zip(tv.tolist(), ok.tolist(), strict=True)])

    # -- windows: the first `limit` bytes of each exchange in each direction (window 2e + d)
    lo = np.stack([c_lo, s_lo], axis=1).reshape(-1)
    hi = np.stack([c_hi, s_hi], axis=1).reshape(-1)
    wend = np.minimum(hi, lo + limit)
    whalf = 2 * np.repeat(ec, 2) + np.tile(np.array([0, 1], np.int64), ne)
    data, cut = _assemble_all(pc, rows, hp, off, lo, wend, whalf)
    long = (hi > lo + limit).tolist()
    chunked = [_trimmed_chunks(x, c or g) for x, c, g in zip(data, cut, long, strict=True)]

    lo_l, hi_l = lo.tolist(), hi.tolist()
    ex = [
        Exchange((lo_l[2 * k], hi_l[2 * k]), (lo_l[2 * k + 1], hi_l[2 * k + 1]), tc, ts,
                 chunked[2 * k], chunked[2 * k + 1])
        for k, (tc, ts) in enumerate(zip(t_first[0], t_first[1], strict=True))
    ]  # fmt: skip
    # -- when each long request and response got beyond its bytes at CP_AT: where
    # its stream offsets are exact (after a SYN) and it was seen from its first byte on
    # (no hole in its first window: not a capture or a slice begun in the middle of it)
    syn = np.fromiter((h is not None and h.syn for h in halves), bool, len(halves))
    whole = syn[whalf] & ~np.array(cut, bool)
    for d, attr, x_lo, x_hi, reach in ((0, "cp_c", c_lo, c_hi, run_c),
                                       (1, "cp_s", s_lo, s_hi, run_s)):  # fmt: skip
        longer, cps = _checkpoints(x_lo, x_hi, ec, reach, cs, tt, whole[d::2])
        for k, row in zip(longer.tolist(), cps, strict=True):
            setattr(ex[k], attr, row)
    for conn, k0, k in zip(conns, ex0.tolist(), nex.tolist(), strict=True):
        pc.exchanges[conn.cid] = ConnExchanges(
            conn.cid, stream_base(conn.c), stream_base(conn.s), ex[k0 : k0 + k]
        )


CP_STEP = 8192  # a long request or response: longer than this
# where its checkpoints are, from its first byte: every CP_STEP bytes of its first MB, then
# each a quarter further than the one before (to 4 GB: 166 of them); each at least CP_STEP
# from the next (what a proxy's changes to the bytes may move them, `_in_causal_order`)
CP_AT = np.array(
    [CP_STEP * k for k in range(129)] + [int(2**20 * 1.25**k) for k in range(1, 38)], np.int64
)


def _checkpoints(
    lo: I64, hi: I64, conn: I64, reach: I64, cs: I64, tt: I64, whole: npt.NDArray[np.bool_]
) -> tuple[I64, list[I64]]:
    """Of the exchanges whose stream [lo, hi) in one direction (of connection `conn`) is
    longer than CP_STEP and seen `whole` from lo: their places, and for each, when the
    stream first reached beyond lo + each of CP_AT below hi (-1: never). `reach`: how
    far that direction's stream had got at each payload packet (`cs` its connection, `tt`
    its time; in time order within each connection)."""
    at = np.nonzero((hi - lo > CP_STEP) & whole)[0]
    if not at.shape[0] or not cs.shape[0]:
        return at[:0], []
    # the checkpoints of each (as many as it is long), one after the other
    n = np.searchsorted(CP_AT, (hi - lo)[at], "left")
    e = np.repeat(np.arange(at.shape[0], dtype=np.int64), n)
    q = lo[at][e] + CP_AT[np.arange(e.shape[0], dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)]
    own = conn[at][e]
    # (reach never falls within a connection: a search over all of them at once, each
    # connection's run lifted above the one before, as in `_seg_cummax`)
    pos = np.searchsorted(reach + (cs << 34), q + 1 + (own << 34), "left")
    got = np.minimum(pos, cs.shape[0] - 1)
    t = np.where((pos < cs.shape[0]) & (cs[got] == own), tt[got], -1)
    return at, np.split(t, np.cumsum(n)[:-1])


def _assemble_all(
    pc: PointConns,
    rows: I64,
    hp: I64,
    off: I64,
    lo: I64,
    hi: I64,
    wh: I64,
) -> tuple[list[bytes], list[bool]]:
    """Bytes [lo, hi) of the stream of half `wh` of each window, reassembled from its
    packets (`rows` of half `hp`, at stream offsets `off`), as one would walk them in
    offset order: each packet adds what it carries beyond the bytes so far; a hole (a
    packet starting beyond them) or packets captured short end a window early. (bytes,
    cut) per window: cut when it ended early."""
    t = pc.table
    # each half's packets by stream offset (in its order at equal offsets), one run a half
    q = np.lexsort((off, hp))
    rq, oq, hq = rows[q], off[q], hp[q]
    key = oq + (hq << 34)  # sorted: runs of halves lifted apart (|offset| < 2**33)
    lift = wh << 34
    i0 = np.searchsorted(key, lo + lift, "left")
    i1 = np.searchsorted(key, hi + lift, "left")
    h0 = np.searchsorted(hq, wh, "left")  # where the half's run begins
    # a packet starting before `lo` may still carry its first bytes
    i0 = np.where(i0 > h0, i0 - 1, i0)
    cnt = np.maximum(i1 - i0, 0)
    nw = lo.shape[0]
    w = np.repeat(np.arange(nw, dtype=np.int64), cnt)  # (window, packet) pairs
    p = np.repeat(i0 - (np.cumsum(cnt) - cnt), cnt) + np.arange(w.shape[0], dtype=np.int64)
    pr, po = rq[p], oq[p]
    cap = t.pl_cap[pr].astype(np.int64)
    pend = po + cap
    first = _run_starts(w)
    # how far the window's bytes reach when each packet is walked
    pos = np.maximum(_shift_in_runs(_seg_cummax(pend, w), first, lo[w]), lo[w])
    hole = po > pos
    # a hole ends the window: the packets after it add nothing
    seen = np.cumsum(hole)  # holes so far (over all windows)
    run0 = np.maximum.accumulate(np.where(first, np.arange(w.shape[0]), 0))
    valid = seen == (seen - hole)[run0]
    a = pos - po
    b = np.minimum(cap, hi[w] - po)
    adds = valid & (b > a)
    start = t.pl_off[pr].astype(np.int64)
    buf = t.buf
    segs = [
        bytes(buf[x:y])
        for x, y in zip((start + a)[adds].tolist(), (start + b)[adds].tolist(), strict=True)
    ]
    per = np.bincount(w[adds], minlength=nw).tolist()
    data: list[bytes] = []
    j = 0
    for k in per:
        data.append(b"" if k == 0 else segs[j] if k == 1 else b"".join(segs[j : j + k]))
        j += k
    # how far each window got
    got = np.where(valid, pend, np.iinfo(np.int64).min // 4)
    reach = lo.copy()
    if w.shape[0]:
        np.maximum.at(reach, w, got)
    broken = np.zeros(nw, bool)
    broken[w[hole]] = True
    return data, (broken | (reach < hi)).tolist()


def exchange_of_rows(
    pc: PointConns,
    h: Half,
    is_c: bool,
    cx: ConnExchanges,
    base_c: int,
    base_s: int,
) -> npt.NDArray[np.int64]:
    """The exchange (index into `cx.ex`) each packet of `h` belongs to, with `base_c`/
    `base_s` the sequence numbers of stream offset 0 at this point (the connection may have
    crossed a NAT since the point `cx` was computed at). Data by its first byte; other
    packets by how far they acknowledge the other direction or their own position
    (a SYN belongs to the first exchange, a FIN to the last)."""
    t = pc.table
    rows = h.idx
    own_b, oth_b = (base_c, base_s) if is_c else (base_s, base_c)
    own = np.array(cx.bounds_c if is_c else cx.bounds_s, np.int64)
    oth = np.array(cx.bounds_s if is_c else cx.bounds_c, np.int64)

    def rel(x: npt.NDArray[np.int64], base: int) -> npt.NDArray[np.int64]:
        o = (x.astype(np.int64) - base) & M32
        return np.where(o >= 1 << 31, o - (1 << 32), o)

    so = rel(t.seq[rows], own_b)
    ao = rel(t.ack[rows], oth_b)
    data = np.searchsorted(own, so, "right") - 1
    ctl = np.maximum(
        np.searchsorted(own, so, "left") - 1,
        np.where((t.flags[rows] & ACK) != 0, np.searchsorted(oth, ao, "left") - 1, -1),
    )
    k = np.where(t.plen[rows] > 0, data, ctl)
    out: npt.NDArray[np.int64] = np.clip(k, 0, len(cx.ex) - 1).astype(np.int64)
    return out


# --------------------------------------------------------------------------- proxy plan


@dataclass
class Part:
    """The exchanges of a connection (at the point `cx` was computed at) that belong to one
    flow, when the connection carried others' too (a reused backend connection)."""

    cx: ConnExchanges
    keep: frozenset[int]

    def label(self) -> str:
        one = len(self.keep) == 1
        return (
            f"reused connection: {'exchange' if one else 'exchanges'} {_runs(self.keep)} of "
            f"{len(self.cx.ex)} on it (request and response) {'is' if one else 'are'} this flow's"
        )


def unserved_label(lost: Sequence[int], n: int) -> str:
    """What a front connection's leg says of its exchanges `lost` (0-based, of `n`) that
    no connection beyond the proxy carried."""
    one = len(lost) == 1
    return (
        f"{'exchange' if one else 'exchanges'} {_runs(lost)} of {n} on this "
        f"connection: no connection beyond the proxy carried {'its' if one else 'their'} "
        "request (answered by the proxy itself, or not captured there)"
    )


def _runs(keep: Iterable[int]) -> str:
    """0-based indices as 1-based runs: "1-3, 7"."""
    ks = sorted(keep)
    runs: list[str] = []
    i = 0
    while i < len(ks):
        j = i
        while j + 1 < len(ks) and ks[j + 1] == ks[j] + 1:
            j += 1
        runs.append(f"{ks[i] + 1}" if i == j else f"{ks[i] + 1}-{ks[j] + 1}")
        i = j + 1
    if len(runs) > 6:
        runs = [*runs[:6], "…"]
    return ", ".join(runs)


@dataclass
class ProxyMatch:
    """A backend connection a proxy opened for a front connection, and its score."""

    conn: Conn
    score: float
    details: tuple[str, ...]
    part: Part | None = None  # None: the connection carried this flow only
    attempt: bool = False  # a connection attempt that carried nothing (a retry follows)


@dataclass
class ProxyPlan:
    """The proxied links between two points: each front's backends, the rest."""

    fronts: dict[int, list[ProxyMatch]]  # front conn id -> its backends, in time order
    rest: dict[int, Part]  # backend conn id -> its exchanges no front claimed
    # front conn id -> what to say about its requests that no backend carried
    unserved: dict[int, str] = field(default_factory=dict)


def _first_payload_ts(pc: PointConns, h: Half | None) -> int | None:
    """Capture time of the first packet of `h` that carries payload."""
    if h is None:
        return None
    t = pc.table
    rows = h.idx[t.plen[h.idx] > 0]
    return int(t.ts[rows[0]]) if rows.shape[0] else None


def _source(conn: Conn, dst: bool = False) -> tuple[int, int] | None:
    """The address a connection came from (`dst`: went to)."""
    if conn.c is not None:
        return conn.c.dst if dst else conn.c.src
    if conn.s is not None:
        return conn.s.src if dst else conn.s.dst
    return None


def _carries_nothing(pc: PointConns, conn: Conn) -> bool:
    t = pc.table
    return all(h is None or not bool(np.any(t.plen[h.idx] > 0)) for h in (conn.c, conn.s))


def _details(
    ca: Sequence[bytes], sa: Sequence[bytes], cb: Sequence[bytes], sb: Sequence[bytes]
) -> list[str]:
    set_ca, set_sa, set_cb, set_sb = set(ca), set(sa), set(cb), set(sb)
    details: list[str] = []
    for what, lines, against in (
        ("c2s inserted", cb, set_ca),
        ("c2s removed", ca, set_cb),
        ("s2c inserted", sa, set_sb),
        ("s2c removed", sb, set_sa),
    ):
        for line in lines:
            if line in against:
                continue
            # what a person reads: header and text lines (binary chunks near the end of
            # the compared window differ only because the windows do)
            text = line.decode("latin-1")
            if text.isprintable():
                d = f"{what}: {text[:120]}"
                if d not in details:
                    details.append(d)
    return details


TIME_ONLY = "linked by time only (no payload crossed)"
ATTEMPT = "a connection attempt that carried nothing; the proxy tried again (retry/redispatch)"
RESENT = "the request went out on it, no answer came back; the proxy sent it again (retry-on)"
MAX_CANDIDATES = 128  # backend exchanges considered per front exchange, nearest in time


@dataclass
class _ExCols:
    """Exchanges as columns: when each began (`t`), its first request and response payload
    (`t_c`, `t_s`, where `has_c`, `has_s`), the id of its content (`cid`), and the
    checkpoints of its long requests and responses (`cp_c`, `cp_s`: a row of each, -1
    past its length; `cpr_c`, `cpr_s`: its row, -1: none)."""

    t: I64
    t_c: I64
    has_c: npt.NDArray[np.bool_]
    t_s: I64
    has_s: npt.NDArray[np.bool_]
    cid: I64
    cp_c: I64
    cpr_c: I64
    cp_s: I64
    cpr_s: I64


def _exchange_cols(ex: list[Exchange], t: Any, content_id: Callable[[Exchange], int]) -> _ExCols:
    tc = [e.t_c for e in ex]
    ts = [e.t_s for e in ex]
    cps = []
    for cp in ([e.cp_c for e in ex], [e.cp_s for e in ex]):
        rows = [x for x in cp if x is not None]
        row = np.full(len(ex), -1, np.int64)
        row[[k for k, x in enumerate(cp) if x is not None]] = np.arange(len(rows))
        cols = np.full((len(rows), max(map(len, rows), default=0)), -1, np.int64)
        for i, x in enumerate(rows):
            cols[i, : x.shape[0]] = x
        cps += [cols, row]
    return _ExCols(
        np.array(t, np.int64).reshape(-1),
        np.array([0 if x is None else x for x in tc], np.int64).reshape(-1),
        np.array([x is not None for x in tc], bool).reshape(-1),
        np.array([0 if x is None else x for x in ts], np.int64).reshape(-1),
        np.array([x is not None for x in ts], bool).reshape(-1),
        np.array([content_id(e) for e in ex], np.int64).reshape(-1),
        *cps,
    )


CAUSAL_PIECE = 4096  # pairs of long exchanges compared at once (<= 6 MB a column)


def _in_causal_order(
    fc: _ExCols, bc: _ExCols, f: I64, j: I64, offset_ns: int, tol_ns: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Of the pairs (front exchange `f`, backend exchange `j`): whether their long requests
    and responses went through the proxy in time order byte by byte, as far as their
    checkpoints tell: each byte of the request reached the proxy before the backend's
    copy left it, each byte of the response reached the proxy before it left towards the
    client. One step of slack (each compared with the other side's checkpoint before it,
    CP_STEP bytes or more earlier in the stream): the offsets move by what a proxy
    changed (a header added, chunks framed anew). And per pair the mean wait at the
    proxy over the response's checkpoints (over the request's without one; NaN: neither
    has any)."""
    ok = np.ones(f.shape[0], bool)
    wait = np.full(f.shape[0], np.nan)
    for fr_, br_, fcp, bcp, resp in (
        (fc.cpr_s[f], bc.cpr_s[j], fc.cp_s, bc.cp_s, True),
        (fc.cpr_c[f], bc.cpr_c[j], fc.cp_c, bc.cp_c, False),
    ):
        both = np.nonzero((fr_ >= 0) & (br_ >= 0))[0]
        w = min(fcp.shape[1], bcp.shape[1])  # (the checkpoints both can have)
        for lo in range(0, both.shape[0], CAUSAL_PIECE):
            k = both[lo : lo + CAUSAL_PIECE]
            x, yb = fcp[fr_[k], :w], bcp[br_[k], :w]
            y = yb - offset_ns  # (on a's clock)
            if resp:  # the front's byte left after the backend's (one step before) came
                have = (x[:, 1:] >= 0) & (yb[:, :-1] >= 0)
                bad = have & (x[:, 1:] < y[:, :-1] - tol_ns)
            else:  # the backend's byte left after the front's (one step before) came
                have = (yb[:, 1:] >= 0) & (x[:, :-1] >= 0)
                bad = have & (y[:, 1:] < x[:, :-1] - tol_ns)
            ok[k] &= ~bad.any(axis=1)
            seen = (x >= 0) & (yb >= 0)
            n = seen.sum(axis=1)
            d = np.where(seen, (x - y) if resp else (y - x), 0).sum(axis=1)
            fill = np.isnan(wait[k]) & (n > 0)
            wait[k[fill]] = d[fill] / n[fill]
    return ok, wait


Content = tuple[tuple[bytes, ...], tuple[bytes, ...]]
Key = tuple[int, int]  # (conn id, exchange)


def _share(front: Content, back: Content) -> float | None:
    """How much of a front exchange's content (chunks of each direction, each distinct one
    counted once, by its length) a backend exchange carried, rounded; None: too little
    (less than 8 bytes or half of it)."""
    set_c, set_s = set(front[0]), set(front[1])
    total = sum(len(x) for x in set_c) + sum(len(x) for x in set_s)
    common = sum(len(x) for x in set_c.intersection(back[0])) + sum(
        len(x) for x in set_s.intersection(back[1])
    )
    if common < 8 or common / total < 0.5:
        return None
    return round(common / total, 2)


def _carry_nothing(pc: PointConns) -> list[bool]:
    """Per connection of a point (by cid): neither direction carried payload (a point's
    halves are in hid order)."""
    rows, hp = _half_rows(pc, list(pc.halves))
    n = np.bincount(hp[pc.table.plen[rows] > 0], minlength=len(pc.halves)).tolist()
    return [(c.c is None or n[c.c.hid] == 0) and (c.s is None or n[c.s.hid] == 0) for c in pc.conns]


def plan_proxied(
    a: PointConns,
    b: PointConns,
    hl: HalfLinks,
    *,
    offset_ns: int = 0,
    tol_ns: int = 1_000_000,
    by_time: bool | None = True,
    slack_ns: int = 2_000_000_000,
    after_ns: int = 3_000_000_000,
) -> ProxyPlan:
    """Which connections at `b` carried each connection at `a` that crossed no NAT link,
    exchange by exchange (request/response turns): a backend connection reused for the
    requests of several front connections (keep-alive pools, HAProxy's `http-reuse`) is
    split among them, and a front connection whose requests went over several backend
    connections gets all of them.

    By content first (chunks of both directions of each exchange), under time order on the
    aligned timeline (`offset_ns`: b's clock minus a's; `tol_ns`: the clock error
    allowed): a backend exchange can carry a front exchange only if its request comes
    after the front's, and its response before the front's. Equal content (the same
    request again) goes to the exchange closest in time; every backend exchange carries
    one front exchange at most. Then, with `by_time` (None: only when some fronts were
    linked by content, i.e. a proxy is known to sit between `a` and `b`), connections at
    `b` that carried no payload at all and whose SYNs were never answered (or answered
    with RST only) are attempts of the front whose request arrived last before them:
    opened after the request arrived at `a` and before its exchange was carried (or,
    when nothing carried it, before the front ended or up to `after_ns` later)."""
    fwd, linked = hl.fwd, hl.back
    fronts = [
        c
        for c in a.conns
        if (c.c is None or c.c.hid not in fwd) and (c.s is None or c.s.hid not in fwd)
    ]
    plan = ProxyPlan({}, {})
    if not fronts:
        return plan

    # which connections at b are not linked otherwise, which at either point carried
    # payload: read once here, asked of every connection several times below
    free_b = [
        (c.c is None or c.c.hid not in linked) and (c.s is None or c.s.hid not in linked)
        for c in b.conns
    ]
    empty_a, empty_b = _carry_nothing(a), _carry_nothing(b)

    def free(c: Conn) -> bool:
        return free_b[c.cid]

    # F5 BIG-IP trailers on both sides: their flow ids say which connections these are
    exact = f5_pairs(a, b, fronts, free, offset_ns=offset_ns, tol_ns=max(tol_ns, slack_ns))
    exact_backs = {m.conn.cid for ms in exact.values() for m in ms}
    fronts = [c for c in fronts if c.cid not in exact]

    # every backend exchange at b, by the time its request left (or its response came)
    backs = [
        x for x in b.conns if free_b[x.cid] and not empty_b[x.cid] and x.cid not in exact_backs
    ]
    bex: list[tuple[int, int, int]] = []  # (time on a's clock, conn id, exchange)
    for back, cx in zip(backs, exchanges_of(b, backs), strict=True):
        for k, e in enumerate(cx.ex):
            if e.t_c is not None or e.t_s is not None:
                bex.append((e.t - offset_ns, back.cid, k))
    bex.sort()
    fex_t: list[tuple[int, int, int, int]] = []  # (request time at a, front cid, ex, hi)
    fronts = [c for c in fronts if not empty_a[c.cid]]
    for conn, cx in zip(fronts, exchanges_of(a, fronts), strict=True):
        for fk, fe in enumerate(cx.ex):
            fc, fs = fe.t_c, fe.t_s
            if fc is None and fs is None:
                continue
            start = fc if fc is not None else fs
            assert start is not None
            hi = fs + tol_ns if fs is not None else conn.last_ts + slack_ns
            fex_t.append((start, conn.cid, fk, hi))
    owner, taken, score = _by_content(a, b, bex, fex_t, offset_ns, tol_ns)
    _plan_pipelined(a, b, bex, fex_t, owner, score, offset_ns, tol_ns)
    # group: front -> backend conn -> (front exchanges, backend exchanges)
    groups: dict[int, dict[int, tuple[list[int], list[int]]]] = defaultdict(dict)
    pairs: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for (bcid, bk), (fcid, fk) in sorted(owner.items()):
        pairs[(fcid, bcid)].append((bk, fk))
        fl, bl = groups[fcid].setdefault(bcid, ([], []))
        if fk not in fl:
            fl.append(fk)
        bl.append(bk)
    served = set(owner.values())
    by_back: dict[int, dict[int, int]] = defaultdict(dict)  # backend -> exchange -> front
    for (bcid, bk), (fcid, _fk) in owner.items():
        by_back[bcid][bk] = fcid
    owners_of: dict[int, set[int]] = {bcid: set(m.values()) for bcid, m in by_back.items()}
    for bcid, own in by_back.items():
        cx = b.exchanges[bcid]
        ks = sorted(own)
        loose = []
        for k, e in enumerate(cx.ex):
            if k in own or (e.t_c is None and e.t_s is None):
                continue
            # an exchange no content matched (a proxy that rewrote it, turns split
            # otherwise on each side) between exchanges of one front, while that front
            # was open, is that front's
            i = bisect.bisect_left(ks, k)
            near = {own[ks[j]] for j in (i - 1, i) if 0 <= j < len(ks)}
            if len(near) == 1:
                fcid = next(iter(near))
                fconn = a.conns[fcid]
                # on the clock the matched exchanges of this pair give (the offset is only
                # a hint before the engine aligns the clocks; a VM's can be seconds off)
                local = sorted(
                    cx.ex[bk].t - a.exchanges[fcid].ex[fk].t for bk, fk in pairs[(fcid, bcid)]
                )
                if any(
                    fconn.first_ts - tol_ns <= e.t - off <= fconn.last_ts + tol_ns
                    for off in (offset_ns, local[len(local) // 2])
                ):
                    groups[fcid][bcid][1].append(k)
                    continue
            loose.append(k)
        if loose:
            plan.rest[bcid] = Part(cx, frozenset(loose))
    # when each front exchange got an answer over some backend connection
    answered: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for (bcid, bk), fkey in owner.items():
        be = b.exchanges[bcid].ex[bk]
        if be.t_s is not None:
            answered[fkey].append((be.t, bcid))
    # what a proxy changed, per distinct content of the exchanges on each side (a busy
    # site's requests and answers repeat: thousands of pairs, a few distinct contents)
    changed: dict[tuple[tuple[bytes, ...], ...], list[str]] = {}
    for fcid, per in groups.items():
        fx = a.exchanges[fcid]
        out: list[ProxyMatch] = []
        for bcid, (fks, bks) in per.items():
            cx = b.exchanges[bcid]
            cx_ex = cx.ex
            if len(fks) == 1 and len(bks) == 1:
                # the usual group (tens of thousands on a busy proxy): one exchange each side,
                # the backend's carried by content (in `score`)
                fe, be = fx.ex[fks[0]], cx_ex[bks[0]]
                key = (tuple(fe.ch_c), tuple(fe.ch_s), tuple(be.ch_c), tuple(be.ch_s))
                sc = score[(bcid, bks[0])]
                unanswered = be.t_s is None
            else:
                key = (
                    tuple(c for k in fks for c in fx.ex[k].ch_c),
                    tuple(c for k in fks for c in fx.ex[k].ch_s),
                    tuple(c for k in bks for c in cx_ex[k].ch_c),
                    tuple(c for k in bks for c in cx_ex[k].ch_s),
                )
                sc = min(score[(bcid, k)] for k in bks if (bcid, k) in score)
                unanswered = all(cx_ex[k].t_s is None for k in bks)
            got = changed.get(key)
            if got is None:
                got = changed[key] = _details(*key)[:8]
            details = list(got)
            part = None
            if len(owners_of[bcid]) > 1 or bcid in plan.rest:
                part = Part(cx, frozenset(bks))
                details.append(part.label())
            # the request went out here, no answer came back, and it was sent again over
            # another connection that got one (HAProxy's `retry-on`): a failed attempt
            tried = unanswered and all(
                any(t > cx_ex[bk].t and other != bcid for t, other in answered[(fcid, fk)])
                for bk, fk in pairs[(fcid, bcid)]
            )
            if tried:
                details.append(RESENT)
            out.append(ProxyMatch(b.conns[bcid], sc, tuple(details), part, attempt=tried))
        out.sort(key=lambda m: m.conn.first_ts)
        plan.fronts[fcid] = out
        lost = [k for k, e in enumerate(fx.ex) if e.t_c is not None and (fcid, k) not in served]
        if lost:
            plan.unserved[fcid] = unserved_label(lost, len(fx.ex))
    # (a sliced run numbers each front's exchanges over the whole connection)
    by_front: dict[int, set[int]] = defaultdict(set)
    for fcid, fk in served:
        by_front[fcid].add(fk)
    for conn in fronts:
        a.served[conn.cid] = (frozenset(by_front.get(conn.cid, ())), conn.cid in groups)
    plan.fronts.update(exact)
    if by_time is False or (by_time is None and not plan.fronts):
        return plan
    _plan_attempts(a, b, plan, fex_t, taken, free, empty_b, offset_ns, tol_ns, after_ns)
    return plan


def _by_content(
    a: PointConns,
    b: PointConns,
    bex: list[tuple[int, int, int]],
    fex_t: list[tuple[int, int, int, int]],
    offset_ns: int,
    tol_ns: int,
) -> tuple[dict[Key, Key], dict[Key, Key], dict[Key, float]]:
    """`plan_proxied`'s matching by content: the backend exchange (conn id, exchange) that
    carried each front exchange, best pairs first. (owner: backend -> front, taken: front
    -> backend, score: backend -> share of the front's content it carried.)

    The candidates of every front exchange (the backend exchanges `bex`, in time order,
    from its request less `tol_ns` to its response, at most MAX_CANDIDATES) are judged at
    once on columns: a few hundred thousand pairs on a busy proxy, ~4 us each as a Python
    loop. How much content two exchanges share depends on their contents only, and busy
    traffic repeats the same requests and answers thousands of times: each pair of
    distinct contents is compared once."""
    contents: dict[Content, int] = {}

    def content_id(e: Exchange) -> int:
        return contents.setdefault((tuple(e.ch_c), tuple(e.ch_s)), len(contents))

    bc = _exchange_cols([b.exchanges[x[1]].ex[x[2]] for x in bex], [x[0] for x in bex], content_id)
    # front exchanges with content: (start, hi, conn id, exchange)
    f_ex = [a.exchanges[x[1]].ex[x[2]] for x in fex_t]
    sel = [k for k, e in enumerate(f_ex) if e.ch_c or e.ch_s]
    fa = np.array([fex_t[k] for k in sel], np.int64).reshape(-1, 4)[:, [0, 3, 1, 2]]
    fc = _exchange_cols([f_ex[k] for k in sel], fa[:, 0], content_id)
    i0 = np.searchsorted(bc.t, fa[:, 0] - tol_ns, "left")
    i1 = np.minimum(np.searchsorted(bc.t, fa[:, 1], "right"), i0 + MAX_CANDIDATES)
    cnt = np.maximum(i1 - i0, 0)
    f = np.repeat(np.arange(fa.shape[0], dtype=np.int64), cnt)  # (front, backend) pairs
    j = np.repeat(i0 - (np.cumsum(cnt) - cnt), cnt) + np.arange(f.shape[0], dtype=np.int64)
    f, j = _answered_last(f, j, fa, fc, bc, offset_ns, tol_ns)
    # the share of each distinct pair of contents (None: too little in common)
    nc = max(len(contents), 1)
    pair, inv = np.unique(fc.cid[f] * nc + bc.cid[j], return_inverse=True)
    by_id = list(contents)
    shares = [_share(by_id[x // nc], by_id[x % nc]) for x in pair.tolist()]
    ok = np.array([x is not None for x in shares], bool)[inv]
    # time order: the request reaches the proxy before it leaves it, the response leaves
    # the backend before it reaches the client
    ok &= ~(fc.has_c[f] & bc.has_c[j] & (bc.t_c[j] - offset_ns < fc.t_c[f] - tol_ns))
    ok &= ~(fc.has_s[f] & bc.has_s[j] & (bc.t_s[j] - offset_ns > fc.t_s[f] + tol_ns))
    f, j, inv = f[ok], j[ok], inv[ok]
    # ... and so do long requests and responses, byte by byte (identical downloads at
    # once: their first bytes alike, their progress apart)
    ok, wait = _in_causal_order(fc, bc, f, j, offset_ns, tol_ns)
    f, j, inv, wait = f[ok], j[ok], inv[ok], wait[ok]
    share = np.array([0.0 if x is None else x for x in shares], np.float64)[inv]
    # the time the proxy took to relay: the answer's when both sides have one (it is
    # relayed as it comes, also on a backend connection opened late), else the request's
    # (from when the exchanges began); over a long answer's (or request's) checkpoints,
    # its mean
    resp = fc.has_s[f] & bc.has_s[j]
    relay = np.where(resp, np.abs(bc.t_s[j] - offset_ns - fc.t_s[f]), np.abs(bc.t[j] - fa[f, 0]))
    relay = np.where(np.isnan(wait), relay, np.abs(np.nan_to_num(wait))).astype(np.int64)
    # best first: the larger share, then the shorter relay, then the larger ids (the order
    # of the tuples (share, -relay, front cid, exchange, backend cid, exchange), descending)
    b_id = np.array([x[1:] for x in bex], np.int64).reshape(-1, 2)[j]
    order = np.lexsort((b_id[:, 1], b_id[:, 0], fa[f, 3], fa[f, 2], -relay, share))[::-1]
    owner: dict[Key, Key] = {}
    taken: dict[Key, Key] = {}
    score: dict[Key, float] = {}
    share_l = share.tolist()
    got_f = [-1] * fa.shape[0]  # per front exchange: its pair's place in `f`/`j` (-1: none)
    got_b = [-1] * len(bex)  # per backend exchange: the front exchange it carries
    for k, x, y in zip(order.tolist(), f[order].tolist(), j[order].tolist(), strict=True):
        if got_f[x] >= 0 or got_b[y] >= 0:
            continue
        got_f[x], got_b[y] = k, x
    if f.shape[0] and min(got_f) < 0:
        # the same request on many connections at once (a load test, clients behind one
        # NAT, a health check): best first can give one front's backend to another and
        # leave a front with none although each had its own
        _augment(got_f, got_b, f, j, share, relay)
    # (in the order of `order`, best first, as the pairs were taken before `_augment`)
    for k, x, y in zip(order.tolist(), f[order].tolist(), j[order].tolist(), strict=True):
        if got_f[x] != k:
            continue
        fkey = (fex_t[sel[x]][1], fex_t[sel[x]][2])
        bkey = (bex[y][1], bex[y][2])
        taken[fkey] = bkey
        owner[bkey] = fkey
        score[bkey] = share_l[k]
    return owner, taken, score


def _answered_last(
    f: I64, j: I64, fa: I64, fc: _ExCols, bc: _ExCols, offset_ns: int, tol_ns: int
) -> tuple[I64, I64]:
    """The candidate pairs (`f[k]`, `j[k]`: front and backend exchange) and, for each front
    exchange with an answer, the MAX_CANDIDATES backend exchanges whose answers came last
    before it, within its window (`fa`: start, end): a backend connection opened late (its
    first SYN lost, sent again a second later) on a busy proxy begins more than
    MAX_CANDIDATES backend exchanges after its front's request, but its answer is relayed
    at once. Each pair once, by front then backend."""
    with_s = np.flatnonzero(bc.has_s)
    if not with_s.shape[0] or not fc.has_s.any():
        return f, j
    ts = bc.t_s[with_s] - offset_ns
    o = np.argsort(ts, kind="stable")
    ts, by_s = ts[o], with_s[o]
    e1 = np.searchsorted(ts, fc.t_s + tol_ns, "right")
    e0 = np.maximum(e1 - MAX_CANDIDATES, 0)
    cnt = np.where(fc.has_s, e1 - e0, 0)
    f2 = np.repeat(np.arange(fa.shape[0], dtype=np.int64), cnt)
    j2 = by_s[np.repeat(e0 - (np.cumsum(cnt) - cnt), cnt) + np.arange(f2.shape[0])]
    inside = (bc.t[j2] >= fa[f2, 0] - tol_ns) & (bc.t[j2] <= fa[f2, 1])
    nb = int(bc.t.shape[0]) + 1
    both = npsets.unique(np.concatenate([f * nb + j, f2[inside] * nb + j2[inside]]))
    return both // nb, both % nb


AUGMENT_PASSES = 8  # `_augment`'s work: at most this many looks at each candidate pair


def _augment(
    got_f: list[int],
    got_b: list[int],
    f: I64,
    j: I64,
    share: npt.NDArray[np.float64],
    relay: I64,
) -> None:
    """Complete the pairs of front and backend exchanges (`got_f`: each front's pair's place
    in `f`/`j`, -1 none; `got_b`: each backend's front, -1 none) to as many as the
    candidate pairs (`f[k]`, `j[k]`) allow: for each front without one, a chain of fronts
    each passing its backend to the one before and taking another (an augmenting path),
    tried by the larger share, then the shorter relay through the proxy (`relay`, as
    `_by_content` orders the pairs). Every pair kept is a candidate: only which front gets
    which backend among them changes. The work is bounded (AUGMENT_PASSES): past it, the
    fronts not reached keep none."""
    o = np.lexsort((relay, -share, f))
    fo, ko = f[o], o
    cuts = np.searchsorted(fo, np.arange(len(got_f) + 1))
    cand = [ko[cuts[x] : cuts[x + 1]].tolist() for x in range(len(got_f))]
    fj = j.tolist()
    # a bound on the work (candidates looked at, all searches): a few passes over them
    budget = AUGMENT_PASSES * len(fj) + len(got_f)
    # the fronts a search went through: none of them leads to a free backend as long as
    # no search succeeds, so failed searches share them (one pass over the candidates for
    # all the fronts that stay alone: those the proxy answered itself, say)
    seen: set[int] = set()
    for x0 in range(len(got_f)):
        if got_f[x0] >= 0 or not cand[x0] or x0 in seen:
            continue
        # depth first from x0 (iterative: chains can be long on a busy proxy), each front
        # visited once; `path`: (front, its next candidate to try)
        seen.add(x0)
        path = [[x0, 0]]
        while path:
            x, i = path[-1]
            if i == 0:
                budget -= len(cand[x])
                if budget < 0:
                    return  # (the pairs so far stand: each a candidate)
                # a free backend among its candidates first (the usual end of a chain: a
                # backend opened late, tried last by relay): no chain through the others
                free = next((n for n, k in enumerate(cand[x]) if got_b[fj[k]] < 0), -1)
                if free >= 0:
                    path[-1][1] = free + 1
                    _take(path, cand, fj, got_f, got_b)
                    seen = set()
                    break
            if i == len(cand[x]):
                path.pop()
                continue
            path[-1][1] = i + 1
            z = got_b[fj[cand[x][i]]]
            if z not in seen:
                seen.add(z)
                path.append([z, 0])


def _take(
    path: list[list[int]], cand: list[list[int]], fj: list[int], got_f: list[int],
    got_b: list[int],
) -> None:  # fmt: skip
    """An augmenting path found (`_augment`): each front on it takes the candidate it
    stands on (the one before its next to try)."""
    for px, pi in path:
        pk = cand[px][pi - 1]
        got_f[px] = pk
        got_b[fj[pk]] = px


def _plan_pipelined(
    a: PointConns,
    b: PointConns,
    bex: list[tuple[int, int, int]],
    fex_t: list[tuple[int, int, int, int]],
    owner: dict[tuple[int, int], tuple[int, int]],
    score: dict[tuple[int, int], float],
    offset_ns: int,
    tol_ns: int,
) -> None:
    """Pipelined requests: a client that sent several requests before the first answer
    has them in one exchange at the front, which the proxy forwards one by one (on one
    backend connection or several). A backend exchange no front exchange took, whose own
    content lies within a front exchange that began before it while its connection was
    open, belongs to the latest such exchange, if the answers of the backend exchanges it
    then has fit in its own (`_fits`: a front exchange answered once carried over one
    backend exchange is not pipelined because another backend exchange of the same request
    is left over, from a front this capture did not see)."""
    fex = sorted(fex_t)
    f_starts = [x[0] for x in fex]
    # per front exchange: the answer bytes of the backend exchanges that carry it
    answers: dict[Key, int] = defaultdict(int)
    for (bcid, bk), fkey in owner.items():
        answers[fkey] += _answer_bytes(b.exchanges[bcid].ex[bk])
    for t_b, bcid, bk in bex:
        if (bcid, bk) in owner:
            continue
        be = b.exchanges[bcid].ex[bk]
        set_c, set_s = set(be.ch_c), set(be.ch_s)
        total = sum(len(x) for x in set_c) + sum(len(x) for x in set_s)
        if total == 0:
            continue
        j = bisect.bisect_right(f_starts, t_b + tol_ns)
        for i in range(j - 1, max(j - 1 - MAX_CANDIDATES, -1), -1):
            _start, fcid, fk, _hi = fex[i]
            fconn = a.conns[fcid]
            if fconn.last_ts + tol_ns < t_b:
                continue
            fe = a.exchanges[fcid].ex[fk]
            common = sum(len(x) for x in set_c.intersection(fe.ch_c)) + sum(
                len(x) for x in set_s.intersection(fe.ch_s)
            )
            if common < 8 or common / total < 0.5:
                continue
            if be.t_s is not None and be.t_s - offset_ns > fconn.last_ts + tol_ns:
                continue  # its answer came back after the front connection ended
            got = answers[(fcid, fk)] + _answer_bytes(be)
            if not _fits(got, _answer_bytes(fe)):
                continue
            answers[(fcid, fk)] = got
            owner[(bcid, bk)] = (fcid, fk)
            score[(bcid, bk)] = round(common / total, 2)
            break


def _answer_bytes(e: Exchange) -> int:
    """The bytes of an exchange's answer (its server's bytes up to the next request)."""
    return e.s[1] - e.s[0]


def _fits(backs: int, front: int) -> bool:
    """Whether answers of `backs` bytes in all, beyond the proxy, can be a front exchange's
    answer of `front` bytes: the same bytes but for what the proxy changed in their
    headers (at most a quarter of the front's more, and 64 bytes)."""
    return backs <= front + front // 4 + 64


def _plan_attempts(
    a: PointConns,
    b: PointConns,
    plan: ProxyPlan,
    fex_t: list[tuple[int, int, int, int]],
    taken: dict[tuple[int, int], tuple[int, int]],
    free: Callable[[Conn], bool],
    empty: list[bool],
    offset_ns: int,
    tol_ns: int,
    after_ns: int,
) -> None:
    """Connections at `b` that carried nothing, opened while a front's request waited
    (retries, redispatches, a server that never answered): each to the front whose request
    arrived last before it."""
    # the window of each front exchange on a's clock: from its request to when a backend
    # carried it (or the front ended, plus `after_ns`)
    wins: list[tuple[int, int, int, bool]] = []  # (request time, window end, front cid, served)
    for start, fcid, fk, _hi in fex_t:
        fx = a.exchanges[fcid]
        if fx.ex[fk].t_c is None:
            continue
        got = taken.get((fcid, fk))
        if got is not None:
            be = b.exchanges[got[0]].ex[got[1]]
            end = be.t - offset_ns + tol_ns
            if got[1] == 0:
                # carried by a connection opened for it: its attempts failed before that
                # connection was opened (a proxy tries again once one failed)
                end = min(end, b.conns[got[0]].first_ts - offset_ns + tol_ns)
        else:
            end = a.conns[fcid].last_ts + after_ns
        wins.append((start, end, fcid, got is not None))
    wins.sort()
    w_starts = [w[0] for w in wins]
    # the proxy's own connections at b come from where those carrying content came from;
    # a connection from elsewhere (a scanner's SYN to the proxy's or the server's own
    # address, another client of the host) is not the proxy going on
    carried = [m.conn for ms in plan.fronts.values() for m in ms if not m.attempt]
    sources = {_source(x) for x in carried} - {None}
    # ... and a connection to the address the front was addressed to (the proxy's own),
    # where no connection carrying content went, is the proxy's host calling itself
    dests = {_source(x, dst=True) for x in carried}
    found: dict[int, list[Conn]] = defaultdict(list)
    lo = w_starts[0] - tol_ns + offset_ns if wins else 0
    # a busy proxy's backend connections nearly all carried something: those that did not
    # are picked out first, then taken in order of their start
    maybe = [x for x in b.conns if empty[x.cid] and free(x)]
    maybe.sort(key=lambda x: x.first_ts)
    i0 = bisect.bisect_left([x.first_ts for x in maybe], lo)
    for cb_conn in maybe[i0:]:
        c, s = cb_conn.c, cb_conn.s
        if c is None or not c.syn or c.synack:
            continue
        if s is not None and s.synack:
            continue  # it opened and still carried nothing: a health check, not this
        if sources and c.src not in sources:
            continue
        t0, t1 = cb_conn.first_ts - offset_ns, cb_conn.last_ts - offset_ns
        j = bisect.bisect_right(w_starts, t0 + tol_ns)
        # the latest request before it whose window is still open; before a request that
        # was carried in the end, the attempt must have failed before it was (a health
        # check to a server that is down, in the middle of a request's forwarding, did not)
        # (one try at a time: not a front whose other attempt was still going on then)
        for i in range(j - 1, max(j - 1 - MAX_CANDIDATES, -1), -1):
            start, end, fcid, served = wins[i]
            if end >= (t1 if served else t0):
                if c.dst not in dests and c.dst == _source(a.conns[fcid], dst=True):
                    break
                if any(x.first_ts <= cb_conn.last_ts and cb_conn.first_ts <= x.last_ts
                       for x in found.get(fcid, ())):  # fmt: skip
                    continue
                found[fcid].append(cb_conn)
                break
    for fcid, conns in found.items():
        out = plan.fronts.setdefault(fcid, [])
        served = bool(out)
        for cb_conn in conns:
            # the attempt is followed by another connection for this front: a retry
            later = any(m.conn.first_ts > cb_conn.first_ts for m in out) or any(
                x.first_ts > cb_conn.first_ts for x in conns
            )
            det = (TIME_ONLY, ATTEMPT) if later else (TIME_ONLY,)
            out.append(ProxyMatch(cb_conn, 0.0, det, None, attempt=served))
        out.sort(key=lambda m: m.conn.first_ts)


# --------------------------------------------------------------------------- F5 trailers

F5_LINK = "linked by the F5 trailer: flow id 0x{flow:x}, peer flow id 0x{peer:x}"
F5_SAMPLE = 4  # packets read at each end of each half-connection


@dataclass
class F5Ids:
    """The F5 flow ids of each connection at a point: the flow ids its packets carried and
    the peer flow ids (the other side of the proxy), zero left out."""

    flows: dict[int, frozenset[int]]
    peers: dict[int, frozenset[int]]


def f5_ids(pc: PointConns) -> F5Ids | None:
    """The F5 flow ids of a point's connections (None: its capture has no F5 trailers);
    read once per point."""
    if pc.f5 is None:
        from hopcap.correlate.f5trailer import has_trailers, read_table_trailers

        if not has_trailers(pc.table):  # not a BIG-IP's capture: no rows to gather
            pc.f5 = False
            return None
        # a connection's ids are in its first and last packets of each direction (the
        # client side learns its peer once the server side exists; a re-used server side
        # shows another peer later): reading those keeps a long capture cheap
        ends = [h.idx[:F5_SAMPLE] for h in pc.halves] + [h.idx[-F5_SAMPLE:] for h in pc.halves]
        wanted = npsets.unique(np.concatenate(ends)) if ends else np.zeros(0, np.int64)
        tt = read_table_trailers(pc.table, wanted)
        got: F5Ids | bool = False
        if tt is not None and tt.rows.shape[0]:
            n = len(pc.table)
            flow = np.zeros(n, np.uint64)
            peer = np.zeros(n, np.uint64)
            flow[tt.rows] = tt.flow
            peer[tt.rows] = tt.peer
            ids = F5Ids({}, {})
            for c in pc.conns:
                rows = np.concatenate([h.idx for h in (c.c, c.s) if h is not None])
                fs = frozenset(int(x) for x in npsets.unique(flow[rows]) if x)
                if fs:
                    ids.flows[c.cid] = fs
                    ids.peers[c.cid] = frozenset(int(x) for x in npsets.unique(peer[rows]) if x)
            got = ids if ids.flows else False
        pc.f5 = got
    return pc.f5 if isinstance(pc.f5, F5Ids) else None


def f5_pairs(
    a: PointConns,
    b: PointConns,
    fronts: list[Conn],
    free: Callable[[Conn], bool],
    *,
    offset_ns: int,
    tol_ns: int,
) -> dict[int, list[ProxyMatch]]:
    """Front connections at `a` and the connections at `b` that BIG-IP itself says are
    their other side: one's flow id is the other's peer flow id (either way round; a
    server-side connection knows its peer from its first packet, the client side only
    once the server side exists), at overlapping times. A server-side connection whose
    peer changed (OneConnect reuse: several client flows) is left to content matching.
    A front may have several (BIG-IP retried on another pool member): those that carried
    nothing before a later one are attempts."""
    ia, ib = f5_ids(a), f5_ids(b)
    if ia is None or ib is None:
        return {}
    by_flow: dict[int, list[int]] = defaultdict(list)
    by_peer: dict[int, list[int]] = defaultdict(list)
    for cid, fs in ib.flows.items():
        ps = ib.peers.get(cid, frozenset())
        if len(ps) > 1 or not free(b.conns[cid]):
            continue
        for f in fs:
            by_flow[f].append(cid)
        for p in ps:
            by_peer[p].append(cid)
    todo: list[tuple[Conn, list[tuple[Conn, int, int]]]] = []
    for conn in fronts:
        mine = ia.flows.get(conn.cid)
        if not mine:
            continue
        found: dict[int, tuple[int, int]] = {}  # back cid -> (front flow, back flow)
        for f in mine:
            for cid in by_peer.get(f, ()):
                found.setdefault(cid, (f, min(ib.flows[cid])))
        for p in ia.peers.get(conn.cid, ()):
            for cid in by_flow.get(p, ()):
                found.setdefault(cid, (min(mine), p))
        backs = []
        for cid, (f, p) in found.items():
            back = b.conns[cid]
            t0, t1 = back.first_ts - offset_ns, back.last_ts - offset_ns
            if t1 < conn.first_ts - tol_ns or t0 > conn.last_ts + tol_ns:
                continue  # a flow id used again later: not this connection's
            backs.append((back, f, p))
        if backs:
            backs.sort(key=lambda x: x[0].first_ts)
            todo.append((conn, backs))
    # the exchanges of all of them split at once (`exchanges_of`)
    exchanges_of(a, [x[0] for x in todo])
    exchanges_of(b, [y[0] for x in todo for y in x[1]])
    out: dict[int, list[ProxyMatch]] = {}
    for conn, backs in todo:
        fx = conn_exchanges(a, conn)
        ca = [c for e in fx.ex for c in e.ch_c]
        sa = [c for e in fx.ex for c in e.ch_s]
        ms = []
        for i, (back, f, p) in enumerate(backs):
            bx = conn_exchanges(b, back)
            cb = [c for e in bx.ex for c in e.ch_c]
            sb = [c for e in bx.ex for c in e.ch_s]
            details = [F5_LINK.format(flow=f, peer=p), *_details(ca, sa, cb, sb)[:8]]
            attempt = _carries_nothing(b, back) and i + 1 < len(backs)
            if attempt:
                details.append(ATTEMPT)
            ms.append(ProxyMatch(back, 1.0, tuple(details), None, attempt=attempt))
        out[conn.cid] = ms
    return out
