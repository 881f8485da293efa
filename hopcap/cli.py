"""The `hopcap` command: parses, calls the layers below, maps errors to exit codes.

The only module that prints.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from hopcap import __version__
from hopcap.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVENTORY,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_PREFLIGHT,
    EXIT_USAGE,
    HopcapError,
    OptionError,
)
from hopcap.model import PointRecord, RunRecord, Verdict
from hopcap.units import ms_text, size_text

if TYPE_CHECKING:
    import asyncio

    from hopcap.model import Inventory
    from hopcap.orchestrator.run import RunOptions
    from hopcap.orchestrator.schedule import Schedule


def tabulate(rows: Any, headers: Any = (), **kw: Any) -> str:
    """tabulate.tabulate, imported when a table is printed (not by `correlate --json`);
    a table of integers and plain words is drawn here as it would draw it (its import
    takes 15 ms, more than the verdict's tables)."""
    if not kw:
        text = _simple_table(rows, headers)
        if text is not None:
            return text
    from tabulate import tabulate as _tabulate

    out: str = _tabulate(rows, headers=headers, **kw)
    return out


def _word(s: object) -> bool:
    """A cell tabulate shows as it is, left-aligned: printable ASCII, no edge spaces, not
    a number or a bool to it ("" is a missing value: it takes no side)."""
    if type(s) is not str or not (s.isascii() and s.isprintable()) or s != s.strip():
        return False
    if s in ("True", "False"):
        return False
    try:
        float(s)
    except ValueError:
        return True
    return False


def _simple_table(rows: Any, headers: Any) -> str | None:
    """tabulate's "simple" table of `rows` (its default) when every cell is an int or a
    `_word`, else None: columns of ints (and "") right-aligned, the others left, each
    as wide as its widest cell or its header and two spaces, lines right-stripped."""
    rows = [list(r) for r in rows]
    headers = list(headers)
    if not rows or not headers or any(len(r) != len(headers) for r in rows):
        return None
    if not all(_word(h) and h for h in headers):
        return None
    cols: list[list[str]] = []
    right: list[bool] = []
    for j in range(len(headers)):
        cells = [r[j] for r in rows]
        given = [c for c in cells if c != ""]
        ints = [type(c) is int for c in given]
        if not all(i or _word(c) for i, c in zip(ints, given, strict=True)):
            return None
        right.append(bool(given) and all(ints))
        cols.append([str(c) for c in cells])
    widths = [max(len(h) + 2, *map(len, c)) for h, c in zip(headers, cols, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in zip(*cols, strict=True)]
    return "\n".join(out)


def _help_without_python_types() -> None:
    """typer 0.29 writes every option's type in `--help`, a flag's too (`--json <bool>`,
    `--help <bool>`), as if it took a value: a flag's is left out, as typer before 0.29
    and click write it; and an argument's Python type beside its metavar (`POINTS...
    <list[str]>`): an argument with a metavar has none. A typer without this method is
    left alone."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:  # pragma: no cover - typer's internals moved
        return
    for cls, plain in ((TyperOption, "is_flag"), (TyperArgument, "metavar")):
        shown = getattr(cls, "display_type_rich", None)
        if shown is None or getattr(shown, "hopcap", False):
            continue

        def display_type_rich(
            self: Any, ctx: Any, shown: Any = shown, plain: str = plain
        ) -> str | None:
            return None if getattr(self, plain, None) else shown(self, ctx)

        display_type_rich.hopcap = True  # type: ignore[attr-defined]
        cls.display_type_rich = display_type_rich  # type: ignore[method-assign]


_help_without_python_types()
app = typer.Typer(
    help="Find where along a network path a TCP segment was dropped, injected or rewritten.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="A real four-hop site (client, fw, lb, srv) in network namespaces.")
app.add_typer(lab_app, name="lab")
import_app = typer.Typer(help="Turn a vendor's capture text into pcapng.", no_args_is_help=True)
app.add_typer(import_app, name="import")

InventoryOpt = Annotated[
    Path, typer.Option("--inventory", "-i", help="site.yml or an Ansible inventory")
]


_status_open = False  # a progress line (`_status`) is on the terminal, not ended


# what the terminal shows (progress, warnings, the outcome), for `--log-file`: a log of
# the phases' timings alone did not say what a run did; never shown again on stderr
_shown = logging.getLogger("hopcap.shown")


def _err(msg: str) -> None:
    _status_end()
    typer.echo(msg, err=True)
    _logged(msg)


def _out(msg: str) -> None:
    """A line of a command's result on stdout, also in the log (`--log-file`)."""
    typer.echo(msg)
    _logged(msg)


def _logged(msg: str) -> None:
    text = msg.strip("\n")
    if text:
        _shown.info("%s", text)


STATUS_EVERY_S = 2.0  # progress lines into a file or a CI log: at most one per this
_status_last = -STATUS_EVERY_S  # when the last one was written (time.monotonic)
# the last of its steps: "slice 799/799: findings", "merged.pcapng 100 %" (a log whose last
# line said "merged.pcapng 15 %" read as a bundle left at 15 %)
_LAST_STEP = re.compile(r"\b(\d+)/\1\b|\b100 %")


def _status(text: str) -> None:
    """Progress of a long step on stderr: on a terminal each line replaces the last (a
    sliced correlation says one per slice and pass); elsewhere (a file, a CI log) a line
    every STATUS_EVERY_S seconds and the last step of a count, not thousands of lines."""
    global _status_open, _status_last
    if not sys.stderr.isatty():
        now = time.monotonic()
        if now - _status_last >= STATUS_EVERY_S or _LAST_STEP.search(text):
            _status_last = now
            _err(f"hopcap: {text}")
        return
    width = shutil.get_terminal_size().columns
    sys.stderr.write(f"\r\x1b[Khopcap: {text}"[: width + 3])  # 4 chars: \r, the erase
    sys.stderr.flush()
    _status_open = True


def _status_end() -> None:
    """Erase the open progress line (before anything else is written)."""
    global _status_open
    if _status_open:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
        _status_open = False


def _fail(exc: HopcapError) -> NoReturn:
    _err(f"hopcap: {exc.message}")
    if exc.hint:
        _err(f"  hint: {exc.hint}")
    raise typer.Exit(exc.exit_code)


class _StderrLog(logging.Handler):
    """Log records on stderr as it is when they come (the live progress replaces it)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == _shown.name:  # on the terminal already
            return
        with contextlib.suppress(Exception):
            _status_end()
            typer.echo(self.format(record), err=True)


@app.callback()
def _logging(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="log every step (and what had to be left out) on stderr"
        ),
    ] = False,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="also append the full log to this file")
    ] = None,
) -> None:
    """Find where along a network path a TCP segment was dropped, injected or rewritten."""
    log = logging.getLogger("hopcap")
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.DEBUG)
    shown = _StderrLog(logging.DEBUG if verbose else logging.WARNING)
    shown.setFormatter(logging.Formatter("hopcap: %(levelname)s: %(message)s"))
    log.addHandler(shown)
    if log_file is not None:
        try:
            to_file = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            _err(f"hopcap: cannot write the log to {log_file}: {exc.strerror}")
            raise typer.Exit(EXIT_ERROR) from None
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(to_file)


def _make_out(out_dir: Path) -> bool:
    """The bundle directory, made before anything starts (an unwritable or non-empty
    `--out` is one line now, not a traceback after every host was connected); whether it
    was made here."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        _err(f"hopcap: {out_dir} exists and is not empty; choose another --out")
        raise typer.Exit(EXIT_ERROR)
    made = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        _err(f"hopcap: cannot write the bundle in {out_dir}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_ERROR) from None
    return made


def _drop_if_empty(out_dir: Path, made: bool) -> None:
    """A run refused before it captured anything (Ctrl-C while connecting, a host not ready
    with --require-all, no point could start) leaves no empty bundle directory behind (nor
    an empty `pcaps/` in a directory the user made)."""
    for d in (out_dir / "pcaps", out_dir) if made else (out_dir / "pcaps",):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty


def _default_out(prefix: str) -> Path:
    return Path.cwd() / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


class _Progress:
    """Live progress of a run on stderr: a rich table on a terminal, plain lines otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.hosts: dict[str, str] = {}
        self.points: dict[str, dict[str, str]] = {}
        self.phase = "connecting"
        self._pull_shown: dict[str, int] = {}
        self._countdown_shown: tuple[str, int] | None = None
        # a repro repeated (--repeat, --until-fail): its runs so far, when a line last said
        # so, and whether one failed (two lines a run were hundreds in a minute)
        self._repro_runs = 0
        self._repro_said = 0.0
        self._repro_failed = False
        self._live: Any = None
        self._tty_attrs: Any = None  # the terminal's settings while a password prompt waits
        self.prompting = False  # a Ctrl-C at a password prompt aborts at once
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(
                self._render(), console=Console(stderr=True), refresh_per_second=4, transient=True
            )
            self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        attrs = self._tty_attrs
        if attrs is not None:  # aborted during a password prompt: echo back on
            import termios

            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, attrs)
            _err("")

    def ask_password(self, host: str, where: str) -> str | None:
        """The orchestrator's password prompt (called from a worker thread, one at a time):
        the live table steps aside while the user types; nothing typed is echoed."""
        import getpass
        import termios

        if self._live is not None:
            self._live.stop()
        # getpass turns echo off; if hopcap is aborted while it waits, close() turns it on
        with contextlib.suppress(termios.error, OSError):
            self._tty_attrs = termios.tcgetattr(sys.stdin.fileno())
        self.prompting = True
        try:
            return getpass.getpass(f"hopcap: password for {where} ({host}): ")
        except (EOFError, OSError):
            return None
        finally:
            self.prompting = False
            self._tty_attrs = None
            if self._live is not None:
                self._live.start()

    def _render(self) -> Any:
        from rich.table import Table

        t = Table(title=f"hopcap: {self.phase}", title_justify="left", expand=False)
        for col in ("host / point", "state", "captured", "pulled"):
            t.add_column(col)
        for h, state in self.hosts.items():
            t.add_row(h, state, "", "")
        for p, row in self.points.items():
            t.add_row(
                f"  {p}", row.get("state", ""), row.get("captured", ""), row.get("pulled", "")
            )
        return t

    def _point(self, name: str | None, **kv: str) -> None:
        if name is not None:
            self.points.setdefault(name, {}).update(kv)

    def __call__(self, ev: object) -> None:
        from hopcap.orchestrator.session import Event

        assert isinstance(ev, Event)
        line = self._line(ev)
        if ev.kind == "connected" and ev.host:
            self.hosts[ev.host] = "connected"
        elif ev.kind == "failed" and ev.host:
            self.hosts[ev.host] = "FAILED"
        elif ev.kind == "listening":
            self.phase = "capturing"
            self._point(ev.point, state="listening")
        elif ev.kind == "capture-failed":
            self._point(ev.point, state="FAILED")
        elif ev.kind == "captured":
            self._point(ev.point, captured=size_text(ev.done or 0))
        elif ev.kind == "stopping":
            self.phase = "stopping and pulling"
        elif ev.kind == "pull" and ev.total:
            self._point(ev.point, pulled=f"{100 * (ev.done or 0) // ev.total}%")
        elif ev.kind == "pulled":
            self._point(ev.point, state="pulled", pulled="100%")
        elif ev.kind == "repro":
            runs = self._repro_runs
            self.phase = f"repro on {ev.host}" + (f" (run {runs})" if runs > 1 else "")
        elif ev.kind == "countdown":
            self.phase = f"{ev.text} starts in {_clock(ev.done or 0)}"
        elif ev.kind == "probe":
            self.phase = f"recording; probe on {ev.host}: {ev.text}"
        elif ev.kind in ("window-start", "recording"):
            self.phase = ev.text.split(" -> ")[0].split(";")[0]
            if ev.kind == "window-start":
                self.points.clear()
        if self._live is not None:
            if line:
                _logged(line)
            self._live.update(self._render())
            if ev.kind in (
                "failed",
                "capture-failed",
                "pull-failed",
                "repro-failed",
                "window-start",
                "window-failed",
                "trigger",
            ):
                self._live.console.print(line)
        elif line:
            _err(line)

    def _line(self, ev: Any) -> str:
        if ev.kind == "pull":
            # plain mode: one line per quarter of a file, not one per SFTP block
            if ev.point is None or not ev.total:
                return ""
            step = int(4 * (ev.done or 0) / ev.total)
            if self._pull_shown.get(ev.point, -1) >= step:
                return ""
            self._pull_shown[ev.point] = step
            return f"  pull {ev.point}: {size_text(ev.done or 0)} of {size_text(ev.total)}"
        if ev.kind in ("captured", "probe"):
            return ""  # plain mode: the recorder's status line a minute says it
        if ev.kind == "countdown":
            # plain mode: a line when the countdown starts, then one a minute
            left = ev.done or 0
            key = (ev.text, left // 60)
            if self._countdown_shown == key:
                return ""
            first = self._countdown_shown is None or self._countdown_shown[0] != ev.text
            if not first and left % 60 < 58:
                return ""
            self._countdown_shown = key
            return f"  {ev.text} starts in {_clock(left)}"
        if ev.kind == "connected":
            return f"  connected {ev.host} ({ev.text})"
        if ev.kind == "listening":
            return f"  listening {ev.point}"
        if ev.kind in ("failed", "capture-failed", "pull-failed", "repro-failed"):
            # a transport's error names its host already: "! client: client: `...` did not
            # finish in 8s" said it twice
            text = ev.text
            for who in (ev.point, ev.host):
                if who:
                    text = text.removeprefix(f"{who}: ")
            return f"  ! {ev.point or ev.host}: {text}"
        if ev.kind == "repro":
            self._repro_runs = ev.done or 1  # (a repeated repro's run; 1: run once)
            if self._repro_runs <= 1:
                self._repro_said = time.monotonic()
                return f"  repro on {ev.host}: {ev.text}"
            if time.monotonic() - self._repro_said < STATUS_EVERY_S:
                return ""
            self._repro_said = time.monotonic()
            ok = "" if self._repro_failed else ", every run so far exit 0"
            return f"  repro on {ev.host}: run {self._repro_runs}{ok}"
        if ev.kind in ("recording", "window-start", "checking", "checked"):
            return f"  {ev.text}"  # "recording: recording, ring 60s; ..." said it twice
        if ev.kind == "repro-done":
            if self._repro_runs <= 1:
                return f"  repro finished ({ev.text})"
            if ev.text == "exit 0":
                return ""
            self._repro_failed = True
            return f"  repro run {self._repro_runs} finished ({ev.text})"
        if ev.kind == "pulled":
            return f"  pulled {ev.point} ({size_text(ev.done or 0)})"
        return f"  {ev.kind}: {ev.text}" if ev.text else ""


def _named(who: str | None, text: str) -> str:
    """`who: text`, once: a host's error says its host already (`srv: no answer ...`)."""
    if who is None or text.startswith(f"{who}: "):
        return text
    return f"{who}: {text}"


def _clock(seconds: int) -> str:
    h, rest = divmod(max(0, seconds), 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _connector(progress: _Progress) -> Any:
    """Connects hosts, asking for the password of a host that refuses our keys and has no
    `password_env` only when a person can answer (a terminal on stdin)."""
    from hopcap.orchestrator.session import host_connector

    return host_connector(progress.ask_password if sys.stdin.isatty() else None)


MAX_FLOWS_SHOWN = 50  # flow rows without --all
MAX_PATTERNS_SHOWN = 20  # problem patterns without --all

AllOpt = Annotated[
    bool,
    typer.Option("--all", help="list every flow (default: only drops, injections, resets, gaps)"),
]
FlowOpt = Annotated[str | None, typer.Option("--flow", help="show one flow (e.g. f12) in detail")]


def _flow_opt(flow: str | None) -> str | None:
    """`--flow` checked before anything starts (a typo was found after the whole
    correlation, or the whole run): `f12`, or its number alone."""
    if flow is None:
        return None
    f = flow.strip()
    if f.isdigit():
        f = f"f{f}"
    if not re.fullmatch(r"f[1-9][0-9]*", f):
        raise OptionError(
            f"--flow {flow}: not a flow id (f and its number, e.g. f12)",
            hint="`--all` lists every flow with its id",
        )
    return f


def _terminal_width() -> int | None:
    """The width of the terminal stdout is (None: a file or a pipe, which get every
    character)."""
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _columns(rows: list[list[str]], headers: list[str]) -> str:
    """A plain text table in O(rows): widths from one pass over each column, each row
    written by one format call, the last column unpadded (tabulate takes seconds on 100k
    rows). On a terminal, the last column is cut to its width (a flow's summary of a
    missing point says why at length: a line the terminal wrapped into five); `--flow`,
    the report and a file or pipe keep it whole."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(headers)
    widths = [max(len(h), max(map(len, c), default=0)) for h, c in zip(headers, cols, strict=True)]
    width = _terminal_width()
    if width is not None and rows:
        room = max(width - sum(widths[:-1]) - 2 * (len(widths) - 1), 30)
        if widths[-1] > room:
            rows = [
                [*r[:-1], r[-1] if len(r[-1]) <= room else r[-1][: room - 1] + "…"] for r in rows
            ]
            widths[-1] = room
    line = "  ".join([*(f"{{:<{w}}}" for w in widths[:-1]), "{}"]).format
    out = [line(*headers), line(*("-" * w for w in widths)), *itertools.starmap(line, rows)]
    return "\n".join(out)


def _devices(verdict: Verdict) -> dict[str, list[str]]:
    """What the captures say of their devices (e.g. a BIG-IP's version), with its points."""
    out: dict[str, list[str]] = {}
    for p in verdict.points:
        if p.device:
            out.setdefault(p.device, []).append(p.name)
    return out


def _shown_addresses(addresses: Sequence[str]) -> list[str]:
    """A host's addresses for the terminal: loopback and IPv6 link-local ones (every host
    has them) left out when it has others; verdict.json keeps them all."""
    import ipaddress

    def plain(a: str) -> bool:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError:
            return True
        return not (ip.is_loopback or ip.is_link_local)

    return [a for a in addresses if plain(a)] or list(addresses)


def _print_verdict(verdict: Verdict, *, show_all: bool = False, flow_id: str | None = None) -> bool:
    """Points, then patterns (problems, then device policy), then only the flows with
    drops, injections, resets or gaps (most such packets first); `show_all`: every flow;
    `flow_id`: that flow in detail instead. False: there is no flow `flow_id`."""
    from hopcap.patterns import (
        FLOW_HEADERS,
        also_seen_line,
        ensure_patterns,
        flow_row,
        seen_span,
        split_patterns,
        triage,
    )

    verdict = ensure_patterns(verdict)

    pts = [
        [
            p.name,
            p.packets,
            "?" if p.kernel_drops is None else p.kernel_drops,
            "" if p.clock_offset_s is None else ms_text(p.clock_offset_s, signed=True),
        ]
        for p in verdict.points
    ]
    typer.echo(tabulate(pts, headers=["point", "packets", "kernel drops", "clock offset"]))
    for dev, names in _devices(verdict).items():
        typer.echo(f"{', '.join(names)}: {dev}")
    if verdict.hosts:
        typer.echo(
            "hosts' own addresses: "
            + "; ".join(
                f"{h.host} {', '.join(_shown_addresses(h.addresses))}"
                + (" (inferred)" if h.source != "stated" else "")
                for h in verdict.hosts
            )
        )
    if flow_id is not None:
        found = _print_flow(verdict, flow_id)
        for w in verdict.warnings:
            typer.echo(f"warning: {w}")
        return found
    typer.echo("")
    if not verdict.flows and any(p.missing for p in verdict.points):
        typer.echo("no TCP, UDP or ICMP flows were seen at the points that could be read")
    elif not verdict.flows:
        typer.echo("no TCP, UDP or ICMP flows were seen at any point")
    problems, around, policy = split_patterns(verdict.patterns)
    if problems:
        shown = problems if show_all else problems[:MAX_PATTERNS_SHOWN]
        typer.echo(f"patterns ({len(problems)}):")
        # (each with when it came and went: "; 21:44:39.874-21:46:10.787 UTC")
        typer.echo("\n".join(f"  {'; '.join(filter(None, (p.text, seen_span(p))))}" for p in shown))
        if len(shown) < len(problems):
            typer.echo(f"  ... {len(problems) - len(shown):,} more patterns, use --all")
    if around:
        typer.echo(f"paths around capture points (not drops) ({len(around)}):")
        typer.echo(
            "\n".join(f"  {'; '.join(filter(None, (p.text, seen_span(p))))}" for p in around)
        )
    if policy:
        typer.echo(f"device policy (expected, not faults) ({len(policy)}):")
        typer.echo("\n".join(f"  {p.text}" for p in policy))
    if problems or around or policy:
        typer.echo("")
    t = triage(verdict)
    if show_all:
        flows = t.alarms + t.unanswered + t.rewrites + t.around + t.policy + t.healthy
        if flows:
            typer.echo(f"all flows ({len(flows):,}):")
            typer.echo(_columns([flow_row(f) for f in flows], list(FLOW_HEADERS)))
        if t.local:
            typer.echo("")
            typer.echo(f"not on the path ({len(t.local):,}): the hosts' own traffic, not findings")
            typer.echo(_columns([flow_row(f) for f in t.local], list(FLOW_HEADERS)))
    else:
        shown_flows = t.alarms[:MAX_FLOWS_SHOWN]
        if shown_flows:
            typer.echo(
                f"flows with drops, injections, resets or gaps ({len(t.alarms):,}), "
                "most such packets first:"
            )
            typer.echo(_columns([flow_row(f) for f in shown_flows], list(FLOW_HEADERS)))
            if len(shown_flows) < len(t.alarms):
                typer.echo(
                    f"... {len(t.alarms) - len(shown_flows):,} more, use --all "
                    "(or --flow ID for one)"
                )
        elif verdict.flows:
            typer.echo("no flow had drops, injections, resets or gaps")
        if t.unanswered:
            # no finding, yet nothing came back: not to be counted among the healthy ones
            shown_flows = t.unanswered[:MAX_FLOWS_SHOWN]
            typer.echo(
                f"\nflows whose request got no response, with no finding on the way "
                f"({len(t.unanswered):,}):"
            )
            typer.echo(_columns([flow_row(f) for f in shown_flows], list(FLOW_HEADERS)))
            if len(shown_flows) < len(t.unanswered):
                typer.echo(f"... {len(t.unanswered) - len(shown_flows):,} more, use --all")
        hidden = [
            (len(t.rewrites), "with rewrites only (see the patterns)"),
            (len(t.around), "that went around capture points (see above)"),
            (len(t.policy), "with device policy only"),
            (len(t.healthy), "healthy"),
        ]
        parts = [f"{n:,} {what}" for n, what in hidden if n]
        if parts:
            typer.echo(f"not listed: {', '.join(parts)}; --all lists every flow")
    also = also_seen_line(t.local, dict.fromkeys(p.host for p in verdict.points))
    if also:
        typer.echo(also)
    for w in verdict.warnings:
        typer.echo(f"warning: {w}")
    return True


def _print_flow(verdict: Verdict, flow_id: str) -> bool:
    from hopcap.bundle.report import finding_what, seen_when

    fl = next((f for f in verdict.flows if f.id == flow_id), None)
    if fl is None:
        n = len(verdict.flows)
        known = f"flows are f1 to f{n}" if n else "there are no flows"
        _err(f"hopcap: no flow {flow_id!r} in this verdict")
        _err(f"  hint: {known}; `--all` lists them")
        return False
    typer.echo("")
    typer.echo(f"flow {fl.id}: {fl.client} -> {fl.server} ({fl.proto})")
    typer.echo(f"summary: {fl.summary}")
    if fl.legs:
        typer.echo("")
        legs = [
            [
                leg.point,
                leg.tuple,
                leg.link,
                "" if leg.latency_s is None else ms_text(leg.latency_s),
                "; ".join(leg.details),
            ]
            for leg in fl.legs
        ]
        typer.echo(tabulate(legs, headers=["leg", "tuple", "link", "latency", "details"]))
    typer.echo("")
    if fl.findings:
        rows = [
            [
                f.kind,
                f.direction,
                f"{f.between[0]} -> {f.between[1]}",
                f.packets,
                f.bytes,
                seen_when(f),
                finding_what(f),
            ]
            for f in fl.findings
        ]
        headers = ["kind", "dir", "between", "packets", "bytes", "seen", "what"]
        typer.echo(tabulate(rows, headers=headers))
    else:
        typer.echo("no findings")
    part = [p for p in verdict.patterns if fl.id in p.flow_ids]
    if part:
        typer.echo("")
        typer.echo("part of the patterns:")
        typer.echo("\n".join(f"  {p.text}" for p in part))
    return True


JobsOpt = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", min=1, help="correlate in this many processes (default: all cores)"
    ),
]


def _memory(text: str | None) -> int | None:
    """`--memory 8G` (K, M, G, T: powers of 1024; plain: bytes) -> bytes."""
    if text is None:
        return None
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        n = float(t)
    except ValueError:
        n = -1.0
    if n <= 0:
        raise typer.BadParameter(f"{text!r} is not a size like 500M or 8G", param_hint="--memory")
    return int(n * mult)


def _jobs(jobs: int | None) -> int:
    if jobs is not None:
        return jobs
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _correlate_run(record: RunRecord, jobs: int | None = None) -> Verdict:
    from hopcap.correlate import correlate

    # a recording keeps only its last --ring: the evidence starts there, not at "listening"
    kept_from = (record.recording or {}).get("kept_from_ts")
    not_before = float(kept_from) if kept_from is not None else None
    points = [
        PointRecord.from_capture(c, c.pcap, c.error).to_input(not_before=not_before)
        for c in record.captures
    ]
    from hopcap.bundle.facts import conntrack_after, host_addresses

    conntrack = conntrack_after(record.facts)

    return correlate(
        points,
        conntrack=conntrack or None,
        jobs=_jobs(jobs),
        hosts=host_addresses(record.facts),
        target=(record.inventory or {}).get("target"),
    )


def _exit_if_crashed(crash: Exception | None, bundle: Path) -> None:
    if crash is not None:
        _err(f"hopcap: correlation failed ({type(crash).__name__}: {crash})")
        _err(f"  the captures and the manifest are saved in {bundle}; please report this bug")
        raise typer.Exit(EXIT_ERROR)


def _correlate_kept(record: RunRecord, jobs: int | None = None) -> tuple[Verdict, Exception | None]:
    """Correlate a run; a crash of the correlator must not cost the captures: the verdict
    then only carries a warning that says how to re-correlate."""
    try:
        return _correlate_run(record, jobs), None
    except HopcapError:
        raise
    except Exception as exc:  # a bug in the correlator
        return (
            Verdict(
                points=(),
                flows=(),
                warnings=(
                    f"correlation failed ({type(exc).__name__}: {exc}); the captures "
                    "are intact in pcaps/: re-correlate with `hopcap correlate BUNDLE`",
                ),
            ),
            exc,
        )


def _correlate_and_write(
    record: RunRecord, out: Path, *, jobs: int | None = None, tarball: bool, anonymise: bool
) -> tuple[Verdict, Exception | None, Path]:
    """Correlate a run and write its bundle (saying how far it is): (verdict, the
    correlator's crash, the bundle). Each takes seconds on large captures: `-v` logs how
    long each took, as the orchestrator does for its phases."""
    from hopcap.bundle import write_bundle

    log = logging.getLogger("hopcap.cli")
    _err("correlating ...")
    t0 = time.perf_counter()
    try:
        verdict, crash = _correlate_kept(record, jobs)
    except KeyboardInterrupt:
        _correlation_interrupted(record, out, tarball=tarball, anonymise=anonymise)
    t1 = time.perf_counter()
    log.debug("phase correlate: %.3f s", t1 - t0)
    with _finishing(out, "finishing the bundle: its verdict is made already"):
        final = write_bundle(
            out, record, verdict, tarball=tarball, anonymise=anonymise, progress=_status
        )
    _status_end()
    log.debug("phase bundle: %.3f s", time.perf_counter() - t1)
    return verdict, crash, final


@contextlib.contextmanager
def _finishing(out: Path, first_press: str | None) -> Iterator[None]:
    """Writing a bundle: a first Ctrl-C (when `first_press` says what then happens) lets it
    finish; the next one aborts, with a line that says the bundle is incomplete (not the
    silent exit 130 of a KeyboardInterrupt reaching typer)."""
    pressed = first_press is None

    def on_sigint(_sig: int, _frame: object) -> None:
        nonlocal pressed
        if pressed:
            raise KeyboardInterrupt
        pressed = True
        _err(f"\n{first_press} (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        _err(f"\nhopcap: aborted while writing the bundle: {out} is incomplete")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def _correlation_interrupted(
    record: RunRecord, out: Path, *, tarball: bool, anonymise: bool
) -> NoReturn:
    """Ctrl-C while a run's captures were being correlated: they are pulled already, and
    with them the facts and the run's record, which only the manifest keeps; the bundle is
    written without a verdict (a second Ctrl-C aborts that), exit 130."""
    from hopcap.bundle import write_bundle

    _status_end()
    _err("\ncorrelation interrupted: writing the bundle without a verdict (Ctrl-C again to abort)")
    verdict = Verdict(
        points=(),
        flows=(),
        warnings=(
            "correlation interrupted (Ctrl-C): no verdict; the captures are intact in pcaps/: "
            "correlate them with `hopcap correlate BUNDLE`",
        ),
    )
    with _finishing(out, None):
        final = write_bundle(
            out, record, verdict, tarball=tarball, anonymise=anonymise, progress=_status
        )
    _status_end()
    _out(f"bundle: {final}")
    _err(
        f"correlation interrupted: the bundle holds the captures, the facts and the manifest, "
        f"no verdict; `hopcap correlate {out}` correlates them"
    )
    raise typer.Exit(EXIT_INTERRUPTED) from None  # said: no "hopcap: interrupted" after it


@app.command()
def run(
    inventory: InventoryOpt,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="bundle directory (default: new, here)")
    ] = None,
    window: Annotated[
        str | None, typer.Option(help="longest capture, e.g. 30s (overrides the inventory)")
    ] = None,
    path: Annotated[
        str | None, typer.Option(help="hop order, e.g. client,fw,lb,srv (overrides)")
    ] = None,
    require_all: Annotated[
        bool, typer.Option("--require-all", help="fail unless every point captures")
    ] = False,
    tarball: Annotated[bool, typer.Option("--tar", help="also write DIR.tar.gz")] = False,
    anonymise: Annotated[
        bool,
        typer.Option(
            "--anonymise",
            help="replace addresses with stable pseudonyms and cut payloads in the bundle",
        ),
    ] = False,
    no_facts: Annotated[
        bool, typer.Option("--no-facts", help="skip counters/conntrack/rulesets")
    ] = False,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="stream every capture over SSH (tcpdump -w -) instead of writing it on the "
            "host; hosts with under 64 MB free always stream",
        ),
    ] = False,
    show_all: AllOpt = False,
    flow: FlowOpt = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="a scheduled window: start at HH:MM, an ISO date-time or +15m (connections "
            "and check now); bundles go to DIR/w01-<time>/ ... with DIR/windows.md",
        ),
    ] = None,
    every: Annotated[
        str | None, typer.Option("--every", help="one window every D (from --at, or now)")
    ] = None,
    count: Annotated[
        int | None,
        typer.Option("--count", help="number of windows (default 1; with --every: until Ctrl-C)"),
    ] = None,
    repeat: Annotated[
        int | None, typer.Option("--repeat", help="run the repro N times inside the window")
    ] = None,
    until_fail: Annotated[
        bool,
        typer.Option(
            "--until-fail",
            help="repeat the repro until it exits non-zero (or the window ends); keep only "
            "the captures around the failing run",
        ),
    ] = False,
    jobs: JobsOpt = None,
) -> None:
    """Capture on every hop at once, correlate, and write an evidence bundle."""
    from hopcap.inventory import load, parse_duration
    from hopcap.orchestrator.run import RunOptions, new_run_id
    from hopcap.orchestrator.schedule import make_schedule, repeat_window

    made = False  # the bundle directory was made by this run
    out_dir: Path | None = None
    try:
        flow = _flow_opt(flow)
        scheduled = at is not None or every is not None or count is not None
        schedule = make_schedule(at, every, count) if scheduled else None
        if repeat is not None and repeat < 1:
            raise OptionError(f"--repeat {repeat}: must be at least 1")
        window_s = None
        if window is not None:
            try:
                window_s = parse_duration(window)
            except ValueError as exc:
                raise OptionError(f"--window {window}: {exc}") from None
            if window_s <= 0:  # as the inventory's `window:` (it ended the repro at once)
                raise OptionError(f"--window {window}: must be longer than 0")
        inv = load(inventory, path_override=path.split(",") if path else None)
        if (repeat is not None or until_fail) and inv.repro is None:
            raise OptionError(
                "--repeat and --until-fail repeat the repro step, and the inventory has none",
                hint='add `repro: {on: HOST, run: "COMMAND"}` to the inventory',
            )
        run_id = new_run_id()
        out_dir = out or _default_out("hopcap-windows" if scheduled else "hopcap-run")
        made = _make_out(out_dir)
        opts = RunOptions(
            out=out_dir,
            run_id=run_id,
            require_all=require_all,
            collect_facts=not no_facts,
            window_s=window_s,
            stream=True if stream else None,
            window_fn=(
                repeat_window(repeat, until_fail) if repeat is not None or until_fail else None
            ),
        )
        if schedule is not None:
            _run_windows(inv, schedule, out_dir, opts, until_fail, tarball, anonymise)
        _err(f"hopcap {__version__}: run {run_id}, {len(inv.path)} hosts, bundle {out_dir}")
        record = _run_async(inv, opts)
        if until_fail:
            record, kept = _keep_failing_run(record)
            repro = record.repro or {}
            if kept:
                _err(f"the repro failed: {repro.get('kept')}")
            else:
                runs = len(repro.get("runs", ()))
                _err(f"the repro never failed in {runs} runs in this window: no capture kept")
                shutil.rmtree(out_dir, ignore_errors=True)
                raise typer.Exit(EXIT_INTERRUPTED if record.interrupted else EXIT_OK)
        verdict, crash, final = _correlate_and_write(
            record, out_dir, jobs=jobs, tarball=tarball, anonymise=anonymise
        )
    except HopcapError as exc:
        if out_dir is not None:
            _drop_if_empty(out_dir, made)
        _fail(exc)
    _exit_if_crashed(crash, final)
    _print_verdict(verdict, show_all=show_all, flow_id=flow)
    typer.echo("")
    _out(f"bundle: {final}")
    if record.interrupted:
        _err("run interrupted: the bundle holds what was captured until then")
        raise typer.Exit(EXIT_INTERRUPTED)
    if not record.complete:
        for e in record.errors:
            _err(f"incomplete: {e}")
        raise typer.Exit(EXIT_PARTIAL)
    unread = [p for p in verdict.points if p.missing]
    for p in unread:
        _err(f"incomplete: {p.name}: {p.missing}")
    raise typer.Exit(EXIT_PARTIAL if unread else EXIT_OK)


