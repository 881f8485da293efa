"""A healthy proxied run on the Internet, with the Internet's noise (tests/correlate/noisy.py:
the patterns of real relay and server captures, built with scapy for each test): the
traffic the Internet sends to the relay's and server's own addresses is not a drop, an
injection, a reset or a rewrite on the path; it is kept, set apart (`path: false`) with
the host it is local to; the run's own flows stay whole, and a real drop among the noise
is still found."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopcap.cli import app
from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict
from tests.correlate import noisy
from tests.correlate.noisy import NOISE, RELAY, RELAY_PUB, SERVER, SERVER_PUB, TARGET

POINTS = ("client", "relay", "server")
FAULTS = ("drop", "inject", "rewrite", "reset")


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Path]:
    return noisy.write_run(tmp_path / "run")


def three(files: dict[str, Path], **kw: object) -> Verdict:
    return correlate([PointInput(name=p, pcap=files[p]) for p in POINTS], **kw)  # type: ignore[arg-type]


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


def by_client(v: Verdict, ep: str) -> list[str]:
    return [f.id for f in v.flows if f.client == ep]


def check_path(v: Verdict) -> None:
    """The run's own flows, whole: the client's connection through the user-mode NAT to
    the proxy (one flow, its front connection at the relay in it once), and the proxy's
    connection to the server through the cloud NAT."""
    front = [f for f in v.flows if f.client == f"{noisy.CLIENT[0]}:{noisy.CLIENT[1]}"]
    assert len(front) == 1 and front[0].path
    assert [(leg.point, leg.link) for leg in front[0].legs] == [
        ("client", "same"),
        ("relay", "proxied"),
    ]
    at_relay = f"{noisy.VBOX_OUT[0]}:{noisy.VBOX_OUT[1]} > {RELAY}:3128"
    assert front[0].legs[1].tuple == at_relay
    assert not any(leg.tuple == at_relay for f in v.flows if f is not front[0] for leg in f.legs)
    # the proxy closed with its FIN, then a RST to the client's FIN: a note, not a reset
    assert any("closed with RST after its FIN" in d for d in front[0].legs[1].details)
    back = [f for f in v.flows if f.client == f"{RELAY}:40109"]
    assert len(back) == 1 and back[0].path
    assert [(leg.point, leg.link) for leg in back[0].legs] == [("relay", "same"), ("server", "nat")]


def test_a_healthy_noisy_run_has_no_drop_inject_rewrite_or_reset(run: dict[str, Path]) -> None:
    v = three(run)
    assert faults(v) == []
    check_path(v)
    off = [fl for fl in v.flows if not fl.path]
    assert Counter(fl.local_to for fl in off) == NOISE
    for fl in off:
        assert {leg.point for leg in fl.legs} == {fl.local_to} and not fl.findings
        assert fl.summary.startswith(f"local to {fl.local_to}: ")
    assert v.to_dict()["flows"][0]["path"] is True  # on-path flows first
    hosts = {h.host: h for h in v.hosts}
    assert (hosts["relay"].addresses, hosts["relay"].source) == ((RELAY, RELAY_PUB), "inferred")
    assert hosts["server"].addresses == (SERVER, SERVER_PUB)
    # the hosts' own DNS and NTP, and pings to each
    assert [f.local_to for f in v.flows if f.client == f"{RELAY}:45000"] == ["relay"]
    assert [f.local_to for f in v.flows if f.client == f"{SERVER}:123"] == ["server"]
    pings = {(f.proto, f.server.split(":")[0], f.local_to) for f in off if f.proto == "icmp"}
    assert pings == {("icmp", RELAY_PUB, "relay"), ("icmp", SERVER_PUB, "server")}


def test_one_scanners_identical_syns_to_both_hosts_are_two_connections(
    run: dict[str, Path],
) -> None:
    """Same source, ISN and IP ID 54321 to the relay and the server: not one NAT'd
    connection, each host answered its own (the relay sooner, or the TTLs say so)."""
    v = three(run)
    scanner = [f for f in v.flows if f.client == "203.0.113.20:54094"]
    assert len(scanner) == 6
    assert all(len(f.legs) == 1 and not f.path and not f.findings for f in scanner)
    assert Counter(f.local_to for f in scanner) == {"relay": 3, "server": 3}
    for f in scanner:
        want = "relay" if f.server.split(":")[0] in (RELAY, RELAY_PUB) else "server"
        assert f.local_to == want
    # two scanners, one IP ID and MSS, every port and the ISN different: two flows too
    for ep, host in (("203.0.113.30:50223", "relay"), ("203.0.113.31:50517", "server")):
        (f,) = (x for x in v.flows if x.client == ep)
        assert (len(f.legs), f.local_to) == (1, host)


def test_a_real_drop_among_the_noise_is_found(tmp_path: Path) -> None:
    """The backend's response segment lost between server and relay (retransmitted)."""
    v = three(noisy.write_run(tmp_path / "drop", drop_response=True))
    got = faults(v)
    assert [(k, b) for _id, k, b, _w in got] == [("drop", ("server", "relay"))]
    (fl,) = (f for f in v.flows if f.id == got[0][0])
    assert fl.client == f"{RELAY}:40109" and fl.path
    assert fl.summary.startswith("data dropped between server and relay")
    check_path(v)
    assert Counter(f.local_to for f in v.flows if not f.path) == NOISE


