"""The transport of a `connection: local` host, with real commands on this machine."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hopcap.errors import TransportError
from hopcap.orchestrator.facts import clock_offset
from hopcap.orchestrator.local import LocalTransport


def test_environment_has_no_ssh_session_and_no_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "192.0.2.7 5000 192.0.2.8 22")
    monkeypatch.setenv("HOPCAP_T_PW", "s3cret")
    monkeypatch.setenv("HOPCAP_T_OTHER", "kept")
    t = LocalTransport("me", hide=["HOPCAP_T_PW"])
    res = asyncio.run(
        t.run('echo "${SSH_CONNECTION-none} ${HOPCAP_T_PW-none} ${HOPCAP_T_OTHER-none}"')
    )
    assert res.ok and res.stdout.strip() == "none none kept"


def test_run_reports_status_signal_and_input() -> None:
    t = LocalTransport("me")

    async def go() -> tuple[object, ...]:
        a = await t.run("cat; echo err >&2; exit 3", input="in\n")
        b = await t.run("kill -TERM $$")
        return a, b

    a, b = asyncio.run(go())
    assert (a.exit_status, a.stdout, a.stderr) == (3, "in\n", "err\n")  # type: ignore[attr-defined]
    assert (b.exit_status, b.exit_signal) == (None, "TERM")  # type: ignore[attr-defined]


def test_a_command_that_overruns_is_ended_with_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    t = LocalTransport("me")
    with pytest.raises(TransportError, match=r"did not finish in 0.5s"):
        asyncio.run(t.run(f"sleep 60 & echo $! > {pidfile}; wait", timeout=0.5))
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_spawn_stdin_stdout_to_and_get(tmp_path: Path) -> None:
    t = LocalTransport("me")
    out = tmp_path / "stream.bin"
    copy = tmp_path / "copy.bin"
    seen: list[tuple[int, int]] = []

    async def go() -> None:
        p = await t.spawn(
            "echo armed >&2; read go; head -c 3000000 /dev/zero", stdin=True, stdout_to=out
        )
        assert await p.readline_stderr() == "armed\n"
        p.write("go\n")
        res = await p.wait(timeout=10)
        assert res.exit_status == 0 and res.stderr == "armed\n"
        await t.get(str(out), copy, progress=lambda d, n: seen.append((d, n)))

    asyncio.run(go())
    assert out.stat().st_size == 3_000_000 and copy.read_bytes() == out.read_bytes()
    assert seen[-1] == (3_000_000, 3_000_000) and len(seen) >= 3


def test_get_of_a_missing_file_is_a_transport_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot copy"):
        asyncio.run(LocalTransport("me").get(str(tmp_path / "none"), tmp_path / "x"))


def test_the_local_clock_is_the_controllers() -> None:
    assert asyncio.run(clock_offset(LocalTransport("me"))) == (0.0, 0.0)


def test_commands_run_in_a_session_of_their_own() -> None:
    res = asyncio.run(LocalTransport("me").run("ps -o sid= -p $$"))
    assert int(res.stdout) != os.getsid(0)
