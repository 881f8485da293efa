"""The orchestrator over real SSH without the lab: asyncssh's server in this process (see
sshserver.py) runs each session's command on this machine. The client side is hopcap's own:
connecting, the command shells, probing, the clock, pulls and their verification, and
`run_capture`'s failure paths up to the captures."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hopcap.errors import CaptureError, TransportError
from hopcap.model import CapturePoint
from hopcap.orchestrator import run as run_module
from hopcap.orchestrator.capture import CaptureSpec, RunningCapture, ssh_exclusion
from hopcap.orchestrator.facts import clock_offset
from hopcap.orchestrator.run import RunOptions, run_capture
from hopcap.orchestrator.session import (
    HASH_TOOLS,
    HostSession,
    close_all,
    connect_all,
    no_events,
    probe,
)
from hopcap.orchestrator.transport import COMMAND_SHELLS, SSHTransport, connect
from tests.orchestrator.localtransport import path_without
from tests.orchestrator.sshserver import DamagingSFTP, Server, serve

NO_HASH_TOOL = HASH_TOOLS


@asynccontextmanager
async def _host(tmp: Path, server: Server) -> AsyncIterator[HostSession]:
    """One served host "a", connected with hopcap's transport (closed at the end)."""
    async with serve(tmp, a=server) as site:
        host = site.inventory(a="capture: [lo]").hosts["a"]
        s = HostSession(host, transport=await connect(host))
        try:
            yield s
        finally:
            await s.transport.close()  # type: ignore[union-attr]


def _t(s: HostSession) -> SSHTransport:
    assert isinstance(s.transport, SSHTransport)
    return s.transport


def test_short_commands_share_a_few_shells_and_keep_their_own_status(tmp_path: Path) -> None:
    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            ok = await t.run("echo out; echo err >&2")
            assert (ok.exit_status, ok.stdout, ok.stderr) == (0, "out\n", "err\n")
            three = await t.run("exit 3")
            assert three.exit_status == 3 and not three.ok
            bare = await t.run("printf 'no newline'")
            assert bare.stdout == "no newline"
            syntax = await t.run("echo (")  # a syntax error ends its own `sh -c` only
            assert syntax.exit_status == 2 and syntax.stderr
            stdin = await t.run("cat")  # stdin is /dev/null, not the shell's stream
            assert stdin.ok and stdin.stdout == ""
            assert (await t.run("echo still here")).stdout == "still here\n"
            assert srv.sessions == 1
            many = await asyncio.gather(*(t.run(f"sleep 0.2; echo {i}") for i in range(6)))
            assert [r.stdout for r in many] == [f"{i}\n" for i in range(6)]
            assert srv.sessions <= COMMAND_SHELLS

    asyncio.run(main())


def test_a_command_past_its_timeout_costs_its_shell_not_the_next_command(tmp_path: Path) -> None:
    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            with pytest.raises(TransportError, match=r"did not finish in 0\.3s"):
                await t.run("sleep 5", timeout=0.3)
            assert (await t.run("echo next")).stdout == "next\n"
            assert srv.sessions == 2  # the timed-out shell is never reused

    asyncio.run(main())


def test_clock_through_the_command_shell(tmp_path: Path) -> None:
    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            offset, error = await clock_offset(t)
            # the same clock on both sides: the offset is within the error bound
            assert error < 0.05 and abs(offset) <= error + 0.001
            assert srv.sessions == 1
            assert (await t.run("echo after")).stdout == "after\n"  # the shell is clean
            assert srv.sessions == 1

    asyncio.run(main())


@pytest.mark.parametrize("sftp", [True, False])
def test_probe_learns_the_pull_method_and_our_own_session(tmp_path: Path, sftp: bool) -> None:
    async def main() -> None:
        async with _host(tmp_path, Server(sftp=sftp)) as s:
            await probe(s)
            assert s.caps.pull == ("sftp" if sftp else "exec")
            assert s.caps.hash == "sha256sum"
            ours = s.transport.endpoints()  # type: ignore[union-attr]
            assert ours is not None
            # the filter excludes exactly this connection, as the host sees it
            assert ssh_exclusion(s.ssh_connection) == (
                f"not (tcp and host {ours[0]} and host {ours[2]} and port {ours[1]} "
                f"and port {ours[3]})"
            )
            assert "lo" in s.interfaces

    asyncio.run(main())


