"""merged.pcapng: every point's capture as its own named interface, on one timeline.

Packets of all points are merged in aligned-timestamp order (each point's
`clock_offset_s` from the verdict is subtracted). Comments annotate the first packet of
each flow leg at each point (flow id, link kind, tuple as seen there) and the packets
that findings point at ("dropped after this hop", "injected here", ...).
"""

from __future__ import annotations

import bisect
import functools
import heapq
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.bundle.anon import Anonymiser
from hopcap.bundle.pcapio import (
    LINKTYPE_ETHERNET,
    PcapngWriter,
    PcapReader,
    RawTuple,
    chunk_tuples,
    first_linktype,
)
from hopcap.capfile import Records
from hopcap.capfile.walk import CHUNK as WALK_CHUNK
from hopcap.correlate import _fastwalk
from hopcap.errors import BundleError
from hopcap.model import Finding, Verdict
from hopcap.units import size_text

# How close a packet's timestamp must be to a finding's first_ts (float seconds in JSON
# have ~0.5 us resolution at current epoch values).
TS_TOLERANCE_NS = 5_000


@dataclass(frozen=True)
class MergePoint:
    name: str
    pcap: Path | None
    offset_s: float = 0.0  # subtracted from this point's timestamps
    missing_reason: str | None = None


@dataclass
class MergeStats:
    packets: dict[str, int] = field(default_factory=dict)
    comments: int = 0
    annotated_findings: int = 0
    truncated: list[str] = field(default_factory=list)  # points whose capture is damaged
    warnings: list[str] = field(default_factory=list)  # where: `point: file: what, at byte`
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    sha256: str | None = None  # of the file written
    anonymised: list[str] = field(default_factory=list)  # points whose capture was too


def parse_tuple(text: str) -> RawTuple | None:
    """`"198.18.1.1:31378 > 198.18.1.2:80"` (or `[v6]:port`) -> (src, sport, dst, dport),
    addresses packed (as they are in packets)."""
    left, sep, right = text.partition(">")
    if not sep:
        return None
    a = _endpoint(left.strip())
    b = _endpoint(right.strip())
    if a is None or b is None:
        return None
    return a[0], a[1], b[0], b[1]


def _endpoint(text: str) -> tuple[bytes, int] | None:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    packed = _packed(host)
    if packed is None:
        return None
    try:
        return packed, int(port)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _packed(host: str) -> bytes | None:
    """An address as it is in packets (a verdict names each host in many legs)."""
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        return None


@dataclass
class _Note:
    point: str
    flow: str
    ts_ns: int
    text: str
    key: RawTuple | None  # the flow's tuple at this point, if known
    done: bool = False


def _finding_notes(verdict: Verdict, point_names: set[str]) -> list[_Note]:
    notes: list[_Note] = []
    for flow in verdict.flows:
        if not flow.findings:
            continue
        leg_at = {leg.point: parse_tuple(leg.tuple) for leg in flow.legs}
        for f in flow.findings:
            if f.first_ts is None:
                continue
            ts = round(f.first_ts * 1e9)
            for point, text in _finding_targets(f):
                if point in point_names:
                    notes.append(_Note(point, flow.id, ts, f"{flow.id}: {text}", leg_at.get(point)))
    return notes


def _finding_targets(f: Finding) -> list[tuple[str, str]]:
    a, b = f.between
    what = f" ({f.what})" if f.what else ""
    if f.kind == "drop":
        return [(a, f"{f.direction} dropped after this hop: never seen at {b}{what}")]
    if f.kind == "inject":
        return [(b, f"{f.direction} injected here: never sent through {a}{what}")]
    if f.kind == "rewrite":
        change = f"{f.field}: {f.before} -> {f.after}"
        return [
            (a, f"{f.direction} before rewrite between {a} and {b} ({change})"),
            (b, f"{f.direction} rewritten between {a} and {b}: {change}"),
        ]
    if f.kind == "reset":
        return [(p, f"{f.direction} reset{what}") for p in (a, b)]
    return []


def _leg_index(verdict: Verdict) -> dict[str, dict[RawTuple, str]]:
    """point -> {packet tuple (either direction): comment for the first packet of that leg}."""
    out: dict[str, dict[RawTuple, str]] = {}
    for flow in verdict.flows:
        for leg in flow.legs:
            t = parse_tuple(leg.tuple)
            if t is None:
                continue
            text = f"{flow.id} ({leg.link}): {leg.tuple}"
            m = out.setdefault(leg.point, {})
            m.setdefault(t, text)
            m.setdefault((t[2], t[3], t[0], t[1]), text)
    return out


