"""A proxy's connections split into exchanges, and front exchanges matched to backend ones
by content, all connections at once on columns (`link.exchanges_of`, `link._by_content`),
give exactly what the per-connection and per-pair loops they replaced gave (kept here as
the reference): on random connections with retransmissions (other bytes, too), overlaps,
holes, payload captured short, pipelined requests, a server that speaks first, sequence
numbers that wrap, one direction missing; and on random candidates whose times and
shares tie."""

from __future__ import annotations

import bisect
import dataclasses
import random
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hopcap.correlate import _fastwalk
from hopcap.correlate import link as L
from hopcap.correlate.conns import Conn, Half, PointConns

M32 = 0xFFFFFFFF


# ------------------------------------------------------------------- the reference


def _ref_offsets(pc: Any, h: Half | None) -> tuple[Any, ...]:
    t = pc.table
    if h is None:
        z = np.zeros(0, np.int64)
        return z, z, z, z
    rows = h.idx[t.plen[h.idx] > 0]
    off = (t.seq[rows].astype(np.int64) - L.stream_base(h)) & M32
    off = np.where(off >= 1 << 31, off - (1 << 32), off)
    return rows, off, t.plen[rows].astype(np.int64), t.ts[rows].astype(np.int64)


def _ref_assemble(pc: Any, rows: Any, off: Any, lo: int, hi: int) -> tuple[bytes, bool]:
    i0 = int(np.searchsorted(off, lo, "left"))
    i1 = int(np.searchsorted(off, hi, "left"))
    out = bytearray()
    pos = lo
    if i0 > 0:
        i0 -= 1
    for i in range(i0, i1):
        o = int(off[i])
        if o > pos:
            return bytes(out), True
        seg = pc.table.payload(int(rows[i]))
        if o + len(seg) <= pos:
            continue
        out += seg[pos - o : hi - o]
        pos = o + len(seg)
        if pos >= hi:
            break
    return bytes(out), pos < hi


def ref_exchanges(pc: Any, conn: Conn, limit: int) -> L.ConnExchanges:
    """`conn_exchanges` as it was, one connection at a time."""
    rc, oc, lc, tc = _ref_offsets(pc, conn.c)
    rs, os_, ls, ts = _ref_offsets(pc, conn.s)
    d = np.concatenate([np.zeros(rc.shape[0], np.int64), np.ones(rs.shape[0], np.int64)])
    order = np.argsort(np.concatenate([tc, ts]), kind="stable")
    d = d[order]
    times = np.concatenate([tc, ts])[order]
    ends = np.concatenate([oc + lc, os_ + ls])[order]
    run_c = np.maximum.accumulate(np.where(d == 0, ends, 0)) if d.shape[0] else d
    run_s = np.maximum.accumulate(np.where(d == 1, ends, 0)) if d.shape[0] else d
    prev_c = np.concatenate([[0], run_c[:-1]]).astype(np.int64)
    prev_s = np.concatenate([[0], run_s[:-1]]).astype(np.int64)
    new = np.nonzero(np.where(d == 0, ends > prev_c, ends > prev_s))[0]
    dn = d[new]
    turn = (dn == 0) & (np.concatenate([[0], dn[:-1]]) == 1)
    at = new[turn]
    bc = [0, *prev_c[at].tolist()]
    bs = [0, *prev_s[at].tolist()]
    exn = np.cumsum(turn)
    t_c: list[int | None] = [None] * len(bc)
    t_s: list[int | None] = [None] * len(bc)
    tn = times[new]
    for di, firsts in ((0, t_c), (1, t_s)):
        m = dn == di
        ks, first = np.unique(exn[m], return_index=True)
        for k, tm in zip(ks.tolist(), tn[m][first].tolist(), strict=True):
            firsts[k] = tm
    max_c = int(run_c[-1]) if d.shape[0] else 0
    max_s = int(run_s[-1]) if d.shape[0] else 0

    def checkpoints(run: Any, lo: int, hi: int, h: Half | None, cut: bool) -> Any:
        # when the stream first got beyond each of its bytes at CP_AT, where it is
        # seen whole from its first byte on after a SYN
        if hi - lo <= L.CP_STEP or h is None or not h.syn or cut:
            return None
        out = []
        for at in L.CP_AT.tolist():
            q = lo + at
            if q >= hi:
                break
            i = next((i for i, r in enumerate(run.tolist()) if r > q), None)
            out.append(-1 if i is None else int(times[i]))
        return np.array(out, np.int64)

    ordc, ords = np.argsort(oc, kind="stable"), np.argsort(os_, kind="stable")
    rc, oc, rs, os_ = rc[ordc], oc[ordc], rs[ords], os_[ords]
    ex = []
    n = len(bc)
    for k in range(n):
        c_lo, c_hi = bc[k], (bc[k + 1] if k + 1 < n else max(max_c, bc[k]))
        s_lo, s_hi = bs[k], (bs[k + 1] if k + 1 < n else max(max_s, bs[k]))
        dc, cut_c = _ref_assemble(pc, rc, oc, c_lo, min(c_hi, c_lo + limit))
        ds, cut_s = _ref_assemble(pc, rs, os_, s_lo, min(s_hi, s_lo + limit))
        ex.append(
            L.Exchange(
                (c_lo, c_hi), (s_lo, s_hi), t_c[k], t_s[k],
                L._trimmed_chunks(dc, cut_c or c_hi > c_lo + limit),
                L._trimmed_chunks(ds, cut_s or s_hi > s_lo + limit),
                checkpoints(run_c, c_lo, c_hi, conn.c, cut_c),
                checkpoints(run_s, s_lo, s_hi, conn.s, cut_s),
            )
        )  # fmt: skip
    return L.ConnExchanges(conn.cid, L.stream_base(conn.c), L.stream_base(conn.s), ex)


