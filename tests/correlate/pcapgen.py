"""Test-pcap builders (scapy): one TCP conversation, rendered as seen at several points.

A `Conv` is the ground truth: the segments each endpoint sent, with realistic identity
fields (ISN, IP ID counter, TSval). `render()` turns it into the packets one capture point
saw, after whatever the path did before that point (NAT/PAT, sequence offsets, TTL
decrements, drops, TSO merging, injected packets, a clock offset), and `write()` stores
them as pcap (nanosecond timestamps) with Ethernet, Linux cooked (`-i any`) or raw IP.

Reusable by other packages' tests:

    conv = Conv(client=("203.0.113.10", 51234), server=("203.0.113.80", 80))
    conv.handshake(); conv.request(b"GET / HTTP/1.1\\r\\n\\r\\n"); conv.response(b"x" * 5000)
    conv.close()
    write(tmp / "a.pcap", render([conv], View()))
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

C2S = "c2s"
S2C = "s2c"


@dataclass
class Seg:
    d: str
    t: float
    flags: str
    seq: int
    ack: int
    data: bytes = b""
    ipid: int = 0
    tsval: int | None = None
    tsecr: int | None = None
    mss: int | None = None
    ttl: int = 64
    tos: int = 0
    win: int = 64240
    tag: str = ""
    conv: Conv | None = None
    sack: tuple[int, ...] = ()  # SACK blocks' edges (left, right, ...), absolute


class Conv:
    """One TCP connection's ground truth."""

    def __init__(
        self,
        client: tuple[str, int] = ("203.0.113.10", 51234),
        server: tuple[str, int] = ("203.0.113.80", 80),
        *,
        t0: float = 1_763_790_000.0,
        ts: bool = True,
        seed: int = 1,
        rtt: float = 0.002,
    ) -> None:
        rnd = random.Random(seed)
        self.client = client
        self.server = server
        self.v6 = ":" in client[0]
        self.t = t0
        self.rtt = rtt
        self.use_ts = ts
        self.isn = {C2S: rnd.randrange(1 << 32), S2C: rnd.randrange(1 << 32)}
        self.nxt = dict(self.isn)
        self.ipid = {C2S: rnd.randrange(1 << 16), S2C: 0}
        self.tsoff = {C2S: rnd.randrange(1 << 31), S2C: rnd.randrange(1 << 31)}
        self.t0 = t0
        self.segs: list[Seg] = []
        self.acked = {C2S: 0, S2C: 0}

    # ------------------------------------------------------------------ primitives
    def _tsval(self, d: str, t: float) -> int | None:
        if not self.use_ts:
            return None
        return (self.tsoff[d] + int((t - self.t0) * 1000)) & 0xFFFFFFFF

    def seg(
        self,
        d: str,
        flags: str,
        data: bytes = b"",
        *,
        dt: float = 0.0001,
        seq: int | None = None,
        tag: str = "",
        mss: int | None = None,
        advance: bool = True,
        ipid_step: int = 1,
    ) -> Seg:
        self.t += dt
        other = S2C if d == C2S else C2S
        s = Seg(
            d=d,
            t=self.t,
            flags=flags,
            seq=(self.nxt[d] if seq is None else seq) & 0xFFFFFFFF,
            ack=self.nxt[other] & 0xFFFFFFFF if "A" in flags else 0,
            data=data,
            ipid=self.ipid[d] & 0xFFFF,
            tsval=self._tsval(d, self.t),
            tsecr=(self._tsval(other, self.t - self.rtt) if "A" in flags else 0)
            if self.use_ts
            else None,
            mss=mss,
            tag=tag,
            conv=self,
        )
        self.ipid[d] += ipid_step
        if advance and seq is None:
            self.nxt[d] += len(data) + (1 if ("S" in flags or "F" in flags) else 0)
        self.segs.append(s)
        return s

    # ------------------------------------------------------------------ scenarios
    def handshake(self, *, answered: bool = True, syn_retries: int = 0) -> None:
        self.seg(C2S, "S", mss=1460, tag="syn", advance=False)
        for _ in range(syn_retries):
            self.seg(C2S, "S", mss=1460, tag="syn", dt=1.0, advance=False)
        self.nxt[C2S] += 1
        if not answered:
            return
        self.seg(S2C, "SA", mss=1460, tag="synack", dt=self.rtt / 2)
        self.seg(C2S, "A", tag="ack", dt=self.rtt / 2)

    def send(
        self,
        d: str,
        data: bytes,
        *,
        mss: int = 1448,
        tag: str = "data",
        burst: bool = True,
        resent: tuple[int, ...] = (),
        rto: float | None = None,
    ) -> list[Seg]:
        """Send `data` as MSS-sized segments in one burst (same TSval, consecutive IP IDs,
        like the pieces of one TSO super-packet); the receiver ACKs at the end. `resent`:
        the segments (by their place) lost on the way: sent again (tag "retrans"; `rto` s
        later, an RTT by default) before the receiver's ACK, which then covers them."""
        out = []
        for i in range(0, len(data), mss):
            out.append(self.seg(d, "PA" if i + mss >= len(data) else "A", data[i : i + mss],
                                tag=tag, dt=0.00001 if burst else 0.0002))  # fmt: skip
        for k in resent:
            self.retransmit(out[k], dt=self.rtt if rto is None else rto)
        other = S2C if d == C2S else C2S
        self.seg(other, "A", tag="ack", dt=self.rtt / 2)
        return out

    def request(self, data: bytes, resent: tuple[int, ...] = ()) -> list[Seg]:
        return self.send(C2S, data, tag="req", resent=resent)

    def response(self, data: bytes, resent: tuple[int, ...] = ()) -> list[Seg]:
        return self.send(S2C, data, tag="resp", resent=resent)

    def close(self) -> None:
        self.seg(C2S, "FA", tag="fin", dt=0.001)
        self.seg(S2C, "FA", tag="fin", dt=self.rtt / 2)
        self.seg(C2S, "A", tag="ack", dt=self.rtt / 2)

    def retransmit(self, s: Seg, *, dt: float = 0.2, tag: str = "retrans") -> Seg:
        """Send `s` again later (new IP ID, new TSval)."""
        return self.seg(s.d, s.flags, s.data, seq=s.seq, dt=dt, tag=tag, mss=s.mss)


