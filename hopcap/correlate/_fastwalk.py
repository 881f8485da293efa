"""Optional compiled helpers: the classic-pcap record walk and payload comparison.

A Python loop over record headers tops out near 1 M records/s, which alone would use the
whole throughput budget. When a C compiler is present, a 40-line helper is compiled once
into the user's cache directory and loaded with ctypes; without one (or with
HOPCAP_NO_CC=1) the pure Python/numpy paths are used and give identical results.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap.capfile.walk import mapped_in

I64 = npt.NDArray[np.int64]

_SRC = r"""
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
static inline uint32_t rd32(const uint8_t *p, int be) {
    return be ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
              : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}
/* The record walk is a chain of dependent loads (each header gives the next one's
   place) that touches a line or two of every ~500 bytes: the hardware prefetcher does not
   follow it, and every header waits for memory. Prefetching every line of the file a
   little ahead of the walk makes the access dense and sequential: the prefetcher streams
   it, and the walk runs at memory bandwidth (4x faster on a 390 MB capture). Returns
   where the prefetch got to. */
#define STREAM_AHEAD 4096
static inline long stream_ahead(const uint8_t *buf, long size, long pf, long upto) {
    long lim = upto + STREAM_AHEAD;
    if (lim > size) lim = size;
    for (; pf < lim; pf += 64) __builtin_prefetch(buf + pf);
    return pf;
}
long hopcap_walk_pcap(const uint8_t *buf, long size, long pos, int be, long mult, long maxrec,
                      long maxn, int64_t *offs, int64_t *caps, int64_t *ts, int64_t *origs,
                      long *pos_out, int *reason) {
    long n = 0, pf = pos & ~63L;
    *reason = 0;
    while (pos < size) {
        if (n >= maxn) { *reason = 3; break; }
        if (pos + 16 > size) { *reason = 1; break; }
        uint32_t sec = rd32(buf + pos, be), frac = rd32(buf + pos + 4, be);
        uint32_t cap = rd32(buf + pos + 8, be), orig = rd32(buf + pos + 12, be);
        if (cap > maxrec || (cap > orig && orig != 0) || (mult == 1000 && frac >= 1000000)) {
            *reason = 2; break;
        }
        if (pos + 16 + (long)cap > size) { *reason = 1; break; }
        pf = stream_ahead(buf, size, pf, pos + 16 + (long)cap);
        offs[n] = pos + 16;
        caps[n] = cap;
        origs[n] = orig;
        ts[n] = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
        n++;
        pos += 16 + cap;
    }
    *pos_out = pos;
    return n;
}
void hopcap_gather(const uint8_t *buf, const int64_t *offs, const int64_t *caps, long n,
                   long h, uint8_t *out) {
    for (long i = 0; i < n; i++) {
        long c = caps[i] < h ? caps[i] : h;
        memcpy(out + i * h, buf + offs[i], (size_t)c);
        if (c < h) memset(out + i * h + c, 0, (size_t)(h - c));
    }
}
static inline uint32_t b16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t b32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t b64(const uint8_t *p) { return (uint64_t)b32(p) << 32 | b32(p + 4); }
/* ---- link layer and network layer: where the (innermost) IP header is ----
   Mirrored exactly by reader._find_l3 (numpy); a test compares the two. */
static inline uint32_t nib_et(uint32_t b) { b >>= 4; return b == 4 ? 0x0800 : b == 6 ? 0x86DD : 0; }
static inline uint32_t ppp_et(uint32_t p) {
    return p == 0x21 ? 0x0800 : p == 0x57 ? 0x86DD : (p == 0x281 || p == 0x283) ? 0x8847 : 0;
}
/* the link-layer header of a record: where the network layer starts, its ethertype */
static int link_hdr(const uint8_t *r, long hc, long link, long *pos, uint32_t *et) {
    switch (link) {
    case 1: if (hc < 14) return 0; *et = b16(r + 12); *pos = 14; return 1;
    case 113: if (hc < 16) return 0; *et = b16(r + 14); *pos = 16; return 1;
    case 276: if (hc < 20) return 0; *et = b16(r); *pos = 20; return 1;
    case 101: case 12: case 14: case 228: case 229:
        if (hc < 1) return 0; *et = nib_et(r[0]); *pos = 0; return 1;
    case 0: case 108: {  /* AF value in either byte order */
        if (hc < 4) return 0;
        uint32_t fam = r[0] ? r[0] : r[3];
        *et = fam == 2 ? 0x0800 : (fam == 24 || fam == 28 || fam == 30) ? 0x86DD : 0;
        *pos = 4; return 1;
    }
    case 104: if (hc < 4) return 0; *et = b16(r + 2); *pos = 4; return 1;  /* Cisco HDLC */
    case 9: case 50: {  /* PPP: [0xFF 0x03] protocol (1 byte if compressed); 50: or Cisco */
        long p = 0;
        if (hc >= 2 && r[0] == 0xFF && r[1] == 0x03) p = 2;
        else if (link == 50 && hc >= 4 && (r[0] == 0x0F || r[0] == 0x8F)) {
            *et = b16(r + 2); *pos = 4; return 1;
        }
        if (p + 1 > hc) return 0;
        if (r[p] & 1) { *et = ppp_et(r[p]); *pos = p + 1; return 1; }
        if (p + 2 > hc) return 0;
        *et = ppp_et(b16(r + p)); *pos = p + 2; return 1;
    }
    }
    return 0;
}
/* VLAN tags (any depth), PPPoE session, then an MPLS label stack: the ethertype reached */
static uint32_t l2_walk(const uint8_t *r, long hc, long *pos, uint32_t et) {
    long p = *pos;
    for (int k = 0; k < 16; k++) {
        if ((et == 0x8100 || et == 0x88A8 || et == 0x9100) && p + 4 <= hc) {
            et = b16(r + p + 2); p += 4;
        } else if (et == 0x8864 && p + 8 <= hc) {
            et = ppp_et(b16(r + p + 6)); p += 8;
        } else break;
    }
    if (et == 0x8847 || et == 0x8848) {
        int bos = 0;
        for (int k = 0; k < 8 && !bos; k++) {
            if (p + 4 > hc) break;
            bos = r[p + 2] & 1; p += 4;
        }
        et = bos && p + 1 <= hc ? nib_et(r[p]) : 0;
    }
    *pos = p;
    return et;
}
static inline int ip_ok(const uint8_t *r, long hc, long l3, uint32_t et) {
    if (et == 0x0800) return l3 + 20 <= hc && (r[l3] >> 4) == 4 && (r[l3] & 15) >= 5;
    if (et == 0x86DD) return l3 + 40 <= hc && (r[l3] >> 4) == 6;
    return 0;
}
/* the header after IP (past IPv6 extension headers): offset, or -1 for a later fragment */
#define HOT static inline __attribute__((always_inline))
HOT long ip_next(const uint8_t *r, long hc, long l3, uint32_t et, uint32_t *proto) {
    if (et == 0x0800) {
        *proto = r[l3 + 9];
        return (b16(r + l3 + 6) & 0x1FFF) ? -1 : l3 + (r[l3] & 15) * 4;
    }
    uint32_t nh = r[l3 + 6];
    long p = l3 + 40;
    int later = 0;  /* past a fragment header whose offset is not 0: no header follows */
    for (int k = 0; k < 4 && !later; k++)  /* 4: layers.IPV6_EXTS */
        if ((nh == 0 || nh == 43 || nh == 44 || nh == 51 || nh == 60) && p + 8 <= hc) {
            uint32_t nxt = r[p];
            if (nh == 44) { later = (b16(r + p + 2) & 0xFFF8) != 0; p += 8; }
            else if (nh == 51) p += ((long)r[p + 1] + 2) * 4;
            else p += ((long)r[p + 1] + 1) * 8;
            nh = nxt;
        }
    *proto = nh;
    return later ? -1 : p;
}
/* a tunnel header at l4: the inner network header (pos, et) and the tunnel's code
   (kind | 16 if it has an id | id << 8; kinds in reader.TUNNEL_KINDS) */
__attribute__((noinline))  /* the rare path: keeps find_l3 small enough to inline */
static int decap(const uint8_t *r, long hc, long l4, uint32_t proto, uint32_t oet, long *pos,
                 uint32_t *et, int64_t *tun) {
    if (proto == 4 || proto == 41) {
        *pos = l4; *et = proto == 4 ? 0x0800 : 0x86DD;
        *tun = oet == 0x0800 ? (proto == 4 ? 2 : 3) : (proto == 4 ? 4 : 5);
        return 1;
    }
    if (proto == 47) {  /* GRE version 0, no routing: [checksum] [key] [sequence] */
        if (l4 + 4 > hc) return 0;
        uint32_t fl = b16(r + l4), pt = b16(r + l4 + 2);
        if (fl & 0x4007) return 0;
        long p = l4 + 4 + ((fl & 0x8000) ? 4 : 0);
        *tun = 1;
        if (fl & 0x2000) {
            if (p + 4 > hc) return 0;
            *tun = 1 | 16 | ((int64_t)b32(r + p) << 8); p += 4;
        }
        if (fl & 0x1000) p += 4;
        if (pt == 0x88BE || pt == 0x22EB) {
            /* ERSPAN: type I (no header), II (8 bytes: GRE has a sequence number), III
               (12 bytes, 8 more with its O flag); an Ethernet frame follows */
            long n = pt == 0x22EB ? 12 : ((fl & 0x1000) ? 8 : 0);
            if (p + n > hc) return 0;
            *tun = n ? 8 | 16 | ((int64_t)(b16(r + p + 2) & 0x3FF) << 8) : 8;
            if (pt == 0x22EB && (r[p + 11] & 1)) n += 8;
            p += n; pt = 0x6558;
        }
        if (pt == 0x6558) {  /* transparent Ethernet bridging (gretap) */
            if (p + 14 > hc) return 0;
            pt = b16(r + p + 12); p += 14;
        }
        *et = l2_walk(r, hc, &p, pt); *pos = p;
        return 1;
    }
    if (proto == 17) {
        if (l4 + 16 > hc) return 0;
        uint32_t dport = b16(r + l4 + 2);
        int64_t vni = b32(r + l4 + 12) >> 8;
        long p;
        uint32_t pt;
        /* the header's reserved bits are zero (a datagram a NAT sent from port 4789 or
           6081, answered to it, is not taken for a tunnel; as layers.L3 does) */
        if (dport == 4789 || dport == 8472) {  /* VXLAN: flags with I, VNI, Ethernet */
            if ((r[l4 + 8] & 0x7F) != 0x08 || r[l4 + 15] || l4 + 30 > hc) return 0;
            pt = b16(r + l4 + 28); p = l4 + 30; *tun = 6 | 16 | (vni << 8);
        } else if (dport == 6081) {  /* GENEVE: version 0, options, protocol type */
            pt = b16(r + l4 + 10);
            if (r[l4 + 8] >> 6 || r[l4 + 9] & 0x3F || r[l4 + 15]
                || (pt != 0x6558 && pt != 0x0800 && pt != 0x86DD)) return 0;
            p = l4 + 16 + (r[l4 + 8] & 0x3F) * 4;
            *tun = 7 | 16 | (vni << 8);
            if (pt == 0x6558) {
                if (p + 14 > hc) return 0;
                pt = b16(r + p + 12); p += 14;
            }
        } else return 0;
        *et = l2_walk(r, hc, &p, pt); *pos = p;
        return 1;
    }
    return 0;
}
/* the innermost IP header of a record: its offset (or -1), ethertype, the header after
   it (l4 may be -1) and its protocol; lim: where the data ends (caplen, cut at the end
   of every outer IP packet: bytes after an IP total length are never payload) */
HOT long find_l3(const uint8_t *r, long hc, long cap, long link, uint32_t *et,
            long *l4, uint32_t *proto, long *lim, int64_t *tun) {
    long l3;
    *lim = cap; *tun = 0;
    if (!link_hdr(r, hc, link, &l3, et)) return -1;
    if (*et != 0x0800 && *et != 0x86DD) *et = l2_walk(r, hc, &l3, *et);
    if (!ip_ok(r, hc, l3, *et)) return -1;
    *l4 = ip_next(r, hc, l3, *et, proto);
    for (int depth = 0; depth < 3 && *l4 >= 0; depth++) {
        /* TCP (or anything but a tunnel) ends the walk: the common case, checked first */
        if (*proto == 6 || (*proto != 17 && *proto != 47 && *proto != 4 && *proto != 41)) break;
        long ipos;
        uint32_t iet;
        int64_t t;
        if (!decap(r, hc, *l4, *proto, *et, &ipos, &iet, &t) || !ip_ok(r, hc, ipos, iet)) break;
        long len = *et == 0x0800 ? b16(r + l3 + 2) : b16(r + l3 + 4);
        long iend = len == 0 ? cap : *et == 0x0800 ? l3 + len : l3 + 40 + len;
        if (iend < *lim) *lim = iend;
        if (*tun == 0) *tun = t;
        l3 = ipos; *et = iet;
        *l4 = ip_next(r, hc, l3, *et, proto);
    }
    return l3;
}
/* find_l3 over whole records (for the test that holds it to hopcap.capfile.layers):
   per record (innermost IP header, ethertype, next header, its protocol, data end, tun),
   offsets absolute, -1 (and 0) where there is none */
void hopcap_find(const uint8_t *buf, const int64_t *offs, const int64_t *caps,
                 const int64_t *links, long n, int64_t *out) {
    for (long i = 0; i < n; i++) {
        uint32_t et = 0, proto = 0;
        long l4 = -1, lim = caps[i];
        int64_t tun = 0, *o = out + 6 * i;
        long l3 = find_l3(buf + offs[i], caps[i], caps[i], links[i], &et, &l4, &proto, &lim, &tun);
        o[0] = l3 < 0 ? -1 : offs[i] + l3; o[1] = l3 < 0 ? 0 : et;
        o[2] = l3 < 0 || l4 < 0 ? -1 : offs[i] + l4; o[3] = l3 < 0 ? 0 : proto;
        o[4] = offs[i] + lim; o[5] = tun;
    }
}
/* The bundle's merge: a hash of each record's innermost TCP/UDP tuple, the same either way
   (hopcap.bundle.merge._tuple_hashes of pcapio.chunk_tuples' tuple: the sum of the ends'
   hashes), and whether it has one (ok[i]: 0 for anything else, and for a tuple whose
   addresses run past the record: no leg has such a tuple). */
static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static inline uint64_t end_hash(const uint8_t *a, long alen, uint32_t port) {
    uint64_t x = ((uint64_t)port << 32) | ((uint64_t)alen << 48);
    for (long j = 0; j < alen; j += 4) x = mix64(x ^ b32(a + j));
    return x;
}
void hopcap_tuple_hashes(const uint8_t *buf, const int64_t *offs, const int64_t *caps,
                         const int64_t *links, long n, uint64_t *out, uint8_t *ok) {
    for (long i = 0; i < n; i++) {
        uint32_t et = 0, proto = 0;
        long l4 = -1, lim = caps[i];
        int64_t tun = 0;
        const uint8_t *r = buf + offs[i];
        long l3 = find_l3(r, caps[i], caps[i], links[i], &et, &l4, &proto, &lim, &tun);
        long alen = et == 0x0800 ? 4 : 16, s = l3 + (alen == 4 ? 12 : 8);
        ok[i] = l3 >= 0 && l4 >= 0 && (proto == 6 || proto == 17) && l4 + 4 <= caps[i]
                && s + 2 * alen <= caps[i];
        out[i] = ok[i] ? end_hash(r + s, alen, b16(r + l4)) + end_hash(r + s + alen, alen,
                                                                      b16(r + l4 + 2))
                       : 0;
    }
}
/* Columns (each n long, int64): see PARSE_COLUMNS in _fastwalk.py */
/* returns 1: a TCP packet, columns written at row j; 2: a UDP/ICMP/ICMPv6/ESP datagram
   (not a later fragment), its IP and L4 header offsets in *o3, *o4 and where its data
   ends (find_l3's lim) in *oe; 0: anything else */