def ref_by_content(
    a: Any, b: Any, bex: list[tuple[int, int, int]], fex_t: list[tuple[int, int, int, int]],
    offset_ns: int, tol_ns: int,
) -> tuple[tuple[dict[Any, Any], ...], list[tuple[Any, ...]]]:  # fmt: skip
    """`plan_proxied`'s loop over candidate pairs (best first: the larger share, then the
    shorter relay through the proxy), before `_augment`; and the candidates, best first."""
    btimes = [x[0] for x in bex]
    contents: dict[Any, int] = {}

    def content_id(e: L.Exchange) -> int:
        return contents.setdefault((tuple(e.ch_c), tuple(e.ch_s)), len(contents))

    bids = [content_id(b.exchanges[bcid].ex[bk]) for _t, bcid, bk in bex]
    # the backend exchanges with an answer, by when it came (on a's clock)
    by_s = sorted(
        (b.exchanges[bcid].ex[bk].t_s - offset_ns, j)
        for j, (_t, bcid, bk) in enumerate(bex)
        if b.exchanges[bcid].ex[bk].t_s is not None
    )
    shared: dict[tuple[int, int], int] = {}
    cands = []
    for start, fcid, fk, hi in fex_t:
        fe = a.exchanges[fcid].ex[fk]
        set_c, set_s = set(fe.ch_c), set(fe.ch_s)
        total = sum(len(x) for x in set_c) + sum(len(x) for x in set_s)
        fc, fs = fe.t_c, fe.t_s
        if total == 0:
            continue
        i0 = bisect.bisect_left(btimes, start - tol_ns)
        i1 = min(bisect.bisect_right(btimes, hi), i0 + L.MAX_CANDIDATES)
        near = set(range(i0, i1))
        if fs is not None:
            # ... and those whose answers came last before its own (`_answered_last`)
            e1 = bisect.bisect_right(by_s, (fs + tol_ns, len(bex)))
            near |= {
                j for _ts, j in by_s[max(e1 - L.MAX_CANDIDATES, 0) : e1]
                if start - tol_ns <= btimes[j] <= hi
            }  # fmt: skip
        fid = content_id(fe)
        for j in sorted(near):
            _t, bcid, bk = bex[j]
            be = b.exchanges[bcid].ex[bk]
            common = shared.get((fid, bids[j]), -1)
            if common < 0:
                common = shared[(fid, bids[j])] = sum(
                    len(x) for x in set_c.intersection(be.ch_c)
                ) + sum(len(x) for x in set_s.intersection(be.ch_s))
            if common < 8 or common / total < 0.5:
                continue
            bc, bs = be.t_c, be.t_s
            if fc is not None and bc is not None and bc - offset_ns < fc - tol_ns:
                continue
            if fs is not None and bs is not None and bs - offset_ns > fs + tol_ns:
                continue
            # the relay through the proxy: the answer's, else the request's
            dt = (
                abs(bs - offset_ns - fs)
                if fs is not None and bs is not None
                else abs(be.t - offset_ns - start)
            )
            cands.append((round(common / total, 2), -dt, fcid, fk, bcid, bk))
    cands.sort(reverse=True)
    owner: dict[Any, Any] = {}
    taken: dict[Any, Any] = {}
    score: dict[Any, float] = {}
    for sc, _ndt, fcid, fk, bcid, bk in cands:
        if (fcid, fk) in taken or (bcid, bk) in owner:
            continue
        taken[(fcid, fk)] = (bcid, bk)
        owner[(bcid, bk)] = (fcid, fk)
        score[(bcid, bk)] = sc
    return (owner, taken, score), cands


