"""What a reader of report.md / report.html and of the terminal tables sees: words that
agree with their numbers, points drawn as points, no "-0.000 ms", cells that do not break
in the middle of an address or a time (found by reading real lab bundles)."""

from __future__ import annotations

import html
import re
from dataclasses import replace

import bundle_scenario as sc
import pytest

from hopcap import cli
from hopcap.bundle.report import ladder_svg, render_html, render_markdown
from hopcap.model import Finding, Flow, Leg, PointSummary, Verdict
from hopcap.patterns import with_patterns

T0 = sc.T0


def _manifest() -> dict[str, object]:
    """A run's manifest as the reports read it: every point captured, its clock probed."""
    return {
        "run_id": "r1",
        "points": [
            {"name": p, "file": f"pcaps/{p}.pcap", "kernel_drops": 0, "clock_offset_s": 2e-4}
            for p in sc.POINTS
        ],
    }


def _offline_pair() -> Verdict:
    """`hopcap correlate a=A.pcap b=B.pcap`: points named without an interface (as the
    README's `client=c.pcap` too), a flow through both with a drop and MSS clamping
    both ways."""
    pts = (PointSummary("a", "a", "", 197981), PointSummary("b", "b", "", 197945))
    fl = Flow(
        "f1",
        "tcp",
        "198.18.1.55:32769",
        "203.0.113.15:443",
        (
            Leg("a", "198.18.1.55:32769 > 203.0.113.15:443", "same"),
            Leg("b", "198.51.100.1:48927 > 203.0.113.15:443", "nat", latency_s=8e-5),
        ),
        (
            Finding("drop", "c2s", ("a", "b"), 2, 852, T0, "PSH,ACK seq=408 len=346 (2 data)"),
            Finding("rewrite", "c2s", ("a", "b"), 1, 0, T0, "SYN seq=1", "tcp.mss", 1460, 1360),
            Finding("rewrite", "s2c", ("b", "a"), 1, 0, T0, "SYN,ACK", "tcp.mss", 1460, 1360),
        ),
        "data dropped between a and b (seen on a, never on b); 2 more findings",
        T0,
    )
    return with_patterns(Verdict(pts, (fl,)))


def test_points_named_without_an_interface_are_points_in_the_ladder() -> None:
    """The ladder drew the points `a` and `b` of an offline correlation as hosts' own
    stacks (dashed, "(host stack)"): a name without a colon is a point when it is one."""
    v = _offline_pair()
    svg = ladder_svg(v.flows[0], ["a", "b"])
    assert "(host stack)" not in svg and 'stroke-dasharray="2,3"' not in svg
    assert svg.count('stroke="#444" stroke-width="1.5"/>') == 2  # two solid point lines
    # a host's own stack beyond its last point still is one
    srv = sc.make_verdict()
    stack = Finding("drop", "c2s", ("srv:eth0", "srv"), 1, 0, T0, "SYN seq=1")
    fl = replace(srv.flows[0], findings=(stack,))
    svg = ladder_svg(fl, sc.POINTS)
    assert svg.count("(host stack)") == 1 and svg.count('stroke-dasharray="2,3"') == 1


def test_counts_agree_with_their_words() -> None:
    """A healthy run of the lab said "1 flows crossed every capture point" and
    "conntrack: 1 new entries"; MSS clamping both ways said "(MSS clamping, MSS
    clamping)"; "0 problem(s)"."""
    v = sc.make_verdict()
    healthy = with_patterns(replace(v, flows=tuple(f for f in v.flows if not f.findings)))
    facts = {"fw": {"conntrack": {"new": 1, "gone": 0}, "nstat": []}}
    md = render_markdown(_manifest(), healthy, facts)
    html = render_html(_manifest(), healthy, facts)
    for text in (md, html):
        assert "1 flow without a finding." in text
        assert "conntrack: 1 new entry, 0 gone during the window." in text
        assert "1 flows" not in text and "1 new entries" not in text
        assert "0 problems, 0 device policy" in text and "problem(s)" not in text
        assert "connection seen at" not in text  # (no ladder: nothing broken)
    pair = _offline_pair()
    for text in (render_markdown({}, pair, {}), render_html({}, pair, {})):
        assert "1 problem, 2 device policy (MSS clamping)" in text, text[:2000]
    assert "connection seen at 2 points:" in render_html({}, pair, {})


