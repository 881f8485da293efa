"""The fault catalogue, end to end: every lab fault reproduced on real sshd, tcpdump,
nftables and haproxy, and hopcap's finding pinned exactly (kind, direction, `between`).

One `hopcap run` per fault (two or three where the fault is random or the claim is
"never"), each about 10 s. `clean_lab` clears the fault before and after every test.
The catalogue and how to rehearse each fault by hand: docs/faults.md.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hopcap import lab
from hopcap.lab.topology import BRIDGE_HOST, Layout
from tests import labnames
from tests.e2e.conftest import RunResult, hopcap_run, inventory_variant
from tests.progress import answer_progress, relayed_in_order

pytestmark = pytest.mark.lab

# A lab of this module's own (not conftest's shared "hce" one): other e2e modules may run
# in another pytest process at the same time, and a shared prefix would let one session's
# teardown pull the lab from under the other's runs. `lab up` takes about a second.
PREFIX = labnames.prefix("hcf")
MGMT = labnames.mgmt("hcf")

HTTP_SERVER = "203.0.113.80:80"  # the service as the client sees it (fw's VIP)
VIP_CURL = "curl -s -o /dev/null -m 4 http://203.0.113.80/"
BAD_KINDS = ("drop", "inject", "rewrite")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def faults_lab() -> Iterator[lab.LabInfo]:
    lab.check_prerequisites()
    try:
        yield lab.up(PREFIX, mgmt_net=MGMT)
    finally:
        lab.down(PREFIX)


@pytest.fixture()
def clean_lab(faults_lab: lab.LabInfo) -> Iterator[lab.LabInfo]:
    """This module's lab with no fault and no leftover connection (`fault_clear` aborts
    them), also after the test (shadows conftest's fixture of the same name)."""
    lab.fault_clear(PREFIX)
    try:
        yield faults_lab
    finally:
        lab.fault_clear(PREFIX)


# --------------------------------------------------------------------------- helpers


def _brief(res: RunResult) -> str:
    """What hopcap found, trimmed, for assertion messages: flows with their findings."""
    try:
        flows = res.verdict["flows"]
    except (OSError, ValueError) as exc:
        return f"no verdict ({exc}); exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    out = []
    for f in flows:
        out.append(
            {
                "id": f["id"],
                "client": f["client"],
                "server": f["server"],
                "legs": [(leg["point"], leg["link"]) for leg in f["legs"]],
                "findings": [
                    {k: v for k, v in x.items() if k not in ("first_ts",)} for x in f["findings"]
                ],
                "summary": f.get("summary"),
            }
        )
    return json.dumps(out, indent=1)


def _between(findings: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    return [(f["direction"], f["between"]) for f in findings]


def _run_fault(
    clean_lab: lab.LabInfo,
    tmp_path: Path,
    fault: str,
    top: dict[str, Any] | None = None,
    **hosts: dict[str, Any],
) -> RunResult:
    """Apply `fault`, run hopcap once over the lab (with the inventory changed by `top` /
    `hosts` when given) and check the run itself succeeded."""
    lab.fault_apply(fault, clean_lab.prefix)
    inv = clean_lab.inventory
    if top or hosts:
        inv = inventory_variant(inv, tmp_path / "site.yml", top=top, **hosts)
    res = hopcap_run(inv, tmp_path / "bundle")
    assert res.code == 0, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert res.manifest["complete"] is True, res.manifest
    return res


def _repro_exit(res: RunResult) -> int | None:
    repro = res.manifest.get("repro") or {}
    status = repro.get("exit_status")
    return status if isinstance(status, int) else None


def _repro_top(repro_on: str, run: str) -> dict[str, Any]:
    return {"repro": {"on": repro_on, "run": run}, "window": "15s"}


def _fault_counter(host: str, family: str, prefix: str = PREFIX) -> int:
    """Packets the fault's nftables rule(s) hit so far, in `host`'s namespace of lab
    `prefix`."""
    ns = Layout(prefix, MGMT).ns(host)
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "table", family, lab.faults.FAULT_TABLE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))


