"""Pure, synchronous correlation of captures taken at several points of one path.

Public API (used by cli.py; never imports orchestrator or asyncssh):

    correlate(points: Sequence[PointInput], *, conntrack=None) -> Verdict
    read_points_from_args(["NAME=PCAP", ...]) -> list[PointInput]
    read_capture(path) -> PacketTable   (columnar TCP packets of one capture)
"""

from hopcap.correlate.args import read_points_from_args
from hopcap.correlate.engine import correlate
from hopcap.correlate.reader import PacketTable, read_capture

__all__ = ["PacketTable", "correlate", "read_capture", "read_points_from_args"]