def _run_async(inv: Inventory, opts: RunOptions) -> RunRecord:
    """Run the orchestrator; first Ctrl-C stops the window gracefully, second cancels."""
    from hopcap.orchestrator.run import run_capture

    def start(progress: _Progress, stop: asyncio.Event) -> Coroutine[Any, Any, RunRecord]:
        opts.connector = _connector(progress)
        return run_capture(inv, opts, emit=progress, stop=stop)

    return _with_sigint(start, _run_first_press, opts.out)


def _record_first_press(progress: _Progress) -> str:
    """What the first Ctrl-C of a recording does, by its phase."""
    if progress.phase == "connecting":  # no ring captures yet
        return "stopping: the recording ends before it starts (Ctrl-C again to abort)"
    return "ending the recording: keeping the last --ring (Ctrl-C again to abort)"


def _run_first_press(progress: _Progress) -> str:
    """What the first Ctrl-C of a run does, by the run's phase."""
    if progress.phase == "connecting":  # no capture listens yet: none will
        return "stopping: the run ends before its window (Ctrl-C again to abort)"
    if progress.phase == "stopping and pulling":  # the window is over already
        return (
            "the captures have stopped already: finishing the pull and the bundle "
            "(Ctrl-C again to abort)"
        )
    return "stopping captures and pulling what exists (Ctrl-C again to abort)"


