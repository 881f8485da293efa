"""The namespace lab: a real four-hop site (client -> fw -> lb -> srv) on this machine.

    info = up("hc")            # namespaces, links, nftables, haproxy, HTTP server, sshd x4
    fault_apply("fw-drop-syn", "hc"); fault_clear("hc")
    down("hc")                 # idempotent, also after a crash or a half-built lab

Topology (see `topology`): namespaces `<prefix>-client|fw|lb|srv` plus `<prefix>-br`, a
transparent bridge that always sits between lb eth1 and srv eth0 (so the loss fault only
adds a rule there). fw DNATs the VIP 203.0.113.80:80 to lb 198.18.1.2:80 and masquerades
with random ports on eth1 (table `ip hopcap_nat`); lb runs haproxy (HTTP mode, forwardfor);
srv serves `/` and `/big.bin` (300,000 deterministic bytes) on 198.18.2.2:80. Every host
has `mgmt0` on the root bridge `<prefix>-mgmt` (198.19.0.0/24 for "hc", else derived from
the prefix or given) and its own sshd there. Veth offloads stay at their defaults.

State dir (default /var/tmp/hopcap-lab-<prefix>/): `inventory.yml` (ready for `hopcap run`),
`id_ed25519` (user key), `known_hosts`, `authorized_keys`, `lab.json`, `fault`, and per
host `<host>/` with sshd_config, host key, pidfiles and logs (`lb/haproxy.cfg`,
`srv/httpd.log`).

Faults (`faults`): nftables rules in a table `hopcap_fault` of their own (with counters),
or a change to srv's services/interfaces, or fw's uncaptured active-active peer
(`fw-ha-peer`: namespaces `<prefix>-fw2|bra|brb`, the client-fw and fw-lb links made
bridges); `fault_repro(name)` gives the repro (host and shell command) for the faults the
inventory's default repro does not show (`srv-accept-queue`: run on lb).

`up(prefix, fw="busybox")` makes fw a BusyBox router instead (`dropbear`): dropbear
without SFTP, and a login whose PATH holds only BusyBox applets plus tcpdump and nft.

Modules: `topology` (names, addresses, links, fw ruleset), `sshd` (keys, sshd per host),
`dropbear` (the BusyBox fw), `services` (haproxy, HTTP server), `httpd` (the srv server
script), `faults` (the fault catalogue), `state` (state dir, inventory), `control`
(up/down/status/ns_run).
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