def _nstat_delta(res: RunResult, host: str) -> dict[str, int]:
    """Counter deltas of `host` over the window, from facts/summary.json of the bundle."""
    summary = json.loads((res.out / "facts" / "summary.json").read_text())
    return {c["name"]: int(c["delta"]) for c in summary.get(host, {}).get("nstat", [])}


# --------------------------------------------------------------------------- the catalogue
# The fw cases' assertions are functions of their own (`assert_fw_*`), so that the same
# faults can be checked against another kind of fw (tests/e2e/test_busybox.py).


def test_fw_drop_syn(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """1. fw's forward chain drops the client's SYNs (after DNAT)."""
    assert_fw_drop_syn(_run_fault(clean_lab, tmp_path, "fw-drop-syn"), PREFIX)


def assert_fw_drop_syn(res: RunResult, prefix: str) -> None:
    brief = _brief(res)
    drops = res.findings("drop")
    assert ("c2s", ["fw:eth0", "fw:eth1"]) in _between(drops), brief
    assert all(b == ("c2s", ["fw:eth0", "fw:eth1"]) for b in _between(drops)), brief
    assert all(d["packets"] >= 1 for d in drops), brief
    assert res.findings("inject", "rewrite") == [], brief


def test_srv_drop_input(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """2. srv's own firewall (input chain) drops tcp/80: the lb's SYNs reach srv:eth0 and
    die in srv's stack."""
    res = _run_fault(clean_lab, tmp_path, "srv-drop-input")
    brief = _brief(res)
    drops = res.findings("drop")
    assert ("c2s", ["srv:eth0", "srv"]) in _between(drops), brief
    assert all(b == ("c2s", ["srv:eth0", "srv"]) for b in _between(drops)), brief
    assert res.findings("inject", "rewrite") == [], brief
    assert _fault_counter("srv", "inet") >= 1


def test_fw_drop_large_response(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """3. fw drops the server's large packets on their way to the client."""
    res = _run_fault(clean_lab, tmp_path, "fw-drop-large-response")
    assert_fw_drop_large_response(res, PREFIX)


def assert_fw_drop_large_response(res: RunResult, prefix: str) -> None:
    brief = _brief(res)
    drops = res.findings("drop")
    assert ("s2c", ["fw:eth1", "fw:eth0"]) in _between(drops), brief
    assert all(b == ("s2c", ["fw:eth1", "fw:eth0"]) for b in _between(drops)), brief
    assert all(d["bytes"] > 0 for d in drops), brief
    assert res.findings("inject", "rewrite") == [], brief


def test_fw_rst_get(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """4. fw answers the GET with a forged RST (`reject with tcp reset`): the RST is
    injected toward the client at fw, the GET itself never leaves fw."""
    assert_fw_rst_get(_run_fault(clean_lab, tmp_path, "fw-rst-get"), PREFIX)


def assert_fw_rst_get(res: RunResult, prefix: str) -> None:
    brief = _brief(res)
    injects = res.findings("inject")
    assert ("s2c", ["fw:eth1", "fw:eth0"]) in _between(injects), brief
    assert all(b == ("s2c", ["fw:eth1", "fw:eth0"]) for b in _between(injects)), brief
    assert all("RST" in str(i.get("what", "")) for i in injects), brief  # what was injected
    drops = res.findings("drop")
    assert ("c2s", ["fw:eth0", "fw:eth1"]) in _between(drops), brief
    assert all(b == ("c2s", ["fw:eth0", "fw:eth1"]) for b in _between(drops)), brief
    assert any(d["bytes"] > 0 for d in drops), brief  # the GET itself
    assert res.findings("rewrite") == [], brief
    # the flow's one line says what the client got: the RST fw sent in the server's name
    blocked = [f for f in res.verdict["flows"] if f["findings"]]
    assert all("answered with a RST injected there" in f["summary"] for f in blocked), brief
    assert _fault_counter("fw", "inet", prefix) >= 1


def test_fw_clamp_mss(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """5. fw rewrites the MSS option of the client's SYNs to 536."""
    assert_fw_clamp_mss(_run_fault(clean_lab, tmp_path, "fw-clamp-mss"), PREFIX)


def assert_fw_clamp_mss(res: RunResult, prefix: str) -> None:
    brief = _brief(res)
    rewrites = res.findings("rewrite")
    mss = [r for r in rewrites if r.get("field") == "tcp.mss"]
    assert mss, brief
    for r in mss:
        assert r["direction"] == "c2s", brief
        assert r["between"] == ["fw:eth0", "fw:eth1"], brief
        assert str(r["before"]) == "1460" and str(r["after"]) == "536", brief
    assert [r for r in rewrites if r.get("field") != "tcp.mss"] == [], brief
    assert res.findings("drop", "inject") == [], brief
    assert _repro_exit(res) == 0  # a smaller MSS still carries the transfer
    # one pattern, labelled device policy; the terminal sets it apart and lists no flow
    pats = res.verdict["patterns"]
    assert [(p["field"], p["before"], p["after"], p["policy"]) for p in pats] == [
        ("tcp.mss", 1460, 536, True)
    ], pats
    assert pats[0]["flows"] == len(mss) and pats[0]["label"] == "MSS clamping"
    assert "device policy (expected, not faults) (1):" in res.stdout
    assert "MSS clamping: tcp.mss rewritten 1460 -> 536 on" in res.stdout
    assert "no flow had drops, injections, resets or gaps" in res.stdout


def test_lb_srv_loss(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """6. random loss on the wire between lb and srv (a bridge with nftables numgen drop):
    drops between lb's back point and srv's point, with packet counts; the transfer still
    completes. The loss is random, so a run in which the bridge dropped nothing is
    repeated (at most eight runs: with GSO the 300 kB download crosses the bridge in ~31
    packets, none dropped in one run of five; three runs all without a drop failed CI once)."""
    segment = {("c2s", ("lb:eth1", "srv:eth0")), ("s2c", ("srv:eth0", "lb:eth1"))}
    for attempt in range(8):
        res = _run_fault(clean_lab, tmp_path / str(attempt), "lb-srv-loss")
        dropped = _fault_counter(BRIDGE_HOST, "bridge")
        if dropped:
            break
    assert dropped >= 1, "the bridge dropped nothing in eight runs"
    brief = _brief(res) + f"\nbridge dropped {dropped} packets"
    assert _repro_exit(res) == 0, res.manifest.get("repro")
    drops = res.findings("drop")
    assert drops, brief
    assert all((d["direction"], tuple(d["between"])) in segment for d in drops), brief
    assert all(d["packets"] >= 1 for d in drops), brief
    assert res.findings("inject", "rewrite") == [], brief


CONCURRENT = 40


def test_the_same_request_at_once_through_the_proxy(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """The same download 40 times at once from one client (one NAT address: the same
    request, X-Forwarded-For included, on every backend connection), with the random loss
    between lb and srv delaying some backend connections (a lost SYN is sent again a
    second later). haproxy opens one backend connection per request: each flow has its
    own, whose response it relayed (the same Date header; hopcap once gave one flow three
    backends whose responses were a second apart and said of others "answered before
    lb:eth1 (lb itself)", in every such run). The drops hopcap counts are the bridge's,
    but for packets sent again after the capture stopped (the bridge counts those too)."""
    run = (
        f"for i in $(seq {CONCURRENT}); do curl -s -o /dev/null -m 10 "
        f"http://{HTTP_SERVER.split(':')[0]}/big.bin & done; wait"
    )
    for attempt in range(4):
        # (the fault's table is new for each attempt: its counter starts at 0)
        (tmp_path / str(attempt)).mkdir()
        res = _run_fault(clean_lab, tmp_path / str(attempt), "lb-srv-loss",
                         top=_repro_top("client", run))  # fmt: skip
        dropped = _fault_counter(BRIDGE_HOST, "bridge")
        lost = {p["name"]: p["kernel_drops"] for p in res.verdict["points"] if p["kernel_drops"]}
        if not lost:
            break
        # a capture that lost packets under the load (tcpdump's kernel drops) makes gaps
        # where this test wants links: again, on a machine less busy a moment later
        lab.fault_clear(clean_lab.prefix)
    brief = _brief(res) + f"\nbridge dropped {dropped} packets; captures lost {lost}"
    assert not lost, brief
    assert _repro_exit(res) == 0, res.manifest.get("repro")
    front = [f for f in res.verdict["flows"] if f["server"] == HTTP_SERVER]
    assert len(front) == len(res.verdict["flows"]) == CONCURRENT, brief
    backs = [[leg for leg in f["legs"] if leg["point"] == "lb:eth1"] for f in front]
    assert all(len(b) == 1 for b in backs), brief
    assert len({b[0]["tuple"] for b in backs}) == CONCURRENT, brief
    changed = [d for b in backs for d in b[0].get("details", ()) if "date:" in d]
    assert changed == [], brief
    assert not any("before lb:eth1" in f["summary"] for f in front), brief
    # nor a backend whose bytes came after the flow's client had them: haproxy relays
    # each byte of the answer after it came (test_lb_reuse_netns: where first bytes alone
    # paired flows so)
    files = {p["name"]: res.out / p["file"] for p in res.manifest["points"]}
    came = answer_progress(files["lb:eth1"])
    went = answer_progress(files["lb:eth0"])
    late = []
    for f, b in zip(front, backs, strict=True):
        mine = next(leg["tuple"] for leg in f["legs"] if leg["point"] == "lb:eth0")
        x, y = went.get(mine, []), came.get(b[0]["tuple"], [])
        if not relayed_in_order(x, y):
            late.append((f["id"], mine, b[0]["tuple"]))
    assert late == [], brief + f"\nrelayed before they came: {late}"
    segment = {("c2s", ("lb:eth1", "srv:eth0")), ("s2c", ("srv:eth0", "lb:eth1"))}
    drops = res.findings("drop")
    on = [d for d in drops if (d["direction"], tuple(d["between"])) in segment]
    # besides: a response segment the client's host took for dropped when lb sent it
    # again (a tail-loss probe) before the client's delayed ACK and no D-SACK followed
    # (one run in four or five; the client's nstat had no receive drop: not told apart)
    assert all(tuple(d["between"]) == ("client:eth0", "client") for d in drops if d not in on)
    seen = sum(d["packets"] for d in on)
    assert dropped - 3 <= seen <= dropped and seen >= 1, brief
    assert res.findings("inject", "rewrite") == [], brief


def test_fw_pat_pool(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """11. fw masquerades into 64 ports and the client opens 150 short connections: SYNs
    reach lb on ports it still holds in TIME_WAIT, lb answers with a challenge ACK, the
    client resets and sends the SYN again, which fw maps to another port. Nothing is lost:
    no drop, inject or rewrite (hopcap once blamed fw for hundreds of packets here); each
    attempt is a flow of its own on its own port of the pool."""
    repro = lab.fault_repro("fw-pat-pool")
    assert repro is not None and repro.on == "client"
    res = _run_fault(clean_lab, tmp_path, "fw-pat-pool", top=_repro_top(repro.on, repro.run))
    assert _repro_exit(res) == 0, res.manifest.get("repro")
    brief = _brief(res)
    assert res.findings(*BAD_KINDS) == [], brief
    front = [f for f in res.verdict["flows"] if f["server"] == HTTP_SERVER]
    lo, hi = lab.faults.PAT_POOL
    ports = [
        int(leg["tuple"].split(" > ")[0].rsplit(":", 1)[1])
        for f in front
        for leg in f["legs"]
        if leg["point"] == "fw:eth1"
    ]
    assert len(ports) == len(front) and all(lo <= p <= hi for p in ports), brief
    # the pool was reused while lb held its ports: some clients' SYNs were tried twice
    by_client: dict[str, int] = {}
    for f in front:
        by_client[f["client"]] = by_client.get(f["client"], 0) + 1
    assert len(by_client) == lab.faults.PAT_CONNECTIONS, brief
    assert sum(1 for n in by_client.values() if n > 1) >= 1, brief
    assert _fault_counter("fw", "inet") >= len(front)


def test_fw_ha_peer(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """12. fw gets an active-active peer (the same NAT; not captured) on the same two
    segments, and the client routes half of its connections through it: those are seen
    at client:eth0 and lb:eth0 (and on to srv through haproxy), never at fw, whose
    captures lose nothing. Each is one flow that went around fw, all of them one pattern
    line; no drop, injection or gap (before: each was a flow "answered before fw:eth0"
    at the client and another starting at lb:eth0)."""
    repro = lab.fault_repro("fw-ha-peer")
    assert repro is not None and repro.on == "client"
    res = _run_fault(clean_lab, tmp_path, "fw-ha-peer", top=_repro_top(repro.on, repro.run))
    assert _repro_exit(res) == 0, res.manifest.get("repro")
    brief = _brief(res)
    assert res.findings(*BAD_KINDS, "reset", "gap") == [], brief
    front = [f for f in res.verdict["flows"] if f["server"] == HTTP_SERVER]
    lo, hi = lab.topology.PEER_PORTS
    peer = [f for f in front if lo <= int(f["client"].rsplit(":", 1)[1]) <= hi]
    n = lab.faults.PEER_CONNECTIONS
    assert len(front) == 2 * n and len(peer) == n, brief
    points = ["client:eth0", "fw:eth0", "fw:eth1", "lb:eth0", "lb:eth1", "srv:eth0"]
    for f in front:
        legs = [leg["point"] for leg in f["legs"]]
        if f in peer:
            assert legs == ["client:eth0", "lb:eth0", "lb:eth1", "srv:eth0"], brief
            assert f["legs"][1]["tuple"].startswith(f"{lab.topology.PEER_INSIDE}:"), brief
            kinds = {(x["kind"], x["direction"], tuple(x["around"])) for x in f["findings"]}
            assert kinds == {("around", d, ("fw:eth0", "fw:eth1")) for d in ("c2s", "s2c")}
        else:
            assert legs == points and f["findings"] == [], brief
    (p,) = [p for p in res.verdict["patterns"] if p["kind"] == "around"]
    assert p["between"] == ["client:eth0", "lb:eth0"] and p["flows"] == n, p
    assert p["text"].startswith(f"went around fw (fw:eth0, fw:eth1) on {n} of "), p
    assert "paths around capture points (not drops) (1):" in res.stdout


def test_srv_accept_queue(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """7. the backend's accept queue is full (backlog 1, never accepts; concurrent
    requests from lb): the handshakes complete on the wire but srv's stack drops them,
    and its ListenOverflows / ListenDrops counters rise."""
    repro = lab.fault_repro("srv-accept-queue")
    assert repro is not None and repro.on == "lb"
    res = _run_fault(clean_lab, tmp_path, "srv-accept-queue", top=_repro_top(repro.on, repro.run))
    brief = _brief(res)
    drops = res.findings("drop")
    assert ("c2s", ["srv:eth0", "srv"]) in _between(drops), brief
    assert all(b == ("c2s", ["srv:eth0", "srv"]) for b in _between(drops)), brief
    assert res.findings("inject", "rewrite") == [], brief
    delta = _nstat_delta(res, "srv")
    assert delta.get("TcpExtListenOverflows", 0) > 0 or delta.get("TcpExtListenDrops", 0) > 0, delta
    assert "ListenOverflows" in (res.out / "facts" / "srv" / "delta" / "nstat.txt").read_text()


def test_srv_port_closed(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """8. the backend port is closed: srv's stack answers the lb's SYNs with RST."""
    res = _run_fault(clean_lab, tmp_path, "srv-port-closed", top=_repro_top("client", VIP_CURL))
    brief = _brief(res)
    resets = res.findings("reset")
    assert resets, brief
    assert all(r["direction"] == "s2c" for r in resets), brief
    assert ("s2c", ["srv", "srv:eth0"]) in _between(resets), brief
    assert res.findings(*BAD_KINDS) == [], brief


def test_a_refusal_beyond_the_firewall_is_the_servers(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    """8b. The client connects through fw to a closed port of lb (no fault needed: lb's
    stack answers the SYNs with RST). Captured on fw's two interfaces only, the RST came
    in through fw:eth1 from beyond fw: the server's reset (it was "fw reset the
    connection", the firewall blamed for a refusal behind it); with every point, lb's. And
    the proxy's own connections to a closed backend port (srv-port-closed) captured on lb
    alone: srv's RSTs came in through lb:eth1, the server's (it was "lb reset"); also for
    lb's own connections to srv (a curl on lb)."""
    curl = "for i in 1 2 3; do curl -s -o /dev/null -m 2 http://198.18.1.2:81/; done; true"
    none = {"role": None, "capture": None}
    inv = inventory_variant(
        clean_lab.inventory, tmp_path / "fw-only.yml", top={**_repro_top("client", curl),
        "path": ["fw"]}, client=none, lb=none, srv=none,
    )  # fmt: skip
    res = hopcap_run(inv, tmp_path / "fw-only")
    assert res.code == 0, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    brief = _brief(res)
    resets = res.findings("reset")
    assert len(resets) == 3, brief
    assert _between(resets) == [("s2c", ["server", "fw:eth1"])] * 3, brief
    assert all(f["summary"] == "server reset the connection (RST seen on fw:eth1)"
               for f in res.verdict["flows"] if f["findings"]), brief  # fmt: skip
    assert res.findings(*BAD_KINDS) == [], brief
    top = _repro_top("client", curl)
    inv = inventory_variant(clean_lab.inventory, tmp_path / "all.yml", top=top)
    res = hopcap_run(inv, tmp_path / "all")
    assert res.code == 0, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert _between(res.findings("reset")) == [("s2c", ["lb", "lb:eth0"])] * 3, _brief(res)
    assert res.findings(*BAD_KINDS) == [], _brief(res)
    # the proxy's own connections to a closed backend port, captured on lb alone: srv's
    # RSTs came in through lb:eth1 from beyond lb (it was "lb reset the connection")
    (tmp_path / "lb").mkdir()
    top = {**_repro_top("client", VIP_CURL), "path": ["lb"]}
    res = _run_fault(clean_lab, tmp_path / "lb", "srv-port-closed", top=top, client=none,
                     fw=none, srv=none)  # fmt: skip
    resets = _between(res.findings("reset"))
    assert resets and all(r == ("s2c", ["server", "lb:eth1"]) for r in resets), _brief(res)
    # lb's own connections (a curl on lb, as its health checks would be): lb's addresses
    # (the run's facts) say lb sent them, so their RSTs are the server's too
    own = "for i in 1 2 3; do curl -s -o /dev/null -m 2 http://198.18.2.2/; done; true"
    (tmp_path / "lb-own").mkdir()
    top = {**_repro_top("lb", own), "path": ["lb"]}
    res = _run_fault(clean_lab, tmp_path / "lb-own", "srv-port-closed", top=top, client=none,
                     fw=none, srv=none)  # fmt: skip
    assert _between(res.findings("reset")) == [("s2c", ["server", "lb:eth1"])] * 3, _brief(res)


def test_srv_second_iface_capture_auto(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """9. srv has a second interface and the inventory says `capture: auto`: hopcap
    captures on the one that carries the traffic (eth0), and the path is clean."""
    res = _run_fault(clean_lab, tmp_path, "srv-second-iface", srv={"capture": "auto"})
    names = [p["name"] for p in res.manifest["points"]]
    assert [n for n in names if n.startswith("srv:")] == ["srv:eth0"], names
    assert [p["name"] for p in res.verdict["points"]] == names
    srv = next(p for p in res.manifest["points"] if p["name"] == "srv:eth0")
    assert srv["packets"] > 0, srv
    assert _repro_exit(res) == 0
    assert res.findings(*BAD_KINDS) == [], _brief(res)


def test_no_fault_no_finding(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """10. no fault: no drop, inject or rewrite, over three runs."""
    for i in range(3):
        res = hopcap_run(clean_lab.inventory, tmp_path / f"b{i}")
        assert res.code == 0, res.stderr
        assert _repro_exit(res) == 0, res.manifest.get("repro")
        assert any(f["server"] == HTTP_SERVER for f in res.verdict["flows"]), _brief(res)
        assert res.findings(*BAD_KINDS) == [], f"run {i}:\n{_brief(res)}"


def test_a_fault_that_comes_and_goes(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    """fw drops the client's SYNs for ~2.5 s in the middle of a ~10 s window of short
    connections (fw-drop-syn's rule put in place and taken away while tcpdump runs, the
    connections left alone): the drop pattern says when it came and went, inside the
    window, with flows before and after it fine."""
    import threading
    import time

    layout = Layout(PREFIX, MGMT)
    sdir = clean_lab.state_dir
    flapped: list[float] = []

    def flap() -> None:
        end = time.monotonic() + 60
        while not _capturing(layout.ns("fw")) and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(3)
        flapped.append(time.time())
        lab.faults._get("fw-drop-syn").apply(layout, sdir)
        time.sleep(2.5)
        lab.faults._delete_fault_tables(layout.ns("fw"))
        flapped.append(time.time())

    loop = f"for i in $(seq 1 40); do {VIP_CURL.replace('-m 4', '-m 1')}; sleep 0.2; done"
    inv = inventory_variant(
        clean_lab.inventory, tmp_path / "site.yml", top=_repro_top("client", loop)
    )
    t = threading.Thread(target=flap)
    t.start()
    try:
        res = hopcap_run(inv, tmp_path / "bundle")
    finally:
        t.join()
    assert res.code == 0, f"exit {res.code}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    brief = _brief(res)
    assert len(flapped) == 2, brief
    [p] = [p for p in res.verdict["patterns"] if p["kind"] == "drop"]
    assert (p["direction"], p["between"]) == ("c2s", ["fw:eth0", "fw:eth1"]), brief
    assert flapped[0] - 0.5 <= p["first_ts"] <= p["last_ts"] <= flapped[1] + 1.5, (p, flapped)
    assert p["last_ts"] - p["first_ts"] < 4.5, p
    front = [f for f in res.verdict["flows"] if f["server"] == HTTP_SERVER]
    fine = [f for f in front if not f["findings"]]
    assert any(f["first_ts"] < p["first_ts"] - 1 for f in fine), brief
    assert any(f["first_ts"] > p["last_ts"] + 1 for f in fine), brief
    assert res.findings("inject", "rewrite") == [], brief
    # and the terminal says when
    assert re.search(r"c2s between fw:eth0 and fw:eth1.*; \d\d:\d\d:\d\d\.\d{3}-", res.stdout)


def _capturing(ns: str) -> bool:
    """A tcpdump runs in namespace `ns` (hopcap's capture has started there)."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "tcpdump":
                return True
        except OSError:
            continue
    return False
