"""Three captures of a healthy proxied run on the Internet, with the Internet's noise
(scapy): client -> relay (a squid-like HTTP proxy) -> server.

Each noise pattern is one seen in real captures of relays and servers with public
addresses (the proxydetection dataset, measured by bench/noise_eval.py; its values' shape
is kept, the addresses are TEST-NET / 198.18.0.0/15):

- the client is a VM behind a user-mode NAT (VirtualBox): its connection reaches the relay
  as another TCP connection with the same bytes (a proxied link), and its clock is 0.45 s
  behind the relay's;
- the relay and the server each sit behind a cloud NAT (a private 198.18.0.x address,
  a public one the NAT maps to it, and a public one of their own that scanners hit);
- scanners' SYNs (IP ID 54321, no options, TTL 230-250) to the relay's and the server's
  own addresses, answered by the host's stack with RST, or SYN-ACK and the scanner's RST;
- one scanner's identical SYN (same source, ISN, IP ID 54321) to both hosts, each answering
  its own: the relay sooner, or a TTL higher at the server, or the SYN's TTL lower at the
  server while the answers' are not;
- two scanners' SYNs with the same unusual IP ID and MSS option, all four ports and the
  ISN different, one to each host;
- the relay's own DNS, the server's own NTP, pings to both;
- the proxy closing the client's connection with a FIN and then a RST to the client's FIN;
- with `unreachables=True`, UDP to closed ports answered by the capture host's own ICMP port
  unreachable: a scanner's datagram to a public address of the relay no TCP scan hit, and a
  tunnel's datagrams to the client (tinc's UDP through the user-mode NAT) after its daemon
  stopped, the errors sent as the relay's capture ended;
- with `link=True`, a connection between the server and the relay themselves (the
  server's ephemeral port to the relay's port 1234, through both cloud NATs), its SYN
  before the captures began: 34-byte messages both ways.

`write_run(dir)` writes client.pcap, relay.pcap and server.pcap; `drop_response=True`
loses one response segment of the backend connection between server and relay (it is
retransmitted): a real drop in the same captures; `refused=True`: the client still
sends a record after the proxy's FIN, and the proxy's RST refuses it (a reset).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from tests.correlate.pcapgen import C2S, S2C, Conv, View, icmp_error, render, write

T0 = 1_741_178_413.0
CLIENT = ("192.0.2.15", 39446)
RELAY_NAT = "198.51.100.195"  # the relay's address the client uses (cloud NAT)
RELAY = "198.18.0.5"  # the relay's private address
RELAY_PUB = "198.51.100.167"  # the relay's own public address
RELAY_ANCHOR = "198.51.100.170"  # another address of the relay: only a UDP scan hits it
SERVER_NAT = "198.51.100.119"  # the server's address the relay uses (cloud NAT)
SERVER = "198.18.0.6"
SERVER_PUB = "198.51.100.116"
VBOX_OUT = ("203.0.113.128", 47109)  # the client's NAT, as the relay sees it
TARGET = f"{SERVER_NAT}:8001"
CLIENT_SKEW = -0.45  # the client's clock minus the relay's

REQUEST = (
    f"GET http://{TARGET}/ HTTP/1.1\r\nHost: {TARGET}\r\nUser-Agent: curl/8.12.1\r\n"
    "Accept: */*\r\nProxy-Connection: Keep-Alive\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
).encode()
BACKEND_REQUEST = (
    f"GET / HTTP/1.1\r\nHost: {TARGET}\r\nUser-Agent: curl/8.12.1\r\nAccept: */*\r\n"
    "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nVia: 1.1 relay (squid/6.6)\r\n"
    f"X-Forwarded-For: {VBOX_OUT[0]}\r\n\r\n"
).encode()
UPGRADED = (
    b"HTTP/1.1 101 Switching Protocols\r\ndate: Wed, 05 Mar 2025 12:40:13 GMT\r\n"
    b"server: hypercorn-h11\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n"
)
SETTINGS = bytes.fromhex("00002a0400000000000001000010000002000000000004") + bytes(28)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000012040000000000000300000064")
PREFACE += bytes(64 - len(PREFACE))
SETTINGS_ACK = bytes.fromhex("000000040100000000")
PAGE = bytes.fromhex("00003c01040000000188") + b"Hello, HTTP2 with h2c upgrade!" * 3
GOAWAY = bytes.fromhex("0000110700000000000000000000000000") + b"shutdown\x00"


def _at(conv: Conv, t: float, d: str, flags: str, data: bytes = b"", **kw: Any) -> Any:
    conv.t = t
    return conv.seg(d, flags, data, dt=0.0, **kw)


def _h2c(conv: Conv, t: float, hs_rtt: float, turns: list[tuple[float, str, bytes]]) -> Conv:
    """Handshake at `t`, then each (time, direction, bytes), each ACKed 0.1 ms later."""
    _at(conv, t, C2S, "S", mss=1460)
    conv.nxt[C2S] += 1
    _at(conv, t + 0.0001, S2C, "SA", mss=1460)
    _at(conv, t + hs_rtt, C2S, "A")
    for at, d, data in turns:
        _at(conv, at, d, "PA", data)
        _at(conv, at + 0.0001, S2C if d == C2S else C2S, "A")
    return conv


def path_convs(drop_response: bool, refused: bool = False) -> tuple[Conv, Conv, Conv, list[Any]]:
    """The client's connection (at the client), the one the relay sees from the client's
    NAT, the relay's connection to the server (true times; the server sees it 1 ms later);
    the segments lost between server and relay."""
    a = Conv(CLIENT, (RELAY_NAT, 3128), seed=11, t0=T0)
    _h2c(a, T0, 0.0002, [
        (T0 + 0.0010, C2S, REQUEST), (T0 + 0.0690, S2C, UPGRADED), (T0 + 0.0693, C2S, PREFACE),
        (T0 + 0.0697, S2C, SETTINGS), (T0 + 0.0699, C2S, SETTINGS_ACK),
        (T0 + 0.1030, S2C, PAGE), (T0 + 0.1033, C2S, GOAWAY),
    ])  # fmt: skip
    _at(a, T0 + 0.1035, C2S, "FA")
    _at(a, T0 + 0.1335, S2C, "FA")
    _at(a, T0 + 0.1336, C2S, "A")
    b = Conv(VBOX_OUT, (RELAY, 3128), seed=12, t0=T0)
    _h2c(b, T0 + 0.015, 0.030, [
        (T0 + 0.0452, C2S, REQUEST), (T0 + 0.0540, S2C, UPGRADED + SETTINGS),
        (T0 + 0.0850, C2S, PREFACE + SETTINGS_ACK), (T0 + 0.0880, S2C, PAGE),
        (T0 + 0.1180, C2S, GOAWAY),
    ])  # fmt: skip
    # the proxy closes: its FIN, then a RST to the client's FIN (nothing of it unread);
    # `refused`: the client still sent data after the proxy's FIN, the RST refused it
    if refused:
        _at(b, T0 + 0.1184, S2C, "PA", GOAWAY)
    _at(b, T0 + 0.1185, S2C, "FA")
    if refused:
        _at(b, T0 + 0.1320, C2S, "PA", b"\x17\x03\x03\x00\x13" + bytes(19))
    _at(b, T0 + 0.1330, C2S, "FA")
    _at(b, T0 + 0.1331, S2C, "R", seq=b.nxt[S2C])
    c = Conv((RELAY, 40109), (SERVER_NAT, 8001), seed=13, t0=T0)
    _h2c(c, T0 + 0.046, 0.002, [
        (T0 + 0.0483, C2S, BACKEND_REQUEST), (T0 + 0.0533, S2C, UPGRADED + SETTINGS),
        (T0 + 0.0852, C2S, PREFACE + SETTINGS_ACK),
    ])  # fmt: skip
    page = _at(c, T0 + 0.0875, S2C, "PA", PAGE)
    lost = []
    if drop_response:
        lost.append(page)
        c.retransmit(page, dt=0.0003)  # the server's tail-loss probe, seen at both
    _at(c, T0 + 0.0879, C2S, "A")
    _at(c, T0 + 0.1182, C2S, "PA", GOAWAY)
    _at(c, T0 + 0.1183, C2S, "FA")
    _at(c, T0 + 0.1205, S2C, "FA")
    _at(c, T0 + 0.1206, C2S, "A")
    return a, b, c, lost


# --------------------------------------------------------------------------- the noise


def _tcp(t: float, src: str, sport: int, dst: str, dport: int, flags: str, seq: int,
         ack: int = 0, *, ipid: int = 0, ttl: int = 64, opts: list[Any] | None = None
         ) -> tuple[float, Any]:  # fmt: skip
    from scapy.layers.inet import IP, TCP

    ip = IP(src=src, dst=dst, id=ipid, ttl=ttl, flags=0 if ipid else "DF")
    return t, ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack,
                       window=0 if "R" in flags else 65535, options=opts or [])  # fmt: skip


def probe(t: float, scanner: tuple[str, int], host: tuple[str, int], isn: int, *, ttl: int,
          rtt: float = 40e-6, open_port: bool = False, ipid: int = 54321,
          opts: list[Any] | None = None) -> list[tuple[float, Any]]:  # fmt: skip
    """A scanner's SYN and the host's answer: RST,ACK (a closed port), or SYN-ACK and the
    scanner's RST (ZMap does not complete the handshake)."""
    (sa, sp), (ha, hp) = scanner, host
    out = [_tcp(t, sa, sp, ha, hp, "S", isn, ipid=ipid, ttl=ttl, opts=opts)]
    if open_port:
        out.append(_tcp(t + rtt, ha, hp, sa, sp, "SA", 0x5EED0000 + hp, isn + 1,
                        opts=[("MSS", 1460)]))  # fmt: skip
        out.append(_tcp(t + rtt + 0.030, sa, sp, ha, hp, "R", isn + 1, ipid=ipid, ttl=ttl))
    else:
        out.append(_tcp(t + rtt, ha, hp, sa, sp, "RA", 0, isn + 1))
    return out


