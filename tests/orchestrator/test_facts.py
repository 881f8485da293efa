"""Facts come back per section from one remote script; a missing tool is noted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopcap.orchestrator.facts import FACT_COMMANDS, collect_facts, parse_facts
from tests.orchestrator.localtransport import LocalTransport, path_without

pytestmark = pytest.mark.lab  # runs the real commands as root on this machine


def test_every_fact_is_collected_and_a_missing_tool_is_noted(tmp_path: Path) -> None:
    t = LocalTransport("here", path=path_without(tmp_path, "conntrack"))
    outputs, missing = asyncio.run(collect_facts(t, sudo=False, is_root=True))
    assert set(outputs) | set(missing) == set(FACT_COMMANDS)
    assert missing["conntrack"] == "`conntrack` not installed"
    assert "TcpExtListenOverflows" in outputs["nstat"]
    assert "net.ipv4.ip_forward" in outputs["sysctl"]
    assert "lo" in outputs["addr"]


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
