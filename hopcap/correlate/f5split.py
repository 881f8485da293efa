"""One F5 BIG-IP capture holding both sides of its proxied connections (`0.0:nnnp`).

The usual capture on a BIG-IP is one tcpdump on `0.0:nnnp`: every VLAN, with TMM's
trailer after each packet. Both sides of every proxied connection are then in one file;
the correlator needs them as two points, like the two interfaces of any device. So,
before the engine runs (`hopcap.correlate.stages.plan_stages`), such a point is split:

    lb:client-side  the connections toward a virtual server
    lb:server-side  BIG-IP's own connections to pool members (and its monitors)

by the trailer's flow ids first: a flow whose id is another flow's peer id is one side of
that proxied connection, and of the two the flow that appeared first is the client side
(BIG-IP opens the server side after the client's connection arrived; a server-side flow
re-used for several client flows joins them all, as one component whose earliest flow is
a client flow). A packet takes the side of its flow. A connection without a pair in the
capture (an unanswered client, a monitor, packets without a trailer) goes by address:
toward an address that was a virtual server's on the client side, or from one of BIG-IP's
own addresses on the server side (a self IP, a SNAT address), or to a pool member, or from
a client. The two points are then linked exactly by the trailer (`link.f5_pairs`).

Only a point whose host has no other point in the path is split (several points of one
BIG-IP are its VLANs, already one side each), and only when a pair is found: a capture of
one VLAN with trailers is left as it is. An ordinary capture costs a look at its first
256 KiB.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.correlate.copies import remove_copies
from hopcap.correlate.dgram import take_rows as take_dgrams
from hopcap.correlate.f5trailer import probe_capture, read_table_trailers
from hopcap.correlate.reader import PacketTable, read_capture
from hopcap.model import PointInput

CLIENT_SIDE = "client-side"
SERVER_SIDE = "server-side"
_BOOL = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]
SAMPLE = 4  # packets whose trailers are read at each end of each direction of a connection
Addr = tuple[int, int, int]  # (IP version, high 64 bits, low 64 bits)


@dataclass
class F5Split:
    """How one BIG-IP capture was split (for the verdict's words)."""

    host: str
    given: str  # the point as given
    info: dict[str, str] | None  # the capture-information packet (version, command)
    client_conns: int = 0
    server_conns: int = 0
    paired: int = 0  # connections placed by their flow ids
    by_address: int = 0  # by address alone
    unplaced: int = 0  # neither: put on the client side
    client_dgrams: int = 0  # UDP, ICMP and ESP packets put on each side
    server_dgrams: int = 0

    def name(self, side: str) -> str:
        return f"{self.host}:{side}"


def split_f5(
    points: Sequence[PointInput], skip: frozenset[str] = frozenset()
) -> tuple[list[PointInput], dict[str, PacketTable], dict[str, F5Split]]:
    """The path with each one-capture BIG-IP point replaced by its two sides, their packet
    tables, and what was done. Points whose interface is in `skip` (stage captures) are
    never split."""
    hosts = Counter(_host(p)[0] for p in points)
    path: list[PointInput] = []
    tables: dict[str, PacketTable] = {}
    splits: dict[str, F5Split] = {}
    for p in points:
        host, iface = _host(p)
        if p.pcap is None or hosts[host] != 1 or iface in skip or not probe_capture(Path(p.pcap)):
            path.append(p)
            continue
        # exact copies removed from each side: a packet the BIG-IP passed on unchanged
        # (a FastL4 virtual server that keeps the TTL) is on both, its trailer tells them
        t = read_capture(Path(p.pcap), exact_copies=False)
        got = _sides(t, host, p.name)
        if got is None:  # trailers, but one side only: an ordinary point (read once)
            remove_copies(t)
            tables[p.name] = t
            path.append(p)
            continue
        client, dclient, split = got
        for side, m, dm in ((CLIENT_SIDE, client, dclient), (SERVER_SIDE, ~client, ~dclient)):
            name = split.name(side)
            tables[name] = take_rows(t, m, dm)
            remove_copies(tables[name])
            path.append(dataclasses.replace(p, name=name, pcap=None, host=host, interface=side))
        splits[host] = split
    return path, tables, splits


def _host(p: PointInput) -> tuple[str, str]:
    host, iface = PointInput.parse_name(p.name)
    return p.host or host, p.interface or iface


def take_rows(t: PacketTable, m: _BOOL, dm: _BOOL | None = None) -> PacketTable:
    """The rows `m` of `t` (and the datagram rows `dm` of `t.dgram`; None: no datagrams)
    as a table of their own, sharing its mapped file (whose record walk still finds the
    trailers of those rows)."""
    from hopcap.correlate.reader import row_columns

    cols = row_columns(t, m)
    dg = take_dgrams(t.dgram, dm) if dm is not None and t.dgram is not None else None
    # the side's packets: its TCP rows and datagrams (the rest of the file's records,
    # neither, stay uncounted on both sides)
    records = int(np.count_nonzero(m)) + (len(dg) if dg is not None else 0)
    return dataclasses.replace(t, records=records, warnings=list(t.warnings), dgram=dg, **cols)


def _conns(t: PacketTable) -> tuple[I64, I64, list[tuple[Addr, Addr]]]:
    """Each row's tuple (one direction) and connection (either direction of a tuple), and
    each connection's (client address, server address): the SYN's sender is the client;
    without a handshake the side with the lower port is the server."""
    from hopcap.correlate.reader import ACK, SYN
    from hopcap.correlate.stages import _keys

    keys = _keys(t)
    n = keys.shape[0]
    order = np.lexsort(keys.T[::-1])  # a sort per column: far cheaper than unique(axis=0)
    new = np.ones(n, bool)
    new[1:] = np.any(keys[order][1:] != keys[order][:-1], axis=1)
    tup_sorted = np.cumsum(new) - 1
    inv = np.empty(n, np.int64)
    inv[order] = tup_sorted
    uniq = keys[order[new]]
    flags = t.flags.astype(np.int64) & (SYN | ACK)
    syn = np.zeros(len(uniq), bool)
    syn[inv[flags == SYN]] = True
    synack = np.zeros(len(uniq), bool)
    synack[inv[flags == (SYN | ACK)]] = True
    conn_of: dict[tuple[int, ...], int] = {}
    ends: list[tuple[Addr, Addr]] = []
    tup_conn = np.zeros(len(uniq), np.int64)
    rows = uniq.tolist()
    index = {tuple(r): k for k, r in enumerate(rows)}
    for k, row in enumerate(rows):
        v, sh, sl, dh, dl, sp, dp = (int(x) for x in row)
        a, b = (sh, sl, sp), (dh, dl, dp)
        key = (v, *min(a, b), *max(a, b))
        cid = conn_of.get(key)
        if cid is not None:
            tup_conn[k] = cid
            continue
        cid = conn_of[key] = len(ends)
        tup_conn[k] = cid
        back = index.get((v, dh, dl, sh, sl, dp, sp))
        if syn[k] or (back is not None and synack[back]):
            c2s = True
        elif synack[k] or (back is not None and syn[back]):
            c2s = False
        else:
            c2s = dp < sp
        src, dst = (v, sh, sl), (v, dh, dl)
        ends.append((src, dst) if c2s else (dst, src))
    return inv, tup_conn[inv], ends


def _ends(group: I64, k: int) -> I64:
    """The first and last `k` rows of each group (rows in file order)."""
    order = np.argsort(group, kind="stable")
    g = group[order]
    start = np.searchsorted(g, g, "left")
    end = np.searchsorted(g, g, "right")
    pos = np.arange(g.shape[0]) - start
    keep = (pos < k) | (pos >= end - start - k)
    return np.sort(order[keep])


def _colour(
    flows: npt.NDArray[np.uint64], peers: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64]
) -> dict[int, bool]:
    """Flow id -> is it a client-side flow, for the flows that have a pair in the capture."""
    first: dict[int, int] = {}
    for f, t in zip(flows.tolist(), ts.tolist(), strict=True):
        if f not in first or t < first[f]:
            first[f] = t
    adj: dict[int, set[int]] = defaultdict(set)
    for f, p in set(zip(flows.tolist(), peers.tolist(), strict=True)):
        if p and p != f and p in first:
            adj[f].add(p)
            adj[p].add(f)
    client: dict[int, bool] = {}
    for start in sorted(adj, key=lambda f: first[f]):
        if start in client:
            continue
        client[start] = True  # the earliest flow of its component: a client flow
        todo = deque([start])
        while todo:
            f = todo.popleft()
            for p in adj[f]:
                if p not in client:
                    client[p] = not client[f]
                    todo.append(p)
    return client