def _udp(t: float, src: tuple[str, int], dst: tuple[str, int], data: bytes, ipid: int,
         ttl: int = 64) -> tuple[float, Any]:  # fmt: skip
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    return t, IP(src=src[0], dst=dst[0], id=ipid, ttl=ttl) / UDP(sport=src[1], dport=dst[1]) / Raw(
        data
    )


def _ping(t: float, src: str, dst: str, ident: int, n: int) -> list[tuple[float, Any]]:
    from scapy.layers.inet import ICMP, IP
    from scapy.packet import Raw

    out = []
    for i in range(n):
        # like ping: the send time first, then a fixed pattern
        body = struct.pack("<QQ", int(t + i), int((t + i) % 1 * 1e6)) + bytes(range(16, 48))
        out.append((t + i, IP(src=src, dst=dst, id=900 + i, ttl=52) / ICMP(type=8, id=ident,
                    seq=i) / Raw(body)))  # fmt: skip
        out.append((t + i + 0.0001, IP(src=dst, dst=src, id=0, ttl=64) / ICMP(type=0, id=ident,
                    seq=i) / Raw(body)))  # fmt: skip
    return out


def relay_noise() -> list[tuple[float, Any]]:
    from tests.correlate.pcapgen import dns_answer, dns_query

    q = dns_query(0x4D2, "deb.debian.org")
    return [
        *probe(T0 - 3.0, ("203.0.113.10", 41145), (RELAY, 8822), 0x1A2B3C4D, ttl=241),
        *probe(T0 + 0.2, ("203.0.113.11", 54038), (RELAY_PUB, 44223), 0x2B3C4D5E, ttl=238),
        *probe(
            T0 + 0.5, ("203.0.113.13", 60383), (RELAY_PUB, 445), 0x3C4D5E6F, ttl=244, open_port=True
        ),
        _udp(T0 - 1.0, (RELAY, 45000), ("198.51.100.53", 53), q, 31337),
        _udp(
            T0 - 0.98,
            ("198.51.100.53", 53),
            (RELAY, 45000),
            dns_answer(q, "192.0.2.200"),
            4242,
            ttl=58,
        ),
        *_ping(T0 - 2.0, "203.0.113.50", RELAY_PUB, 0x77, 2),
    ]


