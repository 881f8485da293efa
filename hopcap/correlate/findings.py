"""Findings of one TCP flow: what was lost, injected, rewritten or reset on each hop,
where the evidence has gaps, and the legs as the verdict shows them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import partial
from itertools import accumulate, chain, compress, repeat
from operator import attrgetter
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate._fastwalk import endpoint_texts, finding_texts
from hopcap.correlate.clocks import ENDED_BEFORE, STARTED_AFTER, blind, clock_words
from hopcap.correlate.conns import Half, HalvesOf
from hopcap.correlate.flows import FlowB, Hop, LegB, Point, chains, half_rows
from hopcap.correlate.link import Part, exchange_of_rows, stream_base
from hopcap.correlate.match import M32, DirMatch, Rewrite, flags_str
from hopcap.correlate.reader import (
    ACK,
    FIN,
    RST,
    SYN,
    PacketTable,
    endpoint_str,
    last_ts,
    rows_last_ts,
    tunnel_str,
)
from hopcap.correlate.summary import end_host, findings_summary, flow_summary, sentence, where
from hopcap.model import (
    Direction,
    Finding,
    FindingKind,
    Leg,
    LegPart,
    LinkKind,
    PacketKind,
    any_broken,
)
from hopcap.patterns import around_name, host_points

I64 = npt.NDArray[np.int64]
NS = 1_000_000_000
T = TypeVar("T")

KIND_ORDER = {"drop": 0, "inject": 1, "rewrite": 2, "icmp": 3, "reset": 4, "gap": 5, "around": 6}


@dataclass(slots=True)
class Built:
    """A finished flow before it is numbered (`Flow` without its id)."""

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
        return any_broken(self.findings)

    def __reduce__(self) -> tuple[Callable[..., Built], tuple[Any, ...]]:
        """Pickled (`--jobs` sends every flow back to the first process) with its legs' and
        findings' fields as values: one call of Python here, none per leg or finding."""
        legs = tuple(map(_LEG_VALUES, self.legs))
        return _unpickled, (_BUILT_VALUES(self), legs, tuple(map(_FINDING_VALUES, self.findings)))


def _unpickled(
    vals: tuple[Any, ...], legs: tuple[tuple[Any, ...], ...], fs: tuple[tuple[Any, ...], ...]
) -> Built:
    proto, client, server, summary, first_ts, t_out, t_in = vals
    return Built(proto, client, server, tuple(Leg(*x) for x in legs),
                 tuple(Finding(*x) for x in fs), summary, first_ts, t_out, t_in)  # fmt: skip


_BUILT_VALUES = attrgetter("proto", "client", "server", "summary", "first_ts", "tunnel_out",
                           "tunnel_in")  # fmt: skip
_LEG_VALUES = attrgetter(*(f.name for f in fields(Leg)))
_FINDING_VALUES = attrgetter(*(f.name for f in fields(Finding)))


def kind_of(flags: int, plen: int) -> PacketKind:
    """What a packet (TCP `flags`, payload length `plen`) is in a summary's words: its
    first flag that matters (a FIN with data is a FIN)."""
    if flags & SYN:
        return "SYN-ACK" if flags & ACK else "SYN"
    return "RST" if flags & RST else "FIN" if flags & FIN else "data" if plen else "ACK"


def tally_kind(flags: int, plen: int) -> PacketKind:
    """What a packet is as a finding's tally counts it ("3 data, 1 FIN"): as `kind_of`,
    but a FIN with data is data."""
    if flags & SYN:
        return "SYN-ACK" if flags & ACK else "SYN"
    return "RST" if flags & RST else "data" if plen else "FIN" if flags & FIN else "ACK"


FLAG_BITS = {flags_str(f): f for f in range(256)}  # "SYN,ACK" -> its flags (`flags_str`)


def acked_once(
    t: PacketTable, h: Half, back: Half, rows: list[int], back_dm: DirMatch | None
) -> set[int]:
    """Of `rows` (data, a SYN or a FIN of half `h` at a point, missing at the next one),
    those whose bytes the receiver acknowledged after them (an ACK of `back` at the same
    point, later, that came through the next point, covers them) and that were sent once
    (no other copy of their first byte at that point): that copy was delivered.
    `back_dm`: `back`'s direction matched across the hop (its rows never seen at the next
    point, a RST or an ACK a device between made in the receiver's name, acknowledge
    nothing; None: not matched there, nothing can be told)."""
    if not rows or back_dm is None:
        return set()
    b = back.idx
    unx = back_dm.read[1] if back_dm.read is not None else back_dm.unexplained
    if unx:
        b = b[~np.isin(b, np.asarray(unx, np.int64))]
    b = b[(t.flags[b] & ACK) != 0]
    if not b.shape[0]:
        return set()
    # the ACKs by time, and the most any of them from each on acknowledged
    b = b[np.argsort(t.ts[b], kind="stable")]
    acks = (t.ack[b] - h.isn) & M32
    if int(acks.max()) >= 1 << 31:
        return set()  # (a stream past 2 GB, or acks from before the SYN: not read)
    later = np.maximum.accumulate(acks[::-1])[::-1]
    r = np.asarray(rows, np.int64)
    start = (t.seq[r] - h.isn) & M32
    # (a SYN and a FIN take a sequence number of their own: acknowledged like a byte)
    length = t.plen[r] + ((t.flags[r] & (SYN | FIN)) != 0)
    after = np.searchsorted(t.ts[b], t.ts[r], "right")
    top = np.where(after < b.shape[0], later[np.minimum(after, b.shape[0] - 1)], -1)
    cand = (length > 0) & (start + length <= top)
    if not cand.any():
        return set()
    idx = h.idx
    long = t.plen[idx] + ((t.flags[idx] & (SYN | FIN)) != 0)
    data, dlen = idx[long > 0], long[long > 0]
    seen = (t.seq[data] - h.isn) & M32
    out: set[int] = set()
    for row, s0 in zip(r[cand].tolist(), start[cand].tolist(), strict=True):
        # (no other copy from its first byte on, before or after it: the ACK may be one
        # of another's; a tail-loss probe of its last bytes leaves the first ones sent
        # once, and an ACK past them took this one)
        other = data[(data != row) & (seen <= s0) & (seen + dlen > s0)]
        if not other.shape[0]:
            out.add(row)
    return out


_Lost = tuple[int, int, Half, Half, list[int], DirMatch]
# `_Chain.taken`'s gap: packets a capture lost that got through (a finding of their own,
# besides a gap of the packets the capture could not have seen: `slices._fkey`)
DELIVERED_WORDS = "the receiver acknowledged them and they were never sent again"


def _holds_bytes(t: PacketTable, rows: I64) -> npt.NDArray[np.bool_]:
    """Which of `rows` take sequence space (data, a SYN or a FIN)."""
    out: npt.NDArray[np.bool_] = (t.plen[rows] > 0) | ((t.flags[rows] & (SYN | FIN)) != 0)
    return out


def _sent_once(pts: list[Point], lost: list[_Lost]) -> list[_Lost]:
    """Those of `lost` that `acked_once` may take: with data, a SYN or a FIN among their
    rows that no other packet of its half at that point starts at the same byte (the
    usual drop was sent again, and a lost pure ACK acknowledges nothing), found for all
    of them at once per point (`acked_once` one flow at a time cost 40 us a flow with a
    drop: a third of a busy firewall's findings stage)."""
    out: list[_Lost] = []
    by_point: dict[int, list[_Lost]] = {}
    for x in lost:
        by_point.setdefault(x[1], []).append(x)
    for p, xs in by_point.items():
        t = pts[p].table
        idx = [x[2].idx for x in xs]
        rows = np.concatenate(idx)
        pos = np.repeat(np.arange(len(xs), dtype=np.int64), [i.shape[0] for i in idx])
        long = _holds_bytes(t, rows)
        keys = np.sort((pos[long] << 32) | t.seq[rows[long]])
        lr = [np.asarray(x[4], np.int64) for x in xs]
        u = np.concatenate(lr)
        owner = np.repeat(np.arange(len(xs), dtype=np.int64), [r.shape[0] for r in lr])
        ku = (owner << 32) | t.seq[u]
        copies = np.searchsorted(keys, ku, "right") - np.searchsorted(keys, ku, "left")
        once = _holds_bytes(t, u) & (copies < 2)
        for j in npsets.unique(owner[once]).tolist():
            out.append(xs[j])
    return out


def packet_kind(t: PacketTable, row: int) -> PacketKind:
    """What packet `row` is, in a summary's words (`kind_of`)."""
    return kind_of(int(t.flags[row]), int(t.plen[row]))


def _first_packet(t: PacketTable, r0: int, base: int) -> str:
    """Packet `r0` in a finding's words: flags, relative seq, length, TSval, IP ID."""
    fl0 = int(t.flags[r0])
    if fl0 & SYN:
        first = f"{flags_str(fl0)} seq={int(t.seq[r0])}"
    else:
        rel = ((int(t.seq[r0]) - base + (1 << 31)) & M32) - (1 << 31)
        pl = int(t.plen[r0])
        first = f"{flags_str(fl0)} seq={rel}" + (f" len={pl}" if pl else "")
    tsval = int(t.tsval[r0])
    if tsval >= 0:
        first += f" tsval={tsval}"
    if t.v[r0] == 4:
        first += f" ipid={int(t.ipid[r0])}"
    return first


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
) -> tuple[str, int, int]:
    """A short description of packets, their byte count and the first one's capture time."""
    r0 = rows[0]
    if len(rows) == 1:  # most findings: no tally
        pl0 = int(t.plen[r0])
        nbytes = undelivered_bytes.get(r0, pl0) if undelivered_bytes else pl0
        return _first_packet(t, r0, base), nbytes, int(t.ts[r0])
    fls = t.flags[rows].tolist()
    pls = t.plen[rows].tolist()
    if undelivered_bytes:
        nbytes = sum(undelivered_bytes.get(r, pl) for r, pl in zip(rows, pls, strict=True))
    else:
        nbytes = sum(pls)
    kinds: dict[str, int] = {}
    for fl, pl in zip(fls, pls, strict=True):
        k = tally_kind(fl, pl)
        kinds[k] = kinds.get(k, 0) + 1
    parts = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return f"{_first_packet(t, r0, base)} ({parts})", nbytes, int(_MIN(t.ts[rows]))


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


