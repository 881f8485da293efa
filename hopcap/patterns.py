"""Findings as patterns: the same finding across many flows, counted once.

A busy firewall clamps the MSS of every SYN: the verdict holds one `tcp.mss 1460 -> 1400`
finding per flow, thousands of them, and the few real drops drown. `find_patterns` groups
the findings of a built verdict by what they say (kind, direction, segment, field,
before -> after) into `Pattern`s with counts, labels the ones that are a device's policy
rather than a fault, and `triage` picks the flows a person must look at. Pure and stdlib
only (model types in, model types out); O(findings + flows × legs), plus a sort of the
patterns and of the flows shown.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hopcap.model import Finding, Flow, Leg, Pattern, Verdict

AROUND_WHY = (
    "another path (the other member of an HA pair, ECMP, asymmetric routing) or the "
    "capture filter there"
)


def around_name(skipped: Sequence[str], hosts: Mapping[str, Sequence[str]]) -> str:
    """The capture points a flow went around, in a sentence's words: their host when they
    are all of that host's points ("fw"), else their names. `hosts`: each host's points."""
    names = {p.partition(":")[0] for p in skipped}
    if len(names) == 1:
        host = next(iter(names))
        if host in hosts and sorted(hosts[host]) == sorted(skipped) and ":" in skipped[0]:
            return f"{host} ({', '.join(skipped)})"
    return ", ".join(skipped)


def host_points(names: Iterable[str]) -> dict[str, list[str]]:
    """Every host's capture points (`host:interface` names; a bare name is no host's)."""
    out: dict[str, list[str]] = {}
    for n in names:
        host, _, iface = n.partition(":")
        if iface:
            out.setdefault(host, []).append(n)
    return out


# how the summary of a flow without findings starts when its request got no response at
# all (every hop delivered it, nothing came back): told apart from healthy flows
NO_RESPONSE = "no response: "

# the kinds that make a flow worth listing on its own (a rewrite is told by its pattern)
ALARM_KINDS: frozenset[str] = frozenset({"drop", "inject", "reset", "gap", "icmp"})
_KIND_ORDER = {"drop": 0, "inject": 1, "reset": 2, "icmp": 3, "rewrite": 4, "gap": 5, "around": 6}
# share of a segment's flows (more than) one remarking must cover to be the device's policy
POLICY_SHARE = 0.5

# kind, direction, segment, field, and the values (before, after): as they are when each
# is an int, a string or None, else as their reprs (after a marker)
_Key = tuple[object, ...]
_PLAIN = frozenset({int, str, type(None)})
_BY_REPR = object()
_UNSET = "\0unset"  # no anchor looked up yet (None: the segment has none)


@dataclass(slots=True)
class _Acc:
    first: Finding
    flow_ids: list[str]
    last_flow: int
    packets: int
    bytes: int
    first_ts: float | None
    anchor: str | None = None  # the segment's first point that is a capture point
    kinds: dict[str, int] = dataclasses.field(default_factory=dict)
    unanchored: int = 0  # flows with no leg where the segment starts
    counted: bool = False  # its packets counted by kind (a drop's, an injection's)
    members: list[Finding] = dataclasses.field(default_factory=list)
    last_ts: float | None = None
    # an `around` pattern's flows by the directions that went around (1: c2s, 2: s2c, 3:
    # both), and its c2s finding, if any (the pattern is told in the c2s direction)
    ways: dict[int, int] = dataclasses.field(default_factory=dict)
    c2s: Finding | None = None

    def __post_init__(self) -> None:
        self.counted = self.first.kind in ("drop", "inject")


_COUNTS = re.compile(r"\((\d+ [A-Za-z-]+(?:, \d+ [A-Za-z-]+)*)\)$")


def _add_kinds(kinds: dict[str, int], f: Finding) -> None:
    """Count a drop's or an injection's packets by kind (SYN, data, ...), read from the
    finding's description: `(3 data, 1 FIN)` for several packets, else its first packet."""
    if f.kind not in ("drop", "inject"):
        return
    what = f.what
    if what.endswith(")"):
        # the counts, if any, are in the last parentheses (they hold none of their own)
        counts = _counts(what[what.rfind("(") :])
        if counts is not None:
            for k, n in counts:
                kinds[k] = kinds.get(k, 0) + n
            return
    first = _first_kind(what.partition(" ")[0], " len=" in what)
    if first is not None:
        kinds[first] = kinds.get(first, 0) + max(f.packets, 1)


