"""The findings of the common flows built from columns across flows (`finish_flows`) are
exactly those of the per-flow path (`finish_flow`): on a busy firewall with losses and
MSS clamping (also with the far point's capture cut short, where drops become gaps and
the per-flow path decides), on two points of one real capture, and on the ns-3 PPP path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pcapgen import busy_firewall

from hopcap.correlate import engine as E
from hopcap.correlate import findings as F
from hopcap.correlate.findings import Built, finish_flow, finish_flows
from hopcap.correlate.stages import plan_stages
from hopcap.model import PointInput
from tests.realdata import REALDATA


def _prepared(points: list[PointInput]) -> E.Prepared:
    plan = plan_stages(points)
    pts = E.read_points(plan.points, tables=plan.tables)
    prep = E.prepare(pts, {})
    every = list(range(len(prep.flows)))
    E.set_clocks(prep, [E.match_part(prep, every)])
    return prep


def _facts(b: Built) -> tuple[Any, ...]:
    """Everything of a built flow, with the finding fields that equality leaves out (every
    attribute of its findings and legs)."""
    return (repr(b), [vars(x) for x in b.findings], [vars(x) for x in b.legs])


def _check(prep: E.Prepared, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Both paths agree on every flow; returns (flows, flows the columns did not take)."""
    slow = [finish_flow(prep.pts, prep.present, f) for f in prep.flows]
    fell_back: list[int] = []

    def counted(pts: Any, present: Any, f: Any) -> Built:
        fell_back.append(1)
        return finish_flow(pts, present, f)

    monkeypatch.setattr(F, "finish_flow", counted)
    fast = finish_flows(prep.pts, prep.present, prep.flows)
    n_slow = len(fell_back)
    monkeypatch.setattr(F, "FINISH_CHUNK", 7)  # many chunks, the last one short
    chunked = finish_flows(prep.pts, prep.present, prep.flows)
    monkeypatch.undo()
    assert len(fast) == len(slow) == len(chunked)
    for a, b, c in zip(fast, slow, chunked, strict=True):
        assert _facts(a) == _facts(b) == _facts(c)
    return len(prep.flows), n_slow


@pytest.mark.parametrize(("loss", "seed"), [(0.05, 3), (0.15, 5)])
def test_busy_firewall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loss: float, seed: int
) -> None:
    a, b = busy_firewall(tmp_path, 150, loss=loss, seed=seed)
    prep = _prepared([PointInput("fw:eth0", str(a)), PointInput("fw:eth1", str(b))])
    n, slow = _check(prep, monkeypatch)
    kinds = {x.kind for f in finish_flows(prep.pts, prep.present, prep.flows) for x in f.findings}
    assert {"drop", "rewrite"} <= kinds
    assert n >= 150 and slow < n // 2  # most flows went the column way


def test_busy_firewall_blind_far_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The outside capture stops half way: drops after that are gaps, decided per flow."""
    a, b = busy_firewall(tmp_path, 150, loss=0.1, seed=9)
    prep = _prepared([PointInput("fw:eth0", str(a)), PointInput("fw:eth1", str(b))])
    t = prep.pts[1].table
    prep.pts[1].stop_ns = int(t.ts.min()) + (int(t.ts.max()) - int(t.ts.min())) // 2
    n, slow = _check(prep, monkeypatch)
    gaps = [x for f in finish_flows(prep.pts, prep.present, prep.flows) for x in f.findings
            if x.kind == "gap"]  # fmt: skip
    assert gaps and 0 < slow < n


@pytest.mark.parametrize(
    "names",
    [
        ("haka/http_request-modif.pcap", "haka/http_request-modif-ref.pcap"),
        ("tcpreplay/test.pcap", "tcpreplay/test.rewrite_sequence"),
        ("tcpreplay/test.pcap", "tcpreplay/test.rewrite_1ttl"),
        ("ns3-ppp/tcp-large-transfer-0-0.pcap", "ns3-ppp/tcp-large-transfer-1-0.pcap",
         "ns3-ppp/tcp-large-transfer-1-1.pcap", "ns3-ppp/tcp-large-transfer-2-0.pcap"),
    ],
)  # fmt: skip
def test_real_captures(names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [REALDATA / x for x in names]
    if not all(p.exists() for p in paths):
        pytest.fail(f"missing test capture among {names}")
    prep = _prepared([PointInput(f"p{i}", str(p)) for i, p in enumerate(paths)])
    n, _slow = _check(prep, monkeypatch)
    assert n > 0


def test_tuple_strings_in_bulk_equal_the_properties() -> None:
    """`fill_strs` writes the strings the Half properties give: IPv4 edges (0.0.0.0,
    255.255.255.255, a mapped address's low word), ports 0 and 65535, IPv6."""
    import ipaddress

    from hopcap.correlate.conns import Half, fill_strs

    def half(v: int, src: str, sport: int, dst: str, dport: int) -> Half:
        a, b = int(ipaddress.ip_address(src)), int(ipaddress.ip_address(dst))
        lo = (1 << 64) - 1
        return Half(
            0, np.zeros(0, np.int64), 0, 0, v, (a >> 64, a & lo), (b >> 64, b & lo), sport,
            dport, False, False, 0, 0, 0, False,
        )  # fmt: skip

    specs = [
        (4, "0.0.0.0", 0, "255.255.255.255", 65535),
        (4, "198.18.0.1", 40000, "10.200.3.4", 80),
        (4, "1.2.3.4", 1, "100.64.0.10", 443),
        (6, "2001:db8::10", 40000, "::1", 80),
        (6, "::ffff:192.0.2.1", 5, "fe80::1", 6),
    ]
    bulk = [half(*s) for s in specs]
    fill_strs(bulk)
    for s, h in zip(specs, bulk, strict=True):
        ref = half(*s)  # the properties, computed on first read
        assert (h.src_str, h.dst_str, h.tuple_str) == (ref.src_str, ref.dst_str, ref.tuple_str)
    assert bulk[0].tuple_str == "0.0.0.0:0 > 255.255.255.255:65535"
