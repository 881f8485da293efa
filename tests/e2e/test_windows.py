"""Scheduled reproduction windows on the lab: `run --at/--every/--count`, the summary
across windows, Ctrl-C between windows, and bad values refused before anything starts."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED, EXIT_OK
from tests.e2e.conftest import HOPCAP, hopcap_cli

pytestmark = pytest.mark.lab


def test_three_windows_write_three_bundles_and_a_summary(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    out = tmp_path / "nightly"
    t0 = time.time()
    res = hopcap_cli(
        "run", "-i", str(clean_lab.inventory), "--out", str(out), "--no-facts",
        "--at", "+5s", "--every", "5s", "--count", "3",
        timeout=240,
    )  # fmt: skip
    assert res.returncode == EXIT_OK, res.stderr
    windows = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name[:4] for p in windows] == ["w01-", "w02-", "w03-"]
    summary = json.loads((out / "windows.json").read_text())
    assert [w["name"] for w in summary["windows"]] == [p.name for p in windows]
    starts = []
    for w, d in zip(summary["windows"], windows, strict=True):
        man = json.loads((d / "manifest.json").read_text())
        assert man["complete"] is True and w["status"] == "ok"
        assert w["flows"] >= 1 and w["repro_exit_status"] == 0
        starts.append(man["started_ts"])
        assert (d / "verdict.json").exists() and (d / "merged.pcapng").exists()
    # the first window waited for --at; each later one started no earlier than its slot
    assert starts[0] >= t0 + 4.5
    assert all(b - a >= 4.5 for a, b in itertools.pairwise(starts))
    assert [
        w["scheduled_ts"] - summary["windows"][0]["scheduled_ts"] for w in summary["windows"]
    ] == [0, 5, 10]
    md = (out / "windows.md").read_text()
    assert all(p.name in md for p in windows) and "No window saw a finding." in md
    assert "connecting to and checking every host before the window" in res.stderr
    assert res.stderr.index("every host is ready") < res.stderr.index("window 1/3 starts in")


def test_ctrl_c_between_windows_stops_cleanly(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    out = tmp_path / "w"
    proc = subprocess.Popen(
        [*HOPCAP, "run", "-i", str(clean_lab.inventory), "--out", str(out), "--at", "+10m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if not line or "starts in" in line:
            break
    assert re.search(r"window 1/1 starts in (10m00s|9m5\ds)", "".join(seen)), seen
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "schedule stopped after 0 window(s)" in stderr
    assert "Traceback" not in stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.is_dir()]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--at", "25:99"], "hopcap: --at 25:99: not a time of day"),
        (["run", "--at", "+1m", "--every", "0"], "hopcap: --every 0: must be longer than 0"),
        (["run", "--repeat", "0"], "hopcap: --repeat 0: must be at least 1"),
    ],
)
def test_bad_values_are_one_line_and_exit_3(
    clean_lab: lab.LabInfo, args: list[str], message: str
) -> None:
    res = hopcap_cli(args[0], "-i", str(clean_lab.inventory), *args[1:])
    assert res.returncode == 3, res.stderr
    assert res.stderr.strip().startswith(message)
    assert len(res.stderr.strip().splitlines()) == 1
    assert res.stdout == ""