@functools.lru_cache(maxsize=4096)  # a few shapes: `(2 data)`, `(1 ACK, 1 data)`, ...
def _counts(tail: str) -> tuple[tuple[str, int], ...] | None:
    m = _COUNTS.match(tail)
    if m is None:
        return None
    return tuple((k, int(n)) for n, k in (part.split(" ", 1) for part in m.group(1).split(", ")))


@functools.lru_cache(maxsize=256)  # the first packet's flags, and whether it held data
def _first_kind(word: str, data: bool) -> str | None:
    flags = set(word.split(","))
    if "SYN" in flags:
        return "SYN-ACK" if "ACK" in flags else "SYN"
    if "RST" in flags:
        return "RST"
    if data:
        return "data"
    if "FIN" in flags:
        return "FIN"
    if "ACK" in flags:
        return "ACK"
    return None


def find_patterns(verdict: Verdict) -> tuple[Pattern, ...]:
    """The verdict's findings grouped into patterns, problems first (drops, injections,
    resets, rewrites, gaps; most flows first), device policy last."""
    names = [p.name for p in verdict.points]
    points = set(names)
    anchors: dict[tuple[str, str], str | None] = {}
    # flows with a leg at each point: a flow through a load balancer that retried or
    # opened a backend connection per request has several legs at a point, one flow
    seen_at: dict[str, int] = {}
    groups: dict[_Key, _Acc] = {}
    for i, fl in enumerate(verdict.flows):
        if not fl.path:  # set apart: not part of what the path's segments saw
            continue
        legs = fl.legs
        for q in {leg.point for leg in legs}:
            seen_at[q] = seen_at.get(q, 0) + 1
        for f in fl.findings:
            b, a = f.before, f.after
            # values by their repr; an int, a string or None is its own (and cheaper: two
            # of them are equal only when of the same type)
            key: _Key
            if f.kind == "around":
                # both directions of a path around points are one pattern, told c2s
                ab = f.between if f.direction == "c2s" else (f.between[1], f.between[0])
                key = ("around", "c2s", ab, None, None, None)
            elif (b is None or type(b) in _PLAIN) and (a is None or type(a) in _PLAIN):
                key = (f.kind, f.direction, f.between, f.field, b, a)
            else:
                key = (f.kind, f.direction, f.between, f.field, _BY_REPR, repr(b), repr(a))
            acc = groups.get(key)
            if acc is None:
                anchor = anchors.get(f.between, _UNSET)
                if anchor is _UNSET:
                    anchor = anchors[f.between] = next((p for p in f.between if p in points), None)
                if f.kind == "around" and f.direction != "c2s":
                    anchor = next((p for p in key[2] if p in points), None)
                acc = groups[key] = _Acc(f, [], -1, 0, 0, None, anchor)
            acc.members.append(f)
            if f.kind == "around":
                c2s = f.direction == "c2s"
                acc.ways[i] = acc.ways.get(i, 0) | (1 if c2s else 2)
                if c2s and acc.c2s is None:
                    acc.c2s = f
            if acc.last_flow != i:
                acc.flow_ids.append(fl.id)
                acc.last_flow = i
                if acc.anchor is not None and not _has_leg(legs, acc.anchor):
                    acc.unanchored += 1
    # the sums of each group's findings (C loops over them, not a step per finding above)
    for acc in groups.values():
        fs = acc.members
        acc.packets = sum(map(_PACKETS, fs))
        acc.bytes = sum(map(_BYTES, fs))
        acc.first_ts, acc.last_ts = _span(fs)
        if acc.counted:  # a drop's or an injection's
            kinds = acc.kinds
            for f in fs:
                _add_kinds(kinds, f)
    merged = _fold_values(groups)
    out = [
        _pattern(acc, values, anchors.get(acc.first.between), seen_at, len(verdict.flows), names)
        for acc, values in merged
    ]
    out.sort(key=lambda p: (p.policy, _KIND_ORDER.get(p.kind, 9), -p.flows, -p.packets, p.text))
    return tuple(out)


