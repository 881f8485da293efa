"""Captures larger than memory: correlation by time slices (docs/scale.md).

A slice never cuts a connection. Every point's file is first walked once (`scan`):
its facts (records, warnings, link types, first and last packet) and, per conversation
(an unordered pair of endpoints and the protocol; an ICMP error counts as the
conversation it quotes), the time of its first and last packet and its packet count,
plus where each chunk of records starts in the file. That is the state carried across
slices: O(conversations), never O(packets).

Time is cut into windows of about the same number of packets (by the start of the
conversations). Slice k reads, at every point, the whole of every conversation alive
within its window widened by a margin (clock offsets between points, path delay): the
rows of those conversations only, from the chunks that hold them. It is correlated as a
capture set of its own, and keeps the flows that *start* in its window (on the first
point's clock); a flow that spans many windows is correlated whole, once, in the slice
where it starts. Two passes over the slices make the verdict the one of the unsliced
run: the first matches every slice's flows for the per-hop delay minima (the clocks)
and for the evidence of a capture that started late; the second, with the clocks and
capture windows of the whole run, writes the findings. Slices are independent given the
scan and the clocks: with `jobs` > 1 each pass runs them in forked worker processes
that inherit the scan (the memory budget split between them), the results merged in
slice order.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import mmap
import multiprocessing as mp
import pickle
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.capfile import walk as capwalk
from hopcap.capfile.walk import MAX_RECORD, PCAP_MAGICS, CaptureFileError, Records, record_warning
from hopcap.correlate import copies
from hopcap.correlate import reader as rd
from hopcap.correlate.budget import (
    BYTES_PER_PACKET,
    DGRAM_WEIGHT,
    FLOW_WEIGHT,
    VERDICT_BYTES_PER_DGRAM_FLOW,
    VERDICT_BYTES_PER_FLOW,
)
from hopcap.correlate.clocks import (
    ENDED_BEFORE,
    STARTED_AFTER,
    EndFacts,
    Minima,
    alignments,
    ended_evidence,
    hint_ns,
    merge_minima,
    minima_of,
    started_late,
)
from hopcap.correlate.conns import build_point
from hopcap.correlate.dgram import (
    ESP,
    IDLE_NS,
    DgramTable,
    parse_dgrams,
    stack_rows,
    take_rows,
)
from hopcap.correlate.findings import (
    DELIVERED_WORDS,
    FLAG_BITS,
    NOTHING_SENT,
    Built,
    answered_unseen,
    entered_unseen,
    tally_kind,
)
from hopcap.correlate.flows import FlowB, Point, chains, host_of, match_hops
from hopcap.correlate.order import Samples, decide, ttl_samples
from hopcap.correlate.reader import ACK, FIN, RST, SYN, PacketTable
from hopcap.correlate.tunnelcut import (
    MIN_MARGIN_NS,
    Decided_,
    Key,
    Streams,
    Window,
    applier,
    candidates,
    window_inputs,
)
from hopcap.correlate.udp import DFacts, DFlowB, dtable
from hopcap.errors import CorrelationError
from hopcap.model import Finding, PointInput, Verdict, last_of
from hopcap.units import size_text

log = logging.getLogger("hopcap.correlate")

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]
NS = 1_000_000_000
# memory that does not shrink with slices: the interpreter and numpy, and the verdict
# (kept flows while slices run; at the end its dict and JSON too: measured ~3.9 kB a flow)
BASE_BYTES = 96 << 20
# what a worker process of a sliced run costs beyond its slice: the pages of the parent's
# heap (interpreter, modules, scans) it copies on write
WORKER_BYTES = 16 << 20
MIN_SLICE = 2_000  # packets: the floor when the verdict alone outgrows the budget
MARGIN_NS = 2 * NS  # clock offsets between points plus path delay, beyond the estimate
# the error taken of the clocks a slice was placed by (`clocks.ended_evidence`), where its
# own connections do not align two points
PLACED_ERR_NS = 50_000_000
# the margin pass 2 reads when cut flows went through an L7 proxy: a slice links the
# proxy's connections to the client's requests by their content, both ways, and so must
# read each request's exchange whole on both sides of the proxy. Under loss one lasts
# seconds (a connection beyond the proxy whose SYN-ACK was lost: retried after 1 s, then
# 2 s more): the lab's lb-srv-loss run (5 % loss, 16 keep-alive clients, identical
# requests) at `--memory 5M` gave 8 flows more than unsliced and 145 connections beyond
# the proxy on another client's with 2 s margins, 13 flows apart with 5 s, none with 7 s
PROXY_MARGIN_NS = 8 * NS
TOL_NS = 200_000_000  # `flows._proxy_plan`'s clock error allowed across hosts
# how far past its window a slice reads the starts of conversations, for the flows of the
# window seen late at another point (a SYN retried 6 times: 1 + 2 + ... + 32 s)
EXTEND_NS = 64 * NS
# under a memory budget, no window narrower than this (the margin: `correlate_sliced`)
MIN_WINDOW_NS = MARGIN_NS
_LO, _HI = -(1 << 62), 1 << 62
_MERGE_EVERY = 64  # chunks between merges of the per-conversation extents
# a conversation cut by the slices: its first packets, read by every slice it is alive in
HEAD_ROWS = 64
HEAD_CHUNKS = 2  # chunks (of 32 k records) from its first packet searched for them
DENSE_ROWS = 64  # a conversation's packets in one chunk that the scan places in time

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- keys


_K = [np.uint64(x) for x in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB,
                              0xD6E8FEB86659FD93, 0xA0761D6478BD642F)]  # fmt: skip


def _end(hi: Any, lo: Any, port: Any) -> U64:
    x = (np.asarray(hi, np.uint64) * _K[0]) ^ (np.asarray(lo, np.uint64) * _K[1])
    x ^= np.asarray(port, np.int64).astype(np.uint64) * _K[2]
    x ^= x >> np.uint64(31)
    x *= _K[3]
    x ^= x >> np.uint64(29)
    return x


def conv_keys(proto: Any, a: tuple[Any, Any, Any], b: tuple[Any, Any, Any]) -> U64:
    """One key per conversation, the same both ways (collisions only read more)."""
    with np.errstate(over="ignore"):
        return (_end(*a) + _end(*b)) ^ (np.asarray(proto, np.int64).astype(np.uint64) * _K[4])


def tcp_keys(t: PacketTable) -> U64:
    return conv_keys(6, (t.src_hi, t.src_lo, t.sport), (t.dst_hi, t.dst_lo, t.dport))


def dgram_keys(d: DgramTable) -> U64:
    """A flow datagram's conversation; an ICMP error's is the one it quotes."""
    q = (d.role == 1) & (d.in_v >= 0)

    def pick(x: str) -> Any:
        return np.where(q, getattr(d, "in_" + x), getattr(d, x))

    return conv_keys(
        pick("proto"),
        (pick("src_hi"), pick("src_lo"), pick("sport")),
        (pick("dst_hi"), pick("dst_lo"), pick("dport")),
    )


def _member(keys: U64, sel: U64) -> npt.NDArray[np.bool_]:
    if not sel.shape[0]:
        return np.zeros(keys.shape[0], bool)
    i = np.minimum(np.searchsorted(sel, keys), sel.shape[0] - 1)
    out: npt.NDArray[np.bool_] = sel[i] == keys
    return out


# --------------------------------------------------------------------------- walking


Dg = tuple[I64, I64, I64, I64]


class _Walk:
    """A capture's records in chunks, parsed as `read_capture` parses them: (chunk number,
    byte where it starts or None, its TCP rows as a table of views, its datagrams)."""

    def __init__(self, path: Path, buf: Any) -> None:
        self.path, self.buf = path, buf
        self.records = 0
        self.warnings: list[str] = []
        self.kernel_drops: int | None = None
        self.links: dict[int, int] = {}

    def pieces(
        self, first: int = 0, pos: int | None = None, last: int | None = None
    ) -> Iterator[tuple[int, int | None, PacketTable, Dg]]:
        from hopcap.correlate._fastwalk import walk_parse_pcap

        buf, path = self.buf, self.path
        magic = bytes(buf[:4])
        if magic in PCAP_MAGICS and len(buf) >= 24:
            endian, mult = PCAP_MAGICS[magic]
            _snap, link = struct.unpack_from(endian + "II", buf, 16)
            link &= 0x0FFFFFFF
            at = pos if pos is not None else 24
            gen = walk_parse_pcap(
                buf, endian == ">", mult, MAX_RECORD, link, rd.HEAD, rd.PARSE_CHUNK, at
            )
            if gen is not None:
                i = first
                for item in gen:
                    if len(item) == 2:
                        w = record_warning(path.name, item[1], item[0], self.records, buf)
                        if w:
                            self.warnings.append(w)
                        break
                    k, ts, cols, dg, after = item
                    self.records += k
                    yield i, at, rd._from_columns(path, buf, ts, None, cols), dg
                    at, i = after, i + 1
                    if last is not None and i > last:
                        return
                self.links = {link: self.records} if self.records else {}
                return
        yield from self._numpy(first, last)

    def _numpy(self, first: int, last: int | None) -> Iterator[tuple[int, None, PacketTable, Dg]]:
        from hopcap.correlate._fastwalk import gather_heads, parse_records

        buf, path = self.buf, self.path
        try:
            walk = capwalk.RecordWalk(path, buf, rd._fast_pcap)
        except CaptureFileError as e:
            raise CorrelationError(e.message, hint=e.hint) from None
        for i, rec in enumerate(walk.chunks(rd.CHUNK)):
            for lk, k in zip(
                *(x.tolist() for x in np.unique(rec.link, return_counts=True)), strict=True
            ):
                self.links[lk] = self.links.get(lk, 0) + k
            if last is not None and i > last:
                return  # a slice's read: the file's facts come from the scan
            if i < first:
                continue
            off, cap = rec.off, rec.cap
            dgs: list[tuple[I64, ...]] = []
            fast = parse_records(buf, off, cap, rec.link, rd.HEAD)
            if fast is not None:
                rows, cols, (ri, l3, l4, dend) = fast
                dgs.append((rec.ts[ri], l3, l4, dend))
                t = rd._from_columns(path, buf, rec.ts, rows, cols)
            else:
                heads = gather_heads(buf, off, cap, rd.HEAD)
                k = len(rec)
                sub = Records(
                    off=np.arange(k, dtype=np.int64) * rd.HEAD,
                    cap=np.minimum(cap, rd.HEAD),
                    ts=rec.ts,
                    link=rec.link,
                    orig=rec.orig,
                    iface=rec.iface,
                )
                t = rd._parse(path, buf, heads.reshape(-1), sub, off, cap, dgs)
            z = np.zeros(0, np.int64)
            dg = tuple(np.concatenate([d[j] for d in dgs]) if dgs else z for j in range(4))
            yield i, None, t, dg  # type: ignore[misc]
        self.records = walk.records
        self.warnings = list(walk.warnings)
        self.kernel_drops = walk.kernel_drops


def _head(
    tk: U64, inc: npt.NDArray[np.bool_], ck: U64, taken: I64, keep: npt.NDArray[np.bool_]
) -> None:
    """Keep the rows (`tk`: their keys, `inc`: of a cut conversation `ck`) that are among
    the first `HEAD_ROWS` of their conversation (`taken`: its rows before these)."""
    rows = np.nonzero(inc)[0]
    at = np.searchsorted(ck, tk[rows])
    o = np.argsort(at, kind="stable")
    at_o = at[o]
    start = np.ones(at_o.shape[0], bool)
    start[1:] = at_o[1:] != at_o[:-1]
    ar = np.arange(at_o.shape[0])
    rank = ar - np.maximum.accumulate(np.where(start, ar, 0))
    ok = taken[at_o] + rank < HEAD_ROWS
    keep[rows[o[ok]]] = True
    np.add.at(taken, at_o, 1)


def _visit(sc: Scan, want: list[int]) -> Iterator[tuple[int, PacketTable, Dg]]:
    """The chunks `want` (sorted) of a scanned capture: each run of consecutive ones read
    from where it starts (classic pcap), else one walk from the file's start."""
    w = _Walk(sc.path, sc.buf)
    if all(sc.chunks[i][0] is not None for i in want):
        runs: list[list[int]] = []
        for i in want:
            if runs and runs[-1][-1] == i - 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            for i, _pos, t, dgt in w.pieces(run[0], sc.chunks[run[0]][0], run[-1]):
                yield i, t, dgt
        return
    every = set(want)
    for i, _pos, t, dgt in w.pieces(0, None, want[-1]):
        if i in every:
            yield i, t, dgt


def _take(t: PacketTable, m: npt.NDArray[np.bool_]) -> PacketTable:
    return PacketTable(path=t.path, buf=t.buf, records=0, **rd.row_columns(t, m))


# --------------------------------------------------------------------------- scan


def _no_dense() -> tuple[I64, U64, I64]:
    return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int64)


@dataclass
class Scan:
    """One walk of a point's file: its facts and every conversation's extent."""

    path: Path
    buf: Any
    records: int
    warnings: list[str]  # the walk's (the table adds the link types')
    kernel_drops: int | None
    links: dict[int, int]
    tcp_rows: int
    dgram_rows: int
    tcp_first: int | None
    tcp_last: int | None
    dgram_last: int | None
    keys: U64  # sorted, unique
    first: I64
    last: I64
    rows: I64
    chunks: list[tuple[int | None, int, int]] = field(default_factory=list)  # start, lo, hi
    chunk0: I64 = field(default_factory=lambda: np.zeros(0, np.int64))  # first packet's chunk
    dgram_keys: U64 = field(default_factory=lambda: np.zeros(0, np.uint64))  # sorted
    # where the packets of the large conversations are: (chunk, key, packets) of every
    # conversation with `DENSE_ROWS` packets or more in a chunk
    dense: tuple[I64, U64, I64] = field(default_factory=lambda: _no_dense())
    # conversations never cut across slices (sorted): datagram ones with a minute of
    # silence whose pieces overlap in time (a file out of time order)
    whole: U64 = field(default_factory=lambda: np.zeros(0, np.uint64))
    # datagram conversations with a minute of silence (`_Pieces`): where each piece starts
    pieces: Pieces = field(default_factory=lambda: _no_pieces())
    # ESP conversations (pieces; sorted): all cut when a tunnel endpoint may be among the
    # points (`_Run.tunnels`: an outer flow is paired with the inner packets by timing and
    # size, decisions of the whole flow made over the run, `tunnelcut`)
    esp: U64 = field(default_factory=lambda: np.zeros(0, np.uint64))
    # the table's warning about packets captured twice (`reader.forwarded_twice`)
    forwarded: str | None = None
    # the protocols of its flow datagrams (`reader.captured_proto`)
    dgram_protos: frozenset[int] = frozenset()
    # the exact copies removed (`copies`): per chunk that has any, its TCP rows' and its
    # datagrams' (packed bits, None: none; at most a bit a packet, the one state that grows
    # with packets: a slice's read removes the very rows the scan did), and the warning
    # that says how many
    copies: dict[int, tuple[U8 | None, U8 | None]] = field(default_factory=dict)
    copied: str | None = None

    def cost(self) -> I64:
        """Per conversation: its packets as slices count them (`DGRAM_WEIGHT`), and its
        own `FLOW_WEIGHT` (its objects: most of a short one's memory)."""
        dg = _member(self.keys, self.dgram_keys)
        out: I64 = self.rows * (1 + (DGRAM_WEIGHT - 1) * dg) + FLOW_WEIGHT
        return out

    def dense_cost(self) -> I64:
        """`dense`'s packet counts as slices count them."""
        _ch, ks, ns = self.dense
        out: I64 = ns * (1 + (DGRAM_WEIGHT - 1) * _member(ks, self.dgram_keys))
        return out

    def close(self) -> None:
        if isinstance(self.buf, mmap.mmap):
            with contextlib.suppress(BufferError):  # a numpy view is still alive
                self.buf.close()


Ext = tuple[U64, I64, I64, I64, I64]  # keys, first, last, packets, first chunk


def _reduce(k: U64, lo: I64, hi: I64, n: I64, c0: I64) -> Ext:
    order = np.argsort(k, kind="stable")
    k, lo, hi, n, c0 = k[order], lo[order], hi[order], n[order], c0[order]
    if not k.shape[0]:
        return k, lo, hi, n, c0
    starts = np.concatenate([[0], np.nonzero(k[1:] != k[:-1])[0] + 1])
    return (
        k[starts],
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
        np.add.reduceat(n, starts),
        np.minimum.reduceat(c0, starts),
    )


def piece_key(k: U64, piece: I64) -> U64:
    """The scan's key of piece `piece` of conversation `k` (its first piece: `k`)."""
    with np.errstate(over="ignore"):
        other = _end(k, piece, 0x51554945) ^ k
    out: U64 = np.where(piece == 0, k, other)
    return out


def _advance_pieces(state: I64, jo: I64, inc: I64) -> I64:
    """The piece of each row (`jo`: its conversation's index in the scan's sorted keys,
    rows grouped by it in order; `inc`: 1 where a row starts a new piece): the
    conversation's piece so far in `state` plus the starts up to the row; `state` set to
    each conversation's last."""
    n = jo.shape[0]
    first = np.ones(n, bool)
    first[1:] = jo[1:] != jo[:-1]
    cum = np.cumsum(inc)
    sp = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    piece: I64 = state[jo] + cum - cum[sp] + inc[sp]
    end = np.append(first[1:], True)
    state[jo[end]] = piece[end]
    return piece


