"""Sizes as people read them, shared by the command's progress lines and the library's
progress messages (which `cli` only prints)."""

from __future__ import annotations


def size_text(n: float) -> str:
    """`n` bytes as "512 B", "305.3 kB", "1.8 MB", "31.0 GB" (powers of 1000, as tcpdump
    and the pull's progress count them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover - the loop returns at "GB"


def ms_text(seconds: float, *, signed: bool = False) -> str:
    """`seconds` as milliseconds to the microsecond, "0.192 ms" (`signed`: "+0.192 ms",
    "-0.105 ms"). An offset that rounds to zero reads "0.000" ("+0.000"), never "-0.000":
    a clock 15 ns behind is not a negative offset worth a reader's question. From 10 s on,
    seconds: "+10800.000 s (3 h 00 min)"."""
    if abs(seconds) >= 10:
        # a clock hours off (a time zone or a host's clock never set): "+10800000.000 ms"
        # was unreadable; seconds, and hours and minutes where they say more
        text = f"{seconds:+.3f} s" if signed else f"{seconds:.3f} s"
        whole = round(abs(seconds))
        if whole >= 3600:
            text += f" ({whole // 3600} h {whole % 3600 // 60:02d} min)"
        return text
    ms = round(seconds * 1000, 3)
    if ms == 0:
        ms = 0.0  # also -0.0
    return f"{ms:+.3f} ms" if signed else f"{ms:.3f} ms"
