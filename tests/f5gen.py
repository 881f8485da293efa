"""F5 BIG-IP Ethernet trailers built by hand from the format's description (Wireshark's F5
Ethernet trailer dissector notes), for tests: legacy type-length-version blocks and the
DPT (14.1+) TLV format, the capture-information pseudo packet, and whole captures of a
proxied connection seen on the client-side and the server-side VLAN."""

from __future__ import annotations

import ipaddress
import struct

DPT_MAGIC = b"\xf5\xde\xb0\xf5"


def addr16(addr: str, route_domain: int | None = None) -> bytes:
    """A trailer address: IPv4 as ::ffff:a.b.c.d (or F5's route-domain prefix), IPv6 as is."""
    a = ipaddress.ip_address(addr)
    if a.version == 6:
        return a.packed
    if route_domain is not None:
        return (
            bytes.fromhex("26200000 0c10f501 0000".replace(" ", ""))
            + struct.pack(">H", route_domain)
            + a.packed
        )
    return bytes(10) + b"\xff\xff" + a.packed


def _legacy(kind: int, ver: int, body: bytes) -> bytes:
    # the length byte counts what follows the type and length bytes (version included)
    return bytes([kind, len(body) + 1, ver]) + body


def legacy_low(*, ingress: bool, slot: int = 0, tmm: int = 1, vip: str = "", ver: int = 1) -> bytes:
    if ver == 0:  # the 10.x layout: a fixed 16-byte VIP name
        name = vip.encode()[:16].ljust(16, b"\x00")
        return _legacy(1, 0, bytes([int(ingress), slot, tmm]) + name)
    name = vip.encode()
    return _legacy(1, 1, bytes([int(ingress), slot, tmm, len(name)]) + name)


def legacy_low_94(*, ingress: bool, flow: int, peer: int, vip: str = "") -> bytes:
    """9.4: the low block carries 32-bit flow ids (35 bytes)."""
    body = bytes([int(ingress), 0, 0]) + struct.pack(">IIIB", flow, peer, 0, 1)
    return _legacy(1, 0, body + vip.encode()[:16].ljust(16, b"\x00"))


def legacy_med(*, flow: int, peer: int, ver: int = 3, rst: str | None = None) -> bytes:
    """Medium detail: v0 (11.x, 64-bit ids, 29 bytes) or v1-v3 (with an RST cause)."""
    if ver == 0:
        return _legacy(2, 0, struct.pack(">QQIBBHH", flow, peer, 0, 1, 0, 0, 0))
    head = struct.pack(">QQ", flow, peer)
    if ver >= 3:
        head += struct.pack(">I", 0)  # flags 2
    head += struct.pack(">IBBHH", 0, 1, 0, 0, 1)  # flags, flow type, HA unit, slot, port
    if ver >= 2:
        head += b"\x00"  # priority
    cause = b""
    if rst is not None:
        cause = b"\x00" + struct.pack(">Q", 0x123456789ABC0042) + rst.encode()
    return _legacy(2, ver, head + bytes([len(cause)]) + cause)


def legacy_med_10(*, flow: int, peer: int) -> bytes:
    """10.x: 32-bit flow ids (21 bytes)."""
    return _legacy(2, 0, struct.pack(">IIIBB", flow, peer, 0, 1, 0) + b"\x00\x01\x00\x02")


def peer_body(remote: str, rport: int, local: str, lport: int, rd: int | None = None) -> bytes:
    return (
        struct.pack(">BH", 6, 0)
        + addr16(remote, rd)
        + addr16(local, rd)
        + struct.pack(">HH", rport, lport)
    )


def legacy_high(remote: str, rport: int, local: str, lport: int, rd: int | None = None) -> bytes:
    return _legacy(3, 0, peer_body(remote, rport, local, lport, rd))


def _tlv(provider: int, kind: int, ver: int, body: bytes) -> bytes:
    return struct.pack(">HHHH", provider, kind, len(body) + 8, ver) + body


def dpt(*tlvs: bytes) -> bytes:
    body = b"".join(tlvs)
    return DPT_MAGIC + struct.pack(">HH", len(body) + 8, 1) + body


def dpt_low(*, ingress: bool, slot: int = 0, tmm: int = 1, vip: str = "") -> bytes:
    name = vip.encode()
    return _tlv(1, 1, 3, bytes([int(ingress), slot, tmm, len(name)]) + name)


def dpt_med(*, flow: int, peer: int, rst: str | None = None) -> bytes:
    body = struct.pack(">QQIIBBHHB", flow, peer, 0, 0, 1, 0, 0, 1, 0)
    cause = b""
    if rst is not None:
        cause = b"\x00" + struct.pack(">Q", 0x42) + rst.encode()
    return _tlv(1, 2, 4, body + bytes([len(cause)]) + cause)


def dpt_high(remote: str, rport: int, local: str, lport: int) -> bytes:
    return _tlv(1, 3, 1, peer_body(remote, rport, local, lport))


def dpt_other(data: bytes) -> bytes:
    """A TLV of another provider (e.g. TLS secrets): skipped by readers."""
    return _tlv(7, 1, 1, data)


def fileinfo_frame(cmd: str, ver: str, host: str) -> bytes:
    items = [f"CMD: {cmd}", f"VER: {ver}", f"HOST: {host}", "PLAT: Z100", "PROD: BIG-IP"]
    return (
        bytes(12)
        + b"\x05\xff"
        + b"F5-Pseudo-pkt\x00"
        + b"".join(i.encode() + b"\x00" for i in items)
    )
