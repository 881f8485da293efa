"""The `hopcap` command: parses, calls the layers below, maps errors to exit codes.

The only module that prints.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from tabulate import tabulate

from hopcap import __version__
from hopcap.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_PREFLIGHT,
    HopcapError,
)
from hopcap.model import PointInput, RunRecord, Verdict

if TYPE_CHECKING:
    from hopcap.model import Inventory
    from hopcap.orchestrator.run import RunOptions

app = typer.Typer(
    help="Find where along a network path a TCP segment was dropped, injected or rewritten.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="A real four-hop site (client, fw, lb, srv) in network namespaces.")
app.add_typer(lab_app, name="lab")

InventoryOpt = Annotated[
    Path, typer.Option("--inventory", "-i", help="site.yml or an Ansible inventory")
]


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _fail(exc: HopcapError) -> NoReturn:
    _err(f"hopcap: {exc.message}")
    if exc.hint:
        _err(f"  hint: {exc.hint}")
    raise typer.Exit(exc.exit_code)


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
        self._live: Any = None
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
            self._point(ev.point, captured=_size(ev.done or 0))
        elif ev.kind == "stopping":
            self.phase = "stopping and pulling"
        elif ev.kind == "pull" and ev.total:
            self._point(ev.point, pulled=f"{100 * (ev.done or 0) // ev.total}%")
        elif ev.kind == "pulled":
            self._point(ev.point, state="pulled", pulled="100%")
        elif ev.kind == "repro":
            self.phase = f"repro on {ev.host}"
        if self._live is not None:
            self._live.update(self._render())
            if ev.kind in ("failed", "capture-failed", "pull-failed", "repro-failed"):
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
            return f"  pull {ev.point}: {_size(ev.done or 0)} of {_size(ev.total)}"
        if ev.kind == "captured":
            return ""
        if ev.kind == "connected":
            return f"  connected {ev.host} ({ev.text})"
        if ev.kind == "listening":
            return f"  listening {ev.point}"
        if ev.kind in ("failed", "capture-failed", "pull-failed", "repro-failed"):
            return f"  ! {ev.point or ev.host}: {ev.text}"
        if ev.kind == "repro":
            return f"  repro on {ev.host}: {ev.text}"
        if ev.kind == "repro-done":
            return f"  repro finished ({ev.text})"
        if ev.kind == "pulled":
            return f"  pulled {ev.point} ({_size(ev.done or 0)})"
        return f"  {ev.kind}: {ev.text}" if ev.text else ""


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _print_verdict(verdict: Verdict) -> None:
    from hopcap.bundle import verdict_rows

    pts = [
        [
            p.name,
            p.packets,
            "?" if p.kernel_drops is None else p.kernel_drops,
            "" if p.clock_offset_s is None else f"{p.clock_offset_s * 1000:+.3f} ms",
        ]
        for p in verdict.points
    ]
    typer.echo(tabulate(pts, headers=["point", "packets", "kernel drops", "clock offset"]))
    typer.echo("")
    rows = verdict_rows(verdict)
    if rows:
        typer.echo(
            tabulate(rows, headers=["flow", "client -> server", "legs", "findings", "summary"])
        )
    else:
        typer.echo("no TCP connections were seen at any point")
    for w in verdict.warnings:
        typer.echo(f"warning: {w}")


def _correlate_run(record: RunRecord) -> Verdict:
    from hopcap.correlate import correlate

    points = [
        PointInput(
            name=c.point.name,
            pcap=c.pcap,
            host=c.point.host,
            interface=c.point.interface,
            kernel_drops=c.kernel_drops,
            clock_offset_hint_s=c.clock_offset_s,
            start_ts=c.ready_ts,
            stop_ts=c.stop_ts,
            missing_reason=c.error,
        )
        for c in record.captures
    ]
    conntrack = {f.host: f.after["conntrack"] for f in record.facts if "conntrack" in f.after}
    return correlate(points, conntrack=conntrack or None)


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
) -> None:
    """Capture on every hop at once, correlate, and write an evidence bundle."""
    from hopcap.bundle import write_bundle
    from hopcap.inventory import load, parse_duration
    from hopcap.orchestrator.run import RunOptions, new_run_id

    try:
        inv = load(inventory, path_override=path.split(",") if path else None)
        window_s = None
        if window is not None:
            try:
                window_s = parse_duration(window)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--window") from exc
        run_id = new_run_id()
        out_dir = out or _default_out("hopcap-run")
        if out_dir.exists() and any(out_dir.iterdir()):
            _err(f"hopcap: {out_dir} exists and is not empty; choose another --out")
            raise typer.Exit(EXIT_ERROR)
        opts = RunOptions(
            out=out_dir,
            run_id=run_id,
            require_all=require_all,
            collect_facts=not no_facts,
            window_s=window_s,
            stream=True if stream else None,
        )
        _err(f"hopcap {__version__}: run {run_id}, {len(inv.path)} hosts, bundle {out_dir}")
        record = _run_async(inv, opts)
        _err("correlating ...")
        crash: Exception | None = None
        try:
            verdict = _correlate_run(record)
        except HopcapError:
            raise
        except Exception as exc:  # a bug in the correlator must not cost the captures
            crash = exc
            verdict = Verdict(
                points=(),
                flows=(),
                warnings=(
                    f"correlation failed ({type(exc).__name__}: {exc}); the captures "
                    "are intact in pcaps/: re-correlate with `hopcap correlate BUNDLE`",
                ),
            )
        final = write_bundle(out_dir, record, verdict, tarball=tarball, anonymise=anonymise)
    except HopcapError as exc:
        _fail(exc)
    if crash is not None:
        _err(f"hopcap: correlation failed ({type(crash).__name__}: {crash})")
        _err(f"  the captures and the manifest are saved in {final}; please report this bug")
        raise typer.Exit(EXIT_ERROR)
    _print_verdict(verdict)
    typer.echo("")
    typer.echo(f"bundle: {final}")
    if record.interrupted:
        _err("run interrupted: the bundle holds what was captured until then")
        raise typer.Exit(EXIT_INTERRUPTED)
    if not record.complete:
        for e in record.errors:
            _err(f"incomplete: {e}")
        raise typer.Exit(EXIT_PARTIAL)
    raise typer.Exit(EXIT_OK)


def _run_async(inv: Inventory, opts: RunOptions) -> RunRecord:
    """Run the orchestrator; first Ctrl-C stops the window gracefully, second cancels."""
    from hopcap.orchestrator.run import run_capture

    progress = _Progress()

    async def main() -> RunRecord:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()
        presses = 0

        def on_sigint() -> None:
            nonlocal presses
            presses += 1
            if presses == 1:
                _err("\nstopping captures and pulling what exists (Ctrl-C again to abort)")
                stop.set()
            elif task is not None:
                _err("\naborting; stopping remote captures")
                task.cancel()

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await run_capture(inv, opts, emit=progress, stop=stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            progress.close()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        _err("hopcap: aborted; remote captures were stopped")
        raise typer.Exit(EXIT_INTERRUPTED) from None


@app.command()
def check(
    inventory: InventoryOpt,
    path: Annotated[
        str | None, typer.Option(help="hop order, e.g. client,fw,lb,srv (overrides)")
    ] = None,
) -> None:
    """Preflight only: reach, auth, host keys, tcpdump, sudo, interfaces, disk, clocks."""
    from hopcap.inventory import load
    from hopcap.orchestrator.check import check as run_check

    try:
        inv = load(inventory, path_override=path.split(",") if path else None)
        progress = _Progress()
        try:
            results = asyncio.run(run_check(inv, emit=progress))
        finally:
            progress.close()
    except HopcapError as exc:
        _fail(exc)
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
            "-"
            if r.clock_offset_s is None
            else f"{r.clock_offset_s * 1000:+.1f} ms (±{(r.clock_error_s or 0) * 1000:.1f})",
            "ok" if r.ok else "FAIL",
        ]
        for r in results
    ]
    typer.echo(
        tabulate(
            rows,
            headers=[
                "host",
                "address",
                "ssh",
                "tcpdump",
                "sudo",
                "rights",
                "pull",
                "capture",
                "free",
                "clock",
                "",
            ],
        )
    )
    bad = [r for r in results if not r.ok]
    for r in bad:
        for p in r.problems:
            typer.echo(f"{r.host}: {p}")
    if bad:
        raise typer.Exit(EXIT_PREFLIGHT)
    typer.echo("all hosts ready")


@app.command(name="correlate")
def correlate_cmd(
    points: Annotated[
        list[str], typer.Argument(help="NAME=PCAP ... in path order, or one BUNDLE directory")
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write a bundle here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print verdict.json to stdout")] = False,
) -> None:
    """Correlate captures offline (points in the order packets from the client cross them)."""
    from hopcap.bundle import load_bundle, write_offline_bundle
    from hopcap.correlate import correlate, read_points_from_args

    try:
        if len(points) == 1 and "=" not in points[0] and Path(points[0]).exists():
            with load_bundle(Path(points[0])) as loaded:
                inputs = loaded.points
                verdict = correlate(inputs)
                if out is not None:
                    write_offline_bundle(out, inputs, verdict)
        else:
            inputs = read_points_from_args(points)
            verdict = correlate(inputs)
            if out is not None:
                write_offline_bundle(out, inputs, verdict)
    except HopcapError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(verdict.to_dict(), indent=2))
    else:
        _print_verdict(verdict)
        if out is not None:
            typer.echo(f"\nbundle: {out}")


@app.command()
def report(bundle: Annotated[Path, typer.Argument(help="a bundle directory")]) -> None:
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
    name: Annotated[str, typer.Argument(help="a fault name, `list`, or `clear`")],
    prefix: PrefixOpt = "hc",
) -> None:
    """Inject one of the catalogue's faults (`list` shows them, `clear` undoes)."""
    from hopcap import lab

    try:
        if name == "list":
            typer.echo(tabulate(lab.fault_list(), headers=["fault", "what it does"]))
            return
        if name == "clear":
            lab.fault_clear(prefix)
            typer.echo("fault cleared")
            return
        lab.fault_apply(name, prefix)
    except HopcapError as exc:
        _fail(exc)
    typer.echo(f"fault {name} applied; `hopcap lab fault clear` undoes it")
    repro = lab.fault_repro(name)
    if repro is not None:
        typer.echo(f"this fault shows with its own repro, on {repro.on}: {repro.run}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        _err("hopcap: interrupted")
        sys.exit(EXIT_INTERRUPTED)
