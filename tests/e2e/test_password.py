"""Hosts that accept no keys: the password comes from `password_env` (for `password` and
keyboard-interactive authentication) or from a prompt on a terminal, and never shows up in
the output or the bundle.

fw gets two more real sshds in its namespace that refuse keys: one that offers only
`password` (port 2222), one that offers only keyboard-interactive through PAM (port 2223);
the user is a real machine user with a password (chpasswd) and passwordless sudo.
"""

from __future__ import annotations

import json
import os
import pty
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_PREFLIGHT
from hopcap.lab.sshd import SSHD, accepts
from tests import labnames
from tests.e2e.conftest import HOPCAP, PREFIX, inventory_variant

pytestmark = pytest.mark.lab

USER = labnames.prefix("hcpw")
SUDOERS_FILE = Path(f"/etc/sudoers.d/hopcap-e2e-pw{labnames.prefix('')}")
ENV = "HOPCAP_TEST_FW_PASSWORD"
PORTS = {"password": 2222, "kbdint": 2223}


@dataclass(frozen=True)
class PasswordHost:
    password: str
    known_hosts: Path
    logs: dict[str, Path]


@pytest.fixture(scope="module")
def password_host(
    e2e_lab: lab.LabInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PasswordHost]:
    d = tmp_path_factory.mktemp("pwsshd")
    d.chmod(0o755)
    password = "pw-" + secrets.token_urlsafe(18)
    addr = e2e_lab.mgmt["fw"]
    pids: list[Path] = []
    try:
        subprocess.run(["userdel", "-r", USER], capture_output=True)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", USER], check=True)
        subprocess.run(["chpasswd"], input=f"{USER}:{password}\n", text=True, check=True)
        SUDOERS_FILE.write_text(f"{USER} ALL=(root) NOPASSWD: ALL\n")
        SUDOERS_FILE.chmod(0o440)
        key = d / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        pub = key.with_suffix(".pub").read_text().split()
        known = d / "known_hosts"
        known.write_text("".join(f"[{addr}]:{p} {pub[0]} {pub[1]}\n" for p in PORTS.values()))
        logs = {}
        for method, port in PORTS.items():
            pw = method == "password"
            cfg = d / f"sshd_{method}"
            pids.append(d / f"{method}.pid")
            cfg.write_text(
                "\n".join(
                    [
                        f"ListenAddress {addr}:{port}",
                        f"HostKey {key}",
                        f"PidFile {pids[-1]}",
                        "PubkeyAuthentication no",  # the lab's key is offered and refused
                        f"PasswordAuthentication {'yes' if pw else 'no'}",
                        f"KbdInteractiveAuthentication {'no' if pw else 'yes'}",
                        f"UsePAM {'no' if pw else 'yes'}",
                        "StrictModes no",
                        "UseDNS no",
                        "LogLevel VERBOSE",
                        "Subsystem sftp internal-sftp",
                        "",
                    ]
                )
            )
            logs[method] = d / f"{method}.log"
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    f"{PREFIX}-fw",
                    SSHD,
                    "-f",
                    str(cfg),
                    "-E",
                    str(logs[method]),
                ],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not accepts(addr, port) and time.monotonic() < deadline:
                time.sleep(0.05)
        yield PasswordHost(password, known, logs)
    finally:
        for pid in pids:
            if pid.exists():
                subprocess.run(["kill", pid.read_text().strip()], capture_output=True)
        SUDOERS_FILE.unlink(missing_ok=True)
        subprocess.run(["userdel", "-r", USER], capture_output=True)


def _inventory(info: lab.LabInfo, pw: PasswordHost, dest: Path, method: str, env: bool) -> Path:
    fw = {"port": PORTS[method], "user": USER, "sudo": True, "known_hosts": str(pw.known_hosts)}
    if env:
        fw["password_env"] = ENV
    return inventory_variant(info.inventory, dest, fw=fw)  # type: ignore[arg-type]