static int parse_one(const uint8_t *r, long cap, long link, long head, int64_t off,
                     int64_t *c, long n, long j, long *o3, long *o4, long *oe) {
    long hc = cap < head ? cap : head;
    uint32_t et, proto;
    long l4, lim;
    int64_t tun;
    long l3 = find_l3(r, hc, cap, link, &et, &l4, &proto, &lim, &tun);
    if (l3 < 0 || l4 < 0) return 0;
    if (proto != 6) {
        /* a datagram (innermost IP level, not a later fragment): where it ends is lim */
        if (proto == 17 || proto == 50 || proto == (et == 0x0800 ? 1u : 58u)) {
            /* a VXLAN/GENEVE datagram whose content is no IP packet (the overlay's ARP)
               is tunnel transport, not a flow of its own */
            long ip;
            uint32_t ie;
            int64_t t;
            if (proto == 17 && decap(r, hc, l4, proto, et, &ip, &ie, &t)) return 0;
            *o3 = l3; *o4 = l4; *oe = lim; return 2;
        }
        return 0;
    }
    int v4 = et == 0x0800;
    if (l4 + 20 > hc) return 0;
    long doff = (r[l4 + 12] >> 4) * 4;
    if (doff < 20) return 0;
    long ip_end;
    uint32_t tot = b16(r + l3 + 2), pl6 = b16(r + l3 + 4);
    if (v4) {
        c[0 * n + j] = 4;
        c[1 * n + j] = 0; c[2 * n + j] = b32(r + l3 + 12);
        c[3 * n + j] = 0; c[4 * n + j] = b32(r + l3 + 16);
        ip_end = tot ? l3 + tot : lim;
        c[11 * n + j] = b16(r + l3 + 4);
        c[12 * n + j] = r[l3 + 8];
        c[13 * n + j] = r[l3 + 1];
    } else {
        c[0 * n + j] = 6;
        c[1 * n + j] = (int64_t)b64(r + l3 + 8); c[2 * n + j] = (int64_t)b64(r + l3 + 16);
        c[3 * n + j] = (int64_t)b64(r + l3 + 24); c[4 * n + j] = (int64_t)b64(r + l3 + 32);
        ip_end = pl6 ? l3 + 40 + pl6 : lim;
        c[11 * n + j] = -1;
        c[12 * n + j] = r[l3 + 7];
        c[13 * n + j] = (b16(r + l3) >> 4) & 0xFF;
    }
    c[5 * n + j] = b16(r + l4);
    c[6 * n + j] = b16(r + l4 + 2);
    c[7 * n + j] = b32(r + l4 + 4);
    c[8 * n + j] = b32(r + l4 + 8);
    c[9 * n + j] = r[l4 + 13];
    c[10 * n + j] = b16(r + l4 + 14);
    long pl_off = l4 + doff;
    long plen = ip_end - pl_off; if (plen < 0) plen = 0;
    long pe = ip_end < lim ? ip_end : lim;
    long pcap = pe - pl_off; if (pcap < 0) pcap = 0;
    c[14 * n + j] = plen;
    c[15 * n + j] = off + pl_off;
    c[16 * n + j] = pcap;
    int64_t tsval = -1, tsecr = -1, mss = -1, ws = -1;
    long pos = l4 + 20, oend = l4 + doff < hc ? l4 + doff : hc;
    for (int k = 0; k < 40 && pos < oend; k++) {
        uint32_t kind = r[pos];
        if (kind == 0) break;
        if (kind == 1) { pos++; continue; }
        if (pos + 1 >= oend) break;
        long olen = r[pos + 1];
        if (olen < 2 || pos + olen > oend) break;
        if (kind == 8 && olen == 10) { tsval = b32(r + pos + 2); tsecr = b32(r + pos + 6); }
        else if (kind == 2 && olen == 4) mss = b16(r + pos + 2);
        else if (kind == 3 && olen == 3) ws = r[pos + 2];
        pos += olen;
    }
    /* options cut by the snap length before an MSS was seen: not known (MSS_UNKNOWN) */
    if (mss < 0 && l4 + doff > hc) mss = -2;
    c[17 * n + j] = tsval; c[18 * n + j] = tsecr; c[19 * n + j] = mss; c[20 * n + j] = ws;
    c[21 * n + j] = off + l4 + 20;
    long ol = oend - (l4 + 20);
    c[22 * n + j] = ol > 0 ? ol : 0;
    c[23 * n + j] = tun;
    return 1;
}
/* datagram side outputs (each n long): record index, absolute IP and L4 header offsets,
   absolute end of the datagram's data */
long hopcap_parse(const uint8_t *buf, const int64_t *offs, const int64_t *caps,
                  const int64_t *links, long n, long head, int64_t *c, int64_t *rows,
                  int64_t *d, long *nd) {
    long j = 0, k = 0, o3 = 0, o4 = 0, oe = 0;
    for (long i = 0; i < n; i++) {
        int got = parse_one(buf + offs[i], caps[i], links[i], head, offs[i], c, n, j, &o3, &o4,
                            &oe);
        if (got == 1) rows[j++] = i;
        else if (got == 2) {
            d[k] = i; d[n + k] = offs[i] + o3; d[2 * n + k] = offs[i] + o4;
            d[3 * n + k] = offs[i] + oe; k++;
        }
    }
    *nd = k;
    return j;
}
/* walk classic pcap records and parse them in one pass; returns TCP rows written */
long hopcap_walk_parse(const uint8_t *buf, long size, long pos, int be, long mult, long maxrec,
                       long maxn, long link, long head, int64_t *c, int64_t *ts,
                       long *pos_out, int *reason, long *nrec, int64_t *d, long *nd) {
    long n = 0, j = 0, k = 0, o3 = 0, o4 = 0, oe = 0, pf = pos & ~63L;
    *reason = 0;
    while (pos < size) {
        if (n >= maxn) { *reason = 3; break; }
        if (pos + 16 > size) { *reason = 1; break; }
        uint32_t sec = rd32(buf + pos, be), frac = rd32(buf + pos + 4, be);
        uint32_t cap = rd32(buf + pos + 8, be), orig = rd32(buf + pos + 12, be);
        if (cap > maxrec || (cap > orig && orig != 0) || (mult == 1000 && frac >= 1000000)) {
            *reason = 2; break;
        }
        if (pos + 16 + (long)cap > size) { *reason = 1; break; }
        pf = stream_ahead(buf, size, pf, pos + 16 + (long)cap);
        int got = parse_one(buf + pos + 16, cap, link, head, pos + 16, c, maxn, j, &o3, &o4,
                            &oe);
        if (got == 1) {
            ts[j] = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
            j++;
        } else if (got == 2) {
            /* a datagram: its timestamp, the IP and L4 header offsets, where its data ends */
            d[k] = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
            d[maxn + k] = pos + 16 + o3; d[2 * maxn + k] = pos + 16 + o4;
            d[3 * maxn + k] = pos + 16 + oe; k++;
        }
        n++;
        pos += 16 + cap;
    }
    *pos_out = pos;
    *nrec = n;
    *nd = k;
    return j;
}
static inline uint64_t hmix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; return x;
}
/* tk/tv: a table of `cap` slots (power of two), tv all -1 on entry */
long hopcap_join(const uint64_t *ha, long na, const uint64_t *hb, long nb, uint64_t *tk,
                 int64_t *tv, long cap, int64_t *ia, int64_t *ib) {
    uint64_t m = (uint64_t)cap - 1;
    for (long j = 0; j < nb; j++) {
        uint64_t s = hmix(hb[j]) & m;
        while (tv[s] >= 0 && tk[s] != hb[j]) s = (s + 1) & m;
        if (tv[s] < 0) { tk[s] = hb[j]; tv[s] = j; }
    }
    long k = 0;
    for (long i = 0; i < na; i++) {
        uint64_t s = hmix(ha[i]) & m;
        while (tv[s] >= 0 && tk[s] != ha[i]) s = (s + 1) & m;
        if (tv[s] >= 0) { ia[k] = i; ib[k] = tv[s]; k++; }
    }
    return k;
}
/* occ[i]: how many earlier rows have the key k[i] */
void hopcap_occ(const uint64_t *k, long n, uint64_t *tk, int64_t *tv, long cap, int64_t *occ) {
    uint64_t m = (uint64_t)cap - 1;
    for (long i = 0; i < n; i++) {
        uint64_t s = hmix(k[i]) & m;
        while (tv[s] >= 0 && tk[s] != k[i]) s = (s + 1) & m;
        if (tv[s] < 0) { tk[s] = k[i]; tv[s] = 0; }
        occ[i] = tv[s]++;
    }
}
/* conns.mix in one pass: the same arithmetic, column by column, for every row */
static const uint64_t MIX_P[4] = {0x9E3779B97F4A7C15ULL, 0xC2B2AE3D27D4EB4FULL,
                                  0x165667B19E3779F9ULL, 0x27D4EB2F165667C5ULL};
/* one column's step of conns.mix: h so far, v the value of column i */
static inline uint64_t mix_step(uint64_t h, uint64_t v, long i) {
    uint64_t x = v * MIX_P[i % 4] + (uint64_t)(i + 1);
    x ^= x >> 29;
    h = (h ^ x) * MIX_P[0];
    return h ^ (h >> 32);
}
void hopcap_mix(const int64_t *const *cols, long ncols, long n, uint64_t *out) {
    for (long r = 0; r < n; r++) {
        uint64_t h = 0;
        for (long i = 0; i < ncols; i++) h = mix_step(h, (uint64_t)cols[i][r], i);
        out[r] = h;
    }
}
void hopcap_cmp(const uint8_t *a, const int64_t *oa, const uint8_t *b, const int64_t *ob,
                const int64_t *len, long n, uint8_t *out) {
    for (long i = 0; i < n; i++) {
        if (i + 12 < n) { /* the packets ahead: scattered over both captures */
            const uint8_t *pa = a + oa[i + 12], *pb = b + ob[i + 12];
            long m = len[i + 12] < 256 ? len[i + 12] : 256;
            for (long o = 0; o < m; o += 64) {
                __builtin_prefetch(pa + o);
                __builtin_prefetch(pb + o);
            }
        }
        out[i] = memcmp(a + oa[i], b + ob[i], (size_t)len[i]) != 0;
    }
}
/* ---- read ---- */
/* Classic pcap in one pass straight into the table's own columns (reader._read_pcap):
   no chunk buffer to copy from, no numpy pass per column. Records are parsed into a small
   row block that stays in L1 (its column stride is no power of two: at a power of two,
   row j of every column falls in one cache set and the 24 columns evict each other), and
   the block is written out column by column, each value cast to its column's width.
   out: reader._C_OUT (ts, then parse_one's columns with opt_back for opt_off), `width`
   bytes per value; a NULL column is not written. The lazy ones (reader._LAZY) may be NULL
   while every row so far had their usual values: out[1] (v) 4; out[2], out[4], out[24]
   (the high address words, tun) 0; out[17] (pl_cap) plen's; out[23] (opt_len)
   opt_back's. d: ts, IP header, L4
   header, data end of every datagram. st (in/out): byte of the next record, records
   walked, rows, datagrams, reason (0 end, 1 truncated record, 2 corrupt header, 3 `cap`
   rows or `dcap` datagrams written: grow them, 4 a row needs a NULL lazy column: give
   them). */
#define BLOCK 256
#define BLOCK_STRIDE (BLOCK + 8)
static void put_col(void *dst, long at, const int64_t *src, long m, long w) {
    if (w == 8) { memcpy((int64_t *)dst + at, src, (size_t)m * 8); return; }
    if (w == 4) {
        uint32_t *p = (uint32_t *)dst + at;
        for (long i = 0; i < m; i++) p[i] = (uint32_t)src[i];
    } else if (w == 2) {
        uint16_t *p = (uint16_t *)dst + at;
        for (long i = 0; i < m; i++) p[i] = (uint16_t)src[i];
    } else {
        uint8_t *p = (uint8_t *)dst + at;
        for (long i = 0; i < m; i++) p[i] = (uint8_t)src[i];
    }
}
static void put_block(void *const *out, const int64_t *width, long at, int64_t *c,
                      const int64_t *ts, long m) {
    put_col(out[0], at, ts, m, width[0]);
    for (long i = 0; i < m; i++)  /* opt_back = pl_off - opt_off, in opt_off's place */
        c[21 * BLOCK_STRIDE + i] = c[15 * BLOCK_STRIDE + i] - c[21 * BLOCK_STRIDE + i];
    for (int col = 0; col < 24; col++)
        if (out[col + 1]) put_col(out[col + 1], at, c + col * BLOCK_STRIDE, m, width[col + 1]);
}
void hopcap_read_pcap(const uint8_t *buf, long size, int be, long mult, long maxrec, long link,
                      long head, void *const *out, const int64_t *width, long cap,
                      int64_t *const *d, long dcap, int64_t *st) {
    int64_t c[24 * BLOCK_STRIDE], ts[BLOCK];
    long pos = st[0], n = st[1], j = st[2], k = st[3], m = 0, o3 = 0, o4 = 0, oe = 0;
    long pf = pos & ~63L;
    int reason = 0;
    while (pos < size) {
        if (j + m >= cap || k >= dcap) { reason = 3; break; }
        if (m == BLOCK) { put_block(out, width, j, c, ts, m); j += m; m = 0; }
        if (pos + 16 > size) { reason = 1; break; }
        uint32_t sec = rd32(buf + pos, be), frac = rd32(buf + pos + 4, be);
        uint32_t rcap = rd32(buf + pos + 8, be), orig = rd32(buf + pos + 12, be);
        if (rcap > maxrec || (rcap > orig && orig != 0) || (mult == 1000 && frac >= 1000000)) {
            reason = 2; break;
        }
        if (pos + 16 + (long)rcap > size) { reason = 1; break; }
        pf = stream_ahead(buf, size, pf, pos + 16 + (long)rcap);
        int64_t t = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
        int got = parse_one(buf + pos + 16, rcap, link, head, pos + 16, c, BLOCK_STRIDE, m,
                            &o3, &o4, &oe);
        if (got == 1) {
            const int64_t *r = c + m;
            if ((!out[1] && r[0] != 4) ||
                (!out[2] && r[1 * BLOCK_STRIDE]) || (!out[4] && r[3 * BLOCK_STRIDE]) ||
                (!out[24] && r[23 * BLOCK_STRIDE]) ||
                (!out[17] && r[16 * BLOCK_STRIDE] != r[14 * BLOCK_STRIDE]) ||
                (!out[23] && r[22 * BLOCK_STRIDE] != r[15 * BLOCK_STRIDE] - r[21 * BLOCK_STRIDE])) {
                reason = 4; break;
            }
            ts[m++] = t;
        } else if (got == 2) {
            d[0][k] = t; d[1][k] = pos + 16 + o3; d[2][k] = pos + 16 + o4;
            d[3][k] = pos + 16 + oe; k++;
        }
        n++;
        pos += 16 + rcap;
    }
    if (m) put_block(out, width, j, c, ts, m);
    st[0] = pos; st[1] = n; st[2] = j + m; st[3] = k; st[4] = reason;
}
/* PASS(T) for the C type of a column of `kind` (bytes per value, negative when signed) */
#define BY_WIDTH(kind, PASS) switch (kind) { \
        case 8: case -8: PASS(int64_t) break; \
        case 4: PASS(uint32_t) break; \
        case -4: PASS(int32_t) break; \
        case 2: PASS(uint16_t) break; \
        case -2: PASS(int16_t) break; \
        case 1: PASS(uint8_t) break; \
        default: PASS(int8_t) break; }
/* conns.mix (hopcap_mix's values) over columns of any integer width and any stride, read
   in place: no int64 copy of a narrow column, a broadcast column (stride 0) never
   materialised. kind: bytes per value, negative when signed (sign-extended as numpy's
   astype does). Column by column: each pass a sequential read and one update of out. */
#define MIX_PASS(T) for (long r = 0; r < n; r++) { \
        uint64_t x = (uint64_t)(int64_t)*(const T *)(p + r * s) * pm + (uint64_t)(i + 1); \
        x ^= x >> 29; uint64_t h = (out[r] ^ x) * p0; out[r] = h ^ (h >> 32); }
/* rows [r0, r0 + n) of the columns. Each pass is a loop of 64-bit multiplies that GCC
   vectorizes with AVX-512 (8 rows at once, vpmullq): a build for such a CPU too, chosen
   when the library loads (the same values either way; the choice is an ifunc: glibc) */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && \
    defined(__GLIBC__)
__attribute__((target_clones("arch=x86-64-v4", "default")))
#endif
static void mix_rows(const void *const *cols, const int64_t *kind, const int64_t *stride,
                     long ncols, long r0, long n, uint64_t *out) {
    const uint64_t p0 = MIX_P[0];
    memset(out, 0, (size_t)n * 8);
    for (long i = 0; i < ncols; i++) {
        long s = stride[i];
        const char *p = (const char *)cols[i] + r0 * s;
        uint64_t pm = MIX_P[i % 4];
        BY_WIDTH(kind[i], MIX_PASS)
    }
}
void hopcap_mix_typed(const void *const *cols, const int64_t *kind, const int64_t *stride,
                      long ncols, long n, uint64_t *out) {
    mix_rows(cols, kind, stride, ncols, 0, n, out);
}
/* conns._build_halves' index in two passes over the rows, in row order, with no per-row
   tuple key kept: (1) every row's tuple key (conns.mix of the six tuple columns, a block
   at a time) grouped with a hash table of its own (grown 4x, rehashed, when half full):
   gid[i], and per group its key and rows (gkey, gcount: room for n groups); returns the
   groups, -1 when no memory. The caller ranks the groups by key; (2) hopcap_index_place. */
