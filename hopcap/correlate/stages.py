"""Stage captures of one device (PAN-OS `debug dataplane packet-diag` and alike).

A firewall that captures its own processing writes one file per stage: `receive` (as the
packet came in), `firewall` (in session processing), `transmit` (as it left) and `drop`
(what the dataplane discarded). Given as points
`fw:receive=rx.pcap fw:firewall=fw.pcap fw:transmit=tx.pcap [fw:drop=drop.pcap]`.

Every packet, whichever way it travels, passes receive -> firewall -> transmit. The
receive stage thus holds the client's packets as the client sent them and the server's as
the server sent them (after NAT on their way in), and transmit the reverse; the path model
of the correlator (client side first, s2c travelling backwards) needs the two sides of the
device instead. So each stage file is split by direction (the SYN's sender is the client;
without a handshake the lower, well-known port is the server; datagrams by
`hopcap.correlate.dgram.from_client`) and two points are built:

    fw:client-side = receive (c2s) + transmit (s2c)
    fw:server-side = transmit (c2s) + receive (s2c)

and correlated like the two interfaces of any device (same clock, NAT allowed). The
firewall and drop stages are evidence, not points: a packet lost inside the device is
placed between `receive` and `firewall` when the firewall stage never saw it, between
`firewall` and `transmit` when it did, and a packet of the flow in the drop stage is the
device's own proof of the drop. What a stage change does by design (the destination MAC
rewritten for the next hop, packets handed on out of order by the dataplane's threads) is
never a finding: MACs are not compared, and matching is by content, not order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate.dgram import concat_rows, from_client, proto_name
from hopcap.correlate.f5split import F5Split, split_f5
from hopcap.correlate.reader import _COLUMNS, ACK, SYN, PacketTable, endpoint_str, read_capture
from hopcap.errors import CorrelationError
from hopcap.model import Direction, Finding, Flow, Leg, PointInput, Verdict

I64 = npt.NDArray[np.int64]
STAGES = ("receive", "firewall", "transmit")
DROP = "drop"
CLIENT_SIDE = "client-side"
SERVER_SIDE = "server-side"
_SLACK_NS = 1_000_000  # how far an aligned finding time may be from the receive stage's


def _split_name(p: PointInput) -> tuple[str, str]:
    host, iface = PointInput.parse_name(p.name)
    return p.host or host, p.interface or iface


@dataclass
class _Device:
    host: str
    stages: dict[str, PointInput] = field(default_factory=dict)
    # stage -> "a:p > b:p" -> (ts, seq, ip id) of each packet, as that stage shows them
    evidence: dict[str, dict[str, tuple[I64, I64, I64]]] = field(default_factory=dict)

    def name(self, stage: str) -> str:
        return f"{self.host}:{stage}"


@dataclass
class StagePlan:
    """How stage points were turned into path points, to turn the verdict back."""

    points: list[PointInput]  # the path as correlated
    tables: dict[str, PacketTable]  # virtual point name -> its packets
    devices: dict[str, _Device]
    f5: dict[str, F5Split] = field(default_factory=dict)  # one-capture BIG-IPs split in two


def plan_stages(points: Sequence[PointInput]) -> StagePlan:
    """Group each device's stage points, split a one-capture F5 BIG-IP point into its
    client and server sides (`hopcap.correlate.f5split`); other points pass through
    unchanged."""
    split, f5_tables, f5 = split_f5(points, skip=frozenset((*STAGES, DROP)))
    plan = _plan_stages(split)
    plan.tables.update(f5_tables)
    plan.f5 = f5
    return plan


def _plan_stages(points: Sequence[PointInput]) -> StagePlan:
    devices: dict[str, _Device] = {}
    for p in points:
        host, stage = _split_name(p)
        if stage in (*STAGES, DROP):
            d = devices.setdefault(host, _Device(host))
            d.stages[stage] = p
    if not devices:
        return StagePlan(list(points), {}, {})
    for d in devices.values():
        missing = [s for s in ("receive", "transmit") if s not in d.stages]
        if missing:
            raise CorrelationError(
                f"{d.host}: stage captures need at least {d.host}:receive and "
                f"{d.host}:transmit (missing: {', '.join(missing)})",
                hint=f"e.g. {d.host}:receive=rx.pcap {d.host}:firewall=fw.pcap "
                f"{d.host}:transmit=tx.pcap {d.host}:drop=drop.pcap",
            )
    path: list[PointInput] = []
    tables: dict[str, PacketTable] = {}
    for p in points:
        host, stage = _split_name(p)
        dev = devices.get(host)
        if dev is None or stage not in (*STAGES, DROP):
            path.append(p)
            continue
        if stage != "receive":
            continue  # the device takes the place of its receive stage in the path
        client, server = _two_sides(dev)
        for side, table in ((CLIENT_SIDE, client), (SERVER_SIDE, server)):
            name = dev.name(side)
            tables[name] = table
            path.append(PointInput(name=name, pcap=None, host=dev.host, interface=side))
    return StagePlan(path, tables, devices)


def _read(p: PointInput) -> PacketTable:
    if p.pcap is None:
        raise CorrelationError(f"{p.name}: a stage capture is missing")
    return read_capture(Path(p.pcap))


def _keys(t: PacketTable) -> npt.NDArray[np.uint64]:
    return np.stack(
        [
            t.v.astype(np.uint64),
            np.asarray(t.src_hi, dtype=np.uint64),
            t.src_lo,
            np.asarray(t.dst_hi, dtype=np.uint64),
            t.dst_lo,
            t.sport.astype(np.uint64),
            t.dport.astype(np.uint64),
        ],
        axis=1,
    )


def _c2s(t: PacketTable) -> npt.NDArray[np.bool_]:
    """Per packet: does it travel from the client? (SYN sender = client; otherwise the
    side with the lower port, below 1024 or not, is the server)."""
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=bool)
    keys = _keys(t)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    flags = t.flags.astype(np.int64)
    syn_only = (flags & (SYN | ACK)) == SYN
    syn_ack = (flags & (SYN | ACK)) == (SYN | ACK)
    client_of = np.zeros(len(uniq), dtype=np.int8)  # 1: this tuple is c2s, -1: s2c
    client_of[npsets.unique(inv[syn_only])] = 1
    client_of[npsets.unique(inv[syn_ack])] = -1
    rev = {tuple(int(x) for x in row): k for k, row in enumerate(uniq)}
    for k, row in enumerate(uniq):
        if client_of[k] != 0:
            continue
        r = tuple(int(x) for x in row)
        back = (r[0], r[3], r[4], r[1], r[2], r[6], r[5])
        other = rev.get(back)
        if other is not None and client_of[other] != 0:
            client_of[k] = -client_of[other]
        else:
            client_of[k] = 1 if r[6] < r[5] else -1  # dport < sport: towards the server
    out: npt.NDArray[np.bool_] = client_of[inv] > 0
    return out


def _take(
    parts: Sequence[tuple[PacketTable, npt.NDArray[np.bool_], npt.NDArray[np.bool_] | None]],
    path: Path,
) -> PacketTable:
    """The selected rows (TCP, datagrams) of several tables as one table, in time order."""
    bufs = [bytes(t.buf) for t, _m, _d in parts]
    shift = np.cumsum([0, *(len(b) for b in bufs[:-1])])
    buf = b"".join(bufs)
    cols: dict[str, Any] = {}
    ts = np.concatenate([t.ts[m] for t, m, _d in parts])
    order = np.argsort(ts, kind="stable")
    for c in _COLUMNS:
        pieces = []
        for k, (t, m, _d) in enumerate(parts):
            a = np.asarray(getattr(t, c))[m]
            if c == "pl_off":
                a = a + shift[k]
            pieces.append(a)
        cols[c] = np.concatenate(pieces)[order]
    dparts = [(t.dgram, d, int(shift[k])) for k, (t, _m, d) in enumerate(parts) if d is not None]
    dgram = concat_rows(dparts, path, buf) if dparts else None
    first = parts[0][0]
    return dataclasses.replace(
        first,
        path=path,
        buf=buf,
        records=int(ts.shape[0]) + (len(dgram) if dgram is not None else 0),
        ts=ts[order],
        warnings=[w for t, _m, _d in parts for w in t.warnings],
        kernel_drops=None,
        dgram=dgram,
        **{c: v for c, v in cols.items() if c != "ts"},
    )


def _index(t: PacketTable) -> dict[str, tuple[I64, I64, I64]]:
    """ "proto a:p > b:p" -> (timestamps, seq, ip id) of its packets, in time order; a
    datagram's seq is its ICMP echo / ESP sequence (-1 for UDP). Keyed by protocol too: a
    UDP and a TCP conversation between the same ports are different flows."""
    out: dict[str, tuple[I64, I64, I64]] = {}
    tables: list[tuple[Any, I64, I64 | None]] = [(t, t.seq, None)]
    if t.dgram is not None:
        tables.append((t.dgram, t.dgram.iseq, t.dgram.proto))
    for tb, seq, protos in tables:
        if not len(tb):
            continue
        keys = _keys(tb)
        if protos is not None:
            keys = np.column_stack([keys, protos.astype(np.uint64)])
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        grouped = np.lexsort((tb.ts, inv))  # by tuple, then time (one sort, not one per tuple)
        cuts = np.searchsorted(inv[grouped], np.arange(len(uniq) + 1))
        for k, row in enumerate(uniq):
            v, sh, sl, dh, dl, sp, dp = (int(x) for x in row[:7])
            name = "tcp" if protos is None else proto_name(int(row[7]))
            key = f"{name} {endpoint_str(v, sh, sl, sp)} > {endpoint_str(v, dh, dl, dp)}"
            rows = grouped[cuts[k] : cuts[k + 1]]
            out[key] = (
                tb.ts[rows].astype(np.int64),
                np.asarray(seq)[rows].astype(np.int64),
                tb.ipid[rows].astype(np.int64),
            )
    return out


def _two_sides(d: _Device) -> tuple[PacketTable, PacketTable]:
    rx = _read(d.stages["receive"])
    tx = _read(d.stages["transmit"])
    rx_c, tx_c = _c2s(rx), _c2s(tx)
    rx_d, tx_d = _dgram_c2s(rx), _dgram_c2s(tx)
    where = Path(f"{d.host}-stages")
    client = _take([(rx, rx_c, rx_d), (tx, ~tx_c, _not(tx_d))], where)
    server = _take([(tx, tx_c, tx_d), (rx, ~rx_c, _not(rx_d))], where)
    d.evidence["receive"] = _index(rx)
    for stage in ("firewall", DROP):
        if stage in d.stages:
            t = _read(d.stages[stage])
            d.evidence[stage] = _index(t)
            t.close()
    rx.close()
    tx.close()
    return client, server


def _dgram_c2s(t: PacketTable) -> npt.NDArray[np.bool_] | None:
    """Per datagram: does it travel from its flow's client (None: no datagrams)?"""
    return from_client(t.dgram) if t.dgram is not None and len(t.dgram) else None


