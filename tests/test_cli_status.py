"""The progress lines of a long correlation on stderr: replaced in place on a terminal, one
line each elsewhere, and never left under what comes next."""

from __future__ import annotations

import io

import pytest

from hopcap import cli


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_replace_each_other_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    err = _Tty()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("COLUMNS", "30")
    cli._status("slice 1/3: findings")
    cli._status("slice 2/3: findings, and a long tail that the terminal cannot hold")
    cli._err("hopcap: warning: something")  # a log line ends the progress line first
    cli._status_end()  # nothing left open: writes nothing
    out = err.getvalue()
    assert out == (
        "\r\x1b[Khopcap: slice 1/3: findings"
        "\r\x1b[Khopcap: slice 2/3: findings, "  # cut to the 30 columns, less one
        "\r\x1b[K"
        "hopcap: warning: something\n"
    ), repr(out)
    assert cli._status_open is False


def test_progress_lines_are_lines_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli._status("slice 1/2: findings")
    cli._status("slice 2/2: findings")
    cli._status_end()
    assert capsys.readouterr().err == "hopcap: slice 1/2: findings\nhopcap: slice 2/2: findings\n"
