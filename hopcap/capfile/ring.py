"""Joining the ring files of one capture (tcpdump -C/-W) into one classic pcap."""

from __future__ import annotations

import contextlib
import itertools
import struct
from dataclasses import dataclass
from pathlib import Path

from hopcap.capfile.walk import PCAP_MAGICS, CaptureFileError, RecordWalk, open_capture


def concat_pcaps(parts: list[Path], out: Path, *, remove: bool = True) -> list[str]:
    """Write every complete record of `parts` (oldest first) to `out` after the first
    part's file header, and remove the parts. A part that ends mid-record (or is damaged
    further in) gives up to its damage, with a warning, and the next part still follows:
    the joined file has no damage in its middle. A part in another byte order, time
    resolution or format (pcapng) has its records rewritten in the first one's; parts of
    different link types cannot be joined (CaptureFileError). Returns the warnings.
    `remove=False` leaves the parts where they are."""
    warnings: list[str] = []
    head: bytes | None = None
    link = -1
    with out.open("wb") as w:
        for part in parts:
            buf = open_capture(part)
            try:
                walk = RecordWalk(part, buf)
                if head is None and walk.format == "pcap" and walk.links:
                    head, link = bytes(buf[:24]), walk.links[0]
                    w.write(head)
                for rec in walk.chunks():
                    if head is None:  # the first readable part is pcapng: a pcap header
                        link = int(rec.link[0])
                        head = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, link)
                        w.write(head)
                    if (rec.link != link).any():
                        raise CaptureFileError(
                            f"{part}: ring files of one capture with different link types "
                            f"({link} and {int(rec.link[rec.link != link][0])}) cannot be joined"
                        )
                    if bytes(buf[:24]) == head:  # the same header: copy the records' bytes
                        w.write(buf[int(rec.off[0]) - 16 : int(rec.off[-1] + rec.cap[-1])])
                        continue
                    endian, mult = PCAP_MAGICS[head[:4]]
                    rh = struct.Struct(endian + "IIII")
                    for o, c, ts, orig in zip(
                        rec.off.tolist(), rec.cap.tolist(), rec.ts.tolist(), rec.orig.tolist(),
                        strict=True,
                    ):  # fmt: skip
                        sec, ns = divmod(ts, 1_000_000_000)
                        w.write(rh.pack(sec, ns // mult, c, orig) + buf[o : o + c])
                warnings += walk.warnings
            finally:
                if not isinstance(buf, bytes):
                    with contextlib.suppress(BufferError):  # a walk left unfinished
                        buf.close()
            if remove:
                part.unlink()
    return warnings


# parts of one capture follow each other in time; the kernel's timestamps of one capture
# may go back by a little (packets of several queues), never by this much
JOIN_OVERLAP_NS = 10_000_000


@dataclass
class Joined:
    """`join_captures`' result: the parts in time order, their warnings, and the kernel
    drops their pcapng interface statistics report (None: none does)."""

    parts: list[Path]
    warnings: list[str]
    kernel_drops: int | None


def join_captures(parts: list[Path], out: Path, names: dict[Path, str] | None = None) -> Joined:
    """One capture written to several files (`tcpdump -C` / `-G` rotation: fw.pcap,
    fw.pcap1, ...; the names need not sort in time order, a `-W` ring wraps) joined into
    `out`, in the order of their packets' time; the parts are left as they are. Parts whose
    packets overlap in time are no parts of one capture (two points' captures given for
    one point): CaptureFileError, and nothing is written. `names`: how messages name a
    part (a decompressed copy by the file it came from)."""

    def shown(p: Path) -> str:
        return (names or {}).get(p, p.name)

    spans: list[tuple[int, int, Path]] = []  # (first, last packet time, part)
    drops: int | None = None
    for part in parts:
        buf = open_capture(part)
        try:
            walk = RecordWalk(part, buf)
            first = last = None
            for rec in walk.chunks():
                if first is None:
                    first = int(rec.ts[0])
                last = int(rec.ts.max()) if last is None else max(last, int(rec.ts.max()))
            if walk.kernel_drops is not None:
                drops = (drops or 0) + walk.kernel_drops
        finally:
            if not isinstance(buf, bytes):
                with contextlib.suppress(BufferError):
                    buf.close()
        if first is not None and last is not None:
            spans.append((first, last, part))
    spans.sort(key=lambda x: (x[0], x[1]))
    for (f0, l0, p0), (f1, _l1, p1) in itertools.pairwise(spans):
        # (or starting when the other does: a capture shorter than the tolerance twice)
        if f1 < l0 - JOIN_OVERLAP_NS or f1 == f0:
            raise CaptureFileError(
                f"{shown(p0)} and {shown(p1)} overlap in time ({_clock(f1)} to {_clock(l0)} UTC in "
                "both): they are not the parts of one capture",
                hint="the files of one point's rotated capture (tcpdump -C/-G) follow each "
                "other in time; give each other point's capture its own NAME=",
            )
    empty = [p for p in parts if p not in {x[2] for x in spans}]
    ordered = empty + [x[2] for x in spans]  # (a part without packets adds nothing)
    warnings = concat_pcaps(ordered, out, remove=False)
    return Joined(ordered, warnings, drops)


def _clock(ns: int) -> str:
    import datetime as dt

    t = dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
    return t.strftime("%H:%M:%S.%f")[:-3]
