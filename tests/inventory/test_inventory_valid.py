"""Valid site.yml inventories: what they load to."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hopcap.inventory import load, parse_duration, parse_target
from hopcap.model import DEFAULT_FILTER, DEFAULT_WINDOW_S, Endpoint, Host, Inventory, Repro
from tests.inventory.inv_helpers import EXAMPLES, problems_of

HOME = os.path.expanduser("~")

Loader = Callable[..., Inventory]


def test_full_schema_example() -> None:
    inv = load(EXAMPLES / "site.yml")
    assert inv.source == str(EXAMPLES / "site.yml")
    assert inv.path == ("client", "fw", "lb", "srv.example.net")
    assert list(inv.hosts) == ["bastion", "client", "fw", "lb", "srv.example.net"]
    common = {
        "user": "root",
        "identity": f"{HOME}/.ssh/id_ed25519",
        "known_hosts": f"{HOME}/.ssh/known_hosts",
    }
    assert inv.hosts["bastion"] == Host(
        name="bastion",
        address="198.51.100.2",
        port=2222,
        **common,  # type: ignore[arg-type]
    )
    assert not inv.hosts["bastion"].on_path
    assert inv.hosts["client"] == Host(
        name="client",
        address="198.19.0.10",
        role="client",
        capture=("eth0",),
        **common,  # type: ignore[arg-type]
    )
    fw = inv.hosts["fw"]
    assert (fw.user, fw.sudo, fw.jump, fw.groups) == (
        "ops",
        True,
        "bastion",
        ("dmz", "behind-bastion"),
    )
    assert fw.capture == ("eth0", "eth1")
    lb = inv.hosts["lb"]
    assert (lb.identity, lb.jump, lb.user) == (f"{HOME}/.ssh/lb_key", "bastion", "root")
    srv = inv.hosts["srv.example.net"]
    assert (srv.address, srv.capture, srv.role) == ("srv.example.net", "auto", "server")
    assert inv.target == Endpoint("203.0.113.80", 80)
    assert inv.filter == "tcp port 80 or icmp"
    assert inv.window_s == 30.0
    assert inv.repro == Repro(on="client", run="curl -s -m 5 http://203.0.113.80/")
    public = inv.to_public_dict()
    assert public["hosts"]["srv.example.net"]["capture"] == "auto"
    assert public["target"] == "203.0.113.80:80"


def test_design_md_example(load_text: Loader) -> None:
    inv = load_text(
        """\
defaults:
  user: root
  port: 22
  sudo: false
hosts:
  client: {address: 198.19.0.10, role: client,   capture: [eth0]}
  fw:     {address: 198.19.0.11, role: firewall, capture: [eth0, eth1]}
  lb:     {address: 198.19.0.12, role: lb,       capture: [eth0, eth1]}
  srv:    {address: 198.19.0.13, role: server,   capture: auto}
path: [client, fw, lb, srv]
target: 203.0.113.80:80
filter: "tcp"
window: 30s
repro: {on: client, run: "curl -s -m 5 http://203.0.113.80/"}
"""
    )
    assert [h.capture for h in inv.path_hosts()] == [
        ("eth0",),
        ("eth0", "eth1"),
        ("eth0", "eth1"),
        "auto",
    ]
    assert inv.repro is not None and inv.repro.on == "client"  # `on` is not read as YAML's true


def test_minimal_defaults(load_text: Loader) -> None:
    inv = load_text("hosts:\n  client: {address: 198.19.0.10, role: client, capture: [eth0]}\n")
    assert inv.hosts["client"] == Host(
        name="client", address="198.19.0.10", role="client", capture=("eth0",)
    )
    assert (inv.filter, inv.window_s, inv.target, inv.repro) == (
        DEFAULT_FILTER,
        DEFAULT_WINDOW_S,
        None,
        None,
    )


def test_groups_precedence(load_text: Loader) -> None:
    inv = load_text(
        """\
defaults: {user: d, port: 1001, sudo: false, identity: /keys/d, known_hosts: /kh/d}
groups:
  first: {user: g1, port: 2001}
  second: {user: g2, port: 2002, sudo: true, identity: /keys/g2}
hosts:
  a: {address: 198.19.0.1, role: client, capture: [eth0], groups: [first, second], user: own}
  b: {address: 198.19.0.2, role: server, capture: [eth0], groups: [second, first]}
  c: {address: 198.19.0.3, role: router, capture: [eth0]}
"""
    )
    a, b, c = inv.hosts["a"], inv.hosts["b"], inv.hosts["c"]
    # host > groups (earlier listed wins) > defaults, key by key
    assert (a.user, a.port, a.sudo, a.identity, a.known_hosts) == (
        "own",
        2001,
        True,
        "/keys/g2",
        "/kh/d",
    )
    assert (b.user, b.port, b.sudo, b.identity) == ("g2", 2002, True, "/keys/g2")
    assert (c.user, c.port, c.sudo, c.identity) == ("d", 1001, False, "/keys/d")
    assert a.groups == ("first", "second")
    assert inv.path == ("a", "c", "b")  # role order: client, router, server


def test_default_path_is_role_order_then_file_order(load_text: Loader) -> None:
    inv = load_text(
        """\
