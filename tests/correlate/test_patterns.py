"""Findings as patterns (hopcap.patterns): grouping, counts, device-policy labels and the
triage of flows, on verdicts built by hand."""

from __future__ import annotations

import json
from typing import Any

from hopcap.model import Finding, Flow, Leg, Pattern, PointSummary, Verdict
from hopcap.patterns import find_patterns, triage, with_patterns

A, B = "fw:eth0", "fw:eth1"
T0 = 1_763_790_000.0


def mss(before: int = 1460, after: int = 1400) -> Finding:
    return Finding("rewrite", "c2s", (A, B), 1, 0, T0, "SYN seq=1", "tcp.mss", before, after)


def drop(what: str = "ACK seq=1", packets: int = 1, d: str = "c2s") -> Finding:
    between = (A, B) if d == "c2s" else (B, A)
    return Finding("drop", d, between, packets, 0, T0 + 1, what)  # type: ignore[arg-type]


def flow(i: int, *findings: Finding, legs: tuple[str, ...] = (A, B)) -> Flow:
    return Flow(
        f"f{i}",
        "tcp",
        f"198.18.0.{i}:4000",
        "203.0.113.80:80",
        tuple(Leg(p, "t", "same") for p in legs),
        findings,
        "s",
        T0 + i,
    )


def verdict(*flows: Flow) -> Verdict:
    pts = tuple(PointSummary(n, "fw", n[3:], 10) for n in (A, B))
    return with_patterns(Verdict(pts, flows))


def test_mss_clamping_is_one_policy_pattern_after_the_drops() -> None:
    flows = [flow(i, mss()) for i in range(1, 9)]
    flows.append(flow(9, drop("PSH,ACK seq=1 len=300"), mss()))
    flows.append(flow(10, drop("SYN seq=5"), legs=(A,)))  # never reached B, no clamp
    v = verdict(*flows)
    assert [p.kind for p in v.patterns] == ["drop", "rewrite"]
    d, m = v.patterns
    assert (d.flows, d.of, d.packets, d.policy) == (2, 10, 2, False)
    assert d.flow_ids == ("f9", "f10")
    assert "1 SYN" in d.text and "1 data" in d.text
    assert (m.field, m.before, m.after) == ("tcp.mss", 1460, 1400)
    assert (m.flows, m.of, m.packets) == (9, 10, 9)
    assert m.policy and m.label == "MSS clamping"
    assert m.text.startswith("MSS clamping: tcp.mss rewritten 1460 -> 1400 on 9 of 10 flows")
    assert f"between {A} and {B}" in m.text


def test_an_mss_raised_or_another_field_is_no_policy() -> None:
    v = verdict(flow(1, mss(1400, 1460)), flow(2, mss(1400, 1460)))
    assert [(p.policy, p.flows) for p in v.patterns] == [(False, 2)]
    assert not verdict(flow(1, mss(1460, -1))).patterns[0].policy  # the option removed
    win = Finding("rewrite", "c2s", (A, B), 3, 0, T0, "ACK", "tcp.window", 100, 50)
    assert not verdict(flow(1, win)).patterns[0].policy


def test_ttl_decrement_is_policy_and_an_increase_is_not() -> None:
    def ttl(b: int, a: int) -> Finding:  # (across a network: six routers took theirs)
        return Finding("rewrite", "s2c", ("srv:eth0", B), 4, 0, T0, "ACK", "ip.ttl", b, a)

    down = verdict(flow(1, ttl(64, 58)))
    assert down.patterns[0].label == "TTL decrement"
    up = verdict(flow(1, ttl(58, 241)))
    assert not up.patterns[0].policy and up.patterns[0].label is None


def test_a_ttl_lowered_by_more_than_routing_inside_one_host_is_no_policy() -> None:
    """Between two interfaces of one host a router takes 1 (or 2): 64 -> 3 there is a TTL
    set by a rule, a rewrite; across a network (other hosts) any decrement is routing."""

    def ttl(between: tuple[str, str], b: int, a: int) -> Finding:
        return Finding("rewrite", "c2s", between, 4, 0, T0, "ACK", "ip.ttl", b, a)

    inside = verdict(flow(1, ttl(("fw:eth0", "fw:eth1"), 64, 3)))
    assert not inside.patterns[0].policy and inside.patterns[0].label is None
    one = verdict(flow(1, ttl(("fw:eth0", "fw:eth1"), 64, 62)))
    assert one.patterns[0].label == "TTL decrement"
    across = verdict(flow(1, ttl(("client:eth0", "fw:eth0"), 64, 49)))
    assert across.patterns[0].label == "TTL decrement"


