"""Linking half-connections of adjacent points: identical tuple, NAT/PAT (SYN and data
fingerprints), conntrack ground truth, and proxies (application bytes)."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from hopcap.correlate.conns import Conn, Half, PointConns

WEIGHTS = {"ts": 3.0, "isn": 2.0, "sid": 2.0, "h": 1.0, "id": 0.5}


@dataclass
class HalfLinks:
    fwd: dict[int, int]  # upstream hid -> downstream hid
    back: dict[int, int]


def link_halves(
    a: PointConns,
    b: PointConns,
    *,
    offset_ns: int = 0,
    conntrack_pairs: Iterable[tuple[tuple[str, int, str, int], tuple[str, int, str, int]]] = (),
) -> HalfLinks:
    """Link every half at `a` to at most one half at `b`. `offset_ns` is b's clock minus a's
    (a hint: used only to break ties by time)."""
    index: dict[tuple[object, ...], list[int]] = {}
    for h in b.halves:
        for k in set(b.fingerprints(h)):
            hits = index.get(k)
            if hits is None:
                index[k] = [h.hid]
            else:
                hits.append(h.hid)
    cands: list[tuple[float, int, int]] = []
    ct = {_tup_key(x): _tup_key(y) for x, y in conntrack_pairs}
    by_str: dict[tuple[str, str], list[Half]] = {}
    if ct:
        for g in b.halves:
            by_str.setdefault((g.src_str, g.dst_str), []).append(g)
    for h in a.halves:
        scores: dict[int, float] = {}
        strong: set[int] = set()  # candidates sharing an identity key, not just payload
        for k in set(a.fingerprints(h)):
            found = index.get(k)
            if not found:
                continue
            kind = k[0]
            w = WEIGHTS.get(str(kind), 1.0)
            for gid in found:
                scores[gid] = scores.get(gid, 0.0) + w
            if kind != "h":
                strong.update(found)
        # identical tuple: the same connection unless the ISN says otherwise
        for g in b.by_tkey.get(h.tkey, ()):
            if h.syn and g.syn and h.isn != g.isn and g.hid not in scores:
                continue
            scores[g.hid] = scores.get(g.hid, 0.0) + 2.5
            strong.add(g.hid)
        # conntrack: ground truth for the translated tuple
        want = ct.get((h.src_str, h.dst_str)) if ct else None
        if want is not None:
            for g in by_str.get(want, ()):  # an index: a scan per half was quadratic
                scores[g.hid] = scores.get(g.hid, 0.0) + 10.0
                strong.add(g.hid)
        for hid, sc in scores.items():
            g = b.halves[hid]
            if g.synack != h.synack and (g.syn and h.syn):
                continue
            if h.has_ts and g.has_ts and hid not in strong:
                continue  # same bytes but other packets: a proxy, not NAT
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
    return HalfLinks(fwd, back)


def _tup_key(t: tuple[str, int, str, int]) -> tuple[str, str]:
    def ep(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    return ep(t[0], t[1]), ep(t[2], t[3])


_CT_FIELD = re.compile(r"(src|dst|sport|dport)=(\S+)")


def parse_conntrack(
    text: str,
) -> list[tuple[tuple[str, int, str, int], tuple[str, int, str, int]]]:
    """`conntrack -L` lines -> [(original c2s tuple, tuple of the same packets after NAT)].

    An entry's original tuple is (src, sport -> dst, dport); the reply tuple is how the
    answers look. After NAT the client's packets leave as (reply.dst:reply.dport ->
    reply.src:reply.sport)."""
    out = []
    for line in text.splitlines():
        if " tcp " not in f" {line} " and not line.startswith("tcp"):
            continue
        vals: dict[str, list[str]] = defaultdict(list)
        for k, v in _CT_FIELD.findall(line):
            vals[k].append(v)
        if len(vals["src"]) < 2 or len(vals["sport"]) < 2:
            continue
        try:
            orig = (vals["src"][0], int(vals["sport"][0]), vals["dst"][0], int(vals["dport"][0]))
            rep = (vals["src"][1], int(vals["sport"][1]), vals["dst"][1], int(vals["dport"][1]))
        except (ValueError, IndexError):
            continue
        after = (rep[2], rep[3], rep[0], rep[1])
        out.append((orig, after))
        # answers: reply tuple before NAT -> original reversed after NAT
        out.append(((rep[0], rep[1], rep[2], rep[3]), (orig[2], orig[3], orig[0], orig[1])))
    return out


# --------------------------------------------------------------------------- proxies


def stream_bytes(pc: PointConns, h: Half | None, limit: int = 16384) -> bytes:
    """The first `limit` bytes of a half's stream, reassembled by sequence number."""
    return _stream(pc, h, limit)[0]


