"""The order of the points as given, checked against the packets' TTL: across a pair of
points in path order the TTL of a connection's packets never rises, in either direction,
when the client is on the side of the first point. A pair where it rises both ways, by
what routing takes off (one hop inside a host, a few across hosts), in nearly every
connection, was given the wrong way round (`fw:out` before `fw:in`): said in a warning
with the order that fits. (Each such connection's TTLs are not rewrites:
`flows.against_order`.)"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hopcap.correlate.flows import MAX_HOPS, FlowB, Point, chains

SAMPLES = 200  # connections per pair of points looked at (the first ones)


Samples = dict[tuple[int, int], list[tuple[int, int]]]


def reversed_pairs(pts: list[Point], present: list[int], flows: list[FlowB]) -> list[str]:
    """What the verdict warns of pairs of adjacent present points whose TTLs say they were
    given in the wrong order (`ttl_samples`, `decide`)."""
    return decide(pts, ttl_samples(pts, present, flows))


def ttl_samples(pts: list[Point], present: list[int], flows: list[FlowB]) -> Samples:
    """Per pair of adjacent present points (a, b): the TTL decrements from a to b of the
    SYN and from b to a of the SYN-ACK of the first `SAMPLES` connections that crossed."""
    adjacent = set(pairwise(present))
    seen: Samples = {ab: [] for ab in adjacent}
    if not adjacent:
        return seen
    full = 0
    for f in chains(flows):
        legs = f.legs
        for j, hop in enumerate(f.hops):
            got = seen.get((hop.a, hop.b))
            if got is None or len(got) >= SAMPLES or hop.ended is not None or j + 1 >= len(legs):
                continue
            x, y = legs[j], legs[j + 1]
            if y.link == "proxied" or x.c is None or y.c is None or x.s is None or y.s is None:
                continue
            if not (x.c.syn and y.c.syn and x.s.synack and y.s.synack):
                continue
            ta, tb = pts[hop.a].table, pts[hop.b].table
            # (the SYN and the SYN-ACK: the first packet of each half, at both points)
            dc = int(ta.ttl[x.c.idx[0]]) - int(tb.ttl[y.c.idx[0]])  # c2s: a -> b
            ds = int(tb.ttl[y.s.idx[0]]) - int(ta.ttl[x.s.idx[0]])  # s2c: b -> a
            got.append((dc, ds))
            if len(got) == SAMPLES:
                full += 1
        if full == len(adjacent):
            break
    return seen


def decide(pts: list[Point], samples: Samples) -> list[str]:
    """The pairs of `samples` given in the wrong order (`reversed_pairs`)."""
    out: list[str] = []
    order = [p.name for p in pts]
    for a, b in sorted(samples):
        got = samples[(a, b)][:SAMPLES]
        if not got:
            continue
        pa, pb = pts[a], pts[b]
        one_host = pa.host == pb.host and bool(pa.iface) and bool(pb.iface)
        lo = -1 if one_host else -MAX_HOPS
        rises = [(dc, ds) for dc, ds in got if lo <= dc <= -1 and lo <= ds <= -1]
        if len(rises) * 10 < len(got) * 9:
            continue
        (dc, ds), _n = Counter(rises).most_common(1)[0]
        i, k = order.index(pa.name), order.index(pb.name)
        order[i], order[k] = order[k], order[i]
        out.append(
            f"points {pa.name} and {pb.name} look given in the wrong order: the TTL of their "
            f"connections rises from {pa.name} to {pb.name} in both directions (by {-dc} "
            f"client to server, by {-ds} server to client), which no path in this order "
            f"does (unless nearly every connection was opened from {pb.name}'s side); "
            f"the TTL is not taken as rewritten there"
        )
    if out:
        out.append(f"the order of points that fits the TTLs: {', '.join(order)}")
    return out
