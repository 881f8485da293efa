"""`connection`, `kind` and `password_env`: this machine as a host, what a host is, and
passwords by reference only (site.yml and Ansible)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hopcap.model import Inventory
from tests.inventory.inv_helpers import problems_of

Loader = Callable[..., Inventory]
Writer = Callable[..., Path]

BASE = """\
defaults: {user: ops, identity: ~/.ssh/id_ed25519, password_env: SITE_PW}
hosts:
  laptop: {role: client, capture: [wlan0], connection: local, sudo: true}
  fw: {address: 198.19.0.11, role: firewall, capture: [eth0, eth1], kind: linux}
  srv: {address: 198.19.0.13, role: server, capture: [eth0], password_env: SRV_PW}
repro: {on: laptop, run: "curl -s http://203.0.113.80/"}
"""


def test_local_host_password_env_and_kind(load_text: Loader) -> None:
    inv = load_text(BASE)
    lap, fw, srv = inv.hosts["laptop"], inv.hosts["fw"], inv.hosts["srv"]
    assert (lap.connection, lap.is_local, lap.sudo, lap.capture) == (
        "local",
        True,
        True,
        ("wlan0",),
    )
    # SSH settings inherited from defaults do not apply to this machine
    assert (lap.address, lap.user, lap.identity, lap.password_env) == (
        "localhost",
        None,
        None,
        None,
    )
    assert (fw.connection, fw.kind, fw.password_env) == ("ssh", "linux", "SITE_PW")
    assert srv.password_env == "SRV_PW"
    assert inv.path == ("laptop", "fw", "srv")
    public = inv.to_public_dict()["hosts"]
    assert public["laptop"]["connection"] == "local"
    assert public["srv"]["password_env"] == "SRV_PW" and public["fw"]["kind"] == "linux"


def test_defaults_are_ssh_and_linux(load_text: Loader) -> None:
    inv = load_text("hosts:\n  a: {address: 192.0.2.1, role: client, capture: [eth0]}\n")
    a = inv.hosts["a"]
    assert (a.connection, a.kind, a.password_env, a.is_local) == ("ssh", "linux", None, False)


# (id, host line 3, where on the line the problem is, text the message must contain)
CASES = [
    (
        "connection-typo",
        "a: {address: 192.0.2.1, role: client, capture: [eth0], connection: lcoal}",
        "lcoal",
        "connection (host 'a'): unknown connection 'lcoal' — did you mean 'local'? "
        "(valid: ssh, local)",
    ),
    (
        "kind-unknown",
        "a: {address: 192.0.2.1, role: client, capture: [eth0], kind: fortigte}",
        "fortigte",
        "kind (host 'a'): unknown kind 'fortigte' — did you mean 'fortigate'? "
        "(valid: linux, fortigate)",
    ),
    (
        "password-in-file",
        "a: {address: 192.0.2.1, role: client, capture: [eth0], password: hunter2}",
        "password:",
        "'password' in host 'a': hopcap never reads a password from the inventory: export "
        "it in an environment variable and name that variable with password_env: NAME",
    ),
    (
        "password-env-holds-a-password",
        "a: {address: 192.0.2.1, role: client, capture: [eth0], password_env: 'hunter 2!'}",
        "'hunter",
        "password_env (host 'a'): expected the NAME of an environment variable",
    ),
    (
        "local-with-address",
        "a: {address: 192.0.2.1, role: client, capture: [eth0], connection: local}",
        "192.0.2.1",
        "host 'a' is connection: local (this machine, no SSH), so 'address' does not apply",
    ),
]


@pytest.mark.parametrize(
    ("text", "at", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_values_name_file_line_column(write: Writer, text: str, at: str, message: str) -> None:
    p = write("hosts:\n  z: {address: 192.0.2.9, role: server, capture: [eth0]}\n  " + text + "\n")
    probs = problems_of(p)
    assert len(probs) == 1, probs
    assert (probs[0].line, probs[0].column) == (3, 3 + text.index(at)), probs[0]
    assert message in probs[0].message
    assert "hunter" not in str(probs[0])  # a secret written by mistake is never echoed


def test_two_local_hosts_and_jump_through_local(write: Writer) -> None:
    p = write(
        "hosts:\n"
        "  a: {role: client, capture: [eth0], connection: local}\n"
        "  b: {role: server, capture: [eth1], connection: local}\n"
        "  c: {address: 192.0.2.3, role: firewall, capture: [eth0], jump: a}\n"
    )
    probs = problems_of(p)
    msgs = {(x.line, x.column): x.message for x in probs}
    assert "hosts 'a' and 'b' are both connection: local" in msgs[(3, 50)], msgs
    assert "jumps through 'a', which is connection: local" in msgs[(4, 66)], msgs
    assert len(probs) == 2


def test_ansible_connection_local_and_password_env(load_text: Loader) -> None:
    inv = load_text(
        "[all]\n"
        "localhost ansible_connection=local ansible_host=127.0.0.1 hopcap_role=client "
        "hopcap_capture=eth0\n"
        "fw ansible_host=192.0.2.1 ansible_connection=ansible.builtin.ssh hopcap_role=firewall "
        "hopcap_capture=eth0 hopcap_password_env=FW_PW hopcap_kind=linux\n"
        "srv ansible_host=192.0.2.2 ansible_connection=smart hopcap_role=server "
        "hopcap_capture=eth0\n",
        name="hosts.ini",
    )
    lh, fw, srv = inv.hosts["localhost"], inv.hosts["fw"], inv.hosts["srv"]
    # Ansible's usual `localhost ansible_host=127.0.0.1` is fine: the address is ignored
    assert (lh.connection, lh.address) == ("local", "localhost")
    assert (fw.connection, fw.password_env, fw.kind) == ("ssh", "FW_PW", "linux")
    assert srv.connection == "ssh"


def test_ansible_password_is_refused_where_used(write: Writer) -> None:
    p = write(
        "[all]\n"
        "fw ansible_host=192.0.2.1 hopcap_role=firewall hopcap_capture=eth0 "
        "ansible_password=hunter2\n"
        "web ansible_host=192.0.2.5 ansible_ssh_pass=hunter3\n"  # not on the path: ignored
        "[all:vars]\n"
        "x=1\n"
        "srv ansible_host=192.0.2.2 ansible_connection=winrm hopcap_role=server "
        "hopcap_capture=eth0\n",
        "hosts.ini",
    )
    probs = problems_of(p)
    text = "\n".join(str(x) for x in probs)
    assert "hosts.ini:2:" in text
    assert "ansible_password on host 'fw': hopcap never reads a password from the inventory" in text
    assert "hopcap_password_env: NAME" in text
    assert "hunter" not in text and "web" not in text


def test_ansible_unknown_connection(write: Writer) -> None:
    p = write(
        "[all]\nsrv ansible_host=192.0.2.2 ansible_connection=winrm hopcap_role=server "
        "hopcap_capture=eth0\n",
        "hosts.ini",
    )
    (prob,) = problems_of(p)
    assert prob.line == 2
    assert "connection 'winrm' is not one hopcap has (it reaches hosts with: ssh," in prob.message