def server_noise() -> list[tuple[float, Any]]:
    ntp = bytes([0x23]) + bytes(47)
    return [
        *probe(T0 - 2.5, ("203.0.113.12", 39112), (SERVER_PUB, 8822), 0x4D5E6F70, ttl=239),
        *probe(
            T0 + 0.3, ("203.0.113.14", 51589), (SERVER, 6379), 0x5E6F7081, ttl=47, open_port=True
        ),
        _udp(T0 - 0.7, (SERVER, 123), ("198.51.100.123", 123), ntp, 7777),
        _udp(
            T0 - 0.69, ("198.51.100.123", 123), (SERVER, 123), bytes([0x24]) + bytes(47), 99, ttl=55
        ),
        *_ping(T0 - 1.5, "203.0.113.51", SERVER_PUB, 0x78, 3),
    ]


def twin_probes() -> tuple[list[tuple[float, Any]], list[tuple[float, Any]]]:
    """A scanner's identical SYNs to both hosts (same source, ISN, IP ID 54321, no options),
    each answered by its own host; and two scanners' SYNs with one unusual IP ID and an MSS
    option, every port and the ISN different. (relay's, server's)"""
    r: list[tuple[float, Any]] = []
    s: list[tuple[float, Any]] = []
    sc = ("203.0.113.20", 54094)
    # the server's TTL higher than the relay's (a packet's TTL never rises on a path)
    r += probe(T0 + 1.0, sc, (RELAY_PUB, 50159), 0x600DF00D, ttl=246, rtt=45e-6)
    s += probe(T0 + 1.0, sc, (SERVER_PUB, 50652), 0x600DF00D, ttl=247, rtt=60e-6)
    # equal TTLs; the relay answered sooner after the SYN than the server
    r += probe(T0 + 1.5, sc, (RELAY, 8728), 0x700DF00D, ttl=243, rtt=30e-6)
    s += probe(T0 + 1.5, sc, (SERVER, 8728), 0x700DF00D, ttl=243, rtt=80e-6)
    # the SYN's TTL lower at the server, the answers' the same
    r += probe(T0 + 2.0, sc, (RELAY, 34567), 0x800DF00D, ttl=250, rtt=70e-6, open_port=True)
    s += probe(T0 + 2.0, sc, (SERVER, 47305), 0x800DF00D, ttl=236, rtt=40e-6, open_port=True)
    # two scanners, one IP ID and MSS each, no port in common, other ISNs
    mss = [("MSS", 1460)]
    r += probe(T0 + 2.5, ("203.0.113.30", 50223), (RELAY, 49695), 0x11111111, ttl=248,
               rtt=60e-6, ipid=61000, opts=mss)  # fmt: skip
    s += probe(T0 + 2.5, ("203.0.113.31", 50517), (SERVER, 9585), 0x22222222, ttl=248,
               rtt=40e-6, ipid=61000, opts=mss)  # fmt: skip
    return r, s