def answered_unseen(pa: Point, pb: Point, leg: LegB) -> tuple[Half, str] | None:
    """Of a flow answered before `pb` (nothing of it beyond its leg `leg` at `pa`): its
    first half and why `pb` could not have seen it (`blind`: its capture had ended, or not
    started, at the flow's first packet; not kernel drops, which do not lose a whole
    connection); None when `pb` was capturing then."""
    h = leg.c if leg.c is not None else leg.s
    if h is None or pb.kernel_drops:
        return None
    why = blind(pb, h.first_ts - pa.offset_ns + pb.offset_ns)
    return (h, why) if why is not None else None


def entered_unseen(
    pts: list[Point], present: list[int], f: FlowB
) -> tuple[Half, Point, str] | None:
    """Of a flow that entered the path at a point after the first (nothing of it at the
    point before): its first half, that point and why it could not have seen it (its
    capture had ended: `clocks.ended_early`, or a stop time given); None otherwise."""
    leg = f.legs[0]
    if f.via is not None or leg.point == present[0] or leg.point not in present:
        return None
    up = pts[present[present.index(leg.point) - 1]]
    if up.stop_ns is None:
        return None
    h = leg.c if leg.c is not None else leg.s
    if h is None:
        return None
    at = pts[leg.point]
    if h.first_ts - at.offset_ns + up.offset_ns <= up.stop_ns:
        return None
    return h, up, f"the capture at {up.name} {ENDED_BEFORE}"


def in_flight(up: Point, down: Point) -> int:
    """How long a packet seen at `up` may take to reach `down`, as far as the clocks tell
    (the error of their offset: half the round trip between them): one sent that long
    before `down`'s capture ended may have arrived after it."""
    a, b = up.offset_err_ns, down.offset_err_ns
    return abs(b - a) if a is not None and b is not None else 0


Gaps = list[tuple[list[int], str]]  # rows that are a gap, by why (in order of their first)
NOTHING_SENT = "could have sent them"  # (a gap's reason on a wire: `split_extra`)


def lost_gap_words(up: Point, down: Point, why: str, desc: str) -> str:
    """A gap's text: packets seen at `up`, not at `down`, which could not have seen them."""
    return (
        f"seen at {up.name}, not at {down.name}, but {why}: cannot tell whether they were "
        f"lost; {desc}"
    )


def extra_gap_words(up: Point, down: Point, why: str, desc: str) -> str:
    """A gap's text: packets seen at `down`, never at `up`, which could not have seen them."""
    return f"seen at {down.name}, not at {up.name}, but {why}; {desc}"


def split_lost(up: Point, down: Point, ts: I64, rows: list[int]) -> tuple[list[int], Gaps]:
    """Rows seen at `up` (`ts`: their capture times there) that never reached `down`:
    (lost, gaps): a gap where `down` could not have seen them (`blind`; its capture ended
    before they could have arrived there: `in_flight`), one per reason (a capture begun
    late and ended early: those before its start and those after its end)."""
    lost: list[int] = []
    gaps: dict[str, list[int]] = {}
    fly = in_flight(up, down) if down.stop_ns is not None else 0
    for r in rows:
        at = int(ts[r]) - up.offset_ns + down.offset_ns
        reason = blind(down, at)
        if reason is None and fly and at + fly > down.stop_ns:  # type: ignore[operator]
            reason = f"the capture at {down.name} {ENDED_BEFORE}"
        if reason:
            gaps.setdefault(reason, []).append(r)
        else:
            lost.append(r)
    return lost, [(g, why) for why, g in gaps.items()]


def on_wire(up: Point, down: Point) -> bool:
    """Whether a hop is a wire between two hosts (nothing on it makes packets), not two
    interfaces of one host."""
    return up.host != down.host and bool(up.iface) and bool(down.iface)


def split_extra(
    up: Point, down: Point, ts: I64, rows: list[int], *, around: bool = False
) -> tuple[list[int], Gaps]:
    """Rows seen at `down` that never went through `up`: (injected, gaps); a gap where
    `up` was blind, or where nothing on the wire between two hosts could have sent them
    (`around`: the hop went around points between them, over devices not captured), one
    per reason."""
    inj: list[int] = []
    gaps: dict[str, list[int]] = {}
    wire = on_wire(up, down) and not around
    nothing = (
        f"nothing between {up.name} and {down.name} {NOTHING_SENT} (capture loss at {up.name}?)"
    )
    for r in rows:
        reason = blind(up, int(ts[r]) - down.offset_ns + up.offset_ns)
        if reason:
            gaps.setdefault(reason, []).append(r)
        elif wire:
            gaps.setdefault(nothing, []).append(r)
        else:
            inj.append(r)
    return inj, [(g, why) for why, g in gaps.items()]


def _around_words(pts: Sequence[Point], names: tuple[str, ...]) -> str:
    """`around_name` of points `names` among `pts` (found once per set of points: every
    flow that went around them says it)."""
    every = tuple(p.name for p in pts)
    key = (every, names)
    got = _AROUND_WORDS.get(key)
    if got is None:
        if len(_AROUND_WORDS) > 256:
            _AROUND_WORDS.clear()
        got = _AROUND_WORDS[key] = around_name(names, host_points(every))
    return got


_AROUND_WORDS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


def around_split(
    up: Point, skipped: Sequence[Point], ts: I64, rows: list[int]
) -> tuple[list[int], list[int], str]:
    """Rows seen at `up` (`ts`: their capture times there) of a flow that went around the
    points `skipped`: (around, gap, why): a gap where one of them was not capturing (its
    given start or stop, else its first and last packet: `Point.listened`)."""
    r = np.asarray(rows, np.int64)
    tt = ts[r]
    first, last = int(tt.min()), int(tt.max())
    bad = np.zeros(r.shape[0], bool)
    why = ""
    for p in skipped:
        lo, hi = p.listened()
        d = p.offset_ns - up.offset_ns
        if lo is not None and hi is not None and first + d >= lo and last + d <= hi:
            continue  # (the usual case: all of them while it listened)
        at = tt + d
        early = at < lo if lo is not None else np.ones(r.shape[0], bool)
        late = at > hi if hi is not None else np.zeros(r.shape[0], bool)
        if not why and (early & ~bad).any():
            why = (
                f"the capture at {p.name} {STARTED_AFTER}"
                if p.start_ns is not None
                else f"the capture at {p.name} saw nothing before {_clock(lo)}"
            )
        if not why and (late & ~bad).any():
            why = (
                f"the capture at {p.name} {ENDED_BEFORE}"
                if p.stop_ns is not None
                else f"the capture at {p.name} saw nothing after {_clock(hi)}"
            )
        bad |= early | late
    if not bad.any():
        return rows, [], ""
    return r[~bad].tolist(), r[bad].tolist(), why


_clock = clock_words


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


def finish_flow(pts: list[Point], present: list[int], f: FlowB) -> Built:
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
    summary = flow_summary(pts, f, main, legs_out)
    n_att = sum(1 for x in chains([f]) if x.attempt)
    if n_att:
        why = ""
        if tried:
            why = ": " + flow_summary(pts, f, sorted(tried, key=order), legs_out)
        summary += f"; after {n_att} failed connection attempt{'s' if n_att > 1 else ''}{why}"
    return Built("tcp", client, server, tuple(legs_out), tuple(findings), summary, first_ts_ns / NS)


_Cols = tuple[list[str], list[int], list[int], list[PacketKind], list[bool]]
# of a simple flow: the first leg's details, the second's link and details, the hop's
# median c2s delay (its points are the chunk's `ab`)
_Head = tuple[tuple[str, ...], LinkKind, tuple[str, ...], float | None]


