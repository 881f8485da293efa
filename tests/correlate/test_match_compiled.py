"""Matching compiled as one pass per batch (hopcap_mcore, hopcap_learn in _fastwalk) and
the flows' first hops built on columns give exactly what the numpy paths and `_extend`
give: on generated paths with every odd case (retransmissions, reordering, rewrites of
seq/ack/MSS/TTL/IP ID/TSval/payload, NAT port reuse, several points, a missing middle
point), and on random batches whose keys repeat, collide in time and miss on one side."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import http_conv, nat_map, points

from hopcap.correlate import _fastwalk, correlate, flows
from hopcap.correlate import match as M
from hopcap.correlate.reader import ACK, FIN, PSH, RST, SYN
from hopcap.model import PointInput, Verdict


def _numpy(f: Any, *a: Any, **kw: Any) -> Any:
    _fastwalk.disabled = True
    try:
        return f(*a, **kw)
    finally:
        _fastwalk.disabled = False


def _convs() -> list[Conv]:
    """Connections with a lost data segment (retransmitted), a lost SYN (retried), a lost
    ACK, a zero-window tail and the same client port used twice (NAT port reuse)."""
    out = []
    for i in range(6):
        c = http_conv(40100 + i, seed=300 + i, t0=1_763_790_000.0 + 0.01 * i)
        out.append(c)
    # a retransmitted request (the original dropped downstream)
    r = Conv(client=("203.0.113.10", 40200), server=("203.0.113.80", 80), seed=77)
    r.handshake(syn_retries=1)
    sent = r.request(b"POST /x HTTP/1.1\r\nHost: h\r\n\r\n" + bytes(range(200)) * 9)
    r.retransmit(sent[0], tag="req-again")
    r.response(b"HTTP/1.1 204 No Content\r\n\r\n")
    r.close()
    out.append(r)
    # the same tuple again later: a new connection on a reused (NATed) port
    out.append(http_conv(40100, seed=399, t0=r.t + 0.5))
    return out


def _change(s: Seg) -> Seg:
    """Rewrites inside the firewall: MSS clamp, the IP ID of one request, the TSval of one
    response segment, a payload byte, an odd TTL."""
    if s.mss is not None and s.d == C2S:
        s.mss = 1360
    if s.tag == "req" and s.conv is not None and s.conv.client[1] == 40101:
        s.ipid = (s.ipid + 999) & 0xFFFF
    if s.tag == "resp" and s.conv is not None and s.conv.client[1] == 40102 and s.data:
        s.tsval = (s.tsval or 0) + 7
    if s.tag == "resp" and s.conv is not None and s.conv.client[1] == 40103 and s.data:
        s.data = b"X" + s.data[1:]
    if s.tag == "fin" and s.conv is not None and s.conv.client[1] == 40104:
        s.ttl = 9
    return s


def _late(convs: list[Conv]) -> list[Seg]:
    """Segments that reach the far side of the path late (reordered behind the next)."""
    return [dataclasses.replace(s, t=s.t + 0.0004) for s in convs[5].segs if s.tag == "resp"][:2]


def _views(convs: list[Conv]) -> list[tuple[str, Any]]:
    late = _late(convs)
    moved = {(s.conv.client[1], s.seq, s.d) for s in late if s.conv is not None}  # type: ignore[union-attr]
    retried = convs[6]
    lost = next(s for s in retried.segs if s.tag == "req")

    def gone(s: Seg) -> bool:
        return s is lost or (s.conv is not None and (s.conv.client[1], s.seq, s.d) in moved)

    nat = nat_map(convs[0], sport=29000)
    return [
        ("client:eth0", lambda c: View()),
        ("fw:eth0", lambda c: View(delay=0.0001, ttl_dec={S2C: 1})),
        ("fw:eth1", lambda c: View(delay=0.0002, nat=nat if c is convs[0] else {},
                                   seq_off={C2S: 1234567} if c is convs[1] else {},
                                   ttl_dec={C2S: 1}, change=_change,
                                   drop=gone, extra=late if c is convs[5] else [])),
        ("srv:eth0", lambda c: View(delay=0.0003, seq_off={C2S: 1234567} if c is convs[1] else {},
                                    nat=nat if c is convs[0] else {}, ttl_dec={C2S: 1},
                                    change=_change, drop=gone,
                                    extra=late if c is convs[5] else [], tso=True)),
    ]  # fmt: skip


def _points(tmp: Path, missing_middle: bool) -> list[PointInput]:
    convs = _convs()
    pts = points(tmp, convs, _views(convs))
    if missing_middle:
        pts[1] = PointInput(name="fw:eth0", pcap=None, missing_reason="ssh: connection refused")
    return pts


def _without_first_hops(pts: list[PointInput]) -> Verdict:
    """The verdict with every flow's first hop built by `_extend` (the general path)."""
    keep = flows._first_hops

    def none(pa: Any, pb: Any, ca: Any, cb: Any, hl: Any) -> tuple[Any, ...]:
        n = ca.hc.shape[0]
        z = np.full(n, -1, np.int64)
        return z, z, z, z, np.zeros(n, bool)

    flows._first_hops = none  # type: ignore[assignment]
    try:
        return correlate(pts)
    finally:
        flows._first_hops = keep


