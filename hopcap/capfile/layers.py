"""The layered decoder: link layer -> tunnels -> IP -> transport, for a chunk of records.

Vectorised over records (numpy): per record, where its innermost IP header is, its
ethertype, the header after it and that header's protocol, where its data ends and which
tunnel it came out of; on request (`trace`) also every IP and Ethernet header on the way
(outer ones too), where the network layer starts, and where the innermost transport
header ends. The same rules, in the same order, as find_l3() in the C helper
(hopcap.correlate._fastwalk); a test compares both on every link type and tunnel.

Link types: Ethernet (1; 802.1Q/802.1ad/0x9100 tags up to 16 deep, PPPoE sessions, MPLS
label stacks), PPP (9) and PPP in HDLC framing (50), Cisco HDLC (104), Linux cooked v1
(113) and v2 (276), raw IP (101, 12, 14, 228, 229), BSD loopback (0, 108). IPv4 and IPv6
(past hop-by-hop/routing/destination-options headers). Tunnels (up to three levels): GRE
(also gretap), IP-in-IP, VXLAN, GENEVE. Reads past a record are harmless (indices are
clipped to the buffer and every value read is masked by the same bounds checks as in C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

LINK_ETHERNET = 1
LINK_SLL = 113
LINK_SLL2 = 276
LINK_RAW = (101, 12, 14)
LINK_IPV4 = 228
LINK_IPV6 = 229
LINK_NULL = 0
LINK_LOOP = 108
LINK_PPP = 9
LINK_PPP_HDLC = 50
LINK_CHDLC = 104
LINK_NAMES = {
    0: "BSD loopback", 1: "Ethernet", 9: "PPP", 12: "raw IP", 14: "raw IP", 50: "PPP in HDLC",
    101: "raw IP", 104: "Cisco HDLC", 105: "IEEE 802.11", 108: "OpenBSD loopback",
    113: "Linux cooked", 119: "802.11 Prism", 127: "802.11 radiotap", 195: "IEEE 802.15.4",
    228: "raw IPv4", 229: "raw IPv6", 239: "Linux NFLOG", 276: "Linux cooked v2",
}  # fmt: skip
# IPv6 extension headers followed to the transport header (hop-by-hop, routing, fragment,
# AH, destination options); past a fragment header whose offset is not 0 there is none
IPV6_EXTS = 4
SUPPORTED_LINKS = {LINK_ETHERNET, LINK_SLL, LINK_SLL2, LINK_IPV4, LINK_IPV6, LINK_NULL, LINK_LOOP,
                   LINK_PPP, LINK_PPP_HDLC, LINK_CHDLC, *LINK_RAW}  # fmt: skip

# the `tun` code: 0, or kind | 16 (the tunnel has an id: GRE key, VNI) | id << 8
TUNNEL_KINDS = {1: "gre", 2: "ipip", 3: "ipip 6in4", 4: "ipip 4in6", 5: "ipip 6in6",
                6: "vxlan", 7: "geneve", 8: "erspan"}  # fmt: skip
LEVELS = 4  # the outer IP header and up to three tunnels inside it


def link_name(link: int) -> str:
    """`9 (PPP)`: a link type as a message names it."""
    name = LINK_NAMES.get(link)
    return f"{link} ({name})" if name else str(link)


def tunnel_str(code: int) -> str:
    """A `tun` value as a leg detail: `vxlan vni 42`, `gre key 7`, `erspan session 3`,
    `ipip`."""
    kind = TUNNEL_KINDS.get(code & 15, "tunnel")
    if not code & 16:
        return kind
    word = {"gre": "key", "erspan": "session"}.get(kind, "vni")
    return f"{kind} {word} {code >> 8}"


def be16(u8: U8, o: I64) -> I64:
    return (u8[o].astype(np.int64) << 8) | u8[o + 1]


def be32(u8: U8, o: I64) -> I64:
    return (
        (u8[o].astype(np.int64) << 24)
        | (u8[o + 1].astype(np.int64) << 16)
        | (u8[o + 2].astype(np.int64) << 8)
        | u8[o + 3]
    )


def be64(u8: U8, o: I64) -> npt.NDArray[np.uint64]:
    hi = be32(u8, o).astype(np.uint64)
    lo = be32(u8, o + 4).astype(np.uint64)
    return (hi << np.uint64(32)) | lo


_VLAN = (0x8100, 0x88A8, 0x9100)
_TUNNEL_PROTOS = (4, 41, 47, 17)


def _nib_et(b: I64) -> I64:
    v = b >> 4
    return np.where(v == 4, 0x0800, np.where(v == 6, 0x86DD, 0))


def _ppp_et(p: I64) -> I64:
    return np.select(
        [p == 0x21, p == 0x57, (p == 0x281) | (p == 0x283)], [0x0800, 0x86DD, 0x8847], 0
    )


@dataclass
class Trace:
    """Every header on the way to the innermost packet (absolute offsets, -1: none)."""

    net: I64  # where the network layer starts (past link header, tags, PPPoE, MPLS)
    ips: I64  # (n, LEVELS): each IP header, outermost first
    l4s: I64  # (n, LEVELS): the header after each of them (-1: a later fragment)
    eths: I64  # (n, LEVELS): the link's Ethernet header, then each tunnel's inner one
    mac: I64  # a cooked capture's 6-byte link-layer address (-1: none)


class L3:
    """Vectorised header walk over the bytes `u8` (records end at `end`)."""

    def __init__(self, u8: U8) -> None:
        self.u8 = u8
        self.top = max(u8.shape[0] - 8, 0)

    def b(self, o: I64) -> I64:
        return self.u8[np.clip(o, 0, self.top)].astype(np.int64)

    def b16(self, o: I64) -> I64:
        return be16(self.u8, np.clip(o, 0, self.top))

    def b32(self, o: I64) -> I64:
        return be32(self.u8, np.clip(o, 0, self.top))

    def link_hdr(self, off: I64, end: I64, link: I64) -> tuple[I64, I64]:
        """(offset of the network layer or -1, its ethertype, 0 when -1) per record."""
        n = off.shape[0]
        pos = np.full(n, -1, np.int64)
        et = np.zeros(n, np.int64)
        hc = end - off

        def put(m: Mask, ok: Any, p: Any, e: Any) -> None:
            pos[m] = np.where(ok, p, -1)
            et[m] = np.where(ok, e, 0)

        for lk, hl, eto in ((1, 14, 12), (113, 16, 14), (276, 20, 0), (104, 4, 2)):
            m = link == lk
            if m.any():
                put(m, hc[m] >= hl, off[m] + hl, self.b16(off[m] + eto))
        m = np.isin(link, (*LINK_RAW, LINK_IPV4, LINK_IPV6))
        if m.any():
            put(m, hc[m] >= 1, off[m], _nib_et(self.b(off[m])))
        m = (link == LINK_NULL) | (link == LINK_LOOP)
        if m.any():
            o = off[m]
            b0, b3 = self.b(o), self.b(o + 3)
            fam = np.where(b0 != 0, b0, b3)
            e = np.where(fam == 2, 0x0800, np.where(np.isin(fam, (24, 28, 30)), 0x86DD, 0))
            put(m, hc[m] >= 4, o + 4, e)
        m = (link == LINK_PPP) | (link == LINK_PPP_HDLC)
        if m.any():
            o, h = off[m], hc[m]
            b0, b1 = self.b(o), self.b(o + 1)
            framed = (h >= 2) & (b0 == 0xFF) & (b1 == 0x03)
            cisco = (link[m] == LINK_PPP_HDLC) & ~framed & (h >= 4) & ((b0 == 0x0F) | (b0 == 0x8F))
            p = o + np.where(framed, 2, 0)
            bp = self.b(p)
            short = (bp & 1) == 1
            proto = np.where(short, bp, self.b16(p))
            ok = np.where(short, p + 1 <= o + h, p + 2 <= o + h)
            pe = np.where(short, p + 1, p + 2)
            put(m, cisco | ok, np.where(cisco, o + 4, pe),
                np.where(cisco, self.b16(o + 2), _ppp_et(proto)))  # fmt: skip
        return pos, et

    def l2_walk(self, pos: I64, et: I64, end: I64) -> tuple[I64, I64]:
        """VLAN tags (any depth), PPPoE session, then an MPLS label stack."""
        for _ in range(16):
            vlan = np.isin(et, _VLAN) & (pos + 4 <= end)
            pppoe = ~vlan & (et == 0x8864) & (pos + 8 <= end)
            if not (vlan.any() or pppoe.any()):
                break
            et = np.where(vlan, self.b16(pos + 2), np.where(pppoe, _ppp_et(self.b16(pos + 6)), et))
            pos = np.where(vlan, pos + 4, np.where(pppoe, pos + 8, pos))
        mpls = (et == 0x8847) | (et == 0x8848)
        if mpls.any():
            bos = np.zeros(pos.shape[0], bool)
            live = mpls.copy()
            for _ in range(8):
                live &= pos + 4 <= end
                if not live.any():
                    break
                b = live & ((self.b(pos + 2) & 1) == 1)
                pos = np.where(live, pos + 4, pos)
                bos |= b
                live &= ~b
            et = np.where(mpls, np.where(bos & (pos + 1 <= end), _nib_et(self.b(pos)), 0), et)
        return pos, et

    def ip_ok(self, l3: I64, et: I64, end: I64) -> Mask:
        b = self.b(l3)
        v4 = (et == 0x0800) & (l3 + 20 <= end) & ((b >> 4) == 4) & ((b & 15) >= 5)
        v6 = (et == 0x86DD) & (l3 + 40 <= end) & ((b >> 4) == 6)
        ok: Mask = (l3 >= 0) & (v4 | v6)
        return ok

    def ip_next(self, l3: I64, et: I64, end: I64) -> tuple[I64, I64]:
        """(offset of the header after IP, -1 for a later fragment; its protocol)."""
        v4 = et == 0x0800
        nh = self.b(l3 + 6)
        p = l3 + 40
        later6 = np.zeros(l3.shape[0], np.bool_)  # past an IPv6 fragment header, offset > 0
        for _ in range(IPV6_EXTS):
            ext = ~v4 & ~later6 & np.isin(nh, (0, 43, 44, 51, 60)) & (p + 8 <= end)
            if not ext.any():
                break
            frag6 = ext & (nh == 44)  # fixed 8 bytes; AH (51) counts 4-byte words
            later6 |= frag6 & ((self.b16(p + 2) & 0xFFF8) != 0)
            size = np.where(nh == 44, 8, np.where(nh == 51, (self.b(p + 1) + 2) * 4,
                                                  (self.b(p + 1) + 1) * 8))  # fmt: skip
            nh = np.where(ext, self.b(p), nh)
            p = np.where(ext, p + size, p)
        frag = (self.b16(l3 + 6) & 0x1FFF) != 0
        l4 = np.where(v4, np.where(frag, -1, l3 + (self.b(l3) & 15) * 4), np.where(later6, -1, p))
        return np.where(l3 >= 0, l4, -1), np.where(v4, self.b(l3 + 9), nh)

    def decap(self, l4: I64, proto: I64, oet: I64, end: I64) -> tuple[Mask, I64, I64, I64, I64]:
        """A tunnel header at l4: (decapsulated, inner network offset, its ethertype,
        the `tun` code, the inner Ethernet header's offset or -1)."""
        k = l4.shape[0]
        pos = np.full(k, -1, np.int64)
        et = np.zeros(k, np.int64)
        tun = np.zeros(k, np.int64)
        ipip = (proto == 4) | (proto == 41)
        pos[ipip] = l4[ipip]
        et[ipip] = np.where(proto[ipip] == 4, 0x0800, 0x86DD)
        tun[ipip] = np.where(oet[ipip] == 0x0800, 2, 4) + (proto[ipip] == 41)
        # GRE version 0, no routing: [checksum] [key] [sequence]
        fl, pt = self.b16(l4), self.b16(l4 + 2)
        gre = (proto == 47) & (l4 + 4 <= end) & ((fl & 0x4007) == 0)
        p = l4 + 4 + np.where(fl & 0x8000, 4, 0)
        key = (fl & 0x2000) != 0
        gre &= ~key | (p + 4 <= end)
        t_gre = np.where(key, 1 | 16 | (self.b32(p) << 8), 1)
        p_gre = p + np.where(key, 4, 0) + np.where(fl & 0x1000, 4, 0)
        # ERSPAN (a switch's remote mirror port) over GRE, an Ethernet frame after its
        # header: type I (0x88BE, no header), II (0x88BE with a GRE sequence number: 8
        # bytes), III (0x22EB: 12 bytes, 8 more with its O flag); the session in the code
        ers = gre & ((pt == 0x88BE) | (pt == 0x22EB))
        if ers.any():
            n_ers = np.where(pt == 0x22EB, 12, np.where((fl & 0x1000) != 0, 8, 0))
            gre &= ~ers | (p_gre + n_ers <= end)
            sess = self.b16(p_gre + 2) & 0x3FF
            t_gre = np.where(ers, np.where(n_ers > 0, 8 | 16 | (sess << 8), 8), t_gre)
            n_ers += np.where((pt == 0x22EB) & ((self.b(p_gre + 11) & 1) != 0), 8, 0)
            p_gre = np.where(ers, p_gre + n_ers, p_gre)
            pt = np.where(ers, 0x6558, pt)
        # VXLAN (4789, 8472) and GENEVE (6081) over UDP
        udp = (proto == 17) & (l4 + 16 <= end)
        dport, b8 = self.b16(l4 + 2), self.b(l4 + 8)
        vni = self.b32(l4 + 12) >> 8
        # their reserved bits zero: a datagram a NAT sent from port 4789 or 6081 (one of
        # its 64 k ports), answered to it, is no tunnel (VXLAN: flags I and at most G, the
        # last byte; GENEVE: version 0, the 6 bits after O and C, the last byte, and a
        # protocol type of Ethernet or IP)
        last, b9, gpt = self.b(l4 + 15), self.b(l4 + 9), self.b16(l4 + 10)
        vx = (udp & ((dport == 4789) | (dport == 8472)) & ((b8 & 0x7F) == 8) & (last == 0)
              & (l4 + 30 <= end))  # fmt: skip
        gn = (udp & (dport == 6081) & ((b8 >> 6) == 0) & ((b9 & 0x3F) == 0) & (last == 0)
              & ((gpt == 0x6558) | (gpt == 0x0800) | (gpt == 0x86DD)))  # fmt: skip
        p_gn = l4 + 16 + (b8 & 0x3F) * 4
        start = np.where(gre, p_gre, np.where(vx, l4 + 16, p_gn))
        ptype = np.where(gre, pt, np.where(vx, 0x6558, gpt))
        teb = ptype == 0x6558  # an Ethernet frame inside (gretap, VXLAN, GENEVE)
        m = (gre | vx | gn) & (~teb | (start + 14 <= end))
        eth = np.where(m & teb, start, -1)
        ptype = np.where(teb, self.b16(start + 12), ptype)
        start = np.where(teb, start + 14, start)
        if m.any():
            pos[m], et[m] = self.l2_walk(start[m], ptype[m], end[m])
        vni_code = 16 | (vni << 8)
        tun = np.where(gre, t_gre, np.where(vx, 6 | vni_code, np.where(gn, 7 | vni_code, tun)))
        return ipip | m, pos, et, tun, eth

    def find(
        self, off: I64, end: I64, cap_end: I64, link: I64, trace: Trace | None = None
    ) -> tuple[I64, I64, I64, I64, I64, I64]:
        """Per record: (innermost IP header offset or -1, its ethertype, offset of the
        header after it or -1, that header's protocol, where the data ends: `cap_end` cut
        at every outer IP packet's end, the `tun` code). `trace` (see `new_trace`) is
        filled with every header on the way."""
        pos, et = self.link_hdr(off, end, link)
        pos, et = self.l2_walk(pos, et, end)
        ok = self.ip_ok(pos, et, end)
        l3 = np.where(ok, pos, -1)
        l4, proto = self.ip_next(l3, et, end)
        if trace is not None:
            trace.net[:] = pos
            trace.ips[:, 0] = l3
            trace.l4s[:, 0] = l4
            eth = (link == LINK_ETHERNET) & (end - off >= 14)
            trace.eths[:, 0] = np.where(eth, off, -1)
            # a cooked capture's link-layer address: (SLL) halen at 4-5, address at 6;
            # (SLL2) halen at 11, address at 12
            hc = end - off
            six = np.where(link == LINK_SLL, self.b16(off + 4), self.b(off + 11)) == 6
            at = np.where(link == LINK_SLL, 6, 12)
            mac = ((link == LINK_SLL) | (link == LINK_SLL2)) & six & (hc >= at + 6)
            trace.mac[:] = np.where(mac, off + at, -1)
        lim = cap_end.copy()
        tun = np.zeros(off.shape[0], np.int64)
        rows = np.nonzero((l4 >= 0) & np.isin(proto, _TUNNEL_PROTOS))[0]
        for level in range(1, LEVELS):
            if not rows.shape[0]:
                break
            got, ipos, iet, t, eth = self.decap(l4[rows], proto[rows], et[rows], end[rows])
            got &= self.ip_ok(ipos, iet, end[rows])
            g = rows[got]
            o3, oet = l3[g], et[g]
            ln = np.where(oet == 0x0800, self.b16(o3 + 2), self.b16(o3 + 4))
            iend = np.where(ln == 0, cap_end[g], o3 + ln + np.where(oet == 0x0800, 0, 40))
            lim[g] = np.minimum(lim[g], iend)
            tun[g] = np.where(tun[g] == 0, t[got], tun[g])
            l3[g], et[g] = ipos[got], iet[got]
            l4[g], proto[g] = self.ip_next(l3[g], et[g], end[g])
            if trace is not None:
                trace.ips[g, level] = l3[g]
                trace.l4s[g, level] = l4[g]
                trace.eths[g, level] = eth[got]
            rows = g[(l4[g] >= 0) & np.isin(proto[g], _TUNNEL_PROTOS)]
        return l3, et, l4, proto, lim, tun

    def transport_end(self, l3: I64, et: I64, l4: I64, proto: I64, end: I64) -> tuple[I64, I64]:
        """(where the innermost packet's headers end: the transport header (TCP with its
        options, UDP, ICMP and the IP header an ICMP error quotes with 8 bytes after it),
        else the IP header (a later fragment, another protocol); the quoted IP header of
        an ICMP error or -1). Records with no IP header: -1, -1."""
        v4 = et == 0x0800
        ihl_end = np.where(v4, l3 + (self.b(l3) & 15) * 4, l3 + 40)
        hdr = np.where(l4 >= 0, l4, ihl_end)
        tcp = (l4 >= 0) & (proto == 6)
        hdr = np.where(tcp, np.where(l4 + 13 <= end, l4 + (self.b(l4 + 12) >> 4) * 4, l4), hdr)
        hdr = np.where((l4 >= 0) & (proto == 17), l4 + 8, hdr)
        icmp = (l4 >= 0) & (proto == np.where(v4, 1, 58))
        hdr = np.where(icmp, l4 + 8, hdr)
        itype, inner = self.b(l4), l4 + 8
        q4 = icmp & v4 & np.isin(itype, (3, 4, 5, 11, 12)) & (inner + 20 <= end)
        q4 &= (self.b(inner) >> 4) == 4
        q6 = icmp & ~v4 & (itype < 128) & (inner + 40 <= end)
        hdr = np.where(q4, inner + (self.b(inner) & 15) * 4 + 8, np.where(q6, inner + 48, hdr))
        quoted = np.where(q4 | q6, inner, -1)
        return np.where(l3 >= 0, hdr, -1), np.where(l3 >= 0, quoted, -1)


def new_trace(n: int) -> Trace:
    full = np.full((n, LEVELS), -1, np.int64)
    return Trace(np.full(n, -1, np.int64), full, full.copy(), full.copy(), np.full(n, -1, np.int64))


@dataclass
class Layers:
    """A chunk of records decoded (absolute offsets into the buffer; -1: none)."""

    l3: I64  # the innermost IP header
    et: I64  # its ethertype (0x0800, 0x86DD)
    l4: I64  # the header after it (-1: a later fragment)
    proto: I64  # that header's protocol
    lim: I64  # where the record's data ends (cut at every outer IP packet's end)
    tun: I64  # the outermost tunnel's code (TUNNEL_KINDS)
    hdr_end: I64  # where the innermost packet's headers end (`L3.transport_end`)
    quoted: I64  # the IP header quoted by an ICMP error
    trace: Trace


def buffer_u8(buf: Any) -> U8:
    """The mapped file as bytes numpy can index (never copied)."""
    if len(buf) == 0:
        return np.zeros(8, np.uint8)
    u8: U8 = np.frombuffer(buf, np.uint8)
    return u8


def decode(u8: U8, off: I64, cap: I64, link: I64) -> Layers:
    """Decode records at `off` (captured lengths `cap`, link types `link`) of `u8`."""
    dec = L3(u8)
    end = off + cap
    tr = new_trace(off.shape[0])
    l3, et, l4, proto, lim, tun = dec.find(off, end, end, link, tr)
    hdr_end, quoted = dec.transport_end(l3, et, l4, proto, end)
    return Layers(l3, et, l4, proto, lim, tun, np.minimum(hdr_end, end), quoted, tr)
