"""Where a lab keeps its files, and how `down`/`status` find them again.

The state dir (default /var/tmp/hopcap-lab-<prefix>/) holds keys, configs, pidfiles, logs,
`inventory.yml`, `lab.json` (the marker that the directory is a lab's) and `fault` (the
active fault's name). `/run/hopcap-lab/<prefix>.json` records where the state dir is, so a
custom `state_dir` is found again; /run is cleared at boot, like the namespaces.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hopcap.errors import LabError

from .topology import CAPTURE, HOSTS, ROLES, VIP, VIP_PORT, Layout

REGISTRY = Path("/run/hopcap-lab")
MARKER = "lab.json"
FAULT_FILE = "fault"
WINDOW = "20s"
REPRO_RUN = f"curl -s -o /dev/null -m 5 http://{VIP}/big.bin"


def default_state_dir(prefix: str) -> Path:
    return Path(f"/var/tmp/hopcap-lab-{prefix}")


def _registry_file(prefix: str) -> Path:
    return REGISTRY / f"{prefix}.json"


def prepare_state_dir(state: Path) -> None:
    """Create `state`; refuse a non-empty directory that is not a lab's (down removes it)."""
    if state.exists():
        if not state.is_dir():
            raise LabError(f"state dir {state} exists and is not a directory")
        if any(state.iterdir()) and not (state / MARKER).exists():
            raise LabError(
                f"state dir {state} is not empty and not a lab's; `lab down` would delete it",
                hint="choose an empty or new directory",
            )
        shutil.rmtree(state)
    state.mkdir(parents=True, mode=0o755)


def record(layout: Layout, state: Path) -> None:
    data = {"prefix": layout.prefix, "mgmt_net": layout.mgmt_net, "state_dir": str(state)}
    (state / MARKER).write_text(json.dumps(data, indent=2) + "\n")
    REGISTRY.mkdir(parents=True, exist_ok=True)
    _registry_file(layout.prefix).write_text(json.dumps(data) + "\n")


def lookup(prefix: str) -> dict[str, Any] | None:
    """What `record` wrote for `prefix`, or None (never built, or already down)."""
    for f in (_registry_file(prefix), default_state_dir(prefix) / MARKER):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("prefix") == prefix:
            return data
    return None


def state_dir_of(prefix: str) -> Path | None:
    data = lookup(prefix)
    if data is None:
        return None
    p = Path(str(data["state_dir"]))
    return p if (p / MARKER).exists() else None


def forget(prefix: str) -> list[str]:
    """Remove the state dir (only if it carries the marker) and the registry entry."""
    removed: list[str] = []
    dirs = {default_state_dir(prefix)}
    data = lookup(prefix)
    if data is not None:
        dirs.add(Path(str(data["state_dir"])))
    for d in sorted(dirs):
        if (d / MARKER).exists():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"state dir {d}")
    reg = _registry_file(prefix)
    if reg.exists():
        reg.unlink()
    return removed


def inventory_text(layout: Layout, state: Path) -> str:
    def q(s: str) -> str:
        return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar

    lines = [
        f"# hopcap lab {layout.prefix!r}, written by `hopcap lab up`.",
        f"# management network {layout.mgmt_net}; the controller is {layout.controller_addr}",
        "defaults:",
        "  user: root",
        "  port: 22",
        f"  identity: {q(str(state / 'id_ed25519'))}",
        f"  known_hosts: {q(str(state / 'known_hosts'))}",
        "hosts:",
    ]
    for h in HOSTS:
        cap = ", ".join(CAPTURE[h])
        lines.append(
            f"  {h}: {{address: {layout.mgmt_addr(h)}, role: {ROLES[h]}, capture: [{cap}]}}"
        )
    lines += [
        f"path: [{', '.join(HOSTS)}]",
        f"target: {VIP}:{VIP_PORT}",
        f"window: {WINDOW}",
        f'repro: {{"on": client, run: {q(REPRO_RUN)}}}',
        "",
    ]
    return "\n".join(lines)


def write_inventory(layout: Layout, state: Path) -> Path:
    p = state / "inventory.yml"
    p.write_text(inventory_text(layout, state))
    return p


def read_fault(state: Path | None) -> str | None:
    if state is None:
        return None
    try:
        name = (state / FAULT_FILE).read_text().strip()
    except OSError:
        return None
    return name or None


def write_fault(state: Path, name: str | None) -> None:
    f = state / FAULT_FILE
    if name is None:
        f.unlink(missing_ok=True)
    else:
        f.write_text(name + "\n")