@pytest.mark.parametrize("missing_middle", [False, True])
def test_compiled_matching_and_column_hops_give_the_same_verdict(
    tmp_path: Path, missing_middle: bool
) -> None:
    assert _fastwalk.available()
    pts = _points(tmp_path, missing_middle)
    fast = correlate(pts)
    assert fast == _numpy(correlate, pts)
    assert fast == _without_first_hops(pts)
    # the cases are there: the rewrites, the reused port (two flows), a retransmission
    rewrites = {f.field for fl in fast.flows for f in fl.findings if f.kind == "rewrite"}
    assert {"tcp.mss", "ip.ttl", "payload"} <= rewrites, rewrites
    assert "ip.id" in rewrites or "tcp.options.tsval" in rewrites, rewrites
    reused = [fl for fl in fast.flows if fl.client.endswith(":40100")]
    assert len(reused) == 2
    assert len(fast.flows) == 8
    kinds = {(f.kind, f.between) for fl in fast.flows for f in fl.findings}
    if missing_middle:
        assert any(k == "gap" for k, _b in kinds)
    else:
        assert ("drop", ("fw:eth0", "fw:eth1")) in kinds
    assert any(leg.link == "nat" for fl in fast.flows for leg in fl.legs)


# --------------------------------------------------------------------------- random batches


def _table(rng: np.random.Generator, n: int) -> Any:
    """A packet table's columns with few distinct values (keys repeat across rows)."""
    pl = rng.choice([0, 0, 1, 100, 100, 1360], n).astype(np.int32)
    cap = np.minimum(pl, rng.choice([0, 40, 2000], n)).astype(np.int32)
    off = np.cumsum(np.concatenate([[0], cap[:-1]])).astype(np.int64)
    buf = bytearray(rng.integers(0, 3, int(cap.sum()) + 1, dtype=np.uint8).tobytes())
    t = SimpleNamespace(
        seq=rng.integers(0, 6, n).astype(np.int64) * 100 + rng.choice([0, (1 << 32) - 50], n),
        plen=pl,
        flags=rng.choice([ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, RST, ACK | RST], n).astype(
            np.int16
        ),
        tsval=rng.choice([-1, 5, 6, 7], n).astype(np.int64),
        ipid=rng.choice([-1, 0, 1, 2, 3, 200], n).astype(np.int32),
        pl_off=off,
        pl_cap=cap,
        buf=buf,
        ts=np.sort(rng.integers(0, 10**9, n)).astype(np.int64),
        ttl=rng.choice([63, 64], n).astype(np.int16),
        tos=rng.choice([0, 0xB8], n).astype(np.int16),
        win=rng.choice([502, 65535], n).astype(np.int32),
        mss=rng.choice([-1, 1360, 1460], n).astype(np.int32),
        ack=rng.integers(0, 3, n).astype(np.int64),
    )
    t.payload = lambda i, s=0, e=None: bytes(
        t.buf[int(t.pl_off[i]) + s : int(t.pl_off[i]) + (int(t.pl_cap[i]) if e is None else e)]
    )
    return t