def test_no_negative_zero_offsets(capsys: pytest.CaptureFixture[str]) -> None:
    """Points of one kernel (the lab) have offsets of a few ns either way: the terminal
    and the reports said "-0.000 ms" for those behind."""
    v = sc.make_verdict()
    pts = tuple(
        replace(p, clock_offset_s=(-1.5e-8 if i % 2 else 2e-9)) for i, p in enumerate(v.points)
    )
    v = replace(v, points=pts)
    manifest = _manifest()
    for p in manifest["points"]:  # type: ignore[attr-defined]
        p["clock_offset_s"] = -4e-7
    md, html = render_markdown(manifest, v, {}), render_html(manifest, v, {})
    cli._print_verdict(v)
    out = capsys.readouterr().out
    for text in (md, html, out):
        assert "-0.000" not in text
        assert "0.000 ms" in text
    assert "+0.000 ms" in out
    # a real offset keeps its sign
    late = replace(v, points=(replace(v.points[0], clock_offset_s=-1.05e-4), *v.points[1:]))
    cli._print_verdict(late)
    assert "-0.105 ms" in capsys.readouterr().out
    assert "-0.105 ms" in render_markdown(manifest, late, {})


def test_addresses_times_and_numbers_stay_on_one_line_in_the_html() -> None:
    """In the lab's reports the tuples ("198.18.1.1:15911 >" / "198.18.1.2:80"), the
    times ("2026-12-" / "05T09:20:45.677Z"), the segments and the latencies ("0.004" /
    "ms") broke over two lines in their cells; numbers read left-aligned."""
    v = sc.make_verdict()
    html = render_html(_manifest(), v, {})
    assert "td.nw{white-space:nowrap}" in html and "td.num{white-space:nowrap" in html
    broken = next(f for f in v.flows if f.findings)
    for leg in broken.legs:
        assert f'<td class="nw">{leg.tuple.replace(">", "&gt;")}</td>' in html
    f = broken.findings[0]
    assert re.search(
        rf'<td class="nw">{re.escape(f.between[0])} -&gt; {re.escape(f.between[1])}</td>'
        rf'<td class="num">{f.packets}</td><td class="num">{f.bytes}</td>'
        r'<td class="nw">\d{4}-\d\d-\d\dT[\d:.]+Z</td>',
        html,
    ), html
    for p in v.points:
        assert f'<td class="nw">{p.name}</td><td class="num">{p.packets:,}</td>' in html


def test_packet_counts_have_thousands_separators() -> None:
    """Every count of the report had them (2,500 flows) except the capture points'
    packets (22891)."""
    v = sc.make_verdict()
    v = replace(v, points=tuple(replace(p, packets=22891 + i) for i, p in enumerate(v.points)))
    manifest = _manifest()
    md = render_markdown(manifest, v, {})
    assert "| 1 | client:eth0 | 22,891 | 0 |" in md, md[:3000]
    assert "22891" not in md


def test_the_start_skew_says_what_it_is() -> None:
    """ "Start skew: 328.212 ms" (a lab run) read as captures a third of a second apart:
    it is the spread of the moments hopcap heard each capture listening, and the report
    says so, and whether the repro began after the last of them."""
    v = sc.make_verdict()
    m = _manifest()
    for i, p in enumerate(m["points"]):  # type: ignore[attr-defined]
        p["ready_ts"] = T0 + 0.1 * i
    m["start_skew_s"] = 0.3
    m["repro"] = {"command": "curl", "exit_status": 0, "started_ts": T0 + 0.3165}
    said = (
        "300.000 ms from the first to the last capture listening (as hopcap heard them); "
        "the repro began 16.500 ms after the last"
    )
    assert f"- **Start skew:** {said}" in render_markdown(m, v, {})
    assert f"<dt>Start skew</dt><dd>{said}</dd>" in render_html(m, v, {})
    m["repro"] = {"command": "curl", "exit_status": 0, "started_ts": T0 + 0.25}
    assert "the repro began 50.000 ms BEFORE the last" in render_markdown(m, v, {})
    offline = {"source": "offline", "points": m["points"], "start_skew_s": None}
    assert "- **Start skew:** not known (an offline correlation)" in render_markdown(offline, v, {})


def test_the_summary_counts_the_paths_around_capture_points() -> None:
    """The lab's fw-ha-peer run: "Findings: 12 around" but "Patterns: 0 problems, 0 device
    policy", silent about its one pattern (listed under its own heading)."""
    pts = tuple(PointSummary(n, n.partition(":")[0], n[3:], 10) for n in sc.POINTS)
    went = Finding("around", "c2s", ("client:eth0", "srv:eth0"), 3, 0, T0, "went around fw",
                   around=("fw:eth0", "fw:eth1"))  # fmt: skip
    legs = (Leg("client:eth0", "t", "same"), Leg("srv:eth0", "t", "nat"))
    v = with_patterns(Verdict(pts, (Flow("f1", "tcp", "c:1", "s:2", legs, (went,), "s", T0),)))
    for text in (render_markdown({}, v, {}), render_html({}, v, {})):
        assert "0 problems, 0 device policy, 1 path around capture points" in text


