"""One-line summary of a flow, from its findings' structured fields: one sentence per
finding kind for TCP flows, datagram flows and the hosts' own flows alike."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from hopcap.model import Finding, Leg
from hopcap.patterns import AROUND_WHY, NO_RESPONSE, around_name, host_points

if TYPE_CHECKING:
    from hopcap.correlate.flows import FlowB, Point

NS = 1_000_000_000


def where(pts_by_name: Mapping[str, Point], between: tuple[str, str]) -> str:
    a, b = between
    pa, pb = pts_by_name.get(a), pts_by_name.get(b)
    if pa is not None and pb is not None and pa.host == pb.host and pa.iface and pb.iface:
        return f"inside {pa.host}"
    if pb is None:
        return f"by {b} itself"
    if pa is None:
        return f"by {a} itself"
    return f"between {a} and {b}"


def end_host(pts: Sequence[Point], at: int, seen_at: Iterable[int]) -> str | None:
    """The host of point `at` when it is a conversation's end there: the point is one of
    the host's interfaces and the conversation (seen at points `seen_at`, `at` among them)
    crossed no other interface of that host. A conversation that came through a firewall's
    inside interface and left by its outside one did not end at the firewall: what is
    beyond its outside interface (a RST, an unanswered SYN, data never acknowledged) is
    the server's or the path's, not the firewall's. None: not a host's end."""
    p = pts[at]
    if not p.iface:
        return None
    for i in seen_at:
        q = pts[i]
        if i != at and q.host == p.host and q.iface:
            return None
    return p.host


def more(fs: list[Finding]) -> str:
    """ "; 2 more findings" (gaps and paths around points not counted)."""
    n = len([x for x in fs if x.kind != "gap" and x.kind != "around"]) - 1
    return f"; {n} more finding{'s' if n > 1 else ''}" if n > 0 else ""


def sentence(f: Finding, word: str, at: str, findings: list[Finding], unit: str = "") -> str:
    """A flow's one-line summary from its finding `f` (drop, inject, rewrite, reset, icmp;
    "" for another kind): `word` names its packets ("SYN", "data", "DNS query"), `at`
    where it happened, `unit` what a rewrite counts ("packets"; "": no count), and how
    many more findings the flow has (`findings`) follows."""
    a, b = f.between
    reset = _reset_instead(f, findings)
    if reset is not None:
        # a device that blocks a request and resets the connection in the other end's
        # name (an IPS, a firewall's reject rule): the RST is what the sender saw
        return (
            f"{word} dropped {at} (seen on {a}, never on {b}) and answered with a RST "
            f"injected there (seen on {a}, never sent through {b})"
            + more([x for x in findings if x is not reset])
        )
    if f.kind == "drop":
        text = f"{word} dropped {at} (seen on {a}, never on {b})"
    elif f.kind == "inject":
        text = f"{word} injected {at} (seen on {b}, never sent through {a})"
    elif f.kind == "rewrite":
        one = f.packets == 1 and unit.endswith("s")  # "(1 packet)", not "(1 packets)"
        count = f" ({f.packets} {unit[:-1] if one else unit})" if unit else ""
        text = f"{f.field} rewritten {at}: {f.before} -> {f.after}{count}"
    elif f.kind == "reset":
        text = f"{a} reset the connection (RST seen on {b})"
    elif f.kind == "icmp":
        text = f.what
    else:
        return ""
    return text + more(findings)


def findings_summary(pts_by_name: Mapping[str, Point], findings: list[Finding]) -> str | None:
    """A TCP flow's first finding in words (`findings` in order), if it has one."""
    for fnd in findings:
        if fnd.kind == "drop" and fnd.packet == "SYN" and fnd.unanswered:
            a, b = fnd.between
            return f"SYN reached {a} but {b} never answered it"
        # an ICMP error says less than these; a path around points is said after them
        if fnd.kind != "icmp" and fnd.kind != "gap" and fnd.kind != "around":
            where_ = where(pts_by_name, fnd.between)
            return sentence(fnd, fnd.packet or "", where_, findings, "packets")
    for fnd in findings:
        if fnd.kind == "gap":
            return f"incomplete evidence {where(pts_by_name, fnd.between)}: {fnd.what}"
    return None


def _reset_instead(drop: Finding, findings: list[Finding]) -> Finding | None:
    """The RST injected back towards the sender at the same segment of the path where
    `drop` (a drop, not itself of a RST) was lost, no earlier than it; None when there is
    none."""
    if drop.kind != "drop" or drop.packet == "RST":
        return None
    for f in findings:
        if (
            f.kind == "inject"
            and f.packet == "RST"
            and f.direction != drop.direction
            and f.between == drop.between[::-1]
            and (f.first_ts or 0.0) >= (drop.first_ts or 0.0)
        ):
            return f
    return None