N = 2000  # rows of a table: more than a batch can take


def _batch(rng: np.random.Generator, npairs: int) -> tuple[Any, ...]:
    """Rows of both sides grouped by pair (some pairs at one side only, some empty)."""
    ta, tb = _table(rng, N), _table(rng, N)

    def side() -> tuple[Any, Any]:
        lens = rng.choice([0, 1, 3, 20, 60], npairs)
        pid = np.repeat(np.arange(npairs, dtype=np.int64), lens)
        return rng.permutation(N)[: pid.shape[0]].astype(np.int64), pid

    ra, pa = side()
    rb, pb = side()
    return ta, ra, pa, tb, rb, pb


def _prm(rng: np.random.Generator, npairs: int) -> M.PairParams:
    return M.PairParams(
        delta=rng.choice([0, 50, (1 << 32) - 100], npairs).astype(np.int64),
        ack_delta=np.full(npairs, -1, np.int64),
        base=rng.choice([0, 100, (1 << 32) - 10], npairs).astype(np.int64),
        a_base=np.zeros(npairs, np.int64),
        use_ipid=rng.random(npairs) < 0.6,
        use_ts=rng.random(npairs) < 0.6,
    )


BATCH_COLUMNS = (
    "seq_a", "sa", "sb", "pa", "pb", "fa", "fb", "tva", "tvb", "ida", "idb", "ctl_a", "ctl_b",
    "dat_a", "dat_b", "mctl_a", "mctl_b", "mdat_a", "mdat_b",
)  # fmt: skip


@pytest.mark.parametrize("seed", range(8))
def test_compiled_batch_equals_numpy(seed: int) -> None:
    """hopcap_mcore against `_Batch.of`, `_match_control` and `_match_exact_data`: every
    column, mark, pair (in order) and payload rewrite."""
    assert _fastwalk.available()
    rng = np.random.default_rng(seed)
    npairs = int(rng.integers(1, 30))
    ta, ra, pa, tb, rb, pb = _batch(rng, npairs)
    prm = _prm(rng, npairs)
    prm.ack_delta = np.where(rng.random(npairs) < 0.5, -1, 1).astype(np.int64)
    fast = M._Batch.compiled(ta, ra, pa, tb, rb, pb, prm)
    assert fast is not None
    slow = M._Batch.of(ta, ra, pa, tb, rb, pb, prm)
    M._match_control(slow)
    M._match_exact_data(slow)
    for f in BATCH_COLUMNS:
        x, y = getattr(fast, f), getattr(slow, f)
        assert x.shape == y.shape and (x == y).all(), f
    assert len(fast.pairs) == len(slow.pairs) == 2
    for (x1, y1), (x2, y2) in zip(fast.pairs, slow.pairs, strict=True):
        assert x1.tolist() == x2.tolist() and y1.tolist() == y2.tolist()
    assert fast.rewrites == slow.rewrites
    assert sum(x.shape[0] for x, _y in fast.pairs) > 0  # something matched
    # the whole batch (the later steps on what the first ones left, the results) too
    for ttl in (None, (0, 1)):
        whole = M.match_batch(ta, ra, pa, tb, rb, pb, prm, ttl_expected=ttl)
        assert whole == _numpy(M.match_batch, ta, ra, pa, tb, rb, pb, prm, ttl_expected=ttl)
        assert sum(d.matched for d in whole) > 0


@pytest.mark.parametrize("seed", range(8))
def test_compiled_offsets_equal_numpy(seed: int) -> None:
    """hopcap_learn against `_learn_sampled`: SYNs anywhere in a pair, pairs at one side
    only, votes of repeated keys, more rows than the sample."""
    assert _fastwalk.available()
    rng = np.random.default_rng(100 + seed)
    npairs = int(rng.integers(5, 30))
    ta, ra, pa, tb, rb, pb = _batch(rng, npairs)
    got = _fastwalk.learn_offsets(ta, ra, pa, tb, rb, pb, npairs)
    assert got is not None
    want = M._learn_sampled(ta, ra, pa, tb, rb, pb, npairs)
    assert got[0].tolist() == want[0].tolist()
    assert got[1].tolist() == want[1].tolist()
    assert (want[1] > 0).any() and (want[0] >= 0).any()