def _ring(remote: Path, transport: SSHTransport, *contents: bytes) -> RunningCapture:
    """A stopped capture whose ring files are `contents` (oldest first)."""
    remote.mkdir()
    spec = CaptureSpec(
        point=CapturePoint("a", "lo"),
        remote_dir=str(remote),
        filter="tcp",
        bound_s=5,
        ring_mb=1,
        sudo=False,
        drop_to_root=False,
    )
    for i, data in enumerate(contents):
        (remote / f"lo.pcap{i}").write_bytes(data)
    return RunningCapture(transport, spec)


CAPTURE = bytes(range(256)) * 64  # the pull does not parse what it pulls


@pytest.mark.parametrize(
    ("sftp", "tools", "damage"),
    [
        (True, True, 1),  # sha256sum on the host catches the damaged first transfer
        (True, False, 1),  # no hash tool: the second read (`cat`) catches it
        (False, False, 0),  # neither SFTP nor a hash tool: two reads over exec channels
    ],
)
def test_a_pull_is_always_verified(tmp_path: Path, sftp: bool, tools: bool, damage: int) -> None:
    async def main() -> None:
        path = None if tools else path_without(tmp_path, *NO_HASH_TOOL)
        async with _host(tmp_path, Server(sftp=sftp, path=path)) as s:
            await probe(s)
            assert (s.caps.hash is not None) == tools
            rc = _ring(tmp_path / "remote", s.transport, CAPTURE)  # type: ignore[arg-type]
            DamagingSFTP.damage = damage
            local, digest = await run_module._pull(rc, tmp_path / "a.pcap", no_events, s.caps)
            assert local.read_bytes() == CAPTURE
            assert digest == hashlib.sha256(CAPTURE).hexdigest()
            assert DamagingSFTP.damage == 0  # the damaged read did happen
            assert not list(tmp_path.glob("*.reread"))

    asyncio.run(main())


def test_a_pull_that_is_always_damaged_fails_after_the_retries(tmp_path: Path) -> None:
    async def main() -> None:
        path = path_without(tmp_path, *NO_HASH_TOOL)
        async with _host(tmp_path, Server(path=path)) as s:
            await probe(s)
            rc = _ring(tmp_path / "remote", s.transport, CAPTURE)  # type: ignore[arg-type]
            DamagingSFTP.damage = 1000
            with pytest.raises(CaptureError, match="a second read of the remote file differs"):
                await run_module._pull(rc, tmp_path / "a.pcap", no_events, s.caps)

    asyncio.run(main())


