"""The bundle's own pcap/pcapng reader and pcapng writer against scapy and tshark."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import bundle_scenario as sc
import pytest
from scapy.utils import RawPcapNgReader, RawPcapReader

from hopcap.bundle.pcapio import PcapngWriter, PcapReader, packet_tuple
from hopcap.errors import BundleError
from hopcap.model import pcap_filename


def scapy_packets(path: Path) -> list[tuple[int, bytes]]:
    """(ts in ns, bytes) as scapy's raw readers see them."""
    head = path.read_bytes()[:4]
    out = []
    if head == b"\x0a\x0d\x0d\x0a":
        with RawPcapNgReader(str(path)) as r:
            for data, meta in r:
                ts = ((meta.tshigh << 32) | meta.tslow) * 1_000_000_000 // meta.tsresol
                out.append((ts, data))
    else:
        with RawPcapReader(str(path)) as r:
            nano = r.nano
            for data, meta in r:
                out.append((meta.sec * 1_000_000_000 + meta.usec * (1 if nano else 1000), data))
    return out


@pytest.fixture(scope="module")
def pcaps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("p")
    sc.build_pcaps(d)
    return d


@pytest.mark.parametrize("point", sc.POINTS)
def test_reader_matches_scapy(pcaps: Path, point: str) -> None:
    path = pcaps / pcap_filename(point)
    with PcapReader(path) as r:
        mine = [(p.ts_ns, p.data) for p in r]
        assert not r.truncated
        linktypes = {p.linktype for p in r}
    assert mine == scapy_packets(path)
    assert linktypes == ({101} if point == "srv:eth0" else {1})


def test_packet_tuple_ethernet_and_raw(pcaps: Path) -> None:
    with PcapReader(pcaps / "client_eth0.pcap") as r:
        first = next(iter(r))
    assert packet_tuple(first.linktype, first.data) == (sc.CLIENT, 40001, sc.VIP, 80)
    with PcapReader(pcaps / "srv_eth0.pcap") as r:
        first = next(iter(r))
    assert packet_tuple(first.linktype, first.data) == (sc.FW_OUT, 31001, sc.SRV, 80)


def test_big_endian_pcap(tmp_path: Path, pcaps: Path) -> None:
    with PcapReader(pcaps / "client_eth0.pcap") as r:
        pkts = list(r)
    be = tmp_path / "be.pcap"
    with open(be, "wb") as f:
        f.write(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for p in pkts:
            sec, ns = divmod(p.ts_ns, 1_000_000_000)
            f.write(struct.pack(">IIII", sec, ns // 1000, len(p.data), p.orig_len) + p.data)
    with PcapReader(be) as r:
        assert [(x.ts_ns, x.data) for x in r] == [(p.ts_ns, p.data) for p in pkts]


def test_truncated_capture_reads_what_is_there(tmp_path: Path, pcaps: Path) -> None:
    data = (pcaps / "client_eth0.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])
    with PcapReader(cut) as r:
        got = list(r)
        assert r.truncated
    assert len(got) == 7


def test_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_text("hello world, not a capture")
    with pytest.raises(BundleError, match="not a pcap or pcapng"):
        PcapReader(bad)
    with pytest.raises(BundleError, match="no such capture file"):
        PcapReader(tmp_path / "missing.pcap")


def test_writer_output_reads_back_everywhere(tmp_path: Path, pcaps: Path) -> None:
    out = tmp_path / "w.pcapng"
    with PcapReader(pcaps / "fw_eth0.pcap") as r:
        pkts = list(r)
    with PcapngWriter(out) as w:
        a = w.add_interface(1, "fw:eth0", description="d")
        b = w.add_interface(101, "srv:eth0")
        for i, p in enumerate(pkts):
            w.write_packet(a, p.ts_ns, p.data, p.orig_len, comment=f"c{i}" if i % 2 else None)
        w.write_packet(b, pkts[0].ts_ns + 1, pkts[0].data[14:], len(pkts[0].data) - 14)
    with PcapReader(out) as r:
        back = list(r)
    assert [(p.ts_ns, p.data) for p in back[:-1]] == [(p.ts_ns, p.data) for p in pkts]
    assert back[-1].linktype == 101 and back[-1].interface == 1
    res = subprocess.run(
        [
            "tshark",
            "-r",
            str(out),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.comment",
            "-e",
            "frame.time_epoch",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [x.split("\t") for x in res.stdout.splitlines()]
    assert [r[0] for r in rows] == ["fw:eth0"] * len(pkts) + ["srv:eth0"]
    assert [r[1] for r in rows[:4]] == ["", "c1", "", "c3"]
    sec, ns = divmod(pkts[0].ts_ns, 1_000_000_000)
    assert rows[0][2] == f"{sec}.{ns:09d}"