def test_rows_not_grouped_by_pair_take_the_numpy_path() -> None:
    rng = np.random.default_rng(7)
    ta, ra, pa, tb, rb, pb = _batch(rng, 5)
    o = rng.permutation(ra.shape[0])
    ra, pa = ra[o], pa[o]
    assert (np.diff(pa) < 0).any()
    assert _fastwalk.learn_offsets(ta, ra, pa, tb, rb, pb, 5) is None
    assert M._Batch.compiled(ta, ra, pa, tb, rb, pb, _prm(rng, 5)) is None


def test_compiled_fingerprint_codes_equal_numpy(tmp_path: Path) -> None:
    """Linking's keys of every half in one C pass (hopcap_fpcodes) against the numpy
    selection: SYNs retried, SYNs without a TSval (their IP ID, MSS and options), halves
    with too few TSvals (payload keys), IPv6, and the ids numbered in the same order."""
    from hopcap.correlate.conns import _fingerprint_codes, build_point, fingerprint_codes
    from hopcap.correlate.reader import read_capture

    assert _fastwalk.available()
    convs = _convs()
    bare = Conv(client=("203.0.113.11", 40300), server=("203.0.113.80", 80), ts=False, seed=5)
    bare.handshake(syn_retries=2)
    bare.request(b"GET / HTTP/1.1\r\n\r\n")
    bare.response(b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 3000)
    bare.close()
    six = http_conv(40400, seed=6)
    six.client, six.server = ("2001:db8::10", 40400), ("2001:db8::80", 80)
    pts = points(tmp_path, [*convs, bare, six], _views(convs)[:2])
    for p in pts:
        assert p.pcap is not None
        pc = build_point(read_capture(Path(p.pcap)))
        ids_fast: dict[tuple[object, ...], int] = {}
        ids_slow: dict[tuple[object, ...], int] = {}
        fast = fingerprint_codes(pc.table, pc.halves, ids_fast, pc=pc)
        slow = _fingerprint_codes(pc.table, pc.halves, ids_slow, 4)
        assert fast[0].tolist() == slow[0].tolist()
        assert fast[1].tolist() == slow[1].tolist()
        assert ids_fast == ids_slow
        kinds = set((fast[1] >> 60).tolist())
        assert {0, 1, 2, 3} <= kinds, kinds  # TSval, ISN, a SYN's IP ID, payload keys


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_compiled_same_key_join_equals_numpy(dtype: Any) -> None:
    """link._same_key (every pair of equal keys, by the first side's row, then the
    second's) in C against its numpy sort-and-search."""
    from hopcap.correlate.link import _same_key

    assert _fastwalk.available()
    rng = np.random.default_rng(11)
    for n_a, n_b, distinct in (
        (0, 5, 3),
        (5, 0, 3),
        (50, 80, 7),
        (3000, 2000, 500),
        (2000, 3000, 5000),
    ):
        ka = rng.integers(0, distinct, n_a).astype(dtype) * dtype(977)
        kb = rng.integers(0, distinct, n_b).astype(dtype) * dtype(977)
        fast = _same_key(ka, kb)
        slow = _numpy(_same_key, ka, kb)
        assert fast[0].tolist() == slow[0].tolist() and fast[1].tolist() == slow[1].tolist()
        if n_a and n_b:
            assert fast[0].shape[0] > 0


def test_compiled_rows_of_halves_equal_numpy(tmp_path: Path) -> None:
    """The rows of a batch's halves (absent ones among them), gathered in C, are those of
    PointConns.rows_of."""
    from hopcap.correlate.conns import build_point
    from hopcap.correlate.reader import read_capture

    assert _fastwalk.available()
    convs = _convs()
    pts = points(tmp_path, convs, _views(convs)[:1])
    assert pts[0].pcap is not None
    pc = build_point(read_capture(Path(pts[0].pcap)))
    rng = np.random.default_rng(3)
    n = len(pc.halves)
    for hid in (np.zeros(0, np.int64), np.full(3, -1, np.int64), rng.integers(-1, n, 40)):
        got = flows._rows_of(pc, hid.astype(np.int64))
        want = pc.rows_of(hid.astype(np.int64))
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    assert flows._rows_of(pc, np.arange(n, dtype=np.int64))[0].shape[0] == len(pc.table)