# --------------------------------------------------------------------------- rendering


@dataclass
class View:
    """What the path did to the conversation before this capture point."""

    nat: dict[str, tuple[str, int, str, int]] = field(
        default_factory=dict
    )  # d -> src,sport,dst,dport
    seq_off: dict[str, int] = field(default_factory=dict)  # d -> added to seq (acks follow)
    ttl_dec: dict[str, int] = field(default_factory=dict)
    clock: float = 0.0  # this point's clock minus true time
    delay: float = 0.0  # one-way delay from the reference point (c2s later, s2c earlier)
    drop: Callable[[Seg], bool] | None = None
    tso: bool = False  # merge consecutive data segments of one burst into one packet
    change: Callable[[Seg], Seg] | None = None  # rewrite segments (after NAT)
    extra: list[Seg] = field(default_factory=list)  # injected segments (true times)


def _merge_tso(segs: list[Seg]) -> list[Seg]:
    out: list[Seg] = []
    for s in segs:
        p = out[-1] if out else None
        if (
            p is not None and s.data and p.data and p.d == s.d and p.tsval == s.tsval
            and p.conv is s.conv and (p.seq + len(p.data)) & 0xFFFFFFFF == s.seq
            and "S" not in p.flags and "F" not in p.flags and len(p.data) < 60000
        ):  # fmt: skip
            out[-1] = replace(p, data=p.data + s.data, flags=s.flags)
        else:
            out.append(s)
    return out


