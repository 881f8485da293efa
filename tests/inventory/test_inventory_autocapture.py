"""`capture: auto` from real `ip` outputs (recorded from iproute2 in a network namespace
with a middlebox between 198.18.10.0/24 and 198.18.11.0/24), and live in the lab."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from hopcap.errors import InventoryError
from hopcap.inventory import VALID_INTERFACE, parse_links, parse_route, resolve_auto_capture

# ip -o route get 203.0.113.80   (on the middlebox: the target is behind eth1)
MB_TO_TARGET = "203.0.113.80 via 198.18.11.2 dev eth1 src 198.18.11.1 uid 0 \\    cache \n"
# ip -o route get 198.18.10.2    (the client side is on eth0)
MB_TO_CLIENT = "198.18.10.2 dev eth0 src 198.18.10.1 uid 0 \\    cache \n"
MB_TO_TARGET_JSON = (
    '[{"dst":"203.0.113.80","gateway":"198.18.11.2","dev":"eth1","prefsrc":"198.18.11.1",'
    '"flags":[],"uid":0,"cache":[]}]\n'
)
# ip -o route get <own address>
LOCAL = "local 198.18.11.1 dev lo src 198.18.11.1 uid 0 \\    cache <local> \n"
LOCAL_JSON = (
    '[{"type":"local","dst":"127.0.0.1","dev":"lo","prefsrc":"127.0.0.1","flags":[],'
    '"uid":0,"cache":["local"]}]\n'
)
UNREACHABLE = "RTNETLINK answers: Network is unreachable\n"
LINKS = (
    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group "
    "default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
    "2: eth0@if31: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN mode "
    "DEFAULT group default qlen 1000\\    link/ether fa:3b:8c:05:4d:13 brd ff:ff:ff:ff:ff:ff "
    "link-netns hcinvt2951a\n"
    "3: eth1@if32: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN mode "
    "DEFAULT group default qlen 1000\\    link/ether 96:82:6e:21:04:0f brd ff:ff:ff:ff:ff:ff "
    "link-netns hcinvt2951b\n"
    "4: eth2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default "
    "qlen 1000\\    link/ether 96:82:6e:21:04:10 brd ff:ff:ff:ff:ff:ff\n"
)
LINKS_JSON = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536},'
    '{"ifindex":2,"link_index":31,"ifname":"eth0","flags":["NO-CARRIER","BROADCAST",'
    '"MULTICAST","UP"],"mtu":1500},{"ifindex":3,"link_index":32,"ifname":"eth1",'
    '"flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],"mtu":1500}]'
)


def test_parsers() -> None:
    r = parse_route(MB_TO_TARGET)
    assert (r.dev, r.local) == ("eth1", False)
    assert r.text.startswith("203.0.113.80 via 198.18.11.2 dev eth1")
    assert parse_route(LOCAL).local and parse_route(LOCAL).dev == "lo"
    assert parse_route(LOCAL_JSON).local
    assert parse_route(UNREACHABLE).dev is None
    assert parse_route("").dev is None
    assert parse_links(LINKS) == {"lo": True, "eth0": True, "eth1": True, "eth2": False}
    assert parse_links(LINKS_JSON) == {"lo": True, "eth0": True, "eth1": True}


def test_middlebox_two_interfaces_ingress_first() -> None:
    assert resolve_auto_capture("fw", MB_TO_TARGET, MB_TO_CLIENT, LINKS) == ("eth0", "eth1")
    assert resolve_auto_capture("fw", MB_TO_TARGET_JSON, MB_TO_CLIENT, LINKS_JSON) == (
        "eth0",
        "eth1",
    )


def test_one_armed_middlebox_is_one_interface() -> None:
    to_client = "198.18.11.7 dev eth1 src 198.18.11.1 uid 0 \\    cache \n"
    assert resolve_auto_capture("lb", MB_TO_TARGET, to_client, LINKS) == ("eth1",)


def test_client_single_interface() -> None:
    # on the client the client-side address is its own: a local route
    assert resolve_auto_capture("client", MB_TO_TARGET, LOCAL, LINKS) == ("eth1",)
    assert resolve_auto_capture("client", MB_TO_TARGET, None, LINKS) == ("eth1",)


def test_server_target_is_local() -> None:
    assert resolve_auto_capture("srv", LOCAL, MB_TO_CLIENT, LINKS) == ("eth0",)


def test_everything_on_loopback() -> None:
    assert resolve_auto_capture("box", LOCAL, LOCAL_JSON, LINKS) == ("lo",)


@pytest.mark.parametrize(
    ("to_target", "to_client", "links", "why"),
    [
        (UNREACHABLE, MB_TO_CLIENT, LINKS, "no route to the target (RTNETLINK answers"),
        (MB_TO_TARGET, UNREACHABLE, LINKS, "no route back to the client side"),
        (LOCAL, None, LINKS, "the target is an address of this host"),
        (
            "203.0.113.80 via 198.18.11.2 dev wg0 src 198.18.11.1 uid 0 \\    cache ",
            None,
            LINKS,
            "interface 'wg0', which is not among the host's links",
        ),
        (
            "203.0.113.80 dev eth0;reboot src 198.18.11.1",
            None,
            "",
            "'eth0;reboot', which is not a safe interface name",
        ),
    ],
    ids=["unreachable", "no-way-back", "local-target-no-client", "unknown-link", "unsafe-name"],
)
def test_undecidable(to_target: str, to_client: str | None, links: str, why: str) -> None:
    with pytest.raises(InventoryError) as ei:
        resolve_auto_capture("fw", to_target, to_client, links)
    (p,) = ei.value.problems
    assert p.file == "fw" and p.key == "capture"
    assert why in p.message
    assert "set capture: [IFACE, ...] for host 'fw'" in p.message
    if links == LINKS:
        assert "its interfaces: lo, eth0, eth1, eth2 (down)" in p.message


def test_valid_interface_pattern() -> None:
    for ok in ("eth0", "enp0s31f6", "eth0.100", "br-lan", "wg0", "veth+1", "any", "a" * 15):
        assert VALID_INTERFACE.match(ok), ok
    for bad in ("", "-i", ".x", "eth0;reboot", "a b", "eth0\n", "x" * 16, "fw:eth0", "a/b", "$(x)"):
        assert not VALID_INTERFACE.match(bad), bad


def _ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


@pytest.mark.lab
def test_live_middlebox_namespace() -> None:
    """Build a middlebox namespace (client side eth0, target side eth1) and feed the real
    outputs of iproute2 to resolve_auto_capture."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 is not installed")
    p = "hcinv" + uuid.uuid4().hex[:6]
    mb, a, b = f"{p}mb", f"{p}a", f"{p}b"

    def sh(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    try:
        for ns in (mb, a, b):
            sh("netns", "add", ns)
        sh("link", "add", f"{p}x0", "netns", a, "type", "veth", "peer", "name", "eth0", "netns", mb)
        sh("link", "add", f"{p}x1", "netns", b, "type", "veth", "peer", "name", "eth1", "netns", mb)
        sh("-n", mb, "addr", "add", "198.18.10.1/24", "dev", "eth0")
        sh("-n", mb, "addr", "add", "198.18.11.1/24", "dev", "eth1")
        for dev in ("lo", "eth0", "eth1"):
            sh("-n", mb, "link", "set", dev, "up")
        sh(
            "-n",
            mb,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.18.11.2",
            "dev",
            "eth1",
            "onlink",
        )
        to_target = _ip(mb, "-o", "route", "get", "203.0.113.80")
        to_client = _ip(mb, "-o", "route", "get", "198.18.10.2")
        links = _ip(mb, "-o", "link", "show")
        assert resolve_auto_capture("mb", to_target, to_client, links) == ("eth0", "eth1")
        jt = _ip(mb, "-j", "route", "get", "203.0.113.80")
        jl = _ip(mb, "-j", "link", "show")
        assert resolve_auto_capture("mb", jt, to_client, jl) == ("eth0", "eth1")
        own = _ip(mb, "-o", "route", "get", "198.18.11.1")
        assert resolve_auto_capture("mb", own, to_client, links) == ("eth0",)
        with pytest.raises(InventoryError):
            resolve_auto_capture("mb", _ip(mb, "-o", "route", "get", "192.0.2.9"), None, links)
    finally:
        for ns in (mb, a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
