"""JSON output in time proportional to its size.

`dumps` encodes with orjson (C, one pass) in the layout of `json.dumps(obj, indent=2,
ensure_ascii=False)`: the same keys in the same order, the same values; a float below 1e-4
is written in decimal (`0.00008`) where the standard library wrote `8e-05`, which parses
to the same number. Objects orjson cannot encode (integers beyond 64 bits, non-string
keys) fall back to the standard library.

`write_verdict` writes a verdict's JSON (the bytes of `dumps(verdict.to_dict())`) without
building its tree of dicts first: orjson asks for each flow's, leg's and finding's dict as
it reaches it (`default`), which is then encoded while it is in the cache and dropped at
once; and the flows are encoded a few hundred at a time and written, so that neither
the dicts nor the output (17.7 MB for 11 k flows) are ever in memory whole (their fresh
pages cost as much as encoding them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, BinaryIO

from hopcap.model import Flow, Verdict, json_default

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep working without it
    orjson = None  # type: ignore[assignment]

FLOWS_PER_PIECE = 256  # ~400 KB of JSON: the pieces' memory is reused from one to the next


def dumps(obj: Any) -> bytes:
    """`obj` as indented JSON (UTF-8, no trailing newline)."""
    if orjson is not None:
        try:
            out: bytes = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
            return out
        except TypeError:
            pass
    return _std(obj)


def _std(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, ensure_ascii=False).encode()


# the flows' key in the verdict's object, one level in (a string's newline is escaped:
# these bytes are a key of the top object and nothing else)
_FLOWS_KEY = b'\n  "flows": '
_PIECE_HEAD = len(b'{\n  "flows": [')  # a piece: {"flows": [...]} less its ends
_PIECE_TAIL = len(b"\n  ]\n}")


def write_verdict(verdict: Verdict, out: BinaryIO) -> None:
    """`dumps(verdict.to_dict())` and a newline, written to `out` piece by piece."""
    top = verdict.json_dict()
    flows = top["flows"]
    top["flows"] = None
    head = dumps(top)
    at = head.index(_FLOWS_KEY) + len(_FLOWS_KEY)
    assert head[at : at + 4] == b"null"
    out.write(head[:at])
    if not flows:
        out.write(b"[]")
    else:
        out.write(b"[")
        for k in range(0, len(flows), FLOWS_PER_PIECE):
            if k:
                out.write(b",")
            out.write(flows_piece(flows[k : k + FLOWS_PER_PIECE]))
        out.write(b"\n  ]")
    out.write(head[at + 4 :])
    out.write(b"\n")


def flows_piece(flows: Sequence[Flow]) -> memoryview:
    """The JSON of `flows` as they stand in the verdict's "flows" list: each flow led by
    a newline and two levels of indentation, commas between them, no brackets (pieces
    joined by commas make the list's inside)."""
    if orjson is not None:
        try:
            text: bytes = orjson.dumps(
                {"flows": flows},
                default=json_default,  # (dataclasses passed through to it)
                option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS,
            )
            return memoryview(text)[_PIECE_HEAD:-_PIECE_TAIL]
        except TypeError:
            pass
    return memoryview(_std({"flows": [f.to_dict() for f in flows]}))[_PIECE_HEAD:-_PIECE_TAIL]
