"""One exception tree for hopcap; `cli.py` maps it to exit codes and one-line messages.

HopcapError
 ├── InventoryError         the inventory file is wrong (carries every problem found)
 ├── TransportError         talking to a host failed
 │    ├── ConnectError      unreachable, refused, timed out
 │    ├── AuthError         authentication refused, sudo wants a password
 │    ├── HostKeyError      host key unknown or changed
 │    └── RemoteCommandError a remote command failed (carries its output)
 ├── CaptureError           tcpdump could not start / exited early / file unusable
 ├── CorrelationError       captures cannot be read or correlated at all
 ├── BundleError            a bundle cannot be written or read
 ├── LabError               the namespace lab cannot be built or changed
 ├── OptionError            a command-line value is wrong (`--at 25:99`, `--every 0`, ...)
 ├── PreflightError         the check before a scheduled window found a host not ready
 └── RunInterrupted         Ctrl-C before anything was captured (exit 130, no bundle)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INVENTORY = 3
EXIT_PARTIAL = 4  # the run worked but some point is missing; the bundle says which
EXIT_PREFLIGHT = 5  # `hopcap check` found something that would make `run` fail
EXIT_INTERRUPTED = 130


class HopcapError(Exception):
    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One problem in an inventory file, with where it is."""

    file: str
    line: int | None
    column: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class InventoryError(HopcapError):
    exit_code = EXIT_INVENTORY

    def __init__(self, problems: Sequence[Problem] | str, *, hint: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, column=None, key=None, message=problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        n = len(self.problems)
        head = "inventory has 1 problem" if n == 1 else f"inventory has {n} problems"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems), hint=hint)


class TransportError(HopcapError):
    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}", hint=hint)
        self.host = host


class ConnectError(TransportError):
    pass


class AuthError(TransportError):
    pass


class HostKeyError(TransportError):
    pass


class RemoteCommandError(TransportError):
    def __init__(
        self,
        host: str,
        command: str,
        exit_status: int | None,
        stderr: str = "",
        *,
        hint: str | None = None,
    ) -> None:
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(host, f"`{command}` failed (exit {exit_status}): {detail}", hint=hint)
        self.command = command
        self.exit_status = exit_status
        self.stderr = stderr


class CaptureError(HopcapError):
    pass


class CorrelationError(HopcapError):
    pass


class BundleError(HopcapError):
    pass


class LabError(HopcapError):
    pass


class OptionError(HopcapError):
    """A command-line value is wrong; exit 3 like a wrong inventory (the run's settings
    are wrong, nothing was started)."""

    exit_code = EXIT_INVENTORY


class PreflightError(HopcapError):
    """The check before a scheduled window (or a recording) found a host that is not
    ready; reported when the schedule is set up, not at the window's time."""

    exit_code = EXIT_PREFLIGHT


class RunInterrupted(HopcapError):
    """Ctrl-C came before any capture started (while connecting to or probing the hosts):
    nothing was captured, so there is no bundle to write; exit 130 like any interruption."""

    exit_code = EXIT_INTERRUPTED