#define KEY_BLOCK 2048
static int grow_table(uint64_t **tk, int64_t **tv, long *cap, const uint64_t *gkey, long g) {
    long nc = *cap * 4;
    uint64_t *k = malloc((size_t)nc * 8), m = (uint64_t)nc - 1;
    int64_t *v = malloc((size_t)nc * 8);
    if (!k || !v) { free(k); free(v); return 0; }
    memset(v, 0xFF, (size_t)nc * 8);
    for (long q = 0; q < g; q++) {
        uint64_t s = hmix(gkey[q]) & m;
        while (v[s] >= 0) s = (s + 1) & m;
        k[s] = gkey[q]; v[s] = q;
    }
    free(*tk); free(*tv);
    *tk = k; *tv = v; *cap = nc;
    return 1;
}
long hopcap_index_groups(const void *const *cols, const int64_t *kind, const int64_t *stride,
                         long n, int32_t *gid, uint64_t *gkey, int64_t *gcount) {
    long cap = 1 << 12, g = 0;
    uint64_t *tk = NULL, key[KEY_BLOCK];
    int64_t *tv = NULL;
    cap /= 4;
    if (!grow_table(&tk, &tv, &cap, gkey, 0)) return -1;
    for (long r0 = 0; r0 < n; r0 += KEY_BLOCK) {
        long b = n - r0 < KEY_BLOCK ? n - r0 : KEY_BLOCK;
        mix_rows(cols, kind, stride, 6, r0, b, key);
        for (long j = 0; j < b; j++) {
            uint64_t k = key[j], m = (uint64_t)cap - 1, s = hmix(k) & m;
            while (tv[s] >= 0 && tk[s] != k) s = (s + 1) & m;
            if (tv[s] < 0) {
                if (2 * (g + 1) > cap) {
                    if (!grow_table(&tk, &tv, &cap, gkey, g)) { free(tk); free(tv); return -1; }
                    m = (uint64_t)cap - 1; s = hmix(k) & m;
                    while (tv[s] >= 0) s = (s + 1) & m;
                }
                tk[s] = k; tv[s] = g; gkey[g] = k; gcount[g] = 0; g++;
            }
            gid[r0 + j] = (int32_t)tv[s];
            gcount[tv[s]]++;
        }
    }
    free(tk); free(tv);
    return g;
}
/* (2) every row placed in `order` after the rows of the groups before its own (at[g]: the
   first place of group g, by key rank; advanced as rows are placed), and the halves cut
   as conns._half_starts cuts them, in the same row-order pass: a half starts at a group's
   first row and at a SYN whose seq differs from the group's last SYN (or that has none
   before it, or a RST after it), and at a packet after a FIN or RST in sequence (fin[g]:
   the sequence number that closed it) whose seq is far from it (far_seq), but for a
   RST,ACK with seq 0 (the answer to a segment without ACK). Per half: its
   first place in `order` and whether a row carries a TSval, in the order the halves
   start in the file (the caller sorts them by place). Returns the halves. */
static inline int32_t seq_diff(int64_t a, int64_t b) {
    return (int32_t)(uint32_t)((uint64_t)a - (uint64_t)b);
}
static inline int far_seq(int64_t seq, int64_t fin) {
    int32_t d = seq_diff(seq, fin);
    return d > 65536 || d < -(1 << 24);
}
long hopcap_index_place(const int32_t *gid, long n, int64_t *at, const int64_t *gstart,
                        const int16_t *flags, const int64_t *seq, const int64_t *tsval,
                        int64_t *last, int64_t *cur, int64_t *fin, int64_t *pseq,
                        int64_t *order, int64_t *hstart, uint8_t *has_ts) {
    long nh = 0;
    for (long i = 0; i < n; i++) {
        long g = gid[i];
        int64_t p = at[g]++;
        order[p] = i;
        int syn = (flags[i] & 0x02) != 0;
        if (p == gstart[g]) { last[g] = -1; cur[g] = -1; fin[g] = -1; pseq[g] = -1; }
        if (cur[g] < 0 || (syn && last[g] != seq[i]) ||
            (!syn && !((flags[i] & 0x14) == 0x14 && seq[i] == 0) && fin[g] >= 0 &&
             far_seq(seq[i], fin[g]))) {
            hstart[nh] = p; has_ts[nh] = 0; cur[g] = nh++; fin[g] = -1;
        }
        if (tsval[i] >= 0) has_ts[cur[g]] = 1;
        /* a FIN or RST closes the tuple if in sequence with the last packet before it
           that was neither (pseq: a forged RST with another seq does not); after a RST,
           even the same ISN starts a half */
        int near = pseq[g] < 0 || (seq_diff(seq[i], pseq[g]) <= (1 << 24) &&
                                   seq_diff(seq[i], pseq[g]) >= -(1 << 24));
        if (syn) { last[g] = seq[i]; fin[g] = -1; }
        else if (flags[i] & 0x04) { last[g] = -2; if (near) fin[g] = seq[i]; }
        else if ((flags[i] & 0x01) && near) fin[g] = (seq[i] + 1) & 0xFFFFFFFF;
        if (!(flags[i] & 0x05)) pseq[g] = seq[i];
    }
    return nh;
}
/* pcapng's enhanced packet blocks in one C pass: capfile.walk.RecordWalk._pcapng's loop
   for the block nearly every record is. From byte pos, every EPB whose interface is known
   and whose lengths pass that loop's checks; it returns (n records, *pos_out the block it
   stopped at) at any other block, at anything the loop would warn about, at the end, or
   after maxn records: the Python loop takes it from there, with the same records,
   warnings and facts. ifl: per interface, (link, mul, div, tsoffset in s) as the loop
   keeps them; a timestamp that does not fit int64 is left to it too. */
long hopcap_walk_pcapng(const uint8_t *buf, long size, long pos, int be, long maxrec,
                        const int64_t *ifl, long nif, long maxn, int64_t *offs, int64_t *caps,
                        int64_t *ts, int64_t *links, int64_t *origs, int64_t *ifs,
                        long *pos_out) {
    long n = 0, pf = pos & ~63L;
    while (n < maxn && pos + 12 <= size) {
        uint32_t btype = rd32(buf + pos, be), blen = rd32(buf + pos + 4, be);
        if (btype != 6 || blen < 32 || blen % 4 || (long)blen > maxrec + 4096 ||
            pos + (long)blen > size) break;
        long body = pos + 8, end = pos + (long)blen - 4;
        uint32_t iface = rd32(buf + body, be), th = rd32(buf + body + 4, be);
        uint32_t tl = rd32(buf + body + 8, be), cap = rd32(buf + body + 12, be);
        uint32_t orig = rd32(buf + body + 16, be);
        if (iface >= (uint64_t)nif || body + 20 + (long)cap > end) break;
        const int64_t *f = ifl + 4 * iface;
        unsigned __int128 ticks = ((uint64_t)th << 32) | tl;
        __int128 v = (__int128)(ticks * (uint64_t)f[1] / (uint64_t)f[2]) +
                     (__int128)f[3] * 1000000000;
        if (v > INT64_MAX || v < INT64_MIN) break;
        pf = stream_ahead(buf, size, pf, pos + (long)blen);
        offs[n] = body + 20; caps[n] = cap; ts[n] = (int64_t)v; links[n] = f[0];
        origs[n] = orig; ifs[n] = iface;
        n++;
        pos += blen;
    }
    *pos_out = pos;
    return n;
}
/* ---- mat ---- */
#include <stdlib.h>
/* conns.mix of one row (the values of its columns, in order) */
static inline uint64_t mat_mix(const int64_t *v, int n) {
    uint64_t h = 0;
    for (int i = 0; i < n; i++) h = mix_step(h, (uint64_t)v[i], i);
    return h;
}
/* an open-addressing table: keys k, values v (-1: empty), m + 1 slots used, alloc held */
typedef struct { uint64_t *k; int64_t *v; uint64_t m; long alloc; } mat_tab;
/* the slot of key x (its value -1 when absent) */
static inline uint64_t mat_slot(const mat_tab *t, uint64_t x) {
    uint64_t s = hmix(x) & t->m;
    while (t->v[s] >= 0 && t->k[s] != x) s = (s + 1) & t->m;
    return s;
}
/* a table of at least 2n + 1 slots, every slot empty (grown as needed); -1: memory */
static int mat_tab_fit(mat_tab *t, long n) {
    long cap = 16;
    while (cap < 2 * n + 1) cap <<= 1;
    if (t->alloc < cap) {
        free(t->k); free(t->v);
        t->k = malloc((size_t)cap * sizeof(uint64_t));
        t->v = malloc((size_t)cap * sizeof(int64_t));
        t->alloc = cap;
        if (!t->k || !t->v) { free(t->k); free(t->v); t->k = 0; t->v = 0; t->alloc = 0; return -1; }
    }
    memset(t->v, 0xFF, (size_t)cap * sizeof(int64_t));
    t->m = (uint64_t)cap - 1;
    return 0;
}
/* match._pair_multiset's keys: the n-th repetition (n > 0) of key k becomes mix(k, n) */
static int mat_occ(uint64_t *k, long n, mat_tab *t) {
    if (mat_tab_fit(t, n)) return -1;
    for (long i = 0; i < n; i++) {
        uint64_t s = mat_slot(t, k[i]);
        if (t->v[s] < 0) { t->k[s] = k[i]; t->v[s] = 0; }
        int64_t o = t->v[s]++;
        if (o) { int64_t v2[2] = {(int64_t)k[i], o}; k[i] = mat_mix(v2, 2); }
    }
    return 0;
}
/* _pair_multiset on keys ka (at batch positions pa, pairs pid_a[pa]) and kb, one pair at a
   time (the keys include the pair; positions come grouped by pair, in increasing order):
   pairs appended to (oa, ob) as batch positions, in a's order, marked in ma/mb; returns
   their number, -1: memory */
static long mat_pair(uint64_t *ka, const int64_t *pa, long na, const int64_t *pid_a,
                     uint64_t *kb, const int64_t *pb, long nb, const int64_t *pid_b,
                     uint8_t *ma, uint8_t *mb, int64_t *oa, int64_t *ob, mat_tab *t) {
    long k = 0, i = 0, j = 0;
    while (i < na && j < nb) {
        int64_t p = pid_a[pa[i]], q = pid_b[pb[j]];
        long i1 = i, j1 = j;
        while (i1 < na && pid_a[pa[i1]] == p) i1++;
        while (j1 < nb && pid_b[pb[j1]] == q) j1++;
        if (p != q) { if (p < q) i = i1; else j = j1; continue; }
        if (mat_occ(ka + i, i1 - i, t) || mat_occ(kb + j, j1 - j, t)) return -1;
        if (mat_tab_fit(t, j1 - j)) return -1;
        for (long y = j; y < j1; y++) {
            uint64_t s = mat_slot(t, kb[y]);
            if (t->v[s] < 0) { t->k[s] = kb[y]; t->v[s] = y; }
        }
        for (long x = i; x < i1; x++) {
            uint64_t s = mat_slot(t, ka[x]);
            if (t->v[s] < 0) continue;
            oa[k] = pa[x]; ob[k] = pb[t->v[s]];
            ma[oa[k]] = 1; mb[ob[k]] = 1;
            k++;
        }
        i = i1; j = j1;
    }
    return k;
}
#define MAT_PF_OFF 16  /* pairs ahead: their payload offsets and lengths */
#define MAT_PF_PL 8  /* pairs ahead: every line of their payloads */
static inline int64_t mat_s32(int64_t x) {
    return ((x + (1LL << 31)) & 0xFFFFFFFFLL) - (1LL << 31);
}
static inline int64_t mat_cls(int f) { return f & 2 ? 1 : f & 4 ? 3 : f & 1 ? 2 : 0; }
/* match._Batch.of, _match_control and _match_exact_data in one pass over a batch (see
   there): rows ra (pairs pida) of capture a, rb (pidb) of b; columns (ca, cb): seq (int64),
   plen (int32), flags (int16), tsval (int64), ipid (int32), pl_off (int64), pl_cap (int32);
   per pair: seq delta, base, use TSval, use IP ID. Out per position: the _Batch columns and
   marks; the control pairs (cpa, cpb), the exact data pairs (epa, epb) with whether their
   payloads differ (ediff, over encmp bytes); counts[0..1] their numbers. 0, -1: memory */
long hopcap_mcore(long na, const int64_t *ra, const int64_t *pida, long nb, const int64_t *rb,
                  const int64_t *pidb, const void *const *ca, const void *const *cb,
                  const uint8_t *bufa, const uint8_t *bufb, const int64_t *delta,
                  const int64_t *base, const uint8_t *use_ts, const uint8_t *use_ipid,
                  int64_t *seq_a, int64_t *sa, int64_t *sb, int64_t *tva, int64_t *tvb,
                  int64_t *ida, int64_t *idb, int32_t *pa, int32_t *pb, int16_t *fa,
                  int16_t *fb, uint8_t *ctl_a, uint8_t *ctl_b, uint8_t *dat_a, uint8_t *dat_b,
                  uint8_t *mctl_a, uint8_t *mctl_b, uint8_t *mdat_a, uint8_t *mdat_b,
                  int64_t *cpa, int64_t *cpb, int64_t *epa, int64_t *epb, uint8_t *ediff,
                  int64_t *encmp, int64_t *counts) {
    const int64_t m32 = 0xFFFFFFFFLL;
    const int64_t *sq[2] = {ca[0], cb[0]}, *tv[2] = {ca[3], cb[3]}, *off[2] = {ca[5], cb[5]};
    const int32_t *pl[2] = {ca[1], cb[1]}, *ip[2] = {ca[4], cb[4]}, *cap[2] = {ca[6], cb[6]};
    const int16_t *fl[2] = {ca[2], cb[2]};
    long n[2] = {na, nb};
    const int64_t *rows[2] = {ra, rb}, *pid[2] = {pida, pidb};
    int64_t *s[2] = {sa, sb}, *tvo[2] = {tva, tvb}, *ido[2] = {ida, idb};
    int32_t *po[2] = {pa, pb};
    int16_t *fo[2] = {fa, fb};
    uint8_t *ctl[2] = {ctl_a, ctl_b}, *dat[2] = {dat_a, dat_b};
    uint64_t *kc[2] = {0, 0}, *kd[2] = {0, 0};
    int64_t *ic[2] = {0, 0}, *id_[2] = {0, 0};
    long nc[2] = {0, 0}, nd[2] = {0, 0};
    int bad = 0;
    for (int x = 0; x < 2; x++) {
        kc[x] = malloc((size_t)(n[x] + 1) * sizeof(uint64_t));
        kd[x] = malloc((size_t)(n[x] + 1) * sizeof(uint64_t));
        ic[x] = malloc((size_t)(n[x] + 1) * sizeof(int64_t));
        id_[x] = malloc((size_t)(n[x] + 1) * sizeof(int64_t));
        if (!kc[x] || !kd[x] || !ic[x] || !id_[x]) bad = 1;
    }
    long ret = 0;
    if (bad) { ret = -1; goto out; }
    for (long i = 1; i < na; i++) if (pida[i] < pida[i - 1]) { ret = -2; goto out; }
    for (long i = 1; i < nb; i++) if (pidb[i] < pidb[i - 1]) { ret = -2; goto out; }
    for (int x = 0; x < 2; x++) {
        for (long i = 0; i < n[x]; i++) {
            if (i + 32 < n[x]) { /* the rows ahead: far apart in every column */
                int64_t r2 = rows[x][i + 32];
                __builtin_prefetch(sq[x] + r2); __builtin_prefetch(pl[x] + r2);
                __builtin_prefetch(fl[x] + r2); __builtin_prefetch(tv[x] + r2);
                __builtin_prefetch(ip[x] + r2);
            }
            int64_t r = rows[x][i], p = pid[x][i];
            int64_t q = x == 0 ? (sq[0][r] + delta[p]) & m32 : sq[1][r];
            if (x == 0) seq_a[i] = q;
            int64_t rel = mat_s32(q - base[p]);
            int32_t len = pl[x][r];
            int f = fl[x][r];
            int64_t t = use_ts[p] ? tv[x][r] : -1;
            int64_t d = use_ipid[p] ? (int64_t)ip[x][r] : -1;
            s[x][i] = rel; po[x][i] = len; fo[x][i] = (int16_t)f; tvo[x][i] = t; ido[x][i] = d;
            ctl[x][i] = (f & 7) != 0 || len == 0;
            dat[x][i] = len > 0;
            if (ctl[x][i]) {
                int64_t v[5] = {p, rel + len, t, (f & 1) ? -1 : d, mat_cls(f)};
                kc[x][nc[x]] = mat_mix(v, 5);
                ic[x][nc[x]++] = i;
            }
            if (len > 0) {
                int64_t v[5] = {p, rel, len, t, d};
                kd[x][nd[x]] = mat_mix(v, 5);
                id_[x][nd[x]++] = i;
            }
        }
    }
    mat_tab t = {0, 0, 0, 0};
    long k1 = mat_pair(kc[0], ic[0], nc[0], pida, kc[1], ic[1], nc[1], pidb, mctl_a, mctl_b,
                       cpa, cpb, &t);
    long k2 = k1 < 0 ? -1 : mat_pair(kd[0], id_[0], nd[0], pida, kd[1], id_[1], nd[1], pidb,
                                     mdat_a, mdat_b, epa, epb, &t);
    free(t.k); free(t.v);
    if (k1 < 0 || k2 < 0) { ret = -1; goto out; }
    for (long i = 0; i < k2; i++) {
        if (i + MAT_PF_OFF < k2) {
            int64_t x2 = ra[epa[i + MAT_PF_OFF]], y2 = rb[epb[i + MAT_PF_OFF]];
            __builtin_prefetch(cap[0] + x2); __builtin_prefetch(off[0] + x2);
            __builtin_prefetch(cap[1] + y2); __builtin_prefetch(off[1] + y2);
        }
        if (i + MAT_PF_PL < k2) { /* their payloads, every line, once the offsets are in */
            int64_t x2 = ra[epa[i + MAT_PF_PL]], y2 = rb[epb[i + MAT_PF_PL]];
            int64_t m2 = cap[0][x2] < cap[1][y2] ? cap[0][x2] : cap[1][y2];
            if (m2 > 4096) m2 = 4096;
            uintptr_t qa = (uintptr_t)(bufa + off[0][x2]), qb = (uintptr_t)(bufb + off[1][y2]);
            for (uintptr_t o = qa & ~(uintptr_t)63; o < qa + (uintptr_t)m2; o += 64)
                __builtin_prefetch((const void *)o);
            for (uintptr_t o = qb & ~(uintptr_t)63; o < qb + (uintptr_t)m2; o += 64)
                __builtin_prefetch((const void *)o);
        }
        int64_t x = ra[epa[i]], y = rb[epb[i]];
        int64_t m = cap[0][x] < cap[1][y] ? cap[0][x] : cap[1][y];
        encmp[i] = m;
        ediff[i] = m > 0 && memcmp(bufa + off[0][x], bufb + off[1][y], (size_t)m) != 0;
    }
    counts[0] = k1;
    counts[1] = k2;
out:
    for (int x = 0; x < 2; x++) { free(kc[x]); free(kd[x]); free(ic[x]); free(id_[x]); }
    return ret;
}
static int mat_cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
/* the runs of equal pair ids (pid nondecreasing): run k is rows [st[k], st[k + 1]) */
static long mat_runs(const int64_t *pid, long n, int64_t *st) {
    long k = 0;
    for (long i = 0; i < n; i++) if (i == 0 || pid[i] != pid[i - 1]) st[k++] = i;
    st[k] = n;
    return k;
}
/* the sample key of row r of pair p (match.learn_deltas: TSval, IP ID, length); 0: the row
   has neither a TSval nor an IP ID (*ok = 0) */
