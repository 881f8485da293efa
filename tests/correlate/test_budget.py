"""Whether captures fit the memory budget, decided before reading them: the estimate of
a file's packets from its head (mapped: only the pages its sample of records starts in
are touched), and the slicing machinery imported only by a run that slices."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hopcap.capfile.walk import PCAP_MAGICS
from hopcap.correlate import budget
from tests.realdata import REALDATA


def _one_read_estimate(path: Path, sample: int = 4096) -> int:
    """The estimate as it was first written: the whole 24 + 1600 * sample bytes of the
    head read at once, then walked."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(24 + sample * 1600)
    kind = PCAP_MAGICS.get(head[:4])
    if kind is None:
        return size // 76
    pos, n = 24, 0
    while n < sample and pos + 16 <= len(head):
        pos += 16 + struct.unpack_from(kind[0] + "I", head, pos + 8)[0]
        n += 1
    if n < 64 or pos <= 24:
        return size // 76
    return int((size - 24) / ((pos - 24) / n) * 1.25) + 1


def _pcap(path: Path, sizes: list[int], *, cut: int = 0, big_endian: bool = False) -> Path:
    e = ">" if big_endian else "<"
    out = bytearray(struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, n in enumerate(sizes):
        out += struct.pack(e + "IIII", 1_700_000_000 + i, 0, n, n) + bytes(n)
    path.write_bytes(bytes(out[: len(out) - cut]))
    return path


def test_estimate_maps_the_head_and_says_the_same(tmp_path: Path) -> None:
    """The same estimate as a single read of the whole sample's bytes, for every capture
    of tests/data and for files whose sample spans megabytes (big records), a few pages,
    or more than the file (fewer records than the sample, a file cut in a record, a
    record length pointing past the file), either byte order, and files that are not
    classic pcap (empty, text)."""
    files = sorted(p for p in REALDATA.rglob("*") if p.is_file() and ".pcap" in p.name)
    assert len(files) > 20
    files += [
        _pcap(tmp_path / "big.pcap", [1500] * 5000),  # 6 MB: past the first 256 KiB
        _pcap(tmp_path / "mixed.pcap", [60, 1500, 9000, 200] * 1500, big_endian=True),
        _pcap(tmp_path / "small.pcap", [100] * 5000),  # the sample within the first read
        _pcap(tmp_path / "few.pcap", [1400] * 300),  # fewer records than the sample
        _pcap(tmp_path / "cut.pcap", [1400] * 300, cut=700),
        _pcap(tmp_path / "tiny.pcap", [60] * 10),  # too few to say: size / 76
    ]
    # a record length pointing past the end of the file
    huge = _pcap(tmp_path / "huge.pcap", [1500] * 200)
    huge.write_bytes(huge.read_bytes() + struct.pack("<IIII", 1, 0, 1 << 30, 1 << 30) + bytes(9))
    files.append(huge)
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "text.pcap").write_bytes(b"not a capture\n" * 100)
    files += [tmp_path / "empty.pcap", tmp_path / "text.pcap"]
    for f in files:
        assert budget._estimate(f) == _one_read_estimate(f), f
        assert budget._estimate(f, 100) == _one_read_estimate(f, 100), f
    big = budget._estimate(tmp_path / "big.pcap")
    assert 5000 < big <= 5000 * 1.25 + 1


