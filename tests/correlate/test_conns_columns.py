"""The per-connection work done on columns (or in the C helper) gives exactly what the
per-half Python/numpy code gave: half boundaries, connections and link fingerprints, on
real captures and on synthetic ones with SYN retransmissions and a reused tuple."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import C2S, S2C, Conv, View, frame_bytes, render, write, write_pcap_raw

from hopcap.correlate import _fastwalk, read_capture
from hopcap.correlate import link as link_mod
from hopcap.correlate.conns import Half, PointConns, build_conns, build_point, fingerprints
from hopcap.correlate.link import WEIGHTS, _mate, _mates_agree, _tup_key, link_halves
from hopcap.correlate.reader import FIN, RST, SYN
from tests.realdata import REALDATA


def _reused_tuple(tmp: Path) -> Path:
    """Two connections on one tuple (the second SYN with another ISN), SYNs retransmitted,
    one connection without TCP timestamps, one over IPv6."""
    convs = []
    for k, (isn_seed, ts) in enumerate(((11, True), (12, True), (13, False))):
        c = Conv(client=("198.18.0.10", 41000), seed=isn_seed, ts=ts, t0=1_763_790_000.0 + k * 5)
        c.handshake(syn_retries=k)
        c.request(b"q" * (200 + k))
        c.response(b"r" * 2500)
        c.close()
        convs.append(c)
    c6 = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=3)
    c6.handshake()
    c6.request(b"x" * 10)
    c6.close()
    convs.append(c6)
    frames = [(round(t * 1e9), frame_bytes(p, "ether")) for t, p in render(convs, View())]
    return write_pcap_raw(tmp / "reuse.pcap", frames)


def _odd_pairs(tmp: Path) -> Path:
    """Tuples whose halves the pairing must keep apart or order: a simultaneous open (two
    SYNs, no ACK), a SYN after the other direction's data, a server's data before the
    client's SYN-ACK-less answer (SYN-ACK seen after it), a packet to itself, long gaps."""
    from scapy.layers.inet import IP, TCP

    def pkt(s: str, sp: int, d: str, dp: int, fl: str, seq: int, ack: int = 0, n: int = 0) -> Any:
        return IP(src=s, dst=d) / TCP(sport=sp, dport=dp, flags=fl, seq=seq, ack=ack) / (b"x" * n)

    t0 = 1_763_790_000.0
    a, b = "198.18.0.1", "198.18.0.2"
    pk = [
        (t0, pkt(a, 41000, b, 41001, "S", 100)),  # simultaneous open
        (t0 + 0.1, pkt(b, 41001, a, 41000, "S", 900)),
        (t0 + 1, pkt(a, 42000, b, 80, "PA", 5, 7, 10)),  # data, then a SYN the other way
        (t0 + 2, pkt(b, 80, a, 42000, "S", 300)),
        (t0 + 3, pkt(b, 80, a, 43000, "PA", 70, 8, 20)),  # server data, then a SYN-ACK
        (t0 + 4, pkt(a, 43000, b, 80, "SA", 1000, 71)),
        (t0 + 5, pkt(a, 44000, b, 80, "SA", 2000, 501)),  # SYN-ACK acking the SYN after it
        (t0 + 5.1, pkt(b, 80, a, 44000, "S", 500)),
        (t0 + 6, pkt(a, 5000, a, 5000, "PA", 1, 1, 5)),  # to itself
        (t0 + 7, pkt(a, 45000, b, 8080, "PA", 1, 1, 5)),  # a day apart
        (t0 + 7 + 200_000, pkt(b, 8080, a, 45000, "PA", 1, 1, 5)),
        (t0 + 8, pkt(a, 46000, b, 8081, "PA", 1, 1, 5)),  # hours apart: still one
        (t0 + 8 + 3_600, pkt(b, 8081, a, 46000, "PA", 1, 1, 5)),
    ]
    return write(tmp / "odd.pcap", pk)


def _captures(tmp: Path) -> list[Path]:
    files = [_reused_tuple(tmp), _odd_pairs(tmp)]
    files += sorted((REALDATA / "haka").glob("*.pcap"))
    files += sorted((REALDATA / "tcpreplay").glob("test.*"))
    files += sorted((REALDATA / "ns3-ppp").glob("*.pcap"))
    files += sorted((REALDATA / "tcpdump-tunnels").glob("*.pcap"))
    files += sorted((REALDATA / "zeek-tunnels").glob("*.pcap"))
    return files


_FIELDS = ("hid", "tkey", "rkey", "v", "src", "dst", "sport", "dport", "syn", "synack", "isn",
           "first_ts", "last_ts", "has_ts", "conn", "ack0")  # fmt: skip


def _halves(h: list[Half]) -> list[tuple[object, ...]]:
    """Every field of every half, with its type (a compiled path must make the same
    Python ints and bools the numpy path makes: True == 1 would hide a difference)."""
    return [
        (*(getattr(x, f) for f in _FIELDS), *(type(getattr(x, f)) for f in _FIELDS),
         x.idx.tolist())
        for x in h
    ]  # fmt: skip


