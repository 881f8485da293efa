"""A FortiGate as a capture point: its own sniffer, over its CLI.

The box runs no tcpdump and no shell; hopcap logs in to the CLI (an interactive session on
a terminal, as a person does), turns paging off, and, armed like any other point, fires
`diagnose sniffer packet any '<filter>' 6 0 a` in the same instant as the Linux points.
`filters=[...]` is the sniffer's "listening". Its text is streamed into a local file as
it comes; Ctrl-C stops it (the box prints its packet counts) and the text becomes one
pcapng per interface (`bundle.fortigate`), kept beside them for the vendor. The sniffer
cannot outlive the session: FortiOS ends it with the CLI session, so a dead controller or
a lost connection stops it.

`capture: auto` makes a point of every interface that appeared, in path order (the
interface that saw a connection's SYN first is the ingress); a list of interfaces keeps
those, in the listed order. hopcap's own SSH session is excluded from the filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hopcap.errors import CaptureError, HopcapError, TransportError
from hopcap.model import CapturePoint, pcap_filename
from hopcap.orchestrator.capture import CaptureSpec, CaptureStats, RunningCapture
from hopcap.orchestrator.transport import HostTransport, ShellProcess, SSHTransport

PROMPT_RE = re.compile(rb"(?:^|[\r\n])[A-Za-z0-9_.-]+(?: \([A-Za-z0-9_.-]+\))? [#$] $")
CLI_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
# at the stop, how long the sniffer may go on printing what it captured before it (its
# text lags the packets by seconds when it prints thousands of hex dumps), and the pause
# in its output that says it has caught up
DRAIN_S = 5.0
QUIET_S = 0.5
# a packet's line: its time (the box's local time, `a`: absolute)
_PACKET_TS_RE = re.compile(rb"\n(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ")
_RECEIVED_RE = re.compile(rb"(\d+) packets received by filter")
_DROPPED_RE = re.compile(rb"(\d+) packets dropped by kernel")
_VERSION_RE = re.compile(r"^Version:\s*(.+)$", re.M)
_SYSTIME_RE = re.compile(r"^System time:\s*(.+)$", re.M)


ANY = "any"
SYSTEM_STATUS = "get system status"
FACT_COMMANDS = {
    "system-status": SYSTEM_STATUS,
    "session-stat": "diagnose sys session stat",
    "routes": "get router info routing-table all",
    "interfaces": "get system interface physical",
}


@dataclass(frozen=True)
class SnifferSpec(CaptureSpec):
    """A CaptureSpec whose command is the box's sniffer command line."""

    interfaces: tuple[str, ...] = ()  # wanted interfaces, in path order; () = all (auto)

    def command(self) -> str:
        return f"diagnose sniffer packet {ANY} '{self.filter}' 6 0 a"


def sniffer_spec(
    host: str, capture: tuple[str, ...] | str, bpf: str, bound_s: float
) -> SnifferSpec:
    ifaces = () if capture == "auto" else tuple(capture)
    return SnifferSpec(
        point=CapturePoint(host=host, interface=ANY),
        remote_dir="",
        filter=bpf,
        bound_s=bound_s,
        ring_mb=0,
        sudo=False,
        drop_to_root=False,
        stream=True,
        interfaces=ifaces,
    )


def own_session_filter(transport: HostTransport, user_filter: str) -> str:
    """The filter without hopcap's own CLI session (else every packet printed is one more
    packet to print)."""
    ends = transport.endpoints() if isinstance(transport, SSHTransport) else None
    if ends is None:
        return user_filter
    a, pa, b, pb = ends
    return f"({user_filter}) and not (tcp and host {a} and host {b} and port {pa} and port {pb})"


