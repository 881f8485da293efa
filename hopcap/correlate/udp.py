"""Datagram flows across points: UDP, ICMP echo and ESP, one datagram = one unit.

Flows of adjacent points are linked by identical tuple, else (NAT/PAT: UDP has no ISN) by
the payload hashes of their first datagrams and time. Every hop of a linked flow is
matched per direction, all flows of a pair of points in one batch: a datagram pairs with
one of the same payload (and IP ID, when it survives); what is left pairs by IP ID and
length (a payload rewrite); the remainder was lost upstream / appeared downstream. Findings
follow the TCP contract (drop, inject, rewrite, gap) with the same rules for capture gaps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate._fastwalk import payloads_differ
from hopcap.correlate.conns import mix
from hopcap.correlate.dgram import (
    ECHO_REQUEST,
    HASH_BYTES,
    ICMP,
    ICMP6,
    NO_KEY,
    UDP,
    DFlow,
    DgramTable,
    build_dflows,
    describe,
    kind_word,
    proto_name,
)
from hopcap.correlate.link import HEAVY_ALL, HEAVY_NEAR, take_best
from hopcap.correlate.match import Rewrite, _pair_multiset, _ttl_off_mode
from hopcap.model import Direction, Finding, FindingKind, Leg, LinkKind

if TYPE_CHECKING:
    from hopcap.correlate.findings import Built
from hopcap.correlate.flows import Point
from hopcap.correlate.reader import captured_proto, last_ts, rows_last_ts
from hopcap.correlate.summary import end_host

I64 = npt.NDArray[np.int64]
NS = 1_000_000_000


@dataclass(slots=True)
class DLeg:
    point: int
    f: DFlow
    link: LinkKind  # same, nat, tunnel
    tunnel: str | None = None


@dataclass(slots=True)
class DDir:
    matched: int = 0
    d_min: int | None = None
    d_med: float | None = None
    undelivered: list[int] = field(default_factory=list)
    unexplained: list[int] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    # with KEEP_PAIRS (time slices that cut a conversation): the upstream row and one-way
    # delay of every matched pair, and each rewrite's place in `rewrites`' order (the
    # matching step of its pair, its upstream time): for merging several slices'
    pairs: tuple[I64, I64] | None = None
    rw_order: list[tuple[int, int]] = field(default_factory=list)
    # a time slice's: `undelivered` and `unexplained` as read, before it kept those its
    # window judges (`slices._keep_judged`, as match.DirMatch's)
    read: tuple[list[int], list[int]] | None = None


# set by `slices` while it correlates a slice that cuts a datagram conversation (one slice
# at a time in a process): `DDir.pairs` and `DDir.rw_order` are filled
KEEP_PAIRS = False


@dataclass(slots=True)
class DHop:
    a: int
    b: int
    c2s: DDir | None = None
    s2c: DDir | None = None
    missing: list[int] = field(default_factory=list)
    ended: str | None = None  # unanswered, answered, nothing


@dataclass(slots=True)
class DFlowB:
    legs: list[DLeg]
    hops: list[DHop] = field(default_factory=list)
    extra: list[Finding] = field(default_factory=list)  # added by icmp.py / tunnel.py
    # a time slice's part of a cut conversation: (point, rows) -> the rows it judges
    # (findings that list every datagram of a direction); None: all of them
    judge: Callable[[int, I64], I64] | None = None


def dtable(p: Point) -> DgramTable | None:
    if p.pc is None:
        return None
    d = p.pc.table.dgram
    return d if isinstance(d, DgramTable) else None


def build_dgram_flows(pts: list[Point], present: list[int]) -> list[DFlowB]:
    tabs: dict[int, DgramTable] = {}
    for i in present:
        t = dtable(pts[i])
        if t is not None:
            build_dflows(t)
            tabs[i] = t
    links: dict[tuple[int, int], dict[int, int]] = {}
    for a, b in pairwise(present):
        if a in tabs and b in tabs:
            links[(a, b)] = link_dflows(tabs[a], tabs[b], pts[b].offset_ns - pts[a].offset_ns)
    claimed: dict[int, set[int]] = {i: set() for i in present}
    flows: list[DFlowB] = []
    for k, p in enumerate(present):
        if p not in tabs:
            continue
        for f in tabs[p].flows:
            if f.fid in claimed[p]:
                continue
            claimed[p].add(f.fid)
            fl = DFlowB([DLeg(p, f, "same")])
            j = k
            while j + 1 < len(present):
                a, b = present[j], present[j + 1]
                cur = fl.legs[-1].f
                g = links.get((a, b), {}).get(cur.fid)
                hop = DHop(a, b, missing=list(range(a + 1, b)))
                fl.hops.append(hop)
                if g is None or g in claimed[b]:
                    if is_local(cur):
                        hop.ended = "local"  # broadcast / multicast: not routed on
                    elif not captured_proto(pts[b].table, cur.proto):  # (its whole capture)
                        hop.ended = "nothing"
                    else:
                        hop.ended = "answered" if cur.s.shape[0] else "unanswered"
                    break
                claimed[b].add(g)
                gf = tabs[b].flows[g]
                same = gf.ckey == cur.ckey and gf.skey == cur.skey
                fl.legs.append(DLeg(b, gf, "same" if same else "nat"))
                j += 1
            flows.append(fl)
    return flows


def is_local(f: DFlow) -> bool:
    """Sent to a broadcast or multicast address (IPv4 224/4, 255.255.255.255 or a .255
    directed broadcast with no answer, IPv6 ff00::/8): not expected beyond its segment."""
    hi, lo, _port = f.srv
    if f.v == 6:
        return (hi >> 56) == 0xFF
    lo &= 0xFFFFFFFF
    return (lo >> 28) == 0xE or lo == 0xFFFFFFFF or ((lo & 0xFF) == 0xFF and not f.s.shape[0])


def link_dflows(a: DgramTable, b: DgramTable, offset_ns: int) -> dict[int, int]:
    """fid at `a` -> fid at `b`: the same flow (identical tuple, or NAT/PAT: the same
    payloads), one to one, the nearest in time among equals. Score: 1 per payload hash of a
    direction's first datagrams found among the other flow's, 2.5 for the identical tuple."""
    na, nb = len(a.flows), len(b.flows)
    if na == 0 or nb == 0 or a.probe is None or b.probe is None:
        return {}
    keys: list[I64] = []
    # shared payload hashes: distinct (flow, direction, hash) at a, (flow, hash) at b
    ra, fa, da = a.probe
    rb, fb, _db = b.probe
    ka = npsets.unique_rows([fa, da, a.h[ra].view(np.int64)])
    kb = npsets.unique_rows([fb, b.h[rb].view(np.int64)])
    fa_, fb_ = a.fcols, b.fcols
    assert fa_ is not None and fb_ is not None  # (made with the flows)
    t0a = fa_.first
    t0b = fb_.first - offset_ns
    # a payload in many flows at both points (the same DNS query from thousands of
    # ports, through a NAT): m * n pairs, alike but for time (3,000 such queries: 18 M
    # pairs, 2 GB, each pair looked at in Python). Past HEAVY_ALL pairs a payload, each
    # flow's nearest in time stand for them (the nearest are taken first below)
    ka, kb, near = _heavy_payloads(ka, kb, t0a, t0b)
    if near.shape[0]:
        keys.append(near[0] * nb + near[1])
    if ka.shape[0] and kb.shape[0]:
        ob = np.argsort(kb[:, 1], kind="stable")
        hb, gb = kb[ob, 1], kb[ob, 0]
        lo = np.searchsorted(hb, ka[:, 2], side="left")
        hi = np.searchsorted(hb, ka[:, 2], side="right")
        cnt = hi - lo
        src = np.repeat(np.arange(ka.shape[0]), cnt)
        idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        keys.append(ka[src, 0] * nb + gb[idx])
    key_h = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    # identical tuples
    ua, ub = fa_.ukey, fb_.ukey
    ob = np.argsort(ub, kind="stable")
    lo = np.searchsorted(ub[ob], ua, side="left")
    hi = np.searchsorted(ub[ob], ua, side="right")
    cnt = hi - lo
    src = np.repeat(np.arange(na), cnt)
    idx = np.repeat(lo - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
    key_u = src * nb + ob[idx]
    allk = np.concatenate([key_h, key_u])
    w = np.concatenate([np.ones(key_h.shape[0]), np.full(key_u.shape[0], 2.5)])
    if allk.shape[0] == 0:
        return {}
    uk, inv = np.unique(allk, return_inverse=True)
    score = np.bincount(inv.reshape(-1), weights=w)
    xa, xb = uk // nb, uk % nb
    ok = fa_.proto[xa] == fb_.proto[xb]
    xa, xb, score = xa[ok], xb[ok], score[ok]
    f0a, f1a = fa_.first[xa], fa_.last[xa]
    f0b, f1b = fb_.first[xb] - offset_ns, fb_.last[xb] - offset_ns
    gap_s = np.maximum(np.maximum(f0a, f0b) - np.minimum(f1a, f1b), 0) / NS
    score = score - np.minimum(gap_s, 1e6) * 1e-6
    # best first, ties: the larger flows first (`uk` is sorted: xa and xb ascending, a
    # stable sort of the scores is the lexsort of (score, xa, xb)); each flow once
    order = np.argsort(score, kind="stable")[::-1]
    return take_best(xa[order], xb[order])[0]


def _heavy_payloads(ka: I64, kb: I64, t0a: I64, t0b: I64) -> tuple[I64, I64, I64]:
    """`link_dflows`' (flow, direction, hash) rows at a and (flow, hash) rows at b without
    the hashes that make more than HEAVY_ALL pairs, and for those the flows paired by
    time (a 2 x n array of (flow at a, flow at b))."""
    none = np.zeros((2, 0), np.int64)
    if not ka.shape[0] or not kb.shape[0]:
        return ka, kb, none
    ha, hb = ka[:, 2], kb[:, 1]
    ua, na = np.unique(ha, return_counts=True)
    ub, nbk = np.unique(hb, return_counts=True)
    both, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    heavy = both[na[ia] * nbk[ib] > HEAVY_ALL]
    if not heavy.shape[0]:
        return ka, kb, none
    xs, ys = [], []
    nb = max(t0b.shape[0], 1)
    for rx, gy in zip(npsets.groups(ha, heavy), npsets.groups(hb, heavy), strict=True):
        # rows at a (a flow may have the payload both ways: one row, one weight, each)
        fy = kb[gy, 0]
        x, y = npsets.nearest_pairs(rx, t0a[ka[rx, 0]], fy, t0b[fy], HEAVY_NEAR)
        # each pair once (found from both sides), as the join of every pair has it
        pair = npsets.unique(x * nb + y)
        xs.append(ka[pair // nb, 0])
        ys.append(pair % nb)
    ma, mb = npsets.isin(ha, heavy), npsets.isin(hb, heavy)
    return ka[~ma], kb[~mb], np.stack([np.concatenate(xs), np.concatenate(ys)])


# --------------------------------------------------------------------------- matching


def match_dgram_hops(pts: list[Point], flows: list[DFlowB]) -> None:
    groups: dict[tuple[int, int], list[tuple[DLeg, DLeg, DHop]]] = {}
    for fl in flows:
        for i, hop in enumerate(fl.hops):
            if hop.ended is None and i + 1 < len(fl.legs) and fl.legs[i + 1].link != "tunnel":
                groups.setdefault((hop.a, hop.b), []).append((fl.legs[i], fl.legs[i + 1], hop))
    for (a, b), items in groups.items():
        ta, tb = dtable(pts[a]), dtable(pts[b])
        assert ta is not None and tb is not None
        same_host = pts[a].host == pts[b].host and bool(pts[a].iface) and bool(pts[b].iface)
        ttl_exp = (0, 1) if same_host else None
        c_up = [x.f.c for x, _y, _h in items]
        c_dn = [y.f.c for _x, y, _h in items]
        s_up = [y.f.s for _x, y, _h in items]
        s_dn = [x.f.s for x, _y, _h in items]
        c_out = match_rows(ta, c_up, tb, c_dn, ttl_exp)
        s_out = match_rows(tb, s_up, ta, s_dn, ttl_exp)
        for k, (_x, _y, hop) in enumerate(items):
            hop.c2s, hop.s2c = c_out[k], s_out[k]


def _stack(parts: list[I64]) -> tuple[I64, I64]:
    lens = np.array([x.shape[0] for x in parts], np.int64)
    pid = np.repeat(np.arange(len(parts), dtype=np.int64), lens)
    rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return rows.astype(np.int64), pid


def match_rows(
    ta: DgramTable,
    up: list[I64],
    tb: DgramTable,
    down: list[I64],
    ttl_expected: tuple[int, ...] | None,
) -> list[DDir]:
    """Match datagrams `up[k]` of `ta` with `down[k]` of `tb`, for every pair k at once."""
    npairs = len(up)
    ra, pa = _stack(up)
    rb, pb = _stack(down)
    out = [DDir() for _ in range(npairs)]
    ma = np.zeros(ra.shape[0], bool)
    mb = np.zeros(rb.shape[0], bool)
    pairs_a: list[I64] = []
    pairs_b: list[I64] = []
    rewrites: list[tuple[int, Rewrite]] = []
    stages: list[int] = []  # each rewrite's matching step (KEEP_PAIRS)
    step_of: list[I64] = []  # each pair's
    ida, idb = ta.ipid[ra], tb.ipid[rb]
    ha, hb = ta.h[ra], tb.h[rb]
    steps = (
        (mix(pa, ha, ida), mix(pb, hb, idb), None),  # the same datagram, IP ID kept
        (mix(pa, ha), mix(pb, hb), None),  # the same payload (IP ID rewritten)
        # the same datagram (IP ID, length) with other payload bytes: a payload rewrite
        (mix(pa, ida, ta.ip_len[ra]), mix(pb, idb, tb.ip_len[rb]), "payload"),
    )
    # a time slice's rows that may have lost their copy to the slice's edge: only their
    # identity pairs them (`DgramTable.edge`)
    ea = ta.edge[ra] if ta.edge is not None else None
    eb = tb.edge[rb] if tb.edge is not None else None
    for si, (ka, kb, what) in enumerate(steps, 1):
        la = np.nonzero(~ma if si == 1 or ea is None else ~(ma | ea))[0]
        lb = np.nonzero(~mb if si == 1 or eb is None else ~(mb | eb))[0]
        if what is not None:
            la = la[ida[la] > 0]
            lb = lb[idb[lb] > 0]
        if la.shape[0] == 0 or lb.shape[0] == 0:
            continue
        xa, xb = _pair_multiset(ka[la], kb[lb])
        ia, ib = la[xa], lb[xb]
        ma[ia] = True
        mb[ib] = True
        pairs_a.append(ia)
        pairs_b.append(ib)
        step_of.append(np.full(ia.shape[0], si, np.int64))
        if what is not None:
            for i, j in zip(ia.tolist(), ib.tolist(), strict=True):
                rewrites.append((int(pa[i]), _payload_rw(ta, int(ra[i]), tb, int(rb[j]))))
                stages.append(0)
    # UDP GSO / GRO: one datagram on one side is several consecutive ones on the other
    for big_a in (True, False):
        got = _coalesced(ta, ra, pa, ma, tb, rb, pb, mb, big_a, ea, eb)
        if got is not None:
            pairs_a.append(got[0])
            pairs_b.append(got[1])
            step_of.append(np.full(got[0].shape[0], 4 if big_a else 5, np.int64))
    ia = np.concatenate(pairs_a) if pairs_a else np.zeros(0, np.int64)
    ib = np.concatenate(pairs_b) if pairs_b else np.zeros(0, np.int64)
    step = np.concatenate(step_of) if step_of else np.zeros(0, np.int64)
    if ia.shape[0]:
        ga, gb = ra[ia], rb[ib]
        # the identity hash covers the first bytes: compare the rest of long payloads
        long_ = (ta.plen[ga] > HASH_BYTES) & (ta.h[ga] == tb.h[gb])
        n = np.minimum(ta.pl_cap[ga], tb.pl_cap[gb])
        sel = np.nonzero(long_ & (n > 0))[0]
        if sel.shape[0]:
            diff = payloads_differ(ta.buf, ta.pl_off[ga[sel]], tb.buf, tb.pl_off[gb[sel]], n[sel])
            for k in sel[diff].tolist():
                rewrites.append((int(pa[ia[k]]), _payload_rw(ta, int(ga[k]), tb, int(gb[k]))))
                stages.append(int(step[k]))
        pid = pa[ia]
        dttl = ta.ttl[ga] - tb.ttl[gb]
        bad = (
            ~npsets.isin(dttl, ttl_expected)
            if ttl_expected is not None
            else _ttl_off_mode(pid, dttl)
        )
        for k in np.nonzero(bad)[0].tolist():
            rw = Rewrite("ip.ttl", int(ta.ttl[ga[k]]), int(tb.ttl[gb[k]]), int(ga[k]), int(gb[k]))
            rewrites.append((int(pid[k]), rw))
            stages.append(int(step[k]))
        da, db = ta.tos[ga] >> 2, tb.tos[gb] >> 2
        for k in np.nonzero(da != db)[0].tolist():
            rewrites.append(
                (int(pid[k]), Rewrite("ip.dscp", int(da[k]), int(db[k]), int(ga[k]), int(gb[k])))
            )
            stages.append(int(step[k]))
        dl = tb.ts[gb] - ta.ts[ga]
        if KEEP_PAIRS:
            op = np.argsort(pid, kind="stable")
            at = np.searchsorted(pid[op], np.arange(npairs + 1))
            for k in np.nonzero(np.diff(at))[0].tolist():
                sl = op[at[k] : at[k + 1]]
                out[k].pairs = (ga[sl].astype(np.int64), dl[sl].astype(np.int64))
        o = np.lexsort((dl, pid))
        pid_s, dl_s = pid[o], dl[o]
        cuts = np.searchsorted(pid_s, np.arange(npairs + 1))
        cl, dls = cuts.tolist(), dl_s.tolist()  # (Python ints: a pair at a time)
        for k in np.nonzero(np.diff(cuts))[0].tolist():
            lo, hi = cl[k], cl[k + 1]
            m = hi - lo
            d = out[k]
            d.matched = m
            d.d_min = dls[lo]
            d.d_med = (dls[lo + (m - 1) // 2] + dls[lo + m // 2]) / 2
    for i in np.nonzero(~ma)[0].tolist():
        out[int(pa[i])].undelivered.append(int(ra[i]))
    for j in np.nonzero(~mb)[0].tolist():
        out[int(pb[j])].unexplained.append(int(rb[j]))
    for at_rw, (k, rw) in enumerate(rewrites):
        out[k].rewrites.append(rw)
        if KEEP_PAIRS:
            out[k].rw_order.append((stages[at_rw], int(ta.ts[rw.a_row])))
    return out


_HEAD_BYTES = 8  # the first bytes of a piece that index it (`_coalesced`)


def _coalesced(
    ta: DgramTable,
    ra: I64,
    pa: I64,
    ma: npt.NDArray[np.bool_],
    tb: DgramTable,
    rb: I64,
    pb: I64,
    mb: npt.NDArray[np.bool_],
    big_a: bool,
    ea: npt.NDArray[np.bool_] | None = None,
    eb: npt.NDArray[np.bool_] | None = None,
) -> tuple[I64, I64] | None:
    """Unmatched datagrams of one side (`a` with `big_a`) whose payload is the payloads of
    consecutive unmatched datagrams of the same pair on the other side, in order: the
    sender's UDP segmentation offload (GSO) or the receiver's GRO, not a loss. Marks them
    matched; returns the (a, b) position pairs (one per piece). Rows `ea` / `eb` (a time
    slice's edge) take no part.

    A run of pieces starts with one shorter than the datagram whose bytes begin it: only
    those are tried (found by their first bytes), in the order of the pair's pieces, so a
    side with many unmatched datagrams costs about what it has, not their product."""
    t1, r1, p1, m1, e1, t2, r2, p2, m2, e2 = (
        (ta, ra, pa, ma, ea, tb, rb, pb, mb, eb)
        if big_a
        else (tb, rb, pb, mb, eb, ta, ra, pa, ma, ea)
    )
    big = np.nonzero(~m1 if e1 is None else ~(m1 | e1))[0]
    small = np.nonzero(~m2 if e2 is None else ~(m2 | e2))[0]
    if big.shape[0] == 0 or small.shape[0] < 2:
        return None
    n2 = t2.plen[r2[small]].tolist()
    pieces: dict[int, list[int]] = {}
    shortest: dict[int, int] = {}
    for j, pj, n in zip(small.tolist(), p2[small].tolist(), n2, strict=True):
        pieces.setdefault(pj, []).append(j)
        shortest[pj] = min(shortest.get(pj, n), n)
    # per pair, lazily: its pieces' positions in `pieces` by their first bytes
    heads: dict[int, dict[bytes, list[int]]] = {}
    n1 = t1.plen[r1[big]].tolist()
    out1: list[int] = []
    out2: list[int] = []
    for i, pi, want in zip(big.tolist(), p1[big].tolist(), n1, strict=True):
        cand = pieces.get(pi)
        if not cand or shortest[pi] >= want:
            continue
        by = heads.get(pi)
        if by is None:
            by = heads[pi] = {}
            for k0, j0 in enumerate(cand):
                by.setdefault(t2.payload(int(r2[j0]), 0, _HEAD_BYTES), []).append(k0)
        data = t1.payload(int(r1[i]))
        starts: list[int] = []
        for n in range(min(_HEAD_BYTES, len(data)) + 1):
            starts.extend(by.get(data[:n], ()))
        starts.sort()
        for k0 in starts:
            j0 = cand[k0]
            if m2[j0] or int(t2.plen[r2[j0]]) >= want:
                continue
            got: list[int] = []
            pos = 0
            for j in cand[k0:]:
                if m2[j]:
                    continue
                n = int(t2.plen[r2[j]])
                piece = t2.payload(int(r2[j]))
                if pos + n > want or piece != data[pos : pos + len(piece)]:
                    break
                got.append(j)
                pos += n
                if pos == want:
                    break
            if pos == want and len(got) > 1:
                m1[i] = True
                for j in got:
                    m2[j] = True
                    out1.append(i)
                    out2.append(j)
                break
    if not out1:
        return None
    x, y = np.array(out1, np.int64), np.array(out2, np.int64)
    return (x, y) if big_a else (y, x)


def _payload_rw(ta: DgramTable, ai: int, tb: DgramTable, bj: int) -> Rewrite:
    a, b = ta.payload(ai), tb.payload(bj)
    k = 0
    m = min(len(a), len(b))
    while k < m and a[k] == b[k]:
        k += 1
    lo = max(k - 8, 0)

    def show(x: bytes) -> str:
        return x[lo : lo + 48].decode("latin-1").encode("unicode_escape").decode("ascii")

    if a[lo : lo + 48] == b[lo : lo + 48]:
        return Rewrite("payload", f"{len(a)} bytes", f"{len(b)} bytes", ai, bj)
    return Rewrite("payload", show(a), show(b), ai, bj)


def delay_samples(
    flows: list[DFlowB],
) -> tuple[dict[tuple[int, int], list[int]], dict[tuple[int, int], list[int]]]:
    """Minimum one-way delays per pair of points (c2s, s2c), for the clock estimate."""
    d1: dict[tuple[int, int], list[int]] = {}
    d2: dict[tuple[int, int], list[int]] = {}
    for fl in flows:
        for hop in fl.hops:
            if hop.c2s is not None and hop.c2s.d_min is not None:
                d1.setdefault((hop.a, hop.b), []).append(hop.c2s.d_min)
            if hop.s2c is not None and hop.s2c.d_min is not None:
                d2.setdefault((hop.a, hop.b), []).append(hop.s2c.d_min)
    return d1, d2


# --------------------------------------------------------------------------- findings


def finish_dflow(pts: list[Point], present: list[int], fl: DFlowB) -> Built:
    if _healthy(pts, present, fl):
        # (most flows of a busy capture, e.g. a DNS query and its answer: nothing below
        # finds anything in them but the far end's unanswered requests, checked here)
        legs = _legs_out(pts, fl)
        if fl.legs[0].f.s.shape[0]:  # (both ways: what facts_summary says of it)
            summary = _delivered(tuple((leg.point, leg.link) for leg in legs))
        else:
            summary = dgram_summary(pts, fl, [], legs)
        return _built(pts, fl, (), summary, legs)
    from hopcap.correlate.clocks import blind
    from hopcap.correlate.findings import (
        KIND_ORDER,
        extra_gap_words,
        lost_gap_words,
        missing_gaps,
        split_extra,
        split_lost,
    )

    first = fl.legs[0]
    f0 = first.f
    p0 = pts[first.point]
    findings: list[Finding] = []
    first_ts_ns = f0.first_ts - p0.offset_ns

    def tab(p: Point) -> DgramTable:
        t = dtable(p)
        assert t is not None
        return t

    def fts(p: Point, rows: list[int]) -> float:
        return (int(tab(p).ts[rows].min()) - p.offset_ns) / NS

    def lts(p: Point, rows: list[int]) -> float | None:
        return rows_last_ts(tab(p).ts, rows, p.offset_ns)

    def found(
        kind: FindingKind, d: Direction, up: Point, down: Point, at: Point, rows: list[int],
        nb: int, text: str,
    ) -> Finding:  # fmt: skip
        """A finding of `rows` of point `at`, between `up` and `down`."""
        return Finding(kind, d, (up.name, down.name), len(rows), nb, fts(at, rows), text,
                       last_ts=lts(at, rows))  # fmt: skip

    def add_lost(d: Direction, up: Point, down: Point, rows: list[int]) -> None:
        if not rows:
            return
        t = tab(up)
        drop, gaps = split_lost(up, down, t.ts, rows)
        if drop:
            what, nb = describe(t, drop)
            findings.append(found("drop", d, up, down, up, drop, nb, what))
        for gap, why in gaps:
            what, nb = describe(t, gap)
            findings.append(
                found("gap", d, up, down, up, gap, nb, lost_gap_words(up, down, why, what))
            )

    def add_extra(d: Direction, up: Point, down: Point, rows: list[int]) -> None:
        if not rows:
            return
        t = tab(down)
        inj, gaps = split_extra(up, down, t.ts, rows)
        if inj:
            what, nb = describe(t, inj)
            findings.append(found("inject", d, up, down, down, inj, nb, what))
        for gap, why in gaps:
            what, nb = describe(t, gap)
            text = extra_gap_words(up, down, why, what)
            findings.append(found("gap", d, up, down, down, gap, nb, text))

    def judged(point: int, rows: I64) -> I64:
        return rows if fl.judge is None else fl.judge(point, rows)

    legs_at = {leg.point: leg for leg in fl.legs}
    for hop in fl.hops:
        pa, pb = pts[hop.a], pts[hop.b]
        findings.extend(missing_gaps(pts, hop.a, hop.b, hop.missing, first_ts_ns))
        if hop.ended is not None:
            leg = legs_at[hop.a]
            lc, ls = leg.f.c, leg.f.s
            if hop.ended in ("answered", "nothing") and pa.host == pb.host and pa.iface:
                # requests to the host itself (or past it, `nothing`: `pb` saw none of
                # their protocol), some answered: those never answered are its own
                t = tab(pa)
                rows = judged(hop.a, lc).tolist()
                if rows and ls.shape[0] and _of_requests(t, leg.f):
                    findings += _unanswered(t, pa, rows, ls.tolist(), describe, fts, lts, pa.host)
            if hop.ended == "unanswered":
                add_lost("c2s", pa, pb, judged(hop.a, leg.f.c).tolist())
            elif hop.ended == "answered" and leg.f.c.shape[0] and not pb.kernel_drops:
                # answered before a point that was not capturing then (its capture had
                # ended: `clocks.ended_early`, or a stop time given): a gap, not a device
                ta = tab(pa)
                at = int(ta.ts[leg.f.c[0]]) - pa.offset_ns + pb.offset_ns
                why = blind(pb, at)
                rows = judged(hop.a, leg.f.c).tolist() if why is not None else []
                if rows:
                    what, nb = describe(ta, rows)
                    findings.append(
                        Finding(
                            "gap",
                            "c2s",
                            (pa.name, pb.name),
                            len(rows),
                            nb,
                            fts(pa, rows),
                            f"seen at {pa.name} and answered, never at {pb.name}, but {why}: "
                            f"cannot tell whether they crossed {pb.name} or were answered "
                            f"before it; {what}",
                            last_ts=lts(pa, rows),
                        )
                    )
            elif hop.ended == "nothing":
                findings.append(
                    Finding(
                        "gap",
                        "c2s",
                        (pa.name, pb.name),
                        0,
                        0,
                        first_ts_ns / NS,
                        f"{pb.name} captured no {proto_name(leg.f.proto).upper()} packets "
                        "at all (capture filter, wrong interface?): what happened after "
                        f"{pa.name} is unknown",
                    )
                )
            continue
        dirs: tuple[tuple[Direction, DDir | None, Point, Point], ...] = (
            ("c2s", hop.c2s, pa, pb),
            ("s2c", hop.s2c, pb, pa),
        )
        for d, dm, up, down in dirs:
            if dm is None:
                continue
            add_lost(d, up, down, dm.undelivered)
            add_extra(d, up, down, dm.unexplained)
            groups: dict[str, list[Rewrite]] = {}
            for rw in dm.rewrites:
                groups.setdefault(rw.field, []).append(rw)
            for fld, rws in groups.items():
                rows = [rw.a_row for rw in rws]
                what, nb = describe(tab(up), rows)
                vals = {(str(x.before), str(x.after)) for x in rws}
                if len(vals) > 1:
                    what += f"; {len(vals)} different values"
                findings.append(
                    Finding(
                        "rewrite",
                        d,
                        (up.name, down.name),
                        len(rws),
                        nb,
                        fts(up, rows),
                        what,
                        field=fld,
                        before=rws[0].before,
                        after=rws[0].after,
                        last_ts=lts(up, rows),
                    )
                )
    # the far end: an echo request or a DNS query that reached the last point unanswered
    last = fl.legs[-1]
    pl = pts[last.point]
    lf = last.f
    if (tl := _requests_at_far_end(pts, present, fl)) is not None:
        r0 = int(lf.c[0])
        rows = judged(last.point, lf.c).tolist()
        beyond = end_host(pts, last.point, [leg.point for leg in fl.legs]) or "server"
        if lf.s.shape[0] and rows:
            findings += _unanswered(tl, pl, rows, lf.s.tolist(), describe, fts, lts, beyond)
        elif lf.s.shape[0] == 0 and rows:
            what, nb = describe(tl, rows)
            end = pl.stop_ns if pl.stop_ns is not None else last_ts(tl)
            late = end - int(tl.ts[r0]) < NS
            kind: FindingKind
            if pl.kernel_drops or late:
                kind = "gap"
                text = f"{what}: no answer seen, but the capture at {pl.name} " + (
                    f"dropped {pl.kernel_drops} packets in the kernel"
                    if pl.kernel_drops
                    else "ended less than a second after it"
                )
            else:
                kind, text = "drop", f"{what}: reached {pl.name}, never answered by {beyond}"
            findings.append(
                Finding(
                    kind,
                    "c2s",
                    (pl.name, beyond),
                    len(rows),
                    nb,
                    fts(pl, rows),
                    text,
                    unanswered=True,
                )
            )
    findings.extend(fl.extra)
    findings.sort(key=lambda x: (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0))
    legs_out = _legs_out(pts, fl)
    return _built(pts, fl, tuple(findings), dgram_summary(pts, fl, findings, legs_out), legs_out)


def _healthy(pts: list[Point], present: list[int], fl: DFlowB) -> bool:
    """Whether `finish_dflow` can find nothing in `fl`: every hop matched both ways with
    nothing lost, extra or rewritten, no point missing or hop ended, no finding added
    (tunnels, ICMP), and at the far end no request left unanswered."""
    if fl.extra or fl.judge is not None:
        return False
    for hop in fl.hops:
        if hop.missing or hop.ended is not None:
            return False
        for dm in (hop.c2s, hop.s2c):
            if dm is not None and (dm.undelivered or dm.unexplained or dm.rewrites):
                return False
    if (t := _requests_at_far_end(pts, present, fl)) is not None:
        lf = fl.legs[-1].f
        return bool(lf.s.shape[0]) and not _open_requests(t, lf.c, lf.s)
    return True


def _requests_at_far_end(pts: list[Point], present: list[int], fl: DFlowB) -> DgramTable | None:
    """The table of the path's last point when the flow reached it and is one of requests
    to be answered (an echo request, a DNS query; not an ESP flow): its requests there
    are looked at for answers; else None."""
    last = fl.legs[-1]
    lf = last.f
    if last.point != present[-1] or last.point != len(pts) - 1 or not lf.c.shape[0]:
        return None
    t = dtable(pts[last.point])
    assert t is not None
    return t if _of_requests(t, lf) else None


def _of_requests(t: DgramTable, f: DFlow) -> bool:
    """Whether the flow `f` (with datagrams from its client) at the point of table `t` is
    one of requests to be answered: echo requests, DNS queries (not an ESP flow)."""
    r0 = int(f.c[0])
    request = f.proto == UDP or int(t.itype[r0]) == ECHO_REQUEST.get(f.proto)
    return request and _asks(t, f.proto, r0)


@functools.lru_cache(maxsize=256)
def _through(legs: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """A path's words in a flow's summary: its points (`a -> b`), and how its legs link
    where not the same tuple (` (nat at b)`); the same for every flow on the path."""
    path = " -> ".join(point for point, _link in legs)
    kinds = [f"{link} at {point}" for point, link in legs[1:] if link != "same"]
    return path, f" ({', '.join(kinds)})" if kinds else ""


def _delivered(legs: tuple[tuple[str, str], ...]) -> str:
    """`facts_summary` of a flow without findings that went both ways and no hop of
    which ended."""
    path, more = _through(legs)
    return f"OK: delivered both ways through {path}{more}"


def _legs_out(pts: list[Point], fl: DFlowB) -> list[Leg]:
    legs_out: list[Leg] = []
    for i, leg in enumerate(fl.legs):
        lat = None
        if i > 0:
            hop = fl.hops[i - 1]
            if hop.c2s is not None and hop.c2s.d_med is not None:
                lat = (hop.c2s.d_med - (pts[hop.b].offset_ns - pts[hop.a].offset_ns)) / NS
        legs_out.append(
            Leg(
                point=pts[leg.point].name,
                tuple=leg.f.tuple_str,
                link=leg.link if i else "same",
                latency_s=lat,
                tunnel=leg.tunnel,
            )
        )
    return legs_out


def _built(
    pts: list[Point], fl: DFlowB, findings: tuple[Finding, ...], summary: str, legs: list[Leg]
) -> Built:
    from hopcap.correlate.findings import Built

    first = fl.legs[0]
    f0 = first.f
    return Built(
        proto_name(f0.proto),
        f0.client_str,
        f0.server_str,
        tuple(legs),
        findings,
        summary,
        (f0.first_ts - pts[first.point].offset_ns) / NS,
    )


@dataclass
class DFacts:
    """What a datagram flow's summary needs besides its findings and legs (a time slice
    sends them for its part of a cut conversation: counts of the datagrams it judges)."""

    word_c: str
    word_s: str
    nc: int  # the client's datagrams at the first point
    ns: int  # the server's
    nbc: int  # the client's payload bytes
    ended: str | None  # the last hop's `ended`
    who: str  # who answered before the last hop's point (`before`)
    before: str


def dgram_facts(pts: list[Point], fl: DFlowB, words: bool = True) -> DFacts:
    """`words`: the flow's datagrams named (a DNS query's name read from its payload) even
    when the summary will not say them: it does for findings and a one-way flow only."""
    t0 = dtable(pts[fl.legs[0].point])
    assert t0 is not None
    f0 = fl.legs[0].f
    point = fl.legs[0].point
    c = f0.c if fl.judge is None else fl.judge(point, f0.c)
    s = f0.s if fl.judge is None else fl.judge(point, f0.s)
    word_c = word_s = "datagram"
    if fl.legs[0].tunnel is not None:
        word_c = word_s = "encrypted datagram"
    elif words or not s.shape[0]:
        word_c = kind_word(t0, int(f0.c[0])) if f0.c.shape[0] else "datagram"
        word_s = kind_word(t0, int(f0.s[0])) if f0.s.shape[0] else "datagram"
    ended = fl.hops[-1].ended if fl.hops else None
    who = before = ""
    if ended == "answered":
        pa, pb = pts[fl.hops[-1].a], pts[fl.hops[-1].b]
        who = f"{pa.host} itself" if pa.host == pb.host and pa.iface and pb.iface else "a device"
        before = pb.name
    nbc = int(t0.plen[c].sum())
    return DFacts(word_c, word_s, int(c.shape[0]), int(s.shape[0]), nbc, ended, who, before)


def dgram_summary(pts: list[Point], fl: DFlowB, findings: list[Finding], legs: list[Leg]) -> str:
    facts = dgram_facts(pts, fl, words=bool(findings))
    return facts_summary({p.name: p for p in pts}, facts, findings, legs)


def facts_summary(
    by_name: dict[str, Point], facts: DFacts, findings: list[Finding], legs: list[Leg]
) -> str:
    """A datagram flow's one-line summary from its findings, legs and `facts`."""
    from hopcap.correlate.local import more as _more
    from hopcap.correlate.summary import sentence
    from hopcap.correlate.summary import where as _where

    word_c, word_s = facts.word_c, facts.word_s
    for fnd in findings:
        a, b = fnd.between
        where = _where(by_name, fnd.between)
        word = word_c if fnd.direction == "c2s" else word_s
        if fnd.kind == "drop" and "the inner packet never appeared" in fnd.what:
            return (
                f"{word} arrived on {a} but the inner packet never appeared on {b}: dropped "
                f"{where} (the tunnel endpoint)" + _more(findings)
            )
        if fnd.kind == "drop" and fnd.unanswered:
            return f"{word} reached {a} but {b} never answered it" + _more(findings)
        if fnd.kind != "reset":
            line = sentence(fnd, word, where, findings, "datagrams")
            if line:
                return line
    for fnd in findings:
        if fnd.kind == "gap":
            return f"incomplete evidence {_where(by_name, fnd.between)}: {fnd.what}"
    nc, ns_ = facts.nc, facts.ns
    ends = tuple((leg.point, leg.link) for leg in legs)
    if facts.ended != "answered" and not (nc and not ns_):
        return _delivered(ends)
    path, more = _through(ends)
    if nc and not ns_:
        nb = facts.nbc
        local = (
            f" (broadcast/multicast: not routed beyond {legs[-1].point})"
            if facts.ended == "local"
            else ""
        )
        return (
            f"one way: {nc} {word_c}{'s' if nc > 1 else ''} ({nb} bytes) went through "
            f"{path}{more}; nothing came back to {legs[0].point}{local}"
        )
    return f"OK: through {path}{more}; answered before {facts.before} ({facts.who})"