def charge_capture_loss(pts: Sequence[Point], built: list[Built]) -> list[Built]:
    """`built` with the gaps put down to a point's kernel drops made drops or injections
    where that point misses more packets (over every flow) than it dropped in all: its
    capture lost that many at most, the rest went missing on the path (a firewall that
    drops and makes thousands while its capture drops 56 must not hide behind those 56).

    A point's kernel drops are one budget for all its gaps, on both hops next to it:
    first those that can be nothing else (packets seen on both sides of it, or on a wire
    where nothing could have made them: `loss` kind "gap"), then each hop's (a drop or
    an injection otherwise), the hop that misses fewest first, while they fit. A hop
    whose gaps do not fit in what is left has them made drops or injections, all of them.

    On the whole verdict at once (every flow's findings are in `built`), so the parts of
    a partitioned or sliced run decide alike."""

    def key(f: Finding) -> tuple[str, str, str] | None:
        if f.loss is None or f.loss[2] == "gap":
            return None
        a, b = sorted(f.between)
        return f.loss[0], a, b

    missing: dict[tuple[str, str, str], int] = {}
    dropped: dict[str, int] = {}  # per point: its kernel drops
    fixed: dict[str, int] = {}  # per point: the gaps that stay gaps
    for b in built:
        for f in b.findings:
            if f.loss is None:
                continue
            dropped[f.loss[0]] = f.loss[1]
            k = key(f)
            if k is None:
                fixed[f.loss[0]] = fixed.get(f.loss[0], 0) + f.packets
            else:
                missing[k] = missing.get(k, 0) + f.packets
    left = {p: kd - fixed.get(p, 0) for p, kd in dropped.items()}
    over = set()
    for k, m in sorted(missing.items(), key=lambda km: (km[1], km[0])):
        if m <= left[k[0]]:
            left[k[0]] -= m
        else:
            over.add(k)
    # points that miss more packets seen on both sides of them than they dropped: those
    # are not all the capture's loss (the rest went around the point, or its capture
    # filter left them out: connections lost whole at busy firewall's captures that
    # dropped a few packets, while an HA peer carried them); said on their gaps
    short = {p for p, kd in dropped.items() if fixed.get(p, 0) > kd}
    if not over and not short:
        return built
    total = {p: fixed.get(p, 0) for p in dropped}
    for k, m in missing.items():
        total[k[0]] += m
    by_name = {p.name: p for p in pts}  # (`where` reads their hosts and interfaces)

    def beyond(f: Finding) -> bool:  # a certain gap at a point in `short`
        return f.loss is not None and key(f) is None and f.loss[0] in short

    out = []
    for b in built:
        if not any(key(f) in over or beyond(f) for f in b.findings):
            out.append(b)
            continue
        fs = []
        for f in b.findings:
            k = key(f)
            if beyond(f):
                assert f.loss is not None
                name = f.loss[0]
                fs.append(dataclasses.replace(f, what=(
                    f"{f.what}; but {name} misses {fixed[name]} packets seen on both sides "
                    f"of it, more than its capture dropped: not all its loss (the rest went "
                    "another way: an HA peer, ECMP, asymmetric routing; or its capture "
                    "filter left them out)"
                )))  # fmt: skip
                continue
            if k not in over or f.loss is None:
                fs.append(f)
                continue
            name, kd, kind, desc = f.loss
            what = (
                f"{desc} ({name} dropped {kd} packets in the kernel but misses {missing[k]} "
                f"between {k[1]} and {k[2]})"
                if missing[k] > kd
                else f"{desc} ({name} dropped {kd} packets in the kernel but misses "
                f"{total[name]}, {missing[k]} of them between {k[1]} and {k[2]})"
            )
            fs.append(dataclasses.replace(f, kind=kind, what=what, loss=None))  # type: ignore[arg-type]
        fs.sort(key=lambda x: (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0))
        summary = findings_summary(by_name, fs) or b.summary
        # (what followed about the proxy's failed attempts stays)
        tail = b.summary.find("; after ")
        if tail >= 0 and "failed connection attempt" in b.summary[tail:]:
            summary += b.summary[tail:]
        out.append(dataclasses.replace(b, findings=tuple(fs), summary=summary))
    return out


def finish_flows(pts: list[Point], present: list[int], flows: Sequence[FlowB]) -> list[Built]:
    """`finish_flow` of every flow of `flows`, in order. The common flows (one hop matched
    both ways, nothing unexplained, part of no shared connection: drops and rewrites at
    most, and a server's RST at the path's last point) are built from columns gathered
    for many of them at once (in
    chunks: what is gathered stays small); the rest, and any whose drops fall where a
    capture was blind, by `finish_flow`."""
    if present != list(range(len(pts))) or any(
        p.pc is None or p.kernel_drops or p.table.tun.strides != (0,) for p in pts
    ):
        return [finish_flow(pts, present, f) for f in flows]
    out: list[Built] = []
    for lo in range(0, len(flows), FINISH_CHUNK):
        out += _finish_chunk(pts, present, flows[lo : lo + FINISH_CHUNK])
    return out


FINISH_CHUNK = 2048


