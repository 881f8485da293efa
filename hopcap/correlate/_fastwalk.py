"""Optional accelerated record walk for classic pcap (see walk_pcap)."""

from __future__ import annotations

from typing import Any


def walk_pcap(buf: Any, big_endian: bool, mult: int, max_record: int) -> Any:
    """Return (offs, caps, ts_ns, stop_byte, reason) or None when no accelerator is available."""
    return None
