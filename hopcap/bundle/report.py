"""report.md (for a ticket) and report.html (self-contained, ladder diagram per broken flow).

Both are rendered from what the bundle itself holds (manifest dict, verdict, facts
summary), so `hopcap report BUNDLE` re-renders them without the original run. Everything
that comes from captures, hosts or the inventory is escaped.
"""

from __future__ import annotations

import datetime as _dt
import html
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from hopcap.model import Finding, Flow, Leg, Pattern, Verdict
from hopcap.patterns import (
    FLOW_HEADERS,
    Triage,
    also_seen_line,
    ensure_patterns,
    flow_row,
    seen_span,
    split_patterns,
    triage,
)
from hopcap.units import ms_text

MAX_HEALTHY_LISTED = 20
MAX_COUNTERS = 12
MAX_RULES = 15
MAX_PATTERNS = 50  # problem patterns listed (the rest: verdict.json)
MAX_DETAILED = 20  # flows with drops etc. shown with findings, legs and ladder
# legs of a detailed flow listed (a keep-alive client connection through a load balancer
# that opens a backend connection per request has a leg for each: thousands; the report
# became megabytes of them); the rest are counted, verdict.json has them all
MAX_LEGS = 24
# findings of a detailed flow shown in its table and ladder: such a connection through a
# lossy backend link had hundreds (a drop each of its backend connections), each a table
# row and a ladder row of 46 px: 12,000 px of ladder a flow. The first of each kind of
# finding is always shown (an inject after 300 drops is not hidden), the rest counted
# per kind, direction and hop; verdict.json has them all
MAX_FINDINGS = 30
MAX_REWRITES_DETAILED = 10  # flows with rewrites only, shown in detail
MAX_LISTED = 200  # further flows, one table row each


# --------------------------------------------------------------------------- helpers


def _link(leg: Leg) -> str:
    """A leg's link, with the tunnel it is inside: `tunnel (esp)`, `same (encrypted udp)`,
    `same (vxlan vni 42)` (decapsulated by the reader)."""
    return f"{leg.link} ({leg.tunnel})" if leg.tunnel else leg.link


def finding_what(f: Finding) -> str:
    """A finding's text; a rewrite leads with its field and values."""
    if f.kind == "rewrite" and f.field:
        return f"{f.field}: {f.before} -> {f.after}; {f.what}"
    return f.what


