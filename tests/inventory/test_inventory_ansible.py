"""Ansible inventories (INI and YAML) load to the same Inventory as the equivalent site.yml."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from hopcap.inventory import load
from hopcap.model import Inventory
from tests.inventory.inv_helpers import EXAMPLES, problems_of

Loader = Callable[..., Inventory]


def _same(a: Inventory, b: Inventory) -> None:
    assert replace(a, source="x") == replace(b, source="x")


def test_ini_yaml_and_site_yml_are_equivalent() -> None:
    site = load(EXAMPLES / "ansible" / "site-equivalent.yml")
    ini = load(EXAMPLES / "ansible" / "hosts.ini")
    yml = load(EXAMPLES / "ansible" / "hosts.yml")
    _same(ini, site)
    _same(yml, site)
    assert ini.source.endswith("hosts.ini")
    # hosts without hopcap_role that nothing jumps through are not part of the inventory
    assert list(ini.hosts) == ["bastion", "client", "fw", "lb", "srv.example.net"]
    assert ini.hosts["fw"].sudo is True and ini.hosts["fw"].user == "ops"
    assert ini.hosts["bastion"].port == 2222


def test_ini_detected_by_content_without_suffix(tmp_path: Path) -> None:
    p = tmp_path / "hosts"
    p.write_text((EXAMPLES / "ansible" / "hosts.ini").read_text())
    _same(load(p), load(EXAMPLES / "ansible" / "hosts.ini"))


def test_ini_precedence_child_over_parent_host_over_group(load_text: Loader) -> None:
    inv = load_text(
        """\
[all:vars]
ansible_user=from_all
ansible_port=1000

[parent:children]
child

[parent:vars]
ansible_user=from_parent
ansible_port=2000
ansible_become=yes

[child]
h1 ansible_host=198.18.0.1 hopcap_role=client hopcap_capture=eth0
h2 ansible_host=198.18.0.2 hopcap_role=server hopcap_capture=eth0 ansible_user=own

[child:vars]
ansible_user=from_child

[zeta]
h1

[zeta:vars]
ansible_port=3000
""",
        name="hosts.ini",
    )
    h1, h2 = inv.hosts["h1"], inv.hosts["h2"]
    # child (depth 2) beats parent (depth 1) and zeta (depth 1); zeta beats parent by name
    assert (h1.user, h1.port, h1.sudo) == ("from_child", 3000, True)
    assert (h2.user, h2.port, h2.sudo) == ("own", 2000, True)
    assert h1.groups == ("child", "zeta")


def test_group_priority(load_text: Loader) -> None:
    inv = load_text(
        """\
[a]
h ansible_host=198.18.0.1 hopcap_role=client hopcap_capture=eth0
[b]
h
[a:vars]
ansible_user=a
ansible_group_priority=10
[b:vars]
ansible_user=b
""",
        name="hosts.ini",
    )
    assert inv.hosts["h"].user == "a"  # a higher priority wins over the later name


def test_ini_values_and_host_patterns(load_text: Loader) -> None:
    inv = load_text(
        """\
fw1:2201 hopcap_role=firewall hopcap_capture="['eth0', 'eth1']" ansible_become=True
web[1:3] hopcap_role=server hopcap_capture=auto   # a comment
db-[a:b].example hopcap_role=router hopcap_capture=ens3,ens4
[all:vars]
hopcap_target=[2001:db8::80]:443
hopcap_window=90
""",
        name="hosts",
    )
    fw1 = inv.hosts["fw1"]
    assert (fw1.port, fw1.capture, fw1.sudo, fw1.address) == (2201, ("eth0", "eth1"), True, "fw1")
    assert [n for n in inv.path] == ["fw1", "db-a.example", "db-b.example", "web1", "web2", "web3"]
    assert inv.hosts["db-b.example"].capture == ("ens3", "ens4")
    assert inv.window_s == 90.0
    assert str(inv.target) == "[2001:db8::80]:443"


def test_yaml_top_level_groups_without_all(load_text: Loader) -> None:
    inv = load_text(
        """\
firewalls:
  hosts:
    fw: {ansible_host: 198.18.0.4, hopcap_role: firewall, hopcap_capture: [eth0, eth1]}
  vars:
    ansible_user: netops
servers:
  hosts:
    srv: {ansible_host: 198.18.0.5, hopcap_role: server, hopcap_capture: eth0}
