"""Traffic of the capture hosts themselves: not expected beyond them, not on the path.

A real capture carries more than the path under study: scanners probing the hosts' own
addresses, the hosts' own DNS, NTP and monitoring, other users' connections. A SYN
addressed to the relay itself, answered by the relay's stack with a RST, is seen on the
relay and never on the server; per hop it looks like a drop and an injection, and it is
neither. `localize` takes a built verdict and the hosts' addresses and

- trims what a flow that ends at a host (its destination is one of the host's addresses)
  "lost" beyond that host, and what a flow that starts at a host "missed" before it; a
  connection of the path refused by such a host's own stack becomes a `reset` by it;
- sets apart (`path: false`, `local_to`) the flows seen at one point only that are not on
  the path: addressed to that host, sent by it elsewhere, or entering the path there (the
  server's Internet-facing noise), or a connection between two capture hosts themselves
  (its SYN before the captures, each side's packets leaving its own host at its point:
  read along the path, the TTL "rose" both ways); their findings are not findings;
- marks the flows of the target (the service under study, when known) and puts them first.

Addresses come in as data: stated (`--host`, the run's `ip addr` facts) or, for a host
with none stated, inferred from the captures: a connection that entered the path at that
host (not seen upstream) whose SYN went no further and was answered (SYN-ACK or RST) at
the host itself, or a datagram answered by an ICMP error from its destination there, is
addressed to it; an address some connection is forwarded through (the same connection seen
beyond the host, more often than answered for) is not. Pure: model types in, model types out."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from itertools import pairwise

from hopcap.correlate.summary import more, sentence
from hopcap.model import (
    BROKEN_KINDS,
    Finding,
    Flow,
    HostAddresses,
    PointSummary,
    Verdict,
    any_broken,
    flow_ids,
    last_of,
)


def norm_addr(text: str) -> str:
    """An address in canonical form (`2001:DB8::1` -> `2001:db8::1`); ValueError if none."""
    return str(ipaddress.ip_address(text.strip().strip("[]").split("%")[0]))


def _split_ep(ep: str) -> tuple[str, str]:
    ep = ep.strip()
    if ep.startswith("["):
        a, _, port = ep[1:].partition("]:")
        return a, port
    a, _, port = ep.rpartition(":")
    return (a, port) if a else (ep, "")


@functools.lru_cache(maxsize=1 << 16)  # a flow's legs are read several times
def _ends(tup: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """`"a:1 > b:2"` -> (("a", "1"), ("b", "2"))."""
    src, _, dst = tup.partition(" > ")
    return _split_ep(src), _split_ep(dst)


@dataclass
class _Path:
    """Where the points and hosts sit on the path."""

    order: dict[str, int]  # point name -> index (path order)
    host_of: dict[str, str]  # point name -> host
    hosts: list[str]  # hosts in path order (first appearance among present points)
    last_idx: dict[str, int]  # host -> index of its last present point
    first_idx: dict[str, int]

    @staticmethod
    def of(points: Iterable[PointSummary]) -> _Path:
        order: dict[str, int] = {}
        host_of: dict[str, str] = {}
        hosts: list[str] = []
        last: dict[str, int] = {}
        first: dict[str, int] = {}
        for i, p in enumerate(points):
            host = p.host or p.name.partition(":")[0]
            order[p.name] = i
            host_of[p.name] = host
            if p.missing is not None:
                continue
            if host not in first:
                first[host] = i
                hosts.append(host)
            last[host] = i
        return _Path(order, host_of, hosts, last, first)

    def index(self, name: str) -> int | None:
        """Path index of a point, or of a bare host name (its own stack: beyond its last
        point)."""
        if name in self.order:
            return self.order[name]
        if name in self.last_idx:
            return self.last_idx[name]
        return None


class _Target:
    def __init__(self, target: str | None) -> None:
        self.addr: str | None = None
        self.port = ""
        if target:
            a, port = _split_ep(target) if ":" in target.strip("[]") else (target, "")
            try:
                self.addr = norm_addr(a)
            except ValueError:
                self.addr = None
            self.port = port

    def hit(self, addr: str, port: str) -> bool:
        return self.addr is not None and addr == self.addr and (not self.port or port == self.port)

    def of_flow(self, fl: Flow) -> bool:
        for leg in fl.legs:
            (sa, sp), (da, dp) = _ends(leg.tuple)
            if self.hit(_canon(da), dp) or self.hit(_canon(sa), sp):
                return True
        return False


@functools.lru_cache(maxsize=1 << 16)  # every flow's legs ask for the same few addresses
def _canon(a: str) -> str:
    try:
        return norm_addr(a)
    except ValueError:
        return a


def _answered_here(fl: Flow, p: _Path, point: str) -> bool:
    """The flow's SYN went no further than `point` and the answer (RST or SYN-ACK) first
    appeared there: the host's own stack answered (or, for the last host, it answered)."""
    host = p.host_of[point]
    if p.last_idx.get(host) == max(p.last_idx.values(), default=-1):
        # the last host: nothing beyond; its reset, an ICMP error from the destination
        dst = _canon(_ends(fl.legs[-1].tuple)[1][0])
        for f in fl.findings:
            if f.kind == "reset":
                return True
            if f.kind == "icmp" and f" from {dst} " in f" {f.what} ":
                return True
        return False
    if fl.proto != "tcp" and len(fl.legs) == 1:
        # a datagram that went no further, refused by an ICMP error from its destination
        # that first appeared here: the host's own (a scanner's probe of a closed port)
        dst = _canon(_ends(fl.legs[0].tuple)[1][0])
        return any(
            f.kind == "icmp" and f.between[0] in (point, host) and f" from {dst} " in f" {f.what} "
            for f in fl.findings
        )
    lost = any(
        f.kind == "drop" and f.direction == "c2s" and f.between[0] == point and "SYN" in f.what
        for f in fl.findings
    )
    answer = any(
        f.kind == "inject"
        and f.direction == "s2c"
        and f.between[1] == point
        and ("RST" in f.what.split(" ")[0] or "SYN" in f.what.split(" ")[0])
        for f in fl.findings
    )
    return lost and answer


