"""What the one-capture F5 split costs, as ratios against reading the same capture.

Writes an ordinary capture of N packets (correlate_bench's client point) and times (CPU,
best of --reps): `read_capture` of it, and `plan_stages` on it as a lone point (the F5
probe of its first 256 KiB: all an ordinary capture pays). Then the same packets with an
F5 DPT trailer after each (flow ids pairing every connection with a twin: both sides in
one file) and `plan_stages` on that (probe, read, trailers of every packet, split).

    .venv/bin/python bench/f5split_bench.py [--packets 200000] [--dir /tmp/hopcap-f5bench]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def with_trailers(src: Path, dst: Path) -> None:
    """`src` with a DPT trailer after every frame: the frame's connection (by its ports)
    is flow 2k+1 of the pair k, its twin (the next port's) flow 2k+2, peers of each other."""
    from hopcap.correlate.reader import walk_records

    buf = src.read_bytes()
    rec = walk_records(src, buf)
    out = bytearray(buf[:24])
    for off, cap, ts in zip(rec.off.tolist(), rec.cap.tolist(), rec.ts.tolist(), strict=True):
        fr = buf[off : off + cap]
        sport, dport = struct.unpack_from(">HH", fr, 14 + 20)
        port = min(sport, dport) if min(sport, dport) >= 1024 else max(sport, dport)
        flow = port + 1
        peer = port + 2 if port % 2 == 0 else port
        med = struct.pack(">QQIIBBHHB", flow, peer, 0, 0, 1, 0, 0, 1, 0) + b"\x00"
        tlv = struct.pack(">HHHH", 1, 2, len(med) + 8, 4) + med
        tr = b"\xf5\xde\xb0\xf5" + struct.pack(">HH", len(tlv) + 8, 1) + tlv
        fr += tr
        sec, ns = divmod(ts, 1_000_000_000)
        out += struct.pack("<IIII", sec, ns, len(fr), len(fr)) + fr
    dst.write_bytes(bytes(out))


def best(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-f5bench"))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "bench"))
    from correlate_bench import ground_truth, point_view, write_pcap

    from hopcap.correlate import read_capture
    from hopcap.correlate.stages import plan_stages
    from hopcap.model import PointInput

    args.dir.mkdir(parents=True, exist_ok=True)
    plain = args.dir / "plain.pcap"
    write_pcap(
        plain, point_view(ground_truth(args.packets), "client:eth0", np.random.default_rng(1))
    )
    f5 = args.dir / "f5.pcap"
    with_trailers(plain, f5)

    def read(p: Path) -> None:
        read_capture(p).close()

    def plan(p: Path) -> None:
        got = plan_stages([PointInput("lb", p)])
        for t in got.tables.values():
            t.close()

    base = best(lambda: read(plain), args.reps)
    probe = best(lambda: plan(plain), args.reps)
    f5read = best(lambda: read(f5), args.reps)
    split = best(lambda: plan(f5), args.reps)
    sp = plan_stages([PointInput("lb", f5)])
    assert [p.name for p in sp.points] == ["lb:client-side", "lb:server-side"], sp.points
    n = len(read_capture(plain))
    print(f"{n} packets: read_capture {n / base / 1e6:.2f} M packets/s (CPU)")
    print(f"ordinary capture: the F5 probe costs {probe / base:.3f}x its reading")
    print(f"F5 capture: probe + read + trailers + split {split / f5read:.2f}x its reading")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