T = TypeVar("T")


def _with_sigint(
    start: Callable[[_Progress, asyncio.Event], Coroutine[Any, Any, T]],
    first_press: str | Callable[[_Progress], str],
    out: Path | None = None,
) -> T:
    """Run an orchestrator coroutine with live progress (`start(progress, stop)`; the
    progress is also what `_connector` asks passwords through): the first Ctrl-C sets
    `stop` (a graceful end), the second cancels it (remote captures are still stopped)."""
    import asyncio  # here, not at start-up: `correlate` does without it

    progress = _Progress()
    presses = 0

    async def main() -> T:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses == 1 and not progress.prompting:
                _err(f"\n{first_press if isinstance(first_press, str) else first_press(progress)}")
                stop.set()
            elif task is not None:
                _err("\naborting; stopping remote captures")
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await start(progress, stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            progress.close()

    cancelled = False
    try:
        got = asyncio.run(main())
    except asyncio.CancelledError:
        cancelled = True
    # aborted, also when the cancellation did not reach the run (a wait it came in finished
    # at the same moment, and swallowed it: Python 3.11's wait_for does): no bundle
    if cancelled or presses >= 2:
        _err("hopcap: aborted; remote captures were stopped")
        pcaps = out / "pcaps" if out is not None else None
        if pcaps is not None and pcaps.is_dir() and any(pcaps.iterdir()):
            _err(f"  {out} is no bundle: it holds only the captures pulled until then, maybe cut")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    return got


def _keep_failing_run(record: RunRecord) -> tuple[RunRecord, bool]:
    """`--until-fail`: cut every capture to the failing run of the repro (plus the settle
    time); (record, False) when no run failed (its captures are not evidence)."""
    from dataclasses import replace

    from hopcap.orchestrator.run import SETTLE_S

    repro = record.repro or {}
    failed = repro.get("failed_run")
    if not failed:
        return record, False
    run = repro["runs"][failed - 1]
    # the failing run starts the evidence (only the clock's error as margin: the run
    # before may have ended a moment earlier); its answers may trail its end
    record = _trim_captures(
        record, run["started_ts"], run["finished_ts"] + SETTLE_S, before_margin=0.05
    )
    repro = {**repro, "kept": f"captures cut to run {failed} of {len(repro['runs'])}"}
    return replace(record, repro=repro), True


def _trim_captures(
    record: RunRecord, start: float, end: float, *, before_margin: float = 1.0
) -> RunRecord:
    """Cut every capture to [start, end] (controller clock; each point's clock offset is
    applied, with a margin of the offset's error plus `before_margin` before the start
    and a second after the end)."""
    from dataclasses import replace

    from hopcap.bundle import trim_pcap

    captures = []
    for c in record.captures:
        if c.pcap is not None and c.pcap.exists():
            off = c.clock_offset_s or 0.0
            err = c.clock_error_s or 0.0
            trim_pcap(c.pcap, start + off - before_margin - err, end + off + 1.0 + err)
            c = replace(c, sha256=None)  # the manifest hashes the trimmed file
        captures.append(c)
    return replace(record, captures=tuple(captures))


def _run_windows(
    inv: Inventory,
    schedule: Schedule,
    out_dir: Path,
    opts: RunOptions,
    until_fail: bool,
    tarball: bool,
    anonymise: bool,
) -> NoReturn:
    """`run --at/--every/--count`: one bundle per window, DIR/windows.md + windows.json."""
    from hopcap.bundle import WindowResult, write_bundle, write_windows_summary
    from hopcap.orchestrator.schedule import WindowsOutcome, run_windows

    results: list[WindowResult] = []
    n = f"{schedule.count} window(s)" if schedule.count else "windows until Ctrl-C"
    every = f" every {schedule.every_s:g}s" if schedule.every_s else ""
    first = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(schedule.first_ts))
    _err(
        f"hopcap {__version__}: {n}{every} from {first}, "
        f"{len(inv.path)} hosts, bundles in {out_dir}"
    )

    def after(
        index: int, at: float, wdir: Path, record: RunRecord | None, error: str | None
    ) -> None:
        if record is None:
            name = wdir.name if wdir.exists() else ""
            results.append(WindowResult(index, name, at, None, None, "failed", note=error or ""))
        else:
            kept = True
            if until_fail:
                record, kept = _keep_failing_run(record)
            if not kept:
                shutil.rmtree(wdir, ignore_errors=True)
                runs = len((record.repro or {}).get("runs", ()))
                results.append(
                    WindowResult(
                        index,
                        wdir.name,
                        at,
                        record.started_ts,
                        record.finished_ts,
                        "interrupted" if record.interrupted else "discarded",
                        repro=record.repro,
                        note=f"no failure in {runs} runs; captures discarded",
                    )
                )
            else:
                verdict, crash = _correlate_kept(record)
                write_bundle(
                    wdir, record, verdict, tarball=tarball, anonymise=anonymise, progress=_status
                )
                _status_end()
                status = (
                    "interrupted"
                    if record.interrupted
                    else ("ok" if record.complete else "partial")
                )
                note = "; ".join(record.errors[:3])
                if crash is not None:
                    note = f"correlation failed ({type(crash).__name__}: {crash})"
                results.append(
                    WindowResult(
                        index,
                        wdir.name,
                        at,
                        record.started_ts,
                        record.finished_ts,
                        status,
                        verdict,
                        record.repro,
                        note,
                    )
                )
        r = results[-1]
        line = f"window {index}: {r.status}, {r.flows} flows, {r.broken_flows} broken  "
        line += f"{r.name} {r.note}"
        typer.echo(line.rstrip())
        write_windows_summary(out_dir, results)

    try:

        def start(progress: _Progress, stop: asyncio.Event) -> Coroutine[Any, Any, WindowsOutcome]:
            opts.connector = _connector(progress)
            return run_windows(inv, schedule, out_dir, opts, after, emit=progress, stop=stop)

        outcome = _with_sigint(
            start,
            "stopping (between windows: no more windows; in one: it ends as an interrupted "
            "bundle); Ctrl-C again to abort",
        )
    except HopcapError as exc:
        _fail(exc)
    if results:
        _out(f"summary: {out_dir / 'windows.md'}")
    if outcome.interrupted:
        _err(f"schedule stopped after {outcome.done} window(s)")
        raise typer.Exit(EXIT_INTERRUPTED)
    if any(r.status in ("partial", "failed") for r in results):
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_OK)


