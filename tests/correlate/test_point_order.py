"""Points given in the wrong order (`fw:out` before `fw:in`): the TTL rises across the pair
in both directions, which no path in that order does; the verdict says the order looks
reversed (and which order fits) instead of reporting a TTL rewrite that cannot be one. A
TTL that a device really rewrites (one direction, or far beyond a few hops) stays one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import all_findings, http_conv, only, points
from test_slices import _same

from hopcap.correlate import correlate

T0 = 1_763_790_000.0


def _convs(n: int = 3) -> list[Conv]:
    return [http_conv(44000 + i, seed=300 + i, t0=T0 + i * 0.05) for i in range(n)]


def test_two_interfaces_of_a_host_given_the_wrong_way_round(tmp_path: Path) -> None:
    convs = _convs()
    inside = ("fw:in", lambda c: View(ttl_dec={S2C: 1}))
    outside = ("fw:out", lambda c: View(delay=0.0001, ttl_dec={C2S: 1}))
    right = correlate(points(tmp_path, convs, [inside, outside]))
    assert all_findings(right) == [] and not right.warnings
    pts = points(tmp_path, convs, [outside, inside])
    v = correlate(pts)
    assert _same(pts, (10, 30)) == v.to_dict()  # (by time slices: the same)
    assert not only(v, "rewrite"), [(f.field, f.before, f.after) for f in all_findings(v)]
    assert all(fl.summary.startswith("OK: delivered both ways through fw:out -> fw:in")
               for fl in v.flows)  # fmt: skip
    [w, fits] = v.warnings
    assert w.startswith("points fw:out and fw:in look given in the wrong order: the TTL")
    assert "connections rises from fw:out to fw:in in both directions" in w
    assert fits == "the order of points that fits the TTLs: fw:in, fw:out"


def test_two_routers_swapped_among_four_points(tmp_path: Path) -> None:
    """c -> x -> y -> s with a router before each of x, y and s, given as c, y, x, s: only
    the pair y, x is said to be reversed."""
    convs = _convs()

    def at(k: int, delay: float) -> tuple[str, object]:
        return ({0: "c", 1: "x", 2: "y", 3: "s"}[k],
                lambda c: View(delay=delay, ttl_dec={C2S: k, S2C: 3 - k}))  # fmt: skip

    v = correlate(points(tmp_path, convs, [at(0, 0.0), at(2, 0.002), at(1, 0.001), at(3, 0.003)]))  # type: ignore[list-item]
    assert not only(v, "rewrite")
    assert v.warnings[0].startswith("points y and x look given in the wrong order")
    assert "(by 1 client to server, by 1 server to client)" in v.warnings[0]
    assert v.warnings[-1] == "the order of points that fits the TTLs: c, x, y, s"
    assert len(v.warnings) == 2


def test_a_ttl_really_rewritten_stays_a_rewrite(tmp_path: Path) -> None:
    """A device that sets the TTL of everything it forwards to 255 (both ways), and one
    that raises it by one in one direction only: rewrites, not points in the wrong order."""
    convs = _convs()

    def to_255(d: str) -> Callable[[Seg], Seg]:
        def change(s: Seg) -> Seg:
            if s.d == d:
                s.ttl = 255
            return s

        return change

    v = correlate(points(tmp_path, convs, [
        ("fw:in", lambda c: View(change=to_255(S2C))),
        ("fw:out", lambda c: View(delay=0.0001, change=to_255(C2S))),
    ]))  # fmt: skip
    got = {(f.field, f.direction, f.before, f.after) for f in only(v, "rewrite")}
    assert got == {("ip.ttl", "c2s", 64, 255), ("ip.ttl", "s2c", 64, 255)}, got
    assert not v.warnings

    def up_one(s: Seg) -> Seg:
        if s.d == C2S:
            s.ttl += 1
        return s

    v = correlate(points(tmp_path, convs, [
        ("fw:in", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:out", lambda c: View(delay=0.0001, change=up_one)),
    ]))  # fmt: skip
    got = {(f.field, f.direction, f.before, f.after) for f in only(v, "rewrite")}
    assert got == {("ip.ttl", "c2s", 64, 65)}, got
    assert not v.warnings


def test_a_connection_opened_from_the_far_side_is_not_a_ttl_rewrite(tmp_path: Path) -> None:
    """Points in the right order, three connections opened from the client's side and one
    from the server's (its SYN crossed fw:out first: the TTLs rise from fw:in to fw:out
    both ways in it): no TTL rewrite in any, and the order is not said to be reversed."""
    convs = _convs()
    back = http_conv(44100, seed=333, t0=T0 + 0.2)  # (its `client` sits beyond fw:out)
    views = {id(back): (View(ttl_dec={C2S: 1}), View(delay=-0.0001, ttl_dec={S2C: 1}))}
    v = correlate(points(tmp_path, [*convs, back], [
        ("fw:in", lambda c: views.get(id(c), (View(ttl_dec={S2C: 1}),))[0]),
        ("fw:out", lambda c: views[id(c)][1] if id(c) in views
         else View(delay=0.0001, ttl_dec={C2S: 1})),
    ]))  # fmt: skip
    assert all_findings(v) == [], [(f.field, f.before, f.after) for f in all_findings(v)]
    assert not v.warnings
