"""Cut a classic pcap down to a time range, in place (pure file I/O).

Used where only part of a capture is evidence: the flight recorder keeps the last `--ring`
seconds before its trigger (a ring file may hold older packets), `--until-fail` keeps the
failing repetition of the repro. Times are on the capture's own clock (epoch seconds).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

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
