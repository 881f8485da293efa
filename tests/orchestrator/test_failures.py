"""Failure paths of `run_capture` with real tcpdump on `lo`, driven through a local
transport (see localtransport.py): each host's failure is data, the others continue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hopcap.errors import CaptureError, ConnectError
from hopcap.inventory import loads
from hopcap.model import Inventory, RunRecord
from hopcap.orchestrator.run import RunOptions, run_capture
from hopcap.orchestrator.session import HASH_TOOLS
from tests.orchestrator.localtransport import LocalTransport, connector, path_without

pytestmark = pytest.mark.lab  # needs root and tcpdump

SITE = """
hosts:
  a: {{address: 192.0.2.1, role: client, capture: [lo]}}
  b: {{address: 192.0.2.2, role: server, capture: [lo]}}
path: [a, b]
window: 3s
filter: "{filter}"
repro: {{"on": a, run: "true"}}
"""


def inventory(filter: str = "tcp or icmp") -> Inventory:
    return loads(SITE.format(filter=filter), "site.yml")


RUN_ID = "test-failures"


def run(inv: Inventory, out: Path, transports: dict[str, LocalTransport | Exception]) -> RunRecord:
    opts = RunOptions(
        out=out,
        run_id=RUN_ID,
        connector=connector(transports),  # type: ignore[arg-type]
        collect_facts=False,
    )
    return asyncio.run(run_capture(inv, opts))


def no_leftovers() -> bool:
    return not list(Path("/tmp").glob(f"hopcap.*.{RUN_ID}.*"))


def test_host_without_tcpdump_is_reported_and_the_other_captures(tmp_path: Path) -> None:
    rec = run(
        inventory(),
        tmp_path / "b",
        {
            "a": LocalTransport("a"),
            "b": LocalTransport("b", path=path_without(tmp_path, "tcpdump")),
        },
    )
    assert rec.complete is False
    a, b = rec.captures
    assert a.error is None and a.pcap is not None and a.pcap.exists()
    assert b.pcap is None and b.error == "b: tcpdump is not installed (install the tcpdump package)"
    assert no_leftovers()


def test_unreachable_host_is_reported_and_the_other_captures(tmp_path: Path) -> None:
    refused = ConnectError("b", "connection refused (is sshd running on that port?)")
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": refused})
    assert rec.complete is False
    a, b = rec.captures
    assert a.error is None and a.pcap is not None
    assert b.error is not None and "connection refused" in b.error
    assert any("connection refused" in e for e in rec.errors)


def test_tcpdump_exiting_before_listening_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as exc:
        run(
            inventory("tcp and ("),
            tmp_path / "b",
            {"a": LocalTransport("a"), "b": LocalTransport("b")},
        )
    assert "tcpdump exited before listening" in str(exc.value)
    assert "syntax error" in str(exc.value)
    assert no_leftovers()


def test_broken_transfer_is_retried(tmp_path: Path) -> None:
    def break_first(n: int, local: Path) -> None:
        if n == 1:
            local.write_bytes(local.read_bytes()[:10])  # arrives cut short

    b = LocalTransport("b", get_hook=break_first)
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": b})
    assert rec.complete is True, rec.errors
    assert b.gets == 2
    cap = rec.captures[1]
    assert cap.pcap is not None and cap.pcap.stat().st_size >= 24


def test_transfer_that_never_verifies_fails_that_point_only(tmp_path: Path) -> None:
    def always_damage(_n: int, local: Path) -> None:
        local.write_bytes(local.read_bytes() + b"junk")

    b = LocalTransport("b", get_hook=always_damage)
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": b})
    assert rec.complete is False
    assert b.gets == 3
    err = rec.captures[1].error
    assert err is not None and "sha256 of the pulled file differs" in err
    assert rec.captures[0].error is None


NO_HASH_TOOL = HASH_TOOLS


def test_host_without_a_hash_tool_verifies_by_a_second_read_and_says_so(tmp_path: Path) -> None:
    b = LocalTransport("b", path=path_without(tmp_path, *NO_HASH_TOOL))
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": b})
    assert rec.complete is True, rec.errors
    assert rec.captures[1].pcap is not None and rec.captures[1].sha256
    notes = {f.host: dict(f.missing) for f in rec.facts}
    assert list(notes) == ["b"]
    assert "reading the file a second time" in notes["b"]["sha256"]
    assert not list((tmp_path / "b" / "pcaps").glob("*.reread"))


def test_without_a_hash_tool_a_damaged_pull_is_caught_by_the_second_read(tmp_path: Path) -> None:
    """The damage keeps the size: only the second read (hashed here) can tell."""

    def flip_a_byte(_n: int, local: Path) -> None:
        data = bytearray(local.read_bytes())
        data[-1] ^= 0xFF
        local.write_bytes(bytes(data))

    b = LocalTransport("b", path=path_without(tmp_path, *NO_HASH_TOOL), get_hook=flip_a_byte)
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": b})
    assert rec.complete is False
    assert b.gets == 3
    err = rec.captures[1].error
    assert err is not None and "a second read of the remote file differs" in err, err


def test_a_host_with_only_md5sum_is_verified_with_it(tmp_path: Path) -> None:
    def damage_first(n: int, local: Path) -> None:
        if n == 1:
            data = bytearray(local.read_bytes())
            data[-1] ^= 0xFF
            local.write_bytes(bytes(data))

    b = LocalTransport("b", path=path_without(tmp_path, *NO_HASH_TOOL[:3]), get_hook=damage_first)
    rec = run(inventory(), tmp_path / "b", {"a": LocalTransport("a"), "b": b})
    assert rec.complete is True, rec.errors
    assert b.gets == 2  # md5 of the damaged copy differed from the host's
    assert rec.facts == ()  # verified by the host's own tool: nothing to note
