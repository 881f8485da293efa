"""When a finding's packets were seen: its first packet and, when they span a time, its
last (`Finding.last_ts`): a fault that went on for seconds on one connection shows how long
it lasted in verdict.json, in the pattern's time and in the flow's table."""

from __future__ import annotations

import json
from pathlib import Path

from pcapgen import C2S, Conv, View
from test_path import HTTP_REQ, HTTP_RESP, dropped_original, points
from typer.testing import CliRunner

from hopcap.bundle.report import seen_when
from hopcap.cli import app
from hopcap.correlate import correlate
from hopcap.model import Finding, PointInput, Verdict
from hopcap.patterns import seen_span


def _blackholed(tmp: Path) -> tuple[list[PointInput], float, float]:
    """A request fw dropped 5 times (the original and 4 retransmissions over 3 s), the sixth
    copy let through: the points, the first and the last dropped copy's time."""
    c = Conv(seed=5)
    c.handshake()
    first = c.send(C2S, HTTP_REQ)[0]
    lost = [first]
    for dt in (0.2, 0.4, 0.8, 1.6):
        lost.append(c.retransmit(first, dt=dt))
    c.retransmit(first, dt=3.2)  # this one gets through
    c.response(HTTP_RESP)
    c.close()
    pts = points(tmp, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, drop=lambda s: any(s is y for y in lost))),
    ])  # fmt: skip
    return pts, lost[0].t, lost[-1].t


def _drops(v: Verdict) -> list[Finding]:
    return [f for fl in v.flows for f in fl.findings if f.kind == "drop"]


def test_a_drop_that_went_on_says_when_it_ended(tmp_path: Path) -> None:
    pts, t_first, t_last = _blackholed(tmp_path)
    v = correlate(pts)
    [d] = _drops(v)
    assert d.packets == 5
    assert d.first_ts is not None and d.last_ts is not None
    assert abs(d.first_ts - t_first) < 1e-5
    assert abs(d.last_ts - t_last) < 1e-5, (d.last_ts, t_last)
    got = json.loads(json.dumps(v.to_dict()))
    [fd] = [f for fl in got["flows"] for f in fl["findings"] if f["kind"] == "drop"]
    assert fd["last_ts"] == d.last_ts
    assert Verdict.from_dict(got).flows[0].findings == v.flows[0].findings
    # the pattern of this one flow spans the drop, not its first packet alone
    [p] = v.patterns
    assert (p.first_ts, p.last_ts) == (d.first_ts, d.last_ts)
    assert "-" in seen_span(p) and seen_span(p).count(":") == 4
    # the flow's table says it too
    assert seen_when(d).count("T") == 1 and " to " in seen_when(d)
    res = CliRunner().invoke(
        app, ["correlate", *(f"{x.name}={x.pcap}" for x in pts), "--flow", v.flows[0].id]
    )
    assert res.exit_code == 0, res.output
    assert seen_when(d) in res.output


def test_one_packet_or_one_instant_has_no_last_time(tmp_path: Path) -> None:
    v = correlate(dropped_original(tmp_path)[0])
    [d] = _drops(v)
    assert d.packets == 1 and d.last_ts is None
    assert "last_ts" not in json.dumps(v.to_dict()["flows"])
    assert " to " not in seen_when(d)


def test_the_sliced_run_has_the_same_span(tmp_path: Path) -> None:
    pts, _t0, _t1 = _blackholed(tmp_path)
    whole = correlate(pts).to_dict()
    for per in (6, 10):
        assert correlate(pts, slice_packets=per).to_dict() == whole, per