class _Pieces:
    """Datagram conversations cut at every minute of silence or more between two of their
    flow datagrams (file order, as `build_dflows` splits flows: each piece is one flow of
    the unsliced run), for a walk a chunk at a time: each piece is a conversation of its
    own in the scan (`piece_key`); an ICMP error about one goes with its piece then."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.uint64)  # sorted: every conversation so far
        self.last = np.zeros(0, np.int64)  # its last flow datagram (_LO: none yet)
        self.piece = np.zeros(0, np.int64)  # its piece so far

    def add(self, k: U64, ts: I64, flow: npt.NDArray[np.bool_]) -> U64:
        """The piece keys of a chunk's rows (`k`: their conversations; `flow`: which rows
        are flow datagrams that may start a piece)."""
        if not k.shape[0]:
            return k
        new = ~_member(k, self.keys)
        if new.any():
            uk = npsets.unique(k[new])
            at = np.searchsorted(self.keys, uk)
            self.keys = np.insert(self.keys, at, uk)
            self.last = np.insert(self.last, at, _LO)
            self.piece = np.insert(self.piece, at, 0)
        j = np.searchsorted(self.keys, k)
        o = np.argsort(j, kind="stable")
        jo, to, fo = j[o], ts[o].astype(np.int64), flow[o]
        n = jo.shape[0]
        fr = np.nonzero(fo)[0]
        inc = np.zeros(n, np.int64)
        if fr.shape[0]:
            jf, tf = jo[fr], to[fr]
            prev = np.empty(fr.shape[0], np.int64)
            prev[1:] = tf[:-1]
            gs = np.ones(fr.shape[0], bool)
            gs[1:] = jf[1:] != jf[:-1]
            prev[gs] = self.last[jf[gs]]
            inc[fr[(prev > _LO) & (tf - prev > IDLE_NS)]] = 1
            ge = np.append(gs[1:], True)
            self.last[jf[ge]] = tf[ge]
        piece = _advance_pieces(self.piece, jo, inc)
        out = np.empty(n, np.uint64)
        out[o] = piece_key(self.keys[jo], piece)
        return out

    def quiet(self) -> tuple[U64, I64]:
        """The conversations with pieces (sorted) and how many pieces each has."""
        m = self.piece > 0
        return self.keys[m], self.piece[m] + 1


_SYNS_SMALL = 1 << 16


class _Syns:
    """Per directed tuple with a SYN so far: the seq of its last SYN and whether a RST (not
    a SYN) of the tuple came since. Two sorted tables: a chunk's new tuples go into the
    small one, merged into the large one when it holds `_SYNS_SMALL` (a walk of millions
    of connections does not rewrite them all at every chunk)."""

    def __init__(self) -> None:
        z = np.zeros(0, np.uint64)
        self.tabs = [(z, np.zeros(0, np.int64), np.zeros(0, bool)) for _ in range(2)]

    def find(self, dk: U64) -> tuple[I64, I64, I64, npt.NDArray[np.bool_]]:
        """For each of `dk`: its table (-1: none) and place there, its last SYN's seq (-1:
        none) and whether a RST came since."""
        n = dk.shape[0]
        tab, at = np.full(n, -1, np.int64), np.zeros(n, np.int64)
        isn, rst = np.full(n, -1, np.int64), np.zeros(n, bool)
        for i, (keys, isns, rsts) in enumerate(self.tabs):
            if keys.shape[0]:
                j = np.minimum(np.searchsorted(keys, dk), keys.shape[0] - 1)
                m = keys[j] == dk
                tab[m], at[m], isn[m], rst[m] = i, j[m], isns[j[m]], rsts[j[m]]
        return tab, at, isn, rst

    def put(self, dk: U64, tab: I64, at: I64, isn: I64, rst: npt.NDArray[np.bool_]) -> None:
        """Store `isn`, `rst` of the tuples `dk` (sorted, unique; `tab`, `at`: `find`'s)."""
        for i, (_keys, isns, rsts) in enumerate(self.tabs):
            m = tab == i
            isns[at[m]], rsts[at[m]] = isn[m], rst[m]
        new = tab < 0
        if not new.any():
            return
        keys, isns, rsts = self.tabs[1]
        j = np.searchsorted(keys, dk[new])
        self.tabs[1] = (np.insert(keys, j, dk[new]), np.insert(isns, j, isn[new]),
                        np.insert(rsts, j, rst[new]))  # fmt: skip
        if self.tabs[1][0].shape[0] > _SYNS_SMALL:
            (keys, isns, rsts), (k1, i1, r1) = self.tabs
            j = np.searchsorted(keys, k1)
            self.tabs[0] = (np.insert(keys, j, k1), np.insert(isns, j, i1), np.insert(rsts, j, r1))
            z = np.zeros(0, np.uint64)
            self.tabs[1] = (z, np.zeros(0, np.int64), np.zeros(0, bool))


class _Conns:
    """TCP conversations cut into their connections, for a walk a chunk at a time: a
    connection on a reused tuple (a client port or a NAT port used again) is a piece of
    its own in the scan (`piece_key`), windowed, read whole or cut apart from the others,
    as it is a flow of its own unsliced. A piece starts where `conns._half_starts` starts
    a half at a SYN without ACK after an earlier SYN of its tuple (the same direction):
    another ISN, or the same one after a RST of the tuple (the retry after a challenge
    ACK). `conns` starts the answer's half at the first packet back after it (a SYN-ACK
    of another ISN, or `_split_answers`), so every packet after that SYN in the file is
    the new connection's at that point, both ways. (Not pieces: a connection whose SYN
    the point did not see, `_half_starts`' packet far from the FIN or RST before it, and
    a SYN after packets of its tuple but no SYN: their conversation stays one.)"""

    def __init__(self) -> None:
        self.syns = _Syns()
        self.keys = np.zeros(0, np.uint64)  # sorted: conversations with a second piece
        self.piece = np.zeros(0, np.int64)  # their piece so far
        # where the pieces after a first start: conversation, piece, first packet
        self.firsts: list[tuple[U64, I64, I64]] = []

    def add(self, k: U64, t: PacketTable) -> U64:
        """The piece keys of a chunk's TCP rows (`k`: their conversations; file order)."""
        ctl = np.nonzero((t.flags & (SYN | RST)) != 0)[0]
        starts = self._starts(t, ctl) if ctl.shape[0] else ctl
        if starts.shape[0]:
            uk = npsets.unique(k[starts])
            uk = uk[~_member(uk, self.keys)]
            if uk.shape[0]:
                at = np.searchsorted(self.keys, uk)
                self.keys = np.insert(self.keys, at, uk)
                self.piece = np.insert(self.piece, at, 0)
        if not self.keys.shape[0]:
            return k
        rows = np.nonzero(_member(k, self.keys))[0]
        if not rows.shape[0]:
            return k
        j = np.searchsorted(self.keys, k[rows])
        inc = np.zeros(rows.shape[0], np.int64)
        inc[np.searchsorted(rows, starts)] = 1  # (their conversations are among `keys`)
        o = np.argsort(j, kind="stable")
        jo, io = j[o], inc[o]
        piece = _advance_pieces(self.piece, jo, io)
        out = k.copy()
        out[rows[o]] = piece_key(self.keys[jo], piece)
        s = io == 1
        if s.any():
            self.firsts.append((self.keys[jo[s]], piece[s], t.ts[rows[o[s]]].astype(np.int64)))
        return out

    def _starts(self, t: PacketTable, ctl: I64) -> I64:
        """The rows among `ctl` (SYNs and RSTs, file order) that start a piece; the state
        of their tuples updated."""
        from hopcap.correlate.conns import _last_before

        # the directed tuple's key (numpy: `conns.mix` costs ~0.5 ms a call in C)
        with np.errstate(over="ignore"):
            dk = _end(t.src_hi[ctl], t.src_lo[ctl], t.sport[ctl]) * _K[3] + _end(
                t.dst_hi[ctl], t.dst_lo[ctl], t.dport[ctl]
            )
        o = np.argsort(dk, kind="stable")  # by tuple, each one's in file order
        dk, rows = dk[o], ctl[o]
        fl, sq = t.flags[rows], t.seq[rows].astype(np.int64)
        syn = (fl & SYN) != 0
        rst = ((fl & RST) != 0) & ~syn
        n = rows.shape[0]
        ar = np.arange(n, dtype=np.int64)
        gs = np.ones(n, bool)
        gs[1:] = dk[1:] != dk[:-1]
        gfirst = np.maximum.accumulate(np.where(gs, ar, 0))
        tab, at, was_isn, was_rst = self.syns.find(dk)
        known = tab >= 0
        prev_syn = _last_before(syn, ar)
        mine = prev_syn >= gfirst  # an earlier SYN of the tuple in this chunk
        prev_isn = np.where(mine, sq[np.maximum(prev_syn, 0)], was_isn)
        prev_rst = _last_before(rst, ar)
        reset = np.where(mine, prev_rst > prev_syn, (prev_rst >= gfirst) | was_rst)
        new = syn & ((fl & ACK) == 0) & (mine | known) & ((prev_isn != sq) | reset)
        # the tuples' state after the chunk: the last SYN's seq, a RST since
        ge = np.append(gs[1:], True)
        last_syn = np.where(syn, ar, prev_syn)[ge]
        last_rst = np.where(rst, ar, prev_rst)[ge]
        g0 = gfirst[ge]
        has = last_syn >= g0
        isn = np.where(has, sq[np.maximum(last_syn, 0)], was_isn[ge])
        rs = np.where(has, last_rst > last_syn, (last_rst >= g0) | was_rst[ge])
        keep = known[ge] | has  # (a tuple with no SYN yet: nothing to keep)
        self.syns.put(dk[ge][keep], tab[ge][keep], at[ge][keep], isn[keep], rs[keep])
        return np.sort(rows[new])

    def at_time(self, k: U64, ts: I64) -> U64:
        """The piece keys of rows (ICMP errors about a TCP conversation, `k` its key) by
        their time: the last piece that started at or before it."""
        if not self.firsts or not k.shape[0]:
            return k
        rows = np.nonzero(_member(k, self.keys))[0]
        if not rows.shape[0]:
            return k
        fk = np.concatenate([f[0] for f in self.firsts])
        fp = np.concatenate([f[1] for f in self.firsts])
        ft = np.concatenate([f[2] for f in self.firsts])
        out = k.copy()
        for r in rows.tolist():  # (a few: errors about a reused tuple)
            m = (fk == k[r]) & (ft <= ts[r])
            if m.any():
                out[r] = piece_key(k[r : r + 1], fp[m].max(keepdims=True))[0]
        return out

    def quiet(self) -> tuple[U64, I64]:
        """The conversations with pieces (sorted) and how many pieces each has."""
        return self.keys, self.piece + 1


# the quiet conversations of a scan (sorted), where the pieces of each start in the next
# two (conversation j's are [at[j], at[j + 1])), the pieces' first packets and their keys
Pieces = tuple[U64, I64, I64, U64]


def _no_pieces() -> Pieces:
    z = np.zeros(0, np.int64)
    return np.zeros(0, np.uint64), np.zeros(1, np.int64), z, np.zeros(0, np.uint64)


def _piece_table(ext: Ext, qk: U64, qn: I64) -> tuple[Pieces, U64, tuple[U64, U64]]:
    """The pieces of the quiet conversations `qk` (`qn` pieces each) in the extents `ext`
    (keyed by piece), and the conversations whose pieces overlap in time (a file out of
    time order: their rows cannot be told apart by time), with (sorted piece keys, their
    conversation's key) of theirs."""
    if not qk.shape[0]:
        z = np.zeros(0, np.uint64)
        return _no_pieces(), z, (z, z)
    conv = np.repeat(np.arange(qk.shape[0]), qn)
    at = np.concatenate([[0], np.cumsum(qn)]).astype(np.int64)
    pk = piece_key(qk[conv], np.arange(conv.shape[0], dtype=np.int64) - at[conv])
    j = np.searchsorted(ext[0], pk)
    first, last = ext[1][j], ext[2][j]
    bad = np.zeros(qk.shape[0], bool)
    bad[conv[1:][(conv[1:] == conv[:-1]) & (first[1:] <= last[:-1])]] = True
    keep = ~bad[conv]
    at2 = np.concatenate([[0], np.cumsum(qn[~bad])]).astype(np.int64)
    o = np.argsort(pk[~keep])
    return (
        (qk[~bad], at2, first[keep], pk[keep]),
        qk[bad],
        (pk[~keep][o], qk[conv][~keep][o]),
    )


def _joined(a: Pieces, b: Pieces) -> Pieces:
    """The pieces of two tables of different conversations in one."""
    if not b[0].shape[0]:
        return a
    if not a[0].shape[0]:
        return b
    qk = np.concatenate([a[0], b[0]])
    n = np.concatenate([np.diff(a[1]), np.diff(b[1])])
    at = np.concatenate([a[1][:-1], b[1][:-1] + a[2].shape[0]])
    o = np.argsort(qk, kind="stable")
    n, at = n[o], at[o]
    pidx = np.repeat(at - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
    first, pkeys = np.concatenate([a[2], b[2]])[pidx], np.concatenate([a[3], b[3]])[pidx]
    return qk[o], np.concatenate([[0], np.cumsum(n)]).astype(np.int64), first, pkeys


def _remap(x: U64, src: U64, dst: U64) -> U64:
    """`x` with every key found in `src` (sorted) replaced by its `dst`."""
    if not src.shape[0] or not x.shape[0]:
        return x
    i = np.minimum(np.searchsorted(src, x), src.shape[0] - 1)
    out: U64 = np.where(src[i] == x, dst[i], x)
    return out


def _piece_keys(sc: Scan, k: U64, ts: I64) -> U64:
    """Rows' conversation keys (`tcp_keys`, `dgram_keys`) as the scan keyed them: of a
    quiet datagram conversation or a TCP one of several connections (a reused tuple),
    its piece's (the last piece that starts at or before the row)."""
    qk, at, first, pkeys = sc.pieces
    if not qk.shape[0] or not k.shape[0]:
        return k
    m = _member(k, qk)
    if not m.any():
        return k
    rows = np.nonzero(m)[0]
    c = np.searchsorted(qk, k[rows])
    cs = npsets.unique(c)
    lens = at[cs + 1] - at[cs]
    pidx = np.repeat(at[cs] - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))
    pconv = np.repeat(cs, lens)
    # pieces and rows in one order (conversation, time; a piece before a row at its time)
    conv = np.concatenate([pconv, c])
    tt = np.concatenate([first[pidx], ts[rows].astype(np.int64)])
    kind = np.concatenate([np.zeros(pidx.shape[0], np.int64), np.ones(rows.shape[0], np.int64)])
    o = np.lexsort((kind, tt, conv))
    ev = np.concatenate([pidx, np.full(rows.shape[0], -1, np.int64)])[o]
    seen = np.maximum.accumulate(ev)
    row_at = o >= pidx.shape[0]
    got = np.empty(rows.shape[0], np.int64)
    got[o[row_at] - pidx.shape[0]] = seen[row_at]
    # before its conversation's first piece (not seen by the scan): its first piece
    own = (got >= at[c]) & (got < at[c + 1])
    got = np.where(own, got, at[c])
    out = k.copy()
    out[rows] = pkeys[got]
    return out


def scan(path: Path) -> Scan:
    buf = rd._open(path)
    pieces = _Pieces()
    conns = _Conns()
    esp: list[U64] = []
    w = _Walk(path, buf)
    acc: list[Ext] = []
    dgk: list[U64] = []
    dense: list[tuple[I64, U64, I64]] = []
    chunks: list[tuple[int | None, int, int]] = []
    tcp = dg = 0
    t_first: int | None = None
    t_last: int | None = None
    d_last: int | None = None
    protos: set[int] = set()
    # the first TCP rows' columns (TWICE_ROWS of them, and as many without exact copies)
    # and which are copies
    twice: list[tuple[dict[str, Any], npt.NDArray[np.bool_]]] = []
    # exact copies (`copies`), found as the rows are walked; the conversations, the file's
    # first and last packets are those of the rows without them, until the file's end
    # says whether they are removed (`copies.many`); else the rows with them (`raw`)
    same, dsame = copies.Stream(), copies.Stream()
    copied: dict[int, tuple[U8 | None, U8 | None]] = {}
    ncopies = [0, 0]  # TCP, datagrams
    raw: dict[str, int | None] = {"t_first": None, "t_last": None, "d_last": None}
    for ci, pos, t0, dgt in w.pieces():
        m = same.mask(t0)
        t = t0 if m is None else _take(t0, ~m)
        n = len(t)
        if len(t0) and sum(int((~x[1]).sum()) for x in twice) < rd.TWICE_ROWS:
            cm = np.zeros(len(t0), np.bool_) if m is None else m
            twice.append(({c: getattr(t0, c).copy() for c in rd._TWICE_COLUMNS}, cm))
        if m is not None:
            ncopies[0] += int(m.sum())
            _extent(raw, "t_first", "t_last", t0.ts)
        tcp += n
        ks, ts = [conns.add(tcp_keys(t), t)], [t.ts]
        if n:
            a, b = int(t.ts.min()), int(t.ts.max())
            t_first = a if t_first is None else min(t_first, a)
            t_last = b if t_last is None else max(t_last, b)
        dm = None
        if dgt[0].shape[0]:
            d = parse_dgrams(path, buf, *dgt)
            dm = dsame.mask(d)
            if dm is not None:
                ncopies[1] += int(dm.sum())
                _extent(raw, None, "d_last", d.ts)
                d = take_rows(d, ~dm)
            dg += len(d)
            dk = conns.at_time(dgram_keys(d), d.ts)  # an ICMP error about a connection
            flow = d.role == 0
            protos.update(npsets.unique(d.proto[flow]).tolist())
            ks.append(pieces.add(dk, d.ts, flow))
            tun = flow & (d.proto == ESP)
            if tun.any():
                esp.append(npsets.unique(ks[-1][tun]))
            dgk.append(npsets.unique(ks[-1]))
            ts.append(d.ts)
            if len(d):  # (records that parse to no datagram: none)
                b = int(d.ts.max())
                d_last = b if d_last is None else max(d_last, b)
        if m is not None or dm is not None:
            copied[ci] = (_packed(m), _packed(dm))
        k, tt = np.concatenate(ks), np.concatenate(ts).astype(np.int64)
        chunks.append(
            (pos, int(tt.min()) if tt.shape[0] else _HI, int(tt.max()) if tt.shape[0] else _LO)
        )
        one = np.ones(k.shape[0], np.int64)
        acc.append(_reduce(k, tt, tt, one, one * ci))
        big = acc[-1][3] >= DENSE_ROWS
        if big.any():
            dense.append((acc[-1][4][big], acc[-1][0][big], acc[-1][3][big]))
        if len(acc) >= _MERGE_EVERY:
            acc = [_reduce(*(np.concatenate([a[j] for a in acc]) for j in range(5)))]
            dgk = [npsets.unique(np.concatenate(dgk))] if dgk else []
    if acc:
        ext = _reduce(*(np.concatenate([a[j] for a in acc]) for j in range(5)))
    else:
        ext = (np.zeros(0, np.uint64), *(np.zeros(0, np.int64),) * 4)
    dense_all = (
        (np.concatenate([d[0] for d in dense]), np.concatenate([d[1] for d in dense]),
         np.concatenate([d[2] for d in dense])) if dense else _no_dense()
    )  # fmt: skip
    dkeys = npsets.unique(np.concatenate(dgk)) if dgk else np.zeros(0, np.uint64)
    esp_keys = npsets.unique(np.concatenate(esp)) if esp else np.zeros(0, np.uint64)
    table, tangled, (src, dst) = _piece_table(ext, *pieces.quiet())
    # a TCP conversation whose connections overlap in time (a file out of time order) is
    # one conversation again, but cut like any other
    ctable, _ctangled, (csrc, cdst) = _piece_table(ext, *conns.quiet())
    table = _joined(table, ctable)
    if csrc.shape[0]:
        o = np.argsort(np.concatenate([src, csrc]), kind="stable")
        src, dst = np.concatenate([src, csrc])[o], np.concatenate([dst, cdst])[o]
    if src.shape[0]:  # their pieces back into one conversation each (read whole)
        ext = _reduce(_remap(ext[0], src, dst), *ext[1:])
        dense_all = (dense_all[0], _remap(dense_all[1], src, dst), dense_all[2])
        dkeys = npsets.unique(_remap(dkeys, src, dst))
        esp_keys = npsets.unique(_remap(esp_keys, src, dst))
    keys, first, last, rows, c0 = ext
    n_copies = sum(ncopies)
    removed = copies.many(n_copies, tcp + dg + n_copies)
    if removed:
        records = w.records - n_copies
    else:  # (a network's few duplicates: they stay, as in `read_capture`)
        records, tcp, dg, copied = w.records, tcp + ncopies[0], dg + ncopies[1], {}
        t_first = _outer(t_first, raw["t_first"], min)
        t_last, d_last = _outer(t_last, raw["t_last"]), _outer(d_last, raw["d_last"])
    sc = Scan(
        path, buf, records, w.warnings, w.kernel_drops, w.links, tcp, dg, t_first, t_last,
        d_last, keys, first, last, rows, chunks, c0, dkeys, dense_all, tangled, table, esp_keys,
    )  # fmt: skip
    if twice:
        cols = {c: np.concatenate([x[0][c] for x in twice]) for c in rd._TWICE_COLUMNS}
        if removed:
            keep = ~np.concatenate([x[1] for x in twice])
            cols = {c: a[keep] for c, a in cols.items()}
        sc.forwarded = rd.forwarded_twice(
            path.name, {c: a[: rd.TWICE_ROWS] for c, a in cols.items()}
        )
    sc.copies = copied
    if removed:
        sc.copied = copies.copies_warning(path.name, n_copies)
    sc.dgram_protos = frozenset(protos)
    return sc


def _extent(ext: dict[str, int | None], lo: str | None, hi: str, ts: I64) -> None:
    """The first (`lo`) and last (`hi`) times of `ext` widened by `ts`."""
    if not ts.shape[0]:
        return
    if lo is not None:
        ext[lo] = _outer(ext[lo], int(ts.min()), min)
    ext[hi] = _outer(ext[hi], int(ts.max()))


def _outer(a: int | None, b: int | None, pick: Callable[[int, int], int] = max) -> int | None:
    return b if a is None else a if b is None else pick(a, b)


def _packed(m: npt.NDArray[np.bool_] | None) -> U8 | None:
    return None if m is None else np.packbits(m)


def _unpacked(bits: U8 | None, n: int) -> npt.NDArray[np.bool_] | None:
    return None if bits is None else np.unpackbits(bits, count=n).view(np.bool_)


def read_slice(
    sc: Scan,
    sel: U64,
    cut: tuple[U64, int, int] | None = None,
    inner: tuple[int, int] | None = None,
    more: Sequence[tuple[U64, int, int]] = (),
) -> PacketTable:
    """The rows of the conversations `sel` (sorted keys) of a scanned capture, as a table
    of the whole file's facts (records, warnings, last packet). `cut`: (sorted keys, lo,
    hi) of conversations read in part: their packets between lo and hi (this capture's
    clock) and their first `HEAD_ROWS` (the handshake and the first packets, whose facts
    every slice needs: sequence bases, the NAT link, the first packet). Their datagrams
    outside `inner` (lo, hi) are the table's `edge`. `more`: (sorted keys, lo, hi) of
    TCP conversations' packets read besides (`_late_context`)."""
    parts: list[PacketTable] = []
    dgs: list[tuple[DgramTable, npt.NDArray[np.bool_]]] = []  # parsed chunks, rows kept
    convs: list[U64] = []  # their conversations (`DgramTable.conv`)
    want: set[int] = set()
    if sel.shape[0]:
        m = _member(sc.keys, sel)
        lo, hi = int(sc.first[m].min()), int(sc.last[m].max())
        want |= {i for i, (_p, a, b) in enumerate(sc.chunks) if a <= hi and b >= lo}
    ck = np.zeros(0, np.uint64)
    tlo = thi = 0
    if cut is not None and cut[0].shape[0]:
        ck, tlo, thi = cut
        want |= {i for i, (_p, a, b) in enumerate(sc.chunks) if a <= thi and b >= tlo}
        c0s = sc.chunk0[np.searchsorted(sc.keys, ck)]
        for c0 in c0s.tolist():
            want |= set(range(c0, min(c0 + HEAD_CHUNKS, len(sc.chunks))))
    for _mk, mlo, mhi in more:
        want |= {i for i, (_p, a, b) in enumerate(sc.chunks) if a <= mhi and b >= mlo}
    taken = np.zeros(ck.shape[0], np.int64)  # rows of each cut conversation's head so far
    dtaken = np.zeros(ck.shape[0], np.int64)  # (its datagrams)
    if want:
        for i, t0, dgt in _visit(sc, sorted(want)):
            cm, dcm = sc.copies.get(i, (None, None))
            cp = _unpacked(cm, len(t0))  # the exact copies the scan found
            t = t0 if cp is None else _take(t0, ~cp)
            tk = _piece_keys(sc, tcp_keys(t), t.ts)
            keep = _member(tk, sel)
            if ck.shape[0]:
                inc = _member(tk, ck)
                if inc.any():
                    keep |= inc & (t.ts >= tlo) & (t.ts <= thi)
                    taken[c0s + HEAD_CHUNKS <= i] = HEAD_ROWS  # past its head's chunks
                    if int(taken.min()) < HEAD_ROWS:
                        _head(tk, inc, ck, taken, keep)
            for mk, mlo, mhi in more:
                keep |= _member(tk, mk) & (t.ts >= mlo) & (t.ts <= mhi)
            if keep.any():
                parts.append(_take(t, keep))
            if dgt[0].shape[0]:
                d = parse_dgrams(sc.path, sc.buf, *dgt)
                dm0 = _unpacked(dcm, len(d))
                if dm0 is not None:
                    d = take_rows(d, ~dm0)
                dk = _piece_keys(sc, dgram_keys(d), d.ts)
                dm = _member(dk, sel)
                if ck.shape[0]:
                    dinc = _member(dk, ck)
                    if dinc.any():
                        dm |= dinc & (d.ts >= tlo) & (d.ts <= thi)
                        dtaken[c0s + HEAD_CHUNKS <= i] = HEAD_ROWS
                        if int(dtaken.min()) < HEAD_ROWS:
                            _head(dk, dinc, ck, dtaken, dm)
                if dm.any():
                    dgs.append((d, dm))
                    convs.append(dk[dm])
    got = (parts, sc.records, list(sc.warnings), sc.kernel_drops, dict(sc.links))
    t = rd._finish(sc.path, sc.buf, got, [])
    for said in (sc.copied, sc.forwarded):  # (as `read_capture` says them)
        if said is not None:
            t.warnings.append(said)
    if dgs:  # parsed a chunk at a time (a parse of them all at once takes ~2x the table)
        t.dgram = stack_rows(dgs, sc.path, sc.buf)
        t.dgram.conv = np.concatenate(convs)
        dgs.clear()
    # the whole capture's facts that what a slice reads may not hold
    t.last_ns, t.tcp_rows, t.first_ns = sc.tcp_last, sc.tcp_rows, sc.tcp_first
    t.dgram_rows, t.dgram_protos = sc.dgram_rows, sc.dgram_protos
    if t.dgram is not None:
        t.dgram.last_ns = sc.dgram_last
        if ck.shape[0] and len(t.dgram) and t.dgram.conv is not None:
            dd = t.dgram
            dk = dd.conv
            rows = np.nonzero((dd.role == 0) & _member(dk, ck))[0]
            if rows.shape[0]:
                uk = npsets.unique(dk[rows])
                t.dgram.joined = uk
                t.dgram.joined_last = sc.last[np.searchsorted(sc.keys, uk)]
                if inner is not None:
                    edge = np.zeros(len(dd), bool)
                    edge[rows] = (dd.ts[rows] < inner[0]) | (dd.ts[rows] > inner[1])
                    t.dgram.edge = edge if edge.any() else None
    return t


# --------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class _Late:
    """A cut flow's conversation at a point whose capture began after the flow did (seen
    from the middle; the slice where the flow starts may have none of its packets): the
    flow (group), the point, its first packet and the last of its head (`HEAD_ROWS`), on
    that point's clock, and the flow's conversations at the other points (point, key). A
    slice that reads its head reads theirs over that time too: the packets its own are
    matched to, and the acknowledgements of the packets before (`_late_context`)."""

    group: int
    point: int
    first: int
    head_end: int
    others: tuple[tuple[int, int], ...]


@dataclass
class _Run:
    points: list[PointInput]  # with missing reasons of unreadable files
    scans: list[Scan | None]
    conntrack: Mapping[str, str]
    bounds: list[int]  # window k is [bounds[k], bounds[k + 1]) on the first point's clock
    margin_ns: int
    offsets: list[int]  # clock estimate used to place every point's packets in windows
    # points whose capture started late; ("end", point, why): ended early
    late: set[Any] = field(default_factory=set)
    progress: Progress | None = None
    # conversations cut by the slices, per point (sorted keys): TCP ones larger than
    # `cut_rows`, and (pass 2) every conversation of a flow that has one of those
    cut: list[U64] = field(default_factory=list)
    cut_rows: int = 0
    # a tunnel endpoint may be among the points (`_endpoint_possible`): every ESP
    # conversation is cut, and whether a cut ESP or UDP flow is a tunnel is decided over
    # the run (`tunnelcut`)
    tunnels: bool = False
    # pass 2: those decisions (`tunnelcut.Streams.decide`)
    decisions: dict[Key, Decided_] = field(default_factory=dict)
    # pass 2: the flows that are cut, as (point, key) of each of their conversations
    groups: list[list[tuple[int, int]]] = field(default_factory=list)
    member: dict[tuple[int, int], int] = field(default_factory=dict)  # -> group
    # pass 2: the conversations of cut flows at points whose capture began after the flow
    # did (`_Late`)
    late_heads: list[_Late] = field(default_factory=list)

    def say(self, text: str) -> None:
        log.info(text)
        if self.progress is not None:
            self.progress(text)

    def cut_at(self, i: int) -> U64:
        return self.cut[i] if i < len(self.cut) else np.zeros(0, np.uint64)


def _span(run: _Run, k: int) -> tuple[int, int]:
    """Where the packets of the flows that start in window `k` may be (first point's
    clock): the window, up to the end of the conversations that start in it (a SYN
    retried, a capture that saw a connection late), by at most `EXTEND_NS` (cut
    conversations are read by every slice they are alive in: not counted)."""
    lo, hi = run.bounds[k], run.bounds[k + 1]
    end = hi
    for i, (sc, off) in enumerate(zip(run.scans, run.offsets, strict=True)):
        if sc is not None and sc.keys.shape[0]:
            f = sc.first - off
            m = (f >= lo) & (f < hi) & ~_member(sc.keys, run.cut_at(i))
            if m.any():
                end = max(end, int((sc.last[m] - off).max()))
    return lo, min(end, hi + EXTEND_NS) if hi < _HI else hi


def _group_alive(run: _Run, k: int) -> set[int]:
    """The cut flows (groups) of which a conversation is alive in window `k` (margin)."""
    lo, hi, mg = run.bounds[k], run.bounds[k + 1], run.margin_ns
    out: set[int] = set()
    for (i, key), g in run.member.items():
        sc = run.scans[i]
        if g in out or sc is None:
            continue
        j = int(np.searchsorted(sc.keys, np.uint64(key)))
        if j < sc.keys.shape[0] and int(sc.keys[j]) == key:
            off = run.offsets[i]
            if int(sc.last[j]) >= lo + off - mg and int(sc.first[j]) < hi + off + mg:
                out.add(g)
    return out


def _points(run: _Run, k: int) -> list[Point]:
    """Slice `k`'s points: at each, every conversation alive in window `k` (with the
    margin) or that starts before the flows of the window may have ended, whole; of a
    cut conversation alive then (of a cut flow, in pass 2: of any of its conversations),
    its head and its packets within the window and the margin (in pass 2, and over the
    head of its conversation at a point whose capture began late: `_late_context`)."""
    lo, hi = run.bounds[k], run.bounds[k + 1]
    _lo, end = _span(run, k)
    alive_g = _group_alive(run, k) if run.member else set()
    pts = []
    for i, (inp, sc) in enumerate(zip(run.points, run.scans, strict=True)):
        host, iface = host_of(inp)
        if sc is None:
            pts.append(Point(i, inp, inp.name, host, iface, None, records=0))
            continue
        off, mg = run.offsets[i], run.margin_ns
        alive = (sc.last >= lo + off - mg) & (sc.first < hi + off + mg)
        starts = (sc.first >= lo + off - mg) & (sc.first < end + off + mg)
        part = _member(sc.keys, run.cut_at(i))
        if run.member:
            grouped = np.array(
                [run.member.get((i, int(x)), -1) in alive_g for x in sc.keys[part].tolist()], bool
            )
            on = np.zeros(sc.keys.shape[0], bool)
            on[np.nonzero(part)[0][grouped]] = True
            # a cut conversation of no cut flow (none kept it): its own extent
            loose = part.copy()
            loose[part] = np.array(
                [(i, int(x)) not in run.member for x in sc.keys[part].tolist()], bool
            )
            on |= loose & alive
        else:
            on = part & alive
        cut = (sc.keys[on], lo + off - mg if lo > _LO else _LO, hi + off + mg if hi < _HI else _HI)
        more = _late_context(run, i, alive_g)
        # the datagrams of cut conversations in the outer half of the margins: their copy
        # at another point may be beyond what this slice reads there (`DgramTable.edge`)
        h = mg // 2
        inner = (lo + off - h if lo > _LO else _LO, hi + off + h if hi < _HI else _HI)
        t = read_slice(sc, sc.keys[(alive | starts) & ~part], cut, inner, more)
        pts.append(Point(i, inp, inp.name, host, iface, build_point(t)))
    return pts


def _late_context(run: _Run, i: int, alive_g: set[int]) -> list[tuple[U64, int, int]]:
    """At point `i`, for `read_slice`: (sorted keys, lo, hi, this point's clock) of its
    conversations of the cut flows alive in the slice (`alive_g`) over the head of their
    conversation at a point whose capture began later (`_Late`), with the margin."""
    out = []
    mg = run.margin_ns
    for x in run.late_heads:
        mine = sorted({key for p, key in x.others if p == i})
        if x.group in alive_g and mine:
            d = run.offsets[i] - run.offsets[x.point]
            out.append((np.array(mine, np.uint64), x.first + d - mg, x.head_end + d + mg))
    return out


def _late_members(
    run: _Run, pts: list[Point], keys: list[U64 | None], f: FlowB
) -> dict[tuple[int, int], tuple[int, int]]:
    """The conversations of cut flow `f` (as `_members` keys them) seen from the middle
    (no SYN either way) that began later than its first one by more than the margin: a
    capture that began after the flow did (not a connection beyond a proxy, made later
    with its own handshake): (point, key) -> (its first packet, the last of its head), on
    its point's clock (`_Late`)."""
    legs = []
    for ch in chains([f]):
        for leg in ch.legs:
            h = leg.c if leg.c is not None else leg.s
            sc, kp = run.scans[leg.point], keys[leg.point]
            if h is None or not h.idx.shape[0] or sc is None or kp is None:
                continue
            key = int(kp[int(h.idx[0])])
            j = int(np.searchsorted(sc.keys, np.uint64(key)))
            mid = not any(x is not None and x.syn for x in (leg.c, leg.s))
            legs.append((leg, sc, key, j, int(sc.first[j]), mid))
    if not legs:
        return {}
    start = min(first - run.offsets[leg.point] for leg, _sc, _k, _j, first, _m in legs)
    out = {}
    for leg, sc, key, j, first, mid in legs:
        if mid and first - run.offsets[leg.point] > start + run.margin_ns:
            # its head: its first `HEAD_ROWS` packets in the chunks `read_slice` looks at
            # (every slice that reads it has them, and its packets after them)
            rows = [x.idx for x in (leg.c, leg.s) if x is not None]
            ts = np.sort(pts[leg.point].table.ts[np.concatenate(rows)])
            end = sc.chunks[min(int(sc.chunk0[j]) + HEAD_CHUNKS, len(sc.chunks)) - 1][2]
            if ts.shape[0] >= HEAD_ROWS:
                end = min(end, int(ts[HEAD_ROWS - 1]))
            out[(leg.point, key)] = (first, end)
    return out


def _anchor(run: _Run, k: int, point: int, first_ns: int) -> bool:
    a = first_ns - run.offsets[point]
    return run.bounds[k] <= a < run.bounds[k + 1]


def _flow_first(f: FlowB) -> tuple[int, int]:
    leg = f.legs[0]
    return leg.point, min(h.first_ts for h in (leg.c, leg.s) if h is not None)


@dataclass
class _Evidence:
    """What a slice's flows (those it keeps) say of the whole run, collected by pass 1:
    points whose capture started late, or ended early (`clocks.ended_evidence`), and the
    TTLs across pairs of points (`order.ttl_samples`)."""

    late: set[int] = field(default_factory=set)
    ended: dict[int, EndFacts] = field(default_factory=dict)
    ttl: Samples = field(default_factory=dict)
    # the conversations of cut flows at captures begun after them (`_late_members`)
    heads: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def add(self, other: _Evidence) -> None:
        """`other`'s too (a later slice's)."""
        self.late |= other.late
        for i, e in other.ended.items():
            if i in self.ended:
                self.ended[i].add(e)
            else:
                self.ended[i] = e
        for ab, got in other.ttl.items():
            self.ttl.setdefault(ab, []).extend(got)
        self.heads.update(other.heads)


def _last_packet(sc: Scan) -> int | None:
    """The last packet (TCP or datagram) of a scanned capture (`clocks.last_packet`)."""
    got = [x for x in (sc.tcp_last, sc.dgram_last) if x is not None]
    return max(got) if got else None


def _windows(run: _Run, evidence: _Evidence | None, keep: Callable[[FlowB], bool]) -> Any:
    """`set_windows` with the whole captures' facts: their last packet, a late start seen
    in any slice and an early end (pass 1 collects them into `evidence` from the flows it
    keeps; pass 2 has them in `run.late`)."""

    def apply(pts: list[Point], present: list[int], flows: list[FlowB]) -> None:
        for i in present:
            p, sc = pts[i], run.scans[i]
            assert sc is not None
            hint = p.inp.clock_offset_hint_s or 0.0
            if p.inp.start_ts is not None:
                p.start_ns = int((p.inp.start_ts + hint) * NS)
            if p.inp.stop_ts is not None:
                p.stop_ns = int((p.inp.stop_ts + hint) * NS)
            tw = p.table.warnings
            if sc.tcp_rows and any("truncated" in w or "corrupt" in w for w in tw):
                end = sc.tcp_last
                assert end is not None
                p.stop_ns = end if p.stop_ns is None else min(p.stop_ns, end)
        if evidence is not None:
            kept = [f for f in flows if keep(f)]
            ends = {i: _last_packet(sc) for i, sc in enumerate(run.scans) if sc is not None}
            # (the clocks of the slice's connections, else those the run placed it by)
            adjacent = list(pairwise(present))
            align = alignments(pts, adjacent, kept)
            for a, b in adjacent:
                if (a, b) not in align:
                    align[(a, b)] = (run.offsets[b] - run.offsets[a], PLACED_ERR_NS)
            evidence.ended = ended_evidence(pts, present, kept, ends, align)
            evidence.late |= started_late(pts, present, kept)
        for e in run.late:
            if isinstance(e, tuple):
                if e[0] == "end" and pts[e[1]].stop_ns is None:
                    sc_e = run.scans[e[1]]
                    assert sc_e is not None
                    pts[e[1]].stop_ns, pts[e[1]].ended = _last_packet(sc_e), e[2]
                continue
            i = e
            p, sc = pts[i], run.scans[i]
            assert sc is not None
            assert sc.tcp_first is not None
            first = sc.tcp_first
            p.start_ns = max(p.start_ns or first, first)

    return apply


def _close(pts: list[Point]) -> None:
    for p in pts:
        if p.pc is not None:
            p.pc.table.buf = None  # the scan owns the mapping


# --------------------------------------------------------------------------- cut flows


def _row_keys(run: _Run, pts: list[Point]) -> list[U64 | None]:
    """Per point: the conversation key of every TCP row of its slice, as the scan keyed
    it (of a reused tuple, its connection's)."""
    out: list[U64 | None] = []
    for p, sc in zip(pts, run.scans, strict=True):
        if p.pc is None or sc is None:
            out.append(None)
        else:
            out.append(_piece_keys(sc, tcp_keys(p.table), p.table.ts))
    return out


def _members(keys: list[U64 | None], f: FlowB) -> list[tuple[int, int]]:
    """(point, conversation key) of every leg of flow `f` (and its subs)."""
    out: list[tuple[int, int]] = []
    for ch in chains([f]):
        for leg in ch.legs:
            h = leg.c if leg.c is not None else leg.s
            k = keys[leg.point]
            if h is None or not h.idx.shape[0] or k is None:
                continue
            out.append((leg.point, int(k[int(h.idx[0])])))
    return out


def _cut_flows(
    run: _Run, pts: list[Point], flows: list[FlowB]
) -> tuple[list[U64 | None], set[int]]:
    """The row keys of the slice's points, and which of `flows` are cut (a conversation of
    theirs is)."""
    keys = _row_keys(run, pts)
    if not any(c.shape[0] for c in run.cut):
        return keys, set()
    cut_row: dict[int, npt.NDArray[np.bool_]] = {}
    for i, k in enumerate(keys):
        if k is not None and run.cut_at(i).shape[0]:
            cut_row[i] = _member(k, run.cut_at(i))
    out = set()
    for n, f in enumerate(flows):
        for ch in chains([f]):
            if any(
                h is not None and h.idx.shape[0] and leg.point in cut_row
                and bool(cut_row[leg.point][int(h.idx[0])])
                for leg in ch.legs
                for h in (leg.c if leg.c is not None else leg.s,)
            ):  # fmt: skip
                out.add(n)
                break
    return keys, out


Hist = tuple[I64, I64]  # one-way delays (sorted, unique) and how many pairs had each
Delays = dict[tuple[int, int], Hist]  # (hop, 0 c2s / 1 s2c) -> its judged pairs' delays
RwKey = tuple[str, tuple[str, str], str]  # a rewrite finding: direction, points, field


@dataclass
class _Seg:
    """What slice k judged of a cut flow: the packets whose time (first point's clock, at
    the point that saw them; upstream for a matched or lost one) is in window k."""

    group: int
    head: bool  # the slice where the flow starts: its place in the verdict
    built: Built
    delays: dict[tuple[int, int], Hist]  # (hop, 0 c2s / 1 s2c) -> judged pairs' delays
    req: int  # payload bytes of the client's and the server's judged packets, first leg
    resp: int
    last_req: int | None  # the client's last data packet, first close (its point's clock)
    close: int | None
    answered: tuple[str, str] | None  # `summary.answered_before`
    # per rewrite finding (direction, points, field): its values' groups, in order
    rewrites: dict[tuple[str, tuple[str, str], str], list[_RwGroup]] = field(default_factory=dict)
    # a datagram flow's: its summary's facts (counts of the datagrams judged), and per
    # rewrite finding the place of its first rewrite in the matcher's order and its values
    dgram: DFacts | None = None
    drw: dict[RwKey, tuple[tuple[int, int], set[tuple[str, str]]]] = field(default_factory=dict)
    # beyond a proxy, the connections that carried the flow's requests in this slice (a
    # keep-alive client's requests spread over hundreds of backend connections): each its
    # legs and findings, kept apart as the unsliced verdict has them (`_chain_out`);
    # `built` then holds the flow's own chain only
    subs: list[_Sub] = field(default_factory=list)
    # the flow's legs at a proxy's front (by place in its chain): the exchanges of its
    # connection there that begin in this window (`_fronts`)
    fronts: dict[int, _Front] = field(default_factory=dict)


@dataclass
class _Front:
    """What one slice judged of a connection at a proxy's front: the exchanges that begin
    in its window (each by where it starts in both streams: the same in every slice that
    reads it, unlike its place in what the slice reads), those of them with a request no
    connection beyond the proxy carried, and whether one carried any of its exchanges;
    and the same of those in the margin after its window (`more`,
    `more_lost`): the next slice may read one with no packet of the connection before it
    for longer than the margin (`_fronts`)."""

    owned: list[tuple[int, int]]
    lost: list[tuple[int, int]]
    carried: bool
    more: list[tuple[int, int]] = field(default_factory=list)
    more_lost: list[tuple[int, int]] = field(default_factory=list)
    # an exchange that begins in the window went on past what the slice reads (the margin
    # after the window), or began after a silence longer than the margin before the
    # window: its links may not be the whole capture's (`_proxied_warning`)
    longer: bool = False


@dataclass(slots=True)
class _Sub:
    """What one slice built of a connection beyond a proxy that carried part of a cut flow
    (a `FlowB.subs` chain, with its own subs). Every slice that reads the connection sends
    one, all held by the main process until the merge: kept small (slots; its findings
    mostly none, as the shared empty tuple; the delays the merge uses only) (the rsb lab
    bundle at `--memory 300M`: 177 k of them for 43 k connections, ~1.2 kB each)."""

    key: tuple[str, str, int]  # its first leg: point, tuple, first packet there (its clock)
    last: int  # its last packet there (its clock)
    # the slice's window (first point's clock) and the clock offset of that point: a slice
    # may read a connection in part (of a conversation cut across the slices: its head and
    # the window with the margins), the one whose window holds its first packet reads the
    # exchanges it carried whole (within the margin)
    win: tuple[int, int]
    off: int
    legs: tuple[Any, ...]
    findings: tuple[Finding, ...]
    tried: tuple[Finding, ...]  # of its failed attempts (the flow's summary names them)
    attempts: int  # its chains that are failed attempts
    delays: Delays  # its own hops' judged delays client to server (`_latencies`' only)


@dataclass
class _Linked:
    """The connections beyond a proxy that one slice linked into the flows it keeps whole
    (by `_Sub.key`): no other slice's cut flow has them (`_assign_subs`)."""

    keys: set[tuple[str, str, int]]


@dataclass
class _RwGroup:
    """The judged rewrites of one (before, after) value of a field: as `rewrite_groups`
    and `_describe` see them (its first packet's text, its packets' kinds in order)."""

    key: tuple[str, str]
    before: Any
    after: Any
    n: int
    first: str
    kinds: dict[str, int]


def _rw_groups(
    pts: list[Point], f: FlowB
) -> dict[tuple[str, tuple[str, str], str], list[_RwGroup]]:
    """The rewrites a slice judged of a cut flow, by finding, in `_RwGroup`s."""
    from hopcap.correlate.findings import _first_packet

    out: dict[RwKey, list[_RwGroup]] = {}
    for hop in f.hops:
        for d, dm, up, down in (("c2s", hop.c2s, hop.a, hop.b), ("s2c", hop.s2c, hop.b, hop.a)):
            if dm is None or not dm.rewrites:
                continue
            t = pts[up].table
            groups: dict[tuple[str, str, str], _RwGroup] = {}
            for rw in dm.rewrites:
                key = (rw.field, str(rw.before), str(rw.after))
                g = groups.get(key)
                if g is None:
                    text = _first_packet(t, rw.a_row, dm.a_base)
                    g = groups[key] = _RwGroup(key[1:], rw.before, rw.after, 0, text, {})
                g.n += 1
                kind = tally_kind(int(t.flags[rw.a_row]), int(t.plen[rw.a_row]))
                g.kinds[kind] = g.kinds.get(kind, 0) + 1
            for (fld, _b, _a), g in groups.items():
                out.setdefault((d, (pts[up].name, pts[down].name), fld), []).append(g)
    return out


def _merge_rewrite(fnd: Finding, per_slice: list[list[_RwGroup]]) -> Finding:
    """A rewrite finding of a cut flow from its values' groups in every slice (in
    order): `rewrite_groups`' most common value first, and `_describe`'s text of them."""
    groups: dict[tuple[str, str], _RwGroup] = {}
    for gs in per_slice:
        for g in gs:
            got = groups.get(g.key)
            if got is None:
                groups[g.key] = replace(g, kinds=dict(g.kinds))
                continue
            got.n += g.n
            for kind, n in g.kinds.items():
                got.kinds[kind] = got.kinds.get(kind, 0) + n
    order = list(groups.values())
    if len(order) > 1:
        order.sort(key=lambda g: -g.n)
    top = order[0]
    text = top.first
    if fnd.packets > 1:
        kinds: dict[str, int] = {}
        for g in order:
            for kind, n in g.kinds.items():
                kinds[kind] = kinds.get(kind, 0) + n
        text += " (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")"
    if len(order) > 1:
        text += f"; {len(order)} different values, e.g. {top.before} -> {top.after}"
    return replace(fnd, what=text, before=top.before, after=top.after)


