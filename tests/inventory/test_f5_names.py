"""F5 BIG-IP capture names: `0.0`, `0.0:nnn`, `external:nnnp` are interfaces everywhere a
point is named (inventory, `hopcap correlate` arguments, the orchestrator's checks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from hopcap.correlate.args import read_points_from_args
from hopcap.errors import CorrelationError
from hopcap.inventory import VALID_INTERFACE, interface_problem
from hopcap.model import Inventory, pcap_filename
from hopcap.orchestrator.capture import interface_present, safe_name
from tests.inventory.inv_helpers import problems_of

F5_OK = ["0.0", "0.0:n", "0.0:nn", "0.0:nnn", "0.0:nnnp", "external:nnn", "internal:np", "1.1:nn"]
F5_BAD = ["0.0:nnnn", "0.0:x", "0.0:", ":nnn", "0.0:nnn:nnn", "0.0:pn", "fw:eth0"]


def test_names_accepted_and_refused() -> None:
    for ok in F5_OK:
        assert VALID_INTERFACE.match(ok), ok
        assert interface_problem(ok) is None and safe_name(ok) == ok.replace(":", "_")
    for bad in F5_BAD:
        assert not VALID_INTERFACE.match(bad), bad
        assert interface_problem(bad) is not None, bad


def test_inventory_with_a_bigip(
    load_text: Callable[..., Inventory], write: Callable[..., Path]
) -> None:
    inv = load_text(
        "hosts:\n"
        "  client: {address: 198.19.0.10, role: client, capture: [eth0]}\n"
        '  lb: {address: 198.19.0.12, role: lb, capture: ["0.0:nnnp"]}\n'
        "  lb2: {address: 198.19.0.14, role: lb, capture: [external:nnn, internal:nnn]}\n"
    )
    assert inv.hosts["lb"].capture == ("0.0:nnnp",)
    assert inv.hosts["lb2"].capture == ("external:nnn", "internal:nnn")
    assert pcap_filename("lb:0.0:nnnp") == "lb_0.0_nnnp.pcap"
    (p,) = problems_of(
        write('hosts:\n  lb: {address: 198.19.0.12, role: lb, capture: ["0.0:nnnn"]}\n')
    )
    assert "':nnnp'" in p.message and "0.0:nnnn" in p.message


def test_correlate_arguments(tmp_path: Path) -> None:
    f = tmp_path / "a.pcap"
    f.write_bytes(b"")
    (pt,) = read_points_from_args([f"lb:0.0:nnnp={f}"])
    assert (pt.name, pt.host, pt.interface) == ("lb:0.0:nnnp", "lb", "0.0:nnnp")
    with pytest.raises(CorrelationError):
        read_points_from_args([f"lb:0.0:xyz={f}"])


def test_interface_present_on_a_bigip() -> None:
    """BIG-IP's kernel lists VLANs, not `0.0`: the noise suffix and `0.0` never make a
    point look missing; an unknown VLAN still does."""
    have = {"eth0", "external", "internal", "tmm"}
    assert interface_present("0.0:nnnp", have) and interface_present("0.0", have)
    assert interface_present("external:nnn", have) and interface_present("eth0", have)
    assert not interface_present("dmz:nnn", have) and not interface_present("eth1", have)