def _env(value: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if value is not None:
        env[ENV] = value
    return env


def _files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_run_with_the_password_from_the_environment(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "password", env=True)
    out = tmp_path / "b"
    proc = subprocess.run(
        [*HOPCAP, "run", "-i", str(inv), "--out", str(out), "--tar"],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(password_host.password),
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert f"Accepted password for {USER}" in password_host.logs["password"].read_text()
    man = json.loads((out / "manifest.json").read_text())
    assert man["complete"] is True
    fw = [p for p in man["points"] if p["host"] == "fw"]
    assert fw and all(p["packets"] > 0 and p["error"] is None for p in fw)
    assert man["inventory"]["hosts"]["fw"]["password_env"] == ENV  # the name, not the value
    # the secret is nowhere: not in the bundle (facts, manifest, pcaps, reports), not in
    # the tarball, not in what hopcap printed
    assert _files_containing(out, password_host.password) == []
    tar = subprocess.run(["tar", "-xzOf", f"{out}.tar.gz"], capture_output=True, check=True)
    assert tar.stdout and password_host.password.encode() not in tar.stdout
    assert password_host.password not in proc.stdout + proc.stderr


def test_keyboard_interactive_with_the_password_from_the_environment(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "kbdint", env=True)
    proc = subprocess.run(
        [*HOPCAP, "check", "-i", str(inv)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(password_host.password),
    )
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    log = password_host.logs["kbdint"].read_text()
    assert f"Accepted keyboard-interactive/pam for {USER}" in log
    assert password_host.password not in proc.stdout + proc.stderr


def test_wrong_password_is_one_line_and_a_partial_run(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "password", env=True)
    wrong = "wrong-" + secrets.token_hex(8)
    res = subprocess.run(
        [*HOPCAP, "run", "-i", str(inv), "--out", str(tmp_path / "b"), "--no-facts"],
        capture_output=True,
        text=True,
        timeout=180,
        env=_env(wrong),
    )
    assert res.returncode == EXIT_PARTIAL, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "authentication refused" in ln]
    assert lines and all(
        f"fw: authentication refused: keys and ${ENV} were not accepted" in ln for ln in lines
    )
    assert "Traceback" not in res.stderr and wrong not in res.stdout + res.stderr
    assert _files_containing(tmp_path / "b", wrong) == []


def test_unset_variable_is_named_before_anything_is_connected(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "password", env=True)
    for cmd in (["check"], ["run", "--out", str(tmp_path / "b")]):
        res = subprocess.run(
            [*HOPCAP, *cmd, "-i", str(inv)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(None),
        )
        assert res.returncode == EXIT_ERROR, res.stderr
        lines = res.stderr.splitlines()
        i = lines.index(
            f"hopcap: fw: password_env names {ENV}, which is not set in the environment"
        )
        assert lines[i + 1].startswith(f"  hint: export {ENV}=...")
        assert len(lines) == i + 2
        assert "connected" not in res.stderr


def _on_a_terminal(args: list[str], answer: str, timeout: float = 90) -> tuple[int, str, int]:
    """Run hopcap with a terminal on stdin/stdout/stderr; type `answer` at each password
    prompt ("\x03": press Ctrl-C). Returns (exit code, everything the terminal showed,
    number of prompts); a hopcap still running after `timeout` is killed (exit -9)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: hopcap, with the pty as its controlling terminal
        os.execvpe(HOPCAP[0], [*HOPCAP, *args], _env(None))
    shown = b""
    prompts = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if shown.count(b"password for") > prompts:
            prompts = shown.count(b"password for")
            time.sleep(0.2)  # let getpass turn echo off first
            os.write(fd, answer.encode() + (b"" if answer == "\x03" else b"\n"))
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace"), prompts


def test_prompt_on_a_terminal_once_per_host(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "password", env=False)
    code, shown, prompts = _on_a_terminal(["check", "-i", str(inv)], password_host.password)
    assert code == EXIT_OK, shown
    addr = clean_lab.mgmt["fw"]
    assert f"hopcap: password for {USER}@{addr}:2222 (fw):" in shown
    assert prompts == 1  # the other hosts take the key and ask nothing
    assert password_host.password not in shown  # not echoed
    # a wrong answer is not asked again: one prompt, one clear failure
    code, shown, prompts = _on_a_terminal(["check", "-i", str(inv)], "nope")
    assert code == EXIT_PREFLIGHT, shown
    assert prompts == 1
    assert "fw: authentication refused: keys and the password typed were not accepted" in shown
    # Ctrl-C at the prompt aborts at once: hopcap does not wait for an answer
    code, shown, prompts = _on_a_terminal(
        ["run", "-i", str(inv), "--out", str(tmp_path / "b")], "\x03", timeout=40
    )
    assert (prompts, code) == (1, EXIT_INTERRUPTED), shown
    assert "hopcap: aborted" in shown and "Traceback" not in shown


def test_no_terminal_no_prompt(
    clean_lab: lab.LabInfo, password_host: PasswordHost, tmp_path: Path
) -> None:
    inv = _inventory(clean_lab, password_host, tmp_path / "inv.yml", "password", env=False)
    res = subprocess.run(  # stdin is not a terminal: nobody to ask
        [*HOPCAP, "check", "-i", str(inv)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env=_env(None),
    )
    assert res.returncode == EXIT_PREFLIGHT, res.stdout + res.stderr
    assert "password for" not in res.stdout + res.stderr
    assert "fw: authentication refused" in res.stdout