def test_dscp_remarking_on_most_flows_is_policy_on_few_it_is_not() -> None:
    def dscp() -> Finding:
        return Finding("rewrite", "c2s", (A, B), 5, 0, T0, "data", "ip.dscp", 0, 12)

    most = verdict(flow(1, dscp()), flow(2, dscp()), flow(3, dscp()), flow(4))
    assert most.patterns[0].label == "DSCP remarking" and most.patterns[0].of == 4
    few = verdict(flow(1, dscp()), flow(2), flow(3), flow(4))
    assert not few.patterns[0].policy


def test_values_that_differ_per_flow_fold_into_one_pattern() -> None:
    def seq(i: int) -> Finding:
        return Finding("rewrite", "c2s", (A, B), 7, 0, T0 + i, "data", "tcp.seq", i, i + 99)

    common = Finding("rewrite", "c2s", (A, B), 1, 0, T0, "data", "tcp.seq", 1, 2)
    v = verdict(*(flow(i, seq(i * 1000)) for i in range(1, 6)), flow(6, common), flow(7, common))
    assert len(v.patterns) == 2
    folded = next(p for p in v.patterns if p.values > 1)
    assert (folded.values, folded.flows, folded.packets) == (5, 5, 35)
    assert folded.before is None and folded.after is None
    assert "tcp.seq rewritten (5 different values) on 5 of 7 flows" in folded.text
    assert folded.first_ts == T0 + 1000
    same = next(p for p in v.patterns if p.values == 1)
    assert (same.before, same.after, same.flow_ids) == (1, 2, ("f6", "f7"))


def test_one_flow_counts_once_and_directions_stay_apart() -> None:
    two = flow(1, drop("ACK seq=1"), drop("PSH,ACK seq=9 len=5 (2 data, 1 FIN)", packets=3))
    v = verdict(two, flow(2, drop("FIN,ACK seq=7", d="s2c")))
    c2s = next(p for p in v.patterns if p.direction == "c2s")
    assert (c2s.flows, c2s.packets) == (1, 4)
    assert "(4 packets: 2 data, 1 ACK, 1 FIN)" in c2s.text
    s2c = next(p for p in v.patterns if p.direction == "s2c")
    assert s2c.between == (B, A) and s2c.flows == 1 and "(1 packet: 1 FIN)" in s2c.text


def test_one_packet_says_what_it_was() -> None:
    """The lab's `fw-rst-get`: the pattern of an injected RST says it is one, not just
    "1 packet" (several packets always said what they were)."""
    rst = Finding("inject", "s2c", (B, A), 1, 0, T0, "RST seq=1 ipid=0")
    v = verdict(flow(1, drop("PSH,ACK seq=1 len=83 tsval=1 ipid=487"), rst))
    texts = {p.kind: p.text for p in v.patterns}
    assert texts["inject"].startswith("injected on 1 of 1 flow (1 packet: 1 RST), s2c"), texts
    assert texts["drop"].startswith("dropped on 1 of 1 flow (1 packet: 1 data), c2s"), texts


def test_an_icmp_error_from_beyond_the_last_point_says_beyond_it() -> None:
    """An ICMP error generated beyond the last point that saw the packet (tcpreplay's
    test.pcap against test.replay_include: port unreachable from the DNS client itself)
    has that point at both ends of `between`: the pattern said "between in and in"."""
    what = "ICMP port unreachable from 198.18.0.9 about a 78-byte UDP packet (ipid 1)"
    err = Finding("icmp", "c2s", (A, A), 1, 0, T0, what)
    (p,) = verdict(flow(1, err)).patterns
    assert p.text == (
        "ICMP error (ICMP port unreachable) on 1 of 1 flow (1 packet), c2s beyond fw:eth0 [f1]"
    ), p.text


def test_a_flow_with_several_legs_at_a_point_is_one_flow_of_it() -> None:
    """A load balancer that retried its backend connection gives the client's flow a leg
    at the server per attempt (lab `srv-port-closed`: four): the pattern counts the flows
    seen where its segment starts, not the legs ("reset by srv on 1 of 4 flows" with one
    flow in the verdict)."""
    srv = "srv:eth0"
    reset = Finding("reset", "s2c", ("srv", srv), 1, 0, T0, "srv answered with RST: RST,ACK")
    legs = (A, B, srv, srv, srv, srv)
    pts = tuple(PointSummary(n, n.partition(":")[0], n[-4:], 10) for n in (A, B, srv))
    one = with_patterns(Verdict(pts, (flow(1, reset, reset, reset, reset, legs=legs),)))
    p = one.patterns[0]
    assert (p.flows, p.of, p.packets) == (1, 1, 4), p
    assert p.text.startswith("reset by srv on 1 of 1 flow (4 packets)"), p.text
    two = with_patterns(Verdict(pts, (*one.flows, flow(2, legs=(A, B, srv, srv)))))
    assert two.patterns[0].of == 2


