"""The per-connection work done on columns (or in the C helper) gives exactly what the
per-half Python/numpy code gave: half boundaries, connections and link fingerprints, on
real captures and on synthetic ones with SYN retransmissions and a reused tuple."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

import numpy as np
import pytest
from pcapgen import Conv, View, frame_bytes, render, write_pcap_raw

from hopcap.correlate import _fastwalk, read_capture
from hopcap.correlate.conns import Half, build_point
from tests.realdata import REALDATA


def _reused_tuple(tmp: Path) -> Path:
    """Two connections on one tuple (the second SYN with another ISN), SYNs retransmitted,
    one connection without TCP timestamps, one over IPv6."""
    convs = []
    for k, (isn_seed, ts) in enumerate(((11, True), (12, True), (13, False))):
        c = Conv(client=("198.18.0.10", 41000), seed=isn_seed, ts=ts, t0=1_763_790_000.0 + k * 5)
        c.handshake(syn_retries=k)
        c.request(b"q" * (200 + k))
        c.response(b"r" * 2500)
        c.close()
        convs.append(c)
    c6 = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=3)
    c6.handshake()
    c6.request(b"x" * 10)
    c6.close()
    convs.append(c6)
    frames = [(round(t * 1e9), frame_bytes(p, "ether")) for t, p in render(convs, View())]
    return write_pcap_raw(tmp / "reuse.pcap", frames)


def _captures(tmp: Path) -> list[Path]:
    files = [_reused_tuple(tmp)]
    files += sorted((REALDATA / "haka").glob("*.pcap"))
    files += sorted((REALDATA / "tcpreplay").glob("test.*"))
    files += sorted((REALDATA / "ns3-ppp").glob("*.pcap"))
    files += sorted((REALDATA / "tcpdump-tunnels").glob("*.pcap"))
    files += sorted((REALDATA / "zeek-tunnels").glob("*.pcap"))
    return files


def _halves(h: list[Half]) -> list[tuple[object, ...]]:
    return [(*astuple(x)[:1], x.idx.tolist(), *astuple(x)[2:]) for x in h]


def test_compiled_halves_and_conns_equal_numpy(tmp_path: Path) -> None:
    if not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    n_halves = 0
    reused = False
    for f in _captures(tmp_path):
        t = read_capture(f)
        fast = build_point(t)
        _fastwalk.disabled = True
        try:
            slow = build_point(t)
        finally:
            _fastwalk.disabled = False
        assert _halves(fast.halves) == _halves(slow.halves), f
        assert [(c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in fast.conns] == [
            (c.cid, c.c and c.c.hid, c.s and c.s.hid) for c in slow.conns
        ], f
        keys = [h.tkey for h in fast.halves]
        reused |= len(set(keys)) < len(keys)
        n_halves += len(fast.halves)
        # every row is in exactly one half
        rows = np.concatenate([h.idx for h in fast.halves]) if fast.halves else np.zeros(0)
        assert sorted(rows.tolist()) == list(range(len(t))), f
        t.close()
    assert reused  # a tuple that carried two connections was split at its second SYN
    assert n_halves > 100
