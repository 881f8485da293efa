"""When an answer's bytes passed a capture point, read with scapy (independently of
hopcap's reader): what a test checks a proxied pairing against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

STEP = 8192


def tcp_packets(pcap: Path) -> Iterator[tuple[Any, Any, float]]:
    """The IPv4 TCP packets of a capture, in its order: (IP layer, TCP layer, time)."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapReader

    with PcapReader(str(pcap)) as rd:
        for pkt in rd:
            if IP in pkt and TCP in pkt:
                yield pkt[IP], pkt[TCP], float(pkt.time)


def answer_progress(pcap: Path) -> dict[str, list[float]]:
    """Per connection (its tuple, client side first) of a capture: when the server's
    stream first got beyond each STEP of it, from its first byte (after its SYN)."""
    isn: dict[str, int] = {}
    out: dict[str, list[float]] = {}
    for ip, tcp, t in tcp_packets(pcap):
        key = f"{ip.dst}:{tcp.dport} > {ip.src}:{tcp.sport}"
        if tcp.flags & 0x12 == 0x12:
            isn[key] = tcp.seq
        if not len(tcp.payload) or key not in isn:
            continue
        end = ((tcp.seq - isn[key] - 1) & 0xFFFFFFFF) + len(tcp.payload)
        steps = out.setdefault(key, [])
        while len(steps) * STEP < end:  # (the step begins below `end`: reached now)
            steps.append(t)
    return out


def relayed_in_order(went: list[float], came: list[float]) -> bool:
    """Whether a proxy could have relayed an answer that `came` in (its `answer_progress`
    on the server's side) as it `went` out to the client: each step left after the step
    before it came (one step of slack: a proxy rewrites some headers)."""
    return all(went[k] >= came[k - 1] for k in range(1, min(len(went), len(came))))
