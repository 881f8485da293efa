"""Whether captures fit the memory budget, decided before reading them: the estimate of
a file's packets from its head (mapped: only the pages its sample of records starts in
are touched), and the slicing machinery imported only by a run that slices."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

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