@pytest.mark.parametrize("seed", range(4))
def test_compiled_pair_delays_equal_numpy(seed: int) -> None:
    """hopcap_delays (`_fastwalk.pair_delays`) against the sorted delays of every pair:
    pairs with no, one, an even and an odd number of matched rows, long ones, equal and
    negative delays, rows in any order (`_results`' numpy path against it: in
    test_compiled_batch_equals_numpy)."""
    assert _fastwalk.available()
    rng = np.random.default_rng(500 + seed)
    npairs = 40
    lens = rng.choice([0, 1, 2, 3, 24, 25, 200], npairs)
    pid = rng.permutation(np.repeat(np.arange(npairs, dtype=np.int64), lens))
    n = pid.shape[0]
    ts_a = rng.integers(0, 1 << 40, 5000).astype(np.int64)
    ts_b = ts_a + rng.choice([-3, 0, 0, 7, 1_000_000], 5000).astype(np.int64)
    ga, gb = rng.integers(0, 5000, n), rng.integers(0, 5000, n)
    got = _fastwalk.pair_delays(ga, gb, pid, ts_a, ts_b, npairs)
    assert got is not None
    cnt, dmin, dmed = (x.tolist() for x in got)
    d = (ts_b[gb] - ts_a[ga]).tolist()
    for p in range(npairs):
        mine = sorted(x for x, q in zip(d, pid.tolist(), strict=True) if q == p)
        c = len(mine)
        assert cnt[p] == c
        if c:
            assert dmin[p] == mine[0]
            assert dmed[p] == float(mine[(c - 1) // 2] + mine[c // 2]) / 2
        else:
            assert dmin[p] == 0 and dmed[p] == 0.0
    assert _numpy(_fastwalk.pair_delays, ga, gb, pid, ts_a, ts_b, npairs) is None


@pytest.mark.parametrize("seed", range(4))
def test_compiled_field_rewrites_equal_numpy(seed: int) -> None:
    """hopcap_fields_ttl (`_fastwalk.field_diffs_ttl`) against `_field_rewrites`' numpy
    path: every header field, the TTL judged by the expected decrements, by each pair's
    most common one (ties: the smaller; decrements of 0..8 only, judged in C) and with a
    decrement outside 0..8 (judged by `_ttl_off_mode`)."""
    rng = np.random.default_rng(900 + seed)
    npairs = 30
    ta, tb = _table(rng, N), _table(rng, N)
    prm = _prm(rng, npairs)
    prm.ack_delta = np.where(rng.random(npairs) < 0.5, -1, 1).astype(np.int64)
    n = 1500
    a, b = rng.integers(0, N, n).astype(np.int64), rng.integers(0, N, n).astype(np.int64)
    pid = np.sort(rng.integers(0, npairs, n)).astype(np.int64)
    ta.ttl = np.full(N, 64, np.int16)
    for dec in ([0, 1, 1, 2], [0, 1], [-1, 0, 1, 9]):
        tb.ttl = (64 - rng.choice(dec, N)).astype(np.int16)
        for ttl in (None, (0, 1)):
            got = M._field_rewrites(ta, a, tb, b, pid, prm, ttl_expected=ttl)
            want = _numpy(M._field_rewrites, ta, a, tb, b, pid, prm, ttl_expected=ttl)
            key = lambda x: (x[0].field, x[0].a_row, x[0].b_row)  # noqa: E731
            assert sorted(got, key=key) == sorted(want, key=key)
            if ttl is None:  # every pair has rows off its most common decrement
                assert any(rw.field == "ip.ttl" for rw, _p in got)
    assert {rw.field for rw, _p in got} >= {"ip.dscp", "tcp.window", "tcp.flags"}
