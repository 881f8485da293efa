"""ICMP errors attached to the flow they quote.

An ICMP error (destination unreachable, fragmentation needed / packet too big, time
exceeded, parameter problem) carries the IP header and the first L4 bytes of the packet
that caused it. NAT devices translate the quoted header together with the outer one, so at
every point the quoted tuple is the flow's tuple *at that point*: the error is looked up
there, among TCP half-connections and datagram flows. The same error seen at several
points (same type, code, MTU and quoted IP ID/length) is one `icmp` finding: where it was
generated (the first point that saw it, in its direction of travel, and the point before
that did not) and where it stopped being seen; an error that was seen and then vanished
before the next point on its flow's way is also a `drop` of the ICMP packet (a `gap` when
that point's capture ended less than a second after it). The next point not on the flow's
way (a scanner's datagram answered by the relay: its error goes back to the scanner, not
toward the client) expects no error.

A flow that lost large segments and whose "fragmentation needed" never made it back to the
sender is a path-MTU black hole, and its summary says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hopcap.correlate.dgram import TCP, DgramTable, error_text, find_flow, tuple_key
from hopcap.correlate.reader import addr_str, captured_last
from hopcap.correlate.summary import end_host
from hopcap.correlate.udp import DFlowB, dtable
from hopcap.model import Direction, Finding

if TYPE_CHECKING:
    from hopcap.correlate.findings import Built
    from hopcap.correlate.flows import FlowB, LegB, Point

NS = 1_000_000_000


@dataclass
class ErrorInfo:
    """One ICMP error (as seen along the path) attached to a flow."""

    text: str  # "ICMP fragmentation needed (next-hop MTU 1400)"
    mtu: int
    quoted_dir: Direction  # direction of the packet the error is about
    generator: str  # "rt" (a host), or "a device between a and b"
    src: str  # the error's source address
    first: str  # point names
    last: str
    lost_before: str | None  # the next point in its way, where it never appeared
    toward: str  # the host (or endpoint) it was on its way to
    findings: list[Finding] = field(default_factory=list)


def attach_errors(
    pts: list[Point],
    present: list[int],
    tcp_flows: list[FlowB],
    dflows: list[DFlowB],
    blind: Callable[[Point, int], str | None],
) -> tuple[dict[int, list[ErrorInfo]], dict[int, list[ErrorInfo]]]:
    """ICMP errors of every point, per TCP flow index and per datagram flow index."""
    errors: dict[int, npt.NDArray[np.int64]] = {}
    for p in present:
        t = dtable(pts[p])
        if t is not None:
            err = np.nonzero(t.role == 1)[0]
            if err.shape[0]:
                errors[p] = err
    if not errors:  # (no index of every flow's halves to build)
        return {}, {}
    tcp_at: dict[int, dict[int, tuple[int, Direction]]] = {}
    for i, f in enumerate(tcp_flows):
        for leg in all_legs(f):
            at = tcp_at.setdefault(leg.point, {})
            if leg.c is not None:
                at[leg.c.hid] = (i, "c2s")
            if leg.s is not None:
                at[leg.s.hid] = (i, "s2c")
    d_at: dict[int, dict[int, int]] = {}
    for i, df in enumerate(dflows):
        for dl in df.legs:
            d_at.setdefault(dl.point, {})[dl.f.fid] = i
    # (flow kind, flow index) -> error identity -> [(point, row, quoted direction)]
    occ: dict[tuple[str, int], dict[tuple[int, ...], list[tuple[int, int, Direction]]]] = {}
    unattached: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for p, err in errors.items():
        t = dtable(pts[p])
        assert t is not None
        keys = tuple_key(t, err, inner=True).tolist()
        pc = pts[p].pc
        for r, key in zip(err.tolist(), keys, strict=True):
            ts = int(t.ts[r])
            ref: tuple[str, int] | None = None
            qdir: Direction = "c2s"
            if int(t.in_proto[r]) == TCP:
                halves = pc.by_tkey.get(key, []) if pc is not None else []
                best = min(
                    halves, key=lambda h: max(h.first_ts - ts, ts - h.last_ts, 0), default=None
                )
                hit = tcp_at.get(p, {}).get(best.hid) if best is not None else None
                if hit is not None:
                    ref, qdir = ("t", hit[0]), hit[1]
            else:
                got = find_flow(t, key, ts)
                if got is not None and got[0].fid in d_at.get(p, {}):
                    ref = ("d", d_at[p][got[0].fid])
                    qdir = "c2s" if got[1] == 0 else "s2c"
            ident: tuple[int, ...] = (
                int(t.proto[r]),
                int(t.itype[r]),
                int(t.icode[r]),
                int(t.mtu[r]),
                int(t.in_ipid[r]),
                int(t.in_len[r]),
                int(t.in_proto[r]),
            )
            if ref is None:
                unattached.setdefault(ident, []).append((p, r))
                continue
            occ.setdefault(ref, {}).setdefault(ident, []).append((p, r, qdir))
    out_t: dict[int, list[ErrorInfo]] = {}
    out_d: dict[int, list[ErrorInfo]] = {}
    for ref, groups in occ.items():
        for key, seen in groups.items():
            # the same error where its quoted header names no flow (a device that did not
            # translate the quoted header along with the outer one)
            have = {x[0] for x in seen}
            for p, r in unattached.get(key, ()):
                if p not in have and key[4] >= 0:
                    seen.append((p, r, seen[0][2]))
            crossed = (
                {leg.point for leg in all_legs(tcp_flows[ref[1]])}
                if ref[0] == "t"
                else {dl.point for dl in dflows[ref[1]].legs}
            )
            info = _one_error(pts, present, seen, blind, crossed)
            (out_t if ref[0] == "t" else out_d).setdefault(ref[1], []).append(info)
    return {k: _merge(v) for k, v in out_t.items()}, {k: _merge(v) for k, v in out_d.items()}


def _merge(infos: list[ErrorInfo]) -> list[ErrorInfo]:
    """Errors of one flow that took the same way (type, origin, where they vanished): one
    finding each for all of them, with the count."""
    groups: dict[tuple[object, ...], list[ErrorInfo]] = {}
    for i in sorted(infos, key=lambda i: i.findings[0].first_ts or 0.0):
        key = (i.text, i.quoted_dir, i.generator, i.first, i.last, i.lost_before, i.src)
        groups.setdefault(key, []).append(i)
    out = []
    for same in groups.values():
        head = same[0]
        if len(same) > 1:
            merged = []
            for k, f in enumerate(head.findings):
                n = sum(x.findings[k].packets for x in same if k < len(x.findings))
                merged.append(replace(f, packets=n, what=f"{f.what} ({len(same)} errors)"))
            head.findings = merged
        out.append(head)
    return out


def all_legs(f: FlowB) -> Iterator[LegB]:
    """The legs of a TCP flow and of its sub-chains (beyond a proxy: pooled connections,
    retries)."""
    yield from f.legs
    for sub in f.subs:
        yield from all_legs(sub)


def _one_error(
    pts: list[Point],
    present: list[int],
    seen: list[tuple[int, int, Direction]],
    blind: Callable[[Point, int], str | None],
    crossed: set[int],
) -> ErrorInfo:
    """One error as seen along the path. It is expected only at the points its flow
    crossed (it goes back the way the packet it quotes came: a scanner's datagram answered
    by a host past the client is not owed to the client) and, like an unanswered request,
    not at a point whose capture ended less than a second after it would have got there."""
    qdir = seen[0][2]
    travel: Direction = "s2c" if qdir == "c2s" else "c2s"
    # the points on its way, in its direction of travel
    order = list(present)
    if travel == "s2c":
        order.reverse()
    at = {p: r for p, r, _d in seen}
    pos = [i for i, p in enumerate(order) if p in at]
    i0, i1 = pos[0], pos[-1]
    first, last = pts[order[i0]], pts[order[i1]]
    t0 = dtable(first)
    assert t0 is not None
    r0 = at[order[i0]]
    text = error_text(t0, r0)
    src = addr_str(int(t0.v[r0]), int(t0.src_hi[r0]), int(t0.src_lo[r0]))
    if i0 > 0:
        prev = pts[order[i0 - 1]]
        if prev.host == first.host and prev.iface and first.iface:
            gen, where = first.host, f"inside {first.host}"
        else:
            gen = where = f"a device between {prev.name} and {first.name}"
            where = f"between {prev.name} and {first.name}"
    else:
        # first seen at the far end of the path: by that host when the flow ends at its
        # interface there, else from beyond it (a firewall's outside interface, which the
        # flow left it by, sees what routers beyond it send back: not the firewall's)
        end = end_host(pts, order[i0], crossed)
        gen = end or src
        where = f"by {end}" if end else f"beyond {first.name}"
    toward = end_host(pts, order[-1], crossed) or pts[order[-1]].name
    nxt = pts[order[i1 + 1]] if i1 + 1 < len(order) and order[i1 + 1] in crossed else None
    quoted = _quoted(t0, r0)
    ts_first = (int(t0.ts[r0]) - first.offset_ns) / NS
    n = len([s for s in seen if s[0] == order[i0]])
    tail = f", never at {nxt.name}" if nxt is not None else ""
    what = f"{text} from {src} about {quoted}: generated {where}, last seen at {last.name}{tail}"
    info = ErrorInfo(
        text,
        int(t0.mtu[r0]),
        qdir,
        gen,
        src,
        first.name,
        last.name,
        nxt.name if nxt is not None else None,
        toward,
    )
    between = (gen if gen == first.host else first.name, last.name)
    info.findings.append(Finding("icmp", travel, between, n, 0, ts_first, what))
    if nxt is not None:
        tl = dtable(last)
        assert tl is not None
        rl = at[order[i1]]
        at_nxt = int(tl.ts[rl]) - last.offset_ns + nxt.offset_ns
        why = blind(nxt, at_nxt)
        if why is None and _ended(nxt) - at_nxt < NS:
            why = f"the capture at {nxt.name} ended less than a second after it"
        lost = f"{text} from {src} (about {quoted}): seen at {last.name}, never at {nxt.name}"
        ts_last = (int(tl.ts[rl]) - last.offset_ns) / NS
        if why:
            info.lost_before = None
            info.findings.append(
                Finding(
                    "gap",
                    travel,
                    (last.name, nxt.name),
                    1,
                    0,
                    ts_last,
                    f"{lost}, but {why}: cannot tell whether it was lost",
                )
            )
        else:
            info.findings.append(
                Finding("drop", travel, (last.name, nxt.name), 1, 0, ts_last, lost)
            )
    return info


def _ended(p: Point) -> int:
    """The last packet a point captured (its own clock), or when it stopped."""
    if p.stop_ns is not None:
        return p.stop_ns
    ends = (captured_last(t) for t in (p.table, dtable(p)) if t is not None)
    last = [e for e in ends if e is not None]
    return max(last, default=0)


def _quoted(t: DgramTable, r: int) -> str:
    pr = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}.get(int(t.in_proto[r]), "IP")
    s = f"a {int(t.in_len[r])}-byte {pr} packet"
    if int(t.in_ipid[r]) >= 0:
        s += f" (ipid {int(t.in_ipid[r])})"
    return s


def apply_to_built(b: Built, infos: list[ErrorInfo], where_of: Callable[[Finding], str]) -> None:
    """Add the errors' findings to a finished flow; a path-MTU black hole rewrites its
    summary."""
    from hopcap.correlate.findings import KIND_ORDER
    from hopcap.correlate.local import more as _more

    own = b.findings
    # an endpoint that answered with an ICMP error did answer; so did what is beyond the
    # point where a request was last seen, when an error came from there (a router past
    # a firewall's outside interface: host unreachable)
    answered = {(i.generator, i.quoted_dir) for i in infos}
    beyond = {(i.first, i.quoted_dir) for i in infos if i.generator == i.src}
    own = tuple(
        f
        for f in own
        if not (
            f.unanswered
            and ((f.between[1], f.direction) in answered or (f.between[0], f.direction) in beyond)
        )
    )
    found = list(own)
    for info in infos:
        found.extend(info.findings)
    found.sort(key=lambda x: (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0))
    b.findings = tuple(found)
    for info in infos:
        if info.mtu < 0 or info.lost_before is None:
            continue
        drops = [f for f in found if f.kind == "drop" and f.direction == info.quoted_dir]
        if not drops:
            continue
        where = where_of(drops[0])
        b.summary = (
            f"path-MTU black hole: segments over {info.mtu} bytes dropped {where}; ICMP "
            f"frag-needed from {info.generator} never reached {info.toward} (last seen at "
            f"{info.last}, not at {info.lost_before})" + _more(found)
        )
        return
    if infos and not any(f.kind in ("drop", "inject", "rewrite", "reset") for f in own):
        first = min(infos, key=lambda i: i.findings[0].first_ts or 0.0)
        lost = f"; it never reached {first.lost_before}" if first.lost_before else ""
        b.summary = first.findings[0].what + lost + _more(found)