def _not(m: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_] | None:
    return None if m is None else ~m


def _reverse(tup: str) -> str:
    a, _, b = tup.partition(" > ")
    return f"{b} > {a}"


def _seen_in(d: _Device, stage: str, keys: Sequence[str], t_ns: int) -> bool:
    """Did `stage` see the packet that the receive stage saw at `t_ns` (same seq, IP ID)?"""
    rx, ev = d.evidence.get("receive", {}), d.evidence.get(stage, {})
    for k in keys:
        if k not in rx or k not in ev:
            continue
        ts, seq, ipid = rx[k]
        i = int(np.argmin(np.abs(ts - t_ns)))
        if abs(int(ts[i]) - t_ns) > _SLACK_NS:
            continue
        _t, s2, id2 = ev[k]
        if bool(np.any((s2 == seq[i]) & (id2 == ipid[i]))):
            return True
    return False


def finish_stages(verdict: Verdict, plan: StagePlan) -> Verdict:
    """Name findings by the stage they happened in and attach the drop stage's proof; say
    how a BIG-IP's one capture was split."""
    verdict = _finish_f5(verdict, plan)
    if not plan.devices:
        return verdict
    offsets = {p.name: p.clock_offset_s or 0.0 for p in verdict.points}
    flows = [_flow(f, plan, offsets) for f in verdict.flows]
    warnings = list(verdict.warnings)
    for d in plan.devices.values():
        given = ", ".join(d.name(s) for s in (*STAGES, DROP) if s in d.stages)
        warnings.append(
            f"{d.host}: stage captures ({given}) correlated as {d.name(CLIENT_SIDE)} "
            f"(receive c2s + transmit s2c) and {d.name(SERVER_SIDE)} (transmit c2s + "
            "receive s2c); the firewall and drop stages place and prove drops inside it"
        )
    return dataclasses.replace(verdict, flows=tuple(flows), warnings=tuple(warnings))


