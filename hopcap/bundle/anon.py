"""Stable pseudonyms for IP and MAC addresses (used by `write_bundle(anonymise=True)`).

What anonymisation does to a bundle:

* Every IPv4 / IPv6 address in `verdict.json`, `manifest.json`, `report.md`,
  `report.html`, `facts/` and the packet comments is replaced by a pseudonym. The same
  address gets the same pseudonym everywhere in the bundle (text and packets), so flows
  stay followable. Pseudonyms come from the documentation ranges (192.0.2.0/24,
  198.51.100.0/24, 203.0.113.0/24, then 198.18.0.0/15; IPv6 2001:db8:ffff::/48), never
  reuse an address that occurs in the original data, and are assigned in sorted order of
  the original addresses (so the mapping is deterministic for the same input). The mapping
  itself is never written.
* Addresses that identify nothing are kept: unspecified (0.0.0.0, ::), loopback,
  the limited broadcast address, and IPv4 netmasks (255.x.x.x with contiguous ones).
* MAC addresses (aa:bb:cc:dd:ee:ff) are replaced by pseudonyms from 00:00:5e:00:53:xx
  (RFC 7042 documentation range) then 02:00:00:xx:xx:xx, in text and in Ethernet headers.
* In `merged.pcapng` and in the copies under `pcaps/`, IP addresses in IPv4/IPv6 headers
  (and the IPv4 header quoted inside ICMP errors) and MACs in Ethernet headers are
  rewritten, and every packet is truncated after its transport header (TCP header with
  options, UDP header, ICMP header plus the quoted header): no payload survives. The
  original length stays in the packet record, so byte counts still add up. IP and TCP
  checksums are not recomputed (captures on offloading hosts have wrong checksums anyway;
  Wireshark does not check them by default).
* Host names from the inventory, interface names, port numbers, sequence numbers and
  timings are kept: they are what the evidence is about.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from hopcap.bundle.pcapio import LINKTYPE_ETHERNET, l3_offset, parse_headers

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_V6_RE = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:]|\.\d)"
)
_MAC_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_KEEP_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}


def _keep(addr: IPAddr) -> bool:
    if addr.is_unspecified or addr.is_loopback:
        return True
    if isinstance(addr, ipaddress.IPv4Address):
        v = int(addr)
        if v == 0xFFFFFFFF:
            return True
        inv = (~v) & 0xFFFFFFFF
        if v >> 24 == 0xFF and (inv + 1) & inv == 0:  # netmask
            return True
    return False


def _parse_ip(text: str) -> IPAddr | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def find_addresses(text: str) -> Iterator[IPAddr]:
    for m in _V6_RE.finditer(text):
        a = _parse_ip(m.group(0))
        if a is not None:
            yield a
    for m in _V4_RE.finditer(text):
        a = _parse_ip(m.group(0))
        if a is not None:
            yield a


def find_macs(text: str) -> Iterator[str]:
    for m in _MAC_RE.finditer(text):
        yield m.group(0).lower()


def _v4_pool() -> Iterator[ipaddress.IPv4Address]:
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"):
        yield from ipaddress.IPv4Network(net).hosts()


def _v6_pool() -> Iterator[ipaddress.IPv6Address]:
    base = int(ipaddress.IPv6Address("2001:db8:ffff::"))
    i = 1
    while True:
        yield ipaddress.IPv6Address(base + i)
        i += 1


def _mac_pool() -> Iterator[str]:
    for i in range(256):
        yield f"00:00:5e:00:53:{i:02x}"
    i = 1
    while True:
        yield "02:00:00:" + ":".join(f"{(i >> s) & 0xFF:02x}" for s in (16, 8, 0))
        i += 1


class Anonymiser:
    """Collect every address first (`add_*`), then `freeze()`, then map text and packets."""

    def __init__(self) -> None:
        self._ips: set[IPAddr] = set()
        self._macs: set[str] = set()
        self._ip_map: dict[IPAddr, IPAddr] = {}
        self._mac_map: dict[str, str] = {}
        self._raw_map: dict[bytes, bytes] = {}
        self._raw_ips: set[bytes] = set()
        self._raw_macs: set[bytes] = set()
        self._frozen = False

    # ---------------------------------------------------------------- collection
    def add_text(self, text: str) -> None:
        self._ips.update(a for a in find_addresses(text) if not _keep(a))
        self._macs.update(m for m in find_macs(text) if m not in _KEEP_MACS)

    def add_obj(self, obj: Any) -> None:
        for s in _strings(obj):
            self.add_text(s)

    def add_packet(self, linktype: int, data: bytes) -> None:
        if linktype == LINKTYPE_ETHERNET and len(data) >= 12:
            self._raw_macs.add(data[0:6])
            self._raw_macs.add(data[6:12])
        loc = l3_offset(linktype, data)
        if loc is not None:
            off, ver = loc
            if ver == 4:
                self._raw_ips.add(data[off + 12 : off + 16])
                self._raw_ips.add(data[off + 16 : off + 20])
            else:
                self._raw_ips.add(data[off + 8 : off + 24])
                self._raw_ips.add(data[off + 24 : off + 40])

    def _absorb_raw(self) -> None:
        for raw in self._raw_ips:
            a = ipaddress.ip_address(raw)
            if not _keep(a):
                self._ips.add(a)
        for raw in self._raw_macs:
            m = ":".join(f"{b:02x}" for b in raw)
            if m not in _KEEP_MACS:
                self._macs.add(m)
        self._raw_ips.clear()
        self._raw_macs.clear()

    def freeze(self) -> None:
        self._absorb_raw()
        taken = set(self._ips)
        v4 = _v4_pool()
        v6 = _v6_pool()
        for a in sorted(self._ips, key=lambda x: (x.version, int(x))):
            pool: Iterator[Any] = v4 if a.version == 4 else v6
            for cand in pool:
                if cand not in taken:
                    self._ip_map[a] = cand
                    taken.add(cand)
                    break
        mtaken = set(self._macs)
        mp = _mac_pool()
        for m in sorted(self._macs):
            for cand in mp:
                if cand not in mtaken:
                    self._mac_map[m] = cand
                    mtaken.add(cand)
                    break
        self._raw_map = {a.packed: b.packed for a, b in self._ip_map.items()}
        self._raw_map.update(
            {
                bytes.fromhex(k.replace(":", "")): bytes.fromhex(v.replace(":", ""))
                for k, v in self._mac_map.items()
            }
        )
        self._frozen = True

    @property
    def originals(self) -> set[str]:
        return {str(a) for a in self._ips}

    @property
    def counts(self) -> dict[str, int]:
        return {"addresses": len(self._ip_map), "macs": len(self._mac_map)}

    # ---------------------------------------------------------------- mapping
    def text(self, text: str) -> str:
        if not self._frozen:
            raise RuntimeError("Anonymiser.freeze() must be called before mapping")

        def ip_sub(m: re.Match[str]) -> str:
            a = _parse_ip(m.group(0))
            if a is None:
                return m.group(0)
            b = self._ip_map.get(a)
            if b is None:
                if _keep(a):
                    return m.group(0)
                # not collected beforehand: still never leak it
                return "x.x.x.x" if a.version == 4 else "x:x::x"
            return str(b)

        def mac_sub(m: re.Match[str]) -> str:
            k = m.group(0).lower()
            if k in _KEEP_MACS:
                return m.group(0)
            return self._mac_map.get(k, "xx:xx:xx:xx:xx:xx")

        text = _MAC_RE.sub(mac_sub, text)
        text = _V6_RE.sub(ip_sub, text)
        return _V4_RE.sub(ip_sub, text)

    def obj(self, obj: Any) -> Any:
        """A deep copy of a JSON-like object with every string mapped (keys too)."""
        return _map_strings(obj, self.text)

    def packet(self, linktype: int, data: bytes) -> bytes:
        """Rewrite addresses and drop the payload of one packet."""
        fast = self._packet_ipv4_tcp(linktype, data)
        if fast is not None:
            return fast
        buf = bytearray(data)
        if linktype == LINKTYPE_ETHERNET and len(buf) >= 12:
            for a, b in ((0, 6), (6, 12)):
                new = self._raw_map.get(bytes(buf[a:b]))
                if new is not None:
                    buf[a:b] = new
        h = parse_headers(linktype, data)
        if h is None:
            loc = l3_offset(linktype, data)
            # not IP (ARP, LLDP, ...): keep only the link header
            return bytes(buf[: loc[0] if loc else min(len(buf), 16)])
        alen = 4 if h.version == 4 else 16
        s_off = h.l3 + (12 if h.version == 4 else 8)
        d_off = s_off + alen
        for off in (s_off, d_off):
            new = self._raw_map.get(bytes(buf[off : off + alen]))
            if new is not None:
                buf[off : off + alen] = new
        keep = h.l4 + h.l4_header_len
        if h.proto == 1 and len(buf) >= h.l4 + 8 and buf[h.l4] in (3, 4, 5, 11, 12):
            inner = h.l4 + 8
            if len(buf) >= inner + 20 and buf[inner] >> 4 == 4:
                ihl = (buf[inner] & 0x0F) * 4
                for off in (inner + 12, inner + 16):
                    new = self._raw_map.get(bytes(buf[off : off + 4]))
                    if new is not None:
                        buf[off : off + 4] = new
                keep = inner + ihl + 8
        elif h.proto == 58 and len(buf) >= h.l4 + 8 and buf[h.l4] < 128:
            inner = h.l4 + 8
            if len(buf) >= inner + 40:
                for off in (inner + 8, inner + 24):
                    new = self._raw_map.get(bytes(buf[off : off + 16]))
                    if new is not None:
                        buf[off : off + 16] = new
                keep = inner + 48
        if h.l4_header_len == 0 and h.proto not in (1, 58):
            keep = h.l4
        return bytes(buf[: min(keep, len(buf))])

    def _packet_ipv4_tcp(self, linktype: int, data: bytes) -> bytes | None:
        """The common case (IPv4, TCP, first fragment) without building a Headers object."""
        loc = l3_offset(linktype, data)
        if loc is None or loc[1] != 4:
            return None
        off = loc[0]
        if data[off + 9] != 6 or ((data[off + 6] & 0x1F) << 8) | data[off + 7]:
            return None
        l4 = off + (data[off] & 0x0F) * 4
        if len(data) < l4 + 13:
            return None
        keep = min(len(data), l4 + (data[l4 + 12] >> 4) * 4)
        m = self._raw_map
        if linktype == LINKTYPE_ETHERNET:
            d, s = data[0:6], data[6:12]
            link = m.get(d, d) + m.get(s, s) + data[12:off]
        else:
            link = data[:off]
        src, dst = data[off + 12 : off + 16], data[off + 16 : off + 20]
        return b"".join(
            (link, data[off : off + 12], m.get(src, src), m.get(dst, dst), data[off + 20 : keep])
        )


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str):
                yield k
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)


def _map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, dict):
        return {(fn(k) if isinstance(k, str) else k): _map_strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_map_strings(v, fn) for v in obj]
    return obj
