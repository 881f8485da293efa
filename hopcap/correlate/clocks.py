"""Clocks and capture windows: each point's offset from the first (NTP-style minimum
one-way delays of matched packets, or the probes' hints), and when each point was really
listening (`blind`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate.conns import Half, signed32
from hopcap.correlate.flows import FlowB, LegB, Point, chains
from hopcap.correlate.match import M32, learn_deltas
from hopcap.correlate.reader import PacketTable, captured_first, captured_last

NS = 1_000_000_000
I64 = npt.NDArray[np.int64]


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
    for i in started_late(pts, present, flows):
        p = pts[i]
        first = captured_first(p.table)
        assert first is not None
        p.start_ns = max(p.start_ns or first, first)
    ended_early(pts, present, flows)


def started_late(pts: list[Point], present: list[int], flows: list[FlowB]) -> set[int]:
    """The points whose capture started after connections a neighbour saw (their start is
    then their first packet): a connection whose SYN one point of a hop saw and the other
    did not (it saw the connection only later), or that both saw only from the middle
    when one of them saw earlier bytes of it that, by the connection's own pace, crossed
    the other before that one's first packet (`_midstream`)."""
    # per hop (a, b): the halves one of them saw from the SYN and the other not, or both
    # from the middle, as (a, b, half at a, half at b)
    odd: list[tuple[int, int, Half, Half]] = []
    for f in chains(flows):
        legs = f.legs
        if len(legs) < 2:
            continue
        for prev, leg in pairwise(legs):
            if leg.link == "proxied":
                continue
            x, y = prev.c, leg.c
            if x is not None and y is not None and not (x.syn and y.syn):
                odd.append((prev.point, leg.point, x, y))
            x, y = prev.s, leg.s
            if x is not None and y is not None and not (x.syn and y.syn):
                odd.append((prev.point, leg.point, x, y))
    late = {b if x.syn else a for a, b, x, y in odd if x.syn != y.syn}
    # the middle ones, and which of the two points each may show started late (a, b):
    # (each one's first packet before the other's longest pause, at most)
    first = {i: captured_first(pts[i].table) for i in {i for a, b, *_ in odd for i in (a, b)}}
    mid: dict[tuple[int, int], list[tuple[Half, Half, bool, bool]]] = {}
    for a, b, x, y in odd:
        if x.syn or y.syn:
            continue
        fa, fb = first[a], first[b]
        la = fa is not None and x.first_ts - fa < y.last_ts - y.first_ts
        lb = fb is not None and y.first_ts - fb < x.last_ts - x.first_ts
        if la or lb:
            mid.setdefault((a, b), []).append((x, y, la, lb))
    for (a, b), pairs in mid.items():
        if a in late and b in late:
            continue
        late |= _midstream(pts[a], pts[b], pairs, late, first)
    return late


def _midstream(
    pa: Point,
    pb: Point,
    pairs: list[tuple[Half, Half, bool, bool]],
    late: set[int],
    first: Mapping[int, int | None],
) -> set[int]:
    """Of points `pa` and `pb` (a hop), those whose capture started late, by the halves of
    connections both saw only from the middle (`pairs`: (half at a, at b), whether a may
    be the late one, whether b may): one point's first packet of a half is data that the
    other saw sent once, after bytes of the half before it (not sent again: not lost on
    the way), and the other's packet before it would have crossed this point (the same
    time before this one) before this point's first packet of all. Not by the first
    packet alone: a quiet link's capture may start long before its first packet (a drop
    before it would then be hidden)."""
    ta, tb = pa.table, pb.table
    ra = [x.idx for x, _y, _la, _lb in pairs]
    rb = [y.idx for _x, y, _la, _lb in pairs]
    # (the usual case, at once: both saw the same first packet, by its TSval, IP ID and
    # length: neither saw earlier bytes)
    xa = np.array([r[0] for r in ra], np.int64)
    xb = np.array([r[0] for r in rb], np.int64)
    tsa, ida = ta.tsval[xa], ta.ipid[xa]
    same = (ta.plen[xa] == tb.plen[xb]) & (tsa == tb.tsval[xb]) & (ida == tb.ipid[xb])
    keep = np.nonzero(~(same & ((tsa >= 0) | (ida > 0))))[0].tolist()
    if not keep:
        return set()
    ra, rb, pairs = [ra[k] for k in keep], [rb[k] for k in keep], [pairs[k] for k in keep]
    n = len(pairs)
    pid_a = np.repeat(np.arange(n, dtype=np.int64), [r.shape[0] for r in ra])
    pid_b = np.repeat(np.arange(n, dtype=np.int64), [r.shape[0] for r in rb])
    delta, _votes = learn_deltas(ta, np.concatenate(ra), pid_a, tb, np.concatenate(rb), pid_b, n)
    out: set[int] = set()
    for k, (_x, _y, la, lb) in enumerate(pairs):
        d = int(delta[k])
        if d < 0:
            continue
        known = late | out
        if lb and pb.idx not in known and _later(tb, rb[k], ta, ra[k], d, first[pb.idx]):
            out.add(pb.idx)
        if la and pa.idx not in known and _later(ta, ra[k], tb, rb[k], -d & M32, first[pa.idx]):
            out.add(pa.idx)
        if pa.idx in late | out and pb.idx in late | out:
            break
    return out


