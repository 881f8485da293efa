"""Capture files, read one way by every part of hopcap.

* `walk`: the record walk of classic pcap and pcapng (where each packet record is, its
  timestamp, lengths, link type), in chunks; damage is read up to and warned about.
* `layers`: the layered decoder, link layer -> tunnels -> IP -> transport, vectorised.
* `ring`: joining a capture's ring files.

Used by the columnar reader (hopcap.correlate.reader, whose C helper mirrors both the walk
and the decoder), the bundle's merge and anonymiser (hopcap.bundle) and the orchestrator's
ring pull. Neither correlate nor bundle owns it; it imports neither.
"""

from hopcap.capfile.layers import (
    L3,
    LINK_NAMES,
    SUPPORTED_LINKS,
    TUNNEL_KINDS,
    Layers,
    Trace,
    buffer_u8,
    decode,
    link_name,
    tunnel_str,
)
from hopcap.capfile.ring import Joined, concat_pcaps, join_captures
from hopcap.capfile.walk import (
    MAX_RECORD,
    PCAP_MAGICS,
    PCAPNG_SHB,
    CaptureFileError,
    Records,
    RecordWalk,
    open_capture,
    read_head,
    walk_records,
)

__all__ = [
    "L3",
    "LINK_NAMES",
    "MAX_RECORD",
    "PCAPNG_SHB",
    "PCAP_MAGICS",
    "SUPPORTED_LINKS",
    "TUNNEL_KINDS",
    "CaptureFileError",
    "Joined",
    "Layers",
    "RecordWalk",
    "Records",
    "Trace",
    "buffer_u8",
    "concat_pcaps",
    "decode",
    "join_captures",
    "link_name",
    "open_capture",
    "read_head",
    "tunnel_str",
    "walk_records",
]
