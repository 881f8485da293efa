"""A FortiGate as a capture point: its own sniffer, over its CLI.

The box runs no tcpdump and no shell; hopcap logs in to the CLI (an interactive session on
a terminal, as a person does), turns paging off, and, armed like any other point, fires
`diagnose sniffer packet <any|intf> '<filter>' 6 0 a` in the same instant as the Linux
points. `filters=[...]` is the sniffer's "listening". Its text is streamed into a local
file as it comes; Ctrl-C stops it (the box prints its packet counts) and the text becomes
one pcapng per interface (`bundle.fortigate`). The sniffer cannot outlive the session:
FortiOS ends it with the CLI session, so a dead controller or a lost connection stops it.

`any` (or `capture: auto`) makes a point of every interface that appeared, in the order
they first appeared (the ingress of the first packet before its egress); a list of
interfaces sniffs `any` and keeps those, in the listed order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from hopcap.errors import CaptureError, TransportError
from hopcap.orchestrator.transport import HostTransport, ShellProcess, SSHTransport

PROMPT_RE = re.compile(rb"(?:^|[\r\n])[A-Za-z0-9_.-]+(?: \([A-Za-z0-9_.-]+\))? [#$] $")
CLI_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
_RECEIVED_RE = re.compile(rb"(\d+) packets received by filter")
_DROPPED_RE = re.compile(rb"(\d+) packets dropped by kernel")
_VERSION_RE = re.compile(r"^Version:\s*(.+)$", re.M)
_SYSTIME_RE = re.compile(r"^System time:\s*(.+)$", re.M)


@dataclass
class SnifferStats:
    received: int | None = None
    dropped: int | None = None


@dataclass
class FortiGateCapture:
    """One sniffer session on one FortiGate (every interface of the host's points)."""

    host: str
    transport: HostTransport
    bpf: str
    text_log: Path  # the sniffer's text, as the box printed it (kept in the bundle)
    interface: str = "any"
    version: str | None = None
    system_time: str | None = None
    start_ts: float | None = None
    ready_ts: float | None = None
    stop_ts: float | None = None
    _shell: ShellProcess | None = None
    _buf: bytearray = field(default_factory=bytearray)
    _pump: asyncio.Task[None] | None = None
    _eof: bool = False
    _last: bytes = b""  # the end of the sniffer's text so far

    @property
    def command(self) -> str:
        return f"diagnose sniffer packet {self.interface} '{self.bpf}' 6 0 a"

    # ---------------------------------------------------------------- the CLI session
    async def _read_until(self, pattern: re.Pattern[bytes], timeout: float) -> bytes:
        """Read until `pattern` matches what was read; return it all and forget it."""
        assert self._shell is not None
        deadline = time.monotonic() + timeout
        while not pattern.search(self._buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaptureError(
                    f"{self.host}: the FortiGate CLI did not answer in time "
                    f"(last: {bytes(self._buf[-80:]).decode(errors='replace')!r})"
                )
            try:
                chunk = await asyncio.wait_for(self._shell.read(), left)
            except TimeoutError:
                continue
            if not chunk:
                raise CaptureError(f"{self.host}: the FortiGate CLI session ended")
            self._buf += chunk
        text = bytes(self._buf)
        self._buf.clear()
        return text

    async def cli(self, line: str, timeout: float = CLI_TIMEOUT_S) -> str:
        """Run one CLI command, return its output (without the echo and the prompt)."""
        assert self._shell is not None
        self._shell.write(line.encode() + b"\n")
        out = (await self._read_until(PROMPT_RE, timeout)).decode(errors="replace")
        lines = out.replace("\r", "").split("\n")
        if lines and lines[0].strip() == line.strip():
            lines = lines[1:]
        return "\n".join(lines[:-1])

    async def arm(self) -> None:
        """Log in to the CLI, paging off, learn the version: ready to fire."""
        if not isinstance(self.transport, SSHTransport):
            raise TransportError(self.host, "a FortiGate is reached over SSH")
        self._shell = await self.transport.shell()
        await self._read_until(PROMPT_RE, CLI_TIMEOUT_S)
        for line in ("config system console", "set output standard", "end"):
            await self.cli(line)
        status = await self.cli("get system status")
        if m := _VERSION_RE.search(status):
            self.version = m.group(1).strip()
        if m := _SYSTIME_RE.search(status):
            self.system_time = m.group(1).strip()
        if self.version is None:
            raise CaptureError(
                f"{self.host}: `get system status` gave no FortiOS version: is it a FortiGate?",
                hint="`kind: fortigate` is for FortiOS CLIs; a Linux host needs no kind",
            )

    def fire(self) -> None:
        assert self._shell is not None
        self.start_ts = time.time()
        self._shell.write(self.command.encode() + b"\n")

    async def until_listening(self, timeout: float = CLI_TIMEOUT_S) -> None:
        """Wait for `filters=[...]`, then stream the rest of the sniffer's text to the log."""
        head = await self._read_until(re.compile(rb"filters=\[[^\n]*\n"), timeout)
        if b"interfaces=[" not in head:
            said = head.decode(errors="replace").strip().splitlines()
            raise CaptureError(
                f"{self.host}: the sniffer did not start: {said[-1] if said else 'no answer'}"
            )
        self.ready_ts = time.time()
        self.text_log.parent.mkdir(parents=True, exist_ok=True)
        start = head.rfind(b"interfaces=[")
        with self.text_log.open("wb") as f:
            f.write(head[start:])
        self._pump = asyncio.ensure_future(self._stream())

    async def _stream(self) -> None:
        assert self._shell is not None
        with self.text_log.open("ab") as f:
            while True:
                chunk = await self._shell.read()
                if not chunk:
                    self._eof = True
                    return
                f.write(chunk)
                f.flush()
                self._last = (self._last + chunk)[-256:]
                if _DROPPED_RE.search(self._last):  # the counts after Ctrl-C: it stopped
                    return

    def bytes_written(self) -> int:
        return self.text_log.stat().st_size if self.text_log.exists() else 0

    async def stop(self) -> SnifferStats:
        """Ctrl-C, then the box's own counts; leave the CLI."""
        self.stop_ts = time.time()
        if self._shell is None:
            return SnifferStats()
        try:
            self._shell.write(b"\x03")
            if self._pump is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._pump), STOP_TIMEOUT_S)
                except TimeoutError as exc:
                    self._pump.cancel()
                    raise CaptureError(f"{self.host}: the sniffer did not stop") from exc
            tail = self._last
            stats = SnifferStats()
            if m := _RECEIVED_RE.search(tail):
                stats.received = int(m.group(1))
            if m := _DROPPED_RE.search(tail):
                stats.dropped = int(m.group(1))
            with contextlib.suppress(CaptureError, TransportError):
                self._shell.write(b"exit\n")
            return stats
        finally:
            self._shell.close()
            self._shell = None
