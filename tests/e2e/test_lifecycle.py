"""The orchestrator's promises under faults: bounded captures, Ctrl-C, partial runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED, EXIT_PARTIAL
from tests.e2e.conftest import (
    HOPCAP,
    PREFIX,
    hopcap_run,
    interrupt_when_connected,
    inventory_variant,
    lab_processes,
    start_until_listening,
)

pytestmark = pytest.mark.lab


_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")


def _lab_tcpdumps() -> list[str]:
    """tcpdump processes inside any namespace of the e2e lab."""
    return lab_processes("tcpdump")


def _gone_within(seconds: float) -> list[str]:
    """Wait until no tcpdump runs in the lab (at most `seconds`); what still runs."""
    deadline = time.monotonic() + seconds
    while _lab_tcpdumps() and time.monotonic() < deadline:
        time.sleep(0.2)
    return _lab_tcpdumps()


def _start_until_listening(args: list[str], points: int) -> subprocess.Popen[str]:
    return start_until_listening([*HOPCAP, *args], points)


def test_controller_killed_leaves_nothing_running(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None})
    proc = _start_until_listening(
        ["run", "-i", str(inv), "--window", "5s", "--out", str(tmp_path / "b")], 6
    )
    running = _lab_tcpdumps()
    assert running, "captures should be running while hopcap runs"
    # this run's id, from its captures' file names (other runs' directories, such as a
    # recorder's with a bound of hours, are not this test's to wait for)
    m = re.search(r"/tmp/hopcap\.\d+\.([^./ ]+)\.", running[0])
    assert m, running[0]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # the connection's end stops them (the guards watch the command shells' feeders once a
    # second), well before their bound (window 5 s + grace 15 s)
    assert _gone_within(8) == []
    # the dirs the dead run left are removed by the next run once their bound has passed
    left = sorted(Path("/tmp").glob(f"hopcap.*.{m.group(1)}.*"))
    assert len(left) >= 2, "the killed run should have left its remote directories"
    # hopcap.<expiry>.<run>.<host>: the bound (window 5 s + grace 15 s + 30 s) is ahead
    assert all(int(p.name.split(".")[1]) > time.time() + 20 for p in left), left
    # the bound's passing, for one of them: its name (all a host's next run reads) says so
    aged, *kept = left
    aged = aged.rename(
        aged.with_name(re.sub(r"^hopcap\.\d+\.", f"hopcap.{int(time.time()) - 1}.", aged.name))
    )
    try:
        res = hopcap_run(inv, tmp_path / "b2", "--window", "1s", "--no-facts")
        assert res.code == 0, res.stderr
        assert not aged.exists(), "removed by the next run once its bound has passed"
        assert all(p.exists() for p in kept), "not before its bound (a recorder's may be hours)"
        assert list(Path("/tmp").glob(f"hopcap.*.{res.manifest['run_id']}.*")) == []
    finally:
        for p in kept:
            shutil.rmtree(p, ignore_errors=True)


def test_ctrl_c_stops_pulls_and_writes_an_interrupted_bundle(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None})
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "120s", "--out", str(out)], 6)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert time.monotonic() - t0 < 30, "Ctrl-C must not wait for the window"
    man = json.loads((out / "manifest.json").read_text())
    assert man["interrupted"] is True and man["complete"] is False
    assert all((out / p["file"]).exists() for p in man["points"])
    assert _lab_tcpdumps() == []
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


def test_unreachable_host_gives_partial_run_and_honest_bundle(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", srv={"port": 2222})
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == EXIT_PARTIAL, res.stderr
    man = res.manifest
    assert man["complete"] is False
    srv = next(p for p in man["points"] if p["host"] == "srv")
    assert "connection refused" in srv["error"]
    others = [p for p in man["points"] if p["host"] != "srv"]
    assert all(p["error"] is None and p["packets"] > 0 for p in others)
    gaps = res.findings("gap")
    assert gaps and any("srv" in " ".join(g["between"]) for g in gaps)
    assert res.findings("drop") == []


def test_missing_interface_is_a_failed_point_not_a_failed_run(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(
        clean_lab.inventory, tmp_path / "inv.yml", lb={"capture": ["eth0", "eth7"]}
    )
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == EXIT_PARTIAL, res.stderr
    assert "lb: no interface eth7" in res.stderr
    assert res.manifest["complete"] is False


def test_streaming_mode_writes_nothing_on_the_hosts(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    res = hopcap_run(clean_lab.inventory, tmp_path / "b", "--stream", "--no-facts")
    assert res.code == 0, res.stderr
    man = res.manifest
    assert man["complete"] is True
    for p in man["points"]:
        assert " -w - " in p["command"] and " -C " not in p["command"]
        # every packet tcpdump counted arrived over the channel, and the file is whole
        assert p["packets"] > 0 and p["packets"] == p["packets_in_file"]
    assert res.findings("drop", "inject", "rewrite") == []
    assert list(Path("/tmp").glob(f"hopcap.*.{man['run_id']}.*")) == []


def test_require_all_refuses_a_partial_run(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", srv={"port": 2222})
    res = hopcap_run(inv, tmp_path / "b", "--require-all")
    assert res.code == 1, res.stderr
    assert "not every host is ready and --require-all was given" in res.stderr
    assert "srv: connection refused" in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("! srv: connection refused") == 1, res.stderr  # said once
    assert "srv: srv:" not in res.stderr
    assert _lab_tcpdumps() == []


def test_second_ctrl_c_aborts_but_still_stops_the_captures(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None})
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "120s", "--out", str(out)], 6)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "aborting; stopping remote captures" in stderr
    assert "Traceback" not in stderr
    assert _lab_tcpdumps() == []
    assert not (out / "manifest.json").exists()  # aborted: no bundle pretends to be one


def test_connection_cut_mid_capture_stops_every_capture(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """The SSH connections drop while the captures run (the controller lives on): every
    tcpdump ends within seconds, not at its bound (window 120 s + grace), and the run
    ends with a clear error per point instead of hanging."""
    import asyncio

    from hopcap.inventory import load
    from hopcap.orchestrator.run import RunOptions, run_capture
    from hopcap.orchestrator.session import HostSession
    from hopcap.orchestrator.transport import SSHTransport

    inv = load(inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None}))
    seen: dict[str, object] = {}

    async def cut(_inv: object, sessions: dict[str, HostSession], *_: object) -> tuple[bool, None]:
        seen["before"] = _lab_tcpdumps()
        for s in sessions.values():
            assert isinstance(s.transport, SSHTransport)
            s.transport.conn.abort()
        t0 = time.monotonic()
        seen["left"] = await asyncio.to_thread(_gone_within, 10)
        seen["took"] = time.monotonic() - t0
        return True, None

    opts = RunOptions(out=tmp_path / "b", window_s=120, window_fn=cut, collect_facts=False)
    rec = asyncio.run(run_capture(inv, opts))
    assert len(seen["before"]) >= 6, seen  # type: ignore[arg-type]
    assert seen["left"] == [], seen
    assert seen["took"] < 5, seen  # type: ignore[operator]
    assert rec.complete is False and rec.errors
    assert all(c.error for c in rec.captures), [c.error for c in rec.captures]


def test_a_host_cut_off_mid_run_is_left_with_nothing_running(
    clean_lab: lab.LabInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The network to one host goes away during the window without a close (a firewall's
    rule, a failover): its sshd notices nothing for hours. Its command shell and its
    capture end by themselves once they have heard nothing from hopcap for the idle bound
    (here 6 s; hopcap says it is alive every second here, every 10 s for real): they
    stayed idle on the host until sshd gave up on the connection. The other hosts' shells,
    told they are alive, live on until the run closes them."""
    import asyncio

    from hopcap.inventory import load
    from hopcap.orchestrator import transport
    from hopcap.orchestrator.run import RunOptions, run_capture

    monkeypatch.setattr(transport, "SHELL_IDLE_S", 6.0)
    monkeypatch.setattr(transport, "ALIVE_EVERY_S", 1.0)
    inv = load(inventory_variant(clean_lab.inventory, tmp_path / "inv.yml", top={"repro": None}))
    ns = f"{PREFIX}-srv"
    cut = "table inet hopcap_cut { chain i { type filter hook input priority -10; tcp dport 22 drop; }; chain o { type filter hook output priority -10; tcp sport 22 drop; }; }"  # noqa: E501
    seen: dict[str, object] = {}

    async def window(*_: object) -> tuple[bool, None]:
        await asyncio.sleep(1)
        seen["shells"] = lab_processes("hopcap-job")
        subprocess.run(["ip", "netns", "exec", ns, "nft", cut], check=True)
        await asyncio.sleep(9)  # past the idle bound: the others said they are alive
        seen["later"] = lab_processes("hopcap-job")
        return True, None

    opts = RunOptions(out=tmp_path / "b", window_s=60, window_fn=window, collect_facts=False)
    try:
        rec = asyncio.run(run_capture(inv, opts))
        deadline = time.monotonic() + 10
        while (lab_processes("hopcap-job") or _lab_tcpdumps()) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = lab_processes("hopcap-job") + _lab_tcpdumps()
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "delete table inet hopcap_cut"])
    hosts = {line.split(":")[0] for line in seen["shells"]}  # type: ignore[attr-defined]
    assert hosts == {"client", "fw", "lb", "srv"}, seen
    # the cut host's shell and capture ended at the idle bound, the others' lived on
    assert {line.split(":")[0] for line in seen["later"]} == {"client", "fw", "lb"}, seen  # type: ignore[attr-defined]
    assert left == []
    (srv,) = [c for c in rec.captures if c.point.host == "srv"]
    # when and why (it said "cannot open a channel: SSH connection closed")
    assert re.search(
        r"the SSH connection was lost at \d\d:\d\d:\d\d UTC \(.*keepalive", srv.error or ""
    ), srv.error
    assert all(c.error is None for c in rec.captures if c.point.host != "srv")
    # what it captured is still there (its capture ended by its guard, the file whole: a
    # pcap, empty here: no traffic), and the warning says where and until when
    said = "\n".join(r.getMessage() for r in caplog.records)
    m = re.search(
        r"srv: (/tmp/hopcap\.\d+\.[^ ]+\.srv) not removed \(.*\): what it holds \(any capture "
        r"not pulled\) stays there until the next hopcap run there after \d{4}-\d\d-\d\d ",
        said,
    )
    assert m, said
    try:
        (left_pcap,) = Path(m.group(1)).glob("eth0.pcap*")
        assert left_pcap.read_bytes()[:4] in _PCAP_MAGICS
    finally:
        shutil.rmtree(m.group(1), ignore_errors=True)


