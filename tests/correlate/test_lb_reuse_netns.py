"""A real HAProxy reusing backend connections (`http-reuse always`) under several
concurrent keep-alive clients, and a real retry + redispatch: namespaces cli -> lb
(haproxy) -> srv (the lab's HTTP server), tcpdump on lb's front and back interfaces and
on srv. Every client's requests must be linked to the backend bytes that carried them,
with no false finding."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopcap.correlate import correlate
from hopcap.correlate.link import TIME_ONLY
from hopcap.lab import httpd
from hopcap.model import Flow, PointInput, Verdict
from tests.labnames import prefix
from tests.progress import answer_progress, relayed_in_order, tcp_packets

pytestmark = pytest.mark.lab

P = f"{prefix('hcr')}p{os.getpid() % 10000}"  # namespace prefix, unique per run and checkout
NS = {"cli": f"{P}-cli", "lb": f"{P}-lb", "srv": f"{P}-srv"}
FRONT = "198.18.110.1"  # haproxy's frontend (lb's eth0)
LB_BACK = "198.18.111.1"
SRV = "198.18.111.2"
CLIENTS, REQUESTS = 4, 10


def sh(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def wait_listening(ns: str, port: int) -> None:
    for _ in range(100):
        if f":{port} " in sh("ss", "-ltnH", ns=ns).stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on :{port} in {ns}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "tcpdump", "haproxy")):
        pytest.fail("needs root, ip, tcpdump and haproxy")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in NS.values():
            sh("ip", "netns", "add", n)
        sh("ip", "link", "add", "c0", "netns", NS["cli"], "type", "veth",
           "peer", "eth0", "netns", NS["lb"])  # fmt: skip
        sh("ip", "link", "add", "eth1", "netns", NS["lb"], "type", "veth",
           "peer", "eth0", "netns", NS["srv"])  # fmt: skip
        for ns, dev, addr in (
            ("cli", "c0", "198.18.110.2/24"),
            ("lb", "eth0", f"{FRONT}/24"),
            ("lb", "eth1", f"{LB_BACK}/24"),
            ("srv", "eth0", f"{SRV}/24"),
        ):
            sh("ip", "addr", "add", addr, "dev", dev, ns=NS[ns])
            sh("ip", "link", "set", dev, "up", ns=NS[ns])
            sh("ip", "link", "set", "lo", "up", ns=NS[ns])
        procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", NS["srv"], sys.executable, httpd.__file__, "serve",
                 SRV, "8080", str(tmp_path / "httpd.pid")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        wait_listening(NS["srv"], 8080)
        yield tmp_path
    finally:
        for pr in procs:
            pr.terminate()
            pr.wait(timeout=5)
        for n in NS.values():
            sh("ip", "netns", "del", n, check=False)


def haproxy(tmp: Path, backend: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """haproxy in lb with `backend`; with `log`, its log there: a line per request, the
    client's port, the backend connection's (haproxy's own word on which carried it) and
    how many times haproxy tried again to connect."""
    cfg = tmp / "haproxy.cfg"
    logs = ("  log stdout format raw local0\n", "  log global\n", '  log-format "%cp %bp %rc"\n')
    cfg.write_text(
        "global\n  maxconn 100\n" + (logs[0] if log else "")
        + "defaults\n  mode http\n  timeout connect 2s\n  timeout client 5s\n"
        "  timeout server 5s\n  option forwardfor\n" + (logs[1] if log else "")
        + f"frontend fe\n  bind {FRONT}:80\n  default_backend be\n"
        + (logs[2] if log else "") + backend
    )  # fmt: skip
    sh("haproxy", "-c", "-q", "-f", str(cfg))
    out = log.open("wb") if log else subprocess.DEVNULL
    try:
        pr = subprocess.Popen(["ip", "netns", "exec", NS["lb"], "haproxy", "-db", "-f", str(cfg)],
                              stdout=out, stderr=subprocess.DEVNULL)  # fmt: skip
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    wait_listening(NS["lb"], 80)
    return pr


POINTS = [("lb:eth0", "lb", "eth0"), ("lb:eth1", "lb", "eth1"), ("srv:eth0", "srv", "eth0")]

# CLIENTS keep-alive connections at once, REQUESTS each, every request marked with its
# client and number in a header
CLIENT = f"""
import http.client, sys, threading
go = threading.Barrier({CLIENTS})
bad = []
def run(c):
    conn = http.client.HTTPConnection("{FRONT}", 80, timeout=5)
    go.wait()
    for r in range({REQUESTS}):
        conn.request("GET", "/", headers={{"X-Req": f"c{{c}}r{{r}}"}})
        resp = conn.getresponse()
        if resp.status != 200 or not resp.read():
            bad.append((c, r, resp.status))
    conn.close()
ts = [threading.Thread(target=run, args=(c,)) for c in range({CLIENTS})]
for t in ts: t.start()
for t in ts: t.join()
sys.exit(1 if bad else 0)
"""


def capture(tmp: Path, tag: str, action: list[str]) -> list[PointInput]:
    """tcpdump on every point around `action` (run in cli); the dumps are stopped also
    when something fails."""
    dumps: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    out: list[PointInput] = []
    done = None
    try:
        for name, ns, dev in POINTS:
            f = tmp / f"{tag}-{name.replace(':', '_')}.pcap"
            pr = subprocess.Popen(
                ["ip", "netns", "exec", NS[ns], "tcpdump", "-i", dev, "-n", "-B", "32768",
                 "--immediate-mode", "-U", "-w", str(f), "tcp"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            dumps.append((name, f, pr))
            assert pr.stderr is not None
            first = pr.stderr.readline().decode()
            assert "listening" in first, first
        time.sleep(0.2)
        done = subprocess.run(["ip", "netns", "exec", NS["cli"], *action], capture_output=True,
                              timeout=60)  # fmt: skip
        time.sleep(0.5)
    finally:
        for name, f, pr in dumps:
            pr.send_signal(signal.SIGINT)
            try:
                _, err = pr.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                pr.kill()
                _, err = pr.communicate()
            drops = 0
            for line in err.decode().splitlines():
                if "dropped by kernel" in line:
                    drops = int(line.split()[0])
            out.append(PointInput(name=name, pcap=f, kernel_drops=drops))
    assert done is not None and done.returncode == 0, done.stderr.decode()[-2000:] if done else ""
    return out


def c2s_streams(pcap: Path) -> dict[str, bytes]:
    """Each connection's client->server byte stream (by tuple string), from the SYN on."""
    isn: dict[str, int] = {}
    segs: dict[str, dict[int, bytes]] = defaultdict(dict)
    for ip, tcp, _t in tcp_packets(pcap):
        key = f"{ip.src}:{tcp.sport} > {ip.dst}:{tcp.dport}"
        if tcp.flags & 0x02:
            isn[key] = tcp.seq
        data = bytes(tcp.payload)
        if data and key in isn:
            segs[key][(tcp.seq - isn[key] - 1) & 0xFFFFFFFF] = data
    out = {}
    for key, parts in segs.items():
        buf = bytearray()
        for off in sorted(parts):
            if off <= len(buf):
                buf[off:] = parts[off]
        out[key] = bytes(buf)
    return out


def no_false_finding(v: Verdict) -> None:
    bad = [(fl.client, f) for fl in v.flows for f in fl.findings
           if f.kind in ("drop", "inject", "rewrite")]  # fmt: skip
    assert bad == [], bad
    if not any(p.kernel_drops for p in v.points):
        gaps = [(fl.client, f) for fl in v.flows for f in fl.findings if f.kind == "gap"]
        assert gaps == [], gaps


def _reused(lab: Path, tag: str, client: str) -> tuple[list[PointInput], Verdict]:
    """`client` (a script) run through haproxy with `http-reuse always` and two connections
    to the server at most (four clients must share them), captured and correlated; no
    false finding."""
    pr = haproxy(lab, f"backend be\n  http-reuse always\n  server s1 {SRV}:8080 maxconn 2\n")
    try:
        pts = capture(lab, tag, [sys.executable, "-c", client])
    finally:
        pr.terminate()
        pr.wait(timeout=5)
    v = correlate(pts)
    no_false_finding(v)
    return pts, v


def test_http_reuse_always_links_every_request_to_its_client(lab: Path) -> None:
    pts, v = _reused(lab, "reuse", CLIENT)
    fronts = [fl for fl in v.flows if fl.server == f"{FRONT}:80"]
    assert len(fronts) == CLIENTS, [(fl.client, fl.server) for fl in v.flows]
    # every backend connection's bytes belong to client flows: no flow of leftovers
    assert len(v.flows) == CLIENTS, [(fl.client, [leg.tuple for leg in fl.legs]) for fl in v.flows]
    back = c2s_streams(pts[1].pcap)  # type: ignore[arg-type]
    front = c2s_streams(pts[0].pcap)  # type: ignore[arg-type]
    shared = 0
    for fl in fronts:
        mine = front[fl.legs[0].tuple]
        client = mine.split(b"X-Req: c", 1)[1][:1].decode()  # which client this flow is
        assert mine.count(b"X-Req: c" + client.encode()) == REQUESTS
        carried = _carried(fl, back)
        want = sorted(f"c{client}r{r}" for r in range(REQUESTS))
        assert carried == want, (fl.client, carried)
        assert not fl.broken and fl.summary.startswith("OK"), fl.summary
        shared += sum(1 for leg in fl.legs if leg.part is not None)
    assert shared, "haproxy reused no backend connection across clients"  # the test's premise


def test_the_same_request_from_every_client_over_reused_connections(lab: Path) -> None:
    """The same: four keep-alive clients at once on two shared backend connections, but
    every request the same bytes (one client address: X-Forwarded-For alike too), so only
    time tells whose an exchange is. Each client flow gets as many backend exchanges as it
    sent requests, no exchange goes to two flows or to none (before: identical exchanges
    could end up with the wrong client, or pipelined onto one already served)."""
    same = CLIENT.replace(', headers={"X-Req": f"c{c}r{r}"}', "")
    assert "X-Req" not in same
    pts, v = _reused(lab, "same", same)
    flows = [(fl.client, [leg.tuple for leg in fl.legs]) for fl in v.flows]
    assert len(v.flows) == CLIENTS and all(fl.server == f"{FRONT}:80" for fl in v.flows), flows
    claimed: list[tuple[str, int]] = []
    shared = 0
    for fl in v.flows:
        mine = []
        for leg in fl.legs:
            if leg.point != "lb:eth1":
                continue
            if leg.part is None:
                n = len(c2s_streams(pts[1].pcap)[leg.tuple].split(b"GET / ")) - 1  # type: ignore[arg-type]
                mine += [(leg.tuple, k) for k in range(1, n + 1)]
            else:
                shared += 1
                mine += [(leg.tuple, k) for k in leg.part.exchanges]
        assert len(mine) == REQUESTS, (fl.client, mine)
        claimed += mine
    assert len(set(claimed)) == len(claimed) == CLIENTS * REQUESTS
    assert shared, "haproxy reused no backend connection across clients"  # the premise


def _carried(fl: Flow, back: dict[str, bytes]) -> list[str]:
    """The X-Req markers in the backend bytes that this flow's lb:eth1 legs say carried it."""
    out: list[str] = []
    for leg in fl.legs:
        if leg.point != "lb:eth1":
            continue
        assert leg.link == "proxied"
        stream = back[leg.tuple]
        ranges = leg.part.c2s if leg.part is not None else ((0, len(stream)),)
        for lo, hi in ranges:
            chunk = stream[lo:hi]
            assert chunk.startswith(b"GET / HTTP/1.1"), chunk[:40]
            low = chunk.lower()  # haproxy 2.x sends header names in lower case
            assert b"x-forwarded-for: 198.18.110.2" in low
            out += [x[:6].split(b"\r")[0].decode() for x in low.split(b"x-req: ")[1:]]
    return sorted(out)


def test_retry_and_redispatch_are_legs_of_the_clients_flow(lab: Path) -> None:
    """The first server refuses (nothing listens: RST); haproxy retries once, redispatched
    to the second: one flow, both backend connections its legs, the refusal its finding."""
    pr = haproxy(
        lab,
        "backend be\n  balance first\n  retries 1\n  option redispatch\n"
        f"  server s1 {SRV}:8081\n  server s2 {SRV}:8080\n",
    )
    try:
        pts = capture(lab, "retry", ["curl", "-s", "-m", "5", "-o", "/dev/null", "-f",
                                     f"http://{FRONT}/"])  # fmt: skip
    finally:
        pr.terminate()
        pr.wait(timeout=5)
    v = correlate(pts)
    no_false_finding(v)
    assert len(v.flows) == 1, [(fl.client, [leg.tuple for leg in fl.legs]) for fl in v.flows]
    fl = v.flows[0]
    if any(p.kernel_drops for p in v.points):
        return
    at_back = [leg.tuple.split(" > ")[1] for leg in fl.legs if leg.point == "lb:eth1"]
    assert at_back == [f"{SRV}:8081", f"{SRV}:8080"], fl.legs
    assert [(f.kind, f.between) for f in fl.findings] == [("reset", ("srv", "srv:eth0"))]
    assert fl.summary.startswith("OK") and "after 1 failed connection attempt" in fl.summary


def test_identical_downloads_at_once_each_from_the_backend_that_carried_it(lab: Path) -> None:
    """40 downloads of the same file at once from one client through haproxy, one
    backend connection each, with 5 % of the packets to the server lost (retransmissions,
    a SYN sent again a second later): every byte of the request and answer alike, so
    only time tells whose backend connection is whose. Each client flow gets one backend
    connection that carried its request, all distinct, and one that could have carried
    it: each 8 kB of the answer left towards the client after it came from the server
    (read from the captures with scapy). By the first bytes alone hopcap paired 3-16 of
    40 flows with a backend that could not have in each of 7 runs here; haproxy's own log
    (which backend connection carried which client's request) agreed with 41 % of its
    pairs, and with ~70 % now. The flows with a failed connection attempt are those whose
    request haproxy tried again, by its log (was: 5 of 18 in 7 runs with 10 % loss)."""
    n = 40
    log = lab / "haproxy.log"
    pr = haproxy(lab, f"backend be\n  http-reuse never\n  server s1 {SRV}:8080\n", log)
    for cmd in ("add table inet loss",
                "add chain inet loss c { type filter hook input priority 0; }",
                "add rule inet loss c tcp dport 8080 numgen random mod 100 < 5 drop"):  # fmt: skip
        sh("nft", *cmd.split(), ns=NS["srv"])
    get = f"curl -s -o /dev/null -m 20 http://{FRONT}/big.bin"
    try:
        pts = capture(lab, "same", ["sh", "-c", f"for i in $(seq {n}); do {get} & done; wait"])
    finally:
        time.sleep(0.3)  # (the last log lines)
        pr.terminate()
        pr.wait(timeout=5)
    v = correlate(pts)
    fronts = [fl for fl in v.flows if fl.server == f"{FRONT}:80"]
    assert len(fronts) == n == len(v.flows), [(fl.client, fl.server) for fl in v.flows]
    # (a backend connection whose SYNs went unanswered past haproxy's connect timeout
    # carried nothing: haproxy opened another; it is a leg of the flow "by time only")
    backs = [[leg.tuple for leg in fl.legs if leg.point == "lb:eth1" and TIME_ONLY not in
              leg.details] for fl in fronts]  # fmt: skip
    assert all(len(b) == 1 for b in backs) and len({b[0] for b in backs}) == n, backs
    went = answer_progress(pts[0].pcap)  # type: ignore[arg-type]
    came = answer_progress(pts[1].pcap)  # type: ignore[arg-type]
    late = [(fl.legs[0].tuple, b[0]) for fl, b in zip(fronts, backs, strict=True)
            if not relayed_in_order(went.get(fl.legs[0].tuple, []),
                                    came.get(b[0], []))]  # fmt: skip
    assert late == [], late
    lines = [x.split() for x in log.read_text().splitlines()]
    logged = {int(x[0]): (int(x[1]), int(x[2].lstrip("+"))) for x in lines
              if len(x) == 3 and "".join(x).replace("+", "").isdigit()}  # fmt: skip
    assert len(logged) == n, log.read_text()[-2000:]

    def port(t: str) -> int:
        return int(t.split(" > ")[0].rsplit(":", 1)[1])

    tried = {port(fl.legs[0].tuple) for fl in fronts
             if any(leg.point == "lb:eth1" and TIME_ONLY in leg.details
                    for leg in fl.legs)}  # fmt: skip
    assert tried == {c for c, (_b, again) in logged.items() if again}, log.read_text()
    # (how many pairs haproxy's log confirms: for the record, not asserted; time order
    # leaves several possible pairings)
    agree = sum(logged[port(fl.legs[0].tuple)][0] == port(b[0])
                for fl, b in zip(fronts, backs, strict=True))  # fmt: skip
    print(f"haproxy's log agrees with {agree} of {n} pairs, {len(tried)} tried again")