static inline uint64_t mat_skey(int64_t p, int64_t r, const int64_t *tv, const int32_t *ip,
                                const int32_t *pl, int *ok) {
    *ok = tv[r] >= 0 || ip[r] > 0;
    if (!*ok) return 0;
    int64_t v[4] = {p, tv[r], ip[r], pl[r]};
    return mat_mix(v, 4);
}
/* put key x (value r) in a table of 128 slots unless there; 1 if it was there */
static inline int mat_put(uint64_t *tk, int64_t *tv, uint64_t x, int64_t r) {
    uint64_t s = hmix(x) & 127;
    while (tv[s] >= 0 && tk[s] != x) s = (s + 1) & 127;
    if (tv[s] >= 0) return 1;
    tk[s] = x; tv[s] = r;
    return 0;
}
static inline int64_t mat_get(const uint64_t *tk, const int64_t *tv, uint64_t x) {
    uint64_t s = hmix(x) & 127;
    while (tv[s] >= 0 && tk[s] != x) s = (s + 1) & 127;
    return tv[s];
}
/* match.learn_deltas up to its payload fallback (see there): delta[p] (-1: unknown) and
   votes[p] (1: a packet of the sample matched) of every pair; columns (ca, cb): seq
   (int64), plen (int32), flags (int16), tsval (int64), ipid (int32). Rows must come grouped
   by pair in increasing order (pid nondecreasing): else -2. -1: memory; 0: done. Only the
   rows it needs are read: a pair's first SYN, and its sample (the first 32 rows at a, 48
   at b) up to the first match when the SYNs gave the offset */
long hopcap_learn(long na, const int64_t *ra, const int64_t *pida, long nb, const int64_t *rb,
                  const int64_t *pidb, const void *const *ca, const void *const *cb,
                  long npairs, int64_t *delta, int64_t *votes) {
    const int64_t m32 = 0xFFFFFFFFLL;
    const int64_t *sqa = ca[0], *tva = ca[3], *sqb = cb[0], *tvb = cb[3];
    const int32_t *pla = ca[1], *ipa = ca[4], *plb = cb[1], *ipb = cb[4];
    const int16_t *fla = ca[2], *flb = cb[2];
    for (long i = 1; i < na; i++) if (pida[i] < pida[i - 1]) return -2;
    for (long i = 1; i < nb; i++) if (pidb[i] < pidb[i - 1]) return -2;
    for (long p = 0; p < npairs; p++) { delta[p] = -1; votes[p] = 0; }
    if (npairs == 0) return 0;
    int64_t *syn_a = malloc((size_t)npairs * sizeof(int64_t));
    int64_t *syn_b = malloc((size_t)npairs * sizeof(int64_t));
    int64_t *sta = malloc((size_t)(na + 1) * sizeof(int64_t));
    int64_t *stb = malloc((size_t)(nb + 1) * sizeof(int64_t));
    uint64_t tka[128], tkb[128];
    int64_t tva_[128], tvb_[128], buf[64];
    long ret = 0;
    if (!syn_a || !syn_b || !sta || !stb) { ret = -1; goto out; }
    long ka = mat_runs(pida, na, sta), kb = mat_runs(pidb, nb, stb);
    /* each pair's first SYN (the rows of a half: its first row, if any) */
    const int64_t *rows[2] = {ra, rb}, *pids[2] = {pida, pidb}, *st[2] = {sta, stb};
    const int16_t *fl[2] = {fla, flb};
    int64_t *syn[2] = {syn_a, syn_b};
    long runs[2] = {ka, kb};
    for (int x = 0; x < 2; x++) {
        for (long p = 0; p < npairs; p++) syn[x][p] = -1;
        for (long k = 0; k < runs[x]; k++) {
            if (k + 8 < runs[x]) __builtin_prefetch(fl[x] + rows[x][st[x][k + 8]]);
            for (long i = st[x][k]; i < st[x][k + 1]; i++)
                if (fl[x][rows[x][i]] & 2) { syn[x][pids[x][i]] = rows[x][i]; break; }
        }
    }
    /* the pairs at both points, in order */
    for (long u = 0, w = 0; u < ka && w < kb;) {
        int64_t p = pida[sta[u]], q = pidb[stb[w]];
        if (p < q) { u++; continue; }
        if (q < p) { w++; continue; }
        if (u + 4 < ka && w + 4 < kb) { /* the first rows of the pairs ahead */
            int64_t r2 = ra[sta[u + 4]], r3 = rb[stb[w + 4]];
            __builtin_prefetch(tva + r2); __builtin_prefetch(ipa + r2);
            __builtin_prefetch(pla + r2); __builtin_prefetch(tvb + r3);
            __builtin_prefetch(ipb + r3); __builtin_prefetch(plb + r3);
            __builtin_prefetch(sqa + r2); __builtin_prefetch(sqb + r3);  /* (their SYNs') */
        }
        long a0 = sta[u], a1 = sta[u + 1] < a0 + 32 ? sta[u + 1] : a0 + 32;
        long b0 = stb[w], b1 = stb[w + 1] < b0 + 48 ? stb[w + 1] : b0 + 48;
        u++; w++;
        for (int s2 = 0; s2 < 128; s2++) tva_[s2] = tvb_[s2] = -1;
        int ok;
        if (syn_a[p] >= 0 && syn_b[p] >= 0) {
            /* the SYNs give the offset; the vote only says whether a packet matched: both
               samples in turn, each row looked up in the other's table, to the first hit */
            delta[p] = (sqb[syn_b[p]] - sqa[syn_a[p]]) & m32;
            for (long i = a0, j = b0; (i < a1 || j < b1) && !votes[p];) {
                if (j < b1) {
                    uint64_t x = mat_skey(p, rb[j], tvb, ipb, plb, &ok);
                    if (ok && (mat_put(tkb, tvb_, x, rb[j]), mat_get(tka, tva_, x) >= 0))
                        votes[p] = 1;
                    j++;
                }
                if (i < a1 && !votes[p]) {
                    uint64_t x = mat_skey(p, ra[i], tva, ipa, pla, &ok);
                    if (ok && (mat_put(tka, tva_, x, ra[i]), mat_get(tkb, tvb_, x) >= 0))
                        votes[p] = 1;
                    i++;
                }
            }
            continue;
        }
        /* b's sample in a table (key -> the first b row with it), a's looked up in it */
        int any = 0;
        for (long j = b0; j < b1; j++) {
            uint64_t x = mat_skey(p, rb[j], tvb, ipb, plb, &ok);
            if (ok) { mat_put(tkb, tvb_, x, rb[j]); any = 1; }
        }
        if (!any) continue;
        long nbuf = 0;
        for (long i = a0; i < a1; i++) {
            uint64_t x = mat_skey(p, ra[i], tva, ipa, pla, &ok);
            int64_t j2 = ok ? mat_get(tkb, tvb_, x) : -1;
            if (j2 < 0) continue;
            votes[p] = 1;
            buf[nbuf++] = (sqb[j2] - sqa[ra[i]]) & m32;
        }
        if (nbuf) { /* the most common offset of the pair (ties: the smallest) */
            qsort(buf, (size_t)nbuf, sizeof(int64_t), mat_cmp64);
            long best = 0, bc = 0;
            for (long x = 0; x < nbuf;) {
                long y = x;
                while (y < nbuf && buf[y] == buf[x]) y++;
                if (y - x > bc) { bc = y - x; best = buf[x]; }
                x = y;
            }
            delta[p] = best;
        }
    }
out:
    free(syn_a); free(syn_b); free(sta); free(stb);
    return ret;
}
/* conns.fingerprint_codes' TSval and ISN keys of every half (see there), one pass over the
   first 4 * limit rows of each (order[start[h]:end[h]]): the distinct codes of half h, in
   increasing order, appended to (oh, oc); n_ts[h] its TSval rows (at most limit) besides
   SYNs, has_syn[h]; sid: (half, row) of the SYN rows without a TSval but with an IP ID,
   in order. Returns the codes, counts[0] the sid rows. At most 12 codes per half. */
long hopcap_fpcodes(const int64_t *order, const int64_t *start, const int64_t *end, long nh,
                    const int16_t *flags, const int64_t *tsval, const int32_t *ipid,
                    const int64_t *seq, long limit, int64_t *oh, int64_t *oc, int64_t *n_ts,
                    uint8_t *has_syn, int64_t *sid, int64_t *counts) {
    long k = 0, ns = 0;
    for (long h = 0; h < nh; h++) {
        int64_t c[12];
        int nc = 0, nsyn = 0, nts = 0;
        long e = end[h] < start[h] + 4 * limit ? end[h] : start[h] + 4 * limit;
        if (h + 8 < nh) { /* every row half h + 8 reads: they lie all over the columns */
            long e2 = end[h + 8] < start[h + 8] + 4 * limit ? end[h + 8] : start[h + 8] + 4 * limit;
            for (long j = start[h + 8]; j < e2; j++) {
                int64_t r2 = order[j];
                __builtin_prefetch(flags + r2); __builtin_prefetch(tsval + r2);
                __builtin_prefetch(ipid + r2); __builtin_prefetch(seq + r2);
            }
        }
        for (long j = start[h]; j < e; j++) {
            int64_t r = order[j], tv = tsval[r];
            int64_t code = -1;
            if (flags[r] & 2) {
                if (nsyn++ >= 4) continue;
                c[nc++] = (1LL << 60) | (seq[r] << 17);
                if (tv >= 0) code = (tv << 17) | ((int64_t)ipid[r] + 1);
                else if (ipid[r] > 0) { sid[2 * ns] = h; sid[2 * ns + 1] = r; ns++; }
            } else if (tv >= 0) {
                if (nts++ >= limit) continue;
                code = (tv << 17) | ((int64_t)ipid[r] + 1);
            }
            if (code >= 0) c[nc++] = code;
        }
        n_ts[h] = nts < limit ? nts : limit;
        has_syn[h] = nsyn > 0;
        for (int a = 1; a < nc; a++) { /* insertion sort, then the distinct ones */
            int64_t x = c[a];
            int b = a - 1;
            while (b >= 0 && c[b] > x) { c[b + 1] = c[b]; b--; }
            c[b + 1] = x;
        }
        for (int a = 0; a < nc; a++) {
            if (a && c[a] == c[a - 1]) continue;
            oh[k] = h; oc[k] = c[a]; k++;
        }
    }
    counts[0] = ns;
    return k;
}
/* link._same_key: every (i, j) with ka[i] == kb[j], by i then j. nxt: nb slots; pass
   ia = 0 to count the pairs only. */
long hopcap_samekey(const uint64_t *ka, long na, const uint64_t *kb, long nb, int64_t *nxt,
                    int64_t *ia, int64_t *ib) {
    mat_tab t = {0, 0, 0, 0};
    if (mat_tab_fit(&t, nb)) return -1;
    /* each key's rows in a chain, last first: (key -> last j), nxt[j] the one before */
    for (long j = 0; j < nb; j++) {
        uint64_t s = mat_slot(&t, kb[j]);
        if (t.v[s] < 0) { t.k[s] = kb[j]; nxt[j] = -1; } else nxt[j] = t.v[s];
        t.v[s] = j;
    }
    long k = 0;
    for (long i = 0; i < na; i++) {
        uint64_t s = mat_slot(&t, ka[i]);
        long n = 0;
        for (int64_t j = t.v[s]; j >= 0; j = nxt[j]) n++;
        if (ia) {
            long m = k + n;
            for (int64_t j = t.v[s]; j >= 0; j = nxt[j]) { m--; ia[m] = i; ib[m] = j; }
        }
        k += n;
    }
    free(t.k); free(t.v);
    return k;
}
/* conns.PointConns.rows_of: the rows order[start[h]:end[h]] of every half h = hid[k] (-1:
   none) one after the other (rows), and k for each (pos); returns the rows */
long hopcap_rowsof(const int64_t *hid, long n, const int64_t *start, const int64_t *end,
                   const int64_t *order, int64_t *rows, int64_t *pos) {
    long m = 0;
    for (long k = 0; k < n; k++) {
        if (k + 16 < n && hid[k + 16] >= 0) {  /* the halves ahead: far apart */
            __builtin_prefetch(start + hid[k + 16]); __builtin_prefetch(end + hid[k + 16]);
        }
        if (k + 8 < n && hid[k + 8] >= 0) __builtin_prefetch(order + start[hid[k + 8]]);
        int64_t h = hid[k];
        if (h < 0) continue;
        for (int64_t j = start[h]; j < end[h]; j++) { rows[m] = order[j]; pos[m] = k; m++; }
    }
    return m;
}
/* ---- fin ---- */
/* decimal digits of v at o (v >= 0 or negative); the end */
static char *fin_dec(char *o, int64_t v) {
    char tmp[24];
    int k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) *o++ = '-';
    do { tmp[k++] = (char)('0' + u % 10); u /= 10; } while (u);
    while (k) *o++ = tmp[--k];
    return o;
}
static char *fin_str(char *o, const char *s) { while (*s) *o++ = *s++; return o; }
/* findings._rows_described's texts (`_first_packet`) of n rows, each line ended by '\n':
   the flags by name (match.flags_str), seq (a SYN's own, else `rel`), len (not of a SYN,
   when > 0), tsval (when >= 0), ipid (IPv4); at most 136 bytes a row; returns the bytes */
long hopcap_fin_texts(long n, const int64_t *flags, const int64_t *seq, const int64_t *rel,
                      const int64_t *plen, const int64_t *tsval, const int64_t *v,
                      const int64_t *ipid, char *out) {
    static const int bit[8] = {2, 1, 4, 8, 16, 32, 64, 128};
    static const char *name[8] = {"SYN", "FIN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"};
    char *o = out;
    for (long i = 0; i < n; i++) {
        int64_t f = flags[i] & 255;
        int any = 0;
        for (int b = 0; b < 8; b++)
            if (f & bit[b]) { if (any) *o++ = ','; o = fin_str(o, name[b]); any = 1; }
        if (!any) o = fin_str(o, "none");
        o = fin_str(o, " seq=");
        if (f & 2) o = fin_dec(o, seq[i]);
        else {
            o = fin_dec(o, rel[i]);
            if (plen[i]) { o = fin_str(o, " len="); o = fin_dec(o, plen[i]); }
        }
        if (tsval[i] >= 0) { o = fin_str(o, " tsval="); o = fin_dec(o, tsval[i]); }
        if (v[i] == 4) { o = fin_str(o, " ipid="); o = fin_dec(o, ipid[i]); }
        *o++ = '\n';
    }
    return (long)(o - out);
}
/* findings._endpoints of IPv4 rows: "a.b.c.d:port" a line (an empty line where v is not
   4); at most 37 bytes a row; returns the bytes */