def _finish_chunk(pts: list[Point], present: list[int], flows: Sequence[FlowB]) -> list[Built]:
    out: list[Built | None] = [None] * len(flows)
    # the simple flows (`finish_flows`): their place in `flows`, both matches, their hop's
    # points, and what their legs need (read now that the flow's objects are at hand; of
    # its halves only their ids: the rest from the points' columns, for the chunk at once)
    sel: list[int] = []
    dms: tuple[list[DirMatch], list[DirMatch]] = ([], [])
    heads: list[_Head] = []
    # four half ids a flow: its first leg's client and server halves, its second leg's
    # client half (`_simple_ends`) and server half (-1: already judged, below)
    ends: list[int] = []
    # its hop's points (a * len(pts) + b): the simple flows are those of one hop, the
    # first's (with every point present, only the last two points have flows of one hop
    # matched both ways)
    hop_ab: list[int] = []
    npts = len(pts)
    # per point: the one `HalvesOf` its halves share when no rows were set in place (a
    # server half's rows and RST are then judged from the point's columns, for the chunk
    # at once: read one half at a time they cost a few % of the stage, the halves lie all
    # over memory); else None
    shared = [_shared_halves(p) for p in pts]
    # the flows' rows missing at the next point: (its place in `sel`, the point, the half,
    # its other direction, the rows, that direction's match)
    lost: list[_Lost] = []
    # per hop (a, b): whether a flow of it ends at a host's own interface at a (the path's
    # first point) and at b (`end_host`): there, data the host never acknowledged is a
    # finding (`_Chain.unacked`), looked at per flow (a flow with any: per-flow path)
    host_ends: dict[tuple[int, int], tuple[bool, bool]] = {}
    for k, f in enumerate(flows):
        if f.subs or f.via is not None or f.attempt or len(f.legs) != 2 or len(f.hops) != 1:
            continue
        hop = f.hops[0]
        x, y = f.legs
        c2s, s2c = hop.c2s, hop.s2c
        xc, xs, yc, ys = x.c, x.s, y.c, y.s
        if (
            c2s is None
            or s2c is None
            or hop.missing
            or hop.around
            or hop.ended is not None
            or x.part is not None
            or y.part is not None
            or xc is None
            or xs is None
            or yc is None
            or ys is None
            or c2s.undelivered_bytes
            or s2c.undelivered_bytes
            or c2s.unexplained
            or s2c.unexplained
        ):
            continue
        a, b = hop.a, hop.b
        yp = y.point
        if x.point != a or yp != b:
            continue
        he = host_ends.get((a, b))
        if he is None:
            he = host_ends[(a, b)] = (
                a == 0 and end_host(pts, a, (a, b)) is not None,
                end_host(pts, b, (a, b)) is not None,
            )
        if (he[0] and pts[a].unacked_of(xs, xc)) or (he[1] and pts[b].unacked_of(yc, ys)):
            continue
        ys_hid = ys.hid
        if ys.pt_ is not shared[yp]:
            # (`Half.idx` without slicing it, unless rows were set in its place)
            if ys.hi_ == ys.lo_ if not ys.pt_.rows else ys.idx.shape[0] == 0:
                continue
            if pts[yp].has_flag(ys, RST):
                continue
            ys_hid = -1
        # (looked at below, for the chunk at once: a capture's loss the receiver
        # acknowledged is `_Chain.delivered`'s)
        if c2s.undelivered:
            lost.append((len(sel), a, xc, xs, c2s.undelivered, s2c))
        if s2c.undelivered:
            lost.append((len(sel), b, ys, yc, s2c.undelivered, c2s))
        sel.append(k)
        dms[0].append(c2s)
        dms[1].append(s2c)
        ends += (xc.hid, xs.hid, yc.hid, ys_hid)
        heads.append((x.details, y.link, y.details, c2s.d_med))
        hop_ab.append(a * npts + b)
    e = np.array(ends, np.int64).reshape(len(sel), 4)
    ok, rst_at = _server_ends(pts, e[:, 3], np.array(hop_ab, np.int64) % npts)
    for j, p, h, back, lrows, back_dm in _sent_once(pts, lost):
        if ok[j] and acked_once(pts[p].table, h, back, lrows, back_dm):
            ok[j] = False
    ab: tuple[int, int] | None = None
    if ok.any():
        code = hop_ab[int(np.argmax(ok))]
        ab = (code // npts, code % npts)
        keep = ok & (np.array(hop_ab, np.int64) == code)
        if not keep.all():
            sel, heads = list(compress(sel, keep)), list(compress(heads, keep))
            dms = (list(compress(dms[0], keep)), list(compress(dms[1], keep)))
            e, rst_at = e[keep], rst_at[keep]
    else:
        sel, heads, dms, e, rst_at = [], [], ([], []), e[:0], rst_at[:0]
    # per direction and simple flow: its drops' slot (`_Dir`), first row there and count;
    # its rewrites; the slots: per (up, down) points, the rows of every drop and rewrite
    # and their sequence bases
    n = len(sel)
    dirs = (_Dir(n), _Dir(n))
    slots: dict[tuple[int, int], int] = {}
    rows: list[list[int]] = []
    bases: list[list[int]] = []
    if ab is not None:
        for d, ud in ((0, ab), (1, (ab[1], ab[0]))):
            slots[ud] = d
            rows.append([])
            bases.append([])
            _slot_jobs(dirs[d], d, dms[d], rows[d], bases[d])
    # per row: its text as a finding's first packet, bytes, time, kind; blind or not
    ctx = _SimpleCtx(pts, list(slots))
    ctx.cols = [
        _rows_described(pts[ud[0]], pts[ud[1]], rows[i], bases[i]) for ud, i in slots.items()
    ]
    # the time of every row as a finding has it (seconds on the aligned timeline)
    ctx.ats = [[(t - off) / NS for t in c[2]] for c, off in zip(ctx.cols, ctx.up_off, strict=True)]
    ctx.dirs = (("c2s", dirs[0]), ("s2c", dirs[1]))
    if ab is not None:
        for direction, dr in ctx.dirs:
            dr.made(ctx, direction)
        resets = _resets(pts, ab, e[:, 3], rst_at)
        _finish_simple(ctx, flows, ab, sel, heads, _simple_ends(pts, ab, e), resets, out)
    return [
        b if b is not None else finish_flow(pts, present, f)
        for b, f in zip(out, flows, strict=True)
    ]


class _Dir:
    """One direction of the simple flows of a chunk (by their place among them): the slot
    of its rows, where its drops' rows start there and how many; its rewrites (None: none;
    one rewrite of one packet: that `Rewrite`, its row's place in `rw_pos`; else a list of
    groups, each (field, first rewrite, values, first row's place, rows))."""

    def __init__(self, n: int) -> None:
        self.slot = 0
        self.upos: list[int] = []
        self.nu: list[int] = []
        self.rw: list[Any] = [None] * n
        self.rw_pos: list[int] = [0] * n
        # the usual case (`_slot_jobs`): every flow's rewrites one or none, their rows
        # one after the other in the slot from `ones_at` (None: not the case)
        self.ones_at: int | None = None
        # per flow: its finding of one dropped packet (None: none, or its time blind) and
        # of one rewrite of one packet (None: none, or not of that kind)
        self.drop1: list[Finding | None] = [None] * n
        self.rw1: list[Finding | None] = [None] * n

    def made(self, ctx: _SimpleCtx, direction: Direction) -> None:
        """`drop1` and `rw1` of every flow, made at once from the slot's columns."""
        texts, pls, _tss, kinds, blind_ = ctx.cols[self.slot]
        ats, between = ctx.ats[self.slot], ctx.between[self.slot]
        self.drop1 = [
            Finding("drop", direction, between, 1, pls[j], ats[j], texts[j], None, None, None,
                    kinds[j]) if n == 1 and not blind_[j] else None
            for n, j in zip(self.nu, self.upos, strict=True)
        ]  # fmt: skip
        j0 = self.ones_at
        if j0 is None:
            self.rw1 = [
                Finding("rewrite", direction, between, 1, pls[j], ats[j], texts[j], g.field,
                        g.before, g.after) if type(g) is Rewrite else None
                for g, j in zip(self.rw, self.rw_pos, strict=True)
            ]  # fmt: skip
            return
        # the rewrites in slot order (the flows' order), their columns read in step
        fs = [
            Finding("rewrite", direction, between, 1, pl, at, text, fld, before, after)
            for (fld, before, after, _a, _b), pl, at, text in zip(
                filter(None, self.rw), pls[j0:], ats[j0:], texts[j0:], strict=True
            )
        ]
        if len(fs) == len(self.rw):  # (every flow with one)
            self.rw1 = fs  # type: ignore[assignment]
        else:
            it = iter(fs)
            self.rw1 = [None if g is None else next(it) for g in self.rw]


def _shared_halves(p: Point) -> HalvesOf | None:
    """The `HalvesOf` all halves of point `p` share (`conns`: those of its columns), if no
    rows were set in their place; else None."""
    pc = p.pc
    if pc is None or pc.cols is None or not pc.halves:
        return None
    got = pc.halves[0].pt_
    return None if got.rows else got


def _server_ends(pts: list[Point], hid: I64, at: I64) -> tuple[npt.NDArray[np.bool_], I64]:
    """Of server halves `hid` (-1: judged already) at points `at`, from their points'
    columns: which the columns' path can take (rows, and no RST, or at the path's last
    point one RST and no FIN: a reset, as `_Chain.path_ends` has it, not a close with RST
    after a FIN), and the row of that RST (-1: none)."""
    ok = np.ones(hid.shape[0], bool)
    rst_at = np.full(hid.shape[0], -1, np.int64)
    todo = hid >= 0
    last = len(pts) - 1
    for q in npsets.unique(at[todo]).tolist():
        m = np.nonzero(todo & (at == q))[0]
        h = hid[m]
        p = pts[q]
        assert p.pc is not None
        cols = p.pc.half_cols()
        r = p.one_rst()[h]
        ok[m[(cols.end[h] == cols.start[h]) | ((r != -1) if q != last else (r == -2))]] = False
        if q == last:
            rst_at[m] = np.maximum(r, -1)
    return ok, rst_at


def _resets(pts: list[Point], ab: tuple[int, int], hid: I64, rst_at: I64) -> list[Finding | None]:
    """Of simple flows (their hop `ab`, at the path's last point `ab[1]`; `hid`: their
    server halves there, `rst_at`: the row of each one's RST, -1: none): the finding of
    each one's RST, as `_Chain.path_ends` writes it (the server's host, at its own
    interface, else "server", answered with it), None without one."""
    out: list[Finding | None] = [None] * hid.shape[0]
    has = np.nonzero(rst_at >= 0)[0]
    if not has.shape[0]:
        return out
    p = pts[ab[1]]
    assert p.pc is not None
    rows = rst_at[has]
    texts, pls, tss, _kinds, _blind = _rows_described(
        p, p, rows.tolist(), p.pc.half_cols().isn[hid[has]].tolist()
    )
    beyond = end_host(pts, ab[1], ab) or "server"
    between, off = (beyond, p.name), p.offset_ns
    for i, text, pl, ts in zip(has.tolist(), texts, pls, tss, strict=True):
        out[i] = Finding("reset", "s2c", between, 1, pl, (ts - off) / NS,
                         f"{beyond} answered with RST: {text}")  # fmt: skip
    return out


def _slot_jobs(d: _Dir, slot: int, dms: list[DirMatch], rr: list[int], bb: list[int]) -> None:
    """The rows of the drops and rewrites of direction `d` of the simple flows (their
    matches `dms`) appended to slot `slot` (`rr`; their sequence bases `bb`), in bulk."""
    unds = [dm.undelivered for dm in dms]
    nu = list(map(len, unds))
    ab = [dm.a_base for dm in dms]
    start = len(rr)
    rr += chain.from_iterable(unds)
    bb += chain.from_iterable(map(repeat, ab, nu))
    d.slot, d.upos, d.nu = slot, list(accumulate(nu, initial=start))[:-1], nu
    rwss = [dm.rewrites for dm in dms]
    n_rw = list(map(len, rwss))
    if max(n_rw, default=0) < 2:
        # the usual case (a clamped MSS), in bulk: one rewrite or none each way, their
        # rows one after the other
        d.ones_at = len(rr)
        d.rw = [rws[0] if rws else None for rws in rwss]
        rr += [rw.a_row for rw in d.rw if rw is not None]
        bb += [base for rws, base in zip(rwss, ab, strict=True) if rws]
        if len(rr) - d.ones_at < len(rwss):  # places only where some flow has none
            at = accumulate(n_rw, initial=d.ones_at - 1)
            next(at)
            d.rw_pos = list(at)
        else:
            d.rw_pos = list(range(d.ones_at, len(rr)))
        return
    for i, (rws, base) in enumerate(zip(rwss, ab, strict=True)):
        if not rws:
            continue
        if len(rws) == 1:  # as `rewrite_groups` has it
            rw = rws[0]
            d.rw[i] = rw
            d.rw_pos[i] = len(rr)
            rr.append(rw.a_row)
            bb.append(base)
            continue
        gs = []
        for fld, rws_rows, rw0, nvals in rewrite_groups(rws):
            gs.append((fld, rw0, nvals, len(rr), len(rws_rows)))
            rr += rws_rows
            bb += [base] * len(rws_rows)
        d.rw[i] = gs


def _simple_ends(pts: list[Point], ab: tuple[int, int], e: I64) -> _Ends:
    """Of simple flows (their legs at points `ab`; `e`: a row of half ids each, their first
    leg's client and server halves and their second leg's client half first): the first leg's
    client and server, the second leg's source and destination (as `Half.src_str`/`dst_str`
    write them), and the first capture time of the first leg; from the points' columns (a
    half's own fields, read one half at a time, cost as much again: the halves lie all
    over memory)."""
    if not e.shape[0]:
        return [], [], [], [], []
    out: list[list[str]] = []
    for q, hid in ((ab[0], e[:, 0]), (ab[1], e[:, 2])):
        p = pts[q]
        assert p.pc is not None
        cols, t = p.pc.half_cols(), p.table
        r0 = cols.row0[hid]
        out.append(_endpoints(t, r0, cols.sport[hid], t.src_hi, t.src_lo))
        out.append(_endpoints(t, r0, cols.dport[hid], t.dst_hi, t.dst_lo))
        if q == ab[0]:
            firsts = np.minimum(cols.first_ts[hid], cols.first_ts[e[:, 1]]).tolist()
    return out[0], out[1], out[2], out[3], firsts


# of simple flows, as columns: `_simple_ends`
_Ends = tuple[list[str], list[str], list[str], list[str], list[int]]


def _endpoints(t: PacketTable, r0: I64, port: I64, hi: npt.NDArray[np.uint64],
               lo: npt.NDArray[np.uint64]) -> list[str]:  # fmt: skip
    """`endpoint_str` of the address (`hi`, `lo`) of rows `r0` with `port`; an IPv4
    address written once (flows share their servers and their NAT's address)."""
    vs = t.v[r0]
    got = endpoint_texts(vs, lo[r0], port)
    if got is not None:  # IPv4 in C; any other here
        for i in np.nonzero(vs != 4)[0].tolist():
            r = int(r0[i])
            got[i] = endpoint_str(int(vs[i]), int(hi[r]), int(lo[r]), int(port[i]))
        return got
    quads = _QUADS
    out: list[str] = []
    for v, h, a, pt in zip(vs.tolist(), hi[r0].tolist(), lo[r0].tolist(), port.tolist(),
                           strict=True):  # fmt: skip
        if v != 4:
            out.append(endpoint_str(v, h, a, pt))
            continue
        qa = quads.get(a)
        if qa is None:  # dotted quads as ipaddress writes them, without an object each
            if len(quads) > 1 << 16:
                quads.clear()
            qa = quads[a] = f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}:"
        out.append(f"{qa}{pt}")
    return out


_QUADS: dict[int, str] = {}  # an IPv4 address (low word) -> "a.b.c.d:"


