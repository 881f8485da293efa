"""The cheaper ways the verdict is built hold the same answers as the plain ones: the model
types' quicker constructors, patterns grouped by plain values, and `localize` keeping the
flows it cannot change without a look at their addresses."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path

import pytest
from pcapgen import busy_firewall

from hopcap.correlate import correlate
from hopcap.correlate import local as L
from hopcap.correlate.local import localize
from hopcap.jsonout import dumps
from hopcap.model import Finding, Flow, Leg, PointInput, PointSummary, Verdict
from hopcap.patterns import find_patterns
from tests.correlate import noisy


def _fields(x: object) -> dict[str, object]:
    return {f.name: getattr(x, f.name) for f in dataclasses.fields(x)}  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [Leg, Finding, Flow])
def test_quick_constructors_are_the_dataclass_ones(cls: type) -> None:
    """Same parameters and defaults as the generated `__init__`, frozen, equal, hashable,
    picklable, every field in the instance's attributes."""
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        want = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert p.default == want
    plain = dataclasses.make_dataclass(  # the generated constructor, for comparison
        "Plain", [(f.name, object, dataclasses.field(default=f.default)) if
                  f.default is not dataclasses.MISSING else (f.name, object) for f in fields],
        frozen=True,
    )  # fmt: skip
    args = {f.name: f"v-{f.name}" for f in fields if f.default is dataclasses.MISSING}
    if cls is Finding:
        args.update(between=("a", "b"), packets=2, bytes=3, first_ts=1.5)
    x = cls(**args)
    assert _fields(x) == _fields(plain(**args))
    with pytest.raises(dataclasses.FrozenInstanceError):
        x.__setattr__(fields[0].name, "changed")
    assert x == cls(**args) and hash(x) == hash(cls(**args))
    assert pickle.loads(pickle.dumps(x)) == x
    assert _fields(pickle.loads(pickle.dumps(x))) == _fields(x)  # (all, compared or not)
    y = dataclasses.replace(x, **{fields[0].name: "other"})
    assert getattr(y, fields[0].name) == "other" and y != x
    assert type(x) is cls and type(y) is cls  # (made as a twin, then the class itself)
    sub = type("Sub", (cls,), {"__slots__": ()})  # a subclass is made the slower way
    z = sub(**args)
    assert type(z) is sub and _fields(z) == _fields(x)
    with pytest.raises(dataclasses.FrozenInstanceError):
        z.__setattr__(fields[0].name, "changed")


def test_finding_keeps_its_uncompared_fields() -> None:
    f = Finding("drop", "c2s", ("a", "b"), 1, 0, 1.0, "SYN seq=1", packet="SYN", unanswered=True)
    assert (f.packet, f.unanswered) == ("SYN", True)
    g = dataclasses.replace(f, what="SYN seq=2")
    assert (g.packet, g.unanswered) == ("SYN", True)


def _rw(fid: str, before: object, after: object) -> Flow:
    x = Finding("rewrite", "c2s", ("a", "b"), 1, 0, 1.0, "SYN seq=1", "f", before, after)
    legs = (Leg("a", "1.1.1.1:1 > 2.2.2.2:2", "same"), Leg("b", "1.1.1.1:1 > 2.2.2.2:2", "same"))
    return Flow(fid, "tcp", "1.1.1.1:1", "2.2.2.2:2", legs, (x,), "s", 1.0)


def test_patterns_group_values_by_their_repr() -> None:
    """1, True, 1.0, "1", 0.0 and -0.0 are six values (their reprs differ), a list is one
    by its repr, and equal values of one type are one."""
    values: list[object] = [1, True, 1.0, "1", 0.0, -0.0, [1, 2], None]
    flows = [_rw(f"f{i}{k}", v, 7) for i, v in enumerate(values) for k in range(2)]
    pts = (PointSummary("a", "a", "", 1), PointSummary("b", "b", "", 1))
    pats = find_patterns(Verdict(pts, tuple(flows)))
    got = sorted((repr(p.before), p.flows) for p in pats)
    assert got == sorted((repr(v), 2) for v in values)


def _plain_localize(v: Verdict, monkeypatch: pytest.MonkeyPatch) -> Verdict:
    with monkeypatch.context() as m:
        m.setattr(L, "_as_is", lambda fl: False)
        return localize(v)