# one packet of a point's stream: (aligned ts, point index, number, link type, bytes to
# write, original length, its innermost TCP/UDP tuple when asked for)
_Pkt = tuple[int, int, int, int, bytes, int, RawTuple | None]


def _stream(
    idx: int,
    path: Path,
    offset_ns: int,
    stats: MergeStats,
    name: str,
    keys: bool,
    anon: Anonymiser | None,
    told: _Told,
) -> Iterator[_Pkt]:
    n = 0
    with PcapReader(path) as reader:
        for rec, lay in reader.chunks(layers=keys or anon is not None):
            if len(rec):
                told(idx, int(rec.off[-1] + rec.cap[-1]))
            buf = reader.buf
            tup: list[RawTuple | None] = (
                chunk_tuples(buf, rec, lay) if keys and lay else [None] * len(rec)
            )
            if anon is not None and lay is not None:
                datas = anon.packets(buf, rec, lay)
            else:
                datas = [
                    buf[o : o + c] for o, c in zip(rec.off.tolist(), rec.cap.tolist(), strict=True)
                ]
            for ts, lt, data, orig, key in zip(
                rec.ts.tolist(), rec.link.tolist(), datas, rec.orig.tolist(), tup, strict=True
            ):
                yield ts - offset_ns, idx, n, lt, data, orig, key
                n += 1
            del lay, rec
        if reader.truncated:
            stats.truncated.append(name)
            stats.warnings += [f"{name}: {w}" for w in reader.warnings]


def _match_notes(
    notes: list[_Note], times: list[int], ts_values: tuple[int, int], key: RawTuple | None
) -> list[str]:
    out: list[str] = []
    for t in ts_values:
        j = bisect.bisect_left(times, t - TS_TOLERANCE_NS)
        while j < len(times) and times[j] <= t + TS_TOLERANCE_NS:
            n = notes[j]
            j += 1
            if n.done:
                continue
            if (
                n.key is not None
                and key is not None
                and key != n.key
                and key != (n.key[2], n.key[3], n.key[0], n.key[1])
            ):
                continue
            n.done = True
            out.append(n.text)
    return out


Progress = Callable[[str], None]


def write_merged(
    out: Path,
    points: list[MergePoint],
    verdict: Verdict,
    anonymiser: Anonymiser | None = None,
    *,
    progress: Progress | None = None,
    copies: bool = False,
) -> MergeStats:
    """Write `out` (pcapng); points in path order. Raises BundleError on unreadable input.
    `progress` hears how far it is (by the captures' bytes read). With an `anonymiser`
    and `copies`, each capture read is replaced by its anonymised copy too (what
    `anonymise_pcap` writes; its packets anonymised once for both) where the merge is
    made in blocks: `anonymised` names those points."""
    stats = MergeStats()
    names = {p.name for p in points}
    notes_at: dict[str, list[_Note]] = {}
    for n in sorted(_finding_notes(verdict, names), key=lambda n: n.ts_ns):
        notes_at.setdefault(n.point, []).append(n)
    legs = _leg_index(verdict)
    tr = anonymiser.text if anonymiser else (lambda s: s)

    with PcapngWriter(out, digest=True) as w:
        iface_of: dict[tuple[int, int], int] = {}
        present: list[_Point] = []
        for i, p in enumerate(points):
            stats.packets[p.name] = 0
            if p.pcap is None or not p.pcap.exists():
                why = p.missing_reason or "no capture"
                w.add_interface(LINKTYPE_ETHERNET, p.name, description=tr(f"missing: {why}"))
                continue
            lt = first_linktype(p.pcap)
            desc = f"hopcap point {p.name}; clock offset {p.offset_s:+.6f} s subtracted"
            iface_of[(i, lt)] = w.add_interface(lt, p.name, description=desc)
            present.append(
                _Point(i, p.name, p.pcap, round(p.offset_s * 1e9), legs.get(p.name),
                       notes_at.get(p.name, []))
            )  # fmt: skip
        told = _Told(present, progress)
        if _fastwalk.available():
            _merge_blocks(w, present, iface_of, stats, anonymiser, told, copies)
        else:
            _merge_packets(w, present, iface_of, stats, anonymiser, told)
        told.end()
    stats.sha256 = w.sha256
    return stats