def _rows_described(up: Point, down: Point, rows: list[int], bases: list[int]) -> _Cols:
    """Rows of `up` (sequence bases `bases`): each one's `_first_packet` text, payload
    length, capture time and `packet_kind`; and whether `down` was blind at its time."""
    t = up.table
    r = np.array(rows, np.int64)
    fl = t.flags[r].astype(np.int64)
    seq = t.seq[r].astype(np.int64)
    rel = ((seq - np.array(bases, np.int64) + (1 << 31)) & M32) - (1 << 31)
    plen = t.plen[r]
    pl = plen.tolist()
    ts = t.ts[r].astype(np.int64)
    at = ts - up.offset_ns + down.offset_ns
    bl = np.zeros(r.shape[0], bool)
    if down.start_ns is not None:
        bl |= at < down.start_ns
    if down.stop_ns is not None:
        bl |= at + in_flight(up, down) > down.stop_ns
    tsval, v, ipid = t.tsval[r], t.v[r], t.ipid[r]
    kinds: list[PacketKind] = _KINDS[(fl & 255) + 256 * (plen > 0)].tolist()
    texts = finding_texts(fl, seq, rel, plen, tsval, v, ipid)
    if texts is None:
        texts = _texts(fl, seq, rel, pl, tsval, v, ipid)
    return texts, pl, ts.tolist(), kinds, bl.tolist()


# `kind_of` of every (flags, with payload or not): row f + 256 * (payload > 0)
_KINDS = np.array([kind_of(f & 255, f >> 8) for f in range(512)], object)


def _texts(
    fl: I64, seq: I64, rel: I64, pl: list[int], tsval: I64, v: npt.NDArray[np.uint8], ipid: I64
) -> list[str]:
    """`_first_packet`'s texts of rows from their columns (`_fastwalk.finding_texts`
    without a compiler)."""
    texts: list[str] = []
    for f0, s0, rl, p0, tv, v0, ip in zip(
        fl.tolist(), seq.tolist(), rel.tolist(), pl, tsval.tolist(), v.tolist(),
        ipid.tolist(), strict=True,
    ):  # fmt: skip
        if f0 & SYN:
            x = f"{flags_str(f0)} seq={s0}"
        else:
            x = f"{flags_str(f0)} seq={rl}" + (f" len={p0}" if p0 else "")
        if tv >= 0:
            x += f" tsval={tv}"
        if v0 == 4:
            x += f" ipid={ip}"
        texts.append(x)
    return texts


class _SimpleCtx:
    """What `_finish_simple` reads, once per chunk: the points' names and offsets; per
    slot (`uds`: its (up, down) points) the points' names, the upstream point's offset
    and the columns of its rows (`_rows_described`); `summary.where` and the summaries
    met so far."""

    def __init__(self, pts: list[Point], uds: list[tuple[int, int]]) -> None:
        self.pts = pts
        self.names = [p.name for p in pts]
        self.offsets = [p.offset_ns for p in pts]
        self.between = [(pts[u].name, pts[d].name) for u, d in uds]
        self.up_off = [pts[u].offset_ns for u, _d in uds]
        self.cols: list[_Cols] = []
        self.ats: list[list[float]] = []  # per slot: its rows' times (`_finish_chunk`)
        self.dirs: tuple[tuple[Direction, _Dir], ...] = ()  # the simple flows' directions
        self.wheres: dict[tuple[str, str], str] = {}
        self.summaries: dict[tuple[object, ...], str] = {}

    def where(self, between: tuple[str, str]) -> str:
        got = self.wheres.get(between)
        if got is None:
            got = self.wheres[between] = where({p.name: p for p in self.pts}, between)
        return got

    def summary(self, findings: tuple[Finding, ...]) -> str:
        """The summary of a simple flow with `findings` (drops and rewrites, in order): the
        sentence of the first, which says only its kind, packet, points, field, values and
        packets, and how many findings follow (flows share a few of them)."""
        f0 = findings[0]
        b, a = f0.before, f0.after
        if type(b) not in _PLAIN or type(a) not in _PLAIN:  # (a value its str may not tell)
            return sentence(f0, f0.packet or "", self.where(f0.between), [*findings], "packets")
        key = (f0.kind, f0.packet, f0.between, f0.field, b, type(b), a, type(a), f0.packets,
               len(findings))  # fmt: skip
        got = self.summaries.get(key)
        if got is None:
            got = sentence(f0, f0.packet or "", self.where(f0.between), [*findings], "packets")
            self.summaries[key] = got
        return got


def _finish_simple(
    ctx: _SimpleCtx,
    flows: Sequence[FlowB],
    ab: tuple[int, int],
    sel: list[int],
    heads: list[_Head],
    ends: _Ends,
    resets: list[Finding | None],
    out: list[Built | None],
) -> None:
    """`finish_flow` of the simple flows of the chunk (see `finish_flows`; `sel`: their
    places in `flows` and `out`) from their rows' columns, in one loop (a call or a list
    less per flow is a few % of the stage); None left where one of a flow's drops is not
    certain (a capture blind then): `finish_flow` decides. `resets`: each one's RST at
    the path's last point (`_resets`), after its drops and rewrites."""
    (_c, dc), (_s, ds) = ctx.dirs
    a, b = ab
    names, offsets, summary = ctx.names, ctx.offsets, ctx.summary
    name_a, name_b, off_a, d_off = names[a], names[b], offsets[a], offsets[b] - offsets[a]
    cols = zip(sel, heads, *ends, dc.nu, ds.nu, dc.rw, ds.rw, dc.drop1, ds.drop1, dc.rw1,
               ds.rw1, resets, strict=True)  # fmt: skip
    findings: tuple[Finding, ...]
    for i, (k, head, client, server, y_src, y_dst, first_ns, nc, ns, gc, gs, xc, xs, rc,
            rs, reset) in enumerate(cols):  # fmt: skip
        if nc < 2 and ns < 2 and type(gc) is not list and type(gs) is not list:
            # the usual flow: at most a packet dropped and a packet rewritten each way; in
            # `_order`: drops, then rewrites, each by time (as a stable sort)
            if rc is None:
                findings = () if rs is None else (rs,)
            elif rs is None:
                findings = (rc,)
            else:
                findings = (rs, rc) if rs.first_ts < rc.first_ts else (rc, rs)
            if nc or ns:
                if (nc and xc is None) or (ns and xs is None):
                    continue
                if xc is None:
                    findings = (xs, *findings)
                elif xs is None:
                    findings = (xc, *findings)
                elif xs.first_ts < xc.first_ts:
                    findings = (xs, xc, *findings)
                else:
                    findings = (xc, xs, *findings)
        else:
            got = _findings_of(ctx, i)
            if got is None:
                continue
            findings = got
        if reset is not None:  # (last in `_order`: after drops and rewrites)
            findings = (*findings, reset)
        x_details, y_link, y_details, d_med = head
        lat = None if d_med is None else (d_med - d_off) / NS
        legs_out = (
            Leg(name_a, f"{client} > {server}", "same", x_details),
            Leg(name_b, f"{y_src} > {y_dst}", y_link, y_details, lat),
        )
        if findings:  # as flow_summary says it: the first, a drop or a rewrite, in words
            text = summary(findings)
        else:
            text = flow_summary(ctx.pts, flows[k], [], list(legs_out))
        out[k] = Built("tcp", client, server, legs_out, findings, text, (first_ns - off_a) / NS)


def _findings_of(ctx: _SimpleCtx, i: int) -> tuple[Finding, ...] | None:
    """The findings of simple flow `i` of the chunk with drops of several packets or
    several rewrites (`_finish_simple`), in `_order`; None: a drop not certain."""
    drops: list[Finding] = []
    rewrites: list[Finding] = []
    cols, pairs, ats = ctx.cols, ctx.between, ctx.ats
    for direction, d in ctx.dirs:
        n = d.nu[i]
        if n:
            slot, j = d.slot, d.upos[i]
            texts, pls, _tss, kinds, blind_ = cols[slot]
            if n == 1:
                if blind_[j]:
                    return None
                drops.append(Finding("drop", direction, pairs[slot], 1, pls[j], ats[slot][j],
                                     texts[j], None, None, None, kinds[j]))  # fmt: skip
            else:
                if any(blind_[j : j + n]):
                    return None
                text, nb, ts0 = _tallied(cols[slot], j, n)
                off = ctx.up_off[slot]
                drops.append(Finding("drop", direction, pairs[slot], n, nb, (ts0 - off) / NS,
                                     text, None, None, None, kinds[j],
                                     last_ts=_last_of(cols[slot], j, n, ts0, off)))  # fmt: skip
        g = d.rw[i]
        if g is None:
            continue
        slot = d.slot
        if type(g) is Rewrite:  # one rewrite, one packet: the usual case
            x = d.rw1[i]
            assert x is not None
            rewrites.append(x)
            continue
        for fld, rw0, nvals, j, n in g:
            text, nb, ts0 = _tallied(cols[slot], j, n) if n > 1 else (
                cols[slot][0][j], cols[slot][1][j], cols[slot][2][j])  # fmt: skip
            if nvals > 1:
                text += f"; {nvals} different values, e.g. {rw0.before} -> {rw0.after}"
            off = ctx.up_off[slot]
            rewrites.append(Finding("rewrite", direction, pairs[slot], n, nb, (ts0 - off) / NS,
                                    text, fld, rw0.before, rw0.after,
                                    last_ts=_last_of(cols[slot], j, n, ts0, off)))  # fmt: skip
    # in `_order`: drops, then rewrites, each by time (a stable sort)
    if len(drops) > 1:
        _by_time(drops)
    if len(rewrites) > 1:
        _by_time(rewrites)
    return (*drops, *rewrites)


_TS = attrgetter("first_ts")


def _by_time(fs: list[Finding]) -> None:
    """Sort findings (each with a time) by time, stably; two (a flow's usual rewrites,
    one each way) without a sort's set-up."""
    if len(fs) == 2:
        if fs[1].first_ts < fs[0].first_ts:  # type: ignore[operator]
            fs.reverse()
    elif len(fs) > 2:
        fs.sort(key=_TS)


_PLAIN = frozenset({int, str, type(None)})  # values equal as keys only when their str is