def test_flows_kept_as_they_are_are_what_one_would_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every flow `_as_is` keeps (no address known, no target) is one `_split_misjoined`
    and `_one` would keep unchanged; on the noisy run's flows (one point, several, the
    link between two capture hosts, resets, ICMP) and hand-made ones (a TTL that "rose"
    both ways, three legs)."""
    files = noisy.write_run(tmp_path / "run", link=True, unreachables=True, refused=True)
    v = correlate([PointInput(name=p, pcap=files[p]) for p in ("client", "relay", "server")])
    ttl = (
        Finding("rewrite", "c2s", ("relay", "server"), 1, 0, 1.0, "x", "ip.ttl", 62, 64),
        Finding("rewrite", "s2c", ("server", "relay"), 1, 0, 1.0, "x", "ip.ttl", 62, 64),
    )
    tup = "1.1.1.1:1 > 2.2.2.2:2"
    legs = (Leg("relay", tup, "same"), Leg("server", tup, "same"))
    three = (Leg("client", tup, "same"), *legs)
    made = [Flow("h1", "tcp", "1.1.1.1:1", "2.2.2.2:2", legs, ttl, "s", 1.0),
            Flow("h2", "tcp", "1.1.1.1:1", "2.2.2.2:2", three, ttl, "s", 1.0),
            Flow("h3", "tcp", "1.1.1.1:1", "2.2.2.2:2", legs[:1], (), "s", 1.0)]  # fmt: skip
    p = L._Path.of(v.points)
    tgt = L._Target(None)
    at = L._Around.of(p, {})
    kept = 0
    for fl in (*v.flows, *made):
        if L._as_is(fl):
            kept += 1
            assert L._split_misjoined(fl, p, {}, tgt) == [fl]
            assert L._one(fl, p, {}, tgt, at) is fl
    assert not L._as_is(made[0]) and L._as_is(made[1]) and not L._as_is(made[2])
    assert kept >= 2
    # and the whole of localize, with no address known, as without the shortcut
    bare = Verdict(v.points, (*v.flows, *made))
    assert dumps(localize(bare).to_dict()) == dumps(_plain_localize(bare, monkeypatch).to_dict())


def test_localize_of_a_busy_firewall_as_without_the_shortcut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = busy_firewall(tmp_path, 80, loss=0.1, seed=4)
    v = correlate([PointInput("fw:eth0", str(a)), PointInput("fw:eth1", str(b))])
    raw = Verdict(v.points, v.flows)
    assert dumps(localize(raw).to_dict()) == dumps(_plain_localize(raw, monkeypatch).to_dict())


def test_localize_with_is_replace() -> None:
    """`local._with` (a flow with some fields changed, without `replace`'s introspection)
    gives what `dataclasses.replace` gives, every field, on the slotted `Flow`."""
    leg = Leg("a", "198.18.0.1:1 > 203.0.113.1:80", "same")
    fnd = Finding("drop", "c2s", ("a", "b"), 1, 10, 1.5, "ACK seq=1 len=10", packet="data")
    fl = Flow("f1", "tcp", "c", "s", (leg,), (fnd,), "sum", 2.5, True, None, False)
    for changes in ({"target": True}, {"id": "f9"}, {"id": "f2", "path": False, "local_to": "x"}):
        got, want = L._with(fl, **changes), dataclasses.replace(fl, **changes)
        assert type(got) is Flow and _fields(got) == _fields(want)
    assert _fields(L._with(fl)) == _fields(fl)


def test_a_built_flow_pickles_whole() -> None:
    """A built flow (`--jobs` pickles them back to the first process) comes back with
    every field of its legs and findings, those equality leaves out too."""
    from hopcap.correlate.findings import Built
    from hopcap.model import LegPart

    part = LegPart((1, 3), 4, ((0, 10), (20, 30)), ((0, 5), (9, 12)))
    legs = (Leg("a", "198.18.0.1:1 > 203.0.113.1:80", "same", ("x",), None, None, "gre"),
            Leg("b", "198.51.100.1:9 > 203.0.113.1:80", "nat", (), 8e-05, part))  # fmt: skip
    fs = (Finding("drop", "c2s", ("a", "b"), 1, 10, 1.5, "SYN seq=1", packet="SYN",
                  unanswered=True),
          Finding("rewrite", "s2c", ("b", "a"), 1, 0, 1.6, "SYN,ACK seq=2", "tcp.mss", 1460,
                  1360))  # fmt: skip
    for b in (Built("tcp", "c", "s", legs, fs, "sum", 1.5, (3, 1), None),
              Built("udp", "c", "s", (), (), "", None)):  # fmt: skip
        got = pickle.loads(pickle.dumps(b))
        assert type(got) is Built and got == b
        assert [_fields(x) for x in got.legs] == [_fields(x) for x in b.legs]
        assert [_fields(x) for x in got.findings] == [_fields(x) for x in b.findings]
        assert (got.tunnel_out, got.tunnel_in) == (b.tunnel_out, b.tunnel_in)