def _later(tl: PacketTable, rl: I64, te: PacketTable, re: I64, d: int, first: int | None) -> bool:
    """Whether point L (table `tl`, rows `rl` of a half, `first`: its first packet of all)
    started after earlier packets of the half that point E saw (`te`, rows `re`; `d`: L's
    sequence numbers minus E's): L's first packet of it is data E saw once, after data
    before it in the stream, none of it sent again; and E's packet before it, as long
    before as E saw it, would have crossed L before L's first packet (`_midstream`)."""
    r0 = int(rl[0])
    if first is None or not tl.plen[r0]:
        return False
    s = (int(tl.seq[r0]) - d) & M32
    if ((int(te.seq[re[0]]) - s + (1 << 31)) & M32) >= 1 << 31:
        return False  # (the usual case, at once: E's first packet is not before it)
    data = te.plen[re] > 0
    rel = signed32(te.seq[re].astype(np.int64) - s)
    at = np.nonzero(data & (rel == 0))[0]
    if at.shape[0] != 1 or not at[0]:
        return False  # not seen there, sent again, or the first there too
    j = int(at[0])
    if not (data[:j] & (rel[:j] < 0)).any():
        return False  # nothing before it in the stream
    sent = te.seq[re[data & (rel < 0)]]
    if npsets.unique(sent).shape[0] != sent.shape[0]:
        return False  # bytes before it sent again: lost on the way?
    pause = int(te.ts[re[j]]) - int(te.ts[re[j - 1]])
    return int(tl.ts[r0]) - first < pause + SLACK_NS


def clock_words(ts_ns: int | None) -> str:
    """A capture time (its own clock) for a sentence: `12:04:05.123 UTC`."""
    import datetime as dt

    if ts_ns is None:
        return "its end"
    t = dt.datetime.fromtimestamp(ts_ns / NS, dt.UTC)
    return t.strftime("%H:%M:%S.%f")[:-3] + " UTC"


# what a gap says of a capture that was not listening (`slices._fkey` keys gaps by them)
STARTED_AFTER = "started after these packets"
ENDED_BEFORE = "ended before these packets"


def blind(p: Point, ts_ns: int) -> str | None:
    """Why point `p` cannot be expected to have seen a packet at `ts_ns` (on its own clock):
    then a packet missing there is a `gap`, not a drop or an injection."""
    if p.kernel_drops:
        return f"{p.name} dropped {p.kernel_drops} packets in the kernel"
    if p.start_ns is not None and ts_ns < p.start_ns:
        return f"the capture at {p.name} {STARTED_AFTER}"
    if p.stop_ns is not None and ts_ns > p.stop_ns:
        return f"the capture at {p.name} {ENDED_BEFORE}"
    return None


# a capture's neighbours went on seeing what crossed it this long after its last packet:
# more than an injection right after it (a RST, a block page) takes
WELL_AFTER_NS = NS
SLACK_NS = 1_000_000
ALIGN_SAMPLES = 256  # connections per pair of points whose first packets align clocks


def last_packet(p: Point) -> int | None:
    """The last packet (TCP or datagram) of point `p`'s whole capture, on its own clock."""
    t = p.table
    ends = [captured_last(t)]
    if t.dgram is not None:
        ends.append(captured_last(t.dgram))
    got = [e for e in ends if e is not None]
    return max(got) if got else None


# why a capture is taken to have ended early, by rank (the first found, over the whole
# run or its time slices, is said): (rank, its words)
Ended = tuple[int, str]
Key = tuple[object, ...]  # a server as a point sees it: (IP version, address, port)


