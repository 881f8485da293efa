"""The summary across scheduled reproduction windows: `DIR/windows.json` and
`DIR/windows.md` say which window saw which finding, per segment of the path.

Pure: built from each window's verdict (and what the scheduler knows about the window);
rewritten after every window, so an interrupted schedule still has its summary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from hopcap.bundle.core import _iso
from hopcap.errors import BundleError
from hopcap.model import Verdict

WINDOWS_JSON = "windows.json"
WINDOWS_MD = "windows.md"


_Key = tuple[tuple[str, str], str, str, str]  # (between, kind, direction, field)


@dataclass(frozen=True)
class WindowResult:
    """One window, as the summary needs it: only counts and the findings grouped per
    segment are kept (not the verdict), so a schedule that runs for weeks stays small."""

    index: int  # 1-based
    name: str  # the bundle's directory under DIR (`w01-20261203T030000`)
    scheduled_ts: float
    started_ts: float | None
    finished_ts: float | None
    status: str  # ok, partial, interrupted, failed, discarded
    verdict: InitVar[Verdict | None] = None
    repro: InitVar[Mapping[str, Any] | None] = None
    note: str = ""
    flows: int = field(init=False, default=0)
    broken_flows: int = field(init=False, default=0)
    repro_exit_status: int | None = field(init=False, default=None)
    repro_runs: int = field(init=False, default=0)
    # (between, kind, direction, field) -> (flows, packets)
    findings: Mapping[_Key, tuple[int, int]] = field(init=False, default_factory=dict)

    def __post_init__(self, verdict: Verdict | None, repro: Mapping[str, Any] | None) -> None:
        found: dict[_Key, tuple[int, int]] = {}
        if verdict is not None:
            for flow in verdict.flows:
                for f in flow.findings:
                    key = (f.between, f.kind, f.direction, f.field or "")
                    n, packets = found.get(key, (0, 0))
                    found[key] = (n + 1, packets + f.packets)
            object.__setattr__(self, "flows", len(verdict.flows))
            object.__setattr__(self, "broken_flows", sum(1 for f in verdict.flows if f.broken))
        object.__setattr__(self, "findings", found)
        if repro:
            object.__setattr__(self, "repro_exit_status", repro.get("exit_status"))
            object.__setattr__(self, "repro_runs", len(repro.get("runs", ())) or 1)


def _segments(results: Sequence[WindowResult]) -> list[dict[str, Any]]:
    """Per segment (`between` pair, in order of first appearance): per window, the
    findings there grouped by kind, direction and field, with flow and packet counts."""
    segs: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        for (between, kind, direction, fld), (flows, packets) in r.findings.items():
            entry: dict[str, Any] = {"kind": kind, "direction": direction}
            if fld:
                entry["field"] = fld
            entry.update(flows=flows, packets=packets)
            segs.setdefault(between, {}).setdefault(r.name, []).append(entry)
    return [{"between": list(between), "windows": windows} for between, windows in segs.items()]


def windows_summary(results: Sequence[WindowResult]) -> dict[str, Any]:
    """The content of windows.json."""
    rows = []
    for r in results:
        rows.append(
            {
                "index": r.index,
                "name": r.name,
                "scheduled": _iso(r.scheduled_ts),
                "scheduled_ts": r.scheduled_ts,
                "started_ts": r.started_ts,
                "finished_ts": r.finished_ts,
                "status": r.status,
                "flows": r.flows,
                "broken_flows": r.broken_flows,
                "repro_exit_status": r.repro_exit_status,
                "repro_runs": r.repro_runs,
                "note": r.note,
            }
        )
    return {"format": "hopcap-windows", "windows": rows, "segments": _segments(results)}


def _cell(entries: Sequence[Mapping[str, Any]]) -> str:
    parts = []
    for e in entries:
        what = f"{e['kind']} {e['direction']}" + (f" {e['field']}" if e.get("field") else "")
        n = e["flows"]
        parts.append(f"{what} ({n} flow{'s' if n != 1 else ''})")
    return "; ".join(parts)


def render_windows_md(summary: Mapping[str, Any]) -> str:
    windows = summary["windows"]
    L = ["# Reproduction windows", ""]
    L += [
        "| window | scheduled (UTC) | status | flows | broken | repro exit | runs | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w in windows:
        rc = "-" if w["repro_exit_status"] is None else w["repro_exit_status"]
        L.append(
            f"| {w['name'] or w['index']} | {w['scheduled']} | {w['status']} | {w['flows']} | "
            f"{w['broken_flows']} | {rc} | {w['repro_runs']} | {w['note'] or ''} |"
        )
    L += ["", "## Findings per segment of the path", ""]
    segs = summary["segments"]
    if not segs:
        L.append("No window saw a finding.")
        return "\n".join(L) + "\n"
    names = [w["name"] for w in windows if w["name"]]
    L.append("| segment | " + " | ".join(names) + " |")
    L.append("|---|" + "---|" * len(names))
    for s in segs:
        a, b = s["between"]
        cells = [_cell(s["windows"].get(n, ())) or "-" for n in names]
        L.append(f"| {a} -> {b} | " + " | ".join(cells) + " |")
    return "\n".join(L) + "\n"


def write_windows_summary(out: Path, results: Sequence[WindowResult]) -> tuple[Path, Path]:
    """Write (or rewrite) `out/windows.json` and `out/windows.md`."""
    summary = windows_summary(results)
    js, md = Path(out) / WINDOWS_JSON, Path(out) / WINDOWS_MD
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        js.write_text(json.dumps(summary, indent=2) + "\n")
        md.write_text(render_windows_md(summary))
    except OSError as exc:
        raise BundleError(f"cannot write the windows summary in {out}: {exc}") from exc
    return js, md
