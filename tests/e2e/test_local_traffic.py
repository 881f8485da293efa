"""A healthy run while something scanner-like probes the hosts' own addresses: a
namespace on the lb-srv segment (the lab's bridge) sends SYNs and pings to srv's address,
and the client knocks on fw's own address besides its curl. None of it is a drop, an
injection or a rewrite; what was seen at srv only is set apart as srv's own traffic; the
addresses come from the run's `ip addr` facts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hopcap import lab
from hopcap.lab.topology import BRIDGE_HOST, FW_OUTSIDE, SRV_ADDR, VIP, VIP_PORT
from tests.e2e.conftest import PREFIX, hopcap_run, inventory_variant

pytestmark = pytest.mark.lab

SCANNER = f"{PREFIX}-scan"
SCANNER_ADDR = "198.18.2.99"
# SYNs to closed ports of srv's own address and ICMP echoes (a raw socket: the lab has no
# ping binary), every half second, until killed
SCAN = f"""
import socket, struct, time
def echo(seq):
    body = struct.pack("!BBHHH", 8, 0, 0, 7, seq) + b"hopcap"
    c = sum(struct.unpack("!%dH" % (len(body) // 2), body))
    c = (c >> 16) + (c & 0xFFFF)
    c = ~(c + (c >> 16)) & 0xFFFF
    return body[:2] + struct.pack("!H", c) + body[4:]
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
seq = 0
while True:
    for port in (81, 8081, 2222):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("{SRV_ADDR}", port))
        except OSError:
            pass
        s.close()
    seq += 1
    icmp.sendto(echo(seq), ("{SRV_ADDR}", 0))
    time.sleep(0.5)
"""
# the client's curl, then connections to closed ports of fw's own outside address
KNOCK = (
    f"curl -s -o /dev/null -m 5 http://{VIP}/big.bin; "
    "python3 -c 'import socket\n"
    "for p in (81, 82):\n  s = socket.socket(); s.settimeout(1)\n"
    f'  try: s.connect(("{FW_OUTSIDE}", p))\n'
    "  except OSError: pass'"
)


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


@pytest.fixture()
def scanner(clean_lab: lab.LabInfo):  # type: ignore[no-untyped-def]
    """A namespace plugged into the bridge between lb and srv, probing srv's address."""
    br = f"{PREFIX}-{BRIDGE_HOST}"
    subprocess.run(["ip", "netns", "del", SCANNER], capture_output=True)
    _sh("ip", "netns", "add", SCANNER)
    proc = None
    try:
        _sh("ip", "link", "add", "eth0", "netns", SCANNER, "type", "veth", "peer", "name",
            "scan0", "netns", br)  # fmt: skip
        _sh("ip", "-n", br, "link", "set", "scan0", "master", "br0", "up")
        _sh("ip", "-n", SCANNER, "addr", "add", f"{SCANNER_ADDR}/24", "dev", "eth0")
        _sh("ip", "-n", SCANNER, "link", "set", "eth0", "up")
        _sh("ip", "-n", SCANNER, "link", "set", "lo", "up")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", SCANNER, sys.executable, "-c", SCAN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield clean_lab
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", SCANNER], capture_output=True)
        subprocess.run(["ip", "-n", br, "link", "del", "scan0"], capture_output=True)


def test_probes_of_the_hosts_own_addresses_are_not_findings(
    scanner: lab.LabInfo, tmp_path: Path
) -> None:
    inv = inventory_variant(
        scanner.inventory, tmp_path / "inv.yml", top={"repro": {"on": "client", "run": KNOCK}}
    )
    res = hopcap_run(inv, tmp_path / "b")
    assert res.code == 0, res.stderr
    v = res.verdict
    assert res.findings("drop", "inject", "rewrite") == [], res.stdout

    # the addresses are the run's facts, not guesses
    assert v["hosts"]["srv"]["source"] == "stated"
    assert SRV_ADDR in v["hosts"]["srv"]["addresses"]
    assert {FW_OUTSIDE, VIP} <= set(v["hosts"]["fw"]["addresses"])
    assert v["target"] == f"{VIP}:{VIP_PORT}"

    # the target's flow first, on the path
    first = v["flows"][0]
    assert first["server"] == f"{VIP}:{VIP_PORT}" and first["target"] and first["path"]

    # the scanner's SYNs and pings: seen at srv only, srv's own, kept apart
    scans = [f for f in v["flows"] if f["client"].startswith(SCANNER_ADDR)]
    assert {f["proto"] for f in scans} >= {"tcp", "icmp"}, [f["summary"] for f in v["flows"]]
    for f in scans:
        assert (f["path"], f.get("local_to"), f["findings"]) == (False, "srv", []), f
        assert {leg["point"] for leg in f["legs"]} == {"srv:eth0"}
    assert "local to srv: addressed to srv itself (198.18.2.2); refused with RST" in {
        f["summary"] for f in scans
    }
    # the client's knocks on fw's own address: refused by fw, not lost inside it
    knocks = [f for f in v["flows"] if f["server"] in (f"{FW_OUTSIDE}:81", f"{FW_OUTSIDE}:82")]
    assert len(knocks) == 2
    for f in knocks:
        assert [(x["kind"], x["between"]) for x in f["findings"]] == [
            ("reset", ["fw", "fw:eth0"])
        ], f
    assert "local to srv" in res.stdout and "also seen" in res.stdout