@app.command(name="record")
def record_cmd(
    inventory: InventoryOpt,
    until: Annotated[
        str,
        typer.Option(
            "--until",
            help='"HOST: COMMAND": with --probe-every, run periodically and fire on a '
            "non-zero exit; without, a watcher that fires when it exits",
        ),
    ],
    ring: Annotated[
        str, typer.Option("--ring", help="keep this much before the trigger, e.g. 60s")
    ] = "60s",
    probe_every: Annotated[
        str | None, typer.Option("--probe-every", help="run the --until command every D")
    ] = None,
    post: Annotated[
        str, typer.Option("--post", help="keep capturing this long after the trigger")
    ] = "3s",
    max_duration: Annotated[
        str, typer.Option("--max-duration", help="end the recording after this long")
    ] = "8h",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="bundle directory (default: new, here)")
    ] = None,
    path: Annotated[
        str | None, typer.Option(help="hop order, e.g. client,fw,lb,srv (overrides)")
    ] = None,
    tarball: Annotated[bool, typer.Option("--tar", help="also write DIR.tar.gz")] = False,
    anonymise: Annotated[
        bool, typer.Option("--anonymise", help="pseudonymise addresses, cut payloads")
    ] = False,
    no_facts: Annotated[
        bool, typer.Option("--no-facts", help="skip counters/conntrack/rulesets")
    ] = False,
) -> None:
    """Flight recorder: capture into a ring on every hop until a trigger, bundle the last --ring."""
    from hopcap.inventory import load
    from hopcap.orchestrator.record import RecordOptions, parse_until, record
    from hopcap.orchestrator.run import new_run_id

    made = False
    out_dir: Path | None = None
    try:
        ring_s = _positive("--ring", ring)
        probe_s = _positive("--probe-every", probe_every) if probe_every is not None else None
        post_s = _positive("--post", post, zero=True)
        max_s = _positive("--max-duration", max_duration)
        inv = load(inventory, path_override=path.split(",") if path else None)
        trig = parse_until(until, inv)
        run_id = new_run_id()
        out_dir = out or _default_out("hopcap-record")
        made = _make_out(out_dir)
        opts = RecordOptions(
            out=out_dir,
            ring_s=ring_s,
            until=trig,
            probe_every_s=probe_s,
            post_s=post_s,
            max_duration_s=max_s,
            run_id=run_id,
            collect_facts=not no_facts,
        )
        _err(
            f"hopcap {__version__}: record {run_id}, {len(inv.path)} hosts, ring {ring_s:g}s, "
            f"bundle {out_dir}"
        )

        def start(progress: _Progress, stop: asyncio.Event) -> Coroutine[Any, Any, RunRecord]:
            opts.connector = _connector(progress)
            return record(inv, opts, emit=progress, stop=stop)

        rec = _with_sigint(
            start,
            _record_first_press,
            out_dir,
        )
        kept = rec.recording or {}
        rec = _trim_captures(rec, float(kept["kept_from_ts"]), float(kept["kept_to_ts"]))
        verdict, crash, final = _correlate_and_write(
            rec, out_dir, tarball=tarball, anonymise=anonymise
        )
    except HopcapError as exc:
        if out_dir is not None:
            _drop_if_empty(out_dir, made)
        _fail(exc)
    _exit_if_crashed(crash, final)
    _print_verdict(verdict)
    typer.echo("")
    if rec.trigger is not None:
        t = rec.trigger
        why = t.get("error") or f"exit {t.get('exit_status')}"
        _out(f"trigger: {t['host']}: {t['command']} ({why})")
    _out(f"bundle: {final}")
    for w in kept.get("warnings", ()):
        _err(f"warning: {w}")
    ended = kept.get("ended")
    if ended == "ctrl-c":
        _err("recording interrupted: the bundle holds the last --ring before the stop")
        raise typer.Exit(EXIT_INTERRUPTED)
    if ended == "max-duration":
        _err("--max-duration reached without a trigger: the bundle holds the last --ring")
        raise typer.Exit(EXIT_OK)
    if not rec.complete:
        for e in rec.errors:
            _err(f"incomplete: {e}")
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_OK)