def _beyond(fl: Flow, p: _Path, point: str) -> bool:
    """Some finding of the flow is about what happened after `point`."""
    i = p.order.get(point, 10**9)
    return any(_touches(f, p, lambda j: j > i) for f in fl.findings)


def _ttl_rose(fl: Flow, a: str, b: str) -> bool:
    """The "same" packet arrived downstream with a higher TTL: not one packet, two (a
    scanner that sends one SYN to several hosts), linked by mistake."""
    for f in fl.findings:
        if (
            f.kind == "rewrite"
            and f.field == "ip.ttl"
            and f.direction == "c2s"
            and f.between == (a, b)
            and isinstance(f.before, int)
            and isinstance(f.after, int)
            and f.after > f.before
        ):
            return True
    return False


def infer_addresses(
    verdict: Verdict, stated: Mapping[str, Iterable[str]], target: str | None = None
) -> tuple[HostAddresses, ...]:
    """Every host's addresses: those stated, or (for a host with none stated) those the
    captures show its own stack answering for."""
    p = _Path.of(verdict.points)
    tgt = _Target(target)
    out: list[HostAddresses] = []
    first_host = p.hosts[0] if p.hosts else None
    last_host = p.hosts[-1] if p.hosts else None
    found: dict[str, dict[str, int]] = {h: {} for h in p.hosts}  # address -> flows
    middle = len(p.hosts) > 2  # hosts past the first and before the last
    for fl in verdict.flows:
        legs = fl.legs
        if not legs:
            continue
        # a connection a proxy terminated: the leg before a proxied one, or a proxied leg
        # that went no further, on a host past the first
        for i, y in enumerate(legs) if middle else ():
            hy = p.host_of.get(y.point)
            if hy is None or hy in (first_host, last_host) or hy not in found:
                continue
            nxt = legs[i + 1] if i + 1 < len(legs) else None
            if (nxt is not None and nxt.link == "proxied") or (
                nxt is None and y.link == "proxied" and i > 0 and not _beyond(fl, p, y.point)
            ):
                (_sa, _sp), (da, dp) = _ends(y.tuple)
                if not tgt.hit(_canon(da), dp):
                    a = _canon(da)
                    found[hy][a] = found[hy].get(a, 0) + 1
        point = legs[0].point
        if legs[-1].point != point or any(leg.point != point for leg in legs):
            continue
        host = p.host_of.get(point)
        if host is None or host == first_host or host not in found:
            continue
        if _answered_here(fl, p, point):
            (_sa, _sp), (da, dp) = _ends(legs[-1].tuple)
            if not tgt.hit(_canon(da), dp):
                a = _canon(da)
                found[host][a] = found[host].get(a, 0) + 1
    forwarded = _forwarded(verdict.flows, p, found) if any(found.values()) else {}
    for h in p.hosts:
        if h in stated:
            addrs = tuple(sorted({_canon(a) for a in stated[h]}, key=_addr_key))
            out.append(HostAddresses(h, addrs, "stated"))
        else:
            # an address more connections were forwarded through than answered for is not
            # the host's (a scanner's identical SYNs to two hosts can look like one NAT'd)
            fw = forwarded.get(h, {})
            own = {a for a, n in found[h].items() if n > fw.get(a, 0)}
            if own:
                out.append(HostAddresses(h, tuple(sorted(own, key=_addr_key)), "inferred"))
    return tuple(out)