def test_stated_addresses_are_the_hosts_addresses(run: dict[str, Path]) -> None:
    """`--host` is authoritative: an address left out is not the host's (the scanners'
    SYNs to it refused there are drops again), and all of them given leave nothing."""
    part = three(run, hosts={"relay": [RELAY]})
    assert {h.host: h.source for h in part.hosts}["relay"] == "stated"
    dropped = {fl.server for fl in part.flows for f in fl.findings if f.kind == "drop"}
    assert dropped == {f"{RELAY_PUB}:44223", f"{RELAY_PUB}:50159"}
    full = three(run, hosts={"relay": [RELAY, RELAY_PUB]})
    assert faults(full) == []


def test_the_targets_flows_come_first(run: dict[str, Path]) -> None:
    v = three(run, target=TARGET)
    assert v.target == TARGET
    assert v.flows[0].target and v.flows[0].server == TARGET
    assert [fl.id for fl in v.flows] == [f"f{i + 1}" for i in range(len(v.flows))]
    assert sum(fl.target for fl in v.flows) == 1


def test_cli_host_and_also_seen(run: dict[str, Path]) -> None:
    args = ["correlate", *(f"{p}={run[p]}" for p in POINTS)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "no flow had drops, injections, resets or gaps" in r.output
    assert (
        "also seen (the hosts' own traffic, not on the path): 9 flows local to relay, "
        "8 flows local to server" in r.output
    )
    assert f"relay {RELAY}, {RELAY_PUB} (inferred)" in r.output
    r = CliRunner().invoke(app, [*args, "--host", f"relay={RELAY},{RELAY_PUB}", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["hosts"]["relay"] == {
        "addresses": [RELAY, RELAY_PUB],
        "source": "stated",
    }
    # every host has loopback and link-local addresses (`ip addr` facts list them): the
    # terminal leaves them out, verdict.json keeps them
    every = f"relay=127.0.0.1,::1,{RELAY},fe80::1,{RELAY_PUB}"
    r = CliRunner().invoke(app, [*args, "--host", every])
    assert r.exit_code == 0, r.output
    assert f"hosts' own addresses: relay {RELAY}, {RELAY_PUB}; " in r.output
    r = CliRunner().invoke(app, [*args, "--host", every, "--json"])
    assert {"127.0.0.1", "::1", "fe80::1"} < set(
        json.loads(r.stdout)["hosts"]["relay"]["addresses"]
    )
    r = CliRunner().invoke(app, [*args, "--host", f"rly={RELAY}"])
    assert r.exit_code != 0
    assert "--host rly: no capture point of a host named 'rly'" in r.output
    r = CliRunner().invoke(app, [*args, "--host", "relay=198.18.0.x"])
    assert r.exit_code != 0 and "'198.18.0.x' is not an IP address" in r.output
    r = CliRunner().invoke(app, [*args, "--target", "nowhere:80"])
    assert r.exit_code != 0 and "bad --target 'nowhere:80'" in r.output


def test_the_report_shows_the_hosts_own_traffic_apart(run: dict[str, Path], tmp_path: Path) -> None:
    from hopcap.bundle import write_offline_bundle

    inputs = [PointInput(name=p, pcap=run[p]) for p in POINTS]
    v = correlate(inputs, target=TARGET)
    write_offline_bundle(tmp_path / "b", inputs, v)
    md = (tmp_path / "b" / "report.md").read_text()
    assert "- **Also seen:** 9 flows local to relay, 8 flows local to server" in md
    assert "## Also seen: the hosts' own traffic (17)" in md
    assert "No flow was dropped, injected into or reset" in md
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Also seen: the hosts' own traffic (17)</h2>" in html
    assert f"<td>relay</td><td>203.0.113.10:41145 -&gt; {RELAY}:8822</td>" in html
    again = Verdict.from_dict(json.loads((tmp_path / "b" / "verdict.json").read_text()))
    assert [f.path for f in again.flows] == [f.path for f in v.flows]
    assert again.target == TARGET


def test_a_proxy_reset_refusing_data_stays_a_reset(tmp_path: Path) -> None:
    """The proxy's FIN then RST is a close when the client sent nothing after the FIN
    (the healthy run: a note on the leg); when the client still sent data, the RST
    refused it: the relay's reset, reported."""
    v = three(noisy.write_run(tmp_path / "rst", refused=True))
    got = faults(v)
    assert [(k, b) for _id, k, b, _w in got] == [("reset", ("relay", "relay"))]
    (fl,) = (f for f in v.flows if f.id == got[0][0])
    assert fl.client == f"{noisy.CLIENT[0]}:{noisy.CLIENT[1]}"
    assert not any("closed with RST" in d for leg in fl.legs for d in leg.details)


def test_udp_to_a_hosts_closed_port_ends_at_that_host(tmp_path: Path) -> None:
    """UDP to closed ports, refused by the capture host's own ICMP port unreachable: a
    scanner's datagram to an address of the relay only it hits, the tunnel's last
    datagrams to the client as the relay's capture ends. No drop: the relay's error goes
    back to the scanner (never toward the client, where the datagram never was), and the
    relay's capture ended before the client's errors could reach it (a gap)."""
    v = three(noisy.write_run(tmp_path / "udp", unreachables=True))
    assert faults(v) == []
    check_path(v)
    # the scanner's datagram: to the relay itself (the address inferred from its answer)
    (scan,) = (f for f in v.flows if f.client == "203.0.113.40:60229")
    assert (scan.path, scan.local_to, scan.findings) == (False, "relay", ())
    why = f"local to relay: addressed to relay itself ({noisy.RELAY_ANCHOR})"
    assert scan.summary.startswith(why)
    relay = {h.host: h for h in v.hosts}["relay"]
    assert noisy.RELAY_ANCHOR in relay.addresses
    assert Counter(f.local_to for f in v.flows if not f.path) == {"relay": 10, "server": 8}
    # the tunnel: through the NAT, its errors at the end of the relay's capture a gap
    (vpn,) = (f for f in v.flows if f.client == f"{noisy.CLIENT[0]}:655")
    assert [leg.point for leg in vpn.legs] == ["client", "relay"]
    (gap,) = (f for f in vpn.findings if f.kind == "gap")
    assert gap.between == ("client", "relay") and gap.packets == 2
    assert "the capture at relay ended less than a second after it" in gap.what


def test_a_connection_between_two_capture_hosts_is_theirs(tmp_path: Path) -> None:
    """The server's and the relay's own connection (its SYN before the captures), seen
    at both: the side with the ephemeral port is the server, downstream, so read along
    the path each direction's TTL "rose" 62 -> 64. Each side's packets left its own host
    there with TTL 64: not a rewrite, the two hosts' own traffic."""
    v = three(noisy.write_run(tmp_path / "link", link=True))
    assert faults(v) == []
    check_path(v)
    (fl,) = (f for f in v.flows if f.client.endswith(":50406"))
    assert [leg.point for leg in fl.legs] == ["relay", "server"]
    assert (fl.path, fl.local_to, fl.findings) == (False, "relay", ())
    assert fl.summary == (
        "local to relay: a connection between relay and server themselves (each side's "
        "packets left its own host at its point: TTL 64 there, 62 at the other), not along "
        "the path"
    )