def test_a_repro_longer_than_the_window_is_ended_on_its_host(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """A repro still running when the window ends (a load generator, a slow download) is
    ended on its host with what it started: it went on after hopcap's end before (and, in
    scheduled windows, into the next window)."""
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": "sleep 97; echo late"}},
    )
    res = hopcap_run(inv, tmp_path / "b", "--window", "3s", "--no-facts")
    assert res.code == 0, res.stderr
    error = res.manifest["repro"]["error"]
    assert error == "client: `sleep 97; echo late` did not finish within the window (3s): ended it"
    assert "! client: `sleep 97; echo late` did not finish" in res.stderr  # the host once
    deadline = time.monotonic() + 2
    while lab_processes("sleep 97") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes("sleep 97") == []
    assert not list(Path("/tmp").glob("hopcap-repro.*"))


def test_ctrl_c_during_the_repro_ends_it_on_its_host(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(
        clean_lab.inventory,
        tmp_path / "inv.yml",
        top={"repro": {"on": "client", "run": "sleep 98"}},
    )
    out = tmp_path / "b"
    proc = _start_until_listening(["run", "-i", str(inv), "--window", "60s", "--out", str(out)], 6)
    deadline = time.monotonic() + 10
    while not lab_processes("sleep 98") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab_processes("sleep 98"), "the repro should run"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert json.loads((out / "manifest.json").read_text())["repro"]["error"] == "interrupted"
    time.sleep(0.5)
    assert lab_processes("sleep 98") == []
    assert _lab_tcpdumps() == []


def test_ctrl_c_while_connecting_starts_no_capture_and_no_repro(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """Ctrl-C while a host does not answer yet: the run ends at once (it waited for the
    host's connect timeout, then armed every capture, ran the repro and wrote a bundle)."""
    out = tmp_path / "b"
    with socket.socket() as silent:  # accepts the connection, never says its SSH banner
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        inv = inventory_variant(
            clean_lab.inventory,
            tmp_path / "inv.yml",
            top={"repro": {"on": "client", "run": "sleep 96"}},
            srv={"address": "127.0.0.1", "port": silent.getsockname()[1]},
        )
        proc = subprocess.Popen(
            [
                *HOPCAP,
                "--log-file",
                str(tmp_path / "log"),
                "run",
                "-i",
                str(inv),
                "--out",
                str(out),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = interrupt_when_connected(proc, 3, out)
    assert "repro on" not in stderr, stderr
    assert _lab_tcpdumps() == [] and lab_processes("sleep 96") == []
    # the log says what the terminal said, and how the run ended
    log = (tmp_path / "log").read_text()
    for line in ("connected client", "before any capture started"):
        assert "INFO hopcap.shown: " in log and line in log, log
    assert log.rstrip().endswith("INFO hopcap.shown: exit 130"), log
