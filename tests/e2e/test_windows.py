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
from hopcap.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PREFLIGHT
from tests.e2e.conftest import (
    HOPCAP,
    PREFIX,
    hopcap_cli,
    hopcap_run,
    inventory_variant,
    lab_processes,
)

pytestmark = pytest.mark.lab


def test_three_windows_write_three_bundles_and_a_summary(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    # the firewall drops the client's SYNs: every window sees it on the same segment
    lab.fault_apply("fw-drop-syn", PREFIX)
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": "curl -s -o /dev/null -m 2 http://203.0.113.80/"}},
    )
    out = tmp_path / "nightly"
    t0 = time.time()
    res = hopcap_cli(
        "run", "-i", str(inv), "--out", str(out), "--no-facts",
        "--at", "+5s", "--every", "5s", "--count", "3",
        timeout=240,
    )  # fmt: skip
    assert res.returncode == EXIT_OK, res.stderr
    windows = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name[:4] for p in windows] == ["w01-", "w02-", "w03-"]
    summary = json.loads((out / "windows.json").read_text())
    names = [w["name"] for w in summary["windows"]]
    assert names == [p.name for p in windows]
    starts = []
    for w, d in zip(summary["windows"], windows, strict=True):
        man = json.loads((d / "manifest.json").read_text())
        assert man["complete"] is True and w["status"] == "ok"
        assert w["broken_flows"] >= 1 and w["repro_exit_status"] == 28
        starts.append(man["started_ts"])
        assert (d / "verdict.json").exists() and (d / "merged.pcapng").exists()
    # the first window waited for --at; each later one started no earlier than its slot
    assert starts[0] >= t0 + 4.5
    assert all(b - a >= 4.5 for a, b in itertools.pairwise(starts))
    first = summary["windows"][0]["scheduled_ts"]
    assert [w["scheduled_ts"] - first for w in summary["windows"]] == [0, 5, 10]
    # which window saw which finding, per segment of the path
    (seg,) = [s for s in summary["segments"] if s["between"] == ["fw:eth0", "fw:eth1"]]
    assert sorted(seg["windows"]) == names
    for name in names:
        assert {"kind": "drop", "direction": "c2s"}.items() <= seg["windows"][name][0].items()
    md = (out / "windows.md").read_text()
    assert "| fw:eth0 -> fw:eth1 | " + " | ".join(["drop c2s (1 flow)"] * 3) + " |" in md
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
        # it ran, and ended the repro at once, before
        (["run", "--window", "0"], "hopcap: --window 0: must be longer than 0"),
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


def _counting_repro(tmp_path: Path, fail_at: int) -> str:
    """A repro that fetches / and exits 1 on its `fail_at`-th run (0: never fails); it
    lingers half a second so that its connection has closed when the next run starts."""
    counter = tmp_path / "runs"
    return (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; "
        "curl -s -o /dev/null -m 3 http://203.0.113.80/; sleep 0.5; "
        f'[ "$n" -ne {fail_at} ]'
    )


def test_repeat_runs_the_repro_n_times_in_one_window(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": _counting_repro(tmp_path, 0)}},
    )
    res = hopcap_run(inv, tmp_path / "b", "--repeat", "3", "--no-facts")
    assert res.code == EXIT_OK, res.stderr
    repro = res.manifest["repro"]
    assert [r["exit_status"] for r in repro["runs"]] == [0, 0, 0]
    assert len(res.verdict["flows"]) == 3  # one connection per run, all in one bundle


def test_until_fail_keeps_only_the_failing_run(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": _counting_repro(tmp_path, 3)}},
    )
    res = hopcap_run(inv, tmp_path / "b", "--until-fail", "--window", "60s", "--no-facts")
    assert res.code == EXIT_OK, res.stderr
    repro = res.manifest["repro"]
    assert [r["exit_status"] for r in repro["runs"]] == [0, 0, 1]
    assert repro["failed_run"] == 3 and repro["exit_status"] == 1
    assert repro["kept"] == "captures cut to run 3 of 3"
    # the terminal says which run failed, and the runs that passed in no more than a count
    assert "the repro failed: captures cut to run 3 of 3" in res.stderr, res.stderr
    assert "  repro run 3 finished (exit 1)" in res.stderr, res.stderr
    assert "(run 2)" not in res.stderr, res.stderr
    # the captures were cut to the third run: its connection alone is in the bundle
    assert len(res.verdict["flows"]) == 1
    third = repro["runs"][2]
    for p in res.manifest["points"]:
        assert 0 < p["packets_in_file"] < p["packets"]
    flow = res.verdict["flows"][0]
    assert third["started_ts"] - 2 <= flow["first_ts"] <= third["finished_ts"] + 2


def test_a_window_without_a_failure_keeps_no_captures(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": _counting_repro(tmp_path, 0)}},
    )
    out = tmp_path / "w"
    res = hopcap_cli(
        "run", "-i", str(inv), "--out", str(out), "--no-facts",
        "--at", "+1s", "--until-fail", "--window", "4s",
        timeout=120,
    )  # fmt: skip
    assert res.returncode == EXIT_OK, res.stderr
    (w,) = json.loads((out / "windows.json").read_text())["windows"]
    assert w["status"] == "discarded" and w["repro_runs"] >= 1
    assert w["note"] == f"no failure in {w['repro_runs']} runs; captures discarded"
    assert sorted(p.name for p in out.iterdir()) == ["windows.json", "windows.md"]


def test_ctrl_c_during_a_window_ends_it_as_today_and_the_schedule(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None})
    out = tmp_path / "w"
    args = ["-i", str(inv), "--out", str(out), "--no-facts", "--window", "120s"]
    proc = subprocess.Popen(
        [*HOPCAP, "run", *args, "--at", "+1s", "--every", "30s", "--count", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    listening = 0
    deadline = time.monotonic() + 60
    while listening < 6 and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        listening += line.strip().startswith("listening ")
    assert listening == 6
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "schedule stopped after 1 window(s)" in stderr
    (w,) = json.loads((out / "windows.json").read_text())["windows"]
    assert w["status"] == "interrupted"
    man = json.loads((out / w["name"] / "manifest.json").read_text())
    assert man["interrupted"] is True and all(
        (out / w["name"] / p["file"]).exists() for p in man["points"]
    )
    assert "window 1: interrupted" in stdout


def test_a_repro_longer_than_its_window_does_not_run_into_the_next(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """Each window's repro is ended on its host when the window ends (the pool keeps the
    connections open across windows: the repro went on, into the next window and after
    hopcap's end)."""
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": "sleep 95"}},
    )
    out = tmp_path / "w"
    res = hopcap_cli(
        "run", "-i", str(inv), "--out", str(out), "--no-facts", "--window", "2s",
        "--every", "3s", "--count", "2",
        timeout=120,
    )  # fmt: skip
    assert res.returncode == EXIT_OK, res.stderr
    for w in sorted(out.glob("w0*")):
        repro = json.loads((w / "manifest.json").read_text())["repro"]
        assert repro["error"].endswith("did not finish within the window (2s): ended it"), repro
    time.sleep(0.5)
    assert lab_processes("sleep 95") == []


def test_a_host_down_before_the_first_window_is_named_once(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", srv={"port": 2222})
    res = hopcap_cli(
        "run", "-i", str(inv), "--out", str(tmp_path / "w"), "--at", "+1m", timeout=60
    )  # fmt: skip
    assert res.returncode == EXIT_PREFLIGHT, res.stderr
    assert "a host is not ready (checked before the first window):\n  srv: connection refused" in (
        res.stderr
    )
    assert "srv: srv:" not in res.stderr
