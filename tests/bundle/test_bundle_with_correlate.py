"""The bundle with the real correlator: offline bundle, annotations, re-correlation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import bundle_scenario as sc

from hopcap.bundle import load_bundle, pcap_dir, write_offline_bundle
from hopcap.correlate import correlate
from hopcap.model import PointInput, pcap_filename


def test_offline_bundle_from_correlator(tmp_path: Path) -> None:
    out = tmp_path / "off"
    sc.build_pcaps(pcap_dir(out))
    points = [
        PointInput(
            name=p,
            pcap=pcap_dir(out) / pcap_filename(p),
            host=p.split(":")[0],
            interface=p.split(":")[1],
            clock_offset_hint_s=sc.OFFSETS[p],
        )
        for p in sc.POINTS
    ]
    verdict = correlate(points)
    f2 = next(f for f in verdict.flows if f.client.endswith(":40002"))
    drop = next(x for x in f2.findings if x.kind == "drop")
    assert drop.between == ("fw:eth0", "fw:eth1")
    write_offline_bundle(out, points, verdict)
    res = subprocess.run(
        [
            "tshark",
            "-r",
            str(out / "merged.pcapng"),
            "-Y",
            'frame.comment contains "dropped"',
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "tcp.srcport",
            "-e",
            "ip.id",
            "-e",
            "frame.comment",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [r.split("\t") for r in res.stdout.splitlines()]
    mine = [r for r in rows if r[1] == "40002"]
    assert len(mine) == 1
    assert mine[0][:3] == ["fw:eth0", "40002", "0x0064"]  # the first SYN, where it died
    assert f"{f2.id}: c2s dropped after this hop: never seen at fw:eth1" in mine[0][3]
    # re-correlating the bundle's own captures gives the same verdict
    b = load_bundle(out)
    assert b.warnings == []
    assert correlate(b.points) == verdict
