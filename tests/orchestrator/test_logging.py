"""What the orchestrator leaves out is logged (and, for facts, noted in the bundle); the
CLI's -v and --log-file decide where the log goes."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopcap import cli
from hopcap.errors import CaptureError
from hopcap.orchestrator.run import Facts, _settled


def test_facts_that_fail_are_logged_and_noted(caplog: pytest.LogCaptureFixture) -> None:
    async def fails() -> Facts:
        raise CaptureError("fw: the CLI closed the session")

    async def works() -> Facts:
        return {"nstat": "IpInReceives 1 0.0\n"}, {}

    async def main() -> dict[str, Facts]:
        return await _settled(
            {"fw": asyncio.ensure_future(fails()), "lb": asyncio.ensure_future(works())},
            "facts after the window",
        )

    with caplog.at_level(logging.WARNING, logger="hopcap"):
        got = asyncio.run(main())
    assert got["lb"] == ({"nstat": "IpInReceives 1 0.0\n"}, {})
    assert got["fw"] == (
        {},
        {"facts": "facts after the window not collected: fw: the CLI closed the session"},
    )
    assert "fw: facts after the window not collected" in caplog.text


def test_log_options(tmp_path: Path) -> None:
    log_file = tmp_path / "hopcap.log"
    site = tmp_path / "missing.yml"
    try:
        res = CliRunner().invoke(
            cli.app, ["-v", "--log-file", str(log_file), "check", "-i", str(site)]
        )
        assert res.exit_code != 0 and "no such file" in res.output
        logging.getLogger("hopcap.orchestrator.run").debug("phase connect: 0.100 s")
        assert "DEBUG hopcap.orchestrator.run: phase connect: 0.100 s" in log_file.read_text()
        res = CliRunner().invoke(
            cli.app, ["--log-file", str(tmp_path / "no" / "x.log"), "check", "-i", str(site)]
        )
        assert res.exit_code != 0 and "cannot write the log" in res.output
    finally:
        for h in logging.getLogger("hopcap").handlers:
            h.close()
        logging.getLogger("hopcap").handlers.clear()
        logging.getLogger("hopcap").propagate = True


def test_the_log_file_holds_what_the_terminal_said_and_the_exit_status(tmp_path: Path) -> None:
    """`--log-file` of an unattended run (cron, a timer): what the user would have read on
    the terminal (progress, errors, the bundle) and the exit status, with times; it held
    only the phases' timings before. None of it is shown twice on the terminal."""
    import subprocess
    import sys

    log_file = tmp_path / "hopcap.log"
    site = tmp_path / "site.yml"
    site.write_text("hosts:\n  a: {address: 198.18.0.1, role: wizard, capture: [eth0]}\n")
    res = subprocess.run(
        [sys.executable, "-m", "hopcap", "-v", "--log-file", str(log_file), "run", "-i", str(site)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert res.returncode == 3, res.stderr
    problem = res.stderr.splitlines()[0]
    assert problem.startswith("hopcap: inventory has")
    lines = log_file.read_text().splitlines()
    assert any(line.endswith(f"INFO hopcap.shown: {problem}") for line in lines), lines
    assert lines[-1].endswith("INFO hopcap.shown: exit 3"), lines
    assert "hopcap.shown" not in res.stderr and res.stderr.count(problem) == 1
