"""Clocks and capture windows: each point's offset from the first (NTP-style minimum
one-way delays of matched packets, or the probes' hints), and when each point was really
listening (`blind`)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from hopcap.correlate.flows import FlowB, Point, chains

NS = 1_000_000_000


def hint_ns(p: Point, first: Point) -> int | None:
    a, b = p.inp.clock_offset_hint_s, first.inp.clock_offset_hint_s
    if a is None:
        return None
    return round((a - (b or 0.0)) * NS)


# per hop (a, b): the smallest one-way delay seen c2s and s2c (raw clocks), or None
Minima = dict[tuple[int, int], tuple[int | None, int | None]]


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


def minima_of(flows: list[FlowB], start: Minima) -> Minima:
    """`start` with the smallest one-way delays of every matched hop of `flows`."""
    out: Minima = dict(start)
    for f in chains(flows):
        for hop in f.hops:
            ab = (hop.a, hop.b)
            m1, m2 = out.get(ab, (None, None))
            c2s, s2c = hop.c2s, hop.s2c
            if c2s is not None and (d := c2s.d_min) is not None and (m1 is None or d < m1):
                m1 = d
            if s2c is not None and (d := s2c.d_min) is not None and (m2 is None or d < m2):
                m2 = d
            out[ab] = (m1, m2)
    return out


def clocks_of(pts: list[Point]) -> list[tuple[int, int | None]]:
    return [(p.offset_ns, p.offset_err_ns) for p in pts]


def apply_clocks(pts: list[Point], clocks: Sequence[tuple[int, int | None]]) -> None:
    for p, (off, err) in zip(pts, clocks, strict=True):
        p.offset_ns, p.offset_err_ns = off, err


def estimate_clocks(pts: list[Point], present: list[int], minima: Minima) -> None:
    d1 = {k: m1 for k, (m1, _m2) in minima.items() if m1 is not None}
    d2 = {k: m2 for k, (_m1, m2) in minima.items() if m2 is not None}
    first = present[0] if present else 0
    if present:
        pts[first].offset_ns = 0
        pts[first].offset_err_ns = 0
    for a, b in pairwise(present):
        pa, pb = pts[a], pts[b]
        hint = hint_ns(pb, pts[0])
        hint_a = hint_ns(pa, pts[0])
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


def set_windows(pts: list[Point], present: list[int], flows: list[FlowB]) -> None:
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
    late: list[int] = []  # the points, in the order the evidence was found
    for f in chains(flows):
        legs = f.legs
        if len(legs) < 2:
            continue
        for prev, leg in pairwise(legs):
            if leg.link == "proxied":
                continue
            x, y = prev.c, leg.c
            if x is not None and y is not None and x.syn != y.syn:
                late.append(leg.point if x.syn else prev.point)
            x, y = prev.s, leg.s
            if x is not None and y is not None and x.syn != y.syn:
                late.append(leg.point if x.syn else prev.point)
    for i in late:
        p = pts[i]
        first = int(p.table.ts.min())
        p.start_ns = max(p.start_ns or first, first)


def blind(p: Point, ts_ns: int) -> str | None:
    """Why point `p` cannot be expected to have seen a packet at `ts_ns` (on its own clock):
    then a packet missing there is a `gap`, not a drop or an injection."""
    if p.kernel_drops:
        return f"{p.name} dropped {p.kernel_drops} packets in the kernel"
    if p.start_ns is not None and ts_ns < p.start_ns:
        return f"the capture at {p.name} started after these packets"
    if p.stop_ns is not None and ts_ns > p.stop_ns:
        return f"the capture at {p.name} ended before these packets"
    return None
