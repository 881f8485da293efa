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
    a clock 15 ns behind is not a negative offset worth a reader's question."""
    ms = round(seconds * 1000, 3)
    if ms == 0:
        ms = 0.0  # also -0.0
    return f"{ms:+.3f} ms" if signed else f"{ms:.3f} ms"