def test_compiled_halves_and_conns_equal_numpy(tmp_path: Path) -> None:
    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    n_halves = 0
    reused = False
    for f in _captures(tmp_path):
        t = read_capture(f)
        fast = build_point(t)
        _fastwalk.disabled = True
        try:
            slow = build_point(t)
        finally:
            _fastwalk.disabled = False
        assert _halves(fast.halves) == _halves(slow.halves), f
        assert [(c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in fast.conns] == [
            (c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in slow.conns
        ], f
        keys = [h.tkey for h in fast.halves]
        reused |= len(set(keys)) < len(keys)
        n_halves += len(fast.halves)
        # every row is in exactly one half
        rows = np.concatenate([h.idx for h in fast.halves]) if fast.halves else np.zeros(0)
        assert sorted(rows.tolist()) == list(range(len(t))), f
        t.close()
    assert reused  # a tuple that carried two connections was split at its second SYN
    assert n_halves > 100


def test_halves_made_in_c_are_the_halves_built_by_hand(tmp_path: Path) -> None:
    """The halves `build_point` makes as tuples for a whole point at once read as the
    halves built one by one with `Half(...)` (the dataclass's constructor): every field,
    the rows (sliced on first read), the connection (a column the point's halves share),
    the tuple strings; the same after pickling; `by_tkey`, made on first need, as a loop
    makes it; a Conn's halves are the point's halves, each knowing its connection."""
    import pickle

    seen = 0
    for f in _captures(tmp_path):
        t = read_capture(f)
        pc = build_point(t)
        assert pc.cols is not None
        for h in pc.halves:
            c = pc.cols
            want = Half(
                h.hid, pc.order[int(c.start[h.hid]) : int(c.end[h.hid])], int(c.tkey[h.hid]),
                int(c.rkey[h.hid]), h.v, h.src, h.dst, int(c.sport[h.hid]), int(c.dport[h.hid]),
                bool(c.syn[h.hid]), bool(c.synack[h.hid]), int(c.isn[h.hid]),
                int(c.first_ts[h.hid]), int(c.last_ts[h.hid]), bool(c.has_ts[h.hid]),
                int(pc.conn_of[h.hid]), int(c.ack0[h.hid]),
            )  # fmt: skip
            assert _halves([h]) == _halves([want]), f
            assert (h.tuple_str, h.src_str, h.dst_str) == (
                want.tuple_str,
                want.src_str,
                want.dst_str,
            )
            back = pickle.loads(pickle.dumps(h))
            assert _halves([back]) == _halves([h]) and back.tuple_str == h.tuple_str
            seen += 1
        for conn in pc.conns:
            for x in (conn.c, conn.s):
                assert x is None or (pc.halves[x.hid] is x and x.conn == conn.cid)
        by_key: dict[int, list[int]] = {}
        for h in pc.halves:
            by_key.setdefault(h.tkey, []).append(h.hid)
        assert {k: [h.hid for h in v] for k, v in pc.by_tkey.items()} == by_key
        t.close()
    assert seen > 100
    # a Half built by hand keeps its connection when it is set
    h = Half(3, np.arange(4, dtype=np.int64), 1, 2, 4, (0, 1), (0, 2), 5, 6, True, False, 7,
             8, 9, False)  # fmt: skip
    assert h.conn == -1 and h.ack0 == -1 and h.idx.tolist() == [0, 1, 2, 3]
    h.conn = 11
    assert h.conn == 11 and pickle.loads(pickle.dumps(h)).conn == 11
    h.idx = h.idx[1:3]  # a time slice keeps the rows inside it (slices.py)
    assert h.idx.tolist() == [1, 2] and pickle.loads(pickle.dumps(h)).idx.tolist() == [1, 2]


def test_conns_on_columns_equal_the_loop(tmp_path: Path) -> None:
    """Connections paired on the halves' columns are those of the per-half loop, in the
    same order: a reused tuple, SYN retransmissions, connections without a handshake,
    real captures (haka, tcpreplay, ns-3, tunnels)."""
    pairs = 0
    for f in [*_captures(tmp_path), _nat_pair(tmp_path)[0], _nat_pair(tmp_path)[1]]:
        t = read_capture(f)
        pc = build_point(t)
        assert pc.cols is not None
        fast = build_conns(t, pc.halves, pc.cols)
        got = [(c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in fast]
        loop = build_conns(t, pc.halves)
        assert got == [(c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in loop], f
        pairs += sum(1 for c in loop if c.c is not None and c.s is not None)
        t.close()
    assert pairs > 50


# ----------------------------------------------------------------- linking on columns


def _reference_links(
    a: PointConns, b: PointConns, offset_ns: int, ct_pairs: list[Any]
) -> tuple[dict[int, int], dict[int, int]]:
    """link_halves as it was written per half (commit 2873f3b): the oracle."""
    fa = {h.hid: set(fingerprints(a.table, h)) for h in a.halves}
    fb = {h.hid: set(fingerprints(b.table, h)) for h in b.halves}

    def sid_ids(fp: dict[int, set[tuple[object, ...]]]) -> dict[object, int]:
        out: dict[object, int] = {}
        for keys in fp.values():
            for k in keys:
                if k[0] == "sid":
                    out[k[1]] = out.get(k[1], 0) + 1
        return out

    def answered_apart(h: Half, g: Half) -> bool:
        if not (h.syn and g.syn) or h.synack or g.synack:
            return False
        mh, mg = _mate(a, h), _mate(b, g)
        if mh is None or mg is None:
            return False
        ta, tb = a.table, b.table
        ra, rb, qa, qb = int(h.idx[0]), int(g.idx[0]), int(mh.idx[0]), int(mg.idx[0])
        answer = SYN | RST
        if not (int(ta.flags[qa]) & answer and int(tb.flags[qb]) & answer):
            return False
        if int(ta.ts[qa]) - int(ta.ts[ra]) < int(tb.ts[qb]) - int(tb.ts[rb]):
            return True
        down_syn = int(ta.ttl[ra]) - int(tb.ttl[rb])
        down_ans = int(tb.ttl[qb]) - int(ta.ttl[qa])
        return down_syn < 0 or down_ans < 0 or (down_syn > 0) != (down_ans > 0)

    index: dict[tuple[object, ...], list[int]] = {}
    for h in b.halves:
        for k in fb[h.hid]:
            index.setdefault(k, []).append(h.hid)
    ids_a, ids_b = sid_ids(fa), sid_ids(fb)
    cands: list[tuple[float, int, int]] = []
    ct = {_tup_key(x): _tup_key(y) for x, y in ct_pairs}
    by_str: dict[tuple[str, str], list[Half]] = {}
    for g in b.halves:
        by_str.setdefault((g.src_str, g.dst_str), []).append(g)
    for h in a.halves:
        scores: dict[int, float] = {}
        strong: set[int] = set()
        for k in fa[h.hid]:
            found = index.get(k)
            if not found:
                continue
            if k[0] == "sid":
                if ids_a.get(k[1], 0) > 1 or ids_b.get(k[1], 0) > 1:
                    continue
                found = [
                    gid
                    for gid in found
                    if (g := b.halves[gid]).isn == h.isn or g.sport == h.sport or g.dport == h.dport
                ]
            for gid in found:
                scores[gid] = scores.get(gid, 0.0) + WEIGHTS[str(k[0])]
            if k[0] != "h":
                strong.update(found)
        for g in b.by_tkey.get(h.tkey, ()):
            if h.syn and g.syn and h.isn != g.isn and g.hid not in scores:
                continue
            scores[g.hid] = scores.get(g.hid, 0.0) + 2.5
            strong.add(g.hid)
        want = ct.get((h.src_str, h.dst_str))
        for g in by_str.get(want, ()) if want else ():
            scores[g.hid] = scores.get(g.hid, 0.0) + 10.0
            strong.add(g.hid)
        for hid, sc in scores.items():
            g = b.halves[hid]
            if g.synack != h.synack and (g.syn and h.syn):
                continue
            if h.has_ts and g.has_ts and hid not in strong:
                continue
            if hid not in strong and not _mates_agree(a, h, b, g):
                continue
            if h.tkey != g.tkey and answered_apart(h, g):
                continue
            dt = abs((g.first_ts - offset_ns) - h.first_ts) / 1e9
            if sc < 2.0:
                continue
            cands.append((sc - min(dt, 1e6) * 1e-7, h.hid, hid))
    cands.sort(reverse=True)
    fwd: dict[int, int] = {}
    back: dict[int, int] = {}
    for _sc, x, y in cands:
        if x in fwd or y in back:
            continue
        fwd[x] = y
        back[y] = x
    return fwd, back


# per connection: TCP timestamps, NAT, ISN rewritten, packets cut (no handshake), the SYN's
# IP ID, seen at a / b only, answered
_CONNS = [
    (True, True, False, 0, None, "ab", True),
    (False, True, True, 0, None, "ab", True),  # SYN IP IDs (no timestamps, ISN rewritten)
    (True, True, False, 0, None, "ab", True),
    (False, True, True, 3, None, "b", True),  # payload only: the same request as the next
    (False, True, True, 0, 54321, "ab", True),  # a scanner's IP ID, twice
    (False, True, False, 3, None, "a", True),  # the same request, another answer
    (True, True, False, 0, None, "ab", True),
    (False, True, True, 0, 54321, "ab", False),
    (True, True, False, 3, None, "ab", True),
    (True, True, False, 0, None, "ab", True),
    (False, False, False, 0, None, "ab", True),  # not translated
    (True, False, False, 0, None, "ab", True),
]


_PAYLOAD = b"".join(b"%05d" % k for k in range(600))


def _nat_pair(tmp: Path) -> tuple[Path, Path, list[Any]]:
    """Inside and outside of a NAT: with TCP timestamps; without them and with the ISN
    rewritten (SYN IP IDs); a scanner's SYNs that all carry IP ID 54321; connections whose
    handshake neither point saw (payload hashes); one not translated at all."""
    ct = []
    pk_a: list[tuple[float, Any]] = []
    pk_b: list[tuple[float, Any]] = []
    for i, (ts, nat, seq, cut, ipid, where, answered) in enumerate(_CONNS):
        c = Conv(client=(f"198.18.0.{10 + i}", 40000 + i), seed=50 + i, ts=ts,
                 t0=1_763_790_000.0 + i * 0.01)  # fmt: skip
        if ipid is not None:
            c.ipid[C2S] = ipid
        c.handshake(answered=answered)
        if answered:
            c.request(_PAYLOAD if i in (3, 5) else b"GET /%d HTTP/1.1\r\n\r\n" % (i % 2))
            c.response(b"r" * (300 + i))
            c.close()
        view_b = View(delay=0.0005)
        if nat:
            view_b.nat = {
                C2S: ("198.19.0.1", 30000 + i, c.server[0], c.server[1]),
                S2C: (c.server[0], c.server[1], "198.19.0.1", 30000 + i),
            }
            ct.append(
                ((c.client[0], c.client[1], c.server[0], c.server[1]),
                 ("198.19.0.1", 30000 + i, c.server[0], c.server[1]))
            )  # fmt: skip
        if seq:
            view_b.seq_off = {C2S: 777 + i, S2C: 0}
        if "a" in where:
            pk_a += render([c], View())[cut:]
        if "b" in where:
            pk_b += render([c], view_b)[cut:]
    pk_a.sort(key=lambda x: x[0])
    pk_b.sort(key=lambda x: x[0])
    return write(tmp / "a.pcap", pk_a), write(tmp / "b.pcap", pk_b), ct


def _pairs(tmp: Path) -> list[tuple[Path, Path, list[Any]]]:
    a, b, ct = _nat_pair(tmp)
    out = [(a, b, []), (a, b, ct), (b, a, [])]
    for x in sorted((REALDATA / "haka").glob("*-ref.pcap")):
        out.append((x.with_name(x.name.replace("-ref", "")), x, []))
    tr = REALDATA / "tcpreplay"
    out += [(tr / "test.pcap", x, []) for x in sorted(tr.glob("test.rewrite_*"))]
    ns3 = REALDATA / "ns3-ppp"
    for base in ("ipv4-nat", "tcp-large-transfer"):
        pts = [ns3 / f"{base}-{s}.pcap" for s in ("0-0", "1-0", "1-1", "2-0")]
        out += [(x, y, []) for x, y in pairwise(pts)]
    return out


def test_links_on_columns_equal_the_per_half_loop(tmp_path: Path) -> None:
    linked = 0
    for pa, pb, ct in _pairs(tmp_path):
        for offset in (0, 3_000_000):
            a, b = build_point(read_capture(pa)), build_point(read_capture(pb))
            got = link_halves(a, b, offset_ns=offset, conntrack_pairs=ct)
            want = _reference_links(a, b, offset, ct)
            assert (got.fwd, got.back) == want, (pa.name, pb.name, offset)
            linked += len(got.fwd)
    assert linked > 100


def test_heavy_keys_link_as_the_per_half_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every shared key taken for a heavy one (scored apart, `link._Heavy`), the links
    are still the oracle's, on every pair of points above."""
    monkeypatch.setattr(link_mod, "HEAVY_PAIRS", 0)
    heavy = 0
    for pa, pb, ct in _pairs(tmp_path):
        a, b = build_point(read_capture(pa)), build_point(read_capture(pb))
        heavy += _heavy_keys(a, b)
        for offset in (0, 3_000_000):
            got = link_halves(a, b, offset_ns=offset, conntrack_pairs=ct)
            assert (got.fwd, got.back) == _reference_links(a, b, offset, ct), pa.name
    assert heavy > 100


def _heavy_keys(a: PointConns, b: PointConns, apart: bool = False) -> int:
    ids: dict[tuple[object, ...], int] = {}
    ha, ka = link_mod.fingerprint_codes(a.table, a.halves, ids, pc=a)
    hb, kb = link_mod.fingerprint_codes(b.table, b.halves, ids, pc=b)
    heavy = link_mod._Heavy.of(ha, ka, hb, kb, len(b.halves))
    return int((heavy.apart if apart else heavy.keys).shape[0])


def test_a_scanners_syn_ip_id_on_many_syns_links_nothing(tmp_path: Path) -> None:
    """40 SYNs with IP ID 54321 (and the same MSS and options) at two points of a NAT
    that rewrites ports but not ISNs: their one SYN IP ID key (1,600 pairs, each of which
    the per-half rule kept where a port or the ISN is the same) is dropped; each SYN is
    linked by its ISN, to itself."""
    pk_a: list[tuple[float, Any]] = []
    pk_b: list[tuple[float, Any]] = []
    for i in range(40):
        c = Conv(client=("198.51.100.7", 61000), server=("203.0.113.80", 1 + i), seed=70 + i,
                 ts=False, t0=1_763_790_000.0 + i * 0.001)  # fmt: skip
        c.ipid[C2S] = 54321
        c.handshake(answered=False)
        view_b = View(delay=0.0005)
        view_b.nat = {C2S: ("198.19.0.1", 30000 + i, c.server[0], c.server[1])}
        pk_a += render([c], View())
        pk_b += render([c], view_b)
    a = build_point(read_capture(write(tmp_path / "a.pcap", sorted(pk_a, key=lambda x: x[0]))))
    b = build_point(read_capture(write(tmp_path / "b.pcap", sorted(pk_b, key=lambda x: x[0]))))
    assert _heavy_keys(a, b) == 0 and _heavy_keys(a, b, apart=True) == 1
    got = link_halves(a, b, offset_ns=0)
    assert len(got.fwd) == 40
    assert all(b.halves[y].sport - 30000 == a.halves[x].dport - 1 for x, y in got.fwd.items())


def _same_requests(tmp: Path, n: int) -> tuple[Path, Path]:
    """`n` connections with the same request and the same two-segment answer, 30 ms
    apart, through a NAT that rewrites ports and ISNs, without TCP timestamps, their
    handshakes seen by neither point: only the payloads (every one alike) and the times
    link them, and every payload key is on `n` halves at each point."""
    pk_a: list[tuple[float, Any]] = []
    pk_b: list[tuple[float, Any]] = []
    for i in range(n):
        c = Conv(client=("198.18.0.10", 20000 + i), seed=900 + i, ts=False,
                 t0=1_763_790_000.0 + i * 0.03)  # fmt: skip
        c.handshake()
        c.request(b"GET /health HTTP/1.1\r\nHost: lb\r\n\r\n")
        c.response(b"h" * 2500)
        c.close()
        view_b = View(delay=0.0005)
        view_b.nat = {
            C2S: ("198.19.0.1", 30000 + i, c.server[0], c.server[1]),
            S2C: (c.server[0], c.server[1], "198.19.0.1", 30000 + i),
        }
        view_b.seq_off = {C2S: 777 + i, S2C: 99 + i}
        pk_a += render([c], View())[3:]
        pk_b += render([c], view_b)[3:]
    pk_a.sort(key=lambda x: x[0])
    pk_b.sort(key=lambda x: x[0])
    return write(tmp / "same-a.pcap", pk_a), write(tmp / "same-b.pcap", pk_b)


@pytest.mark.parametrize("near", [False, True])
def test_many_halves_with_the_same_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, near: bool
) -> None:
    """A key on 120 halves at both points (14,400 pairs) is heavy: scored apart, with
    all its pairs (or, `near`, each half's nearest in time), the links are those of the
    plain join of every pair (HEAVY_PAIRS beyond reach), each connection to itself."""
    pa, pb = _same_requests(tmp_path, 120)
    a, b = build_point(read_capture(pa)), build_point(read_capture(pb))
    assert _heavy_keys(a, b) >= 3  # the request and both answer segments
    if near:
        monkeypatch.setattr(link_mod, "HEAVY_ALL", 0)
    got = link_halves(a, b, offset_ns=0)
    monkeypatch.setattr(link_mod, "HEAVY_PAIRS", 1 << 62)
    assert _heavy_keys(a, b) == 0
    plain = link_halves(a, b, offset_ns=0)
    assert (got.fwd, got.back) == (plain.fwd, plain.back)

    def conn(h: Half, base: int) -> int:  # the connection: the client's port
        return (h.dport if h.sport == 80 else h.sport) - base

    # the answers (two keys) link, each to its own connection; a request (one key,
    # weighing 1) is not enough alone: its half follows its answer's in the flow
    assert len(got.fwd) == 120
    assert all(conn(a.halves[x], 20000) == conn(b.halves[y], 30000) for x, y in got.fwd.items())


def test_a_tuple_reused_by_many_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """60 connections one after another on one tuple (a client that binds its port), every
    fifth without its handshake at either point: each point pairs its halves into the 60
    connections (by lookups, not the scan of every half of the tuple for each: that was
    cubic), and the tuple's 3,600 pairs are heavy for linking: the links are those of
    the plain join, each half to its own connection's."""
    pk_a: list[tuple[float, Any]] = []
    pk_b: list[tuple[float, Any]] = []
    for i in range(60):
        c = Conv(client=("198.18.0.10", 5000), seed=300 + i, ts=i % 3 != 0,
                 t0=1_763_790_000.0 + i * 0.05)  # fmt: skip
        c.handshake()
        c.request(b"GET /health HTTP/1.1\r\n\r\n")
        c.response(b"ok" * 100)
        c.close()
        cut = 3 if i % 5 == 0 else 0
        pk_a += render([c], View())[cut:]
        pk_b += render([c], View(delay=0.0005))[cut:]
    a = build_point(read_capture(write(tmp_path / "a.pcap", sorted(pk_a, key=lambda x: x[0]))))
    b = build_point(read_capture(write(tmp_path / "b.pcap", sorted(pk_b, key=lambda x: x[0]))))
    for pc in (a, b):
        assert len(pc.conns) == 60
        assert all(c.c is not None and c.s is not None for c in pc.conns)
    # the tuple's pairs: 120 halves each side, a few pairs a half (not 120 * 60), among
    # them each half with its own (found by time for the halves without a SYN)
    own = {
        x: y
        for x in range(len(a.halves))
        for y in range(len(b.halves))
        if b.halves[y].sport == a.halves[x].sport
        and abs(b.halves[y].first_ts - a.halves[x].first_ts) < 1_000_000
    }
    ta, tb = link_mod._tuple_pairs(
        a.half_cols(), b.half_cols(), np.zeros(0, np.int64), len(b.halves), 0
    )
    assert len(own) == 120 and ta.shape[0] < 120 * 40
    assert set(own.items()) <= set(zip(ta.tolist(), tb.tolist(), strict=True))
    got = link_halves(a, b, offset_ns=0)
    monkeypatch.setattr(link_mod, "HEAVY_PAIRS", 1 << 62)
    plain = link_halves(a, b, offset_ns=0)
    assert (got.fwd, got.back) == (plain.fwd, plain.back)
    assert got.fwd == own


def test_mix_reads_every_integer_width_and_stride_in_place() -> None:
    """The compiled mix reads each column at its own width, signedness and stride (no
    int64 copies): the values of the numpy path for every integer kind, bool, a strided
    view and a broadcast."""
    from hopcap.correlate import _fastwalk
    from hopcap.correlate.conns import mix

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    rng = np.random.default_rng(7)
    n = 777
    cols = [
        rng.integers(-128, 128, n).astype(np.int8),
        rng.integers(0, 256, n).astype(np.uint8),
        rng.integers(0, 2, n) > 0,
        rng.integers(0, 1 << 16, n).astype(np.uint16),
        rng.integers(-(1 << 15), 1 << 15, n).astype(np.int16),
        rng.integers(-(1 << 31), 1 << 31, n).astype(np.int32),
        rng.integers(0, 1 << 32, n).astype(np.uint32),
        rng.integers(-(1 << 62), 1 << 62, 3 * n, dtype=np.int64)[::3],
        np.broadcast_to(np.uint64(1 << 63), (n,)),
        rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(3),
    ]
    for k in range(len(cols)):
        sel = cols[k:] + cols[:k]  # every kind at every position (the primes cycle)
        fast = mix(*sel)
        _fastwalk.disabled = True
        try:
            slow = mix(*sel)
        finally:
            _fastwalk.disabled = False
        assert np.array_equal(fast, slow), k


@pytest.mark.parametrize("tuples", [1, 700, 9000])
def test_compiled_index_equals_numpy_index(tuples: int) -> None:
    """The two-pass C index (tuple keys grouped by a hash table that grows as tuples
    come, rows placed and halves cut in one pass in row order) gives numpy's: the stable
    argsort of the tuple keys, the half starts (a SYN with a new seq starts one) and
    their TSval flags, each half's tuple key; columns of every width, a broadcast one."""
    from types import SimpleNamespace

    from hopcap.correlate import conns

    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    rng = np.random.default_rng(tuples)
    n = 40_000
    which = rng.integers(0, tuples, n)
    pool = rng.integers(0, 1 << 62, (tuples, 3), dtype=np.uint64)
    cols = (
        np.broadcast_to(np.uint64(0), (n,)),
        pool[which, 0],
        pool[which, 1] % np.uint64(7),  # few values: tuples told apart by all columns
        pool[which, 2],
        (pool[which, 0] % np.uint64(65536)).astype(np.int32),
        (pool[which, 1] % np.uint64(3)).astype(np.int32),
    )
    # SYNs (that repeat a seq, or do not), RSTs and FINs (a SYN after a RST starts a
    # half; so does a packet far in sequence from a FIN or RST), seqs near and far
    kinds = np.array([SYN, RST, RST | 16, FIN | 16, 16], np.int16)
    near = rng.integers(0, 3, n)
    far = rng.integers(0, 1 << 32, n)
    t = SimpleNamespace(
        flags=kinds[rng.choice(5, n, p=[0.05, 0.02, 0.02, 0.04, 0.87])],
        seq=np.where(rng.random(n) < 0.9, near, far).astype(np.int64),
        tsval=np.where(rng.random(n) < 0.5, -1, rng.integers(0, 1 << 32, n)).astype(np.int64),
    )
    got = _fastwalk.index_halves(cols, t.flags, t.seq, t.tsval)
    assert got is not None
    order, starts, has_ts, key0 = got
    tkey = conns.mix(*cols)
    want_order = np.argsort(tkey, kind="stable")
    want_starts, want_has = conns._half_starts(t, want_order, tkey[want_order])  # type: ignore[arg-type]
    assert np.array_equal(order, want_order)
    assert np.array_equal(starts, want_starts) and np.array_equal(has_ts, want_has)
    assert np.array_equal(key0, tkey[order[starts]])
    groups = np.unique(tkey).shape[0]
    assert groups == np.unique(which).shape[0]  # distinct tuples stay apart
    assert starts.shape[0] > groups  # SYNs with a new seq cut tuples into halves
    first = np.zeros(n, bool)
    first[np.unique(tkey[order], return_index=True)[1]] = True
    cut = order[starts[~first[starts]]]  # the rows that cut a tuple
    assert ((t.flags[cut] & SYN) == 0).sum() > 10  # far from a FIN or RST
    assert ((t.flags[cut] & SYN) != 0).sum() > 10
    assert groups > 2048 or tuples < 9000  # the last case grows the hash table (4096 slots)


@pytest.mark.parametrize("rounds", [16, 2, 0])
def test_links_taken_at_once_equal_the_loop(monkeypatch: pytest.MonkeyPatch, rounds: int) -> None:
    """`take_best` with no half a candidate twice (every link taken at once) and with
    repeated halves (in rounds on columns, then one at a time) gives the links, in the
    order, of the loop over every candidate in turn; also on chains of candidates, each
    decided only once the one before it is, longer than the rounds."""
    from hopcap.correlate.link import take_best

    monkeypatch.setattr(link_mod, "GREEDY_ROUNDS", rounds)

    def loop(x: list[int], y: list[int]) -> tuple[dict[int, int], dict[int, int]]:
        fwd: dict[int, int] = {}
        back: dict[int, int] = {}
        for u, w in zip(x, y, strict=True):
            if u not in fwd and w not in back:
                fwd[u], back[w] = w, u
        return fwd, back

    rng = np.random.default_rng(3)
    for n, space, once in ((0, 1, True), (1, 1, True), (50, 1000, True), (50, 60, False),
                           (400, 100, False)):  # fmt: skip
        if once:  # every half a candidate once
            x, y = rng.permutation(space)[:n], rng.permutation(space)[:n]
        else:
            x, y = rng.integers(0, space, n), rng.integers(0, space, n)
        x, y = x.astype(np.int64), y.astype(np.int64)
        got, want = take_best(x, y), loop(x.tolist(), y.tolist())
        assert [list(d.items()) for d in got] == [list(d.items()) for d in want]
    assert len(want[0]) < 400  # the last case had repeated halves
    # a chain: (0, 1) waits for (1, 1), which waits for (1, 2), ...: every other one taken
    k = np.arange(40, dtype=np.int64)
    x, y = (k + 1) // 2, k // 2 + 1
    x, y = x[::-1].copy(), y[::-1].copy()
    got, want = take_best(x, y), loop(x.tolist(), y.tolist())
    assert [list(d.items()) for d in got] == [list(d.items()) for d in want]
    assert len(want[0]) == 20
    x, y = rng.integers(0, 30_000, 200_000), rng.integers(0, 30_000, 200_000)
    got, want = take_best(x, y), loop(x.tolist(), y.tolist())
    assert [list(d.items()) for d in got] == [list(d.items()) for d in want]


def test_rows_with_a_flag_on_columns_equal_the_halves(tmp_path: Path) -> None:
    """`flows._rows_with` on the point's rows by half (no half's rows set in place) and
    per half (after a time slice set some) give, per half, its rows with the flag, in
    order, as reading every half's `idx` does."""
    from hopcap.correlate.flows import _rows_with
    from hopcap.correlate.reader import ACK, FIN

    def want(pc: PointConns, flag: int) -> dict[int, list[int]]:
        fl = pc.table.flags
        got = {h.hid: [r for r in h.idx.tolist() if fl[r] & flag] for h in pc.halves}
        return {k: v for k, v in got.items() if v}

    seen = 0
    for f in _captures(tmp_path):
        t = read_capture(f)
        pc = build_point(t)
        for flag in (SYN, RST, FIN, ACK):
            assert _rows_with(pc, flag) == want(pc, flag), f
        if pc.halves:
            h = pc.halves[len(pc.halves) // 2]
            h.idx = h.idx[:1]  # as a time slice does: the per-half path
            assert pc.halves[0].pt_.rows
            for flag in (SYN, RST, FIN, ACK):
                assert _rows_with(pc, flag) == want(pc, flag), f
            seen += len(pc.halves)
        t.close()
    assert seen > 100


def test_half_addresses_shared_by_value(tmp_path: Path) -> None:
    """Every half's source and destination are its first row's (hi, lo) address words, IPv4
    and IPv6, one tuple object per distinct address of the point."""
    t = read_capture(_reused_tuple(tmp_path))
    pc = build_point(t)
    assert len(pc.halves) >= 8 and {h.v for h in pc.halves} == {4, 6}
    for h in pc.halves:
        r = int(h.idx[0])
        assert h.src == (int(t.src_hi[r]), int(t.src_lo[r]))
        assert h.dst == (int(t.dst_hi[r]), int(t.dst_lo[r]))
        assert all(type(x) is int for x in (*h.src, *h.dst))
    objs = {id(a) for h in pc.halves for a in (h.src, h.dst)}
    assert len(objs) == len({a for h in pc.halves for a in (h.src, h.dst)}) == 4


def test_halves_without_pythons_headers_take_the_python_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Python's headers (no python3-dev) the extension is not built (nothing is
    left in the cache) and `build_point` makes the same halves in Python; with them it is
    built into the cache and used."""
    from hopcap.correlate import _objects

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(_objects, "_tried", False)
    monkeypatch.setattr(_objects, "_mod", None)
    monkeypatch.setattr(_objects, "_include", lambda: None)
    (f, *_rest) = _captures(tmp_path)
    t = read_capture(f)
    try:
        slow = build_point(t)
        assert _objects._mod is None and _objects._tried
        assert not list((tmp_path / "cache").glob("**/objects-*.so"))
        monkeypatch.undo()
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        monkeypatch.setattr(_objects, "_tried", False)
        monkeypatch.setattr(_objects, "_mod", None)
        fast = build_point(t)
        assert _objects._mod is not None
        assert len(list((tmp_path / "cache").glob("hopcap/objects-*.so"))) == 1
        assert _halves(fast.halves) == _halves(slow.halves)
    finally:
        t.close()


def test_payload_and_ip_id_keys_chosen_on_columns_are_the_per_half_ones(tmp_path: Path) -> None:
    """`conns._more_codes_cols` (the halves without two TSval keys: their first two
    payloads' hashes, else their first rows' IP IDs, for all halves at once) gives the
    per-half loop's keys in the same order and codes: connections without timestamps,
    with data (payload keys), a RST alone and ACKs alone (IP ID keys), a SYN (none)."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw

    from hopcap.correlate.conns import _more_codes, _more_codes_cols

    c, s = IP(src="198.18.0.10", dst="198.18.0.80"), IP(src="198.18.0.80", dst="198.18.0.10")
    pk = [c / TCP(sport=41000, dport=80, flags="S", seq=100, options=[]),
          s / TCP(sport=80, dport=41000, flags="SA", seq=900, ack=101, options=[])]  # fmt: skip
    pk += [c / TCP(sport=41000, dport=80, flags="PA", seq=101 + 10 * i) / Raw(b"%d" % i * 10)
           for i in range(4)]  # fmt: skip
    pk += [IP(src="198.18.0.11", dst="198.18.0.80", id=7) / TCP(sport=41001, dport=80,
           flags="R", seq=5)]  # fmt: skip
    pk += [IP(src="198.18.0.80", dst="198.18.0.12", id=20 + i) / TCP(sport=80, dport=41002,
           flags="A", seq=77, ack=88) for i in range(6)]  # fmt: skip
    pk += [IP(src="198.18.0.12", dst="198.18.0.80", id=0) / TCP(sport=41002, dport=80,
           flags="PA", seq=88) / Raw(b"late")]  # fmt: skip
    frames = [(1_763_790_000_000_000_000 + i * 1_000_000, frame_bytes(p, "ether"))
              for i, p in enumerate(pk)]  # fmt: skip
    t = read_capture(write_pcap_raw(tmp_path / "x.pcap", frames))
    pc = build_point(t)
    assert pc.cols is not None and pc.halves[0].rows_ is pc.order
    fast = _fastwalk.fingerprint_rows(
        pc.order, pc.cols.start, pc.cols.end, t.flags, t.tsval, t.ipid, t.seq, 4
    )
    assert fast is not None
    _h, _c, n_ts, has_syn, _sid = fast
    got: list[Any] = [[], [], {}]
    want: list[Any] = [[], [], {}]
    _more_codes(t, pc.halves, want[2], 4, n_ts, has_syn, want[0], want[1])
    _more_codes_cols(t, pc.order, pc.cols.start, pc.cols.end, got[2], 4, n_ts, has_syn,
                     got[0], got[1])  # fmt: skip
    assert got == want
    # the data's first two payloads; the ACKs' first 4 IP IDs; the RST's; the late data
    assert [k[0] for k in want[2]] == ["h", "h", "id", "id", "id", "id", "id", "h"]
    assert [k[1] for k in want[2] if k[0] == "id"] == [20, 21, 22, 23, 7]