long hopcap_fin_ends(long n, const int64_t *v, const uint64_t *lo, const int64_t *port,
                     char *out) {
    char *o = out;
    for (long i = 0; i < n; i++) {
        if (v[i] == 4) {
            uint64_t a = lo[i];
            for (int k = 24; k >= 0; k -= 8) {
                o = fin_dec(o, (int64_t)((a >> k) & 255));
                *o++ = k ? '.' : ':';
            }
            o = fin_dec(o, port[i]);
        }
        *o++ = '\n';
    }
    return (long)(o - out);
}
/* ---- half ---- */
/* the k-th smallest of x[0..n) (x reordered: everything before k is <= x[k], everything
   after it >= x[k]) */
static int64_t select_i64(int64_t *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2, a = x[lo], b = x[mid], c = x[hi];
        int64_t piv = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] < piv) i++;
            while (x[j] > piv) j--;
            if (i <= j) { int64_t t = x[i]; x[i] = x[j]; x[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
    return x[k];
}
/* match._results: the count, minimum and median (the mean of the two middle values) of
   the one-way delays ts_b[gb[k]] - ts_a[ga[k]] of every pair p (the k with pid[k] == p,
   0 <= p < npairs); tmp: room for n + 2 * (npairs + 1) int64 */
void hopcap_delays(long n, const int64_t *ga, const int64_t *gb, const int64_t *pid,
                   const int64_t *ts_a, const int64_t *ts_b, long npairs, int64_t *cnt,
                   int64_t *dmin, double *dmed, int64_t *tmp) {
    int64_t *at = tmp, *cur = tmp + npairs + 1, *d = tmp + 2 * (npairs + 1);
    memset(cnt, 0, sizeof(int64_t) * npairs);
    for (long k = 0; k < n; k++) cnt[pid[k]]++;
    at[0] = 0;
    for (long p = 0; p < npairs; p++) { at[p + 1] = at[p] + cnt[p]; cur[p] = at[p]; }
    for (long k = 0; k < n; k++) {
        if (k + 16 < n) {  /* the rows ahead: their times lie all over the columns */
            __builtin_prefetch(ts_a + ga[k + 16]);
            __builtin_prefetch(ts_b + gb[k + 16]);
        }
        d[cur[pid[k]]++] = ts_b[gb[k]] - ts_a[ga[k]];
    }
    for (long p = 0; p < npairs; p++) {
        int64_t c = cnt[p], *x = d + at[p];
        if (!c) { dmin[p] = 0; dmed[p] = 0.0; continue; }
        int64_t m = x[0];
        for (int64_t i = 1; i < c; i++) if (x[i] < m) m = x[i];
        dmin[p] = m;
        int64_t k1 = (c - 1) / 2, v1 = select_i64(x, c, k1), v2 = v1;
        if (c / 2 != k1) {  /* even: the smallest above the lower middle */
            v2 = x[k1 + 1];
            for (int64_t i = k1 + 2; i < c; i++) if (x[i] < v2) v2 = x[i];
        }
        dmed[p] = (double)(v1 + v2) / 2;
    }
}
/* ---- col ---- */
/* header fields of matched packet pairs (row a[i] of one capture, b[i] of the other, pair
   p[i]), as match._field_rewrites compares them: dttl[i] the TTL decrement (int16); bits of
   what[i]: 1 DSCP, 2 TCP flags, 4 window, 8 MSS (SYN), 16 ack, and 32 where the TTL
   decrement is not an expected one: not among exp[0 .. nexp) when nexp >= 0, else not
   the pair's most common decrement (counts of 0..8 per pair in cnt, room for npairs * 9;
   ties: the smaller). Returns 1, bit 32 unset, when (nexp < 0) a decrement falls outside
   0..8: the caller judges the TTL then (match._ttl_off_mode). */
long hopcap_fields_ttl(const int64_t *a, const int64_t *b, const int64_t *p, long n,
                       const void *const *ca, const void *const *cb, const int64_t *delta,
                       const int64_t *ackd, int16_t *dttl, uint8_t *what, const int64_t *exp,
                       long nexp, long npairs, int64_t *cnt) {
    const int16_t *ttl_a = ca[0], *tos_a = ca[1], *fl_a = ca[2];
    const int32_t *pl_a = ca[3], *win_a = ca[4], *mss_a = ca[5];
    const int64_t *seq_a = ca[6], *ack_a = ca[7];
    const int16_t *ttl_b = cb[0], *tos_b = cb[1], *fl_b = cb[2];
    const int32_t *pl_b = cb[3], *win_b = cb[4], *mss_b = cb[5];
    const int64_t *seq_b = cb[6], *ack_b = cb[7];
    const int64_t m32 = 0xFFFFFFFFLL;
    int mode = nexp < 0, out = 0;
    if (mode) memset(cnt, 0, sizeof(int64_t) * 9 * (size_t)npairs);
    for (long i = 0; i < n; i++) {
        int64_t x = a[i], y = b[i], k = p[i];
        if (i + 32 < n) { /* the rows ahead: their columns are far apart in memory */
            int64_t x2 = a[i + 32], y2 = b[i + 32];
            __builtin_prefetch(ttl_a + x2); __builtin_prefetch(tos_a + x2);
            __builtin_prefetch(fl_a + x2); __builtin_prefetch(pl_a + x2);
            __builtin_prefetch(win_a + x2); __builtin_prefetch(mss_a + x2);
            __builtin_prefetch(seq_a + x2); __builtin_prefetch(ack_a + x2);
            __builtin_prefetch(ttl_b + y2); __builtin_prefetch(tos_b + y2);
            __builtin_prefetch(fl_b + y2); __builtin_prefetch(pl_b + y2);
            __builtin_prefetch(win_b + y2); __builtin_prefetch(mss_b + y2);
            __builtin_prefetch(seq_b + y2); __builtin_prefetch(ack_b + y2);
        }
        int dt = (int)ttl_a[x] - (int)ttl_b[y];
        dttl[i] = (int16_t)dt;
        int w = 0;
        if ((tos_a[x] >> 2) != (tos_b[y] >> 2)) w |= 1;
        int fa = fl_a[x], fb = fl_b[y];
        int reseg = pl_a[x] != pl_b[y] || ((seq_a[x] + delta[k]) & m32) != seq_b[y];
        int keep = ~(8 | 64 | 128) & ~(reseg ? 1 : 0);
        if ((fa & keep) != (fb & keep)) w |= 2;
        if (win_a[x] != win_b[y] && !reseg) w |= 4;
        /* an MSS not captured (-2, reader.MSS_UNKNOWN) is not compared */
        if ((fa & 2) && mss_a[x] != mss_b[y] && mss_a[x] != -2 && mss_b[y] != -2) w |= 8;
        int64_t d = ackd[k];
        if ((fa & 16) && (fb & 16) && d >= 0 && ((ack_a[x] + d) & m32) != ack_b[y]) w |= 16;
        if (!mode) {
            int ok = 0;
            for (long j = 0; j < nexp; j++) if (dt == exp[j]) { ok = 1; break; }
            if (!ok) w |= 32;
        } else if (dt < 0 || dt > 8) {
            out = 1;
        } else {
            cnt[k * 9 + dt]++;
        }
        what[i] = (uint8_t)w;
    }
    if (!mode) return 0;
    if (out) return 1;
    for (long q = 0; q < npairs; q++) {  /* the mode of pair q into cnt[q * 9] */
        int64_t *c = cnt + q * 9;
        int m = 0;
        for (int j = 1; j < 9; j++) if (c[j] > c[m]) m = j;
        c[0] = m;
    }
    for (long i = 0; i < n; i++) if (dttl[i] != cnt[p[i] * 9]) what[i] |= 32;
    return 0;
}
/* ---- the bundle's merged.pcapng: enhanced packet blocks ----
   Packet i is record (off[i], cap[i]) of the mapped file bases[src[i]], written as one
   little-endian EPB (interface iface[i], nanoseconds ts[i] or 0 if negative, the original
   length at least the captured one) with the comment cbuf[coff[i] .. + clen[i]] as its
   opt_comment when clen[i] >= 0: byte for byte PcapngWriter.write_packet. `out` holds
   exactly the blocks' total size (the caller computes it); returns the bytes written. */
static inline void le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
long hopcap_epbs(const int64_t *bases, const int64_t *src, const int64_t *off,
                 const int64_t *cap, const int64_t *orig, const int64_t *ts,
                 const int64_t *iface, const uint8_t *cbuf, const int64_t *coff,
                 const int64_t *clen, long n, uint8_t *out) {
    uint8_t *p = out;
    for (long i = 0; i < n; i++) {
        const uint8_t *d = (const uint8_t *)(intptr_t)bases[src[i]] + off[i];
        uint32_t incl = (uint32_t)cap[i], pad = (4 - (incl & 3)) & 3;
        long cl = clen[i];
        uint32_t cpad = cl >= 0 ? (uint32_t)((4 - (cl & 3)) & 3) : 0;
        uint32_t opts = cl >= 0 ? 4 + (uint32_t)cl + cpad + 4 : 0;
        uint32_t total = 32 + incl + pad + opts;
        uint64_t t = ts[i] > 0 ? (uint64_t)ts[i] : 0;
        int64_t o = orig[i] > cap[i] ? orig[i] : cap[i];
        le32(p, 6); le32(p + 4, total); le32(p + 8, (uint32_t)iface[i]);
        le32(p + 12, (uint32_t)(t >> 32)); le32(p + 16, (uint32_t)t);
        le32(p + 20, incl); le32(p + 24, (uint32_t)o);
        memcpy(p + 28, d, incl);
        p += 28 + incl;
        memset(p, 0, pad);
        p += pad;
        if (cl >= 0) {
            p[0] = 1; p[1] = 0; p[2] = (uint8_t)cl; p[3] = (uint8_t)(cl >> 8);
            memcpy(p + 4, cbuf + coff[i], (size_t)cl);
            memset(p + 4 + cl, 0, cpad + 4);  /* the padding and opt_endofopt */
            p += 4 + cl + cpad + 4;
        }
        le32(p, total);
        p += 4;
    }
    return (long)(p - out);
}
/* Exact copies (hopcap.correlate.copies): row j is a copy when the latest earlier row
   (file order) with the same value in every column of `cols` and the same bytes in every
   region is still live (its time not older than 2 * win before the latest time so far)
   and within win of j's. A hash table (linear probing) of the live rows, one per key (the
   latest): the rows leave it in file order once stale (a stale row met before then is
   skipped, and its slot taken). The hash takes the first `nhash` columns.
   A region: bytes at off[r] - (back ? back[r] : 0), len[r] long (3 columns each after
   the ncols, typed like them). out (all 0 on entry): 1 for a copy; returns the copies,
   -1: no memory. */
#define CVAL_PASS(T) return *(const T *)p;
static inline int64_t cval(const void *c, int64_t kind, int64_t stride, long r) {
    const char *p = (const char *)c + r * stride;
    BY_WIDTH(kind, CVAL_PASS)
}
#define CV(a, i, r) cval(a[i], kind[i], stride[i], r)
static int same_row(const uint8_t *buf, const void *const *cols, const int64_t *kind,
                    const int64_t *stride, long ncols, long nreg, long a, long b) {
    for (long i = 0; i < ncols; i++)
        if (CV(cols, i, a) != CV(cols, i, b)) return 0;
    for (long g = 0; g < nreg; g++) {
        long i = ncols + 3 * g;
        int64_t la = CV(cols, i + 2, a), lb = CV(cols, i + 2, b);
        if (la != lb) return 0;
        int64_t oa = CV(cols, i, a), ob = CV(cols, i, b);
        if (cols[i + 1]) { oa -= CV(cols, i + 1, a); ob -= CV(cols, i + 1, b); }
        if (la > 0 && memcmp(buf + oa, buf + ob, (size_t)la)) return 0;
    }
    return 1;
}
/* the hashes of rows [r0, r0 + b) by their first nhash columns, into ring (mask: its
   size - 1; r0 and the size multiples of b's most), a column at a time (one switch on its
   width a block; a contiguous column's loop is a plain one the compiler unrolls) */
#define HASH_PASS(T) { const T *v = (const T *)(p + r0 * s); \
        if (s == (long)sizeof(T)) \
            for (long q = 0; q < b; q++) \
                o[q] = (o[q] ^ (uint64_t)(int64_t)v[q]) * 0x9E3779B97F4A7C15ULL; \
        else \
            for (long q = 0; q < b; q++) \
                o[q] = (o[q] ^ (uint64_t)(int64_t)*(const T *)((const char *)v + q * s)) * \
                       0x9E3779B97F4A7C15ULL; }
static void copies_hashes(const void *const *cols, const int64_t *kind, const int64_t *stride,
                          long nhash, long r0, long b, uint64_t *ring, long mask) {
    uint64_t *o = ring + (r0 & mask);
    memset(o, 0, (size_t)b * 8);
    for (long i = 0; i < nhash; i++) {
        const char *p = (const char *)cols[i];
        long s = stride[i];
        BY_WIDTH(kind[i], HASH_PASS)
    }
}
/* slots: hash, row (-1: empty), time */
typedef struct { uint64_t *h; int64_t *r, *t; long cap, n; } copies_tab;
static int copies_alloc(copies_tab *tb, long cap) {
    tb->h = malloc((size_t)cap * 8); tb->r = malloc((size_t)cap * 8);
    tb->t = malloc((size_t)cap * 8); tb->cap = cap; tb->n = 0;
    if (!tb->h || !tb->r || !tb->t) return 0;
    memset(tb->r, 0xFF, (size_t)cap * 8);
    return 1;
}
static void copies_free(copies_tab *tb) { free(tb->h); free(tb->r); free(tb->t); }
static void copies_put(copies_tab *tb, uint64_t h, int64_t r, int64_t t) {
    uint64_t m = (uint64_t)tb->cap - 1, k = hmix(h) & m;
    while (tb->r[k] >= 0) k = (k + 1) & m;
    tb->h[k] = h; tb->r[k] = r; tb->t[k] = t; tb->n++;
}
/* row r out of the table, if it is there (backward-shift deletion) */
static void copies_drop(copies_tab *tb, uint64_t h, int64_t r) {
    uint64_t m = (uint64_t)tb->cap - 1, i = hmix(h) & m;
    for (; tb->r[i] != r; i = (i + 1) & m)
        if (tb->r[i] < 0) return;
    tb->n--;
    for (uint64_t j = (i + 1) & m; tb->r[j] >= 0; j = (j + 1) & m) {
        uint64_t home = hmix(tb->h[j]) & m;
        /* j's entry may fill the hole at i when its home is not within (i, j] */
        if (((j - home) & m) >= ((j - i) & m)) {
            tb->h[i] = tb->h[j]; tb->r[i] = tb->r[j]; tb->t[i] = tb->t[j];
            i = j;
        }
    }
    tb->r[i] = -1;
}
/* the sieve's slots: a row's hash says which (at most 2 ** SIEVE_BITS) */
#define SIEVE_BITS 16
long hopcap_copies(const uint8_t *buf, const int64_t *ts, long n, const void *const *cols,
                   const int64_t *kind, const int64_t *stride, long ncols, long nhash, long nreg,
                   int64_t win, uint8_t *out) {
    long found = 0, front = 0, ring = 4 * KEY_BLOCK, any = 0;
    uint64_t sm = 1023;  /* (2 slots a row: a small table is cleared fast) */
    while (sm < (1UL << SIEVE_BITS) - 1 && (long)sm < 2 * n) sm = 2 * sm + 1;
    copies_tab tb = {NULL, NULL, NULL, 0, 0};
    int64_t runmax = INT64_MIN;
    /* (1) the sieve, a slot a row: its latest time, the tag (32 bits of the hash) of its
       latest row, and whether rows of another tag came since it was last quiet for
       2 * win (mark bit 2). A row comes within win of its slot's time, of the same tag or
       after another: its slot is marked (bit 1). Only the rows of marked slots can be
       copies (a copy and the row it copies have one hash: a slot quiet for 2 * win
       since that row means it is stale); a capture without copies (nor rows alike in the
       hashed columns) is done here, most with no slot marked */
    int64_t *last = malloc((size_t)(sm + 1) * 8);
    uint32_t *tag = malloc((size_t)(sm + 1) * 4);
    uint8_t *mark = calloc(sm + 1, 1);
    uint64_t *hr = malloc((size_t)ring * 8);
    if (!last || !tag || !mark || !hr) { found = -1; goto done; }
    memset(last, 0x80, (size_t)(sm + 1) * 8);  /* (a time before any) */
    for (long r0 = 0; r0 < n; r0 += KEY_BLOCK) {
        long b = n - r0 < KEY_BLOCK ? n - r0 : KEY_BLOCK;
        copies_hashes(cols, kind, stride, nhash, r0, b, hr, ring - 1);
        for (long j = r0; j < r0 + b; j++) {
            uint64_t h = hr[j & (ring - 1)], sl = hmix(h) & sm;
            uint32_t tg = (uint32_t)(h >> 32);
            int64_t tj = ts[j], l = last[sl];
            if (l < tj - 2 * win) {
                tag[sl] = tg; mark[sl] &= 1;
            } else {
                if (l >= tj - win && (tag[sl] == tg || (mark[sl] & 2))) { mark[sl] |= 1; any = 1; }
                if (tag[sl] != tg) { tag[sl] = tg; mark[sl] |= 2; }
            }
            if (tj > l) last[sl] = tj;
        }
    }
    if (!any) goto done;
    /* (2) the rows of marked slots, in file order: a hash table (linear probing) of the
       live ones, one per key (the latest); they leave it in file order once stale (a
       stale row met before then is skipped, and its slot taken). The hashes of the rows
       from `front` on are kept in a ring, grown to hold them all */
    if (!copies_alloc(&tb, 1024)) { found = -1; goto done; }
    for (long r0 = 0; r0 < n; r0 += KEY_BLOCK) {
        long b = n - r0 < KEY_BLOCK ? n - r0 : KEY_BLOCK;
        /* the stale rows out a block at a time too (the ring then holds a window) */
        for (; runmax != INT64_MIN && front < r0 && ts[front] < runmax - 2 * win; front++) {
            uint64_t hf = hr[front & (ring - 1)];
            if (mark[hmix(hf) & sm] & 1) copies_drop(&tb, hf, front);
        }
        while (r0 + b - front > ring) {
            uint64_t *nr = malloc((size_t)ring * 16);
            if (!nr) { found = -1; goto done; }
            for (long r = front; r < r0; r++) nr[r & (2 * ring - 1)] = hr[r & (ring - 1)];
            free(hr);
            hr = nr; ring *= 2;
        }
        copies_hashes(cols, kind, stride, nhash, r0, b, hr, ring - 1);
        for (long j = r0; j < r0 + b; j++) {
            int64_t lim = runmax == INT64_MIN ? INT64_MIN : runmax - 2 * win, tj = ts[j];
            uint64_t h = hr[j & (ring - 1)];
            if (tj > runmax) runmax = tj;
            if (!(mark[hmix(h) & sm] & 1)) continue;
            for (; front < j && ts[front] < lim; front++) {
                uint64_t hf = hr[front & (ring - 1)];
                if (mark[hmix(hf) & sm] & 1) copies_drop(&tb, hf, front);
            }
            if (4 * (tb.n + 1) > tb.cap) {  /* grown: 4 slots a row at least */
                copies_tab nt;
                if (!copies_alloc(&nt, tb.cap * 2)) { copies_free(&nt); found = -1; goto done; }
                for (long s = 0; s < tb.cap; s++)
                    if (tb.r[s] >= 0) copies_put(&nt, tb.h[s], tb.r[s], tb.t[s]);
                copies_free(&tb);
                tb = nt;
            }
            uint64_t m = (uint64_t)tb.cap - 1;
            long s = (long)(hmix(h) & m), free_s = -1, hit = -1;
            for (; tb.r[s] >= 0; s = (long)((uint64_t)(s + 1) & m)) {
                if (tb.t[s] < lim) { if (free_s < 0) free_s = s; }
                else if (tb.h[s] == h &&
                         same_row(buf, cols, kind, stride, ncols, nreg, tb.r[s], j)) {
                    hit = s; break;
                }
            }
            if (hit >= 0) {
                int64_t dt = tj - tb.t[hit];
                if (dt <= win && dt >= -win) { out[j] = 1; found++; }
                tb.r[hit] = j; tb.t[hit] = tj;
            } else if (free_s >= 0) {
                tb.h[free_s] = h; tb.r[free_s] = j; tb.t[free_s] = tj;
            } else {
                tb.h[s] = h; tb.r[s] = j; tb.t[s] = tj; tb.n++;
            }
        }
    }
done:
    copies_free(&tb);
    free(hr); free(last); free(tag); free(mark);
    return found;
}