def port_unreachables() -> tuple[list[tuple[float, Any]], list[tuple[float, Any]]]:
    """UDP to closed ports, answered by the host's own ICMP port unreachable (true times;
    the client's, the relay's). As in the dataset: a scanner's 29-byte probe to the relay
    (IP ID 54321, answered 46 us later), and the tunnel's last datagrams to the client
    through its NAT, refused as the relay's capture ends (the relay sees the client's side
    as VBOX_OUT)."""
    c: list[tuple[float, Any]] = []
    r: list[tuple[float, Any]] = []
    scan = _udp(T0 + 1.2, ("203.0.113.40", 60229), (RELAY_ANCHOR, 427), bytes(29), 54321, 247)
    r += [scan, icmp_error(T0 + 1.200046, RELAY_ANCHOR, "203.0.113.40", scan[1], code=3)]
    # the tunnel: datagrams both ways (client 655 <-> relay 655 through the NAT), then two
    # of the relay's the client refuses: the relay's last packets
    vpn = (VBOX_OUT[0], 9693)
    for i in range(3):
        t = T0 + 2.6 + i * 0.05
        body = bytes([i]) * 84
        c.append(_udp(t, (CLIENT[0], 655), (RELAY_NAT, 655), body, 0, 64))
        r.append(_udp(t + 0.02, vpn, (RELAY, 655), body, 0, 55))
        back = bytes([0x80 + i]) * 148
        r.append(_udp(t + 0.021, (RELAY, 655), vpn, back, 0, 64))
        c.append(_udp(t + 0.041, (RELAY_NAT, 655), (CLIENT[0], 655), back, 0, 55))
    for i in range(2):
        t = T0 + 2.8 + i * 0.0001
        body = bytes([0xC0 + i]) * 1460
        r.append(_udp(t, (RELAY, 655), vpn, body, 61251 + i, 64))
        late = _udp(t + 0.02, (RELAY_NAT, 655), (CLIENT[0], 655), body, 61251 + i, 55)
        c += [late, icmp_error(t + 0.02001, CLIENT[0], RELAY_NAT, late[1], code=3, ipid=80 + i)]
    return c, r