def render(convs: Iterable[Conv], view: View) -> list[tuple[float, Any]]:
    """Scapy packets (with their capture timestamps) as seen at one point."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    segs = sorted([s for c in convs for s in c.segs] + list(view.extra), key=lambda s: s.t)
    if view.drop is not None:
        segs = [s for s in segs if not view.drop(s)]
    if view.tso:
        segs = _merge_tso(segs)
    out: list[tuple[float, Any]] = []
    for s in segs:
        conv = s.conv
        assert conv is not None
        if s.d == C2S:
            src, sport, dst, dport = conv.client[0], conv.client[1], conv.server[0], conv.server[1]
        else:
            src, sport, dst, dport = conv.server[0], conv.server[1], conv.client[0], conv.client[1]
        if s.d in view.nat:
            src, sport, dst, dport = view.nat[s.d]
        other = S2C if s.d == C2S else C2S
        seq = (s.seq + view.seq_off.get(s.d, 0)) & 0xFFFFFFFF
        ack = (s.ack + view.seq_off.get(other, 0)) & 0xFFFFFFFF if "A" in s.flags else 0
        s2 = replace(s, seq=seq, ack=ack, ttl=s.ttl - view.ttl_dec.get(s.d, 0))
        if view.change is not None:
            s2 = view.change(s2)
        opts: list[Any] = []
        if s2.mss is not None:
            opts.append(("MSS", s2.mss))
            opts.append(("SAckOK", b""))
        if s2.tsval is not None:
            opts.append(("Timestamp", (s2.tsval, s2.tsecr or 0)))
        if s2.sack:
            off = view.seq_off.get(other, 0)
            opts += [("NOP", None), ("NOP", None),
                     ("SAck", tuple((x + off) & 0xFFFFFFFF for x in s2.sack))]  # fmt: skip
        if "S" in s2.flags:
            opts += [("NOP", None), ("WScale", 7)]
        tcp = TCP(sport=sport, dport=dport, seq=s2.seq, ack=s2.ack, flags=s2.flags,
                  window=s2.win, options=opts)  # fmt: skip
        if ":" in src:
            ip: Any = IPv6(src=src, dst=dst, hlim=s2.ttl, tc=s2.tos)
        else:
            ip = IP(src=src, dst=dst, id=s2.ipid, ttl=s2.ttl, tos=s2.tos, flags="DF")
        pkt = ip / tcp
        if s2.data:
            from scapy.packet import Raw

            pkt = pkt / Raw(s2.data)
        out.append((s.t + (view.delay if s.d == C2S else -view.delay) + view.clock, pkt))
    return out


def write(path: Path, pkts: list[tuple[float, Any]], *, link: str = "ether") -> Path:
    """Write packets as a nanosecond pcap; link: ether, sll (Linux cooked, -i any), raw."""
    from decimal import Decimal

    from scapy.layers.l2 import CookedLinux, Ether
    from scapy.utils import PcapWriter

    linktype = {"ether": 1, "sll": 113, "raw": 101}[link]
    w = PcapWriter(str(path), linktype=linktype, nano=True, sync=False)
    try:
        for t, p in pkts:
            if link == "ether":
                frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p
            elif link == "sll":
                frame = (
                    CookedLinux(
                        pkttype=0,
                        lladdrtype=1,
                        lladdrlen=6,
                        src=b"\x02\x00\x00\x00\x00\x01\x00\x00",
                    )
                    / p
                )
            else:
                frame = p
            frame.time = Decimal(repr(t))
            w.write(frame)
    finally:
        w.close()
    return path


# --------------------------------------------------------------------------- raw writers


def frame_bytes(pkt: Any, link: str = "ether", vlan: int | None = None) -> bytes:
    """The link-layer bytes of a scapy IP/IPv6 packet."""
    from scapy.layers.l2 import Dot1Q, Ether

    ip = bytes(pkt)
    v6 = (ip[0] >> 4) == 6
    et = 0x86DD if v6 else 0x0800
    if link == "ether":
        if vlan is not None:
            return bytes(
                Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=vlan) / pkt
            )
        return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=et)) + ip
    if link == "sll":
        return struct.pack(">HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", et) + ip
    if link == "sll2":
        return struct.pack(">HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + ip
    return ip


LINKTYPES = {"ether": 1, "sll": 113, "sll2": 276, "raw": 101, "ipv4": 228, "ipv6": 229}


def write_pcap_raw(
    path: Path,
    frames: list[tuple[int, bytes]],
    *,
    linktype: int = 1,
    big_endian: bool = False,
    nano: bool = True,
    snaplen: int = 262144,
) -> Path:
    """Classic pcap by hand: (timestamp ns, frame bytes) records, either byte order."""
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))
    for ts, fr in frames:
        sec, ns = divmod(ts, 1_000_000_000)
        frac = ns if nano else ns // 1000
        cap = fr[:snaplen]
        out += struct.pack(e + "IIII", sec, frac, len(cap), len(fr)) + cap
    path.write_bytes(bytes(out))
    return path


def write_pcapng_raw(
    path: Path,
    interfaces: list[tuple[int, int]],
    packets: list[tuple[int, int, bytes]],
    *,
    big_endian: bool = False,
    spb: bool = False,
    isb_drops: int | None = None,
) -> Path:
    """pcapng by hand: interfaces [(linktype, if_tsresol)], packets [(iface, ts ns, frame)].
    `spb` writes packets of interface 0 as simple packet blocks."""
    e = ">" if big_endian else "<"

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    out = bytearray(block(0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)))
    for link, res in interfaces:
        opts = (
            struct.pack(e + "HH", 9, 1) + bytes([res]) + b"\x00" * 3 + struct.pack(e + "HH", 0, 0)
        )
        out += block(1, struct.pack(e + "HHI", link, 0, 262144) + opts)
    for iface, ts, fr in packets:
        _, res = interfaces[iface]
        ticks = ts * (10 ** (res - 9)) if res >= 9 else ts // (10 ** (9 - res))
        if spb and iface == 0:
            out += block(3, struct.pack(e + "I", len(fr)) + fr)
        else:
            body = (
                struct.pack(e + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(fr), len(fr))
                + fr
            )
            out += block(6, body)
    if isb_drops is not None:
        opts = struct.pack(e + "HHQ", 5, 8, isb_drops) + struct.pack(e + "HH", 0, 0)
        out += block(5, struct.pack(e + "III", 0, 0, 0) + opts)
    path.write_bytes(bytes(out))
    return path


def as_two_points(in_pcap: Path, out_pcap: Path, tmp: Path) -> tuple[Path, Path]:
    """A middlebox's input and output captures (both directions in each, like Haka's test
    data) as two path points: point `in` sees what the client sent and what reached the
    client, point `out` what reached the server and what the server sent."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapReader

    def load(p: Path) -> tuple[int, list[tuple[int, bytes, bool]]]:
        rd = RawPcapReader(str(p))
        link = int(rd.linktype)
        nano = bool(getattr(rd, "nano", False))
        recs = []
        for data, meta in rd:
            ts = meta.sec * 1_000_000_000 + (meta.usec if nano else meta.usec * 1000)
            recs.append((ts, bytes(data)))
        rd.close()
        # tools that forge packets sometimes stamp them 0; keep them where the file has them
        fixed = []
        prev = None
        for ts, data in recs:
            if prev is not None and abs(ts - prev) > 86_400 * 1_000_000_000:
                ts = prev
            fixed.append((ts, data))
            prev = ts
        recs = fixed
        clients: set[tuple[str, int]] = set()
        parsed = []
        for ts, data in recs:
            try:
                pkt = Ether(data) if link == 1 else IP(data)
                ip = pkt.getlayer(IP) or pkt.getlayer(IPv6)
                tcp = pkt.getlayer(TCP) or pkt.getlayer(UDP)
                icmp = pkt.getlayer(ICMP)
            except Exception:  # a fuzzed packet scapy cannot dissect
                ip = tcp = icmp = None
            ep = (
                (ip.src, tcp.sport, ip.dst, tcp.dport)
                if ip is not None and tcp is not None
                else None
            )
            if ep and isinstance(tcp, TCP) and int(tcp.flags) & 0x12 == 0x02:
                clients.add((ep[0], ep[1]))
            if ip is not None and icmp is not None and int(icmp.type) in (0, 8):
                # echo: the requester is the client (the echo id stands for its port)
                ep = (ip.src, int(icmp.id), ip.dst, int(icmp.id))
                if int(icmp.type) == 8:
                    clients.add((ep[0], ep[1]))
            parsed.append((ts, data, ep))
        out = []
        for ts, data, ep in parsed:
            if ep is None or (ep[0], ep[1]) in clients:
                c2s = True
            elif (ep[2], ep[3]) in clients:
                c2s = False
            else:
                c2s = ep[1] > ep[3]
            out.append((ts, data, c2s))
        return link, out

    lin, rin = load(in_pcap)
    lout, rout = load(out_pcap)
    a = sorted(
        [(t, d) for t, d, c in rin if c] + [(t, d) for t, d, c in rout if not c], key=lambda x: x[0]
    )
    b = sorted(
        [(t, d) for t, d, c in rout if c] + [(t, d) for t, d, c in rin if not c], key=lambda x: x[0]
    )
    pa = write_pcap_raw(tmp / (in_pcap.name + ".in.pcap"), a, linktype=lin)
    pb = write_pcap_raw(tmp / (out_pcap.name + ".out.pcap"), b, linktype=lout)
    return pa, pb