/* tunnel.greedy: in time order each first i takes the earliest free second j at or after a
   pointer that only moves forward (past the seconds more than `jitter` before it), among at
   most `scan` from there and up to `window` after it, whose overhead (first - second length
   when the first is the outer one, else the reverse) is within [omin, omax]: out[i] = j, or
   -1; `used` marks the seconds taken. Returns the pointer. */
long hopcap_greedy(long n1, const int64_t *t1, const int64_t *l1, long n2, const int64_t *t2,
                   const int64_t *l2, int outer_first, uint8_t *used, int64_t jitter,
                   int64_t window, long scan, int64_t omin, int64_t omax, int64_t *out)
{
    long lo = 0;
    for (long i = 0; i < n1; i++) {
        int64_t t = t1[i];
        out[i] = -1;
        while (lo < n2 && t2[lo] < t - jitter)
            lo++;
        long stop = lo + scan < n2 ? lo + scan : n2;
        for (long j = lo; j < stop && t2[j] <= t + window; j++) {
            if (used[j])
                continue;
            int64_t ovh = outer_first ? l1[i] - l2[j] : l2[j] - l1[i];
            if (ovh >= omin && ovh <= omax) {
                used[j] = 1;
                out[i] = j;
                break;
            }
        }
    }
    return lo;
}
"""

# -O3: GCC vectorizes mix_rows' passes at -O3 only (index_halves 14 -> 11.5 ms a point of
# the 1.6 M-packet firewall pair; the record walk ~2 ms faster too)
CFLAGS = ("-O3",)
_lib: Any = None
_tried = False
disabled = False  # tests set this to compare the compiled and the numpy paths


def available() -> bool:
    return _load() is not None


def compiled(
    name: str,
    src: str,
    flags: Sequence[str] = CFLAGS,
    tag: str = "",
    build_flags: Callable[[], list[str] | None] | None = None,
) -> Path | None:
    """The shared library of C source `src` built with `flags` by the system's compiler,
    cached as `~/.cache/hopcap/<name>-<tag><checksums>.so` (built on first use; None: no
    compiler, or the build failed). The checksums of the flags and the source (and `tag`,
    e.g. an interpreter's ABI) name the build (zlib is loaded anyway; hashlib would load
    OpenSSL for this alone: 2.5 ms of every start). `build_flags`, asked only to build it:
    more flags (None: it cannot be built here)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    src_b = " ".join(flags).encode() + src.encode()
    tag = f"{tag}{zlib.crc32(src_b):08x}{zlib.adler32(src_b):08x}"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hopcap"
    so = cache / f"{name}-{tag}.so"
    if so.exists():
        return so
    import tempfile  # only to build it

    more = [] if build_flags is None else build_flags()
    if more is None:
        return None
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as td:
            c = Path(td) / f"{name}.c"
            c.write_text(src)
            tmp_so = Path(td) / f"{name}.so"
            subprocess.run(
                [cc, *flags, *more, "-shared", "-fPIC", "-o", str(tmp_so), str(c)],
                check=True,
                capture_output=True,
                timeout=60,
            )
            part = so.with_suffix(f".{os.getpid()}.part")
            shutil.copyfile(tmp_so, part)
            os.replace(part, so)  # atomic: a concurrent process sees all or nothing
    except (OSError, subprocess.SubprocessError):
        return None
    return so


def _load() -> Any:
    global _lib, _tried
    if disabled:
        return None
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("HOPCAP_NO_CC"):
        return None
    so = compiled("fastwalk", _SRC)
    if so is None:
        return None
    try:
        lib = ctypes.CDLL(str(so))
    except OSError:
        return None
    p = ctypes.c_void_p
    lib.hopcap_walk_pcap.restype = ctypes.c_long
    lib.hopcap_walk_pcap.argtypes = [
        p,
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_int,
        ctypes.c_long,
        ctypes.c_long,
        ctypes.c_long,
        p,
        p,
        p,
        p,
        ctypes.POINTER(ctypes.c_long),
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.hopcap_gather.restype = None
    lib.hopcap_gather.argtypes = [p, p, p, ctypes.c_long, ctypes.c_long, p]
    lib.hopcap_walk_parse.restype = ctypes.c_long
    lib.hopcap_walk_parse.argtypes = [
        p, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_long, ctypes.c_long,
        ctypes.c_long, ctypes.c_long, ctypes.c_long, p, p,
        ctypes.POINTER(ctypes.c_long), ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_long),
        p, ctypes.POINTER(ctypes.c_long),
    ]  # fmt: skip
    lib.hopcap_parse.restype = ctypes.c_long
    lib.hopcap_parse.argtypes = [
        p, p, p, p, ctypes.c_long, ctypes.c_long, p, p, p, ctypes.POINTER(ctypes.c_long)
    ]  # fmt: skip
    lib.hopcap_tuple_hashes.restype = None
    lib.hopcap_tuple_hashes.argtypes = [p, p, p, p, ctypes.c_long, p, p]
    lib.hopcap_find.restype = None
    lib.hopcap_find.argtypes = [p, p, p, p, ctypes.c_long, p]
    lib.hopcap_join.restype = ctypes.c_long
    lib.hopcap_join.argtypes = [p, ctypes.c_long, p, ctypes.c_long, p, p, ctypes.c_long, p, p]
    lib.hopcap_occ.restype = None
    lib.hopcap_occ.argtypes = [p, ctypes.c_long, p, p, ctypes.c_long, p]
    lib.hopcap_mix.restype = None
    lib.hopcap_mix.argtypes = [p, ctypes.c_long, ctypes.c_long, p]
    lib.hopcap_mix_typed.restype = None
    lib.hopcap_mix_typed.argtypes = [p, p, p, ctypes.c_long, ctypes.c_long, p]
    lib.hopcap_index_groups.restype = ctypes.c_long
    lib.hopcap_index_groups.argtypes = [p, p, p, ctypes.c_long, p, p, p]
    lib.hopcap_index_place.restype = ctypes.c_long
    lib.hopcap_index_place.argtypes = [p, ctypes.c_long, p, p, p, p, p, p, p, p, p, p, p, p]
    lib.hopcap_walk_pcapng.restype = ctypes.c_long
    lib.hopcap_walk_pcapng.argtypes = [
        p, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_long, p, ctypes.c_long,
        ctypes.c_long, p, p, p, p, p, p, ctypes.POINTER(ctypes.c_long),
    ]  # fmt: skip
    lib.hopcap_read_pcap.restype = None
    lib.hopcap_read_pcap.argtypes = [
        p, ctypes.c_long, ctypes.c_int, ctypes.c_long, ctypes.c_long, ctypes.c_long,
        ctypes.c_long, p, p, ctypes.c_long, p, ctypes.c_long, p,
    ]  # fmt: skip
    lib.hopcap_cmp.restype = None
    lib.hopcap_cmp.argtypes = [p, p, p, p, p, ctypes.c_long, p]
    lib.hopcap_epbs.restype = ctypes.c_long
    lib.hopcap_epbs.argtypes = [p] * 10 + [ctypes.c_long, p]
    lib.hopcap_copies.restype = ctypes.c_long
    lib.hopcap_copies.argtypes = [p, p, ctypes.c_long, p, p, p, ctypes.c_long, ctypes.c_long,
                                  ctypes.c_long, ctypes.c_int64, p]  # fmt: skip
    lib.hopcap_fields_ttl.restype = ctypes.c_long
    lib.hopcap_fields_ttl.argtypes = [p, p, p, ctypes.c_long, p, p, p, p, p, p, p,
                                      ctypes.c_long, ctypes.c_long, p]  # fmt: skip
    _lib = lib
    return lib


def _addr(buf: Any) -> tuple[int, npt.NDArray[np.uint8]]:
    arr: npt.NDArray[np.uint8] = np.frombuffer(buf, np.uint8)
    return int(arr.ctypes.data), arr


def walk_pcap(buf: Any, pos: int, big_endian: bool, mult: int, max_record: int, maxn: int) -> Any:
    """hopcap.capfile.walk.pcap_chunk in C: (offs, caps, ts_ns, stop byte, reason, original
    lengths) of at most `maxn` classic-pcap records from byte `pos`, or None when no
    accelerator is available. reason: 0 end of file, 1 truncated record, 2 corrupt record
    header, 3 `maxn` read."""
    lib = _load()
    if lib is None or len(buf) < 24:
        return None
    addr, keep = _addr(buf)
    offs = np.empty(maxn, np.int64)
    caps = np.empty(maxn, np.int64)
    ts = np.empty(maxn, np.int64)
    origs = np.empty(maxn, np.int64)
    pos_out = ctypes.c_long(0)
    why = ctypes.c_int(0)
    n = lib.hopcap_walk_pcap(
        addr, len(buf), pos, int(big_endian), mult, max_record, maxn, offs.ctypes.data,
        caps.ctypes.data, ts.ctypes.data, origs.ctypes.data, ctypes.byref(pos_out),
        ctypes.byref(why),
    )  # fmt: skip
    del keep
    cut = [x[:n].copy() for x in (offs, caps, ts, origs)]
    return cut[0], cut[1], cut[2], pos_out.value, why.value, cut[3]


def mix_columns(cols: tuple[Any, ...]) -> npt.NDArray[np.uint64] | None:
    """conns.mix in C (identical values); None without a compiler."""
    lib = _load()
    if lib is None:
        return None
    n = int(cols[0].shape[0])
    arrs = [np.asarray(c) for c in cols]
    if all(a.ndim == 1 and a.dtype.kind in "iub" for a in arrs):
        # every column read in place, at its own width and stride
        out = np.empty(n, np.uint64)
        if n:
            ptrs = (ctypes.c_void_p * len(arrs))(*[a.ctypes.data for a in arrs])
            kind = [-a.itemsize if a.dtype.kind == "i" else a.itemsize for a in arrs]
            ks = np.array([kind, [a.strides[0] for a in arrs]], np.int64)
            lib.hopcap_mix_typed(ctypes.cast(ptrs, ctypes.c_void_p), ks[0].ctypes.data,
                                 ks[1].ctypes.data, len(arrs), n, out.ctypes.data)  # fmt: skip
        del arrs
        return out
    keep = [
        np.ascontiguousarray(c.view(np.int64) if c.dtype == np.uint64 else c, np.int64)
        for c in cols
    ]
    ptrs = (ctypes.c_void_p * len(keep))(*[k.ctypes.data for k in keep])
    out = np.empty(n, np.uint64)
    if n:
        lib.hopcap_mix(ctypes.cast(ptrs, ctypes.c_void_p), len(keep), n, out.ctypes.data)
    del keep
    return out


def find_copies(
    buf: Any, ts: I64, arrs: Sequence[Any], ncols: int, nhash: int, win: int
) -> npt.NDArray[np.bool_] | None:
    """hopcap.correlate.copies' rule in C (`hopcap_copies`): the rows that are exact copies
    of an earlier one within `win` ns; None without a compiler. `arrs`: `ncols` integer
    columns of any width, read in place (the first `nhash` hashed), then (offset, back or
    None, length) columns of each region of bytes compared (at offset - back)."""
    lib = _load()
    if lib is None:
        return None
    n = int(ts.shape[0])
    out = np.zeros(n, np.uint8)
    if n < 2:
        return out.view(np.bool_)
    cols = [None if a is None else np.asarray(a) for a in arrs]
    tsc = np.ascontiguousarray(ts, np.int64)
    ptrs = (ctypes.c_void_p * len(cols))(*[None if a is None else a.ctypes.data for a in cols])
    kind = [0 if a is None else -a.itemsize if a.dtype.kind == "i" else a.itemsize for a in cols]
    ks = np.array([kind, [0 if a is None else a.strides[0] for a in cols]], np.int64)
    addr, keep = _addr(buf) if len(buf) else (0, None)
    nreg = (len(cols) - ncols) // 3
    got = lib.hopcap_copies(addr, tsc.ctypes.data, n, ctypes.cast(ptrs, ctypes.c_void_p),
                            ks[0].ctypes.data, ks[1].ctypes.data, ncols, nhash, nreg, win,
                            out.ctypes.data)  # fmt: skip
    del keep, cols
    if got < 0:
        raise MemoryError("hopcap_copies")
    return out.view(np.bool_)


def payloads_differ(
    buf_a: Any, off_a: I64, buf_b: Any, off_b: I64, length: I64
) -> npt.NDArray[np.bool_]:
    """For each i: do buf_a[off_a[i]:+length[i]] and buf_b[off_b[i]:+length[i]] differ?"""
    n = int(length.shape[0])
    out = np.zeros(n, np.uint8)
    if n == 0:
        return out.astype(bool)
    lib = _load()
    if lib is not None and len(buf_a) and len(buf_b):
        aa, ka = _addr(buf_a)
        ab, kb = _addr(buf_b)
        oa = np.ascontiguousarray(off_a, np.int64)
        ob = np.ascontiguousarray(off_b, np.int64)
        ln = np.ascontiguousarray(length, np.int64)
        lib.hopcap_cmp(aa, oa.ctypes.data, ab, ob.ctypes.data, ln.ctypes.data, n, out.ctypes.data)
        del ka, kb
        return out.astype(bool)
    for i, (x, y, m) in enumerate(
        zip(off_a.tolist(), off_b.tolist(), length.tolist(), strict=True)
    ):
        out[i] = buf_a[x : x + m] != buf_b[y : y + m]
    return out.astype(bool)


_FIELD_COLS = (
    ("ttl", np.int16), ("tos", np.int16), ("flags", np.int16), ("plen", np.int32),
    ("win", np.int32), ("mss", np.int32), ("seq", np.int64), ("ack", np.int64),
)  # fmt: skip


