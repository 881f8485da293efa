"""Flows: the legs of every connection across the points of the path (linked by the
adjacent points' half links, proxies and NAT), and their hops matched."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate._fastwalk import rows_of
from hopcap.correlate.conns import Half, PointConns
from hopcap.correlate.link import HalfLinks, Part, ProxyPlan, plan_proxied
from hopcap.correlate.match import M32, DirMatch, PairParams, learn_deltas, match_batch
from hopcap.correlate.reader import (
    ACK,
    FIN,
    RST,
    SYN,
    PacketTable,
    captured_dgrams,
    captured_first,
    captured_last,
    captured_tcp,
)
from hopcap.model import LinkKind, PointInput

I64 = npt.NDArray[np.int64]
NS = 1_000_000_000


@dataclass
class Point:
    """A capture point being correlated: its input, table, clock and capture window."""

    idx: int
    inp: PointInput
    name: str
    host: str
    iface: str
    pc: PointConns | None  # None: missing
    warnings: list[str] = field(default_factory=list)
    offset_ns: int = 0  # this point's clock minus the first point's
    offset_err_ns: int | None = None
    start_ns: int | None = None  # packets before this (aligned to this point) are not evidence
    stop_ns: int | None = None
    # exchange of every packet of a shared connection's leg here (see `_part_filters`),
    # and lists of packets split by exchange (`_Sel.rows`)
    ex_rows: dict[tuple[int, ...], dict[int, int]] = field(default_factory=dict)
    row_split: dict[tuple[object, ...], dict[int, list[Any]]] = field(default_factory=dict)
    records: int = 0  # of an unreadable capture (pc None)
    # why its capture is taken to have ended at its last packet (`clocks.ended_early`)
    ended: str | None = None
    _listened: tuple[int | None, int | None] | None = None  # (`listened`)
    _one_rst: I64 | None = None  # (`one_rst`)

    # per TCP flag: the rows of every half of this point with that flag, by half id
    flag_rows: dict[int, dict[int, list[int]]] = field(default_factory=dict)
    # per half (hid): its data its receiver never acknowledged before it came again
    # (`unacked_rows`; a time slice keeps those it judges)
    unacked: dict[int, list[int]] = field(default_factory=dict)

    def rows_with(self, h: Half, flag: int) -> list[int]:
        """The rows of half `h` (of this point) with TCP flag `flag` set; found for every
        half of the point at once, on first need (one numpy pass, not one per half)."""
        return list(self._flag_rows(flag).get(h.hid, ()))

    def unacked_of(self, h: Half, back: Half) -> list[int]:
        """`unacked_rows` of half `h` (its receiver's half `back`) at this point, once."""
        got = self.unacked.get(h.hid)
        if got is None:
            got = self.unacked[h.hid] = unacked_rows(self.table, h, back)
        return list(got)

    def one_rst(self) -> I64:
        """Per half (by hid): the row of its RST when it has one and no FIN (-1: no RST; -2:
        several, or a FIN too), once."""
        got = self._one_rst
        if got is None:
            assert self.pc is not None
            got = self._one_rst = np.full(len(self.pc.halves), -1, np.int64)
            rst = self._flag_rows(RST)
            if rst:
                fin = self._flag_rows(FIN)
                for k, rows in rst.items():
                    got[k] = rows[0] if len(rows) == 1 and k not in fin else -2
        return got

    def has_flag(self, h: Half, flag: int) -> bool:
        """Whether a row of half `h` has TCP flag `flag` set (see `rows_with`)."""
        return h.hid in self._flag_rows(flag)

    def _flag_rows(self, flag: int) -> dict[int, list[int]]:
        got = self.flag_rows.get(flag)
        if got is None:
            assert self.pc is not None
            got = self.flag_rows[flag] = _rows_with(self.pc, flag)
        return got

    @property
    def table(self) -> PacketTable:
        assert self.pc is not None
        return self.pc.table

    def listened(self) -> tuple[int | None, int | None]:
        """When this point was capturing, on its own clock: its given start and stop, else
        its first and last packet (None: not known; the first packet then: none)."""
        got = self._listened
        if got is None:
            lo, hi = self.start_ns, self.stop_ns
            if self.pc is not None:  # (of the whole capture: a time slice's table holds part)
                t = self.pc.table
                lo = captured_first(t) if lo is None else lo
                hi = captured_last(t) if hi is None else hi
            got = self._listened = (lo, hi)
        return got

    @property
    def kernel_drops(self) -> int | None:
        if self.inp.kernel_drops is not None:
            return self.inp.kernel_drops
        return self.pc.table.kernel_drops if self.pc is not None else None


def _rows_with(pc: PointConns, flag: int) -> dict[int, list[int]]:
    halves = pc.halves
    if not halves:
        return {}
    if pc.cols is not None and not halves[0].pt_.rows:
        # no half's rows set in place: every half's rows one after the other, in hid
        # order, are the point's rows by half
        rows, lens = pc.order, pc.cols.end - pc.cols.start
        hids = np.arange(len(halves), dtype=np.int64)
    else:
        rows = np.concatenate([h.idx for h in halves])
        lens = np.fromiter((h.idx.shape[0] for h in halves), np.int64, len(halves))
        hids = np.fromiter((h.hid for h in halves), np.int64, len(halves))
    hit = np.nonzero((pc.table.flags[rows] & flag) != 0)[0]
    out: dict[int, list[int]] = {}
    for k, r in zip(np.repeat(hids, lens)[hit].tolist(), rows[hit].tolist(), strict=True):
        got = out.get(k)
        if got is None:
            out[k] = [r]
        else:
            got.append(r)
    return out


@dataclass(slots=True)
class LegB:
    """A leg being built: a flow's halves at one point and its link to the leg before."""

    point: int
    c: Half | None
    s: Half | None
    link: LinkKind
    details: tuple[str, ...] = ()
    delta_c: int | None = 0  # seq offset of this leg's c half relative to the previous leg's
    delta_s: int | None = 0
    # the exchanges of this leg's connection that are this flow's, when it carried others'
    # too (a reused backend connection); the same object on every leg of that connection
    part: Part | None = None


@dataclass(slots=True)
class Hop:
    """A flow's crossing from point `a` to the next present point `b`, matched."""

    a: int  # point indices (upstream in path order)
    b: int
    c2s: DirMatch | None
    s2c: DirMatch | None
    missing: list[int]  # missing points between a and b
    ended: str | None = None  # the flow ended between a and b: "unanswered", "rst", "answered"
    # the half ids of the legs before and after it (a's client, b's client, a's server,
    # b's server; -1: none) when known as it is made (they stay): `match_hops` reads them
    # here, not from the halves (tens of thousands, far apart in memory)
    hids: tuple[int, int, int, int] | None = None
    # a server half at `b` that answered the client's SYN but is not the leg's (a server
    # that answered the SYN again with another ISN: SYN cookies): never seen at `a`
    orphan: Half | None = None
    # present points between a and b that the flow never crossed (both directions; or
    # the one direction `around_dir`, the other crossed them on legs of its own): it went
    # around them (another path, or their capture filter; `engine.blind_links`)
    around: tuple[int, ...] = ()
    around_dir: str | None = None  # "c2s"/"s2c": only that direction; None: both
    # hops whose direction `skip` went around the points they join (`around_dir` of a
    # bypass): that direction is not matched there (the bypass matches it)
    skip: str | None = None
    # a time slice's: per direction, the rows its window judges of a flow answered before
    # `b` while `b` was not capturing (`findings._Chain.answered_blind`) or of one that
    # went around the points between (`findings._Chain.went_around`; None: all of them)
    judged: dict[str, list[int]] | None = None

    def judged_rows(self, direction: str, rows: list[int]) -> list[int]:
        """Those of `rows` (of `direction`) that a time slice judges (`judged`)."""
        if self.judged is None:
            return rows
        keep = set(self.judged.get(direction, ()))
        return [r for r in rows if r in keep]


@dataclass(slots=True)
class FlowB:
    """A flow being built: its legs and hops (a chain of connections)."""

    legs: list[LegB]
    hops: list[Hop] = field(default_factory=list)
    # beyond a proxy that carried this flow over several connections (requests spread over
    # a pool, retries, redispatches): one chain per connection, after the last leg
    subs: list[FlowB] = field(default_factory=list)
    via: Hop | None = None  # a sub's hop from its parent's last leg to its first
    attempt: bool = False  # a sub that carried nothing before the proxy tried again
    # one direction that went around points the other crossed (asymmetric routing): per
    # such run of legs, the leg before it, the leg after it and the hop between them
    # that matches that direction (`add_bypasses`)
    bypass: list[tuple[int, int, Hop]] = field(default_factory=list)
    # a time slice's: the rows of a flow that entered the path after the capture before
    # it had ended that its window judges (`findings.entered_unseen`; None: all of them)
    judged: list[int] | None = None


def add_bypasses(pts: list[Point], flows: list[FlowB]) -> None:
    """Find, in every flow, a direction that crossed the points before and after a run of
    legs and none of the run's points, while the other direction crossed them all (the
    requests through a firewall, the answers around it: asymmetric routing, or a capture
    filter of one direction), where those captures lost nothing: that direction is matched
    from the leg before the run to the leg after it (`FlowB.bypass`, `Hop.around_dir`),
    not hop by hop (where it would be a drop at the run's first point and an injection
    after its last)."""
    for f in flows:
        legs = f.legs
        if len(legs) < 3 or f.subs or len(f.hops) != len(legs) - 1:
            continue
        for x in legs:  # (most flows: every leg has both halves)
            if x.c is None or x.s is None:
                break
        else:
            continue
        for side, direction in (("c", "c2s"), ("s", "s2c")):
            i = 1
            while i < len(legs) - 1:
                if getattr(legs[i], side) is not None or getattr(legs[i - 1], side) is None:
                    i += 1
                    continue
                j = i
                while j < len(legs) and getattr(legs[j], side) is None:
                    j += 1
                if j == len(legs):
                    break  # it never came out: not around anything
                run = legs[i:j]
                hops = f.hops[i - 1 : j]
                other = "s" if side == "c" else "c"
                if (
                    all(getattr(x, other) is not None for x in run)
                    and not any(pts[x.point].kernel_drops for x in run)
                    and all(x.link != "proxied" for x in legs[i : j + 1])
                    and all(h.ended is None and not h.around for h in hops)
                ):
                    a, b = legs[i - 1].point, legs[j].point
                    missing = [m for h in hops for m in h.missing]
                    by = Hop(a, b, None, None, missing, None, around=tuple(x.point for x in run),
                             around_dir=direction)  # fmt: skip
                    for h in hops:
                        h.skip = direction
                    f.bypass.append((i - 1, j, by))
                i = j


def chains(flows: list[FlowB]) -> Iterator[FlowB]:
    """Every chain of legs: the flows and, depth first, their subs."""
    for f in flows:
        yield f
        if f.subs:
            yield from chains(f.subs)


def host_of(inp: PointInput) -> tuple[str, str]:
    host, iface = PointInput.parse_name(inp.name)
    return inp.host or host, inp.interface or iface


def _orphan_answer(pb: PointConns, yc: Half | None, ys: Half | None, hl: HalfLinks) -> Half | None:
    """The server half at `pb` paired with a leg's client half `yc` (a SYN) there when it is
    not the leg's server half `ys` and both answered that SYN with two ISNs: the server
    answered it twice (the first answer lost, then SYN cookies or a forgotten request), the
    leg took the answer that crossed upstream (linked), and this one, linked to nothing
    upstream, never crossed (`Hop.orphan`)."""
    if yc is None or not yc.syn or yc.synack or ys is None or not ys.synack:
        return None
    p = _partner(pb, yc)
    if p is None or p is ys or not p.synack or p.isn == ys.isn or p.hid in hl.back:
        return None
    want = (yc.isn + 1) & M32

    def ack0(h: Half) -> int:
        return h.ack0 if h.ack0 >= 0 else int(pb.table.ack[int(h.idx[0])])

    return p if ack0(p) == want and ack0(ys) == want else None


def _partner(pc: PointConns, h: Half | None) -> Half | None:
    if h is None or h.conn < 0:
        return None
    c = pc.conns[h.conn]
    return c.s if c.c is h else c.c


def half_rows(h: Half | None) -> I64:
    return h.idx if h is not None else np.zeros(0, np.int64)


def build_flows(
    pts: list[Point],
    present: list[int],
    links: dict[tuple[int, int], HalfLinks],
    blind: dict[tuple[int, int], HalfLinks] | None = None,
) -> list[FlowB]:
    """The flows of every connection, from the first point on (`blind`: links across a
    point whose capture dropped packets, `engine.blind_links`)."""
    blind = blind or {}
    claimed: dict[int, set[int]] = {i: set() for i in present}  # conn ids already in a flow
    plans: dict[tuple[int, int], ProxyPlan] = {}
    flows: list[FlowB] = []
    cols = {p: _ConnCols.of(pts[p].pc) for p in present}
    for k, p in enumerate(present):
        pc = pts[p].pc
        assert pc is not None
        # a reused backend connection: the exchanges that no front connection claimed are
        # a flow of their own
        plan = plans.get((present[k - 1], p)) if k else None
        mine, conns, cc = claimed[p], pc.conns, cols[p]
        nxt = present[k + 1] if k + 1 < len(present) else -1
        # the usual first hop of a flow that starts here: both directions linked to the
        # next point (what `_extend` does for it, on columns; every other case by it)
        hop, down, theirs = None, [], mine
        if nxt >= 0:
            pb = pts[nxt].pc
            assert pb is not None
            hop = _first_hops(pc, pb, cc, cols[nxt], links[(p, nxt)])
            down, theirs = pb.halves, claimed[nxt]
        skip = list(range(p + 1, nxt))
        further = k + 2 < len(present)
        # (the connections claimed by the flows of the points before, unless a plan may
        # give them a flow of their own, are left out at once: every connection of the
        # last point, often)
        order = cc.by_first_ts(hop, mine if plan is None else ())
        for i, four, jc, js, yc_conn, ys_conn, same in zip(*order, strict=True):
            conn = conns[i]  # (its cid is i)
            part = None
            if i in mine:
                part = plan.rest.get(i) if plan is not None else None
                if part is None:
                    continue
            mine.add(i)
            details = (part.label(),) if part is not None else ()
            leg = LegB(p, conn.c, conn.s, "same", details, 0, 0, part)
            if js < 0:
                flow = FlowB([leg])
                flows.append(flow)
                _extend(pts, present, k, flow, links, claimed, plans, blind)
                continue
            if yc_conn >= 0:
                theirs.add(yc_conn)
            if ys_conn >= 0:
                theirs.add(ys_conn)
            link: LinkKind = "same" if same else "nat"
            leg_y = LegB(nxt, down[jc], down[js], link, (), None, None, part)
            # (both halves on both legs: `_extend` changes neither leg's)
            hop1 = Hop(p, nxt, None, None, list(skip), None, four)
            if yc_conn != ys_conn:
                pd = pts[nxt].pc
                assert pd is not None
                hop1.orphan = _orphan_answer(pd, leg_y.c, leg_y.s, links[(p, nxt)])
            flow = FlowB([leg, leg_y], [hop1], [])
            flows.append(flow)
            if further:
                _extend(pts, present, k + 1, flow, links, claimed, plans, blind)
    return flows


@dataclass
class _ConnCols:
    """The connections of a point as columns: client and server half ids (-1: none),
    connection id, first packet; `conn`: the connection of every half."""

    hc: I64
    hs: I64
    first: I64
    conn: I64

    @classmethod
    def of(cls, pc: PointConns | None) -> _ConnCols:
        assert pc is not None
        ts = pc.half_cols().first_ts
        hc, hs = pc.pairs[:, 0], pc.pairs[:, 1]
        big = np.iinfo(np.int64).max
        first = np.minimum(np.where(hc >= 0, ts[hc], big), np.where(hs >= 0, ts[hs], big))
        return cls(hc, hs, first, pc.conn_of)

    def by_first_ts(self, hop: tuple[I64, ...] | None, skip: Collection[int]) -> list[list[Any]]:
        """Per connection in order of its first packet (stable, as `sorted` by
        `Conn.first_ts`), but those of `skip`: its index, the half ids of its first hop,
        and its columns of `hop` (`_first_hops`; None, -1 and False without)."""
        o = np.argsort(self.first, kind="stable")
        if skip:
            o = o[~npsets.isin(o, np.fromiter(skip, np.int64, len(skip)))]
        if hop is None:
            z = np.full(o.shape[0], -1, np.int64).tolist()
            return [o.tolist(), [None] * len(z), z, z, z, z, [False] * len(z)]
        cols = [x[o].tolist() for x in hop]
        # the half ids of each first hop: both legs' client and server halves, in the order
        # `match_hops` reads them (`Hop.hids`)
        four = list(zip(self.hc[o].tolist(), cols[0], self.hs[o].tolist(), cols[1], strict=True))
        return [o.tolist(), four, *cols]


def _first_hops(
    pa: PointConns, pb: PointConns, ca: _ConnCols, cb: _ConnCols, hl: HalfLinks
) -> tuple[I64, ...]:
    """Per connection of `ca` (at `pa`) whose two halves are both linked to `pb` by `hl`:
    the downstream halves (client, server; -1 for the other connections), their
    connections, and whether both kept their tuples."""
    n = ca.hc.shape[0]
    n_up = len(pa.halves)
    fwd = np.full(n_up + 1, -1, np.int64)  # the last slot: for the missing halves (-1)
    if hl.fwd:
        fwd[np.fromiter(hl.fwd.keys(), np.int64, len(hl.fwd))] = np.fromiter(
            hl.fwd.values(), np.int64, len(hl.fwd)
        )
    jc, js = fwd[ca.hc], fwd[ca.hs]
    both = (ca.hc >= 0) & (ca.hs >= 0) & (jc >= 0) & (js >= 0)
    if not both.any():
        z = np.full(n, -1, np.int64)
        return z, z, z, z, np.zeros(n, bool)
    jc, js = np.where(both, jc, -1), np.where(both, js, -1)
    ta, tb = pa.half_cols().tkey, pb.half_cols().tkey
    same = both & (ta[ca.hc] == tb[jc]) & (ta[ca.hs] == tb[js])
    return jc, js, np.where(both, cb.conn[jc], -1), np.where(both, cb.conn[js], -1), same


ONE_CLOCK_NS = 5_000  # `_proxy_plan`'s time order allowance on one host


def _proxy_plan(
    pts: list[Point],
    a: int,
    b: int,
    hl: HalfLinks,
    plans: dict[tuple[int, int], ProxyPlan],
) -> ProxyPlan:
    """The proxied links between adjacent points `a` and `b`, computed once, on first need.
    Linking by time alone (no payload crossed) only where a proxy is known to sit: both
    points are interfaces of one host, or other connections there are content-linked."""
    got = plans.get((a, b))
    if got is None:
        pa, pb = pts[a], pts[b]
        assert pa.pc is not None and pb.pc is not None
        one_host = pa.host == pb.host and bool(pa.iface) and bool(pb.iface)
        # the clock error allowed in time order: none within a host (one clock: the
        # kernel stamps a packet in when it arrives, before the proxy reads it, and out
        # when it leaves, after it was written), but the microseconds of a classic pcap
        # (a 1 ms allowance let wrong pairs through with 40 identical downloads at once);
        # across hosts the offset is only a hint at this stage
        kw = {
            "offset_ns": pb.offset_ns - pa.offset_ns,
            "tol_ns": ONE_CLOCK_NS if one_host else 200_000_000,
        }
        got = plans[(a, b)] = plan_proxied(
            pa.pc, pb.pc, hl, by_time=True if one_host else None, **kw
        )
    return got


def _extend(
    pts: list[Point],
    present: list[int],
    k: int,
    flow: FlowB,
    links: dict[tuple[int, int], HalfLinks],
    claimed: dict[int, set[int]],
    plans: dict[tuple[int, int], ProxyPlan],
    blind: dict[tuple[int, int], HalfLinks],
) -> None:
    while k + 1 < len(present):
        a, b = present[k], present[k + 1]
        missing = list(range(a + 1, b))
        leg = flow.legs[-1]
        pa, pb = pts[a].pc, pts[b].pc
        assert pa is not None and pb is not None
        hl = links[(a, b)]
        yc = pb.halves[hl.fwd[leg.c.hid]] if leg.c is not None and leg.c.hid in hl.fwd else None
        ys = pb.halves[hl.fwd[leg.s.hid]] if leg.s is not None and leg.s.hid in hl.fwd else None
        # a direction with no packets here may have travelled on a tuple that does not
        # mirror the other direction's (one-sided NAT): take it from the links
        for side in ("c", "s"):
            here = leg.c if side == "c" else leg.s
            there = ys if side == "c" else yc  # the other direction, downstream
            if here is None and there is not None:
                mate = _partner(pb, there)
                up = hl.back.get(mate.hid) if mate is not None else None
                if up is not None:
                    x = pa.halves[up]
                    cx = pa.conns[x.conn]
                    if (cx.c is None or cx.s is None) and x.conn not in claimed[a]:
                        claimed[a].add(x.conn)
                        if side == "c":
                            leg.c, yc = x, mate
                        else:
                            leg.s, ys = x, mate
        if yc is None and ys is None:
            # only the reverse direction got through: the same tuple, reversed
            for xh in (leg.c, leg.s):
                if xh is None:
                    continue
                x = xh
                for g in pb.by_tkey.get(x.rkey, ()):
                    if g.hid in hl.back:
                        continue
                    lo = max(g.first_ts - pts[b].offset_ns, x.first_ts)
                    hi = min(g.last_ts - pts[b].offset_ns, x.last_ts)
                    if hi - lo > -NS:
                        if x is leg.c:
                            ys = g
                        else:
                            yc = g
                        break
        if yc is None and ys is not None:
            yc = _partner(pb, ys)
        if ys is None and yc is not None:
            ys = _partner(pb, yc)
        details: tuple[str, ...] = ()
        if (
            yc is None
            and ys is None
            and k + 2 < len(present)
            and _across_to(pts, present, k, flow, links, claimed, blind)
        ):
            k = present.index(flow.legs[-1].point)
            continue
        if yc is None and ys is None:
            ended = _how_ended(pa, leg)
            if ended == "answered" and not captured_tcp(pb.table):
                # answered before a point that saw nothing at all: a proxy or an endpoint,
                # or a capture on the wrong interface; an unanswered SYN stays a drop
                ended = "nothing"
            if ended != "nothing":
                conn_a = pa.conns[(leg.c or leg.s).conn]  # type: ignore[union-attr]
                plan = _proxy_plan(pts, a, b, hl, plans)
                got = plan.fronts.get(conn_a.cid, [])
                unserved = plan.unserved.get(conn_a.cid)
                if unserved is not None and unserved not in leg.details:
                    leg.details = (*leg.details, unserved)
                # a part of a reused connection is this flow's alone; a whole one only if
                # no other flow took it
                pms = [m for m in got if m.part is not None or m.conn.cid not in claimed[b]]
                for pm in pms:
                    claimed[b].add(pm.conn.cid)
                if len(pms) == 1 and not pms[0].attempt:
                    pm = pms[0]
                    flow.hops.append(Hop(a, b, None, None, missing, None))
                    flow.legs.append(
                        LegB(b, pm.conn.c, pm.conn.s, "proxied", pm.details, None, None, pm.part)
                    )
                    k += 1
                    continue
                if pms:
                    # several connections carried this flow beyond the proxy: a chain each
                    for pm in pms:
                        first = LegB(
                            b, pm.conn.c, pm.conn.s, "proxied", pm.details, None, None, pm.part
                        )
                        via = Hop(a, b, None, None, missing, None)
                        sub = FlowB(legs=[first], via=via, attempt=pm.attempt)
                        _extend(pts, present, k + 1, sub, links, claimed, plans, blind)
                        flow.subs.append(sub)
                    return
            flow.hops.append(Hop(a, b, None, None, missing, ended))
            return
        for y in (yc, ys):
            if y is not None and y.conn >= 0:
                claimed[b].add(y.conn)
        same_tuple = (leg.c is None or yc is None or leg.c.tkey == yc.tkey) and (
            leg.s is None or ys is None or leg.s.tkey == ys.tkey
        )
        flow.hops.append(Hop(a, b, None, None, missing, orphan=_orphan_answer(pb, yc, ys, hl)))
        link: LinkKind = "same" if same_tuple else "nat"
        # the same connection beyond a NAT: the same exchanges are this flow's
        flow.legs.append(LegB(b, yc, ys, link, details, None, None, leg.part))
        k += 1


def crossing(pts: Sequence[Point], a: int, between: Sequence[int], c: int) -> str | None:
    """How a connection seen at present points `a` and `c` and at none of the present
    points `between` (in path order) crossed them (`engine.blind_links`): "blind" (points
    whose captures all dropped packets in the kernel: a busy firewall's two interfaces,
    captured by one host under the same load, often both do), "around" (points whose
    captures lost nothing), or None (neither can be said: some dropped packets and some
    did not, one captured no TCP at all, or the run may be an encrypted tunnel's:
    `tunnel_end`)."""
    drops = [bool(pts[m].kernel_drops) for m in between]
    if drops and all(drops):
        return "blind"
    if not drops or any(drops):
        return None
    if tunnel_end(pts[a], pts[between[0]]) or tunnel_end(pts[c], pts[between[-1]]):
        return None
    # (a point that captured no TCP at all is a capture to doubt, not a path to name:
    # what happened after the point before it is a gap, as next to it, `_extend`)
    if not all(pts[m].pc is not None and captured_tcp(pts[m].table) for m in between):
        return None
    return "around"


def tunnel_end(inner: Point, outer: Point) -> bool:
    """Whether `inner` and `outer` may be an encrypted tunnel's endpoint (`tunnel`): two
    interfaces of one host, the outer one carrying datagrams (UDP, ESP). A connection on
    the inner one crossed the outer one encrypted: not seen there as TCP, but not around
    it (the tunnel's legs join it, `tunnel.join_across_tunnels`)."""
    if inner.host != outer.host or not inner.iface or not outer.iface or outer.pc is None:
        return False
    return captured_dgrams(outer.pc.table) > 0  # (the whole capture's, not a time slice's)


def _across_to(
    pts: list[Point],
    present: list[int],
    k: int,
    flow: FlowB,
    links: dict[tuple[int, int], HalfLinks],
    claimed: dict[int, set[int]],
    blind: dict[tuple[int, int], HalfLinks],
) -> bool:
    """Whether the flow's last leg (at `present[k]`, linked to nothing at the next point)
    goes on at a later point across points that saw nothing of it (`engine.blind_links`,
    the nearest such point first): then its legs and hops there are added."""
    a = present[k]
    leg = flow.legs[-1]
    for j in range(k + 2, len(present)):
        c = present[j]
        how = crossing(pts, a, present[k + 1 : j], c)
        if how is None:
            continue
        b = present[j - 1]
        across = _across(pts[c].pc, leg, blind.get((a, c)), links[(b, c)], claimed[c])
        if across is None:
            continue
        yc, ys = across
        same_tuple = (leg.c is None or yc is None or leg.c.tkey == yc.tkey) and (
            leg.s is None or ys is None or leg.s.tkey == ys.tkey
        )
        link0: LinkKind = "same" if same_tuple else "nat"
        if how == "blind":
            # the captures between lost all of it: an empty leg at each (its packets are
            # gaps there, `findings.charge_capture_loss`), the flow goes on at `c`
            at = a
            for m in present[k + 1 : j]:
                flow.hops.append(Hop(at, m, None, None, list(range(at + 1, m)), None))
                flow.legs.append(LegB(m, None, None, "same", (), None, None, leg.part))
                at = m
            flow.hops.append(Hop(at, c, None, None, list(range(at + 1, c)), None))
        else:
            # it went around the points between: one hop from `a` to `c`, matched as a
            # hop of its own (what it lost or gained on the way is between `a` and `c`)
            skipped = present[k + 1 : j]
            missing = [m for m in range(a + 1, c) if m not in skipped]
            flow.hops.append(Hop(a, c, None, None, missing, None, around=tuple(skipped)))
        flow.legs.append(LegB(c, yc, ys, link0, (), None, None, leg.part))
        return True
    return False


def _across(
    pc: PointConns | None, leg: LegB, hl: HalfLinks | None, after: HalfLinks, claimed: set[int]
) -> tuple[Half | None, Half | None] | None:
    """The halves at the point after a blind one that `hl` (`engine.blind_links`) links to
    `leg`'s (each with its partner when only one is linked), their connection claimed;
    None: none there, or one that crossed the blind point (`after`: its links to that
    point) or another flow took."""
    if hl is None or pc is None:
        return None
    yc = pc.halves[hl.fwd[leg.c.hid]] if leg.c is not None and leg.c.hid in hl.fwd else None
    ys = pc.halves[hl.fwd[leg.s.hid]] if leg.s is not None and leg.s.hid in hl.fwd else None
    if yc is None and ys is None:
        return None
    if yc is None:
        yc = _partner(pc, ys)
    if ys is None:
        ys = _partner(pc, yc)
    if any(y is not None and y.hid in after.back for y in (yc, ys)):
        return None
    conns = {y.conn for y in (yc, ys) if y is not None and y.conn >= 0}
    if conns & claimed:
        return None
    claimed |= conns
    return yc, ys


def match_hops(pts: list[Point], flows: list[FlowB]) -> None:
    """Match both directions of every linked connection, one batch per pair of points."""
    # per pair of points: the downstream leg and the hop of every flow that crosses it,
    # and the half ids of each hop (upstream client, its downstream half, upstream
    # server, downstream server; -1: none), in flow order
    todo: dict[tuple[int, int], _Crossing] = {}
    # (the chains: the flows themselves unless one has subs)
    every = list(chains(flows)) if [f for f in flows if f.subs] else flows
    for f in every:
        legs = f.legs
        for i, hop in enumerate(f.hops):
            if hop.ended is not None:
                continue  # no leg after it
            y = legs[i + 1]
            if y.link == "proxied":
                continue
            ab = (hop.a, hop.b)
            got = todo.get(ab)
            if got is None:
                got = todo[ab] = _Crossing()
            got.ys.append(y)
            got.hops.append(hop)
            # the halves of a point are told apart by their ids
            h4 = hop.hids
            if h4 is None or hop.skip is not None:
                x = legs[i]
                xc, xs, yc, ys = x.c, x.s, y.c, y.s
                if hop.skip == "c2s":  # (that direction went around: `add_bypasses`)
                    xc = yc = None
                elif hop.skip == "s2c":
                    xs = ys = None
                h4 = (
                    -1 if xc is None else xc.hid,
                    -1 if yc is None else yc.hid,
                    -1 if xs is None else xs.hid,
                    -1 if ys is None else ys.hid,
                )
            got.hids += h4
        for iu, jd, hop in f.bypass:
            x, y = legs[iu], legs[jd]
            got = todo.get((hop.a, hop.b))
            if got is None:
                got = todo[(hop.a, hop.b)] = _Crossing()
            # (a leg of its own: the match sets its offsets and link, the flow's stay)
            got.ys.append(LegB(y.point, None, None, "same"))
            got.hops.append(hop)
            if hop.around_dir == "c2s":
                assert x.c is not None and y.c is not None
                got.hids += (x.c.hid, y.c.hid, -1, -1)
            else:
                assert x.s is not None and y.s is not None
                got.hids += (-1, -1, x.s.hid, y.s.hid)
    for (a, b), cr in todo.items():
        # a reused connection is on the chain of every flow it carried: matched once
        # (the downstream leg and the hop of each take its result)
        four, more = cr.grouped()
        # in chunks of connections: every pair is matched on its own, so the chunks give
        # the result of one batch while the temporaries stay bounded (memory per packet);
        # a chunk ends with the connection that brings its rows to MATCH_CHUNK_ROWS
        pca, pcb = pts[a].pc, pts[b].pc
        assert pca is not None and pcb is not None
        ids = [np.ascontiguousarray(four[:, j]) for j in range(4)]
        rows = sum(_half_lens(pc, h) for pc, h in zip((pca, pcb, pca, pcb), ids, strict=True))
        cum = np.cumsum(rows)
        n = four.shape[0]
        lo = 0
        while lo < n:
            before = int(cum[lo - 1]) if lo else 0
            hi = int(np.searchsorted(cum, before + MATCH_CHUNK_ROWS, "left")) + 1
            hi = min(hi, n)
            _match_group(pts, a, b, cr, lo, hi, more, [x[lo:hi] for x in ids])
            lo = hi
    # a server's answer that never crossed (`Hop.orphan`): lost on the hop, like the
    # packets matching found undelivered (time slices judge each in one slice)
    for f in every:
        for hop in f.hops:
            if hop.orphan is not None and hop.s2c is not None:
                hop.s2c.undelivered = sorted({*hop.s2c.undelivered, *hop.orphan.idx.tolist()})


class _Crossing:
    """The hops of flows from one point to the next (`match_hops`): the downstream leg and
    the hop of each, and their four half ids one after the other."""

    def __init__(self) -> None:
        self.ys: list[LegB] = []
        self.hops: list[Hop] = []
        self.hids: list[int] = []

    def grouped(self) -> tuple[I64, dict[int, list[tuple[LegB, Hop]]]]:
        """The hops by the connections they cross (a group: the same four halves): the
        half ids of each group's first hop, in order, as rows; and of every group with
        several hops, its other hops (by row). The groups' first hops are kept in `ys`
        and `hops`, in that order."""
        four = np.array(self.hids, np.int64).reshape(-1, 4)
        # two hops share their four halves only if they share the upstream two
        up = ((four[:, 0] + 1) << 32) | (four[:, 2] + 1)
        srt = np.sort(up)
        if not (srt[1:] == srt[:-1]).any():
            return four, {}
        first: dict[tuple[int, ...], int] = {}
        more: dict[int, list[tuple[LegB, Hop]]] = {}
        keep: list[int] = []
        ys, hops = self.ys, self.hops
        for i, key in enumerate(map(tuple, four.tolist())):
            g = first.get(key)
            if g is None:
                first[key] = len(keep)
                keep.append(i)
            else:
                more.setdefault(g, []).append((ys[i], hops[i]))
        self.ys, self.hops = [ys[i] for i in keep], [hops[i] for i in keep]
        return four[keep], more


def _half_lens(pc: PointConns, hid: I64) -> I64:
    """Rows of each half `hid` of `pc` (-1: none, 0 rows)."""
    c = pc.half_cols()
    return np.where(hid >= 0, c.end[hid] - c.start[hid], 0)


MATCH_CHUNK_ROWS = 1 << 18


def _match_group(
    pts: list[Point],
    a: int,
    b: int,
    cr: _Crossing,
    lo: int,
    hi: int,
    more: dict[int, list[tuple[LegB, Hop]]],
    ids: list[I64],
) -> None:
    """Match the connections of groups `lo` to `hi` of `cr` between adjacent points `a` and
    `b`, as one batch (a group: the downstream leg and hop of every flow that crosses one
    connection pair, matched once: the first in `cr`, the others in `more`); `ids`: the
    half ids of each group's first hop (upstream client, downstream client, upstream
    server, downstream server halves)."""
    ta, tb = pts[a].table, pts[b].table
    same_host = pts[a].host == pts[b].host and bool(pts[a].iface) and bool(pts[b].iface)
    ttl_exp: tuple[int, ...] | None = (0, 1) if same_host else None
    n = hi - lo

    pca, pcb = pts[a].pc, pts[b].pc
    assert pca is not None and pcb is not None
    ixc, iyc, ixs, iys = ids
    ra_c, pa_c = _rows_of(pca, ixc)
    rb_c, pb_c = _rows_of(pcb, iyc)
    ra_s, pa_s = _rows_of(pcb, iys)  # s2c travels b -> a
    rb_s, pb_s = _rows_of(pca, ixs)
    dc, votes_c = learn_deltas(ta, ra_c, pa_c, tb, rb_c, pb_c, n)
    ds, votes_s = learn_deltas(tb, ra_s, pa_s, ta, rb_s, pb_s, n)  # a-seq minus b-seq

    def prm(
        pc_up: PointConns,
        up: I64,
        pc_down: PointConns,
        down: I64,
        d: I64,
        other: I64,
        votes: I64,
        n: int = n,
    ) -> PairParams:
        delta = np.where(d >= 0, d, 0)
        # acks of this direction acknowledge the other direction's bytes
        ack_delta = np.where(other >= 0, (-other) & M32, -1)

        has_u, isn_u, ts_u, v4_u, len_u = _half_cols(pc_up, up)
        has_w, isn_w, ts_w, v4_w, len_w = _half_cols(pc_down, down)
        base = np.where(has_w, isn_w, (isn_u + delta) & M32)
        a_base = np.where(has_u, isn_u, base)
        use_ts = (ts_u | ~has_u) & (ts_w | ~has_w) & (ts_u | ts_w)
        empty = (len_u == 0) | (len_w == 0)
        use_ipid = v4_u & v4_w & ((votes > 0) | empty)
        return PairParams(delta, ack_delta, base, a_base, use_ipid, use_ts)

    prm_c = prm(pca, ixc, pcb, iyc, dc, ds, votes_c)
    prm_s = prm(pcb, iys, pca, ixs, ds, dc, votes_s)
    c_out = match_batch(ta, ra_c, pa_c, tb, rb_c, pb_c, prm_c, ttl_expected=ttl_exp)
    s_out = match_batch(tb, ra_s, pa_s, ta, rb_s, pb_s, prm_s, ttl_expected=ttl_exp)
    against_order(c_out, s_out, same_host)
    # per group: which directions its hops have (every hop of a group has the same
    # halves), the legs' sequence offsets, whether they make a "same" link a NAT
    c_has = ((ixc >= 0) | (iyc >= 0)).tolist()
    s_has = ((ixs >= 0) | (iys >= 0)).tolist()
    d_cs = [d if d >= 0 else None for d in dc.tolist()]
    d_ss = [d if d >= 0 else None for d in np.where(ds >= 0, (-ds) & M32, -1).tolist()]
    moved = ((dc > 0) | (ds > 0)).tolist()
    cols = (c_out, s_out, c_has, s_has, d_cs, d_ss, moved)
    took: Iterable[tuple[Any, ...]] = zip(cr.ys[lo:hi], cr.hops[lo:hi], *cols, strict=True)
    if more:
        # the other flows of a reused connection take its results too
        res = list(zip(*cols, strict=True))
        took = chain(took, [(legy, hop, *res[g - lo]) for g in range(lo, hi)
                            for legy, hop in more.get(g, ())])  # fmt: skip
    for legy, hop, c_o, s_o, hc, hs, delta_c, delta_s, nat in took:
        if hc:
            hop.c2s = c_o
        if hs:
            hop.s2c = s_o
        legy.delta_c = delta_c
        legy.delta_s = delta_s
        if nat and legy.link == "same":
            legy.link = "nat"


MAX_HOPS = 8  # routed hops between two points on different hosts, at most
INITIAL_TTLS = (32, 64, 128, 255)  # what hosts send with (as `local._INITIAL_TTLS`)


def against_order(c_out: list[DirMatch], s_out: list[DirMatch], same_host: bool) -> None:
    """Connections that crossed a pair of points against their order: every packet's TTL
    rose from the first point to the second in both directions (by one inside a host, by
    a few routed hops across hosts), as it does when the connection was opened from the
    second point's side, or the points were given the wrong way round (`order` says so
    when most connections do). Those TTLs are what the routing took off, not rewrites:
    taken out of the matches. (Across hosts, not when every packet rose to a TTL hosts
    send with: the two hosts' own connection, `local._between_hosts` reads it.)"""
    most = 1 if same_host else MAX_HOPS
    for dc, ds in zip(c_out, s_out, strict=True):
        if not dc.rewrites or not ds.rewrites:
            continue
        c, s = _ttl_rose(dc, most), _ttl_rose(ds, most)
        if c is None or s is None or (not same_host and c and s):
            continue
        dc.rewrites = [rw for rw in dc.rewrites if rw.field != "ip.ttl"]
        ds.rewrites = [rw for rw in ds.rewrites if rw.field != "ip.ttl"]


def _ttl_rose(dm: DirMatch, most: int) -> bool | None:
    """Whether the TTL of every packet `dm` matched rose by 1 to `most` in its direction
    of travel (a rewrite of ip.ttl from `before` to `after` each): None if not, else
    whether every one rose to a TTL hosts send with (`INITIAL_TTLS`)."""
    rows = set()
    initial = True
    for rw in dm.rewrites:
        if rw.field == "ip.ttl":
            after = int(rw.after)  # type: ignore[call-overload]
            if not 1 <= after - int(rw.before) <= most:  # type: ignore[call-overload]
                return None
            rows.add(rw.a_row)
            initial = initial and after in INITIAL_TTLS
    if not rows or len(rows) < dm.matched:
        return None
    return initial


def _rows_of(pc: PointConns, hid: I64) -> tuple[I64, I64]:
    """`PointConns.rows_of`, in C when the helper is there."""
    c = pc.half_cols()
    got = rows_of(hid, c.start, c.end, pc.order)
    return got if got is not None else pc.rows_of(hid)


def _half_cols(pc: PointConns, hid: I64) -> tuple[npt.NDArray[np.bool_], I64, Any, Any, I64]:
    """Per half `hid` of `pc` (-1: absent): present, ISN, has TSval, IPv4 (True when
    absent), rows."""
    c = pc.half_cols()
    has = hid >= 0
    return (
        has,
        np.where(has, c.isn[hid], 0),
        np.where(has, c.has_ts[hid], False),
        np.where(has, c.v4[hid], True),
        np.where(has, c.end[hid] - c.start[hid], 0),
    )


def _how_ended(pa: PointConns, leg: LegB) -> str:
    s = leg.s
    if s is None or s.idx.shape[0] == 0:
        return "unanswered"
    fl = pa.table.flags[s.idx]
    if np.all((fl & RST) != 0) and not np.any(pa.table.plen[s.idx] > 0):
        return "rst"
    return "answered"


DSACK_LOOK = 16  # the receiver's packets read for a D-SACK after a copy came


def _dsacked(
    t: PacketTable, b: I64, bts: npt.NDArray[Any], k: int, upto: int | None, seq0: int
) -> bool:
    """Whether one of the receiver's packets `b[k:]` (its direction's rows at the point,
    `bts` their times; at most DSACK_LOOK, before `upto`) reports with a D-SACK (its first
    SACK block below its cumulative ACK, or within its second block) that it got the
    byte of sequence number `seq0` twice."""
    rs, tss = b[k : k + DSACK_LOOK].tolist(), bts[k : k + DSACK_LOOK].tolist()
    for r, ts in zip(rs, tss, strict=True):
        if upto is not None and ts >= upto:
            break
        if t.opt_len[r] < 10 or not t.flags[r] & ACK:
            continue
        blocks = sack_blocks(t.options(r))
        if not blocks:
            continue
        left, right = blocks[0]
        below = ((int(t.ack[r]) - right) & M32) < 1 << 31
        inside = len(blocks) > 1 and _within(blocks[0], blocks[1])
        if (below or inside) and ((seq0 - left) & M32) < ((right - left) & M32):
            return True
    return False


def _within(x: tuple[int, int], y: tuple[int, int]) -> bool:
    """Whether sequence range x lies within y (modulo 2**32)."""
    n = (y[1] - y[0]) & M32
    return ((x[0] - y[0]) & M32) <= n and ((x[1] - y[0]) & M32) <= n


def sack_blocks(opts: bytes) -> list[tuple[int, int]]:
    """The SACK blocks (left, right edges) of a TCP header's options, in order."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(opts)
    while i < n:
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n or opts[i + 1] < 2:
            break
        ln = opts[i + 1]
        if kind == 5:
            body = opts[i + 2 : i + ln]
            out += [
                (int.from_bytes(body[j : j + 4], "big"), int.from_bytes(body[j + 4 : j + 8], "big"))
                for j in range(0, len(body) - 7, 8)
            ]
        i += ln
    return out


def unacked_rows(t: PacketTable, h: Half, back: Half) -> list[int]:
    """Rows of half `h` (data) whose bytes came again at the same point (a retransmission
    from the same sequence number) before any packet of `back` (the receiver's direction)
    acknowledged them, while the receiver's window was open: the receiver never took them,
    unless it said it got the copy twice (a D-SACK, RFC 2883, before the next copy: the
    copy was sent too early, a tail-loss probe or a timeout that fired before a delayed
    ACK left)."""
    idx = h.idx
    if idx.shape[0] < 2 or back.idx.shape[0] == 0:
        return []
    data = idx[(t.plen[idx] > 0) & ((t.flags[idx] & (SYN | RST)) == 0)]
    if data.shape[0] < 2:
        return []
    start = (t.seq[data] - h.isn) & M32
    firsts, inv, counts = np.unique(start, return_inverse=True, return_counts=True)
    if not (counts > 1).any():
        return []
    b = back.idx
    bts = t.ts[b]
    acked = np.maximum.accumulate(np.where(t.flags[b] & ACK, (t.ack[b] - h.isn) & M32, 0))
    win = t.win[b]
    out: list[int] = []
    for g in np.flatnonzero(counts > 1):
        same = data[inv == g].tolist()  # (time order)
        for i, (r, again) in enumerate(pairwise(same)):
            end = int(firsts[g]) + int(t.plen[r])
            k = int(np.searchsorted(bts, t.ts[again], side="left")) - 1
            if k >= 0 and int(acked[k]) >= end:
                continue  # acknowledged before the copy: delivered
            w = int(np.searchsorted(bts, t.ts[r], side="right")) - 1
            if w >= 0 and int(win[w]) == 0:
                continue  # a zero-window probe: refused on purpose, not lost
            upto = int(t.ts[same[i + 2]]) if i + 2 < len(same) else None
            if _dsacked(t, b, bts, k + 1, upto, int(t.seq[r])):
                continue  # the copy reached a receiver that had the bytes: delivered
            out.append(r)
    out.sort(key=lambda r: int(t.ts[r]))
    return out
