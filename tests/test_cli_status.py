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
    monkeypatch.setattr(cli, "_status_last", -cli.STATUS_EVERY_S)
    cli._status("slice 1/2: findings")
    cli._status("slice 2/2: findings")
    cli._status_end()
    assert capsys.readouterr().err == "hopcap: slice 1/2: findings\nhopcap: slice 2/2: findings\n"


def test_progress_into_a_log_is_a_line_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sliced run says two lines a slice; into a file or a CI log that is thousands of
    lines: one every STATUS_EVERY_S seconds is written, and the last step of a count."""
    clock = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cli, "_status_last", -cli.STATUS_EVERY_S)
    for i in range(1, 801):
        cli._status(f"slice {i}/800: matching")
        clock[0] += 1 / 64  # 64 lines a second (exact in binary)
        cli._status(f"slice {i}/800: findings")
        clock[0] += 1 / 64
    lines = capsys.readouterr().err.splitlines()
    # 25 seconds: the first line, one every 2 s after it (12), the last slice's two steps
    assert lines[0] == "hopcap: slice 1/800: matching"
    assert lines[-2:] == ["hopcap: slice 800/800: matching", "hopcap: slice 800/800: findings"]
    assert len(lines) == 1 + 12 + 2, lines
    assert lines[1] == "hopcap: slice 65/800: matching"  # 2.00 s after the first


def test_a_second_ctrl_c_aborts_even_when_the_run_swallowed_the_cancellation() -> None:
    """Two Ctrl-C: aborted (exit 130, no bundle after it), also when the cancellation
    never reached the run's caller (Python 3.11's wait_for returns a result that came in
    at the same moment as the cancellation, and drops the cancellation)."""
    import asyncio
    import contextlib
    import os
    import signal

    import pytest
    import typer

    from hopcap import cli
    from hopcap.errors import EXIT_INTERRUPTED

    async def start(progress: object, stop: asyncio.Event) -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        loop.call_later(0.15, os.kill, os.getpid(), signal.SIGINT)
        await stop.wait()  # the first: a graceful end
        with contextlib.suppress(asyncio.CancelledError):  # the second's, swallowed
            await asyncio.sleep(5)
        return "a record"

    with pytest.raises(typer.Exit) as got:
        cli._with_sigint(start, "stopping ...")
    assert got.value.exit_code == EXIT_INTERRUPTED


def test_progress_into_a_log_says_when_a_percentage_is_done(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writing the merged capture says its progress in percent: into a log, the lines
    within STATUS_EVERY_S of the first were dropped, the last one too, and the log ended
    on "merged.pcapng 15 %" (a bundle of the lab's 2,500 connections): the 100 % is
    always written, like the last step of a count."""
    monkeypatch.setattr(cli.time, "monotonic", lambda: 1000.0)
    monkeypatch.setattr(cli, "_status_last", -cli.STATUS_EVERY_S)
    for pct in (15, 40, 99, 100):
        cli._status(f"writing the bundle: merged.pcapng {pct} % (x of y of captures)")
    assert capsys.readouterr().err.splitlines() == [
        "hopcap: writing the bundle: merged.pcapng 15 % (x of y of captures)",
        "hopcap: writing the bundle: merged.pcapng 100 % (x of y of captures)",
    ]


def test_a_failure_names_its_host_once(capsys: pytest.CaptureFixture[str]) -> None:
    """A repro that outlived its window: "! client: client: `...` did not finish in 8s" (the
    transport's error names its host, and the line named it again)."""
    from hopcap.errors import TransportError
    from hopcap.orchestrator.session import Event

    progress = cli._Progress()
    late = TransportError("client", "`seq 2500 | xargs curl` did not finish in 8s")
    progress(Event("repro-failed", host="client", text=str(late)))
    progress(Event("capture-failed", host="fw", point="fw:eth1", text="fw: tcpdump exited 1"))
    progress(Event("failed", host="lb", text="connection refused"))
    progress.close()
    assert capsys.readouterr().err.splitlines() == [
        "  ! client: `seq 2500 | xargs curl` did not finish in 8s",
        "  ! fw:eth1: tcpdump exited 1",
        "  ! lb: connection refused",
    ]


def test_a_repro_repeated_until_it_fails_is_not_two_lines_a_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --until-fail` on a repro that takes 50 ms printed two lines a run (164 lines
    for 82 runs in 4 s) and never said which failed: the first run's lines, a count every
    STATUS_EVERY_S, and the run that failed."""
    from hopcap.orchestrator.session import Event

    now = [1000.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    progress = cli._Progress()
    cmd = "curl -sf http://203.0.113.80/"
    for n in range(1, 83):
        progress(Event("repro", host="client", text=f"{cmd} (run {n})", done=n))
        progress(Event("repro-done", host="client", text=f"exit {7 if n == 82 else 0}"))
        now[0] += 0.0625
    progress.close()
    assert capsys.readouterr().err.splitlines() == [
        f"  repro on client: {cmd} (run 1)",
        "  repro finished (exit 0)",
        "  repro on client: run 33, every run so far exit 0",
        "  repro on client: run 65, every run so far exit 0",
        "  repro run 82 finished (exit 7)",
    ]