def _sides(t: PacketTable, host: str, given: str) -> tuple[_BOOL, _BOOL, F5Split] | None:
    """Per TCP row and per datagram row: on the client side? None when the capture has no
    pair of flows.

    The trailers of the first and last packets of each direction of each connection say
    which flows it carried (the client side learns its peer once the server side exists):
    reading those keeps a long capture cheap. A connection whose packets belong to flows
    of both sides (a tuple BIG-IP did not change: fastL4) has all its trailers read.
    Datagrams (a UDP virtual server: DNS, syslog, RADIUS) have all theirs read."""
    tup, conn, ends = _conns(t)
    tt = read_table_trailers(t, _ends(tup, SAMPLE))
    dt = read_table_trailers(t, dgram=True)
    found = [x for x in (tt, dt) if x is not None and x.rows.shape[0]]
    if not found:
        return None
    d = t.dgram
    ts = [t.ts[tt.rows].astype(np.int64)] if tt is not None and tt.rows.shape[0] else []
    if dt is not None and dt.rows.shape[0]:
        ts.append(d.ts[dt.rows].astype(np.int64))
    colour = _colour(
        np.concatenate([x.flow for x in found]),
        np.concatenate([x.peer for x in found]),
        np.concatenate(ts),
    )
    if not colour:
        return None
    side = np.zeros(len(t), np.int8)  # 1 client side, -1 server side, 0 not known yet

    def mark(rows: I64, flows: npt.NDArray[np.uint64]) -> None:
        side[rows] = [(1 if colour[f] else -1) if f in colour else 0 for f in flows.tolist()]

    if tt is not None:
        mark(tt.rows, tt.flow)
    on_client = np.bincount(conn[side > 0], minlength=len(ends)) > 0
    both = on_client & (np.bincount(conn[side < 0], minlength=len(ends)) > 0)
    if both.any():
        more = read_table_trailers(t, np.nonzero(both[conn])[0])
        if more is not None:
            mark(more.rows, more.flow)
    votes = np.bincount(conn, weights=side, minlength=len(ends))
    split = F5Split(host, given, found[0].info)
    # by address: what the paired connections and datagram flows showed of each side
    sets = _Sides()
    for cid, (src, dst) in enumerate(ends):
        if votes[cid]:
            sets.add(src, dst, client=votes[cid] > 0)
    dside = np.zeros(len(d) if d is not None else 0, np.int8)
    if d is not None and dt is not None and dt.rows.shape[0]:
        first: dict[int, int] = {}
        for r, f in zip(dt.rows.tolist(), dt.flow.tolist(), strict=True):
            if f in colour:
                dside[r] = 1 if colour[f] else -1
                first.setdefault(f, r)
        for f, r in first.items():
            sets.add(_addr(d, r, "src"), _addr(d, r, "dst"), client=colour[f])
    conn_side = np.zeros(len(ends), np.int8)
    for cid, (src, dst) in enumerate(ends):
        if votes[cid]:
            conn_side[cid] = 1 if votes[cid] > 0 else -1
            split.paired += 1
            continue
        conn_side[cid] = sets.side(src, dst)
        if conn_side[cid]:
            split.by_address += 1
        else:
            conn_side[cid] = 1
            split.unplaced += 1
    split.client_conns = int(np.count_nonzero(conn_side > 0))
    split.server_conns = int(np.count_nonzero(conn_side < 0))
    # a packet of a flow with a pair goes with its flow (a tuple BIG-IP did not change,
    # fastL4, holds both flows); the others with their connection
    rows = np.where(side != 0, side, conn_side[conn])
    # a datagram without a paired flow id by its addresses (an ICMP error by those of the
    # packet it quotes); neither: the client side
    if d is not None:
        for r in np.nonzero(dside == 0)[0].tolist():
            at = "in_" if d.role[r] == 1 else ""
            src, dst = _addr(d, r, at + "src"), _addr(d, r, at + "dst")
            dside[r] = sets.side(src, dst, either=True) or 1
    dclient: _BOOL = dside > 0
    split.client_dgrams = int(np.count_nonzero(dclient))
    split.server_dgrams = int(dclient.shape[0] - split.client_dgrams)
    client: _BOOL = rows > 0
    return client, dclient, split


