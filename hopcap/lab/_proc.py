"""Running commands for the lab: in the root namespace or inside a lab host."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hopcap.errors import LabError


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (never through a shell); on failure raise LabError with its stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
    except FileNotFoundError as e:
        raise LabError(f"cannot run `{argv[0]}`: not installed") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"`{shlex.join(argv)}` timed out after {timeout:g}s") from e
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or "no output"
        raise LabError(f"`{shlex.join(argv)}` failed (exit {proc.returncode}): {detail}")
    return proc


def ns_exec(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside network namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def spawn_daemon(ns: str, argv: Sequence[str], log: Path) -> None:
    """Start a long-running process inside `ns`, detached from us (new session, reparented
    to init), so it outlives the `hopcap lab up` that started it. Its pid is found through
    its own pidfile or `ip netns pids`."""
    with open(log, "ab") as out:
        try:
            proc = subprocess.run(
                ["setsid", "--fork", *ns_exec(ns, argv)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                timeout=10,
                check=False,
            )
        except FileNotFoundError as e:
            raise LabError("cannot run `setsid` (Debian package util-linux)") from e
    if proc.returncode != 0:
        raise LabError(f"cannot start `{shlex.join(argv)}` in {ns}: see {log}")


def alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