def _has_leg(legs: tuple[Leg, ...], point: str) -> bool:
    for leg in legs:  # noqa: SIM110 (a loop: no generator made for a flow's few legs)
        if leg.point == point:
            return True
    return False


_PACKETS = operator.attrgetter("packets")
_BYTES = operator.attrgetter("bytes")
_TS = operator.attrgetter("first_ts")


def _last(f: Finding) -> float | None:
    return f.first_ts if f.last_ts is None else f.last_ts


def _span(fs: list[Finding]) -> tuple[float | None, float | None]:
    """The earliest first packet and the latest last packet of `fs` (None: none has a
    time)."""
    try:
        return min(map(_TS, fs)), max(map(_last, fs))  # type: ignore[type-var]
    except TypeError:  # some None among them
        ts = [t for t in map(_TS, fs) if t is not None]
        ls = [t for t in map(_last, fs) if t is not None]
        return (min(ts), max(ls)) if ts else (None, None)


def seen_span(p: Pattern) -> str:
    """When a pattern's findings happened, for people (UTC): `21:44:39.881-21:45:44.076`
    (the first packet of its earliest and of its latest finding; dates when the days
    differ), `21:44:39.881` for one instant, `from 21:44:39.881` when the verdict (of an
    older hopcap) has no last time; "" when no time is known."""
    if p.first_ts is None:
        return ""
    a = _dt.datetime.fromtimestamp(p.first_ts, _dt.UTC)
    hms = "%H:%M:%S.%f"
    if p.last_ts is None:
        return f"from {a.strftime(hms)[:-3]} UTC"
    b = _dt.datetime.fromtimestamp(p.last_ts, _dt.UTC)
    if a.date() != b.date():
        return f"{a:%Y-%m-%d} {a.strftime(hms)[:-3]}-{b:%Y-%m-%d} {b.strftime(hms)[:-3]} UTC"
    if b - a < _dt.timedelta(milliseconds=1):
        return f"{a.strftime(hms)[:-3]} UTC"
    return f"{a.strftime(hms)[:-3]}-{b.strftime(hms)[:-3]} UTC"


def with_patterns(verdict: Verdict) -> Verdict:
    """`verdict` with its `patterns` computed."""
    return dataclasses.replace(verdict, patterns=find_patterns(verdict))


def ensure_patterns(verdict: Verdict) -> Verdict:
    """`verdict` with patterns, computed if whoever built it left them out."""
    if verdict.patterns or not any(fl.findings for fl in verdict.flows):
        return verdict
    return with_patterns(verdict)