# --------------------------------------------------------------------------- a busy firewall


def busy_firewall(
    out: Path, n: int, *, loss: float = 0.01, clamp: int = 1400, seed: int = 7
) -> tuple[Path, Path]:
    """`n` short HTTP-like connections through a masquerading firewall that clamps the MSS
    of the clients' SYNs to `clamp` and loses a share `loss` of the packets it forwards
    (the senders retransmit them 200 ms later). Returns the captures of its inside
    (`fw:eth0`) and outside (`fw:eth1`) interfaces."""
    rnd = random.Random(seed)
    convs: list[Conv] = []
    t0 = 1_763_790_000.0
    for i in range(n):
        c = Conv(
            client=(f"198.18.{1 + i // 250}.{1 + i % 250}", 20000 + i % 40000),
            server=("203.0.113.80", 80),
            t0=t0 + i * 0.004,
            seed=seed * 100_003 + i,
        )
        syn_lost = rnd.random() < loss
        c.handshake(syn_retries=1 if syn_lost else 0)
        if syn_lost:
            c.segs[0].tag = "lost"  # the client sends it again after 1 s
        hs = len(c.segs)
        c.request(b"GET /x HTTP/1.1\r\nHost: example\r\n\r\n")
        c.response(bytes(rnd.randrange(256) for _ in range(64)) * 40)  # 2,560 bytes
        c.close()
        for s in c.segs[hs:]:
            if rnd.random() < loss:
                s.tag = "lost"
                t = s.t + 0.2
                c.segs.append(
                    replace(
                        s, t=t, tag="retrans", ipid=c.ipid[s.d] & 0xFFFF, tsval=c._tsval(s.d, t)
                    )
                )
                c.ipid[s.d] += 1
        convs.append(c)

    def clamp_mss(s: Seg) -> Seg:
        return replace(s, mss=clamp) if s.d == C2S and s.mss is not None and s.mss > clamp else s

    nat = {}
    for i, c in enumerate(convs):
        pub = ("198.51.100.1", 1024 + (i * 7919) % 60000)
        nat[id(c)] = pub

    inside = View(drop=lambda s: s.tag == "lost" and s.d == S2C)
    p0 = write(out / "fw_eth0.pcap", render(convs, inside))
    # the outside: masqueraded (one public address, a port per connection), clamped, one
    # routed hop later, without what was lost inside
    pkts: list[tuple[float, Any]] = []
    for c in convs:
        pub = nat[id(c)]
        v = View(
            nat={C2S: (*pub, *c.server), S2C: (*c.server, *pub)},
            ttl_dec={C2S: 1},
            delay=0.0002,
            drop=lambda s: s.tag == "lost" and s.d == C2S,
            change=clamp_mss,
        )
        pkts += render([c], v)
    pkts.sort(key=lambda tp: tp[0])
    p1 = write(out / "fw_eth1.pcap", pkts)
    return p0, p1


