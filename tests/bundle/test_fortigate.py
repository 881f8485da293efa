"""The FortiGate sniffer converter on real terminal logs (tests/data/fortigate-sniftran)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hopcap.bundle.fortigate import parse_sniffer, read_sniffer_log, write_pcapng
from hopcap.bundle.pcapio import PcapReader
from hopcap.correlate import correlate
from hopcap.errors import BundleError
from hopcap.model import PointInput

DATA = Path(__file__).resolve().parent.parent / "data" / "fortigate-sniftran"


def _log(name: str) -> str:
    # as bytes: universal newlines would make a line of every lone CR of the terminal log
    return (DATA / name).read_bytes().decode("utf-8", "replace")


# every intact log: the packets read equal the sniffer's own "received by filter" count
@pytest.mark.parametrize(
    ("name", "interfaces", "packets"),
    [
        ("test3.txt", ["wan1"], 218),  # `any`, verbose 6, relative times
        ("test4.txt", ["wan1"], 45),  # `any`, absolute times
        ("test6.txt", ["wan1"], 24),
        ("test7.txt", ["wan1"], 18),
        ("test5.txt", ["wan1"], 23),
        ("test9.txt", ["sniffer"], 61),  # verbose 3: frames without the interface name
        ("test10.txt", ["wan1"], 22),  # verbose 5: from layer 3
        ("pppoe.txt", ["port2"], 137),  # PPPoE discovery + session frames
        ("pppoe2.txt", ["ppp0"], 127),  # ppp0: FortiOS makes up an Ethernet header
        ("pppoe3.txt", ["ppp0"], 32),  # PPP debug lines interleaved with the prompt
        ("testha.txt", ["port5"], 18),  # HA heartbeat sessions (0 packets) then port5
    ],
)
def test_counts_match_the_sniffer(name: str, interfaces: list[str], packets: int) -> None:
    log = parse_sniffer(_log(name), name=name)
    assert len(log.packets) == packets
    assert log.interfaces == interfaces
    reported = [s.received for s in log.sessions if s.received]
    assert sum(s.packets for s in log.sessions) == packets
    assert reported and reported[-1] == packets
    assert log.warnings == []


def test_damaged_log_is_read_past_the_damage_with_line_numbers() -> None:
    log = parse_sniffer(_log("damaged.txt"), name="damaged.txt")
    intact = parse_sniffer(_log("test3.txt"), name="test3.txt")
    assert len(intact.packets) == 218
    # three damaged packets (a garbled header, a bad offset, bad hex digits) are dropped
    assert len(log.packets) == 215
    text = "\n".join(log.warnings)
    assert "damaged.txt:167: damaged packet header" in text
    assert "damaged.txt:168: hex dump without a packet header" in text
    assert "damaged.txt:188: damaged hex dump" in text and "line 184" in text
    assert "damaged.txt:332: damaged hex dump" in text and "line 331" in text
    assert "reported 218 packets received by filter, the log holds 215" in text
    # every packet that survived is byte for byte the one of the intact log
    by_line = {p.line: p.data for p in intact.packets}
    for p in log.packets:
        assert by_line[p.line] == p.data
    assert {184, 331} & {p.line for p in log.packets} == set()


def test_cut_short_dump_keeps_the_packet_with_its_original_length() -> None:
    log = parse_sniffer(_log("test2.txt"), name="test2.txt")
    assert [(p.line, len(p.data), p.orig_len) for p in log.packets] == [
        (1, 178, 178),
        (15, 144, 434),
    ]
    text = "\n".join(log.warnings)
    assert "1 packet(s) cut short" in text
    assert "reported 1403 packets received by filter, the log holds 2" in text
    short = parse_sniffer(_log("test3short.txt"), name="test3short.txt")
    assert len(short.packets) == 1
    assert "ends without its 'packets received by filter' line" in short.warnings[0]


def test_headers_without_dumps_are_one_warning_and_no_packets() -> None:
    log = parse_sniffer(_log("test8.txt"), name="test8.txt")  # verbose 1
    assert log.packets == []
    assert len(log.warnings) == 2
    assert "28 packet header(s) without a hex dump" in log.warnings[0]
    with pytest.raises(BundleError, match="no sniffer packets"):
        read_sniffer_log(DATA / "test8.txt")


def test_fields_of_a_packet() -> None:
    log = parse_sniffer(_log("pppoe2.txt"))
    p = log.packets[0]
    assert p.interface == "ppp0" and p.direction == "out" and p.absolute
    assert p.summary == "10.108.236.47.59994 -> 8.8.8.8.53: udp 43"
    assert p.data[12:16] == bytes.fromhex("08004500") and len(p.data) == 14 + 0x47
    # 2015-06-24 10:07:11.556402 (box time)
    assert p.ts_ns == 1435140431_556402000
    v5 = parse_sniffer(_log("test10.txt")).packets
    assert all(p.synthetic_l2 for p in v5)
    assert v5[0].data[12:14] == b"\x08\x06"  # ARP, from the header line
    assert v5[2].data[12:14] == b"\x86\xdd" and v5[2].data[14] >> 4 == 6


def test_pcapng_interfaces_directions_and_time(tmp_path: Path) -> None:
    log = parse_sniffer(_log("pppoe2.txt"), name="pppoe2.txt")
    out = tmp_path / "fgt.pcapng"
    written = write_pcapng(log, out, host="fw", utc_offset_s=2 * 3600)
    assert written.interfaces == {"fw:ppp0": 127}
    with PcapReader(out) as r:
        pkts = list(r)
    assert len(pkts) == 127
    assert pkts[0].data == log.packets[0].data
    assert pkts[0].ts_ns == 1435140431_556402000 - 2 * 3600 * 1_000_000_000


def test_wireshark_reads_names_directions_comments(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is installed by scripts/setup.sh"
    out = tmp_path / "fgt.pcapng"
    write_pcapng(parse_sniffer(_log("pppoe2.txt")), out)
    res = subprocess.run(
        [
            tshark,
            "-r",
            str(out),
            "-c",
            "2",
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.packet_flags_direction",
            "-e",
            "frame.comment",
            "-e",
            "dns.qry.name",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    assert rows[0][0] == "fgt:ppp0" and int(rows[0][1], 16) == 2  # outbound
    assert rows[1][0] == "fgt:ppp0" and int(rows[1][1], 16) == 1  # inbound
    assert rows[0][2].startswith("out 10.108.236.47.59994 -> 8.8.8.8.53")
    assert rows[0][3] == "softwareupdate.vmware.com"


def test_converted_capture_correlates(tmp_path: Path) -> None:
    out = tmp_path / "fgt.pcapng"
    write_pcapng(parse_sniffer(_log("pppoe2.txt")), out, host="fw")
    verdict = correlate([PointInput(name="fw:ppp0", pcap=out)])
    assert verdict.points[0].packets == 127
    assert verdict.flows, "the TCP connections of the log are flows"


def test_cli_import(tmp_path: Path) -> None:
    out = tmp_path / "d.pcapng"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hopcap",
            "import",
            "fortigate",
            str(DATA / "damaged.txt"),
            "--out",
            str(out),
            "--split",
            str(tmp_path / "split"),
            "--start",
            "2015-06-23T15:58:00",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "fgt:wan1" in res.stdout and "215" in res.stdout
    assert "damaged.txt:188: damaged hex dump" in res.stderr
    assert (tmp_path / "split" / "fgt_wan1.pcapng").exists()
    with PcapReader(out) as r:
        first = next(iter(r))
    assert first.ts_ns == 1435075080_000000000 + 806164000  # --start + 0.806164
    bad = subprocess.run(
        [sys.executable, "-m", "hopcap", "import", "fortigate", str(tmp_path / "nope.txt")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("hopcap: cannot read") and "Traceback" not in bad.stderr
