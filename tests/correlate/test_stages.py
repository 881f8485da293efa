"""Stage captures of one device (PAN-OS packet-diag): receive -> firewall -> transmit, and
the drop stage as proof of a drop inside the device."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pcapgen import C2S, S2C, Conv, Seg, View, render, write

from hopcap.correlate import correlate
from hopcap.errors import CorrelationError
from hopcap.model import PointInput

NAT = {  # source NAT: what the server side of the device shows
    C2S: ("198.18.5.1", 40001, "198.51.100.80", 443),
    S2C: ("198.51.100.80", 443, "198.18.5.1", 40001),
}
NAT3 = {
    C2S: ("198.18.5.1", 40003, "198.51.100.80", 443),
    S2C: ("198.51.100.80", 443, "198.18.5.1", 40003),
}


def _convs() -> tuple[Conv, Conv, Conv]:
    ok = Conv(client=("192.0.2.10", 50000), server=("198.51.100.80", 443), seed=3)
    ok.handshake()
    ok.request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    ok.response(b"y" * 3000)
    ok.close()
    denied = Conv(client=("192.0.2.10", 50002), server=("198.51.100.80", 8443), seed=4)
    denied.t = ok.t + 0.5
    denied.handshake(answered=False, syn_retries=1)
    early = Conv(client=("192.0.2.10", 50003), server=("198.51.100.80", 443), seed=5)
    early.t = denied.t + 0.5
    early.handshake()
    early.request(b"GET /lost HTTP/1.1\r\n\r\n", resent=(0,))  # (lost once: `_write_stages`)
    return ok, denied, early


def _side(conv: Conv, d: str, nat: dict[str, tuple[str, int, str, int]] | None, dt: float,
          keep: Callable[[Seg], bool] = lambda s: True) -> list[tuple[float, object]]:  # fmt: skip
    """`conv`'s packets in direction `d` as one stage shows them (NAT form or not), `dt`
    after the receive stage: every packet, either way, passes the stages in one order."""
    view = View(nat=nat or {}, drop=lambda s: s.d != d or not keep(s))
    return [(t + dt, p) for t, p in render([conv], view)]


def _write_stages(tmp: Path) -> dict[str, Path]:
    ok, denied, early = _convs()
    lost = next(s for s in early.segs if s.tag == "req")  # gone between receive and firewall
    rx = (
        _side(ok, C2S, None, 0) + _side(ok, S2C, NAT, 0)
        + _side(denied, C2S, None, 0)
        + _side(early, C2S, None, 0) + _side(early, S2C, NAT3, 0)
    )  # fmt: skip
    fw = (
        _side(ok, C2S, None, 2e-5) + _side(ok, S2C, NAT, 2e-5)
        + _side(denied, C2S, None, 2e-5)
        + _side(early, C2S, None, 2e-5, lambda s: s is not lost) + _side(early, S2C, NAT3, 2e-5)
    )  # fmt: skip
    tx = (
        _side(ok, C2S, NAT, 4e-5) + _side(ok, S2C, None, 4e-5)
        + _side(early, C2S, NAT3, 4e-5, lambda s: s is not lost) + _side(early, S2C, None, 4e-5)
    )  # fmt: skip
    tx.sort(key=lambda x: x[0])
    tx[3], tx[4] = tx[4], tx[3]  # handed on out of order by the dataplane's threads
    drop = _side(denied, C2S, None, 3e-5)
    return {
        "receive": write(tmp / "rx.pcap", sorted(rx, key=lambda x: x[0])),
        "firewall": write(tmp / "fw.pcap", sorted(fw, key=lambda x: x[0])),
        "transmit": write(tmp / "tx.pcap", tx),
        "drop": write(tmp / "drop.pcap", drop),
    }


def _points(files: dict[str, Path], order: list[str]) -> list[PointInput]:
    return [PointInput(name=f"fw:{s}", pcap=files[s]) for s in order]


def test_stages_place_and_prove_drops_inside_the_device(tmp_path: Path) -> None:
    files = _write_stages(tmp_path)
    v = correlate(_points(files, ["receive", "firewall", "transmit", "drop"]))
    assert [p.name for p in v.points] == ["fw:client-side", "fw:server-side"]
    by_port = {f.client.rsplit(":", 1)[1]: f for f in v.flows}
    assert set(by_port) == {"50000", "50002", "50003"}
    ok, denied, early = by_port["50000"], by_port["50002"], by_port["50003"]
    # NAT between the stages, packets handed on out of order: no finding at all
    assert ok.findings == (), ok.findings
    assert [leg.link for leg in ok.legs] == ["same", "nat"]
    assert ok.legs[1].tuple == "198.18.5.1:40001 > 198.51.100.80:443"
    # a policy deny: seen by the firewall stage, in the drop stage, never transmitted
    [d] = [x for x in denied.findings if x.kind == "drop"]
    assert d.direction == "c2s" and d.between == ("fw:firewall", "fw:transmit")
    assert "2 packet(s) of it in fw:drop: dropped by fw itself" in d.what
    assert denied.summary.startswith("dropped by fw (proof: its drop stage)")
    # lost before the firewall stage ever saw it, and the drop stage has nothing of it
    drops = [x for x in early.findings if x.kind == "drop"]
    assert [(x.direction, x.between) for x in drops] == [("c2s", ("fw:receive", "fw:firewall"))]
    assert "drop stage" not in early.summary
    assert any("stage captures" in w for w in v.warnings)


def test_stages_are_put_in_processing_order(tmp_path: Path) -> None:
    files = _write_stages(tmp_path)
    a = correlate(_points(files, ["drop", "transmit", "receive", "firewall"]))
    b = correlate(_points(files, ["receive", "firewall", "transmit", "drop"]))
    assert a.to_dict() == b.to_dict()


def test_drop_stage_alone_is_an_error(tmp_path: Path) -> None:
    files = _write_stages(tmp_path)
    with pytest.raises(CorrelationError, match="need at least fw:receive and fw:transmit"):
        correlate([PointInput(name="client:eth0", pcap=files["receive"]),
                   PointInput(name="fw:drop", pcap=files["drop"])])  # fmt: skip


def test_udp_and_ping_pass_the_stages_too(tmp_path: Path) -> None:
    """Datagrams through the stages with source NAT: a DNS query answered, one denied by
    policy (firewall and drop stages saw it, transmit did not), one lost before the
    firewall stage, and a ping answered; the drops are placed between the stages and
    the policy deny proven by the drop stage, like TCP's."""
    from scapy.layers.inet import ICMP, IP, UDP

    cli, srv, nat = "192.0.2.10", "198.51.100.53", "198.18.5.1"
    t0 = 1_763_790_000.0

    def q(i: int, *, natted: bool, back: bool = False) -> Any:
        src, sport = (nat, 41000 + i) if natted else (cli, 51000 + i)
        query = b"\x00" + bytes([i]) + b"\x01\x00\x00\x01" + bytes(6) + b"\x01x\x00\x00\x01\x00\x01"
        if back:
            return IP(src=srv, dst=src, id=900 + i) / UDP(sport=53, dport=sport) / (query + b"ans")
        return IP(src=src, dst=srv, id=100 + i) / UDP(sport=sport, dport=53) / query

    def ping(natted: bool, back: bool = False) -> Any:
        a = nat if natted else cli
        if back:
            return IP(src=srv, dst=a, id=700) / ICMP(type=0, id=9, seq=1) / (b"p" * 32)
        return IP(src=a, dst=srv, id=600) / ICMP(type=8, id=9, seq=1) / (b"p" * 32)

    def stage(
        dt: float, *, natted_out: bool, keep: Callable[[int], bool]
    ) -> list[tuple[float, Any]]:
        """One stage's packets: received ones as they came in, the answers as they came
        back in (NAT form on the server side), `dt` after the receive stage."""
        out: list[tuple[float, Any]] = []
        for i in range(3):
            if keep(i):
                out.append((t0 + i * 0.1 + dt, q(i, natted=natted_out)))
            if i == 0:
                out.append((t0 + 0.05 + dt, q(0, natted=not natted_out, back=True)))
        out.append((t0 + 0.5 + dt, ping(natted_out)))
        out.append((t0 + 0.55 + dt, ping(not natted_out, back=True)))
        return sorted(out, key=lambda x: x[0])

    files = {
        "receive": write(tmp_path / "rx.pcap", stage(0, natted_out=False, keep=lambda i: True)),
        "firewall": write(
            tmp_path / "fw.pcap", stage(2e-5, natted_out=False, keep=lambda i: i != 2)
        ),
        "transmit": write(
            tmp_path / "tx.pcap", stage(4e-5, natted_out=True, keep=lambda i: i == 0)
        ),
        "drop": write(tmp_path / "drop.pcap", [(t0 + 0.1 + 3e-5, q(1, natted=False))]),
    }
    v = correlate(_points(files, ["receive", "firewall", "transmit", "drop"]))
    assert [p.name for p in v.points] == ["fw:client-side", "fw:server-side"]
    by_port = {f.client.rsplit(":", 1)[1]: f for f in v.flows}
    assert set(by_port) == {"51000", "51001", "51002", "9"}, by_port
    ok = by_port["51000"]
    assert ok.findings == () and [leg.link for leg in ok.legs] == ["same", "nat"]
    assert ok.legs[1].tuple == f"{nat}:41000 > {srv}:53"
    [d] = [x for x in by_port["51001"].findings if x.kind == "drop"]
    assert d.between == ("fw:firewall", "fw:transmit") and "dropped by fw itself" in d.what
    assert by_port["51001"].summary.startswith("dropped by fw (proof: its drop stage)")
    [e] = [x for x in by_port["51002"].findings if x.kind == "drop"]
    assert e.between == ("fw:receive", "fw:firewall")
    pings = [f for f in v.flows if f.proto == "icmp"]
    assert len(pings) == 1 and pings[0].findings == () and len(pings[0].legs) == 2