def hosts_link() -> tuple[list[tuple[float, Any]], list[tuple[float, Any]]]:
    """The server's and the relay's own connection (true times; as the relay sees it, as
    the server sees it): each side's packets leave with TTL 64 and arrive with 62."""
    from scapy.packet import Raw

    srv_isn, rly_isn = 3341884421, 1504908542
    # (time, sent by the server?, flags, own bytes before, peer's bytes acked, length)
    turns = [
        (0.7188, False, "PA", 0, 0, 34), (0.7198, True, "PA", 0, 0, 34),
        (0.7199, False, "A", 34, 34, 0), (0.7200, False, "PA", 34, 34, 34),
        (0.7202, True, "PA", 34, 34, 34), (0.7609, False, "A", 68, 68, 0),
        (0.7610, True, "A", 68, 68, 0),
    ]  # fmt: skip
    r: list[tuple[float, Any]] = []
    s: list[tuple[float, Any]] = []
    for i, (dt, by_srv, flags, sent, acked, n) in enumerate(turns):
        t = T0 + 1.8 + dt
        body = bytes([0x40 + i]) * n
        if by_srv:
            seq, ack = srv_isn + sent, rly_isn + acked
            at_s = _tcp(t, SERVER, 50406, RELAY_NAT, 1234, flags, seq, ack, ipid=53570 + i)
            at_r = _tcp(t + 0.0007, SERVER_NAT, 50406, RELAY, 1234, flags, seq, ack,
                        ipid=53570 + i, ttl=62)  # fmt: skip
        else:
            seq, ack = rly_isn + sent, srv_isn + acked
            at_r = _tcp(t, RELAY, 1234, SERVER_NAT, 50406, flags, seq, ack, ipid=39120 + i)
            at_s = _tcp(t + 0.0007, RELAY_NAT, 1234, SERVER, 50406, flags, seq, ack,
                        ipid=39120 + i, ttl=62)  # fmt: skip
        r.append((at_r[0], at_r[1] / Raw(body) if n else at_r[1]))
        s.append((at_s[0], at_s[1] / Raw(body) if n else at_s[1]))
    return r, s


# Internet noise flows each capture carries, by the host they are local to
NOISE = {"relay": 9, "server": 8}


def write_run(
    d: Path,
    *,
    drop_response: bool = False,
    refused: bool = False,
    unreachables: bool = False,
    link: bool = False,
) -> dict[str, Path]:
    """client.pcap, relay.pcap, server.pcap of one healthy run with the noise above."""
    d.mkdir(parents=True, exist_ok=True)
    a, b, c, lost = path_convs(drop_response, refused)
    tr, ts = twin_probes()
    client = render([a], View(clock=CLIENT_SKEW))
    relay = (
        render([b], View(ttl_dec={C2S: 9}))
        + render([c], View(ttl_dec={S2C: 2}, drop=lambda s: any(s is x for x in lost)))
        + relay_noise()
        + tr
    )
    if unreachables:
        uc, ur = port_unreachables()
        client += [(t + CLIENT_SKEW, p) for t, p in uc]
        relay += ur
    lr, ls = hosts_link() if link else ([], [])
    relay += lr
    server = render(
        [c],
        View(
            nat={C2S: (RELAY_NAT, 40109, SERVER, 8001), S2C: (SERVER, 8001, RELAY_NAT, 40109)},
            ttl_dec={C2S: 2},
            delay=0.001,
            clock=0.003,
        ),
    )
    server += [(t + 0.003, p) for t, p in server_noise() + ts + ls]
    out = {}
    for name, pkts in (("client", client), ("relay", relay), ("server", server)):
        out[name] = write(d / f"{name}.pcap", sorted(pkts, key=lambda x: x[0]))
    return out