def _asks(t: DgramTable, proto: int, r0: int) -> bool:
    """Whether a flow (its first datagram `r0`) is one of requests and answers: a ping, DNS."""
    return proto in (ICMP, ICMP6) or (proto == UDP and int(t.dport[r0]) == 53)


def _open_requests(t: DgramTable, rows: list[int] | I64, answers: list[int] | I64) -> list[int]:
    """The requests among `rows` that no answer among `answers` is to (by
    `DgramTable.answer_keys`: an echo's sequence number, a DNS message's ID; a request
    whose key was not captured is not one)."""
    keys = t.answer_keys()
    got = set(keys[answers].tolist())
    return [int(r) for r, k in zip(rows, keys[rows].tolist(), strict=True)
            if k != NO_KEY and k not in got]  # fmt: skip


def _unanswered(
    t: DgramTable,
    pl: Point,
    rows: list[int],
    answers: list[int],
    describe: Callable[[DgramTable, list[int]], tuple[str, int]],
    fts: Callable[[Point, list[int]], float],
    lts: Callable[[Point, list[int]], float | None],
    beyond: str,
) -> list[Finding]:
    """The requests of a flow, some answered, that reached point `pl`, the last it was seen
    at, and were never answered by `beyond` (the server, or the host that answers them):
    an echo request without the reply of its sequence number, a DNS query without a
    response of its ID (a server that answers some and not others). Those in the capture's
    last second, or when it dropped packets in the kernel, cannot be told: a gap."""
    open_ = _open_requests(t, rows, answers)
    if not open_:
        return []
    end = pl.stop_ns if pl.stop_ns is not None else last_ts(t)
    late: list[int] = []
    lost: list[int] = []
    for r, ts in zip(open_, t.ts[open_].tolist(), strict=True):
        (late if pl.kernel_drops or end - ts < NS else lost).append(r)
    # (no count of the requests answered: a time slice sees its own part of them)
    of = "others of the flow were answered"
    out: list[Finding] = []
    if lost:
        what, nb = describe(t, lost)
        text = f"{what}: reached {pl.name}, never answered by {beyond} ({of})"
        out.append(Finding("drop", "c2s", (pl.name, beyond), len(lost), nb, fts(pl, lost),
                           text, unanswered=True, last_ts=lts(pl, lost)))  # fmt: skip
    if late:
        what, nb = describe(t, late)
        why = (
            f"dropped {pl.kernel_drops} packets in the kernel"
            if pl.kernel_drops
            else "ended less than a second after it"
        )
        text = f"{what}: no answer seen ({of}), but the capture at {pl.name} {why}"
        out.append(Finding("gap", "c2s", (pl.name, beyond), len(late), nb, fts(pl, late),
                           text, unanswered=True, last_ts=lts(pl, late)))  # fmt: skip
    return out
