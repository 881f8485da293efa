from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hopcap.correlate import _fastwalk


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"])
def compiled(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Each test twice: with the compiled helpers, and on the numpy paths alone."""
    if request.param and not _fastwalk.available():
        pytest.fail("no C compiler (install gcc): the compiled path cannot be checked")
    _fastwalk.disabled = not request.param
    yield request.param
    _fastwalk.disabled = False
