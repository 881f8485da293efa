"""Cut a classic pcap down to a time range, in place (pure file I/O).

Used where only part of a capture is evidence: the flight recorder keeps the last `--ring`
seconds before its trigger (a ring file may hold older packets), `--until-fail` keeps the
failing repetition of the repro. Times are on the capture's own clock (epoch seconds).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hopcap.capfile.walk import u32_at
from hopcap.errors import BundleError

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}


@dataclass(frozen=True)
class TrimResult:
    kept: int
    removed: int
    first_ts: float | None  # of the packets kept
    last_ts: float | None


def trim_pcap(path: Path, start_ts: float | None, end_ts: float | None) -> TrimResult | None:
    """Keep only the packets of `path` with `start_ts <= ts <= end_ts` (None: open end).
    Returns None (and leaves the file alone) when it is not a classic pcap; a file cut
    mid-packet keeps its whole packets."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            header = f.read(24)
            if len(header) < 24 or header[:4] not in _MAGICS:
                return None
            endian, units = _MAGICS[header[:4]]
            rec = struct.Struct(endian + "IIII")
            tmp = path.with_name(path.name + ".trim")
            kept = removed = 0
            first: float | None = None
            last: float | None = None
            with tmp.open("wb") as w:
                w.write(header)
                # the records the compiled walk reads (all, but from a corrupt header on:
                # those are read below, one at a time, as they always were)
                got = _walked(f, endian, units, start_ts, end_ts, w)
                if got is not None:
                    kept, removed, first, last = got
                while True:
                    head = f.read(16)
                    if len(head) < 16:
                        break
                    sec, frac, incl, _orig = rec.unpack(head)
                    data = f.read(incl)
                    if len(data) < incl:
                        break
                    ts = sec + frac / units
                    if (start_ts is None or ts >= start_ts) and (end_ts is None or ts <= end_ts):
                        w.write(head)
                        w.write(data)
                        kept += 1
                        first = ts if first is None else first
                        last = ts
                    else:
                        removed += 1
        os.replace(tmp, path)
    except OSError as exc:
        raise BundleError(f"cannot trim {path}: {exc}") from exc
    return TrimResult(kept, removed, first, last)


WALK = 1 << 18  # records walked at a time


def _walked(
    f: BinaryIO,
    endian: str,
    units: int,
    start_ts: float | None,
    end_ts: float | None,
    w: BinaryIO,
) -> tuple[int, int, float | None, float | None] | None:
    """The loop of `trim_pcap` over the records the compiled walk reads: the records
    kept written to `w` a run of consecutive ones at a time; (kept, removed, first,
    last), with `f` left at the first record it did not read (a corrupt header: the
    Python loop goes on from there; the end of the file or a record cut short: nothing
    more to read). None without the compiled walk (or an empty file)."""
    from hopcap.correlate import _fastwalk

    size = os.fstat(f.fileno()).st_size
    if not _fastwalk.available() or size <= 24:
        return None
    kept = removed = 0
    first: float | None = None
    last: float | None = None
    with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as buf, memoryview(buf) as view:
        u8 = np.frombuffer(buf, np.uint8)
        pos, reason = 24, 3
        mult = 1_000_000_000 // units
        while reason == 3:  # (3: WALK records read, more to come)
            got = _fastwalk.walk_pcap(buf, pos, endian == ">", mult, 1 << 32, WALK)
            assert got is not None
            offs, caps, _ts, pos, reason, _orig = got
            if not offs.shape[0]:
                continue
            # each record's time as the loop below computes it: sec + frac / units
            h = offs - 16
            sec, frac = u32_at(u8, h, endian == ">"), u32_at(u8, h + 4, endian == ">")
            ts = sec.astype(np.float64) + frac / units
            keep = np.ones(ts.shape[0], bool)
            if start_ts is not None:
                keep &= ts >= start_ts
            if end_ts is not None:
                keep &= ts <= end_ts
            rows = np.nonzero(keep)[0]
            kept += int(rows.shape[0])
            removed += int(ts.shape[0] - rows.shape[0])
            if not rows.shape[0]:
                continue
            # runs of consecutive kept records, each written at once (from the mapping)
            cut = np.nonzero(np.diff(rows) != 1)[0] + 1
            lo = h[rows[np.r_[0, cut]]]
            hi = (offs + caps)[rows[np.r_[cut - 1, rows.shape[0] - 1]]]
            for a, z in zip(lo.tolist(), hi.tolist(), strict=True):
                w.write(view[a:z])
            first = float(ts[rows[0]]) if first is None else first
            last = float(ts[rows[-1]])
        del u8
    f.seek(pos if reason == 2 else size)  # (reason 2: a corrupt header, read on below)
    return kept, removed, first, last
