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
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.capfile import walk as capwalk
from hopcap.capfile.walk import MAX_RECORD, PCAP_MAGICS, CaptureFileError, Records, record_warning
from hopcap.correlate import reader as rd
from hopcap.correlate.clocks import Minima, hint_ns, merge_minima, minima_of
from hopcap.correlate.conns import build_point
from hopcap.correlate.dgram import DgramTable, parse_dgrams
from hopcap.correlate.flows import FlowB, Point, chains, host_of, match_hops
from hopcap.correlate.reader import PacketTable
from hopcap.correlate.udp import DFlowB
from hopcap.errors import CorrelationError
from hopcap.model import PointInput, Verdict

log = logging.getLogger("hopcap.correlate")

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
NS = 1_000_000_000
# anonymous memory the engine takes per packet of a slice (table, halves, matches,
# verdict objects; measured 170-260 bytes at 1.6-6.4 M packets), with headroom
BYTES_PER_PACKET = 320
# memory that does not shrink with slices: the interpreter and numpy, and the verdict
# (kept flows while slices run; at the end its dict and JSON too: measured ~3.9 kB a flow)
BASE_BYTES = 96 << 20
VERDICT_BYTES_PER_FLOW = 4096
# what a worker process of a sliced run costs beyond its slice: the pages of the parent's
# heap (interpreter, modules, scans) it copies on write
WORKER_BYTES = 16 << 20
MIN_SLICE = 2_000  # packets: the floor when the verdict alone outgrows the budget
MARGIN_NS = 2 * NS  # clock offsets between points plus path delay, beyond the estimate
# how far past its window a slice reads the starts of conversations, for the flows of the
# window seen late at another point (a SYN retried 6 times: 1 + 2 + ... + 32 s)
EXTEND_NS = 64 * NS
_LO, _HI = -(1 << 62), 1 << 62
_MERGE_EVERY = 64  # chunks between merges of the per-conversation extents

Progress = Callable[[str], None]


