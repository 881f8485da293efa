"""The namespace lab: a real four-hop site (client -> fw -> lb -> srv) on this machine.

    info = up("hc")            # namespaces, links, nftables, haproxy, HTTP server, sshd x4
    fault_apply("fw-drop-syn", "hc"); fault_clear("hc")
    down("hc")                 # idempotent, also after a crash

Modules: `topology` (names, addresses, links, fw ruleset), `sshd` (keys, sshd per host),
`services` (haproxy, HTTP server), `faults` (the fault catalogue), `state` (state dir,
inventory), `control` (up/down/status).
"""

from .control import (
    LabInfo,
    LabStatus,
    check_prerequisites,
    down,
    ns_run,
    status,
    up,
)
from .faults import FAULTS, Fault, fault_apply, fault_clear, fault_list, fault_repro

__all__ = [
    "FAULTS",
    "Fault",
    "LabInfo",
    "LabStatus",
    "check_prerequisites",
    "down",
    "fault_apply",
    "fault_clear",
    "fault_list",
    "fault_repro",
    "ns_run",
    "status",
    "up",
]