def _positive(option: str, text: str, *, zero: bool = False) -> float:
    """A duration option's value; OptionError (exit 3) unless it is > 0 (>= 0 with zero)."""
    from hopcap.inventory import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise OptionError(f"{option} {text}: {exc}") from None
    if value <= 0 and not (zero and value == 0):
        raise OptionError(f"{option} {text}: must be longer than 0")
    return value


@app.command()
def check(
    inventory: InventoryOpt,
    path: Annotated[
        str | None, typer.Option(help="hop order, e.g. client,fw,lb,srv (overrides)")
    ] = None,
) -> None:
    """Preflight only: reach, auth, host keys, tcpdump, sudo, interfaces, disk, clocks."""
    import asyncio

    from hopcap.inventory import load
    from hopcap.orchestrator.check import check as run_check

    try:
        inv = load(inventory, path_override=path.split(",") if path else None)
        progress = _Progress()
        try:
            results = asyncio.run(run_check(inv, emit=progress, connector=_connector(progress)))
        finally:
            progress.close()
    except HopcapError as exc:
        _fail(exc)
    typer.echo(_check_table(results))
    bad = [r for r in results if not r.ok]
    for r in bad:
        for p in r.problems:
            typer.echo(_named(r.host, str(p)))
    if bad:
        raise typer.Exit(EXIT_PREFLIGHT)
    typer.echo("all hosts ready")


