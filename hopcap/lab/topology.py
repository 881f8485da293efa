"""The lab's shape: names, addresses, namespaces, links, routes and the fw's nftables.

    client eth0 ── eth0 fw eth1 ── eth0 lb eth1 ── eth0 [br: br0] eth1 ── eth0 srv
       203.0.113.10   203.0.113.1   198.18.1.1  198.18.1.2  198.18.2.1          198.18.2.2
                      (+VIP .80)

The lb—srv link always runs through a bridge namespace `<prefix>-br`: a transparent Linux
bridge (no addresses, no TTL change, MACs preserved), so the `lb-srv-loss` fault only has
to add an nftables `bridge` rule there and the topology never changes under a capture.

Every host also has `mgmt0` on the management bridge `<prefix>-mgmt` in the root
namespace (controller = .1, client .10, fw .11, lb .12, srv .13), which is where its sshd
listens. Every root-namespace link starts with `<prefix>-`.
"""

from __future__ import annotations

import ipaddress
import re
import time
import zlib
from dataclasses import dataclass

from hopcap.errors import LabError

from ._proc import run

HOSTS: tuple[str, ...] = ("client", "fw", "lb", "srv")
BRIDGE_HOST = "br"  # the transparent bridge between lb and srv; not an inventory host
ROLES: dict[str, str] = {"client": "client", "fw": "firewall", "lb": "lb", "srv": "server"}
CAPTURE: dict[str, tuple[str, ...]] = {
    "client": ("eth0",),
    "fw": ("eth0", "eth1"),
    "lb": ("eth0", "eth1"),
    "srv": ("eth0",),
}
MGMT_HOST_OCTET: dict[str, int] = {"client": 10, "fw": 11, "lb": 12, "srv": 13}
_SHORT: dict[str, str] = {"client": "c", "fw": "f", "lb": "l", "srv": "s"}

CLIENT_ADDR = "203.0.113.10"
FW_OUTSIDE = "203.0.113.1"
VIP = "203.0.113.80"
VIP_PORT = 80
FW_INSIDE = "198.18.1.1"
LB_FRONT = "198.18.1.2"
LB_BACK = "198.18.2.1"
SRV_ADDR = "198.18.2.2"
SRV_PORT = 80

DEFAULT_PREFIX = "hc"
DEFAULT_MGMT_NET = "198.19.0.0/24"
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_ALLOWED = (ipaddress.IPv4Network("198.18.0.0/15"),)

NAT_TABLE = "hopcap_nat"
FILTER_TABLE = "hopcap_filter"

FW_RULESET = f"""\
table ip {NAT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {VIP} tcp dport {VIP_PORT} counter dnat to {LB_FRONT}:{SRV_PORT}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth1" counter masquerade random
    }}
}}
table inet {FILTER_TABLE} {{
    chain forward {{
        type filter hook forward priority filter; policy accept;
        counter
    }}
}}
"""


def check_prefix(prefix: str) -> None:
    if not _PREFIX_RE.match(prefix):
        raise LabError(
            f"lab prefix {prefix!r} is not valid: use 1-8 lowercase letters/digits, "
            "starting with a letter (every lab name is built from it)"
        )


@dataclass(frozen=True)
class Layout:
    """Names and management addresses of one lab."""

    prefix: str
    mgmt_net: str  # e.g. "198.19.0.0/24"

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(self.ns(h) for h in (*HOSTS, BRIDGE_HOST))

    @property
    def bridge(self) -> str:
        return f"{self.prefix}-mgmt"

    def mgmt_link(self, host: str) -> str:
        """Root-namespace end of `host`'s management veth (its peer is `mgmt0`)."""
        return f"{self.prefix}-m-{_SHORT[host]}"

    def _net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.mgmt_net)

    @property
    def controller_addr(self) -> str:
        return str(self._net().network_address + 1)

    def mgmt_addr(self, host: str) -> str:
        return str(self._net().network_address + MGMT_HOST_OCTET[host])

    @property
    def mgmt(self) -> dict[str, str]:
        return {h: self.mgmt_addr(h) for h in HOSTS}


