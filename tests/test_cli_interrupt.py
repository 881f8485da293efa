"""Ctrl-C after a run's captures are pulled (while correlating, while writing the bundle):
what was pulled is kept, the user is told, exit 130. The signal is real (SIGINT sent to
this process at that moment); the run is the bundle tests' scenario (scapy-written pcaps
of three hosts, facts, a repro)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import typer

from hopcap import cli
from hopcap.errors import EXIT_INTERRUPTED
from tests.bundle.bundle_scenario import build_pcaps, make_run


def _ctrl_c_during(monkeypatch: pytest.MonkeyPatch, name: str, presses: int = 1) -> None:
    """`cli.<name>` gets SIGINT (`presses` times) as it starts, then does its work."""
    real = getattr(cli, name)

    def pressed(*args: Any, **kwargs: Any) -> Any:
        for _ in range(presses):
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, name, pressed)


def _correlate_and_write(record: Any, out: Path) -> Any:
    try:
        return cli._correlate_and_write(record, out, tarball=False, anonymise=False)
    except KeyboardInterrupt:  # what typer turns into a silent exit 130
        pytest.fail("the Ctrl-C escaped: the user is told nothing, the bundle is cut short")


def test_ctrl_c_while_correlating_keeps_the_run_in_a_bundle_without_a_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    build_pcaps(out / "pcaps")
    record = make_run(out / "pcaps")
    _ctrl_c_during(monkeypatch, "_correlate_run")
    with pytest.raises(typer.Exit) as done:
        _correlate_and_write(record, out)
    assert done.value.exit_code == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "correlation interrupted" in err and f"hopcap correlate {out}" in err
    # the run's record (commands, times, repro, facts) is in the manifest, not lost
    man = json.loads((out / "manifest.json").read_text())
    assert man["run_id"] == record.run_id and man["repro"]["exit_status"] == 28
    assert len(man["points"]) == 4 and all((out / p["file"]).exists() for p in man["points"])
    assert (out / "facts").is_dir()
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["flows"] == []
    assert any("correlation interrupted" in w for w in verdict["warnings"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_while_writing_the_bundle_finishes_it_and_a_second_aborts_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    build_pcaps(out / "pcaps")
    record = make_run(out / "pcaps")
    import hopcap.bundle

    real = hopcap.bundle.write_bundle

    def write(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(hopcap.bundle, "write_bundle", write)
    verdict, crash, final = _correlate_and_write(record, out)
    assert crash is None and final == out and verdict.flows
    assert "finishing the bundle" in capsys.readouterr().err
    assert json.loads((out / "verdict.json").read_text())["flows"]

    out2 = tmp_path / "b2"
    build_pcaps(out2 / "pcaps")

    def write_twice(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(hopcap.bundle, "write_bundle", write_twice)
    with pytest.raises(typer.Exit) as done:
        _correlate_and_write(make_run(out2 / "pcaps"), out2)
    assert done.value.exit_code == EXIT_INTERRUPTED
    assert f"aborted while writing the bundle: {out2} is incomplete" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_first_ctrl_c_of_a_run_says_what_it_does_in_each_phase(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It said "stopping captures and pulling what exists" also while connecting (no
    capture listened yet) and after the window (the captures had stopped: it changed
    nothing, the run ended with exit 0)."""
    from hopcap.orchestrator.session import Event

    progress = cli._Progress()
    try:
        assert "ends before its window" in cli._run_first_press(progress)
        progress(Event("listening", point="fw:eth0"))
        assert cli._run_first_press(progress).startswith("stopping captures and pulling")
        progress(Event("stopping", text="6 captures"))
        assert "the captures have stopped already" in cli._run_first_press(progress)
    finally:
        progress.close()
    progress = cli._Progress()
    try:
        assert "the recording ends before it starts" in cli._record_first_press(progress)
        progress(Event("listening", point="fw:eth0"))
        assert "keeping the last --ring" in cli._record_first_press(progress)
    finally:
        progress.close()
    capsys.readouterr()


def test_an_aborted_run_says_its_directory_is_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two Ctrl-C during the pull: the directory keeps the captures pulled so far, some cut
    short, without a manifest; the user is told it is not a bundle (it only said
    "aborted; remote captures were stopped")."""
    import asyncio

    out = tmp_path / "b"

    async def start(progress: object, stop: asyncio.Event) -> str:
        (out / "pcaps").mkdir(parents=True)
        (out / "pcaps" / "fw_eth0.pcap").write_bytes(b"\xd4\xc3\xb2\xa1")  # a pull cut short
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(0.15, os.kill, os.getpid(), signal.SIGINT)
        await asyncio.sleep(5)
        return "a record"

    with pytest.raises(typer.Exit) as got:
        cli._with_sigint(start, "stopping ...", out)
    assert got.value.exit_code == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "hopcap: aborted; remote captures were stopped" in err
    assert f"{out} is no bundle: it holds only the captures pulled until then" in err


def test_ctrl_c_in_a_command_without_its_own_handling_says_interrupted(tmp_path: Path) -> None:
    """typer turns a KeyboardInterrupt into a silent exit 130 (`hopcap correlate` of large
    captures, `report`, ...): the user is told (README: 130 interrupted)."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "import hopcap.bundle\n"
        "def slow(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    raise AssertionError('not interrupted')\n"
        "hopcap.bundle.render_report = slow\n"
        f"sys.argv = ['hopcap', 'report', {str(tmp_path)!r}]\n"
        "from hopcap.cli import main\n"
        "main()\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == EXIT_INTERRUPTED, res.stderr
    assert res.stderr.strip() == "hopcap: interrupted", res.stderr
