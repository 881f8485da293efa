"""Clocks and capture windows: each point's offset from the first (NTP-style minimum
one-way delays of matched packets, or the probes' hints), and when each point was really
listening (`blind`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from hopcap.correlate.conns import Half
from hopcap.correlate.flows import FlowB, LegB, Point, chains
from hopcap.correlate.reader import captured_last

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
    ended_early(pts, present, flows)


def clock_words(ts_ns: int | None) -> str:
    """A capture time (its own clock) for a sentence: `12:04:05.123 UTC`."""
    import datetime as dt

    if ts_ns is None:
        return "its end"
    t = dt.datetime.fromtimestamp(ts_ns / NS, dt.UTC)
    return t.strftime("%H:%M:%S.%f")[:-3] + " UTC"


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


# a capture's neighbours went on seeing what crossed it this long after its last packet:
# more than an injection right after it (a RST, a block page) takes
WELL_AFTER_NS = NS
SLACK_NS = 1_000_000


def last_packet(p: Point) -> int | None:
    """The last packet (TCP or datagram) of point `p`'s whole capture, on its own clock."""
    t = p.table
    ends = [captured_last(t)]
    if t.dgram is not None:
        ends.append(captured_last(t.dgram))
    got = [e for e in ends if e is not None]
    return max(got) if got else None


@dataclass
class _Pair:
    """What the flows say about adjacent present points `a` -> `b` (path order)."""

    d1: int | None = None  # min first packet of a client half at b minus at a
    d2: int | None = None  # min first packet of a server half at a minus at b
    servers: set[tuple[object, ...]] = field(default_factory=set)  # of flows a -> b
    answered: list[tuple[Half, tuple[object, ...]]] = field(default_factory=list)
    crossed: list[tuple[LegB, LegB]] = field(default_factory=list)


def _server(h: Half, client: bool) -> tuple[object, ...]:
    return (h.v, h.dst, h.dport) if client else (h.v, h.src, h.sport)


