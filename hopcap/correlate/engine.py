"""correlate(): points in path order -> Verdict."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import pairwise
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hopcap.correlate.conns import Half, PointConns, build_point
from hopcap.correlate.icmp import apply_to_built, attach_errors
from hopcap.correlate.link import (
    HalfLinks,
    Part,
    ProxyPlan,
    exchange_of_rows,
    link_halves,
    parse_conntrack,
    plan_proxied,
    stream_base,
)
from hopcap.correlate.local import kind_word, localize, more
from hopcap.correlate.match import (
    M32,
    DirMatch,
    PairParams,
    flags_str,
    learn_deltas,
    match_batch,
)
from hopcap.correlate.reader import (
    ACK,
    FIN,
    RST,
    SYN,
    PacketTable,
    link_name,
    read_capture,
    tunnel_str,
    unreadable,
)
from hopcap.correlate.stages import StagePlan, finish_stages, plan_stages
from hopcap.correlate.tunnel import add_tunnel_legs, find_tunnels, join_across_tunnels
from hopcap.correlate.udp import (
    DFlowB,
    build_dgram_flows,
    delay_samples,
    finish_dflow,
    match_dgram_hops,
)
from hopcap.errors import CorrelationError
from hopcap.model import (
    BROKEN_KINDS,
    Direction,
    Finding,
    Flow,
    Leg,
    LegPart,
    PointInput,
    PointSummary,
    Verdict,
)
from hopcap.patterns import with_patterns

I64 = npt.NDArray[np.int64]
NS = 1_000_000_000
T = TypeVar("T")
_kind_word = kind_word  # one-line summaries, shared with correlate.local
_more = more  # (udp.py and icmp.py use it too)
KIND_ORDER = {"drop": 0, "inject": 1, "rewrite": 2, "icmp": 3, "reset": 4, "gap": 5}


@dataclass
class Point:
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

    @property
    def table(self) -> PacketTable:
        assert self.pc is not None
        return self.pc.table

    @property
    def kernel_drops(self) -> int | None:
        if self.inp.kernel_drops is not None:
            return self.inp.kernel_drops
        return self.pc.table.kernel_drops if self.pc is not None else None


@dataclass
class LegB:
    point: int
    c: Half | None
    s: Half | None
    link: str
    details: tuple[str, ...] = ()
    delta_c: int | None = 0  # seq offset of this leg's c half relative to the previous leg's
    delta_s: int | None = 0
    # the exchanges of this leg's connection that are this flow's, when it carried others'
    # too (a reused backend connection); the same object on every leg of that connection
    part: Part | None = None


@dataclass
class Hop:
    a: int  # point indices (upstream in path order)
    b: int
    c2s: DirMatch | None
    s2c: DirMatch | None
    missing: list[int]  # missing points between a and b
    ended: str | None = None  # the flow ended between a and b: "unanswered", "rst", "answered"


@dataclass
class FlowB:
    legs: list[LegB]
    hops: list[Hop] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # beyond a proxy that carried this flow over several connections (requests spread over
    # a pool, retries, redispatches): one chain per connection, after the last leg
    subs: list[FlowB] = field(default_factory=list)
    via: Hop | None = None  # a sub's hop from its parent's last leg to its first
    attempt: bool = False  # a sub that carried nothing before the proxy tried again


def _chains(flows: list[FlowB]) -> Iterator[FlowB]:
    """Every chain of legs: the flows and, depth first, their subs."""
    for f in flows:
        yield f
        yield from _chains(f.subs)


def _host_of(inp: PointInput) -> tuple[str, str]:
    host, iface = PointInput.parse_name(inp.name)
    return inp.host or host, inp.interface or iface


def correlate(
    points: Sequence[PointInput],
    *,
    conntrack: Mapping[str, str] | None = None,
    jobs: int = 1,
    dask: str | None = None,
    min_packets_per_job: int = 250_000,
    hosts: Mapping[str, Sequence[str]] | None = None,
    target: str | None = None,
) -> Verdict:
    """Correlate the captures of `points` (path order, client side first).

    Stage captures of one device (`fw:receive`, `fw:firewall`, `fw:transmit`, `fw:drop`)
    are put in processing order, and the drop stage is proof, not a point (`stages`).

    `jobs` > 1 partitions the connections (by their normalised tuple, once NAT links are
    known) across that many processes; `dask` (a scheduler address) runs the partitions on
    a dask.distributed cluster. Both give the verdict of one job. Captures smaller than
    `min_packets_per_job` per job use fewer jobs (a process costs more than it saves)."""
    if not points:
        raise CorrelationError("no capture points given")
    # the engine allocates millions of objects and no reference cycles worth collecting:
    # the cyclic collector's passes over them cost more than half of the flow stage
    was = gc.isenabled()
    gc.disable()
    try:
        plan = plan_stages(points)
        _check_points(plan.points)
        verdict = _correlate(points, plan, conntrack or {}, jobs, dask, min_packets_per_job)
        return with_patterns(localize(finish_stages(verdict, plan), hosts, target))
    finally:
        if was:
            gc.enable()


def _correlate(
    original: Sequence[PointInput],
    plan: StagePlan,
    conntrack: Mapping[str, str],
    jobs: int,
    dask: str | None,
    min_packets_per_job: int,
) -> Verdict:
    if dask is not None:
        from hopcap.correlate.parallel import correlate_dask

        return correlate_dask(original, plan.points, conntrack, dask, max(jobs, 1))
    pts = read_points(plan.points, tables=plan.tables, threads=jobs)
    try:
        prep = prepare(pts, conntrack)
        total = sum(len(p.table) for p in pts if p.pc is not None)
        n = max(1, min(jobs, total // max(min_packets_per_job, 1), len(prep.flows)))
        if n > 1:
            from hopcap.correlate.parallel import run_forked

            built = run_forked(prep, n)
        else:
            every = list(range(len(prep.flows)))
            set_clocks(prep, [match_part(prep, every)])
            built = finish_part(prep, every)
        # datagram flows, tunnels and ICMP errors need every flow's legs: once, here
        built = finish_datagrams(prep, built)
        return assemble(prep.pts, built, prep.warnings, point_facts(prep.pts))
    finally:
        for p in pts:
            if p.pc is not None:
                p.pc.table.close()


def _check_points(points: Sequence[PointInput]) -> None:
    if not points:
        raise CorrelationError("no capture points given")
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise CorrelationError(f"capture point names must be unique: {names}")


def read_points(
    points: Sequence[PointInput],
    *,
    tables: Mapping[str, PacketTable] | None = None,
    threads: int = 1,
) -> list[Point]:
    """Read and index every point's capture (or its table, for a device's stage points);
    several at once in threads (the record walk and numpy release the interpreter lock)."""
    _check_points(points)

    def load(inp: PointInput) -> tuple[PointConns | None, PointInput, int, list[str]]:
        if tables and inp.name in tables:
            return build_point(tables[inp.name]), inp, 0, []
        if inp.pcap is None:
            return None, inp, 0, []
        t = read_capture(Path(inp.pcap))
        why = unreadable(t)
        if why is None:
            return build_point(t), inp, 0, []
        # nothing of it can be read: a missing point, its segments are gaps
        t.close()
        missing = replace(inp, missing_reason=f"{Path(inp.pcap).name}: {why}")
        return None, missing, t.records, list(t.warnings)

    files = sum(1 for inp in points if inp.pcap is not None)
    if threads > 1 and files > 1:
        from concurrent.futures import ThreadPoolExecutor

        from hopcap.correlate._fastwalk import available

        available()  # compile/load the helper once, before the threads race for it
        with ThreadPoolExecutor(min(threads, files)) as ex:
            pcs = list(ex.map(load, points))
    else:
        pcs = [load(inp) for inp in points]
    pts = []
    for i, (pc, inp, records, warnings) in enumerate(pcs):
        host, iface = _host_of(inp)
        pts.append(Point(i, inp, inp.name, host, iface, pc, warnings=warnings, records=records))
    return pts


def _hint_ns(p: Point, first: Point) -> int | None:
    a, b = p.inp.clock_offset_hint_s, first.inp.clock_offset_hint_s
    if a is None:
        return None
    return round((a - (b or 0.0)) * NS)


@dataclass
class Prepared:
    """Every point read, adjacent points linked, flows built: what the partitions share."""

    pts: list[Point]
    present: list[int]
    flows: list[FlowB]
    warnings: list[str]
    dflows: list[DFlowB] = field(default_factory=list)  # UDP, ICMP, ESP (matched)
    dminima: Minima = field(default_factory=dict)  # their delays, for the clocks


# per hop (a, b): the smallest one-way delay seen c2s and s2c (raw clocks), or None
Minima = dict[tuple[int, int], tuple[int | None, int | None]]


@dataclass(frozen=True)
class PointFacts:
    """What the verdict says about a point's capture (so that a process without the
    tables, e.g. a dask client, can write the verdict)."""

    records: int
    first_ns: int | None
    last_ns: int | None
    warnings: tuple[str, ...]
    kernel_drops: int | None


def prepare(pts: list[Point], conntrack: Mapping[str, str]) -> Prepared:
    present = [p.idx for p in pts if p.pc is not None]
    warnings: list[str] = []
    for p in pts:
        if p.pc is None:
            why = p.inp.missing_reason or "no capture file"
            warnings.append(f"point {p.name} is missing ({why}); what happened around it is a gap")
        elif not len(p.pc.table) and not (p.pc.table.dgram is not None and len(p.pc.table.dgram)):
            tb = p.pc.table
            kinds = ", ".join(link_name(lk) for lk in sorted(tb.link_types))
            warnings.append(
                f"point {p.name}: no TCP, UDP or ICMP packet could be read from its "
                f"{tb.records} packets "
                f"(link type {kinds}); flows through it are gaps there"
                if tb.records
                # not a gap by itself: nothing may have reached it (a SYN dropped upstream)
                else f"point {p.name} captured no packets"
            )
    ct_pairs = []
    for text in conntrack.values():
        ct_pairs.extend(parse_conntrack(text))

    # seed clocks from hints
    for p in pts:
        h = _hint_ns(p, pts[0])
        p.offset_ns = h or 0

    # link adjacent present points
    links: dict[tuple[int, int], HalfLinks] = {}
    for a, b in pairwise(present):
        pa, pb = pts[a].pc, pts[b].pc
        assert pa is not None and pb is not None
        links[(a, b)] = link_halves(
            pa, pb, offset_ns=pts[b].offset_ns - pts[a].offset_ns, conntrack_pairs=ct_pairs
        )

    flows = _build_flows(pts, present, links)
    for p in pts:
        if p.pc is not None:
            p.pc.drop_link_caches()
    _windows(pts, present, flows)  # uses the inputs and the links, not the clocks
    # UDP/ICMP/ESP flows: built and matched once, here (every partition and the process
    # that finishes them share them); their delays join every partition's clock minima
    dflows = build_dgram_flows(pts, present)
    match_dgram_hops(pts, dflows)
    d1, d2 = delay_samples(dflows)
    dminima: Minima = {k: (min(v), None) for k, v in d1.items() if v}
    for k, v in d2.items():
        if v:
            dminima[k] = (dminima.get(k, (None, None))[0], min(v))
    return Prepared(pts, present, flows, warnings, dflows, dminima)


def partition(prep: Prepared, n: int) -> list[list[int]]:
    """Flow indices in `n` parts by a hash of the flow's normalised tuple at its first
    point (the same in either direction; NAT links are already part of the flow)."""
    parts: list[list[int]] = [[] for _ in range(n)]
    for i, f in enumerate(prep.flows):
        leg = f.legs[0]
        h = leg.c if leg.c is not None else leg.s
        assert h is not None
        parts[min(h.tkey, h.rkey) % n].append(i)
    return parts


def match_part(prep: Prepared, idxs: Sequence[int]) -> Minima:
    """Match every hop of the flows `idxs`; the per-hop delay minima for the clocks."""
    flows = [prep.flows[i] for i in idxs]
    _match_hops(prep.pts, flows)
    out: Minima = dict(prep.dminima)  # the datagrams' (merged by minimum: every part may)
    for f in _chains(flows):
        for hop in f.hops:
            m1, m2 = out.get((hop.a, hop.b), (None, None))
            if hop.c2s is not None and hop.c2s.d_min is not None:
                m1 = hop.c2s.d_min if m1 is None else min(m1, hop.c2s.d_min)
            if hop.s2c is not None and hop.s2c.d_min is not None:
                m2 = hop.s2c.d_min if m2 is None else min(m2, hop.s2c.d_min)
            out[(hop.a, hop.b)] = (m1, m2)
    return out


def merge_minima(parts: Sequence[Minima]) -> Minima:
    out: Minima = {}
    for m in parts:
        for k, (x1, x2) in m.items():
            y1, y2 = out.get(k, (None, None))
            out[k] = (
                x1 if y1 is None else (y1 if x1 is None else min(x1, y1)),
                x2 if y2 is None else (y2 if x2 is None else min(x2, y2)),
            )
    return out


def set_clocks(prep: Prepared, minima: Sequence[Minima]) -> None:
    _estimate_clocks(prep.pts, prep.present, merge_minima(minima))


def clocks_of(pts: list[Point]) -> list[tuple[int, int | None]]:
    return [(p.offset_ns, p.offset_err_ns) for p in pts]


def apply_clocks(pts: list[Point], clocks: Sequence[tuple[int, int | None]]) -> None:
    for p, (off, err) in zip(pts, clocks, strict=True):
        p.offset_ns, p.offset_err_ns = off, err


def finish_part(prep: Prepared, idxs: Sequence[int]) -> list[Built]:
    return [_finish_flow(prep.pts, prep.present, prep.flows[i]) for i in idxs]


def finish_datagrams(prep: Prepared, built: list[Built]) -> list[Built]:
    """After every partition's TCP flows are finished (`built`, in flow order, clocks
    set): the datagram flows' findings, encrypted tunnels (legs added to the flows they
    carry) and ICMP errors attached to the flows they quote. Needs every flow's legs, not
    their matches: runs once, in the process that assembles (or one dask worker)."""
    pts, present, flows, dflows = prep.pts, prep.present, prep.flows, prep.dflows
    built = list(built)
    tunnels = find_tunnels(pts, present, dflows, _blind)
    dverdict = [finish_dflow(pts, present, f) for f in dflows]
    add_tunnel_legs(pts, tunnels, flows, built, dflows, dverdict)
    err_t, err_d = attach_errors(pts, present, flows, dflows, _blind)
    by_name = {p.name: p for p in pts}

    def where_of(fnd: Finding) -> str:
        return _where(by_name, fnd.between)

    for i, infos in err_t.items():
        apply_to_built(built[i], infos, where_of)
    for i, infos in err_d.items():
        apply_to_built(dverdict[i], infos, where_of)
    built.extend(dverdict)
    if tunnels:
        built = join_across_tunnels(built)
    return built


def point_facts(pts: list[Point]) -> list[PointFacts | None]:
    out: list[PointFacts | None] = []
    for p in pts:
        if p.pc is None:
            out.append(None)
            continue
        t = p.table
        n = len(t)
        out.append(
            PointFacts(
                t.records,
                int(t.ts.min()) if n else None,
                int(t.ts.max()) if n else None,
                tuple(t.warnings),
                p.kernel_drops,
            )
        )
    return out


def assemble(
    pts: list[Point],
    built: list[Built],
    warnings: list[str],
    facts: Sequence[PointFacts | None],
) -> Verdict:
    """The verdict from every flow's findings (in flow order) and the points' facts."""
    verdict_flows = sorted(built, key=lambda f: (not f.broken, not f.findings, f.first_ts or 0.0))
    out_flows = tuple(
        Flow(
            id=f"f{i + 1}",
            proto=f.proto,
            client=f.client,
            server=f.server,
            legs=f.legs,
            findings=f.findings,
            summary=f.summary,
            first_ts=f.first_ts,
        )
        for i, f in enumerate(verdict_flows)
    )
    summaries = []
    for p, t in zip(pts, facts, strict=True):
        summaries.append(
            PointSummary(
                name=p.name,
                host=p.host,
                interface=p.iface,
                packets=t.records if t is not None else p.records,
                kernel_drops=p.inp.kernel_drops
                if p.inp.kernel_drops is not None
                else (t.kernel_drops if t is not None else None),
                clock_offset_s=(p.offset_ns / NS) if t is not None else None,
                clock_error_s=(p.offset_err_ns / NS) if p.offset_err_ns is not None else None,
                first_ts=(t.first_ns / NS) if t is not None and t.first_ns is not None else None,
                last_ts=(t.last_ns / NS) if t is not None and t.last_ns is not None else None,
                warnings=t.warnings
                if t is not None
                else (
                    *p.warnings,
                    *(
                        (f"missing: {p.inp.missing_reason}",)
                        if p.inp.missing_reason
                        else ("missing",)
                    ),
                ),
                missing=None if t is not None else (p.inp.missing_reason or "no capture file"),
            )
        )
    warnings = list(warnings)
    for t in facts:
        if t is not None:
            warnings.extend(t.warnings)
    return Verdict(points=tuple(summaries), flows=out_flows, warnings=tuple(warnings))


# --------------------------------------------------------------------------- flows


def _partner(pc: PointConns, h: Half | None) -> Half | None:
    if h is None or h.conn < 0:
        return None
    c = pc.conns[h.conn]
    return c.s if c.c is h else c.c


def _rows(h: Half | None) -> I64:
    return h.idx if h is not None else np.zeros(0, np.int64)


def _build_flows(
    pts: list[Point], present: list[int], links: dict[tuple[int, int], HalfLinks]
) -> list[FlowB]:
    claimed: dict[int, set[int]] = {i: set() for i in present}  # conn ids already in a flow
    plans: dict[tuple[int, int], ProxyPlan] = {}
    flows: list[FlowB] = []
    for k, p in enumerate(present):
        pc = pts[p].pc
        assert pc is not None
        # a reused backend connection: the exchanges that no front connection claimed are
        # a flow of their own
        plan = plans.get((present[k - 1], p)) if k else None
        for conn in sorted(pc.conns, key=lambda c: c.first_ts):
            part = None
            if conn.cid in claimed[p]:
                part = plan.rest.get(conn.cid) if plan is not None else None
                if part is None:
                    continue
            claimed[p].add(conn.cid)
            details = (part.label(),) if part is not None else ()
            flow = FlowB(legs=[LegB(p, conn.c, conn.s, "same", details, part=part)])
            _extend(pts, present, k, flow, links, claimed, plans)
            flows.append(flow)
    return flows


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
        # the clock error allowed in time order: none within a host (one clock); across
        # hosts the offset is only a hint at this stage
        kw = {
            "offset_ns": pb.offset_ns - pa.offset_ns,
            "tol_ns": 1_000_000 if one_host else 200_000_000,
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
        if yc is None and ys is None:
            ended = _how_ended(pa, leg)
            if ended == "answered" and not len(pb.table):
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
                        _extend(pts, present, k + 1, sub, links, claimed, plans)
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
        flow.hops.append(Hop(a, b, None, None, missing))
        link = "same" if same_tuple else "nat"
        # the same connection beyond a NAT: the same exchanges are this flow's
        flow.legs.append(LegB(b, yc, ys, link, details, None, None, leg.part))
        k += 1


def _match_hops(pts: list[Point], flows: list[FlowB]) -> None:
    """Match both directions of every linked connection, one batch per pair of points."""
    # a reused connection is on the chain of every flow it carried: matched once
    groups: dict[tuple[int, int], dict[tuple[int, ...], list[tuple[LegB, LegB, Hop]]]] = {}
    for f in _chains(flows):
        for i, hop in enumerate(f.hops):
            if hop.ended is not None or f.legs[i + 1].link == "proxied":
                continue
            x, y = f.legs[i], f.legs[i + 1]
            key = (id(x.c), id(x.s), id(y.c), id(y.s))
            groups.setdefault((hop.a, hop.b), {}).setdefault(key, []).append((x, y, hop))
    for (a, b), same in groups.items():
        # in chunks of connections: every pair is matched on its own, so the chunks give
        # the result of one batch while the temporaries stay bounded (memory per packet)
        chunk: list[list[tuple[LegB, LegB, Hop]]] = []
        rows = 0
        for dups in same.values():
            chunk.append(dups)
            x, y, _hop = dups[0]
            for h in (x.c, x.s, y.c, y.s):
                rows += h.idx.shape[0] if h is not None else 0
            if rows >= MATCH_CHUNK_ROWS:
                _match_group(pts, a, b, chunk)
                chunk, rows = [], 0
        if chunk:
            _match_group(pts, a, b, chunk)


MATCH_CHUNK_ROWS = 1 << 18


def _match_group(
    pts: list[Point], a: int, b: int, groups: list[list[tuple[LegB, LegB, Hop]]]
) -> None:
    """Match the connections of `groups` between adjacent points `a` and `b`, as one batch
    (a group: the hops of every flow that crosses one connection pair; matched once)."""
    items = [g[0] for g in groups]
    ta, tb = pts[a].table, pts[b].table
    same_host = pts[a].host == pts[b].host and bool(pts[a].iface) and bool(pts[b].iface)
    ttl_exp: tuple[int, ...] | None = (0, 1) if same_host else None
    n = len(items)

    def rows(halves: list[Half | None]) -> tuple[I64, I64]:
        arrs = [h.idx if h is not None else np.zeros(0, np.int64) for h in halves]
        lens = np.array([x.shape[0] for x in arrs], np.int64)
        pid = np.repeat(np.arange(len(arrs), dtype=np.int64), lens)
        r = np.concatenate(arrs) if arrs else np.zeros(0, np.int64)
        return r.astype(np.int64), pid

    xc = [it[0].c for it in items]
    yc = [it[1].c for it in items]
    xs = [it[0].s for it in items]
    ys = [it[1].s for it in items]
    ra_c, pa_c = rows(xc)
    rb_c, pb_c = rows(yc)
    ra_s, pa_s = rows(ys)  # s2c travels b -> a
    rb_s, pb_s = rows(xs)
    dc, votes_c = learn_deltas(ta, ra_c, pa_c, tb, rb_c, pb_c, n)
    ds, votes_s = learn_deltas(tb, ra_s, pa_s, ta, rb_s, pb_s, n)  # a-seq minus b-seq

    def prm(
        up: list[Half | None],
        down: list[Half | None],
        d: I64,
        other: I64,
        votes: I64,
        n: int = n,
    ) -> PairParams:
        delta = np.where(d >= 0, d, 0)
        # acks of this direction acknowledge the other direction's bytes
        ack_delta = np.where(other >= 0, (-other) & M32, -1)

        has_u, isn_u, ts_u, v4_u, len_u = _half_cols(up)
        has_w, isn_w, ts_w, v4_w, len_w = _half_cols(down)
        base = np.where(has_w, isn_w, (isn_u + delta) & M32)
        a_base = np.where(has_u, isn_u, base)
        use_ts = (ts_u | ~has_u) & (ts_w | ~has_w) & (ts_u | ts_w)
        empty = (len_u == 0) | (len_w == 0)
        use_ipid = v4_u & v4_w & ((votes > 0) | empty)
        return PairParams(delta, ack_delta, base, a_base, use_ipid, use_ts)

    c_out = match_batch(
        ta, ra_c, pa_c, tb, rb_c, pb_c, prm(xc, yc, dc, ds, votes_c), ttl_expected=ttl_exp
    )
    s_out = match_batch(
        tb, ra_s, pa_s, ta, rb_s, pb_s, prm(ys, xs, ds, dc, votes_s), ttl_expected=ttl_exp
    )
    for k, dups in enumerate(groups):
        for legx, legy, hop in dups:
            if legx.c is not None or legy.c is not None:
                hop.c2s = c_out[k]
            if legx.s is not None or legy.s is not None:
                hop.s2c = s_out[k]
            legy.delta_c = int(dc[k]) if dc[k] >= 0 else None
            legy.delta_s = int((-ds[k]) & M32) if ds[k] >= 0 else None
            if legy.link == "same" and ((legy.delta_c or 0) != 0 or (legy.delta_s or 0) != 0):
                legy.link = "nat"


def _half_cols(hs: list[Half | None]) -> tuple[npt.NDArray[np.bool_], I64, Any, Any, I64]:
    """Per half (None: absent): present, ISN, has TSval, IPv4 (True when absent), rows."""
    rows = [
        (1, h.isn, h.has_ts, h.v == 4, h.idx.shape[0]) if h is not None else (0, 0, 0, 1, 0)
        for h in hs
    ]
    a = np.array(rows, np.int64).reshape(len(hs), 5)
    return a[:, 0] > 0, a[:, 1], a[:, 2] > 0, a[:, 3] > 0, a[:, 4]


def _how_ended(pa: PointConns, leg: LegB) -> str:
    s = leg.s
    if s is None or s.idx.shape[0] == 0:
        return "unanswered"
    fl = pa.table.flags[s.idx]
    if np.all((fl & RST) != 0) and not np.any(pa.table.plen[s.idx] > 0):
        return "rst"
    return "answered"


# --------------------------------------------------------------------------- clocks


def _estimate_clocks(pts: list[Point], present: list[int], minima: Minima) -> None:
    d1 = {k: m1 for k, (m1, _m2) in minima.items() if m1 is not None}
    d2 = {k: m2 for k, (_m1, m2) in minima.items() if m2 is not None}
    first = present[0] if present else 0
    if present:
        pts[first].offset_ns = 0
        pts[first].offset_err_ns = 0
    for a, b in pairwise(present):
        pa, pb = pts[a], pts[b]
        hint = _hint_ns(pb, pts[0])
        hint_a = _hint_ns(pa, pts[0])
        rel_hint = (hint - (hint_a or 0)) if hint is not None else None
        if pa.host == pb.host:
            rel, err = 0, 0
        elif (a, b) in d1 and (a, b) in d2:
            m1, m2 = d1[(a, b)], d2[(a, b)]
            rel = (m1 - m2) // 2
            err = max((m1 + m2) // 2, 0)
        elif rel_hint is not None:
            rel, err = rel_hint, None
        elif (a, b) in d1:
            rel, err = d1[(a, b)], None
        elif (a, b) in d2:
            rel, err = -d2[(a, b)], None
        else:
            rel, err = 0, None
        pb.offset_ns = pa.offset_ns + rel
        if err is None or pa.offset_err_ns is None:
            pb.offset_err_ns = None
        else:
            pb.offset_err_ns = pa.offset_err_ns + err
    for p in pts:
        if p.idx not in present:
            p.offset_ns = 0


def _windows(pts: list[Point], present: list[int], flows: list[FlowB]) -> None:
    """When each point was really listening, on its own clock: given start/stop times,
    a truncated file, or evidence that a capture started after a flow did."""
    for i in present:
        p = pts[i]
        t = p.table
        if p.inp.start_ts is not None:
            hint = p.inp.clock_offset_hint_s or 0.0
            p.start_ns = int((p.inp.start_ts + hint) * NS)
        if p.inp.stop_ts is not None:
            hint = p.inp.clock_offset_hint_s or 0.0
            p.stop_ns = int((p.inp.stop_ts + hint) * NS)
        if len(t) and any("truncated" in w or "corrupt" in w for w in t.warnings):
            p.stop_ns = int(t.ts.max()) if p.stop_ns is None else min(p.stop_ns, int(t.ts.max()))
    # evidence of a late start: a flow whose SYN was seen upstream but not here
    for f in _chains(flows):
        for prev, leg in pairwise(f.legs):
            if leg.link == "proxied":
                continue
            for x, y in ((prev.c, leg.c), (prev.s, leg.s)):
                if x is not None and y is not None and x.syn and not y.syn:
                    p = pts[leg.point]
                    first = int(p.table.ts.min())
                    p.start_ns = max(p.start_ns or first, first)
                if x is not None and y is not None and y.syn and not x.syn:
                    p = pts[prev.point]
                    first = int(p.table.ts.min())
                    p.start_ns = max(p.start_ns or first, first)


# --------------------------------------------------------------------------- findings


@dataclass
class Built:
    proto: str
    client: str
    server: str
    legs: tuple[Leg, ...]
    findings: tuple[Finding, ...]
    summary: str
    first_ts: float | None
    # an encrypted tunnel the flow went into / came out of: (outer flow, outer point)
    tunnel_out: tuple[int, int] | None = None
    tunnel_in: tuple[int, int] | None = None

    @property
    def broken(self) -> bool:
        return any(f.kind in BROKEN_KINDS for f in self.findings)


def _endpoint_name(p: Point, side: str) -> str:
    if p.iface:
        return p.host
    return side


def _closed_with_rst(t: PacketTable, s: Half, c: Half | None, rst_rows: list[int]) -> bool:
    """Every RST of the server side `s` came after its own FIN, and no client data was
    seen after that FIN (nothing the client still sent was refused)."""
    s_rows = s.idx
    fins = s_rows[(t.flags[s_rows] & FIN) != 0]
    if fins.shape[0] == 0:
        return False
    t_fin = int(t.ts[fins[0]])
    if min(int(t.ts[r]) for r in rst_rows) < t_fin:
        return False
    if c is None:
        return True
    c_rows = c.idx
    late = c_rows[(t.ts[c_rows] > t_fin) & (t.plen[c_rows] > 0)]
    return bool(late.shape[0] == 0)


def _describe(
    t: PacketTable, rows: list[int], base: int, undelivered_bytes: Mapping[int, int] | None = None
) -> tuple[str, int]:
    """A short description of packets and their byte count."""
    fls = t.flags[rows].tolist()
    pls = t.plen[rows].tolist()
    if undelivered_bytes:
        nbytes = sum(undelivered_bytes.get(r, pl) for r, pl in zip(rows, pls, strict=True))
    else:
        nbytes = sum(pls)
    parts: list[str] = []
    kinds: dict[str, int] = {}
    for fl, pl in zip(fls, pls, strict=True):
        if fl & SYN:
            k = "SYN-ACK" if fl & ACK else "SYN"
        elif fl & RST:
            k = "RST"
        elif pl:
            k = "data"
        elif fl & FIN:
            k = "FIN"
        else:
            k = "ACK"
        kinds[k] = kinds.get(k, 0) + 1
    r0 = rows[0]
    fl0 = int(t.flags[r0])
    if fl0 & SYN:
        first = f"{flags_str(fl0)} seq={int(t.seq[r0])}"
    else:
        rel = ((int(t.seq[r0]) - base + (1 << 31)) & M32) - (1 << 31)
        pl = int(t.plen[r0])
        first = f"{flags_str(fl0)} seq={rel}" + (f" len={pl}" if pl else "")
    if t.tsval[r0] >= 0:
        first += f" tsval={int(t.tsval[r0])}"
    if t.v[r0] == 4:
        first += f" ipid={int(t.ipid[r0])}"
    for k, n in kinds.items():
        parts.append(f"{n} {k}" if n > 1 else f"1 {k}")
    return f"{first} ({', '.join(parts)})" if len(rows) > 1 else first, nbytes


def missing_gaps(
    pts: list[Point], a: int, b: int, missing: Sequence[int], first_ts_ns: int
) -> list[Finding]:
    """A `gap` for every missing point between points `a` and `b` of a hop."""
    pa, pb = pts[a], pts[b]
    return [
        Finding(
            "gap",
            "c2s",
            (pa.name, pts[m].name),
            0,
            0,
            first_ts_ns / NS,
            f"no capture at {pts[m].name} ({pts[m].inp.missing_reason or 'missing'}): "
            f"what happened between {pa.name} and {pb.name} cannot be placed more precisely",
        )
        for m in missing
    ]


def split_lost(
    up: Point, down: Point, ts: I64, rows: list[int]
) -> tuple[list[int], list[int], str]:
    """Rows seen at `up` (`ts`: their capture times there) that never reached `down`:
    (lost, gap, why): a gap where `down` could not have seen them (`_blind`)."""
    lost: list[int] = []
    gap: list[int] = []
    why = ""
    for r in rows:
        blind = _blind(down, int(ts[r]) - up.offset_ns + down.offset_ns)
        if blind:
            gap.append(r)
            why = blind
        else:
            lost.append(r)
    return lost, gap, why


def split_extra(
    up: Point, down: Point, ts: I64, rows: list[int]
) -> tuple[list[int], list[int], str]:
    """Rows seen at `down` that never went through `up`: (injected, gap, why); a gap where
    `up` was blind, or where nothing on the wire between two hosts could have sent them."""
    inj: list[int] = []
    gap: list[int] = []
    why = ""
    wire = up.host != down.host and bool(up.iface) and bool(down.iface)
    for r in rows:
        blind = _blind(up, int(ts[r]) - down.offset_ns + up.offset_ns)
        if blind:
            gap.append(r)
            why = blind
        elif wire:
            gap.append(r)
            why = (
                f"nothing between {up.name} and {down.name} could have sent them "
                f"(capture loss at {up.name}?)"
            )
        else:
            inj.append(r)
    return inj, gap, why


def _blind(p: Point, ts_ns: int) -> str | None:
    """Why point `p` cannot be expected to have seen a packet at `ts_ns` (on its own clock):
    then a packet missing there is a `gap`, not a drop or an injection."""
    if p.kernel_drops:
        return f"{p.name} dropped {p.kernel_drops} packets in the kernel"
    if p.start_ns is not None and ts_ns < p.start_ns:
        return f"the capture at {p.name} started after these packets"
    if p.stop_ns is not None and ts_ns > p.stop_ns:
        return f"the capture at {p.name} ended before these packets"
    return None


@dataclass
class _Sel:
    """The packets of a leg on a reused connection that are this flow's: those of the
    exchanges `keep` (`ex_of`: the exchange of every packet of the leg)."""

    point: Point
    ex_of: dict[int, int]
    keep: frozenset[int]

    def pick(
        self, key: tuple[str, int], make: Callable[[], list[T]], row: Callable[[T], int]
    ) -> list[T]:
        """This flow's items among those `make` gives (`row`: an item's packet). Every flow
        on the connection asks for the same lists (`key` names one, e.g. a match's
        undelivered packets): each is split by exchange once, so a connection carrying N
        flows costs N lookups, not N passes over its packets."""
        ck = (*key, id(self.ex_of))
        split = self.point.row_split.get(ck)
        if split is None:
            split = {}
            for x in make():
                split.setdefault(self.ex_of.get(row(x), -1), []).append(x)
            self.point.row_split[ck] = split
        out: list[T] = list(split.get(-1, ()))
        if len(self.keep) <= len(split):
            for k in self.keep:
                out += split.get(k, ())
        else:
            for k, xs in split.items():
                if k in self.keep:
                    out += xs
        out.sort(key=row)
        return out


def _part_filters(pts: list[Point], f: FlowB) -> list[_Sel | None]:
    """Per leg of the chain: which of its packets are this flow's (None: all of them). On a
    reused connection the packets of this flow's exchanges, with the exchange boundaries
    carried across NATs by the learned sequence offsets."""
    out: list[_Sel | None] = []
    base_c = base_s = 0
    prev: Part | None = None
    for leg in f.legs:
        part = leg.part
        if part is None:
            out.append(None)
            prev = None
            continue
        if prev is not part:
            base_c, base_s = part.cx.base_c, part.cx.base_s
        else:
            base_c = (base_c + leg.delta_c) & M32 if leg.delta_c is not None else stream_base(leg.c)
            base_s = (base_s + leg.delta_s) & M32 if leg.delta_s is not None else stream_base(leg.s)
        prev = part
        p = pts[leg.point]
        assert p.pc is not None
        key = (id(part.cx), id(leg.c), id(leg.s), base_c, base_s)
        m = p.ex_rows.get(key)
        if m is None:
            m = {}
            for h, is_c in ((leg.c, True), (leg.s, False)):
                if h is not None:
                    ks = exchange_of_rows(p.pc, h, is_c, part.cx, base_c, base_s)
                    m.update(zip(h.idx.tolist(), ks.tolist(), strict=True))
            p.ex_rows[key] = m
        out.append(_Sel(p, m, part.keep))
    return out


def _finish_flow(pts: list[Point], present: list[int], f: FlowB) -> Built:
    first_leg = f.legs[0]
    p0 = pts[first_leg.point]
    c, s = first_leg.c, first_leg.s
    if c is not None:
        client, server = c.src_str, c.dst_str
    else:
        assert s is not None
        client, server = s.dst_str, s.src_str
    first_ts_ns = min(h.first_ts for h in (c, s) if h is not None) - p0.offset_ns
    findings, legs_out, tried = _chain_out(pts, present, f, first_ts_ns)

    def order(x: Finding) -> tuple[int, float]:
        return (
            KIND_ORDER.get(x.kind, 9),
            x.first_ts or 0.0,
        )

    findings.sort(key=order)
    tried_ids = {id(x) for x in tried}
    main = [x for x in findings if id(x) not in tried_ids]
    summary = _summary(pts, f, main, legs_out)
    n_att = sum(1 for x in _chains([f]) if x.attempt)
    if n_att:
        why = ""
        if tried:
            why = ": " + _summary(pts, f, sorted(tried, key=order), legs_out)
        summary += f"; after {n_att} failed connection attempt{'s' if n_att > 1 else ''}{why}"
    return Built("tcp", client, server, tuple(legs_out), tuple(findings), summary, first_ts_ns / NS)


def _chain_out(
    pts: list[Point], present: list[int], f: FlowB, first_ts_ns: int
) -> tuple[list[Finding], list[Leg], list[Finding]]:
    """The findings and legs of one chain and its subs; and those of failed attempts."""
    findings: list[Finding] = []
    first_leg = f.legs[0]
    filters = _part_filters(pts, f)

    def own(j: int, key: tuple[str, int], make: Callable[[], list[int]]) -> list[int]:
        """The rows `make` gives at leg `j` that are this flow's (`key` names the list)."""
        sel = filters[j]
        return sel.pick(key, make, int) if sel is not None else make()

    def fts(p: Point, rows: list[int]) -> float:
        return (int(p.table.ts[rows].min()) - p.offset_ns) / NS

    def add_lost(
        direction: Direction,
        up: Point,
        down: Point,
        rows: list[int],
        base: int,
        und_b: Mapping[int, int] | None = None,
    ) -> None:
        """Packets seen at `up` that never reached `down` (in direction of travel)."""
        if not rows:
            return
        t = up.table
        drop_rows, gap_rows, why = split_lost(up, down, t.ts, rows)
        between = (up.name, down.name)
        if drop_rows:
            what, nb = _describe(t, drop_rows, base, und_b)
            findings.append(
                Finding("drop", direction, between, len(drop_rows), nb, fts(up, drop_rows), what)
            )
        if gap_rows:
            what, nb = _describe(t, gap_rows, base, und_b)
            findings.append(
                Finding(
                    "gap",
                    direction,
                    between,
                    len(gap_rows),
                    nb,
                    fts(up, gap_rows),
                    f"seen at {up.name}, not at {down.name}, but {why}: "
                    f"cannot tell whether they were lost; {what}",
                )
            )

    def add_extra(direction: Direction, up: Point, down: Point, rows: list[int], base: int) -> None:
        """Packets seen at `down` that never went through `up`."""
        if not rows:
            return
        t = down.table
        inj, gap, why = split_extra(up, down, t.ts, rows)
        between = (up.name, down.name)
        if inj:
            what, nb = _describe(t, inj, base)
            findings.append(
                Finding("inject", direction, between, len(inj), nb, fts(down, inj), what)
            )
        if gap:
            what, nb = _describe(t, gap, base)
            findings.append(
                Finding(
                    "gap",
                    direction,
                    between,
                    len(gap),
                    nb,
                    fts(down, gap),
                    f"seen at {down.name}, not at {up.name}, but {why}; {what}",
                )
            )

    def gaps_between(hop: Hop) -> None:
        findings.extend(missing_gaps(pts, hop.a, hop.b, hop.missing, first_ts_ns))

    for i, hop in enumerate(f.hops):
        pa, pb = pts[hop.a], pts[hop.b]
        gaps_between(hop)
        if hop.c2s is None and hop.s2c is None:
            leg = f.legs[i]
            if hop.ended in ("unanswered", "rst") and leg.c is not None:
                rows = own(i, ("c", id(leg.c)), leg.c.idx.tolist)
                add_lost("c2s", pa, pb, rows, leg.c.isn)
            if hop.ended == "rst" and leg.s is not None:
                rows = own(i, ("s", id(leg.s)), leg.s.idx.tolist)
                add_extra("s2c", pb, pa, rows, leg.s.isn)
            if hop.ended == "nothing":
                findings.append(
                    Finding(
                        "gap",
                        "c2s",
                        (pa.name, pb.name),
                        0,
                        0,
                        first_ts_ns / NS,
                        f"{pb.name} captured no TCP packets at all (wrong interface, filter, or a "
                        f"capture that failed?): what happened after {pa.name} is unknown",
                    )
                )
            continue
        dirs: tuple[tuple[Direction, DirMatch | None, Point, Point, int, int], ...] = (
            ("c2s", hop.c2s, pa, pb, i, i + 1),
            ("s2c", hop.s2c, pb, pa, i + 1, i),
        )
        for direction, dm, up, down, ju, jd in dirs:
            if dm is None:
                continue
            und_rows = own(ju, ("und", id(dm)), partial(list, dm.undelivered))
            add_lost(direction, up, down, und_rows, dm.a_base, dm.undelivered_bytes)
            # partially delivered packets (a segment of a big one missing)
            part_rows = own(ju, ("part", id(dm)), partial(_partly_delivered, dm))
            if part_rows:
                add_lost(direction, up, down, part_rows, dm.a_base, dm.undelivered_bytes)
            unx = own(jd, ("unx", id(dm)), partial(list, dm.unexplained))
            add_extra(direction, up, down, unx, dm.base)
            groups: dict[tuple[str, str, str], list[tuple[int, int]]] = {}
            sel = filters[ju]
            rws = (
                dm.rewrites
                if sel is None
                else sel.pick(("rw", id(dm)), partial(list, dm.rewrites), attrgetter("a_row"))
            )
            for rw in rws:
                groups.setdefault((rw.field, str(rw.before), str(rw.after)), []).append(
                    (rw.a_row, rw.b_row)
                )
            by_field: dict[str, list[tuple[str, str, list[tuple[int, int]]]]] = {}
            for (fld, bef, aft), rr in groups.items():
                by_field.setdefault(fld, []).append((bef, aft, rr))
            for fld, lst in by_field.items():
                lst.sort(key=lambda x: -len(x[2]))
                rows_all = [r for _b, _a, rr in lst for r in rr]
                bef, aft, rr = lst[0]
                rw0 = next(
                    x
                    for x in rws
                    if x.field == fld and str(x.before) == bef and str(x.after) == aft
                )
                what, nb = _describe(up.table, [a for a, _ in rows_all], dm.a_base)
                if len(lst) > 1:
                    what += f"; {len(lst)} different values, e.g. {bef} -> {aft}"
                findings.append(
                    Finding(
                        "rewrite",
                        direction,
                        (up.name, down.name),
                        len(rows_all),
                        nb,
                        fts(up, [a for a, _ in rows_all]),
                        what,
                        field=fld,
                        before=rw0.before,
                        after=rw0.after,
                    )
                )

    # points missing at either end of the path: the flow's evidence stops short of them
    def missing_end(m: int, between: tuple[str, str], where: str) -> None:
        pm = pts[m]
        findings.append(
            Finding(
                "gap",
                "c2s",
                between,
                0,
                0,
                first_ts_ns / NS,
                f"no capture at {pm.name} ({pm.inp.missing_reason or 'missing'}): "
                f"what happened {where} cannot be told",
            )
        )

    if first_leg.point == present[0] and present[0] > 0:
        missing_end(0, (pts[0].name, pts[present[0]].name), f"before {pts[present[0]].name}")
    last = f.legs[-1]
    pl = pts[last.point]
    trailing = last.point == present[-1] and present[-1] < len(pts) - 1
    if trailing:
        m = present[-1] + 1
        missing_end(m, (pl.name, pts[m].name), f"beyond {pl.name}")

    # the far end: the last leg is at the last point of the path
    if last.point == present[-1] and not trailing:
        t = pl.table
        beyond = _endpoint_name(pl, "server")
        if last.c is not None and last.c.syn and not last.c.synack:
            answered = last.s is not None and last.s.idx.shape[0] > 0
            c_rows = last.c.idx
            syn_rows = own(
                len(f.legs) - 1,
                ("syn", id(last.c)),
                lambda: c_rows[(t.flags[c_rows] & SYN) != 0].tolist(),
            )
            if not answered and syn_rows:
                what, nb = _describe(t, syn_rows, last.c.isn)
                end = pl.stop_ns if pl.stop_ns is not None else int(t.ts.max())
                late = end - int(t.ts[syn_rows[0]]) < NS  # the capture ended right after it
                if pl.kernel_drops or late:
                    why = (
                        f"{pl.name} dropped {pl.kernel_drops} packets in the kernel"
                        if pl.kernel_drops
                        else f"the capture at {pl.name} ended less than a second after it"
                    )
                    kind, text = "gap", f"{what}: no answer seen, but {why}"
                else:
                    kind, text = "drop", f"{what}: reached {pl.name}, never answered by {beyond}"
                findings.append(
                    Finding(
                        kind, "c2s", (pl.name, beyond), len(syn_rows), nb, fts(pl, syn_rows), text
                    )
                )
    if last.s is not None and (
        last.point == present[-1] or (f.hops and f.hops[-1].ended == "answered")
    ):
        t = pl.table
        s_rows = last.s.idx
        rst_rows = own(
            len(f.legs) - 1,
            ("rst", id(last.s)),
            lambda: s_rows[(t.flags[s_rows] & RST) != 0].tolist(),
        )
        if rst_rows and _closed_with_rst(t, last.s, last.c, rst_rows):
            # its side was finished (FIN sent) and the client sent no data after it: the
            # RST answers a FIN or an ACK to a closed socket, nothing was lost (3proxy,
            # a server that closes without lingering); a note, not a finding
            note = "closed with RST after its FIN (no data of the client's refused)"
            if note not in last.details:
                last.details = (*last.details, note)
        elif rst_rows:
            beyond = pl.host if (last.point != present[-1] or pl.iface) else "server"
            what, nb = _describe(t, rst_rows, last.s.isn)
            findings.append(
                Finding(
                    "reset",
                    "s2c",
                    (beyond, pl.name),
                    len(rst_rows),
                    nb,
                    fts(pl, rst_rows),
                    f"{beyond} answered with RST: {what}",
                )
            )

    # latency per leg on the aligned timeline
    legs_out: list[Leg] = []
    for i, leg in enumerate(f.legs):
        lat = None
        if i > 0:
            hop = f.hops[i - 1]
            pa, pb = pts[hop.a], pts[hop.b]
            if hop.c2s is not None and hop.c2s.d_med is not None:
                lat = (hop.c2s.d_med - (pb.offset_ns - pa.offset_ns)) / NS
        tup = _leg_tuple(leg)
        legs_out.append(
            Leg(
                point=pts[leg.point].name,
                tuple=tup,
                link=leg.link if i or f.via is not None else "same",
                details=leg.details,
                latency_s=lat,
                part=_leg_part(leg.part),
                tunnel=_leg_tunnel(pts[leg.point].table, leg),
            )
        )
    tried: list[Finding] = []
    for sub in f.subs:
        assert sub.via is not None
        gaps_between(sub.via)
        sf, sl, st = _chain_out(pts, present, sub, first_ts_ns)
        findings += sf
        legs_out += sl
        tried += sf if sub.attempt else st
    return findings, legs_out, tried


