"""The fault catalogue: each fault changes the running lab to reproduce one kind of
problem from the catalogue; `fault_clear` undoes it.

Every nftables fault lives in its own table `hopcap_fault` (family inet, or bridge in the
br namespace), separate from the lab's own `hopcap_nat` / `hopcap_filter`, so clearing is
deleting that table wherever it exists. Rules carry counters: `nft list table inet
hopcap_fault` inside the namespace shows how many packets a fault hit. The active fault's
name is kept in `<state dir>/fault`. Only one fault is active at a time.

Faults whose effect the inventory's usual repro (a curl of /big.bin from the client) does
not show have their own repro (`fault_repro`), run on another host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hopcap.errors import LabError
from hopcap.model import Repro

from . import services, state, topology
from ._proc import ns_exec, run
from .topology import LB_FRONT, SRV_ADDR, SRV_PORT, Layout

FAULT_TABLE = "hopcap_fault"
SECOND_IFACE = "eth1"
SECOND_ADDR = f"{topology.AUX_SRV_ADDR}/24"
LOSS_PERCENT = 5
PAT_POOL = (40000, 40063)  # fw-pat-pool: the ports fw masquerades into
PAT_CONNECTIONS = 150  # its repro's short connections: each port used twice or more


def _table(family: str, chain: str, hook: str, rules: list[str]) -> str:
    body = "\n".join(f"        {r}" for r in rules)
    return (
        f"table {family} {FAULT_TABLE} {{\n"
        f"    chain {chain} {{\n"
        f"        type filter hook {hook} priority filter - 10; policy accept;\n"
        f"{body}\n"
        "    }\n"
        "}\n"
    )


def _nft(layout: Layout, host: str, ruleset: str) -> None:
    run(ns_exec(layout.ns(host), ["nft", "-f", "-"]), input=ruleset)


_CLIENT_SYN = (
    f'iifname "eth0" ip daddr {LB_FRONT} tcp dport {SRV_PORT} tcp flags & (syn | ack) == syn'
)


def _fw_drop_syn(layout: Layout, sdir: Path) -> None:
    _nft(layout, "fw", _table("inet", "forward", "forward", [f"{_CLIENT_SYN} counter drop"]))


def _srv_drop_input(layout: Layout, sdir: Path) -> None:
    rule = f'iifname "eth0" tcp dport {SRV_PORT} counter drop'
    _nft(layout, "srv", _table("inet", "input", "input", [rule]))


def _fw_drop_large_response(layout: Layout, sdir: Path) -> None:
    rule = 'iifname "eth1" oifname "eth0" ip length > 1000 counter drop'
    _nft(layout, "fw", _table("inet", "forward", "forward", [rule]))


def _fw_rst_get(layout: Layout, sdir: Path) -> None:
    # @ih is the transport payload, whatever the TCP header length (options)
    rule = 'iifname "eth0" meta l4proto tcp @ih,0,32 0x47455420 counter reject with tcp reset'
    _nft(layout, "fw", _table("inet", "forward", "forward", [rule]))


def _fw_clamp_mss(layout: Layout, sdir: Path) -> None:
    rule = f"{_CLIENT_SYN} counter tcp option maxseg size set 536"
    _nft(layout, "fw", _table("inet", "forward", "forward", [rule]))


def _fw_pat_pool(layout: Layout, sdir: Path) -> None:
    # a NAT chain of its own before the lab's (priority srcnat - 10): the first NAT
    # statement that maps a connection wins
    lo, hi = PAT_POOL
    _nft(layout, "fw", (
        f"table inet {FAULT_TABLE} {{\n"
        "    chain postrouting {\n"
        "        type nat hook postrouting priority srcnat - 10; policy accept;\n"
        f'        oifname "eth1" meta l4proto tcp counter masquerade to :{lo}-{hi} random\n'
        "    }\n"
        "}\n"
    ))  # fmt: skip


def _lb_srv_loss(layout: Layout, sdir: Path) -> None:
    rule = f"meta l4proto tcp numgen random mod 100 < {LOSS_PERCENT} counter drop"
    _nft(layout, topology.BRIDGE_HOST, _table("bridge", "forward", "forward", [rule]))


def _srv_accept_queue(layout: Layout, sdir: Path) -> None:
    services.start_stall(layout, sdir)


def _srv_port_closed(layout: Layout, sdir: Path) -> None:
    services.stop_httpd(sdir)


def _srv_second_iface(layout: Layout, sdir: Path) -> None:
    topology.add_aux(layout, SECOND_IFACE)


def _fw_ha_peer(layout: Layout, sdir: Path) -> None:
    topology.add_peer(layout)


_STALL_URL = f"http://{SRV_ADDR}:{services.STALL_PORT}/"
_PEER_CURL = (
    f"curl -s -o /dev/null -m 5 --local-port {topology.PEER_PORTS[0]}-{topology.PEER_PORTS[1]} "
    f"http://{topology.VIP}/"
)
PEER_CONNECTIONS = 6  # its repro: as many through fw2 as through fw, one after the other


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    apply: Callable[[Layout, Path], None]
    repro: Repro | None = None


FAULTS: tuple[Fault, ...] = (
    Fault(
        "fw-drop-syn",
        "fw drops the client's SYNs after DNAT (forward chain): connections never open",
        _fw_drop_syn,
    ),
    Fault(
        "srv-drop-input",
        "srv's host firewall drops everything to tcp/80: the lb's SYNs reach srv unanswered",
        _srv_drop_input,
    ),
    Fault(
        "fw-drop-large-response",
        "fw drops packets from the lb side to the client longer than 1000 bytes",
        _fw_drop_large_response,
    ),
    Fault(
        "fw-rst-get",
        "fw answers client segments whose payload starts with 'GET ' with a TCP reset",
        _fw_rst_get,
    ),
    Fault(
        "fw-clamp-mss",
        "fw rewrites the MSS option of the client's SYNs to 536",
        _fw_clamp_mss,
    ),
    Fault(
        "fw-pat-pool",
        f"fw masquerades into {PAT_POOL[1] - PAT_POOL[0] + 1} ports: SYNs hit ports lb holds "
        "in TIME_WAIT (challenge ACK, RST, the SYN again on another port); nothing is lost",
        _fw_pat_pool,
        Repro(
            on="client",
            run=(
                "curl -s --parallel --parallel-max 4 -H 'Connection: close' -o /dev/null "
                f"-m 10 'http://{topology.VIP}/#[1-{PAT_CONNECTIONS}]'"
            ),
        ),
    ),
    Fault(
        "lb-srv-loss",
        f"{LOSS_PERCENT}% random loss of TCP packets between lb and srv (bridge in "
        f"{topology.BRIDGE_HOST} namespace)",
        _lb_srv_loss,
    ),
    Fault(
        "srv-accept-queue",
        f"a listener on srv {SRV_ADDR}:{services.STALL_PORT} with backlog 1 never accepts: "
        "its accept queue overflows (repro on lb)",
        _srv_accept_queue,
        Repro(
            on="lb",
            run=(f"for i in 1 2 3 4 5 6; do curl -s -o /dev/null -m 3 {_STALL_URL} & done; wait"),
        ),
    ),
    Fault(
        "srv-port-closed",
        "the HTTP server on srv is stopped: srv answers the lb's SYNs with RST, lb says 503",
        _srv_port_closed,
    ),
    Fault(
        "fw-ha-peer",
        f"fw gets an active-active peer {topology.PEER_HOST} (the same NAT, not captured) on "
        "the same two segments (bridges); the client routes its connections from source "
        f"ports {topology.PEER_PORTS[0]}-{topology.PEER_PORTS[1]} through it (repro on client)",
        _fw_ha_peer,
        Repro(
            on="client",
            run=(
                f"for i in $(seq {PEER_CONNECTIONS}); do "
                f"curl -s -o /dev/null -m 5 http://{topology.VIP}/; {_PEER_CURL}; done"
            ),
        ),
    ),
    Fault(
        "srv-second-iface",
        f"srv gets a second interface {SECOND_IFACE} ({SECOND_ADDR}, a veth into namespace "
        f"{topology.AUX_HOST}): capture 'auto' must pick eth0",
        _srv_second_iface,
    ),
)
_BY_NAME = {f.name: f for f in FAULTS}


def _get(name: str) -> Fault:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise LabError(
            f"unknown fault {name!r}; faults: {', '.join(_BY_NAME)}",
            hint="`hopcap lab fault list` describes them",
        ) from None


def fault_list() -> list[tuple[str, str]]:
    return [(f.name, f.description) for f in FAULTS]


def fault_repro(name: str) -> Repro | None:
    """The repro that shows fault `name`, when the inventory's default one (a curl of
    /big.bin on the client) does not: a shell command and the lab host to run it on."""
    return _get(name).repro


def _running(prefix: str) -> tuple[Layout, Path]:
    topology.check_prefix(prefix)
    data = state.lookup(prefix)
    sdir = state.state_dir_of(prefix)
    if data is None or sdir is None:
        raise LabError(f"lab {prefix!r} is not up", hint=f"`hopcap lab up{_flag(prefix)}`")
    layout = Layout(prefix, str(data["mgmt_net"]))
    missing = set(layout.namespaces) - set(topology.lab_namespaces(prefix))
    if missing:
        raise LabError(
            f"lab {prefix!r} is broken: namespaces {', '.join(sorted(missing))} are missing",
            hint=f"rebuild it with `hopcap lab up{_flag(prefix)}`",
        )
    return layout, sdir


def _flag(prefix: str) -> str:
    """The `--prefix` a command for lab `prefix` needs ("" for the default lab)."""
    return "" if prefix == topology.DEFAULT_PREFIX else f" --prefix {prefix}"


def _delete_fault_tables(ns: str) -> None:
    out = run(ns_exec(ns, ["nft", "list", "tables"]), check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2] == FAULT_TABLE:
            run(ns_exec(ns, ["nft", "delete", "table", parts[1], FAULT_TABLE]))


def fault_clear(prefix: str = topology.DEFAULT_PREFIX) -> None:
    """Undo any fault: delete `hopcap_fault` tables in every lab namespace, stop the
    stalled listener, restart the HTTP server if it is stopped, remove srv's second
    interface and fw's peer. Safe when no fault is active."""
    layout, sdir = _running(prefix)
    for ns in layout.namespaces:
        _delete_fault_tables(ns)
    services.stop_stall(sdir)
    if not services.httpd_running(sdir):
        services.start_httpd(layout, sdir)
    topology.del_aux(layout, SECOND_IFACE)
    topology.del_peer(layout)
    _abort_service_connections(layout)
    state.write_fault(sdir, None)


def _abort_service_connections(layout: Layout) -> None:
    """Abort the HTTP connections a fault left half-dead on lb and srv (`ss -K`).

    Clearing a fault does not end them: haproxy keeps a front connection whose request fw
    swallowed (fw-rst-get) and answers it 408 half a minute later, or retries a backend
    connect and then retransmits a 200 to a client long gone (srv-drop-input); that traffic
    would land in the next capture. Listening sockets and sshd are left alone."""
    ports = "( sport = :80 or dport = :80 or sport = :8081 or dport = :8081 )"
    for host in ("lb", "srv"):
        run(ns_exec(layout.ns(host), ["ss", "-K", "-tn", "state", "connected", ports]), check=False)


def fault_apply(name: str, prefix: str = topology.DEFAULT_PREFIX) -> None:
    """Clear any active fault, then apply fault `name` to lab `prefix`."""
    fault = _get(name)
    layout, sdir = _running(prefix)
    fault_clear(prefix)
    fault.apply(layout, sdir)
    state.write_fault(sdir, name)
