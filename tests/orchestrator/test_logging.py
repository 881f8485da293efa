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