def default_budget() -> int:
    """Half of the memory available now (Linux), else 4 GiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30


def estimated_packets(points: Sequence[PointInput]) -> int:
    """About the packets of `points`' files, rather more than fewer: a classic pcap's
    size over the mean of its first records (+25 %); other files as 60-byte records."""
    total = 0
    for p in points:
        if p.pcap is not None:
            with contextlib.suppress(OSError):
                total += _estimate(Path(p.pcap))
    return total


def _estimate(path: Path, sample: int = 4096) -> int:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(24 + sample * 1600)
    kind = PCAP_MAGICS.get(head[:4])
    if kind is None:
        return size // 76
    endian = kind[0]
    pos, n = 24, 0
    while n < sample and pos + 16 <= len(head):
        pos += 16 + struct.unpack_from(endian + "I", head, pos + 8)[0]
        n += 1
    if n < 64 or pos <= 24:
        return size // 76
    return int((size - 24) / ((pos - 24) / n) * 1.25) + 1


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
                        w = record_warning(path.name, item[1], item[0], self.records)
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


def _take(t: PacketTable, m: npt.NDArray[np.bool_]) -> PacketTable:
    return PacketTable(path=t.path, buf=t.buf, records=0, **rd.row_columns(t, m))


# --------------------------------------------------------------------------- scan


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

    def close(self) -> None:
        if isinstance(self.buf, mmap.mmap):
            with contextlib.suppress(BufferError):  # a numpy view is still alive
                self.buf.close()


def _reduce(k: U64, lo: I64, hi: I64, n: I64) -> tuple[U64, I64, I64, I64]:
    order = np.argsort(k, kind="stable")
    k, lo, hi, n = k[order], lo[order], hi[order], n[order]
    if not k.shape[0]:
        return k, lo, hi, n
    starts = np.concatenate([[0], np.nonzero(k[1:] != k[:-1])[0] + 1])
    return (
        k[starts],
        np.minimum.reduceat(lo, starts),
        np.maximum.reduceat(hi, starts),
        np.add.reduceat(n, starts),
    )


def scan(path: Path) -> Scan:
    buf = rd._open(path)
    w = _Walk(path, buf)
    acc: list[tuple[U64, I64, I64, I64]] = []
    chunks: list[tuple[int | None, int, int]] = []
    tcp = dg = 0
    t_first: int | None = None
    t_last: int | None = None
    d_last: int | None = None
    for _i, pos, t, dgt in w.pieces():
        n = len(t)
        tcp += n
        ks, ts = [tcp_keys(t)], [t.ts]
        if n:
            a, b = int(t.ts.min()), int(t.ts.max())
            t_first = a if t_first is None else min(t_first, a)
            t_last = b if t_last is None else max(t_last, b)
        if dgt[0].shape[0]:
            d = parse_dgrams(path, buf, *dgt)
            dg += len(d)
            ks.append(dgram_keys(d))
            ts.append(d.ts)
            b = int(d.ts.max())
            d_last = b if d_last is None else max(d_last, b)
        k, tt = np.concatenate(ks), np.concatenate(ts).astype(np.int64)
        chunks.append(
            (pos, int(tt.min()) if tt.shape[0] else _HI, int(tt.max()) if tt.shape[0] else _LO)
        )
        acc.append(_reduce(k, tt, tt, np.ones(k.shape[0], np.int64)))
        if len(acc) >= _MERGE_EVERY:
            acc = [_reduce(*(np.concatenate([a[j] for a in acc]) for j in range(4)))]
    if acc:
        keys, first, last, rows = _reduce(*(np.concatenate([a[j] for a in acc]) for j in range(4)))
    else:
        keys, first, last, rows = (np.zeros(0, np.uint64), *(np.zeros(0, np.int64),) * 3)
    return Scan(
        path, buf, w.records, w.warnings, w.kernel_drops, w.links, tcp, dg, t_first, t_last,
        d_last, keys, first, last, rows, chunks,
    )  # fmt: skip


def read_slice(sc: Scan, sel: U64) -> PacketTable:
    """The rows of the conversations `sel` (sorted keys) of a scanned capture, as a table
    of the whole file's facts (records, warnings, last packet)."""
    parts: list[PacketTable] = []
    dgs: list[tuple[I64, ...]] = []
    if sel.shape[0]:
        m = _member(sc.keys, sel)
        lo, hi = int(sc.first[m].min()), int(sc.last[m].max())
        need = [i for i, (_p, a, b) in enumerate(sc.chunks) if a <= hi and b >= lo]
        if need:
            w = _Walk(sc.path, sc.buf)
            for _i, _pos, t, dgt in w.pieces(need[0], sc.chunks[need[0]][0], need[-1]):
                keep = _member(tcp_keys(t), sel)
                if keep.any():
                    parts.append(_take(t, keep))
                if dgt[0].shape[0]:
                    dk = _member(dgram_keys(parse_dgrams(sc.path, sc.buf, *dgt)), sel)
                    if dk.any():
                        dgs.append(tuple(x[dk] for x in dgt))
    got = (parts, sc.records, list(sc.warnings), sc.kernel_drops, dict(sc.links))
    t = rd._finish(sc.path, sc.buf, got, dgs)
    t.last_ns, t.tcp_rows = sc.tcp_last, sc.tcp_rows
    if t.dgram is not None:
        t.dgram.last_ns = sc.dgram_last
    return t


# --------------------------------------------------------------------------- slices


@dataclass
class _Run:
    points: list[PointInput]  # with missing reasons of unreadable files
    scans: list[Scan | None]
    conntrack: Mapping[str, str]
    bounds: list[int]  # window k is [bounds[k], bounds[k + 1]) on the first point's clock
    margin_ns: int
    offsets: list[int]  # clock estimate used to place every point's packets in windows
    late: set[int] = field(default_factory=set)  # points whose capture started late
    progress: Progress | None = None

    def say(self, text: str) -> None:
        log.info(text)
        if self.progress is not None:
            self.progress(text)