def _keep_judged(
    dm: Any, inside: Callable[[int, Any], npt.NDArray[np.bool_]], up: int, down: int
) -> Hist | None:
    """Keep, of the matches `dm` of one direction of a hop (TCP or datagram), the lost
    packets window `inside` judges (by their time upstream) and the unexplained ones (by
    their own); its matched pairs' delays judged there become its `matched`, `d_min` and
    `d_med`. Their histogram (None: no pair judged here)."""
    dm.read = (dm.undelivered, dm.unexplained)
    und = np.asarray(dm.undelivered, np.int64)
    dm.undelivered = und[inside(up, und)].tolist()
    unx = np.asarray(dm.unexplained, np.int64)
    dm.unexplained = unx[inside(down, unx)].tolist()
    rows, dl = dm.pairs if dm.pairs is not None else (np.zeros(0, np.int64),) * 2
    dl = dl[inside(up, rows)]
    dm.pairs = None
    dm.matched = int(dl.shape[0])
    if not dl.shape[0]:
        dm.d_min = dm.d_med = None
        return None
    v, n = np.unique(dl, return_counts=True)
    dm.d_min, dm.d_med = int(v[0]), _median(v, n.astype(np.int64))
    return v.astype(np.int64), n.astype(np.int64)


def _judge(
    run: _Run, k: int, pts: list[Point], f: FlowB, subs: list[Delays] | None = None
) -> Delays:
    """Keep, in flow `f`'s matches and packets, only what window `k` judges (each packet
    in one slice); its matched pairs' delays (d_min and d_med of its matches become
    theirs: the clock minima of pass 1). `subs` gets those of each of `f.subs`' own hops."""

    def inside(p: int, rows: Any) -> npt.NDArray[np.bool_]:
        return _inside(run, k, pts, p, rows)

    delays: dict[tuple[int, int], Hist] = {}
    own = {id(x): i for i, x in enumerate(f.subs)}
    if subs is not None:
        subs[:] = [{} for _ in f.subs]
    for ch in chains([f]):
        # its hops, and the ways of one direction around legs of it (`flows.add_bypasses`:
        # no hop of the chain, no latency of a leg)
        for j, hop in [*enumerate(ch.hops), *((-1, by) for _iu, _jd, by in ch.bypass)]:
            for d, dm, up, down in ((0, hop.c2s, hop.a, hop.b), (1, hop.s2c, hop.b, hop.a)):
                if dm is None:
                    continue
                if dm.undelivered_bytes:
                    ub = list(dm.undelivered_bytes)
                    ok = inside(up, ub).tolist()
                    dm.undelivered_bytes = {
                        r: n
                        for (r, n), y in zip(dm.undelivered_bytes.items(), ok, strict=True)
                        if y
                    }
                if dm.rewrites:
                    ok = inside(up, [rw.a_row for rw in dm.rewrites]).tolist()
                    dm.rewrites = [rw for rw, y in zip(dm.rewrites, ok, strict=True) if y]
                hist = _keep_judged(dm, inside, up, down)
                if hist is None or j < 0:
                    continue
                if ch is f:
                    delays[(j, d)] = hist
                elif subs is not None and id(ch) in own:
                    subs[own[id(ch)]][(j, d)] = hist
        # the packets of the hops that went around points, both ways or one
        # (`findings._Chain.went_around`; the legs' rows stay, the hops next to them read
        # them): those judged here, by their time at the point before the points around
        arounds = [(j, j + 1, hop) for j, hop in enumerate(ch.hops) if hop.around]
        for iu, jd, hop in [*arounds, *ch.bypass]:
            hop.judged = {}
            for way, h, at in (("c2s", ch.legs[iu].c, hop.a), ("s2c", ch.legs[jd].s, hop.b)):
                if h is not None:
                    hop.judged[way] = h.idx[inside(at, h.idx)].tolist()
        if ch is f and (got0 := entered_unseen(pts, present_of(pts), f)) is not None:
            # (a gap: `findings._Chain.entered_unseen`)
            f.judged = got0[0].idx[inside(f.legs[0].point, got0[0].idx)].tolist()
        # the legs answered before a point that was not capturing (`answered_unseen`)
        unseen = {}
        for j, hop in enumerate(ch.hops):
            if hop.ended == "answered":
                why = answered_unseen(pts[hop.a], pts[hop.b], ch.legs[j])
                if why is not None:
                    unseen[j] = why[0]
        for j, leg in enumerate(ch.legs):
            p = pts[leg.point]
            for h in (leg.c, leg.s):
                if h is None:
                    continue
                back = leg.s if h is leg.c else leg.c
                if back is not None:
                    # data its receiver never took (`unacked_rows`: seen with the bytes
                    # that came again, in this slice and its margins): those judged here
                    una = p.unacked_of(h, back)
                    p.unacked[h.hid] = [
                        r for r, y in zip(una, inside(leg.point, una).tolist(), strict=True) if y
                    ]
                if j < len(ch.hops) and ch.hops[j].ended in ("unanswered", "rst"):
                    # every packet of the leg is judged (lost, or a reset's)
                    h.idx = h.idx[inside(leg.point, h.idx)]
                elif h is unseen.get(j):
                    # (a gap: `findings._Chain.answered_blind`; the leg's rows stay, a
                    # proxy's fronts read them)
                    way = "c2s" if h is leg.c else "s2c"
                    ch.hops[j].judged = {way: h.idx[inside(leg.point, h.idx)].tolist()}
                for flag in (SYN, RST):
                    rows_f = p._flag_rows(flag)
                    got = rows_f.get(h.hid)
                    if got is not None:
                        kept = [
                            r
                            for r, y in zip(got, inside(leg.point, got).tolist(), strict=True)
                            if y
                        ]
                        if kept:
                            rows_f[h.hid] = kept
                        else:
                            del rows_f[h.hid]
    return delays