def test_a_plain_run_does_not_import_the_slicing() -> None:
    """A correlation that fits its budget imports neither `slices` nor what only slices,
    builds of the C helper or other jobs need; one that does not fit slices."""
    cap = REALDATA / "tcpreplay" / "test.pcap"
    probe = (
        "import sys\n"
        "from hopcap.correlate import correlate\n"
        "from hopcap.model import PointInput\n"
        f"pts = [PointInput('a', {str(cap)!r}), PointInput('b', {str(cap)!r})]\n"
        "n = len(correlate(pts, jobs=1).flows)\n"
        "heavy = ('hopcap.correlate.slices', 'multiprocessing', 'hashlib', 'tempfile')\n"
        "print(n, *[m for m in heavy if m in sys.modules])\n"
        "m = len(correlate(pts, jobs=1, slice_packets=2000).flows)\n"
        "print(m, 'hopcap.correlate.slices' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plain, sliced = r.stdout.split("\n")[:2]
    assert plain.split()[1:] == [] and int(plain.split()[0]) > 0, r.stdout
    assert sliced == f"{plain.split()[0]} True", r.stdout


PER_FLOW = budget.FLOW_WEIGHT + budget.VERDICT_BYTES_PER_DGRAM_FLOW / budget.BYTES_PER_PACKET
PER_CONN = budget.FLOW_WEIGHT + budget.VERDICT_BYTES_PER_FLOW / budget.BYTES_PER_PACKET


def test_short_conversations_weigh_more_in_the_budget(tmp_path: Path) -> None:
    """A conversation's objects cost more than its packets when it has few (a busy
    resolver's 100 k DNS conversations took ~680 MB, ~2.6x what 400 k datagrams weighed,
    and were not sliced under `--memory 400M`; 200 k SYNs each answered by a RST took
    1.5 GB, 5x what their packets weighed): the same packets in 2-packet conversations
    weigh more than in a few long ones, by FLOW_WEIGHT and the verdict's bytes of a
    datagram flow or a TCP connection, and so do the slices' conversations (`Scan.cost`)
    and the verdict they keep."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import wrpcap

    from hopcap.correlate import slices
    from hopcap.model import PointInput

    q, a = IP(src="198.18.0.1", dst="198.18.0.53"), IP(src="198.18.0.53", dst="198.18.0.1")

    def two(mk: Any, ports: int) -> list[Any]:
        return [p for i in range(400) for p in mk(1024 + i % ports)]

    dns = lambda sp: (q / UDP(sport=sp, dport=53), a / UDP(sport=53, dport=sp))  # noqa: E731
    syn = lambda sp: (q / TCP(sport=sp, dport=80, flags="S"),  # noqa: E731
                      a / TCP(sport=80, dport=sp, flags="RA"))  # fmt: skip
    # 4 connections opened, then their data and ACKs
    data = [p for sp in range(1024, 1028) for p in syn(sp)[:1]]
    data += [
        p
        for i in range(398)
        for p in (
            q / TCP(sport=1024 + i % 4, dport=80, flags="A"),
            a / TCP(sport=80, dport=1024 + i % 4, flags="A"),
        )
    ]
    cases = {"short": two(dns, 400), "long": two(dns, 4), "syn": two(syn, 400),
             "tcp": data}  # fmt: skip
    loads, n = {}, {}
    for name, pkts in cases.items():
        f = tmp_path / f"{name}.pcap"
        wrpcap(str(f), pkts, linktype=101)
        loads[name] = budget.estimated_load([PointInput("x", pcap=str(f))])
        n[name] = budget._estimate(f)
    assert budget._head(tmp_path / "short.pcap") == (1.0, 0.5, 0.0)
    assert budget._head(tmp_path / "long.pcap") == (1.0, 4 / 800, 0.0)
    assert budget._head(tmp_path / "syn.pcap") == (0.0, 0.0, 0.5)
    assert budget._head(tmp_path / "tcp.pcap") == (0.0, 0.0, 4 / 800)  # (opened: SYNs)
    assert loads["long"] == int(n["long"] * (budget.DGRAM_WEIGHT + PER_FLOW * 4 / 800))
    assert loads["short"] == int(n["short"] * (budget.DGRAM_WEIGHT + PER_FLOW * 0.5))
    assert loads["syn"] == int(n["syn"] * (1 + PER_CONN * 0.5))
    assert loads["short"] > 2 * loads["long"] and loads["syn"] > 4 * loads["tcp"]
    keys = np.arange(4, dtype=np.uint64)
    sc = slices.Scan(
        tmp_path / "x.pcap", b"", 10, [], None, {}, 2, 8, None, None, None, keys,
        np.zeros(4, np.int64), np.zeros(4, np.int64), np.array([2, 2, 2, 2], np.int64),
        dgram_keys=keys[1:],
    )  # fmt: skip
    w = budget.DGRAM_WEIGHT * 2 + budget.FLOW_WEIGHT
    assert sc.cost().tolist() == [2 + budget.FLOW_WEIGHT, w, w, w]
    assert slices._verdict_bytes(sc) == (
        budget.VERDICT_BYTES_PER_FLOW + 3 * budget.VERDICT_BYTES_PER_DGRAM_FLOW
    )


def test_datagrams_weigh_twice_in_the_budget(tmp_path: Path) -> None:
    """What a run weighs against its memory budget counts each datagram (UDP, ICMP, ESP)
    as DGRAM_WEIGHT packets, by their share among a file's first records (a capture of
    datagrams alike counted as TCP packets, ~320 bytes each, was not sliced when it needed:
    they take ~660 at the peak of reading): classic pcap and pcapng, Ethernet with a VLAN
    tag, Linux cooked, raw IP; a link layer it does not read counts as TCP."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
    from scapy.utils import wrpcap, wrpcapng

    from hopcap.model import PointInput

    ip = IP(src="198.18.0.1", dst="198.18.0.2")
    tcp = [ip / TCP(sport=1000 + i, dport=80) for i in range(300)]
    dg = [ip / UDP(sport=2000 + i, dport=53) for i in range(60)]
    dg += [ip / ICMP() for _ in range(20)] + [IPv6() / UDP() for _ in range(20)]
    mixed = tcp + dg  # 100 datagrams of 400

    def load(path: Path) -> tuple[int, int]:
        return budget._estimate(path), budget.estimated_load([PointInput("x", pcap=str(path))])

    cases = {
        "eth.pcap": [Ether() / p for p in mixed],
        "vlan.pcapng": [Ether() / Dot1Q(vlan=7) / p for p in mixed],
        "sll.pcap": [CookedLinux() / p for p in mixed],
    }
    for name, pkts in cases.items():
        f = tmp_path / name
        (wrpcapng if name.endswith(".pcapng") else wrpcap)(str(f), pkts)
        # 62 flows: 60 UDP ports, the pings (one echo id), the IPv6 datagrams; 300
        # connections of one SYN each
        assert budget._head(f) == (0.25, 0.62, 1.0), name
        n, weighed = load(f)
        w = 1 + (budget.DGRAM_WEIGHT - 1) * 0.25 + PER_FLOW * 0.155 + PER_CONN * 0.75
        assert weighed == int(n * w), name
    raw = tmp_path / "raw.pcap"
    wrpcap(str(raw), dg, linktype=101)
    assert budget._datagram_share(raw) == 1.0
    assert load(raw)[1] == int(load(raw)[0] * (budget.DGRAM_WEIGHT + PER_FLOW * 0.62))
    only_tcp = tmp_path / "tcp.pcap"
    wrpcap(str(only_tcp), [Ether() / p for p in tcp])
    assert budget._head(only_tcp) == (0.0, 0.0, 1.0)
    assert load(only_tcp)[1] == int(load(only_tcp)[0] * (1 + PER_CONN))
    other = tmp_path / "other.pcap"  # a link layer not read here: as TCP
    wrpcap(str(other), [Ether() / p for p in dg], linktype=147)
    assert budget._datagram_share(other) == 0.0
    (tmp_path / "text.pcap").write_bytes(b"not a capture\n" * 100)
    assert budget._datagram_share(tmp_path / "text.pcap") == 0.0