def _span(run: _Run, k: int) -> tuple[int, int]:
    """Where the packets of the flows that start in window `k` may be (first point's
    clock): the window, up to the end of the conversations that start in it (a SYN
    retried, a capture that saw a connection late), by at most `EXTEND_NS`."""
    lo, hi = run.bounds[k], run.bounds[k + 1]
    end = hi
    for sc, off in zip(run.scans, run.offsets, strict=True):
        if sc is not None and sc.keys.shape[0]:
            f = sc.first - off
            m = (f >= lo) & (f < hi)
            if m.any():
                end = max(end, int((sc.last[m] - off).max()))
    return lo, min(end, hi + EXTEND_NS) if hi < _HI else hi


def _points(run: _Run, k: int) -> list[Point]:
    """Slice `k`'s points: at each, every conversation alive in window `k` (with the
    margin) or that starts before the flows of the window may have ended, whole."""
    lo, hi = run.bounds[k], run.bounds[k + 1]
    _lo, end = _span(run, k)
    pts = []
    for i, (inp, sc) in enumerate(zip(run.points, run.scans, strict=True)):
        host, iface = host_of(inp)
        if sc is None:
            pts.append(Point(i, inp, inp.name, host, iface, None, records=0))
            continue
        off, mg = run.offsets[i], run.margin_ns
        alive = (sc.last >= lo + off - mg) & (sc.first < hi + off + mg)
        starts = (sc.first >= lo + off - mg) & (sc.first < end + off + mg)
        t = read_slice(sc, sc.keys[alive | starts])
        pts.append(Point(i, inp, inp.name, host, iface, build_point(t)))
    return pts


def _anchor(run: _Run, k: int, point: int, first_ns: int) -> bool:
    a = first_ns - run.offsets[point]
    return run.bounds[k] <= a < run.bounds[k + 1]


def _flow_first(f: FlowB) -> tuple[int, int]:
    leg = f.legs[0]
    return leg.point, min(h.first_ts for h in (leg.c, leg.s) if h is not None)


def _windows(run: _Run, evidence: set[int] | None, keep: Callable[[FlowB], bool]) -> Any:
    """`set_windows` with the whole captures' facts: their last packet, and a late start
    seen in any slice (pass 1 collects it into `evidence` from the flows it keeps)."""

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
            for f in flows:
                if not keep(f):
                    continue
                for ch in chains([f]):
                    for prev, leg in pairwise(ch.legs):
                        if leg.link == "proxied":
                            continue
                        for x, y in ((prev.c, leg.c), (prev.s, leg.s)):
                            if x is not None and y is not None and x.syn and not y.syn:
                                evidence.add(leg.point)
                            if x is not None and y is not None and y.syn and not x.syn:
                                evidence.add(prev.point)
        for i in run.late:
            p, sc = pts[i], run.scans[i]
            assert sc is not None and sc.tcp_first is not None
            first = sc.tcp_first
            p.start_ns = max(p.start_ns or first, first)

    return apply


def _close(pts: list[Point]) -> None:
    for p in pts:
        if p.pc is not None:
            p.pc.table.buf = None  # the scan owns the mapping


def _pass1(run: _Run, k: int) -> tuple[Minima, set[int]]:
    """Slice `k`'s delay minima and late-start evidence, from the flows it keeps."""
    from hopcap.correlate.engine import dgram_minima, prepare

    pts = _points(run, k)
    evidence: set[int] = set()

    def keep(f: FlowB) -> bool:
        return _anchor(run, k, *_flow_first(f))

    try:
        prep = prepare(pts, run.conntrack, windows=_windows(run, evidence, keep))
        flows = [f for f in prep.flows if keep(f)]
        dflows = [f for f in prep.dflows if _dkeep(run, k, f)]
        match_hops(prep.pts, flows)
        return minima_of(flows, dgram_minima(dflows)), evidence
    finally:
        _close(pts)


def _dkeep(run: _Run, k: int, f: DFlowB) -> bool:
    leg = f.legs[0]
    return _anchor(run, k, leg.point, leg.f.first_ts)