def _partly_delivered(dm: DirMatch) -> list[int]:
    """Packets of which a segment (not all) went missing."""
    und = set(dm.undelivered)
    return [r for r in dm.undelivered_bytes if r not in und]


def _leg_part(part: Part | None) -> LegPart | None:
    if part is None:
        return None
    ks = sorted(part.keep)
    ex = part.cx.ex
    return LegPart(
        exchanges=tuple(k + 1 for k in ks),
        of=len(ex),
        c2s=tuple(ex[k].c for k in ks),
        s2c=tuple(ex[k].s for k in ks),
    )


def _leg_tunnel(t: PacketTable, leg: LegB) -> str | None:
    """The tunnels this leg's packets were decapsulated from ("vxlan vni 42"), if any."""
    if t.tun.strides == (0,):  # the reader's all-zero column: no tunnel at this point
        return None
    codes = np.unique(t.tun[np.concatenate([_rows(leg.c), _rows(leg.s)])])
    return ", ".join(tunnel_str(int(x)) for x in codes if x) or None


def _leg_tuple(leg: LegB) -> str:
    if leg.c is not None:
        return leg.c.tuple_str
    assert leg.s is not None
    return f"{leg.s.dst_str} > {leg.s.src_str}"


def _where(pts_by_name: Mapping[str, Point], between: tuple[str, str]) -> str:
    a, b = between
    pa, pb = pts_by_name.get(a), pts_by_name.get(b)
    if pa is not None and pb is not None and pa.host == pb.host and pa.iface and pb.iface:
        return f"inside {pa.host}"
    if pb is None:
        return f"by {b} itself"
    if pa is None:
        return f"by {a} itself"
    return f"between {a} and {b}"


