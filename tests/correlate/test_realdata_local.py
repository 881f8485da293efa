"""Real healthy runs on the Internet (tests/data/proxydetection, see PROVENANCE.md): the
traffic the Internet sends to the relay's and server's own addresses is not a drop, an
injection or a reset on the path; it is kept, set apart (`path: false`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopcap.cli import app
from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict
from tests.realdata import REALDATA

DATA = REALDATA / "proxydetection"
CASES = [
    "3proxy_httpproxy_http2",
    "3proxy_socks5_http1",
    "tinc_tinc_http1",
    "sshuttle_sshuttle_http1",
    "base_base_http1",
    "base_base_ssh",
]
POINTS = ("client", "relay", "server")
FAULTS = ("drop", "inject", "rewrite", "reset")


def three(case: str, **kw: object) -> Verdict:
    d = DATA / case
    return correlate([PointInput(name=p, pcap=d / f"{p}.pcap") for p in POINTS], **kw)  # type: ignore[arg-type]


def faults(v: Verdict) -> list[tuple[str, str, tuple[str, str], str]]:
    """Drops, injections, rewrites and resets that are not device policy."""
    policy = {
        (fid, p.kind, p.between, p.field) for p in v.patterns if p.policy for fid in p.flow_ids
    }
    return [
        (fl.id, f.kind, f.between, f.what)
        for fl in v.flows
        for f in fl.findings
        if f.kind in FAULTS and (fl.id, f.kind, f.between, f.field) not in policy
    ]


@pytest.mark.parametrize("case", CASES)
def test_a_healthy_real_run_has_no_drop_inject_rewrite_or_reset(case: str) -> None:
    v = three(case)
    assert faults(v) == []
    # the Internet's noise is there, kept and set apart with the host it is local to
    off = [fl for fl in v.flows if not fl.path]
    assert off, "these captures carry scanners' and the hosts' own traffic"
    assert all(fl.local_to in POINTS and not fl.findings for fl in off)
    assert all(fl.summary.startswith(f"local to {fl.local_to}: ") for fl in off)
    # the run's own connection (from the client, 10.0.2.15) stays on the path
    assert any(fl.path and fl.legs[0].point == "client" and fl.proto == "tcp" for fl in v.flows)
    assert v.to_dict()["flows"][0]["path"] is True  # on-path flows first


def test_a_scanner_syn_to_the_relay_is_the_relays_own_traffic() -> None:
    v = three("3proxy_httpproxy_http2")
    fl = next(f for f in v.flows if f.client == "165.154.163.10:41145")
    assert fl.server == "10.19.0.5:8822"
    assert (fl.path, fl.local_to, fl.findings) == (False, "relay", ())
    assert "addressed to relay itself (10.19.0.5)" in fl.summary
    hosts = {h.host: h for h in v.hosts}
    assert hosts["relay"].source == "inferred"
    assert {"10.19.0.5", "134.122.82.167"} <= set(hosts["relay"].addresses)
    assert "104.248.137.116" in hosts["server"].addresses
    # kept in verdict.json, marked, and read back the same
    d = v.to_dict()
    j = next(x for x in d["flows"] if x["client"] == "165.154.163.10:41145")
    assert j["path"] is False and j["local_to"] == "relay"
    assert d["hosts"]["relay"]["source"] == "inferred"
    assert Verdict.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_stated_addresses_are_the_hosts_addresses() -> None:
    """`--host` is authoritative: an address left out is not the host's (the scanners' SYNs
    to it are drops again), and all of them given leave nothing."""
    part = three("3proxy_httpproxy_http2", hosts={"relay": ["10.19.0.5"]})
    assert {h.host: h.source for h in part.hosts}["relay"] == "stated"
    dropped = {fl.server for fl in part.flows for f in fl.findings if f.kind == "drop"}
    assert dropped == {"134.122.82.167:44223", "134.122.82.167:445"}
    full = three("3proxy_httpproxy_http2", hosts={"relay": ["10.19.0.5", "134.122.82.167"]})
    assert faults(full) == []


def test_the_targets_flows_come_first() -> None:
    v = three("3proxy_httpproxy_http2", target="68.183.243.119:8001")
    assert v.target == "68.183.243.119:8001"
    assert v.flows[0].target and v.flows[0].server == "68.183.243.119:8001"
    assert [fl.id for fl in v.flows] == [f"f{i + 1}" for i in range(len(v.flows))]
    assert sum(fl.target for fl in v.flows) == 1


def test_cli_host_and_also_seen(tmp_path: Path) -> None:
    d = DATA / "3proxy_httpproxy_http2"
    args = ["correlate", *(f"{p}={d / p}.pcap" for p in POINTS)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "no flow had drops, injections, resets or gaps" in r.output
    assert (
        "also seen (the hosts' own traffic, not on the path): 4 flows local to relay, "
        "10 flows local to server" in r.output
    )
    assert "relay 10.19.0.5, 134.122.82.167 (inferred)" in r.output
    r = CliRunner().invoke(app, [*args, "--host", "relay=10.19.0.5,134.122.82.167", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hosts"]["relay"] == {
        "addresses": ["10.19.0.5", "134.122.82.167"],
        "source": "stated",
    }
    r = CliRunner().invoke(app, [*args, "--host", "rly=10.19.0.5"])
    assert r.exit_code != 0
    assert "--host rly: no capture point of a host named 'rly'" in r.output
    r = CliRunner().invoke(app, [*args, "--host", "relay=10.19.0.x"])
    assert r.exit_code != 0 and "'10.19.0.x' is not an IP address" in r.output
    r = CliRunner().invoke(app, [*args, "--target", "nowhere:80"])
    assert r.exit_code != 0 and "bad --target 'nowhere:80'" in r.output


def test_the_report_shows_the_hosts_own_traffic_apart(tmp_path: Path) -> None:
    from hopcap.bundle import write_offline_bundle

    d = DATA / "3proxy_httpproxy_http2"
    inputs = [PointInput(name=p, pcap=d / f"{p}.pcap") for p in POINTS]
    v = correlate(inputs, target="68.183.243.119:8001")
    write_offline_bundle(tmp_path / "b", inputs, v)
    md = (tmp_path / "b" / "report.md").read_text()
    assert "- **Also seen:** 4 flows local to relay, 10 flows local to server" in md
    assert "## Also seen: the hosts' own traffic (14)" in md
    assert "No flow was dropped, injected into or reset" in md
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Also seen: the hosts' own traffic (14)</h2>" in html
    assert "<td>relay</td><td>165.154.163.10:41145 -&gt; 10.19.0.5:8822</td>" in html
    # read back from the bundle: the same flows set apart
    again = Verdict.from_dict(json.loads((tmp_path / "b" / "verdict.json").read_text()))
    assert [f.path for f in again.flows] == [f.path for f in v.flows]
    assert again.target == "68.183.243.119:8001"