@app.command(name="correlate")
def correlate_cmd(
    points: Annotated[
        list[str],
        typer.Argument(
            metavar="POINTS", help="NAME=PCAP ... in path order, or one BUNDLE directory"
        ),
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write a bundle here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print verdict.json to stdout")] = False,
    show_all: AllOpt = False,
    flow: FlowOpt = None,
    jobs: JobsOpt = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            help="memory the correlation may use, e.g. 8G (default: half of what is "
            "available); captures that may not fit are correlated by time slices, with the "
            "same verdict",
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="run the partitions on this dask.distributed scheduler, e.g. "
            "tcp://scheduler:8786 (needs the `dask` extra of hopcap; every worker must see "
            "the capture files at the same paths)",
        ),
    ] = None,
    host: Annotated[
        list[str] | None,
        typer.Option(
            "--host",
            metavar="HOST=ADDR[,ADDR...]",
            help="a host's own addresses; traffic to them ends at that "
            "host and is not expected beyond it (default: a bundle's `ip addr` facts, else "
            "inferred from the captures); repeatable",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="ADDR[:PORT] of the service under study: its flows are listed first and never "
            "set apart as a host's own traffic (default: a bundle's inventory target)",
        ),
    ] = None,
) -> None:
    """Correlate captures offline (points in the order packets from the client cross them)."""
    # a one-shot command: the cyclic collector would walk the verdict's objects again and
    # again while they are built and encoded (there are no cycles worth collecting), and
    # the engine's modules while they are imported (~0.01 s)
    gc.disable()
    from hopcap.correlate import correlate, read_points_from_args
    from hopcap.correlate.args import check_bundle_files, check_target, read_hosts_from_args

    # and its process ends without freeing them (a dask client is closed properly)
    global _QUICK_EXIT
    _QUICK_EXIT = dask is None
    if _QUICK_EXIT and _MAIN:
        from hopcap.correlate.engine import keep_state_until_exit

        keep_state_until_exit()
    kw: dict[str, Any] = {
        "jobs": _jobs(jobs),
        "dask": dask,
        "memory": _memory(memory),
        "progress": _status,
    }
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        # as `run` does: another bundle's captures left beside this one's (or this bundle
        # re-correlated into itself) would be read as part of it; said before correlating
        _err(f"hopcap: {out} exists and is not empty; choose another --out")
        _err("  hint: a bundle is written into a new or empty directory")
        raise typer.Exit(EXIT_ERROR)
    stack = contextlib.ExitStack()
    try:
        flow = _flow_opt(flow)
        # the bundle package (reports, pcapng) is imported only when a bundle is involved
        if len(points) == 1 and "=" not in points[0] and _bundle_arg(Path(points[0])):
            from hopcap.bundle import load_bundle, write_offline_bundle
            from hopcap.bundle.facts import bundle_conntrack, bundle_host_addresses

            with load_bundle(Path(points[0])) as loaded:
                inputs = loaded.points
                stated = bundle_host_addresses(loaded.path)
                stated.update(read_hosts_from_args(host or [], inputs))
                inv = loaded.manifest.get("inventory") or {}
                kw.update(hosts=stated, target=check_target(target) or inv.get("target"))
                kw.update(conntrack=bundle_conntrack(loaded.path) or None)
                verdict = correlate(inputs, **kw)
                if out is not None:
                    write_offline_bundle(out, inputs, verdict, progress=_status, source=loaded)
        else:
            # a point given several files (a rotated capture) is read from their join
            joins = stack.enter_context(tempfile.TemporaryDirectory(prefix="hopcap-join-"))
            damage: list[str] = []
            inputs = read_points_from_args(points, Path(joins), damage)
            for w in damage:
                _err(f"warning: {w}")
            if out is not None:
                check_bundle_files(inputs)
            kw.update(hosts=read_hosts_from_args(host or [], inputs), target=check_target(target))
            verdict = correlate(inputs, **kw)
            if out is not None:
                from hopcap.bundle import write_offline_bundle

                write_offline_bundle(out, inputs, verdict, progress=_status)
    except HopcapError as exc:
        _fail(exc)
    finally:  # (also on Ctrl-C: decompressed and joined copies can be large)
        stack.close()
    _status_end()
    if as_json:
        from hopcap.jsonout import write_verdict

        write_verdict(verdict, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        found = _print_verdict(verdict, show_all=show_all, flow_id=flow)
        if out is not None:
            typer.echo(f"\nbundle: {out}")
        if not found:
            raise typer.Exit(EXIT_ERROR)
    _leave_to_exit(verdict)
    missing = [p.name for p in verdict.points if p.missing]
    if missing:  # partial: a point is missing or could not be read
        _err(f"incomplete: nothing could be used of {', '.join(missing)}")
        raise typer.Exit(EXIT_PARTIAL)


def _bundle_arg(path: Path) -> bool:
    """A lone `correlate` argument without '=' that names a bundle: a directory or its
    archive (what `load_bundle` reads); any other file is a capture without the name of
    its point (`read_points_from_args` says so)."""
    return path.is_dir() or (path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")))


@app.command()
def report(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="a bundle directory")],
) -> None:
    """Re-render report.md and report.html of a bundle."""
    from hopcap.bundle import render_report

    try:
        md, html = render_report(bundle)
    except HopcapError as exc:
        _fail(exc)
    typer.echo(f"{md}\n{html}")


