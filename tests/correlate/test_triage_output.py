"""A busy firewall (generated pcaps: masquerade, MSS clamping, lost packets) through the
correlator and `hopcap correlate`'s terminal output: patterns first, then only the flows
with drops, most packets first, `--all`, `--flow`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pcapgen import busy_firewall
from typer.testing import CliRunner

from hopcap import cli
from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict
from hopcap.patterns import alarm_packets

N = 60


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return busy_firewall(tmp_path_factory.mktemp("busy"), N, loss=0.03, seed=11)


@pytest.fixture(scope="module")
def verdict(captures: tuple[Path, Path]) -> Verdict:
    a, b = captures
    return correlate([PointInput("fw:eth0", a), PointInput("fw:eth1", b)])


def run(captures: tuple[Path, Path], *extra: str) -> tuple[int, str]:
    a, b = captures
    res = CliRunner().invoke(cli.app, ["correlate", f"fw:eth0={a}", f"fw:eth1={b}", *extra])
    return res.exit_code, res.output


def test_clamping_is_one_policy_pattern_and_losses_are_drop_patterns(verdict: Verdict) -> None:
    assert len(verdict.flows) == N
    policy = [p for p in verdict.patterns if p.policy]
    assert len(policy) == 1
    m = policy[0]
    assert (m.kind, m.field, m.before, m.after, m.label) == (
        "rewrite",
        "tcp.mss",
        1460,
        1400,
        "MSS clamping",
    )
    assert m.between == ("fw:eth0", "fw:eth1") and m.flows == m.of == N
    drops = [p for p in verdict.patterns if p.kind == "drop"]
    assert drops and {p.direction for p in drops} <= {"c2s", "s2c"}
    # every drop finding of every flow is in exactly one drop pattern
    per_flow = sum(1 for fl in verdict.flows for f in fl.findings if f.kind == "drop")
    assert sum(p.packets for p in drops) >= per_flow
    assert {fid for p in drops for fid in p.flow_ids} == {
        fl.id for fl in verdict.flows if any(f.kind == "drop" for f in fl.findings)
    }
    assert verdict.patterns[-1] is m  # device policy after the problems


def test_default_output_patterns_first_then_only_broken_flows(
    captures: tuple[Path, Path], verdict: Verdict
) -> None:
    code, out = run(captures)
    assert code == 0
    assert out.index("patterns (") < out.index("device policy") < out.index("flows with drops")
    assert f"MSS clamping: tcp.mss rewritten 1460 -> 1400 on {N} of {N} flows" in out
    listed = re.findall(r"^(f\d+)\s", out, re.M)
    alarms = [fl for fl in verdict.flows if any(f.kind == "drop" for f in fl.findings)]
    assert listed and set(listed) == {fl.id for fl in alarms}
    by_id = {fl.id: fl for fl in verdict.flows}
    counts = [alarm_packets(by_id[i]) for i in listed]
    assert counts == sorted(counts, reverse=True)
    assert f"not listed: {N - len(alarms)} with device policy only" in out


def test_the_flow_list_is_capped(
    captures: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "MAX_FLOWS_SHOWN", 2)
    code, out = run(captures)
    assert code == 0
    assert len(re.findall(r"^f\d+\s", out, re.M)) == 2
    assert re.search(r"^\.\.\. \d+ more, use --all", out, re.M)


def test_all_lists_every_flow(captures: tuple[Path, Path]) -> None:
    code, out = run(captures, "--all")
    assert code == 0
    assert sorted(re.findall(r"^(f\d+)\s", out, re.M)) == sorted(f"f{i}" for i in range(1, N + 1))
    assert "not listed" not in out
    # a flow with MSS clamping only: its SYN's MSS rewritten, one packet ("1 packets" on
    # every such row of a busy firewall's list)
    assert re.search(r"tcp\.mss rewritten inside fw: 1460 -> 1400 \(1 packet\)$", out, re.M), out
    assert "(1 packets)" not in out


def test_one_flow_in_detail(captures: tuple[Path, Path], verdict: Verdict) -> None:
    fl = next(f for f in verdict.flows if any(x.kind == "drop" for x in f.findings))
    code, out = run(captures, "--flow", fl.id)
    assert code == 0
    assert f"flow {fl.id}: {fl.client} -> {fl.server} (tcp)" in out
    assert fl.summary in out
    assert "fw:eth1" in out and "drop" in out and "tcp.mss: 1460 -> 1400" in out
    assert "part of the patterns:" in out and "MSS clamping" in out
    assert not re.search(r"^f\d+\s", out, re.M)  # no flow table


def test_an_unknown_flow_is_an_error_with_a_hint(captures: tuple[Path, Path]) -> None:
    code, out = run(captures, "--flow", "f9999")
    assert code == 1
    assert "no flow 'f9999'" in out and f"flows are f1 to f{N}" in out


def test_json_keeps_every_flow_and_has_the_patterns(captures: tuple[Path, Path]) -> None:
    code, out = run(captures, "--json")
    assert code == 0
    d = json.loads(out)
    assert len(d["flows"]) == N
    pol = [p for p in d["patterns"] if p["policy"]]
    assert [(p["field"], p["before"], p["after"], p["flows"]) for p in pol] == [
        ("tcp.mss", 1460, 1400, N)
    ]


def test_report_patterns_first_then_capped_broken_flows(
    verdict: Verdict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hopcap.bundle import report

    alarms = [fl for fl in verdict.flows if any(f.kind == "drop" for f in fl.findings)]
    assert len(alarms) >= 3
    monkeypatch.setattr(report, "MAX_DETAILED", 2)
    monkeypatch.setattr(report, "MAX_LISTED", 1)
    manifest = {"run_id": "r1", "points": [{"name": "fw:eth0"}, {"name": "fw:eth1"}]}
    md = report.render_markdown(manifest, verdict, {})
    order = [
        md.index("## Patterns ("),
        md.index("## Device policy (1)"),
        md.index(f"## Flows with drops, injections, resets or gaps ({len(alarms)})"),
        md.index(f"## Other flows ({N - len(alarms)})"),
    ]
    assert order == sorted(order)
    assert f"- MSS clamping: tcp.mss rewritten 1460 -> 1400 on {N} of {N} flows" in md
    assert md.count("\n### f") == 2  # two flows in detail, one row, the rest counted
    assert "The next 1, one line each:" in md
    assert f"... {len(alarms) - 3} more in verdict.json." in md
    assert f"{N - len(alarms)} flows with only the device policy above" in md
    html = report.render_html(manifest, verdict, {})
    assert html.count("<svg") == 2
    assert "MSS clamping" in html[html.index("<h2>Device policy") :][:2000]
    assert html.index("<h2>Patterns") < html.index("<h2>Flows with drops")