def _stream(pc: PointConns, h: Half | None, limit: int = 16384) -> tuple[bytes, bool]:
    """(bytes, cut): cut when the limit or a hole ended the reassembly early."""
    if h is None:
        return b"", False
    t = pc.table
    rows = h.idx[t.pl_cap[h.idx] > 0]
    if rows.shape[0] == 0:
        return b"", False
    base = (h.isn + 1) if h.syn else int(t.seq[rows].min())
    segs: dict[int, bytes] = {}
    for r in rows.tolist():
        off = (int(t.seq[r]) - base) & 0xFFFFFFFF
        if off >= limit or off in segs:
            continue
        segs[off] = t.payload(int(r))
    out = bytearray()
    cut = False
    for off in sorted(segs):
        seg = segs[off]
        if off > len(out):
            cut = True  # a hole: stop at what is contiguous
            break
        out += seg[len(out) - off :]
        if len(out) >= limit:
            cut = True
            break
    return bytes(out[:limit]), cut


_HEADER = re.compile(rb"^([A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}):")


def chunks(data: bytes) -> list[bytes]:
    """Content-defined chunks: lines, and long runs cut where a rolling gear hash says.
    Header names are lowercased (proxies such as HAProxy 2.x rewrite their case)."""
    out: list[bytes] = []
    for line in data.split(b"\n"):
        if len(line) <= 256:
            if line.strip():
                line = line.rstrip(b"\r")
                m = _HEADER.match(line)
                if m:
                    line = m.group(1).lower() + line[m.end(1) :]
                out.append(line)
            continue
        h = 0
        start = 0
        for i, c in enumerate(line):
            h = ((h << 1) + _GEAR[c]) & 0xFFFFFFFF
            if i - start >= 32 and (h & 0x3F) == 0:
                out.append(line[start : i + 1])
                start = i + 1
        if start < len(line):
            out.append(line[start:])
    return out


def _gear() -> list[int]:
    x = 0x2545F491
    res = []
    for _ in range(256):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        res.append(x & 0xFFFFFFFF)
    return res


_GEAR = _gear()


@dataclass
class ProxyMatch:
    conn: Conn
    score: float
    details: tuple[str, ...]


def _conn_chunks(pc: PointConns, conn: Conn) -> tuple[list[bytes], list[bytes]]:
    got = pc.chunk_cache.get(conn.cid)
    if got is None:
        sides = []
        for h in (conn.c, conn.s):
            data, cut = _stream(pc, h)
            ch = chunks(data)
            if cut:
                # the window ends at another place in each stream (a proxy inserts bytes):
                # what lies near the cut compares badly, leave out its end
                tail = 0
                while ch and tail < 512:
                    tail += len(ch.pop())
            sides.append(ch)
        got = pc.chunk_cache[conn.cid] = (sides[0], sides[1])
    return got


def _first_payload_ts(pc: PointConns, h: Half | None) -> int | None:
    """Capture time of the first packet of `h` that carries payload."""
    if h is None:
        return None
    t = pc.table
    rows = h.idx[t.plen[h.idx] > 0]
    return int(t.ts[rows[0]]) if rows.shape[0] else None


def _carries_nothing(pc: PointConns, conn: Conn) -> bool:
    t = pc.table
    return all(h is None or not bool(np.any(t.plen[h.idx] > 0)) for h in (conn.c, conn.s))


def _details(ca: list[bytes], sa: list[bytes], cb: list[bytes], sb: list[bytes]) -> list[str]:
    set_ca, set_sa, set_cb, set_sb = set(ca), set(sa), set(cb), set(sb)
    details: list[str] = []
    for what, lines, against in (
        ("c2s inserted", cb, set_ca),
        ("c2s removed", ca, set_cb),
        ("s2c inserted", sa, set_sb),
        ("s2c removed", sb, set_sa),
    ):
        for line in lines:
            if line in against:
                continue
            # what a person reads: header and text lines (binary chunks near the end of
            # the compared window differ only because the windows do)
            text = line.decode("latin-1")
            if text.isprintable():
                details.append(f"{what}: {text[:120]}")
    return details


TIME_ONLY = "linked by time only (no payload crossed)"


