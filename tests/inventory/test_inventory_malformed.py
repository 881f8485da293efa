"""A table of malformed site.yml files: each must fail with a message naming the line,
the key and what was expected (and the closest valid name for typos)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hopcap.errors import InventoryError
from hopcap.inventory import load
from tests.inventory.inv_helpers import problems_of

HOSTS = """\
hosts:
  client: {address: 198.19.0.10, role: client, capture: [eth0]}
  fw: {address: 198.19.0.11, role: firewall, capture: [eth0, eth1]}
  srv: {address: 198.19.0.13, role: server, capture: [eth0]}
"""


def host(line: str) -> str:
    """HOSTS with one more host line (line 5) and a target on line 6."""
    return HOSTS + f"  {line}\ntarget: 203.0.113.80:80\n"


# (id, file text, line of the problem, text the message must contain)
CASES: list[tuple[str, str, int | None, str]] = [
    (
        "top-level-typo",
        HOSTS + "targte: 203.0.113.80:80\n",
        5,
        "unknown key 'targte' in the top level — did you mean 'target'?",
    ),
    (
        "defaults-typo",
        "defualts: {user: root}\n" + HOSTS,
        1,
        "unknown key 'defualts' in the top level — did you mean 'defaults'?",
    ),
    (
        "host-key-typo",
        host("lb: {address: 198.19.0.12, role: lb, captrue: [eth0]}"),
        5,
        "unknown key 'captrue' in host 'lb' — did you mean 'capture'?",
    ),
    (
        "unknown-key-no-match",
        host("lb: {address: 198.19.0.12, role: lb, capture: [eth0], colour: red}"),
        5,
        "unknown key 'colour' in host 'lb' (valid keys: address, port, user",
    ),
    (
        "role-typo",
        host("lb: {address: 198.19.0.12, role: firewal, capture: [eth0]}"),
        5,
        "unknown role 'firewal' — did you mean 'firewall'? "
        "(valid roles: client, firewall, lb, router, server)",
    ),
    (
        "role-alias",
        host("lb: {address: 198.19.0.12, role: loadbalancer, capture: [eth0]}"),
        5,
        "unknown role 'loadbalancer' — did you mean 'lb'?",
    ),
    (
        "role-not-a-string",
        host("lb: {address: 198.19.0.12, role: [lb], capture: [eth0]}"),
        5,
        "role (host 'lb'): expected a role, got a list",
    ),
    (
        "port-string",
        host("lb: {address: 198.19.0.12, port: ssh, role: lb, capture: [eth0]}"),
        5,
        "port (host 'lb'): expected a port number (1-65535), got a string ('ssh')",
    ),
    (
        "port-zero",
        host("lb: {address: 198.19.0.12, port: 0, role: lb, capture: [eth0]}"),
        5,
        "port (host 'lb'): 0 is out of range 1-65535",
    ),
    (
        "port-too-big",
        "defaults:\n  port: 65536\n" + HOSTS,
        2,
        "port (defaults): 65536 is out of range 1-65535",
    ),
    (
        "port-bool",
        host("lb: {address: 198.19.0.12, port: true, role: lb, capture: [eth0]}"),
        5,
        "expected a port number (1-65535), got a boolean (true)",
    ),
    (
        "sudo-not-bool",
        "defaults:\n  sudo: maybe\n" + HOSTS,
        2,
        "sudo (defaults): expected true or false, got a string ('maybe')",
    ),
    (
        "capture-string",
        host("lb: {address: 198.19.0.12, role: lb, capture: eth0}"),
        5,
        "got 'eth0' — write capture: [eth0]",
    ),
    (
        "capture-comma-string",
        host("lb: {address: 198.19.0.12, role: lb, capture: 'eth0,eth1'}"),
        5,
        "write capture: [eth0, eth1]",
    ),
    (
        "capture-shell-injection",
        host("lb: {address: 198.19.0.12, role: lb, capture: [eth0, eth0;reboot]}"),
        5,
        "interface name 'eth0;reboot' contains ';', which an interface name cannot",
    ),
    (
        "capture-command-substitution",
        host("lb: {address: 198.19.0.12, role: lb, capture: ['$(reboot)']}"),
        5,
        "interface name '$(reboot)' contains '$', '(', ')'",
    ),
    (
        "capture-option-injection",
        host("lb: {address: 198.19.0.12, role: lb, capture: [-w/etc/passwd]}"),
        5,
        "interface name '-w/etc/passwd' contains '/'",
    ),
    (
        "capture-leading-dash",
        host("lb: {address: 198.19.0.12, role: lb, capture: [-eth0]}"),
        5,
        "interface name '-eth0' cannot start with '-'",
    ),
    (
        "capture-too-long",
        host("lb: {address: 198.19.0.12, role: lb, capture: [enp0s31f6abcdefgh]}"),
        5,
        "interface name 'enp0s31f6abcdefgh' is longer than 15 characters",
    ),
    (
        "capture-twice",
        host("lb: {address: 198.19.0.12, role: lb, capture: [eth0, eth0]}"),
        5,
        "interface 'eth0' is listed twice",
    ),
    (
        "capture-empty",
        host("lb: {address: 198.19.0.12, role: lb, capture: []}"),
        5,
        "expected a list of interfaces (e.g. [eth0, eth1]) or auto, got an empty list",
    ),
    (
        "role-without-capture",
        host("lb: {address: 198.19.0.12, role: lb}"),
        5,
        "host 'lb' has role lb but no 'capture'",
    ),
    (
        "capture-without-role",
        host("lb: {address: 198.19.0.12, capture: [eth0]}"),
        5,
        "host 'lb' has 'capture' but no role",
    ),
    (
        "address-invalid",
        host("lb: {address: 'not a host!', role: lb, capture: [eth0]}"),
        5,
        "address (host 'lb'): 'not a host!' is not a valid host name or IP address",
    ),
    (
        "address-bad-ipv4",
        host("lb: {address: 198.19.0.300, role: lb, capture: [eth0]}"),
        5,
        "'198.19.0.300' is not a valid host name or IP address",
    ),
    (
        "address-with-port",
        host("lb: {address: '198.19.0.12:2222', role: lb, capture: [eth0]}"),
        5,
        "'198.19.0.12:2222' includes a port; put the port in 'port'",
    ),
    (
        "address-option-injection",
        host("lb: {address: -oProxyCommand=reboot, role: lb, capture: [eth0]}"),
        5,
        "is not a valid host name or IP address",
    ),
    (
        "missing-address-name-not-a-hostname",
        host("lb..1: {role: lb, capture: [eth0]}"),
        5,
        "host 'lb..1' has no 'address', and its name is not one to connect to",
    ),
    (
        "host-name-with-colon",
        host("'lb:1': {address: 198.19.0.12, role: lb, capture: [eth0]}"),
        5,
        "'lb:1' is not a valid inventory host name",
    ),
    (
        "unknown-jump-host",
        HOSTS
        + "  bastion: {address: 198.51.100.2}\n  lb: {role: lb, capture: [eth0], jump: bastoin}\n",
        6,
        "host 'lb' jumps through unknown host 'bastoin' — did you mean 'bastion'?",
    ),
    (
        "jump-cycle",
        HOSTS
        + "  j1: {address: 198.51.100.2, jump: j2}\n  j2: {address: 198.51.100.3, jump: j1}\n",
        5,
        "jump hosts form a cycle: j1 -> j2 -> j1",
    ),
    (
        "jump-self",
        HOSTS + "  j1: {address: 198.51.100.2, jump: j1}\n",
        5,
        "jump hosts form a cycle: j1 -> j1",
    ),
    (
        "path-unknown-host",
        HOSTS + "path: [client, fw, svr]\n",
        5,
        "path names unknown host 'svr' — did you mean 'srv'?",
    ),
    (
        "path-twice",
        HOSTS + "path: [client, fw, fw, srv]\n",
        5,
        "host 'fw' is on the path twice",
    ),
    (
        "path-jump-host",
        HOSTS + "  bastion: {address: 198.51.100.2}\npath: [client, bastion, srv]\n",
        6,
        "host 'bastion' is on the path but has no role",
    ),
    (
        "path-empty",
        HOSTS + "path: []\n",
        5,
        "the path is empty",
    ),
    (
        "duplicate-host",
        HOSTS + "  fw: {address: 198.19.0.99, role: firewall, capture: [eth9]}\n",
        5,
        "duplicate host 'fw' in hosts (first at line 3)",
    ),
    (
        "duplicate-key",
        HOSTS + "  lb:\n    address: 198.19.0.12\n    role: lb\n    capture: [eth0]\n"
        "    address: 198.19.0.13\n",
        9,
        "duplicate key 'address' in host 'lb' (first at line 6)",
    ),
    (
        "duplicate-top-key",
        HOSTS + "window: 10s\nwindow: 20s\n",
        6,
        "duplicate key 'window' in the top level (first at line 5)",
    ),
    (
        "duration-words",
        HOSTS + "window: 30 seconds\n",
        5,
        "window: invalid duration '30 seconds': expected seconds (30) or a number with a unit",
    ),
    (
        "duration-zero",
        HOSTS + "window: 0s\n",
        5,
        "window must be longer than 0 seconds",
    ),
    (
        "duration-negative",
        HOSTS + "window: -5\n",
        5,
        "a duration cannot be negative",
    ),
    (
        "duration-list",
        HOSTS + "window: [30s]\n",
        5,
        "window: expected a duration, got a list",
    ),
    (
        "yaml-unclosed-flow",
        "hosts:\n  client: {address: 198.19.0.10, role: client, capture: [eth0}\n",
        2,
        "YAML syntax error",
    ),
    (
        "yaml-bad-indentation",
        "hosts:\n  client:\n    role: client\n   capture: [eth0]\n",
        4,
        "YAML syntax error",
    ),
    (
        "yaml-tab-indent",
        "hosts:\n\tclient: {role: client}\n",
        2,
        "YAML syntax error",
    ),
    (
        "yaml-two-documents",
        HOSTS + "---\nhosts: {}\n",
        5,
        "YAML syntax error: expected a single document",
    ),
    ("top-level-list", "- client\n- fw\n", 1, "the top level must be a mapping with 'hosts:'"),
    ("top-level-scalar", "just some words\n", 1, "the top level must be a mapping"),
    ("hosts-missing", "target: 203.0.113.80:80\n", 1, "missing 'hosts:'"),
    ("hosts-list", "hosts: [client, fw]\n", 1, "'hosts' must map host names to their settings"),
    ("hosts-empty", "hosts: {}\n", 1, "'hosts' must map host names to their settings"),
    (
        "host-not-a-mapping",
        host("lb: [198.19.0.12, lb]"),
        5,
        "host 'lb' must be a mapping of settings, got a list",
    ),
    (
        "target-no-port",
        HOSTS + "target: 203.0.113.80\n",
        5,
        "target: '203.0.113.80' has no port (expected host:port or [IPv6]:port",
    ),
    (
        "target-ipv6-no-brackets",
        HOSTS + "target: '2001:db8::80:443'\n",
        5,
        "put an IPv6 address in brackets, e.g. [2001:db8::1]:443",
    ),
    (
        "target-bad-port",
        HOSTS + "target: 203.0.113.80:99999\n",
        5,
        "port 99999 is out of range 1-65535",
    ),
    (
        "target-bad-host",
        HOSTS + "target: 'web server:80'\n",
        5,
        "'web server' is not a valid host name or IP address",
    ),
    (
        "target-v4-in-brackets",
        HOSTS + "target: '[203.0.113.80]:80'\n",
        5,
        "brackets are for IPv6 addresses",
    ),
    (
        "unknown-group",
        "groups:\n  dmz: {sudo: true}\n"
        + host("lb: {address: 198.19.0.12, role: lb, capture: [eth0], groups: [dnz]}"),
        7,
        "host 'lb' is in unknown group 'dnz' — did you mean 'dmz'?",
    ),
    (
        "group-key-typo",
        "groups:\n  dmz: {suod: true}\n" + HOSTS,
        2,
        "unknown key 'suod' in group 'dmz' — did you mean 'sudo'?",
    ),
    (
        "groups-do-not-nest",
        "groups:\n  dmz: {groups: [other]}\n" + HOSTS,
        2,
        "'groups' is a host setting; groups do not nest",
    ),
    (
        "address-in-defaults",
        "defaults: {address: 198.19.0.1}\n" + HOSTS,
        1,
        "'address' belongs to a host, not to defaults",
    ),
    (
        "repro-unknown-host",
        HOSTS + "repro: {on: clinet, run: curl -s http://203.0.113.80/}\n",
        5,
        "repro runs on unknown host 'clinet' — did you mean 'client'?",
    ),
    ("repro-missing-run", HOSTS + "repro: {on: client}\n", 5, "repro needs 'run:'"),
    (
        "repro-not-a-mapping",
        HOSTS + "repro: curl http://203.0.113.80/\n",
        5,
        "repro must be a mapping {on: HOST, run: COMMAND}",
    ),
    (
        "filter-empty",
        HOSTS + "filter: ''\n",
        5,
        "filter: expected a BPF filter string, got an empty string",
    ),
    (
        "auto-without-target",
        "hosts:\n  client: {address: 198.19.0.10, role: client, capture: auto}\n",
        2,
        "host 'client' has capture: auto and is alone on the path, so it needs 'target'",
    ),
    (
        "no-role-at-all",
        "hosts:\n  a: {address: 198.19.0.10}\n  b: {address: 198.19.0.11}\n",
        2,
        "no host has a role, so there is nothing to capture",
    ),
    (
        "python-tag",
        host("lb: {address: !!python/object:os.system reboot, role: lb, capture: [eth0]}"),
        5,
        "unsupported YAML tag tag:yaml.org,2002:python/object:os.system",
    ),
    (
        "vault-tag",
        host("lb: {address: !vault abc, role: lb, capture: [eth0]}"),
        5,
        "unsupported YAML tag !vault",
    ),
    (
        "user-with-space",
        "defaults:\n  user: 'john smith'\n" + HOSTS,
        2,
        "'john smith' is not a valid user name",
    ),
    (
        "identity-number",
        "defaults:\n  identity: 42\n" + HOSTS,
        2,
        "identity (defaults): expected a file path, got a number (42)",
    ),
    (
        "recursive-alias",
        "hosts: &h\n  client: {address: 198.19.0.10, role: client, capture: [eth0]}\n  again: *h\n",
        1,
        "recursive YAML alias (a value that contains itself)",
    ),
    (
        "non-scalar-key",
        HOSTS + "? [a, b]\n: 1\n",
        5,
        "a key must be a plain name",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed(write: Callable[..., Path], text: str, line: int | None, message: str) -> None:
    path = write(text)
    problems = problems_of(path)
    hits = [p for p in problems if message in p.message]
    assert hits, f"no problem says {message!r}; got:\n" + "\n".join(map(str, problems))
    assert hits[0].line == line, f"{hits[0]} is not on line {line}"
    assert hits[0].file == str(path)
    assert str(hits[0]).startswith(f"{path}:{line}:")


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


def test_every_problem_reported_at_once(write: Callable[..., Path]) -> None:
    text = """\
