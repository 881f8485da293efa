"""hopcap.npsets gives numpy's answers (np.unique, np.isin, np.setdiff1d, np.union1d) by
sorting, on random integer arrays of every width, shape and mix of kinds."""

from __future__ import annotations

import numpy as np
import pytest

from hopcap import npsets

KINDS = [np.int64, np.uint64, np.int32, np.uint16, np.int8, np.bool_]


@pytest.mark.parametrize("seed", range(6))
def test_the_same_answers_as_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        ka, kb = KINDS[rng.integers(len(KINDS))], KINDS[rng.integers(len(KINDS))]
        hi = int(rng.choice([2, 10, 1000, 2**40]))
        n, m = (int(x) for x in rng.integers(0, 60, 2))
        a = rng.integers(0, hi, n, dtype=np.uint64).astype(ka)
        b = rng.integers(0, hi, m, dtype=np.uint64).astype(kb)
        if n % 2 == 0 and n:
            a = a.reshape(2, -1)  # shapes are kept by isin, flattened by the others
        got, want = npsets.unique(a), np.unique(a)
        assert got.dtype == want.dtype and np.array_equal(got, want)
        got, want = npsets.isin(a, b), np.isin(a, b)
        assert got.shape == want.shape and np.array_equal(got, want), (a, b)
        assert np.array_equal(npsets.setdiff(a, b), np.setdiff1d(a, b))
        got, want = npsets.union(a, b), np.union1d(a, b)
        assert got.dtype == want.dtype and np.array_equal(got, want)


def test_other_kinds_go_to_numpy() -> None:
    f = np.array([2.5, np.nan, 1.0, np.nan, 2.5])
    assert np.array_equal(npsets.unique(f), np.unique(f), equal_nan=True)
    assert npsets.isin(f, np.array([1.0])).tolist() == [False, False, True, False, False]
    assert npsets.isin(np.array([3, 4]), np.array([3.0])).tolist() == [True, False]


def test_large_mostly_distinct_codes() -> None:
    """The case numpy's hash table is slow on (millions of distinct link codes)."""
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**50, 300_000).reshape(3, -1)
    b = np.concatenate([a.ravel()[::3], rng.integers(0, 2**50, 1000)])
    assert np.array_equal(npsets.unique(a), np.unique(a))
    assert np.array_equal(npsets.isin(a, b), np.isin(a, b))


def test_nearest_pairs() -> None:
    """Each x with the k ys just before and the k just after its time (distinct times
    here), and each y with its xs alike; nothing else."""
    rng = np.random.default_rng(3)
    t = rng.permutation(1000)[:70].astype(np.int64)  # distinct times
    xs, ys = np.arange(40, dtype=np.int64), np.arange(100, 130, dtype=np.int64)
    tx, ty = t[:40], t[40:]
    px, py = npsets.nearest_pairs(xs, tx, ys, ty, 3)
    got = set(zip(px.tolist(), py.tolist(), strict=True))

    def near(tu: int, vs: list[int], tv: list[int]) -> list[int]:
        by_time = [v for _, v in sorted(zip(tv, vs, strict=True))]
        p = sum(1 for s in tv if s < tu)
        return by_time[max(p - 3, 0) : p + 3]

    want = {(x, y) for x, s in zip(xs.tolist(), tx.tolist(), strict=True)
            for y in near(s, ys.tolist(), ty.tolist())}  # fmt: skip
    want |= {(x, y) for y, s in zip(ys.tolist(), ty.tolist(), strict=True)
             for x in near(s, xs.tolist(), tx.tolist())}  # fmt: skip
    assert got == want
    assert len(want) < 40 * 30


def test_groups() -> None:
    x = np.array([5, 3, 5, 9, 3, 5], np.int64)
    got = npsets.groups(x, np.array([3, 4, 5], np.int64))
    assert [g.tolist() for g in got] == [[1, 4], [], [0, 2, 5]]


@pytest.mark.parametrize("seed", range(4))
def test_unique_rows_is_numpys_unique_of_rows(seed: int) -> None:
    """`np.unique(np.stack(cols, axis=1), axis=0)`: the same rows in the same order (signed
    values, repeated rows, few and many columns, empty and one-row inputs)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        n, k = int(rng.integers(0, 50)), int(rng.integers(1, 4))
        cols = [rng.integers(-3, 3, n) if j % 2 else rng.integers(-(2**62), 2**62, n)
                for j in range(k)]  # fmt: skip
        if n > 4:
            for c in cols:
                c[n // 2 :] = c[: n - n // 2]  # (every row twice, or nearly)
        want = np.unique(np.stack(cols, axis=1), axis=0)
        got = npsets.unique_rows(cols)
        assert got.shape == want.shape and np.array_equal(got, want), cols


def test_no_hash_unique_in_hopcap() -> None:
    """`np.unique(x)` with nothing else asked is numpy's hash table (slow on distinct
    integers, and its first call imports numpy.ma: ~10 ms of every run's start-up):
    hopcap's code says `npsets.unique`."""
    import ast
    from pathlib import Path

    import hopcap

    found = []
    for path in sorted(Path(hopcap.__file__).parent.rglob("*.py")):
        if path.name == "npsets.py":  # (its own fallback for floats)
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "unique"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "np"
                and not node.keywords
            ):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []
