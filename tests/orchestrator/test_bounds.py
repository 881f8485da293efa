"""A capture is bounded on the host itself whatever `timeout` the host has: BusyBox's
(which execs tcpdump and leaves a watchdog behind) or none at all (a shell watchdog).
Real tcpdump on `lo`, never stopped by the controller: it must end by itself at its bound
with SIGINT (so it prints its statistics), and leave no watchdog behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from hopcap.inventory import loads
from hopcap.model import CapturePoint
from hopcap.orchestrator.capture import CaptureSpec, RunningCapture, parse_stats
from hopcap.orchestrator.session import HostSession, probe
from tests.orchestrator.localtransport import LocalTransport, path_without

pytestmark = pytest.mark.lab  # needs root and tcpdump


def busybox_path(tmp: Path) -> str:
    """A PATH of BusyBox applets plus tcpdump, like a BusyBox router's."""
    d = tmp / "bb"
    d.mkdir()
    for applet in os.popen("busybox --list").read().split():
        (d / applet).symlink_to("/usr/bin/busybox")
    (d / "tcpdump").symlink_to(shutil.which("tcpdump") or "/usr/bin/tcpdump")
    return str(d)


def _mentioning(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmd:
            found.append(int(pid))
    return found


def _bounded_spec(host: str, remote: Path, timeout: str | None) -> CaptureSpec:
    """A capture on `lo` of `host` bounded at 2 s, into `remote`."""
    return CaptureSpec(
        point=CapturePoint(host, "lo"),
        remote_dir=str(remote),
        filter="tcp port 9",
        bound_s=2,
        ring_mb=1,
        sudo=False,
        drop_to_root=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("kind", ["busybox", "none"])
def test_capture_ends_by_itself_at_its_bound(tmp_path: Path, kind: str) -> None:
    path = busybox_path(tmp_path) if kind == "busybox" else path_without(tmp_path, "timeout")
    t = LocalTransport("h", path=path)
    remote = tmp_path / f"hopcap.bound.{kind}"
    remote.mkdir()

    async def main() -> tuple[str | None, str, float]:
        s = HostSession(loads(SITE, "site.yml").hosts["h"], transport=t)
        await probe(s)
        rc = RunningCapture(t, _bounded_spec("h", remote, s.caps.timeout))
        await rc.arm()
        rc.fire()
        await rc.until_listening()
        t0 = time.monotonic()
        assert rc.proc is not None
        res = await rc.proc.wait(timeout=15)  # nobody stops it: the bound does
        return s.caps.timeout, res.stderr, time.monotonic() - t0

    flavour, stderr, took = asyncio.run(main())
    assert flavour == ("busybox" if kind == "busybox" else None)
    assert 1.0 < took < 8, took
    assert parse_stats(stderr).captured is not None, stderr  # SIGINT: tcpdump said its stats
    # the watchdog (BusyBox's or the shell's) follows within about a second
    deadline = time.monotonic() + 3
    while _mentioning(str(remote)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _mentioning(str(remote)) == []


SITE = """
hosts:
  h: {address: 192.0.2.1, role: client, capture: [lo]}
path: [h]
"""


def test_a_run_on_a_host_without_timeout_completes_and_leaves_nothing(tmp_path: Path) -> None:
    from hopcap.orchestrator.run import RunOptions, run_capture
    from tests.orchestrator.localtransport import connector
    from tests.orchestrator.test_failures import inventory

    run_id = f"test-bounds-{os.getpid()}"
    transports = {
        "a": LocalTransport("a", path=path_without(tmp_path, "timeout")),
        "b": LocalTransport("b"),
    }
    opts = RunOptions(
        out=tmp_path / "b",
        run_id=run_id,
        connector=connector(transports),  # type: ignore[arg-type]
        collect_facts=False,
    )
    rec = asyncio.run(run_capture(inventory(), opts))
    assert rec.complete is True, rec.errors
    ca, cb = rec.captures
    assert "kill -INT $$" in ca.command and "timeout" not in ca.command
    assert "timeout -s INT -k 5" in cb.command
    assert ca.packets is not None and ca.pcap is not None
    assert list(Path("/tmp").glob(f"hopcap.*.{run_id}.*")) == []
    time.sleep(1.5)  # the shell watchdog polls once a second
    assert _mentioning(run_id) == []


@pytest.mark.parametrize("kind", ["busybox", "none"])
def test_a_capture_in_the_command_shell_ends_by_itself_at_its_bound(
    tmp_path: Path, kind: str
) -> None:
    """The same bound for a capture run as a job of the host's command shell over SSH
    (sshserver.py): BusyBox's `sh` and `timeout`, or no `timeout` (the guard is the bound)."""
    from hopcap.orchestrator.capture import ShellCapture, arm_in_shell
    from hopcap.orchestrator.transport import connect
    from tests.orchestrator.sshserver import Server, serve

    path = busybox_path(tmp_path) if kind == "busybox" else path_without(tmp_path, "timeout")
    remote = tmp_path / f"hopcap.shell-bound.{kind}"
    remote.mkdir()

    async def main() -> tuple[str | None, str, float, str]:
        async with serve(tmp_path, a=Server(path=path)) as site:
            host = site.inventory(a="capture: [lo]").hosts["a"]
            t = await connect(host)
            try:
                s = HostSession(host, transport=t)
                await probe(s)
                rc = ShellCapture(t, _bounded_spec("a", remote, s.caps.timeout))
                assert await arm_in_shell([rc]) == {}
                rc.fire()
                await rc.until_listening()
                t0 = time.monotonic()
                assert rc.proc is not None
                res = await rc.proc.wait(timeout=15)  # nobody stops it: the bound does
                took = time.monotonic() - t0
                # the shell still runs commands after its job
                assert (await t.run("echo still")).stdout == "still\n"
                return s.caps.timeout, res.stderr, took, rc.recorded_command()
            finally:
                await t.close()

    flavour, stderr, took, command = asyncio.run(main())
    assert flavour == ("busybox" if kind == "busybox" else None)
    assert ("timeout -s INT" in command) == (kind == "busybox"), command
    assert 1.0 < took < 8, took
    assert parse_stats(stderr).captured is not None, stderr  # tcpdump said its stats
    deadline = time.monotonic() + 3  # the guard follows within about a second
    while _mentioning(str(remote)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _mentioning(str(remote)) == []