def _addr(d: Any, r: int, which: str) -> Addr:
    """(version, high, low) of the `which` address (`src`, `dst`, `in_src`, `in_dst`) of
    datagram row `r`: the form of `_conns`' ends."""
    v = int(d.in_v[r]) if which.startswith("in_") else int(d.v[r])
    return (v, int(getattr(d, which + "_hi")[r]), int(getattr(d, which + "_lo")[r]))


class _Sides:
    """The addresses each side's paired flows showed: clients and virtual servers on the
    client side, BIG-IP's own (self IPs, SNAT) and pool members on the server side."""

    def __init__(self) -> None:
        self.clients: set[Addr] = set()
        self.vips: set[Addr] = set()
        self.selfs: set[Addr] = set()
        self.members: set[Addr] = set()

    def add(self, src: Addr, dst: Addr, *, client: bool) -> None:
        if client:
            self.clients.add(src)
            self.vips.add(dst)
        else:
            self.selfs.add(src)
            self.members.add(dst)

    def side(self, src: Addr, dst: Addr, *, either: bool = False) -> int:
        """1 client side, -1 server side, 0 unknown, for a connection from `src` to `dst`
        (`either`: a packet that may go either way)."""
        for a, b in ((src, dst), (dst, src)) if either else ((src, dst),):
            if b in self.vips or a in self.clients:
                return 1
        for a, b in ((src, dst), (dst, src)) if either else ((src, dst),):
            if a in self.selfs or b in self.members:
                return -1
        return 0