def path_words(legs: list[Leg]) -> tuple[str, str]:
    """The points a flow went through ("a -> b") and its links (" (nat at b)")."""
    # several connections beyond a proxy visit the same points: each point once
    path = " -> ".join(dict.fromkeys(leg.point for leg in legs))
    kinds = list(
        dict.fromkeys(f"{leg.link} at {leg.point}" for leg in legs[1:] if leg.link != "same")
    )
    return path, f" ({', '.join(kinds)})" if kinds else ""


def flow_summary(pts: list[Point], f: FlowB, findings: list[Finding], legs: list[Leg]) -> str:
    """The flow's first finding in words (`findings` in order), or how it went through."""
    from hopcap.correlate.reader import FIN, RST

    def outcome() -> str:
        # a request with no answer at all is not "OK", even when every hop delivered it
        first = f.legs[0]
        t0 = pts[first.point].table
        req = int(t0.plen[first.c.idx].sum()) if first.c is not None else 0
        resp = int(t0.plen[first.s.idx].sum()) if first.s is not None else 0
        last_req = close = None
        if req and not resp and first.c is not None:
            c_rows = first.c.idx
            last_req = int(t0.ts[c_rows[t0.plen[c_rows] > 0][-1]])
            closes = c_rows[(t0.flags[c_rows] & (FIN | RST)) != 0]
            close = int(t0.ts[closes[0]]) if closes.shape[0] else None
        return outcome_words(legs, req, resp, last_req, close, answered_before(pts, f))

    return flow_words(pts, findings, outcome)


def flow_words(pts: Sequence[Point], findings: list[Finding], outcome: Callable[[], str]) -> str:
    """A TCP flow's summary: its first finding in words (`findings` in order), else
    `outcome()` (how it went through); then the points it went around (`around_words`)."""
    said = findings_summary({p.name: p for p in pts}, findings)
    went = around_words(findings, host_points(p.name for p in pts))
    if said is None:
        said = outcome()
    return said + (f"; {went}" if went else "")


def around_words(findings: list[Finding], hosts: Mapping[str, Sequence[str]]) -> str:
    """What a flow's `around` findings say, in one clause: which points it went around,
    which way (both, or one direction: asymmetric routing), and why it may have; ""
    without any. `hosts`: each host's capture points."""
    ways: dict[tuple[str, ...], set[str]] = {}
    for f in findings:
        if f.kind == "around" and f.around:
            ways.setdefault(f.around, set()).add(f.direction)
    out = []
    for pts, dirs in ways.items():
        what = (
            "went around"
            if len(dirs) == 2
            else "requests (c2s) went around"
            if "c2s" in dirs
            else "answers (s2c) went around"
        )
        out.append(
            f"{what} {around_name(pts, hosts)}: never seen there, by captures that report no "
            f"loss: {AROUND_WHY}"
        )
    return "; ".join(out)


def answered_before(pts: list[Point], f: FlowB) -> tuple[str, str] | None:
    """Where a flow that never reached the end of the path was answered: (the point it
    did not reach, who answered)."""
    if f.hops and f.hops[-1].ended == "answered":
        pa, pb = pts[f.hops[-1].a], pts[f.hops[-1].b]
        who = f"{pa.host} itself" if pa.host == pb.host and pa.iface and pb.iface else "a device"
        return pb.name, who
    return None


def outcome_words(
    legs: list[Leg],
    req: int,
    resp: int,
    last_req: int | None,
    close: int | None,
    answered: tuple[str, str] | None,
) -> str:
    """How a flow without findings went: `req`, `resp`: payload bytes each way at its
    first point; `last_req`, `close`: the client's last data packet and first FIN or RST
    there (ns); `answered`: `answered_before`."""
    path, links = path_words(legs)
    if req and not resp and last_req is not None:
        # the client waited: it closed a second or more after its last byte, or never did
        # (closing right after sending is an upload, not a request left unanswered)
        waited = (close - last_req) / NS if close is not None else None
        if waited is None or waited >= 1.0:
            how = (
                f"the client gave up after {waited:.1f} s"
                if waited is not None
                else "the connection was still open when the capture ended"
            )
            return (
                f"{NO_RESPONSE}the request ({req} bytes) went through {path}{links}, "
                f"but no response data came back to {legs[0].point} ({how})"
            )
    if answered is not None:
        b, who = answered
        return (
            f"OK: through {path}{links}; answered before {b} ({who}: an endpoint or a proxy "
            "whose other side carries other bytes)"
        )
    return f"OK: delivered both ways through {path}{links}"