@dataclass
class EndFacts:
    """What flows say of a point whose capture may have ended early (`ended_evidence`),
    from the whole run or a time slice (`add`: a later slice's too): the servers (at the
    point before it) of connections answered before it after its end, of those that
    crossed it, of those answered before it before its end; the evidence of ranks 1-3."""

    before: str  # the point before it
    after: str  # and after it
    answered: set[Key] = field(default_factory=set)
    crossed: set[Key] = field(default_factory=set)
    early: set[Key] = field(default_factory=set)
    found: Ended | None = None
    # the clients (at the point after it, on another host) of connections that entered
    # the path there after its end, of those that crossed it, of those that entered there
    # before its end
    entered: set[Key] = field(default_factory=set)
    carried: set[Key] = field(default_factory=set)
    entered_early: set[Key] = field(default_factory=set)

    def add(self, other: EndFacts) -> None:
        self.answered |= other.answered
        self.crossed |= other.crossed
        self.early |= other.early
        if other.found is not None and (self.found is None or other.found < self.found):
            self.found = other.found
        self.entered |= other.entered
        self.carried |= other.carried
        self.entered_early |= other.entered_early

    def evidence(self) -> Ended | None:
        if self.answered - self.early & self.crossed:
            return (0, f"connections answered beyond it went on at {self.before}")
        if self.found is not None:
            return self.found
        if self.entered - self.entered_early & self.carried:
            return (4, f"connections from its side went on at {self.after}")
        return None


def ended_early(pts: list[Point], present: list[int], flows: list[FlowB]) -> None:
    """`Point.stop_ns` and `Point.ended` of the captures that ended early (`ended_evidence`)."""
    for i, facts in ended_evidence(pts, present, flows).items():
        got = facts.evidence()
        if got is not None:
            end_early(pts[i], got[1])


def end_early(p: Point, why: str) -> None:
    p.stop_ns = last_packet(p)
    p.ended = why


