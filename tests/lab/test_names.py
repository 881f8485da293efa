"""Names and addresses of a lab (no root needed)."""

from __future__ import annotations

import pytest
import yaml

from hopcap.errors import LabError
from hopcap.lab import state, topology
from hopcap.lab.topology import Layout


def test_every_root_link_fits_ifnamsiz() -> None:
    layout = Layout("abcdefgh", "198.19.7.0/24")  # the longest prefix allowed
    names = [layout.bridge, *(layout.mgmt_link(h) for h in topology.HOSTS)]
    assert all(n.startswith("abcdefgh-") and len(n) <= 15 for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("bad", ["", "HC", "1hc", "hc-x", "abcdefghi", "hc x"])
def test_bad_prefix_is_refused(bad: str) -> None:
    with pytest.raises(LabError, match="prefix"):
        topology.check_prefix(bad)


def test_management_networks() -> None:
    assert topology.default_mgmt_net("hc") == "198.19.0.0/24"
    nets = {topology.default_mgmt_net(p) for p in ("hca", "hcb", "hcc", "lab1")}
    assert len(nets) == 4 and "198.19.0.0/24" not in nets
    for net in nets:
        assert topology.check_mgmt_net(net) == net
    for bad in ("10.0.0.0/24", "198.19.0.0/16", "198.19.0.5/24", "nonsense"):
        with pytest.raises(LabError):
            topology.check_mgmt_net(bad)
    layout = Layout("hc", "198.19.0.0/24")
    assert layout.mgmt == {
        "client": "198.19.0.10", "fw": "198.19.0.11", "lb": "198.19.0.12", "srv": "198.19.0.13",
    }  # fmt: skip
    assert layout.controller_addr == "198.19.0.1"


def test_inventory_text_is_the_contract(tmp_path: object) -> None:
    from pathlib import Path

    text = state.inventory_text(Layout("hc", "198.19.0.0/24"), Path("/var/tmp/hopcap-lab-hc"))
    data = yaml.safe_load(text)
    assert data == {
        "defaults": {
            "user": "root",
            "port": 22,
            "identity": "/var/tmp/hopcap-lab-hc/id_ed25519",
            "known_hosts": "/var/tmp/hopcap-lab-hc/known_hosts",
        },
        "hosts": {
            "client": {"address": "198.19.0.10", "role": "client", "capture": ["eth0"]},
            "fw": {"address": "198.19.0.11", "role": "firewall", "capture": ["eth0", "eth1"]},
            "lb": {"address": "198.19.0.12", "role": "lb", "capture": ["eth0", "eth1"]},
            "srv": {"address": "198.19.0.13", "role": "server", "capture": ["eth0"]},
        },
        "path": ["client", "fw", "lb", "srv"],
        "target": "203.0.113.80:80",
        "window": "20s",
        "repro": {"on": "client", "run": "curl -s -o /dev/null -m 5 http://203.0.113.80/big.bin"},
    }