# --------------------------------------------------------------------------- link types, tunnels

AF_INET6 = {"bsd": 24, "freebsd": 28, "darwin": 30}


def link_frame(
    ip: bytes, link: str, *, tags: tuple[int, ...] = (), mpls: int = 0
) -> tuple[int, bytes]:
    """(pcap link type, frame bytes) of an IPv4/IPv6 packet on one of many link layers.

    `tags`: TPIDs of VLAN tags outermost first (Ethernet); `mpls`: labels of an MPLS stack
    in front of the packet (Ethernet, PPP)."""
    v6 = (ip[0] >> 4) == 6
    et = 0x86DD if v6 else 0x0800
    ppp = 0x57 if v6 else 0x21
    if mpls:
        labels = b"".join(
            struct.pack(">I", (100 + i) << 12 | (1 << 8 if i == mpls - 1 else 0) | 64)
            for i in range(mpls)
        )
        ip, et, ppp = labels + ip, 0x8847, 0x281
    if link in ("ether", "pppoe"):
        body = ip
        if link == "pppoe":
            body = struct.pack(">BBHHH", 0x11, 0, 0x1234, len(ip) + 2, ppp) + ip
            et = 0x8864
        tagged = b""
        for i in range(len(tags)):
            nxt = tags[i + 1] if i + 1 < len(tags) else et
            tagged += struct.pack(">HH", 10 + i, nxt)
        first = tags[0] if tags else et
        mac = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
        return 1, mac + struct.pack(">H", first) + tagged + body
    if link == "ppp":  # RFC 1662 framing
        return 9, struct.pack(">BBH", 0xFF, 0x03, ppp) + ip
    if link == "ppp-bare":
        return 9, struct.pack(">H", ppp) + ip
    if link == "ppp-pfc":  # protocol field compression: one byte
        assert ppp < 0x100
        return 9, bytes([ppp]) + ip
    if link == "ppp-hdlc":
        return 50, struct.pack(">BBH", 0xFF, 0x03, ppp) + ip
    if link == "ppp-cisco":
        return 50, struct.pack(">BBH", 0x0F, 0x00, et) + ip
    if link == "chdlc":
        return 104, struct.pack(">BBH", 0x8F, 0x00, et) + ip
    if link.startswith(("null", "loop")):
        # null-le / null-be / loop, optionally -freebsd / -darwin for the AF_INET6 value
        kind, _, flavour = link.partition("-")
        endian = ">" if kind == "loop" or flavour == "be" else "<"
        af = AF_INET6.get(flavour if flavour not in ("le", "be") else "bsd", 24) if v6 else 2
        return (108 if kind == "loop" else 0), struct.pack(endian + "I", af) + ip
    raw = {"raw": 101, "raw12": 12, "raw14": 14, "ipv4": 228, "ipv6": 229}
    if link in raw:
        return raw[link], ip
    return LINKTYPES[link], frame_bytes_raw(ip, link)


