"""Matching's per-packet work in the C helper gives exactly what the numpy path gives: the
header-field rewrites of matched pairs (TTL, DSCP, flags, window, MSS, ack) on random
columns with every kind of difference."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hopcap.correlate import _fastwalk
from hopcap.correlate.match import PairParams, _field_rewrites
from hopcap.correlate.reader import ACK, FIN, PSH, SYN


def _table(rng: np.random.Generator, n: int) -> Any:
    return SimpleNamespace(
        ttl=rng.integers(60, 65, n).astype(np.int16),
        tos=rng.choice([0, 1, 2, 0x10, 0xB8], n).astype(np.int16),
        flags=rng.choice([ACK, ACK | PSH, SYN, SYN | ACK, FIN | ACK, ACK | 0x40, 0], n).astype(
            np.int16
        ),
        plen=rng.choice([0, 100, 1360, 1460], n).astype(np.int32),
        win=rng.choice([502, 509, 65535], n).astype(np.int32),
        mss=rng.choice([-1, 1360, 1460], n).astype(np.int32),
        seq=rng.integers(0, 1 << 32, n).astype(np.int64),
        ack=rng.integers(0, 1 << 32, n).astype(np.int64),
    )


def _both(*args: Any, **kw: Any) -> tuple[list[Any], list[Any]]:
    fast = _field_rewrites(*args, **kw)
    _fastwalk.disabled = True
    try:
        slow = _field_rewrites(*args, **kw)
    finally:
        _fastwalk.disabled = False
    return fast, slow


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("ttl_expected", [None, (0, 1)])
def test_field_rewrites_compiled_equals_numpy(seed: int, ttl_expected: Any) -> None:
    assert _fastwalk.available()
    rng = np.random.default_rng(seed)
    ta, tb = _table(rng, 3000), _table(rng, 3000)
    n, npairs = 2000, 40
    a = rng.integers(0, 3000, n).astype(np.int64)
    b = rng.integers(0, 3000, n).astype(np.int64)
    pid = np.sort(rng.integers(0, npairs, n)).astype(np.int64)
    # half the pairs: b's copy made from a's with the translation (few differences)
    same = rng.random(n) < 0.5
    delta = rng.integers(0, 1 << 32, npairs).astype(np.int64)
    ackd = np.where(rng.random(npairs) < 0.2, -1, rng.integers(0, 1 << 32, npairs))
    for c in ("tos", "flags", "plen", "win", "mss"):
        getattr(tb, c)[b[same]] = getattr(ta, c)[a[same]]
    tb.ttl[b[same]] = ta.ttl[a[same]] - 1
    tb.seq[b[same]] = (ta.seq[a[same]] + delta[pid[same]]) & 0xFFFFFFFF
    tb.ack[b[same]] = (ta.ack[a[same]] + ackd[pid[same]]) & 0xFFFFFFFF
    odd = b[same & (rng.random(n) < 0.1)]  # a window and a TTL changed on the way
    tb.win[odd] += 7
    tb.ttl[odd] -= 3
    prm = PairParams(delta, ackd.astype(np.int64), delta, delta, delta > 0, delta > 0)
    fast, slow = _both(ta, a, tb, b, pid, prm, ttl_expected=ttl_expected)
    assert [(r._asdict(), p) for r, p in fast] == [(r._asdict(), p) for r, p in slow]
    names = {r.field for r, _p in fast}
    assert names == {"ip.ttl", "ip.dscp", "tcp.flags", "tcp.window", "tcp.mss", "tcp.ack"}
