"""Output in time proportional to its size: the orjson verdict carries exactly the content
and key order of the standard library's."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from pcapgen import C2S, Seg, View
from test_path import http_conv, nat_map, points

from hopcap.correlate import correlate
from hopcap.jsonout import FLOWS_PER_PIECE, dumps, write_verdict
from hopcap.model import Finding, Flow, HostAddresses, Leg, LegPart, PointSummary, Verdict


def _verdict(tmp: Path) -> tuple[Verdict, list[Path]]:
    convs = [http_conv(51000 + i, seed=60 + i, t0=1_763_790_000.0 + i * 0.01, lost=lost)
             for i, lost in enumerate(("", "resp", "req"))]  # fmt: skip

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


def _flow(i: int, **kw: object) -> Flow:
    legs = (
        Leg("a", f"198.18.0.1:{1000 + i} > 203.0.113.5:443", "same"),
        Leg("b", f"198.51.100.1:{2000 + i} > 203.0.113.5:443", "nat", latency_s=0.00008),
    )
    fnd = (
        Finding("rewrite", "c2s", ("a", "b"), 1, 0, 1_763_790_000.5 + i, "SYN", "tcp.mss",
                1460, 1360),
        Finding("drop", "s2c", ("b", "a"), 2, 300, None, "data dropped (2 data) «é»"),
    )  # fmt: skip
    return Flow(f"f{i + 1}", "tcp", "198.18.0.1:1", "203.0.113.5:443", legs, fnd, "s", **kw)  # type: ignore[arg-type]


def test_verdict_written_in_pieces_is_the_whole_dumps() -> None:
    """`write_verdict` writes the flows a few hundred at a time, each flow's, leg's and
    finding's dict made as it is encoded: the bytes are those of the whole tree's, at
    every piece boundary, with the keys after the flows, and with none."""
    pts = (PointSummary("a", "a", "", 10, clock_offset_s=0.0),)
    odd = (
        _flow(0, path=False, local_to="a", target=True),
        Flow("f9", "udp", "c", "s", (Leg("a", "t", "tunnel", ("x: 1",), None,
                                         LegPart((1, 2), 3, ((0, 5),), ()), "gre"),),
             (), "odd", None),
    )  # fmt: skip
    after: dict[str, object] = {
        "warnings": ("w1", "w2"),
        "target": "203.0.113.5:443",
        "hosts": (HostAddresses("b", ("203.0.113.5",), "stated"),),
    }
    for n in (0, 1, FLOWS_PER_PIECE - 1, FLOWS_PER_PIECE, 2 * FLOWS_PER_PIECE + 3):
        for extra in ({}, after):
            flows = tuple(_flow(i) for i in range(n)) + (odd if n == 1 else ())
            v = Verdict(pts, flows, **extra)  # type: ignore[arg-type]
            buf = io.BytesIO()
            write_verdict(v, buf)
            assert buf.getvalue() == dumps(v.to_dict()) + b"\n", (n, extra)
    # what orjson cannot encode (an integer beyond 64 bits) falls back to the standard
    # library for that piece: the same JSON values
    big = Finding("rewrite", "c2s", ("a", "b"), 1, 0, 1.5, "x", "ip6.src", 1 << 100, 1)
    flows = tuple(_flow(i) for i in range(FLOWS_PER_PIECE + 1))
    flows += (replace(flows[0], id="fbig", findings=(big,)),)
    v = Verdict(pts, flows, warnings=("w",))
    buf = io.BytesIO()
    write_verdict(v, buf)
    assert json.loads(buf.getvalue()) == json.loads(json.dumps(v.to_dict()))