def epb_sizes(cap: I64, clen: I64) -> I64:
    """The size of each packet's enhanced packet block (`epb_blocks`)."""
    out: I64 = 32 + cap + (-cap % 4) + np.where(clen >= 0, 8 + clen + (-clen % 4), 0)
    return out


def epb_blocks(
    bases: Sequence[int],
    src: I64,
    off: I64,
    cap: I64,
    orig: I64,
    ts: I64,
    iface: I64,
    comments: bytes,
    coff: I64,
    clen: I64,
    out: npt.NDArray[np.uint8],
) -> int | None:
    """pcapng enhanced packet blocks, one a packet, as `PcapngWriter.write_packet` writes
    them, into `out` (at least their `epb_sizes`): packet i is the record (off[i],
    cap[i]) of the file mapped at address `bases[src[i]]`, with `comments[coff[i]:coff[i]
    + clen[i]]` (UTF-8) as its comment where clen[i] >= 0. The bytes written; None
    without the compiled helper."""
    lib = _load()
    if lib is None:
        return None
    b = np.array(bases, np.int64)
    cols = [np.ascontiguousarray(x, np.int64) for x in (src, off, cap, orig, ts, iface)]
    cb = np.frombuffer(comments or b"\0", np.uint8)
    co, cl = np.ascontiguousarray(coff, np.int64), np.ascontiguousarray(clen, np.int64)
    assert out.flags.c_contiguous and out.shape[0] >= int(epb_sizes(cols[2], cl).sum())
    n: int = lib.hopcap_epbs(
        b.ctypes.data, *[c.ctypes.data for c in cols], cb.ctypes.data, co.ctypes.data,
        cl.ctypes.data, int(src.shape[0]), out.ctypes.data,
    )  # fmt: skip
    return n


def gather_heads(buf: Any, offs: I64, caps: I64, head: int) -> npt.NDArray[np.uint8]:
    """The first `head` bytes of every record, zero-padded, as an (n, head) array."""
    n = int(offs.shape[0])
    out = np.zeros((n, head), np.uint8)
    if n == 0 or len(buf) == 0:
        return out
    lib = _load()
    if lib is not None:
        addr, keep = _addr(buf)
        o = np.ascontiguousarray(offs, np.int64)
        c = np.ascontiguousarray(caps, np.int64)
        lib.hopcap_gather(addr, o.ctypes.data, c.ctypes.data, n, head, out.ctypes.data)
        del keep
        return out
    u8: npt.NDArray[np.uint8] = np.frombuffer(buf, np.uint8)
    cols = np.arange(head, dtype=np.int64)
    size = u8.shape[0]
    # rows of a sliding window over the file: taking a row copies `head` contiguous bytes
    # (an element-wise gather would index every byte)
    whole = offs + head <= size
    if size >= head and whole.any():
        rows = np.nonzero(whole)[0]
        out[rows] = np.lib.stride_tricks.sliding_window_view(u8, head)[offs[rows]]
    for r in np.nonzero(~whole)[0].tolist():  # the last records of the file
        at = int(offs[r])
        out[r, : size - at] = u8[at:size]
    short = np.nonzero(caps < head)[0]  # bytes past a record's end are zero
    if short.shape[0]:
        out[short] *= (cols < caps[short, None]).astype(np.uint8)
    return out


PARSE_COLUMNS = ("v", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq", "ack",
                 "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap", "tsval",
                 "tsecr", "mss", "wscale", "opt_off", "opt_len", "tun")  # fmt: skip


def parse_records(
    buf: Any, offs: I64, caps: I64, links: I64, head: int
) -> tuple[I64, dict[str, I64], tuple[I64, I64, I64, I64]] | None:
    """Parse every record's headers in C: (record index of each TCP packet, its columns,
    (record index, IP header offset, L4 header offset, end of its data) of each
    UDP/ICMP/ESP datagram), or None without a compiler."""
    lib = _load()
    n = int(offs.shape[0])
    if lib is None or n == 0 or len(buf) == 0:
        return None
    addr, keep = _addr(buf)
    cols = np.empty((len(PARSE_COLUMNS), n), np.int64)
    rows = np.empty(n, np.int64)
    dg = np.empty((4, n), np.int64)
    nd = ctypes.c_long(0)
    o = np.ascontiguousarray(offs, np.int64)
    c = np.ascontiguousarray(caps, np.int64)
    lk = np.ascontiguousarray(links, np.int64)
    k = lib.hopcap_parse(
        addr,
        o.ctypes.data,
        c.ctypes.data,
        lk.ctypes.data,
        n,
        head,
        cols.ctypes.data,
        rows.ctypes.data,
        dg.ctypes.data,
        ctypes.byref(nd),
    )
    del keep
    m = nd.value
    return (
        rows[:k],
        {name: cols[i, :k] for i, name in enumerate(PARSE_COLUMNS)},
        (dg[0, :m].copy(), dg[1, :m].copy(), dg[2, :m].copy(), dg[3, :m].copy()),
    )


def tuple_hashes(
    buf: Any, offs: I64, caps: I64, links: I64
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]] | None:
    """The bundle merge's hash of each record's innermost TCP/UDP tuple (either way) and
    whether it has one (`hopcap_tuple_hashes`); None without a compiler."""
    lib = _load()
    n = int(offs.shape[0])
    if lib is None or n == 0 or len(buf) == 0:
        return None
    addr, keep = _addr(buf)
    out = np.empty(n, np.uint64)
    ok = np.empty(n, np.bool_)
    o, c, lk = (np.ascontiguousarray(x, np.int64) for x in (offs, caps, links))
    lib.hopcap_tuple_hashes(
        addr, o.ctypes.data, c.ctypes.data, lk.ctypes.data, n, out.ctypes.data, ok.ctypes.data
    )
    del keep
    return out, ok


def find_layers(buf: Any, offs: I64, caps: I64, links: I64) -> I64 | None:
    """The C twin of hopcap.capfile.layers.L3.find on whole records: an (n, 6) array of
    (innermost IP header, ethertype, next header, its protocol, data end, tun), offsets
    absolute, -1/0 where none; None without a compiler."""
    lib = _load()
    n = int(offs.shape[0])
    if lib is None or n == 0 or len(buf) == 0:
        return None
    addr, keep = _addr(buf)
    out = np.empty((n, 6), np.int64)
    o, c, lk = (np.ascontiguousarray(x, np.int64) for x in (offs, caps, links))
    lib.hopcap_find(addr, o.ctypes.data, c.ctypes.data, lk.ctypes.data, n, out.ctypes.data)
    del keep
    return out


def _table(n: int) -> tuple[npt.NDArray[np.uint64], I64, int]:
    cap = 1 << max(4, (2 * n).bit_length())
    return np.empty(cap, np.uint64), np.full(cap, -1, np.int64), cap


def hash_join(ha: npt.NDArray[np.uint64], hb: npt.NDArray[np.uint64]) -> tuple[I64, I64] | None:
    """(ia, ib) with ha[ia] == hb[ib] (first of equal keys in hb), in C; None without it."""
    lib = _load()
    if lib is None:
        return None
    a = np.ascontiguousarray(ha, np.uint64)
    b = np.ascontiguousarray(hb, np.uint64)
    tk, tv, cap = _table(int(b.shape[0]))
    ia = np.empty(a.shape[0], np.int64)
    ib = np.empty(a.shape[0], np.int64)
    k = lib.hopcap_join(a.ctypes.data, a.shape[0], b.ctypes.data, b.shape[0], tk.ctypes.data,
                        tv.ctypes.data, cap, ia.ctypes.data, ib.ctypes.data)  # fmt: skip
    return ia[:k], ib[:k]


def occurrences(k: npt.NDArray[np.uint64]) -> I64 | None:
    """For each row, how many earlier rows carry the same key (C); None without it."""
    lib = _load()
    if lib is None:
        return None
    a = np.ascontiguousarray(k, np.uint64)
    tk, tv, cap = _table(int(a.shape[0]))
    occ = np.empty(a.shape[0], np.int64)
    lib.hopcap_occ(a.ctypes.data, a.shape[0], tk.ctypes.data, tv.ctypes.data, cap, occ.ctypes.data)
    return occ


def walk_parse_pcap(
    buf: Any,
    big_endian: bool,
    mult: int,
    max_record: int,
    link: int,
    head: int,
    chunk: int,
    start: int = 24,
) -> Any:
    """Classic pcap in one C pass from byte `start` (a record's start): yields (records
    walked, ts of TCP rows, columns, datagrams, byte after the chunk) per chunk, then a
    final (stop byte, reason) tuple; None without a compiler.
    The arrays of a chunk are views of one buffer that the next chunk overwrites: copy what
    you keep. `datagrams`: (ts, IP header offset, L4 header offset, end of its data) of
    every UDP/ICMP/ESP record (the innermost IP level of a tunnel), copies."""
    lib = _load()
    if lib is None or len(buf) < 24:
        return None

    def gen() -> Any:
        addr, keep = _addr(buf)
        size = len(buf)
        pos = start
        # one buffer for every chunk (the reader copies what it keeps before the next)
        cols = np.empty((len(PARSE_COLUMNS), chunk), np.int64)
        ts = np.empty(chunk, np.int64)
        dg = np.empty((4, chunk), np.int64)
        while True:
            pos_out = ctypes.c_long(0)
            why = ctypes.c_int(0)
            nrec = ctypes.c_long(0)
            nd = ctypes.c_long(0)
            k = lib.hopcap_walk_parse(
                addr, size, pos, int(big_endian), mult, max_record, chunk, link, head,
                cols.ctypes.data, ts.ctypes.data, ctypes.byref(pos_out), ctypes.byref(why),
                ctypes.byref(nrec), dg.ctypes.data, ctypes.byref(nd),
            )  # fmt: skip
            m = nd.value
            yield (
                nrec.value,
                ts[:k],
                {name: cols[i, :k] for i, name in enumerate(PARSE_COLUMNS)},
                tuple(dg[i, :m].copy() for i in range(4)),
                pos_out.value,
            )
            pos = pos_out.value
            if why.value != 3:
                del keep
                yield (pos, why.value)
                return

    return gen()


def read_pcap(
    buf: Any, pcap: tuple[bool, int, int, int, int], out: list[Any], rows: int, dg: list[I64],
    state: I64,
) -> bool:  # fmt: skip
    """hopcap_read_pcap: classic pcap records (`pcap`: big endian, timestamp unit in ns,
    largest record, link type, header bytes parsed) from byte state[0] parsed straight
    into the columns `out` (reader._COLUMNS; None where a wide column is not given yet)
    of `rows` rows and the datagram columns `dg`; `state` (pos, records, rows,
    datagrams, reason) is updated in place. False without a compiler."""
    big_endian, mult, max_record, link, head = pcap
    lib = _load()
    if lib is None or len(buf) < 24:
        return False
    addr, keep = _addr(buf)
    ptrs = (ctypes.c_void_p * len(out))(*[None if a is None else a.ctypes.data for a in out])
    width = np.array([0 if a is None else a.itemsize for a in out], np.int64)
    dptr = (ctypes.c_void_p * 4)(*[a.ctypes.data for a in dg])
    lib.hopcap_read_pcap(
        addr, len(buf), int(big_endian), mult, max_record, link, head,
        ctypes.cast(ptrs, ctypes.c_void_p), width.ctypes.data, rows,
        ctypes.cast(dptr, ctypes.c_void_p), int(dg[0].shape[0]), state.ctypes.data,
    )  # fmt: skip
    del keep
    return True


def index_halves(
    tuple_cols: tuple[Any, ...], flags: Any, seq: Any, tsval: Any
) -> tuple[I64, I64, npt.NDArray[np.bool_], npt.NDArray[np.uint64]] | None:
    """conns._build_halves' index in two C passes (None without a compiler): the rows
    ordered as `np.argsort(mix(*tuple_cols), kind="stable")`, where each half starts in
    that order and whether it has a TSval (`conns._half_starts`), and the tuple key of each half,
    with no tuple key per row kept and no gather of a row's fields in `order`."""
    lib = _load()
    n = int(flags.shape[0])
    if lib is None or n >= 1 << 31:
        return None
    arrs = [np.asarray(c) for c in tuple_cols]
    if len(arrs) != 6 or not all(a.ndim == 1 and a.dtype.kind in "iub" for a in arrs):
        return None
    ptrs = (ctypes.c_void_p * 6)(*[a.ctypes.data for a in arrs])
    kind = [-a.itemsize if a.dtype.kind == "i" else a.itemsize for a in arrs]
    ks = np.array([kind, [a.strides[0] for a in arrs]], np.int64)
    gid = mapped_in(np.empty(n, np.int32))
    gkey, gcount = np.empty(n, np.uint64), np.empty(n, np.int64)  # only ng rows touched
    ng = lib.hopcap_index_groups(ctypes.cast(ptrs, ctypes.c_void_p), ks[0].ctypes.data,
                                 ks[1].ctypes.data, n, gid.ctypes.data, gkey.ctypes.data,
                                 gcount.ctypes.data)  # fmt: skip
    if ng < 0:
        return None
    gkey, gcount = gkey[:ng], gcount[:ng]
    by_key = np.argsort(gkey)  # distinct keys: any sort
    gstart = np.empty(ng, np.int64)
    gstart[by_key] = np.cumsum(gcount[by_key]) - gcount[by_key]
    at = gstart.copy()
    fl = np.ascontiguousarray(flags, np.int16)
    sq = np.ascontiguousarray(seq, np.int64)
    tv_ = np.ascontiguousarray(tsval, np.int64)
    last, cur, fin, pseq = np.empty((4, ng), np.int64)
    order = mapped_in(np.empty(n, np.int64))
    hstart = mapped_in(np.empty(n, np.int64))
    has = np.empty(n, np.uint8)
    nh = lib.hopcap_index_place(gid.ctypes.data, n, at.ctypes.data, gstart.ctypes.data,
                                fl.ctypes.data, sq.ctypes.data, tv_.ctypes.data, last.ctypes.data,
                                cur.ctypes.data, fin.ctypes.data, pseq.ctypes.data,
                                order.ctypes.data, hstart.ctypes.data, has.ctypes.data)  # fmt: skip
    del arrs
    o = np.argsort(hstart[:nh])  # distinct places
    starts = hstart[:nh][o]
    return order, starts, has[:nh][o].astype(bool), gkey[gid[order[starts]]]


