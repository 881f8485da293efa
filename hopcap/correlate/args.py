"""`NAME=PCAP` command-line arguments -> PointInput."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hopcap.errors import CorrelationError
from hopcap.model import PointInput

# HOST or HOST:INTERFACE; an F5 BIG-IP interface may carry its noise suffix (lb:0.0:nnnp)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-@/]+(:n{1,3}p?)?)?$")


def read_points_from_args(args: Sequence[str]) -> list[PointInput]:
    """Turn `["client=c.pcap", "fw:eth0=a.pcap", ...]` into PointInputs in the given order."""
    if not args:
        raise CorrelationError(
            "no capture points given",
            hint="pass NAME=PCAP arguments in path order, e.g. fw:eth0=a.pcap",
        )
    out: list[PointInput] = []
    seen: set[str] = set()
    for arg in args:
        name, sep, path = arg.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise CorrelationError(
                f"bad capture point {arg!r}: expected NAME=PCAP", hint="e.g. fw:eth1=fw_eth1.pcap"
            )
        if not _NAME.match(name):
            raise CorrelationError(
                f"bad capture point name {name!r}: use HOST or HOST:INTERFACE "
                "(letters, digits, '.', '_', '-')"
            )
        if name in seen:
            raise CorrelationError(f"capture point {name!r} is given twice")
        seen.add(name)
        p = Path(path).expanduser()
        if not p.exists():
            raise CorrelationError(f"{name}: capture file {path} does not exist")
        if not p.is_file():
            raise CorrelationError(f"{name}: {path} is not a file")
        host, iface = PointInput.parse_name(name)
        out.append(PointInput(name=name, pcap=p, host=host, interface=iface))
    return out
