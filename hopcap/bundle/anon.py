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
* In `merged.pcapng` and in the copies under `pcaps/`, the packets' headers are found by
  the decoder the correlation uses (hopcap.capfile.layers: every link type and tunnel it
  reads). IP addresses in every IPv4/IPv6 header (outer and tunnelled; the header quoted
  inside ICMP errors) and MACs (Ethernet headers, also inside gretap/VXLAN/GENEVE, a
  cooked capture's link-layer address) are rewritten, IPv6 extension headers are zeroed
  past their next-header and length bytes, GENEVE options past their class, type and
  length (Google Cloud's carry addresses), and every packet is truncated after its
  innermost transport header (TCP header with options, UDP header, ICMP header plus the
  quoted header): no payload survives. A packet with no IP header keeps only its link
  header (nothing at all on a link type the decoder does not know). The original length
  stays in the packet record, so byte counts still add up. IP and TCP checksums are not
  recomputed (captures on offloading hosts have wrong checksums anyway; Wireshark does
  not check them by default).
* Host names from the inventory, interface names, port numbers, sequence numbers and
  timings are kept: they are what the evidence is about.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.bundle.pcapio import one_packet
from hopcap.capfile import Layers, Records, buffer_u8
from hopcap.capfile.layers import LEVELS, be16, be32

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)")
_V6_RE = re.compile(
    r"(?<![0-9A-Za-z:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z:]|\.\d)"
)
_MAC_RE = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")
_KEEP_MACS = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}
_MAYBE = re.compile(r"[\d:]")  # every address and MAC the patterns find has one of these


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
        self._texts: set[str] = set()  # the strings collected from (a verdict repeats many)
        self._mapped: dict[str, str] = {}  # `text` of each string mapped so far
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
        if text in self._texts:
            return
        self._texts.add(text)
        if _MAYBE.search(text) is None:
            return  # no digit, no colon: no address, no MAC
        self._ips.update(a for a in find_addresses(text) if not _keep(a))
        self._macs.update(m for m in find_macs(text) if m not in _KEEP_MACS)

    def add_obj(self, obj: Any) -> None:
        for s in _strings(obj):
            self.add_text(s)

    def add_packet(self, linktype: int, data: bytes) -> None:
        self.add_packets(*one_packet(linktype, data))

    def add_packets(self, buf: Any, rec: Records, lay: Layers) -> None:
        """Collect the addresses and MACs of a decoded chunk of packets (the kept ones)."""
        u8 = buffer_u8(buf)
        v4: list[npt.NDArray[np.int64]] = []
        v6: list[npt.NDArray[np.int64]] = []
        for o, width in _slots(u8, rec, lay, _keep_len(rec, lay)):
            if width == 4:
                v4.append(be32(u8, o))
            elif width == 16:
                v6 += [np.stack([be32(u8, o + i) for i in range(0, 16, 4)], axis=1)]
            else:
                v4.append((be32(u8, o) << 16) | be16(u8, o + 4) | (1 << 62))  # a MAC
        if v4:
            for x in npsets.unique(np.concatenate(v4)).tolist():
                if x >> 62:
                    self._raw_macs.add((x & ((1 << 48) - 1)).to_bytes(6, "big"))
                else:
                    self._raw_ips.add(x.to_bytes(4, "big"))
        if v6:
            for row in np.unique(np.concatenate(v6), axis=0).tolist():
                self._raw_ips.add(b"".join(w.to_bytes(4, "big") for w in row))

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
        got = self._mapped.get(text)
        if got is None:
            got = self._mapped[text] = self._text(text) if _MAYBE.search(text) else text
        return got

    def _text(self, text: str) -> str:

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
        return self.packets(*one_packet(linktype, data))[0]

    def packets(self, buf: Any, rec: Records, lay: Layers) -> list[bytes]:
        """Each packet of a decoded chunk with its addresses rewritten and its payload
        dropped (see the module's docstring)."""
        if not self._frozen:
            raise RuntimeError("Anonymiser.freeze() must be called before mapping")
        keep = _keep_len(rec, lay)
        out = [
            bytearray(buf[o : o + k]) for o, k in zip(rec.off.tolist(), keep.tolist(), strict=True)
        ]
        m = self._raw_map
        u8 = buffer_u8(buf)
        for o, width in _slots(u8, rec, lay, keep):
            rows = np.nonzero(o >= 0)[0]
            for r, at in zip(rows.tolist(), (o[rows] - rec.off[rows]).tolist(), strict=True):
                b = out[r]
                new = m.get(bytes(b[at : at + width]))
                if new is not None:
                    b[at : at + width] = new
        for r, l3, l4 in _ip_options(u8, rec, lay, keep):
            b = out[r]
            if b[l3] >> 4 == 4:  # IPv4 options (record route, timestamps carry addresses)
                b[l3 + 20 : l4] = bytes(len(b[l3 + 20 : l4]))
                continue
            p, stop = l3 + 40, min(l4, len(b))
            while p + 8 <= stop:  # each extension header: next header, length, its data
                n = (b[p + 1] + 1) * 8
                b[p + 2 : p + n] = bytes(len(b[p + 2 : p + n]))
                p += n
        for r, p, stop in _geneve_options(u8, rec, lay, keep):
            b = out[r]
            while p + 4 <= stop:  # each option: class, type, length; then its data
                n = (b[p + 3] & 0x1F) * 4
                b[p + 4 : min(p + 4 + n, stop)] = bytes(len(b[p + 4 : min(p + 4 + n, stop)]))
                p += 4 + n
        return [bytes(b) for b in out]