def _forwarded(
    flows: Iterable[Flow], p: _Path, found: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """Per host, how many connections were forwarded through it (the same connection seen
    beyond it, "same" or "nat") to each address of `found` (those it answered for)."""
    forwarded: dict[str, dict[str, int]] = {h: {} for h in found}
    canon: dict[str, str] = {}  # a leg's destination, as written -> canonical address
    for fl in flows:
        for x, y in pairwise(fl.legs):
            hx, hy = p.host_of.get(x.point), p.host_of.get(y.point)
            if hx is None or hx == hy or y.link not in ("same", "nat") or not found.get(hx):
                continue
            dst = x.tuple.partition(" > ")[2]
            a = canon.get(dst)
            if a is None:
                a = canon[dst] = _canon(_ends(x.tuple)[1][0])
            if a not in found[hx] or _ttl_rose(fl, x.point, y.point):
                continue
            forwarded[hx][a] = forwarded[hx].get(a, 0) + 1
    return forwarded


def _addr_key(a: str) -> tuple[int, int | str]:
    try:
        ip = ipaddress.ip_address(a)
        return (ip.version, int(ip))
    except ValueError:
        return (9, a)


def localize(
    verdict: Verdict,
    hosts: Mapping[str, Iterable[str]] | None = None,
    target: str | None = None,
) -> Verdict:
    """`verdict` with the capture hosts' own traffic trimmed and set apart (see the
    module's doc), target flows first, flows renumbered in that order."""
    addrs = infer_addresses(verdict, hosts or {}, target)
    local = {h.host: set(h.addresses) for h in addrs}
    p = _Path.of(verdict.points)
    tgt = _Target(target)
    at = _Around.of(p, local)
    plain = tgt.addr is None and not any(local.values())  # no address to look for
    flows: list[Flow] = []
    for fl in verdict.flows:
        if plain and _as_is(fl):
            flows.append(fl)
            continue
        flows += (_one(x, p, local, tgt, at) for x in _split_misjoined(fl, p, local, tgt))
    # the path's flows first, the target's first among them, then broken ones, then any
    # with findings; by time (the keys made in one pass, not by a call for each flow)
    keys = [(not f.path, not f.target, not any_broken(f.findings), not f.findings,
             f.first_ts or 0.0) for f in flows]  # fmt: skip
    order = sorted(range(len(flows)), key=keys.__getitem__)
    flows = [flows[k] for k in order]
    ids = flow_ids(len(flows))
    if list(map(_ID, flows)) != ids:  # (numbered as they stand: `assemble` does)
        flows = [f if f.id == fid else _with(f, id=fid) for f, fid in zip(flows, ids, strict=True)]
    return replace(verdict, flows=tuple(flows), hosts=addrs, target=target)


def _as_is(fl: Flow) -> bool:
    """With no host's address known and no target: whether the flow stays as it is
    without a look at its addresses (what `_split_misjoined` and `_one` would do): it
    went through several points (not seen at one only) and is not a connection between
    two capture hosts themselves (that takes TTL rewrites: looked for first, in a loop
    here, as this runs for each of tens of thousands of flows)."""
    legs = fl.legs
    if fl.target or not legs or legs[0].point == legs[-1].point:
        return False
    if len(legs) != 2:
        return True
    for f in fl.findings:
        if f.field == "ip.ttl":
            return _between_hosts(fl, legs[0].point, legs[1].point) is None
    return True


@dataclass
class _Around:
    """Per host of the path (by its index): the addresses of the hosts before it and of
    those after it."""

    index: dict[str, int]  # host -> its index in the path's hosts
    up: list[set[str]]
    down: list[set[str]]

    @staticmethod
    def of(p: _Path, local: Mapping[str, set[str]]) -> _Around:
        n = len(p.hosts)
        up = [set().union(*(local.get(h, set()) for h in p.hosts[:i])) for i in range(n)]
        down = [set().union(*(local.get(h, set()) for h in p.hosts[i + 1 :])) for i in range(n)]
        return _Around({h: i for i, h in enumerate(p.hosts)}, up, down)


_NONE: frozenset[str] = frozenset()


def _with(fl: Flow, **changes: object) -> Flow:
    """`dataclasses.replace` of a flow without its introspection per call (two per flow of
    a verdict of tens of thousands)."""
    new = object.__new__(Flow)
    for name in _FLOW_FIELDS:
        _set(new, name, changes[name] if name in changes else getattr(fl, name))
    return new


_FLOW_FIELDS = tuple(f.name for f in dataclasses.fields(Flow))
_ID = operator.attrgetter("id")
_set = object.__setattr__


def _split_misjoined(fl: Flow, p: _Path, local: Mapping[str, set[str]], tgt: _Target) -> list[Flow]:
    """A connection that entered the path at a host, addressed to the host itself, "NAT'd"
    to a connection downstream with another source address, source port and destination
    port: two connections (scanners send the same SYN to many hosts: ISN, IP ID, no
    options), not one. Split, each with its own findings."""
    if len(fl.legs) < 2 or not p.hosts:
        return [fl]
    x, y = fl.legs[0], fl.legs[1]
    hx, hy = p.host_of.get(x.point), p.host_of.get(y.point)
    if hx is None or hy is None or hx == hy or hx == p.hosts[0] or y.link != "nat":
        return [fl]
    mine = local.get(hx)
    if not mine:
        return [fl]
    (sxa, sxp), (dxa, dxp) = _ends(x.tuple)
    (sya, syp), (_dya, dyp) = _ends(y.tuple)
    if (
        _canon(dxa) not in mine
        or _canon(sxa) in mine
        or tgt.hit(_canon(dxa), dxp)
        or _canon(sxa) == _canon(sya)
        or sxp == syp
        or dxp == dyp
    ):
        return [fl]
    ix = p.order.get(x.point, 0)

    def side(f: Finding) -> int:
        idx = [p.index(n) for n in f.between]
        if all(i is not None and i <= ix for i in idx):
            return 0
        if all(i is not None and i > ix for i in idx) or f.between[0] == f.between[1]:
            return 1
        return -1  # between the two: an artefact of the wrong link

    a = [f for f in fl.findings if side(f) == 0]
    b = [f for f in fl.findings if side(f) == 1]
    first = replace(fl, legs=(x,), findings=tuple(a))
    rest = fl.legs[1:]
    c_ep, _, s_ep = y.tuple.partition(" > ")
    second = replace(
        fl,
        client=c_ep,
        server=s_ep,
        legs=(replace(rest[0], link="same"), *rest[1:]),
        findings=tuple(b),
    )
    return [first, second]


def _one(fl: Flow, p: _Path, local: Mapping[str, set[str]], tgt: _Target, at: _Around) -> Flow:
    if not fl.legs:
        return fl
    is_target = tgt.of_flow(fl) if tgt.addr is not None else False
    first, last = fl.legs[0], fl.legs[-1]
    h0, h1 = p.host_of.get(first.point), p.host_of.get(last.point)
    if h0 is None or h1 is None:
        return fl if fl.target == is_target else _with(fl, target=is_target)
    hi0 = at.index.get(h0, 0)
    hi1 = at.index.get(h1, 0)
    upstream = at.up[hi0] if hi0 < len(at.up) else set()
    downstream = at.down[hi1] if hi1 < len(at.down) else set()
    mine0, mine1 = local.get(h0, _NONE), local.get(h1, _NONE)
    if tgt.addr is not None or mine0 or mine1 or upstream:
        (sa, _sp), _d = _ends(first.tuple)
        _s, (da, dp) = _ends(last.tuple)
        src, dst = _canon(sa), _canon(da)
    else:  # no address to compare them with: neither is read
        src = dst = dp = ""
    to_target = tgt.hit(dst, dp)
    ends = dst in mine1 and not to_target
    starts = src in mine0
    single = all(leg.point == first.point for leg in fl.legs)

    why: str | None = None
    ttls = _between_hosts(fl, first.point, last.point) if h0 != h1 and not is_target else None
    if ttls is not None:
        why = (
            f"a connection between {h0} and {h1} themselves (each side's packets left its own "
            f"host at its point: TTL {ttls[0]} there, {ttls[1]} at the other), not along the path"
        )
    elif single and not is_target and len(p.order) > 1:
        if ends:
            why = f"addressed to {h1} itself ({dst})"
        elif starts and hi0 > 0 and dst not in downstream:
            why = f"sent by {h0} itself ({src}), not toward the rest of the path"
        elif (
            hi0 > 0
            and hi0 == len(p.hosts) - 1
            and src not in upstream
            # (not when the capture before it had ended: `findings._Chain.entered_unseen`)
            and not any(f.kind == "gap" and f.between[1] == first.point for f in fl.findings)
        ):
            why = f"entered the path at {h0} (never crossed the points before it)"
        elif hi0 > 0 and not fl.broken and not any(f.kind == "gap" for f in fl.findings):
            # (the first host's flows are the path's traffic, wherever they went)
            why = f"seen at {first.point} only, answered there"
    if why is not None:
        seen = _seen(fl)
        return replace(
            fl,
            findings=(),
            summary=f"local to {h0}: {why}" + (f"; {seen}" if seen else ""),
            path=False,
            local_to=h0,
            target=is_target,
        )

    if not ends and not starts:  # nothing to trim
        return fl if fl.target == is_target else _with(fl, target=is_target)
    if starts and not ends and h1 == h0:
        got = _client_host(fl, h1, last.point)
        if got is not None:
            return replace(fl, findings=tuple(got), summary=_summary(fl, got, p, None),
                           target=is_target)  # fmt: skip
    findings = list(fl.findings)
    # addressed to a host: nothing expected after the point where it was last seen (not
    # even the host's own other interfaces); sent by one: nothing before its first point
    beyond = p.order.get(last.point, 10**9)
    before = p.order.get(first.point, -1)
    changed = False
    if ends or (starts and dst not in downstream and not to_target and hi0 > 0 and single):
        kept: list[Finding] = []
        refused: list[Finding] = []
        own = {last.point, h1}  # the host's own stack, reached through its point
        for f in findings:
            if (
                f.kind in ("drop", "inject", "gap")
                and _touches(f, p, lambda i: i > beyond)
                and not (ends and set(f.between) == own)
            ):
                if f.kind == "inject" and f.direction == "s2c" and "RST" in f.what.split(" ")[0]:
                    refused.append(f)
                changed = True
                continue
            kept.append(f)
        findings = kept
        if refused and last.link != "proxied" and ends:
            f = refused[0]
            findings.append(
                Finding(
                    "reset",
                    "s2c",
                    (h1, last.point),
                    sum(x.packets for x in refused),
                    sum(x.bytes for x in refused),
                    f.first_ts,
                    f"{h1} answered with RST (the connection was addressed to {h1} itself, "
                    f"{dst}): {f.what}",
                    last_ts=last_of(refused, f.first_ts),
                )
            )
    if starts and hi0 > 0:
        n = len(findings)
        findings = [
            f
            for f in findings
            if not (f.kind in ("drop", "inject", "gap") and _touches(f, p, lambda i: i < before))
        ]
        changed = changed or len(findings) != n
    if not changed:
        return fl if fl.target == is_target else _with(fl, target=is_target)
    return replace(
        fl,
        findings=tuple(findings),
        summary=_summary(fl, findings, p, h1 if ends else None),
        target=is_target,
    )


def _client_host(fl: Flow, host: str, point: str) -> list[Finding] | None:
    """The findings of a flow that `host` sent (its client address is the host's) and
    that ends at the host's point `point`, as the server's beyond that point, not the
    host's: a flow seen on one of a host's interfaces only is taken to end at the host
    (`summary.end_host`), which for the host's own connections out of that interface (a
    proxy's health checks of a backend that is down, its own curl) is the other end. A
    RST is the server's; a request never answered was never answered by the server; data
    never acknowledged before it came again was lost somewhere beyond the point (not told,
    as at any point a flow went through). None: nothing names the host so."""
    out: list[Finding] = []
    changed = False
    for f in fl.findings:
        if f.kind == "reset" and f.between == (host, point):
            what = f.what.replace(f"{host} answered with RST", "server answered with RST", 1)
            out.append(replace(f, between=("server", point), what=what))
            changed = True
        elif f.kind in ("drop", "gap") and f.between == (point, host):
            changed = True
            if f.unanswered:
                what = f.what.replace(f"never answered by {host}", "never answered by server", 1)
                out.append(replace(f, between=(point, "server"), what=what))
        else:
            out.append(f)
    return out if changed else None


_INITIAL_TTLS = (32, 64, 128, 255)  # (as `flows.INITIAL_TTLS`)


def _between_hosts(fl: Flow, a: str, b: str) -> tuple[int, int] | None:
    """(initial, received) TTL when the flow's two legs, at points `a` and `b`, are the
    ends of one connection between their hosts: each direction's packets carry an initial
    TTL at one point and fewer at the other, the way they travelled; read along the path
    (c2s from `a` to `b`) the TTL "rose" in both directions. (A connection without its SYN
    in the captures, whose side with the ephemeral port is the downstream host.) A device
    that raised the TTL would leave the sender's initial TTL on the lower side."""
    if len(fl.legs) != 2:
        return None
    rose = {}
    for f in fl.findings:
        if f.field != "ip.ttl" or f.kind != "rewrite":
            continue
        x, y = f.before, f.after
        if not (isinstance(x, int) and isinstance(y, int)) or not x < y:
            return None
        if y not in _INITIAL_TTLS or x in _INITIAL_TTLS:
            return None
        want = (a, b) if f.direction == "c2s" else (b, a)
        if f.between != want:
            return None
        rose[f.direction] = (y, x)
    if "c2s" not in rose or "s2c" not in rose:
        return None
    return rose["c2s"]


def _touches(f: Finding, p: _Path, side: object) -> bool:
    pred = side  # a predicate on path indices
    assert callable(pred)
    for name in f.between:
        i = p.index(name)
        if i is not None and pred(i):
            return True
    return False


def _seen(fl: Flow) -> str:
    """What the set-apart findings said, in a few words."""
    fs = [f for f in fl.findings if f.kind in BROKEN_KINDS]
    if any(f.kind in ("inject", "reset") and "RST" in f.what for f in fs):
        return "refused with RST"
    if any(f.kind == "icmp" for f in fs):
        return "answered with an ICMP error"
    if any(f.kind == "drop" for f in fs):
        return "never answered"
    return ""


def _summary(fl: Flow, findings: list[Finding], p: _Path, ended_at: str | None) -> str:
    order = {"drop": 0, "inject": 1, "rewrite": 2, "icmp": 3, "reset": 4, "gap": 5}
    fs = sorted(findings, key=lambda f: order.get(f.kind, 9))
    for f in fs:
        if f.kind == "drop" and f.unanswered:  # a request that reached its server
            word = f.packet or kind_word(f.what)
            return f"{word} reached {f.between[0]} but {f.between[1]} never answered it" + more(fs)
        # the finding's own packet kind (findings made from a datagram's or an ICMP
        # error's text have none: their first word then)
        line = sentence(f, f.packet or kind_word(f.what), _where(p, *f.between), fs)
        if line:
            return line
    for f in fs:
        if f.kind == "gap":
            return f"incomplete evidence {_where(p, *f.between)}: {f.what}"
    path = " -> ".join(dict.fromkeys(leg.point for leg in fl.legs))
    if ended_at is not None:
        return f"OK: through {path}, to {ended_at} itself (addressed to one of its addresses)"
    return f"OK: through {path}"


def _where(p: _Path, a: str, b: str) -> str:
    ha, hb = p.host_of.get(a), p.host_of.get(b)
    if ha is not None and ha == hb and a != b:
        return f"inside {ha}"
    if b not in p.order:
        return f"by {b} itself"
    return f"between {a} and {b}"


def kind_word(what: str) -> str:
    """What a finding's packets were, from its `what` ("SYN", "RST", "data", ...; a
    datagram's as `dgram.kind_word` names it: "echo reply", "DNS query", "UDP datagram")."""
    words = what.split(" ")
    w = words[0]
    if w == "ICMP" and len(words) > 2 and words[1] == "echo":
        return f"echo {words[2]}"
    if w == "ESP" and len(words) > 1 and words[1].startswith("spi="):
        return "ESP packet"
    if w == "UDP" and len(words) > 1 and words[1].startswith("len="):
        dns = what.partition(" (DNS ")[2]
        return " ".join(["DNS", *dns.split(" ")[:1]]).rstrip(")") if dns else "UDP datagram"
    if w.startswith("SYN") and "ACK" in w:
        return "SYN-ACK"
    for k in ("SYN", "RST", "FIN"):
        if k in w.split(","):
            return k
    if " len=" in what:
        return "data"
    return "ACK"


__all__ = ["infer_addresses", "kind_word", "localize", "more", "norm_addr"]