def _fold_values(groups: dict[_Key, _Acc]) -> list[tuple[_Acc, int]]:
    """A rewrite whose values change from flow to flow (sequence numbers, payloads) is one
    pattern, not one per flow: within one (kind, direction, segment, field), the value
    pairs seen on a single flow are folded together when there are several of them."""
    families: dict[tuple[str, str, tuple[str, str], str | None], list[_Acc]] = {}
    for key, acc in groups.items():
        kind, d, between, fld = key[:4]
        families.setdefault((kind, d, between, fld), []).append(acc)  # type: ignore[arg-type]
    out: list[tuple[_Acc, int]] = []
    for (kind, *_rest), accs in families.items():
        single = [a for a in accs if len(a.flow_ids) == 1]
        if kind != "rewrite" or len(single) < 2:
            out.extend((a, 1) for a in accs)
            continue
        out.extend((a, 1) for a in accs if len(a.flow_ids) > 1)
        ids: list[str] = []
        seen: set[str] = set()
        for a in single:
            if a.flow_ids[0] not in seen:
                seen.add(a.flow_ids[0])
                ids.append(a.flow_ids[0])
        ts = [a.first_ts for a in single if a.first_ts is not None]
        last = [a.last_ts for a in single if a.last_ts is not None]
        kinds: dict[str, int] = {}
        for a in single:
            for k, n in a.kinds.items():
                kinds[k] = kinds.get(k, 0) + n
        out.append(
            (
                _Acc(
                    dataclasses.replace(single[0].first, before=None, after=None),
                    ids,
                    -1,
                    sum(a.packets for a in single),
                    sum(a.bytes for a in single),
                    min(ts) if ts else None,
                    single[0].anchor,
                    kinds,
                    sum(a.unanchored for a in single),
                    last_ts=max(last) if last else None,
                ),
                len(single),
            )
        )
    return out


def _policy(f: Finding, values: int, flows: int, of: int) -> str | None:
    """What device policy a rewrite pattern is, if it is one."""
    if f.kind != "rewrite" or f.field is None:
        return None
    b, a = f.before, f.after
    ordered = values == 1 and isinstance(b, int) and isinstance(a, int)
    # lowered, not removed (-1: the option is gone)
    if f.field == "tcp.mss" and ordered and 0 < a < b:
        return "MSS clamping"
    if f.field in ("ip.ttl", "ip.hlim") and ordered and 0 < a < b:
        # between two interfaces of one host, routing takes a hop or two: a TTL lowered by
        # more there was set (`ip ttl set 3`), not decremented; across a network, any
        # number of routers may have taken theirs
        (ha, _, ia), (hb, _, ib) = (n.partition(":") for n in f.between)
        if ia and ib and ha == hb and b - a > 2:
            return None
        return "TTL decrement"
    if f.field in ("ip.dscp", "ip.tos") and values == 1 and flows > POLICY_SHARE * of:
        return "DSCP remarking"
    return None


def _pattern(
    acc: _Acc,
    values: int,
    anchor: str | None,
    seen_at: dict[str, int],
    total: int,
    points: Sequence[str] = (),
) -> Pattern:
    if acc.first.kind == "around":
        return _around_pattern(acc, seen_at, total, points)
    f = acc.first
    flows = len(acc.flow_ids)
    # flows seen where the segment starts, and any of the pattern's seen only beyond it
    of = total if anchor is None else seen_at.get(anchor, 0) + acc.unanchored
    label = _policy(f, values, flows, of)
    return Pattern(
        kind=f.kind,
        direction=f.direction,
        between=f.between,
        flows=flows,
        of=of,
        packets=acc.packets,
        bytes=acc.bytes,
        first_ts=acc.first_ts,
        last_ts=acc.last_ts,
        text=_text(f, values, flows, of, acc.packets, acc.flow_ids, label, acc.kinds),
        field=f.field,
        before=f.before if values == 1 else None,
        after=f.after if values == 1 else None,
        values=values,
        policy=label is not None,
        label=label,
        flow_ids=tuple(acc.flow_ids),
    )


