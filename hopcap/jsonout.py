"""JSON and text-table output in time proportional to its size.

`dumps` encodes with orjson (C, one pass) in the layout of `json.dumps(obj, indent=2,
ensure_ascii=False)`: the same keys in the same order, the same values; a float below 1e-4
is written in decimal (`0.00008`) where the standard library wrote `8e-05`, which parses
to the same number. Objects orjson cannot encode (integers beyond 64 bits, non-string
keys) fall back to the standard library.

`table` lays out rows like tabulate's "simple" format (numeric columns right-aligned,
two spaces between columns) with string operations per column, not per-cell parsing:
tabulate needs ~50 µs a row, which is most of a large verdict's output time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    orjson = None  # type: ignore[assignment]


def dumps(obj: Any) -> bytes:
    """`obj` as indented JSON (UTF-8, no trailing newline)."""
    if orjson is not None:
        try:
            out: bytes = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
            return out
        except TypeError:
            pass
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


def _kind(col: list[str]) -> str:
    """tabulate's rule for alignment: `int` (right), `float` (decimal point) or `str`."""
    kind = "str"
    for x in col:
        if not x:
            continue
        try:
            int(x)
            kind = "int" if kind in ("str", "int") else kind
        except ValueError:
            try:
                float(x)
            except ValueError:
                return "str"
            kind = "float"
    return kind


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Rows under headers, columns two spaces apart (tabulate's "simple" format)."""
    cols = [["" if r[i] is None else str(r[i]) for r in rows] for i in range(len(headers))]
    kinds = [_kind(col) for col in cols]
    if not rows or "float" in kinds:  # decimal alignment and empty tables: tabulate itself
        from tabulate import tabulate

        return tabulate(rows, headers=list(headers))
    lines_out: list[list[str]] = []
    for h, col, kind in zip(headers, cols, kinds, strict=True):
        w = max(max(map(len, col)), len(h) + 2)
        if kind == "int":
            lines_out.append([h.rjust(w), "-" * w, *(x.rjust(w) for x in col)])
        else:
            lines_out.append([h.ljust(w), "-" * w, *(x.ljust(w) for x in col)])
    return "\n".join("  ".join(parts).rstrip() for parts in zip(*lines_out, strict=True))