def frame_bytes_raw(ip: bytes, link: str) -> bytes:
    """frame_bytes() for packet bytes rather than a scapy packet."""
    v6 = (ip[0] >> 4) == 6
    et = 0x86DD if v6 else 0x0800
    if link == "ether":
        return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + struct.pack(">H", et) + ip
    if link == "sll":
        return struct.pack(">HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", et) + ip
    if link == "sll2":
        return struct.pack(">HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + ip
    raise ValueError(link)


def encap(
    ip: bytes,
    kind: str,
    *,
    outer_v6: bool = False,
    vni: int = 42,
    key: int | None = None,
    seq: int | None = None,
    csum: bool = False,
    opts: bytes = b"",
    ttl: int = 7,
    tos: int = 0xB8,
    sport: int = 49152,
) -> bytes:
    """The IP packet `ip` inside a tunnel, as the outer IP packet's bytes (between the
    tunnel endpoints 192.0.2.1 -> 192.0.2.2 or 2001:db8:ffff::1 -> ::2). kind: gre, gretap,
    ipip (the IP-in-IP variant follows the versions), vxlan, vxlan8472, geneve,
    geneve-ip (protocol type IPv4/IPv6, no inner Ethernet), erspan1/2/3 (erspan3o: with
    type III's optional subheader)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import Raw

    v6 = (ip[0] >> 4) == 6
    et = 0x86DD if v6 else 0x0800
    ether = frame_bytes_raw(ip, "ether")
    if kind in ("gre", "gretap"):
        flags = (0x8000 if csum else 0) | (0x2000 if key is not None else 0)
        flags |= 0x1000 if seq is not None else 0
        hdr = struct.pack(">HH", flags, 0x6558 if kind == "gretap" else et)
        hdr += b"\x00" * 4 if csum else b""
        hdr += struct.pack(">I", key) if key is not None else b""
        hdr += struct.pack(">I", seq) if seq is not None else b""
        proto, payload = 47, hdr + (ether if kind == "gretap" else ip)
    elif kind in ("erspan1", "erspan2", "erspan3", "erspan3o"):
        # a switch's remote mirror: GRE (a sequence number from type II on), the ERSPAN
        # header of its type (session `vni`; type III's O flag: an 8-byte subheader), the
        # mirrored Ethernet frame
        t = int(kind[6])
        hdr = struct.pack(">HH", 0x1000 if t > 1 else 0, 0x22EB if t == 3 else 0x88BE)
        hdr += struct.pack(">I", seq or 0) if t > 1 else b""
        word0 = struct.pack(">HH", (1 if t == 2 else 2) << 12 | 10, vni & 0x3FF)
        if t == 2:
            hdr += word0 + struct.pack(">I", 0)
        elif t == 3:
            hdr += word0 + struct.pack(">IHH", 0x12345678, 0, 1 if kind.endswith("o") else 0)
            hdr += b"\xee" * 8 if kind.endswith("o") else b""
        proto, payload = 47, hdr + ether
    elif kind == "ipip":
        proto, payload = (41 if v6 else 4), ip
    elif kind in ("vxlan", "vxlan8472"):
        proto = 17
        payload = struct.pack(">BxxxI", 0x08, vni << 8) + ether
    elif kind in ("geneve", "geneve-ip"):
        assert len(opts) % 4 == 0
        pt = 0x6558 if kind == "geneve" else et
        proto = 17
        payload = struct.pack(">BBHI", len(opts) // 4, 0, pt, vni << 8) + opts
        payload += ether if kind == "geneve" else ip
    else:
        raise ValueError(kind)
    if proto == 17:
        dport = {"vxlan": 4789, "vxlan8472": 8472}.get(kind, 6081)
        inner: Any = UDP(sport=sport, dport=dport) / Raw(payload)
    else:
        inner = Raw(payload)
    if outer_v6:
        outer: Any = IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2", hlim=ttl, tc=tos)
        outer.nh = proto
    else:
        outer = IP(src="192.0.2.1", dst="192.0.2.2", ttl=ttl, tos=tos, proto=proto, id=0)
    return bytes(outer / inner)


# --------------------------------------------------------------------------- datagrams


@dataclass
class Dg:
    """One UDP datagram or ICMP echo message of a `UConv`."""

    d: str
    t: float
    data: bytes
    ipid: int
    seq: int = 0  # ICMP echo sequence
    ttl: int = 64
    tos: int = 0
    tag: str = ""
    conv: UConv | None = None


class UConv:
    """One UDP flow (proto "udp") or ping (proto "icmp", `sport` is the echo id)."""

    def __init__(
        self,
        client: tuple[str, int] = ("203.0.113.10", 40000),
        server: tuple[str, int] = ("203.0.113.80", 53),
        *,
        proto: str = "udp",
        t0: float = 1_763_790_000.0,
        seed: int = 1,
    ) -> None:
        rnd = random.Random(seed)
        self.client, self.server, self.proto = client, server, proto
        self.t = t0
        self.ipid = {C2S: rnd.randrange(1 << 16), S2C: rnd.randrange(1 << 16)}
        self.segs: list[Dg] = []
        self.rnd = rnd

    def send(self, d: str, data: bytes, *, dt: float = 0.001, tag: str = "", seq: int = 0) -> Dg:
        self.t += dt
        g = Dg(d, self.t, data, self.ipid[d] & 0xFFFF, seq=seq, tag=tag, conv=self)
        self.ipid[d] += 1
        self.segs.append(g)
        return g

    def ping(self, n: int, *, size: int = 56, answered: bool = True) -> None:
        for i in range(n):
            body = struct.pack(">d", self.t) + bytes((i + k) & 0xFF for k in range(size - 8))
            self.send(C2S, body, dt=0.2, tag="req", seq=i)
            if answered:
                self.send(S2C, body, dt=0.0005, tag="reply", seq=i)


def dns_query(qid: int, name: str, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + struct.pack(">HH", qtype, 1)


def dns_answer(query: bytes, addr: str) -> bytes:
    import ipaddress

    ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ipaddress.IPv4Address(addr).packed
    return query[:2] + b"\x81\x80" + query[4:6] + b"\x00\x01\x00\x00\x00\x00" + query[12:] + ans


def render_dgrams(convs: Iterable[UConv], view: View) -> list[tuple[float, Any]]:
    """Scapy packets of datagram conversations as seen at one point (`View` as for TCP:
    nat maps a direction to (src, sport, dst, dport), the echo id standing for the ports)."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.packet import Raw

    segs = sorted([s for c in convs for s in c.segs] + list(view.extra), key=lambda s: s.t)
    if view.drop is not None:
        segs = [s for s in segs if not view.drop(s)]
    out: list[tuple[float, Any]] = []
    for s in segs:
        conv = s.conv
        assert conv is not None
        if s.d == C2S:
            src, sport, dst, dport = conv.client[0], conv.client[1], conv.server[0], conv.server[1]
        else:
            src, sport, dst, dport = conv.server[0], conv.server[1], conv.client[0], conv.client[1]
        if s.d in view.nat:
            src, sport, dst, dport = view.nat[s.d]
        s2 = replace(s, ttl=s.ttl - view.ttl_dec.get(s.d, 0))
        if view.change is not None:
            s2 = view.change(s2)
        if ":" in src:
            from scapy.layers.inet6 import IPv6

            ip: Any = IPv6(src=src, dst=dst, hlim=s2.ttl, tc=s2.tos)
        else:
            ip = IP(src=src, dst=dst, id=s2.ipid, ttl=s2.ttl, tos=s2.tos)
        if conv.proto == "udp":
            pkt = ip / UDP(sport=sport, dport=dport) / Raw(s2.data)
        else:
            icmp = ICMP(type=8 if s.d == C2S else 0, id=sport if s.d == C2S else dport, seq=s2.seq)
            pkt = ip / icmp / Raw(s2.data)
        out.append((s.t + (view.delay if s.d == C2S else -view.delay) + view.clock, pkt))
    return out


def icmp_error(
    t: float,
    src: str,
    dst: str,
    quoted: Any,
    *,
    type: int = 3,
    code: int = 4,
    mtu: int = 0,
    ipid: int = 4321,
) -> tuple[float, Any]:
    """An ICMP error from `src` to `dst` quoting the IP header + 8 bytes of `quoted` (an
    ICMPv6 one, quoting as much as fits, when the addresses are IPv6: type 3 code 4 is
    packet too big, code 3 port unreachable, type 11 time exceeded)."""
    from scapy.layers.inet import ICMP, IP

    body = bytes(quoted)
    if ":" in src:
        from scapy.layers.inet6 import (
            ICMPv6DestUnreach,
            ICMPv6PacketTooBig,
            ICMPv6TimeExceeded,
            IPv6,
        )

        if type == 3 and code == 4:
            err: Any = ICMPv6PacketTooBig(mtu=mtu)
        elif type == 3:
            err = ICMPv6DestUnreach(code=4 if code == 3 else 1)
        else:
            err = ICMPv6TimeExceeded(code=code)
        return t, IPv6(src=src, dst=dst, hlim=64) / err / body[:1232]
    ihl = (body[0] & 0x0F) * 4
    icmp = ICMP(type=type, code=code, nexthopmtu=mtu) if type == 3 else ICMP(type=type, code=code)
    return t, IP(src=src, dst=dst, id=ipid, ttl=64) / icmp / body[: ihl + 8]