Slot = tuple[npt.NDArray[np.int64], int]


def _keep_len(rec: Records, lay: Layers) -> npt.NDArray[np.int64]:
    """How many bytes of each packet are kept: up to the end of its innermost transport
    header; a packet with no IP header its link header; an unknown link nothing."""
    net = np.where(lay.trace.net >= 0, np.minimum(lay.trace.net, rec.off + rec.cap), rec.off)
    end = np.where(lay.hdr_end >= 0, lay.hdr_end, net)
    keep: npt.NDArray[np.int64] = end - rec.off
    return keep


def _slots(u8: Any, rec: Records, lay: Layers, keep: npt.NDArray[np.int64]) -> list[Slot]:
    """Where the addresses of each packet are, inside what is kept: (absolute offsets,
    -1 where none, width) for IPv4 (4), IPv6 (16) and MAC (6) addresses."""
    end = rec.off + keep
    tr = lay.trace
    out: list[Slot] = []

    def add(o: npt.NDArray[np.int64], width: int) -> None:
        o = np.where((o >= 0) & (o + width <= end), o, -1)
        if (o >= 0).any():
            out.append((o, width))

    for k in range(LEVELS):
        ip = tr.ips[:, k]
        if not (ip >= 0).any():
            continue
        v4 = (u8[np.clip(ip, 0, None)] >> 4) == 4
        for a, b in ((12, 8), (16, 24)):
            add(np.where((ip >= 0) & v4, ip + a, -1), 4)
            add(np.where((ip >= 0) & ~v4, ip + b, -1), 16)
        e = tr.eths[:, k]
        add(e, 6)
        add(np.where(e >= 0, e + 6, -1), 6)
    q = lay.quoted
    if (q >= 0).any():
        v4 = lay.et == 0x0800
        for a, b in ((12, 8), (16, 24)):
            add(np.where((q >= 0) & v4, q + a, -1), 4)
            add(np.where((q >= 0) & ~v4, q + b, -1), 16)
    add(tr.mac, 6)
    return out


def _ip_options(
    u8: Any, rec: Records, lay: Layers, keep: npt.NDArray[np.int64]
) -> list[tuple[int, int, int]]:
    """(row, IP header, where its options or extension headers end), record-relative, of
    every kept IP header with IPv4 options or IPv6 extension headers."""
    tr = lay.trace
    got: list[tuple[int, int, int]] = []
    for k in range(LEVELS):
        ip = tr.ips[:, k]
        b0 = u8[np.clip(ip, 0, None)].astype(np.int64)
        v4 = (b0 >> 4) == 4
        end = np.where(v4, ip + (b0 & 15) * 4, tr.l4s[:, k])
        has = (ip >= 0) & (end > ip + np.where(v4, 20, 40)) & (ip - rec.off < keep)
        rows = np.nonzero(has)[0]
        base = rec.off[rows]
        got += zip(
            rows.tolist(), (ip[rows] - base).tolist(), (end[rows] - base).tolist(), strict=True
        )
    return got


def _geneve_options(
    u8: Any, rec: Records, lay: Layers, keep: npt.NDArray[np.int64]
) -> list[tuple[int, int, int]]:
    """(row, first option, end of the options), record-relative, of every kept GENEVE
    header with options (their data can hold addresses: Google Cloud's carry the VM's)."""
    tr = lay.trace
    got: list[tuple[int, int, int]] = []
    top = max(len(u8) - 2, 0)
    for k in range(LEVELS - 1):
        l4, inner = tr.l4s[:, k], tr.ips[:, k + 1]
        # a tunnel the decoder went through, over UDP port 6081 (IP-in-IP's inner header
        # is the outer's next header itself, and GRE's protocol field is never 6081)
        gn = (l4 >= 0) & (inner >= 0) & (inner != l4)
        gn &= be16(u8, np.clip(l4 + 2, 0, top)) == 6081
        opt = l4 + 16
        words = (u8[np.clip(l4 + 8, 0, top)] & 0x3F).astype(np.int64)
        end = np.minimum(opt + words * 4, rec.off + keep)
        rows = np.nonzero(gn & (end > opt))[0]
        base = rec.off[rows]
        got += zip(
            rows.tolist(), (opt[rows] - base).tolist(), (end[rows] - base).tolist(), strict=True
        )
    return got


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
