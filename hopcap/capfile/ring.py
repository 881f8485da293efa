"""Joining the ring files of one capture (tcpdump -C/-W) into one classic pcap."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

from hopcap.capfile.walk import PCAP_MAGICS, CaptureFileError, RecordWalk, open_capture


def concat_pcaps(parts: list[Path], out: Path) -> list[str]:
    """Write every complete record of `parts` (oldest first) to `out` after the first
    part's file header, and remove the parts. A part that ends mid-record (or is damaged
    further in) gives up to its damage, with a warning, and the next part still follows:
    the joined file has no damage in its middle. A part in another byte order, time
    resolution or format (pcapng) has its records rewritten in the first one's; parts of
    different link types cannot be joined (CaptureFileError). Returns the warnings."""
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
            part.unlink()
    return warnings