def present_of(pts: list[Point]) -> list[int]:
    return [p.idx for p in pts if p.pc is not None]


def _fold(a: Hist, b: Hist) -> Hist:
    """The histogram of the delays of `a` and `b`."""
    v = np.concatenate([a[0], b[0]])
    n = np.concatenate([a[1], b[1]])
    u, inv = np.unique(v, return_inverse=True)
    c = np.zeros(u.shape[0], np.int64)
    np.add.at(c, inv, n)
    return u.astype(np.int64), c


def _median(v: I64, n: I64) -> float:
    """The median of values `v` (sorted) each `n` times, as `match` computes it."""
    c = np.cumsum(n)
    total = int(c[-1])
    a = int(v[int(np.searchsorted(c, (total - 1) // 2, "right"))])
    b = int(v[int(np.searchsorted(c, total // 2, "right"))])
    return float(np.float64(a + b) / 2)


def _inside(run: _Run, k: int, pts: list[Point], p: int, rows: Any) -> npt.NDArray[np.bool_]:
    """Which `rows` of point `p` window `k` judges (their time, first point's clock)."""
    t = pts[p].table.ts[np.asarray(rows, np.int64)] - run.offsets[p]
    out: npt.NDArray[np.bool_] = (t >= run.bounds[k]) & (t < run.bounds[k + 1])
    return out


def _seg_facts(
    run: _Run, k: int, pts: list[Point], f: FlowB
) -> tuple[int, int, int | None, int | None]:
    """The judged packets' facts of the first leg that a flow's summary needs."""
    leg = f.legs[0]
    t = pts[leg.point].table
    req = resp = 0
    last_req = close = None
    rc = leg.c.idx[_inside(run, k, pts, leg.point, leg.c.idx)] if leg.c is not None else None
    rs = leg.s.idx[_inside(run, k, pts, leg.point, leg.s.idx)] if leg.s is not None else None
    if rc is not None and rc.shape[0]:
        r = rc
        req = int(t.plen[r].sum())
        data = r[t.plen[r] > 0]
        if data.shape[0]:
            last_req = int(t.ts[data[-1]])
        closes = r[(t.flags[r] & (FIN | RST)) != 0]
        if closes.shape[0]:
            close = int(t.ts[closes[0]])
    if rs is not None and rs.shape[0]:
        resp = int(t.plen[rs].sum())
    return req, resp, last_req, close


# ------------------------------------------------------------------ cut datagram flows


def _dcut_flows(
    run: _Run, pts: list[Point], dflows: list[DFlowB]
) -> dict[int, list[tuple[int, int]]]:
    """The datagram flows of a slice that are cut (a conversation of theirs is), each
    with (point, conversation key as the scan has it: `DgramTable.conv`) of its legs."""
    cut = {i: set(c.tolist()) for i, c in enumerate(run.cut) if c.shape[0]}
    if not cut or not dflows:
        return {}
    every: dict[int, list[tuple[int, int]]] = {}
    hit: set[int] = set()
    for n, f in enumerate(dflows):
        for leg in f.legs:
            d = dtable(pts[leg.point])
            assert d is not None and d.conv is not None
            x = leg.f
            key = int(d.conv[int(x.c[0] if x.c.shape[0] else x.s[0])])
            every.setdefault(n, []).append((leg.point, key))
            if key in cut.get(leg.point, ()):
                hit.add(n)
    return {n: every[n] for n in sorted(hit)}


def _dinside(run: _Run, k: int, pts: list[Point], p: int, rows: Any) -> npt.NDArray[np.bool_]:
    """Which datagram `rows` of point `p` window `k` judges (first point's clock)."""
    d = dtable(pts[p])
    assert d is not None
    t = d.ts[np.asarray(rows, np.int64)] - run.offsets[p]
    out: npt.NDArray[np.bool_] = (t >= run.bounds[k]) & (t < run.bounds[k + 1])
    return out


def _djudge(run: _Run, k: int, pts: list[Point], fl: DFlowB) -> dict[tuple[int, int], Hist]:
    """`_judge` for a datagram flow: keep what window `k` judges of its matches (a lost,
    matched or rewritten datagram by its time upstream, an unexplained one by its own),
    and of the datagrams its findings list whole (`DFlowB.judge`); its pairs' delays."""

    def inside(p: int, rows: Any) -> npt.NDArray[np.bool_]:
        return _dinside(run, k, pts, p, rows)

    delays: dict[tuple[int, int], Hist] = {}
    for j, hop in enumerate(fl.hops):
        for d, dm, up, down in ((0, hop.c2s, hop.a, hop.b), (1, hop.s2c, hop.b, hop.a)):
            if dm is None:
                continue
            if dm.rewrites:
                ok = inside(up, [rw.a_row for rw in dm.rewrites]).tolist()
                order = dm.rw_order or [(0, 0)] * len(dm.rewrites)
                dm.rewrites = [rw for rw, y in zip(dm.rewrites, ok, strict=True) if y]
                dm.rw_order = [o for o, y in zip(order, ok, strict=True) if y]
            hist = _keep_judged(dm, inside, up, down)
            if hist is not None:
                delays[(j, d)] = hist

    def judge(p: int, rows: I64) -> I64:
        out: I64 = rows[inside(p, rows)]
        return out

    fl.judge = judge
    return delays


def _drw(pts: list[Point], fl: DFlowB) -> dict[RwKey, tuple[tuple[int, int], set[tuple[str, str]]]]:
    """Per rewrite finding of a judged datagram flow: its first rewrite's place in the
    matcher's order (step, upstream time) and the (before, after) values it saw."""
    out: dict[RwKey, tuple[tuple[int, int], set[tuple[str, str]]]] = {}
    for hop in fl.hops:
        for d, dm, up, down in (("c2s", hop.c2s, hop.a, hop.b), ("s2c", hop.s2c, hop.b, hop.a)):
            if dm is None or not dm.rewrites:
                continue
            order = dm.rw_order or [(0, 0)] * len(dm.rewrites)
            for rw, o in zip(dm.rewrites, order, strict=True):
                key = (d, (pts[up].name, pts[down].name), rw.field)
                got = out.get(key)
                if got is None:
                    got = out[key] = (o, set())
                got[1].add((str(rw.before), str(rw.after)))
    return out


def _pass1(
    run: _Run, k: int
) -> tuple[Minima, _Evidence, list[list[tuple[int, int]]], Window | None, bool]:
    """Slice `k`'s delay minima and evidence (`_Evidence`), from the flows it keeps (of a
    cut flow, the packets it judges); the conversations of the cut flows that start in
    its window; its window's part of the pairing of the cut ESP flows at a possible
    tunnel endpoint (`tunnelcut`); whether a cut flow went through an L7 proxy
    (`PROXY_MARGIN_NS`)."""
    from hopcap.correlate import match
    from hopcap.correlate.engine import dgram_minima

    pts = _points(run, k)
    evidence = _Evidence()

    def keep(f: FlowB) -> bool:
        return _anchor(run, k, *_flow_first(f))

    def order(pts: list[Point], present: list[int], flows: list[FlowB]) -> list[str]:
        evidence.ttl = ttl_samples(pts, present, [f for f in flows if keep(f)])
        return []

    try:
        prep, dcut = _prepare(run, pts, _windows(run, evidence, keep), order)
        keys, which = _cut_flows(run, prep.pts, prep.flows)
        tun = None
        if run.tunnels:
            cands = candidates(prep.pts, prep.present, prep.dflows, dcut)
            tun = window_inputs(prep.pts, prep.dflows, cands, run.bounds[k],
                                run.bounds[k + 1], run.offsets)  # fmt: skip
        cut = [f for n, f in enumerate(prep.flows) if n in which]
        flows = [f for n, f in enumerate(prep.flows) if n not in which and keep(f)]
        dflows = [f for n, f in enumerate(prep.dflows) if n not in dcut and _dkeep(run, k, f)]
        match_hops(prep.pts, flows)
        groups = []
        for n, ms in dcut.items():
            f = prep.dflows[n]
            if _dkeep(run, k, f):
                groups.append([*ms, _DGRAM])
            _djudge(run, k, prep.pts, f)
            dflows.append(f)
        if cut:
            match.KEEP_PAIRS = True
            try:
                match_hops(prep.pts, cut)
            finally:
                match.KEEP_PAIRS = False
            for f in cut:
                late = _late_members(run, prep.pts, keys, f)
                if keep(f):
                    groups.append(_members(keys, f))
                elif late:
                    # (the slice where it starts may not have seen them: `_group`)
                    groups.append([*_members(keys, f), _LATER])
                evidence.heads.update(late)
                _judge(run, k, prep.pts, f)
        proxied = any(leg.link == "proxied" for ch in chains(cut) for leg in ch.legs)
        return minima_of(flows + cut, dgram_minima(dflows)), evidence, groups, tun, proxied
    finally:
        _close(pts)


def _prepare(
    run: _Run, pts: list[Point], windows: Any, order: Any = None
) -> tuple[Any, dict[int, Any]]:
    """`engine.prepare` of a slice, and its cut datagram flows (`_dcut_flows`): the
    matches of datagram flows keep their pairs when the run cuts conversations (only the
    cut flows' are kept past it)."""
    from hopcap.correlate import udp
    from hopcap.correlate.engine import prepare

    keep = any(c.shape[0] for c in run.cut)
    udp.KEEP_PAIRS = keep
    try:
        prep = prepare(pts, run.conntrack, windows=windows, order=order or _order(run))
    finally:
        udp.KEEP_PAIRS = False
    dcut = _dcut_flows(run, prep.pts, prep.dflows)  # ({} when nothing is cut)
    if keep:
        for n, f in enumerate(prep.dflows):
            if n not in dcut:
                for hop in f.hops:
                    for dm in (hop.c2s, hop.s2c):
                        if dm is not None:
                            dm.pairs, dm.rw_order = None, []
    return prep, dcut


def _order(run: _Run) -> Any:
    """`order.reversed_pairs` of pass 2: nothing (the run decides: `order.decide`)."""

    def apply(pts: list[Point], present: list[int], flows: list[FlowB]) -> list[str]:
        return []

    return apply


def _dkeep(run: _Run, k: int, f: DFlowB) -> bool:
    leg = f.legs[0]
    return _anchor(run, k, leg.point, leg.f.first_ts)


def _pass2(run: _Run, k: int, clocks: Sequence[tuple[int, int | None]]) -> list[Any]:
    """Slice `k`'s flows that start in its window, finished with the run's clocks; of
    every cut flow alive in it, what it judges (`_Seg`)."""
    from hopcap.correlate import match
    from hopcap.correlate.clocks import apply_clocks
    from hopcap.correlate.dgram import proto_name
    from hopcap.correlate.engine import finish_datagrams, finish_part
    from hopcap.correlate.summary import answered_before
    from hopcap.correlate.udp import dgram_facts

    pts = _points(run, k)
    try:
        prep, dcut = _prepare(run, pts, _windows(run, None, lambda f: False))
        apply_clocks(prep.pts, clocks)
        lo, hi = run.bounds[k] / NS, run.bounds[k + 1] / NS
        segs: dict[int, int] = {}  # flow -> group
        keys, which = _cut_flows(run, prep.pts, prep.flows)
        for i in sorted(which):
            ms = _members(keys, prep.flows[i])
            g = run.member.get(ms[0], -1) if ms else -1
            if g >= 0:
                segs[i] = g
        delays: dict[int, dict[tuple[int, int], Hist]] = {}
        sub_delays: dict[int, list[Delays]] = {}
        if segs:
            match.KEEP_PAIRS = True
            try:
                match_hops(prep.pts, [prep.flows[i] for i in segs])
            finally:
                match.KEEP_PAIRS = False
            for i in segs:
                sub_delays[i] = []
                delays[i] = _judge(run, k, prep.pts, prep.flows[i], sub_delays[i])

        def seg(i: int, b: Built) -> _Seg:
            f = prep.flows[i]
            head = _anchor(run, k, *_flow_first(f))
            subs = _subs_of(run, k, prep.pts, prep.present, f, sub_delays[i])
            if subs:  # the flow's own chain in `built`, each sub's apart
                theirs = [x for y in subs for x in y.findings]
                b = replace(b, legs=b.legs[: len(f.legs)], findings=_without(b.findings, theirs))
            return _Seg(segs[i], head, b, delays[i], *_seg_facts(run, k, prep.pts, f),
                        answered_before(prep.pts, f), _rw_groups(prep.pts, f),
                        subs=subs, fronts=_fronts(run, k, prep.pts, f))  # fmt: skip

        if not any(_dgrams(p) for p in prep.pts):
            # TCP only: match and finish the kept flows alone (a flow's matches and
            # findings are its own, as in the partitions of `--jobs` unsliced), not the
            # context around the window; their first packet as `finish_flow` puts it
            kept = [
                i
                for i, f in enumerate(prep.flows)
                if i in segs or (lo <= _first_s(prep.pts, f) < hi)
            ]
            match_hops(prep.pts, [prep.flows[i] for i in kept if i not in segs])
            linked = _linked(prep.pts, [prep.flows[i] for i in kept if i not in segs])
            return [
                *(seg(i, b) if i in segs else b
                  for i, b in zip(kept, finish_part(prep, kept), strict=True)),
                linked,
            ]  # fmt: skip
        # datagram flows, tunnels and ICMP errors need every flow's legs and findings
        every = list(range(len(prep.flows)))
        match_hops(prep.pts, [f for i, f in enumerate(prep.flows) if i not in segs])
        # the cut datagram flows: what this window judges of them
        dsegs: dict[tuple[str, str, float], Callable[[Built], _Seg]] = {}

        def dseg(g: int, head: bool, dl: dict[tuple[int, int], Hist], f: DFlowB) -> Any:
            drw = _drw(prep.pts, f)
            # its facts once it is finished (a tunnel's outer flow: its words and last hop)
            return lambda b: _Seg(g, head, b, dl, 0, 0, None, None, None,
                                  dgram=dgram_facts(prep.pts, f), drw=drw)  # fmt: skip

        for n, ms in dcut.items():
            g = run.member.get(ms[0], -1)
            if g < 0:
                continue
            f = prep.dflows[n]
            dl = _djudge(run, k, prep.pts, f)
            f0, p0 = f.legs[0].f, prep.pts[f.legs[0].point]
            ident = (f0.tuple_str, proto_name(f0.proto), (f0.first_ts - p0.offset_ns) / NS)
            dsegs[ident] = dseg(g, _dkeep(run, k, f), dl, f)
        removed: dict[int, tuple[Finding, ...]] = {}  # a flow into a tunnel: its gaps
        built = finish_datagrams(
            prep, finish_part(prep, every), _decided(run, k, prep, dcut), removed
        )
        out: list[Any] = []
        whole: list[FlowB] = []  # the TCP flows kept whole
        for i, b in enumerate(built):
            ds = None
            if dsegs and i >= len(prep.flows) and b.legs:
                # (its first leg's: not the one a tunnel put before it, `add_tunnel_legs`)
                lg = b.legs[1] if b.legs[0].link == "tunnel" and len(b.legs) > 1 else b.legs[0]
                ds = dsegs.get((lg.tuple, b.proto, b.first_ts or 0.0))
            if i in segs or ds is not None:
                # a cut flow into a tunnel: its gap at the outer point back (its summary
                # is written again from the merged findings, then `into_tunnel` again)
                gaps = removed.get(id(b), ())
                b = replace(b, findings=gaps + tuple(
                    x for x in b.findings
                    if not _of_error(x) or (x.first_ts is not None and lo <= x.first_ts < hi)
                ))  # fmt: skip
                if ds is not None:
                    out.append(ds(b))
                else:
                    out.append(seg(i, b))
                continue
            ts = b.first_ts if b.first_ts is not None else 0.0
            if lo <= ts < hi:
                out.append(b)
                if i < len(prep.flows):
                    whole.append(prep.flows[i])
        out.append(_linked(prep.pts, whole))
        return out
    finally:
        _close(pts)


def _decided(
    run: _Run, k: int, prep: Any, dcut: dict[int, list[tuple[int, int]]]
) -> dict[tuple[int, int, int], Any] | None:
    """The cut ESP flows of slice `k` at a possible tunnel endpoint, each with the
    decision of the run (`tunnelcut.applier`), for `tunnel.find_tunnels`."""
    if not run.decisions:
        return None
    mg = run.margin_ns
    lo, hi = run.bounds[k], run.bounds[k + 1]
    ranges = {
        i: (lo + off - mg if lo > _LO else _LO, hi + off + mg if hi < _HI else _HI)
        for i, off in enumerate(run.offsets)
    }

    def judged(p: int, rows: I64) -> npt.NDArray[np.bool_]:
        return _dinside(run, k, prep.pts, p, rows)

    out: dict[tuple[int, int, int], Any] = {}
    for n, keys in candidates(prep.pts, prep.present, prep.dflows, dcut).items():
        for key in keys:
            got = run.decisions.get(key)
            if got is None:
                continue  # not seen by pass 1: decided by the slice (`_match`)
            dec, snaps = got
            x, _ck, y = key
            if dec is None:
                out[(n, x, y)] = lambda *_a: None  # not a tunnel
            else:
                mine = {d: s[k] for d, s in snaps.items() if k in s}
                out[(n, x, y)] = applier(dec, mine, ranges, judged)
    return out


def _dgrams(p: Point) -> int:
    d = p.pc.table.dgram if p.pc is not None else None
    return len(d) if d is not None else 0


def _first_s(pts: list[Point], f: FlowB) -> float:
    """A TCP flow's first packet (seconds, first point's clock), as its verdict has it."""
    point, first = _flow_first(f)
    return (first - pts[point].offset_ns) / NS


# --------------------------------------------------------------------------- workers

# a slice's work: ("pass1" | "pass2", slice, the run's clock offsets, points that started
# late, the clocks of pass 2, the cut conversations and flows of pass 2, and the tunnel
# decisions of pass 2 (with the state of their pairing at this slice only), its margin
# (wider for them: `tunnelcut.MIN_MARGIN_NS`; beyond an L7 proxy: `PROXY_MARGIN_NS`) and
# its windows' edges (wider beyond a proxy: `_at_least`))
Task = tuple[
    str,
    int,
    list[int],
    frozenset[Any],  # `_Run.late`
    list[tuple[int, int | None]] | None,
    tuple[list[U64], dict[tuple[int, int], int], list[_Late]] | None,
    tuple[int, dict[Key, Decided_], list[int]] | None,
]


def _do(run: _Run, task: Task) -> Any:
    kind, k, offsets, late, clocks, cuts, decisions = task
    run.offsets, run.late = list(offsets), set(late)
    if cuts is not None:
        run.cut, run.member, run.late_heads = cuts
    if decisions is not None:
        run.margin_ns, run.decisions, run.bounds = decisions
    if kind == "pass1":
        got: Any = _pass1(run, k)
    else:
        assert clocks is not None
        got = _pass2(run, k, clocks)
    # the engine's objects of the slice, before the next slice's (the automatic collector
    # is off): those left in reference cycles were all made since the last collection,
    # so the youngest generation holds them, and not the verdict so far (was a full
    # collection after every slice, ~20 % of a run)
    gc.collect(0)
    return got


def _worker(conn: Connection, run: _Run) -> None:
    """A forked process that correlates the slices it is sent (it inherits the scans:
    nothing crosses but each task and its result, pickled once)."""
    try:
        while (task := conn.recv()) is not None:
            try:
                t0, c0 = time.perf_counter(), time.process_time()
                got = _do(run, task)
                t1 = time.perf_counter()
                data = pickle.dumps(("ok", got), pickle.HIGHEST_PROTOCOL)
                log.debug(
                    "slice %d %s: %.2f s (cpu %.2f s), result %d bytes pickled in %.3f s",
                    task[1] + 1, task[0], t1 - t0, time.process_time() - c0, len(data),
                    time.perf_counter() - t1,
                )  # fmt: skip
            except BaseException as exc:  # handed to the parent, which raises it
                try:
                    data = pickle.dumps(("err", exc), pickle.HIGHEST_PROTOCOL)
                except Exception:
                    data = pickle.dumps(("err", RuntimeError(repr(exc))))
            conn.send_bytes(data)
    except (EOFError, OSError):
        pass  # the parent went away
    finally:
        conn.close()


class _Slices:
    """Runs slice tasks: here, one after the other (`jobs` 1), or in `jobs` forked
    worker processes, each taking the next slice as it finishes one; results in slice
    order either way."""

    def __init__(self, run: _Run, jobs: int) -> None:
        self.run = run
        self.kids: list[tuple[Connection, Any]] = []
        if jobs > 1:
            ctx = mp.get_context("fork")
            # the workers' collections never walk what they inherit (nor copy its pages)
            gc.freeze()
            try:
                for _ in range(jobs):
                    here, there = ctx.Pipe()
                    proc = ctx.Process(target=_worker, args=(there, run), daemon=True)
                    proc.start()
                    there.close()
                    self.kids.append((here, proc))
            finally:
                gc.unfreeze()

    def map(
        self, tasks: Sequence[tuple[str, Task]], each: Callable[[Any], Any] | None = None
    ) -> list[Any]:
        """Every (progress line, task)'s result; the line is said as the task starts.
        `each`: called on the results in task order as soon as each is there (what it
        returns is kept instead)."""
        run = self.run
        if not self.kids:
            out = []
            for said, task in tasks:
                run.say(said)
                got1 = _do(run, task)
                out.append(each(got1) if each is not None else got1)
            return out
        from hopcap.correlate.parallel import recv  # a worker's result, or its error

        got: dict[int, Any] = {}
        done: list[Any] = []  # in task order, `each` applied
        todo = deque(enumerate(tasks))
        busy: dict[Connection, int] = {}
        while todo or busy:
            for conn, _proc in self.kids:
                if conn not in busy and todo:
                    i, (said, task) = todo.popleft()
                    run.say(said)
                    conn.send(task)
                    busy[conn] = i
            for ready in wait(list(busy)):
                assert isinstance(ready, Connection)
                got[busy.pop(ready)] = recv(ready)
            while len(done) in got:
                r = got.pop(len(done))
                done.append(each(r) if each is not None else r)
        return done

    def close(self, failed: bool) -> None:
        for conn, _proc in self.kids:
            if not failed:
                with contextlib.suppress(OSError):
                    conn.send(None)
            conn.close()
        for _conn, proc in self.kids:
            if failed:
                proc.kill()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


# conversations of more than 1/8 of `_cut_sets`' rows (and 4 heads) count in a crowd
CROWD_SHARE = 8
CROWD_FLOOR = 4 * HEAD_ROWS


def _cut_sets(
    scans: Sequence[Scan | None], rows: int, tunnels: bool, offsets: Sequence[int]
) -> list[U64]:
    """Per point: its conversations of more than `rows` packets (sorted keys), but those
    never cut (`Scan.whole`); with `tunnels`, every ESP conversation (a tunnel's outer
    flow is paired over the whole run, `tunnelcut`: a slice that read one whole would
    pair it with its own window's inner packets only); and, where large conversations
    under `rows` are alive at once at all the points together with more than `rows`
    packets (a slice reads each one whole), the largest of them until no such crowd is
    left (`_crowded`)."""
    out = []
    for sc in scans:
        if sc is None or not sc.keys.shape[0]:
            out.append(np.zeros(0, np.uint64))
            continue
        big = (sc.cost() > rows) & ~_member(sc.keys, sc.whole)
        if tunnels:
            big |= _member(sc.keys, sc.esp)
        out.append(sc.keys[big])
    more = _crowded(scans, rows, out if tunnels else None, offsets)
    return [npsets.union(c, m) if m.shape[0] else c for c, m in zip(out, more, strict=True)]


def _crowded(
    scans: Sequence[Scan | None], rows: int, forced: list[U64] | None, offsets: Sequence[int]
) -> list[U64]:
    """Per point: conversations of `rows` packets or fewer to cut as well, so that those
    alive at one time (first point's clock, every point) hold at most `rows` (several
    streams of half a slice each alive at once would be read whole into one slice
    together): the largest alive at the most crowded time, as many as it takes, until
    no time is that crowded; then every conversation of at least 3/4 of the smallest of
    those, at every point (a flow's conversations at the other points hold about as
    many packets, and a flow cut at one point must be cut at all: an uncut one is read
    past what the slice reads of the cut one, and its datagrams there could pair with
    the cut one's lost ones by IP ID alone, `DgramTable.edge`). Only conversations of
    more than 1/`CROWD_SHARE` of `rows` and `CROWD_FLOOR` count, and not those cut
    whatever their size (`forced`: the ESP ones at a tunnel endpoint)."""
    floor = max(rows // CROWD_SHARE, CROWD_FLOOR)
    lo, hi, cost = [], [], []
    masks: list[npt.NDArray[np.bool_] | None] = []
    for i, (sc, off) in enumerate(zip(scans, offsets, strict=True)):
        if sc is None or not sc.keys.shape[0]:
            masks.append(None)
            continue
        c = sc.cost()
        m = (c > floor) & (c <= rows) & ~_member(sc.keys, sc.whole)
        if forced is not None:
            m &= ~_member(sc.keys, forced[i])
        masks.append(m)
        lo.append(sc.first[m] - off)
        hi.append(sc.last[m] - off)
        cost.append(c[m])
    none = [np.zeros(0, np.uint64) for _ in scans]
    if not cost:
        return none
    a, b, w = (np.concatenate(x) for x in (lo, hi, cost))
    if int(w.sum()) <= rows:
        return none
    live = np.ones(w.shape[0], bool)
    least = None
    while True:
        idx = np.nonzero(live)[0]
        t = np.concatenate([a[idx], b[idx]])
        d = np.concatenate([w[idx], -w[idx]])
        o = np.lexsort((-d, t))  # at one time: starts before ends
        total = np.cumsum(d[o])
        at = int(np.argmax(total))
        if int(total[at]) <= rows:
            break
        when = int(t[o][at])
        alive = idx[(a[idx] <= when) & (b[idx] >= when)]
        # the largest alive then, as many as it takes (one sweep a crowded time)
        alive = alive[np.argsort(-w[alive], kind="stable")]
        k = int(np.searchsorted(np.cumsum(w[alive]), int(total[at]) - rows)) + 1
        live[alive[:k]] = False
        low = int(w[alive[:k]].min())
        least = low if least is None else min(least, low)
    if least is None:
        return none
    log.info(
        "conversations of %d packets or more (at a point) are cut across the slices too: "
        "long ones alive at the same time would hold more than half a slice",
        least * 3 // 4,
    )
    out = []
    for sc, mk in zip(scans, masks, strict=True):
        if sc is None or mk is None:
            out.append(np.zeros(0, np.uint64))
            continue
        out.append(sc.keys[mk & (sc.cost() >= least * 3 // 4)])
    return out


def _endpoint_possible(inputs: Sequence[PointInput], scans: Sequence[Scan | None]) -> bool:
    """Whether an encrypted tunnel's endpoint may be between two of the points read: two
    interfaces of one host (`tunnel.find_tunnels` looks there only). Without one, an ESP
    flow is a datagram flow like any other, matched datagram by datagram: cut too."""
    seen: set[str] = set()
    for inp, sc in zip(inputs, scans, strict=True):
        host, iface = host_of(inp)
        if sc is None or not iface:
            continue
        if host in seen:
            return True
        seen.add(host)
    return False


def _margin_rows(run: _Run) -> int:
    """About the most packets of the cut conversations within the two margins of a
    window, at every point together (from where the scan found many of them: their
    busiest chunks)."""
    total = 0
    for i, sc in enumerate(run.scans):
        if sc is None or not run.cut_at(i).shape[0]:
            continue
        ch, ks, _ns = sc.dense
        ns = sc.dense_cost()
        m = _member(ks, run.cut_at(i))
        if not m.any():
            continue
        per_chunk = np.zeros(len(sc.chunks), np.int64)
        np.add.at(per_chunk, ch[m], ns[m])
        span = np.array([max(b - a, 1) for _p, a, b in sc.chunks], np.float64)
        rate = float((per_chunk / span).max())  # packets a ns
        total += int(rate * 2 * run.margin_ns)
    return total


def _larger(
    run: _Run, inputs: Sequence[PointInput], per_slice: int, among: Callable[[Scan], U64]
) -> list[tuple[int, int, str]]:
    """Per point with conversations of `among` (sorted keys) of more packets than a slice:
    the largest one's packets, how many there are, the point's name."""
    return [
        (int(sc.rows[m].max()), int(np.count_nonzero(m)), inp.name)
        for sc, inp in zip(run.scans, inputs, strict=True)
        if sc is not None and (m := _member(sc.keys, among(sc)) & (sc.cost() > per_slice)).any()
    ]


def _say_cut(run: _Run, inputs: Sequence[PointInput], per_slice: int) -> None:
    """Say which conversations the slices cut; warn of datagram conversations larger
    than a slice: those are read whole into every slice they are alive in, so the memory
    budget does not bound them (docs/scale.md)."""
    cut = max((c.shape[0] for c in run.cut), default=0)  # the same ones at every point
    if cut:
        most, where = max(
            (int(sc.rows[_member(sc.keys, c)].max()), inp.name)
            for sc, c, inp in zip(run.scans, run.cut, inputs, strict=True)
            if sc is not None and c.shape[0]
        )
        log.info(
            "%d conversation(s) of more than %d packets are cut across the slices (the "
            "largest: %d packets at %s)",
            cut, run.cut_rows, most, where,
        )  # fmt: skip
        margin = _margin_rows(run)
        if margin > per_slice // 2:
            log.warning(
                "the conversations cut across the slices carry up to %d packets within the "
                "%.1f s margins of a window, more than half a slice of the memory budget "
                "(%d): this run may use about %.1f MB more than the budget",
                margin, run.margin_ns / NS, per_slice,
                (margin - per_slice // 2) * BYTES_PER_PACKET / 2**20,
            )  # fmt: skip
    big = _larger(run, inputs, per_slice, lambda sc: sc.whole)
    if big:
        most, _n, where = max(big)
        log.warning(
            "%d datagram conversation(s) with a minute of silence out of time order hold "
            "more packets than a slice of the memory budget (%d); the largest, %d packets "
            "at %s, is read whole into every slice it is alive in, so this run may use "
            "about %.1f MB more than the budget (docs/scale.md, Limits)",
            max(n for _m, n, _p in big), per_slice, most, where,
            most * DGRAM_WEIGHT * BYTES_PER_PACKET / 2**20,
        )  # fmt: skip


def _counts(sc: Scan) -> tuple[int, int]:
    """A point's TCP connections and datagram conversations, as its scan found them."""
    d = int(sc.dgram_keys.shape[0])
    return max(int(sc.keys.shape[0]) - d, 0), d


def _conversations(sc: Scan | None) -> str:
    """A point's conversations in words: "300 connections", "2 connections and 100000
    datagram conversations"."""
    c, d = _counts(sc) if sc is not None else (0, 0)
    words = [f"{c} connections"] if c or not d else []
    return " and ".join([*words, *([f"{d} datagram conversations"] if d else [])])


def _verdict_bytes(sc: Scan) -> int:
    """The memory the verdict of a point's conversations keeps while slices run."""
    c, d = _counts(sc)
    return c * VERDICT_BYTES_PER_FLOW + d * VERDICT_BYTES_PER_DGRAM_FLOW


# the last member of a cut datagram flow's conversations that pass 1 sends (`_group`)
_DGRAM = (-1, 0)
# the last member of a cut TCP flow's conversations that pass 1 sends from a slice after
# the one where it starts, one of which began later than the flow (`_late_members`)
_LATER = (-2, 0)


def _group(
    run: _Run,
    found: Sequence[list[list[tuple[int, int]]]],
    heads: Mapping[tuple[int, int], tuple[int, int]],
) -> None:
    """The cut flows pass 1 found (each as the conversations of its legs), merged where
    they share one; every conversation of a cut flow is cut in pass 2. A flow's
    conversation at a point whose capture began later (`heads`: `_late_members`) joins
    its group from a later slice's, at a point where the group has none."""
    member: dict[tuple[int, int], int] = {}
    groups: list[list[tuple[int, int]]] = []
    later = []
    for per_slice in found:
        for ms in per_slice:
            if ms and ms[-1] == _LATER:
                later.append(ms[:-1])
                continue
            gs = sorted({member[m] for m in ms if m in member})
            if ms and ms[-1] == _DGRAM:
                # a datagram flow has one conversation a point: not one flow with a group
                # that has another at one of its points (a slice that linked it to the
                # wrong one, the right one not read there); its conversations that are
                # in such a group stay there
                ms = ms[:-1]
                at = dict(ms)
                gs = [g for g in gs if all(at.get(p, key) == key for p, key in groups[g])]
            if gs:
                g = gs[0]
                for other in gs[1:]:
                    for m in groups[other]:
                        member[m] = g
                    groups[g] += groups[other]
                    groups[other] = []
            else:
                g = len(groups)
                groups.append([])
            for m in ms:
                if m not in member:
                    member[m] = g
                    groups[g].append(m)
    for ms in later:
        of = {member[m] for m in ms if m in member}
        if len(of) != 1:
            continue  # (never two groups merged by it)
        g = of.pop()
        taken = {p for p, _key in groups[g]}
        for m in ms:
            if m not in member and m[0] not in taken and m in heads:
                member[m] = g
                groups[g].append(m)
                taken.add(m[0])
    run.member, run.groups = member, groups
    run.late_heads = [
        _Late(g, m[0], *heads[m], tuple(x for x in groups[g] if x[0] != m[0]))
        for m, g in member.items()
        if m in heads
    ]
    by_point: dict[int, list[int]] = {}
    for i, key in member:
        by_point.setdefault(i, []).append(key)
    run.cut = [
        npsets.unique(np.concatenate([run.cut_at(i), np.array(by_point.get(i, []), np.uint64)]))
        for i in range(len(run.scans))
    ]


def _merge(pts: list[Point], segs: list[_Seg], subs: list[_Sub]) -> Built:
    """A cut flow's verdict entry from what every slice judged of it (in slice order):
    the legs and first packet of the slice where it starts, every finding's packets
    added up (its first packet the earliest), the hops' latency the median of every
    slice's matched pairs, and the summary of the whole."""
    from hopcap.correlate.findings import KIND_ORDER

    head = next((x for x in segs if x.head), segs[0])
    by: dict[tuple[Any, ...], list[Finding]] = {}
    of: dict[tuple[Any, ...], list[_Seg]] = {}
    for x in segs:
        for fnd in x.built.findings:
            by.setdefault(_fkey(fnd), []).append(fnd)
            of.setdefault(_fkey(fnd), []).append(x)
    if head.dgram is not None:
        findings = [_merge_dfindings(fs, of[key]) for key, fs in by.items()]
    else:
        findings = [_merge_findings(fs) for fs in by.values()]
    for at, fnd in enumerate(findings):
        if head.dgram is not None:
            break
        if fnd.kind == "rewrite" and fnd.field is not None and len(by[_fkey(fnd)]) > 1:
            key = (fnd.direction, fnd.between, fnd.field)
            per = [x.rewrites[key] for x in segs if key in x.rewrites]
            if per:
                findings[at] = _merge_rewrite(fnd, per)
    findings.sort(key=lambda x: (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0))
    # the legs a tunnel's outer flow added (`add_tunnel_legs`: after the flow's hops,
    # latency and summary), put back at the end
    added = [(j, leg) for j, leg in enumerate(head.built.legs) if leg.link == "tunnel"]
    legs = [leg for leg in head.built.legs if leg.link != "tunnel"]
    details: list[tuple[str, ...]] = [leg.details for leg in legs]
    for x in segs:
        own = [leg for leg in x.built.legs if leg.link != "tunnel"]
        for j, leg in enumerate(own[: len(legs)]):
            details[j] = tuple(dict.fromkeys((*details[j], *leg.details)))
    for j in sorted({j for x in segs for j in x.fronts}):
        if j < len(details):
            label = _unserved([x.fronts[j] for x in segs if j in x.fronts])
            kept = tuple(d for d in details[j] if not _UNSERVED.match(d))
            details[j] = kept if label is None else (*kept, label)
    legs = _latencies(pts, [replace(x, details=d) for x, d in zip(legs, details, strict=True)],
                      [x.delays for x in segs])  # fmt: skip
    if head.dgram is not None:
        text = _dsummary(pts, segs, head.dgram, findings, legs)
        out = replace(head.built, legs=tuple(legs), findings=tuple(findings), summary=text)
        return _tunnel_legs(pts, out, added)
    req = sum(x.req for x in segs)
    resp = sum(x.resp for x in segs)
    lr = [x.last_req for x in segs if x.last_req is not None]
    cl = [x.close for x in segs if x.close is not None]
    from hopcap.correlate.summary import flow_words, outcome_words

    # beyond a proxy: every connection any slice built of it, its legs and findings apart
    # (`finish_flow`: the flow's own chain, then each in turn; failed attempts named last)
    tried: list[Finding] = []
    n_att = 0
    for sub_legs, sub_fs, sub_tried, att in _merged_subs(pts, subs):
        legs += sub_legs
        findings += sub_fs
        tried += sub_tried
        n_att += att
    order = lambda x: (KIND_ORDER.get(x.kind, 9), x.first_ts or 0.0)  # noqa: E731
    findings.sort(key=order)
    tried_ids = {id(x) for x in tried}

    def words(fs: list[Finding]) -> str:
        return flow_words(pts, fs, lambda: outcome_words(
            legs, req, resp, max(lr) if lr else None, min(cl) if cl else None, head.answered
        ))  # fmt: skip

    summary = words([x for x in findings if id(x) not in tried_ids])
    if n_att:
        why = ": " + words(sorted(tried, key=order)) if tried else ""
        summary += f"; after {n_att} failed connection attempt{'s' if n_att > 1 else ''}{why}"
    out = replace(head.built, legs=tuple(legs), findings=tuple(findings), summary=summary)
    return _tunnel_legs(pts, out, added)


def _tunnel_legs(pts: list[Point], b: Built, added: list[tuple[int, Any]]) -> Built:
    """A merged cut flow with the legs a tunnel added (`added`: place, leg) back, and
    what `add_tunnel_legs` does to a flow that went into the tunnel (every slice's gap
    at the outer point, merged)."""
    from hopcap.correlate.tunnel import into_tunnel

    if not added:
        return b
    names = [leg.point for leg in b.legs]
    legs = list(b.legs)
    for j, leg in added:
        legs.insert(j, leg)
    b.legs = tuple(legs)
    for j, leg in added:
        outer = _point_of(pts, leg.point)
        after = legs[j + 1].point if j + 1 < len(legs) else None
        if after is not None and _point_of(pts, after) == outer + 1:
            continue  # out of the tunnel into the inner point: nothing to drop
        if not j:
            continue
        at = names.index(legs[j - 1].point)
        into_tunnel(b, names, at, leg.point, leg.tunnel or "")
    return b


def _subs_of(
    run: _Run, k: int, pts: list[Point], present: list[int], f: FlowB, delays: list[Delays]
) -> list[_Sub]:
    """Each of a cut flow's chains beyond a proxy (`f.subs`) as this slice built it:
    `_chain_out`'s legs and findings of it (judged packets only: `_judge` ran)."""
    from hopcap.correlate.findings import _chain_out

    if not f.subs:
        return []
    leg0 = f.legs[0]
    first_ns = min(h.first_ts for h in (leg0.c, leg0.s) if h is not None)
    first_ns -= pts[leg0.point].offset_ns
    out = []
    for sub, dl in zip(f.subs, delays, strict=True):
        leg = sub.legs[0]
        t0 = min((h.first_ts for h in (leg.c, leg.s) if h is not None), default=0)
        fs, legs, tried = _chain_out(pts, present, sub, first_ns)
        n_att = sum(1 for x in chains([sub]) if x.attempt)
        key = (pts[leg.point].name, legs[0].tuple, t0)
        t1 = max((h.last_ts for h in (leg.c, leg.s) if h is not None), default=0)
        win = (run.bounds[k], run.bounds[k + 1])
        tried = fs if sub.attempt else tried
        c2s = {hd: h for hd, h in dl.items() if not hd[1]}
        out.append(_Sub(key, t1, win, run.offsets[leg.point], tuple(legs), tuple(fs),
                        tuple(tried), n_att, c2s))  # fmt: skip
    return out


def _fronts(run: _Run, k: int, pts: list[Point], f: FlowB) -> dict[int, _Front]:
    """Of a cut flow's legs at a proxy's front, what window `k` judges (`_Front`): a
    slice reads the connection in part, and numbers its exchanges within what it reads;
    the merge numbers them over the whole connection (`_unserved`).

    A slice reads a cut connection from its first packets, then from the margin before
    its window on: an exchange that begins there after packets it did not read starts
    where the stream got to in its first packets, not where it did (`exchanges_of` takes
    turns from what it reads). Such an exchange is not judged here, but by the slice
    before, which read the packets before it (up to the margin after its window)."""
    from hopcap.correlate.link import M32, stream_base

    out = {}
    mg = run.margin_ns
    for j, leg in enumerate(f.legs):
        p = pts[leg.point]
        pc, sc = p.pc, run.scans[leg.point]
        h = leg.c if leg.c is not None else leg.s
        if pc is None or sc is None or h is None or h.conn < 0 or h.conn not in pc.served:
            continue
        cx = pc.exchanges.get(h.conn)
        if cx is None:
            continue
        served, carried = pc.served[h.conn]
        off = run.offsets[leg.point]
        lo = run.bounds[k] + off if run.bounds[k] > _LO else _LO
        hi = run.bounds[k + 1] + off if run.bounds[k + 1] < _HI else _HI
        # where the streams got to in the packets read before the margin (its first
        # ones), and where those read after it begin
        t = pc.table
        head, after = [], []
        late = np.zeros(0, np.int64)  # the client's data read from `lo - TOL_NS` on
        r0 = h.idx[:1]
        ends0 = (t.src_hi[r0], t.src_lo[r0], t.sport[r0]), (t.dst_hi[r0], t.dst_lo[r0], t.dport[r0])
        key = _piece_keys(sc, conv_keys(6, *ends0), t.ts[r0])
        cut = bool(_member(key, run.cut_at(leg.point))[0])
        at = int(np.searchsorted(sc.keys, key[0]))
        end = int(sc.last[at]) if at < sc.keys.shape[0] and sc.keys[at] == key[0] else _HI
        for x in (leg.c, leg.s):
            rows = x.idx[t.plen[x.idx] > 0] if x is not None else np.zeros(0, np.int64)
            o = (t.seq[rows].astype(np.int64) - stream_base(x)) & M32
            o = np.where(o >= 1 << 31, o - (1 << 32), o)
            before = t.ts[rows] < lo - mg
            ends = o + t.plen[rows].astype(np.int64)
            head.append(int(ends[before].max()) if before.any() else 0)
            after.append(int(o[~before].min()) if (~before).any() else _HI)
            if x is leg.c:
                late = o[t.ts[rows] >= lo - TOL_NS]
        views: list[list[tuple[int, int]]] = [[], [], [], []]  # (`_Front`'s lists)
        partial = False
        owned, lost, more, more_lost = views
        for n, e in enumerate(cx.ex):
            if e.t_c is None and e.t_s is None:
                continue
            if cut and lo > _LO and e.t < lo - mg:
                # one of its first packets' that took in what was read after them (no
                # new request seen in between): a request there is not one of its own
                partial |= bool(((late >= e.c[0]) & (late < e.c[1])).any())
            if (
                cut
                and lo > _LO
                and e.t >= lo - mg
                and any(
                    x < a and g < a for x, a, g in zip((e.c[0], e.s[0]), after, head, strict=True)
                )
            ):
                # (the stream went on before it, unread: as this slice split it, its
                # request and answer are not the ones the proxy carried; a connection
                # beyond the proxy for it that starts in this window is linked here)
                partial |= e.t_s is None or e.t_s >= lo - TOL_NS
                continue
            if lo <= e.t < hi:
                mine, mine_lost = owned, lost
            elif hi <= e.t < hi + mg:
                mine, mine_lost = more, more_lost
            else:
                continue
            mine.append((e.c[0], e.s[0]))
            if e.t_c is not None and n not in served:
                mine_lost.append((e.c[0], e.s[0]))
        # the last exchange read began by the end of the window, its answer not read,
        # and the connection goes on after what the slice reads
        last = cx.ex[-1] if cx.ex else None
        longer = (
            cut and hi < _HI and end > hi + mg and last is not None
            and last.t_c is not None and last.t_s is None and last.t_c < hi
        )  # fmt: skip
        out[j] = _Front(owned, lost, carried, more, more_lost, longer or partial)
    return out


def _unserved(views: list[_Front]) -> str | None:
    """The label of a front connection's exchanges no connection beyond the proxy carried
    (`link.unserved_label`), numbered over the whole connection from every slice's view:
    each exchange judged by the slice whose window it begins in (or the one before:
    `_fronts`)."""
    from hopcap.correlate.link import unserved_label

    if not any(v.carried for v in views):
        return None
    judged = {x for v in views for x in v.owned}
    lost = {x for v in views for x in v.lost}
    lost |= {x for v in views for x in v.more_lost if x not in judged}
    every = sorted(judged | {x for v in views for x in v.more})
    if not lost:
        return None
    return unserved_label([n for n, x in enumerate(every) if x in lost], len(every))


# a front connection's label of its exchanges no connection beyond the proxy carried, as
# each slice writes it (numbered within what it reads: `_unserved` writes the run's)
_UNSERVED = re.compile(
    r"exchanges? [0-9, …-]+ of [0-9]+ on this connection: no connection beyond the proxy carried "
)


def _linked(pts: list[Point], flows: list[FlowB]) -> _Linked:
    """The connections beyond a proxy of `flows` (kept whole by this slice), each by its
    first leg as `_subs_of` names a connection of a cut flow."""
    from hopcap.correlate.findings import _leg_tuple

    keys = set()
    for ch in chains(flows):
        for leg in ch.legs:
            if leg.link == "proxied":
                t0 = min((h.first_ts for h in (leg.c, leg.s) if h is not None), default=0)
                keys.add((pts[leg.point].name, _leg_tuple(leg), t0))
    return _Linked(keys)


def _without(fs: Sequence[Finding], drop: list[Finding]) -> tuple[Finding, ...]:
    """`fs` less one of each of `drop` (equal findings are one finding each)."""
    left = list(fs)
    for x in drop:
        with contextlib.suppress(ValueError):
            left.remove(x)
    return tuple(left)


def _latencies(pts: list[Point], legs: list[Any], delays: list[Delays]) -> list[Any]:
    """`legs` (of one chain) with each hop's latency the median of the judged pairs'
    delays of every slice (`delays`); a leg without a hop before it keeps its own."""
    out = list(legs)
    for j, leg in enumerate(out):
        if not j:
            continue
        got = [d[(j - 1, 0)] for d in delays if (j - 1, 0) in d]
        lat = None
        if got:
            v = np.concatenate([g[0] for g in got])
            n = np.concatenate([g[1] for g in got])
            o = np.argsort(v, kind="stable")
            a, b = pts[_point_of(pts, out[j - 1].point)], pts[_point_of(pts, leg.point)]
            lat = (_median(v[o], n[o]) - (b.offset_ns - a.offset_ns)) / NS
        out[j] = replace(leg, latency_s=lat)
    return out


_T = TypeVar("_T")


def _chained(views: list[_T]) -> list[list[_T]]:
    """`views` (each a `_Sub`, or (group, `_Sub`)) as connections: of one point and tuple,
    overlapping in time (a slice that read a connection in part saw it start later); a
    tuple used again later is another connection. In order of their first packet."""

    def sub(v: Any) -> _Sub:
        got: _Sub = v[1] if isinstance(v, tuple) else v
        return got

    by_tuple: dict[tuple[str, str], list[_T]] = {}
    for v in views:
        by_tuple.setdefault(sub(v).key[:2], []).append(v)
    out: list[list[_T]] = []
    for vs in by_tuple.values():
        vs.sort(key=lambda v: sub(v).key[2])  # (stable: slice order among equals)
        end = None
        for v in vs:
            if end is None or sub(v).key[2] > end:
                out.append([])
                end = sub(v).last
            out[-1].append(v)
            end = max(end, sub(v).last)
    out.sort(key=lambda c: sub(c[0]).key[2])
    return out


class _SubLegs:
    """Drops, as the slices' results come in order, the legs of the views of connections
    beyond a proxy (`_Sub`) that the merge cannot take them from: most views of a
    connection are of slices that read it in part or after it started, and only the
    home view's legs (`_is_home`), or with none its first view's (`_chained` order), make
    the verdict (the rsb lab bundle at `--memory 300M`: 177 k views of 43 k connections).
    A view whose window does not hold its first packet is not home; one after another view
    of the connection in `_chained`'s order (an earlier first packet, or the same in an
    earlier slice of its cut flow) is not the first."""

    def __init__(self) -> None:
        # per point and tuple, the views so far: (first packet, cut flow) -> last packet
        self.seen: dict[tuple[str, str], dict[tuple[int, int], int]] = {}

    def prune(self, part: list[Any]) -> list[Any]:
        for b in part:
            if not isinstance(b, _Seg):
                continue
            for v in b.subs:
                t0 = v.key[2]
                at = self.seen.setdefault(v.key[:2], {})
                if not v.win[0] <= t0 - v.off < v.win[1] and any(
                    u0 <= t0 <= u1 and (u0 < t0 or g == b.group) for (u0, g), u1 in at.items()
                ):
                    v.legs = ()
                if at.get((t0, b.group), v.last) <= v.last:
                    at[(t0, b.group)] = v.last
        return part


def _is_home(v: _Sub, t0: int) -> bool:
    """Whether `v` is of the slice whose window holds the connection's first packet."""
    return v.key[2] == t0 and v.win[0] <= t0 - v.off < v.win[1]


def _assign_subs(
    segs: Mapping[int, list[_Seg]],
    own: Collection[tuple[str, str, float]],
    linked: Collection[tuple[str, str, int]] = (),
) -> dict[int, list[_Sub]]:
    """Per cut flow (group), the views of the connections beyond a proxy that are its:
    each connection is the flow's that the slice where it starts linked it to (slices link
    a proxy's connections to the part of a client connection they read, and another slice
    can link one to another client: identical requests nearer in time, an exchange longer
    than the margin), its packets judged by any slice added up there, once. One a slice
    kept as a flow of its own (judged whole there: `own`, by its first leg) or linked into
    a flow it kept whole (`linked`, by `_Sub.key`: another client's, a connection that
    never is cut) is no cut flow's; one it linked to no cut flow, the flow of its first
    view's."""
    every = [(g, sb) for g, ss in segs.items() for x in ss for sb in x.subs]
    out: dict[int, list[_Sub]] = {}
    for conn in _chained(every):
        g0, v0 = conn[0]
        t0 = v0.key[2]
        if (v0.key[0], v0.key[1], (t0 - v0.off) / NS) in own or any(
            v.key in linked for _g, v in conn
        ):
            continue  # (its packets would be counted twice)
        home = next((g for g, v in conn if _is_home(v, t0)), g0)
        out.setdefault(home, []).extend(v for _g, v in conn)
    return out


def _merged_subs(
    pts: list[Point], views: list[_Sub]
) -> list[tuple[list[Any], list[Finding], list[Finding], int]]:
    """A cut flow's connections beyond a proxy (`_assign_subs`) in the order of their first
    packet, as `plan_proxied` orders them: each its legs (of the slice where it starts,
    which read the exchanges it carried whole; latencies of all), its findings and its
    failed attempts' findings added up over the slices, its failed attempts."""
    out = []
    for vs in _chained(views):
        t0 = vs[0].key[2]
        home = next((v for v in vs if _is_home(v, t0)), vs[0])
        legs = _latencies(pts, list(home.legs), [v.delays for v in vs])
        by: dict[tuple[Any, ...], list[Finding]] = {}
        for v in vs:
            for fnd in v.findings:
                by.setdefault(_fkey(fnd), []).append(fnd)
        fs = {kk: _merge_findings(g) for kk, g in by.items()}
        tried = {_fkey(fnd) for v in vs for fnd in v.tried}
        out.append((legs, list(fs.values()), [x for kk, x in fs.items() if kk in tried],
                    max(v.attempts for v in vs)))  # fmt: skip
    return out


def _merge_dfindings(fs: list[Finding], segs: list[_Seg]) -> Finding:
    """One finding of a cut datagram flow from its slices' (in slice order, `segs` the
    slice of each): its datagrams and bytes added up, its first time the earliest, its
    text `describe`'s of the first datagram (for a rewrite: the first in the matcher's
    order, and the count of values of all slices)."""
    ok = [(x, g) for x, g in zip(fs, segs, strict=True) if x.packets] or [(fs[0], segs[0])]
    if len(ok) == 1:
        return ok[0][0]
    n = sum(x.packets for x, _g in ok)
    first = min(ok, key=lambda xg: xg[0].first_ts if xg[0].first_ts is not None else 0.0)[0]
    base, nvals = first, 0
    if first.kind == "rewrite" and first.field is not None:
        key = (first.direction, first.between, first.field)
        got = [(g.drw[key], x) for x, g in ok if key in g.drw]
        if got:
            base = min(got, key=lambda ox: ox[0][0])[1]
            nvals = len(set().union(*(o[1] for o, _x in got)))
    return replace(
        base,
        packets=n,
        bytes=sum(x.bytes for x, _g in ok),
        first_ts=first.first_ts,
        what=_dtext(base, n, nvals),
        last_ts=last_of((x for x, _g in ok), first.first_ts),
    )


_VALUES = re.compile(r"; \d+ different values$")
# `tunnel.report_lost`'s text: the datagrams' count is before what happened to them
_TUNNEL = re.compile(
    r"^(.*?)(?: \(\d+ datagrams\))?(: arrived on .+, the inner packet never appeared on .+)$",
    re.S,
)


def _dtext(base: Finding, n: int, nvals: int) -> str:
    """`base`'s text (one slice's, from `udp.describe`) for `n` datagrams (`nvals`
    values of a rewrite)."""
    w, pre, tail = base.what, "", ""
    m = _TUNNEL.match(w)
    if m is not None:
        return m.group(1) + (f" ({n} datagrams)" if n > 1 else "") + m.group(2)
    if base.kind == "rewrite":
        m = _VALUES.search(w)
        if m is not None:
            w = w[: m.start()]
        if nvals > 1:
            tail = f"; {nvals} different values"
    elif base.unanswered:
        cut = max(w.rfind(": no answer seen"), w.rfind(": reached "))
        if cut >= 0:
            w, tail = w[:cut], w[cut:]
    if base.kind == "gap":
        at = w.rfind("; ")
        if at >= 0:
            pre, w = w[: at + 2], w[at + 2 :]
    suffix = f" ({base.packets} datagrams)"
    if base.packets > 1 and w.endswith(suffix):
        w = w[: -len(suffix)]
    return pre + w + (f" ({n} datagrams)" if n > 1 else "") + tail


def _dsummary(
    pts: list[Point], segs: list[_Seg], facts: DFacts, findings: list[Finding], legs: list[Any]
) -> str:
    """A cut datagram flow's summary: `udp.facts_summary` of its own findings and the
    datagrams every slice judged; as `icmp.apply_to_built` has it when ICMP errors were
    all that went wrong."""
    from hopcap.correlate.local import more
    from hopcap.correlate.udp import facts_summary

    dfs = [x.dgram for x in segs if x.dgram is not None]
    whole = replace(
        facts,
        nc=sum(d.nc for d in dfs),
        ns=sum(d.ns for d in dfs),
        nbc=sum(d.nbc for d in dfs),
    )
    own = [x for x in findings if not _of_error(x)]
    summary = facts_summary({p.name: p for p in pts}, whole, own, legs)
    errs = [x for x in findings if x.kind == "icmp"]
    if errs and not any(x.kind in ("drop", "inject", "rewrite", "reset") for x in own):
        first = min(errs, key=lambda x: x.first_ts or 0.0)
        lost = ""
        m = re.search(r", never at (.+)$", first.what)
        if m is not None and any(
            x.kind == "drop" and _of_error(x) and x.what.endswith(f"never at {m.group(1)}")
            for x in findings
        ):
            lost = f"; it never reached {m.group(1)}"
        summary = first.what + lost + more(findings)
    return summary


def _fkey(fnd: Finding) -> tuple[Any, ...]:
    """The findings of a cut flow's slices that are one in its verdict."""
    key: tuple[Any, ...] = (fnd.kind, fnd.direction, fnd.between, fnd.field)
    if fnd.kind == "gap":
        # (a gap per reason, as unsliced: `findings.split_lost`; the packets a capture lost
        # are not those it could not see)
        key += tuple(w for w in _GAP_WHY if w in fnd.what)
    if _of_error(fnd):  # an error each (judged where it was seen)
        key += (fnd.what, fnd.first_ts)
    return key


_GAP_WHY = (DELIVERED_WORDS, STARTED_AFTER, ENDED_BEFORE, NOTHING_SENT)


def _of_error(fnd: Finding) -> bool:
    """An ICMP error's finding (`icmp._one_error`: the error, and where it was lost)."""
    return fnd.kind == "icmp" or (fnd.kind in ("drop", "gap") and "(about a " in fnd.what)


def _point_of(pts: list[Point], name: str) -> int:
    return next(p.idx for p in pts if p.name == name)


_TALLY = re.compile(r"^(.*?) \(((?:\d+ [A-Za-z-]+)(?:, \d+ [A-Za-z-]+)*)\)(.*)$", re.S)


def _tally(fnd: Finding) -> tuple[str, str, dict[str, int]]:
    """A finding's text as (before the tally, after it, the tally of packet kinds)."""
    m = _TALLY.match(fnd.what)
    if m is not None:
        counts = {}
        for part in m.group(2).split(", "):
            n, kind = part.split(" ", 1)
            counts[kind] = int(n)
        return m.group(1), m.group(3), counts
    return fnd.what, "", {_kind_of_text(fnd.what): 1}


_FIRST = re.compile(r"(?:^|: |; )([A-Z,]+|none) seq=\S+(?: len=(\d+))?")


def _kind_of_text(text: str) -> str:
    """The kind of the one packet a finding's text describes, as `_describe` tallies it."""
    m = _FIRST.search(text)
    if m is None:
        return "?"
    return tally_kind(FLAG_BITS.get(m.group(1), 0), 1 if m.group(2) else 0)


def _merge_findings(fs: list[Finding]) -> Finding:
    """One finding of the packets of `fs` (one per slice, in slice order)."""
    fs = [x for x in fs if x.packets] or fs[:1]  # a fact of the flow (every slice says it)
    if len(fs) == 1:
        return fs[0]
    first = min(fs, key=lambda x: x.first_ts if x.first_ts is not None else 0.0)
    head, tail, _ = _tally(fs[0])
    counts: dict[str, int] = {}
    for x in fs:
        for kind, n in _tally(x)[2].items():
            counts[kind] = counts.get(kind, 0) + n
    parts = ", ".join(f"{n} {k}" for k, n in counts.items())
    return replace(
        fs[0],
        packets=sum(x.packets for x in fs),
        bytes=sum(x.bytes for x in fs),
        first_ts=first.first_ts,
        what=f"{head} ({parts}){tail}",
        last_ts=last_of(fs, first.first_ts),
    )


def _bounds(by_time: tuple[I64, I64], per_slice: int, min_width: int = 0) -> list[int]:
    """Window edges (first point's clock) every ~`per_slice` packets, by the start of the
    conversations (a conversation's packets count where it starts), but for those cut
    across slices: theirs count where they are (the chunks that hold many of them); no
    window narrower than `min_width` (its edge is dropped). `by_time`: `_by_time`'s."""
    f, n = by_time
    if not f.shape[0]:
        return [_LO, _HI]
    idx = np.searchsorted(n, np.arange(per_slice, int(n[-1]), per_slice)) + 1
    edges = npsets.unique(f[idx[idx < f.shape[0]]])
    kept, prev = [], int(f[0])
    for e in edges.tolist():
        if e > f[0] and e - prev >= min_width:
            kept.append(int(e))
            prev = int(e)
    return [_LO, *kept, _HI]


def _by_time(run: _Run) -> tuple[I64, I64]:
    """The packets of every point by time (first point's clock), as `_bounds` cuts
    windows by them: the times, sorted, and the packets up to each (cumulative)."""
    firsts, rows = [], []
    for i, (sc, off) in enumerate(zip(run.scans, run.offsets, strict=True)):
        if sc is not None:
            cut = _member(sc.keys, run.cut_at(i))
            cost = sc.cost()
            firsts.append(sc.first[~cut] - off)
            rows.append(cost[~cut])
            ch, ks, _ns = sc.dense
            ns = sc.dense_cost()
            m = _member(ks, run.cut_at(i))
            if m.any():
                los = np.array([c[1] for c in sc.chunks], np.int64)
                his = np.array([c[2] for c in sc.chunks], np.int64)
                at = ch[m]
                firsts.append((los[at] + (his[at] - los[at]) // 2) - off)
                rows.append(ns[m])
            # what the chunks do not place of them: at their start
            placed = np.zeros(sc.keys.shape[0], np.int64)
            np.add.at(placed, np.searchsorted(sc.keys, ks[m]), ns[m])
            rest = np.maximum(cost - placed, 0)
            firsts.append(sc.first[cut] - off)
            rows.append(rest[cut])
    f = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    if not f.shape[0]:
        return f, f
    order = np.argsort(f, kind="stable")
    return f[order], np.cumsum(np.concatenate(rows)[order])


def _widest(f: I64, n: I64, bounds: list[int], margin: int) -> int:
    """About the most packets one slice reads (`_by_time`'s `f`, `n`) with windows
    `bounds` and margins `margin` either side."""
    if not f.shape[0]:
        return 0
    edges = np.array(bounds, np.int64)
    cum = np.concatenate([np.zeros(1, np.int64), n])
    lo = np.searchsorted(f, edges[:-1] - margin)
    hi = np.searchsorted(f, edges[1:] + margin)
    return int((cum[hi] - cum[lo]).max())


def _proxy_margin(run: _Run, want: int, per_slice: int | None, keep: bool) -> tuple[int, list[int]]:
    """The margin pass 2 reads when cut flows went through an L7 proxy, and its windows:
    `want`, with windows that wide at least (a window narrower than the margin reads about
    as much as one a margin wide) unless `keep` (a tunnel's pairing placed its state at
    the windows pass 1 had). Under a memory budget (`per_slice`), the widest margin, in
    half seconds down to the run's own, whose slices read at most twice a slice of the
    budget or what the run's slices read already: 8 s margins make a slice read 24 s or
    more of the capture, many times a slice of a tight budget at a busy proxy."""

    def windows(m: int) -> list[int]:
        return run.bounds if keep else _at_least(run.bounds, m)

    if per_slice is None:
        return want, windows(want)
    f, n = _by_time(run)
    cap = max(2 * per_slice, _widest(f, n, run.bounds, run.margin_ns))
    m = want
    while m > run.margin_ns:
        if _widest(f, n, bounds := windows(m), m) <= cap:
            break
        m -= NS // 2
    else:
        m, bounds = run.margin_ns, run.bounds
    if m < want:
        log.warning(
            "cut flows through an L7 proxy: margins of %.1f s, not %.1f s, to keep within "
            "the memory budget (about %d packets a slice): which connection beyond the "
            "proxy carried which request can differ from the whole capture's where an "
            "exchange took longer",
            m / NS, want / NS, cap,
        )  # fmt: skip
    return m, bounds


def _workers_within(run: _Run, by_time: tuple[I64, I64], left: int, jobs: int) -> int:
    """How many of `jobs` worker processes may each hold a slice at once within `left`
    bytes of the memory budget: fewer (one: in this process) when the slices read more
    than twice their share of it (as `_proxy_margin` allows). A slice reads every
    conversation alive in its window and the margins around it whole, however small its
    share: at a busy capture that is many slices of a tight budget (the rsb lab bundle, an
    L7 proxy at 56 k packets a second: slices of 9 k packets at `--memory 300M --jobs 2`
    read 310-750 k, each worker ~390 MB of anonymous memory); two at once only doubled
    that. `by_time`: `_by_time`'s, as the windows were cut by them."""
    f, n = by_time
    need = _widest(f, n, run.bounds, run.margin_ns) * BYTES_PER_PACKET
    w = jobs
    while w > 1 and w * need > 2 * (left - w * WORKER_BYTES):
        w -= 1
    if w < jobs:
        log.warning(
            "a slice reads about %d packets (its window and the %.1f s margins around "
            "it), more than twice its share of the memory budget: %d slice(s) at a time, "
            "not %d",
            need // BYTES_PER_PACKET, run.margin_ns / NS, w, jobs,
        )  # fmt: skip
    return w


def _at_least(bounds: list[int], width: int) -> list[int]:
    """Window edges `bounds` with those dropped that would leave a window narrower than
    `width` (the first and the last are unbounded)."""
    kept = bounds[1:2]
    for e in bounds[2:-1]:
        if e - kept[-1] >= width:
            kept.append(e)
    return [bounds[0], *kept, bounds[-1]]


def _proxied_warning(n: int) -> str:
    """The verdict's warning when cut flows went through an L7 proxy and their links may
    not be the whole capture's (docs/scale.md, Limits): a slice links the proxy's
    connections to the client's requests it reads, which it may read in part."""
    return (
        f"{n:,} flow(s) through an L7 proxy were longer than a time slice of the memory "
        "budget: each slice links the proxy's connections to the client's requests it "
        "reads (in its window and the margin around it), so where a request or its answer "
        "took longer than the margin, a request came after a silence longer than it, or a "
        "capture next to the proxy dropped packets in the kernel, which connection beyond "
        "the proxy carried which request, what the proxy changed and which requests no "
        "connection carried can differ from the whole-capture verdict (a connection beyond "
        "the proxy can become a flow of its own); run without --memory (or with a larger "
        "one) for the whole-capture verdict"
    )


def _reused_warning(n: int) -> str:
    """The verdict's warning when connections on one reused tuple of a conversation cut
    across the slices were merged into one flow: those the scan does not cut apart
    (`_Conns`; docs/scale.md, Limits)."""
    return (
        f"{n:,} connection(s) on a reused tuple of a conversation longer than a time slice "
        "of the memory budget were merged into the flow of an earlier connection on that "
        "tuple (a client port or a NAT port used again, with no new SYN seen at a point, "
        "or packets out of time order): their own flows are missing; run without --memory "
        "(or with a larger one) for the whole-capture verdict"
    )


def _at_slice(decisions: dict[Key, Decided_], k: int) -> dict[Key, Decided_]:
    """The tunnel decisions with the state of their pairing at slice `k` only."""
    return {
        key: (dec, {d: {k: s[k]} for d, s in snaps.items() if k in s})
        for key, (dec, snaps) in decisions.items()
    }


def _scan_apart(path: Path) -> Scan:
    """`scan` in a worker process: the result without the file's mapping."""
    sc = scan(path)
    sc.close()
    sc.buf = None
    return sc


def _scans(
    inputs: Sequence[PointInput], jobs: int, progress: Progress | None
) -> Iterator[tuple[int, PointInput, Scan | None]]:
    """Every point's scan, in point order: with `jobs` > 1, up to `jobs` files at once
    in forked processes (a scan keeps O(conversations): little to send back)."""
    files = [i for i, inp in enumerate(inputs) if inp.pcap is not None]
    done: dict[int, Scan] = {}
    if jobs > 1 and len(files) > 1:
        for i in files:
            if progress is not None:
                progress(f"scanning {inputs[i].name} ({i + 1}/{len(inputs)})")
        with mp.get_context("fork").Pool(min(jobs, len(files))) as pool:
            got = pool.map(_scan_apart, [Path(str(inputs[i].pcap)) for i in files], 1)
        for i, sc in zip(files, got, strict=True):
            sc.buf = rd._open(sc.path)
            done[i] = sc
    try:
        for i, inp in enumerate(inputs):
            if i not in files:
                yield i, inp, None
            elif i in done:
                yield i, inp, done.pop(i)
            else:
                if progress is not None:
                    progress(f"scanning {inp.name} ({i + 1}/{len(inputs)})")
                yield i, inp, scan(Path(str(inp.pcap)))
    finally:
        for sc in done.values():  # not taken: the caller stopped early
            sc.close()


def correlate_sliced(
    points: Sequence[PointInput],
    conntrack: Mapping[str, str],
    per_slice: int,
    *,
    margin_ns: int = MARGIN_NS,
    proxy_margin_ns: int = PROXY_MARGIN_NS,
    progress: Progress | None = None,
    budget: int | None = None,
    jobs: int = 1,
) -> Verdict | None:
    """The verdict of `points` correlated by time slices of ~`per_slice` packets, or None
    when one slice would hold them all (the caller correlates them at once). With a
    memory `budget` (bytes), `per_slice` is what is left of it once the verdict of every
    conversation found by the scan is counted, shared by the `jobs` worker processes
    that correlate slices at the same time (each slice gets 1/jobs of it). Pass 2 reads
    margins of `proxy_margin_ns` at least when cut flows went through an L7 proxy."""
    from hopcap.correlate.clocks import clocks_of, estimate_clocks
    from hopcap.correlate.engine import PointFacts, assemble, ended_warning, point_warning

    workers = max(jobs, 1) if "fork" in mp.get_all_start_methods() else 1
    inputs = list(points)
    scans: list[Scan | None] = []
    unread: list[Scan | None] = [None] * len(inputs)  # files of which nothing can be read
    pool: _Slices | None = None
    failed = False
    try:
        for i, inp, sc in _scans(inputs, workers, progress):
            if sc is None:
                scans.append(None)
                continue
            assert inp.pcap is not None
            why = rd.unreadable_of(sc.tcp_rows, sc.records, sc.links, len(sc.buf))
            if why is not None:
                unread[i] = sc
                scans.append(None)
                inputs[i] = replace(inp, missing_reason=f"{Path(inp.pcap).name}: {why}")
                continue
            scans.append(sc)
        total = sum(
            sc.tcp_rows + DGRAM_WEIGHT * sc.dgram_rows + FLOW_WEIGHT * sc.keys.shape[0]
            for sc in scans
            if sc is not None
        )
        if budget is not None:
            kept, most = max(((_verdict_bytes(sc), sc) for sc in scans if sc is not None),
                             key=lambda x: x[0], default=(0, None))  # fmt: skip
            left = budget - BASE_BYTES - kept
            per_slice = max(left // BYTES_PER_PACKET, MIN_SLICE)
            if left // BYTES_PER_PACKET < MIN_SLICE:
                # (the verdict's part alone was said: "about 0 MB" under a small budget,
                # which the fixed part had already used up)
                log.warning(
                    "the memory budget (%s) is less than this run needs before its slices: "
                    "about %s (the program and the verdict of %s); slices of %d packets, "
                    "the fewest it reads",
                    size_text(budget),
                    size_text(BASE_BYTES + kept),
                    _conversations(most),
                    MIN_SLICE,
                )
            if total > per_slice and workers > 1:
                # the slices' share, split between the workers that hold one each at once
                share = (left - workers * WORKER_BYTES) // workers
                per_slice = max(share // BYTES_PER_PACKET, MIN_SLICE)
        if total <= per_slice:
            return None
        skel = [Point(i, inp, inp.name, *host_of(inp), None) for i, inp in enumerate(inputs)]
        offsets = [hint_ns(p, skel[0]) or 0 for p in skel]
        run = _Run(inputs, scans, conntrack, [], margin_ns, offsets, progress=progress)
        # conversations of more than half a slice are cut: read in part by every slice
        # they are alive in, their state (head) carried (docs/scale.md)
        run.cut_rows = max(per_slice // 2, 1)
        run.tunnels = _endpoint_possible(inputs, scans)
        run.cut = _cut_sets(scans, run.cut_rows, run.tunnels, run.offsets)
        _say_cut(run, inputs, per_slice)
        # a slice reads every conversation alive in its window and the margins whole: a
        # window narrower than the margin reads about as much as one a margin wide (a
        # burst of short connections: 46 windows of 10 ms each read 80-100 % of the
        # fw-rst-get lab bundle, 46 times the work of one run). Under a memory budget,
        # windows are `MIN_WINDOW_NS` wide at least (a slice then holds at most ~1.5
        # times what a narrow one read). (`slice_packets` without a budget: as given.)
        by_time = _by_time(run)
        run.bounds = _bounds(by_time, per_slice, MIN_WINDOW_NS if budget is not None else 0)
        n = len(run.bounds) - 1
        if n <= 1:
            return None
        if budget is not None and workers > 1:
            workers = _workers_within(run, by_time, left, workers)
        pool = _Slices(run, min(workers, n))
        present = [i for i, sc in enumerate(scans) if sc is not None]
        hinted = all(inputs[i].clock_offset_hint_s is not None for i in present)
        if not hinted and len(present) > 1:
            # the clocks from the first slice, to place every point's packets in windows
            [(m0, _ev, _g, _t, _p)] = pool.map(
                [
                    (
                        f"slice 1/{n}: estimating the clocks",
                        ("pass1", 0, offsets, frozenset(), None, None, None),
                    )
                ]
            )
            estimate_clocks(skel, present, m0)
            run.offsets = [p.offset_ns for p in skel]
        placed = list(run.offsets)
        # the cut ESP flows at a possible tunnel endpoint: paired over the run as each
        # slice's part comes, in slice order (`tunnelcut`); the snapshots of the pairing's
        # state half a margin before each window (the clocks of pass 2 may move it a bit)
        # (pass 2 of a run with such flows reads margins of `MIN_MARGIN_NS` at least)
        wide = max(run.margin_ns, MIN_MARGIN_NS)
        streams = Streams(lambda p: [_LO] + [b + placed[p] - wide // 2 for b in run.bounds[1:-1]])

        def fed(got: Any) -> Any:
            streams.feed(got[3])
            return (*got[:3], got[4])

        first = pool.map(
            [
                (
                    f"slice {k + 1}/{n}: matching (clocks)",
                    ("pass1", k, placed, frozenset(), None, None, None),
                )
                for k in range(n)
            ],
            fed,
        )
        decisions = streams.decide()
        if decisions and run.margin_ns < wide:
            # the pairing's 50 ms after a window and the place of its state before it
            log.info("a tunnel endpoint: the findings read margins of %.1f s", wide / NS)
            run.margin_ns = wide
        if any(p for *_x, p in first) and run.margin_ns < proxy_margin_ns:
            # (what pass 1 found does not depend on its windows; a tunnel's pairing does)
            margin, run.bounds = _proxy_margin(
                run, proxy_margin_ns, per_slice if budget is not None else None, bool(decisions)
            )
            if margin > run.margin_ns:
                log.info("cut flows through an L7 proxy: the findings read margins of %.1f s",
                         margin / NS)  # fmt: skip
                run.margin_ns = margin
            n = len(run.bounds) - 1
        evidence = _Evidence()
        for _m, ev, _g, _p in first:
            evidence.add(ev)
        _group(run, [g for _m, _ev, g, _p in first], evidence.heads)
        cuts = (run.cut, run.member, run.late_heads)
        for p in skel:
            p.offset_ns = offsets[p.idx]
        estimate_clocks(skel, present, merge_minima([m for m, _ev, _g, _p in first]))
        clocks = clocks_of(skel)
        final = [p.offset_ns for p in skel]
        said = decide(skel, evidence.ttl)
        ends = [_last_packet(sc) if sc is not None else None for sc in scans]
        for i, efacts in evidence.ended.items():
            if (end_why := efacts.evidence()) is not None:
                skel[i].stop_ns, skel[i].ended = ends[i], end_why[1]
        late = frozenset(
            [
                *evidence.late,
                *(("end", p.idx, p.ended) for p in skel if p.ended is not None),
            ]
        )
        built: list[Any] = []
        segs: dict[int, list[_Seg]] = {}
        at: dict[int, int] = {}  # cut flow -> its place in `built`: where it starts
        headed: set[int] = set()
        merged = 0  # connections that started in a cut flow's group after its first
        linked: set[tuple[str, str, int]] = set()  # `_Linked`
        for part in pool.map(
            [
                (
                    f"slice {k + 1}/{n}: findings",
                    (
                        "pass2",
                        k,
                        final,
                        late,
                        clocks,
                        cuts,
                        (run.margin_ns, _at_slice(decisions, k), run.bounds),
                    ),
                )
                for k in range(n)
            ],
            _SubLegs().prune,
        ):
            for b in part:
                if isinstance(b, _Linked):
                    linked |= b.keys
                elif isinstance(b, _Seg):
                    mine = segs.setdefault(b.group, [])
                    if mine:  # the delays of a cut flow: one histogram, not one a slice
                        acc = mine[0].delays
                        for hd, h in b.delays.items():
                            acc[hd] = _fold(acc[hd], h) if hd in acc else h
                        b.delays = {}
                    mine.append(b)
                    if b.group not in at or (b.head and b.group not in headed):
                        at[b.group] = len(built)  # (else its first slice's place)
                    if b.head:
                        # a second start in one group: another connection on a reused
                        # tuple that the scan did not cut apart (docs/scale.md, Limits)
                        merged += b.group in headed
                        headed.add(b.group)
                    built.append(None)
                else:
                    built.append(b)
        # cut flows through an L7 proxy whose links may differ from the whole capture's
        # (their links are made per slice: `_Front.longer`; a capture at either side of
        # the proxy that dropped packets in the kernel: seen, links of connections beyond
        # the proxy whose answer it lost, 5 flows of the rsb3 lab run at `--memory 20M`)
        proxied = 0
        dropped = {
            p.name
            for p, sc in zip(skel, scans, strict=True)
            if sc is not None
            and (p.inp.kernel_drops if p.inp.kernel_drops is not None else sc.kernel_drops)
        }
        # the TCP flows kept whole by a slice, by their first leg (a connection beyond a
        # proxy that another slice links to a cut flow: `_merged_subs`)
        own = {
            (b.legs[0].point, b.legs[0].tuple, b.first_ts)
            for b in built
            if b is not None and b.proto == "tcp" and b.legs and b.first_ts is not None
        }
        subs = _assign_subs(segs, own, linked)
        for g, i in at.items():
            if not any(x.head for x in segs[g]) and g not in subs:
                # the slice where it starts made it part of another flow (a connection
                # beyond a proxy that another slice, reading the client's exchange in
                # part, did not link): it is there (`_assign_subs`)
                continue
            built[i] = _merge(skel, segs[g], subs.get(g, []))
            legs = built[i].legs
            j = next((j for j, leg in enumerate(legs) if j and leg.link == "proxied"), 0)
            if j:  # (the proxy's front and its back)
                at_proxy = {legs[j - 1].point} | {x.point for x in legs if x.link == "proxied"}
                fronts = [f for x in segs[g] for f in x.fronts.values()]
                proxied += not fronts or any(f.longer for f in fronts) or bool(at_proxy & dropped)
        built = [b for b in built if b is not None]
        pool.close(False)  # the workers' memory, before the verdict's
        pool = None
        warnings = []
        facts: list[PointFacts | None] = []
        for p, got, sc0 in zip(skel, scans, unread, strict=True):
            any_sc = got if got is not None else sc0
            t = read_slice(any_sc, np.zeros(0, np.uint64)) if any_sc is not None else None
            if got is None:
                w = point_warning(p, False, 0, 0, {})
                facts.append(None)
                if t is not None and sc0 is not None:
                    p.records, p.warnings = sc0.records, list(t.warnings)
            else:
                assert t is not None
                w = point_warning(p, True, got.tcp_rows + got.dgram_rows, got.records, got.links)
                drops = p.inp.kernel_drops
                facts.append(
                    PointFacts(
                        got.records,
                        got.tcp_first,
                        got.tcp_last,
                        tuple(t.warnings),
                        drops if drops is not None else got.kernel_drops,
                    )
                )
            if w:
                warnings.append(w)
        warnings += said
        warnings.extend(ended_warning(p) for p in skel if p.ended is not None)
        if proxied:
            warnings.append(_proxied_warning(proxied))
        if merged:
            warnings.append(_reused_warning(merged))
        return assemble(skel, built, warnings, facts)
    except BaseException:
        failed = True
        raise
    finally:
        if pool is not None:
            pool.close(failed)
        for each in (*scans, *unread):
            if each is not None:
                each.close()
