from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hopcap.inventory import load
from hopcap.model import Inventory


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name="site.yml") -> path of a new inventory file."""

    def _write(text: str | bytes, name: str = "site.yml") -> Path:
        p = tmp_path / name
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write


@pytest.fixture
def load_text(write: Callable[..., Path]) -> Callable[..., Inventory]:
    def _load(text: str, name: str = "site.yml", **kw: object) -> Inventory:
        return load(write(text, name), **kw)  # type: ignore[arg-type]

    return _load
