"""IP ID rewrites: a finding where the connection's other packets keep their IDs, never for a
device that gives every packet a new ID, never for GSO/TSO pieces with consecutive IDs."""

from __future__ import annotations

from pathlib import Path

from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import all_findings, http_conv, nat_map, only, points

from hopcap.correlate import correlate


def test_one_packet_with_another_ip_id_is_an_ip_id_rewrite(tmp_path: Path) -> None:
    c = http_conv()
    req = next(s for s in c.segs if s.tag == "req")

    def change(s: Seg) -> Seg:
        if s.seq == req.seq and s.d == C2S and s.data:
            s.ipid = (s.ipid + 1000) & 0xFFFF
        return s

    v = correlate(points(tmp_path, [c], [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, nat=nat_map(x), change=change)),
    ]))  # fmt: skip
    rw = only(v, "rewrite")
    assert [(f.field, f.direction, f.between, f.packets) for f in rw] == [
        ("ip.id", "c2s", ("fw:eth0", "fw:eth1"), 1)
    ]
    assert (rw[0].before, rw[0].after) == (req.ipid, (req.ipid + 1000) & 0xFFFF)
    assert not only(v, "drop") and not only(v, "inject")
    assert v.flows[0].summary.startswith("ip.id rewritten inside fw")


def test_rewritten_syn_ip_id_is_reported_not_a_drop(tmp_path: Path) -> None:
    c = http_conv()

    def change(s: Seg) -> Seg:
        if s.tag == "synack":
            s.ipid = 4242
        return s

    v = correlate(points(tmp_path, [c], [
        ("fw:eth0", lambda x: View(delay=0.0001, change=change)),
        ("fw:eth1", lambda x: View()),
    ]))  # fmt: skip
    assert [(f.kind, f.field, f.direction) for f in all_findings(v)] == [
        ("rewrite", "ip.id", "s2c")
    ]


def test_device_giving_every_packet_a_new_ip_id_is_policy(tmp_path: Path) -> None:
    convs = [http_conv(52000 + i, seed=30 + i, t0=1_763_790_000.0 + i * 0.01) for i in range(3)]

    def scramble(s: Seg) -> Seg:
        s.ipid = (s.ipid * 7919 + 13) & 0xFFFF
        return s

    v = correlate(points(tmp_path, convs, [
        ("fw:eth0", lambda x: View()),
        ("fw:eth1", lambda x: View(delay=0.0001, nat=nat_map(x, sport=x.client[1] - 10000),
                                   change=scramble)),
    ]))  # fmt: skip
    assert all_findings(v) == []
    assert all(fl.summary.startswith("OK") for fl in v.flows)


def test_gso_pieces_with_consecutive_ip_ids_are_not_rewrites(tmp_path: Path) -> None:
    big = Conv(client=("203.0.113.10", 50000), server=("203.0.113.80", 80), seed=5)
    big.handshake()
    big.send(C2S, b"u" * 15928)  # eleven segments, consecutive IP IDs, one TSval
    big.send(S2C, b"d" * 4344)
    big.close()
    v = correlate(points(tmp_path, [big], [
        ("client:eth0", lambda c: View(tso=True)),  # one super-packet per burst, first ID
        ("fw:eth0", lambda c: View(delay=0.0001)),
    ]))  # fmt: skip
    assert all_findings(v) == []
