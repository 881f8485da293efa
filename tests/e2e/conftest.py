"""A lab of its own for the end-to-end tests, torn down also when a test fails."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED
from tests import labnames

PREFIX = labnames.prefix("hce")
MGMT = labnames.mgmt("hce")
HOPCAP = [sys.executable, "-m", "hopcap"]


@pytest.fixture(scope="session")
def e2e_lab() -> Iterator[lab.LabInfo]:
    lab.check_prerequisites()
    try:
        info = lab.up(PREFIX, mgmt_net=MGMT)
        yield info
    finally:
        lab.down(PREFIX)


@pytest.fixture()
def clean_lab(e2e_lab: lab.LabInfo) -> Iterator[lab.LabInfo]:
    """The lab with no fault, also after the test."""
    lab.fault_clear(PREFIX)
    try:
        yield e2e_lab
    finally:
        lab.fault_clear(PREFIX)


@dataclass
class RunResult:
    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.out / "manifest.json").read_text())

    @property
    def verdict(self) -> dict[str, Any]:
        return json.loads((self.out / "verdict.json").read_text())

    def findings(self, *kinds: str) -> list[dict[str, Any]]:
        return [f for flow in self.verdict["flows"] for f in flow["findings"] if f["kind"] in kinds]


def hopcap_run(inventory: Path, out: Path, *extra: str, timeout: float = 180) -> RunResult:
    proc = subprocess.run(
        [*HOPCAP, "run", "--inventory", str(inventory), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return RunResult(proc.returncode, proc.stdout, proc.stderr, out)


def inventory_variant(
    base: Path, dest: Path, top: dict[str, Any] | None = None, **hosts: dict[str, Any]
) -> Path:
    """A copy of the lab's inventory with some host settings changed (None removes a key);
    `top` changes top-level keys the same way."""
    import yaml

    doc = yaml.safe_load(base.read_text())
    repro = doc.get("repro") or {}
    if True in repro:  # YAML 1.1 reads the key `on` as a boolean
        repro["on"] = repro.pop(True)
    for k, v in (top or {}).items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    for name, changes in hosts.items():
        for k, v in changes.items():
            if v is None:
                doc["hosts"][name].pop(k, None)
            else:
                doc["hosts"][name][k] = v
    dest.write_text(yaml.safe_dump(doc, sort_keys=False))
    return dest


def hopcap_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HOPCAP, *args], capture_output=True, text=True, timeout=timeout)


def start_until_listening(argv: list[str], points: int) -> subprocess.Popen[str]:
    """Start a hopcap run (`argv`, the whole command line) and return once `points` capture
    points reported listening."""
    import time

    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < points and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.strip().startswith("listening "):
            seen += 1
    assert seen == points, "not every point reported listening"
    return proc


def interrupt_when_connected(proc: subprocess.Popen[str], hosts: int, out: Path) -> str:
    """Ctrl-C to `proc` (hopcap run or record into `out`, stderr piped, one host that never
    answers) once it says it connected to `hosts` hosts: it ends at once (not after the
    silent host's 10 s connect timeout) saying so, starts no capture and writes nothing.
    What it wrote on stderr."""
    assert proc.stderr is not None
    seen: list[str] = []
    while len([x for x in seen if x.strip().startswith("connected ")]) < hosts:
        line = proc.stderr.readline()
        assert line, "".join(seen)
        seen.append(line)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    stderr = "".join(seen) + rest
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert took < 5, f"waited {took:.1f} s for the silent host's connect timeout (10 s)"
    assert "interrupted while connecting to the hosts, before any capture started" in stderr
    assert "listening" not in stderr, stderr
    assert not out.exists()
    return stderr


def lab_processes(word: str) -> list[str]:
    """Processes inside any namespace of the e2e lab whose command line has `word`."""
    found = []
    for host in ("client", "fw", "lb", "srv"):
        res = subprocess.run(
            ["ip", "netns", "pids", f"{PREFIX}-{host}"], capture_output=True, text=True
        )
        for pid in res.stdout.split():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if word in cmd:
                found.append(f"{host}: {cmd}")
    return found