def plan_proxied(
    a: PointConns,
    b: PointConns,
    hl: HalfLinks,
    *,
    offset_ns: int = 0,
    tol_ns: int = 1_000_000,
    by_time: bool | None = True,
    slack_ns: int = 2_000_000_000,
    pool_ns: int = 120_000_000_000,
    after_ns: int = 3_000_000_000,
) -> dict[int, ProxyMatch]:
    """Which connection at `b` carried each connection at `a` that crossed no NAT link:
    front conn id at `a` -> its backend at `b`, one backend per front, never shared.

    By content first (chunks of both streams), under time order on the aligned timeline
    (`offset_ns`: b's clock minus a's; `tol_ns`: the clock error allowed): a backend can
    carry a front's request only if its first c2s payload comes after the front's, and
    its first s2c payload before the front's. Equal content (the same request again)
    goes to the backend closest in time. Then, with `by_time` (None: only when some fronts
    were linked by content, i.e. a proxy is known to sit between `a` and `b`), a front whose request
    matched nothing may take a backend that carried no payload at all and whose SYNs were
    never answered (or answered with RST only) opened after the request arrived at `a` and
    before the front ended (or up to `after_ns` later), the nearest in time."""
    fronts = [c for c in a.conns if not any(h is not None and h.hid in hl.fwd for h in (c.c, c.s))]
    if not fronts:
        return {}

    def free(c: Conn) -> bool:
        return not any(h is not None and h.hid in hl.back for h in (c.c, c.s))

    if not b.by_start:
        b.by_start = sorted(b.conns, key=lambda c: c.first_ts)
        b.starts = [c.first_ts for c in b.by_start]
    order, starts = b.by_start, b.starts
    # (score, -time distance) per candidate pair
    cands: list[tuple[float, float, int, int]] = []
    front_c2s: dict[int, int | None] = {}
    for conn in fronts:
        fc = _first_payload_ts(a, conn.c)
        front_c2s[conn.cid] = fc
        ca, sa = _conn_chunks(a, conn)
        if not ca and not sa:
            continue
        set_ca, set_sa = set(ca), set(sa)
        total = sum(len(x) for x in set_ca) + sum(len(x) for x in set_sa)
        if total == 0:
            continue
        fs = _first_payload_ts(a, conn.s)
        lo = conn.first_ts - slack_ns + offset_ns
        hi = conn.last_ts + slack_ns + offset_ns
        i0 = bisect.bisect_left(starts, lo - pool_ns)
        i1 = bisect.bisect_right(starts, hi)
        for cb_conn in order[i0:i1]:
            if cb_conn.last_ts < lo or not free(cb_conn):
                continue
            cb, sb = _conn_chunks(b, cb_conn)
            common = sum(len(x) for x in set_ca.intersection(cb)) + sum(
                len(x) for x in set_sa.intersection(sb)
            )
            if common < 8 or common / total < 0.5:
                continue
            bc = _first_payload_ts(b, cb_conn.c)
            bs = _first_payload_ts(b, cb_conn.s)
            # time order: the request reaches the proxy before it leaves it, the response
            # leaves the backend before it reaches the client
            if fc is not None and bc is not None and bc - offset_ns < fc - tol_ns:
                continue
            if fs is not None and bs is not None and bs - offset_ns > fs + tol_ns:
                continue
            if fc is not None and bc is not None:
                dt = abs(bc - offset_ns - fc)
            else:
                dt = abs(cb_conn.first_ts - offset_ns - conn.first_ts)
            cands.append((round(common / total, 2), -dt / 1e9, conn.cid, cb_conn.cid))
    cands.sort(reverse=True)
    out: dict[int, ProxyMatch] = {}
    used: set[int] = set()
    for score, _ndt, x, y in cands:
        if x in out or y in used:
            continue
        used.add(y)
        cb_conn = b.conns[y]
        ca, sa = _conn_chunks(a, a.conns[x])
        cb, sb = _conn_chunks(b, cb_conn)
        out[x] = ProxyMatch(cb_conn, score, tuple(_details(ca, sa, cb, sb)[:8]))
    if by_time is False or (by_time is None and not out):
        return out
    tcands: list[tuple[int, int, int]] = []
    for conn in fronts:
        fc = front_c2s[conn.cid]
        if conn.cid in out or fc is None:
            continue
        lo = fc - tol_ns + offset_ns
        hi = conn.last_ts + after_ns + offset_ns
        i0 = bisect.bisect_left(starts, lo)
        i1 = bisect.bisect_right(starts, hi)
        for cb_conn in order[i0:i1]:
            if cb_conn.cid in used or not free(cb_conn):
                continue
            c, s = cb_conn.c, cb_conn.s
            if c is None or not c.syn or c.synack or not _carries_nothing(b, cb_conn):
                continue
            if s is not None and s.synack:
                continue  # it opened and still carried nothing: a health check, not this
            tcands.append((cb_conn.first_ts - offset_ns - fc, conn.cid, cb_conn.cid))
    tcands.sort()
    for _dt, x, y in tcands:
        if x in out or y in used:
            continue
        used.add(y)
        out[x] = ProxyMatch(b.conns[y], 0.0, (TIME_ONLY,))
    return out