def iso(ts: float | None) -> str:
    if ts is None:
        return "?"
    return (
        _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def seen_when(f: Finding) -> str:
    """When a finding's packets were seen (UTC): its first packet, and its last where they
    span a time (a drop that went on: `...T21:44:39.881Z to 21:46:10.002Z`)."""
    first = iso(f.first_ts)
    if f.last_ts is None or f.first_ts is None:
        return first
    last = iso(f.last_ts)
    if last[:10] == first[:10]:  # the same day: its time of day
        last = last[11:]
    return f"{first} to {last}"


def _secs(v: float | None, unit: str = "ms") -> str:
    if v is None:
        return "?"
    if unit == "ms":
        return ms_text(v)
    return f"{v:.6f} s"


def _n(k: int, word: str, plural: str | None = None) -> str:
    """`k` things in words: "1 flow", "2,500 flows", "1 new entry" (`plural`: when not
    `word` + "s")."""
    return f"{k:,} {word if k == 1 else plural or word + 's'}"


def _int(v: Any) -> str:
    if v is None:
        return "?"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _md(text: Any) -> str:
    s = "" if text is None else str(text)
    return (
        s.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace("\r", " ")
        .replace("\n", " ")
        .replace("`", "'")
    )


def _code(text: Any) -> str:
    """`text` as a Markdown code span, as it is: a shell command outside a table keeps its
    `|` and its backticks (`_md` made `seq 9 | xargs` read `seq 9 \\| xargs`, and a
    backtick a quote); the fence is longer than any run of backticks in it."""
    s = ("" if text is None else str(text)).replace("\r", " ").replace("\n", " ")
    if not s.strip():
        return "(none)"
    run = max((len(m) for m in re.findall(r"`+", s)), default=0)
    pad = " " if run else ""  # (one space each side is not part of the span)
    return f"{'`' * (run + 1)}{pad}{s}{pad}{'`' * (run + 1)}"


def _h(text: Any) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def finding_text(f: Finding) -> str:
    s = f"{f.kind} {f.direction} {f.between[0]} -> {f.between[1]}"
    if f.kind == "rewrite" and f.field:
        s += f" ({f.field}: {f.before} -> {f.after})"
    return s


def shown_findings(fl: Flow) -> tuple[list[Finding], str]:
    """The findings of `fl` a report shows (at most MAX_FINDINGS, in the flow's order:
    the first of each kind, direction, hop and field, then the earliest others) and a
    line that counts the rest per kind, direction and hop ("" when all are shown)."""
    fs = fl.findings
    if len(fs) <= MAX_FINDINGS:
        return list(fs), ""

    def key(f: Finding) -> tuple[str, str, tuple[str, str], str]:
        return (f.kind, f.direction, f.between, f.field or "")

    firsts: dict[tuple[str, str, tuple[str, str], str], int] = {}
    for i, f in enumerate(fs):
        firsts.setdefault(key(f), i)
    keep = set(sorted(firsts.values())[:MAX_FINDINGS])
    i = 0
    while len(keep) < MAX_FINDINGS:
        keep.add(i)
        i += 1
    rest: dict[tuple[str, str, tuple[str, str], str], list[int]] = {}
    for i, f in enumerate(fs):
        if i not in keep:
            n = rest.setdefault(key(f), [0, 0])
            n[0] += 1
            n[1] += f.packets
    groups = "; ".join(
        f"{n:,} {kind}{' ' + fld if fld else ''} {d} {a} -> {b} ({p:,} packets)"
        for (kind, d, (a, b), fld), (n, p) in sorted(rest.items(), key=lambda kv: -kv[1][0])
    )
    more = len(fs) - len(keep)
    line = (
        f"... {more:,} more {'finding' if more == 1 else 'findings'} ({groups}), {len(fs):,} "
        "in all: verdict.json lists every one."
    )
    return [f for i, f in enumerate(fs) if i in keep], line


def _split(patterns: Sequence[Pattern]) -> tuple[list[Pattern], list[Pattern]]:
    """(problems, device policy); paths around capture points are neither (`_around`)."""
    problems, _around, policy = split_patterns(patterns)
    return problems, policy


_AROUND_NOTE = (
    "Flows seen before and after capture points that never saw them, although those "
    "captures report no loss: they took another path (the other member of an HA pair, "
    "another ECMP next hop, asymmetric routing) or the capture filter there left them out. "
    "Not drops, not injections."
)


def _pattern_change(p: Pattern) -> str:
    if p.kind != "rewrite":
        return ""
    if p.values != 1:
        return f"{p.field}: {p.values} different values"
    return f"{p.field}: {p.before} -> {p.after}"


def _example_ids(p: Pattern, detailed: Mapping[str, int], n: int = 5) -> list[str]:
    """Up to `n` of a pattern's flows for its "e.g.": those the report shows in detail
    first, in the report's order (the pattern's first flows by id, "f1, f3, f5", were
    most often in no part of a report of thousands of flows), then the others."""
    ids = p.flow_ids
    shown = sorted((i for i in ids if i in detailed), key=detailed.__getitem__)[:n]
    if len(shown) < n:
        taken = set(shown)
        shown += islice((i for i in ids if i not in taken), n - len(shown))
    return shown


def _examples(p: Pattern, detailed: Mapping[str, int], n: int = 5) -> str:
    more = f" +{len(p.flow_ids) - n:,}" if len(p.flow_ids) > n else ""
    return ", ".join(_example_ids(p, detailed, n)) + more


def _examples_html(p: Pattern, detailed: Mapping[str, int], n: int = 5) -> str:
    """As `_examples`, each flow shown in detail a link to it."""
    more = f" +{len(p.flow_ids) - n:,}" if len(p.flow_ids) > n else ""
    return ", ".join(
        f'<a href="#{_h(i)}">{_h(i)}</a>' if i in detailed else _h(i)
        for i in _example_ids(p, detailed, n)
    ) + _h(more)


def _detailed(t: Triage) -> dict[str, int]:
    """The flows a report shows in detail (with findings and a ladder), in its order."""
    flows = [*t.alarms[:MAX_DETAILED], *t.rewrites[:MAX_REWRITES_DETAILED]]
    return {fl.id: i for i, fl in enumerate(flows)}


def _point_rows(manifest: Mapping[str, Any], verdict: Verdict) -> list[dict[str, Any]]:
    vp = {p.name: p for p in verdict.points}
    rows: list[dict[str, Any]] = []
    names_done: set[str] = set()
    for p in manifest.get("points", []):
        v = vp.get(p.get("name", ""))
        rows.append(
            {
                "name": p.get("name"),
                "packets": v.packets if v else p.get("packets_in_file", p.get("packets")),
                "kernel_drops": p.get("kernel_drops")
                if p.get("kernel_drops") is not None
                else (v.kernel_drops if v else None),
                "offset": v.clock_offset_s if v else None,
                "probe": p.get("clock_offset_s"),
                "error": p.get("error"),
            }
        )
        names_done.add(str(p.get("name")))
    for v in verdict.points:
        if v.name not in names_done:
            rows.append(
                {
                    "name": v.name,
                    "packets": v.packets,
                    "kernel_drops": v.kernel_drops,
                    "offset": v.clock_offset_s,
                    "probe": None,
                    "error": None,
                }
            )
    return rows


def _summary_lines(
    manifest: Mapping[str, Any], verdict: Verdict, t: Triage
) -> list[tuple[str, str]]:
    problems, around, policy = split_patterns(verdict.patterns)
    kinds = Counter(f.kind for fl in verdict.flows for f in fl.findings)
    missing = [p["name"] for p in manifest.get("points", []) if p.get("error") or not p.get("file")]
    started, finished = manifest.get("started_ts"), manifest.get("finished_ts")
    dur = f" ({finished - started:.1f} s)" if started is not None and finished is not None else ""
    out = [
        ("Run", str(manifest.get("run_id", "?")) + f" ({manifest.get('source', 'run')})"),
    ]
    came = manifest.get("recorrelated_from")
    if came:
        out.append(
            (
                "Re-correlated from",
                f"{came.get('run_id', '?')} ({came.get('source', '?')}, hopcap "
                f"{came.get('hopcap_version', '?')}): its captures, facts, inventory and repro",
            )
        )
    out += [
        ("When", f"{iso(started)} - {iso(finished)}{dur}"),
        ("Points", " -> ".join(str(p.get("name")) for p in manifest.get("points", [])) or "none"),
        ("Start skew", _skew_text(manifest)),
        (
            "Complete",
            ("yes" if manifest.get("complete", True) else "NO")
            + (" (interrupted)" if manifest.get("interrupted") else ""),
        ),
        ("Missing points", ", ".join(missing) if missing else "none"),
        (
            "Flows",
            f"{len(verdict.flows):,} total: {len(t.alarms):,} with drops, injections, resets "
            f"or gaps, {len(t.rewrites):,} with rewrites only, {len(t.policy):,} with device "
            f"policy only, {len(t.healthy):,} healthy"
            + (f", {len(t.unanswered):,} with no response" if t.unanswered else "")
            + (f", {len(t.around):,} around capture points" if t.around else "")
            + (f"; {len(t.local):,} not on the path (the hosts' own traffic)" if t.local else ""),
        ),
        (
            "Patterns",
            f"{_n(len(problems), 'problem')}, {len(policy):,} device policy"
            # each label once: MSS clamping is a pattern per direction
            + (f" ({', '.join(dict.fromkeys(str(p.label) for p in policy))})" if policy else "")
            + (f", {_n(len(around), 'path')} around capture points" if around else ""),
        ),
        ("Findings", ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items())) or "none"),
    ]
    if verdict.target:
        out.append(("Target", f"{verdict.target} (its flows are listed first)"))
    also = also_seen_line(t.local, dict.fromkeys(p.host for p in verdict.points))
    if also:
        out.append(("Also seen", also.partition(": ")[2]))
    if verdict.hosts:
        out.append(("Host addresses", _hosts_text(verdict)))
    out += [
        ("hopcap", str(manifest.get("hopcap_version", "?"))),
    ]
    if manifest.get("anonymised"):
        out.append(("Anonymised", "yes: addresses replaced by pseudonyms, payload removed"))
    return out


