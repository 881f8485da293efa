"""The flight recorder on the lab (real sshd, tcpdump, nftables): a fault switched on while
it records is caught by a probe and diagnosed; the watcher form fires on a log line; a
soak under steady traffic keeps the disk use on every host and the controller's memory
flat; bad values are refused with one line and exit 3."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hopcap import lab
from hopcap.errors import EXIT_INTERRUPTED, EXIT_OK
from tests.e2e.conftest import (
    HOPCAP,
    PREFIX,
    hopcap_cli,
    interrupt_when_connected,
    inventory_variant,
)

pytestmark = pytest.mark.lab

VIP = "http://203.0.113.80"
HOSTS = ("client", "fw", "lb", "srv")


class Recorder:
    """`hopcap record` in the background, started once every point listens."""

    def __init__(self, inventory: Path, out: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*HOPCAP, "record", "-i", str(inventory), "--out", str(out), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.head: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            self.head.append(line)
            if not line or line.strip().startswith("recording, ring"):
                break
        text = "".join(self.head)
        assert "\n  recording, ring" in text and "recording: recording" not in text, text
        m = re.search(r"record (\S+),", text)
        assert m, text
        self.run_id = m.group(1)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, "".join(self.head) + err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text())


def _leftovers(run_id: str) -> list[str]:
    """tcpdumps, pruners and watchers of the lab, and the run's remote directories."""
    found = [str(p) for p in Path("/tmp").glob(f"hopcap.*.{run_id}.*")]
    for host in HOSTS:
        pids = subprocess.run(
            ["ip", "netns", "pids", f"{PREFIX}-{host}"], capture_output=True, text=True
        ).stdout.split()
        for pid in pids:
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(x in cmd for x in ("tcpdump", "prune", "tail -n0 -F", "sleep 600")):
                found.append(f"{host}: {cmd}")
    return found