def ref_max_pairs(cands: list[tuple[Any, ...]]) -> int:
    """How many (front, backend) pairs the candidates allow at most, each exchange in one
    pair (a maximum bipartite matching, augmenting paths one front at a time)."""
    adj: dict[Any, list[Any]] = {}
    for _sc, _ndt, fcid, fk, bcid, bk in cands:
        adj.setdefault((fcid, fk), []).append((bcid, bk))
    of_b: dict[Any, Any] = {}

    def grow(x: Any, seen: set[Any]) -> bool:
        for y in adj[x]:
            if y in seen:
                continue
            seen.add(y)
            if y not in of_b or grow(of_b[y], seen):
                of_b[y] = x
                return True
        return False

    return sum(grow(x, set()) for x in adj)


# ------------------------------------------------------------------- random connections

WORDS = [b"GET", b"/index.html", b"HTTP/1.1", b"Host:", b"www.example.test", b"Accept:",
         b"*/*", b"X-Forwarded-For:", b"10.0.0.1", b"200", b"OK", b"<p>page</p>"]  # fmt: skip


def _text(rng: random.Random, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        if rng.random() < 0.1:
            out += bytes(rng.randrange(33, 127) for _ in range(rng.randrange(40, 400)))
        else:
            out += b" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
        out += b"\r\n" if rng.random() < 0.9 else b"\n"
    return bytes(out[:n])


class _Table:
    """What exchanges read of a PacketTable: seq, plen, ts and the captured payloads."""

    def __init__(self, pkts: list[tuple[int, int, int, bytes]]) -> None:
        # pkts: (ts, seq, plen, captured bytes), in capture order
        self.buf = b"".join(p[3] for p in pkts)
        caps = np.array([len(p[3]) for p in pkts], np.int64)
        self.pl_cap = caps
        self.pl_off = np.cumsum(caps) - caps
        self.ts = np.array([p[0] for p in pkts], np.int64)
        self.seq = np.array([p[1] for p in pkts], np.int64)
        self.plen = np.array([p[2] for p in pkts], np.int64)

    def payload(self, i: int) -> bytes:
        o, n = int(self.pl_off[i]), int(self.pl_cap[i])
        return self.buf[o : o + n]


def _conn_packets(rng: random.Random, t0: int) -> list[tuple[int, int, int, int, bytes]]:
    """(ts, direction, seq offset, plen, captured bytes) of one connection's packets."""
    out: list[tuple[int, int, int, int, bytes]] = []
    t = t0
    pos = [0, 0]
    streams = [b"", b""]
    server_first = rng.random() < 0.1
    for k in range(rng.randrange(0, 5)):
        for d in (1, 0, 1) if server_first and k == 0 else (0, 1):
            parts = 2 if d == 0 and rng.random() < 0.15 else 1  # pipelined requests
            for _ in range(parts):
                n = rng.choice([0, 1, 20, 90, 300, 1500, 5000])
                data = _text(rng, n)
                streams[d] += data
                i = 0
                while i < n:
                    size = min(rng.choice([1, 7, 100, 536, 1448]), n - i)
                    t += rng.choice([0, 0, 1, 5])  # ties between directions too
                    seg = data[i : i + size]
                    r = rng.random()
                    if r < 0.05:
                        i += size  # lost: a hole
                        continue
                    cap = seg if rng.random() > 0.05 else seg[: rng.randrange(0, size + 1)]
                    out.append((t, d, pos[d] + i, size, cap))
                    if r < 0.12:  # retransmitted (sometimes other bytes, sometimes more)
                        back = rng.randrange(0, i + 1)
                        more = min(size + rng.randrange(0, 200), n - back)
                        again = data[back : back + more]
                        if rng.random() < 0.3:
                            again = bytes(reversed(again))
                        out.append((t + 3, d, pos[d] + back, len(again), again))
                    if rng.random() < 0.2:  # a pure ACK the other way
                        out.append((t, 1 - d, pos[1 - d], 0, b""))
                    i += size
                pos[d] += n
    rng.shuffle(out) if rng.random() < 0.1 else None  # reordered
    return out


def random_point(seed: int, n: int) -> PointConns:
    rng = random.Random(seed)
    per_half: list[list[tuple[int, int, int, bytes]]] = []
    meta = []
    for i in range(n):
        pk = _conn_packets(rng, 1_000 * i + rng.randrange(0, 3_000))
        isn = [rng.choice([rng.randrange(0, 1 << 32), M32 - rng.randrange(0, 3000)])
               for _ in range(2)]  # fmt: skip
        syn = [rng.random() < 0.7, rng.random() < 0.7]
        has = [True, True]
        if rng.random() < 0.1:
            has[rng.randrange(2)] = False
        for d in (0, 1):
            base = (isn[d] + 1) & M32 if syn[d] else isn[d]
            rows = [(t, (base + o) & M32, plen, cap) for t, dd, o, plen, cap in pk if dd == d]
            per_half.append(rows if has[d] else [])
        meta.append((isn, syn, has))
    # one table, packets in time order (a half's rows in that order)
    tagged = [(p[0], k, j, p) for k, rows in enumerate(per_half) for j, p in enumerate(rows)]
    tagged.sort(key=lambda x: (x[0], x[1], x[2]))
    table = _Table([x[3] for x in tagged])
    idx: list[list[int]] = [[] for _ in per_half]
    for row, (_t, k, _j, _p) in enumerate(tagged):
        idx[k].append(row)
    halves: list[Half] = []
    conns: list[Conn] = []
    for i, (isn, syn, has) in enumerate(meta):
        hs: list[Half | None] = []
        for d in (0, 1):
            if not has[d]:
                hs.append(None)
                continue
            rows = np.array(idx[2 * i + d], np.int64)
            h = Half(len(halves), rows, 0, 0, 4, (0, 1), (0, 2), 1, 2, syn[d], False, isn[d],
                     0, 0, False, conn=i)  # fmt: skip
            halves.append(h)
            hs.append(h)
        conns.append(Conn(i, hs[0], hs[1]))
    return PointConns(table=table, halves=halves, conns=conns)  # type: ignore[arg-type]


def _with_cols(pc: PointConns) -> PointConns:
    """The same point with its rows by half in columns (`_half_rows`' usual path)."""
    lens = np.array([h.idx.shape[0] for h in pc.halves], np.int64)
    pc.order = np.concatenate([h.idx for h in pc.halves]) if pc.halves else np.zeros(0, np.int64)
    start = np.cumsum(lens) - lens
    pc.cols = SimpleNamespace(start=start, end=start + lens)  # type: ignore[assignment]
    return pc


def _checkpoints_of(cxs: list[L.ConnExchanges]) -> list[Any]:
    return [
        [None if x is None else x.tolist() for x in (e.cp_c, e.cp_s)] for cx in cxs for e in cx.ex
    ]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("limit", [16384, 64])
def test_exchanges_of_as_one_by_one(seed: int, limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # checkpoints of a long request or response at 0, 700, ... 3000 bytes from its start (the
    # random streams are a few kB long)
    monkeypatch.setattr(L, "CP_STEP", 700)
    monkeypatch.setattr(L, "CP_AT", np.array([0, 700, 1400, 2100, 3000], np.int64))
    pc = random_point(seed, 60)
    want = [ref_exchanges(pc, c, limit) for c in pc.conns]
    assert sum(len(x.ex) for x in want) > 60  # keep-alive turns, not only one a connection
    cps = _checkpoints_of(want)
    assert sum(x is not None for e in cps for x in e) > 10
    assert any(len(x) < 5 for e in cps for x in e if x is not None)  # shorter than 5 steps
    for cols in (False, True):
        for compiled in (True, False):
            p = random_point(seed, 60)
            if cols:
                _with_cols(p)
            _fastwalk.disabled = not compiled
            try:
                got = L.exchanges_of(p, p.conns, limit)
            finally:
                _fastwalk.disabled = False
            assert got == want
            assert _checkpoints_of(got) == cps
    # one at a time (and from the cache)
    p = random_point(seed, 60)
    assert [L.conn_exchanges(p, c, limit) for c in p.conns] == want
    assert L.exchanges_of(p, p.conns[::-1], limit) == want[::-1]


def test_cut_windows_seen() -> None:
    """The random connections hit the cases of the reassembly: streams cut short (a hole
    or a packet captured short), windows cut at the limit, retransmissions that overlap."""
    cut = long = overlaps = 0
    for seed in range(12):
        pc = random_point(seed, 60)
        for c in pc.conns:
            for h in (c.c, c.s):
                rows, off, ln, _t = _ref_offsets(pc, h)
                o = np.argsort(off, kind="stable")
                rows, off, ln = rows[o], off[o], ln[o]
                if off.shape[0]:
                    cut += _ref_assemble(pc, rows, off, 0, int((off + ln).max()))[1]
                    overlaps += int(np.any(off[1:] < (off + ln)[:-1]))
            long += sum(e.c[1] - e.c[0] > 64 for e in ref_exchanges(pc, c, 64).ex)
    assert cut > 10 and long > 10 and overlaps > 10


# ------------------------------------------------------------------- matching by content


def _random_exchanges(rng: random.Random, n: int, pool: list[list[bytes]]) -> dict[int, Any]:
    out = {}
    for cid in range(n):
        ex = []
        for _ in range(rng.randrange(1, 4)):
            tc = rng.choice([None, rng.randrange(0, 40)])
            ts = rng.choice([None, rng.randrange(0, 40)]) if tc is not None else rng.randrange(40)
            ex.append(L.Exchange((0, 0), (0, 0), tc, ts, rng.choice(pool), rng.choice(pool)))
        out[cid] = L.ConnExchanges(cid, 0, 0, ex)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_by_content_as_the_pair_loop(seed: int) -> None:
    rng = random.Random(seed)
    chunks = [b"GET /a HTTP/1.1", b"host: x", b"x-forwarded-for: 10.0.0.1", b"200 OK", b"ab",
              b"<p>page 1</p>", b"<p>page 2</p>", b"accept: */*"]  # fmt: skip
    pool = [rng.sample(chunks, rng.randrange(0, 5)) for _ in range(12)]
    a = SimpleNamespace(exchanges=_random_exchanges(rng, 30, pool))
    b = SimpleNamespace(exchanges=_random_exchanges(rng, 80, pool))
    offset, tol = rng.choice([0, 3]), rng.choice([0, 2])
    bex = sorted(
        (e.t - offset, cid, k)
        for cid, cx in b.exchanges.items()
        for k, e in enumerate(cx.ex)
        if rng.random() < 0.9
    )
    fex_t = [
        (e.t, cid, k, (e.t_s + tol) if e.t_s is not None else e.t + rng.randrange(0, 20))
        for cid, cx in a.exchanges.items()
        for k, e in enumerate(cx.ex)
    ]
    want, cands = ref_by_content(a, b, bex, fex_t, offset, tol)
    got = L._by_content(a, b, bex, fex_t, offset, tol)  # type: ignore[arg-type]
    assert len(want[0]) > 5
    owner, taken, score = got
    # as many pairs as the candidates allow, each a candidate with its share as its score;
    # every front the loop paired still paired (`_augment` passes backends along chains)
    best = {(c[4], c[5], c[2], c[3]): c[0] for c in cands}
    assert len(owner) == ref_max_pairs(cands) >= len(want[0])
    assert all(score[bk] == best[(*bk, *fk)] for bk, fk in owner.items())
    assert {v: k for k, v in owner.items()} == taken and set(want[1]) <= set(taken)
    # taken in the loop's order (the plan's dicts are read in that order)
    rank = {key: i for i, key in enumerate(best)}
    assert [rank[(*bk, *fk)] for bk, fk in owner.items()] == sorted(
        rank[(*bk, *fk)] for bk, fk in owner.items()
    )
    if len(want[0]) == len(owner):
        # nothing to complete: the same pairs as the loop's
        assert [list(x.items()) for x in got] == [list(x.items()) for x in want]


def test_the_same_request_at_once_each_front_keeps_its_backend() -> None:
    """Two clients send the same request at nearly the same time (a load test, clients
    behind one NAT): by the shortest relay, front 0 takes backend 0, the only one front 1
    can have (backend 1's request left before front 1's arrived); each gets its own, none
    is left unpaired (was: front 1 "answered by the proxy itself", and backend 1 later
    taken as a pipelined request of front 0)."""
    ms = 1_000_000
    req, resp = [b"GET /big.bin HTTP/1.1", b"host: x"], [b"HTTP/1.1 200 OK", b"<p>page</p>"]

    def conns(*times: tuple[int, int]) -> dict[int, Any]:
        return {
            cid: L.ConnExchanges(cid, 0, 0, [L.Exchange((0, 40), (0, 999), tc * ms, ts * ms,
                                                        req, resp)])
            for cid, (tc, ts) in enumerate(times)
        }  # fmt: skip

    a = SimpleNamespace(exchanges=conns((0, 200), (40, 300)))
    b = SimpleNamespace(exchanges=conns((50, 190), (20, 100)))
    bex = sorted((e.t, cid, 0) for cid, cx in b.exchanges.items() for e in cx.ex)
    fex_t = [(e.t, cid, 0, e.t_s) for cid, cx in a.exchanges.items() for e in cx.ex]
    (_owner, taken, _score), _cands = ref_by_content(a, b, bex, fex_t, 0, 0)
    assert taken == {(0, 0): (0, 0)}  # (the shortest relay first)
    owner, taken, score = L._by_content(a, b, bex, fex_t, 0, 0)  # type: ignore[arg-type]
    assert taken == {(0, 0): (1, 0), (1, 0): (0, 0)}
    assert owner == {(1, 0): (0, 0), (0, 0): (1, 0)} and set(score.values()) == {1.0}


def test_a_backend_connection_opened_late_on_a_busy_proxy() -> None:
    """The proxy's backend connection for a request opened a second late (its first SYN
    lost), after more than MAX_CANDIDATES other backend exchanges had begun: still the
    request's, by its answer relayed at once (was: the request "answered by the proxy
    itself" and the backend connection a flow of its own)."""
    ms = 1_000_000
    req, resp = [b"GET /big.bin HTTP/1.1", b"host: x"], [b"HTTP/1.1 200 OK", b"<p>page</p>"]
    other = ([b"GET /other HTTP/1.1", b"host: y"], [b"HTTP/1.1 404 Not Found"])
    fe = L.Exchange((0, 40), (0, 999), 0, 1002 * ms, req, resp)
    busy = [L.Exchange((0, 9), (0, 9), (1 + k) * ms, (2 + k) * ms, *other) for k in range(150)]
    late = L.Exchange((0, 40), (0, 999), 1000 * ms, 1001 * ms, req, resp)
    a = SimpleNamespace(exchanges={0: L.ConnExchanges(0, 0, 0, [fe])})
    b = SimpleNamespace(exchanges={k: L.ConnExchanges(k, 0, 0, [e]) for k, e in
                                   enumerate([*busy, late])})  # fmt: skip
    bex = sorted((e.t, cid, 0) for cid, cx in b.exchanges.items() for e in cx.ex)
    fex_t = [(0, 0, 0, 1002 * ms)]
    owner, taken, _score = L._by_content(a, b, bex, fex_t, 0, 0)  # type: ignore[arg-type]
    assert taken == {(0, 0): (150, 0)} and owner == {(150, 0): (0, 0)}


def test_a_request_seen_once_is_not_pipelined_with_a_copy_it_did_not_send() -> None:
    """A backend exchange left over with the same request as a front exchange that one
    backend exchange already answered whole (another client's, not captured at the front)
    is not that front's second, pipelined request: the answers would not fit its own."""
    assert L._fits(1000, 1000) and L._fits(1100, 1000) and L._fits(2000, 1960)
    assert not L._fits(2000, 1000) and not L._fits(400, 200)
    ms = 1_000_000
    req, resp = [b"GET /big.bin HTTP/1.1", b"host: x"], [b"HTTP/1.1 200 OK", b"<p>page</p>"]
    fe = L.Exchange((0, 40), (0, 1000), 0, 200 * ms, req, resp)
    mine = L.Exchange((0, 60), (0, 1000), 50 * ms, 150 * ms, req, resp)
    other = L.Exchange((0, 60), (0, 1000), 60 * ms, 160 * ms, req, resp)
    front = SimpleNamespace(cid=0, first_ts=0, last_ts=400 * ms)
    a = SimpleNamespace(exchanges={0: L.ConnExchanges(0, 0, 0, [fe])}, conns=[front])
    b = SimpleNamespace(exchanges={0: L.ConnExchanges(0, 0, 0, [mine]),
                                   1: L.ConnExchanges(1, 0, 0, [other])})  # fmt: skip
    bex = [(50 * ms, 0, 0), (60 * ms, 1, 0)]
    fex_t = [(0, 0, 0, 200 * ms)]
    owner = {(0, 0): (0, 0)}
    score = {(0, 0): 1.0}
    L._plan_pipelined(a, b, bex, fex_t, owner, score, 0, 0)  # type: ignore[arg-type]
    assert owner == {(0, 0): (0, 0)}
    # two answers in the front's one (pipelined requests): the second joins it
    a.exchanges[0].ex[0] = L.Exchange((0, 80), (0, 2000), 0, 200 * ms, req, resp)
    L._plan_pipelined(a, b, bex, fex_t, owner, score, 0, 0)  # type: ignore[arg-type]
    assert owner == {(0, 0): (0, 0), (1, 0): (0, 0)}


def _download(tc: int, ts: int, head: list[int]) -> L.Exchange:
    """A long download's exchange: its request at `tc`, and its answer's bytes CP_STEP
    apart from the first (at `ts`) first seen at `head` (ms)."""
    ms = 1_000_000
    req, resp = [b"GET /big.bin HTTP/1.1", b"host: x"], [b"HTTP/1.1 200 OK", b"<p>page</p>"]
    cp = np.array([x * ms for x in (ts, *head)], np.int64)
    size = 10 * L.CP_STEP
    return L.Exchange((0, 40), (0, size), tc * ms, ts * ms, req, resp, None, cp)


def test_identical_downloads_told_apart_by_their_progress() -> None:
    """Two clients download the same file at once through a proxy; the first bytes of
    both answers came through together, so the shortest relay of the first byte pairs
    front 0 with backend 1. But backend 1's answer was slow (its last bytes came late):
    the proxy could not have sent front 0 its last bytes before they arrived. Each byte of
    an answer reaches the proxy before it leaves it: front 0 gets backend 0, front 1
    backend 1."""
    a = SimpleNamespace(exchanges={
        0: L.ConnExchanges(0, 0, 0, [_download(0, 10, [35, 40, 45, 50])]),
        1: L.ConnExchanges(1, 0, 0, [_download(1, 11, [60, 70, 80, 90])]),
    })  # fmt: skip
    b = SimpleNamespace(exchanges={
        0: L.ConnExchanges(0, 0, 0, [_download(2, 9, [34, 39, 44, 49])]),
        1: L.ConnExchanges(1, 0, 0, [_download(2, 10, [59, 69, 79, 89])]),
    })  # fmt: skip
    bex = sorted((e.t, cid, 0) for cid, cx in b.exchanges.items() for e in cx.ex)
    fex_t = [(e.t, cid, 0, e.t_s) for cid, cx in a.exchanges.items() for e in cx.ex]
    tol = 50_000
    # by the first bytes alone (the checkpoints left out): front 0 takes backend 1
    blind = SimpleNamespace(exchanges={
        cid: L.ConnExchanges(cid, 0, 0, [dataclasses.replace(cx.ex[0], cp_s=None)])
        for cid, cx in b.exchanges.items()
    })  # fmt: skip
    _o, taken, _s = L._by_content(a, blind, bex, fex_t, 0, tol)  # type: ignore[arg-type]
    assert taken == {(0, 0): (1, 0), (1, 0): (0, 0)}
    owner, taken, _score = L._by_content(a, b, bex, fex_t, 0, tol)  # type: ignore[arg-type]
    assert taken == {(0, 0): (0, 0), (1, 0): (1, 0)}
    assert owner == {(0, 0): (0, 0), (1, 0): (1, 0)}
    # one step of slack (a proxy that changed a few bytes moves the offsets): front 0's
    # byte at a checkpoint is compared with backend 1's one step before it (its third,
    # 40 ms, with backend 1's second, 69 ms)
    ok, wait = L._in_causal_order(
        L._exchange_cols([a.exchanges[0].ex[0]] * 2, [0, 0], lambda e: 0),
        L._exchange_cols([b.exchanges[0].ex[0], b.exchanges[1].ex[0]], [0, 0], lambda e: 0),
        np.array([0, 0]), np.array([0, 1]), 0, tol,
    )  # fmt: skip
    assert ok.tolist() == [True, False]
    assert wait[0] == 1_000_000  # (each of its last bytes 1 ms after the backend's)