def ended_evidence(
    pts: list[Point],
    present: list[int],
    flows: list[FlowB],
    ends: Mapping[int, int | None] | None = None,
    align: Mapping[tuple[int, int], tuple[int, int]] | None = None,
) -> dict[int, EndFacts]:
    """Captures that ended before their neighbours' without saying so (tcpdump `-c N`, the
    first of several rotated files given alone, a full disk, a reboot): their last packet
    is taken as their end when, after it, a point next to them saw what could only have
    crossed them (by rank, `EndFacts.evidence`):
    0. connections answered beyond them (before them, says the flow) to a server whose
       connections did cross them, and none answered before them before their end;
    1, 2. the packets of a connection they carried, from their far side, going on for a
       second or more (`WELL_AFTER_NS`; not a RST or a page a device between injected),
       at the point before them (1) or after them (2);
    3. such packets on both sides of a point between two others;
    4. connections that entered the path at the point after them (on another host: not
       its own) from a client whose earlier connections crossed them, and none from it
       before their end.
    A capture that stopped when its traffic did (a quiet end), or a device that drops
    every SYN after some time (nothing answers them), are not ended early. Only for points
    whose stop time is not given (a bundle's manifest gives it) and that report no kernel
    drops. A time slice's
    (`slices`): `ends`, every point's last packet (its table holds a part of its
    capture), and `align`, the clocks of adjacent points (`_alignments`) over the run."""
    out: dict[int, EndFacts] = {}
    if len(present) < 2:
        return out
    pos = {p: k for k, p in enumerate(present)}
    last = {i: last_packet(pts[i]) if ends is None else ends.get(i) for i in present}
    # (a capture that dropped packets in the kernel is blind to what it lost already)
    cands = [
        i
        for i in present
        if pts[i].stop_ns is None and last[i] is not None and not pts[i].kernel_drops
    ]
    if not cands:
        return out
    adjacent = list(pairwise(present))
    if align is None:
        align = alignments(pts, adjacent, flows)
    # per candidate: its end on the clock of the point before it and of the one after
    thr: dict[tuple[int, int], int] = {}  # (candidate, neighbour) -> its end there
    for i in cands:
        end = last[i]
        assert end is not None
        k = pos[i]
        if k and (al := align.get((present[k - 1], i))) is not None:
            q = present[k - 1]
            t = end - al[0] + al[1] + SLACK_NS
            if (e := last[q]) is not None and e > t:  # (the point before went on after it)
                thr[(i, q)] = t
        if k + 1 < len(present) and (al := align.get((i, present[k + 1]))) is not None:
            q = present[k + 1]
            t = end + al[0] + al[1] + SLACK_NS
            if (e := last[q]) is not None and e > t:
                thr[(i, q)] = t
    if not thr:
        return out
    # per pair (a, b): flows answered before b after b's end, connections that crossed
    # going on at a after b's end or at b after a's end
    answered: dict[tuple[int, int], set[Key]] = {}
    entered: dict[tuple[int, int], set[Key]] = {}  # (a, b): entered at b after a's end
    up_on: dict[tuple[int, int], list[tuple[LegB, LegB]]] = {}
    down_on: dict[tuple[int, int], list[tuple[LegB, LegB]]] = {}
    before = {b: a for a, b in adjacent}
    for f in chains(flows):
        legs = f.legs
        b = legs[0].point
        a = before.get(b, -1)
        if a >= 0 and (a, b) in thr and f.via is None and _other_hosts(pts[a], pts[b]):
            h = legs[0].c
            if h is not None and h.first_ts > thr[(a, b)]:
                entered.setdefault((a, b), set()).add((h.v, h.src))
        for j, hop in enumerate(f.hops):
            a, b = hop.a, hop.b
            tb, ta = thr.get((b, a)), thr.get((a, b))  # b's end at a, a's end at b
            if (tb is None and ta is None) or j >= len(legs):
                continue
            x = legs[j]
            if hop.ended is not None:
                h = x.c if x.c is not None else x.s
                if hop.ended == "answered" and tb is not None and h is not None and h.first_ts > tb:
                    answered.setdefault((a, b), set()).add(_server(h, h is x.c))
                continue
            if j + 1 >= len(legs):
                continue
            y = legs[j + 1]
            if tb is not None and x.s is not None and x.s.last_ts > tb:
                up_on.setdefault((a, b), []).append((x, y))
            if ta is not None and y.c is not None and y.c.last_ts > ta:
                down_on.setdefault((a, b), []).append((x, y))
    for i in cands:
        k = pos[i]
        a = present[k - 1] if k else -1
        c = present[k + 1] if k + 1 < len(present) else -1
        if (i, a) not in thr and (i, c) not in thr:
            continue
        facts = out[i] = EndFacts(pts[a].name if a >= 0 else "", pts[c].name if c >= 0 else "")
        if (i, a) in thr:
            facts.answered = answered.get((a, i), set())
            if facts.answered or ends is not None:
                # (a time slice's: the connections that crossed may be another slice's)
                facts.crossed, facts.early = _servers(flows, a, i, thr[(i, a)])
        if (i, a) in thr:
            for x, _y in up_on.get((a, i), ()):
                assert x.s is not None
                if _goes_on(pts[a], x.s, thr[(i, a)]):
                    facts.found = (1, f"connections it carried went on at {pts[a].name}")
                    break
        if facts.found is None and (i, c) in thr:
            for _x, y in down_on.get((i, c), ()):
                assert y.c is not None
                if _goes_on(pts[c], y.c, thr[(i, c)]):
                    facts.found = (2, f"connections it carried went on at {pts[c].name}")
                    break
        if (i, c) in thr:
            facts.entered = entered.get((i, c), set())
            if facts.entered or (ends is not None and _other_hosts(pts[i], pts[c])):
                facts.carried, facts.entered_early = _clients(flows, i, c, thr[(i, c)])
        if facts.found is None and (i, a) in thr and (i, c) in thr:
            # one connection on both sides of it, after its end
            after_up = {id(y) for _x, y in up_on.get((a, i), ())}
            if any(id(x) in after_up for x, _y in down_on.get((i, c), ())):
                facts.found = (3, f"connections it carried went on at {pts[a].name} and "
                                  f"{pts[c].name}")  # fmt: skip
    return out


def _other_hosts(a: Point, b: Point) -> bool:
    """Whether points `a` and `b` are not two interfaces of one host (which may make
    connections of its own between them)."""
    return not (a.host == b.host and a.iface and b.iface)