@app.command()
def version() -> None:
    """Print hopcap's version."""
    typer.echo(__version__)


def _check_table(results: Sequence[Any]) -> str:
    """`hopcap check`'s table: a row per host (`HostCheck`), its last column whether the
    host is ready (was a column without a name)."""

    def clock(r: Any) -> str:
        if r.clock_offset_s is None:
            return "-"
        err = f"{(r.clock_error_s or 0) * 1000:.1f}"
        if abs(r.clock_offset_s) >= 10:  # hours off: seconds, not "+10800000.0 ms"
            return f"{ms_text(r.clock_offset_s, signed=True)} (±{err} ms)"
        ms = round(r.clock_offset_s * 1000, 1) or 0.0  # never "-0.0 ms"
        return f"{ms:+.1f} ms (±{err})"

    rows = [
        [
            r.host,
            r.address,
            "yes" if r.connected else "no",
            (r.tcpdump or "-").removeprefix("tcpdump version "),
            r.sudo,
            r.capture,
            r.pull,
            ", ".join(r.points) or "-",
            "-" if r.free_mb is None else f"{r.free_mb} MB",
            clock(r),
            "ok" if r.ok else "FAIL",
        ]
        for r in results
    ]
    headers = ["host", "address", "ssh", "tcpdump", "sudo", "rights", "pull", "capture"]
    return tabulate(rows, headers=[*headers, "free", "clock", "ready"])


# --------------------------------------------------------------------------------- import


def _utc_offset(text: str) -> int:
    """'+02:00', '-0530', '0' -> seconds."""
    import re

    m = re.fullmatch(r"([+-])?(\d{1,2}):?(\d{2})?", text.strip())
    if not m or int(m.group(2)) > 14 or int(m.group(3) or 0) > 59:
        raise typer.BadParameter(f"{text!r} is not a UTC offset like +02:00")
    secs = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60
    return -secs if m.group(1) == "-" else secs


@import_app.command("fortigate")
def import_fortigate(
    log: Annotated[
        Path,
        typer.Argument(metavar="LOG", help="terminal log of `diagnose sniffer packet ... 6`"),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="pcapng to write (default: LOG.pcapng)")
    ] = None,
    host: Annotated[str, typer.Option(help="device name: interfaces become HOST:port1")] = "fgt",
    utc_offset: Annotated[
        str, typer.Option(help="the box's time zone for absolute times (`6 0 a`), e.g. +02:00")
    ] = "+00:00",
    start: Annotated[
        str | None,
        typer.Option(help="when the sniffer started (ISO time, UTC), for relative times"),
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option(help="also write one pcapng per interface into this directory"),
    ] = None,
) -> None:
    """Convert a FortiGate sniffer log (verbose 3 or 6) into pcapng, one interface each."""
    import datetime as dt

    from hopcap.bundle.fortigate import point_name, read_sniffer_log, write_pcapng

    offset = _utc_offset(utc_offset)
    target = out or log.with_suffix(".pcapng")
    try:
        parsed = read_sniffer_log(log)
        start_ns: int | None = None
        if start is not None:
            try:
                when = dt.datetime.fromisoformat(start)
            except ValueError as exc:
                raise typer.BadParameter(f"--start {start!r} is not an ISO time") from exc
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            start_ns = int(when.timestamp() * 1e9)
        elif not parsed.absolute:
            last = max(p.ts_ns for p in parsed.packets if not p.absolute)
            start_ns = int(log.stat().st_mtime * 1e9) - last
            _err(
                "hopcap: the log has relative times (sniffer run without `a`); anchored to the "
                "file's modification time: pass --start for the real one"
            )
        written = write_pcapng(parsed, target, host=host, start_ns=start_ns, utc_offset_s=offset)
        per_iface: dict[str, Path] = {}
        if split is not None:
            split.mkdir(parents=True, exist_ok=True)
            for iface in parsed.interfaces:
                name = point_name(host, iface)
                path = split / (name.replace(":", "_") + ".pcapng")
                write_pcapng(
                    parsed,
                    path,
                    host=host,
                    start_ns=start_ns,
                    utc_offset_s=offset,
                    interfaces=[iface],
                )
                per_iface[name] = path
    except HopcapError as exc:
        _fail(exc)
    for w in parsed.warnings:
        _err(f"warning: {w}")
    rows = []
    for name, n in written.interfaces.items():
        rows.append([name, n, per_iface.get(name, "")])
    typer.echo(
        tabulate(
            rows,
            headers=["interface", "packets", "file"] if per_iface else ["interface", "packets"],
        )
    )
    typer.echo(f"\n{sum(written.interfaces.values())} packets -> {target}")
    if per_iface:
        args = " ".join(f"{n}={p}" for n, p in per_iface.items())
        typer.echo(f"correlate with: hopcap correlate ... {args} ...  (in path order)")


# ------------------------------------------------------------------------------------ lab

PrefixOpt = Annotated[str, typer.Option(help="name prefix, so that several labs can coexist")]


@lab_app.command("up")
def lab_up(
    prefix: PrefixOpt = "hc",
    mgmt_net: Annotated[
        str | None, typer.Option(help="management /24 (default: derived from the prefix)")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="keys, configs, inventory (default /var/tmp/...)")
    ] = None,
    fw: Annotated[
        str,
        typer.Option(
            help="the firewall host: openssh (a Debian server) or busybox (a BusyBox "
            "router over dropbear: no SFTP, no coreutils, no sudo)"
        ),
    ] = "openssh",
) -> None:
    """Build (or rebuild) the lab and write its inventory."""
    from hopcap import lab

    try:
        lab.check_prerequisites()
        _err(f"building lab {prefix!r} ...")
        info = lab.up(prefix, mgmt_net=mgmt_net, state_dir=state_dir, fw=fw)
    except HopcapError as exc:
        _fail(exc)
    rows = [[h, a] for h, a in info.mgmt.items()]
    typer.echo(tabulate(rows, headers=["host", "ssh (management)"]))
    typer.echo(f"\ninventory: {info.inventory}")
    typer.echo(f"try: hopcap run --inventory {info.inventory}")


@lab_app.command("down")
def lab_down(prefix: PrefixOpt = "hc") -> None:
    """Remove every namespace, link, process and file of the lab."""
    from hopcap import lab

    try:
        removed = lab.down(prefix)
    except HopcapError as exc:
        _fail(exc)
    typer.echo("\n".join(f"removed {r}" for r in removed) if removed else "nothing to remove")


@lab_app.command("status")
def lab_status(prefix: PrefixOpt = "hc") -> None:
    """Show what of the lab exists."""
    from hopcap import lab

    st = lab.status(prefix)
    if not st.up and not st.namespaces:
        typer.echo(f"lab {prefix!r} is down")
        return

    def sshd(ns: str) -> str:
        host = ns.removeprefix(f"{prefix}-")
        if host not in st.sshd:
            return "-"  # the bridge namespace runs no sshd
        return "up" if st.sshd[host] else "down"

    rows = [[ns, sshd(ns), len(st.processes.get(ns, []))] for ns in st.namespaces]
    typer.echo(tabulate(rows, headers=["namespace", "sshd", "processes"]))
    typer.echo(f"fault: {st.fault or 'none'}")
    if st.inventory:
        typer.echo(f"inventory: {st.inventory}")


