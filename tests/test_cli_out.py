"""The bundle directory (`--out`) of `run` and `record`: checked before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hopcap import cli

# hosts that refuse at once (nothing listens on port 1 of the loopback)
SITE = """hosts:
  a: {address: 127.0.0.1, port: 1, role: client, capture: [lo]}
  b: {address: 127.0.0.1, port: 1, role: server, capture: [lo]}
"""


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--window", "1s"],
        ["run", "--at", "+1s", "--window", "1s"],
        ["record", "--ring", "5s", "--probe-every", "1s", "--until", "a: true"],
    ],
)
def test_an_unwritable_out_is_one_line_before_anything_starts(
    tmp_path: Path, args: list[str]
) -> None:
    """It was a traceback (FileNotFoundError, PermissionError) once every host had been
    connected and probed."""
    site = tmp_path / "site.yml"
    site.write_text(SITE)
    res = CliRunner().invoke(cli.app, [*args, "-i", str(site), "--out", "/proc/hopcap-no"])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "hopcap: cannot write the bundle in /proc/hopcap-no: " in res.output
    assert "connected" not in res.output and "! a:" not in res.output


def test_a_run_refused_before_capturing_leaves_no_empty_bundle_directory(tmp_path: Path) -> None:
    """No point could start: the directory it made is removed (an empty `pcaps/` was left);
    one the user made is kept."""
    site = tmp_path / "site.yml"
    site.write_text(SITE)
    out = tmp_path / "b"
    res = CliRunner().invoke(cli.app, ["run", "-i", str(site), "--out", str(out)])
    assert res.exit_code != 0 and "connection refused" in res.output, res.output
    assert not out.exists()
    out.mkdir()
    res = CliRunner().invoke(cli.app, ["run", "-i", str(site), "--out", str(out)])
    assert res.exit_code != 0 and out.is_dir() and not any(out.iterdir())


@pytest.mark.parametrize("command", [["run"], ["record", "--ring", "5s", "--until", "a: true"]])
def test_a_wrong_inventory_still_exits_3(tmp_path: Path, command: list[str]) -> None:
    res = CliRunner().invoke(cli.app, [*command, "-i", str(tmp_path / "no.yml")])
    assert res.exit_code == 3 and "no such file" in res.output, res.output