def _clients(flows: list[FlowB], a: int, b: int, thr: int) -> tuple[set[Key], set[Key]]:
    """The clients (as `b` sees them) of the connections that crossed `a` -> `b`, and of
    those that entered the path at `b` before `thr` (`b`'s clock)."""
    carried: set[Key] = set()
    early: set[Key] = set()
    for f in chains(flows):
        legs = f.legs
        if legs[0].point == b and f.via is None:
            h = legs[0].c
            if h is not None and h.first_ts <= thr:
                early.add((h.v, h.src))
            continue
        for j, hop in enumerate(f.hops):
            if hop.a != a or hop.b != b or hop.ended is not None or j + 1 >= len(legs):
                continue
            y = legs[j + 1]
            if y.c is not None and y.link != "proxied":
                carried.add((y.c.v, y.c.src))
    return carried, early


def _server(h: Half, client: bool) -> tuple[object, ...]:
    return (h.v, h.dst, h.dport) if client else (h.v, h.src, h.sport)


def _servers(flows: list[FlowB], a: int, b: int, thr: int) -> tuple[set[Key], set[Key]]:
    """The servers (as `a` sees them) of the connections that crossed `a` -> `b`, and of
    those answered before `b` before `thr` (`a`'s clock): answering there is their way."""
    crossed: set[Key] = set()
    early: set[Key] = set()
    for f in chains(flows):
        legs = f.legs
        for j, hop in enumerate(f.hops):
            if hop.a != a or hop.b != b or j >= len(legs):
                continue
            x = legs[j]
            h = x.c if x.c is not None else x.s
            if h is None:
                continue
            if hop.ended is None and j + 1 < len(legs):
                crossed.add(_server(h, h is x.c))
            elif hop.ended == "answered" and h.last_ts <= thr:
                early.add(_server(h, h is x.c))
    return crossed, early


def alignments(
    pts: list[Point], adjacent: list[tuple[int, int]], flows: list[FlowB]
) -> dict[tuple[int, int], tuple[int, int]]:
    """Per pair of adjacent points (a, b): b's clock minus a's and the error of that, from
    the first packets of the first connections that crossed (NTP-style minimum one-way
    delays), else the probes' hints; a pair of neither is not in it."""
    want = set(adjacent)
    d1: dict[tuple[int, int], int] = {}
    d2: dict[tuple[int, int], int] = {}
    n: dict[tuple[int, int], int] = dict.fromkeys(want, 0)
    full = 0
    for f in chains(flows):
        legs = f.legs
        for j, hop in enumerate(f.hops):
            ab = (hop.a, hop.b)
            if ab not in want or hop.ended is not None or j + 1 >= len(legs):
                continue
            if n[ab] >= ALIGN_SAMPLES:
                continue
            x, y = legs[j], legs[j + 1]
            if y.link == "proxied":
                continue
            n[ab] += 1
            if n[ab] == ALIGN_SAMPLES:
                full += 1
            # (not a half one point saw from its SYN and the other from the middle: a
            # capture begun later, its first packet another)
            if x.c is not None and y.c is not None and x.c.syn == y.c.syn:
                d = y.c.first_ts - x.c.first_ts
                d1[ab] = min(d1.get(ab, d), d)
            if x.s is not None and y.s is not None and x.s.syn == y.s.syn:
                d = x.s.first_ts - y.s.first_ts
                d2[ab] = min(d2.get(ab, d), d)
        if full == len(want):
            break
    out: dict[tuple[int, int], tuple[int, int]] = {}
    for a, b in adjacent:
        pa, pb = pts[a], pts[b]
        if pa.host == pb.host and pa.iface and pb.iface:
            out[(a, b)] = (0, 0)
        elif (m1 := d1.get((a, b))) is not None and (m2 := d2.get((a, b))) is not None:
            if m1 + m2 >= 0:
                out[(a, b)] = ((m1 - m2) // 2, (m1 + m2) // 2)
        elif pa.inp.clock_offset_hint_s is not None and pb.inp.clock_offset_hint_s is not None:
            out[(a, b)] = (round((pb.inp.clock_offset_hint_s - pa.inp.clock_offset_hint_s) * NS), 0)
    return out


def _goes_on(q: Point, h: Half, thr: int) -> bool:
    """Whether half `h` at `q` has packets after `thr` (`q`'s clock) for a second or more."""
    if h.last_ts - thr < WELL_AFTER_NS:
        return False
    ts = q.table.ts[h.idx]
    after = ts[ts > thr]
    return after.shape[0] > 1 and int(after.max()) - int(after.min()) >= WELL_AFTER_NS