def walk_pcapng(
    buf: Any, pos: int, big_endian: bool, max_record: int,
    ifaces: list[tuple[int, int, int, int, int]], maxn: int,
) -> tuple[tuple[I64, ...], int] | None:  # fmt: skip
    """hopcap_walk_pcapng: the enhanced packet blocks from byte `pos` (`ifaces`: the
    section's (link, snaplen, mul, div, tsoffset) as capfile.walk keeps them): (off, cap,
    ts, link, orig, iface) arrays and the block it stopped at; None without a compiler
    or when an interface's clock does not fit 64-bit arithmetic."""
    lib = _load()
    if lib is None or not ifaces or maxn <= 0:
        return None
    big = 1 << 62
    clocks = [(lk, mul, div, off) for lk, _snap, mul, div, off in ifaces]
    if not all(
        0 < mul < big and 0 < div < big and abs(off) < 1 << 32 for _, mul, div, off in clocks
    ):
        return None
    ifl = np.array(clocks, np.int64)
    addr, keep = _addr(buf)
    n = min(maxn, 1 << 12, (len(buf) - pos) // 32 + 1)  # called again while blocks come
    out = np.empty((6, n), np.int64)
    stop = ctypes.c_long(0)
    k = lib.hopcap_walk_pcapng(
        addr, len(buf), pos, int(big_endian), max_record, ifl.ctypes.data, ifl.shape[0], n,
        *(out[i].ctypes.data for i in range(6)), ctypes.byref(stop),
    )  # fmt: skip
    del keep
    return tuple(out[i, :k].copy() for i in range(6)), stop.value


# ---- mat ----

_MATCH_COLS = (
    ("seq", np.int64), ("plen", np.int32), ("flags", np.int16), ("tsval", np.int64),
    ("ipid", np.int32), ("pl_off", np.int64), ("pl_cap", np.int32),
)  # fmt: skip


def _match_lib() -> Any:
    """The library with the argument types of hopcap_mcore and hopcap_learn set."""
    lib = _load()
    if lib is not None and not getattr(lib, "_mat_ready", False):
        p = ctypes.c_void_p
        lib.hopcap_mcore.restype = ctypes.c_long
        lib.hopcap_mcore.argtypes = [ctypes.c_long, p, p, ctypes.c_long] + [p] * 36
        lib.hopcap_learn.restype = ctypes.c_long
        lib.hopcap_learn.argtypes = [ctypes.c_long, p, p, ctypes.c_long, p, p, p, p,
                                     ctypes.c_long, p, p]  # fmt: skip
        lib._mat_ready = True
    return lib


def _column_ptrs(t: Any, k: int) -> Any:
    """Pointers to the first `k` columns of _MATCH_COLS of table `t`; None when one has
    another type or layout."""
    cols = [getattr(t, c) for c, _t in _MATCH_COLS[:k]]
    for x, (_c, typ) in zip(cols, _MATCH_COLS, strict=False):
        if x.dtype != typ or not x.flags.c_contiguous:
            return None
    return (ctypes.c_void_p * k)(*[x.ctypes.data for x in cols]), cols


def _i64(*xs: Any) -> list[I64]:
    return [np.ascontiguousarray(x, np.int64) for x in xs]


def match_core(
    ta: Any, ra: I64, pid_a: I64, tb: Any, rb: I64, pid_b: I64, prm: Any
) -> dict[str, Any] | None:
    """match._Batch.of, _match_control and _match_exact_data of one batch in one C pass
    (hopcap_mcore): the batch's columns and marks by name, the control pairs (`cpa`,
    `cpb`), the exact data pairs (`epa`, `epb`) and whether their first `encmp` payload
    bytes differ (`ediff`); None without a compiler, with other column types, or an empty
    capture buffer."""
    lib = _match_lib()
    if lib is None or not len(ta.buf) or not len(tb.buf):
        return None
    got_a, got_b = _column_ptrs(ta, 7), _column_ptrs(tb, 7)
    if got_a is None or got_b is None:
        return None
    na, nb = int(ra.shape[0]), int(rb.shape[0])
    keep = _i64(ra, pid_a, rb, pid_b, prm.delta, prm.base)
    flags = [np.ascontiguousarray(x, np.bool_) for x in (prm.use_ts, prm.use_ipid)]
    out: dict[str, Any] = {}
    for name, n, typ in (
        ("seq_a", na, np.int64), ("sa", na, np.int64), ("sb", nb, np.int64),
        ("tva", na, np.int64), ("tvb", nb, np.int64), ("ida", na, np.int64),
        ("idb", nb, np.int64), ("pa", na, np.int32), ("pb", nb, np.int32),
        ("fa", na, np.int16), ("fb", nb, np.int16), ("ctl_a", na, np.bool_),
        ("ctl_b", nb, np.bool_), ("dat_a", na, np.bool_), ("dat_b", nb, np.bool_),
        ("mctl_a", na, np.bool_), ("mctl_b", nb, np.bool_), ("mdat_a", na, np.bool_),
        ("mdat_b", nb, np.bool_), ("cpa", na, np.int64), ("cpb", na, np.int64),
        ("epa", na, np.int64), ("epb", na, np.int64), ("ediff", na, np.bool_),
        ("encmp", na, np.int64),
    ):  # fmt: skip
        out[name] = (np.zeros if typ == np.bool_ else np.empty)(n + 1, typ)[:n]
    counts = np.zeros(2, np.int64)
    aa, ka = _addr(ta.buf)
    ab, kb = _addr(tb.buf)
    rc = lib.hopcap_mcore(
        na, keep[0].ctypes.data, keep[1].ctypes.data, nb, keep[2].ctypes.data,
        keep[3].ctypes.data, ctypes.cast(got_a[0], ctypes.c_void_p),
        ctypes.cast(got_b[0], ctypes.c_void_p), aa, ab, keep[4].ctypes.data,
        keep[5].ctypes.data, flags[0].ctypes.data, flags[1].ctypes.data,
        *(v.ctypes.data for v in out.values()), counts.ctypes.data,
    )  # fmt: skip
    del ka, kb, got_a, got_b
    if rc != 0:
        return None
    k1, k2 = int(counts[0]), int(counts[1])
    for name, k in (("cpa", k1), ("cpb", k1), ("epa", k2), ("epb", k2), ("ediff", k2),
                    ("encmp", k2)):  # fmt: skip
        out[name] = out[name][:k]
    return out


def learn_offsets(
    ta: Any, ra: I64, pid_a: I64, tb: Any, rb: I64, pid_b: I64, npairs: int
) -> tuple[I64, I64] | None:
    """match.learn_deltas up to its payload fallback in one C pass (hopcap_learn): the
    sequence offset (-1: unknown) and the vote (0 or 1) of every pair; None without a compiler,
    with other column types, or rows not grouped by pair in increasing order."""
    lib = _match_lib()
    if lib is None:
        return None
    got_a, got_b = _column_ptrs(ta, 5), _column_ptrs(tb, 5)
    if got_a is None or got_b is None:
        return None
    keep = _i64(ra, pid_a, rb, pid_b)
    delta = np.empty(npairs + 1, np.int64)[:npairs]
    votes = np.empty(npairs + 1, np.int64)[:npairs]
    rc = lib.hopcap_learn(
        int(ra.shape[0]), keep[0].ctypes.data, keep[1].ctypes.data, int(rb.shape[0]),
        keep[2].ctypes.data, keep[3].ctypes.data, ctypes.cast(got_a[0], ctypes.c_void_p),
        ctypes.cast(got_b[0], ctypes.c_void_p), npairs, delta.ctypes.data, votes.ctypes.data,
    )  # fmt: skip
    del got_a, got_b
    if rc != 0:
        return None
    return delta, votes


def fingerprint_rows(
    order: I64, start: I64, end: I64, flags: Any, tsval: Any, ipid: Any, seq: Any, limit: int
) -> tuple[I64, I64, I64, npt.NDArray[np.bool_], I64] | None:
    """conns.fingerprint_codes' TSval and ISN codes in one C pass (hopcap_fpcodes): (hid,
    code) sorted and distinct, TSval rows per half, whether it has a SYN, (half, row) of
    the SYN rows with an IP ID and no TSval, flat; None without a compiler or with other
    column types."""
    lib = _match_lib()
    if lib is None or limit > 4:
        return None
    cols = ((flags, np.int16), (tsval, np.int64), (ipid, np.int32), (seq, np.int64))
    if any(x.dtype != typ or not x.flags.c_contiguous for x, typ in cols):
        return None
    if not getattr(lib, "_mat_fp", False):
        p = ctypes.c_void_p
        lib.hopcap_fpcodes.restype = ctypes.c_long
        lib.hopcap_fpcodes.argtypes = [p, p, p, ctypes.c_long, p, p, p, p, ctypes.c_long] + [p] * 6
        lib._mat_fp = True
    nh = int(start.shape[0])
    o, st, en = _i64(order, start, end)
    oh = np.empty(12 * nh + 1, np.int64)
    oc = np.empty(12 * nh + 1, np.int64)
    n_ts = np.empty(nh + 1, np.int64)
    has = np.zeros(nh + 1, np.bool_)
    sid = np.empty(8 * nh + 1, np.int64)
    counts = np.zeros(1, np.int64)
    k = lib.hopcap_fpcodes(
        o.ctypes.data, st.ctypes.data, en.ctypes.data, nh, flags.ctypes.data, tsval.ctypes.data,
        ipid.ctypes.data, seq.ctypes.data, limit, oh.ctypes.data, oc.ctypes.data,
        n_ts.ctypes.data, has.ctypes.data, sid.ctypes.data, counts.ctypes.data,
    )  # fmt: skip
    return oh[:k].copy(), oc[:k].copy(), n_ts[:nh], has[:nh], sid[: 2 * int(counts[0])]


def same_keys(ka: Any, kb: Any) -> tuple[I64, I64] | None:
    """link._same_key in C (hopcap_samekey): every (i, j) with ka[i] == kb[j], by i then
    j; None without a compiler or unless both are 64-bit integers of one type."""
    lib = _match_lib()
    if lib is None or ka.dtype != kb.dtype or ka.dtype not in (np.int64, np.uint64):
        return None
    if not getattr(lib, "_mat_sk", False):
        p = ctypes.c_void_p
        lib.hopcap_samekey.restype = ctypes.c_long
        lib.hopcap_samekey.argtypes = [p, ctypes.c_long, p, ctypes.c_long, p, p, p]
        lib._mat_sk = True
    a = np.ascontiguousarray(ka).view(np.uint64)
    b = np.ascontiguousarray(kb).view(np.uint64)
    na, nb = int(a.shape[0]), int(b.shape[0])
    nxt = np.empty(nb + 1, np.int64)
    n = lib.hopcap_samekey(a.ctypes.data, na, b.ctypes.data, nb, nxt.ctypes.data, None, None)
    if n < 0:
        return None
    ia = np.empty(n + 1, np.int64)
    ib = np.empty(n + 1, np.int64)
    lib.hopcap_samekey(a.ctypes.data, na, b.ctypes.data, nb, nxt.ctypes.data, ia.ctypes.data,
                       ib.ctypes.data)  # fmt: skip
    return ia[:n], ib[:n]


def rows_of(hid: I64, start: I64, end: I64, order: I64) -> tuple[I64, I64] | None:
    """conns.PointConns.rows_of in C (hopcap_rowsof); None without a compiler."""
    lib = _match_lib()
    if lib is None:
        return None
    if not getattr(lib, "_mat_ro", False):
        p = ctypes.c_void_p
        lib.hopcap_rowsof.restype = ctypes.c_long
        lib.hopcap_rowsof.argtypes = [p, ctypes.c_long, p, p, p, p, p]
        lib._mat_ro = True
    h, st, en, o = _i64(hid, start, end, order)
    has = h >= 0
    total = int((en[h[has]] - st[h[has]]).sum())
    rows = np.empty(total + 1, np.int64)
    pos = np.empty(total + 1, np.int64)
    m = lib.hopcap_rowsof(h.ctypes.data, int(h.shape[0]), st.ctypes.data, en.ctypes.data,
                          o.ctypes.data, rows.ctypes.data, pos.ctypes.data)  # fmt: skip
    return rows[:m], pos[:m]


# ---- fin ----


def _fin_lib() -> Any:
    lib = _load()
    if lib is not None and not getattr(lib, "_fin_ready", False):
        p = ctypes.c_void_p
        lib.hopcap_fin_texts.restype = ctypes.c_long
        lib.hopcap_fin_texts.argtypes = [ctypes.c_long, *[p] * 8]
        lib.hopcap_fin_ends.restype = ctypes.c_long
        lib.hopcap_fin_ends.argtypes = [ctypes.c_long, p, p, p, p]
        lib._fin_ready = True
    return lib


def _lines(buf: Any, m: int, n: int) -> list[str]:
    out = ctypes.string_at(buf, m).decode("ascii").split("\n")
    out.pop()  # (after the last line's end)
    assert len(out) == n
    return out


def finding_texts(
    flags: Any, seq: Any, rel: Any, plen: Any, tsval: Any, v: Any, ipid: Any
) -> list[str] | None:
    """findings._rows_described's texts of rows (their columns) in C (hopcap_fin_texts);
    None without a compiler."""
    lib = _fin_lib()
    if lib is None:
        return None
    cols = _i64(flags, seq, rel, plen, tsval, v, ipid)
    n = int(cols[0].shape[0])
    buf = ctypes.create_string_buffer(136 * n + 1)  # (any int64 values)
    m = lib.hopcap_fin_texts(n, *[c.ctypes.data for c in cols], buf)
    return _lines(buf, m, n)


def endpoint_texts(v: Any, lo: Any, port: Any) -> list[str] | None:
    """findings._endpoints of rows (address family, address's low word, port) in C
    (hopcap_fin_ends): "a.b.c.d:port" for IPv4, "" for another; None without a compiler."""
    lib = _fin_lib()
    if lib is None:
        return None
    vv, pp = _i64(v, port)
    lw = np.ascontiguousarray(lo, np.uint64)
    n = int(vv.shape[0])
    buf = ctypes.create_string_buffer(37 * n + 1)  # (any int64 port)
    m = lib.hopcap_fin_ends(n, vv.ctypes.data, lw.ctypes.data, pp.ctypes.data, buf)
    return _lines(buf, m, n)


def pair_delays(
    ga: I64, gb: I64, pid: I64, ts_a: Any, ts_b: Any, npairs: int
) -> tuple[I64, I64, npt.NDArray[np.float64]] | None:
    """Per pair (0 .. npairs - 1) of the matched rows `ga` (upstream) and `gb`: how many,
    and the minimum and median of their delays ts_b[gb] - ts_a[ga] (0 for none), as
    match._results computes them (hopcap_delays); None without a compiler or with other
    column types."""
    lib = _load()
    if lib is None or ts_a.dtype != np.int64 or ts_b.dtype != np.int64:
        return None
    if not getattr(lib, "_half_dl", False):
        p = ctypes.c_void_p
        lib.hopcap_delays.restype = None
        lib.hopcap_delays.argtypes = [ctypes.c_long, p, p, p, p, p, ctypes.c_long, p, p, p, p]
        lib._half_dl = True
    n = int(ga.shape[0])
    a, b, k, ta, tb = _i64(ga, gb, pid, ts_a, ts_b)
    cnt = np.empty(npairs + 1, np.int64)
    dmin = np.empty(npairs + 1, np.int64)
    dmed = np.empty(npairs + 1, np.float64)
    tmp = np.empty(n + 2 * (npairs + 1), np.int64)
    lib.hopcap_delays(n, a.ctypes.data, b.ctypes.data, k.ctypes.data, ta.ctypes.data,
                      tb.ctypes.data, npairs, cnt.ctypes.data, dmin.ctypes.data,
                      dmed.ctypes.data, tmp.ctypes.data)  # fmt: skip
    return cnt[:npairs], dmin[:npairs], dmed[:npairs]


def greedy_pairs(
    first: tuple[I64, I64], second: tuple[I64, I64], outer_first: bool,
    used: npt.NDArray[np.bool_], bounds: tuple[int, int, int, int, int],
) -> tuple[I64, int] | None:  # fmt: skip
    """tunnel.greedy in C (hopcap_greedy): for each `first` (times, lengths) the `second`
    it takes, or -1, and the pointer; `used` updated in place; `bounds`: jitter, window,
    scan, least and most overhead. None without a compiler (or `used` not one contiguous
    array of bools: it is updated in place)."""
    lib = _load()
    if lib is None or used.dtype != np.bool_ or not used.flags.c_contiguous:
        return None
    if not getattr(lib, "_greedy", False):
        p, lg, i64 = ctypes.c_void_p, ctypes.c_long, ctypes.c_int64
        lib.hopcap_greedy.restype = lg
        lib.hopcap_greedy.argtypes = [lg, p, p, lg, p, p, ctypes.c_int, p, i64, i64, lg, i64,
                                      i64, p]  # fmt: skip
        lib._greedy = True
    t1, l1, t2, l2 = _i64(*first, *second)
    n1, n2 = int(t1.shape[0]), int(t2.shape[0])
    if used.shape[0] != n2:
        return None
    out = np.empty(n1, np.int64)
    jitter, window, scan, omin, omax = bounds
    lo = lib.hopcap_greedy(n1, t1.ctypes.data, l1.ctypes.data, n2, t2.ctypes.data,
                           l2.ctypes.data, int(outer_first), used.ctypes.data, jitter, window,
                           scan, omin, omax, out.ctypes.data)  # fmt: skip
    return out, int(lo)


def field_diffs_ttl(
    ta: Any, a: I64, tb: Any, b: I64, pid: I64, delta: I64, ack_delta: I64,
    ttl_expected: tuple[int, ...] | None,
) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8], bool] | None:  # fmt: skip
    """The header comparison of match._field_rewrites in one pass over matched pairs (rows
    `a` of `ta`, `b` of `tb`, pairs `pid`; hopcap_fields_ttl): the TTL decrements (int16), a
    bit per field that differs (32: the TTL, unless not judged), and whether the TTL was
    judged (not when a decrement lies outside 0..8 and no `ttl_expected`: see
    match._ttl_off_mode); None without a compiler or with other column types."""
    lib = _load()
    if lib is None:
        return None
    cols_a = [getattr(ta, c) for c, _t in _FIELD_COLS]
    cols_b = [getattr(tb, c) for c, _t in _FIELD_COLS]
    for x, y, (_c, t) in zip(cols_a, cols_b, _FIELD_COLS, strict=True):
        if x.dtype != t or y.dtype != t or not x.flags.c_contiguous or not y.flags.c_contiguous:
            return None
    n = int(a.shape[0])
    npairs = int(delta.shape[0])
    exp = np.array(ttl_expected if ttl_expected is not None else (0,), np.int64)
    keep = [np.ascontiguousarray(v, np.int64) for v in (a, b, pid, delta, ack_delta)]
    pa = (ctypes.c_void_p * 8)(*[x.ctypes.data for x in cols_a])
    pb = (ctypes.c_void_p * 8)(*[y.ctypes.data for y in cols_b])
    dttl = np.empty(n, np.int16)
    what = np.empty(n, np.uint8)
    cnt = np.empty(9 * npairs + 1, np.int64) if ttl_expected is None else exp
    rc = 0
    if n:
        rc = lib.hopcap_fields_ttl(
            *(k.ctypes.data for k in keep[:3]), n, ctypes.cast(pa, ctypes.c_void_p),
            ctypes.cast(pb, ctypes.c_void_p), keep[3].ctypes.data, keep[4].ctypes.data,
            dttl.ctypes.data, what.ctypes.data, exp.ctypes.data,
            len(ttl_expected) if ttl_expected is not None else -1, npairs, cnt.ctypes.data,
        )  # fmt: skip
    del keep, cols_a, cols_b
    return dttl, what, rc == 0
