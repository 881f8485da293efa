"""Vendor points in an anonymised bundle: a FortiGate point (its sniffer's text kept beside
the pcapng) and an F5 BIG-IP point with trailers (VIP names, peer addresses, RST causes,
TLS secrets, the capture-information packet with the box's host name). They are ordinary
points of the bundle (manifest with the device's own command and version, merged pcapng,
report), and no original address, name or payload survives anywhere in it."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from hopcap.bundle import pcap_dir, write_bundle
from hopcap.bundle.fortigate import parse_sniffer, write_pcapng
from hopcap.correlate import correlate
from hopcap.lab.fortigate import _format as sniffer_lines
from hopcap.model import CapturePoint, PointCapture, PointInput, RunRecord, pcap_filename
from tests import f5gen as g

T0 = 1_763_790_000.0
CLIENT, VIP, SNAT, POOL = "198.18.0.10", "203.0.113.80", "198.18.2.5", "198.18.3.80"
VIP_NAME = "/Common/vs_payroll_secret"
BIGIP_HOST = "bigip-edge-7.corp.example"
RST_TEXT = "Connection reset by payroll-db-handler"
TLS_SECRET = b"CLIENT_RANDOM 5f3c secretsecretsecret"
REQ = b"GET /salaries HTTP/1.1\r\nHost: payroll\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nconfidential"
MAC = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
FGT_MACS = (b"\x02\xaa\x00\x00\x00\x01", b"\x02\xaa\x00\x00\x00\x02")
ORIGINALS = [CLIENT, VIP, SNAT, POOL]
FGT_CMD = "diagnose sniffer packet any 'tcp port 80' 6 0 a"
F5_CMD = "tcpdump -ni 0.0:nnnp -s0 -w /var/tmp/lb.pcap tcp port 80"


def _tcp(
    src: str, sp: int, dst: str, dp: int, conv: list[tuple[str, str, bytes]], isn: int = 1000
) -> list[bytes]:
    """The IP packets of one connection: (direction, flags, data) steps."""
    seq = {"c": isn, "s": isn * 7}
    out = []
    for d, flags, data in conv:
        a, ap, b, bp = (src, sp, dst, dp) if d == "c" else (dst, dp, src, sp)
        other = "s" if d == "c" else "c"
        pkt = IP(src=a, dst=b, id=isn % 65536 + len(out)) / TCP(
            sport=ap, dport=bp, seq=seq[d], ack=seq[other] if "A" in flags else 0, flags=flags
        )
        if data:
            pkt = pkt / Raw(data)
        out.append(bytes(pkt))
        seq[d] += len(data) + (1 if ("S" in flags or "F" in flags) else 0)
    return out


STEPS = [("c", "S", b""), ("s", "SA", b""), ("c", "A", b""), ("c", "PA", REQ), ("s", "PA", RESP),
         ("c", "FA", b""), ("s", "FA", b""), ("c", "A", b"")]  # fmt: skip


def _fortigate(pcaps: Path) -> tuple[list[PointCapture], str]:
    """The sniffer's text (as the box prints it) kept in the bundle, and one pcapng per
    interface converted from it."""
    text = [f"FGT-VM # {FGT_CMD}\n", "interfaces=[any]\nfilters=[tcp port 80]\n"]
    n = 0
    for i, ip in enumerate(_tcp(CLIENT, 40001, VIP, 80, STEPS)):
        for k, iface in enumerate(("port1", "port5")):
            fr = FGT_MACS[k] + FGT_MACS[1 - k] + b"\x08\x00" + ip
            ts = T0 + i * 0.001 + k * 0.0001
            text.append(sniffer_lines(ts, iface, 0 if k == 0 else 4, fr, 6, "a", T0))
            n += 1
    text.append(f"\n{n} packets received by filter\n0 packets dropped by kernel\n")
    raw = "".join(text)
    (pcaps / "fgt.sniffer.txt").write_text(raw)
    log = parse_sniffer(raw)
    assert len(log.packets) == n and not log.warnings
    caps = []
    for iface in ("port1", "port5"):
        name = f"fgt:{iface}"
        path = pcaps / pcap_filename(name)
        write_pcapng(log, path, host="fgt", interfaces=[iface])
        caps.append(_cap(name, path, FGT_CMD, "FortiOS sniffer (FortiGate-VM64 v7.4.3,build2573)"))
    return caps, raw


def _bigip(pcaps: Path) -> list[PointCapture]:
    """Client side and server side of one proxied connection, on the two VLANs, every
    packet with a full trailer (the first record: the capture-information packet)."""
    front = _tcp(CLIENT, 40001, VIP, 80, STEPS)
    back = _tcp(SNAT, 50001, POOL, 8080, STEPS, isn=77_000_000)
    caps = []
    for iface, ips, flow, peer, remote, rport, local, lport in (
        ("external:nnnp", front, 0x1001, 0xA00A, SNAT, 50001, POOL, 8080),
        ("internal:nnnp", back, 0xA00A, 0x1001, CLIENT, 40001, VIP, 80),
    ):
        info = g.fileinfo_frame(F5_CMD, "BIG-IP 17.1.1.3", BIGIP_HOST)
        frames = [(round(T0 * 1e9) - 1000, info)]
        for i, ip in enumerate(ips):
            tr = g.dpt(
                g.dpt_low(ingress=True, tmm=1, vip=VIP_NAME),
                g.dpt_med(flow=flow, peer=peer, rst=RST_TEXT if i == len(ips) - 1 else None),
                g.dpt_high(remote, rport, local, lport),
                g.dpt_other(TLS_SECRET),
            )
            fr = MAC + b"\x08\x00" + ip
            fr += b"\x00" * max(0, 60 - len(fr)) + tr
            frames.append(
                (round((T0 + 0.01 + i * 0.001 + (0.0002 if ips is back else 0)) * 1e9), fr)
            )
        name = f"lb:{iface}"
        path = g_write(pcaps / pcap_filename(name), frames)
        caps.append(_cap(name, path, F5_CMD, "tcpdump version 4.9.3 (BIG-IP 17.1.1.3)"))
    return caps


def g_write(path: Path, frames: list[tuple[int, bytes]]) -> Path:
    import struct

    out = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
    for ts, fr in frames:
        out += struct.pack("<IIII", ts // 1_000_000_000, ts % 1_000_000_000, len(fr), len(fr)) + fr
    path.write_bytes(bytes(out))
    return path


def _cap(name: str, path: Path, cmd: str, version: str) -> PointCapture:
    host, _, iface = name.partition(":")
    return PointCapture(
        point=CapturePoint(host=host, interface=iface),
        pcap=path,
        command=cmd,
        tcpdump_version=version,
        start_ts=T0 - 1,
        ready_ts=T0 - 0.9,
        stop_ts=T0 + 5,
        packets=len(STEPS),
        kernel_drops=0,
        clock_offset_s=0.0,
        clock_error_s=0.001,
    )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    out = {}
    for anon in (False, True):
        b = tmp_path_factory.mktemp("v") / "bundle"
        pcaps = pcap_dir(b)
        caps, _ = _fortigate(pcaps)
        caps += _bigip(pcaps)
        verdict = correlate([PointInput(name=c.point.name, pcap=c.pcap) for c in caps])
        run = RunRecord(
            run_id="r1",
            started_ts=T0 - 2,
            finished_ts=T0 + 6,
            inventory={"hosts": {"fgt": {"kind": "fortigate"}, "lb": {"capture": ["0.0:nnnp"]}}},
            captures=tuple(caps),
        )
        out[anon] = write_bundle(b, run, verdict, anonymise=anon)
    return out


def test_vendor_points_are_ordinary_points(bundles: dict[bool, Path]) -> None:
    b = bundles[False]
    man = json.loads((b / "manifest.json").read_text())
    pts = {p["name"]: p for p in man["points"]}
    assert list(pts) == ["fgt:port1", "fgt:port5", "lb:external:nnnp", "lb:internal:nnnp"]
    assert pts["fgt:port1"]["command"] == FGT_CMD
    assert pts["fgt:port5"]["tcpdump_version"].startswith("FortiOS sniffer (FortiGate-VM64")
    assert pts["lb:internal:nnnp"]["command"] == F5_CMD
    assert "BIG-IP 17.1.1.3" in pts["lb:external:nnnp"]["tcpdump_version"]
    assert man["merged"]["packets"] == 4 * len(STEPS) + 2  # + the two capture-info packets
    verdict = json.loads((b / "verdict.json").read_text())
    (flow,) = verdict["flows"]
    assert [leg["point"] for leg in flow["legs"]] == list(pts)
    assert [leg["link"] for leg in flow["legs"]] == ["same", "same", "same", "proxied"]
    assert flow["legs"][3]["details"][0] == (
        "linked by the F5 trailer: flow id 0x1001, peer flow id 0xa00a"
    )
    assert flow["findings"] == []
    report = (b / "report.md").read_text()
    assert "lb:internal:nnnp" in report and "fgt:port5" in report
    # the plain bundle keeps the evidence as it was (the test below is not vacuous)
    assert VIP_NAME.encode() in (b / "pcaps" / "lb_external_nnnp.pcap").read_bytes()
    assert CLIENT in (b / "pcaps" / "fgt.sniffer.txt").read_text()


def test_no_original_address_name_or_payload_survives(bundles: dict[bool, Path]) -> None:
    b = bundles[True]
    files = [p for p in b.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "fgt.sniffer.txt", "lb_external_nnnp.pcap", "merged.pcapng", "verdict.json",
        "manifest.json", "report.md", "report.html"}  # fmt: skip
    secrets = [VIP_NAME.encode(), BIGIP_HOST.encode(), RST_TEXT.encode(), TLS_SECRET,
               b"salaries", b"confidential", b"payroll", *FGT_MACS]  # fmt: skip
    packed = [ipaddress.ip_address(a).packed for a in ORIGINALS]
    for p in files:
        data = p.read_bytes()
        for s in secrets:
            assert s not in data, (s, p)
        text = data.decode("latin-1")
        for a in ORIGINALS:
            assert not re.search(rf"(?<![\d.]){re.escape(a)}(?!\d)", text), (a, p)
        if p.suffix in (".pcap", ".pcapng"):
            for raw in packed:
                assert raw not in data, (ipaddress.ip_address(raw), p)
            # the trailer's peer addresses, IPv4-mapped as TMM writes them
            for raw in packed:
                assert bytes(10) + b"\xff\xff" + raw not in data
    sniffer = (b / "pcaps" / "fgt.sniffer.txt").read_text()
    assert sniffer.startswith("# anonymised by hopcap")
    assert not re.search(r"^\s*0x[0-9a-f]{4}", sniffer, re.M), "hex dumps removed"
    # the headers stay, with the bundle's pseudonyms (the same as in verdict.json)
    verdict = json.loads((b / "verdict.json").read_text())
    client = verdict["flows"][0]["client"].rsplit(":", 1)[0]
    assert client != CLIENT and f"{client}.40001 ->" in sniffer
    man = json.loads((b / "manifest.json").read_text())
    assert "fgt.sniffer.txt" in man["anonymised"]["vendor_texts"]


def test_sniffer_header_forms() -> None:
    """Addresses with a port (IPv4 and IPv6, before ':' or at the end of the line), bare
    ones, and an address never seen in the packets: none left as it was."""
    from hopcap.bundle.anon import Anonymiser
    from hopcap.bundle.vendoranon import anonymise_line

    anon = Anonymiser()
    for a in ("198.18.0.10", "203.0.113.80", "2001:db8:5::10"):
        anon.add_text(a)
    anon.freeze()
    line = (
        "port1 in 198.18.0.10.40001 -> 203.0.113.80.80: syn 1 | "
        "port2 out 2001:db8:5::10.443 -> 198.18.9.9.1234 | arp who-has 203.0.113.80 tell x\n"
    )
    got = anonymise_line(line, anon)
    for a in ("198.18.0.10", "203.0.113.80", "2001:db8:5::10", "198.18.9.9"):
        assert a not in got, got
    assert got.endswith("tell x\n") and ".40001 -> " in got and ".80: syn 1" in got
    assert "x.x.x.x.1234" in got  # not in the packets: hidden, not leaked