def _pass2(run: _Run, k: int, clocks: Sequence[tuple[int, int | None]]) -> list[Any]:
    """Slice `k`'s flows that start in its window, finished with the run's clocks."""
    from hopcap.correlate.clocks import apply_clocks
    from hopcap.correlate.engine import finish_datagrams, finish_part, prepare

    pts = _points(run, k)
    try:
        prep = prepare(pts, run.conntrack, windows=_windows(run, None, lambda f: False))
        apply_clocks(prep.pts, clocks)
        lo, hi = run.bounds[k] / NS, run.bounds[k + 1] / NS
        if not any(_dgrams(p) for p in prep.pts):
            # TCP only: match and finish the kept flows alone (a flow's matches and
            # findings are its own, as in the partitions of `--jobs` unsliced), not the
            # context around the window; their first packet as `finish_flow` puts it
            kept = [i for i, f in enumerate(prep.flows) if lo <= _first_s(prep.pts, f) < hi]
            match_hops(prep.pts, [prep.flows[i] for i in kept])
            return finish_part(prep, kept)
        # datagram flows, tunnels and ICMP errors need every flow's legs and findings
        every = list(range(len(prep.flows)))
        match_hops(prep.pts, prep.flows)
        built = finish_datagrams(prep, finish_part(prep, every))
        out = []
        for b in built:
            ts = b.first_ts if b.first_ts is not None else 0.0
            if lo <= ts < hi:
                out.append(b)
        return out
    finally:
        _close(pts)


def _dgrams(p: Point) -> int:
    d = p.pc.table.dgram if p.pc is not None else None
    return len(d) if d is not None else 0


def _first_s(pts: list[Point], f: FlowB) -> float:
    """A TCP flow's first packet (seconds, first point's clock), as its verdict has it."""
    point, first = _flow_first(f)
    return (first - pts[point].offset_ns) / NS


# --------------------------------------------------------------------------- workers

# a slice's work: ("pass1" | "pass2", slice, the run's clock offsets, points that started
# late, the clocks of pass 2)
Task = tuple[str, int, list[int], frozenset[int], list[tuple[int, int | None]] | None]


def _do(run: _Run, task: Task) -> Any:
    kind, k, offsets, late, clocks = task
    run.offsets, run.late = list(offsets), set(late)
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

    def map(self, tasks: Sequence[tuple[str, Task]]) -> list[Any]:
        """Every (progress line, task)'s result; the line is said as the task starts."""
        run = self.run
        if not self.kids:
            out = []
            for said, task in tasks:
                run.say(said)
                out.append(_do(run, task))
            return out
        from hopcap.correlate.parallel import recv  # a worker's result, or its error

        got: dict[int, Any] = {}
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
        return [got[i] for i in range(len(tasks))]

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


def _warn_whole(scans: Sequence[Scan | None], inputs: Sequence[PointInput], per_slice: int) -> None:
    """Say so when conversations are larger than a slice: each is read whole into every
    slice it is alive in, so the memory budget does not bound them (docs/scale.md)."""
    big = [
        (int(sc.rows.max()), int(np.count_nonzero(sc.rows > per_slice)), inp.name)
        for sc, inp in zip(scans, inputs, strict=True)
        if sc is not None and sc.rows.shape[0]
    ]
    over = max((n for _m, n, _p in big), default=0)  # the same ones at every point
    if not over:
        return
    most, _n, where = max(big)
    log.warning(
        "%d conversation(s) hold more packets than a slice of the memory budget (%d); the "
        "largest, %d packets at %s, is read whole into every slice it is alive in, so this "
        "run may use about %.1f MB more than the budget",
        over,
        per_slice,
        most,
        where,
        most * BYTES_PER_PACKET / 2**20,
    )