def _around_pattern(
    acc: _Acc, seen_at: dict[str, int], total: int, points: Sequence[str]
) -> Pattern:
    """The flows that went around the same capture points (`around` findings, both
    directions folded): how many of the flows seen before them, which way."""
    f = acc.c2s or acc.first
    between = f.between if f.direction == "c2s" else (f.between[1], f.between[0])
    flows = len(acc.flow_ids)
    anchor = acc.anchor
    of = total if anchor is None else seen_at.get(anchor, 0) + acc.unanchored
    ways = list(acc.ways.values())
    counts = [(ways.count(3), "both directions"), (ways.count(1), "requests (c2s) only"),
              (ways.count(2), "answers (s2c) only")]  # fmt: skip
    how = ", ".join(f"{n:,} {what}" for n, what in counts if n)
    around = f.around or ()
    who = around_name(around, host_points(points))
    text = (
        f"went around {who} on {flows:,} of {_n(of, 'flow')} ({how}; "
        f"{_n(acc.packets, 'packet')}), between {between[0]} and {between[1]}: never seen "
        f"there, by captures that report no loss: {AROUND_WHY}; not drops"
    )
    if flows <= 3:
        text += f" [{', '.join(acc.flow_ids)}]"
    return Pattern(
        kind="around",
        direction="c2s",
        between=between,
        flows=flows,
        of=of,
        packets=acc.packets,
        bytes=acc.bytes,
        first_ts=acc.first_ts,
        last_ts=acc.last_ts,
        text=text,
        label=f"path around {who}",
        flow_ids=tuple(acc.flow_ids),
    )


def _short(x: Any, n: int = 40) -> str:
    s = str(x)
    return s if len(s) <= n else s[: n - 3] + "..."


def _n(k: int, word: str) -> str:
    return f"{k:,} {word}" + ("" if k == 1 else "s")


def _text(
    f: Finding,
    values: int,
    flows: int,
    of: int,
    packets: int,
    flow_ids: Sequence[str],
    label: str | None,
    kinds: dict[str, int],
) -> str:
    a, b = f.between
    if f.kind == "rewrite":
        what = (
            f"{f.field} rewritten {_short(f.before)} -> {_short(f.after)}"
            if values == 1
            else f"{f.field} rewritten ({values:,} different values)"
        )
    elif f.kind == "reset":
        what = f"reset by {a}"
    elif f.kind == "gap":
        what = "incomplete evidence (gap)"
    elif f.kind == "icmp":
        what = f"ICMP error ({_short(f.what.split(' from ')[0], 60)})"
    else:
        what = {"drop": "dropped", "inject": "injected"}.get(f.kind, f.kind)
    unit = "packet"
    if f.field == "tcp.mss":
        unit = "SYN" if f.direction == "c2s" else "SYN-ACK"
    detail = _n(packets, unit)
    if kinds:  # what they were, also for one packet: an injected RST says so
        detail += ": " + ", ".join(
            f"{n:,} {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))
        )
    s = f"{what} on {flows:,} of {_n(of, 'flow')} ({detail}), {f.direction} "
    # an ICMP error generated beyond the last point that saw its packet names that point
    # at both ends (was "between in and in")
    s += f"between {a} and {b}" if a != b else f"beyond {a}"
    if label:
        s = f"{label}: {s}"
    if flows <= 3:
        s += f" [{', '.join(flow_ids)}]"
    if f.kind == "gap":  # why the evidence is incomplete, from the first flow
        s += f"; e.g. {_short(f.what, 100)}"
    return s


# --------------------------------------------------------------------------- triage


def alarm_packets(fl: Flow) -> int:
    n = 0
    for f in fl.findings:
        if f.kind in ALARM_KINDS:
            n += f.packets
    return n


@dataclass(frozen=True)
class Triage:
    """The flows of a verdict in the order a person reads them."""

    alarms: list[Flow]  # drops, injections, resets or gaps; the target's first, then most
    # such packets first
    rewrites: list[Flow]  # only rewrites, at least one not device policy
    policy: list[Flow]  # only rewrites that are device policy
    healthy: list[Flow]  # no finding
    local: list[Flow] = dataclasses.field(default_factory=list)  # off the path (`path: false`)
    # went around capture points (another path, a capture filter), nothing worse: told by
    # the `around` patterns, one line each
    around: list[Flow] = dataclasses.field(default_factory=list)
    # no finding, but the request got no response at all (a server that accepted the
    # connection and never answered it): listed, not counted as healthy
    unanswered: list[Flow] = dataclasses.field(default_factory=list)