def _skew_text(manifest: Mapping[str, Any]) -> str:
    """The start skew, and what it is: "328.212 ms" alone read as captures that began a
    third of a second apart; it is the spread of the moments hopcap heard each capture say
    "listening" (over its host's SSH session). And whether the repro began after the
    last of them."""
    skew = manifest.get("start_skew_s")
    if skew is None:
        return "not known (an offline correlation)" if manifest.get("source") == "offline" else "?"
    text = f"{_secs(skew)} from the first to the last capture listening (as hopcap heard them)"
    ready = [p.get("ready_ts") for p in manifest.get("points", [])]
    last = max((r for r in ready if r is not None), default=None)
    began = (manifest.get("repro") or {}).get("started_ts")
    if last is not None and began is not None:
        after = began - last
        text += (
            f"; the repro began {_secs(after)} after the last"
            if after >= 0
            else f"; the repro began {_secs(-after)} BEFORE the last"
        )
    return text


def _hosts_text(verdict: Verdict) -> str:
    return "; ".join(
        f"{h.host}: {', '.join(h.addresses)}"
        + (" (inferred from the captures)" if h.source != "stated" else "")
        for h in verdict.hosts
    )


def _local_rows(t: Triage) -> list[tuple[str, str, str, str]]:
    return [
        (fl.id, fl.local_to or "?", f"{fl.client} -> {fl.server}", fl.summary)
        for fl in t.local[:MAX_HEALTHY_LISTED]
    ]


_UNANSWERED = (
    "Flows without a finding whose request got no response at all: every point delivered "
    "what it saw, and nothing came back (a server or a proxy that accepted the connection "
    "and never answered, or answered only after the capture ended)."
)

_ALSO_SEEN = (
    "Flows seen at one point only that are not on the path under study: addressed to that "
    "point's host itself, sent by it elsewhere, or entering the path there (scanners, the "
    "hosts' own DNS and NTP, monitoring). Nothing was expected of them beyond that point: "
    "not drops, injections or resets."
)


# a healthy run of the lab showed "segments retransmitted", "RSTs sent" in red on every
# host: the counters are the whole host's, not the flows'
_COUNTERS_NOTE = (
    "The counters are each host's own, over all its interfaces and connections (hopcap's "
    "SSH session included), from before to after the window: a counter in red is worth a "
    "look, not a finding of the flows above."
)


def _no_facts(manifest: Mapping[str, Any]) -> str:
    """Why a bundle has no facts: an offline correlation takes none (also of a bundle
    that had them: they stay in that bundle's facts/)."""
    if manifest.get("source") == "offline" and not manifest.get("recorrelated_from"):
        return "None: `hopcap correlate` takes no facts (`hopcap run` takes them on every host)."
    return "No facts were collected."


def _moved_facts(facts: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(h, s) for h, s in sorted(facts.items()) if isinstance(s, dict)]


# --------------------------------------------------------------------------- markdown


def render_markdown(manifest: Mapping[str, Any], verdict: Verdict, facts: Mapping[str, Any]) -> str:
    L: list[str] = []
    verdict = ensure_patterns(verdict)
    t = triage(verdict)
    problems, policy = _split(verdict.patterns)
    detailed = _detailed(t)
    L.append(f"# hopcap report: run {_md(manifest.get('run_id', '?'))}")
    L.append("")
    for k, v in _summary_lines(manifest, verdict, t):
        L.append(f"- **{k}:** {_md(v)}")
    errors = list(manifest.get("errors") or [])
    warnings = list(manifest.get("warnings") or []) + list(verdict.warnings)
    if errors:
        L += ["", "**Errors:**", ""] + [f"- {_md(e)}" for e in errors]
    if warnings:
        L += ["", "**Warnings:**", ""] + [f"- {_md(w)}" for w in warnings]

    L += ["", "## Capture points", ""]
    L.append(
        "| # | point | packets | kernel drops | clock offset (aligned) | clock probe | error |"
    )
    L.append("|---|---|---|---|---|---|---|")
    for i, r in enumerate(_point_rows(manifest, verdict), 1):
        L.append(
            f"| {i} | {_md(r['name'])} | {_int(r['packets'])} | {_int(r['kernel_drops'])} | "
            f"{_secs(r['offset'])} | {_secs(r['probe'])} | {_md(r['error'] or '')} |"
        )

    L += ["", f"## Patterns ({len(problems)})", ""]
    if problems:
        L.append("The same finding across flows, counted once; most flows first.")
        L += ["", "| # | kind | pattern | seen | e.g. |", "|---|---|---|---|---|"]
        for i, p in enumerate(problems[:MAX_PATTERNS], 1):
            L.append(
                f"| {i} | {_md(p.kind)} | {_md(p.text)} | {_md(seen_span(p))} "
                f"| {_md(_examples(p, detailed))} |"
            )
        if len(problems) > MAX_PATTERNS:
            L.append(f"\n{_n(len(problems) - MAX_PATTERNS, 'more pattern')} in verdict.json.")
    else:
        L.append("No drop, injection, reset, rewrite or gap beyond device policy.")
    if policy:
        L += ["", f"## Device policy ({len(policy)})", ""]
        L.append("What the devices on the path do to flows on purpose; expected, not faults.")
        L.append("")
        L += [f"- {_md(p.text)}" for p in policy]
    around = split_patterns(verdict.patterns)[1]
    if around:
        L += ["", f"## Paths around capture points ({len(around)})", "", _AROUND_NOTE, ""]
        L += [f"- {_md(p.text)}" + (f" ({_md(seen_span(p))})" if seen_span(p) else "")
              for p in around]  # fmt: skip

    L += ["", f"## Flows with drops, injections, resets or gaps ({len(t.alarms):,})", ""]
    if not t.alarms:
        L.append("No flow was dropped, injected into or reset, and no evidence is missing.")
    else:
        L.append("Most such packets first.")
    L += _md_flows(t.alarms, MAX_DETAILED)
    if t.unanswered:
        L += ["", f"## Flows with no response ({len(t.unanswered):,})", "", _UNANSWERED, ""]
        L += _md_flows(t.unanswered, 0)
    if t.rewrites:
        L += ["", f"## Flows with rewrites only ({len(t.rewrites):,})", ""]
        L.append("Rewrites that are not device policy (see the patterns).")
        L += _md_flows(t.rewrites, MAX_REWRITES_DETAILED)

    L += ["", "## Facts that moved", ""]
    moved = _moved_facts(facts)
    if not moved:
        L.append(_no_facts(manifest))
    elif any(f.get("nstat") for _host, f in moved):
        L += [_COUNTERS_NOTE, ""]
    for host, s in moved:
        L += _md_facts(host, s)

    L += ["", f"## Other flows ({len(t.policy) + len(t.healthy) + len(t.around):,})", ""]
    if t.around:
        L.append(
            f"{_n(len(t.around), 'flow')} went around capture points (see above), nothing worse."
        )
    if t.policy:
        L.append(f"{_n(len(t.policy), 'flow')} with only the device policy above.")
    if t.healthy:
        L.append(f"{_n(len(t.healthy), 'flow')} without a finding.")
        if len(t.healthy) <= MAX_HEALTHY_LISTED:
            L += ["", "| flow | client -> server | legs | summary |", "|---|---|---|---|"]
            for fl in t.healthy:
                L.append(
                    f"| {_md(fl.id)} | {_md(fl.client)} -> {_md(fl.server)} | {len(fl.legs)} "
                    f"| {_md(fl.summary)} |"
                )
    if not t.policy and not t.healthy and not t.around:
        L.append("None.")
    if t.local:
        L += ["", f"## Also seen: the hosts' own traffic ({len(t.local):,})", "", _ALSO_SEEN, ""]
        L += ["| flow | local to | client -> server | summary |", "|---|---|---|---|"]
        L += [f"| {' | '.join(_md(x) for x in row)} |" for row in _local_rows(t)]
        if len(t.local) > MAX_HEALTHY_LISTED:
            L.append(f"\n{len(t.local) - MAX_HEALTHY_LISTED:,} more in verdict.json.")

    repro = manifest.get("repro")
    if repro:
        L += ["", "## Reproduction", ""]
        L += [f"- {k}: {_code(v) if code else _md(v)}" for k, v, code in _repro_lines(repro)]
    trigger = manifest.get("trigger")
    if trigger:
        L += ["", "## Trigger (flight recorder)", ""]
        L.append(f"- on {_md(trigger.get('host'))}: {_code(trigger.get('command', ''))}")
        L.append(
            f"- fired at {iso(trigger.get('fired_ts'))}, exit status "
            f"{_md(trigger.get('exit_status'))}"
        )
        if trigger.get("output"):
            L.append(f"- output: {_code(str(trigger['output']).strip()[-300:])}")
    rec_lines = _recording_lines(manifest)
    if rec_lines:
        L += ["", "## Recording", ""]
        L += [f"- {_md(x)}" for x in rec_lines]
    L += ["", "## Files", ""]
    L.append(
        "`verdict.json` has every flow and every pattern; "
        "`merged.pcapng` has every point as its own interface on one timeline; "
        "`pcaps/` the original captures; `facts/` before/after outputs and deltas; "
        "`manifest.json` the sha256 of every file."
    )
    return "\n".join(L) + "\n"


