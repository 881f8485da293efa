"""Datagrams: UDP, ICMP and ESP packets of one capture, as columns, grouped into flows.

The reader hands over where every UDP/ICMP/ICMPv6/ESP record's IP and L4 headers are
(both the compiled and the numpy record walk); `parse_dgrams` gathers the fields here, with
numpy, so both paths give identical tables. A row is one of:

- a flow datagram (`role` 0): UDP, ICMP echo request/reply (the echo id is the "port" on
  both sides), ESP (ports 0, the SPI in `spi`);
- an ICMP error (`role` 1): destination unreachable (incl. fragmentation needed / packet
  too big), time exceeded, parameter problem, with the quoted inner IP + L4 header
  (`in_*` columns) that names the flow it is about.

`build_dflows` groups flow datagrams of one point into flows (an unordered pair of
endpoints and the protocol, split after a minute of silence); the client is the side that
sent the echo request, or the ephemeral port, or the first sender.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.capfile.layers import buffer_u8
from hopcap.correlate._fastwalk import gather_heads
from hopcap.correlate.conns import mix
from hopcap.correlate.reader import _be16, _be32, _be64, endpoint_strs

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

ICMP, UDP, ESP, ICMP6, TCP = 1, 17, 50, 58, 6
IDLE_NS = 60 * 1_000_000_000  # a datagram flow ends after a minute of silence
# columns that most captures hold one value in (those of ICMP and of the packets ICMP
# errors quote): a read-only broadcast of it, no memory a row, when they do
_RARE = ("itype", "icode", "spi", "mtu", "in_v", "in_proto", "in_src_hi", "in_src_lo",
         "in_dst_hi", "in_dst_lo", "in_sport", "in_dport", "in_ipid", "in_len",
         "in_seq")  # fmt: skip
NO_KEY = -(1 << 40)  # `DgramTable.answer_keys` of a datagram whose key was not captured
HASH_BYTES = 64  # payload bytes in a datagram's identity hash (all of it is compared later)
PROBE_ROWS = 8  # datagrams per direction whose payload hashes link a flow across a hop

ECHO_REQUEST = {ICMP: 8, ICMP6: 128}
ECHO_REPLY = {ICMP: 0, ICMP6: 129}
ERRORS = {
    ICMP: {3: "destination unreachable", 4: "source quench", 11: "time exceeded",
           12: "parameter problem"},
    ICMP6: {1: "destination unreachable", 2: "packet too big", 3: "time exceeded",
            4: "parameter problem"},
}  # fmt: skip
UNREACH4 = {0: "net unreachable", 1: "host unreachable", 2: "protocol unreachable",
            3: "port unreachable", 4: "fragmentation needed", 9: "net prohibited",
            10: "host prohibited", 13: "administratively prohibited"}  # fmt: skip
UNREACH6 = {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
            4: "port unreachable"}  # fmt: skip

_COLS = ("ts", "v", "src_hi", "src_lo", "dst_hi", "dst_lo", "proto", "sport", "dport", "ipid",
         "ttl", "tos", "ip_len", "plen", "pl_off", "pl_cap", "itype", "icode", "iseq", "spi",
         "mtu", "h", "role", "in_v", "in_proto", "in_src_hi", "in_src_lo", "in_dst_hi",
         "in_dst_lo", "in_sport", "in_dport", "in_ipid", "in_len", "in_seq")  # fmt: skip


@dataclass
class DgramTable:
    """Datagrams of one capture point, columnar (one row per datagram, file order)."""

    path: Path
    buf: Any
    ts: I64
    v: I64
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    proto: I64
    sport: I64  # UDP port; ICMP echo id; 0 for ESP and ICMP errors
    dport: I64
    ipid: I64  # -1 for IPv6
    ttl: I64
    tos: I64
    ip_len: I64  # the whole IP packet as sent (total length)
    plen: I64  # bytes after the 8-byte UDP/ICMP/ESP header, per the IP header
    pl_off: I64
    pl_cap: I64
    itype: I64  # ICMP type, -1 otherwise
    icode: I64
    iseq: I64  # ICMP echo sequence, ESP sequence, else -1
    spi: I64  # ESP SPI, else -1
    mtu: I64  # next-hop MTU of fragmentation needed / packet too big, else -1
    h: U64  # identity hash of the payload (first HASH_BYTES bytes, length, echo/ESP seq)
    role: I64  # 0 flow datagram, 1 ICMP error
    in_v: I64  # the packet an ICMP error quotes (-1 elsewhere)
    in_proto: I64
    in_src_hi: U64
    in_src_lo: U64
    in_dst_hi: U64
    in_dst_lo: U64
    in_sport: I64
    in_dport: I64
    in_ipid: I64
    in_len: I64
    in_seq: I64  # TCP sequence number of the quoted segment
    flows: list[DFlow] = field(default_factory=list)
    # its flows by tuple key of either direction -> (flow, direction): `keyed()`
    keyed_flows: dict[int, list[tuple[DFlow, int]]] | None = None
    # the first PROBE_ROWS datagrams of each direction of each flow that carry payload:
    # their rows, flow ids and directions (linking across points compares their hashes)
    probe: tuple[I64, I64, I64] | None = None
    flow_protos: frozenset[int] | None = None  # of its flow datagrams (`captured_proto`)
    fcols: FlowCols | None = None  # its flows' columns (`build_dflows`)
    akeys: I64 | None = None  # `answer_keys`, made on first need
    last_ns: int | None = None  # a time slice's table: the whole capture's last datagram
    # a time slice's table: per row, its conversation as the scan knows it (`slices`: a
    # conversation with a minute of silence is one conversation a piece between the
    # silences, each piece one flow of the unsliced run): flows never join two of them
    conv: U64 | None = None
    # a time slice's table: the conversations (`conv`, sorted) it reads in part, never
    # split by a silence (what is missing between their parts was read by other slices)
    joined: U64 | None = None
    joined_last: I64 | None = None  # their last datagram in the whole capture
    # a time slice's table: its rows of those conversations that lie outside the inner
    # part of its reading (the window and half the margins) or in their heads before it:
    # their other copy may not have been read, so matching pairs them only by identity
    # (never by payload or IP ID alone, nor as GSO pieces, with another's lost copy)
    edge: npt.NDArray[np.bool_] | None = None

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def keyed(self) -> dict[int, list[tuple[DFlow, int]]]:
        """Its flows (`build_dflows`) by the tuple key of either direction: (flow,
        direction) in flow order; made on first need (ICMP errors: the flows they quote)."""
        if self.keyed_flows is None:
            by: dict[int, list[tuple[DFlow, int]]] = {}
            for f in self.flows:
                by.setdefault(f.ckey, []).append((f, 0))
                by.setdefault(f.skey, []).append((f, 1))
            self.keyed_flows = by
        return self.keyed_flows

    def answer_keys(self) -> I64:
        """Per row, what ties an answer to its request: a UDP datagram's first two payload
        bytes (a DNS message's ID), NO_KEY when fewer were captured; else the ICMP echo
        sequence number (the echo id is the flow's "port")."""
        if self.akeys is None:
            keys = self.iseq.copy()
            udp = np.nonzero(self.proto == UDP)[0]
            if udp.shape[0]:
                u8 = buffer_u8(self.buf)
                o = np.minimum(self.pl_off[udp], max(u8.shape[0] - 2, 0))
                qid = u8[o].astype(np.int64) << 8 | u8[o + 1]
                keys[udp] = np.where(self.pl_cap[udp] >= 2, qid, NO_KEY)
            self.akeys = keys
        return self.akeys

    def payload(self, i: int, start: int = 0, end: int | None = None) -> bytes:
        o = int(self.pl_off[i])
        n = int(self.pl_cap[i])
        e = n if end is None else min(end, n)
        s = min(max(start, 0), e)
        return bytes(self.buf[o + s : o + e])


def parse_dgrams(path: Path, buf: Any, ts: I64, l3: I64, l4: I64, end: I64) -> DgramTable:
    """Gather the columns of datagrams whose IP header is at `l3` and L4 header at `l4` of
    `buf` (records end at `end`)."""
    n = int(ts.shape[0])
    u8: npt.NDArray[np.uint8] = (
        np.frombuffer(buf, np.uint8) if n and len(buf) >= 8 else np.zeros(8, np.uint8)
    )
    size = u8.shape[0]

    # reads past the end of a record only happen on rows that are dropped below; clipped
    # to the buffer by the width of each read (a record may end where the file does)
    def c(o: I64, w: int) -> I64:
        return np.clip(o, 0, max(size - w, 0))

    def b8(o: I64) -> I64:
        return u8[c(o, 1)].astype(np.int64)

    def b16(o: I64) -> I64:
        return _be16(u8, c(o, 2))

    def b32(o: I64) -> I64:
        return _be32(u8, c(o, 4))

    def b64(o: I64) -> U64:
        return _be64(u8, c(o, 8))

    # each field is read only on the rows that have it (a gather of every row, then a
    # choice, cost ~2 us and ~600 bytes a datagram: 1.9 s and 480 MB for 400 k)
    def on(
        m: npt.NDArray[np.bool_], read: Callable[[I64], Any], other: Any, dt: Any = np.int64
    ) -> Any:
        out = np.full(n, other, dt)
        i = np.nonzero(m)[0]
        if i.shape[0]:
            out[i] = read(i)
        return out

    v = b8(l3) >> 4
    v4 = v == 4
    v6 = ~v4
    tot4 = on(v4, lambda i: b16(l3[i] + 2), 0)
    pl6 = on(v6, lambda i: b16(l3[i] + 4), 0)
    ip_len = np.where(v4, tot4, 40 + pl6)
    ip_end = np.where((v4 & (tot4 == 0)) | (v6 & (pl6 == 0)), end, l3 + ip_len)
    # the protocol: IPv4's field, or the last next-header before `l4` (IPv6 extensions)
    proto = np.where(v4, on(v4, lambda i: b8(l3[i] + 9), 0), on(v6, lambda i: b8(l3[i] + 6), 0))
    pos = l3 + 40
    for _ in range(3):
        x = np.nonzero(v6 & (pos < l4))[0]
        if not x.shape[0]:
            break
        proto[x] = b8(pos[x])
        pos[x] = pos[x] + (b8(pos[x] + 1) + 1) * 8
    ok = l4 + 8 <= end
    icmp = (proto == ICMP) | (proto == ICMP6)
    itype = on(icmp, lambda i: b8(l4[i]), -1)
    icode = on(icmp, lambda i: b8(l4[i] + 1), -1)
    echo = ((proto == ICMP) & np.isin(itype, (0, 8))) | (
        (proto == ICMP6) & np.isin(itype, (128, 129))
    )
    err = ((proto == ICMP) & np.isin(itype, (3, 4, 11, 12))) | (
        (proto == ICMP6) & np.isin(itype, (1, 2, 3, 4))
    )
    udp = proto == UDP
    esp = proto == ESP
    sport = on(udp, lambda i: b16(l4[i]), 0)
    dport = on(udp, lambda i: b16(l4[i] + 2), 0)
    e = np.nonzero(echo)[0]
    if e.shape[0]:
        sport[e] = dport[e] = b16(l4[e] + 4)  # the echo id
    iseq = on(echo, lambda i: b16(l4[i] + 6), -1)
    s = np.nonzero(esp)[0]
    if s.shape[0]:
        iseq[s] = b32(l4[s] + 4)
    spi = on(esp, lambda i: b32(l4[i]), -1)
    mtu = on((proto == ICMP) & (itype == 3) & (icode == 4), lambda i: b16(l4[i] + 6), -1)
    s = np.nonzero((proto == ICMP6) & (itype == 2))[0]
    if s.shape[0]:
        mtu[s] = b32(l4[s] + 4)
    pl_off = l4 + 8
    plen = np.maximum(ip_end - pl_off, 0)
    pl_cap = np.clip(np.minimum(ip_end, end) - pl_off, 0, None)
    # the quoted packet of an ICMP error (its fields on the errors' rows only: nothing
    # reads them elsewhere)
    i3 = l4 + 8
    in_v = on(err, lambda i: b8(i3[i]) >> 4, -1)
    iv4 = in_v == 4
    ihl = on(err, lambda i: (b8(i3[i]) & 15) * 4, 0)
    i4 = np.where(iv4, i3 + ihl, i3 + 40)
    in_proto = np.where(iv4, on(err & iv4, lambda i: b8(i3[i] + 9), -1),
                        on(err & ~iv4, lambda i: b8(i3[i] + 6), -1))  # fmt: skip
    in_ok = err & (((iv4 & (ihl >= 20)) | (in_v == 6)) & (i4 + 8 <= end))
    ev4, ev6 = in_ok & iv4, in_ok & ~iv4

    def addresses(h: I64, m4: Any, m6: Any) -> tuple[U64, U64, U64, U64]:
        """(src hi, src lo, dst hi, dst lo) of the IPv4 (m4) and IPv6 (m6) headers at h."""
        u64 = np.uint64
        s_hi = on(m6, lambda i: b64(h[i] + 8), 0, u64)
        d_hi = on(m6, lambda i: b64(h[i] + 24), 0, u64)
        s_lo = on(m4, lambda i: b32(h[i] + 12), 0, u64)
        d_lo = on(m4, lambda i: b32(h[i] + 16), 0, u64)
        x = np.nonzero(m6)[0]
        if x.shape[0]:
            s_lo[x], d_lo[x] = b64(h[x] + 16), b64(h[x] + 32)
        return s_hi, s_lo, d_hi, d_lo

    in_src_hi, in_src_lo, in_dst_hi, in_dst_lo = addresses(i3, ev4, ev6)
    ports = in_ok & ((in_proto == TCP) | (in_proto == UDP))
    in_echo = in_ok & ((in_proto == ICMP) | (in_proto == ICMP6))
    in_sport = on(ports, lambda i: b16(i4[i]), 0)
    in_dport = on(ports, lambda i: b16(i4[i] + 2), 0)
    x = np.nonzero(in_echo)[0]
    if x.shape[0]:
        in_sport[x] = in_dport[x] = b16(i4[x] + 4)
    in_ipid = on(ev4, lambda i: b16(i3[i] + 4), -1)
    in_len = on(ev4, lambda i: b16(i3[i] + 2), 0)
    x = np.nonzero(ev6)[0]
    if x.shape[0]:
        in_len[x] = 40 + b16(i3[x] + 4)
    in_seq = on(in_ok & (in_proto == TCP), lambda i: b32(i4[i] + 4), -1)
    role = np.where(ok & (udp | echo | esp), 0, np.where(ok & in_ok, 1, -1))
    keep = np.nonzero(role >= 0)[0]
    src_hi, src_lo, dst_hi, dst_lo = addresses(l3, v4, v6)
    tos = on(v4, lambda i: b8(l3[i] + 1), 0)
    x = np.nonzero(v6)[0]
    if x.shape[0]:
        tos[x] = (b16(l3[x]) >> 4) & 0xFF
    cols: dict[str, Any] = {
        "ts": ts, "v": v, "proto": proto, "sport": sport, "dport": dport,
        "ipid": on(v4, lambda i: b16(l3[i] + 4), -1),
        "ttl": np.where(v4, on(v4, lambda i: b8(l3[i] + 8), 0), on(v6, lambda i: b8(l3[i] + 7), 0)),
        "tos": tos, "ip_len": ip_len,
        "plen": plen, "pl_off": pl_off, "pl_cap": pl_cap, "itype": itype, "icode": icode,
        "iseq": iseq, "spi": spi, "mtu": mtu, "role": role,
        "src_hi": src_hi, "src_lo": src_lo, "dst_hi": dst_hi, "dst_lo": dst_lo,
        "in_v": np.where(in_ok, in_v, -1), "in_proto": np.where(in_ok, in_proto, -1),
        "in_src_hi": in_src_hi, "in_src_lo": in_src_lo, "in_dst_hi": in_dst_hi,
        "in_dst_lo": in_dst_lo, "in_sport": in_sport, "in_dport": in_dport,
        "in_ipid": in_ipid, "in_len": in_len, "in_seq": in_seq,
    }  # fmt: skip
    k = int(keep.shape[0])
    out = {name: np.ascontiguousarray(a if k == n else a[keep]) for name, a in cols.items()}
    for name in _RARE:  # (no ICMP at all, or no ICMP errors: no memory for them)
        a = out[name]
        if k and int(a.min()) == int(a.max()):
            out[name] = np.broadcast_to(a[:1], (k,))
    heads = gather_heads(buf, out["pl_off"], out["pl_cap"], HASH_BYTES) if k else None
    if heads is not None:
        words = heads.view(np.uint64)
        out["h"] = mix(*(words[:, i] for i in range(HASH_BYTES // 8)), out["plen"], out["iseq"])
    else:
        out["h"] = np.zeros(0, np.uint64)
    return DgramTable(path=path, buf=buf, **out)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- flows


@dataclass
class FlowCols:
    """Columns of a table's flows in their order (`DgramTable.flows`), for the steps
    that look at all of them at once (linking across points)."""

    first: I64
    last: I64
    ukey: U64
    proto: I64


@dataclass(slots=True)
class DFlow:
    """The datagrams of one flow at one point (both directions)."""

    fid: int
    proto: int
    v: int
    c: I64  # rows from the client, time order
    s: I64  # rows from the server
    ckey: int  # tuple key (as conns' TCP tuple keys) of the client -> server direction
    skey: int
    ukey: int  # direction-free key
    cli: tuple[int, int, int]  # address hi, lo, port
    srv: tuple[int, int, int]
    first_ts: int
    last_ts: int
    # its ends as text (every flow's are written: its legs, its flow and its findings
    # name them), made with it (`endpoint_strs`)
    client_str: str
    server_str: str

    def rows(self, d: int) -> I64:
        return self.c if d == 0 else self.s

    @property
    def tuple_str(self) -> str:
        return f"{self.client_str} > {self.server_str}"


def build_dflows(t: DgramTable) -> list[DFlow]:
    """The flows of one point (and `t.flows`, `t.fcols`), in order of their first
    datagram. Grouping and the choice of the client are done for all rows at once."""
    rows = np.nonzero(t.role == 0)[0]
    flows: list[DFlow] = []
    t.flows, t.keyed_flows, t.fcols = flows, None, None
    if rows.shape[0] == 0:
        return flows
    ka, kb, ukey = _flow_keys(t, rows)
    o = np.argsort(ukey, kind="stable")
    rs, uk, sk, dk = rows[o], ukey[o], ka[o], kb[o]
    tss = t.ts[rs]
    n = rs.shape[0]
    start = np.ones(n, bool)
    idle = tss[1:] - tss[:-1] > IDLE_NS
    cv = t.conv[rs] if t.conv is not None else None
    if cv is not None and t.joined is not None and t.joined.shape[0] and idle.any():
        j = np.minimum(np.searchsorted(t.joined, cv[1:]), t.joined.shape[0] - 1)
        idle &= t.joined[j] != cv[1:]
    start[1:] = (uk[1:] != uk[:-1]) | idle
    if cv is not None:  # a slice's table: the pieces of a quiet conversation apart
        start[1:] |= cv[1:] != cv[:-1]
    s_idx = np.nonzero(start)[0]
    e_idx = np.append(s_idx[1:], n)
    gid = np.cumsum(start) - 1
    r0 = rs[s_idx]
    pr = t.proto[r0]
    # the client: the echo requester; the ephemeral side of a well-known UDP port; else
    # whoever sent first
    prs, it = t.proto[rs], t.itype[rs]
    req = ((prs == ICMP) & (it == ECHO_REQUEST[ICMP])) | (
        (prs == ICMP6) & (it == ECHO_REQUEST[ICMP6])
    )
    first_req = np.minimum.reduceat(np.where(req, np.arange(n), n), s_idx)
    has_req = first_req < e_idx
    icmp = (pr == ICMP) | (pr == ICMP6)
    udp_rev = (pr == UDP) & (t.sport[r0] < 1024) & (t.dport[r0] >= 1024)
    client = np.where(
        icmp & has_req,
        sk[np.minimum(first_req, n - 1)],
        np.where((icmp & ~has_req) | udp_rev, dk[s_idx], sk[s_idx]),
    )
    is_c = sk == client[gid]
    o2 = np.argsort(gid * 2 + (~is_c), kind="stable")  # per flow: client rows, then server's
    r2 = rs[o2]
    nc = np.bincount(gid, weights=is_c, minlength=s_idx.shape[0]).astype(np.int64)
    tk = mix(t.src_hi[r2], t.src_lo[r2], t.dst_hi[r2], t.dst_lo[r2], t.sport[r2], t.dport[r2])
    rk = mix(t.dst_hi[r2], t.dst_lo[r2], t.src_hi[r2], t.src_lo[r2], t.dport[r2], t.sport[r2])
    has_c = nc > 0
    has_s = (e_idx - s_idx) > nc
    sfirst = np.minimum(s_idx + nc, n - 1)
    ckey = np.where(has_c, tk[s_idx], rk[s_idx])
    skey = np.where(has_s, tk[sfirst], rk[s_idx])
    first = tss[s_idx]
    last = tss[e_idx - 1]
    if cv is not None and t.joined is not None and t.joined_last is not None and t.joined.shape[0]:
        # a slice's part of a conversation: its end is the whole capture's (NAT linking
        # weighs the time between flows)
        c0 = cv[s_idx]
        j = np.minimum(np.searchsorted(t.joined, c0), t.joined.shape[0] - 1)
        last = np.where(t.joined[j] == c0, np.maximum(last, t.joined_last[j]), last)
    # the flows in order of their first datagram (what follows is in that order)
    order = np.argsort(first, kind="stable")
    t.fcols = FlowCols(first[order], last[order], uk[s_idx][order], pr[order])
    s_o, c_o = s_idx[order], has_c[order]
    rc = r2[s_o]  # the first client row, else the first server row
    vv = t.v[r0[order]].tolist()
    cli = list(zip(np.where(c_o, t.src_hi[rc], t.dst_hi[rc]).tolist(),
                   np.where(c_o, t.src_lo[rc], t.dst_lo[rc]).tolist(),
                   np.where(c_o, t.sport[rc], t.dport[rc]).tolist(), strict=True))  # fmt: skip
    srv = list(zip(np.where(c_o, t.dst_hi[rc], t.src_hi[rc]).tolist(),
                   np.where(c_o, t.dst_lo[rc], t.src_lo[rc]).tolist(),
                   np.where(c_o, t.dport[rc], t.sport[rc]).tolist(), strict=True))  # fmt: skip
    cols = zip(s_o.tolist(), e_idx[order].tolist(), nc[order].tolist(),
               t.fcols.proto.tolist(), vv, ckey[order].tolist(), skey[order].tolist(),
               t.fcols.ukey.tolist(), t.fcols.first.tolist(), t.fcols.last.tolist(), cli, srv,
               endpoint_strs(vv, cli), endpoint_strs(vv, srv), strict=True)  # fmt: skip
    flows += [
        DFlow(fid, p, v, r2[s : s + c], r2[s + c : e], ck, sk_, u, ce, se, f0, f1, cs, ss)
        for fid, (s, e, c, p, v, ck, sk_, u, f0, f1, ce, se, cs, ss) in enumerate(cols)
    ]
    fid_of = np.empty(order.shape[0], np.int64)
    fid_of[order] = np.arange(order.shape[0], dtype=np.int64)
    pos = np.arange(n, dtype=np.int64) - s_idx[gid]
    srv_row = pos >= nc[gid]
    rank = np.where(srv_row, pos - nc[gid], pos)
    pick = (rank < PROBE_ROWS) & (t.plen[r2] > 0)
    t.probe = (r2[pick], fid_of[gid[pick]], srv_row[pick].astype(np.int64))
    return flows


def _flow_keys(t: DgramTable, rows: I64) -> tuple[U64, U64, U64]:
    """Per row: its source's and destination's keys and its flow's (direction-free)."""
    ka = mix(t.src_hi[rows], t.src_lo[rows], t.sport[rows])
    kb = mix(t.dst_hi[rows], t.dst_lo[rows], t.dport[rows])
    return ka, kb, mix(np.minimum(ka, kb), np.maximum(ka, kb), t.proto[rows])


def flow_ukeys(t: DgramTable, rows: I64) -> U64:
    """The flow key (`DFlow.ukey`) of each of `rows` (flow datagrams)."""
    return _flow_keys(t, rows)[2]


def tuple_key(t: DgramTable, rows: I64, inner: bool = False) -> U64:
    """conns' tuple keys of rows (their own tuple, or the quoted packet's with `inner`)."""
    if inner:
        return mix(t.in_src_hi[rows], t.in_src_lo[rows], t.in_dst_hi[rows], t.in_dst_lo[rows],
                   t.in_sport[rows], t.in_dport[rows])  # fmt: skip
    return mix(t.src_hi[rows], t.src_lo[rows], t.dst_hi[rows], t.dst_lo[rows], t.sport[rows],
               t.dport[rows])  # fmt: skip


def from_client(t: DgramTable) -> npt.NDArray[np.bool_]:
    """Per row: does it travel from its flow's client (`build_dflows`' choice, which this
    sets on `t`)? An ICMP error travels against the packet it quotes."""
    out = np.zeros(len(t), bool)
    for f in build_dflows(t):
        out[f.c] = True
    err = np.nonzero(t.role == 1)[0]
    quoted = tuple_key(t, err, inner=True).tolist()
    for r, k in zip(err.tolist(), quoted, strict=True):
        hit = t.keyed().get(int(k))
        quoted_c2s = hit[0][1] == 0 if hit else int(t.in_dport[r]) < int(t.in_sport[r])
        out[r] = not quoted_c2s
    return out


def take_rows(t: DgramTable, m: npt.NDArray[np.bool_]) -> DgramTable:
    """The rows `m` of `t` as a table of their own (flows not built yet)."""
    return concat_rows([(t, m, 0)], t.path, t.buf)


def concat_rows(
    parts: Sequence[tuple[DgramTable, npt.NDArray[np.bool_], int]], path: Path, buf: Any
) -> DgramTable:
    """The rows (table, rows, where its bytes start in `buf`) of several tables as one
    table over `buf`, in time order (one table's rows stay in file order)."""
    ts = np.concatenate([t.ts[m] for t, m, _ in parts])
    order = np.argsort(ts, kind="stable") if len(parts) > 1 else slice(None)
    cols: dict[str, Any] = {}
    for c in _COLS:
        pieces = [getattr(t, c)[m] + (at if c == "pl_off" else 0) for t, m, at in parts]
        cols[c] = np.concatenate(pieces)[order]
    return DgramTable(path, buf, **cols)


def stack_rows(
    parts: Sequence[tuple[DgramTable, npt.NDArray[np.bool_]]], path: Path, buf: Any
) -> DgramTable:
    """The rows (table, rows) of tables parsed from parts of one file, one after the
    other (as `parse_dgrams` of all their records at once gives them: a parse is row by
    row), without the parse's temporaries of all of them at once."""
    cols: dict[str, Any] = {}
    for c in _COLS:
        cols[c] = np.concatenate([getattr(t, c)[m] for t, m in parts])
    return DgramTable(path, buf, **cols)


def find_flow(t: DgramTable, key: int, ts: int) -> tuple[DFlow, int] | None:
    """The flow at this point whose tuple (one direction) is `key`, nearest in time to `ts`."""
    cands = t.keyed().get(key)
    if not cands:
        return None
    return min(cands, key=lambda fd: max(fd[0].first_ts - ts, ts - fd[0].last_ts, 0))


# --------------------------------------------------------------------------- descriptions


def proto_name(proto: int) -> str:
    return {UDP: "udp", ICMP: "icmp", ICMP6: "icmp", ESP: "esp"}.get(proto, str(proto))


def dns_text(data: bytes) -> str | None:
    """`DNS query 0x1a2b A example.test` (or response, with its rcode), None if not DNS."""
    if len(data) < 12:
        return None
    qid, fl, qd = data[0] << 8 | data[1], data[2] << 8 | data[3], data[4] << 8 | data[5]
    labels: list[str] = []
    pos = 12
    while qd and pos < len(data):
        ln = data[pos]
        if ln == 0 or ln >= 64 or pos + 1 + ln > len(data):
            break
        labels.append(data[pos + 1 : pos + 1 + ln].decode("latin-1"))
        pos += 1 + ln
    qtype = ""
    if qd and pos + 3 <= len(data) and data[pos] == 0:
        code = data[pos + 1] << 8 | data[pos + 2]
        qtype = {1: "A", 28: "AAAA", 5: "CNAME", 15: "MX", 16: "TXT", 2: "NS", 12: "PTR",
                 33: "SRV", 65: "HTTPS", 6: "SOA"}.get(code, f"type{code}")  # fmt: skip
    kind = "response" if fl & 0x8000 else "query"
    rcode = fl & 0xF
    tail = f" rcode={rcode}" if kind == "response" and rcode else ""
    name = ".".join(labels) or "."
    return f"DNS {kind} 0x{qid:04x} {qtype} {name}".replace("  ", " ") + tail


def describe_row(t: DgramTable, r: int) -> str:
    pr = int(t.proto[r])
    ipid = f" ipid={int(t.ipid[r])}" if int(t.v[r]) == 4 else ""
    if pr == UDP:
        text = f"UDP len={int(t.plen[r])}{ipid}"
        if 53 in (int(t.sport[r]), int(t.dport[r])):
            dns = dns_text(t.payload(r))
            if dns:
                text += f" ({dns})"
        return text
    if pr == ESP:
        return f"ESP spi=0x{int(t.spi[r]):08x} seq={int(t.iseq[r])} len={int(t.plen[r])}{ipid}"
    word = "echo request" if int(t.itype[r]) == ECHO_REQUEST.get(pr) else "echo reply"
    return f"ICMP {word} id={int(t.sport[r])} seq={int(t.iseq[r])} len={int(t.plen[r])}{ipid}"


def kind_word(t: DgramTable, r: int) -> str:
    """What one datagram is, in a summary: `DNS query`, `echo request`, `UDP datagram`."""
    pr = int(t.proto[r])
    if pr == ESP:
        return "ESP packet"
    if pr != UDP:
        return "echo request" if int(t.itype[r]) == ECHO_REQUEST.get(pr) else "echo reply"
    if 53 in (int(t.sport[r]), int(t.dport[r])):
        d = dns_text(t.payload(r))
        if d:
            return " ".join(d.split(" ")[:2])
    return "UDP datagram"


def describe(t: DgramTable, rows: list[int]) -> tuple[str, int]:
    nbytes = int(sum(int(t.plen[r]) for r in rows))
    first = describe_row(t, rows[0])
    if len(rows) > 1:
        return f"{first} ({len(rows)} datagrams)", nbytes
    return first, nbytes


def error_text(t: DgramTable, r: int) -> str:
    """`ICMP fragmentation needed (next-hop MTU 1400)`, `ICMP time exceeded`, ..."""
    pr, ty, code = int(t.proto[r]), int(t.itype[r]), int(t.icode[r])
    if pr == ICMP and ty == 3:
        what = UNREACH4.get(code, f"destination unreachable code {code}")
    elif pr == ICMP6 and ty == 1:
        what = UNREACH6.get(code, f"destination unreachable code {code}")
    else:
        what = ERRORS.get(pr, {}).get(ty, f"type {ty}")
    name = "ICMPv6" if pr == ICMP6 else "ICMP"
    mtu = int(t.mtu[r])
    return f"{name} {what}" + (f" (next-hop MTU {mtu})" if mtu >= 0 else "")


def is_frag_needed(t: DgramTable, r: int) -> bool:
    return int(t.mtu[r]) >= 0
