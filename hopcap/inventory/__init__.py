"""Load and validate an inventory (hopcap's site.yml, or an Ansible INI/YAML inventory).

Public API (used by cli.py and the orchestrator):

    load(path, *, path_override=None) -> Inventory     # raises InventoryError with every problem
    loads(text, file="<string>", *, path_override=None) -> Inventory
    parse_duration("500ms" | "30s" | "5m" | "1h" | 30) -> seconds (ValueError)
    parse_target("203.0.113.80:80" | "[2001:db8::1]:443") -> Endpoint (ValueError)
    resolve_auto_capture(host, route_to_target, route_to_client, links) -> interfaces
    VALID_INTERFACE  # re.Pattern: names a remote command may receive (use .match)

The schema is documented in docs/inventory.md.
"""

from hopcap.inventory._build import interface_problem
from hopcap.inventory.autocapture import parse_links, parse_route, resolve_auto_capture
from hopcap.inventory.loader import load, loads
from hopcap.inventory.values import VALID_INTERFACE, parse_duration, parse_target

__all__ = [
    "VALID_INTERFACE",
    "interface_problem",
    "load",
    "loads",
    "parse_duration",
    "parse_links",
    "parse_route",
    "parse_target",
    "resolve_auto_capture",
]