defaults:
  port: 70000
hosts:
  client: {address: 198.19.0.10, role: clinet, capture: [eth0]}
  fw:     {address: 198.19.0.11, role: firewall, captrue: [eth0, eth1]}
  lb:     {address: 198.19.0.12, role: lb, capture: [eth0, "eth1;reboot"], jump: srv}
  srv:    {address: 198.19.0.13, role: server, capture: auto, jump: lb}
  fw: {}
path: [client, fw, lbb, srv]
target: 203.0.113.80
window: -3s
repro: {on: clent, rn: "curl -s -m 5 http://203.0.113.80/"}
"""
    path = write(text)
    with pytest.raises(InventoryError) as ei:
        load(path)
    got = [(p.line, p.message.split(" — ")[0].split(":")[0]) for p in ei.value.problems]
    lines = [p.line or 0 for p in ei.value.problems]
    assert lines == sorted(lines), "problems are reported in file order"
    assert len(ei.value.problems) == 11, "\n".join(map(str, ei.value.problems))
    assert {line for line, _ in got} == {2, 4, 5, 6, 8, 9, 10, 11, 12}
    text_all = str(ei.value)
    assert text_all.startswith("inventory has 11 problems:")
    for needle in (
        "70000 is out of range",
        "did you mean 'client'?",
        "did you mean 'capture'?",
        "'eth1;reboot' contains ';'",
        "jump hosts form a cycle: lb -> srv -> lb",
        "duplicate host 'fw'",
        "did you mean 'lb'?",
        "has no port",
        "cannot be negative",
        "unknown host 'clent'",
        "did you mean 'run'?",
    ):
        assert needle in text_all
    # no cascade: a misspelled role or capture does not also report "no role"/"no capture"
    assert "but no 'capture'" not in text_all
    assert "but no role" not in text_all