def default_mgmt_net(prefix: str) -> str:
    """198.19.0.0/24 for "hc"; otherwise 198.19.N.0/24 with N in 1..199 derived from the
    prefix (200..255 are left for explicit choices, e.g. tests)."""
    if prefix == DEFAULT_PREFIX:
        return DEFAULT_MGMT_NET
    n = 1 + zlib.crc32(prefix.encode()) % 199
    return f"198.19.{n}.0/24"


def check_mgmt_net(mgmt_net: str) -> str:
    try:
        net = ipaddress.IPv4Network(mgmt_net, strict=True)
    except ValueError as e:
        raise LabError(f"management network {mgmt_net!r} is not valid: {e}") from e
    if net.prefixlen != 24:
        raise LabError(f"management network {mgmt_net} must be a /24")
    if not any(net.subnet_of(a) for a in _ALLOWED):
        raise LabError(f"management network {mgmt_net} must be inside 198.18.0.0/15")
    return str(net)


def check_mgmt_net_free(layout: Layout) -> None:
    """Refuse a management network another interface (another lab) already uses."""
    net = ipaddress.IPv4Network(layout.mgmt_net)
    out = run(["ip", "-o", "-4", "addr", "show"]).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        dev, addr = parts[1], parts[3]
        if ipaddress.IPv4Interface(addr).network.overlaps(net) and dev != layout.bridge:
            raise LabError(
                f"management network {layout.mgmt_net} is already used by {dev} ({addr})",
                hint="choose another with --mgmt-net or another prefix",
            )


def _ip(ns: str, *args: str) -> None:
    run(["ip", "-n", ns, *args])


def _sysctl(ns: str, key: str, value: str) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"])


def _veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth",
         "peer", "name", name_b, "netns", ns_b])  # fmt: skip


