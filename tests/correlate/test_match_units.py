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


def test_compiled_mix_equals_numpy_mix() -> None:
    from hopcap.correlate import _fastwalk
    from hopcap.correlate.conns import mix

    if not _fastwalk.available():
        pytest.skip("no C compiler: only the numpy path exists here")
    rng = np.random.default_rng(5)
    n = 1000
    cols = (
        rng.integers(-(1 << 62), 1 << 62, n, dtype=np.int64),
        rng.integers(0, 1 << 63, n, dtype=np.uint64) * np.uint64(2),  # the top bit set too
        rng.integers(-5, 300, n).astype(np.int16),
        rng.integers(0, 1 << 31, n).astype(np.uint32),
        np.broadcast_to(np.uint64(0), (n,)),
        rng.integers(-1, 1 << 16, n).astype(np.int32),
    )
    for k in range(1, len(cols) + 1):
        fast = mix(*cols[:k])
        _fastwalk.disabled = True
        try:
            slow = mix(*cols[:k])
        finally:
            _fastwalk.disabled = False
        assert fast.dtype == slow.dtype == np.uint64
        assert (fast == slow).all(), k
    assert mix(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


@pytest.mark.parametrize("span", [10, 1 << 20, 1 << 45, 1 << 61])
def test_sort_by_pair_equals_lexsort(span: int) -> None:
    from hopcap.correlate.match import _sort_by_pair

    rng = np.random.default_rng(span % 1000)
    n = 5000
    pp = rng.integers(0, 300, n).astype(np.int64)
    d = rng.integers(-span, span, n).astype(np.int64)
    o = np.lexsort((d, pp))
    got_p, got_d = _sort_by_pair(pp, d)
    assert (got_p == pp[o]).all() and (got_d == d[o]).all()
    assert got_p.dtype == np.int64 and got_d.dtype == np.int64


def test_join_first_keeps_the_first_of_equal_keys_compiled_and_numpy() -> None:
    """learn_deltas pairs every upstream key with the first downstream row of that key:
    the C hash join (no sort) and the numpy path (unique + searchsorted) agree."""
    from hopcap.correlate import _fastwalk
    from hopcap.correlate.match import _join_first

    assert _fastwalk.available(), "the compiled helper is part of the measured path"
    rng = np.random.default_rng(12)
    ha = rng.integers(0, 400, 3000).astype(np.uint64)
    hb = rng.integers(0, 300, 5000).astype(np.uint64)  # every key many times
    fast = _join_first(ha, hb)
    _fastwalk.disabled = True
    try:
        slow = _join_first(ha, hb)
    finally:
        _fastwalk.disabled = False
    want_b = {int(k): int(np.nonzero(hb == k)[0][0]) for k in np.unique(hb)}
    want = [(i, want_b[int(k)]) for i, k in enumerate(ha.tolist()) if int(k) in want_b]
    for ia, ib in (fast, slow):
        assert list(zip(ia.tolist(), ib.tolist(), strict=True)) == want
    for e in (np.zeros(0, np.uint64), ha):
        ia, ib = _join_first(np.zeros(0, np.uint64), e)
        assert ia.shape == ib.shape == (0,)
