"""Where the project's shared real captures are: `shared/` beside the checkout (as CI lays
it out), or HOPCAP_REALDATA. Tests that use them fail, not skip, when they are missing."""

from __future__ import annotations

import os
from pathlib import Path

REALDATA = Path(
    os.environ.get(
        "HOPCAP_REALDATA", Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
    )
)
