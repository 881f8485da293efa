"""Optional compiled helpers: the classic-pcap record walk and payload comparison.

A Python loop over record headers tops out near 1 M records/s, which alone would use the
whole throughput budget. When a C compiler is present, a 40-line helper is compiled once
into the user's cache directory and loaded with ctypes; without one (or with
HOPCAP_NO_CC=1) the pure Python/numpy paths are used and give identical results.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

_SRC = r"""
#include <stdint.h>
#include <string.h>
static inline uint32_t rd32(const uint8_t *p, int be) {
    return be ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
              : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}
long hopcap_walk_pcap(const uint8_t *buf, long size, long pos, int be, long mult, long maxrec,
                      long maxn, int64_t *offs, int64_t *caps, int64_t *ts, long *pos_out,
                      int *reason) {
    long n = 0;
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
        offs[n] = pos + 16;
        caps[n] = cap;
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
/* Columns (each n long, int64): see PARSE_COLUMNS in _fastwalk.py */
/* returns 1: a TCP packet, columns written at row j; 2: a UDP/ICMP/ICMPv6/ESP datagram
   (not a later fragment), its IP and L4 header offsets in *o3, *o4; 0: anything else */
static int parse_one(const uint8_t *r, long cap, long link, long head, int64_t off,
                     int64_t *c, long n, long j, long *o3, long *o4) {
    long hc = cap < head ? cap : head;
    long l3 = -1;
    uint32_t et = 0;
    if (link == 1) {
        if (hc < 14) return 0;
        et = b16(r + 12);
        long pos = 14;
        for (int k = 0; k < 2; k++)
            if ((et == 0x8100 || et == 0x88A8 || et == 0x9100) && pos + 4 <= hc) {
                et = b16(r + pos + 2);
                pos += 4;
            }
        l3 = pos;
    } else if (link == 113) {
        if (hc < 16) return 0;
        et = b16(r + 14); l3 = 16;
    } else if (link == 276) {
        if (hc < 20) return 0;
        et = b16(r); l3 = 20;
    } else if (link == 101 || link == 12 || link == 14 || link == 228 || link == 229) {
        if (hc < 1) return 0;
        et = (r[0] >> 4) == 4 ? 0x0800 : (r[0] >> 4) == 6 ? 0x86DD : 0; l3 = 0;
    } else if (link == 0 || link == 108) {
        if (hc < 4) return 0;
        uint32_t fam = r[0] ? r[0] : r[3];
        et = fam == 2 ? 0x0800 : (fam == 24 || fam == 28 || fam == 30) ? 0x86DD : 0; l3 = 4;
    } else return 0;
    int v4 = 0;
    long l4;
    if (et == 0x0800) {
        if (l3 + 20 > hc || (r[l3] >> 4) != 4) return 0;
        long ihl = (r[l3] & 15) * 4;
        uint32_t pr = r[l3 + 9];
        if ((b16(r + l3 + 6) & 0x1FFF) != 0 || ihl < 20) return 0;
        if (pr != 6) {
            if (pr != 17 && pr != 1 && pr != 50) return 0;
            *o3 = l3; *o4 = l3 + ihl; return 2;
        }
        v4 = 1; l4 = l3 + ihl;
    } else if (et == 0x86DD) {
        if (l3 + 40 > hc || (r[l3] >> 4) != 6) return 0;
        uint32_t nh = r[l3 + 6];
        l4 = l3 + 40;
        for (int k = 0; k < 3; k++)
            if ((nh == 0 || nh == 43 || nh == 60) && l4 + 8 <= hc) {
                uint32_t nxt = r[l4];
                l4 += ((long)r[l4 + 1] + 1) * 8;
                nh = nxt;
            }
        if (nh != 6) {
            if (nh != 17 && nh != 58 && nh != 50) return 0;
            *o3 = l3; *o4 = l4; return 2;
        }
    } else return 0;
    if (l4 + 20 > hc) return 0;
    long doff = (r[l4 + 12] >> 4) * 4;
    if (doff < 20) return 0;
    long ip_end;
    uint32_t tot = b16(r + l3 + 2), pl6 = b16(r + l3 + 4);
    if (v4) {
        c[0 * n + j] = 4;
        c[1 * n + j] = 0; c[2 * n + j] = b32(r + l3 + 12);
        c[3 * n + j] = 0; c[4 * n + j] = b32(r + l3 + 16);
        ip_end = tot ? l3 + tot : cap;
        c[11 * n + j] = b16(r + l3 + 4);
        c[12 * n + j] = r[l3 + 8];
        c[13 * n + j] = r[l3 + 1];
    } else {
        c[0 * n + j] = 6;
        c[1 * n + j] = (int64_t)b64(r + l3 + 8); c[2 * n + j] = (int64_t)b64(r + l3 + 16);
        c[3 * n + j] = (int64_t)b64(r + l3 + 24); c[4 * n + j] = (int64_t)b64(r + l3 + 32);
        ip_end = pl6 ? l3 + 40 + pl6 : cap;
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
    long pe = ip_end < cap ? ip_end : cap;
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
    c[17 * n + j] = tsval; c[18 * n + j] = tsecr; c[19 * n + j] = mss; c[20 * n + j] = ws;
    c[21 * n + j] = off + l4 + 20;
    long ol = oend - (l4 + 20);
    c[22 * n + j] = ol > 0 ? ol : 0;
    return 1;
}
/* datagram side outputs (each maxn long): record index, absolute IP and L4 header offsets */
long hopcap_parse(const uint8_t *buf, const int64_t *offs, const int64_t *caps,
                  const int64_t *links, long n, long head, int64_t *c, int64_t *rows,
                  int64_t *d, long *nd) {
    long j = 0, k = 0, o3 = 0, o4 = 0;
    for (long i = 0; i < n; i++) {
        int got = parse_one(buf + offs[i], caps[i], links[i], head, offs[i], c, n, j, &o3, &o4);
        if (got == 1) rows[j++] = i;
        else if (got == 2) {
            d[k] = i; d[n + k] = offs[i] + o3; d[2 * n + k] = offs[i] + o4; k++;
        }
    }
    *nd = k;
    return j;
}
/* walk classic pcap records and parse them in one pass; returns TCP rows written */
long hopcap_walk_parse(const uint8_t *buf, long size, long pos, int be, long mult, long maxrec,
                       long maxn, long link, long head, int64_t *c, int64_t *ts,
                       long *pos_out, int *reason, long *nrec, int64_t *d, long *nd) {
    long n = 0, j = 0, k = 0, o3 = 0, o4 = 0;
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
        /* the walk is a chain of dependent loads (each header gives the next one's
           place): fetch the next header, and what lies just ahead, while this one is
           parsed */
        long nx = pos + 16 + (long)cap;
        if (nx + 128 < size) { __builtin_prefetch(buf + nx); __builtin_prefetch(buf + nx + 64); }
        if (pos + 4096 < size) {
            __builtin_prefetch(buf + pos + 1024); __builtin_prefetch(buf + pos + 2048);
        }
        int got = parse_one(buf + pos + 16, cap, link, head, pos + 16, c, maxn, j, &o3, &o4);
        if (got == 1) {
            ts[j] = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
            j++;
        } else if (got == 2) {
            /* a datagram: its timestamp, the IP and L4 header offsets, the record's end */
            d[k] = (int64_t)sec * 1000000000LL + (int64_t)frac * mult;
            d[maxn + k] = pos + 16 + o3; d[2 * maxn + k] = pos + 16 + o4;
            d[3 * maxn + k] = pos + 16 + (long)cap; k++;
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
void hopcap_mix(const int64_t *const *cols, long ncols, long n, uint64_t *out) {
    static const uint64_t pr[4] = {0x9E3779B97F4A7C15ULL, 0xC2B2AE3D27D4EB4FULL,
                                   0x165667B19E3779F9ULL, 0x27D4EB2F165667C5ULL};
    for (long r = 0; r < n; r++) {
        uint64_t h = 0;
        for (long i = 0; i < ncols; i++) {
            uint64_t x = (uint64_t)cols[i][r] * pr[i % 4] + (uint64_t)(i + 1);
            x ^= x >> 29;
            h = (h ^ x) * pr[0];
            h ^= h >> 32;
        }
        out[r] = h;
    }
}
void hopcap_cmp(const uint8_t *a, const int64_t *oa, const uint8_t *b, const int64_t *ob,
                const int64_t *len, long n, uint8_t *out) {
    for (long i = 0; i < n; i++) out[i] = memcmp(a + oa[i], b + ob[i], (size_t)len[i]) != 0;
}
"""

_lib: Any = None
_tried = False
disabled = False  # tests set this to compare the compiled and the numpy paths


def available() -> bool:
    return _load() is not None


def _load() -> Any:
    global _lib, _tried
    if disabled:
        return None
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("HOPCAP_NO_CC"):
        return None
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    tag = hashlib.sha256(_SRC.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hopcap"
    so = cache / f"fastwalk-{tag}.so"
    try:
        if not so.exists():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as td:
                src = Path(td) / "fastwalk.c"
                src.write_text(_SRC)
                tmp_so = Path(td) / "fastwalk.so"
                subprocess.run(
                    [cc, "-O2", "-shared", "-fPIC", "-o", str(tmp_so), str(src)],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
                part = so.with_suffix(f".{os.getpid()}.part")
                shutil.copyfile(tmp_so, part)
                os.replace(part, so)  # atomic: a concurrent process sees all or nothing
        lib = ctypes.CDLL(str(so))
    except (OSError, subprocess.SubprocessError):
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
    lib.hopcap_join.restype = ctypes.c_long
    lib.hopcap_join.argtypes = [p, ctypes.c_long, p, ctypes.c_long, p, p, ctypes.c_long, p, p]
    lib.hopcap_occ.restype = None
    lib.hopcap_occ.argtypes = [p, ctypes.c_long, p, p, ctypes.c_long, p]
    lib.hopcap_mix.restype = None
    lib.hopcap_mix.argtypes = [p, ctypes.c_long, ctypes.c_long, p]
    lib.hopcap_cmp.restype = None
    lib.hopcap_cmp.argtypes = [p, p, p, p, p, ctypes.c_long, p]
    _lib = lib
    return lib


def _addr(buf: Any) -> tuple[int, npt.NDArray[np.uint8]]:
    arr: npt.NDArray[np.uint8] = np.frombuffer(buf, np.uint8)
    return int(arr.ctypes.data), arr


def walk_pcap(buf: Any, big_endian: bool, mult: int, max_record: int) -> Any:
    """Return (offs, caps, ts_ns, stop_byte, reason) or None when no accelerator is available.
    reason: 0 end of file, 1 truncated record, 2 corrupt record header."""
    lib = _load()
    if lib is None or len(buf) < 24:
        return None
    addr, keep = _addr(buf)
    size = len(buf)
    pos = 24
    parts: list[tuple[I64, I64, I64]] = []
    chunk = max(1024, min(1 << 22, size // 60 + 1024))
    reason = 0
    while True:
        offs = np.empty(chunk, np.int64)
        caps = np.empty(chunk, np.int64)
        ts = np.empty(chunk, np.int64)
        pos_out = ctypes.c_long(0)
        why = ctypes.c_int(0)
        n = lib.hopcap_walk_pcap(
            addr,
            size,
            pos,
            int(big_endian),
            mult,
            max_record,
            chunk,
            offs.ctypes.data,
            caps.ctypes.data,
            ts.ctypes.data,
            ctypes.byref(pos_out),
            ctypes.byref(why),
        )
        parts.append((offs[:n], caps[:n], ts[:n]))
        pos = pos_out.value
        reason = why.value
        if reason != 3:
            break
    del keep
    if len(parts) == 1:
        o, c, t = parts[0]
        return o.copy(), c.copy(), t.copy(), pos, reason
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        pos,
        reason,
    )


def mix_columns(cols: tuple[Any, ...]) -> npt.NDArray[np.uint64] | None:
    """conns.mix in C (identical values); None without a compiler."""
    lib = _load()
    if lib is None:
        return None
    n = int(cols[0].shape[0])
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
    step = 1 << 14
    for s in range(0, n, step):
        o = offs[s : s + step, None] + cols
        valid = cols < caps[s : s + step, None]
        out[s : s + step] = np.where(valid, u8[np.minimum(o, u8.shape[0] - 1)], 0)
    return out


PARSE_COLUMNS = ("v", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "seq", "ack",
                 "flags", "win", "ipid", "ttl", "tos", "plen", "pl_off", "pl_cap", "tsval",
                 "tsecr", "mss", "wscale", "opt_off", "opt_len")  # fmt: skip


def parse_records(
    buf: Any, offs: I64, caps: I64, links: I64, head: int
) -> tuple[I64, dict[str, I64], tuple[I64, I64, I64]] | None:
    """Parse every record's headers in C: (record index of each TCP packet, its columns,
    (record index, IP header offset, L4 header offset) of each UDP/ICMP/ESP datagram), or
    None without a compiler."""
    lib = _load()
    n = int(offs.shape[0])
    if lib is None or n == 0 or len(buf) == 0:
        return None
    addr, keep = _addr(buf)
    cols = np.empty((len(PARSE_COLUMNS), n), np.int64)
    rows = np.empty(n, np.int64)
    dg = np.empty((3, n), np.int64)
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
        (dg[0, :m].copy(), dg[1, :m].copy(), dg[2, :m].copy()),
    )


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
    buf: Any, big_endian: bool, mult: int, max_record: int, link: int, head: int, chunk: int
) -> Any:
    """Classic pcap in one C pass: yields (records walked, ts of TCP rows, columns,
    datagrams) per chunk, then a final (stop byte, reason) tuple; None without a compiler.
    The arrays of a chunk are views of one buffer that the next chunk overwrites: copy what
    you keep. `datagrams`: (ts, IP header offset, L4 header offset, record end) of every
    UDP/ICMP/ESP record, copies."""
    lib = _load()
    if lib is None or len(buf) < 24:
        return None

    def gen() -> Any:
        addr, keep = _addr(buf)
        size = len(buf)
        pos = 24
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
            )
            pos = pos_out.value
            if why.value != 3:
                del keep
                yield (pos, why.value)
                return

    return gen()