def test_the_repro_command_reads_as_it_ran() -> None:
    """report.md showed the lab's repro `seq 2500 | xargs ...` as `seq 2500 \\| xargs ...`
    (a table's escape, in a code span outside any table: the backslash shows), and a
    backtick of a command as a quote."""
    v = sc.make_verdict()
    m = _manifest()
    cmd = "seq 2500 | xargs -P 8 -I{} curl -s -o /dev/null http://203.0.113.80/ # `date`"
    m["repro"] = {"command": cmd, "exit_status": 0}
    m["trigger"] = {"host": "lb", "command": "tail -F log | grep -m1 ' SD '", "exit_status": 0,
                    "fired_ts": T0, "output": "x | y"}  # fmt: skip
    md = render_markdown(m, v, {})
    assert f"- command: `` {cmd} ``" in md
    assert "- on lb: `tail -F log | grep -m1 ' SD '`" in md
    assert "- output: `x | y`" in md
    assert "\\|" not in md.split("## Reproduction")[1]
    m["repro"] = {"command": "", "exit_status": 0}
    assert "- command: (none)" in render_markdown(m, v, {})


def test_a_repro_without_an_exit_status_says_why() -> None:
    """A scheduled window whose repro was still running when the window ended: the report
    said "exit status: " and nothing (the manifest's repro has the error, no status)."""
    v = sc.make_verdict()
    m = _manifest()
    err = "client: `seq 2500 | xargs curl` did not finish in 8s"
    m["repro"] = {"on": "client", "command": "seq 2500 | xargs curl", "error": err}
    md, html = render_markdown(m, v, {}), render_html(m, v, {})
    assert "- no exit status: client: 'seq 2500 \\| xargs curl' did not finish in 8s" in md
    assert "exit status: \n" not in md and "exit status </p>" not in html
    assert "<li>no exit status: client: `seq 2500 | xargs curl` did not finish in 8s</li>" in html
    m["repro"] = {"command": "curl -sf http://x/", "exit_status": 22, "stderr": "curl: (22) 503\n"}
    md, html = render_markdown(m, v, {}), render_html(m, v, {})
    assert "- exit status: 22\n- its stderr ends: `curl: (22) 503`" in md
    assert "<li>exit status: 22</li>" in html and "<code>curl: (22) 503</code>" in html


def test_a_patterns_examples_are_flows_the_report_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Of a pattern on thousands of flows the report gave the first ids as examples ("f1,
    f3, f5, f6, f9 +650" in the lab's 2,500-connection run), flows it shows nowhere: the
    ones it shows in detail come first now, linked to them in the html."""
    from hopcap.bundle import report

    pts = tuple(PointSummary(n, "fw", n[3:], 10) for n in ("fw:eth0", "fw:eth1"))
    legs = (Leg("fw:eth0", "t", "same"), Leg("fw:eth1", "t", "nat"))

    def flow(i: int, packets: int) -> Flow:
        drop = Finding("drop", "c2s", ("fw:eth0", "fw:eth1"), packets, 0, T0 + i, "ACK seq=1")
        return Flow(f"f{i}", "tcp", f"c:{i}", "s:80", legs, (drop,), "ACK dropped", T0 + i)

    # f1..f100 lose one packet each, f101..f103 three: those are detailed first
    v = with_patterns(Verdict(pts, tuple(flow(i, 3 if i > 100 else 1) for i in range(1, 104))))
    md, html = render_markdown({}, v, {}), render_html({}, v, {})
    assert "| f101, f102, f103, f1, f2 +98 |" in md, md[:3000]
    assert (
        '<td><a href="#f101">f101</a>, <a href="#f102">f102</a>, <a href="#f103">f103</a>, '
        '<a href="#f1">f1</a>, <a href="#f2">f2</a> +98</td>'
    ) in html
    assert '<div class="flow" id="f101">' in html
    # a flow not shown in detail is no link
    monkeypatch.setattr(report, "MAX_DETAILED", 2)
    assert (
        '<td><a href="#f101">f101</a>, <a href="#f102">f102</a>, f1, f2, f3 +98</td>'
    ) in render_html({}, v, {})


def test_the_counters_say_whose_they_are() -> None:
    """A healthy run of the lab showed "segments retransmitted" and "RSTs sent" in red on
    every host, with nothing to say that they count the whole host (hopcap's own SSH
    session included), not the flows of the verdict."""
    v = sc.make_verdict()
    nstat = [{"name": "TcpRetransSegs", "before": 5, "after": 6, "delta": 1,
              "notable": "segments retransmitted"}]  # fmt: skip
    said = "The counters are each host's own, over all its interfaces and connections (hopcap's"
    assert said in render_markdown({}, v, {"fw": {"nstat": nstat}})
    assert html.escape(said) in render_html({}, v, {"fw": {"nstat": nstat}})
    assert "The counters are each host" not in render_markdown({}, v, {"fw": {"conntrack": {}}})
