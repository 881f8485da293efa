"""JSON output in time proportional to its size.

`dumps` encodes with orjson (C, one pass) in the layout of `json.dumps(obj, indent=2,
ensure_ascii=False)`: the same keys in the same order, the same values; a float below 1e-4
is written in decimal (`0.00008`) where the standard library wrote `8e-05`, which parses
to the same number. Objects orjson cannot encode (integers beyond 64 bits, non-string
keys) fall back to the standard library.
"""

from __future__ import annotations

import json
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
