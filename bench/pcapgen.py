"""Vectorised classic-pcap writer shared by the benches (numpy, no scapy).

`write_pcap(path, v, payload)` writes one Ethernet/IPv4/TCP record per row of the columns in
`v` (nanosecond pcap): ts, plen, ipid, ttl, src, dst, sport, dport, seq, ack, flags, tsval,
tsecr and optionally mss (>= 0: a SYN-style option block MSS, SACK_PERM, TS, NOP, WS; else
NOP NOP TS) and win; with a `proto` column, its rows of 17 are UDP datagrams and those
of 50 ESP packets (SPI in `sport`, sequence number in `seq`; the other TCP columns
unused). `payload(buf, offsets, v)` fills the payload bytes (offsets of each
row's payload in `buf`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

Cols = dict[str, np.ndarray]


def _put(buf: np.ndarray, o: np.ndarray, val: np.ndarray, nbytes: int, big: bool) -> None:
    val = val.astype(np.uint64)
    for i in range(nbytes):
        shift = (nbytes - 1 - i) * 8 if big else i * 8
        buf[o + i] = ((val >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.uint8)


def put_be(buf: np.ndarray, o: np.ndarray, val: np.ndarray, nbytes: int) -> None:
    _put(buf, o, val, nbytes, True)


def write_pcap(path: Path, v: Cols, payload: Callable[[np.ndarray, np.ndarray, Cols], None]) -> int:
    n = v["ts"].shape[0]
    esp = v["proto"] == 50 if "proto" in v else np.zeros(n, bool)
    udp = (v["proto"] == 17) | esp if "proto" in v else np.zeros(n, bool)
    has_mss = (v["mss"] >= 0) & ~udp if "mss" in v else np.zeros(n, bool)
    thl = np.where(udp, 8, np.where(has_mss, 40, 32))
    cap = 14 + 20 + thl + v["plen"]
    size = 16 + cap
    off = np.zeros(n, np.int64)
    off[1:] = np.cumsum(size)[:-1]
    off += 24
    total = 24 + int(size.sum())
    buf = np.zeros(total, np.uint8)
    buf[:24] = np.frombuffer(
        np.array([0xA1B23C4D], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, 262144, 1], "<u4").tobytes(),
        np.uint8,
    )
    _put(buf, off, v["ts"] // 10**9, 4, False)
    _put(buf, off + 4, v["ts"] % 10**9, 4, False)
    _put(buf, off + 8, cap, 4, False)
    _put(buf, off + 12, cap, 4, False)
    e = off + 16
    buf[e + 12] = 0x08
    i = e + 14
    buf[i] = 0x45
    put_be(buf, i + 2, 20 + thl + v["plen"], 2)
    put_be(buf, i + 4, v["ipid"], 2)
    buf[i + 6] = 0x40
    put_be(buf, i + 8, v["ttl"], 1)
    buf[i + 9] = np.where(esp, 50, np.where(udp, 17, 6)).astype(np.uint8)
    put_be(buf, i + 12, v["src"], 4)
    put_be(buf, i + 16, v["dst"], 4)
    t = i + 20
    put_be(buf, t, v["sport"], 2)
    put_be(buf, t + 2, v["dport"], 2)
    dgram = udp & ~esp
    if dgram.any():  # UDP: length, no checksum
        put_be(buf, t[dgram] + 4, 8 + v["plen"][dgram], 2)
    if esp.any():  # ESP: SPI, sequence number
        put_be(buf, t[esp], v["sport"][esp], 4)
        put_be(buf, t[esp] + 4, v["seq"][esp], 4)
    tcp = ~udp
    tc = t[tcp]
    vt = {k: x[tcp] for k, x in v.items()} if udp.any() else v
    put_be(buf, tc + 4, vt["seq"], 4)
    put_be(buf, tc + 8, vt["ack"], 4)
    buf[tc + 12] = (thl[tcp] // 4 * 16).astype(np.uint8)
    put_be(buf, tc + 13, vt["flags"], 1)
    put_be(buf, tc + 14, vt["win"] if "win" in vt else np.full(tc.shape[0], 502), 2)
    o = tc + 20
    mss = has_mss[tcp]
    # plain: NOP NOP TS(10); SYN: MSS(4) SACK_PERM(2) TS(10) NOP WS(3)
    ts_at = np.where(mss, o + 6, o + 2)
    plain = o[~mss]
    buf[plain] = 1
    buf[plain + 1] = 1
    syn = o[mss]
    if syn.shape[0]:
        buf[syn] = 2
        buf[syn + 1] = 4
        put_be(buf, syn + 2, vt["mss"][mss], 2)
        buf[syn + 4] = 4
        buf[syn + 5] = 2
        buf[syn + 16] = 1
        buf[syn + 17] = 3
        buf[syn + 18] = 3
        buf[syn + 19] = 7
    buf[ts_at] = 8
    buf[ts_at + 1] = 10
    put_be(buf, ts_at + 2, vt["tsval"], 4)
    put_be(buf, ts_at + 6, vt["tsecr"], 4)
    payload(buf, t + thl, v)
    buf.tofile(str(path))
    return n
