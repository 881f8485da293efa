"""Proxied linking at scale: an L7 load balancer's front (lb:eth0) and back (lb:eth1).

Generates (struct, no scapy) two classic pcaps: N client connections of R keep-alive
requests each, and the proxy's backend connections, either a pool of P connections reused
for everyone's requests (HAProxy `http-reuse always`) or one backend connection per
client connection (no reuse), optionally with F5 BIG-IP trailers on every frame (the
flow ids link each pair exactly). X-Forwarded-For is inserted on the backend side. Runs
`hopcap.correlate.correlate` on both files for each N, checks every client flow got
exactly its own requests' exchanges, and prints the time per client connection against
the smallest N of the same mode in the same run: near-linear linking keeps that ratio
near 1.

    .venv/bin/python bench/proxy_bench.py [--conns 1000,2000,4000] [--requests 3] [--pool 16]
    .venv/bin/python bench/proxy_bench.py --same 40 [--conns 1000,4000,16000]

`--same K`: instead, the same request from one address (clients behind a NAT, a load
test), K client connections at once, each over a backend connection of its own: each
client flow must get one backend connection, none left over. With `--body KB`, the
answer is a download of that size, each backend connection at a rate of its own (with
stalls), every segment relayed to the client after it came (a parallel `curl` of one
file through an L7 proxy): how often the pair chosen is the generator's own shows what
the answers' progress tells apart.

    .venv/bin/python bench/proxy_bench.py --same 40 --body 100 [--conns 400,1600]
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import tempfile
import time
from pathlib import Path

from hopcap.correlate import correlate
from hopcap.model import PointInput

T0 = 1_763_790_000 * 10**9
SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08


def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


class Conn:
    def __init__(self, src: str, sport: int, dst: str, dport: int, isn: int) -> None:
        self.ep = (_ip(src), sport, _ip(dst), dport)
        self.nxt = [isn & 0xFFFFFFFF, (isn * 7 + 12345) & 0xFFFFFFFF]
        self.ipid = [isn & 0xFFFF, (isn >> 16) & 0xFFFF]
        self.tsoff = [(isn * 31) & 0x7FFFFFFF, (isn * 17) & 0x7FFFFFFF]
        self.trailer = b""  # an F5 BIG-IP trailer appended to every frame

    def pkt(self, d: int, flags: int, t: int, data: bytes = b"") -> tuple[int, bytes]:
        src, sport, dst, dport = self.ep if d == 0 else (self.ep[2], self.ep[3], *self.ep[:2])
        seq, ack = self.nxt[d], self.nxt[1 - d]
        # NOP NOP Timestamps, as Linux sends on every packet
        ms = (t - T0) // 1_000_000
        tsval = (self.tsoff[d] + ms) & 0xFFFFFFFF
        tsecr = (self.tsoff[1 - d] + ms) & 0xFFFFFFFF if flags & ACK else 0
        opts = struct.pack(">BBBBII", 1, 1, 8, 10, tsval, tsecr)
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq, ack if flags & ACK else 0, 0x80,
                          flags, 502, 0, 0) + opts + data  # fmt: skip
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), self.ipid[d], 0x4000, 64, 6,
                         0, src, dst)  # fmt: skip
        self.ipid[d] = (self.ipid[d] + 1) & 0xFFFF
        self.nxt[d] = (seq + len(data) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        mac = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
        return t, mac + ip + tcp + self.trailer


def f5_trailer(flow: int, peer: int) -> bytes:
    """A BIG-IP 14.1+ trailer: low (TMM, VIP name) and medium (flow ids) noise TLVs."""
    vip = b"/Common/vs_bench"
    low = struct.pack(">HHHHBBBB", 1, 1, 12 + len(vip), 3, 1, 0, 0, len(vip)) + vip
    med = struct.pack(">HHHH", 1, 2, 40, 4) + struct.pack(">QQIIBBHHBB", flow, peer, 0, 0, 1,
                                                          0, 0, 1, 0, 0)  # fmt: skip
    return b"\xf5\xde\xb0\xf5" + struct.pack(">HH", 8 + len(low) + len(med), 1) + low + med


def generate(
    n: int, requests: int, pool: int, f5: bool = False
) -> tuple[list[tuple[int, bytes]], ...]:
    """(front packets, back packets) as (ts ns, frame); pool 0: a backend per client."""
    front: list[tuple[int, bytes]] = []
    back: list[tuple[int, bytes]] = []
    backs: list[Conn] = []

    def open_back(i: int, t: int) -> Conn:
        b = Conn("198.18.2.1", 20000 + i, "198.18.2.2", 8080, 0x5EED0000 + i * 7919)
        back.append(b.pkt(0, SYN, t))
        back.append(b.pkt(1, SYN | ACK, t + 10_000))
        back.append(b.pkt(0, ACK, t + 20_000))
        return b

    if pool:
        backs = [open_back(i, T0 - 1_000_000) for i in range(pool)]
    j = 0
    for c in range(n):
        client = f"203.0.113.{1 + c % 250}"
        f = Conn(client, 30000 + c % 30000, "203.0.113.80", 80, 0xC0FFEE + c * 104729)
        t = T0 + j * 250_000
        front.append(f.pkt(0, SYN, t))
        front.append(f.pkt(1, SYN | ACK, t + 5_000))
        front.append(f.pkt(0, ACK, t + 10_000))
        if f5 and not pool:
            f.trailer = f5_trailer(0x10000 + c, 0x20000 + c)
        b = backs[0] if pool else open_back(c, t + 15_000)
        if f5 and not pool:
            b.trailer = f5_trailer(0x20000 + c, 0x10000 + c)
        for r in range(requests):
            t = T0 + j * 250_000 + 50_000
            if pool:
                b = backs[j % pool]
            req = (f"GET /item/{c}/{r} HTTP/1.1\r\nHost: www.example.test\r\n"
                   "User-Agent: bench/1.0\r\nAccept: */*\r\n\r\n").encode()  # fmt: skip
            fwd = req.replace(b"\r\n\r\n", f"\r\nX-Forwarded-For: {client}\r\n\r\n".encode())
            body = f"<p>item {c}/{r}</p>\n".encode() * 8
            resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            front.append(f.pkt(0, PSH | ACK, t, req))
            back.append(b.pkt(0, PSH | ACK, t + 20_000, fwd))
            back.append(b.pkt(1, PSH | ACK, t + 80_000, resp))
            back.append(b.pkt(0, ACK, t + 90_000))
            front.append(f.pkt(1, PSH | ACK, t + 100_000, resp))
            front.append(f.pkt(0, ACK, t + 110_000))
            j += 1
        t = T0 + j * 250_000
        front.append(f.pkt(0, FIN | ACK, t - 100_000))
        front.append(f.pkt(1, FIN | ACK, t - 95_000))
        front.append(f.pkt(0, ACK, t - 90_000))
        if not pool:
            back.append(b.pkt(0, FIN | ACK, t - 80_000))
            back.append(b.pkt(1, FIN | ACK, t - 75_000))
            back.append(b.pkt(0, ACK, t - 70_000))
    front.sort(key=lambda x: x[0])
    back.sort(key=lambda x: x[0])
    return front, back


def generate_same(
    n: int, burst: int, seed: int = 1, body_kb: int = 0
) -> tuple[list[tuple[int, bytes]], ...]:
    """(front packets, back packets): `n` client connections from one address (a NAT),
    `burst` of them at once, each one GET of the same URL answered with the same body over
    a backend connection of its own (no reuse); the proxy's relay takes 20-400 us each way,
    and one backend connection in 20 opens a second late (its first SYN lost). `body_kb`:
    a download of that size instead of a small page (`_download`)."""
    rng = random.Random(seed)
    front: list[tuple[int, bytes]] = []
    back: list[tuple[int, bytes]] = []
    req = b"GET /big.bin HTTP/1.1\r\nHost: www.example.test\r\nAccept: */*\r\n\r\n"
    fwd = req.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: 203.0.113.7\r\n\r\n")
    body = b"<p>the same page</p>\n" * 40
    if body_kb:
        body = bytes(rng.randrange(256) for _ in range(1024)) * body_kb
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    for c in range(n):
        f = Conn("203.0.113.7", 10000 + c % 50000, "203.0.113.80", 80, 0xC0FFEE + c * 104729)
        t = T0 + (c // burst) * 20_000_000 + rng.randrange(0, 2_000_000)
        front.append(f.pkt(0, SYN, t))
        front.append(f.pkt(1, SYN | ACK, t + 5_000))
        front.append(f.pkt(0, ACK, t + 10_000))
        tr = t + 20_000
        front.append(f.pkt(0, PSH | ACK, tr, req))
        b = Conn("198.18.2.1", 20000 + c % 40000, "198.18.2.2", 8080, 0x5EED0000 + c * 7919)
        tb = tr + rng.randrange(20_000, 400_000)
        if rng.random() < 0.05:
            back.append(b.pkt(0, SYN, tb))
            b.nxt[0] = (b.nxt[0] - 1) & 0xFFFFFFFF  # (the same SYN again, a second later)
            tb += 1_000_000_000
        back.append(b.pkt(0, SYN, tb))
        back.append(b.pkt(1, SYN | ACK, tb + 50_000))
        back.append(b.pkt(0, ACK, tb + 60_000))
        back.append(b.pkt(0, PSH | ACK, tb + 70_000, fwd))
        ts = tb + 70_000 + rng.randrange(100_000, 2_000_000)
        if body_kb:
            ts, tf = _download(rng, f, b, resp, ts, front, back)
        else:
            back.append(b.pkt(1, PSH | ACK, ts, resp))
            back.append(b.pkt(0, ACK, ts + 10_000))
            tf = ts + rng.randrange(20_000, 400_000)
            front.append(f.pkt(1, PSH | ACK, tf, resp))
            front.append(f.pkt(0, ACK, tf + 10_000))
        for x, tx, pk in ((f, tf, front), (b, ts, back)):
            pk.append(x.pkt(0, FIN | ACK, tx + 1_000_000))
            pk.append(x.pkt(1, FIN | ACK, tx + 1_010_000))
            pk.append(x.pkt(0, ACK, tx + 1_020_000))
    front.sort(key=lambda x: x[0])
    back.sort(key=lambda x: x[0])
    return front, back


def _download(
    rng: random.Random,
    f: Conn,
    b: Conn,
    resp: bytes,
    t: int,
    front: list[tuple[int, bytes]],
    back: list[tuple[int, bytes]],
) -> tuple[int, int]:
    """`resp` in segments of 1,448 bytes from `t`: over the backend connection `b` at a
    rate of its own (5-50 MB/s, a stall of 1-20 ms after one segment in 40, as loss or a
    slow server makes), each relayed to the client over `f` 20-400 us after it came, an
    ACK every other segment each side. When the last segment came and left."""
    rate = rng.uniform(5, 50)  # MB/s: ns per byte = 1000 / rate
    tf = t
    for k, at in enumerate(range(0, len(resp), 1448)):
        seg = resp[at : at + 1448]
        t += int(len(seg) * 1000 / rate) + (
            rng.randrange(1, 20) * 1_000_000 if rng.random() < 1 / 40 else 0
        )
        back.append(b.pkt(1, ACK | (PSH if at + 1448 >= len(resp) else 0), t, seg))
        tf = max(tf, t) + rng.randrange(20_000, 400_000)
        front.append(f.pkt(1, ACK | (PSH if at + 1448 >= len(resp) else 0), tf, seg))
        if k % 2:
            back.append(b.pkt(0, ACK, t + 10_000))
            front.append(f.pkt(0, ACK, tf + 30_000))
    back.append(b.pkt(0, ACK, t + 10_000))
    front.append(f.pkt(0, ACK, tf + 30_000))
    return t, tf


def run_same(tmp: Path, n: int, burst: int, body_kb: int = 0) -> tuple[float, int]:
    """`generate_same` correlated: every client flow must have exactly one backend
    connection, each backend connection one client flow."""
    front, back = generate_same(n, burst, body_kb=body_kb)
    pts = [PointInput("lb:eth0", write(tmp / "front.pcap", front)),
           PointInput("lb:eth1", write(tmp / "back.pcap", back))]  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    v = correlate(pts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    fronts = [fl for fl in v.flows if fl.server == "203.0.113.80:80"]
    backs = [[leg.tuple for leg in fl.legs if leg.point == "lb:eth1"] for fl in fronts]
    bad = sum(1 for b in backs if len(b) != 1) + len(v.flows) - len(fronts)
    bad += n - len({b[0] for b in backs if len(b) == 1})
    # the generator's pairs (client port 10000 + c, backend port 20000 + c): by content
    # they are all alike, by time some are not told apart (not counted as wrong)
    exact = sum(
        1
        for fl, b in zip(fronts, backs, strict=True)
        if len(b) == 1
        and int(b[0].split(" > ")[0].rsplit(":", 1)[1]) - 20000
        == int(fl.client.rsplit(":", 1)[1]) - 10000
    )
    print(f"  {n:6d} conns, {burst} at once, {len(front) + len(back):7d} packets: wall "
          f"{wall:6.2f} s, cpu {cpu:6.2f} s, {1e3 * cpu / n:6.3f} ms cpu per conn; "
          f"wrong flows: {bad}; the generator's own pair: {exact} of {n}")  # fmt: skip
    return cpu, bad


def write(path: Path, pkts: list[tuple[int, bytes]]) -> Path:
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)]
    for ts, fr in pkts:
        out.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(fr), len(fr)) + fr)
    path.write_bytes(b"".join(out))
    return path


def run(
    tmp: Path, n: int, requests: int, pool: int, remark: bool = False, f5: bool = False
) -> tuple[float, int]:
    front, back = generate(n, requests, pool, f5)
    pts = [PointInput("lb:eth0", write(tmp / "front.pcap", front)),
           PointInput("lb:eth1", write(tmp / "back.pcap", back))]  # fmt: skip
    if remark:
        # the server's capture: every packet DSCP-remarked on the way (a rewrite on every
        # packet of the shared connections, each one the finding of the flow it carried)
        srv = [(t + 30_000, fr[:15] + b"\x20" + fr[16:]) for t, fr in back]
        pts.append(PointInput("srv:eth0", write(tmp / "srv.pcap", srv)))
    t0, c0 = time.perf_counter(), time.process_time()
    v = correlate(pts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # correctness: every client flow holds exactly its own requests' backend exchanges
    bad = 0
    fronts = [fl for fl in v.flows if fl.server == "203.0.113.80:80"]
    for fl in fronts:
        got = sum(
            len(leg.part.exchanges) if getattr(leg, "part", None) is not None else requests
            for leg in fl.legs
            if leg.point == "lb:eth1"
        )
        want = {"ip.dscp"} if remark else set()
        exact = not f5 or any(
            d.startswith("linked by the F5 trailer") for leg in fl.legs for d in leg.details
        )
        if got != requests or {f.field for f in fl.findings} != want or not exact:
            bad += 1
    bad += len(v.flows) - len(fronts)  # a flow of backend bytes no client claimed
    print(f"  {n:6d} conns, {len(front) + len(back):7d} packets: wall {wall:6.2f} s, cpu "
          f"{cpu:6.2f} s, {1e3 * cpu / n:6.3f} ms cpu per conn; wrong flows: {bad}")  # fmt: skip
    return cpu, bad


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--conns", default="1000,2000,4000")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument(
        "--same", type=int, default=0, metavar="K",
        help="instead: the same request from one address, K connections at once",
    )  # fmt: skip
    ap.add_argument(
        "--body", type=int, default=0, metavar="KB",
        help="with --same: the answer a download of KB kilobytes, relayed as it comes",
    )  # fmt: skip
    args = ap.parse_args()
    sizes = [int(x) for x in args.conns.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="hopcap-proxy-bench-") as d:
        if args.same:
            print(f"the same request, {args.same} connections at once, one backend each:")
            per: list[float] = []
            for n in sizes:
                cpu, bad = run_same(Path(d), n, args.same, args.body)
                per.append(cpu / n)
                failed += bad
            ratios = ", ".join(f"{sizes[i]}: {per[i] / per[0]:.2f}x" for i in range(len(sizes)))
            print(f"  cpu per connection against {sizes[0]} connections: {ratios}")
            return 1 if failed else 0
        for mode, pool, remark, f5 in (
            ("reused pool", args.pool, False, False),
            ("no reuse", 0, False, False),
            ("no reuse, F5 BIG-IP trailers on every frame", 0, False, True),
            ("reused pool, DSCP remarked behind the proxy", 4, True, False),
        ):
            label = f"{pool} backend connections" if pool else "one per client"
            print(f"{mode} ({label}), {args.requests} requests per client connection:")
            per = []
            for n in sizes:
                cpu, bad = run(Path(d), n, args.requests, pool, remark, f5)
                per.append(cpu / n)
                failed += bad
            ratios = ", ".join(f"{sizes[i]}: {per[i] / per[0]:.2f}x" for i in range(len(sizes)))
            print(f"  cpu per connection against {sizes[0]} connections: {ratios}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
