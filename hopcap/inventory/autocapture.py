"""`capture: auto`: which interfaces of a host carry the traffic, from `ip` outputs.

Pure: the orchestrator runs, on the host,
    ip -o route get <target address>         (or ip -j route get ...)
    ip -o route get <client-side address>    (optional; for hosts in the middle)
    ip -o link show                          (or ip -j link show)
and hands the outputs here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from hopcap.errors import InventoryError, Problem
from hopcap.inventory.values import VALID_INTERFACE

# routes that do not leave through an interface
_NO_DEV_TYPES = {"unreachable", "blackhole", "prohibit", "throw"}
_LINK_LINE = re.compile(r"^\s*\d+:\s+([^:\s@]+)(?:@[^:\s]+)?:\s+<([^>]*)>", re.MULTILINE)


@dataclass(frozen=True)
class Route:
    dev: str | None  # None: no interface (unreachable, blackhole, error output)
    local: bool  # the address is this host's own
    text: str  # the route as given, for messages


def parse_route(output: str) -> Route:
    """One `ip -o route get` (text or `-j` JSON) answer."""
    text = output.strip()
    if text.startswith("["):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, list) and data and isinstance(data[0], dict):
            r = data[0]
            rtype = str(r.get("type", "unicast"))
            dev = r.get("dev")
            local = rtype == "local"
            if rtype in _NO_DEV_TYPES or not isinstance(dev, str):
                return Route(None, False, _first_line(text))
            return Route(dev, local, _first_line(text))
        return Route(None, False, _first_line(text))
    first = _first_line(text)
    words = first.replace("\\", " ").split()
    if not words or words[0] in _NO_DEV_TYPES or "RTNETLINK" in first or "Error" in first:
        return Route(None, False, first)
    dev = None
    for i, w in enumerate(words[:-1]):
        if w == "dev":
            dev = words[i + 1]
            break
    return Route(dev, words[0] == "local", first)


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line.split("\\")[0].strip() if "cache" in line else line.strip()


def parse_links(output: str) -> dict[str, bool]:
    """Interface name -> is it up, from `ip -o link show` or `ip -j link show`."""
    text = output.strip()
    links: dict[str, bool] = {}
    if text.startswith("["):
        try:
            data = json.loads(text)
        except ValueError:
            return links
        if isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("ifname"), str):
                    flags = item.get("flags") or []
                    links[item["ifname"]] = isinstance(flags, list) and "UP" in flags
        return links
    for m in _LINK_LINE.finditer(text):
        links[m.group(1)] = "UP" in m.group(2).split(",")
    return links


def resolve_auto_capture(
    host: str,
    route_to_target: str,
    route_to_client: str | None,
    links: str,
) -> tuple[str, ...]:
    """The interfaces of `host` that carry client<->target traffic, in the order packets
    from the client cross them: (ingress, egress) for a middlebox whose client side and
    target side differ, one interface when both directions use the same one.

    Raises InventoryError naming the host and listing its interfaces when it cannot
    decide (no route, the target is local and no client-side route was given, an
    interface that is not among the host's links, or a name that is not safe to use).
    """
    to_target = parse_route(route_to_target)
    to_client = parse_route(route_to_client) if route_to_client is not None else None
    known = parse_links(links)

    def fail(why: str) -> InventoryError:
        names = (
            ", ".join(f"{n}{'' if up else ' (down)'}" for n, up in known.items()) or "none found"
        )
        return InventoryError(
            [
                Problem(
                    host,
                    None,
                    None,
                    "capture",
                    f"capture: auto cannot decide: {why}; its interfaces: {names} — "
                    f"set capture: [IFACE, ...] for host '{host}' in the inventory",
                )
            ]
        )

    egress = None if to_target.local else to_target.dev
    ingress = None
    if to_client is not None and not to_client.local:
        ingress = to_client.dev

    if to_target.dev is None:
        raise fail(f"no route to the target ({to_target.text or 'no output'})")
    if to_client is not None and to_client.dev is None:
        raise fail(f"no route back to the client side ({to_client.text or 'no output'})")

    chosen: tuple[str, ...]
    if egress and ingress:
        chosen = (ingress,) if ingress == egress else (ingress, egress)
    elif egress:
        chosen = (egress,)
    elif ingress:
        chosen = (ingress,)
    elif to_target.local and to_client is not None and to_client.local:
        chosen = (to_target.dev,)  # client and target both on this host: loopback
    elif to_target.local:
        raise fail(
            "the target is an address of this host, and no route toward the client side "
            "was given to tell which interface the traffic arrives on"
        )
    else:  # pragma: no cover - every case above returns or raises
        raise fail("no interface found")

    for name in chosen:
        if not VALID_INTERFACE.match(name):
            raise fail(f"the route uses interface '{name}', which is not a safe interface name")
        if known and name not in known:
            raise fail(f"the route uses interface '{name}', which is not among the host's links")
    return chosen
