"""Vectorised helpers of the matcher against plain-Python references."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from hopcap.correlate.match import _ttl_off_mode


def _reference(pid: list[int], dttl: list[int]) -> list[bool]:
    by: dict[int, Counter[int]] = {}
    for p, d in zip(pid, dttl, strict=True):
        by.setdefault(p, Counter())[max(-500, min(500, d))] += 1
    mode = {}
    for p, c in by.items():
        top = max(c.values())
        m = min(d for d, n in c.items() if n == top)  # ties: the smaller decrement
        mode[p] = m if 0 <= m <= 8 else 0
    return [d != mode[p] for p, d in zip(pid, dttl, strict=True)]


@pytest.mark.parametrize("lo,hi", [(0, 2), (0, 9), (-3, 12), (-300, 300)])
def test_ttl_mode_per_connection(lo: int, hi: int) -> None:
    rng = np.random.default_rng(abs(lo) * 7 + hi)
    for _ in range(20):
        n = int(rng.integers(1, 400))
        pid = np.sort(rng.integers(0, 30, n)).astype(np.int64)
        dttl = rng.integers(lo, hi, n).astype(np.int16)
        got = _ttl_off_mode(pid, dttl)
        assert got.tolist() == _reference(pid.tolist(), dttl.tolist())
