"""Value syntax shared by every inventory format: durations, interface names, host names,
addresses, targets, and "did you mean" suggestions."""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Iterable

from hopcap.model import Endpoint

# What a remote command may receive as an interface name. Linux allows up to 15 bytes
# and forbids '/', ':' and whitespace; hopcap is stricter: no shell metacharacters at
# all, and no leading '-' or '.', so a name can never be read as an option or a path.
# F5 BIG-IP's tcpdump also takes a noise suffix after a TMM interface or VLAN name
# (`0.0:nnn`, `external:nnnp`): TMM appends a trailer with its own flow information.
VALID_INTERFACE: re.Pattern[str] = re.compile(
    r"\A[A-Za-z0-9_][A-Za-z0-9_.+-]{0,14}(?::n{1,3}p?)?\Z"
)


# An inventory host name: it names capture points (`fw:eth1`) and files, so no ':' or '/'.
VALID_HOST_NAME: re.Pattern[str] = re.compile(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}\Z")

_LABEL = re.compile(r"\A[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")

_UNITS: dict[str, float] = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(µs|us|ms|sec|min|s|m|h|d)", re.IGNORECASE)
_NUMBER = re.compile(r"\A[+-]?(\d+(?:\.\d*)?|\.\d+)\Z")
_DURATION_HELP = "expected seconds (30) or a number with a unit: 500ms, 30s, 5m, 1h, 1m30s"


def parse_duration(text: str | int | float) -> float:
    """`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1m30s"`, `30`, `"30"`, `2.5` -> seconds.

    Raises ValueError with a message fit for the user for anything else, including
    negative, infinite and NaN durations.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}: {_DURATION_HELP}")
    if isinstance(text, int | float):
        value = float(text)
    elif isinstance(text, str):
        s = text.strip()
        if not s:
            raise ValueError(f"invalid duration '': {_DURATION_HELP}")
        value = float(s) if _NUMBER.match(s) else _parse_units(s, text)
    else:
        raise ValueError(f"invalid duration of type {type(text).__name__}: {_DURATION_HELP}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"invalid duration {text!r}: must be a finite number")
    if value < 0:
        raise ValueError(f"invalid duration {text!r}: a duration cannot be negative")
    return value


def _parse_units(s: str, original: str) -> float:
    if s.startswith("-"):
        raise ValueError(f"invalid duration {original!r}: a duration cannot be negative")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        raise ValueError(f"invalid duration {original!r}: {_DURATION_HELP}")
    return total


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_hostname(text: str) -> bool:
    """A DNS name (RFC 1123 labels; '_' tolerated, as ~/.ssh/config aliases use it)."""
    if not text or len(text) > 253 or text.startswith("-"):
        return False
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if all(label.isdigit() for label in labels):
        return False  # "999.1.1.1" is a bad IPv4 address, not a name
    return all(_LABEL.match(label) for label in labels)


def check_address(text: str) -> str | None:
    """None when `text` is an IP address or a host name; else why not."""
    if is_ip(text) or is_hostname(text):
        return None
    if text.startswith("[") and text.endswith("]") and is_ip(text[1:-1]):
        return f"'{text}' has brackets; write the IPv6 address without them"
    if ":" in text and not is_ip(text):
        head, _, tail = text.rpartition(":")
        if tail.isdigit() and (is_hostname(head) or is_ip(head)):
            return f"'{text}' includes a port; put the port in 'port'"
    return f"'{text}' is not a valid host name or IP address"


def parse_target(text: str) -> Endpoint:
    """`"203.0.113.80:80"`, `"web.example:443"`, `"[2001:db8::1]:443"` -> Endpoint.

    Raises ValueError explaining the expected form.
    """
    s = text.strip()
    form = "expected host:port or [IPv6]:port, e.g. 203.0.113.80:80"
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise ValueError(f"'{text}' is missing ']' ({form})")
        host, rest = s[1:end], s[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"'{text}' has no port ({form})")
        port_s = rest[1:]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"'{text}': brackets are for IPv6 addresses, '{host}' is not one"
            ) from None
    else:
        if s.count(":") > 1:
            raise ValueError(f"'{text}': put an IPv6 address in brackets, e.g. [2001:db8::1]:443")
        if ":" not in s:
            raise ValueError(f"'{text}' has no port ({form})")
        host, _, port_s = s.partition(":")
        why = check_address(host) if host else f"'{text}' has no host"
        if why:
            raise ValueError(why)
    if not port_s.isdigit():
        raise ValueError(f"'{text}': port '{port_s}' is not a number ({form})")
    port = int(port_s)
    if not 1 <= port <= 65535:
        raise ValueError(f"'{text}': port {port} is out of range 1-65535")
    return Endpoint(host, port)


def suggest(word: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str | None:
    """The closest of `choices` to `word` (difflib), or a known alias's meaning."""
    if aliases:
        hit = aliases.get(word.lower())
        if hit:
            return hit
    pool = list(choices)
    lowered = {c.lower(): c for c in pool}
    if word.lower() in lowered:
        return lowered[word.lower()]
    cutoff = 0.5 if len(word) <= 4 else 0.6  # one wrong letter in "fx" is already 0.5
    best = difflib.get_close_matches(word, pool, n=1, cutoff=cutoff)
    return best[0] if best else None


def did_you_mean(word: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """' — did you mean 'x'?' or '' when nothing is close."""
    s = suggest(word, choices, aliases)
    return f" — did you mean '{s}'?" if s else ""