def _last_of(cols: _Cols, i: int, n: int, ts0: int, off: int) -> float | None:
    """`_last_ts` of the `n` rows from position `i` of a slot's columns."""
    if n < 2:
        return None
    t1 = max(cols[2][i : i + n])
    return (t1 - off) / NS if t1 > ts0 else None


def _tallied(cols: _Cols, i: int, n: int) -> tuple[str, int, int]:
    """`_describe` of the `n` rows from position `i` of a slot's columns."""
    texts, pls, tss, kinds, _blind = cols
    counts: dict[str, int] = {}
    for k, pl in zip(kinds[i : i + n], pls[i : i + n], strict=True):
        w = "data" if k == "FIN" and pl else k  # `tally_kind` of a `kind_of`
        counts[w] = counts.get(w, 0) + 1
    parts = ", ".join(f"{c} {w}" for w, c in counts.items())
    return f"{texts[i]} ({parts})", sum(pls[i : i + n]), min(tss[i : i + n])


def _order(x: Finding) -> tuple[int, float]:
    return (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0)


def _chain_out(
    pts: list[Point], present: list[int], f: FlowB, first_ts_ns: int
) -> tuple[list[Finding], list[Leg], list[Finding]]:
    """The findings and legs of one chain and its subs; and those of failed attempts."""
    ch = _Chain(pts, present, f, first_ts_ns)
    for i, hop in enumerate(f.hops):
        ch.hop(i, hop)
    for iu, jd, hop in f.bypass:
        ch.bypassed(iu, jd, hop)
    ch.path_ends()
    legs_out = ch.legs()
    tried: list[Finding] = []
    for sub in f.subs:
        assert sub.via is not None
        ch.gaps_between(sub.via)
        sf, sl, st = _chain_out(pts, present, sub, first_ts_ns)
        ch.findings += sf
        legs_out += sl
        tried += sf if sub.attempt else st
    return ch.findings, legs_out, tried


# a hop's direction matched and the other one (None: not matched there)
_Both = tuple[DirMatch, DirMatch | None]


@dataclass
class _Seen:
    """Packets one point saw of a flow's direction that a next point's capture did not."""

    point: Point
    keys: set[tuple[int, ...]]  # `_row_keys`


def _row_keys(t: PacketTable, rows: list[int], base: int) -> list[tuple[int, ...]]:
    """What names one transmission of a packet at every point of its path through a NAT:
    its sequence number relative to its direction's base, payload length, SYN/FIN/RST/ACK,
    IP ID and TSval (the last two are the sender's, kept by a NAT)."""
    r = np.asarray(rows, np.int64)
    rel = (t.seq[r] - base) & M32
    fl = t.flags[r] & (SYN | FIN | RST | ACK)
    return list(zip(rel.tolist(), t.plen[r].tolist(), fl.tolist(), t.ipid[r].tolist(),
                    t.tsval[r].tolist(), strict=True))  # fmt: skip


