"""Who answered, refused or lost what beyond the last capture point: the server's host
when the conversation ends at one of its interfaces, "server" when it left a transit
host (a firewall's two interfaces) by its outside one. A RST that came in through a
firewall's outside interface is the server's, not the firewall's; data the server
acknowledged only when it came again is a finding at the server's own interface and
nothing at a firewall's; an ICMP error that came in through the outside interface was
generated beyond it, and answered the request it quotes. The per-flow and the columns'
paths agree on all of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict
from tests.correlate.pcapgen import (
    C2S,
    S2C,
    Conv,
    UConv,
    View,
    dns_query,
    render,
    render_dgrams,
    write,
)
from tests.correlate.test_findings_columns import _check, _prepared

T0 = 1_763_790_000.0
SERVER = ("203.0.113.80", 80)
PUBLIC = "198.51.100.1"


def _pair(out: Path) -> tuple[Path, Path]:
    """Two points of a masquerading hop; flows (by client port): 30000 a segment that
    passed both points and was acknowledged only when it came again, 30001 a SYN answered
    by RST|ACK, 30002 a SYN never answered, 30003 a common exchange two seconds later (the
    captures go on after the SYN); 40000 a DNS query never answered, 40001 one answered."""
    convs: list[Conv] = []

    def conv(i: int, t0: float | None = None) -> Conv:
        c = Conv(client=(f"198.18.7.{1 + i}", 30000 + i), server=SERVER,
                 t0=T0 + i * 0.05 if t0 is None else t0, seed=1000 + i)  # fmt: skip
        convs.append(c)
        return c

    c = conv(0)
    c.handshake()
    c.retransmit(c.seg(C2S, "PA", b"q" * 600))
    c.seg(S2C, "A", dt=c.rtt / 2)
    c.close()
    c = conv(1)
    c.seg(C2S, "S", mss=1460)
    c.seg(S2C, "RA", dt=0.001)
    conv(2).seg(C2S, "S", mss=1460)
    c = conv(3, T0 + 2)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\n\r\n")
    c.response(b"x" * 3000)
    c.close()
    dns = [UConv((f"198.18.8.{1 + i}", 40000 + i), ("203.0.113.53", 53), seed=i, t0=T0 + i)
           for i in range(2)]  # fmt: skip
    dns[0].send(C2S, dns_query(7, "lost.example"))
    dns[1].send(C2S, dns_query(8, "ok.example"))
    dns[1].send(S2C, dns_query(8, "ok.example")[:2] + b"\x81\x80" + b"\x00" * 8)
    dns[1].send(C2S, dns_query(9, "ok.example"), dt=3.0)  # the captures go on after them
    dns[1].send(S2C, dns_query(9, "ok.example")[:2] + b"\x81\x80" + b"\x00" * 8)
    a = write(out / "a.pcap", render(convs, View()) + render_dgrams(dns, View()))
    pkts: list[tuple[float, Any]] = []
    for i, cv in enumerate(convs):
        nat = {C2S: (PUBLIC, 2000 + i, *SERVER), S2C: (*SERVER, PUBLIC, 2000 + i)}
        pkts += render([cv], View(nat=nat, delay=0.0003))
    for i, u in enumerate(dns):
        nat = {C2S: (PUBLIC, 3000 + i, *u.server), S2C: (*u.server, PUBLIC, 3000 + i)}
        pkts += render_dgrams([u], View(nat=nat, delay=0.0003))
    return a, write(out / "b.pcap", sorted(pkts, key=lambda x: x[0]))


def _by_port(v: Verdict) -> dict[int, Any]:
    return {int(f.client.rsplit(":", 1)[1]): f for f in v.flows}


def _kinds(f: Any) -> list[tuple[str, str, tuple[str, str]]]:
    return [(x.kind, x.direction, x.between) for x in f.findings]


def test_beyond_a_firewalls_outside_interface_is_the_server(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    v = correlate([PointInput("fw:in", str(a)), PointInput("fw:out", str(b))])
    f = _by_port(v)
    # the segment left fw by fw:out: what became of it beyond is not fw's, and the
    # server acknowledged it in the end
    assert f[30000].findings == ()
    assert _kinds(f[30001]) == [("reset", "s2c", ("server", "fw:out"))]
    assert f[30001].summary == "server reset the connection (RST seen on fw:out)"
    assert _kinds(f[30002]) == [("drop", "c2s", ("fw:out", "server"))]
    assert f[30002].summary == "SYN reached fw:out but server never answered it"
    assert f[30003].findings == ()
    (x,) = f[40000].findings
    assert (x.kind, x.between) == ("drop", ("fw:out", "server"))
    assert x.what.endswith("reached fw:out, never answered by server"), x.what
    assert f[40001].findings == ()


def test_a_servers_own_interface_is_the_server_host(tmp_path: Path) -> None:
    a, b = _pair(tmp_path)
    v = correlate([PointInput("cli:eth0", str(a)), PointInput("srv:eth0", str(b))])
    f = _by_port(v)
    # reached srv:eth0, never acknowledged by srv before it came again: srv's own loss
    assert _kinds(f[30000]) == [("drop", "c2s", ("srv:eth0", "srv"))]
    assert _kinds(f[30001]) == [("reset", "s2c", ("srv", "srv:eth0"))]
    assert f[30001].summary == "srv reset the connection (RST seen on srv:eth0)"
    assert _kinds(f[30002]) == [("drop", "c2s", ("srv:eth0", "srv"))]
    (x,) = f[40000].findings
    assert x.what.endswith("reached srv:eth0, never answered by srv"), x.what


@pytest.mark.parametrize("names", [("fw:in", "fw:out"), ("cli:eth0", "srv:eth0"), ("a", "b")])
def test_the_columns_path_agrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: tuple[str, str]
) -> None:
    """Also where the columns' path must leave a flow to the per-flow one: data a server's
    own interface saw it never acknowledged (it judged none of that before)."""
    a, b = _pair(tmp_path)
    prep = _prepared([PointInput(names[0], str(a)), PointInput(names[1], str(b))])
    n, slow = _check(prep, monkeypatch)
    assert n == 4 and slow < n


def _unreachable_pair(out: Path) -> tuple[Path, Path]:
    """A DNS query through the masquerading hop that a router beyond the outside point
    (192.0.2.9) answers with ICMP host unreachable; and one answered."""
    from pcapgen import icmp_error

    lost = UConv(("198.18.7.1", 40000), ("203.0.113.53", 53), t0=T0)
    lost.send(C2S, dns_query(7, "x.example"))
    ok = UConv(("198.18.7.2", 40001), ("203.0.113.53", 53), t0=T0 + 2)
    ok.send(C2S, dns_query(8, "y.example"))
    ok.send(S2C, dns_query(8, "y.example")[:2] + b"\x81\x80" + b"\x00" * 8)
    at_a = render_dgrams([lost, ok], View())
    at_b: list[tuple[float, Any]] = []
    for i, u in enumerate((lost, ok)):
        nat = {C2S: (PUBLIC, 3000 + i, *u.server), S2C: (*u.server, PUBLIC, 3000 + i)}
        at_b += render_dgrams([u], View(nat=nat, delay=0.0003))
    q_b = next(p for _t, p in at_b if p.haslayer("UDP") and p["UDP"].sport == 3000)
    q_a = next(p for _t, p in at_a if p.haslayer("UDP") and p["UDP"].sport == 40000)
    at_b.append(icmp_error(T0 + 0.002, "192.0.2.9", PUBLIC, q_b, code=1))
    at_a.append(icmp_error(T0 + 0.0023, "192.0.2.9", "198.18.7.1", q_a, code=1))
    return (
        write(out / "a.pcap", sorted(at_a, key=lambda x: x[0])),
        write(out / "b.pcap", sorted(at_b, key=lambda x: x[0])),
    )


@pytest.mark.parametrize("names", [("fw:in", "fw:out"), ("a", "b")])
def test_an_icmp_error_from_beyond_a_firewall_is_not_the_firewalls(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    """The error came in through the outside point: generated beyond it (it was
    "generated by fw"), and the query it answers is not one never answered (it was also
    "never answered by server")."""
    a, b = _unreachable_pair(tmp_path)
    v = correlate([PointInput(names[0], str(a)), PointInput(names[1], str(b))])
    f = _by_port(v)
    (x,) = f[40000].findings
    assert (x.kind, x.direction, x.between) == ("icmp", "s2c", (names[1], names[0]))
    assert x.what.startswith("ICMP host unreachable from 192.0.2.9 about a 55-byte UDP packet")
    assert x.what.endswith(f": generated beyond {names[1]}, last seen at {names[0]}"), x.what
    assert f[40000].summary == x.what
    assert f[40001].findings == ()
