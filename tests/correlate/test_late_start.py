"""A capture that began seconds after the other saw a connection's handshake (a tcpdump
started late by hand, a host whose capture came up late): the connection's packets are
matched from where both points saw it, not from each point's first packets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pcapgen import Conv, Seg, View
from test_path import nat_map, points
from test_slices import keepalive

from hopcap.correlate import _fastwalk, correlate
from hopcap.model import PointInput, Verdict

T0 = 1_763_790_000.0


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
@pytest.mark.parametrize("given", [True, False], ids=["start-given", "files-only"])
@pytest.mark.parametrize("nat", [False, True], ids=["same", "nat"])
def test_a_keepalive_connection_whose_handshake_one_capture_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool, given: bool, nat: bool
) -> None:
    """The same request and response every 0.5 s on one connection; fw:eth1's capture
    began 5 s after fw:eth0's (ten rounds later). Its first packets' identities are at
    fw:eth0 only far beyond fw:eth0's own first packets: the sequence offset was learned
    from payloads, which paired one round with another alike, and every later packet read
    as a tcp.ack / tcp.seq rewrite inside fw (44 + 127 packets). Through a NAT the two
    halves shared no fingerprint of their first packets either: linked by payload, as
    two connections either side of an L7 proxy ('proxied')."""
    monkeypatch.setattr(_fastwalk, "disabled", not compiled)
    c = keepalive(("203.0.113.10", 41000), 90, T0 + 0.1, 30, 0.5)
    pts = points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(
            delay=0.0001, drop=lambda s: s.t < T0 + 5, nat=nat_map(x) if nat else {})),
    ])  # fmt: skip
    if given:
        pts = [
            dataclasses.replace(pts[0], start_ts=T0),
            dataclasses.replace(pts[1], start_ts=T0 + 5),
        ]
    v = correlate(pts)
    [fl] = v.flows
    assert [leg.link for leg in fl.legs] == ["same", "nat" if nat else "same"]
    kinds = {f.kind for f in fl.findings}
    assert kinds == {"gap"}, [(f.kind, f.what[:80]) for f in fl.findings]
    assert all(f.between == ("fw:eth0", "fw:eth1") or f.between == ("fw:eth1", "fw:eth0")
               for f in fl.findings)  # fmt: skip


def _pool(lost: bool = True) -> tuple[list[Conv], list[Seg]]:
    """Three keep-alive connections (a request and its response every 0.5 s from
    T0 + 0.1 s on, a DB pool's or keep-alive HTTP's) and one opened with its SYN at
    T0 + 2 s; the first copy of one request of the first long one (round 10) and of the
    new one (round 4) lost on the way (`lost`; sent again 0.2 s later)."""
    longs = [keepalive(("203.0.113.10", 41000 + j), 90 + j, T0 + 0.1 + 0.05 * j, 30, 0.5,
                       (10,) if j == 0 and lost else ()) for j in range(3)]  # fmt: skip
    new = keepalive(("203.0.113.10", 42000), 77, T0 + 2.0, 10, 0.5, (4,) if lost else ())
    gone = [[s for s in c.segs if s.tag == "req"][r] for c, r in ((longs[0], 10), (new, 4))]
    return [*longs, new], gone if lost else []


def _from(start: float, gone: list[Seg], **kw: Any) -> Callable[[Conv], View]:
    """A point whose capture began at T0 + `start` (the path before it lost `gone`)."""
    return lambda c: View(drop=lambda s: s.t < T0 + start or any(s is g for g in gone), **kw)


def _mid_verdicts(pts: list[PointInput]) -> Verdict:
    """The verdict of `pts`, asserted the same by time slices and in two processes."""
    one = correlate(pts)
    d = one.to_dict()
    said: list[str] = []
    assert correlate(pts, slice_packets=60, progress=said.append).to_dict() == d
    assert len([s for s in said if s.endswith("findings")]) >= 2, said  # (really sliced)
    assert correlate(pts, slice_packets=60, jobs=2).to_dict() == d
    assert correlate(pts, jobs=2, min_packets_per_job=0).to_dict() == d
    return one


def _judged(v: Verdict, late: str) -> None:
    """Only the two lost requests are drops; what crossed before `late`'s capture began
    are gaps that say so; no injection."""
    drops = [(fl.client, f.direction, f.packets, f.packet, "len=87 " in f.what)
             for fl in v.flows for f in fl.findings if f.kind == "drop"]  # fmt: skip
    assert sorted(drops) == [
        ("203.0.113.10:41000", "c2s", 1, "data", True),
        ("203.0.113.10:42000", "c2s", 1, "data", True),
    ], [f.what for fl in v.flows for f in fl.findings]
    every = [f for fl in v.flows for f in fl.findings]
    assert not [f for f in every if f.kind == "inject"], [f.what for f in every]
    said = f"the capture at {late} started after these packets"
    gaps = [f for f in every if f.kind == "gap" and said in f.what]
    assert {f.direction for f in gaps} == {"c2s", "s2c"}, [f.what for f in every]


@pytest.mark.parametrize("nat", [False, True], ids=["same", "nat"])
@pytest.mark.parametrize("late", ["a", "b"])
def test_two_bare_captures_begun_mid_connection(tmp_path: Path, nat: bool, late: str) -> None:
    """`tcpdump -w` by hand on hosts a and b, one 0.3 s after the other, both in the
    middle of long-lived connections, no start time known (bare files): what the first
    saw of them before the second began read as drops (one way) and injections (the
    other); they are gaps (that capture began after them: the connections' sequence
    numbers say the other saw earlier bytes, just before its first packet). The real
    drops, after both began, stay drops; a's and b's clocks are 2.5 s apart."""
    convs, gone = _pool()
    nat_of = {id(c): nat_map(c, sport=31000 + k) for k, c in enumerate(convs)}
    start = {"a": 1.0, "b": 1.0, late: 1.3}
    pts = points(tmp_path, convs, [
        ("a", _from(start["a"], [])),
        ("b", lambda c: _from(start["b"], gone, delay=0.0003, clock=2.5,
                              nat=nat_of[id(c)] if nat else {})(c)),
    ])  # fmt: skip
    v = _mid_verdicts(pts)
    assert [fl.legs[1].link for fl in v.flows] == ["nat" if nat else "same"] * 4
    _judged(v, late)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_three_bare_captures_the_middle_one_begun_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool
) -> None:
    """Three hosts' captures (a NAT between the last two), the middle one begun 0.3 s
    after the others, mid-connection: gaps at the middle point, not drops before it
    and injections after it."""
    monkeypatch.setattr(_fastwalk, "disabled", not compiled)
    convs, gone = _pool()
    nat_of = {id(c): nat_map(c, sport=31000 + k) for k, c in enumerate(convs)}
    pts = points(tmp_path, convs, [
        ("a", _from(1.0, [])),
        ("m", _from(1.3, [], delay=0.0002, clock=-1.5)),
        ("b", lambda c: _from(1.0, gone, delay=0.0004, clock=0.7, nat=nat_of[id(c)])(c)),
    ])  # fmt: skip
    v = _mid_verdicts(pts)
    _judged(v, "m")


def test_a_quiet_link_whose_first_packet_is_a_retransmission_keeps_its_drop(
    tmp_path: Path,
) -> None:
    """Both captures began together in the middle of a connection; nothing crossed to b
    before a request sent again (its first copy lost between a and b): b's first packet
    is those bytes again, not later ones, so b's capture is not taken to have begun
    there, and the first copy stays a drop."""
    c = keepalive(("203.0.113.10", 41000), 90, T0 + 0.1, 12, 0.5, (4,))
    first, again = [s for s in c.segs if s.data and s.seq == [x for x in c.segs
                    if x.tag == "req"][4].seq and s.d == "c2s"]  # fmt: skip
    pts = points(tmp_path, [c], [
        ("a", lambda x: View(drop=lambda s: s.t < first.t - 0.01)),
        ("b", lambda x: View(delay=0.0003, drop=lambda s: s.t < again.t)),
    ])  # fmt: skip
    v = _mid_verdicts(pts)
    drops = [f for fl in v.flows for f in fl.findings if f.kind == "drop"]
    assert [(f.direction, f.packets) for f in drops] == [("c2s", 1)], drops


def test_what_crossed_before_a_given_start_is_that_window_s_gap_sliced_or_not(
    tmp_path: Path,
) -> None:
    """Start times given (a bundle's manifest), the upstream capture (a) begun 0.3 s after
    the other: the server's responses b saw before it, which the client acknowledged,
    were a gap 'the capture at a lost them' unsliced and, merged with that window's gap
    of the same hop and direction, 'the capture at a started after these packets' by
    time slices (two verdicts). They are the window's gap either way: a was not
    capturing yet, it lost nothing."""
    convs, gone = _pool()
    pts = points(tmp_path, convs, [
        ("a", _from(1.3, [])),
        ("b", _from(1.0, gone, delay=0.0003)),
    ])  # fmt: skip
    pts = [dataclasses.replace(p, start_ts=T0 + s) for p, s in zip(pts, (1.3, 1.0), strict=True)]
    v = _mid_verdicts(pts)
    _judged(v, "a")
    assert not [f for fl in v.flows for f in fl.findings if "lost them" in f.what]
