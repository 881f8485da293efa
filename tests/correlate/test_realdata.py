"""Real captures nobody on this project made (Haka's and tcpreplay's own test data), with
the outcome tests/data/PROVENANCE.md gives for each pair."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pcapgen import as_two_points

from hopcap.correlate import correlate
from hopcap.model import Finding, Flow, Pattern, PointInput, Verdict
from hopcap.patterns import find_patterns
from tests.realdata import REALDATA

REAL = REALDATA
HAKA = REAL / "haka"
TCPREPLAY = REAL / "tcpreplay"


def test_real_captures_are_present() -> None:
    assert (REAL / "PROVENANCE.md").is_file(), f"the real captures are missing: {REAL}"


def haka(name: str, tmp: Path) -> Verdict:
    """Haka's `<name>.pcap` entered the middlebox, `<name>-ref.pcap` left it, both
    directions in each file: as path points, `in` holds what the client sent and what
    reached the client, `out` what reached the server and what the server sent."""
    a, b = as_two_points(HAKA / f"{name}.pcap", HAKA / f"{name}-ref.pcap", tmp)
    return correlate([PointInput(name="in", pcap=a), PointInput(name="out", pcap=b)])


def pair(a: Path, b: Path) -> Verdict:
    return correlate([PointInput(name="in", pcap=a), PointInput(name="out", pcap=b)])


def findings(v: Verdict, proto: str = "tcp") -> list[Finding]:
    """Findings of the flows of one protocol (these captures carry DNS and ICMP too)."""
    return [f for fl in v.flows if fl.proto == proto for f in fl.findings]


def tcp(v: Verdict) -> list[Flow]:
    return [fl for fl in v.flows if fl.proto == "tcp"]


def tcp_patterns(v: Verdict) -> tuple[Pattern, ...]:
    """The patterns of the TCP flows alone (the DNS and ping flows have their own)."""
    return find_patterns(dataclasses.replace(v, flows=tuple(tcp(v))))


def kinds(v: Verdict, proto: str = "tcp") -> set[tuple[str, str | None]]:
    return {(f.kind, f.field) for f in findings(v, proto)}


def test_haka_ipv4_nat(tmp_path: Path) -> None:
    v = haka("ipv4_nat", tmp_path)
    assert findings(v) == []
    assert len(tcp(v)) == 1
    assert [leg.link for leg in tcp(v)[0].legs] == ["same", "nat"]


def test_haka_tcp_filter(tmp_path: Path) -> None:
    v = haka("tcp_filter", tmp_path)
    by_server = {fl.server: fl for fl in tcp(v)}
    assert by_server["192.168.20.1:80"].findings == ()
    bad = by_server["192.168.20.1:3306"]
    syn_drop = [f for f in bad.findings if f.kind == "drop" and f.direction == "c2s"]
    assert syn_drop and syn_drop[0].between == ("in", "out") and syn_drop[0].what.startswith("SYN")
    assert {f.kind for f in findings(v)} == {"drop"}
    assert bad.summary.startswith("SYN dropped between in and out")


def test_haka_tcp_stream_rst(tmp_path: Path) -> None:
    v = haka("tcp_stream-rst", tmp_path)
    fs = findings(v)
    assert any(f.kind == "drop" and f.bytes > 0 for f in fs)
    rst = [f for f in fs if f.kind == "inject" and f.what.startswith("RST")]
    assert rst and all(f.between in (("in", "out"), ("out", "in")) for f in rst)
    assert not any(f.kind == "rewrite" for f in fs)


def test_haka_tcp_streammodif_rst(tmp_path: Path) -> None:
    v = haka("tcp_streammodif-rst", tmp_path)
    fs = findings(v)
    assert any(f.kind == "rewrite" and f.field == "payload" for f in fs)
    assert any(f.kind == "inject" and f.what.startswith("RST") for f in fs)


@pytest.mark.parametrize("name", ["tcp_streaminsert", "tcp_streamdelete"])
def test_haka_stream_insert_delete(tmp_path: Path, name: str) -> None:
    v = haka(name, tmp_path)
    k = kinds(v)
    assert ("rewrite", "payload") in k
    assert ("rewrite", "tcp.seq") in k and ("rewrite", "tcp.ack") in k
    assert len(tcp(v)) == 1
    payload = next(f for f in findings(v) if f.field == "payload")
    assert payload.direction == "c2s" and payload.between == ("in", "out")


def test_haka_http_request_modif(tmp_path: Path) -> None:
    v = haka("http_request-modif", tmp_path)
    rw = [f for f in findings(v) if f.kind == "rewrite" and f.field == "payload"]
    assert rw and rw[0].direction == "c2s"
    assert "User-Agent" in str(rw[0].before)


def test_haka_http_response_modif(tmp_path: Path) -> None:
    v = haka("http_response-modif", tmp_path)
    rw = [f for f in findings(v) if f.kind == "rewrite" and f.field == "payload"]
    assert rw and rw[0].direction == "s2c" and rw[0].between == ("out", "in")
    assert not any(f.kind == "drop" and f.direction == "s2c" for f in findings(v))


def test_haka_http_request_reset(tmp_path: Path) -> None:
    v = haka("http_request-reset", tmp_path)
    fs = findings(v)
    assert any(f.kind == "inject" and f.what.startswith("RST") for f in fs)
    req = [f for f in fs if f.kind == "drop" and f.direction == "c2s"]
    assert req and all(f.bytes == 127 for f in req)
    # the first connection's URI is short: untouched
    assert any(fl.findings == () for fl in tcp(v))


def test_haka_sample_groupfilter(tmp_path: Path) -> None:
    v = haka("sample_groupfilter", tmp_path)
    drops = [f for f in findings(v) if f.kind == "drop"]
    assert {f.what.split(" ")[0] for f in drops} == {"SYN"}
    assert {fl.server for fl in tcp(v) if fl.findings} == {
        "192.168.20.1:8000",
        "192.168.20.1:31337",
    }
    assert [fl.findings for fl in tcp(v) if fl.server.endswith(":80")] == [()]


def test_haka_sample_httpfilter(tmp_path: Path) -> None:
    v = haka("sample_httpfilter", tmp_path)
    assert any(f.kind == "drop" and f.direction == "c2s" and f.bytes > 0 for f in findings(v))
    assert sum(1 for fl in tcp(v) if not fl.findings) == 1


def test_haka_sample_httpmodif(tmp_path: Path) -> None:
    v = haka("sample_httpmodif", tmp_path)
    rw = [f for f in findings(v) if f.kind == "rewrite" and f.field == "payload"]
    assert rw and all(f.direction == "s2c" for f in rw)
    assert any("307 Moved Temporarily" in str(f.after) for f in rw)
    assert not any(f.kind in ("drop", "inject") for f in findings(v))


@pytest.mark.parametrize(
    "name",
    [
        "rewrite_pnat",
        "rewrite_portmap",
        "rewrite_endpoint",
        "rewrite_seed",
        "rewrite_skip",  # addresses scrambled too
        "rewrite_sequence",
    ],
)
def test_tcpreplay_translations_are_not_findings(name: str) -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / f"test.{name}")
    assert findings(v) == []
    assert len(tcp(v)) == 7
    assert any(leg.link == "nat" for fl in tcp(v) for leg in fl.legs)


@pytest.mark.parametrize("name", ["rewrite_mac", "rewrite_config", "rewrite_fixlen_del"])
def test_tcpreplay_no_tcp_change(name: str) -> None:
    # MAC addresses, a VLAN tag, padding and capture truncation change nothing TCP carries
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / f"test.{name}")
    assert findings(v) == []
    assert all(leg.link == "same" for fl in tcp(v) for leg in fl.legs)
    assert len(tcp(v)) == 7


def test_tcpreplay_mtu_truncation_is_payload_rewrite() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_mtutrunc")
    assert kinds(v) == {("rewrite", "payload")}
    assert all(f.before.endswith("bytes") for f in findings(v))
    assert not any(f.kind == "drop" for f in findings(v))


def test_tcpreplay_ttl_rewrite() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_1ttl")
    ttl = [f for f in findings(v) if f.field == "ip.ttl"]
    assert ttl and all(f.after == 58 or f.before == 58 for f in ttl)
    assert kinds(v) == {("rewrite", "ip.ttl")}


def test_tcpreplay_tos_rewrite() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_tos")
    assert kinds(v) == {("rewrite", "ip.dscp")}
    c2s = [f for f in findings(v) if f.direction == "c2s"]
    assert c2s and all(f.after == 12 for f in c2s)
    # every flow remarked to one value: one pattern per direction, labelled device policy
    pats = tcp_patterns(v)
    assert len(pats) == 2 and all(p.label == "DSCP remarking" for p in pats)
    p = next(p for p in pats if p.direction == "c2s")
    assert (p.before, p.after, p.flows, p.of) == (0, 12, len(c2s), 7)


def test_tcpreplay_ttl_raised_is_no_policy() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_1ttl")
    assert [(p.field, p.policy) for p in tcp_patterns(v)] == [("ip.ttl", False)]


def test_haka_filter_drops_are_one_pattern(tmp_path: Path) -> None:
    v = haka("sample_groupfilter", tmp_path)
    pats = tcp_patterns(v)
    assert [(p.kind, p.flows, p.of, p.packets) for p in pats] == [("drop", 2, 3, 4)]
    assert "(4 packets: 4 SYN), c2s between in and out" in pats[0].text


def test_tcpreplay_l7fuzzing() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_l7fuzzing")
    assert ("rewrite", "payload") in kinds(v)


@pytest.mark.parametrize("name", ["replay_include", "replay_exclude"])
def test_tcpreplay_subsets_are_drops(tmp_path: Path, name: str) -> None:
    a, b = as_two_points(TCPREPLAY / "test.pcap", TCPREPLAY / f"test.{name}", tmp_path)
    v = correlate([PointInput(name="in", pcap=a), PointInput(name="out", pcap=b)])
    drops = [f for f in findings(v) if f.kind == "drop"]
    assert drops and {f.direction for f in drops} == {"c2s", "s2c"}
    assert not any(f.kind == "inject" for f in findings(v))


# --------------------------------------------------------------------------- UDP and ICMP
# test.pcap also carries 12 DNS exchanges (udp; tshark -z conv,udp lists 12), two pings
# (icmp; their requests ride in MPLS, decapsulated by the reader) and six ICMP
# port unreachables the client sent back for DNS answers that came after it stopped
# listening.


def _dgram(v: Verdict) -> list[Flow]:
    return [fl for fl in v.flows if fl.proto in ("udp", "icmp")]


def _port_unreachables(v: Verdict) -> list[Finding]:
    icmp = findings(v, "udp")
    assert icmp and {f.kind for f in icmp} == {"icmp"}, icmp
    for f in icmp:
        assert f.what.startswith("ICMP port unreachable from 172.16.11.12 about a ")
        assert "-byte UDP packet" in f.what and f.direction == "c2s"
    return icmp


@pytest.mark.parametrize("name", ["rewrite_pnat", "rewrite_portmap", "rewrite_endpoint"])
def test_tcpreplay_udp_icmp_translations_are_not_findings(name: str) -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / f"test.{name}")
    flows = _dgram(v)
    assert len([fl for fl in flows if fl.proto == "udp"]) == 12
    assert len([fl for fl in flows if fl.proto == "icmp"]) == 2
    assert all(len(fl.legs) == 2 for fl in flows)
    if name == "rewrite_endpoint":
        # tcpprep put every ICMP packet on one side: at `out` the echo replies travel
        # 10.10.0.1 -> 10.10.0.2 like the requests (which ride in MPLS and are read since
        # the reader decapsulates MPLS), so they cannot be the requests' answers there
        icmp = findings(v, "icmp")
        assert icmp and {f.kind for f in icmp} <= {"drop", "inject", "gap"}, icmp
    else:
        assert findings(v, "icmp") == []
    # the client's port unreachables are attached to the DNS flows whose answer they
    # refuse, delivered from in to out (the quoted header names the flow at each point)
    errors = _port_unreachables(v)
    assert len(errors) == 5 and sum(f.packets for f in errors) == 6  # two in one flow
    # and one pattern across the DNS flows
    (pat,) = [p for p in v.patterns if p.kind == "icmp"]
    assert (pat.flows, pat.packets, pat.between) == (5, 6, ("in", "out"))
    assert pat.text.startswith("ICMP error (ICMP port unreachable) on 5 of ")
    if name == "rewrite_endpoint":
        assert all(fl.legs[1].link == "nat" for fl in flows)


def test_tcpreplay_udp_icmp_ttl_and_dscp_rewrites() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_1ttl")
    ttl = [f for p in ("udp", "icmp") for f in findings(v, p) if f.kind == "rewrite"]
    assert ttl and {f.field for f in ttl} == {"ip.ttl"}
    assert all(f.after == 58 for f in ttl if f.direction == "c2s")
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_tos")
    tos = [f for p in ("udp", "icmp") for f in findings(v, p) if f.kind == "rewrite"]
    assert tos and {f.field for f in tos} == {"ip.dscp"}
    assert all(f.after == 12 for f in tos if f.direction == "c2s")
    dns = [f for f in tos if f.what.startswith("UDP")]
    assert dns and all("DNS " in f.what for f in dns)


def test_tcpreplay_udp_payload_fuzzing() -> None:
    v = pair(TCPREPLAY / "test.pcap", TCPREPLAY / "test.rewrite_l7fuzzing")
    assert ("rewrite", "payload") in kinds(v, "udp")
