"""Facts come back per section from one remote script; a missing tool is noted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopcap.bundle.facts import parse_nstat
from hopcap.orchestrator.facts import FACT_COMMANDS, collect_facts, parse_facts
from tests.orchestrator.localtransport import LocalTransport, path_without

# the tests that run the real commands as root on this machine
root_commands = pytest.mark.lab


@root_commands
def test_every_fact_is_collected_and_a_missing_tool_is_noted(tmp_path: Path) -> None:
    t = LocalTransport("here", path=path_without(tmp_path, "iptables-save"))
    outputs, missing = asyncio.run(collect_facts(t, sudo=False, is_root=True))
    assert set(outputs) | set(missing) == set(FACT_COMMANDS)
    assert missing["iptables"] == "`iptables-save` not installed"  # no fallback for it
    assert "TcpExtListenOverflows" in outputs["nstat"]
    assert "net.ipv4.ip_forward" in outputs["sysctl"]
    assert "lo" in outputs["addr"]


@root_commands
def test_facts_come_from_proc_where_the_tools_are_missing(tmp_path: Path) -> None:
    """A BusyBox router has no nstat, ss or sysctl: the counters come from /proc/net/snmp
    and /proc/net/netstat in nstat's format, so deltas work the same."""
    t = LocalTransport("here", path=path_without(tmp_path, "nstat", "ss", "sysctl", "conntrack"))
    outputs, missing = asyncio.run(collect_facts(t, sudo=False, is_root=True))
    counters = parse_nstat(outputs["nstat"])
    assert outputs["nstat"].startswith("#kernel (no nstat on this host")
    assert "TcpExtListenOverflows" in counters and "IpInReceives" in counters
    assert counters["IpInReceives"] > 0
    assert "TCP: inuse" in outputs["ss-s"]  # /proc/net/sockstat
    assert "net.ipv4.ip_forward = " in outputs["sysctl"]
    assert "nstat" not in missing and "sysctl" not in missing


def test_parse_facts_sections_and_failures() -> None:
    m = "@@hopcap-x"
    text = (
        f"{m} nstat\n#kernel\nIpInReceives 5 0.0\n{m}rc 0\n"
        f"{m} nft\nnft: Operation not permitted\n{m}rc 1\n"
        f"{m} ss-s\n"  # cut short: no rc line
    )
    outputs, missing = parse_facts(text, m)
    assert outputs["nstat"] == "#kernel\nIpInReceives 5 0.0\n"
    assert missing["nft"] == "exit 1: nft: Operation not permitted"
    assert missing["ss-s"].startswith("no answer")