class _Chain:
    """The findings of one chain of legs, hop by hop, then at the ends of the path."""

    def __init__(self, pts: list[Point], present: list[int], f: FlowB, first_ts_ns: int):
        self.pts, self.present, self.f, self.first_ts_ns = pts, present, f, first_ts_ns
        self.findings: list[Finding] = []
        self.filters = _part_filters(pts, f)

    def own(self, j: int, key: tuple[str, int], make: Callable[[], list[int]]) -> list[int]:
        """The rows `make` gives at leg `j` that are this flow's (`key` names the list)."""
        sel = self.filters[j]
        return sel.pick(key, make, int) if sel is not None else make()

    def add(
        self,
        kind: FindingKind,
        direction: Direction,
        between: tuple[str, str],
        p: Point,
        rows: list[int],
        what: tuple[str, int, int],
        **kw: object,
    ) -> None:
        """A finding of `rows` of point `p` (`what`: their `_describe`)."""
        text, nbytes, ts0 = what
        at = (ts0 - p.offset_ns) / NS
        last = rows_last_ts(p.table.ts, rows, p.offset_ns)
        self.findings.append(
            Finding(kind, direction, between, len(rows), nbytes, at, text, last_ts=last, **kw)  # type: ignore[arg-type]
        )

    def lost(
        self,
        direction: Direction,
        up: Point,
        down: Point,
        rows: list[int],
        base: int,
        und_b: Mapping[int, int] | None = None,
        beyond: Callable[[], _Seen | None] | None = None,
    ) -> None:
        """Packets seen at `up` that never reached `down` (in direction of travel); `beyond`:
        what the point after `down` saw that never came through it (`_Chain.around`)."""
        if not rows:
            return
        t = up.table
        drop_rows, gaps = split_lost(up, down, t.ts, rows)
        between = (up.name, down.name)
        if drop_rows:
            what = _describe(t, drop_rows, base, und_b)
            first = packet_kind(t, drop_rows[0])
            self.add("drop", direction, between, up, drop_rows, what, packet=first)
        kd = down.kernel_drops
        for gap_rows, why in gaps:
            if kd and beyond is not None:
                gap_rows = self.passed(direction, up, down, gap_rows, base, beyond, und_b)
            if not gap_rows:
                continue
            desc, nb, ts0 = _describe(t, gap_rows, base, und_b)
            text = lost_gap_words(up, down, why, desc)
            # (with kernel drops at `down`, every gap row is put down to them: `blind`)
            loss = (down.name, kd, "drop", desc) if kd else None
            first = packet_kind(t, gap_rows[0])
            self.add(
                "gap", direction, between, up, gap_rows, (text, nb, ts0), packet=first, loss=loss
            )

    def delivered(
        self, direction: Direction, dms: _Both, ud: tuple[Point, Point], ju: int, rows: list[int]
    ) -> list[int]:
        """Of `rows` (at `up`, missing at `down`: `ud`; `dms`: the direction matched across
        the hop and the other one), those `acked_once` says got through are a gap (`taken`;
        unless `down`'s kernel drops already make every such row one); the others are
        returned."""
        up, down = ud
        leg = self.f.legs[ju] if 0 <= ju < len(self.f.legs) else None
        if not rows or leg is None or self.pts[leg.point] is not up or down.kernel_drops:
            return rows
        h, back = (leg.c, leg.s) if direction == "c2s" else (leg.s, leg.c)
        if h is None or back is None:
            return rows
        # (not those `down` was not capturing for: its window's gaps, `split_lost`)
        heard = split_lost(up, down, up.table.ts, rows)[0]
        dm = dms[0]
        got = acked_once(up.table, h, back, heard, dms[1])
        if not got:
            return rows
        self.taken(direction, up, down, got, dm.a_base, dm.undelivered_bytes)
        return [r for r in rows if r not in got]

    def taken(
        self,
        direction: Direction,
        up: Point,
        down: Point,
        rows: set[int],
        base: int,
        und_b: Mapping[int, int] | None,
    ) -> None:
        """Data seen at `up`, not at `down`, that its receiver acknowledged and its sender
        never sent again (`acked_once`): it got through; `down`'s capture lost it (a pcap
        says nothing of its kernel drops). A gap, not a drop."""
        ordered = sorted(rows, key=lambda r: int(up.table.ts[r]))
        desc, nb, ts0 = _describe(up.table, ordered, base, und_b)
        text = (
            f"seen at {up.name}, not at {down.name}, but the capture at {down.name} lost them: "
            f"{DELIVERED_WORDS}; {desc}"
        )
        self.add("gap", direction, (up.name, down.name), up, ordered, (text, nb, ts0),
                 packet=packet_kind(up.table, ordered[0]))  # fmt: skip

    def extra(
        self,
        direction: Direction,
        up: Point,
        down: Point,
        rows: list[int],
        base: int,
        before: Callable[[], _Seen | None] | None = None,
        *,
        around: bool = False,
    ) -> None:
        """Packets seen at `down` that never went through `up`; `before`: what the point
        before `up` sent that never reached it (`_Chain.around`); `around`: the hop went
        around points between them (`Hop.around`)."""
        if not rows:
            return
        t = down.table
        inj, gaps = split_extra(up, down, t.ts, rows, around=around)
        between = (up.name, down.name)
        if inj:
            what = _describe(t, inj, base)
            self.add("inject", direction, between, down, inj, what, packet=packet_kind(t, inj[0]))
        # packets made between two points of one host (not on a wire, where nothing could
        # have made them): put down to `up`'s kernel drops, every one (`blind`)
        kd = up.kernel_drops
        charged = bool(kd) and not (on_wire(up, down) and not around)
        for gap, why in gaps:
            if kd and before is not None:
                gap = self.passed(direction, up, down, gap, base, before, None, at_down=True)
            if not gap:
                continue
            desc, nb, ts0 = _describe(t, gap, base)
            text = extra_gap_words(up, down, why, desc)
            # (on a wire, where nothing could have made them, they are the capture's loss
            # all the same: in its budget, never made injections)
            loss = (up.name, kd, "inject" if charged else "gap", desc) if kd else None
            first = packet_kind(t, gap[0])
            what = (text, nb, ts0)
            self.add("gap", direction, between, down, gap, what, packet=first, loss=loss)

    def passed(
        self,
        direction: Direction,
        up: Point,
        down: Point,
        rows: list[int],
        base: int,
        other: Callable[[], _Seen | None],
        und_b: Mapping[int, int] | None,
        *,
        at_down: bool = False,
    ) -> list[int]:
        """Of `rows` (at `up`, missing at `down`; `at_down`: at `down`, missing at `up`),
        those the point beyond the blind one saw too (`other`) crossed its wire: its
        capture lost them. A gap put down to that capture, never charged to the device
        as a drop or an injection (`charge_capture_loss`), on the hop before the blind
        point (the hop after it, which sees them from the other side, leaves them to it);
        the rest are returned."""
        seen = other()
        if seen is None:
            return rows
        here = down if at_down else up
        got = [k in seen.keys for k in _row_keys(here.table, rows, base)]
        if not any(got):
            return rows
        if not at_down:
            both = [r for r, g in zip(rows, got, strict=True) if g]
            desc, nb, ts0 = _describe(up.table, both, base, und_b)
            text = (
                f"seen at {up.name} and at {seen.point.name}, not at {down.name}: its capture "
                f"lost them ({down.name} dropped {down.kernel_drops} packets in the kernel); "
                f"{desc}"
            )
            first = packet_kind(up.table, both[0])
            # (the capture's loss for certain: in its budget, never made drops)
            loss = (down.name, down.kernel_drops or 0, "gap", desc)
            self.add("gap", direction, (up.name, down.name), up, both, (text, nb, ts0),
                     packet=first, loss=loss)  # fmt: skip
        return [r for r, g in zip(rows, got, strict=True) if not g]

    def around(self, i: int, direction: Direction, after: bool) -> _Seen | None:
        """The same direction on the hop next to hop `i` in the direction of travel: before
        it (`after` False), what that hop's first point sent that never reached hop `i`'s
        first point; after it, what that hop's last point saw that never came through
        hop `i`'s last point."""
        hops, legs = self.f.hops, self.f.legs
        step = (1 if after else -1) * (1 if direction == "c2s" else -1)
        k, j = i, i + step
        while True:
            if not 0 <= j < len(hops):
                return None
            hop, nb = hops[k], hops[j]
            if (nb.a != hop.b) if j > k else (nb.b != hop.a):
                return None
            # (across a run of points that each lost the whole connection, `flows._across_to`:
            # hops between their empty legs; the point beyond the last one saw them)
            if j + 1 < len(legs) and all(x.c is None and x.s is None for x in legs[j : j + 2]):
                k, j = j, j + step
                continue
            break
        dm = nb.c2s if direction == "c2s" else nb.s2c
        if dm is None:
            return None
        # (travel: c2s from a to b, s2c from b to a)
        first, last = (nb.a, nb.b) if direction == "c2s" else (nb.b, nb.a)
        # (a time slice's: every row it read, not only those its window judges)
        und, unx = dm.read if dm.read is not None else (dm.undelivered, dm.unexplained)
        if after:
            p, rows, base = self.pts[last], unx, dm.base
        else:
            p, rows, base = self.pts[first], und, dm.a_base
        if not rows:
            return None
        return _Seen(p, set(_row_keys(p.table, rows, base)))

    def gaps_between(self, hop: Hop) -> None:
        if hop.missing:
            self.findings += missing_gaps(self.pts, hop.a, hop.b, hop.missing, self.first_ts_ns)

    def hop(self, i: int, hop: Hop) -> None:
        """Hop `i` of the chain: lost, injected and rewritten packets both ways."""
        pa, pb = self.pts[hop.a], self.pts[hop.b]
        self.gaps_between(hop)
        if hop.c2s is None and hop.s2c is None:
            self.ended(i, hop, pa, pb)
            return
        if hop.c2s is not None:
            self.matched("c2s", (hop.c2s, hop.s2c), pa, pb, i, i + 1, i)
        if hop.s2c is not None:
            self.matched("s2c", (hop.s2c, hop.c2s), pb, pa, i + 1, i, i)
        if hop.around:
            self.went_around(i, i + 1, hop)

    def bypassed(self, iu: int, jd: int, hop: Hop) -> None:
        """One direction of the flow went around the legs between legs `iu` and `jd`
        (`flows.add_bypasses`): matched from one to the other by `hop`."""
        pa, pb = self.pts[hop.a], self.pts[hop.b]
        if hop.c2s is not None:
            self.matched("c2s", (hop.c2s, hop.s2c), pa, pb, iu, jd, -1, bypass=True)
        if hop.s2c is not None:
            self.matched("s2c", (hop.s2c, hop.c2s), pb, pa, jd, iu, -1, bypass=True)
        self.went_around(iu, jd, hop)

    def went_around(self, iu: int, jd: int, hop: Hop) -> None:
        """The hop from leg `iu` to leg `jd` went around the points `hop.around`
        (`engine.blind_links`; one direction: `flows.add_bypasses`): per direction, its
        packets seen before them are an `around` finding (not a drop at them, not an
        injection after them); those sent when one of them was not capturing (started
        later, ended sooner) are a gap: then it cannot be told."""
        legs, pts = self.f.legs, self.pts
        for direction in ("c2s", "s2c"):
            if hop.around_dir is not None and direction != hop.around_dir:
                continue
            ju = iu if direction == "c2s" else jd
            up, down = (pts[hop.a], pts[hop.b]) if direction == "c2s" else (pts[hop.b], pts[hop.a])
            h = legs[ju].c if direction == "c2s" else legs[ju].s
            if h is None:
                continue
            rows = self.own(ju, ("c" if direction == "c2s" else "s", id(h)), h.idx.tolist)
            rows = hop.judged_rows(direction, rows)
            if not rows:
                continue  # (or another time slice's)
            skipped = [pts[m] for m in hop.around]
            names = tuple(p.name for p in skipped)
            t = up.table
            out, gap, why = around_split(up, skipped, t.ts, rows)
            between = (up.name, down.name)
            if out:
                desc, nb, ts0 = _describe(t, out, h.isn)
                text = (
                    f"went around {_around_words(pts, names)}: seen at {up.name} and "
                    f"{down.name}, never at {', '.join(names)} (whose captures report no "
                    f"loss); {desc}"
                )
                self.add("around", direction, between, up, out, (text, nb, ts0),
                         packet=packet_kind(t, out[0]), around=names)  # fmt: skip
            if gap:
                desc, nb, ts0 = _describe(t, gap, h.isn)
                text = (
                    f"seen at {up.name} and {down.name}, not at "
                    f"{', '.join(p.name for p in skipped)}, but {why}: cannot tell whether "
                    f"they went around; {desc}"
                )
                self.add("gap", direction, between, up, gap, (text, nb, ts0),
                         packet=packet_kind(t, gap[0]))  # fmt: skip

    def ended(self, i: int, hop: Hop, pa: Point, pb: Point) -> None:
        """A hop the flow never crossed (nothing of it downstream)."""
        leg = self.f.legs[i]
        if hop.ended == "answered" and self.answered_blind(i, hop, leg, pa, pb):
            return
        if hop.ended in ("unanswered", "rst") and leg.c is not None:
            rows = self.own(i, ("c", id(leg.c)), leg.c.idx.tolist)
            self.lost("c2s", pa, pb, rows, leg.c.isn)
        if hop.ended == "rst" and leg.s is not None:
            rows = self.own(i, ("s", id(leg.s)), leg.s.idx.tolist)
            self.extra("s2c", pb, pa, rows, leg.s.isn)
        if hop.ended == "nothing":
            self.findings.append(
                Finding(
                    "gap",
                    "c2s",
                    (pa.name, pb.name),
                    0,
                    0,
                    self.first_ts_ns / NS,
                    f"{pb.name} captured no TCP packets at all (wrong interface, filter, or a "
                    f"capture that failed?): what happened after {pa.name} is unknown",
                )
            )

    def answered_blind(self, i: int, hop: Hop, leg: LegB, pa: Point, pb: Point) -> bool:
        """A flow answered before `pb` while `pb` was not capturing (`blind`: its capture
        ended before it, or had not started): a gap, not a device that answered."""
        got = answered_unseen(pa, pb, leg)
        if got is None:
            return False
        h, why = got
        direction: Direction = "c2s" if h is leg.c else "s2c"
        rows = self.own(i, ("c" if h is leg.c else "s", id(h)), h.idx.tolist)
        rows = hop.judged_rows(direction, rows)
        if not rows:
            return True  # (another time slice's)
        t = pa.table
        desc, nb, ts0 = _describe(t, rows, h.isn)
        text = (
            f"seen at {pa.name} and answered, never at {pb.name}, but {why}: cannot tell "
            f"whether it crossed {pb.name} or was answered before it; {desc}"
        )
        between = (pa.name, pb.name) if direction == "c2s" else (pb.name, pa.name)
        self.add("gap", direction, between, pa, rows, (text, nb, ts0),
                 packet=packet_kind(t, rows[0]))  # fmt: skip
        return True

    def matched(
        self,
        direction: Direction,
        dms: _Both,
        up: Point,
        down: Point,
        ju: int,
        jd: int,
        i: int,
        *,
        bypass: bool = False,
    ) -> None:
        """One direction of hop `i`, matched (`dms`: it and the other direction, None when
        that was not matched there; `ju`, `jd`: the legs up- and downstream; `bypass`: not
        a hop of the chain but a direction's way around legs of it, `bypassed`)."""
        own = self.own
        dm = dms[0]
        if dm.undelivered:
            und_rows = own(ju, ("und", id(dm)), partial(list, dm.undelivered))
            beyond = None if bypass else partial(self.around, i, direction, True)
            und_rows = self.delivered(direction, dms, (up, down), ju, und_rows)
            self.lost(direction, up, down, und_rows, dm.a_base, dm.undelivered_bytes, beyond)
        if dm.undelivered_bytes:
            # partially delivered packets (a segment of a big one missing)
            part_rows = own(ju, ("part", id(dm)), partial(_partly_delivered, dm))
            part_rows = self.delivered(direction, dms, (up, down), ju, part_rows)
            if part_rows:
                self.lost(direction, up, down, part_rows, dm.a_base, dm.undelivered_bytes)
        if dm.unexplained:
            unx = own(jd, ("unx", id(dm)), partial(list, dm.unexplained))
            before = None if bypass else partial(self.around, i, direction, False)
            self.extra(direction, up, down, unx, dm.base, before,
                       around=bypass or bool(self.f.hops[i].around))  # fmt: skip
        if not dm.rewrites:
            return
        sel = self.filters[ju]
        rws = (
            dm.rewrites
            if sel is None
            else sel.pick(("rw", id(dm)), partial(list, dm.rewrites), attrgetter("a_row"))
        )
        for fld, rows_all, rw0, nvals in rewrite_groups(rws):
            text, nb, ts0 = _describe(up.table, rows_all, dm.a_base)
            if nvals > 1:
                text += f"; {nvals} different values, e.g. {rw0.before} -> {rw0.after}"
            self.add(
                "rewrite",
                direction,
                (up.name, down.name),
                up,
                rows_all,
                (text, nb, ts0),
                field=fld,
                before=rw0.before,
                after=rw0.after,
            )

    def missing_end(self, m: int, between: tuple[str, str], where: str) -> None:
        pm = self.pts[m]
        self.findings.append(
            Finding(
                "gap",
                "c2s",
                between,
                0,
                0,
                self.first_ts_ns / NS,
                f"no capture at {pm.name} ({pm.inp.missing_reason or 'missing'}): "
                f"what happened {where} cannot be told",
            )
        )

    def path_ends(self) -> None:
        """Points missing at either end of the path (the flow's evidence stops short of
        them); at the far end, a SYN never answered and a reset."""
        pts, present, f = self.pts, self.present, self.f
        if f.legs[0].point == present[0] and present[0] > 0:
            self.missing_end(
                0, (pts[0].name, pts[present[0]].name), f"before {pts[present[0]].name}"
            )
        elif (got := entered_unseen(pts, present, f)) is not None:
            self.entered_unseen(*got)
        last = f.legs[-1]
        j = len(f.legs) - 1
        pl = pts[last.point]
        trailing = last.point == present[-1] and present[-1] < len(pts) - 1
        if trailing:
            m = present[-1] + 1
            self.missing_end(m, (pl.name, pts[m].name), f"beyond {pl.name}")
        t = pl.table
        # the hosts the flow ends at, if it was seen on their interfaces (`end_host`)
        seen_at = [leg.point for leg in f.legs]
        server_host = end_host(pts, last.point, seen_at)
        if f.via is not None and server_host == pts[f.via.a].host:
            # a proxy's own connection (a sub-chain from its parent's leg at `via.a`):
            # the proxy is its client, its server beyond
            server_host = None
        # the far end: the last leg is at the last point of the path
        if last.point == present[-1] and not trailing:
            c = last.c
            answered = last.s is not None and last.s.idx.shape[0] > 0
            if c is not None and c.syn and not c.synack and not answered:
                syn_rows = self.own(j, ("syn", id(c)), partial(pl.rows_with, c, SYN))
                if syn_rows:
                    self.unanswered(pl, syn_rows, c.isn, server_host or "server")
            if c is not None and answered and server_host and last.s is not None:
                self.unacked(j, c, last.s, pl, "c2s", server_host)
        first = f.legs[0]
        p0 = pts[first.point]
        if (
            first.point == present[0] == 0
            and first.s is not None
            and first.c is not None
            and (client_host := end_host(pts, first.point, seen_at))
        ):
            self.unacked(0, first.s, first.c, p0, "s2c", client_host)
        s = last.s
        if s is not None and (
            last.point == present[-1] or (f.hops and f.hops[-1].ended == "answered")
        ):
            rst_rows = self.own(j, ("rst", id(s)), partial(pl.rows_with, s, RST))
            if rst_rows and _closed_with_rst(t, s, last.c, rst_rows):
                # its side was finished (FIN sent) and the client sent no data after it: the
                # RST answers a FIN or an ACK to a closed socket, nothing was lost (3proxy,
                # a server that closes without lingering); a note, not a finding
                note = "closed with RST after its FIN (no data of the client's refused)"
                if note not in last.details:
                    last.details = (*last.details, note)
            elif rst_rows:
                beyond = pl.host if last.point != present[-1] else server_host or "server"
                text, nb, ts0 = _describe(t, rst_rows, s.isn)
                text = f"{beyond} answered with RST: {text}"
                self.add("reset", "s2c", (beyond, pl.name), pl, rst_rows, (text, nb, ts0))

    def entered_unseen(self, h: Half, up: Point, why: str) -> None:
        """The flow entered the path at its first leg's point after the capture before it
        had ended (`entered_unseen`): a gap there, not a connection of that host's."""
        f = self.f
        rows = self.own(0, ("c" if h is f.legs[0].c else "s", id(h)), h.idx.tolist)
        if f.judged is not None:
            judged = set(f.judged)
            rows = [r for r in rows if r in judged]
        if not rows:
            return
        at = self.pts[f.legs[0].point]
        t = at.table
        desc, nb, ts0 = _describe(t, rows, h.isn)
        text = (
            f"seen at {at.name}, never at {up.name}, but {why}: cannot tell whether it came "
            f"through {up.name}; {desc}"
        )
        self.add("gap", "c2s", (up.name, at.name), at, rows, (text, nb, ts0),
                 packet=packet_kind(t, rows[0]))  # fmt: skip

    def unacked(self, j: int, h: Half, back: Half, p: Point, d: Direction, by: str) -> None:
        """Data of half `h` seen at `p`, the path's last point toward the receiver (the
        server's side for c2s, the client's for s2c; `by`: its host, as an unanswered SYN's
        finding names it), that the receiver never acknowledged before the same bytes came
        again: lost after `p` (the host's own firewall, conntrack, a full socket buffer).
        `back`: the receiver's half there."""
        t = p.table
        rows = self.own(j, ("unacked", id(h)), partial(p.unacked_of, h, back))
        if not rows:
            return
        text, nb, ts0 = _describe(t, rows, h.isn)
        kind: FindingKind = "drop"
        if p.kernel_drops:
            # as for an unanswered SYN: the acknowledgement may be among what the capture
            # lost (the lab's loaded runs: srv:eth0 dropping thousands in the kernel)
            kind = "gap"
            text = (
                f"{text}: no acknowledgement seen before it came again, but {p.name} dropped "
                f"{p.kernel_drops} packets in the kernel"
            )
        else:
            again = f"never acknowledged before it came again: lost after {p.name}"
            text = f"{text}: reached {p.name}, {again}"
        self.add(kind, d, (p.name, by), p, rows, (text, nb, ts0), packet=packet_kind(t, rows[0]))

    def unanswered(self, pl: Point, syn_rows: list[int], isn: int, beyond: str) -> None:
        """The client's SYN reached the last point and no answer came (from `beyond`: the
        server's host, or "server")."""
        t = pl.table
        what, nb, ts0 = _describe(t, syn_rows, isn)
        end = pl.stop_ns if pl.stop_ns is not None else last_ts(t)
        late = end - int(t.ts[syn_rows[0]]) < NS  # the capture ended right after it
        kind: FindingKind
        if pl.kernel_drops or late:
            why = (
                f"{pl.name} dropped {pl.kernel_drops} packets in the kernel"
                if pl.kernel_drops
                else f"the capture at {pl.name} ended less than a second after it"
            )
            kind, text = "gap", f"{what}: no answer seen, but {why}"
        else:
            kind, text = "drop", f"{what}: reached {pl.name}, never answered by {beyond}"
        self.add(
            kind,
            "c2s",
            (pl.name, beyond),
            pl,
            syn_rows,
            (text, nb, ts0),
            packet=packet_kind(t, syn_rows[0]),
            unanswered=True,
        )

    def legs(self) -> list[Leg]:
        """The chain's legs as the verdict shows them, with the latency of each hop on
        the aligned timeline."""
        pts, f = self.pts, self.f
        legs_out: list[Leg] = []
        for i, leg in enumerate(f.legs):
            if leg.c is None and leg.s is None:
                continue  # a point whose capture lost all of it (`flows._extend`)
            lat = None
            if i > 0:
                hop = f.hops[i - 1]
                pa, pb = pts[hop.a], pts[hop.b]
                if hop.c2s is not None and hop.c2s.d_med is not None:
                    lat = (hop.c2s.d_med - (pb.offset_ns - pa.offset_ns)) / NS
            legs_out.append(
                Leg(
                    point=pts[leg.point].name,
                    tuple=_leg_tuple(leg),
                    link=leg.link if i or f.via is not None else "same",
                    details=leg.details,
                    latency_s=lat,
                    part=_leg_part(leg.part) if leg.part is not None else None,
                    tunnel=_leg_tunnel(pts[leg.point].table, leg),
                )
            )
        return legs_out


