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