hosts:
  s1: {address: 198.19.0.1, role: server, capture: [eth0]}
  fw2: {address: 198.19.0.2, role: firewall, capture: [eth0]}
  jumpbox: {address: 198.19.0.9}
  c: {address: 198.19.0.3, role: client, capture: [eth0]}
  fw1: {address: 198.19.0.4, role: firewall, capture: [eth0]}
  lb: {address: 198.19.0.5, role: lb, capture: [eth0]}
  r: {address: 198.19.0.6, role: router, capture: [eth0]}
"""
    )
    assert inv.path == ("c", "fw2", "fw1", "lb", "r", "s1")
    assert "jumpbox" in inv.hosts and not inv.hosts["jumpbox"].on_path


def test_path_override(load_text: Loader, write: Callable[..., Path]) -> None:
    text = """\
hosts:
  c: {address: 198.19.0.3, role: client, capture: [eth0]}
  fw: {address: 198.19.0.4, role: firewall, capture: [eth0, eth1]}
  s: {address: 198.19.0.1, role: server, capture: [eth0]}
path: [c, fw, s]
"""
    assert load_text(text, path_override=["c", "s"]).path == ("c", "s")
    problems = problems_of(write(text), path_override=["c", "fx"])
    assert [str(p) for p in problems] == [
        "--path: path names unknown host 'fx' — did you mean 'fw'?"
    ]


def test_auto_capture_and_ipv6(load_text: Loader) -> None:
    inv = load_text(
        """\
hosts:
  c: {address: '2001:db8::10', role: client, capture: auto}
  s: {address: 198.19.0.1, role: server, capture: auto}
target: '[2001:db8::80]:443'
window: 1m30s
"""
    )
    assert inv.hosts["c"].address == "2001:db8::10"
    assert inv.hosts["c"].capture == "auto"
    assert inv.target == Endpoint("2001:db8::80", 443)
    assert str(inv.target) == "[2001:db8::80]:443"
    assert inv.window_s == 90.0


def test_jump_chain(load_text: Loader) -> None:
    inv = load_text(
        """\
defaults: {jump: outer}
hosts:
  outer: {address: 198.51.100.1}
  inner: {address: 198.18.5.1, jump: outer}
  fw: {address: 198.18.5.2, role: firewall, capture: [eth0], jump: inner}
  srv: {address: 198.18.5.3, role: server, capture: [eth0]}
"""
    )
    assert inv.hosts["fw"].jump == "inner"
    assert inv.hosts["inner"].jump == "outer"
    assert inv.hosts["outer"].jump is None  # never inherits a jump through itself
    assert inv.hosts["srv"].jump == "outer"
    assert inv.path == ("fw", "srv")


def test_name_is_the_address_for_ssh_config(load_text: Loader) -> None:
    inv = load_text("hosts:\n  fw1.dc.example: {role: firewall, capture: [eth0]}\n  bastion:\n")
    assert inv.hosts["fw1.dc.example"].address == "fw1.dc.example"
    assert inv.hosts["fw1.dc.example"].user is None  # ~/.ssh/config or the local user decides
    assert inv.hosts["bastion"].address == "bastion"


def test_yaml_anchors_and_merge_keys(load_text: Loader) -> None:
    inv = load_text(
        """\
hosts:
  fw: &mb {address: 198.19.0.4, role: firewall, capture: [eth0, eth1], port: 2200}
  lb:
    <<: *mb
    address: 198.19.0.5
    role: lb
"""
    )
    assert (
        replace(inv.hosts["lb"], name="fw", address="198.19.0.4", role="firewall")
        == inv.hosts["fw"]
    )
    assert inv.hosts["lb"].port == 2200


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h 2m 3s", 3723.0),
        ("2.5s", 2.5),
        ("30", 30.0),
        (" 45 ", 45.0),
        (30, 30.0),
        (0.25, 0.25),
        ("250us", 0.00025),
        ("1d", 86400.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "invalid duration 'abc': expected seconds (30) or a number with a unit"),
        ("30 seconds", "invalid duration '30 seconds'"),
        ("5x", "invalid duration '5x'"),
        ("s", "invalid duration 's'"),
        ("", "invalid duration ''"),
        ("-5s", "a duration cannot be negative"),
        (-1, "a duration cannot be negative"),
        (float("nan"), "must be a finite number"),
        (float("inf"), "must be a finite number"),
        ("9" * 400, "must be a finite number"),
        (True, "invalid duration True"),
        ("5m-3s", "invalid duration '5m-3s'"),
    ],
)
def test_parse_duration_errors(text: str | int | float, message: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_duration(text)
    assert message in str(ei.value)


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("203.0.113.80:80", Endpoint("203.0.113.80", 80)),
        ("web.example.net:443", Endpoint("web.example.net", 443)),
        ("[2001:db8::1]:8443", Endpoint("2001:db8::1", 8443)),
        (" 198.18.0.1:65535 ", Endpoint("198.18.0.1", 65535)),
    ],
)
def test_parse_target(text: str, endpoint: Endpoint) -> None:
    assert parse_target(text) == endpoint
