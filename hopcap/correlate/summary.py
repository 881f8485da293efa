"""One-line summary of a flow, from its findings' structured fields: one sentence per
finding kind for TCP flows, datagram flows and the hosts' own flows alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from hopcap.model import Finding, Leg

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


def more(fs: list[Finding]) -> str:
    """ "; 2 more findings" (gaps not counted)."""
    n = len([x for x in fs if x.kind != "gap"]) - 1
    return f"; {n} more finding{'s' if n > 1 else ''}" if n > 0 else ""


def sentence(f: Finding, word: str, at: str, findings: list[Finding], unit: str = "") -> str:
    """A flow's one-line summary from its finding `f` (drop, inject, rewrite, reset, icmp;
    "" for another kind): `word` names its packets ("SYN", "data", "DNS query"), `at`
    where it happened, `unit` what a rewrite counts ("packets"; "": no count), and how
    many more findings the flow has (`findings`) follows."""
    a, b = f.between
    if f.kind == "drop":
        text = f"{word} dropped {at} (seen on {a}, never on {b})"
    elif f.kind == "inject":
        text = f"{word} injected {at} (seen on {b}, never sent through {a})"
    elif f.kind == "rewrite":
        count = f" ({f.packets} {unit})" if unit else ""
        text = f"{f.field} rewritten {at}: {f.before} -> {f.after}{count}"
    elif f.kind == "reset":
        text = f"{a} reset the connection (RST seen on {b})"
    elif f.kind == "icmp":
        text = f.what
    else:
        return ""
    return text + more(findings)


def flow_summary(pts: list[Point], f: FlowB, findings: list[Finding], legs: list[Leg]) -> str:
    """The flow's first finding in words (`findings` in order), or how it went through."""
    from hopcap.correlate.reader import FIN, RST

    by_name = {p.name: p for p in pts}
    for fnd in findings:
        if fnd.kind == "drop" and fnd.packet == "SYN" and fnd.unanswered:
            a, b = fnd.between
            return f"SYN reached {a} but {b} never answered it"
        if fnd.kind != "icmp" and fnd.kind != "gap":  # an ICMP error says less than these
            return sentence(fnd, fnd.packet or "", where(by_name, fnd.between), findings, "packets")
    for fnd in findings:
        if fnd.kind == "gap":
            return f"incomplete evidence {where(by_name, fnd.between)}: {fnd.what}"
    # several connections beyond a proxy visit the same points: each point once
    path = " -> ".join(dict.fromkeys(leg.point for leg in legs))
    kinds = list(
        dict.fromkeys(f"{leg.link} at {leg.point}" for leg in legs[1:] if leg.link != "same")
    )
    links = f" ({', '.join(kinds)})" if kinds else ""
    # a request with no answer at all is not "OK", even when every hop delivered it
    first = f.legs[0]
    t0 = pts[first.point].table
    req = int(t0.plen[first.c.idx].sum()) if first.c is not None else 0
    resp = int(t0.plen[first.s.idx].sum()) if first.s is not None else 0
    if req and not resp and first.c is not None:
        # the client waited: it closed a second or more after its last byte, or never did
        # (closing right after sending is an upload, not a request left unanswered)
        c_rows = first.c.idx
        last_req = int(t0.ts[c_rows[t0.plen[c_rows] > 0][-1]])
        closes = c_rows[(t0.flags[c_rows] & (FIN | RST)) != 0]
        waited = (int(t0.ts[closes[0]]) - last_req) / NS if closes.shape[0] else None
        if waited is None or waited >= 1.0:
            how = (
                f"the client gave up after {waited:.1f} s"
                if waited is not None
                else "the connection was still open when the capture ended"
            )
            return (
                f"no response: the request ({req} bytes) went through {path}{links}, "
                f"but no response data came back to {legs[0].point} ({how})"
            )
    if f.hops and f.hops[-1].ended == "answered":
        pa, pb = pts[f.hops[-1].a], pts[f.hops[-1].b]
        who = f"{pa.host} itself" if pa.host == pb.host and pa.iface and pb.iface else "a device"
        return (
            f"OK: through {path}{links}; answered before {pb.name} ({who}: an endpoint or a proxy "
            "whose other side carries other bytes)"
        )
    return f"OK: delivered both ways through {path}{links}"
