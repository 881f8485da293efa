"""Where the real captures the tests use are: `tests/data/` in the repository (origin and
licence of each in tests/data/PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

REALDATA = Path(__file__).resolve().parent / "data"