def build(layout: Layout) -> None:
    """Create namespaces, links, addresses, routes and the fw ruleset. Assumes nothing
    with this prefix exists (the caller tore it down first)."""
    for ns in layout.namespaces:
        run(["ip", "netns", "add", ns])
        # quiet captures: no IPv6 (router solicitations, MLD) on lab interfaces
        _sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        _sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        _ip(ns, "link", "set", "lo", "up")

    # management bridge in the root namespace
    run(["ip", "link", "add", layout.bridge, "type", "bridge", "stp_state", "0",
         "forward_delay", "0"])  # fmt: skip
    run(["ip", "addr", "add", f"{layout.controller_addr}/24", "dev", layout.bridge])
    run(["ip", "link", "set", layout.bridge, "up"])
    for host in HOSTS:
        ns = layout.ns(host)
        link = layout.mgmt_link(host)
        run(["ip", "link", "add", link, "type", "veth", "peer", "name", "mgmt0", "netns", ns])
        run(["ip", "link", "set", link, "master", layout.bridge, "up"])
        _ip(ns, "addr", "add", f"{layout.mgmt_addr(host)}/24", "dev", "mgmt0")
        _ip(ns, "link", "set", "mgmt0", "up")

    client, fw, lb, srv, br = (layout.ns(h) for h in (*HOSTS, BRIDGE_HOST))
    _veth(client, "eth0", fw, "eth0")
    _veth(fw, "eth1", lb, "eth0")
    _veth(lb, "eth1", br, "eth0")
    _veth(br, "eth1", srv, "eth0")

    _ip(client, "addr", "add", f"{CLIENT_ADDR}/24", "dev", "eth0")
    _ip(fw, "addr", "add", f"{FW_OUTSIDE}/24", "dev", "eth0")
    _ip(fw, "addr", "add", f"{VIP}/32", "dev", "eth0")
    _ip(fw, "addr", "add", f"{FW_INSIDE}/24", "dev", "eth1")
    _ip(lb, "addr", "add", f"{LB_FRONT}/24", "dev", "eth0")
    _ip(lb, "addr", "add", f"{LB_BACK}/24", "dev", "eth1")
    _ip(srv, "addr", "add", f"{SRV_ADDR}/24", "dev", "eth0")

    _ip(br, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
    for dev in ("eth0", "eth1"):
        _ip(br, "link", "set", dev, "master", "br0")
    for ns, devs in (
        (client, ("eth0",)),
        (fw, ("eth0", "eth1")),
        (lb, ("eth0", "eth1")),
        (br, ("eth0", "eth1", "br0")),
        (srv, ("eth0",)),
    ):
        for dev in devs:
            _ip(ns, "link", "set", dev, "up")

    _ip(client, "route", "add", "default", "via", FW_OUTSIDE)
    _ip(srv, "route", "add", "default", "via", LB_BACK)
    _sysctl(fw, "net.ipv4.ip_forward", "1")
    run(["ip", "netns", "exec", fw, "nft", "-f", "-"], input=FW_RULESET)


AUX_HOST = "aux"  # only while the srv-second-iface fault is active
AUX_SRV_ADDR = "198.51.100.2"
AUX_PEER_ADDR = "198.51.100.1"


def add_aux(layout: Layout, iface: str) -> None:
    """Give srv a second interface `iface` (198.51.100.2/24), a veth into a namespace
    `<prefix>-aux` (198.51.100.1) that carries nothing of the lab's traffic."""
    aux, srv = layout.ns(AUX_HOST), layout.ns("srv")
    run(["ip", "netns", "add", aux])
    _sysctl(aux, "net.ipv6.conf.all.disable_ipv6", "1")
    _sysctl(aux, "net.ipv6.conf.default.disable_ipv6", "1")
    _veth(srv, iface, aux, "eth0")
    _ip(srv, "addr", "add", f"{AUX_SRV_ADDR}/24", "dev", iface)
    _ip(aux, "addr", "add", f"{AUX_PEER_ADDR}/24", "dev", "eth0")
    _ip(aux, "link", "set", "eth0", "up")
    _ip(srv, "link", "set", iface, "up")


def del_aux(layout: Layout, iface: str) -> None:
    """Undo `add_aux`; quiet when there is nothing to remove."""
    run(["ip", "netns", "del", layout.ns(AUX_HOST)], check=False)
    run(["ip", "-n", layout.ns("srv"), "link", "del", iface], check=False)


PEER_HOST = "fw2"  # only while the fw-ha-peer fault is active: fw's peer, uncaptured
PEER_BRIDGES = ("bra", "brb")  # ... and the two segments it shares with fw
PEER_OUTSIDE = "203.0.113.2"
PEER_INSIDE = "198.18.1.3"
PEER_PORTS = (61000, 61999)  # the client's source ports it routes through fw2 (above the
# kernel's ephemeral range, 32768-60999: only connections bound to them on purpose)
PEER_TABLE = "100"


def _data_links(layout: Layout) -> None:
    """Addresses, links up and the client's default route on the client-fw and fw-lb
    links (after they were made again)."""
    client, fw, lb = (layout.ns(h) for h in ("client", "fw", "lb"))
    _ip(client, "addr", "add", f"{CLIENT_ADDR}/24", "dev", "eth0")
    _ip(fw, "addr", "add", f"{FW_OUTSIDE}/24", "dev", "eth0")
    _ip(fw, "addr", "add", f"{VIP}/32", "dev", "eth0")
    _ip(fw, "addr", "add", f"{FW_INSIDE}/24", "dev", "eth1")
    _ip(lb, "addr", "add", f"{LB_FRONT}/24", "dev", "eth0")
    for ns, dev in ((client, "eth0"), (fw, "eth0"), (fw, "eth1"), (lb, "eth0")):
        _ip(ns, "link", "set", dev, "up")
    _ip(client, "route", "replace", "default", "via", FW_OUTSIDE)


def add_peer(layout: Layout) -> None:
    """Give fw an active-active peer `<prefix>-fw2` (the same DNAT + masquerade ruleset,
    its own addresses) on the same two segments: the client-fw and fw-lb links become
    Linux bridges (namespaces `<prefix>-bra`, `<prefix>-brb`; the interfaces keep their
    names and addresses), and the client routes its connections from source ports
    PEER_PORTS through fw2 (policy routing on the source port). fw's captures see none
    of them; the client's and lb's do."""
    client, fw, lb = (layout.ns(h) for h in ("client", "fw", "lb"))
    peer = layout.ns(PEER_HOST)
    bra, brb = (layout.ns(b) for b in PEER_BRIDGES)
    for ns in (peer, bra, brb):
        run(["ip", "netns", "add", ns])
        _sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")
        _sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
        _ip(ns, "link", "set", "lo", "up")
    _ip(client, "link", "del", "eth0")  # (and its peer, fw's eth0)
    _ip(fw, "link", "del", "eth1")  # (and lb's eth0)
    for br, ports in ((bra, ((client, "eth0"), (fw, "eth0"), (peer, "eth0"))),
                      (brb, ((fw, "eth1"), (peer, "eth1"), (lb, "eth0")))):  # fmt: skip
        _ip(br, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        for i, (ns, dev) in enumerate(ports):
            _veth(ns, dev, br, f"p{i}")
            _ip(br, "link", "set", f"p{i}", "master", "br0", "up")
        _ip(br, "link", "set", "br0", "up")
    _data_links(layout)
    _ip(peer, "addr", "add", f"{PEER_OUTSIDE}/24", "dev", "eth0")
    _ip(peer, "addr", "add", f"{PEER_INSIDE}/24", "dev", "eth1")
    for dev in ("eth0", "eth1"):
        _ip(peer, "link", "set", dev, "up")
    _sysctl(peer, "net.ipv4.ip_forward", "1")
    run(["ip", "netns", "exec", peer, "nft", "-f", "-"], input=FW_RULESET)
    lo, hi = PEER_PORTS
    _ip(client, "route", "add", f"{VIP}/32", "via", PEER_OUTSIDE, "table", PEER_TABLE)
    _ip(client, "rule", "add", "ipproto", "tcp", "sport", f"{lo}-{hi}", "table", PEER_TABLE,
        "pref", PEER_TABLE)  # fmt: skip


def del_peer(layout: Layout) -> None:
    """Undo `add_peer` (the direct client-fw and fw-lb links again); quiet when there is
    nothing to remove."""
    if layout.ns(PEER_HOST) not in lab_namespaces(layout.prefix):
        return
    client, fw, lb = (layout.ns(h) for h in ("client", "fw", "lb"))
    for h in (PEER_HOST, *PEER_BRIDGES):
        run(["ip", "netns", "del", layout.ns(h)], check=False)  # (their veths' ends too)
    _ip(client, "rule", "del", "pref", PEER_TABLE)
    _ip(client, "route", "flush", "table", PEER_TABLE)
    # (a namespace's devices go away after `ip netns del` returns: the ends left are
    # deleted here, and their names waited for)
    for ns, dev in ((client, "eth0"), (fw, "eth0"), (fw, "eth1"), (lb, "eth0")):
        for _ in range(50):
            if run(["ip", "-n", ns, "link", "del", dev], check=False).returncode:
                break
            time.sleep(0.05)
    _veth(client, "eth0", fw, "eth0")
    _veth(fw, "eth1", lb, "eth0")
    _data_links(layout)


def lab_namespaces(prefix: str) -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix + "-")]


def lab_root_links(prefix: str) -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    links: list[str] = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        if name.startswith(prefix + "-"):
            links.append(name)
    return links
