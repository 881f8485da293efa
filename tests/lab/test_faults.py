"""Every fault has its observable effect, and `fault_clear` restores the lab."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from hopcap import lab
from hopcap.errors import LabError

from .conftest import PREFIX, curl, nft_counter, nstat

pytestmark = pytest.mark.lab


def _restored() -> None:
    assert lab.status(PREFIX).fault is None
    assert curl("/big.bin") == (0, "200")
    for host in ("client", "fw", "lb", "srv", "br"):
        tables = lab.ns_run(PREFIX, host, ["nft", "list", "tables"]).stdout
        assert "hopcap_fault" not in tables


def test_catalogue_lists_every_fault() -> None:
    names = [n for n, _ in lab.fault_list()]
    assert names == [
        "fw-drop-syn", "srv-drop-input", "fw-drop-large-response", "fw-rst-get",
        "fw-clamp-mss", "fw-pat-pool", "lb-srv-loss", "srv-accept-queue", "srv-port-closed",
        "fw-ha-peer", "srv-second-iface",
    ]  # fmt: skip
    assert all(desc for _, desc in lab.fault_list())


def test_unknown_fault_is_a_clear_error(clean: lab.LabInfo) -> None:
    with pytest.raises(LabError, match="unknown fault 'nope'"):
        lab.fault_apply("nope", PREFIX)


def test_fault_on_absent_lab_is_a_clear_error() -> None:
    with pytest.raises(LabError, match="not up") as err:
        lab.fault_apply("fw-drop-syn", "hcnone")
    # a hint that can be run as it is (was "`hopcap lab up` (prefix hcnone)")
    assert err.value.hint == "`hopcap lab up --prefix hcnone`"


def test_the_cli_says_how_to_clear_the_fault_of_this_lab(clean: lab.LabInfo) -> None:
    """`hopcap lab fault NAME --prefix X` said "`hopcap lab fault clear` undoes it": run as
    said, that clears the default lab "hc", not X."""
    from typer.testing import CliRunner

    from hopcap import cli

    res = CliRunner().invoke(cli.app, ["lab", "fault", "fw-clamp-mss", "--prefix", PREFIX])
    assert res.exit_code == 0, res.output
    said = f"fault fw-clamp-mss applied; `hopcap lab fault clear --prefix {PREFIX}` undoes it"
    assert res.output.splitlines()[0] == said
    res = CliRunner().invoke(cli.app, ["lab", "fault", "clear", "--prefix", PREFIX])
    assert res.exit_code == 0 and res.output == "fault cleared\n"
    _restored()


def test_fw_drop_syn(clean: lab.LabInfo) -> None:
    lab.fault_apply("fw-drop-syn", PREFIX)
    assert lab.status(PREFIX).fault == "fw-drop-syn"
    assert curl(timeout=1.5) == (28, "000")  # connect timed out
    assert nft_counter("fw") >= 2  # the SYN and its retransmission
    lab.fault_clear(PREFIX)
    _restored()


def test_srv_drop_input(clean: lab.LabInfo) -> None:
    lab.fault_apply("srv-drop-input", PREFIX)
    assert curl(timeout=1.5) == (28, "000")  # haproxy keeps retrying the backend
    assert nft_counter("srv") >= 1
    lab.fault_clear(PREFIX)
    _restored()


def test_fw_drop_large_response(clean: lab.LabInfo) -> None:
    lab.fault_apply("fw-drop-large-response", PREFIX)
    assert curl("/") == (0, "200")  # small responses pass
    code, _ = curl("/big.bin", timeout=1.5)
    assert code == 28
    assert nft_counter("fw") >= 1
    lab.fault_clear(PREFIX)
    _restored()


def test_fw_rst_get(clean: lab.LabInfo) -> None:
    lab.fault_apply("fw-rst-get", PREFIX)
    t = time.monotonic()
    assert curl() == (56, "000")  # connection reset by peer
    assert time.monotonic() - t < 1
    assert nft_counter("fw") == 1
    lab.fault_clear(PREFIX)
    _restored()


def _syn_mss(host: str, iface: str) -> list[str]:
    """Start tcpdump on host:iface, fetch once, return the MSS values of SYNs seen."""
    ns = f"{PREFIX}-{host}"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "tcpdump", "-l", "-nn", "-v", "-c", "2", "-i", iface,
         "tcp[tcpflags] & tcp-syn != 0 and tcp port 80"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    proc.stderr.readline()  # "tcpdump: listening on ..." once it is ready
    try:
        assert curl() == (0, "200")
        out, _ = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    return re.findall(r"mss (\d+)", out)


def test_fw_clamp_mss(clean: lab.LabInfo) -> None:
    assert _syn_mss("fw", "eth1")[0] == "1460"
    lab.fault_apply("fw-clamp-mss", PREFIX)
    assert _syn_mss("fw", "eth0")[0] == "1460"  # the client sends 1460 ...
    assert _syn_mss("fw", "eth1")[0] == "536"  # ... and fw forwards 536
    assert nft_counter("fw") >= 1
    lab.fault_clear(PREFIX)
    _restored()


def test_fw_pat_pool(clean: lab.LabInfo) -> None:
    lab.fault_apply("fw-pat-pool", PREFIX)
    assert curl("/") == (0, "200")
    lo, hi = lab.faults.PAT_POOL
    seen = lab.ns_run(PREFIX, "fw", ["conntrack", "-L", "-p", "tcp", "--orig-port-dst", "80"])
    # the reply tuple's destination port: the client's port after masquerade
    ports = [
        int(p)
        for p in re.findall(
            r"src=198\.18\.1\.2 dst=198\.18\.1\.1 sport=80 dport=(\d+)", seen.stdout
        )
    ]
    assert any(lo <= p <= hi for p in ports), seen.stdout  # (and earlier curls' ports)
    assert nft_counter("fw") >= 1
    lab.fault_clear(PREFIX)
    _restored()


def test_lb_srv_loss(clean: lab.LabInfo) -> None:
    lab.fault_apply("lb-srv-loss", PREFIX)
    retrans = nstat("srv", "TcpRetransSegs").get("TcpRetransSegs", 0)
    fetched = 0
    while nft_counter("br", "bridge") == 0 and fetched < 40:
        assert curl("/big.bin", timeout=10) == (0, "200")  # loss slows it, never breaks it
        fetched += 1
    assert nft_counter("br", "bridge") > 0
    for _ in range(3):
        assert curl("/big.bin", timeout=10) == (0, "200")
    after = nstat("srv", "TcpRetransSegs").get("TcpRetransSegs", 0)
    lb_retrans = nstat("lb", "TcpRetransSegs").get("TcpRetransSegs", 0)
    assert after > retrans or lb_retrans > 0  # whoever lost a segment sent it again
    lab.fault_clear(PREFIX)
    _restored()


def test_srv_accept_queue(clean: lab.LabInfo) -> None:
    lab.fault_apply("srv-accept-queue", PREFIX)
    repro = lab.fault_repro("srv-accept-queue")
    assert repro is not None and repro.on == "lb"
    before = nstat("srv", "TcpExtListenOverflows").get("TcpExtListenOverflows", 0)
    lab.ns_run(PREFIX, repro.on, ["sh", "-c", repro.run], timeout=20)
    after = nstat("srv", "TcpExtListenOverflows").get("TcpExtListenOverflows", 0)
    assert after > before
    lab.fault_clear(PREFIX)
    ss = lab.ns_run(PREFIX, "srv", ["ss", "-Hltn", "src 198.18.2.2:8081"]).stdout
    assert ss.strip() == ""  # the stalled listener is gone
    _restored()


def test_srv_port_closed(clean: lab.LabInfo) -> None:
    lab.fault_apply("srv-port-closed", PREFIX)
    rsts = nstat("srv", "TcpOutRsts").get("TcpOutRsts", 0)
    assert curl(timeout=8) == (0, "503")  # haproxy: no server available
    assert nstat("srv", "TcpOutRsts").get("TcpOutRsts", 0) > rsts  # srv refused with RST
    lab.fault_clear(PREFIX)
    _restored()


def test_srv_second_iface(clean: lab.LabInfo) -> None:
    lab.fault_apply("srv-second-iface", PREFIX)
    links = lab.ns_run(PREFIX, "srv", ["ip", "-o", "-4", "addr", "show"]).stdout
    assert "eth1" in links and "198.51.100.2/24" in links
    route = lab.ns_run(PREFIX, "srv", ["ip", "route", "get", "198.18.2.1"]).stdout
    assert "dev eth0" in route  # the data path still uses eth0
    assert curl() == (0, "200")
    lab.fault_clear(PREFIX)
    links = lab.ns_run(PREFIX, "srv", ["ip", "-o", "link", "show"]).stdout
    assert "eth1" not in links
    assert f"{PREFIX}-aux" not in lab.status(PREFIX).namespaces
    _restored()


def test_apply_replaces_previous_fault(clean: lab.LabInfo) -> None:
    lab.fault_apply("srv-port-closed", PREFIX)
    lab.fault_apply("fw-rst-get", PREFIX)
    assert lab.status(PREFIX).fault == "fw-rst-get"
    # the previous fault is undone: srv serves again (behind the new fault, srv answers)
    ss = lab.ns_run(PREFIX, "srv", ["ss", "-Hltn", "src 198.18.2.2:80"]).stdout
    assert "198.18.2.2:80" in ss
    assert curl() == (56, "000")
    lab.fault_clear(PREFIX)
    _restored()