def _summary(pts: list[Point], f: FlowB, findings: list[Finding], legs: list[Leg]) -> str:
    by_name = {p.name: p for p in pts}
    for fnd in findings:
        a, b = fnd.between
        where = _where(by_name, fnd.between)
        if fnd.kind == "drop":
            if fnd.what.startswith("SYN") and "never answered" in fnd.what:
                return f"SYN reached {a} but {b} never answered it"
            k = _kind_word(fnd.what)
            return f"{k} dropped {where} (seen on {a}, never on {b})" + _more(findings)
        if fnd.kind == "inject":
            return (
                f"{_kind_word(fnd.what)} injected {where} (seen on {b}, never sent through {a})"
                + _more(findings)
            )
        if fnd.kind == "rewrite":
            return (
                f"{fnd.field} rewritten {where}: {fnd.before} -> {fnd.after} "
                f"({fnd.packets} packets)" + _more(findings)
            )
        if fnd.kind == "reset":
            return f"{a} reset the connection (RST seen on {b})" + _more(findings)
    for fnd in findings:
        if fnd.kind == "gap":
            return f"incomplete evidence {_where(by_name, fnd.between)}: {fnd.what}"
    # several connections beyond a proxy visit the same points: each point once
    path = " -> ".join(dict.fromkeys(leg.point for leg in legs))
    kinds = list(
        dict.fromkeys(f"{leg.link} at {leg.point}" for leg in legs[1:] if leg.link != "same")
    )
    more = f" ({', '.join(kinds)})" if kinds else ""
    # a request with no answer at all is not "OK", even when every hop delivered it
    first = f.legs[0]
    t0 = pts[first.point].table
    req = int(t0.plen[first.c.idx].sum()) if first.c is not None else 0
    resp = int(t0.plen[first.s.idx].sum()) if first.s is not None else 0
    if req and not resp and first.c is not None:
        # the client waited: it closed a second or more after its last byte, or never did
        # (closing right after sending is an upload, not a request left unanswered)
        c_rows = first.c.idx
        last_req = int(t0.ts[c_rows[t0.plen[c_rows] > 0][-1]])
        closes = c_rows[(t0.flags[c_rows] & (FIN | RST)) != 0]
        waited = (int(t0.ts[closes[0]]) - last_req) / NS if closes.shape[0] else None
        if waited is None or waited >= 1.0:
            how = (
                f"the client gave up after {waited:.1f} s"
                if waited is not None
                else "the connection was still open when the capture ended"
            )
            return (
                f"no response: the request ({req} bytes) went through {path}{more}, "
                f"but no response data came back to {legs[0].point} ({how})"
            )
    if f.hops and f.hops[-1].ended == "answered":
        pa, pb = pts[f.hops[-1].a], pts[f.hops[-1].b]
        who = f"{pa.host} itself" if pa.host == pb.host and pa.iface and pb.iface else "a device"
        return (
            f"OK: through {path}{more}; answered before {pb.name} ({who}: an endpoint or a proxy "
            "whose other side carries other bytes)"
        )
    return f"OK: delivered both ways through {path}{more}"