def _parse_system_time(status: str) -> float | None:
    m = _SYSTIME_RE.search(status)
    if not m:
        return None
    text = m.group(1).strip()
    for fmt in ("%a %b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return None


def clock_from_status(status: str, t0: float, t1: float) -> tuple[float, float, int] | None:
    """(clock offset s, error s, time zone s) from `System time:` (local time, whole
    seconds): the offset rounded to quarter hours is the time zone, the rest the clock."""
    local = _parse_system_time(status)
    if local is None:
        return None
    raw = local - (t0 + t1) / 2
    tz = round(raw / 900) * 900
    return raw - tz, 1.0 + (t1 - t0) / 2, tz


async def probe_fortigate(transport: HostTransport) -> tuple[str, tuple[float, float, int] | None]:
    """(FortiOS version, clock) from one `get system status`; CaptureError if not a FortiGate."""
    t0 = time.time()
    res = await transport.run(SYSTEM_STATUS, timeout=20)
    t1 = time.time()
    m = _VERSION_RE.search(res.stdout)
    if not m:
        raise CaptureError(
            f"{transport.name}: `get system status` gave no FortiOS version: is it a FortiGate?",
            hint="`kind: fortigate` is for FortiOS CLIs; leave `kind` out for a Linux host",
        )
    return m.group(1).strip(), clock_from_status(res.stdout, t0, t1)


async def fortigate_facts(transport: HostTransport) -> tuple[dict[str, str], dict[str, str]]:
    outputs: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name, command in FACT_COMMANDS.items():
        try:
            res = await transport.run(command, timeout=30)
        except HopcapError as exc:
            missing[name] = str(exc)
            continue
        if "Command fail" in res.stdout or "Unknown action" in res.stdout:
            missing[name] = res.stdout.strip().splitlines()[-1]
        else:
            outputs[name] = res.stdout
    return outputs, missing


class FortiGateCapture(RunningCapture):
    """One sniffer session on one FortiGate, for every point of the host."""

    def __init__(self, transport: HostTransport, spec: SnifferSpec, text_log: Path) -> None:
        super().__init__(transport, spec, text_log)
        self.sniffer = spec
        self.host = spec.point.host
        self.text_log = text_log
        self.version: str | None = None
        self.utc_offset_s = 0
        self._shell: ShellProcess | None = None
        self._buf = bytearray()
        self._pump: asyncio.Task[None] | None = None
        self._last = b""  # the end of the sniffer's text so far
        # the box's clock minus ours (beyond its time zone), and how far off that may be
        # (`System time` has whole seconds)
        self._clock_s, self._clock_err = 0.0, 2.0
        self._newest: float | None = None  # the last packet printed (on our clock)
        self._chunk_at = 0.0  # when its text last came (monotonic)

    @property
    def command(self) -> str:
        return self.spec.command()

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
        """Log in to the CLI, paging off, learn the version: ready to fire (the same
        `armed` state as a Linux point's shell waiting for "go")."""
        if not isinstance(self.transport, SSHTransport):
            raise TransportError(self.host, "a FortiGate is reached over SSH")
        self._shell = await self.transport.shell()
        await self._read_until(PROMPT_RE, CLI_TIMEOUT_S)
        for line in ("config system console", "set output standard", "end"):
            await self.cli(line)
        status = await self.cli("get system status")
        if m := _VERSION_RE.search(status):
            self.version = m.group(1).strip()
        clock = clock_from_status(status, time.time(), time.time())
        if clock is not None:
            self._clock_s, self._clock_err, self.utc_offset_s = clock
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
                    return
                f.write(chunk)
                f.flush()
                self._chunk_at = time.monotonic()
                text = self._last + chunk  # (a packet's line may start in the last chunk)
                stamps = _PACKET_TS_RE.findall(text)
                if stamps:
                    local = dt.datetime.fromisoformat(stamps[-1].decode()).replace(tzinfo=dt.UTC)
                    self._newest = local.timestamp() - self.utc_offset_s - self._clock_s
                self._last = text[-256:]
                if _DROPPED_RE.search(self._last):  # the counts after Ctrl-C: it stopped
                    return

    async def bytes_written(self) -> int:
        return self.text_log.stat().st_size if self.text_log.exists() else 0

    async def stop(self, *, signalled: bool = False) -> CaptureStats:
        """Ctrl-C, then the box's own counts; leave the CLI (`signalled` does not apply)."""
        self.stop_ts = time.time()
        if self._shell is None:
            return CaptureStats(None, None, None)
        try:
            await self._drain()
            self._shell.write(b"\x03")
            if self._pump is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._pump), STOP_TIMEOUT_S)
                except TimeoutError as exc:
                    self._pump.cancel()
                    raise CaptureError(f"{self.host}: the sniffer did not stop") from exc
            tail = self._last
            rec = _RECEIVED_RE.search(tail)
            drp = _DROPPED_RE.search(tail)
            n = int(rec.group(1)) if rec else None
            stats = CaptureStats(n, n, int(drp.group(1)) if drp else None)
            with contextlib.suppress(CaptureError, TransportError):
                self._shell.write(b"exit\n")
            return stats
        finally:
            self._shell.close()
            self._shell = None

    async def _drain(self) -> None:
        """Wait (up to DRAIN_S) until the sniffer has printed a packet surely captured after
        the stop (beyond the error of the box's clock), or its output pauses: Ctrl-C makes
        the terminal discard the text still queued, so a sniffer that lags (thousands of
        hex dumps under load) lost the last packets of the window or cut one in half (a
        damaged hex dump)."""
        deadline = time.monotonic() + DRAIN_S
        after = (self.stop_ts or 0.0) + self._clock_err
        while self._pump is not None and not self._pump.done():
            now = time.monotonic()
            caught_up = self._newest is not None and self._newest >= after
            if caught_up or now - self._chunk_at >= QUIET_S or now >= deadline:
                return
            await asyncio.sleep(0.02)

    def convert(self, pcaps: Path) -> list[tuple[CapturePoint, Path, str, int]]:
        """The sniffer's text as one pcapng per point, in path order:
        (point, file, sha256, packets)."""
        from hopcap.bundle.fortigate import path_order, read_sniffer_log, write_pcapng

        log = read_sniffer_log(self.text_log)
        order = list(self.sniffer.interfaces) or path_order(log)
        out = []
        for iface in order:
            point = CapturePoint(host=self.host, interface=iface)
            path = pcaps / pcap_filename(point.name).replace(".pcap", ".pcapng")
            w = write_pcapng(log, path, host=self.host, utc_offset_s=self.utc_offset_s,
                             interfaces=[iface])  # fmt: skip
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out.append((point, path, digest, sum(w.interfaces.values())))
        return out
