"""A capture that began seconds after the other saw a connection's handshake (a tcpdump
started late by hand, a host whose capture came up late): the connection's packets are
matched from where both points saw it, not from each point's first packets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pcapgen import View
from test_path import nat_map, points
from test_slices import keepalive

from hopcap.correlate import _fastwalk, correlate

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
