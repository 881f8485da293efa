"""merged.pcapng: every point's capture as its own named interface, on one timeline.

Packets of all points are merged in aligned-timestamp order (each point's
`clock_offset_s` from the verdict is subtracted). Comments annotate the first packet of
each flow leg at each point (flow id, link kind, tuple as seen there) and the packets
that findings point at ("dropped after this hop", "injected here", ...).
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hopcap.bundle.anon import Anonymiser
from hopcap.bundle.pcapio import (
    LINKTYPE_ETHERNET,
    PcapngWriter,
    PcapReader,
    RawTuple,
    chunk_tuples,
    first_linktype,
)
from hopcap.errors import BundleError
from hopcap.model import Finding, Verdict

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
    try:
        return ipaddress.ip_address(host).packed, int(port)
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
) -> Iterator[_Pkt]:
    n = 0
    with PcapReader(path) as reader:
        for rec, lay in reader.chunks(layers=keys or anon is not None):
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


def write_merged(
    out: Path,
    points: list[MergePoint],
    verdict: Verdict,
    anonymiser: Anonymiser | None = None,
) -> MergeStats:
    """Write `out` (pcapng); points in path order. Raises BundleError on unreadable input."""
    stats = MergeStats()
    names = {p.name for p in points}
    notes_at: dict[str, list[_Note]] = {}
    for n in sorted(_finding_notes(verdict, names), key=lambda n: n.ts_ns):
        notes_at.setdefault(n.point, []).append(n)
    note_times = {k: [n.ts_ns for n in v] for k, v in notes_at.items()}
    legs = _leg_index(verdict)
    seen_legs: set[tuple[str, str]] = set()
    tr = anonymiser.text if anonymiser else (lambda s: s)

    with PcapngWriter(out) as w:
        iface_of: dict[tuple[int, int], int] = {}
        streams = []
        for i, p in enumerate(points):
            stats.packets[p.name] = 0
            if p.pcap is None or not p.pcap.exists():
                why = p.missing_reason or "no capture"
                w.add_interface(LINKTYPE_ETHERNET, p.name, description=tr(f"missing: {why}"))
                continue
            lt = first_linktype(p.pcap)
            desc = f"hopcap point {p.name}; clock offset {p.offset_s:+.6f} s subtracted"
            iface_of[(i, lt)] = w.add_interface(lt, p.name, description=desc)
            keys = bool(legs.get(p.name) or notes_at.get(p.name))
            streams.append(
                _stream(i, p.pcap, round(p.offset_s * 1e9), stats, p.name, keys, anonymiser)
            )
        per_point = [
            (p.name, legs.get(p.name), notes_at.get(p.name), note_times.get(p.name, []))
            for p in points
        ]
        counts = [0] * len(points)
        offsets = [round(p.offset_s * 1e9) for p in points]
        first_ts: int | None = None
        ts = 0
        write = w.write_packet
        for ts, i, _n, linktype, data, orig_len, key in heapq.merge(*streams):
            name, leg_map, pnotes, ptimes = per_point[i]
            iface = iface_of.get((i, linktype))
            if iface is None:
                iface = w.add_interface(linktype, f"{name}#{linktype}")
                iface_of[(i, linktype)] = iface
            comment = None
            if leg_map or pnotes:
                parts: list[str] = []
                if leg_map and key is not None:
                    text = leg_map.get(key)
                    if text is not None and (name, text) not in seen_legs:
                        seen_legs.add((name, text))
                        parts.append(f"first packet of {text}")
                if pnotes:
                    found = _match_notes(pnotes, ptimes, (ts + offsets[i], ts), key)
                    stats.annotated_findings += len(found)
                    parts += found
                if parts:
                    comment = tr(f"{name}: " + "; ".join(parts))
                    stats.comments += 1
            write(iface, ts, data, orig_len, comment)
            counts[i] += 1
            if first_ts is None:
                first_ts = ts
        for i, p in enumerate(points):
            stats.packets[p.name] = counts[i]
        stats.first_ts_ns = first_ts
        stats.last_ts_ns = ts if first_ts is not None else None
    return stats


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