def _flow(f: Flow, plan: StagePlan, offsets: dict[str, float]) -> Flow:
    findings = list(f.findings)
    changed = False
    proven: list[str] = []
    for d in plan.devices.values():
        legs = {leg.point: leg for leg in f.legs if leg.point.startswith(d.host + ":")}
        cs, ss = legs.get(d.name(CLIENT_SIDE)), legs.get(d.name(SERVER_SIDE))
        if cs is None and ss is None:
            continue
        for i, x in enumerate(findings):
            sides = {d.name(CLIENT_SIDE), d.name(SERVER_SIDE)}
            if set(x.between) != sides:
                continue
            findings[i] = _place(x, f.proto, d, cs, ss, offsets.get(d.name(CLIENT_SIDE), 0.0))
            changed = True
        drop_ev = d.evidence.get(DROP)
        if drop_ev:
            for direction in ("c2s", "s2c"):
                keys = _as_received(f.proto, direction, cs, ss)
                n = sum(int(drop_ev[k][0].shape[0]) for k in keys if k in drop_ev)
                if not n:
                    continue
                proven.append(d.host)
                changed = True
                proof = f"{n} packet(s) of it in {d.name(DROP)}: dropped by {d.host} itself"
                at = next(
                    (
                        k
                        for k, x in enumerate(findings)
                        if x.kind == "drop"
                        and x.direction == direction
                        and x.between[0].startswith(d.host + ":")
                    ),
                    None,
                )
                if at is not None:
                    findings[at] = dataclasses.replace(
                        findings[at], what=f"{findings[at].what}; {proof}"
                    )
                else:
                    dr: Direction = "c2s" if direction == "c2s" else "s2c"
                    findings.append(
                        Finding(
                            "drop", dr, (d.name("receive"), d.name("transmit")), n, 0, None, proof
                        )
                    )
    if not changed:
        return f
    summary = f.summary
    for host in dict.fromkeys(proven):
        summary = f"dropped by {host} (proof: its drop stage); {summary}"
    return dataclasses.replace(f, findings=tuple(findings), summary=summary)


