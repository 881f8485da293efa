"""Encrypted tunnels (WireGuard, OpenVPN, IPsec ESP): the inner packets on `tun0` and the
outer datagrams on `eth0` of one host, linked by timing and size.

The payload is encrypted, so nothing but time and length ties an outer datagram to the
inner packet it carries: on one host (one clock) a datagram that arrives on the outer
interface is decrypted and appears on the inner one within milliseconds, a few dozen bytes
shorter (header, IV/nonce, padding, authentication tag); the other way round an inner
packet leaves, encrypted, a moment later and a little longer. Two adjacent points of one
host where one carries an ESP flow, or a UDP flow that does not continue to the other
point, and the other carries packets that fit that pattern, are a tunnel endpoint:

- the outer flow's legs get `tunnel` ("esp" or "encrypted udp") and its hop into the
  endpoint is not a loss;
- an outer datagram that arrived on the outer point and whose inner packet never appeared
  on the inner one is a `drop` inside the host (the tunnel endpoint), and an inner packet
  that never left encrypted is one too;
- every inner flow that crossed the tunnel gets a leg at the outer point (link `tunnel`,
  the outer tuple, `tunnel` set).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from hopcap.correlate._fastwalk import greedy_pairs
from hopcap.correlate.dgram import ESP, UDP, DgramTable, describe
from hopcap.correlate.icmp import all_legs
from hopcap.correlate.reader import rows_last_ts
from hopcap.correlate.udp import DFlowB, dtable, is_local
from hopcap.model import Direction, Finding, FindingKind, Leg

if TYPE_CHECKING:
    from hopcap.correlate.findings import Built
    from hopcap.correlate.flows import FlowB, Point

I64 = npt.NDArray[np.int64]
NS = 1_000_000_000
WINDOW_NS = 50_000_000  # encryption/decryption delay allowed inside the endpoint
JITTER_NS = 200_000  # capture timestamps of two interfaces may be this far out of order
# outer payload minus inner IP packet, bytes: every encryption adds a header, an IV or
# nonce, padding and a tag (WireGuard 32-47, ESP 22 and up, OpenVPN 20 and up)
OVERHEAD = (16, 200)
SPREAD = 32  # the overhead of one tunnel varies by its padding only: pairs within this of
# the median, at least 80 % of them, or the lengths fit by chance
MIN_SHARE = 0.5  # of a direction's outer datagrams that must pair for a tunnel
MIN_DATAGRAMS = 4  # a UDP flow with fewer in both directions is no tunnel worth the search
SCAN = 256  # candidates looked at per datagram (a busy inner interface)


@dataclass
class Tunnel:
    outer: int  # point indices
    inner: int
    dflow: int  # index of the outer flow
    kind: str
    # inner packets carried: (is a datagram row, row) -> outer row
    carried: dict[tuple[bool, int], int] = field(default_factory=dict)


def inner_rows(p: Point) -> tuple[I64, I64, npt.NDArray[np.bool_], I64]:
    """Every packet at a point (TCP and datagrams): times, IP lengths, is-datagram, row."""
    t = p.table
    v4 = t.v == 4
    tcp_len = t.plen.astype(np.int64) + 20 + t.opt_len.astype(np.int64) + np.where(v4, 20, 40)
    d = dtable(p)
    if d is None:
        z = np.zeros(0, np.int64)
        d_ts, d_len, d_rows = z, z, z
    else:
        d_rows = np.nonzero(d.role >= 0)[0]
        d_ts, d_len = d.ts[d_rows], d.ip_len[d_rows]
    ts = np.concatenate([t.ts, d_ts])
    ln = np.concatenate([tcp_len, d_len])
    isd = np.concatenate([np.zeros(len(t), bool), np.ones(d_rows.shape[0], bool)])
    rows = np.concatenate([np.arange(len(t), dtype=np.int64), d_rows])
    o = np.argsort(ts, kind="stable")
    return ts[o], ln[o], isd[o], rows[o]


def _pair(
    first_ts: I64, first_len: I64, second_ts: I64, second_len: I64, outer_first: bool
) -> dict[int, int]:
    """Greedy, in time order: each `first` (i) takes the earliest free `second` (j) within
    the window after it whose length fits the tunnel overhead. Returns i -> j."""
    used = np.zeros(second_ts.shape[0], bool)
    return greedy(first_ts, first_len, second_ts, second_len, outer_first, used)[0]


def greedy(
    first_ts: I64,
    first_len: I64,
    second_ts: I64,
    second_len: I64,
    outer_first: bool,
    used: npt.NDArray[np.bool_],
) -> tuple[dict[int, int], int]:
    """`_pair` from a state: `used` (updated) marks the `second`s taken before; also
    returns the first `second` a later `first` can take (none before it is looked at
    again: time slices carry the state from there, `tunnelcut`). In C where it can be
    (`_fastwalk.greedy_pairs`: a step of the scan below is ~0.6 us of Python, and a busy
    endpoint's datagrams each scan ~100 candidates: 50 s for 200 k ESP datagrams)."""
    out: dict[int, int] = {}
    lo_ptr = 0
    n2 = second_ts.shape[0]
    if not n2:
        return out, lo_ptr  # (a direction without datagrams: every way of it streamed)
    fast = greedy_pairs(
        (first_ts, first_len), (second_ts, second_len), outer_first, used,
        (JITTER_NS, WINDOW_NS, SCAN, *OVERHEAD),
    )  # fmt: skip
    if fast is not None:
        js, lo_ptr = fast
        got = np.nonzero(js >= 0)[0]
        return dict(zip(got.tolist(), js[got].tolist(), strict=True)), lo_ptr
    for i in range(first_ts.shape[0]):
        t = int(first_ts[i])
        while lo_ptr < n2 and int(second_ts[lo_ptr]) < t - JITTER_NS:
            lo_ptr += 1
        j = lo_ptr
        stop = min(n2, lo_ptr + SCAN)
        while j < stop and int(second_ts[j]) <= t + WINDOW_NS:
            if not used[j]:
                ovh = (
                    int(first_len[i]) - int(second_len[j])
                    if outer_first
                    else int(second_len[j]) - int(first_len[i])
                )
                if OVERHEAD[0] <= ovh <= OVERHEAD[1]:
                    used[j] = True
                    out[i] = j
                    break
            j += 1
    return out, lo_ptr


# a tunnel decided over the whole run (time slices, `tunnelcut`): applies it to a slice's
# part of the outer flow instead of `_match`'s decisions
Decided = Callable[..., "Tunnel | None"]  # (pts, x, y, k, fl, tx, inner, taken, blind)


def find_tunnels(
    pts: list[Point],
    present: list[int],
    dflows: list[DFlowB],
    blind: Callable[[Point, int], str | None],
    decided: dict[tuple[int, int, int], Decided] | None = None,
) -> list[Tunnel]:
    """Tunnel endpoints between adjacent points of one host; adds the findings about
    them to the outer flows. `decided`: (outer flow, outer point, inner point) -> its
    decision made over the whole run (a time slice's part of a cut ESP flow)."""
    found: list[Tunnel] = []
    inner_cache: dict[int, tuple[I64, I64, npt.NDArray[np.bool_], I64]] = {}
    taken: dict[int, npt.NDArray[np.bool_]] = {}  # inner point -> packets already carried
    for a, b in pairwise(present):
        pa, pb = pts[a], pts[b]
        if not (pa.host == pb.host and pa.iface and pb.iface):
            continue
        for x, y in ((a, b), (b, a)):
            tx = dtable(pts[x])
            if tx is None:
                continue
            for k, fl in enumerate(dflows):
                leg = next((lg for lg in fl.legs if lg.point == x), None)
                if leg is None or leg.f.proto not in (UDP, ESP):
                    continue
                if any(lg.point == y for lg in fl.legs):
                    continue  # the flow itself goes on: not a tunnel here
                f = leg.f
                if f.proto == UDP and (
                    max(f.c.shape[0], f.s.shape[0]) < MIN_DATAGRAMS or is_local(f)
                ):
                    continue  # a DNS exchange, a broadcast: nothing a tunnel would carry
                if y not in inner_cache:
                    inner_cache[y] = inner_rows(pts[y])
                    taken[y] = np.zeros(inner_cache[y][0].shape[0], bool)
                how = _match if decided is None else decided.get((k, x, y), _match)
                tun = how(pts, x, y, k, fl, tx, inner_cache[y], taken[y], blind)
                if tun is not None:
                    found.append(tun)
    return found


def _match(
    pts: list[Point],
    x: int,
    y: int,
    k: int,
    fl: DFlowB,
    tx: DgramTable,
    inner: tuple[I64, I64, npt.NDArray[np.bool_], I64],
    taken: npt.NDArray[np.bool_],
    blind: Callable[[Point, int], str | None],
) -> Tunnel | None:
    leg = next(lg for lg in fl.legs if lg.point == x)
    f = leg.f
    its, ilen, isd, irow = inner
    # the inner packets of the outer flow's time, not carried by another tunnel yet
    lo = int(np.searchsorted(its, f.first_ts - WINDOW_NS - JITTER_NS, side="left"))
    hi = int(np.searchsorted(its, f.last_ts + WINDOW_NS + JITTER_NS, side="right"))
    fi = lo + np.nonzero(~taken[lo:hi])[0]
    f_ts, f_len = its[fi], ilen[fi]
    kind = "esp" if f.proto == ESP else "encrypted udp"
    results = []
    for d, rows in ((0, f.c), (1, f.s)):
        if rows.shape[0] == 0:
            continue
        o_ts, o_len = tx.ts[rows], tx.plen[rows]
        dec = _pair(o_ts, o_len, f_ts, f_len, True)  # outer arrives, inner follows
        enc = _pair(f_ts, f_len, o_ts, o_len, False)  # inner leaves, outer follows
        n_enc = len(enc)
        if len(dec) >= n_enc:
            results.append((d, rows, "dec", dec))
        else:
            results.append((d, rows, "enc", {j: i for i, j in enc.items()}))
    # each direction's pairs as arrays: outer index (into its rows), inner index (into fi)
    pairs = [(np.fromiter(m, np.int64, len(m)), np.fromiter(m.values(), np.int64, len(m)))
             for _d, _r, _w, m in results]  # fmt: skip
    ovh = np.concatenate(
        [tx.plen[r[oi]].astype(np.int64) - f_len[ii]
         for (_d, r, _w, _m), (oi, ii) in zip(results, pairs, strict=True)] or [f_len[:0]]
    )  # fmt: skip
    if ovh.shape[0]:
        med = float(np.median(ovh))
        if np.count_nonzero(np.abs(ovh - med) <= SPREAD) < 0.8 * ovh.shape[0]:
            return None
    share = max((len(m) / r.shape[0] for _d, r, _w, m in results), default=0.0)
    if share < MIN_SHARE or not any(len(m) >= 2 for _d, _r, _w, m in results):
        return None
    tun = Tunnel(x, y, k, kind)
    px, py = pts[x], pts[y]
    for (d, rows, way, _m), (oi, ii) in zip(results, pairs, strict=True):
        pos = fi[ii]
        taken[pos] = True
        keys = zip(isd[pos].tolist(), irow[pos].tolist(), strict=True)
        tun.carried.update(zip(keys, rows[oi].tolist(), strict=True))
        direction: Direction = "c2s" if d == 0 else "s2c"
        if way == "dec":
            left = np.ones(rows.shape[0], bool)
            left[oi] = False
            lost = rows[left].tolist()
            text = f"arrived on {px.name}, the inner packet never appeared on {py.name}"
            report_lost(fl, tx, direction, px, py, lost, blind, text)
    mark(fl, x, y, kind)
    return tun


def mark(fl: DFlowB, x: int, y: int, kind: str) -> None:
    """The outer flow `fl` of a tunnel between points `x` and `y`: its legs and hop."""
    for lg in fl.legs:
        lg.tunnel = kind
    for hop in fl.hops:
        if {hop.a, hop.b} == {x, y}:
            hop.ended = "tunnel"  # into the endpoint: what it decrypted is on the other point


def report_lost(
    fl: DFlowB,
    tx: DgramTable,
    direction: Direction,
    px: Point,
    py: Point,
    rows: list[int],
    blind: Callable[[Point, int], str | None],
    text: str,
) -> None:
    if not rows:
        return
    drop: list[int] = []
    gap: list[int] = []
    for r, t in zip(rows, tx.ts[rows].tolist(), strict=True):
        (gap if blind(py, t) else drop).append(r)
    kind: FindingKind
    for kind, rr in (("drop", drop), ("gap", gap)):
        if not rr:
            continue
        what, nb = describe(tx, rr)
        why = blind(py, int(tx.ts[rr[0]])) if kind == "gap" else None
        tail = f"; but {why}: cannot tell whether it was lost" if why else ""
        ts = (int(tx.ts[rr].min()) - px.offset_ns) / NS
        last = rows_last_ts(tx.ts, rr, px.offset_ns)
        fl.extra.append(
            Finding(
                kind,
                direction,
                (px.name, py.name),
                len(rr),
                nb,
                ts,
                f"{what}: {text}{tail}",
                last_ts=last,
            )
        )


def add_tunnel_legs(
    pts: list[Point],
    tunnels: list[Tunnel],
    tcp_flows: list[FlowB],
    tcp_built: list[Built],
    dflows: list[DFlowB],
    d_built: list[Built],
    removed: dict[int, tuple[Finding, ...]] | None = None,
) -> None:
    """Every inner flow carried by a tunnel gets a leg at the tunnel's outer point.
    `removed`: where to note, by `id` of the flow, the gaps `into_tunnel` took away."""
    for tun in tunnels:
        outer = dflows[tun.dflow].legs
        oleg = next(lg for lg in outer if lg.point == tun.outer)
        leg = Leg(point=pts[tun.outer].name, tuple=oleg.f.tuple_str, link="tunnel", tunnel=tun.kind)
        hit_t: set[int] = set()
        hit_d: set[int] = set()
        for i, f in enumerate(tcp_flows):
            for lg in all_legs(f):
                if lg.point != tun.inner:
                    continue
                for h in (lg.c, lg.s):
                    if h is not None and any((False, int(r)) in tun.carried for r in h.idx[:64]):
                        hit_t.add(i)
        for i, df in enumerate(dflows):
            for dl in df.legs:
                if dl.point == tun.inner and any(
                    (True, int(r)) in tun.carried for r in np.concatenate([dl.f.c, dl.f.s])[:64]
                ):
                    hit_d.add(i)
        for built, hits in ((tcp_built, hit_t), (d_built, hit_d)):
            for i in hits:
                b = built[i]
                names = [lg.point for lg in b.legs]
                at = names.index(pts[tun.inner].name)
                pos = at if tun.outer < tun.inner else at + 1
                b.legs = (*b.legs[:pos], leg, *b.legs[pos:])
                if tun.inner < tun.outer:
                    gone = into_tunnel(b, names, at, pts[tun.outer].name, tun.kind)
                    if removed is not None and gone:
                        removed[id(b)] = removed.get(id(b), ()) + gone
                    b.tunnel_out = (tun.dflow, tun.outer)
                else:
                    b.tunnel_in = (tun.dflow, tun.outer)


def into_tunnel(b: Built, names: list[str], at: int, outer: str, kind: str) -> tuple[Finding, ...]:
    """A flow that went into a tunnel at point `outer` after its leg `at` (of its legs'
    points `names`, without the tunnel's): the outer point not seeing it plain is no gap
    (those it takes away: a time slice's cut flow is summed up again after the merge)."""
    kept = tuple(
        f
        for f in b.findings
        if not (f.kind == "gap" and f.between == (names[at], outer) and "at all" in f.what)
    )
    gone = tuple(f for f in b.findings if f not in kept)
    if gone:
        b.findings = kept
        if b.summary.startswith("incomplete evidence") and not kept:
            b.summary = (
                f"OK: into the {kind} tunnel at {outer} (through {' -> '.join(names[: at + 1])})"
            )
    return gone


def join_across_tunnels(flows: list[Built]) -> list[Built]:
    """One inner connection seen on both sides of a tunnel (into it at one host, out of it
    at another, the same outer flow) is one flow: its legs on both sides, in path order."""
    ends: dict[tuple[int, str, str], list[int]] = {}
    for i, b in enumerate(flows):
        if b.tunnel_in is not None:
            ends.setdefault((b.tunnel_in[0], b.client, b.server), []).append(i)
    gone: set[int] = set()
    for i, b in enumerate(flows):
        if b.tunnel_out is None or i in gone:
            continue
        for j in ends.get((b.tunnel_out[0], b.client, b.server), []):
            o = flows[j]
            assert o.tunnel_in is not None
            if j in gone or j == i or o.tunnel_in[1] <= b.tunnel_out[1]:
                continue
            if (
                o.first_ts is not None
                and b.first_ts is not None
                and abs(o.first_ts - b.first_ts) > 60
            ):
                continue
            gone.add(j)
            b.legs = (*b.legs, *o.legs)
            b.findings = (*b.findings, *o.findings)
            path = " -> ".join(lg.point for lg in b.legs)
            if o.summary.startswith("OK") and (b.summary.startswith("OK") or not b.findings):
                tun = ", ".join(lg.point for lg in b.legs if lg.link == "tunnel")
                b.summary = f"OK: delivered both ways through {path} (tunnel at {tun})"
            elif not o.summary.startswith("OK"):
                b.summary = o.summary
            b.tunnel_out = None
            break
    return [b for k, b in enumerate(flows) if k not in gone]