def test_a_udp_drop_is_not_proof_against_tcp_on_the_same_ports(tmp_path: Path) -> None:
    """QUIC and TCP to port 443 from the same client port: the policy drops the UDP
    datagram (drop stage) and passes the TCP connection (and a DNS query). The drop
    stage's proof belongs to the UDP flow only; the TCP flow through the same addresses
    and ports stays clean."""
    from scapy.layers.inet import IP, TCP, UDP

    cli, srv, nat, cport = "192.0.2.10", "198.51.100.80", "198.18.5.1", 50000
    t0 = 1_763_790_000.0

    def tcp(natted: bool, flags: str, seq: int, ack: int, back: bool = False) -> Any:
        a, p = (nat, 41000) if natted else (cli, cport)
        if back:
            return IP(src=srv, dst=a, id=300 + seq % 7) / TCP(
                sport=443, dport=p, flags=flags, seq=seq, ack=ack
            )
        return IP(src=a, dst=srv, id=200 + seq % 7) / TCP(
            sport=p, dport=443, flags=flags, seq=seq, ack=ack
        )

    def stage(dt: float, natted_out: bool, with_quic: bool) -> list[tuple[float, Any]]:
        n = natted_out
        out = [
            (t0 + dt, tcp(n, "S", 1000, 0)),
            (t0 + 0.01 + dt, tcp(not n, "SA", 5000, 1001, back=True)),
            (t0 + 0.02 + dt, tcp(n, "A", 1001, 5001)),
            (t0 + 0.03 + dt, tcp(n, "FA", 1001, 5001)),
            (t0 + 0.04 + dt, tcp(not n, "FA", 5001, 1002, back=True)),
            (t0 + 0.05 + dt, tcp(n, "A", 1002, 5002)),
        ]
        dns_src = (nat, 41001) if n else (cli, cport + 1)  # passes: the side sees UDP
        dns = IP(src=dns_src[0], dst=srv, id=88) / UDP(sport=dns_src[1], dport=53) / (b"q" * 20)
        out.append((t0 + 0.08 + dt, dns))
        if with_quic:
            quic = IP(src=cli, dst=srv, id=77) / UDP(sport=cport, dport=443) / (b"\xc3" + bytes(40))
            out.append((t0 + 0.1 + dt, quic))
        return sorted(out, key=lambda x: x[0])

    files = {
        "receive": write(tmp_path / "rx.pcap", stage(0, False, True)),
        "firewall": write(tmp_path / "fw.pcap", stage(2e-5, False, True)),
        "transmit": write(tmp_path / "tx.pcap", stage(4e-5, True, False)),
        "drop": write(tmp_path / "drop.pcap", [(t0 + 0.1 + 3e-5, stage(0, False, True)[-1][1])]),
    }
    v = correlate(_points(files, ["receive", "firewall", "transmit", "drop"]))
    by_proto = {f.proto: f for f in v.flows if f.client.endswith(f":{cport}")}
    assert set(by_proto) == {"tcp", "udp"}, v.flows
    assert by_proto["tcp"].findings == (), by_proto["tcp"].findings
    assert "drop stage" not in by_proto["tcp"].summary
    [d] = [x for x in by_proto["udp"].findings if x.kind == "drop"]
    assert d.between == ("fw:firewall", "fw:transmit") and "dropped by fw itself" in d.what