def ended_early(pts: list[Point], present: list[int], flows: list[FlowB]) -> None:
    """Captures that ended before their neighbours' without saying so (tcpdump `-c N`, the
    first of several rotated files given alone, a full disk, a reboot): their last packet
    is taken as their end (`Point.stop_ns`, `Point.ended`) when, after it, a point next to
    them saw what could only have crossed them:
    - connections answered beyond them (before them, says the flow) to a server whose
      earlier connections did cross them (`answered`);
    - the packets of a connection they carried, from their far side, going on for a
      second or more (`WELL_AFTER_NS`; not a RST or a page a device between injected);
    - such packets on both sides of a point between two others.
    A capture that stopped when its traffic did (a quiet end), or a device that drops
    every SYN after some time (nothing answers them), are not ended early. Only for points
    whose stop time is not given (a bundle's manifest gives it)."""
    pos = {p: k for k, p in enumerate(present)}
    last = {i: last_packet(pts[i]) for i in present}
    cands = [i for i in present if pts[i].stop_ns is None and last[i] is not None]
    if len(present) < 2 or not cands:
        return
    # (a cheap test first: a neighbour's capture went on after this one's, hints aligned)
    cands = [
        i
        for i in cands
        if any(
            0 <= k < len(present)
            and (e := last[present[k]]) is not None
            and e - pts[present[k]].offset_ns > last[i] - pts[i].offset_ns  # type: ignore[operator]
            for k in (pos[i] - 1, pos[i] + 1)
        )
    ]
    if not cands:
        return
    pairs: dict[tuple[int, int], _Pair] = {}
    for f in chains(flows):
        legs = f.legs
        for j, hop in enumerate(f.hops):
            a, b = hop.a, hop.b
            if pos.get(b, -1) != pos.get(a, -2) + 1 or j >= len(legs):
                continue
            x = legs[j]
            pr = pairs.get((a, b))
            if pr is None:
                pr = pairs[(a, b)] = _Pair()
            h = x.c if x.c is not None else x.s
            if h is None:
                continue
            key = _server(h, h is x.c)
            if hop.ended is not None:
                if hop.ended == "answered":
                    pr.answered.append((h, key))
                continue
            if j + 1 >= len(legs):
                continue
            y = legs[j + 1]
            if y.c is None and y.s is None:
                continue
            pr.servers.add(key)
            pr.crossed.append((x, y))
            if y.link == "proxied":
                continue
            if x.c is not None and y.c is not None:
                d = y.c.first_ts - x.c.first_ts
                pr.d1 = d if pr.d1 is None else min(pr.d1, d)
            if x.s is not None and y.s is not None:
                d = x.s.first_ts - y.s.first_ts
                pr.d2 = d if pr.d2 is None else min(pr.d2, d)
    for i in cands:
        p = pts[i]
        end = last[i]
        assert end is not None
        k = pos[i]
        why = None
        up = pairs.get((present[k - 1], i)) if k else None
        down = pairs.get((i, present[k + 1])) if k + 1 < len(present) else None
        thr_up = thr_down = None
        if up is not None and (al := _align(pts[present[k - 1]], p, up)) is not None:
            thr_up = end - al[0] + al[1] + SLACK_NS  # its end on the clock of the point before
        if down is not None and (al := _align(p, pts[present[k + 1]], down)) is not None:
            thr_down = end + al[0] + al[1] + SLACK_NS  # on the clock of the point after
        if up is not None and thr_up is not None:
            q = pts[present[k - 1]]
            early = {key for h, key in up.answered if h.last_ts <= thr_up}
            for h, key in up.answered:
                if h.first_ts > thr_up and key in up.servers and key not in early:
                    why = f"connections answered beyond it went on at {q.name}"
                    break
            if why is None:
                for x, _y in up.crossed:
                    if x.s is not None and _goes_on(q, x.s, thr_up):
                        why = f"connections it carried went on at {q.name}"
                        break
        if why is None and down is not None and thr_down is not None:
            q = pts[present[k + 1]]
            for _x, y in down.crossed:
                if y.c is not None and _goes_on(q, y.c, thr_down):
                    why = f"connections it carried went on at {q.name}"
                    break
        if why is None and up is not None and down is not None and thr_up and thr_down:
            # one connection on both sides of it, after its end
            after_up = {id(y): x for x, y in up.crossed if x.s is not None and x.s.last_ts > thr_up}
            for x, y in down.crossed:
                if id(x) in after_up and y.c is not None and y.c.last_ts > thr_down:
                    why = (
                        f"connections it carried went on at {pts[present[k - 1]].name} and "
                        f"{pts[present[k + 1]].name}"
                    )
                    break
        if why is not None:
            p.stop_ns = end
            p.ended = why


def _align(a: Point, b: Point, pr: _Pair) -> tuple[int, int] | None:
    """`b`'s clock minus `a`'s and the error of that, from their flows' first packets
    (NTP-style) or the probes' hints; None: not known."""
    if a.host == b.host and a.iface and b.iface:
        return 0, 0
    if pr.d1 is not None and pr.d2 is not None and pr.d1 + pr.d2 >= 0:
        return (pr.d1 - pr.d2) // 2, (pr.d1 + pr.d2) // 2
    ha, hb = a.inp.clock_offset_hint_s, b.inp.clock_offset_hint_s
    if ha is not None and hb is not None:
        return round((hb - ha) * NS), 0
    return None


def _goes_on(q: Point, h: Half, thr: int) -> bool:
    """Whether half `h` at `q` has packets after `thr` (`q`'s clock) for a second or more."""
    if h.last_ts - thr < WELL_AFTER_NS:
        return False
    ts = q.table.ts[h.idx]
    after = ts[ts > thr]
    return after.shape[0] > 1 and int(after.max()) - int(after.min()) >= WELL_AFTER_NS
