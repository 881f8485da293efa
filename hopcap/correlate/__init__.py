"""Pure, synchronous correlation of captures taken at several points of one path.

Public API (used by cli.py; never imports orchestrator or asyncssh, never prints):

    correlate(points: Sequence[PointInput], *, conntrack: Mapping[str, str] | None = None)
        -> Verdict
    read_points_from_args(["NAME=PCAP", ...]) -> list[PointInput]
    read_capture(path) -> PacketTable      # columnar TCP packets of one capture file

How it works (modules):
  reader   mmap the file; walk records; gather header fields into numpy columns
           (pcap both byte orders, micro/nano; pcapng SHB/IDB/EPB/SPB/ISB; Ethernet+VLAN,
           Linux cooked v1/v2, raw IP, loopback; IPv4/IPv6). Damage: read up to it, warn.
  conns    half-connections (tuple + SYN boundaries) and their pairing into connections
  link     adjacent points: identical tuple, NAT/PAT by SYN and data fingerprints (ISN,
           TSval+IP ID, options, payload), conntrack as ground truth, proxies by content
           chunks of each direction's stream
  match    per hop and direction, all connections in one batch: control packets as
           multisets, data by exact segment then by byte ranges of the sequence space with
           the same transmission identity (TSO/GSO/GRO), tcp.seq rewrites, field rewrites
  flows    a flow's legs across the points (by the links) and its hops matched
  clocks   clock offsets (NTP-style min one-way delay), when each point was listening
  findings per flow: drop / inject / rewrite / reset / gap, the legs as the verdict shows
  summary  a flow's one-line summary, from its findings' fields
  engine   the stages in order: read, link, flows, match, clocks, findings, verdict
  dgram    UDP / ICMP / ESP datagrams of a capture as columns (incl. the header an ICMP
           error quotes), grouped into flows per point
  udp      datagram flows across points: linked by tuple or payload hash, matched one
           datagram at a time (drop / inject / rewrite / gap)
  icmp     ICMP errors attached to the flow they quote (NAT-aware), path-MTU black holes
  tunnel   encrypted tunnel endpoints (ESP, WireGuard/OpenVPN-like UDP): inner <-> outer
           by timing and size on one host's two points

`_fastwalk` compiles a small optional C helper (record walk + header parse, hash join,
payload compare) with the system C compiler into ~/.cache/hopcap on first use; without a
compiler, or with HOPCAP_NO_CC=1, the numpy paths give identical results, about 4x slower.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hopcap.correlate.args import read_points_from_args
    from hopcap.correlate.engine import correlate
    from hopcap.correlate.reader import PacketTable, read_capture

__all__ = ["PacketTable", "correlate", "read_capture", "read_points_from_args"]

# the API's names are imported when first asked for (PEP 562), not by importing the
# package: the bundle's writer imports `_fastwalk` from here and has no use for the engine
# (~55 ms of imports for `hopcap report`, `hopcap import`)
_WHERE = {
    "read_points_from_args": "args",
    "correlate": "engine",
    "PacketTable": "reader",
    "read_capture": "reader",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{where}"), name)
