"""Output in time proportional to its size: the orjson verdict carries exactly the content
and key order of the standard library's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pcapgen import C2S, Seg, View
from test_path import http_conv, nat_map, points

from hopcap.correlate import correlate
from hopcap.jsonout import dumps
from hopcap.model import Verdict


def _verdict(tmp: Path) -> tuple[Verdict, list[Path]]:
    convs = [http_conv(51000 + i, seed=60 + i, t0=1_763_790_000.0 + i * 0.01) for i in range(3)]

    def change(s: Seg) -> Seg:
        if s.mss is not None and s.d == C2S:
            s.mss = 1400
        return s

    pts = points(tmp, convs, [
        ("fw:eth0", lambda c: View(drop=lambda s: s.tag == "resp" and s.conv is convs[1])),
        ("fw:eth1", lambda c: View(delay=0.00003, nat=nat_map(c, sport=c.client[1] - 9000),
                                   change=change, drop=lambda s: s.tag == "req"
                                   and s.conv is convs[2])),
    ])  # fmt: skip
    v = correlate(pts)
    kinds = {f.kind for fl in v.flows for f in fl.findings}
    assert {"drop", "rewrite"} <= kinds  # the verdict exercises findings, not only legs
    return v, [p.pcap for p in pts if p.pcap is not None]


def test_json_has_the_standard_librarys_content_and_key_order(tmp_path: Path) -> None:
    v, files = _verdict(tmp_path)
    ref = json.dumps(v.to_dict(), indent=2)  # what `--json` printed before orjson
    fast = dumps(v.to_dict())
    # re-encoding the new bytes with the old encoder gives the old text: same keys in the
    # same order, same values (floats below 1e-4 are spelled in decimal, same number)
    assert json.dumps(json.loads(fast), indent=2) == ref
    # text beyond ASCII (a warning naming a file) is UTF-8, as the bundle always wrote it
    assert dumps({"warnings": ["é"]}) == json.dumps({"warnings": ["é"]}, indent=2,
                                                    ensure_ascii=False).encode()  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "hopcap", "correlate", f"fw:eth0={files[0]}",
         f"fw:eth1={files[1]}", "--json"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert out == fast + b"\n"