_MIN = np.minimum.reduce
_MAX = np.maximum.reduce


def rewrite_groups(rws: Sequence[Rewrite]) -> list[tuple[str, list[int], Rewrite, int]]:
    """One finding per rewritten field: (field, its rows, the rewrite of its most common
    (before, after) values, how many distinct values); values most packets first."""
    if len(rws) == 1:  # the usual case (a clamped MSS): one finding of one packet
        rw = rws[0]
        return [(rw.field, [rw.a_row], rw, 1)]
    groups: dict[tuple[str, str, str], tuple[Rewrite, list[int]]] = {}
    for rw in rws:
        key = (rw.field, str(rw.before), str(rw.after))
        got = groups.get(key)
        if got is None:
            groups[key] = (rw, [rw.a_row])
        else:
            got[1].append(rw.a_row)
    by_field: dict[str, list[tuple[Rewrite, list[int]]]] = {}
    for (fld, _b, _a), g in groups.items():
        by_field.setdefault(fld, []).append(g)
    out: list[tuple[str, list[int], Rewrite, int]] = []
    for fld, lst in by_field.items():
        if len(lst) > 1:
            lst.sort(key=lambda x: -len(x[1]))
        out.append((fld, [r for _rw, rr in lst for r in rr], lst[0][0], len(lst)))
    return out


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
    codes = npsets.unique(t.tun[np.concatenate([half_rows(leg.c), half_rows(leg.s)])])
    return ", ".join(tunnel_str(int(x)) for x in codes if x) or None


def _leg_tuple(leg: LegB) -> str:
    if leg.c is not None:
        return leg.c.tuple_str
    assert leg.s is not None
    return f"{leg.s.dst_str} > {leg.s.src_str}"