""",
        name="inventory.yml",
    )
    assert inv.path == ("fw", "srv")
    assert inv.hosts["fw"].user == "netops"
    assert inv.hosts["srv"].user is None


def test_path_override_wins_over_hopcap_path() -> None:
    inv = load(EXAMPLES / "ansible" / "hosts.ini", path_override=["client", "srv.example.net"])
    assert inv.path == ("client", "srv.example.net")


def test_unrelated_hosts_are_not_validated(load_text: Loader) -> None:
    inv = load_text(
        """\
[legacy]
old-box ansible_port=notaport ansible_host="bad host"
[net]
fw ansible_host=198.18.0.4 hopcap_role=firewall hopcap_capture=eth0
""",
        name="hosts.ini",
    )
    assert list(inv.hosts) == ["fw"]


# (id, file name, text, line, message)
BAD: list[tuple[str, str, str, int, str]] = [
    (
        "hopcap-var-typo",
        "hosts.ini",
        "fw ansible_host=198.18.0.4 hopcap_rol=firewall hopcap_capture=eth0\n",
        1,
        "unknown variable 'hopcap_rol' on host 'fw' — did you mean 'hopcap_role'?",
    ),
    (
        "bad-role",
        "hosts.ini",
        "[x]\nfw ansible_host=198.18.0.4 hopcap_role=fierwall hopcap_capture=eth0\n",
        2,
        "unknown role 'fierwall' — did you mean 'firewall'?",
    ),
    (
        "injection-in-capture",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture='eth0;reboot'\n",
        1,
        "interface name 'eth0;reboot' contains ';'",
    ),
    (
        "bad-port-on-used-host",
        "hosts.ini",
        "[x]\nfw hopcap_role=firewall hopcap_capture=eth0\n[x:vars]\nansible_port=22x\n",
        4,
        "ansible_port (group 'x'): expected a port number (1-65535), got a string ('22x')",
    ),
    (
        "top-var-on-group",
        "hosts.ini",
        "[x]\nfw hopcap_role=firewall hopcap_capture=eth0\n"
        "[x:vars]\nhopcap_target=203.0.113.80:80\n",
        4,
        "'hopcap_target' is a setting of the whole inventory; set it in the vars of 'all'",
    ),
    (
        "unknown-jump",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture=eth0 hopcap_jump=bastoin\nbastion\n",
        1,
        "host 'fw' jumps through unknown host 'bastoin' — did you mean 'bastion'?",
    ),
    (
        "jinja",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture='{{ ifaces }}'\n",
        1,
        "Jinja templates are not evaluated by hopcap",
    ),
    (
        "bad-section",
        "hosts.ini",
        "[x:hosts]\nfw hopcap_role=firewall hopcap_capture=eth0\n",
        1,
        "unknown section type ':hosts'",
    ),
    (
        "not-key-value",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture=eth0 oops\n",
        1,
        "expected key=value after host 'fw', got 'oops'",
    ),
    (
        "path-unknown",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture=eth0\n[all:vars]\nhopcap_path=fw,srv\n",
        3,
        "path names unknown host 'srv'",
    ),
    (
        "bad-window",
        "hosts.ini",
        "fw hopcap_role=firewall hopcap_capture=eth0\n[all:vars]\nhopcap_window=soon\n",
        3,
        "hopcap_window: invalid duration 'soon'",
    ),
    (
        "yaml-group-key-typo",
        "hosts.yml",
        "all:\n  hosts:\n    fw: {hopcap_role: firewall, hopcap_capture: [eth0]}\n  chidlren: {}\n",
        4,
        "unknown key 'chidlren' in group 'all' — did you mean 'children'?",
    ),
    (
        "yaml-capture-auto-needs-target",
        "hosts.yml",
        "all:\n  hosts:\n    fw: {hopcap_role: firewall, hopcap_capture: auto}\n",
        3,
        "host 'fw' has capture: auto and is alone on the path, so it needs 'target'",
    ),
    (
        "yaml-no-role",
        "hosts.yml",
        "all:\n  hosts:\n    fw: {ansible_host: 198.18.0.4}\n",
        1,
        "no host has a role",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "line", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_ansible(
    write: Callable[..., Path], name: str, text: str, line: int, message: str
) -> None:
    problems = problems_of(write(text, name))
    hits = [p for p in problems if message in p.message]
    assert hits, "\n".join(map(str, problems))
    assert hits[0].line == line, str(hits[0])