def _bounds(run: _Run, per_slice: int) -> list[int]:
    """Window edges (first point's clock) every ~`per_slice` packets, by the start of the
    conversations (a conversation's packets count where it starts)."""
    firsts, rows = [], []
    for sc, off in zip(run.scans, run.offsets, strict=True):
        if sc is not None:
            firsts.append(sc.first - off)
            rows.append(sc.rows)
    f = np.concatenate(firsts) if firsts else np.zeros(0, np.int64)
    if not f.shape[0]:
        return [_LO, _HI]
    order = np.argsort(f, kind="stable")
    f = f[order]
    n = np.cumsum(np.concatenate(rows)[order])
    idx = np.searchsorted(n, np.arange(per_slice, int(n[-1]), per_slice)) + 1
    edges = np.unique(f[idx[idx < f.shape[0]]])
    return [_LO, *(int(e) for e in edges if e > f[0]), _HI]


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
    progress: Progress | None = None,
    budget: int | None = None,
    jobs: int = 1,
) -> Verdict | None:
    """The verdict of `points` correlated by time slices of ~`per_slice` packets, or None
    when one slice would hold them all (the caller correlates them at once). With a
    memory `budget` (bytes), `per_slice` is what is left of it once the verdict of every
    conversation found by the scan is counted, shared by the `jobs` worker processes
    that correlate slices at the same time (each slice gets 1/jobs of it)."""
    from hopcap.correlate.clocks import clocks_of, estimate_clocks
    from hopcap.correlate.engine import PointFacts, assemble, point_warning

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
            why = rd.unreadable_of(sc.tcp_rows, sc.records, sc.links)
            if why is not None:
                unread[i] = sc
                scans.append(None)
                inputs[i] = replace(inp, missing_reason=f"{Path(inp.pcap).name}: {why}")
                continue
            scans.append(sc)
        total = sum(sc.tcp_rows + sc.dgram_rows for sc in scans if sc is not None)
        if budget is not None:
            convs = max((sc.keys.shape[0] for sc in scans if sc is not None), default=0)
            left = budget - BASE_BYTES - convs * VERDICT_BYTES_PER_FLOW
            per_slice = max(left // BYTES_PER_PACKET, MIN_SLICE)
            if left // BYTES_PER_PACKET < MIN_SLICE:
                log.warning(
                    "the verdict of %d connections alone needs about %d MB: more than "
                    "the memory budget allows",
                    convs,
                    convs * VERDICT_BYTES_PER_FLOW >> 20,
                )
            if total > per_slice and workers > 1:
                # the slices' share, split between the workers that hold one each at once
                share = (left - workers * WORKER_BYTES) // workers
                per_slice = max(share // BYTES_PER_PACKET, MIN_SLICE)
        if total <= per_slice:
            return None
        _warn_whole(scans, inputs, per_slice)
        skel = [Point(i, inp, inp.name, *host_of(inp), None) for i, inp in enumerate(inputs)]
        offsets = [hint_ns(p, skel[0]) or 0 for p in skel]
        run = _Run(inputs, scans, conntrack, [], margin_ns, offsets, progress=progress)
        run.bounds = _bounds(run, per_slice)
        n = len(run.bounds) - 1
        if n <= 1:
            return None
        pool = _Slices(run, min(workers, n))
        present = [i for i, sc in enumerate(scans) if sc is not None]
        hinted = all(inputs[i].clock_offset_hint_s is not None for i in present)
        if not hinted and len(present) > 1:
            # the clocks from the first slice, to place every point's packets in windows
            [(m0, _ev)] = pool.map(
                [(f"slice 1/{n}: estimating the clocks", ("pass1", 0, offsets, frozenset(), None))]
            )
            estimate_clocks(skel, present, m0)
            run.offsets = [p.offset_ns for p in skel]
        placed = list(run.offsets)
        first = pool.map(
            [
                (f"slice {k + 1}/{n}: matching (clocks)", ("pass1", k, placed, frozenset(), None))
                for k in range(n)
            ]
        )
        evidence: set[int] = set()
        for _m, ev in first:
            evidence |= ev
        for p in skel:
            p.offset_ns = offsets[p.idx]
        estimate_clocks(skel, present, merge_minima([m for m, _ev in first]))
        clocks = clocks_of(skel)
        final = [p.offset_ns for p in skel]
        late = frozenset(evidence)
        built: list[Any] = []
        for part in pool.map(
            [(f"slice {k + 1}/{n}: findings", ("pass2", k, final, late, clocks)) for k in range(n)]
        ):
            built.extend(part)
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