class _Told:
    """How far the merge is, told to `progress` (if any) by the bytes of the captures
    read, at each whole percent."""

    def __init__(self, present: list[_Point], progress: Progress | None) -> None:
        self.progress = progress
        self.total = sum(p.pcap.stat().st_size for p in present) if progress else 0
        self.read: dict[int, int] = {}
        self.said = -1

    def __call__(self, idx: int, upto: int) -> None:
        """Point `idx`'s capture is read up to byte `upto`."""
        if self.progress is None or not self.total:
            return
        self.read[idx] = upto
        self._say(sum(self.read.values()))

    def end(self) -> None:
        """Every capture is read (the bytes after a damaged file's last record too)."""
        if self.progress is not None and self.total:
            self._say(self.total)

    def _say(self, done: int) -> None:
        assert self.progress is not None
        pct = min(100 * done // self.total, 100)
        if pct > self.said:
            self.said = pct
            self.progress(
                f"writing the bundle: merged.pcapng {pct} % "
                f"({size_text(done)} of {size_text(self.total)} of captures)"
            )


@dataclass
class _Point:
    """A present point of the merge: where its packets are, what comments they may get."""

    idx: int
    name: str
    pcap: Path
    offset_ns: int  # subtracted from its timestamps
    legs: dict[RawTuple, str] | None  # the first packet of each leg's tuple: its comment
    notes: list[_Note]  # the findings' notes, by time
    seen: set[str] = field(default_factory=set)  # legs whose first packet went by

    def __post_init__(self) -> None:
        self.times = [n.ts_ns for n in self.notes]

    @property
    def keys(self) -> bool:
        """Whether its packets' tuples are needed (for a leg's or a finding's comment)."""
        return bool(self.legs or self.notes)

    def comment(self, ts: int, key: RawTuple | None, stats: MergeStats) -> str | None:
        """The comment of its next packet (in file order): `ts` aligned, `key` its tuple."""
        leg = None
        if self.legs and key is not None:
            leg = self.legs.get(key)
            if leg is not None and leg in self.seen:
                leg = None
            elif leg is not None:
                self.seen.add(leg)
        return self.say(leg, self.notes_of(ts, key, stats) if self.notes else [], stats)

    def notes_of(self, ts: int, key: RawTuple | None, stats: MergeStats) -> list[str]:
        """The findings' notes its next packet takes (aligned `ts`, tuple `key`)."""
        found = _match_notes(self.notes, self.times, (ts + self.offset_ns, ts), key)
        stats.annotated_findings += len(found)
        return found

    def say(self, leg: str | None, found: list[str], stats: MergeStats) -> str | None:
        """The comment of a packet that is the first of leg `leg` (None: not one) and
        takes the notes `found`."""
        parts = [f"first packet of {leg}"] if leg is not None else []
        parts += found
        if not parts:
            return None
        stats.comments += 1
        return f"{self.name}: " + "; ".join(parts)


def _merge_packets(
    w: PcapngWriter,
    present: list[_Point],
    iface_of: dict[tuple[int, int], int],
    stats: MergeStats,
    anonymiser: Anonymiser | None,
    told: _Told,
) -> None:
    """The merge a packet at a time (without the compiled helper): the streams of every
    point merged by aligned time."""
    tr = anonymiser.text if anonymiser else (lambda s: s)
    streams = [
        _stream(p.idx, p.pcap, p.offset_ns, stats, p.name, p.keys, anonymiser, told)
        for p in present
    ]
    by_idx = {p.idx: p for p in present}
    first_ts: int | None = None
    ts = 0
    write = w.write_packet
    for ts, i, _n, linktype, data, orig_len, key in heapq.merge(*streams):
        pt = by_idx[i]
        iface = iface_of.get((i, linktype))
        if iface is None:
            iface = w.add_interface(linktype, f"{pt.name}#{linktype}")
            iface_of[(i, linktype)] = iface
        comment = pt.comment(ts, key, stats) if pt.keys else None
        write(iface, ts, data, orig_len, tr(comment) if comment else None)
        stats.packets[pt.name] += 1
        if first_ts is None:
            first_ts = ts
    stats.first_ts_ns = first_ts
    stats.last_ts_ns = ts if first_ts is not None else None


# --------------------------------------------------------------------------- in blocks


def _merge_blocks(
    w: PcapngWriter,
    present: list[_Point],
    iface_of: dict[tuple[int, int], int],
    stats: MergeStats,
    anonymiser: Anonymiser | None,
    told: _Told,
    copies: bool = False,
) -> None:
    """`_merge_packets` a batch of packets at a time: the same bytes. Each point's
    records are read a chunk at a time as columns; the few packets that get a comment
    are found with numpy (`_Source.comments`) and given it by the same rules
    (`_Point.comment`); the batches are ordered with numpy and written as blocks by the
    compiled helper.

    The order is heapq.merge's of the points' packets by (aligned time, point, number):
    it always takes the smallest head, so a packet earlier in its file than a later one
    goes out with it (a file out of time order is not sorted): the order of (the running
    maximum of the aligned times in each file, point, number), in which every file is
    sorted. A batch is what every point has read up to the smallest running maximum of
    a point's last read packet (and, at that time, the points up to that one): no packet
    read later can come before it."""
    srcs: list[_Source] = []
    at = 0  # packets written
    first_ts: int | None = None
    last_ts = 0
    try:
        for k, p in enumerate(present):  # (those opened are closed, whatever happens)
            srcs.append(_Source(p, k, anonymiser, told, copies))
        while True:
            for s in srcs:
                s.fill()
            live = [s for s in srcs if not s.done]
            have = [s for s in srcs if s.rows]
            if not have:
                break
            if live:
                # each live point has rows (fill): none to come before (horizon, point)
                horizon, upto = min((int(s.cols["at"][-1]), s.pt.idx) for s in live)
                takes = [s.upto(horizon, s.pt.idx <= upto) for s in have]
            else:
                takes = [s.rows for s in have]
            parts = [s.take(k) for s, k in zip(have, takes, strict=True) if k]
            batch = {c: np.concatenate([x[c] for x in parts]) for c in parts[0]}
            order = np.lexsort((batch["n"], batch["src"], batch["at"]))
            batch = {c: v[order] for c, v in batch.items()}
            _write_batch(w, srcs, batch, iface_of)
            n = int(order.shape[0])
            for s in have:
                mine = np.nonzero(batch["src"] == s.slot)[0]
                if mine.shape[0]:
                    s.last_at = at + int(mine[-1])
            if first_ts is None:
                first_ts = int(batch["ts"][0])
            last_ts = int(batch["ts"][-1])
            at += n
        for s in srcs:
            s.finish()
        for s in srcs:
            if s.copy is not None:
                s.copy_path.replace(s.pt.pcap)
                stats.anonymised.append(s.pt.name)
    finally:
        for s in srcs:
            s.close()
    # a point's damage is told when its last packet went out (before them: empty points)
    for s in sorted(srcs, key=lambda s: (-1 if s.last_at is None else s.last_at, s.pt.idx)):
        stats.packets[s.pt.name] = s.count
        if s.truncated:
            stats.truncated.append(s.pt.name)
            stats.warnings += [f"{s.pt.name}: {x}" for x in s.warnings]
        stats.comments += s.stats.comments
        stats.annotated_findings += s.stats.annotated_findings
    stats.first_ts_ns = first_ts
    stats.last_ts_ns = last_ts if first_ts is not None else None


def _write_batch(
    w: PcapngWriter,
    srcs: list[_Source],
    batch: dict[str, npt.NDArray[np.int64]],
    iface_of: dict[tuple[int, int], int],
) -> None:
    """The blocks of a batch in order, with an interface block before the first packet
    of a (point, link type) the file has no interface for yet."""
    src, link, n = batch["src"], batch["link"], batch["n"]
    clen = np.full(src.shape[0], -1, np.int64)
    coff = np.zeros(src.shape[0], np.int64)
    texts: list[bytes] = []
    rows = np.nonzero(batch["c"])[0]
    if rows.shape[0]:
        for r in rows.tolist():
            texts.append(srcs[int(src[r])].comments.pop(int(n[r])))
        lens = np.array([len(t) for t in texts], np.int64)
        clen[rows] = lens
        coff[rows] = np.cumsum(lens) - lens
    comments = b"".join(texts)
    pair = (src << 32) | link
    iface = np.empty(src.shape[0], np.int64)
    uniq, first = np.unique(pair, return_index=True)
    new: list[tuple[int, int, int]] = []  # (first position, source, link type)
    for v, f in zip(uniq.tolist(), first.tolist(), strict=True):
        pt = srcs[v >> 32].pt
        got = iface_of.get((pt.idx, v & 0xFFFFFFFF))
        if got is None:
            new.append((f, v >> 32, v & 0xFFFFFFFF))
        else:
            iface[pair == v] = got
    new.sort()
    bases = [s.base for s in srcs]
    cols = [batch[c] for c in ("src", "off", "cap", "orig", "ts")]
    lo = 0
    for hi, slot, lt in [*new, (src.shape[0], -1, -1)]:
        write_blocks(w, bases, [c[lo:hi] for c in cols], iface[lo:hi], comments,
                     coff[lo:hi], clen[lo:hi])  # fmt: skip
        lo = hi
        if slot >= 0:
            pt = srcs[slot].pt
            got = iface_of[(pt.idx, lt)] = w.add_interface(lt, f"{pt.name}#{lt}")
            iface[pair == ((slot << 32) | lt)] = got


def write_blocks(
    w: PcapngWriter,
    bases: list[int],
    cols: list[npt.NDArray[np.int64]],
    iface: npt.NDArray[np.int64],
    comments: bytes = b"",
    coff: npt.NDArray[np.int64] | None = None,
    clen: npt.NDArray[np.int64] | None = None,
) -> None:
    """Packets as enhanced packet blocks (`_fastwalk.epb_blocks`; `cols`: their buffer's
    number in `bases`, offset, captured and original length, time; `clen` < 0: no
    comment), a piece of the writer's buffers at a time (reused: fresh memory costs a page
    fault every 4 KiB)."""
    n = int(iface.shape[0])
    if clen is None or coff is None:
        clen, coff = np.full(n, -1, np.int64), np.zeros(n, np.int64)
    ends = np.cumsum(_fastwalk.epb_sizes(cols[2], clen))  # of each packet's block
    lo = 0
    while lo < n:
        at = int(ends[lo - 1]) if lo else 0
        hi = min(max(int(np.searchsorted(ends, at + w.piece, "right")), lo + 1), n)
        size = int(ends[hi - 1]) - at
        buf = w.buffer(size)
        src, off, cap, orig, ts = (c[lo:hi] for c in cols)
        got = _fastwalk.epb_blocks(
            bases, src, off, cap, orig, ts, iface[lo:hi], comments, coff[lo:hi], clen[lo:hi], buf
        )
        assert got == size
        w.write_blocks(buf, size, hi - lo)
        lo = hi


_INT64_MIN = np.iinfo(np.int64).min
CHUNK = WALK_CHUNK  # records read at a time (tests make it small)


class _Source:
    """A point's capture read for the merge a chunk at a time: the rows read and not yet
    written (columns: the running maximum of the aligned times `at`, the aligned time,
    the record, its number, whether it has a comment), and the comments of those that
    have one (by number)."""

    def __init__(
        self,
        pt: _Point,
        slot: int,
        anonymiser: Anonymiser | None,
        told: _Told,
        copy: bool = False,
    ) -> None:
        self.pt = pt
        self.slot = slot
        self.anon = anonymiser
        self.told = told
        # its anonymised copy, written as it is read (`write_merged`'s `copies`)
        self.copy_path = pt.pcap.with_name(pt.pcap.name + ".anon.tmp")
        self.copy = PcapngWriter(self.copy_path) if copy and anonymiser else None
        self.copy_ifaces: dict[int, int] = {}
        self.reader = PcapReader(pt.pcap)
        self._u8 = np.frombuffer(self.reader.buf, np.uint8) if len(self.reader.buf) else None
        # where the packets written are: the mapped file, or a chunk's anonymised copies
        self.base = int(self._u8.ctypes.data) if self._u8 is not None else 0
        self._data: npt.NDArray[np.uint8] | None = None
        self.chunks = self.reader.chunks(chunk=CHUNK, layers=anonymiser is not None)
        self.cols: dict[str, npt.NDArray[np.int64]] = {}  # the rows read, not yet written
        self.done = False  # every record read
        self.count = 0  # records read
        self.carry = _INT64_MIN  # the running maximum so far
        self.comments: dict[int, bytes] = {}
        self.stats = MergeStats()  # the comments' counts
        self.legs = _LegFirsts(pt) if pt.legs else None
        self.times = np.array(pt.times, np.int64)
        self.last_at: int | None = None  # where its last packet was written
        self.truncated = False
        self.warnings: list[str] = []

    @property
    def rows(self) -> int:
        """How many rows are read and not yet written."""
        return int(self.cols["n"].shape[0]) if self.cols else 0

    def finish(self) -> None:
        """Every record read and written: the anonymised copy complete."""
        if self.copy is not None:
            if not self.copy_ifaces:  # (as anonymise_pcap: an interface, no packet)
                lt = self.reader.linktypes[0] if self.reader.linktypes else LINKTYPE_ETHERNET
                self.copy.add_interface(lt, self.pt.name)
            self.copy.close()

    def close(self) -> None:
        self.chunks.close()
        self._u8 = self._data = None
        self.reader.close()
        if self.copy is not None and self.copy_path.exists():
            self.copy.close()  # (closed already once finished)
            self.copy_path.unlink()  # not complete: the capture stays as it is

    def fill(self) -> None:
        """Read the next chunk when every row read is written (none: `done`)."""
        while not self.done and not self.rows:
            try:
                rec, lay = next(self.chunks)
            except StopIteration:
                self.done = True
                self.truncated = self.reader.truncated
                self.warnings = list(self.reader.warnings)
                return
            n = len(rec)
            if n:
                self.told(self.pt.idx, int(rec.off[-1] + rec.cap[-1]))
            ts = rec.ts - self.pt.offset_ns
            at = np.maximum(np.maximum.accumulate(ts), self.carry)
            self.carry = int(at[-1])
            c = np.zeros(n, np.int64)
            for r, text in self._comments(rec, ts):
                c[r] = 1
                text = self.anon.text(text) if self.anon else text
                self.comments[self.count + r] = text.encode()
            off, cap = rec.off, rec.cap
            if self.anon is not None:
                # (the rows of the chunk before are written: its copies are not needed)
                assert lay is not None
                datas = self.anon.packets(self.reader.buf, rec, lay)
                off, cap, self._data = _joined(datas)
                self.base = int(self._data.ctypes.data)
                if self.copy is not None:
                    _anonymised_blocks(self.copy, rec, datas, self.copy_ifaces, self.pt.name)
            self.cols = {
                "at": at, "ts": ts, "link": rec.link, "off": off, "cap": cap,
                "orig": rec.orig, "n": np.arange(self.count, self.count + n, dtype=np.int64),
                "src": np.full(n, self.slot, np.int64), "c": c,
            }  # fmt: skip
            self.count += n

    def upto(self, at: int, inclusive: bool) -> int:
        """How many of the rows read come before anything read later: running maximum
        below `at` (or at it, `inclusive`)."""
        return int(np.searchsorted(self.cols["at"], at, "right" if inclusive else "left"))

    def take(self, k: int) -> dict[str, npt.NDArray[np.int64]]:
        """The first `k` rows read and not yet written (now written)."""
        out = {c: v[:k] for c, v in self.cols.items()}
        self.cols = {c: v[k:] for c, v in self.cols.items()}
        return out

    def _comments(self, rec: Records, ts: npt.NDArray[np.int64]) -> list[tuple[int, str]]:
        """The rows of a chunk that get a comment, in order, with it (`_Point.comment`'s
        rules, asked only for the rows it can say something about)."""
        pt = self.pt
        if not pt.keys or self._u8 is None or not len(rec):
            return []
        buf = self.reader.buf

        def keys(rows: npt.NDArray[np.int64]) -> list[RawTuple | None]:  # of those rows
            if not rows.shape[0]:
                return []
            sub = Records(
                rec.off[rows], rec.cap[rows], rec.ts[rows], rec.link[rows], rec.orig[rows],
                rec.iface[rows],
            )  # fmt: skip
            return chunk_tuples(buf, sub, _heads(buf, sub))

        firsts: dict[int, str] = {}
        if self.legs:
            got = _fastwalk.tuple_hashes(buf, rec.off, rec.cap, rec.link)
            assert got is not None
            firsts = self.legs.scan(*got, keys)
        rows = set(firsts)
        if self.times.shape[0]:
            near = np.zeros(len(rec), bool)
            for t in (rec.ts, ts):  # a note is near the packet's time as captured or aligned
                lo = np.searchsorted(self.times, t - TS_TOLERANCE_NS, "left")
                near |= np.searchsorted(self.times, t + TS_TOLERANCE_NS, "right") > lo
            rows.update(np.nonzero(near)[0].tolist())
        order = np.array(sorted(rows), np.int64)
        out = []
        at = ts[order].tolist()
        for r, t, k in zip(order.tolist(), at, keys(order) if pt.notes else at, strict=True):
            found = pt.notes_of(t, k, self.stats) if pt.notes else []
            text = pt.say(firsts.get(r), found, self.stats)
            if text is not None:
                out.append((r, text))
        return out


def _joined(
    datas: list[bytes],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Packets' bytes one after the other: (offsets, lengths, the bytes)."""
    cap = np.fromiter(map(len, datas), np.int64, len(datas))
    data = np.frombuffer(b"".join(datas) or b"\0", np.uint8)
    return np.cumsum(cap) - cap, cap, data


@dataclass
class _Heads:
    l3: npt.NDArray[np.int64]
    et: npt.NDArray[np.int64]
    l4: npt.NDArray[np.int64]
    proto: npt.NDArray[np.int64]


def _heads(buf: Any, rec: Records) -> _Heads:
    """Where each record's innermost IP and transport headers are, by the compiled twin
    of the decoder (`hopcap.capfile.decode`; held to it by test_capfile where there is an
    IP header: the columns here are only read there)."""
    c = _fastwalk.find_layers(buf, rec.off, rec.cap, rec.link)
    assert c is not None
    return _Heads(*(np.ascontiguousarray(c[:, j]) for j in range(4)))


class _LegFirsts:
    """Which packets of a point are the first of a leg's tuple (either way), by a hash of
    every packet's tuple: the rows whose hash is that of a leg not seen yet, the first of
    each hash in a chunk told by its tuple (and, where that is not one of the hash's legs
    — another tuple with the same hash — the next ones, until it is)."""

    def __init__(self, pt: _Point) -> None:
        assert pt.legs
        self.pt = pt
        self.legs = pt.legs
        keys = list(self.legs)
        self.pending: dict[int, set[str]] = {}  # hash -> its legs not seen yet
        for k, h in zip(keys, _tuple_hashes(keys).tolist(), strict=True):
            self.pending.setdefault(h, set()).add(self.legs[k])
        self.hashes = np.array(sorted(self.pending), np.uint64)

    def scan(
        self,
        h: npt.NDArray[np.uint64],
        ok: npt.NDArray[np.bool_],
        keys: Callable[[npt.NDArray[np.int64]], list[RawTuple | None]],
    ) -> dict[int, str]:
        """The rows of a chunk (hashes `h`, valid where `ok`) that are the first packet of
        a leg, with its comment's text."""
        if not self.hashes.shape[0]:
            return {}
        at = np.minimum(np.searchsorted(self.hashes, h), self.hashes.shape[0] - 1)
        rows = np.nonzero(ok & (self.hashes[at] == h))[0]
        if not rows.shape[0]:
            return {}
        hv = h[rows]
        _u, first = np.unique(hv, return_index=True)
        out: dict[int, str] = {}
        done: list[int] = []
        firsts = np.sort(rows[first])
        for r, k in zip(firsts.tolist(), keys(firsts), strict=True):
            hr = int(h[r])
            todo = self.pending[hr]
            self._take(r, k, todo, out)
            if todo:  # another tuple of the same hash, or two legs of it
                more = rows[(hv == hr) & (rows > r)]
                for r2, k2 in zip(more.tolist(), keys(more), strict=True):
                    if self._take(r2, k2, todo, out) and not todo:
                        break
            if not todo:
                done.append(hr)
                del self.pending[hr]
        if done:
            self.hashes = self.hashes[~npsets.isin(self.hashes, np.array(done, np.uint64))]
        return out

    def _take(self, r: int, k: RawTuple | None, todo: set[str], out: dict[int, str]) -> bool:
        """Row r (tuple `k`) is the first packet of one of the legs `todo`: take it."""
        text = self.legs.get(k) if k is not None else None
        if text is None or text not in todo:
            return False
        todo.discard(text)
        self.pt.seen.add(text)
        out[r] = text
        return True


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    out: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return out


def _ends_hash(
    words: npt.NDArray[np.uint64], ports: npt.NDArray[np.uint64], alen: int
) -> npt.NDArray[np.uint64]:
    """A hash of endpoints (rows of `words`: an address as 32-bit words; their ports).
    The port and the address's length sit above its first word (not XORed into its
    bits: 198.18.1.11:32790 and 198.18.1.31:32770 would collide), and `_mix` is a
    bijection: distinct IPv4 endpoints never share a hash."""
    x = (ports << np.uint64(32)) | np.uint64(alen << 48)
    for j in range(words.shape[1]):
        x = _mix(x ^ words[:, j])
    return x


def _tuple_hashes(keys: list[RawTuple]) -> npt.NDArray[np.uint64]:
    """The hash of each tuple, the same either way (the sum of its ends' hashes)."""
    out = np.zeros(len(keys), np.uint64)
    for alen in (4, 16):
        idx = [i for i, k in enumerate(keys) if len(k[0]) == alen]
        if not idx:
            continue
        src = np.frombuffer(b"".join(keys[i][0] for i in idx), ">u4").astype(np.uint64)
        dst = np.frombuffer(b"".join(keys[i][2] for i in idx), ">u4").astype(np.uint64)
        sp = np.array([keys[i][1] for i in idx], np.uint64)
        dp = np.array([keys[i][3] for i in idx], np.uint64)
        w = alen // 4
        out[idx] = _ends_hash(src.reshape(-1, w), sp, alen) + _ends_hash(
            dst.reshape(-1, w), dp, alen
        )
    return out


def collect_addresses(anonymiser: Anonymiser, paths: list[Path]) -> None:
    for path in paths:
        with PcapReader(path) as r:
            for rec, lay in r.chunks(layers=True):
                assert lay is not None
                anonymiser.add_packets(r.buf, rec, lay)


def anonymise_pcap(path: Path, anonymiser: Anonymiser, name: str) -> None:
    """Replace a capture file by its anonymised copy (pcapng, same file name)."""
    tmp = path.with_name(path.name + ".anon.tmp")
    try:
        with PcapReader(path) as r, PcapngWriter(tmp) as w:
            ifaces: dict[int, int] = {}
            for rec, lay in r.chunks(layers=True):
                assert lay is not None
                datas = anonymiser.packets(r.buf, rec, lay)
                if _fastwalk.available():
                    _anonymised_blocks(w, rec, datas, ifaces, name)
                    continue
                for ts, lt, data, orig in zip(
                    rec.ts.tolist(), rec.link.tolist(), datas, rec.orig.tolist(), strict=True
                ):
                    iface = ifaces.get(lt)
                    if iface is None:
                        iface = w.add_interface(lt, name)
                        ifaces[lt] = iface
                    w.write_packet(iface, ts, data, orig)
            if not ifaces:
                w.add_interface(r.linktypes[0] if r.linktypes else LINKTYPE_ETHERNET, name)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BundleError(f"cannot anonymise {path}: {exc}") from exc


def _anonymised_blocks(
    w: PcapngWriter, rec: Records, datas: list[bytes], ifaces: dict[int, int], name: str
) -> None:
    """A chunk of `anonymise_pcap`'s packets as blocks (the same bytes as written one by
    one): an interface for each link type before its first packet."""
    off, cap, data = _joined(datas)
    iface = np.empty(len(rec), np.int64)
    starts: list[tuple[int, int]] = []  # (first row, link type) of a link type new here
    uniq, first = np.unique(rec.link, return_index=True)
    for lt, f in zip(uniq.tolist(), first.tolist(), strict=True):
        if lt in ifaces:
            iface[rec.link == lt] = ifaces[lt]
        else:
            starts.append((f, lt))
    lo = 0
    cols = [np.zeros(len(rec), np.int64), off, cap, rec.orig, rec.ts]
    for hi, lt in [*sorted(starts), (len(rec), -1)]:
        write_blocks(w, [int(data.ctypes.data)], [c[lo:hi] for c in cols], iface[lo:hi])
        lo = hi
        if lt >= 0:
            ifaces[lt] = w.add_interface(lt, name)
            iface[rec.link == lt] = ifaces[lt]
