"""Anonymisation of what vendor points leave in a bundle besides their pcaps.

* A FortiGate point keeps its sniffer's own text (`pcaps/<host>.sniffer.txt`) for
  Fortinet's support. It holds every packet twice: a header line (`port1 in
  198.18.0.10.40001 -> 203.0.113.80.80: syn 123`) and a hex dump of the whole frame
  (addresses, MACs and payload). In an anonymised bundle the hex dumps are removed and the
  addresses of the header lines (also the `address.port` form) get the bundle's
  pseudonyms; the packets themselves are in the anonymised pcapng beside it.
* An F5 BIG-IP point's trailers (VIP names, peer addresses, RST causes, TLS secrets of the
  `tcpdump.sslprovider` provider) sit after the IP packet: the anonymised captures are cut
  after the transport header, so no trailer byte survives; its capture-information pseudo
  packet (tcpdump's command line, host name, version) is not IP and keeps its link
  header only. Nothing more to do here for it; `tests/bundle/test_vendor_anon.py` checks it.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from hopcap.bundle.anon import Anonymiser

VENDOR_TEXTS = ("*.sniffer.txt",)
NOTE = "# anonymised by hopcap: hex dumps removed, addresses pseudonymised\n"
_HEX_LINE = re.compile(r"^\s*0x[0-9A-Fa-f]{3,4}[\t :]")
# an address followed by a port, FortiOS and tcpdump style: 198.18.0.10.40001, 2001:db8::1.443
_ADDR_PORT = re.compile(
    r"(?<![\w:.])((?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})"
    r"\.(\d{1,5})(?![\w.]|:[0-9A-Fa-f])"
)


def vendor_texts(pcaps: Path) -> list[Path]:
    return sorted(p for pat in VENDOR_TEXTS for p in pcaps.glob(pat) if p.is_file())


def _read(path: Path) -> str:
    # as bytes: a terminal log's lone carriage returns are not line ends
    return path.read_bytes().decode("utf-8", "replace")


def collect_vendor_texts(anon: Anonymiser, pcaps: Path) -> None:
    """Every address of the vendor texts (before `anon.freeze()`), so that they get the
    same pseudonyms as in the packets and the verdict."""
    for p in vendor_texts(pcaps):
        text = _read(p)
        anon.add_text(text)
        for m in _ADDR_PORT.finditer(text):
            if _ip(m.group(1)) is not None:
                anon.add_text(m.group(1))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def anonymise_line(line: str, anon: Anonymiser) -> str:
    def sub(m: re.Match[str]) -> str:
        if _ip(m.group(1)) is None:
            return m.group(0)
        return f"{anon.text(m.group(1))}.{m.group(2)}"

    return anon.text(_ADDR_PORT.sub(sub, line))


def anonymise_vendor_texts(anon: Anonymiser, pcaps: Path) -> list[str]:
    """Rewrite the vendor texts under `pcaps` in place; their names."""
    done = []
    for p in vendor_texts(pcaps):
        lines = _read(p).splitlines(keepends=True)
        kept = [anonymise_line(x, anon) for x in lines if not _HEX_LINE.match(x)]
        p.write_text(NOTE + "".join(kept), encoding="utf-8")
        done.append(p.name)
    return done
