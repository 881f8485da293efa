"""The summary across scheduled reproduction windows: `DIR/windows.json` and
`DIR/windows.md` say which window saw which finding, per segment of the path.

Pure: built from each window's verdict (and what the scheduler knows about the window);
rewritten after every window, so an interrupted schedule still has its summary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopcap.bundle.core import _iso
from hopcap.errors import BundleError
from hopcap.model import Verdict

WINDOWS_JSON = "windows.json"
WINDOWS_MD = "windows.md"


@dataclass(frozen=True)
class WindowResult:
    index: int  # 1-based
    name: str  # the bundle's directory under DIR (`w01-20261203T030000`)
    scheduled_ts: float
    started_ts: float | None
    finished_ts: float | None
    status: str  # ok, partial, interrupted, failed, discarded
    verdict: Verdict | None = None
    repro: Mapping[str, Any] | None = None
    note: str = ""


def _segments(results: Sequence[WindowResult]) -> list[dict[str, Any]]:
    """Per segment (`between` pair, in order of first appearance): per window, the
    findings there grouped by kind, direction and field, with flow and packet counts."""
    segs: dict[tuple[str, str], dict[str, dict[tuple[str, str, str], dict[str, Any]]]] = {}
    for r in results:
        if r.verdict is None:
            continue
        for flow in r.verdict.flows:
            for f in flow.findings:
                cell = segs.setdefault(f.between, {}).setdefault(r.name, {})
                key = (f.kind, f.direction, f.field or "")
                entry = cell.setdefault(
                    key,
                    {"kind": f.kind, "direction": f.direction, "flows": 0, "packets": 0},
                )
                if f.field:
                    entry["field"] = f.field
                entry["flows"] += 1
                entry["packets"] += f.packets
    return [
        {
            "between": list(between),
            "windows": {name: list(cell.values()) for name, cell in windows.items()},
        }
        for between, windows in segs.items()
    ]


def windows_summary(results: Sequence[WindowResult]) -> dict[str, Any]:
    """The content of windows.json."""
    rows = []
    for r in results:
        flows = r.verdict.flows if r.verdict is not None else ()
        repro = dict(r.repro) if r.repro else {}
        rows.append(
            {
                "index": r.index,
                "name": r.name,
                "scheduled": _iso(r.scheduled_ts),
                "scheduled_ts": r.scheduled_ts,
                "started_ts": r.started_ts,
                "finished_ts": r.finished_ts,
                "status": r.status,
                "flows": len(flows),
                "broken_flows": sum(1 for f in flows if f.broken),
                "repro_exit_status": repro.get("exit_status"),
                "repro_runs": len(repro.get("runs", ())) or (1 if repro else 0),
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