def _as_received(proto: str, direction: str, cs: Leg | None, ss: Leg | None) -> list[str]:
    """Keys (`_index`) of the flow's packets in `direction` as the receive stage shows them."""
    if direction == "c2s":
        return [f"{proto} {cs.tuple}"] if cs is not None else []
    return [f"{proto} {_reverse(ss.tuple)}"] if ss is not None else []


def _place(
    x: Finding, proto: str, d: _Device, cs: Leg | None, ss: Leg | None, offset_s: float
) -> Finding:
    """A finding between the two sides of the device, named by the stages it lies between.
    `offset_s`: the device's clock minus the verdict's reference clock."""
    rx, fw, tx = d.name("receive"), d.name("firewall"), d.name("transmit")
    if x.kind != "drop" or "firewall" not in d.stages:
        return dataclasses.replace(x, between=(rx, tx))
    keys = _as_received(proto, x.direction, cs, ss)
    t0 = int(((x.first_ts or 0.0) + offset_s) * 1e9)
    if _seen_in(d, "firewall", keys, t0):
        return dataclasses.replace(x, between=(fw, tx))
    return dataclasses.replace(x, between=(rx, fw))


def _finish_f5(verdict: Verdict, plan: StagePlan) -> Verdict:
    if not plan.f5:
        return verdict
    warnings = list(verdict.warnings)
    notes: dict[str, str] = {}
    for sp in plan.f5.values():
        cs, ss = sp.name(CLIENT_SIDE), sp.name(SERVER_SIDE)
        how = f"{sp.paired} by the trailers' flow ids, {sp.by_address} by address"
        if sp.unplaced:
            how += f", {sp.unplaced} unknown (put on the client side)"
        warnings.append(
            f"{sp.host}: one BIG-IP capture ({sp.given}) holds both sides of its proxied "
            f"connections: correlated as {cs} ({sp.client_conns} connection(s) toward "
            f"virtual servers) and {ss} ({sp.server_conns} of BIG-IP to pool members); "
            f"placed {how}"
            + (
                f"; UDP/ICMP packets: {sp.client_dgrams} on {cs}, {sp.server_dgrams} on {ss}"
                if sp.client_dgrams or sp.server_dgrams
                else ""
            )
        )
        if sp.info:
            what = [sp.info[k] for k in ("VER", "HOST", "PLAT") if sp.info.get(k)]
            if sp.info.get("CMD"):
                what.append(f"captured with `{sp.info['CMD']}`")
            notes[cs] = notes[ss] = ", ".join(what)
    points = tuple(
        dataclasses.replace(p, device=notes[p.name]) if p.name in notes else p
        for p in verdict.points
    )
    return dataclasses.replace(verdict, points=points, warnings=tuple(warnings))