def test_patterns_round_trip_through_json_and_old_verdicts_get_them() -> None:
    v = verdict(flow(1, mss()), flow(2, mss(), drop()))
    d: dict[str, Any] = json.loads(json.dumps(v.to_dict()))
    assert [p["kind"] for p in d["patterns"]] == ["drop", "rewrite"]
    pol = d["patterns"][1]
    assert pol["policy"] is True and pol["label"] == "MSS clamping"
    assert {"kind", "field", "before", "after", "between", "flows", "packets"} <= set(pol)
    assert pol["flow_ids"] == ["f1", "f2"] and pol["of"] == 2
    assert Verdict.from_dict(d).patterns == v.patterns
    del d["patterns"]
    assert Verdict.from_dict(d).patterns == v.patterns
    assert len(d["flows"]) == 2  # every flow is kept


def test_triage_lists_alarms_by_packets_and_sets_policy_apart() -> None:
    payload = Finding("rewrite", "c2s", (A, B), 1, 0, T0, "data", "payload", "a", "b")
    gap = Finding("gap", "c2s", (A, B), 0, 0, T0, "no capture")
    v = verdict(
        flow(1, mss()),
        flow(2, drop(packets=1), mss()),
        flow(3, drop(packets=5)),
        flow(4, payload, mss()),
        flow(5),
        flow(6, gap),
    )
    t = triage(v)
    assert [f.id for f in t.alarms] == ["f3", "f2", "f6"]
    assert [f.id for f in t.rewrites] == ["f4"]
    assert [f.id for f in t.policy] == ["f1"]
    assert [f.id for f in t.healthy] == ["f5"]


def test_a_missing_point_is_one_gap_pattern_that_says_why() -> None:
    why = "no capture at lb:eth0 (host unreachable): what happened beyond fw:eth1 cannot be told"
    gaps = [flow(i, Finding("gap", "c2s", (B, "lb:eth0"), 0, 0, T0, why)) for i in range(1, 41)]
    v = verdict(*gaps)
    assert len(v.patterns) == 1
    p = v.patterns[0]
    assert (p.kind, p.flows, p.of, p.policy) == ("gap", 40, 40, False)
    assert p.text.startswith("incomplete evidence (gap) on 40 of 40 flows (0 packets), c2s")
    assert "; e.g. no capture at lb:eth0 (host unreachable)" in p.text


def test_no_findings_no_patterns() -> None:
    assert find_patterns(verdict(flow(1), flow(2))) == ()
    assert find_patterns(Verdict((), ())) == ()


def test_a_pattern_says_when_it_came_and_went() -> None:
    """A fault that comes and goes (drops on the flows of 40 s to 45 s of a 100 s window,
    the flows before and after it fine): the pattern spans the first packet of its first
    finding to that of its last, in verdict.json and in words; folded rewrites too."""
    from hopcap.patterns import seen_span

    def drop_at(t: float) -> Finding:
        return Finding("drop", "c2s", (A, B), 1, 0, T0 + t, "SYN seq=1")

    flows = [flow(i, drop_at(i)) if 40 <= i <= 45 else flow(i) for i in range(100)]
    [p] = verdict(*flows).patterns
    assert (p.first_ts, p.last_ts, p.flows, p.of) == (T0 + 40, T0 + 45, 6, 100)
    d = json.loads(json.dumps(p.to_dict()))
    assert (d["first_ts"], d["last_ts"]) == (T0 + 40, T0 + 45)
    assert seen_span(p) == "05:40:40.000-05:40:45.000 UTC"  # T0 is 05:40:00 UTC
    [one] = verdict(flow(1, drop_at(3)), flow(2)).patterns
    assert seen_span(one) == "05:40:03.000 UTC"
    # a verdict of an older hopcap: no last time
    old = Pattern.from_dict({k: v for k, v in d.items() if k != "last_ts"})
    assert seen_span(old) == "from 05:40:40.000 UTC"

    def seq(i: int) -> Finding:
        return Finding("rewrite", "c2s", (A, B), 1, 0, T0 + i, "data", "tcp.seq", i, i + 9)

    [folded] = verdict(*(flow(i, seq(i * 10)) for i in range(1, 5))).patterns
    assert folded.values == 4 and (folded.first_ts, folded.last_ts) == (T0 + 10, T0 + 40)
    # a day boundary between them: dates
    late = Finding("drop", "c2s", (A, B), 1, 0, T0 + 86_400, "SYN seq=1")
    [both] = verdict(flow(1, drop_at(0)), flow(2, late)).patterns
    assert seen_span(both) == "2025-11-22 05:40:00.000-2025-11-23 05:40:00.000 UTC"
