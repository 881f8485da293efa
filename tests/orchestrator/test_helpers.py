"""The orchestrator's small helpers, alone: what decides the BPF filter, the statistics
that tell a kernel drop from a gap, command quoting, ring sizing, interface names."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hopcap.errors import CaptureError
from hopcap.inventory import interface_problem
from hopcap.model import CapturePoint
from hopcap.orchestrator.capture import (
    CaptureSpec,
    RunningCapture,
    build_filter,
    kill_command,
    parse_stats,
    safe_name,
    ssh_exclusion,
)
from hopcap.orchestrator.local import LocalTransport
from hopcap.orchestrator.run import MAX_RING_BYTES, _ring_mb
from hopcap.orchestrator.transport import as_root, quote


def test_own_session_exclusion() -> None:
    assert ssh_exclusion("192.0.2.7 50022 198.51.100.1 22") == (
        "not (tcp and host 192.0.2.7 and host 198.51.100.1 and port 50022 and port 22)"
    )
    assert ssh_exclusion("2001:db8::7 50022 2001:db8::1 2222") == (
        "not (tcp and host 2001:db8::7 and host 2001:db8::1 and port 50022 and port 2222)"
    )
    # anything else gives no clause (and so no BPF syntax from a hostile environment)
    for bad in (
        "",
        "192.0.2.7 50022 198.51.100.1",
        "192.0.2.7 x 198.51.100.1 22",
        "192.0.2.7;reboot 1 198.51.100.1 22",
        "a b c d e",
    ):
        assert ssh_exclusion(bad) is None, bad
    assert build_filter("tcp port 80", None) == "tcp port 80"
    assert build_filter("tcp port 80 or icmp", "not (tcp)") == "(tcp port 80 or icmp) and not (tcp)"


def test_tcpdump_statistics() -> None:
    """What decides drop against gap: the kernel's own count of what it dropped."""
    stderr = (
        "tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n"
        "1 packet captured\n"
        "1234 packets received by filter\n"
        "17 packets dropped by kernel\n"
    )
    st = parse_stats(stderr)
    assert (st.captured, st.received, st.dropped) == (1, 1234, 17)
    cut = parse_stats("tcpdump: listening on eth0\n5 packets captured\n")
    assert (cut.captured, cut.received, cut.dropped) == (5, None, None)  # unknown, not 0
    assert parse_stats("") == type(st)(None, None, None)


def test_quoting_keeps_every_argument_whole() -> None:
    argv = ["tcpdump", "-i", "eth0", "(tcp and port 80) or host 192.0.2.1; reboot", "$(id)"]
    assert shlex.split(quote(argv)) == argv
    wrapped = as_root(quote(argv), True)
    outer = shlex.split(wrapped)
    assert outer[:5] == ["sudo", "-n", "--", "sh", "-c"] and shlex.split(outer[5]) == argv
    assert as_root("true", False) == "true"


def test_ring_follows_free_space() -> None:
    assert _ring_mb(None, 1) == MAX_RING_BYTES // 4 // 1_000_000
    # 1 GiB free, 2 points: half the space, shared, in 4 files each
    assert _ring_mb(1024 * 1024, 2) == 1024 * 1024 * 1024 // 2 // 2 // 4 // 1_000_000
    assert _ring_mb(10, 8) == 1  # never 0: tcpdump -C 0 is an error
    assert _ring_mb(10**12, 0) == MAX_RING_BYTES // 4 // 1_000_000


def test_one_rule_for_interface_names() -> None:
    """The inventory and the orchestrator accept the same names (`eth0+` used to pass the
    first and fail the second; a trailing newline passed the second's `$`)."""
    for ok in ("eth0", "eth0+", "br-lan", "veth_1.100", "_x"):
        assert interface_problem(ok) is None
        assert safe_name(ok) == ok
    for bad in ("eth0\n", "eth0:1", "-i", ".hidden", "a" * 16, "eth0 ", "e;reboot"):
        assert interface_problem(bad) is not None, bad
        with pytest.raises(CaptureError):
            safe_name(bad)


def _spec(**kw: object) -> CaptureSpec:
    args: dict[str, object] = {
        "point": CapturePoint("fw", "eth0"),
        "remote_dir": "/tmp/hopcap.1.r.fw",
        "filter": "tcp",
        "bound_s": 35.0,
        "ring_mb": 100,
        "sudo": False,
        "drop_to_root": False,
    }
    args.update(kw)
    return CaptureSpec(**args)  # type: ignore[arg-type]


def test_capture_command_variants() -> None:
    plain = _spec().command()
    assert "timeout -s INT -k 5 35 tcpdump -i eth0" in plain
    assert "-C 100 -W 4 -w /tmp/hopcap.1.r.fw/eth0.pcap" in plain
    streamed = _spec(stream=True, drop_to_root=True).command()
    assert "-w -" in streamed and "-C " not in streamed and "tcpdump -Z root" in streamed
    assert _spec(sudo=True).command().startswith("sudo -n -- sh -c ")
    assert "timeout -t 35 -s INT tcpdump" in _spec(timeout="busybox-t").command()
    watchdog = _spec(timeout=None).command()
    assert "timeout" not in watchdog and "kill -INT $$" in watchdog


def test_one_kill_command_stops_every_capture_of_a_host(tmp_path: Path) -> None:
    """Run for real on this machine: both processes get SIGINT from one command."""
    # (SIGINT as a capture started by sshd has it: a shell's background job, which may
    # have run this test, ignores it and its children inherit that)
    procs = [
        subprocess.Popen(
            ["sleep", "30"], preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
        )
        for _ in range(2)
    ]
    caps = []
    for i, p in enumerate(procs):
        spec = _spec(point=CapturePoint("h", f"eth{i}"), remote_dir=str(tmp_path))
        Path(spec.pidfile).write_text(f"{p.pid}\n")
        caps.append(RunningCapture(LocalTransport("h"), spec))
    Path(tmp_path / "gone.pid").write_text("999999999\n")  # a capture already gone
    gone = RunningCapture(
        LocalTransport("h"), _spec(point=CapturePoint("h", "gone"), remote_dir=str(tmp_path))
    )
    res = subprocess.run(["sh", "-c", kill_command([*caps, gone])], capture_output=True)
    assert res.returncode == 0
    deadline = time.monotonic() + 5
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.returncode for p in procs] == [-2, -2]  # SIGINT


def test_a_bigip_is_known_by_its_version_file(tmp_path: Path) -> None:
    """The probe's BIG-IP test on a BIG-IP's /VERSION (its real layout), a BIG-IQ's and an
    ordinary host's (no file); and which interface names only a BIG-IP's tcpdump knows."""

    from hopcap.orchestrator.capture import is_f5_name
    from hopcap.orchestrator.session import BIGIP_CHECK, BIGIP_VERSION

    def says(text: str | None) -> str:
        f = tmp_path / "VERSION"
        f.unlink(missing_ok=True)
        if text is not None:
            f.write_text(text)
        script = BIGIP_CHECK.replace(BIGIP_VERSION, str(f))
        return subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout

    assert says("Product: BIG-IP\nVersion: 17.1.0\nBuild: 0.0.16\nEdition: Final\n") == "bigip=1\n"
    assert says("Product: BIG-IQ\nVersion: 8.3.0\n") == ""
    assert says(None) == ""
    for f5 in ("0.0", "0.0:nnnp", "external:nn", "1.1:n"):
        assert is_f5_name(f5), f5
    for linux in ("eth0", "eth0.100", "br-lan", "nn"):
        assert not is_f5_name(linux), linux
