"""A small three-hop scenario for bundle tests, written with scapy.

Path: client:eth0 -> fw:eth0 -> fw:eth1 -> srv:eth0. The firewall DNATs the VIP
203.0.113.80:80 to 198.18.1.2:80 and masquerades the client to 198.18.1.1.

* flow f1 (port 40001): handshake + one request + response, seen at every point.
* flow f2 (port 40002): the SYN (and its retransmission) reach fw:eth0 and never leave
  fw:eth1 -> a `drop` between fw:eth0 and fw:eth1.

Clocks: fw is 0.5 s ahead of the client, srv 0.25 s behind. The four files use four
different formats: classic pcap (us), classic pcap (ns), pcapng, raw-IP link type.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapNgWriter, PcapWriter

from hopcap.model import (
    CapturePoint,
    Finding,
    Flow,
    HostFacts,
    Leg,
    PointCapture,
    PointSummary,
    RunRecord,
    Verdict,
    pcap_filename,
)
from hopcap.patterns import with_patterns

T0 = 1763790000.0
CLIENT = "198.18.0.10"
VIP = "203.0.113.80"
FW_OUT = "198.18.1.1"
SRV = "198.18.1.2"
POINTS = ["client:eth0", "fw:eth0", "fw:eth1", "srv:eth0"]
OFFSETS = {"client:eth0": 0.0, "fw:eth0": 0.5, "fw:eth1": 0.5, "srv:eth0": -0.25}
HOP_DELAY = 0.0002
FIXTURES = Path(__file__).parent / "fixtures"


@dataclass
class Pkt:
    true_ts: float  # on the client's clock
    pkt: object  # scapy packet (IP layer)


def _mac(i: int) -> str:
    return f"02:00:00:00:00:{i:02x}"


def _conn(
    cport: int, nport: int, t: float, *, drop_after_fw_in: bool
) -> dict[str, list[tuple[float, object]]]:
    """Packets of one connection per point: (true time at the point, IP packet)."""
    req = b"GET / HTTP/1.1\r\nHost: " + VIP.encode() + b"\r\n\r\n"
    resp = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    isn_c, isn_s = 1000 + cport, 5000 + cport
    # (direction, flags, seq, ack, payload, ip id)
    if drop_after_fw_in:
        segs = [("c2s", "S", isn_c, 0, b"", 100), ("c2s", "S", isn_c, 0, b"", 101)]
    else:
        segs = [
            ("c2s", "S", isn_c, 0, b"", 200),
            ("s2c", "SA", isn_s, isn_c + 1, b"", 0),
            ("c2s", "A", isn_c + 1, isn_s + 1, b"", 201),
            ("c2s", "PA", isn_c + 1, isn_s + 1, req, 202),
            ("s2c", "PA", isn_s + 1, isn_c + 1 + len(req), resp, 1),
            ("c2s", "FA", isn_c + 1 + len(req), isn_s + 1 + len(resp), b"", 203),
        ]
    out: dict[str, list[tuple[float, object]]] = {p: [] for p in POINTS}
    for i, (d, flags, seq, ack, data, ipid) in enumerate(segs):
        ts = t + i * 0.01 + (1.0 if drop_after_fw_in and i else 0.0)
        outside = (CLIENT, cport, VIP, 80)
        inside = (FW_OUT, nport, SRV, 80)
        path = POINTS if d == "c2s" else list(reversed(POINTS))
        for hop, point in enumerate(path):
            if drop_after_fw_in and point in ("fw:eth1", "srv:eth0"):
                continue
            src, sport, dst, dport = outside if point in ("client:eth0", "fw:eth0") else inside
            if d == "s2c":
                src, sport, dst, dport = dst, dport, src, sport
            # the firewall routes: one less after it in the direction of travel
            before_fw = point in ("client:eth0", "fw:eth0")
            ttl = 64 if before_fw == (d == "c2s") else 63
            ip = IP(src=src, dst=dst, id=ipid, ttl=ttl) / TCP(
                sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=64240
            )
            if data:
                ip = ip / Raw(data)
            out[point].append((ts + hop * HOP_DELAY, ip))
    return out


def build_pcaps(pcap_dir: Path) -> dict[str, list[tuple[float, bytes]]]:
    """Write the four captures into `pcap_dir` (bundle file names); return, per point,
    the (timestamp on that point's clock, frame bytes) of every packet in file order."""
    per_point: dict[str, list[tuple[float, object]]] = {p: [] for p in POINTS}
    for conn in (
        _conn(40001, 31001, T0, drop_after_fw_in=False),
        _conn(40002, 31002, T0 + 0.2, drop_after_fw_in=True),
    ):
        for p, pkts in conn.items():
            per_point[p].extend(pkts)
    written: dict[str, list[tuple[float, bytes]]] = {}
    pcap_dir.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(POINTS):
        pkts = sorted(per_point[p], key=lambda x: x[0])
        frames = []
        for ts, ip in pkts:
            local = round((ts + OFFSETS[p]) * 1e6) / 1e6  # microsecond clocks
            # srv:eth0 is a raw-IP capture (no link header)
            fr = ip if p == "srv:eth0" else Ether(src=_mac(2 * i + 1), dst=_mac(2 * i + 2)) / ip
            fr.time = local
            frames.append(fr)
        path = pcap_dir / pcap_filename(p)
        if p == "client:eth0":
            w = PcapWriter(str(path), linktype=1, sync=True)
        elif p == "fw:eth0":
            w = PcapWriter(str(path), linktype=1, nano=True, sync=True)
        elif p == "fw:eth1":
            w = PcapNgWriter(str(path))
        else:
            w = PcapWriter(str(path), linktype=101, sync=True)
        for fr in frames:
            w.write(fr)
        w.close()
        written[p] = [(float(fr.time), bytes(fr)) for fr in frames]
    return written


def drop_ts() -> float:
    """first_ts of the drop finding: the first SYN of f2 at fw:eth0, aligned timeline."""
    return round((T0 + 0.2 + 1 * HOP_DELAY) * 1e6) / 1e6


def make_verdict() -> Verdict:
    pts = tuple(
        PointSummary(
            name=p,
            host=p.split(":")[0],
            interface=p.split(":")[1],
            packets={"client:eth0": 8, "fw:eth0": 8, "fw:eth1": 6, "srv:eth0": 6}[p],
            kernel_drops=0,
            clock_offset_s=OFFSETS[p],
            clock_error_s=0.0005,
            first_ts=T0,
            last_ts=T0 + 1.3,
        )
        for p in POINTS
    )
    f1 = Flow(
        id="f1",
        proto="tcp",
        client=f"{CLIENT}:40001",
        server=f"{VIP}:80",
        legs=(
            Leg("client:eth0", f"{CLIENT}:40001 > {VIP}:80", "same"),
            Leg("fw:eth0", f"{CLIENT}:40001 > {VIP}:80", "same", latency_s=HOP_DELAY),
            Leg("fw:eth1", f"{FW_OUT}:31001 > {SRV}:80", "nat", latency_s=HOP_DELAY),
            Leg("srv:eth0", f"{FW_OUT}:31001 > {SRV}:80", "same", latency_s=HOP_DELAY),
        ),
        findings=(),
        summary="ok",
        first_ts=T0,
    )
    f2 = Flow(
        id="f2",
        proto="tcp",
        client=f"{CLIENT}:40002",
        server=f"{VIP}:80",
        legs=(
            Leg("client:eth0", f"{CLIENT}:40002 > {VIP}:80", "same"),
            Leg("fw:eth0", f"{CLIENT}:40002 > {VIP}:80", "same", latency_s=HOP_DELAY),
        ),
        findings=(
            Finding(
                kind="drop",
                direction="c2s",
                between=("fw:eth0", "fw:eth1"),
                packets=2,
                bytes=0,
                first_ts=drop_ts(),
                what=f"SYN seq=41002 to {VIP}:80 <never forwarded>",
            ),
        ),
        summary="SYN dropped inside fw (seen on fw:eth0, never on fw:eth1)",
        first_ts=T0 + 0.2,
    )
    # as the correlator returns it: with its patterns
    return with_patterns(
        Verdict(points=pts, flows=(f2, f1), warnings=("clock of srv estimated from 1 flow",))
    )


def make_facts() -> tuple[HostFacts, ...]:
    def rd(name: str) -> str:
        return (FIXTURES / name).read_text()

    fw = HostFacts(
        host="fw",
        before={
            "nstat": rd("nstat_before.txt"),
            "nft": rd("nft_before.txt"),
            "conntrack": rd("conntrack_before.txt"),
            "addr": f"2: eth0    inet {CLIENT[:-2]}1/24 brd 198.18.0.255 scope global eth0\n"
            f"    link/ether 02:00:00:00:00:03 brd ff:ff:ff:ff:ff:ff\n",
        },
        after={
            "nstat": rd("nstat_after.txt"),
            "nft": rd("nft_after.txt"),
            "conntrack": rd("conntrack_after.txt"),
            "addr": f"2: eth0    inet {CLIENT[:-2]}1/24 brd 198.18.0.255 scope global eth0\n"
            f"    link/ether 02:00:00:00:00:03 brd ff:ff:ff:ff:ff:ff\n",
        },
        missing={"iptables": "`iptables-save` not installed"},
        clock_before=(0.5, 0.0004),
        clock_after=(0.5001, 0.0004),
    )
    srv = HostFacts(
        host="srv",
        before={"nstat": rd("nstat_before.txt")},
        after={"nstat": rd("nstat_before.txt")},
    )
    return (fw, srv)


def make_run(pcap_dir: Path) -> RunRecord:
    caps = []
    for i, p in enumerate(POINTS):
        host, iface = p.split(":")
        caps.append(
            PointCapture(
                point=CapturePoint(host, iface),
                pcap=pcap_dir / pcap_filename(p),
                command=f"tcpdump -i {iface} -w /tmp/x.pcap 'tcp and not (host 198.19.0.1 "
                "and port 22)'",
                tcpdump_version="4.99.3",
                start_ts=T0 - 2.0 + i * 0.01,
                ready_ts=T0 - 1.9 + i * 0.02,
                stop_ts=T0 + 5.0,
                packets=8,
                received=8,
                kernel_drops=0,
                clock_offset_s=OFFSETS[p],
                clock_error_s=0.0005,
            )
        )
    inventory = {
        "source": "site.yml",
        "path": ["client", "fw", "srv"],
        "target": f"{VIP}:80",
        "filter": "tcp",
        "window_s": 10.0,
        "repro": {"on": "client", "run": f"curl -s http://{VIP}/"},
        "hosts": {
            "client": {
                "address": "198.19.0.10",
                "port": 22,
                "user": "root",
                "role": "client",
                "capture": ["eth0"],
                "password": "hunter2",
            },
            "fw": {
                "address": "198.19.0.11",
                "port": 22,
                "user": "root",
                "role": "firewall",
                "capture": ["eth0", "eth1"],
            },
            "srv": {
                "address": "198.19.0.13",
                "port": 22,
                "user": "root",
                "role": "server",
                "capture": "auto",
            },
        },
    }
    return RunRecord(
        run_id="20251122T051900Z-test",
        started_ts=T0 - 3.0,
        finished_ts=T0 + 6.0,
        inventory=inventory,
        captures=tuple(caps),
        facts=make_facts(),
        repro={
            "command": f"curl -s http://{VIP}/",
            "exit_status": 28,
            "stdout": "",
            "stderr": "timeout",
        },
    )
