"""Names of the labs the tests build, so that several checkouts can run their lab tests on
one machine at once: `HOPCAP_TEST_LAB_SUFFIX=3` turns prefix "hct" into "hct3" and moves
each management network to a /24 of its own (198.19.215-254.0/24, left for explicit
choices by `default_mgmt_net`). Unset (CI), the names are the plain ones."""

from __future__ import annotations

import os

_SUFFIX = os.environ.get("HOPCAP_TEST_LAB_SUFFIX", "")
if _SUFFIX and not (_SUFFIX.isdigit() and len(_SUFFIX) == 1):
    raise RuntimeError("HOPCAP_TEST_LAB_SUFFIX must be one digit")

# the labs that the tests build, each with its own slot for a management network
_SLOTS = {"hct": 0, "hcu": 1, "hce": 2, "hcf": 3}
_PLAIN = {"hct": 200, "hcu": 202, "hce": 210, "hcf": 212}


def prefix(base: str) -> str:
    """A lab prefix (or another machine-wide name, such as a user) of this checkout."""
    return base + _SUFFIX


# labs added later live in 198.18.240-250.0/24 (the lab's data networks are 198.18.1-2.0/24)
_EXTRA = {"hcr": 240}


def mgmt(base: str) -> str:
    """The management network of the lab `base`."""
    if base in _EXTRA:
        return f"198.18.{_EXTRA[base] + (int(_SUFFIX) + 1 if _SUFFIX else 0)}.0/24"
    if not _SUFFIX:
        return f"198.19.{_PLAIN[base]}.0/24"
    return f"198.19.{215 + 4 * int(_SUFFIX) + _SLOTS[base]}.0/24"