def triage(verdict: Verdict, patterns: Iterable[Pattern] | None = None) -> Triage:
    pats = verdict.patterns if patterns is None else tuple(patterns)
    # per (kind, direction, segment, field) of a device policy's pattern: its flows
    policy_flows: dict[tuple[str, str, tuple[str, str], str | None], set[str]] = {}
    for p in pats:
        if p.policy:
            policy_flows.setdefault((p.kind, p.direction, p.between, p.field), set()).update(
                p.flow_ids
            )
    alarms: list[tuple[int, int, Flow]] = []
    rewrites: list[Flow] = []
    policy: list[Flow] = []
    healthy: list[Flow] = []
    local: list[Flow] = []
    around: list[Flow] = []
    unanswered: list[Flow] = []
    none: set[str] = set()
    for i, fl in enumerate(verdict.flows):
        if not fl.path:
            local.append(fl)
            continue
        if not fl.findings:
            (unanswered if fl.summary.startswith(NO_RESPONSE) else healthy).append(fl)
            continue
        # one pass over the findings (a verdict has tens of thousands of flows): whether
        # any is an alarm, their packets, and whether all are device policy
        alarm, n, all_policy, went = False, 0, True, False
        for f in fl.findings:
            if f.kind in ALARM_KINDS:
                alarm = True
                n += f.packets
            elif f.kind == "around":
                went = True
            elif all_policy and fl.id not in policy_flows.get(
                (f.kind, f.direction, f.between, f.field), none
            ):
                all_policy = False
        if alarm:
            alarms.append((-n - (1 << 62 if fl.target else 0), i, fl))
        elif not all_policy:
            rewrites.append(fl)
        elif went:
            around.append(fl)
        else:
            policy.append(fl)
    alarms.sort(key=lambda x: (x[0], x[1]))
    return Triage(
        [fl for _n, _i, fl in alarms], rewrites, policy, healthy, local, around, unanswered
    )


def split_patterns(
    patterns: Iterable[Pattern],
) -> tuple[list[Pattern], list[Pattern], list[Pattern]]:
    """(problems, paths around capture points, device policy): the three lists a
    person reads apart."""
    problems: list[Pattern] = []
    around: list[Pattern] = []
    policy: list[Pattern] = []
    for p in patterns:
        (policy if p.policy else around if p.kind == "around" else problems).append(p)
    return problems, around, policy


def findings_brief(fl: Flow) -> str:
    """`drop 3, rewrite 1`: a flow's findings counted by kind, in severity order."""
    return _brief(tuple([f.kind for f in fl.findings]))


@functools.lru_cache(maxsize=1024)  # flows' kinds of findings come in a few combinations
def _brief(kinds: tuple[str, ...]) -> str:
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    return ", ".join(
        f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: _KIND_ORDER.get(kv[0], 9))
    )


FLOW_HEADERS = ("flow", "client -> server", "packets", "findings", "summary")


def flow_row(fl: Flow) -> list[str]:
    """One line of a flow list (FLOW_HEADERS): packets are those dropped, injected, reset
    or in gaps."""
    n = alarm_packets(fl)
    return [
        fl.id,
        f"{fl.client} -> {fl.server}",
        str(n) if n else "-",
        findings_brief(fl) or "-",
        fl.summary,
    ]


def local_counts(flows: Iterable[Flow], hosts: Iterable[str] = ()) -> dict[str, int]:
    """Off-path flows per host (in the order of `hosts`, then first seen): for "also seen:
    14 flows local to relay"."""
    out: dict[str, int] = dict.fromkeys(hosts, 0)
    for f in flows:
        if not f.path:
            key = f.local_to or "?"
            out[key] = out.get(key, 0) + 1
    return {h: n for h, n in out.items() if n}


def also_seen_line(flows: Iterable[Flow], hosts: Iterable[str] = ()) -> str | None:
    counts = local_counts(flows, hosts)
    if not counts:
        return None
    parts = [f"{n:,} flow{'s' if n != 1 else ''} local to {h}" for h, n in counts.items()]
    return "also seen (the hosts' own traffic, not on the path): " + ", ".join(parts)
