"""A lab of its own for the lab tests (prefix hct, management 198.19.200.0/24), torn down
at the end of the session also when a test fails."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from hopcap import lab
from hopcap.errors import LabError
from tests import labnames

PREFIX = labnames.prefix("hct")
MGMT = labnames.mgmt("hct")
VIP_URL = "http://203.0.113.80"


def _require_lab() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root")
    try:
        lab.check_prerequisites()
    except LabError as e:
        pytest.fail(f"lab prerequisites missing: {e} ({e.hint})")


@pytest.fixture(scope="session")
def hct() -> Iterator[lab.LabInfo]:
    _require_lab()
    try:
        yield lab.up(PREFIX, mgmt_net=MGMT)
    finally:
        lab.down(PREFIX)


@pytest.fixture()
def clean(hct: lab.LabInfo) -> Iterator[lab.LabInfo]:
    """The lab with no fault, before and after the test."""
    lab.fault_clear(PREFIX)
    try:
        yield hct
    finally:
        lab.fault_clear(PREFIX)


def curl(path: str = "/", *, timeout: float = 5, out: str = "/dev/null") -> tuple[int, str]:
    """curl from the client through the VIP: (curl exit code, HTTP status or "000")."""
    proc = lab.ns_run(
        PREFIX,
        "client",
        ["curl", "-s", "-o", out, "-m", f"{timeout:g}", "-w", "%{http_code}", VIP_URL + path],
        check=False,
        timeout=timeout + 5,
    )
    return proc.returncode, proc.stdout.strip()


def nft_counter(host: str, family: str = "inet", table: str = "hopcap_fault") -> int:
    """Sum of the packet counters of every rule of `table` on lab host `host`."""
    out = lab.ns_run(PREFIX, host, ["nft", "list", "table", family, table]).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))


def nstat(host: str, *names: str) -> dict[str, int]:
    out = lab.ns_run(PREFIX, host, ["nstat", "-asz", *names]).stdout
    values = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in names:
            values[parts[0]] = int(parts[1])
    return values


def ps_lines() -> list[str]:
    return subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True
    ).stdout.splitlines()
