"""Set operations on integer columns, by sorting.

numpy >= 2.3 finds the distinct values of `np.unique(x)` (no index, inverse or counts
asked) with a hash table, and `np.isin`, `np.setdiff1d`, `np.union1d` call it. On arrays
of mostly distinct integers that table is 20-100x slower than sorting on this kind of
machine (4 M int64 codes: 3.9-6.6 s against 0.04-0.07 s sorted; 1 M: 0.77 s against
0.015 s; bench/npsets_bench.py). Linking the halves of an L7 proxy's lab bundle spent 3.9
of its 4.8 s in one such `np.isin`. These give the same results as numpy's functions
(sorted distinct values; membership as `==` compares) in O(n log n), whatever numpy does.

Arrays of another kind than integers or booleans go to numpy unchanged. And
`nearest_pairs`, which stands for every pair of two large sets alike but for time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_DIRECT = 1 << 16  # lookups made as they come up to this many


def _ints(x: npt.NDArray[Any]) -> bool:
    return x.dtype.kind in "iub"


def unique(x: npt.ArrayLike) -> npt.NDArray[Any]:
    """The sorted distinct values of `x`, flattened: `np.unique(x)`."""
    a = np.asarray(x)
    if not _ints(a):
        return np.unique(a)
    s = np.sort(a, axis=None)
    if s.shape[0] < 2:
        return s
    keep = np.empty(s.shape[0], bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_rows(cols: list[npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """The sorted distinct rows of the integer columns `cols` stacked side by side:
    `np.unique(np.stack(cols, axis=1), axis=0)` (rows in order of the first column, then
    the next...), sorted a column at a time from the last (stable but for the first
    sort: `np.lexsort`'s order) instead of as opaque records: 400 k rows of a flow, a
    direction and a hash 0.58 -> 0.08 s."""
    a = np.stack([np.asarray(c, np.int64) for c in cols], axis=1)
    if a.shape[0] < 2:
        return a
    o = np.argsort(a[:, -1])
    for j in range(a.shape[1] - 2, -1, -1):
        o = o[np.argsort(a[o, j], kind="stable")]
    a = a[o]
    keep = np.empty(a.shape[0], bool)
    keep[0] = True
    np.any(a[1:] != a[:-1], axis=1, out=keep[1:])
    return a[keep]


def isin(x: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Per element of `x` (same shape): is it one of `values`: `np.isin(x, values)`."""
    a, v = np.asarray(x), np.asarray(values)
    if not (_ints(a) and _ints(v)):
        return np.isin(a, v)
    common = np.promote_types(a.dtype, v.dtype)
    if not _ints(np.empty(0, common)):
        return np.isin(a, v)  # int64 with uint64: numpy compares them as floats
    a, v = a.astype(common, copy=False), v.astype(common, copy=False)
    if v.size == 0 or a.size == 0:
        return np.zeros(a.shape, bool)
    s = unique(v)
    if a.size <= _DIRECT:
        i = np.searchsorted(s, a)
        np.minimum(i, s.shape[0] - 1, out=i)
        found: npt.NDArray[np.bool_] = s[i] == a
        return found
    # many lookups: in their sorted order, each search starts where the last one ended
    # in memory already (random lookups in millions of values wait on the memory: 4 M
    # codes in 4 M values 3.7 s looked up as they come, 0.5 s sorted first)
    flat = a.ravel()
    order = np.argsort(flat)
    q = flat[order]
    i = np.searchsorted(s, q)
    np.minimum(i, s.shape[0] - 1, out=i)
    out = np.empty(flat.shape[0], bool)
    out[order] = s[i] == q
    return out.reshape(a.shape)


def setdiff(x: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[Any]:
    """The sorted distinct values of `x` not in `values`: `np.setdiff1d(x, values)`."""
    u = unique(x)
    return u[~isin(u, values)]


def union(x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[Any]:
    """The sorted distinct values in either: `np.union1d(x, y)`."""
    a, b = np.asarray(x).ravel(), np.asarray(y).ravel()
    return unique(np.concatenate([a, b]))


def nearest_pairs(
    xs: npt.NDArray[np.int64],
    tx: npt.NDArray[np.int64],
    ys: npt.NDArray[np.int64],
    ty: npt.NDArray[np.int64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(x, y) pairs: each x (at time tx) with the k ys before and the k after its time,
    and each y with its nearest xs alike (repeats possible): what stands for the m * n
    pairs of items that nothing but time tells apart."""
    out_x, out_y = [], []
    for us, tu, vs, tv, flip in ((xs, tx, ys, ty, False), (ys, ty, xs, tx, True)):
        o = np.argsort(tv, kind="stable")
        p = np.searchsorted(tv[o], tu)
        q = p[:, None] + np.arange(-k, k, dtype=np.int64)[None, :]
        ok = (q >= 0) & (q < vs.shape[0])
        u = np.broadcast_to(us[:, None], q.shape)[ok]
        v = vs[o[q[ok]]]
        out_x.append(v if flip else u)
        out_y.append(u if flip else v)
    return np.concatenate(out_x), np.concatenate(out_y)


def groups(x: npt.NDArray[Any], keys: npt.NDArray[Any]) -> list[npt.NDArray[np.int64]]:
    """For each of the sorted `keys`, the indices of the elements of `x` equal to it, in
    order (one sort, not a pass over `x` per key)."""
    o = np.argsort(x, kind="stable")
    s = x[o]
    lo = np.searchsorted(s, keys, "left").tolist()
    hi = np.searchsorted(s, keys, "right").tolist()
    return [o[i:j] for i, j in zip(lo, hi, strict=True)]