def test_probe_catches_a_syn_drop_switched_on_while_recording(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    probe = f"client: curl -sf -o /dev/null -m 2 {VIP}/"
    rec = Recorder(
        clean_lab.inventory, out, "--until", probe, "--probe-every", "1s",
        "--ring", "8s", "--post", "2s", "--max-duration", "90s",
    )  # fmt: skip
    try:
        time.sleep(4)  # a few good probes first
        switched = time.time()
        lab.fault_apply("fw-drop-syn", PREFIX)
        code, stdout, stderr = rec.finish()
    finally:
        rec.kill()
    assert code == EXIT_OK, stderr
    man = _manifest(out)
    trig = man["trigger"]
    assert (trig["host"], trig["mode"], trig["exit_status"]) == ("client", "probe", 28)
    assert trig["command"] == probe.partition(": ")[2]
    assert trig["probes"] >= 3 and trig["fired_ts"] > switched
    recd = man["recording"]
    assert recd["ended"] == "trigger" and man["interrupted"] is False
    assert recd["kept_from_ts"] == pytest.approx(trig["fired_ts"] - 8)
    assert recd["kept_to_ts"] == pytest.approx(trig["fired_ts"] + 2)
    # the diagnosis: the SYN died inside fw
    drops = [
        f
        for flow in json.loads((out / "verdict.json").read_text())["flows"]
        for f in flow["findings"]
        if f["kind"] == "drop"
    ]
    assert drops and all(d["between"] == ["fw:eth0", "fw:eth1"] for d in drops)
    assert all(d["direction"] == "c2s" for d in drops)
    assert "SYN dropped inside fw" in stdout
    # only the last --ring (+ post) is in the bundle: packets outside it were cut
    for p in man["points"]:
        assert p["packets_in_file"] > 0 and p["packets"] >= p["packets_in_file"]
    # the facts at the trigger show the fault's drop counter moving
    assert "hopcap_fault" in (out / "facts" / "fw" / "delta" / "nft.txt").read_text()
    assert "fw" in recd["facts_before"]
    assert _leftovers(rec.run_id) == []


def test_watcher_fires_on_a_log_line(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("start\n")
    out = tmp_path / "rec"
    watcher = f"srv: tail -n0 -F {log} | grep -m1 ' SD '"
    rec = Recorder(
        clean_lab.inventory, out, "--until", watcher, "--ring", "5s", "--post", "1s",
        "--max-duration", "60s", "--no-facts",
    )  # fmt: skip
    try:
        with log.open("a") as f:
            f.write("GET / 200 --\n")
        lab.ns_run(PREFIX, "client", ["curl", "-s", "-o", "/dev/null", "-m", "3", VIP + "/"])
        time.sleep(1)
        assert rec.proc.poll() is None, "the watcher fired on a line without ' SD '"
        written = time.time()
        with log.open("a") as f:
            f.write("GET /api 504 SD upstream timeout\n")
            f.flush()
            time.sleep(0.5)
            f.write("GET / 200 --\n")  # `tail` ends on its next write after grep -m1 exits
        code, _, stderr = rec.finish()
    finally:
        rec.kill()
    assert code == EXIT_OK, stderr
    man = _manifest(out)
    trig = man["trigger"]
    assert (trig["host"], trig["mode"], trig["exit_status"]) == ("srv", "watcher", 0)
    assert trig["output"].strip() == "GET /api 504 SD upstream timeout"
    assert trig["fired_ts"] >= written
    assert man["recording"]["ended"] == "trigger"
    flows = json.loads((out / "verdict.json").read_text())["flows"]
    assert len(flows) == 1 and not flows[0]["findings"]  # the curl, inside the last 5 s
    assert _leftovers(rec.run_id) == []


def _disk_use(run_id: str) -> dict[str, int]:
    """Bytes in each host's remote directory of the run (the lab shares this /tmp)."""
    use = {h: 0 for h in HOSTS}
    for d in Path("/tmp").glob(f"hopcap.*.{run_id}.*"):
        host = d.name.rsplit(".", 1)[-1]
        for f in d.glob("*"):
            with contextlib.suppress(FileNotFoundError):  # pruned meanwhile
                use[host] += f.stat().st_size
    return use


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _flat(samples: list[float], slack: float) -> bool:
    """The last third of the samples is not above the first third (plus slack)."""
    n = len(samples) // 3
    return statistics.mean(samples[-n:]) <= statistics.mean(samples[:n]) * 1.15 + slack


def test_soak_keeps_disk_and_memory_flat(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    soak_s = 130.0  # the whole test stays under three minutes
    out = tmp_path / "rec"
    # steady, bounded traffic inside the lab: a 300 kB download every second
    loop = f"while :; do curl -s -o /dev/null -m 5 {VIP}/big.bin; sleep 1; done"
    traffic = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-client",
         "timeout", str(int(soak_s + 30)), "sh", "-c", loop],
        start_new_session=True,
    )  # fmt: skip
    rec = Recorder(
        clean_lab.inventory, out, "--until", f"client: curl -sf -o /dev/null -m 5 {VIP}/",
        "--probe-every", "2s", "--ring", "10s", "--post", "1s", "--max-duration", f"{soak_s:.0f}s",
    )  # fmt: skip
    disk: list[dict[str, int]] = []
    rss: list[int] = []
    try:
        t0 = time.monotonic()
        while rec.proc.poll() is None and time.monotonic() - t0 < soak_s - 5:
            if time.monotonic() - t0 > 40:  # past the ring's fill-up (10 + 1 + 10 s kept)
                disk.append(_disk_use(rec.run_id))
                rss.append(_rss_kb(rec.proc.pid))
            time.sleep(3.5)
        code, _, stderr = rec.finish(timeout=120)
    finally:
        rec.kill()
        # the loop and its curl with it (a killed `timeout` would leave its child running)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(traffic.pid, signal.SIGKILL)
        traffic.wait()
    assert code == EXIT_OK, stderr
    assert "--max-duration reached without a trigger" in stderr
    man = _manifest(out)
    assert man["recording"]["ended"] == "max-duration" and man["interrupted"] is True
    assert "trigger" not in man
    assert len(disk) >= 20
    ring = man["recording"]["ring"]["client:eth0"]
    captured = {p["name"]: p["packets"] for p in man["points"]}
    assert captured["client:eth0"] > 5_000  # ~70 packets/s (GRO) for 130 s: real traffic
    for host in HOSTS:
        series = [d[host] for d in disk]
        points = 2 if host in ("fw", "lb") else 1
        assert min(series) > 1_000_000, (host, series)  # the ring holds real traffic
        # flat: no growth over the soak, and never more than the kept time allows (about
        # 21 s of traffic at ~330 kB/s per point, plus the file being written)
        assert _flat(series, slack=2_000_000), (host, series)
        assert max(series) < points * (21 * 600_000 + 2 * ring["file_mb"] * 1_000_000), series
    # the controller: a few hundred kB of allocator noise, no growth with probes, pulls of
    # disk use or facts snapshots (kB)
    n = len(rss) // 3
    assert statistics.mean(rss[-n:]) <= statistics.mean(rss[:n]) + 1_500, rss
    assert max(rss) - min(rss) < 4_000, rss
    assert _leftovers(man["run_id"]) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ring", "-1"], "hopcap: --ring -1: invalid duration '-1': a duration cannot be"),
        (["--ring", "0"], "hopcap: --ring 0: must be longer than 0"),
        (["--probe-every", "0"], "hopcap: --probe-every 0: must be longer than 0"),
        (["--until", "nohost: true"], "hopcap: --until 'nohost: true': no host 'nohost'"),
        (["--until", "just-a-command"], "hopcap: --until 'just-a-command': expected HOST: "),
    ],
)
def test_bad_values_are_one_line_and_exit_3(
    clean_lab: lab.LabInfo, args: list[str], message: str
) -> None:
    base = ["record", "-i", str(clean_lab.inventory)]
    if "--until" not in args:
        base += ["--until", "client: true"]
    res = hopcap_cli(*base, *args)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith(message), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_ctrl_c_ends_the_recording_as_an_interrupted_bundle(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    out = tmp_path / "rec"
    rec = Recorder(
        clean_lab.inventory, out, "--until", "srv: sleep 600", "--ring", "5s", "--no-facts"
    )
    try:
        lab.ns_run(PREFIX, "client", ["curl", "-s", "-o", "/dev/null", "-m", "3", VIP + "/"])
        rec.proc.send_signal(signal.SIGINT)
        code, _, stderr = rec.finish(timeout=60)
    finally:
        rec.kill()
    assert code == EXIT_INTERRUPTED, stderr
    man = _manifest(out)
    assert man["interrupted"] is True and man["complete"] is False
    assert man["recording"]["ended"] == "ctrl-c" and "trigger" not in man
    assert all((out / p["file"]).exists() for p in man["points"])
    flows = json.loads((out / "verdict.json").read_text())["flows"]
    assert len(flows) == 1
    assert "Traceback" not in stderr
    assert _leftovers(rec.run_id) == []  # the watcher (`sleep 600`) was ended too


def test_a_killed_recorder_leaves_nothing_running(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """tcpdump, the pruner and the watcher are bounded on the hosts themselves:
    --max-duration 4s + --post 1s + 15 s grace (+ 5 s before SIGKILL)."""
    rec = Recorder(
        clean_lab.inventory, tmp_path / "rec", "--until", "srv: sleep 600",
        "--ring", "5s", "--post", "1s", "--max-duration", "4s", "--no-facts",
    )  # fmt: skip
    procs = [x for x in _leftovers(rec.run_id) if not x.startswith("/tmp/")]
    assert any("tcpdump" in x for x in procs) and any("prune" in x for x in procs)
    assert any("sleep 600" in x for x in procs)
    rec.proc.kill()
    rec.proc.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 45:
        procs = [x for x in _leftovers(rec.run_id) if not x.startswith("/tmp/")]
        if not procs:
            break
        time.sleep(1)
    assert procs == []
    # the ring stayed on the hosts (the next run removes it once its bound has passed)
    dirs = list(Path("/tmp").glob(f"hopcap.*.{rec.run_id}.*"))
    assert dirs
    for d in dirs:
        shutil.rmtree(d)


def test_ctrl_c_while_connecting_records_nothing(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """Ctrl-C while a host does not answer yet: no ring starts (they all started, and the
    probe ran, once the slow host timed out, before)."""
    import socket

    out = tmp_path / "r"
    with socket.socket() as silent:  # accepts the connection, never says its SSH banner
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        inv = inventory_variant(
            clean_lab.inventory,
            tmp_path / "inv.yml",
            srv={"address": "127.0.0.1", "port": silent.getsockname()[1]},
        )
        proc = subprocess.Popen(
            [*HOPCAP, "record", "-i", str(inv), "--ring", "5s", "--probe-every", "1s",
             "--until", "client: true", "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        stderr = interrupt_when_connected(proc, 3, out)
    assert "recording, ring" not in stderr, stderr