def test_collect_pulls_while_the_host_hashes_and_hashes_each_file_here_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host's digest of a large capture takes a while: the transfer does not wait for
    it (only the check does), and the local copy is hashed once, for the check and the
    record alike."""
    real = shutil.which("sha256sum")
    assert real is not None
    bin_dir = Path(path_without(tmp_path, "sha256sum"))
    out = tmp_path / "out"
    local = out / "pcaps" / "a_lo.pcap"
    waited = tmp_path / "waited"
    # the host's sha256sum waits (5 s at most) for the pull to begin: it does when the
    # transfer and the digest overlap, it never does when the transfer waits for it
    (bin_dir / "sha256sum").write_text(
        f"#!/bin/sh\nn=0\nwhile [ ! -e {local} ] && [ $n -lt 100 ]; do sleep 0.05; "
        f'n=$((n+1)); done\necho $n > {waited}\nexec {real} "$@"\n'
    )
    (bin_dir / "sha256sum").chmod(0o755)
    hashed: list[Path] = []
    digest = run_module._digest

    def counted(path: Path, algorithm: str) -> str:
        hashed.append(path)
        return digest(path, algorithm)

    monkeypatch.setattr(run_module, "_digest", counted)

    async def main() -> None:
        async with serve(tmp_path, a=Server(path=str(bin_dir))) as site:
            inv = site.inventory(a="capture: [lo]")
            run = run_module.CaptureRun(
                inv, RunOptions(out=out, collect_facts=False), no_events, None
            )
            run.sessions = await connect_all(inv, ["a"], no_events)
            s = run.sessions["a"]
            await probe(s)
            assert s.caps.hash == "sha256sum" and s.ok
            rc = _ring(tmp_path / "remote", s.transport, CAPTURE)  # type: ignore[arg-type]
            run.running["a:lo"] = rc
            run.pcaps.mkdir(parents=True)
            try:
                await run.collect()
            finally:
                await close_all(run.sessions)
            assert run.point_errors == {}
            assert run.pulled["a:lo"] == (local, hashlib.sha256(CAPTURE).hexdigest())
            assert local.read_bytes() == CAPTURE

    asyncio.run(main())
    assert int(waited.read_text()) < 100  # the pull began while the host was hashing
    assert hashed == [local]


def test_run_with_no_point_able_to_capture_names_every_reason(tmp_path: Path) -> None:
    async def main() -> None:
        no_tcpdump = path_without(tmp_path, "tcpdump")
        async with serve(tmp_path, a=Server(path=no_tcpdump), b=Server(), c=Server()) as site:
            # c: a BIG-IP's interface names on a host that is not one (`lo` exists)
            inv = site.inventory(a="capture: [lo]", b="capture: [nosuch0]", c="capture: [lo:nnnp]")
            with pytest.raises(CaptureError) as exc:
                await run_capture(inv, RunOptions(out=tmp_path / "out", run_id="inproc-none"))
            text = str(exc.value)
            assert text.startswith("no capture point could start")
            assert "a: tcpdump is not installed" in text
            assert "b: no interface nosuch0" in text
            assert "c: lo:nnnp: BIG-IP interface name(s)" in text
            assert "but the host is not an F5 BIG-IP" in text
            assert not list(Path("/tmp").glob("hopcap.*.inproc-none.*"))

    asyncio.run(main())


def test_require_all_stops_before_any_capture_when_a_host_is_unreachable(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        srv = Server()
        async with serve(tmp_path, a=srv) as site:
            inv = site.inventory(a="capture: [lo]", b="capture: [lo]")  # b: nothing listens
            opts = RunOptions(out=tmp_path / "out", run_id="inproc-all", require_all=True)
            with pytest.raises(CaptureError) as exc:
                await run_capture(inv, opts)
            assert "not every host is ready and --require-all was given" in str(exc.value)
            assert "b:" in str(exc.value)
            assert srv.sessions <= 2  # the probe's shell (and SFTP's try); no capture
            assert not list(Path("/tmp").glob("hopcap.*.inproc-all.*"))

    asyncio.run(main())


def test_background_jobs_report_through_the_shell_beside_short_commands(tmp_path: Path) -> None:
    """Jobs started in the command shell: their stderr comes to each job line by line (also
    when a line of theirs falls inside a command's unfinished line), their exit status at
    the end; the shell runs short commands meanwhile, with their own output; one session."""

    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            async with t.job_shell() as js:
                a, b = await js.start(
                    [
                        "for i in 1 2 3; do echo a$i >&2; sleep 0.1; done; exit 4",
                        "sleep 0.15; echo b1 >&2; echo not-stderr",
                    ]
                )
            # a command whose stderr line is unfinished while the jobs write theirs
            mixed = await t.run("printf 'err-' >&2; sleep 0.3; echo tail >&2; echo out")
            assert (mixed.stdout, mixed.stderr) == ("out\n", "err-tail\n")
            ra, rb = await a.wait(5), await b.wait(5)
            assert (ra.exit_status, ra.stderr) == (4, "a1\na2\na3\n")
            assert (rb.exit_status, rb.stderr) == (0, "b1\n")
            assert [await a.readline_stderr() for _ in range(4)] == ["a1\n", "a2\n", "a3\n", ""]
            assert (await t.run("echo after")).stdout == "after\n"
            assert srv.sessions == 1

    asyncio.run(main())


def test_go_reaches_a_job_at_once_while_the_shell_runs_a_command(tmp_path: Path) -> None:
    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            fifo = tmp_path / "job.go"
            async with t.job_shell() as js:
                (job,) = await js.start(
                    [f"exec 4<>{fifo}; echo armed >&2; read go <&4; echo got-$go >&2"],
                    before=f"mkfifo {fifo}",
                )
            assert await job.readline_stderr() == "armed\n"
            busy = asyncio.ensure_future(t.run("sleep 2; echo done"))
            await asyncio.sleep(0.2)  # the shell is in `sleep 2` now
            t0 = time.monotonic()
            js.go([str(fifo)])
            assert await job.readline_stderr() == "got-go\n"
            assert time.monotonic() - t0 < 1.0
            assert not busy.done()
            assert (await busy).stdout == "done\n"
            assert srv.sessions == 1

    asyncio.run(main())


def test_jobs_see_the_feeder_end_when_the_shell_input_ends(tmp_path: Path) -> None:
    """The feeder (whose pid `job_shell` gives) ends at the end of the channel's input,
    also while the shell is still running a command: a job watching it notices."""
    noticed = tmp_path / "noticed"

    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            async with t.job_shell() as js:
                await js.start(
                    [
                        f"while kill -0 {js.feed_pid}; do sleep 0.1; done 2>/dev/null; "
                        f"echo feeder-gone > {noticed}"
                    ]
                )
            busy = asyncio.ensure_future(t.run("sleep 3"))
            await asyncio.sleep(0.3)
            assert not noticed.exists()
            for shell in t._opened:
                shell.proc.stdin.write_eof()  # type: ignore[union-attr]
            t0 = time.monotonic()
            while not noticed.exists() and time.monotonic() - t0 < 2:
                await asyncio.sleep(0.05)
            assert noticed.read_text() == "feeder-gone\n"
            assert not busy.done()  # the shell's command still runs: the feeder did not wait
            busy.cancel()

    asyncio.run(main())


def test_a_timed_out_command_keeps_a_shell_that_holds_running_jobs(tmp_path: Path) -> None:
    """A command past its timeout ends its shell, unless jobs report through it: then the
    shell is only no longer used for commands, and the jobs still report."""

    async def main() -> None:
        srv = Server()
        async with _host(tmp_path, srv) as s:
            t = _t(s)
            async with t.job_shell() as js:
                (job,) = await js.start(["sleep 0.8; echo late >&2"])
            with pytest.raises(TransportError, match="did not finish"):
                await t.run("sleep 2", timeout=0.3)
            assert (await t.run("echo other")).stdout == "other\n"  # another shell
            res = await job.wait(5)
            assert res.stderr == "late\n" and res.exit_status == 0
            assert srv.sessions == 2

    asyncio.run(main())


def test_one_sftp_session_serves_the_probe_and_every_pull(tmp_path: Path) -> None:
    """A server running an external sftp-server starts it through the login's shell for
    every SFTP session: the probe's check and all the pulls share one; a failed transfer
    drops it and the next opens another."""

    async def main() -> None:
        files = []
        for i in range(3):
            f = tmp_path / f"remote{i}.bin"
            f.write_bytes(bytes([i]) * 100_000)
            files.append(f)
        async with _host(tmp_path, Server()) as s:
            t = _t(s)
            await probe(s)
            assert s.caps.pull == "sftp" and DamagingSFTP.opened == 1
            await asyncio.gather(
                *(t.get(str(f), tmp_path / f"got{i}") for i, f in enumerate(files))
            )
            assert [(tmp_path / f"got{i}").read_bytes() for i in range(3)] == [
                f.read_bytes() for f in files
            ]
            assert DamagingSFTP.opened == 1
            with pytest.raises(TransportError):
                await t.get(str(tmp_path / "nowhere"), tmp_path / "x")
            await t.get(str(files[0]), tmp_path / "again")
            assert DamagingSFTP.opened == 2

    asyncio.run(main())


def test_a_command_shell_that_ends_before_it_starts_leaves_no_stray_error(tmp_path: Path) -> None:
    """A command shell that ends before its feeder said its pid (here: no `sh` on the
    host's PATH; on a site, a shell opened as the connection closes) fails its command
    with a TransportError, and nothing else: no "Future exception was never retrieved"
    printed later on the user's terminal when the shell is collected."""
    stray: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: stray.append(str(ctx.get("exception"))))
        srv = Server(path=path_without(tmp_path, "sh"))
        async with _host(tmp_path, srv) as s:
            with pytest.raises(TransportError, match="command shell ended"):
                await _t(s).run("echo hello")
            del s
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stray == []


def test_a_scheduled_windows_pooled_connection_works_as_the_connection_it_keeps(
    tmp_path: Path,
) -> None:
    """Scheduled windows hand each window the pool's connection (`_Kept`, whose close
    leaves it open). The run chooses how a host works by its transport: with the pooled
    one, it ran every capture in a session of its own instead of the command shell, took
    the clock over a session a sample, and probed the pull as "direct" (SFTP), which a
    host without SFTP (dropbear) cannot serve: its captures could not be pulled."""
    from hopcap.orchestrator.capture import runs_in_shell
    from hopcap.orchestrator.schedule import SessionPool

    async def main() -> None:
        async with serve(tmp_path, a=Server(sftp=False)) as site:
            host = site.inventory(a="capture: [lo]").hosts["a"]
            pool = SessionPool()
            try:
                kept = await pool.connect(host, None)
                s = HostSession(host, transport=kept)
                await probe(s)
                assert s.caps.pull == "exec"  # was "direct"
                rc = _ring(tmp_path / "remote", kept, CAPTURE)  # type: ignore[arg-type]
                assert runs_in_shell(kept, rc.spec)  # a job of its command shell
                local, digest = await run_module._pull(rc, tmp_path / "a.pcap", no_events, s.caps)
                assert local.read_bytes() == CAPTURE
                assert digest == hashlib.sha256(CAPTURE).hexdigest()
                await kept.close()  # a window's end: the connection stays for the next
                assert (await (await pool.connect(host, None)).run("echo ok")).stdout == "ok\n"
            finally:
                await pool.close()

    asyncio.run(main())


def test_a_changed_host_key_is_not_told_to_be_appended(tmp_path: Path) -> None:
    """known_hosts trusts another key for the host (it was reinstalled, or someone is in
    the middle): that is not an unknown host, whose hint is to append the key it offers
    (`ssh-keyscan >> known_hosts`), which would trust whoever answers now."""
    import asyncssh

    from hopcap.errors import HostKeyError

    async def main() -> None:
        async with serve(tmp_path, a=Server()) as site:
            host = site.inventory(a="capture: [lo]").hosts["a"]
            real = site.known_hosts.read_text()
            other = asyncssh.generate_private_key("ssh-ed25519")
            port = site.servers["a"].port
            old = f"[127.0.0.1]:{port} {other.export_public_key().decode().strip()}\n"
            site.known_hosts.write_text(old)
            with pytest.raises(HostKeyError) as changed:
                await connect(host)
            assert "has CHANGED" in changed.value.message
            assert other.get_fingerprint("sha256") in changed.value.message  # the one trusted
            assert changed.value.hint is not None
            assert f"ssh-keygen -R [127.0.0.1]:{port}" in changed.value.hint
            site.known_hosts.write_text("")  # unknown: the hint to trust it stays
            with pytest.raises(HostKeyError) as unknown:
                await connect(host)
            assert "is not trusted" in unknown.value.message
            assert unknown.value.hint is not None and "ssh-keyscan" in unknown.value.hint
            site.known_hosts.write_text(real)
            await (await connect(host)).close()

    asyncio.run(main())


def test_importing_the_transport_prints_nothing() -> None:
    # cryptography 51 deprecates DSA and asyncssh 2.24 touches its classes on import: every
    # command that talks to hosts began its stderr with a CryptographyDeprecationWarning
    res = subprocess.run(
        [sys.executable, "-c", "import hopcap.orchestrator.transport"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
