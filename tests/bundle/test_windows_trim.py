"""The windows summary (which window saw which finding, per segment) and pcap trimming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, PcapWriter, rdpcap  # type: ignore[import-untyped]

from hopcap.bundle import WindowResult, trim_pcap, write_windows_summary
from hopcap.model import Finding, Flow, Verdict


def _flow(fid: str, *findings: Finding) -> Flow:
    return Flow(fid, "tcp", "203.0.113.10:4000", "203.0.113.80:80", (), findings, "s")


DROP = Finding("drop", "c2s", ("fw:eth0", "fw:eth1"), 3, 0, 1.0, "SYN seq=1")
MSS = Finding("rewrite", "c2s", ("fw:eth0", "fw:eth1"), 1, 0, 1.0, "mss", "tcp.mss", 1460, 536)
GAP = Finding("gap", "s2c", ("lb:eth1", "lb:eth0"), 2, 0, 1.0, "kernel drops")


def test_summary_per_segment_and_window(tmp_path: Path) -> None:
    results = [
        WindowResult(1, "w01-a", 100.0, 101.0, 110.0, "ok", Verdict((), (_flow("f1"),))),
        WindowResult(
            2,
            "w02-b",
            200.0,
            201.0,
            210.0,
            "ok",
            Verdict((), (_flow("f1", DROP), _flow("f2", DROP, MSS), _flow("f3", GAP))),
            {"exit_status": 28, "runs": [{"exit_status": 0}, {"exit_status": 28}]},
        ),
        WindowResult(3, "", 300.0, None, None, "failed", note="no capture point could start"),
    ]
    js, md = write_windows_summary(tmp_path, results)
    doc = json.loads(js.read_text())
    assert [w["status"] for w in doc["windows"]] == ["ok", "ok", "failed"]
    assert doc["windows"][1]["broken_flows"] == 2 and doc["windows"][1]["repro_runs"] == 2
    segs = {tuple(s["between"]): s["windows"] for s in doc["segments"]}
    assert set(segs) == {("fw:eth0", "fw:eth1"), ("lb:eth1", "lb:eth0")}
    fw = segs[("fw:eth0", "fw:eth1")]
    assert list(fw) == ["w02-b"]  # window 1 saw nothing there
    assert {"kind": "drop", "direction": "c2s", "flows": 2, "packets": 6} in fw["w02-b"]
    assert any(e.get("field") == "tcp.mss" for e in fw["w02-b"])
    text = md.read_text()
    assert "| fw:eth0 -> fw:eth1 | - | drop c2s (2 flows); rewrite c2s tcp.mss (1 flow) |" in text
    assert "no capture point could start" in text


def test_trim_keeps_the_time_range(tmp_path: Path) -> None:
    path = tmp_path / "p.pcap"
    w = PcapWriter(str(path), nano=True, sync=True)
    for i in range(10):
        pkt = Ether() / IP(src="198.18.0.1", dst="198.18.0.2") / TCP(sport=1000 + i)
        pkt.time = 1000 + i
        w.write(pkt)
    w.close()
    res = trim_pcap(path, 1003.0, 1006.5)
    assert res is not None and (res.kept, res.removed) == (4, 6)
    assert (res.first_ts, res.last_ts) == (1003.0, 1006.0)
    assert [p[TCP].sport for p in rdpcap(str(path))] == [1003, 1004, 1005, 1006]
    assert trim_pcap(path, None, None) is not None
    other = tmp_path / "x.pcapng"
    other.write_bytes(b"\x0a\x0d\x0d\x0a" + b"\0" * 40)
    assert trim_pcap(other, 0, 1) is None  # not a classic pcap: left alone


def test_a_recording_has_its_trigger_in_the_manifest_and_report(tmp_path: Path) -> None:
    from dataclasses import replace

    from hopcap.bundle import write_bundle
    from tests.bundle.bundle_scenario import make_run, make_verdict

    out = tmp_path / "b"
    run = make_run(out / "pcaps")
    trigger = {
        "host": "client",
        "command": "curl -sf http://203.0.113.80/",
        "mode": "probe",
        "exit_status": 28,
        "output": "curl: (28) Connection timed out",
        "fired_ts": 1_763_790_000.5,
    }
    recording = {
        "ended": "trigger",
        "ring_s": 60.0,
        "post_s": 3.0,
        "kept_from_ts": 1_763_789_940.5,
        "kept_to_ts": 1_763_790_003.5,
        "facts_before": {"fw": {"ts": 1_763_789_940.0, "seconds_before": 60.5}},
        "warnings": [],
    }
    write_bundle(out, replace(run, trigger=trigger, recording=recording), make_verdict())
    man = json.loads((out / "manifest.json").read_text())
    assert man["trigger"] == trigger and man["recording"]["ended"] == "trigger"
    md = (out / "report.md").read_text()
    assert "## Trigger (flight recorder)" in md and "exit status 28" in md
    assert "- ended: the trigger fired" in md and "60 s before the end" in md
    html = (out / "report.html").read_text()
    assert "<h2>Trigger (flight recorder)</h2>" in html and "<h2>Recording</h2>" in html
    # an ordinary run has neither
    plain = tmp_path / "p"
    write_bundle(plain, make_run(plain / "pcaps"), make_verdict())
    pm = json.loads((plain / "manifest.json").read_text())
    assert "trigger" not in pm and "recording" not in pm
    assert "Trigger" not in (plain / "report.md").read_text()


def _records(tmp: Path, name: str, endian: str, nano: bool, times: list[float]) -> Path:
    """A classic pcap of one 60-byte record at each time (in that order)."""
    import struct

    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    units = 10**9 if nano else 10**6
    out = bytearray(struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
    for k, t in enumerate(times):
        sec = int(t)
        frac = round((t - sec) * units)
        data = bytes([k % 251]) * 60
        out += struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data
    p = tmp / name
    p.write_bytes(bytes(out))
    return p


def test_trim_walked_in_c_is_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large captures are trimmed from the compiled record walk, a run of kept records at
    a time: the same file and result as the loop over every record (out of time order,
    both byte orders and time units, a corrupt record header, a record cut short, walks
    of a few records)."""
    import struct

    from hopcap.bundle import trim
    from hopcap.correlate import _fastwalk

    if not _fastwalk.available():
        pytest.skip("needs a C compiler")
    monkeypatch.setattr(trim, "WALK", 7)
    times = [1000 + k * 0.25 for k in range(60)]
    times[10], times[40] = 1012.0, 1001.0  # out of order
    cases = []
    for endian in "<>":
        for nano in (False, True):
            cases.append(_records(tmp_path, f"ok{endian == '<'}{nano}.pcap", endian, nano, times))
    bad = _records(tmp_path, "corrupt.pcap", "<", False, times)
    raw = bytearray(bad.read_bytes())
    at = 24 + 30 * 76  # the 31st record's header: caplen above the original length
    raw[at + 12 : at + 16] = struct.pack("<I", 10)
    bad.write_bytes(bytes(raw))
    short = _records(tmp_path, "short.pcap", "<", True, times)
    short.write_bytes(short.read_bytes()[:-30])
    cases += [bad, short]
    for path in cases:
        for rng in ((1003.0, 1006.5), (None, 1004.0), (1010.0, None), (None, None), (5.0, 6.0)):
            got = {}
            for way in ("c", "loop"):
                p = tmp_path / f"{way}-{path.name}"
                p.write_bytes(path.read_bytes())
                with monkeypatch.context() as m:
                    if way == "loop":
                        m.setattr(_fastwalk, "available", lambda: False)
                    got[way] = (trim_pcap(p, *rng), p.read_bytes())
            assert got["c"] == got["loop"], (path.name, rng)
    assert got["c"][0] is not None
