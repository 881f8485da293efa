"""Helpers shared by the inventory tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from hopcap.errors import InventoryError, Problem
from hopcap.inventory import load

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def problems_of(path: Path | str, **kw: object) -> tuple[Problem, ...]:
    """The problems `load(path)` reports (it must raise InventoryError)."""
    with pytest.raises(InventoryError) as ei:
        load(path, **kw)  # type: ignore[arg-type]
    return ei.value.problems