@lab_app.command("fault")
def lab_fault(
    name: Annotated[str, typer.Argument(metavar="NAME", help="a fault name, `list`, or `clear`")],
    prefix: PrefixOpt = "hc",
) -> None:
    """Inject one of the catalogue's faults (`list` shows them, `clear` undoes)."""
    from hopcap import lab

    try:
        if name == "list":
            rows = lab.fault_list()
            # the descriptions wrapped to the terminal (some are 200 characters)
            room = max(shutil.get_terminal_size().columns - max(len(r[0]) for r in rows) - 2, 30)
            typer.echo(tabulate(rows, headers=["fault", "what it does"], maxcolwidths=[None, room]))
            return
        if name == "clear":
            lab.fault_clear(prefix)
            typer.echo("fault cleared")
            return
        lab.fault_apply(name, prefix)
    except HopcapError as exc:
        _fail(exc)
    # the command as this lab needs it: `fault clear` alone clears the default lab "hc"
    flag = "" if prefix == "hc" else f" --prefix {prefix}"
    typer.echo(f"fault {name} applied; `hopcap lab fault clear{flag}` undoes it")
    repro = lab.fault_repro(name)
    if repro is not None:
        typer.echo(f"this fault shows with its own repro, on {repro.on}: {repro.run}")


class _PlainValues:
    """The coercion of one parameter's value: as it is when it needs none (see
    `plain_values`), else typer's own (`typer_coercion`)."""

    def __init__(self, typer_coercion: Callable[[Any], Any]) -> None:
        self.typer_coercion = typer_coercion

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        d = param.type_descriptor
        multi = param.multiple or param.nargs == -1
        if value is None:  # what typer's coercion gives for None, without building it
            return () if multi else None
        info = d.parameter_info
        if getattr(info, "parser", None) is None and getattr(info, "click_type", None) is None:
            if d.annotation is str and not multi and isinstance(value, str):
                return value
            if (
                d.annotation is int
                and not multi
                and isinstance(value, str)
                and value.isascii()
                and value.isdigit()
                and len(value) < 19
                and not getattr(info, "clamp", False)
                and (getattr(info, "min", None) is None or int(value) >= info.min)
                and (getattr(info, "max", None) is None or int(value) <= info.max)
            ):
                return int(value)
            if (
                d.annotation == list[str]
                and multi
                and isinstance(value, list | tuple)
                and all(isinstance(v, str) for v in value)
            ):
                return list(value)
        return self.typer_coercion(param).coerce(value, param, ctx)


def plain_values() -> bool:
    """typer (>= 0.2x) coerces every parameter's value, even a str from argv, through a
    pydantic TypeAdapter: importing pydantic and building the adapters costs ~0.07 s of
    CPU at every start, more than correlating two small captures. Values that need no
    coercion (None, a str for a str parameter, strs for a list of them, decimal digits
    within the bounds of an int parameter) are taken as they are (as int), which is what
    typer's adapters return for them; every other value (a path, a choice, a number
    written otherwise or out of bounds) still goes through typer's coercion. A typer
    without these internals is left alone (False)."""
    try:
        from typer.core import _TyperParameter
    except ImportError:
        return False
    typer_coercion = getattr(_TyperParameter, "get_runtime_param", None)
    if typer_coercion is None:
        return False
    if getattr(_TyperParameter, "hopcap_plain", None) is None:  # not yet installed
        plain = _PlainValues(typer_coercion)
        _TyperParameter.hopcap_plain = plain  # type: ignore[attr-defined]
        _TyperParameter.get_runtime_param = lambda self: plain  # type: ignore[method-assign,assignment,return-value]
    return True


def main() -> None:
    # numpy's OpenBLAS starts a thread per core when numpy is imported; hopcap does no
    # linear algebra, and those threads cost ~0.05 s of CPU at every start (the user's
    # own setting wins)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # numpy asks for transparent huge pages for every array of 4 MB or more: each first
    # touch then has the kernel find (often compact) and zero 2 MB at once, which took
    # 0.05-0.95 s of system time for the same 1.6 M-packet read, run to run; with 4 KiB
    # pages it is 0.10-0.15 s every time, the user time unchanged (the user's setting wins)
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    global _MAIN
    _MAIN = True
    plain_values()
    try:
        _run_app(sys.argv[1:])
    except KeyboardInterrupt:
        _err("hopcap: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit as done:
        code = done.code
        _shown.info("exit %s", 0 if code is None else code if isinstance(code, int) else 1)
        if _QUICK_EXIT and (done.code is None or isinstance(done.code, int)):
            _quick_exit(done.code or 0)
        raise


def _run_app(args: Sequence[str]) -> NoReturn:
    """Run the command `args` name; a command line that click refuses is one line plus a
    hint like every other error (click's own is a box of several lines, exit 2 for all):
    a bad option value exits 3 (as hopcap's own checks of values do), an unknown option
    or a missing argument 2. Help (also for a group named without its command) and
    everything else as typer shows it."""
    ck = _click()
    from typer import core

    # (typer's own Abort where typer carries its own click, which has none)
    abort = getattr(core, "Abort", None) or ck.exceptions.Abort
    try:
        rc = _invoked(app, args)(args=list(args), standalone_mode=False)
    except ck.exceptions.UsageError as exc:
        if isinstance(exc, getattr(ck.exceptions, "NoArgsIsHelpError", ())):
            _typer_shows(exc)
        _err(f"hopcap: {_usage_text(exc)}")
        names: list[str] = []  # the command's names below the program's (`python -m hopcap` too)
        ctx = exc.ctx
        while ctx is not None and ctx.parent is not None:
            names.insert(0, ctx.info_name or "")
            ctx = ctx.parent
        if not names and args and not args[0].startswith("-"):
            names = [args[0]]  # (click gives some errors without their command)
        path = " ".join(["hopcap", *names])
        _err(f"  hint: `{path} --help` shows its arguments and options")
        bad_value = isinstance(exc, ck.exceptions.BadParameter) and not isinstance(
            exc, ck.exceptions.MissingParameter
        )
        sys.exit(EXIT_INVENTORY if bad_value else EXIT_USAGE)
    except ck.exceptions.ClickException as exc:
        _typer_shows(exc)
    except abort:
        _err("Aborted!")
        sys.exit(EXIT_ERROR)
    sys.exit(rc if isinstance(rc, int) else 0)


def _click() -> Any:
    """The click that typer runs on (recent typers carry their own, `typer._click`)."""
    from typer import core

    ck = getattr(core, "_click", None)
    if ck is None:
        import click as ck
    return ck


def _typer_shows(exc: Any) -> NoReturn:
    """What typer's standalone mode does with a click exception: shown, then exit."""
    from typer import core

    if getattr(core, "HAS_RICH", False) and app.rich_markup_mode is not None:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    else:
        exc.show()
    sys.exit(exc.exit_code)


def _usage_text(exc: Any) -> str:
    """click's message of a refused command line, on one line."""
    return " ".join(str(exc.format_message()).split())


def _invoked(group: typer.Typer, args: Sequence[str]) -> typer.Typer:
    """`group` with only the command (or sub-group) that `args` name: typer builds the
    click object of every command it holds at every start (~6 ms for all of hopcap's), and
    one is run. The whole group when `args` name none of them (help, a typo: click's
    messages list every command) or hold anything but the group's own options before it."""
    import copy

    from typer.main import get_command_name

    i = 0
    while i < len(args) and args[i] in ("-v", "--verbose", "--log-file"):
        i += 2 if args[i] == "--log-file" else 1
    if i >= len(args):
        return group
    name = args[i]
    cmds = [
        c
        for c in group.registered_commands
        if c.callback is not None and (c.name or get_command_name(c.callback.__name__)) == name
    ]
    groups = [g for g in group.registered_groups if g.name == name]
    if len(cmds) + len(groups) != 1:
        return group
    one = copy.copy(group)
    one.registered_commands, one.registered_groups = [_saying_ctrl_c(c) for c in cmds], groups
    return one


def _saying_ctrl_c(info: Any) -> Any:
    """A command (typer's CommandInfo) whose Ctrl-C, where the command has no handling of
    its own (`correlate` of large captures, `report`, ...), is said: typer turns a
    KeyboardInterrupt into a silent exit 130."""
    import copy
    import functools

    callback = info.callback

    @functools.wraps(callback)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except KeyboardInterrupt:
            _err("\nhopcap: interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    said = copy.copy(info)
    said.callback = command
    return said


# set by a command whose process holds nothing to release but memory when it returns
_QUICK_EXIT = False
# run as the `hopcap` program (`main`), not called in another program's process
_MAIN = False
# what such a command leaves to the kernel at its quick exit (the verdict: its objects take
# ~0.02 s to free one by one at 1.6 M packets)
_KEPT: list[object] = []


def _leave_to_exit(*objs: object) -> None:
    """Keep `objs` to the quick exit of the process, if it ends so."""
    if _QUICK_EXIT and _MAIN:
        _KEPT.extend(objs)


def _quick_exit(code: int) -> NoReturn:
    """End the process now: the output and the log flushed, the interpreter's teardown
    (freeing every object of a large verdict one by one: 0.12-0.16 s of a 1.6 M-packet
    correlate) skipped; the kernel takes the memory back at once."""
    logging.shutdown()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
