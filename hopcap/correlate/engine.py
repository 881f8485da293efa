"""correlate(): points in path order -> Verdict."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hopcap.correlate.clocks import (
    Minima,
    blind,
    clock_words,
    estimate_clocks,
    hint_ns,
    merge_minima,
    minima_of,
    set_windows,
)
from hopcap.correlate.conns import PointConns, build_point
from hopcap.correlate.findings import Built, charge_capture_loss, finish_flows
from hopcap.correlate.flows import (
    FlowB,
    Point,
    add_bypasses,
    build_flows,
    crossing,
    host_of,
    match_hops,
)
from hopcap.correlate.icmp import apply_to_built, attach_errors
from hopcap.correlate.link import HalfLinks, link_halves, parse_conntrack
from hopcap.correlate.local import localize
from hopcap.correlate.order import reversed_pairs
from hopcap.correlate.reader import PacketTable, link_name, read_capture, unreadable
from hopcap.correlate.stages import StagePlan, finish_stages, plan_stages
from hopcap.correlate.summary import where
from hopcap.correlate.tunnel import (
    Decided,
    add_tunnel_legs,
    find_tunnels,
    join_across_tunnels,
)
from hopcap.correlate.udp import (
    DFlowB,
    build_dgram_flows,
    delay_samples,
    finish_dflow,
    match_dgram_hops,
)
from hopcap.errors import CorrelationError
from hopcap.model import Finding, Flow, PointInput, PointSummary, Verdict, any_broken, flow_ids
from hopcap.patterns import with_patterns

NS = 1_000_000_000
# set by a caller whose process ends right after the verdict (the CLI): the engine's state
# (tables, halves, flows: millions of objects) is then kept to the end and left to the
# kernel, instead of being freed object by object when the verdict is returned (0.06 s
# of a 1.6 M-packet correlation); the peak memory is the same (it is reached earlier)
_KEEP: list[object] | None = None


def keep_state_until_exit() -> None:
    """Do not free the state of the correlations this process runs (it ends after them)."""
    global _KEEP
    _KEEP = []


def correlate(
    points: Sequence[PointInput],
    *,
    conntrack: Mapping[str, str] | None = None,
    jobs: int = 1,
    dask: str | None = None,
    min_packets_per_job: int = 250_000,
    hosts: Mapping[str, Sequence[str]] | None = None,
    target: str | None = None,
    memory: int | None = None,
    slice_packets: int | None = None,
    slice_margin_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Verdict:
    """Correlate the captures of `points` (path order, client side first).

    Stage captures of one device (`fw:receive`, `fw:firewall`, `fw:transmit`, `fw:drop`)
    are put in processing order, and the drop stage is proof, not a point (`stages`).

    `jobs` > 1 shares the connections out (once NAT links are known) among that many
    processes (`parallel.run_forked`); `dask` (a scheduler address) runs partitions of
    them (by their normalised tuple) on a dask.distributed cluster. Both give the verdict
    of one job. Captures smaller than `min_packets_per_job` per job use fewer jobs (a
    process costs more than it saves).

    Captures that may not fit `memory` bytes (default: half of the memory available) are
    correlated by time slices (`slices`), `jobs` slices at a time in forked processes
    that share the budget (`slice_packets` forces slices of about that many packets,
    `slice_margin_s` narrows the margin around a slice's window that covers clock
    offsets and path delay); the verdict is the unsliced one.
    `progress` hears what a long (sliced) run is doing, one line at a time."""
    if not points:
        raise CorrelationError("no capture points given")
    # the engine allocates millions of objects and no reference cycles worth collecting:
    # the cyclic collector's passes over them cost more than half of the flow stage
    was = gc.isenabled()
    gc.disable()
    try:
        plan = plan_stages(points)
        _check_points(plan.points)
        verdict = None
        if dask is None and not plan.tables:
            margin = None if slice_margin_s is None else round(slice_margin_s * NS)
            verdict = _sliced(
                plan.points, conntrack or {}, memory, slice_packets, margin, progress, jobs
            )
        if verdict is None:
            verdict = _correlate(points, plan, conntrack or {}, jobs, dask, min_packets_per_job)
        return with_patterns(localize(finish_stages(verdict, plan), hosts, target))
    finally:
        if was:
            gc.enable()


def _sliced(
    points: Sequence[PointInput],
    conntrack: Mapping[str, str],
    memory: int | None,
    slice_packets: int | None,
    margin_ns: int | None,
    progress: Callable[[str], None] | None,
    jobs: int,
) -> Verdict | None:
    """The verdict by time slices when the captures may not fit the memory budget."""
    from hopcap.correlate.budget import BYTES_PER_PACKET, default_budget, estimated_load

    budget = memory or default_budget()
    per = slice_packets or max(budget // BYTES_PER_PACKET, 1)
    if slice_packets is None and estimated_load(points) <= per:
        return None
    from hopcap.correlate import slices  # only now: what slices need costs ~7 ms to import

    margin = slices.MARGIN_NS if margin_ns is None else margin_ns
    return slices.correlate_sliced(
        points,
        conntrack,
        per,
        margin_ns=margin,
        # (a margin given is the one to read; else a wider one beyond an L7 proxy)
        proxy_margin_ns=slices.PROXY_MARGIN_NS if margin_ns is None else margin,
        progress=progress,
        budget=None if slice_packets else budget,
        jobs=jobs,
    )


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
    if jobs > 1:
        # what the forks need (multiprocessing: ~10 ms of imports) is imported meanwhile,
        # while the reading threads are in C without the interpreter lock
        threading.Thread(target=_import_parallel, daemon=True).start()
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
        facts = point_facts(prep.pts)
        if _KEEP is not None:
            # the read captures (their unmapping: ~0.02 s a 390 MB file) and every table
            # column, half, flow and match (freeing them one by one: ~0.03 s at 1.6 M
            # packets, ~0.12 s at 6.4 M, serial after the parallel part) left to the exit
            _KEEP.append(prep)
            if jobs > 1 and not plan.tables:  # (a device's stage tables are read on)
                _drop_pages(prep.pts)
            pts = []  # nothing to close here
        return assemble(prep.pts, built, prep.warnings, facts)
    finally:
        for p in pts:
            if p.pc is not None:
                p.pc.table.close()


def _drop_pages(pts: Sequence[Point]) -> None:
    """Give the kernel back the pages of every point's table, its columns and its mapped
    capture (~1 GB of memory and 3 GB of mappings at 6.4 M packets), in a thread, with the
    interpreter lock released (a call through ctypes): on the core the serial end of the
    run (assembly, patterns, the output: Python) leaves idle, instead of in the exit
    (~0.07 s at 6.4 M packets). Only for a process that ends after the verdict (`_KEEP`):
    nothing reads the tables after the flows are finished (`point_facts` read last), and
    a column read after this would hold zeros."""
    import mmap

    import numpy as np

    from hopcap.capfile.walk import madvise

    advise = madvise()
    if advise is None:
        return
    page = mmap.PAGESIZE
    ranges: dict[int, int] = {}
    for p in pts:
        if p.pc is None:
            continue
        t = p.pc.table
        cols = [a for a in vars(t).values() if isinstance(a, np.ndarray)]
        if isinstance(t.buf, mmap.mmap) and len(t.buf):
            cols.append(np.frombuffer(t.buf, np.uint8))  # (dropped: read again on need)
        for a in cols:
            if a.nbytes < (1 << 20) or not a.flags.c_contiguous:
                continue  # small, or a broadcast value
            lo = -(-a.ctypes.data // page) * page
            hi = (a.ctypes.data + a.nbytes) // page * page
            if hi > lo:
                ranges[lo] = max(ranges.get(lo, 0), hi - lo)
    if not ranges:
        return

    def drop() -> None:
        for lo, n in ranges.items():
            advise(lo, n, mmap.MADV_DONTNEED)

    threading.Thread(target=drop, daemon=True).start()


def _import_parallel() -> None:
    import hopcap.correlate.parallel  # noqa: F401


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
        pcs = _in_threads(load, points, min(threads, files))
    else:
        pcs = [load(inp) for inp in points]
    pts = []
    for i, (pc, inp, records, warnings) in enumerate(pcs):
        host, iface = host_of(inp)
        pts.append(Point(i, inp, inp.name, host, iface, pc, warnings=warnings, records=records))
    return pts


_T = TypeVar("_T")
_R = TypeVar("_R")


def _in_threads(fn: Callable[[_T], _R], items: Sequence[_T], n: int) -> list[_R]:
    """`fn` of every item, in order, by n threads; the first item's error in order is
    raised, as a loop would."""
    from concurrent.futures import ThreadPoolExecutor

    from hopcap.correlate._fastwalk import available

    available()  # compile/load the helper once, before the threads race for it
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, items))


@dataclass
class Prepared:
    """Every point read, adjacent points linked, flows built: what the partitions share."""

    pts: list[Point]
    present: list[int]
    flows: list[FlowB]
    warnings: list[str]
    dflows: list[DFlowB] = field(default_factory=list)  # UDP, ICMP, ESP (matched)
    dminima: Minima = field(default_factory=dict)  # their delays, for the clocks


@dataclass(frozen=True)
class PointFacts:
    """What the verdict says about a point's capture (so that a process without the
    tables, e.g. a dask client, can write the verdict)."""

    records: int
    first_ns: int | None
    last_ns: int | None
    warnings: tuple[str, ...]
    kernel_drops: int | None


def point_warning(
    p: Point, present: bool, rows: int, records: int, link_types: Mapping[int, int]
) -> str | None:
    """What the verdict warns about a missing point, or one with nothing readable (`rows`:
    its TCP and datagram rows, `records`: every record of its file)."""
    if not present:
        why = p.inp.missing_reason or "no capture file"
        return f"point {p.name} is missing ({why}); what happened around it is a gap"
    if rows:
        return None
    kinds = ", ".join(link_name(lk) for lk in sorted(link_types))
    return (
        f"point {p.name}: no TCP, UDP or ICMP packet could be read from its "
        f"{records} packets "
        f"(link type {kinds}); flows through it are gaps there"
        if records
        # not a gap by itself: nothing may have reached it (a SYN dropped upstream)
        else f"point {p.name} captured no packets"
    )


Windows = Callable[[list[Point], list[int], list[FlowB]], None]
Order = Callable[[list[Point], list[int], list[FlowB]], list[str]]


def prepare(
    pts: list[Point],
    conntrack: Mapping[str, str],
    *,
    windows: Windows = set_windows,
    order: Order = reversed_pairs,
) -> Prepared:
    present = [p.idx for p in pts if p.pc is not None]
    warnings: list[str] = []
    for p in pts:
        tb = p.pc.table if p.pc is not None else None
        if tb is None:
            w = point_warning(p, False, 0, 0, {})
        else:
            rows = len(tb) + (len(tb.dgram) if tb.dgram is not None else 0)
            w = point_warning(p, True, rows, tb.records, tb.link_types)
        if w:
            warnings.append(w)
    ct_pairs = []
    for text in conntrack.values():
        ct_pairs.extend(parse_conntrack(text))

    # seed clocks from hints
    for p in pts:
        h = hint_ns(p, pts[0])
        p.offset_ns = h or 0

    # link adjacent present points
    links: dict[tuple[int, int], HalfLinks] = {}
    for a, b in pairwise(present):
        pa, pb = pts[a].pc, pts[b].pc
        assert pa is not None and pb is not None
        links[(a, b)] = link_halves(
            pa, pb, offset_ns=pts[b].offset_ns - pts[a].offset_ns, conntrack_pairs=ct_pairs
        )

    flows = build_flows(pts, present, links, blind_links(pts, present, links, ct_pairs))
    if len(present) > 2:  # (a direction around points needs points around them)
        add_bypasses(pts, flows)
    warnings += order(pts, present, flows)  # (a time slice's: decided over the run)
    for p in pts:
        if p.pc is not None:
            p.pc.drop_link_caches()
    windows(pts, present, flows)  # uses the inputs and the links, not the clocks
    warnings.extend(ended_warning(p) for p in pts if p.ended is not None)
    # UDP/ICMP/ESP flows: built and matched once, here (every partition and the process
    # that finishes them share them); their delays join every partition's clock minima
    dflows = build_dgram_flows(pts, present)
    match_dgram_hops(pts, dflows)
    return Prepared(pts, present, flows, warnings, dflows, dgram_minima(dflows))


def ended_warning(p: Point) -> str:
    """What the verdict warns about a capture taken to have ended early (`ended_early`)."""
    return (
        f"point {p.name}: its capture ended at {clock_words(p.stop_ns)} (its last packet), "
        f"before the others: {p.ended} (tcpdump stopped early: -c, one of several rotated "
        f"files, a full disk, a reboot?); what should have crossed it after that is a gap"
    )


def blind_links(
    pts: list[Point],
    present: list[int],
    links: Mapping[tuple[int, int], HalfLinks],
    ct_pairs: Sequence[tuple[tuple[str, int, str, int], tuple[str, int, str, int]]],
) -> dict[tuple[int, int], HalfLinks]:
    """Links across points that saw nothing of a connection, between the present points
    `a` and `c` on either side of them: of the halves at `a` linked to nothing at the
    point after it and the halves at `c` linked to nothing from the point before it, by
    the evidence that links a NAT hop (ISN, TSval, IP ID, the tuple, conntrack; payload
    only with one of them: a proxy in between carries the same bytes on another
    connection). Two cases (`crossing`):

    - blind: points between them whose captures all dropped packets in the kernel (one,
      or a busy firewall's two interfaces). A short connection can lose every packet
      there: it crossed them all the same (`flows._extend` makes it one flow, an empty leg
      at each, its packets there gaps, `findings.charge_capture_loss`), not a connection
      answered before them and another that began after them.
    - around: one or more points between them whose captures lost nothing (no kernel
      drops). What they miss did not cross them: the connection took another path (the
      other member of an HA pair, another ECMP next hop, asymmetric routing) or was left
      out by their capture filter. One flow whose hop from `a` to `c` says so
      (`Hop.around`), not a drop before them and an injection after them.

    A run of points with and without kernel drops gets none (neither can be said)."""
    out: dict[tuple[int, int], HalfLinks] = {}
    if len(present) < 3:
        return out
    # per present point: the halves linked to nothing at the next point / from the one
    # before (found on first need)
    only_a: dict[int, npt.NDArray[np.bool_]] = {}
    only_c: dict[int, npt.NDArray[np.bool_]] = {}
    for i, a in enumerate(present[:-2]):
        for j in range(i + 2, len(present)):
            c = present[j]
            if crossing(pts, a, present[i + 1 : j], present[j]) is None:
                continue
            pa, pc = pts[a].pc, pts[c].pc
            assert pa is not None and pc is not None
            if a not in only_a:
                x = np.ones(len(pa.halves), bool)
                x[list(links[(a, present[i + 1])].fwd)] = False
                only_a[a] = x
            if c not in only_c:
                y = np.ones(len(pc.halves), bool)
                y[list(links[(present[j - 1], c)].back)] = False
                only_c[c] = y
            oa, oc = only_a[a], only_c[c]
            if not oa.any() or not oc.any():
                continue
            # (conntrack's entries of those halves' ports only: tens of thousands otherwise)
            ca = pa.half_cols()
            ports = set(zip(ca.sport[oa].tolist(), ca.dport[oa].tolist(), strict=True))
            out[(a, c)] = link_halves(
                pa,
                pc,
                offset_ns=pts[c].offset_ns - pts[a].offset_ns,
                conntrack_pairs=[(x, y) for x, y in ct_pairs if (x[1], x[3]) in ports],
                only=(oa, oc),
            )
    return out


def dgram_minima(dflows: list[DFlowB]) -> Minima:
    """The smallest one-way delays per hop of the (matched) datagram flows `dflows`."""
    d1, d2 = delay_samples(dflows)
    dminima: Minima = {k: (min(v), None) for k, v in d1.items() if v}
    for k, v in d2.items():
        if v:
            dminima[k] = (dminima.get(k, (None, None))[0], min(v))
    return dminima


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
    match_hops(prep.pts, flows)
    # with the datagrams' (merged by minimum: every part may)
    return minima_of(flows, prep.dminima)


def set_clocks(prep: Prepared, minima: Sequence[Minima]) -> None:
    estimate_clocks(prep.pts, prep.present, merge_minima(minima))


def finish_part(prep: Prepared, idxs: Sequence[int]) -> list[Built]:
    return finish_flows(prep.pts, prep.present, [prep.flows[i] for i in idxs])


def finish_datagrams(
    prep: Prepared,
    built: list[Built],
    decided: dict[tuple[int, int, int], Decided] | None = None,
    removed: dict[int, tuple[Finding, ...]] | None = None,
) -> list[Built]:
    """After every partition's TCP flows are finished (`built`, in flow order, clocks
    set): the datagram flows' findings, encrypted tunnels (legs added to the flows they
    carry) and ICMP errors attached to the flows they quote. Needs every flow's legs, not
    their matches: runs once, in the process that assembles (or one dask worker).
    `decided`: tunnels decided over the whole run (`tunnel.find_tunnels`); `removed`: the
    gaps taken from flows that went into a tunnel (`tunnel.add_tunnel_legs`)."""
    pts, present, flows, dflows = prep.pts, prep.present, prep.flows, prep.dflows
    built = list(built)
    tunnels = find_tunnels(pts, present, dflows, blind, decided)
    dverdict = [finish_dflow(pts, present, f) for f in dflows]
    add_tunnel_legs(pts, tunnels, flows, built, dflows, dverdict, removed)
    err_t, err_d = attach_errors(pts, present, flows, dflows, blind)
    by_name = {p.name: p for p in pts}

    def where_of(fnd: Finding) -> str:
        return where(by_name, fnd.between)

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
    built = charge_capture_loss(pts, built)
    # broken flows first, then any with findings; by time (the keys made in one pass)
    keys = [(not any_broken(f.findings), not f.findings, f.first_ts or 0.0) for f in built]
    ordered = map(built.__getitem__, sorted(range(len(built)), key=keys.__getitem__))
    new: Any = Flow.__new__  # (called as it is, not through the class: in less time)
    out_flows = tuple(
        [
            new(Flow, i, f.proto, f.client, f.server, f.legs, f.findings, f.summary, f.first_ts)
            for i, f in zip(flow_ids(len(built)), ordered, strict=True)
        ]
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
