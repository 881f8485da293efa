"""Capture reading per link layer and tunnel, as ratios against plain Ethernet in one go.

Writes one capture of N packets (the client point of correlate_bench's workload: TCP over
Ethernet, mixed sizes) and the same packets behind a VLAN tag, inside VXLAN and inside
GRE with a key, then times `read_capture` on each (best of --reps, CPU time) with the C
helper and, with --numpy, the numpy fallback. Prints packets/s and the ratio to plain
Ethernet: what decapsulation costs, and that plain Ethernet pays nothing for it.

    .venv/bin/python bench/reader_bench.py [--packets 1000000] [--dir /tmp/hopcap-rbench]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np


def derive(src: Path, dst: Path, kind: str) -> None:
    """`src` with every frame wrapped: vlan (one 802.1Q tag), vxlan (VNI 42), gre (key 7)."""
    from hopcap.correlate.reader import walk_records

    buf = src.read_bytes()
    rec = walk_records(src, buf)
    out = bytearray(buf[:24])
    eth = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    for off, cap, ts in zip(rec.off.tolist(), rec.cap.tolist(), rec.ts.tolist(), strict=True):
        fr = buf[off : off + cap]
        if kind == "vlan":
            new = fr[:12] + b"\x81\x00\x00\x2a" + fr[12:]
        else:
            if kind == "vxlan":
                tun = struct.pack(">HHHH", 49152, 4789, 8 + 8 + cap, 0) + b"\x08\x00\x00\x00"
                tun += struct.pack(">I", 42 << 8) + fr
                proto = 17
            else:
                tun = struct.pack(">HHI", 0x2000, 0x0800, 7) + fr[14:]
                proto = 47
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tun), 0, 0, 64, proto, 0,
                             bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))  # fmt: skip
            new = eth + b"\x08\x00" + ip + tun
        sec, ns = divmod(ts, 1_000_000_000)
        out += struct.pack("<IIII", sec, ns, len(new), len(new)) + new
    dst.write_bytes(bytes(out))


def best(path: Path, reps: int) -> tuple[float, int, int]:
    from hopcap.correlate import read_capture

    times = []
    for _ in range(reps):
        c0 = time.process_time()
        t = read_capture(path)
        times.append(time.process_time() - c0)
        n, tcp = t.records, len(t)
        t.close()
    return min(times), n, tcp


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-rbench"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--numpy", action="store_true", help="also time the numpy fallback")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "bench"))
    from correlate_bench import ground_truth, point_view, write_pcap

    from hopcap.correlate import _fastwalk

    args.dir.mkdir(parents=True, exist_ok=True)
    plain = args.dir / "ether.pcap"
    write_pcap(
        plain, point_view(ground_truth(args.packets), "client:eth0", np.random.default_rng(1))
    )
    files = {"ether": plain}
    for kind in ("vlan", "vxlan", "gre"):
        files[kind] = args.dir / f"{kind}.pcap"
        derive(plain, files[kind], kind)
    modes = [("C helper", False)] + ([("numpy", True)] if args.numpy else [])
    for label, disabled in modes:
        _fastwalk.disabled = disabled
        if not disabled and not _fastwalk.available():
            print("no C compiler: the C helper cannot be measured")
            continue
        base = 0.0
        for kind, f in files.items():
            secs, n, tcp = best(f, args.reps if not disabled else 1)
            assert tcp == n, (kind, tcp, n)  # every packet read, through every wrapping
            base = base or secs
            print(f"{label:9} {kind:6} {n / secs / 1e6:5.2f} M packets/s (CPU), "
                  f"{secs / base:4.2f}x the time of plain Ethernet")  # fmt: skip
    _fastwalk.disabled = False
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