def _md_flows(flows: Sequence[Flow], detailed: int) -> list[str]:
    """The first `detailed` flows in full, then one row each up to MAX_LISTED."""
    L: list[str] = []
    for fl in flows[:detailed]:
        L += _md_flow(fl)
    rest = flows[detailed : detailed + MAX_LISTED]
    if rest:
        L += ["", f"The next {len(rest):,}, one line each:", ""] if detailed else [""]
        L.append("| " + " | ".join(FLOW_HEADERS) + " |")
        L.append("|---" * len(FLOW_HEADERS) + "|")
        L += ["| " + " | ".join(_md(c) for c in flow_row(fl)) + " |" for fl in rest]
    left = len(flows) - detailed - len(rest)
    if left > 0:
        L.append(f"\n... {left:,} more in verdict.json.")
    return L


def _repro_lines(repro: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """What the repro did, as (what, text, whether the text is a command or its output):
    its exit status, or why it has none (a repro still running when the window ended said
    "exit status: " and nothing more), its runs, the end of what it wrote on stderr."""
    out = [("command", str(repro.get("command", "")), True)]
    if repro.get("exit_status") is not None:
        out.append(("exit status", str(repro["exit_status"]), False))
    if repro.get("error"):
        out.append(("no exit status", str(repro["error"]), False))
    elif repro.get("exit_status") is None:
        out.append(("exit status", "not known", False))
    runs = repro.get("runs") or []
    if runs:
        ran = f"{len(runs)}" + (f" ({repro['kept']})" if repro.get("kept") else "")
        out.append(("runs in this window", ran, False))
    err = str(repro.get("stderr") or "").strip()
    if err:
        out.append(("its stderr ends", err[-300:], True))
    return out


def _recording_lines(manifest: Mapping[str, Any]) -> list[str]:
    """What a flight recording kept (`hopcap record`), in plain sentences."""
    rec = manifest.get("recording")
    if not rec:
        return []
    ended = {
        "trigger": "the trigger fired",
        "ctrl-c": "interrupted (Ctrl-C)",
        "max-duration": "--max-duration reached without a trigger",
    }.get(str(rec.get("ended")), str(rec.get("ended")))
    lines = [
        f"ended: {ended}",
        f"kept: {iso(rec.get('kept_from_ts'))} to {iso(rec.get('kept_to_ts'))} "
        f"(--ring {rec.get('ring_s')}s, --post {rec.get('post_s')}s)",
    ]
    before = rec.get("facts_before") or {}
    if before:
        secs = sorted({round(float(v.get("seconds_before", 0))) for v in before.values()})
        lines.append(
            "facts: `before` was taken "
            + "/".join(str(x) for x in secs)
            + " s before the end, `after` at once: the deltas are what moved meanwhile"
        )
    lines += [str(w) for w in rec.get("warnings") or ()]
    return lines


def _md_flow(fl: Flow) -> list[str]:
    L = ["", f"### {_md(fl.id)}: {_md(fl.client)} -> {_md(fl.server)} ({_md(fl.proto)})", ""]
    L.append(f"**{_md(fl.summary)}**")
    L += [
        "",
        "| kind | direction | between | packets | bytes | seen | what |",
        "|---|---|---|---|---|---|---|",
    ]
    shown, more = shown_findings(fl)
    for f in shown:
        what = finding_what(f)
        L.append(
            f"| {_md(f.kind)} | {_md(f.direction)} | {_md(f.between[0])} -> {_md(f.between[1])} "
            f"| {f.packets} | {f.bytes} | {seen_when(f)} | {_md(what)} |"
        )
    if more:
        L += ["", _md(more)]
    if fl.legs:
        L += ["", "| leg | tuple | link | latency | details |", "|---|---|---|---|---|"]
        for leg in fl.legs[:MAX_LEGS]:
            lat = _secs(leg.latency_s) if leg.latency_s is not None else ""
            L.append(
                f"| {_md(leg.point)} | {_md(leg.tuple)} | {_md(_link(leg))} | {lat} | "
                f"{_md('; '.join(leg.details))} |"
            )
        if len(fl.legs) > MAX_LEGS:
            L += ["", _more_legs(fl)]
    return L


def _more_legs(fl: Flow) -> str:
    more = fl.legs[MAX_LEGS:]
    at = sorted({leg.point for leg in more})
    return (
        f"... {_n(len(more), 'more leg')} (at {', '.join(at)}), "
        f"{len(fl.legs):,} in all: verdict.json lists every one."
    )


def _md_facts(host: str, s: Mapping[str, Any]) -> list[str]:
    L = [f"### {_md(host)}", ""]
    counters = s.get("nstat") or []
    if counters:
        notable = [c for c in counters if c.get("notable")]
        other = [c for c in counters if not c.get("notable")][:MAX_COUNTERS]
        L += ["| counter | before | after | delta | note |", "|---|---|---|---|---|"]
        for c in notable + other:
            note = f"**{_md(c['notable'])}**" if c.get("notable") else ""
            L.append(
                f"| {_md(c['name'])} | {c['before']} | {c['after']} | {c['delta']:+d} | {note} |"
            )
        rest = len(counters) - len(notable) - len(other)
        if rest > 0:
            L.append(f"\n{_n(rest, 'more counter')} moved (facts/{_md(host)}/delta/nstat.txt).")
        L.append("")
    elif "nstat" in s:
        L += ["No nstat counter moved.", ""]
    for name in ("nft", "iptables"):
        rules = s.get(name)
        if rules:
            L += [
                f"Firewall rules that counted packets ({name}):",
                "",
                "| packets | bytes | where | rule |",
                "|---|---|---|---|",
            ]
            for r in rules[:MAX_RULES]:
                L.append(
                    f"| +{r['packets']} | +{r['bytes']} | {_md(r['where'])} | {_md(r['rule'])} |"
                )
            L.append("")
    ct = s.get("conntrack")
    if ct:
        L += [f"conntrack: {_n(int(ct['new']), 'new entry', 'new entries')}, {int(ct['gone']):,} "
              "gone during the window.", ""]  # fmt: skip
    missing = s.get("missing") or {}
    if missing:
        L.append(
            "Not collected: "
            + "; ".join(f"{_md(k)} ({_md(v)})" for k, v in sorted(missing.items()))
        )
        L.append("")
    return L


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#1d1d1f;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
td.nw{white-space:nowrap}td.num{white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.summary dt{font-weight:600}dl.summary dd{margin:0}
.k-drop{color:#b00020;font-weight:600}.k-inject{color:#7b1fa2;font-weight:600}
.k-rewrite{color:#e65100;font-weight:600}.k-reset{color:#6a1b9a;font-weight:600}
.k-gap{color:#666;font-weight:600}.k-around{color:#1565c0;font-weight:600}
.flow{border:1px solid #ddd;border-radius:6px;padding:.4em 1em;margin:1em 0}
.summary-line{font-weight:600}
.notable{color:#b00020;font-weight:600}
code{background:#f3f3f3;padding:0 .2em}
svg{max-width:100%;height:auto;background:#fff}
.muted{color:#666}
ul.policy{background:#f1f8e9;border:1px solid #c5e1a5;border-radius:6px;
padding:.5em 1em .5em 2em}
"""


def render_html(manifest: Mapping[str, Any], verdict: Verdict, facts: Mapping[str, Any]) -> str:
    verdict = ensure_patterns(verdict)
    t = triage(verdict)
    problems, policy = _split(verdict.patterns)
    detailed = _detailed(t)
    path = [str(p.get("name")) for p in manifest.get("points", [])] or [
        p.name for p in verdict.points
    ]
    H: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>hopcap report: run {_h(manifest.get('run_id', '?'))}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>hopcap report: run {_h(manifest.get('run_id', '?'))}</h1>",
        '<dl class="summary">',
    ]
    for k, v in _summary_lines(manifest, verdict, t):
        H.append(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>")
    H.append("</dl>")
    errors = list(manifest.get("errors") or [])
    warnings = list(manifest.get("warnings") or []) + list(verdict.warnings)
    if errors:
        H.append("<h3>Errors</h3><ul>" + "".join(f"<li>{_h(e)}</li>" for e in errors) + "</ul>")
    if warnings:
        H.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{_h(w)}</li>" for w in warnings) + "</ul>")

    H.append("<h2>Capture points</h2>")
    H.append(
        "<table><thead><tr><th>#</th><th>point</th><th>packets</th><th>kernel drops</th>"
        "<th>clock offset (aligned)</th><th>clock probe</th><th>error</th></tr></thead><tbody>"
    )
    for i, r in enumerate(_point_rows(manifest, verdict), 1):
        H.append(
            f'<tr><td>{i}</td><td class="nw">{_h(r["name"])}</td>'
            f'<td class="num">{_h(_int(r["packets"]))}</td>'
            f'<td class="num">{_h(_int(r["kernel_drops"]))}</td>'
            f'<td class="num">{_h(_secs(r["offset"]))}</td>'
            f'<td class="num">{_h(_secs(r["probe"]))}</td><td>{_h(r["error"] or "")}</td></tr>'
        )
    H.append("</tbody></table>")

    H.append(f"<h2>Patterns ({len(problems)})</h2>")
    if problems:
        H.append('<p class="muted">The same finding across flows, counted once; most flows '
                 "first.</p>")  # fmt: skip
        H.append(
            "<table><thead><tr><th>kind</th><th>direction</th><th>between</th><th>change</th>"
            "<th>flows</th><th>packets</th><th>seen</th><th>e.g.</th><th>description</th>"
            "</tr></thead><tbody>"
        )
        for p in problems[:MAX_PATTERNS]:
            H.append(
                f'<tr><td class="k-{_h(p.kind)}">{_h(p.kind)}</td><td>{_h(p.direction)}</td>'
                f'<td class="nw">{_h(p.between[0])} -&gt; {_h(p.between[1])}</td>'
                f'<td>{_h(_pattern_change(p))}</td><td class="num">{p.flows:,} of {p.of:,}</td>'
                f'<td class="num">{p.packets:,}</td><td class="nw">{_h(seen_span(p))}</td>'
                f"<td>{_examples_html(p, detailed)}</td>"
                f"<td>{_h(p.text)}</td></tr>"
            )
        H.append("</tbody></table>")
        if len(problems) > MAX_PATTERNS:
            H.append(f"<p>{_n(len(problems) - MAX_PATTERNS, 'more pattern')} in verdict.json.</p>")
    else:
        H.append("<p>No drop, injection, reset, rewrite or gap beyond device policy.</p>")
    if policy:
        H.append(f"<h2>Device policy ({len(policy)})</h2>")
        H.append(
            '<p class="muted">What the devices on the path do to flows on purpose; expected, '
            "not faults.</p>"
        )
        H.append('<ul class="policy">' + "".join(f"<li>{_h(p.text)}</li>" for p in policy))
        H.append("</ul>")
    around = split_patterns(verdict.patterns)[1]
    if around:
        H.append(f"<h2>Paths around capture points ({len(around)})</h2>")
        H.append(f'<p class="muted">{_h(_AROUND_NOTE)}</p>')
        H.append('<ul class="policy">' + "".join(f"<li>{_h(p.text)}</li>" for p in around))
        H.append("</ul>")

    H.append(f"<h2>Flows with drops, injections, resets or gaps ({len(t.alarms):,})</h2>")
    if not t.alarms:
        H.append("<p>No flow was dropped, injected into or reset, and no evidence is missing.</p>")
    else:
        H.append('<p class="muted">Most such packets first.</p>')
    H += _html_flows(t.alarms, MAX_DETAILED, path)
    if t.unanswered:
        H.append(f"<h2>Flows with no response ({len(t.unanswered):,})</h2>")
        H.append(f'<p class="muted">{_h(_UNANSWERED)}</p>')
        H += _html_flows(t.unanswered, 0, path)
    if t.rewrites:
        H.append(f"<h2>Flows with rewrites only ({len(t.rewrites):,})</h2>")
        H.append('<p class="muted">Rewrites that are not device policy (see the patterns).</p>')
        H += _html_flows(t.rewrites, MAX_REWRITES_DETAILED, path)

    H.append("<h2>Facts that moved</h2>")
    moved = _moved_facts(facts)
    if not moved:
        H.append(f"<p>{_h(_no_facts(manifest))}</p>")
    elif any(f.get("nstat") for _host, f in moved):
        H.append(f'<p class="muted">{_h(_COUNTERS_NOTE)}</p>')
    for host, s in moved:
        H += _html_facts(host, s)

    H.append(f"<h2>Other flows ({len(t.policy) + len(t.healthy) + len(t.around):,})</h2>")
    if t.around:
        H.append(
            f"<p>{_n(len(t.around), 'flow')} went around capture points (see above), "
            "nothing worse.</p>"
        )
    if t.policy:
        H.append(f"<p>{_n(len(t.policy), 'flow')} with only the device policy above.</p>")
    if t.healthy:
        H.append(f"<p>{_n(len(t.healthy), 'flow')} without a finding.</p>")
        if len(t.healthy) <= MAX_HEALTHY_LISTED:
            H.append(
                "<table><thead><tr><th>flow</th><th>client -&gt; server</th><th>legs</th>"
                "<th>summary</th></tr></thead><tbody>"
            )
            for fl in t.healthy:
                H.append(
                    f'<tr><td class="nw">{_h(fl.id)}</td>'
                    f'<td class="nw">{_h(fl.client)} -&gt; {_h(fl.server)}</td>'
                    f'<td class="num">{len(fl.legs)}</td><td>{_h(fl.summary)}</td></tr>'
                )
            H.append("</tbody></table>")
    if not t.policy and not t.healthy and not t.around:
        H.append("<p>None.</p>")
    if t.local:
        H.append(f"<h2>Also seen: the hosts' own traffic ({len(t.local):,})</h2>")
        H.append(f'<p class="muted">{_h(_ALSO_SEEN)}</p>')
        H.append(
            "<table><thead><tr><th>flow</th><th>local to</th><th>client -&gt; server</th>"
            "<th>summary</th></tr></thead><tbody>"
        )
        H += [
            "<tr>" + "".join(f"<td>{_h(x)}</td>" for x in row) + "</tr>" for row in _local_rows(t)
        ]
        H.append("</tbody></table>")
        if len(t.local) > MAX_HEALTHY_LISTED:
            H.append(f"<p>{len(t.local) - MAX_HEALTHY_LISTED:,} more in verdict.json.</p>")
    repro = manifest.get("repro")
    if repro:
        H.append("<h2>Reproduction</h2><ul>")
        H += [
            f"<li>{_h(k)}: " + (f"<code>{_h(v)}</code>" if code else _h(v)) + "</li>"
            for k, v, code in _repro_lines(repro)
        ]
        H.append("</ul>")
    trigger = manifest.get("trigger")
    if trigger:
        H.append("<h2>Trigger (flight recorder)</h2>")
        H.append(
            f"<p>on {_h(trigger.get('host'))}: <code>{_h(trigger.get('command', ''))}</code>, "
            f"fired at {_h(iso(trigger.get('fired_ts')))}, exit status "
            f"{_h(trigger.get('exit_status'))}</p>"
        )
    rec_lines = _recording_lines(manifest)
    if rec_lines:
        H.append("<h2>Recording</h2><ul>")
        H += [f"<li>{_h(x)}</li>" for x in rec_lines]
        H.append("</ul>")
    H.append(
        '<p class="muted">verdict.json has every flow and every pattern; merged.pcapng has '
        "every point as its own interface on one timeline; pcaps/ the original captures; "
        "facts/ before/after outputs and deltas; manifest.json the sha256 of every file.</p>"
    )
    H += ["</body>", "</html>"]
    return "\n".join(H) + "\n"


def _html_flows(flows: Sequence[Flow], detailed: int, path: Sequence[str]) -> list[str]:
    """The first `detailed` flows in full (with a ladder), then one row each up to
    MAX_LISTED."""
    H: list[str] = []
    for fl in flows[:detailed]:
        H += _html_flow(fl, path)
    rest = flows[detailed : detailed + MAX_LISTED]
    if rest and detailed:
        H.append(f"<p>The next {len(rest):,}, one line each:</p>")
    if rest:
        H.append(
            "<table><thead><tr>"
            + "".join(f"<th>{_h(c)}</th>" for c in FLOW_HEADERS)
            + "</tr></thead><tbody>"
        )
        for fl in rest:
            row = flow_row(fl)
            H.append(
                f'<tr><td class="nw">{_h(row[0])}</td><td class="nw">{_h(row[1])}</td>'
                + "".join(f"<td>{_h(c)}</td>" for c in row[2:])
                + "</tr>"
            )
        H.append("</tbody></table>")
    left = len(flows) - detailed - len(rest)
    if left > 0:
        H.append(f"<p>... {left:,} more in verdict.json.</p>")
    return H


def _html_flow(fl: Flow, path: Sequence[str]) -> list[str]:
    H = [
        f'<div class="flow" id="{_h(fl.id)}">',
        f"<h3>{_h(fl.id)}: {_h(fl.client)} -&gt; {_h(fl.server)} ({_h(fl.proto)})</h3>",
        f'<p class="summary-line">{_h(fl.summary)}</p>',
        "<table><thead><tr><th>kind</th><th>direction</th><th>between</th><th>packets</th>"
        "<th>bytes</th><th>seen</th><th>what</th></tr></thead><tbody>",
    ]
    shown, more = shown_findings(fl)
    for f in shown:
        what = finding_what(f)
        H.append(
            f'<tr><td class="k-{_h(f.kind)}">{_h(f.kind)}</td><td>{_h(f.direction)}</td>'
            f'<td class="nw">{_h(f.between[0])} -&gt; {_h(f.between[1])}</td>'
            f'<td class="num">{f.packets:,}</td><td class="num">{f.bytes:,}</td>'
            f'<td class="nw">{_h(seen_when(f))}</td><td>{_h(what)}</td></tr>'
        )
    H.append("</tbody></table>")
    if more:
        H.append(f'<p class="muted">{_h(more)}</p>')
    if fl.legs:
        H.append(
            "<table><thead><tr><th>leg</th><th>tuple</th><th>link</th><th>latency</th>"
            "<th>details</th></tr></thead><tbody>"
        )
        for leg in fl.legs[:MAX_LEGS]:
            lat = _secs(leg.latency_s) if leg.latency_s is not None else ""
            H.append(
                f'<tr><td class="nw">{_h(leg.point)}</td><td class="nw">{_h(leg.tuple)}</td>'
                f'<td>{_h(_link(leg))}</td><td class="num">{_h(lat)}</td>'
                f"<td>{_h('; '.join(leg.details))}</td></tr>"
            )
        H.append("</tbody></table>")
        if len(fl.legs) > MAX_LEGS:
            H.append(f"<p>{_h(_more_legs(fl))}</p>")
    H.append(ladder_svg(fl, path))
    H.append("</div>")
    return H


def _html_facts(host: str, s: Mapping[str, Any]) -> list[str]:
    H = [f"<h3>{_h(host)}</h3>"]
    counters = s.get("nstat") or []
    if counters:
        notable = [c for c in counters if c.get("notable")]
        other = [c for c in counters if not c.get("notable")][:MAX_COUNTERS]
        H.append(
            "<table><thead><tr><th>counter</th><th>before</th><th>after</th><th>delta</th>"
            "<th>note</th></tr></thead><tbody>"
        )
        for c in notable + other:
            cls = ' class="notable"' if c.get("notable") else ""
            H.append(
                f'<tr{cls}><td>{_h(c["name"])}</td><td class="num">{_h(c["before"])}</td>'
                f'<td class="num">{_h(c["after"])}</td><td class="num">{c["delta"]:+d}</td>'
                f"<td>{_h(c.get('notable') or '')}</td></tr>"
            )
        H.append("</tbody></table>")
        rest = len(counters) - len(notable) - len(other)
        if rest > 0:
            H.append(
                f'<p class="muted">{_n(rest, "more counter")} moved '
                f"(facts/{_h(host)}/delta/nstat.txt).</p>"
            )
    elif "nstat" in s:
        H.append("<p>No nstat counter moved.</p>")
    for name in ("nft", "iptables"):
        rules = s.get(name)
        if rules:
            H.append(f"<p>Firewall rules that counted packets ({_h(name)}):</p>")
            H.append(
                "<table><thead><tr><th>packets</th><th>bytes</th><th>where</th><th>rule</th>"
                "</tr></thead><tbody>"
            )
            for r in rules[:MAX_RULES]:
                H.append(
                    f'<tr><td class="num">+{_h(r["packets"])}</td>'
                    f'<td class="num">+{_h(r["bytes"])}</td>'
                    f"<td>{_h(r['where'])}"
                    f"</td><td><code>{_h(r['rule'])}</code></td></tr>"
                )
            H.append("</tbody></table>")
    ct = s.get("conntrack")
    if ct:
        H.append(
            f"<p>conntrack: {_n(int(ct['new']), 'new entry', 'new entries')}, "
            f"{int(ct['gone']):,} gone during "
            "the window.</p>"
        )
    missing = s.get("missing") or {}
    if missing:
        H.append(
            '<p class="muted">Not collected: '
            + "; ".join(f"{_h(k)} ({_h(v)})" for k, v in sorted(missing.items()))
            + "</p>"
        )
    return H


# --------------------------------------------------------------------------- ladder

_COLORS = {
    "drop": "#b00020",
    "inject": "#7b1fa2",
    "rewrite": "#e65100",
    "reset": "#6a1b9a",
    "gap": "#777777",
    "icmp": "#00695c",
    "around": "#1565c0",
}


def _columns(fl: Flow, path: Sequence[str]) -> list[str]:
    cols = list(path)
    names = {leg.point for leg in fl.legs}
    for f in fl.findings:
        names.update(f.between)
    for n in sorted(names - set(cols)):
        host = n.partition(":")[0]
        idx = [i for i, c in enumerate(cols) if c.partition(":")[0] == host]
        if idx:
            # a bare host name is the host's own stack: beyond its last point on the server
            # side, before its first point on the client side
            first, last = idx[0], idx[-1]
            if last == len(cols) - 1 or first != 0:
                cols.insert(last + 1, n)
            else:
                cols.insert(first, n)
        else:
            cols.append(n)
    return cols


def ladder_svg(fl: Flow, path: Sequence[str]) -> str:
    """A ladder diagram: one vertical line per point in path order, one row per finding
    shown (`shown_findings`), and a last row that says how many more there are."""
    cols = _columns(fl, path)
    col_w, left, top, row_h = 150, 70, 60, 46
    x = {c: left + i * col_w for i, c in enumerate(cols)}
    shown, more = shown_findings(fl)
    rows = 1 + len(shown) + (1 if more else 0)
    # room for the labels (up to 90 characters) even when the path has two points
    width = max(left * 2 + col_w * max(len(cols) - 1, 1), 720)
    height = top + rows * row_h + 30
    S: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="ladder diagram of flow '
        f'{_h(fl.id)}" font-family="sans-serif" font-size="11">',
        # labels cross the points' lines: a white outline under each keeps it readable
        "<style>text{paint-order:stroke;stroke:#fff;stroke-width:3px;"
        "stroke-linejoin:round}</style>",
        "<defs>",
    ]
    for kind, color in [*_COLORS.items(), ("ctx", "#999999")]:
        S.append(
            f'<marker id="ah-{_h(fl.id)}-{kind}" markerWidth="10" markerHeight="8" refX="9" '
            f'refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="{color}"/></marker>'
        )
    S.append("</defs>")
    points = set(path).union(leg.point for leg in fl.legs)
    for c in cols:
        cx = x[c]
        # a host's own stack is a name that is no capture point (a point may be named
        # without an interface: `hopcap correlate a=A.pcap b=B.pcap`)
        bare = c not in points
        dash = ' stroke-dasharray="2,3"' if bare else ""
        S.append(
            f'<line x1="{cx}" y1="{top - 10}" x2="{cx}" y2="{height - 15}" '
            f'stroke="#444" stroke-width="1.5"{dash}/>'
        )
        S.append(
            f'<text x="{cx}" y="{top - 35}" text-anchor="middle" font-weight="bold">{_h(c)}</text>'
        )
        if bare:
            S.append(
                f'<text x="{cx}" y="{top - 20}" text-anchor="middle" fill="#666">'
                "(host stack)</text>"
            )
    # context row: where the flow was seen, and the span of its legs
    y = top + row_h // 2
    # (each point once: a flow through a load balancer may have a leg there per request)
    legs = list(dict.fromkeys(leg.point for leg in fl.legs if leg.point in x))
    if len(legs) >= 2:
        xs = sorted(x[p] for p in legs)
        S.append(
            f'<line x1="{xs[0]}" y1="{y}" x2="{xs[-1]}" y2="{y}" stroke="#999" '
            f'stroke-width="1.5" marker-end="url(#ah-{_h(fl.id)}-ctx)"/>'
        )
    for p in legs:
        S.append(f'<circle cx="{x[p]}" cy="{y}" r="4" fill="#999"/>')
    S.append(
        f'<text x="{left - 60}" y="{y - 8}" fill="#666">connection seen at '
        f"{_n(len(legs), 'point')}: {_h(fl.client)} -&gt; {_h(fl.server)}</text>"
    )
    for i, f in enumerate(shown, 1):
        S += _finding_row(f, x, top + i * row_h + row_h // 2, fl.id, left, width)
    if more:
        y = top + (len(shown) + 1) * row_h + row_h // 2
        n = len(fl.findings) - len(shown)
        S.append(
            f'<text x="{left - 60}" y="{y}" fill="#666">... {_n(n, "more finding")} '
            "(counted under the table above; verdict.json lists every one)</text>"
        )
    S.append("</svg>")
    return "\n".join(S)


def _finding_row(
    f: Finding, x: Mapping[str, int], y: int, fid: str, left: int, width: int
) -> list[str]:
    color = _COLORS.get(f.kind, "#333")
    a, b = f.between
    xa, xb = x.get(a), x.get(b)
    out: list[str] = []
    if xa is None or xb is None:
        return [f'<text x="{left}" y="{y}" fill="{color}">{_h(finding_text(f))}</text>']
    if xa == xb:
        xb = xa + 60
    mid = (xa + xb) // 2
    marker = f'marker-end="url(#ah-{_h(fid)}-{_h(f.kind)})"'
    label = f"{f.kind.upper()} {f.direction}: {f.what}"
    if f.kind == "rewrite" and f.field:
        label = f"REWRITE {f.direction}: {f.field} {f.before} -> {f.after}"
    if len(label) > 90:
        label = label[:87] + "..."
    if f.kind == "drop":
        out.append(
            f'<line x1="{xa}" y1="{y}" x2="{mid}" y2="{y}" stroke="{color}" stroke-width="2.5"/>'
        )
        out.append(
            f'<path d="M{mid - 7},{y - 7} L{mid + 7},{y + 7} M{mid - 7},{y + 7} '
            f'L{mid + 7},{y - 7}" stroke="{color}" stroke-width="3"/>'
        )
    elif f.kind == "inject":
        out.append(
            f'<circle cx="{mid}" cy="{y}" r="5" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        out.append(
            f'<line x1="{mid}" y1="{y}" x2="{xb}" y2="{y}" stroke="{color}" '
            f'stroke-width="2.5" stroke-dasharray="6,3" {marker}/>'
        )
    elif f.kind == "gap":
        out.append(
            f'<line x1="{xa}" y1="{y}" x2="{xb}" y2="{y}" stroke="{color}" '
            'stroke-width="2" stroke-dasharray="3,4"/>'
        )
        out.append(
            f'<text x="{mid}" y="{y + 4}" text-anchor="middle" fill="{color}" '
            'font-weight="bold">?</text>'
        )
    elif f.kind == "around":  # past the points between, on a path no capture saw
        out.append(
            f'<line x1="{xa}" y1="{y}" x2="{xb}" y2="{y}" stroke="{color}" '
            f'stroke-width="2" stroke-dasharray="10,4" {marker}/>'
        )
    else:  # rewrite, reset
        out.append(
            f'<line x1="{xa}" y1="{y}" x2="{xb}" y2="{y}" stroke="{color}" '
            f'stroke-width="2.5" {marker}/>'
        )
        if f.kind == "rewrite":
            out.append(f'<rect x="{mid - 5}" y="{y - 5}" width="10" height="10" fill="{color}"/>')
    # labels run from the left end of the arrow, or end at its right end in the right half
    if min(xa, xb) > width // 2:
        tx, anchor = max(xa, xb), "end"
    else:
        tx, anchor = min(xa, xb), "start"
    out.append(
        f'<text x="{tx}" y="{y - 10}" text-anchor="{anchor}" fill="{color}">{_h(label)} '
        f"[{f.packets} pkt]</text>"
    )
    return out
