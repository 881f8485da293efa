"""Correlation by time slices (captures larger than memory) gives the unsliced verdict."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pcapgen import C2S, S2C, Conv, Seg, View, as_two_points, busy_firewall, render
from test_parallel import _scenario
from test_path import HTTP_REQ, HTTP_RESP, nat_map, points
from typer.testing import CliRunner

from hopcap.cli import app
from hopcap.correlate import correlate
from hopcap.correlate import slices as sl
from hopcap.model import PointInput
from hopcap.units import size_text
from tests.realdata import REALDATA


def _same(
    pts: list[PointInput], sizes: tuple[int, ...], jobs: int = 2, margin_s: float = 0.001
) -> dict:
    """The verdict of `pts` unsliced, asserted equal to the sliced ones (several slices
    each, with a margin far smaller than the flows' lifetimes); the smallest slices (the
    most of them) also in `jobs` worker processes: the verdict and the progress lines of
    one process."""
    one = correlate(pts).to_dict()
    for n in sizes:
        said: list[str] = []
        got = correlate(pts, slice_packets=n, slice_margin_s=margin_s, progress=said.append)
        slices = [s for s in said if s.endswith("findings")]
        assert len(slices) >= 2, (n, said)  # really sliced
        assert got.to_dict() == one, f"{n} packets per slice, {len(slices)} slices"
        if jobs > 1 and n == min(sizes):
            heard: list[str] = []
            many = correlate(pts, slice_packets=n, slice_margin_s=margin_s, jobs=jobs,
                             progress=heard.append)  # fmt: skip
            assert many.to_dict() == one, f"{jobs} jobs, {len(slices)} slices"
            assert heard == said
    return one


def test_nat_tso_drop_clamp_and_forged_rst_sliced(tmp_path: Path) -> None:
    one = _same(_scenario(tmp_path), (5, 40, 100))
    kinds = {f["kind"] for fl in one["flows"] for f in fl["findings"]}
    assert {"drop", "rewrite"} <= kinds


def test_busy_firewall_sliced(tmp_path: Path) -> None:
    """Masquerade, MSS clamping, 1 % loss with retransmissions and SYNs retried a second
    later (their NAT link comes from a packet in a later window)."""
    a, b = busy_firewall(tmp_path, 300)
    pts = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    one = _same(pts, (50, 500, 3000))
    drops = [f for fl in one["flows"] for f in fl["findings"] if f["kind"] == "drop"]
    assert len(one["flows"]) == 300 and drops


def keepalive(
    client: tuple[str, int], seed: int, t0: float, rounds: int, gap: float, lost: Any = ()
) -> Conv:
    """A connection to 203.0.113.80:80 with `rounds` request/response rounds `gap` s apart;
    the requests of rounds `lost` sent again 0.2 s later (the first copy lost on the way:
    the server's ACK comes after the second)."""
    c = Conv(client=client, server=("203.0.113.80", 80), seed=seed, t0=t0)
    c.handshake()
    for r in range(rounds):
        c.t += gap
        c.send(C2S, HTTP_REQ, tag="req", resent=(0,) if r in lost else (), rto=0.2)
        c.response(HTTP_RESP)
    c.close()
    return c


def _long(tmp: Path) -> tuple[list[PointInput], list[float]]:
    """Two long connections through a NAT (request/response rounds for ~24 s) among short
    ones that start right where the long ones lose a request, so that window edges fall
    on the drops; one lost request is retransmitted 200 ms later."""
    t0 = 1_763_800_000.0
    longs = [keepalive(("198.18.0.10", 41000 + j), 90 + j, t0 + j * 0.3, 40, 0.6,
                       range(3, 40, 8) if j == 0 else (20,)) for j in range(2)]  # fmt: skip
    lost = [s for s in longs[0].segs if s.tag == "req"][3::8]  # 5 drops over the run
    retx = [s for s in longs[1].segs if s.tag == "req"][20]
    retx.tag = "lost"
    edges = [s.t for s in lost] + [retx.t + 0.1]
    shorts = []
    for i in range(60):
        t = edges[i % len(edges)] + (i // len(edges)) * 1e-6 if i < 18 else t0 + i * 0.4
        c = Conv(client=("198.18.0.20", 50000 + i), server=("203.0.113.80", 80), seed=300 + i,
                 t0=t)  # fmt: skip
        c.handshake()
        c.request(HTTP_REQ)
        c.response(HTTP_RESP)
        c.close()
        shorts.append(c)
    dropped = {id(s) for s in lost}

    def fw(c: Conv) -> View:
        def gone(s: Seg) -> bool:
            return id(s) in dropped or s.tag == "lost"

        return View(delay=0.0002, nat=nat_map(c, sport=c.client[1] - 20000), drop=gone,
                    ttl_dec={C2S: 1})  # fmt: skip

    convs = longs + shorts
    return points(tmp, convs, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth1", fw),
    ]), edges  # fmt: skip


def test_long_connections_across_many_slices_with_drops_at_the_edges(tmp_path: Path) -> None:
    pts, _edges = _long(tmp_path)
    one = _same(pts, (40, 120))
    by_client = {fl["client"]: fl for fl in one["flows"]}
    l0, l1 = by_client["198.18.0.10:41000"], by_client["198.18.0.10:41001"]
    # one flow each, NAT leg from its SYN, every lost request a drop; the retransmitted
    # one (seen upstream twice, downstream once): one drop, its retransmission delivered
    assert [leg["link"] for leg in l0["legs"]] == [leg["link"] for leg in l1["legs"]]
    assert [leg["link"] for leg in l0["legs"]] == ["same", "nat"]
    assert [(f["kind"], f["packets"]) for f in l0["findings"]] == [("drop", 5)]
    assert [(f["kind"], f["packets"]) for f in l1["findings"]] == [("drop", 1)]
    # a window edge right at a drop: the slices were that narrow
    _bounds_cut_the_long_ones(pts)


def _bounds_cut_the_long_ones(pts: list[PointInput]) -> None:
    said: list[str] = []
    with _logged() as logged:
        correlate(pts, slice_packets=40, slice_margin_s=0.001, progress=said.append)
    n = int(next(s for s in said if s.endswith("findings")).split("/")[1].split(":")[0])
    assert n >= 10  # ~24 s of long connections over ten or more windows
    # the long connections are larger than half a slice: cut, not read whole (no warning)
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    [w] = [r.getMessage() for r in logged if "cut" in r.getMessage()]
    assert w.startswith("2 conversation(s) of more than 20 packets are cut"), w


def _huge(tmp: Path, rounds: int = 500) -> list[PointInput]:
    """Three huge connections through a NAT (`rounds` request/response rounds every 0.1 s,
    ~4 packets a round) among 40 short ones, at three points. The first: requests and
    responses lost at the firewall every 37th round, a TOS rewrite every 23rd request,
    and requests lost then retransmitted 0.05 s later (across window edges at some slice
    sizes). The second: everything lost at the firewall after its 300th round (a flow
    that stops at one point, across many windows). The third: an upload never answered."""
    t0 = 1_763_900_000.0
    big = []
    for j in range(2):
        c = Conv(client=("198.18.0.10", 42000 + j), server=("203.0.113.80", 443),
                 seed=500 + j, t0=t0 + j * 0.05)  # fmt: skip
        c.handshake()
        for r in range(rounds):
            c.t = t0 + j * 0.05 + 0.1 * (r + 1)
            # (a request lost is sent again, before the round's ACK: 0.05 s later, or at
            # once when its response is lost too)
            again = (0,) if j == 0 and (r % 37 == 5 or r % 41 == 7) else ()
            q = c.send(C2S, b"q%05d" % r + b"x" * (40 + r % 7), tag=f"req{r}", resent=again,
                       rto=0.05 if r % 37 != 5 else None)  # fmt: skip
            a = c.send(S2C, b"a%05d" % r + b"y" * (300 + r % 11), tag=f"resp{r}")
            if j == 0 and r % 37 == 5:
                q[0].tag, a[0].tag = "lost", "lost"
            elif j == 0 and r % 41 == 7:
                q[0].tag = "lost"
            elif j == 0 and r % 23 == 3:
                q[0].tag = "tos" if r < 150 else "tos2"  # two values, the later more common
        c.close()
        big.append(c)
    # a third: an upload the server only ACKs, the client closing 2 s after its last byte
    up = Conv(client=("198.18.0.10", 42002), server=("203.0.113.80", 443), seed=502,
              t0=t0 + 0.07)  # fmt: skip
    up.handshake()
    for r in range(rounds // 2):
        up.t = t0 + 0.07 + 0.1 * (r + 1)
        up.send(C2S, b"u%05d" % r + b"z" * 200, tag=f"up{r}")
    up.t += 2.0
    up.close()
    big.append(up)
    stop = big[1].t0 + 0.1 * 300
    shorts = []
    for i in range(40):
        c = Conv(client=("198.18.0.20", 51000 + i), server=("203.0.113.80", 80), seed=700 + i,
                 t0=t0 + 1.3 * i + 0.01)  # fmt: skip
        c.handshake()
        c.request(HTTP_REQ)
        c.response(HTTP_RESP)
        c.close()
        shorts.append(c)

    def tos(s: Seg) -> Seg:
        if s.tag in ("tos", "tos2"):
            s = Seg(**{**s.__dict__, "tos": 0x20 if s.tag == "tos" else 0x40})
        return s

    def fw(c: Conv) -> View:
        def gone(s: Seg) -> bool:
            return s.tag == "lost" or (c is big[1] and s.t > stop)

        return View(delay=0.0002, nat=nat_map(c, sport=c.client[1] - 20000), drop=gone,
                    ttl_dec={C2S: 1}, change=tos)  # fmt: skip

    return points(tmp, big + shorts, [
        ("client:eth0", lambda c: View(ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001)),
        ("fw:eth1", fw),
    ])  # fmt: skip


def test_huge_connections_cut_across_slices(tmp_path: Path) -> None:
    """Connections far larger than a slice are cut (each slice reads their head and its
    window of them) and their findings merged across slices: drops and rewrites at every
    cut point, retransmissions across cuts, a connection lost at one point for many
    windows; the verdict of the unsliced run, and the run says what it cut."""
    pts = _huge(tmp_path)
    one = _same(pts, (300, 1200))
    by_client = {fl["client"]: fl for fl in one["flows"]}
    b0, b1 = by_client["198.18.0.10:42000"], by_client["198.18.0.10:42001"]
    assert [leg["link"] for leg in b0["legs"]] == ["same", "same", "nat"]
    kinds = {(f["kind"], f["direction"]): f["packets"] for f in b0["findings"]}
    lost = len([r for r in range(500) if r % 37 == 5])
    retx = len([r for r in range(500) if r % 41 == 7 and r % 37 != 5])
    assert retx >= 10
    # (the fw:eth1 view loses responses before they reach it: seen at fw:eth0 only)
    assert kinds[("drop", "c2s")] == lost + retx and kinds[("inject", "s2c")] == lost
    assert kinds[("rewrite", "c2s")] == len([r for r in range(500) if r % 23 == 3
                                             and r % 37 != 5 and r % 41 != 7])  # fmt: skip
    [rw] = [f for f in b0["findings"] if f["kind"] == "rewrite"]
    assert (rw["field"], rw["before"], rw["after"]) == ("ip.dscp", 0, 16)  # the later value
    assert rw["what"].endswith("; 2 different values, e.g. 0 -> 16"), rw["what"]
    assert [(f["kind"], f["direction"]) for f in b1["findings"]] == [
        ("drop", "c2s"), ("inject", "s2c")]  # fmt: skip
    assert min(f["packets"] for f in b1["findings"]) > 400  # 200 rounds lost both ways
    assert all("latency_s" in leg for leg in b0["legs"][1:])
    # no finding: its summary from what the slices carried (bytes, last byte, close)
    b2 = by_client["198.18.0.10:42002"]
    assert not b2["findings"]
    assert b2["summary"].startswith("no response: the request (51500 bytes) went through")
    assert b2["summary"].endswith("(the client gave up after 2.0 s)")
    with _logged() as logged:
        correlate(pts, slice_packets=300, slice_margin_s=0.001)
    [w] = [r.getMessage() for r in logged if "are cut" in r.getMessage()]
    assert w.startswith("3 conversation(s) of more than 150 packets are cut"), w
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    # the default 2 s margins hold more of them than half a slice: said, same verdict
    with _logged() as logged:
        wide = correlate(pts, slice_packets=300)
    [w] = [r.getMessage() for r in logged if r.levelno >= logging.WARNING]
    assert "within the 2.0 s margins of a window, more than half a slice" in w, w
    assert wide.to_dict() == one


@contextlib.contextmanager
def _logged() -> Iterator[list[logging.LogRecord]]:
    """What `hopcap` logs meanwhile (info and up)."""
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    log, keep = logging.getLogger("hopcap"), Keep(logging.INFO)
    level = log.level
    log.addHandler(keep)
    log.setLevel(logging.INFO)
    try:
        yield got
    finally:
        log.removeHandler(keep)
        log.setLevel(level)


def _cut_quietly(pts: list[PointInput], n: int) -> list[str]:
    """What a sliced run of `n` packets a slice (1 ms margins) says; it warns of nothing."""
    with _logged() as logged:
        correlate(pts, slice_packets=n, slice_margin_s=0.001)
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    return [r.getMessage() for r in logged]


HAKA = REALDATA / "haka"


@pytest.mark.parametrize(
    "name", ["ipv4_nat", "http_request-modif", "tcp_stream-rst", "sample_httpmodif"]
)
def test_real_middlebox_captures_sliced(name: str, tmp_path: Path) -> None:
    """Haka's captures before and after its middlebox (NAT, payload rewrites, resets)."""
    a, b = as_two_points(HAKA / f"{name}.pcap", HAKA / f"{name}-ref.pcap", tmp_path)
    pts = [PointInput(name="in", pcap=a), PointInput(name="out", pcap=b)]
    one = correlate(pts).to_dict()
    for n in (3, 10):
        assert correlate(pts, slice_packets=n, slice_margin_s=0.001).to_dict() == one


@pytest.mark.parametrize("missing", [False, True])
def test_real_large_transfer_cut_across_slices(missing: bool) -> None:
    """ns-3's large TCP transfer through four points (queues that delay packets by tens
    of milliseconds): the transfer is cut across the slices, with a margin that covers
    the queueing delay; with a point missing too."""
    d = REALDATA / "ns3-ppp"
    pts = [PointInput(f"p{i}", d / f"tcp-large-transfer-{s}.pcap")
           for i, s in enumerate(("0-0", "1-0", "1-1", "2-0"))]  # fmt: skip
    if missing:
        pts = [p for i, p in enumerate(pts) if i != 1]
    _same(pts, (50, 300), margin_s=0.5)


def test_missing_point_and_truncated_capture_sliced(tmp_path: Path) -> None:
    """A point without a capture (a gap there) and a file cut in the middle of a record
    (the capture window ends at its last packet): the point summaries, warnings and gap
    judgements of the unsliced run."""
    pts = _scenario(tmp_path)
    last = pts[-1].pcap
    assert last is not None
    data = Path(last).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 2 // 3 + 7])
    pts = [*pts[:-1], PointInput(pts[-1].name, cut), PointInput("srv:eth0", None)]
    one = _same(pts, (20, 60))
    assert any("truncated" in w for p in one["points"] for w in p.get("warnings", ()))
    assert any("srv:eth0 is missing" in w for w in one["warnings"])


def _as_pcapng(src: Path, dst: Path) -> Path:
    from pcapgen import write_pcapng_raw

    from hopcap.correlate.reader import walk_records

    buf = src.read_bytes()
    rec = walk_records(src, buf)
    frames = [(0, int(ts), buf[o : o + c]) for o, c, ts in zip(rec.off, rec.cap, rec.ts,
              strict=True)]  # fmt: skip
    return write_pcapng_raw(dst, [(1, 9)], frames)


@pytest.mark.parametrize("compiled", [True, False])
def test_pcapng_and_the_numpy_walk_sliced(
    tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pcapng files (walked from their start by every slice), and classic pcap without
    the C helper (the numpy record walk): the unsliced verdict too."""
    from hopcap.correlate import _fastwalk

    a, b = busy_firewall(tmp_path, 120, seed=3)
    if compiled:
        pts = [PointInput("fw:eth0", _as_pcapng(a, tmp_path / "a.pcapng")),
               PointInput("fw:eth1", _as_pcapng(b, tmp_path / "b.pcapng"))]  # fmt: skip
    else:
        monkeypatch.setattr(_fastwalk, "disabled", True)
        pts = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    one = _same(pts, (100, 800))
    assert len(one["flows"]) == 120


def test_one_slice_is_the_plain_run(tmp_path: Path) -> None:
    """A budget that holds every packet: no slicing (the plain engine, all its jobs)."""
    pts = _scenario(tmp_path)
    said: list[str] = []
    v = correlate(pts, memory=1 << 30, progress=said.append)
    assert said == [] and v.to_dict() == correlate(pts).to_dict()
    from hopcap.correlate import budget

    assert budget.estimated_packets(pts) < (1 << 30) // budget.BYTES_PER_PACKET


def test_cli_memory_option_slices_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--memory` smaller than the verdict of the captures' connections needs: the
    smallest slices, a warning, and the verdict of a plain run."""
    monkeypatch.setattr(sl, "MIN_WINDOW_NS", 0)  # windows of the smallest slices (~50 ms)
    a, b = busy_firewall(tmp_path, 300)
    args = [f"fw:eth0={a}", f"fw:eth1={b}"]
    plain = CliRunner().invoke(app, ["correlate", "--json", *args])
    small = CliRunner().invoke(app, ["correlate", "--json", "--memory", "1M", *args])
    assert plain.exit_code == 0 and small.exit_code == 0, small.output
    assert small.stdout == plain.stdout
    # the last slice's progress line (into a log: one every few seconds, and the last)
    assert re.search(r"hopcap: slice (\d+)/\1: ", small.stderr), small.stderr
    assert "memory budget" in small.stderr
    bad = CliRunner().invoke(app, ["correlate", "--memory", "lots", *args])
    assert bad.exit_code != 0 and "--memory" in bad.output


def _budgets(
    pts: list[PointInput], monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[int], int], int]:
    """With the budget's fixed shares out of the way (no base, no worker share, slices of
    10 packets at least): the memory budget whose slices hold `n` packets once the verdict
    of the captures' conversations is paid for, and the captures' packets."""
    scans = [sl.scan(p.pcap) for p in pts]
    total = sum(sc.tcp_rows + sc.dgram_rows for sc in scans)
    convs = max(sc.keys.shape[0] for sc in scans)
    for sc in scans:
        sc.close()
    monkeypatch.setattr(sl, "BASE_BYTES", 0)
    monkeypatch.setattr(sl, "WORKER_BYTES", 0)
    monkeypatch.setattr(sl, "MIN_SLICE", 10)

    def budget(n: int) -> int:
        return convs * sl.VERDICT_BYTES_PER_FLOW + n * sl.BYTES_PER_PACKET

    return budget, total


def test_memory_budget_is_shared_by_the_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a memory budget, `jobs` worker processes hold a slice each at once: each
    slice gets 1/jobs of what the slices may use (about twice the slices with 2 jobs),
    and the verdict is the one of one job, and of the unsliced run."""
    a, b = busy_firewall(tmp_path, 300)
    pts = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    budget, total = _budgets(pts, monkeypatch)
    monkeypatch.setattr(sl, "MIN_WINDOW_NS", 0)  # (the capture lasts ~0.3 s)
    memory = budget(total // 3)  # the slices get a third of the packets
    one = correlate(pts).to_dict()
    count = {}
    for jobs in (1, 2):
        said: list[str] = []
        got = correlate(pts, memory=memory, jobs=jobs, progress=said.append)
        assert got.to_dict() == one, f"{jobs} jobs"
        count[jobs] = len([s for s in said if s.endswith("findings")])
    assert 3 <= count[1] <= 5, count
    assert count[2] >= 2 * count[1] - 1, count


def test_jobs_hold_slices_at_once_only_within_the_memory_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice reads every conversation alive in its window and the margins around it,
    however small its share of the budget: where the margins hold much more than a share
    (a busy capture; here 2 s margins around a 1.2 s one), two worker processes would hold
    two such slices at once, so the slices run one at a time (in this process); where a
    slice holds its share (margins of 1 ms), the jobs' processes run them. The verdict is
    the one of the same slices in two processes, and the unsliced one."""
    a, b = busy_firewall(tmp_path, 300)
    pts = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    budget, total = _budgets(pts, monkeypatch)
    monkeypatch.setattr(sl, "MIN_WINDOW_NS", 0)
    memory = budget(total * 2 // 3)  # (a third of the packets a worker)
    one = correlate(pts).to_dict()
    held: list[int] = []

    class Slices(sl._Slices):
        def __init__(self, run: Any, jobs: int) -> None:
            held.append(jobs)
            super().__init__(run, jobs)

    monkeypatch.setattr(sl, "_Slices", Slices)
    for margin_s, jobs in ((None, 1), (0.001, 2)):
        said: list[str] = []
        got = correlate(pts, memory=memory, jobs=2, slice_margin_s=margin_s, progress=said.append)
        assert got.to_dict() == one, margin_s
        assert len([s for s in said if s.endswith("findings")]) >= 3, said
        assert held.pop() == jobs, margin_s


def test_windows_under_a_budget_are_no_narrower_than_the_minimum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice reads every conversation alive in its window and margins: windows of a few
    ms in a burst read it all, once a window. Under a memory budget a window is
    `MIN_WINDOW_NS` wide at least (here 0.4 s of a 1.2 s capture: four slices at most,
    where the smallest slices make many more), and the verdict is the unsliced one."""
    a, b = busy_firewall(tmp_path, 300)
    pts = [PointInput("fw:eth0", a), PointInput("fw:eth1", b)]
    monkeypatch.setattr(sl, "BASE_BYTES", 0)
    monkeypatch.setattr(sl, "MIN_SLICE", 200)
    one = correlate(pts).to_dict()
    count = {}
    for width in (0, 400_000_000):
        monkeypatch.setattr(sl, "MIN_WINDOW_NS", width)
        said: list[str] = []
        got = correlate(pts, memory=1 << 20, progress=said.append)
        assert got.to_dict() == one, width
        count[width] = len([s for s in said if s.endswith("findings")])
    assert count[0] >= 10 and 2 <= count[400_000_000] <= 4, count


def test_a_failing_or_dying_slice_worker_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in a worker process is raised in the parent; a worker that dies
    is a one-line error with a hint, not a hang."""
    import os

    from hopcap.errors import CorrelationError

    pts = _scenario(tmp_path)

    def broken(run: object, k: int, clocks: object) -> list[object]:
        raise ValueError(f"slice {k} is broken")

    monkeypatch.setattr(sl, "_pass2", broken)
    with pytest.raises(ValueError, match=r"slice \d+ is broken"):
        correlate(pts, slice_packets=20, slice_margin_s=0.001, jobs=2)

    def dies(run: object, k: int, clocks: object) -> list[object]:
        os._exit(3)

    monkeypatch.setattr(sl, "_pass2", dies)
    with pytest.raises(CorrelationError, match="worker process died") as e:
        correlate(pts, slice_packets=20, slice_margin_s=0.001, jobs=2)
    assert e.value.hint == "retry with --jobs 1"


def test_conversation_keys_are_the_same_both_ways() -> None:
    import numpy as np

    a = (np.array([0], np.uint64), np.array([0xC6120001], np.uint64), np.array([40000]))
    b = (np.array([0], np.uint64), np.array([0xCB007150], np.uint64), np.array([80]))
    assert sl.conv_keys(6, a, b)[0] == sl.conv_keys(6, b, a)[0]
    assert sl.conv_keys(6, a, b)[0] != sl.conv_keys(17, a, b)[0]
    c = (b[0], b[1], np.array([81]))
    assert sl.conv_keys(6, a, b)[0] != sl.conv_keys(6, a, c)[0]


def test_datagrams_and_icmp_errors_sliced(tmp_path: Path) -> None:
    """UDP through NAT at four points (a QUIC-like flow with a dropped datagram, DNS
    queries) and an ICMP port unreachable translated back by the NAT: it travels with the
    conversation it quotes."""
    from pcapgen import UConv, dns_query, icmp_error
    from scapy.layers.inet import IP, UDP
    from test_dgram import dns_flows, four_points, nat, quic_flow, write_points

    convs = [quic_flow(), *dns_flows(8)]
    bad = UConv(("203.0.113.10", 45000), ("203.0.113.53", 53), t0=1_763_790_001.0, seed=77)
    q = bad.send(C2S, dns_query(0xBEEF, "down.example.test"))
    convs.append(bad)
    out = IP(src="198.18.1.1", dst="198.18.1.2", id=q.ipid, ttl=63) / UDP(sport=31999, dport=53)
    inn = IP(src="203.0.113.10", dst="203.0.113.53", id=q.ipid, ttl=64) / UDP(sport=45000, dport=53)
    extra = {
        "srv:eth0": [icmp_error(q.t + 0.0004, "198.18.1.2", "198.18.1.1", out / q.data, code=3)],
        "fw:eth1": [icmp_error(q.t + 0.0005, "198.18.1.2", "198.18.1.1", out / q.data, code=3)],
        "fw:eth0": [icmp_error(q.t + 0.0006, "203.0.113.53", "203.0.113.10", inn / q.data, code=3)],
        "client:eth0": [
            icmp_error(q.t + 0.0007, "203.0.113.53", "203.0.113.10", inn / q.data, code=3)
        ],
    }
    ports = {id(c): 31000 + i for i, c in enumerate(convs)}
    ports[id(bad)] = 31999
    views = four_points(
        lambda c: nat(c, ports[id(c)]), **{"fw:eth1": {"drop": lambda g: g.tag == "c4"}}
    )
    one = _same(write_points(tmp_path, convs, views, extra), (8, 30))
    kinds = {f["kind"] for fl in one["flows"] for f in fl["findings"]}
    assert {"icmp", "drop"} <= kinds


def test_a_point_that_captured_udp_in_other_slices_only(tmp_path: Path) -> None:
    """DNS queries in the first 2 s through a NAT firewall, TCP connections all along, and
    8 s in a query the firewall drops: fw:eth1 captured UDP, only none in that query's
    slice. Before: that slice said "fw:eth1 captured no UDP packets at all" (a gap); the
    whole capture's verdict is a drop inside fw."""
    from pcapgen import UConv, dns_query
    from test_dgram import dns_flows, four_points, nat, write_points
    from test_path import http_conv

    t0 = 1_763_790_000.0
    dns = dns_flows(6, every=0.3)
    late = UConv(("203.0.113.10", 41000), ("203.0.113.53", 53), t0=t0 + 8.0, seed=99)
    late.send(C2S, dns_query(0xBEEF, "late.example.test"))
    tcp = [http_conv(44000 + i, seed=700 + i, t0=t0 + i * 0.4) for i in range(30)]
    convs = [*dns, late, *tcp]
    ports = {id(c): 31000 + i for i, c in enumerate(convs)}
    gone = {"drop": lambda g: g.conv is late}
    views = four_points(lambda c: nat(c, ports[id(c)]), **{"fw:eth1": gone, "srv:eth0": gone})
    one = _same(write_points(tmp_path, convs, views), (40, 120))
    (fl,) = [fl for fl in one["flows"] if fl["client"] == "203.0.113.10:41000"]
    assert [(f["kind"], f["between"], f["packets"]) for f in fl["findings"]] == [
        ("drop", ["fw:eth0", "fw:eth1"], 1)
    ]


def test_huge_udp_conversation_cut_with_the_tcp_one(tmp_path: Path) -> None:
    """A long UDP conversation (a QUIC-like download with datagrams lost at the
    firewall) next to a huge TCP connection and DNS queries, through NAT: both are cut
    across the slices (no warning), the verdict is the unsliced one."""
    from pcapgen import UConv
    from test_dgram import dns_flows, four_points, nat, write_points

    t0 = 1_763_790_000.0
    q = UConv(("203.0.113.10", 50500), ("203.0.113.80", 443), t0=t0, seed=9)
    for i in range(400):
        q.t = t0 + 0.05 * i
        q.send(C2S, q.rnd.randbytes(60 + i % 50), tag=f"c{i}")
        q.send(S2C, q.rnd.randbytes(1000 + i % 200), tag=f"s{i}", dt=0.0003)
    c = Conv(client=("203.0.113.10", 42500), server=("203.0.113.80", 80), seed=77, t0=t0 + 0.01)
    c.handshake()
    for r in range(300):
        c.t = t0 + 0.01 + 0.066 * (r + 1)
        req = c.send(C2S, b"r%05d" % r + b"x" * 30, tag=f"req{r}",
                     resent=(0,) if r % 29 == 4 else ())  # fmt: skip
        if r % 29 == 4:
            req[0].tag = "lost"
        c.send(S2C, b"a%05d" % r + b"y" * 300, tag=f"resp{r}")
    c.close()
    convs = [q, c, *dns_flows(30)]
    for i, d in enumerate(convs[2:]):
        for g in d.segs:
            g.t += i * 0.6
    ports = {id(x): 31000 + i for i, x in enumerate(convs)}
    views = four_points(
        lambda x: nat(x, ports[id(x)]),
        **{"fw:eth1": {"drop": lambda g: g.tag == "lost" or g.tag in {"c17", "c201", "s333"}}},
    )
    pts = write_points(tmp_path, convs, views)
    one = _same(pts, (400, 1500))
    by_client = {fl["client"]: fl for fl in one["flows"]}
    kinds = {(f["kind"], f["direction"]): f["packets"]
             for f in by_client["203.0.113.10:50500"]["findings"]}  # fmt: skip
    assert kinds[("drop", "c2s")] == 2  # the QUIC-like datagrams lost at the firewall
    tcp = by_client["203.0.113.10:42500"]["findings"]
    assert (tcp[0]["kind"], tcp[0]["packets"]) == ("drop", len(range(4, 300, 29)))
    said = _cut_quietly(pts, 400)
    assert any(m.startswith("2 conversation(s) of more than 200 packets are cut") for m in said)


def _rtp_dns_ping(tmp: Path, n: int = 900) -> tuple[list[PointInput], dict[str, Any]]:
    """Through a NAT firewall (four points): an RTP-like stream (one way, a receiver
    report now and then) with ~1 % of its datagrams lost in the firewall, one duplicated
    on the server's segment and some re-marked (DSCP) by the firewall, a NATed DNS-like
    exchange on fixed ports with one answer lost and one query never answered, a long
    ping with a lost reply, an ICMP port unreachable about the RTP stream halfway (from
    the server, translated back by the NAT), and short DNS flows."""
    from pcapgen import Dg, UConv, dns_answer, dns_query, icmp_error
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw
    from test_dgram import dns_flows, four_points, nat, write_points

    t0 = 1_763_790_000.0
    rtp = UConv(("203.0.113.10", 16384), ("203.0.113.80", 5004), t0=t0, seed=5)
    for i in range(n):
        rtp.t = t0 + 0.02 * i
        hdr = bytes([0x80, 0x60]) + (i & 0xFFFF).to_bytes(2, "big") + (i * 160).to_bytes(4, "big")
        rtp.send(C2S, hdr + b"\x11\x22\x33\x44" + rtp.rnd.randbytes(160), tag=f"r{i}")
        if i % 100 == 50:
            rtp.send(S2C, b"\x81\xc9\x00\x07" + i.to_bytes(4, "big") + b"\0" * 24,
                     tag=f"rr{i}", dt=0.0004)  # fmt: skip
    dns = UConv(("203.0.113.10", 45353), ("203.0.113.53", 53), t0=t0 + 0.005, seed=6)
    for i in range(n // 2):
        dns.t = t0 + 0.005 + 0.04 * i
        qd = dns_query(i & 0xFFFF, f"q{i}.example.test")
        dns.send(C2S, qd, tag=f"q{i}")
        if i != n // 3:
            dns.send(S2C, dns_answer(qd, "192.0.2.7"), tag=f"a{i}", dt=0.0004)
    ping = UConv(("203.0.113.10", 777), ("203.0.113.80", 777), proto="icmp", t0=t0 + 0.011,
                 seed=7)  # fmt: skip
    for i in range(n // 3):
        ping.t = t0 + 0.011 + 0.06 * i
        ping.send(C2S, b"p" * 48, tag=f"e{i}", seq=i)
        ping.send(S2C, b"p" * 48, tag=f"er{i}", seq=i, dt=0.0003)
    small = dns_flows(20)
    for i, d in enumerate(small):
        for g in d.segs:
            g.t += i * 0.8
    convs = [rtp, dns, ping, *small]
    ports = {id(x): 32000 + i for i, x in enumerate(convs)}
    lost = {f"r{i}" for i in range(7, n, 97)} | {f"a{n // 5}", f"er{n // 7}"}
    inside = {"drop": lambda g: g.tag in lost and g.d == C2S}
    back = {"drop": lambda g: g.tag in lost and g.d == S2C}
    dup_of = rtp.segs[n // 2 + 3]  # duplicated by the firewall
    dup = (
        IP(src="198.18.1.1", dst="198.18.1.2", id=dup_of.ipid, ttl=63)
        / UDP(sport=ports[id(rtp)], dport=5004)
        / Raw(dup_of.data)
    )

    def remark(g: Any) -> Any:
        if g.conv is rtp and g.tag in {f"r{i}" for i in range(100, n, 211)}:
            return Dg(g.d, g.t, g.data, g.ipid, tos=0xB8, ttl=g.ttl, tag=g.tag, conv=g.conv)
        return g

    views = four_points(
        lambda x: nat(x, ports[id(x)]),
        **{
            "fw:eth1": {**inside, "change": remark},
            "srv:eth0": {**inside, "change": remark},
            "fw:eth0": back,
            "client:eth0": back,
        },
    )
    g = rtp.segs[len(rtp.segs) // 2]
    out = IP(src="198.18.1.1", dst="198.18.1.2", id=g.ipid, ttl=63) / UDP(
        sport=ports[id(rtp)], dport=5004
    )
    inn = IP(src="203.0.113.10", dst="203.0.113.80", id=g.ipid, ttl=64) / UDP(
        sport=16384, dport=5004
    )
    extra = {
        "srv:eth0": [
            icmp_error(g.t + 0.0004, "198.18.1.2", "198.18.1.1", out / g.data, code=3),
            (dup_of.t + 0.00031, dup),
        ],
        "fw:eth1": [
            icmp_error(g.t + 0.0005, "198.18.1.2", "198.18.1.1", out / g.data, code=3),
            (dup_of.t + 0.00021, dup.copy()),
        ],
        "fw:eth0": [icmp_error(g.t + 0.0006, "203.0.113.80", "203.0.113.10", inn / g.data, code=3)],
        "client:eth0": [
            icmp_error(g.t + 0.0007, "203.0.113.80", "203.0.113.10", inn / g.data, code=3)
        ],
    }
    pts = write_points(tmp, convs, views, extra)
    return pts, {"lost": lost, "n": n}


def test_huge_datagram_conversations_cut_across_slices(tmp_path: Path) -> None:
    """RTP-like, DNS-like and ping conversations far larger than a slice are cut (their
    head and each window's datagrams, no warning): drops, a duplicate, DSCP rewrites,
    the NAT link, an unanswered query, an ICMP error about the stream and each hop's
    latency are those of the unsliced run (one process and two)."""
    pts, info = _rtp_dns_ping(tmp_path)
    one = _same(pts, (150, 400))
    by_client = {(fl["proto"], fl["client"]): fl for fl in one["flows"]}
    rtp = by_client[("udp", "203.0.113.10:16384")]
    assert [leg["link"] for leg in rtp["legs"]] == ["same", "same", "nat", "same"]
    got = {(f["kind"], f["direction"], f.get("field")): f for f in rtp["findings"]}
    n_lost = len(range(7, info["n"], 97))
    assert got[("drop", "c2s", None)]["packets"] == n_lost
    assert got[("drop", "c2s", None)]["what"].endswith(f"({n_lost} datagrams)")
    assert got[("inject", "c2s", None)]["packets"] == 1  # the duplicate
    assert got[("inject", "c2s", None)]["between"] == ["fw:eth0", "fw:eth1"]
    assert got[("rewrite", "c2s", "ip.dscp")]["packets"] == len(range(100, info["n"], 211))
    assert ("icmp", "s2c", None) in got
    dns = by_client[("udp", "203.0.113.10:45353")]
    # the answer lost inside fw, and the query srv never answered (said since it is looked
    # for in a flow with other answers: in a sliced run as in one piece)
    assert [(f["kind"], f["direction"], f["between"], f["packets"]) for f in dns["findings"]] == [
        ("drop", "s2c", ["fw:eth1", "fw:eth0"], 1),
        ("drop", "c2s", ["srv:eth0", "srv"], 1),
    ]
    assert f"DNS query 0x{info['n'] // 3:04x} A q{info['n'] // 3}." in dns["findings"][1]["what"]
    ping = by_client[("icmp", "203.0.113.10:777")]
    assert [(f["kind"], f["direction"], f["packets"]) for f in ping["findings"]] == [
        ("drop", "s2c", 1)
    ]
    said = _cut_quietly(pts, 150)
    assert any(m.startswith("3 conversation(s) of more than 75 packets are cut") for m in said)


def test_data_the_server_never_took_sliced(tmp_path: Path) -> None:
    """Requests the server's host dropped after srv:eth0 (seen there, never acknowledged,
    sent again 0.2-0.5 s later) on 10 of 30 connections: each a drop by srv, once, in a
    sliced run as in one piece (a slice judges those it holds)."""
    convs = []
    for i in range(30):
        c = Conv(client=("203.0.113.10", 40000 + i), seed=10 + i, t0=1_763_790_000.0 + i * 0.05)
        c.handshake()
        req = c.seg(C2S, "PA", HTTP_REQ, tag="req")
        if i % 3 == 0:
            c.retransmit(req, dt=0.2 + i * 0.01)
        c.seg(S2C, "A", tag="ack", dt=c.rtt / 2)
        c.response(HTTP_RESP)
        c.close()
        convs.append(c)
    nat = {id(c): nat_map(c, sport=30000 + k) for k, c in enumerate(convs)}
    pts = points(tmp_path, convs, [
        ("client:eth0", lambda x: View()),
        ("fw:eth0", lambda x: View(delay=0.0001)),
        ("fw:eth1", lambda x: View(delay=0.0002, nat=nat[id(x)], ttl_dec={C2S: 1})),
        ("srv:eth0", lambda x: View(delay=0.0003, nat=nat[id(x)], ttl_dec={C2S: 1})),
    ])  # fmt: skip
    one = _same(pts, (20, 60))
    got = [(f["kind"], f["between"], f["packets"]) for fl in one["flows"] for f in fl["findings"]]
    assert got == [("drop", ["srv:eth0", "srv"], 1)] * 10


def test_streams_under_half_a_slice_alive_at_once_are_cut(tmp_path: Path) -> None:
    """Conversations of half a slice or less are read whole, but several alive at once
    would make one slice hold them all: the largest are cut (`_crowded`) until those
    alive together hold at most half a slice, at every point alike. Here the ping (600
    datagrams at each point: half a slice) is cut with the RTP and DNS streams; the
    verdict is the unsliced one."""
    pts, _info = _rtp_dns_ping(tmp_path)
    _same(pts, (2400,))
    said = _cut_quietly(pts, 2400)
    assert any(m.startswith("3 conversation(s) of more than 1200 packets are cut") for m in said)


def test_esp_and_quiet_conversations_cut(tmp_path: Path) -> None:
    """An ESP conversation larger than a slice between two hosts (no tunnel endpoint
    among the points: a datagram flow like any other) and a UDP one with a minute of
    silence (two flows unsliced: each piece between silences a conversation of the
    scan) are cut across the slices, no warning; the verdict is the unsliced one."""
    import random

    from pcapgen import write
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.packet import Raw

    rnd = random.Random(4)
    t0 = 1_763_790_000.0
    a: list[tuple[float, Any]] = []
    b: list[tuple[float, Any]] = []
    for i in range(500):
        t = t0 + 0.01 * i
        pkt = (
            IP(src="198.51.100.10", dst="198.51.100.1", id=i, ttl=64)
            / ESP(spi=0x1000, seq=i + 1)
            / Raw(rnd.randbytes(80))
        )
        a.append((t, pkt))
        if i % 50 != 9:
            b.append((t + 0.0002, pkt.copy()))
        # the quiet one: 250 datagrams, a minute and a half of silence, 250 more
        j = i if i < 250 else i + 9000
        u = (
            IP(src="198.51.100.20", dst="198.51.100.2", id=i, ttl=64)
            / UDP(sport=4500, dport=4500)
            / Raw(rnd.randbytes(60))
        )
        a.append((t0 + 0.01 * j + 0.005, u))
        b.append((t0 + 0.01 * j + 0.0052, u.copy()))
    a.sort(key=lambda x: x[0])
    b.sort(key=lambda x: x[0])
    pts = [
        PointInput(name="a:eth0", pcap=write(tmp_path / "a.pcap", a)),
        PointInput(name="b:eth0", pcap=write(tmp_path / "b.pcap", b)),
    ]
    one = _same(pts, (120, 300))
    esp = [fl for fl in one["flows"] if fl["proto"] == "esp"]
    assert [(f["kind"], f["packets"]) for f in esp[0]["findings"]] == [("drop", 10)]
    assert esp[0]["findings"][0]["what"].startswith("ESP spi=0x00001000 seq=10 len=")
    assert len([fl for fl in one["flows"] if fl["proto"] == "udp"]) == 2
    said = _cut_quietly(pts, 120)
    # the ESP conversation and the quiet one's two pieces (250 datagrams each)
    assert any(m.startswith("3 conversation(s) of more than 60 packets are cut") for m in said)


def test_esp_at_a_tunnel_endpoint_cut(tmp_path: Path) -> None:
    """Two interfaces of one host, the ESP outer flow on one and the inner packets on the
    other (a tunnel endpoint: paired by timing and size, decisions of the whole flow):
    the ESP conversation is cut across the slices like any other and whether it is a
    tunnel decided over the run (`tunnelcut`): the verdict is the unsliced one. The
    pairing is greedy in time order, so a datagram whose inner packet was lost takes the
    next one's, and so on: the 10 losses come out from seq=170 on, and a slice must
    start from the state the windows before it left (without it, its window pairs
    afresh and the losses come out elsewhere). Between two hosts the ESP conversation is
    a datagram flow like any other (`_endpoint_possible`)."""
    import random

    from pcapgen import write
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.packet import Raw

    rnd = random.Random(8)
    t0 = 1_763_790_000.0
    outer: list[tuple[float, Any]] = []
    inner: list[tuple[float, Any]] = []
    for i in range(400):
        t = t0 + 0.01 * i
        pkt = (
            IP(src="10.9.0.2", dst="10.9.0.80", id=i, ttl=64)
            / UDP(sport=5000 + i // 8, dport=6000)
            / Raw(rnd.randbytes(100 + i % 30))
        )
        n = len(bytes(pkt))
        body = rnd.randbytes(32 + (n + 15) // 16 * 16)
        esp = IP(src="198.51.100.10", dst="198.51.100.1", id=i) / ESP(spi=0x1000, seq=i + 1)
        outer.append((t, esp / Raw(body)))
        if i % 40 != 13:  # lost inside the endpoint
            inner.append((t + 0.0004, pkt))
    a = write(tmp_path / "gw_eth0.pcap", outer)
    b = write(tmp_path / "gw_tun0.pcap", inner, link="raw")
    pts = [PointInput(name="gw:eth0", pcap=a), PointInput(name="gw:tun0", pcap=b)]
    one = _same(pts, (120, 300))
    (esp,) = [fl for fl in one["flows"] if fl["proto"] == "esp"]
    assert [(f["kind"], f["between"], f["packets"]) for f in esp["findings"]] == [
        ("drop", ["gw:eth0", "gw:tun0"], 10)
    ]
    assert esp["findings"][0]["what"].startswith("ESP spi=0x00001000 seq=170 len=192 ipid=169 ")
    tunneled = [fl for fl in one["flows"] if any(leg["link"] == "tunnel" for leg in fl["legs"])]
    assert len(tunneled) == 50  # every inner flow (8 datagrams each)
    with _logged() as logged:
        sliced = correlate(pts, slice_packets=120, slice_margin_s=0.001).to_dict()
    said = [r.getMessage() for r in logged]
    assert any(m.startswith("1 conversation(s) of more than 60 packets are cut") for m in said)
    assert not [m for m in said if "ESP" in m]
    assert "warnings" not in sliced
    scans = [sl.scan(a), sl.scan(b)]
    try:
        assert sl._endpoint_possible(pts, scans)
        other = [PointInput(name="gw:eth0", pcap=a), PointInput(name="fw:eth1", pcap=b)]
        assert not sl._endpoint_possible(other, scans)
        assert scans[0].esp.shape[0] == 1 and not scans[1].esp.shape[0]
    finally:
        for sc in scans:
            sc.close()


def _tunnel_points(tmp: Path, rounds: int = 150, seed: int = 5) -> list[PointInput]:
    """An IPsec gateway (`gw`): the client's peer sends the inner packets in ESP (seen at
    client:eth0 and gw:eth0), gw decrypts them onto gw:tun0 (raw IP) and srv:eth0 sees
    them plain; the answers go back encrypted. Inside: a long TCP connection (`rounds`
    requests of 200-250 bytes answered by 2-3 full segments each, 30 ms apart) and short
    UDP flows alongside, and a long UDP stream (a datagram every 40 ms). Some of the
    client's requests arrive encrypted at gw:eth0 and never appear on gw:tun0
    (retransmitted 0.2 s later), some UDP datagrams too; some encrypted answers are lost
    between gw:eth0 and client:eth0."""
    import random

    from pcapgen import write
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.packet import Raw

    rnd = random.Random(seed)
    conv = Conv(client=("10.9.0.2", 40000), server=("10.9.0.80", 80), seed=seed)
    conv.handshake()
    gone: set[int] = set()  # inside gw
    transit: set[int] = set()  # between gw:eth0 and client:eth0
    for r in range(rounds):
        conv.t += 0.03
        req = conv.request(b"Q" * (200 + r % 50))
        resp = conv.response(bytes([r % 251]) * (3000 + 37 * (r % 40)))
        if r % 37 == 11:
            gone.add(id(req[0]))
            conv.retransmit(req[0], dt=0.2)
        if r % 53 == 20:
            transit.add(id(resp[1]))
    conv.close()
    segs = sorted(conv.segs, key=lambda s: s.t)
    items = [
        (s.t, s.d, pkt, id(s) in gone, id(s) in transit)
        for s, (_t, pkt) in zip(segs, render([conv], View()), strict=True)
    ]
    for i in range(rounds // 2):
        pkt = (
            IP(src="10.9.0.2", dst="10.9.0.53", id=i, ttl=64)
            / UDP(sport=5000 + i // 6, dport=6000)
            / Raw(rnd.randbytes(100 + i % 30))
        )
        items.append((conv.t0 + 0.1 + 0.061 * i, C2S, pkt, i % 29 == 7, False))
    for i in range(int((conv.t - conv.t0) / 0.04)):  # a long UDP stream (cut too)
        pkt = (
            IP(src="10.9.0.2", dst="10.9.0.90", id=i, ttl=64)
            / UDP(sport=7000, dport=7000)
            / Raw(rnd.randbytes(160 + i % 20))
        )
        items.append((conv.t0 + 0.02 + 0.04 * i, C2S, pkt, i % 50 == 17, False))
    items.sort(key=lambda x: x[0])
    seqs = {C2S: 0, S2C: 0}

    def wrap(pkt: Any, d: str) -> Any:
        n = len(bytes(pkt))
        body = rnd.randbytes(32 + (n + 15) // 16 * 16)  # header, padding, tag
        peer, gw = "198.51.100.10", "198.51.100.1"
        ip = IP(src=peer if d == C2S else gw, dst=gw if d == C2S else peer,
                id=rnd.randrange(1 << 16), ttl=64)  # fmt: skip
        seqs[d] += 1
        return ip / ESP(spi=0x1000 if d == C2S else 0x2000, seq=seqs[d]) / Raw(body)

    client: list[tuple[float, Any]] = []
    gw_out: list[tuple[float, Any]] = []
    tun: list[tuple[float, Any]] = []
    srv: list[tuple[float, Any]] = []
    for t, d, pkt, lost, tr in items:
        o = wrap(pkt, d)
        if d == C2S:
            client.append((t - 0.001, o))
            gw_out.append((t - 0.0003, o))
        else:
            gw_out.append((t + 0.0003, o))
            if not tr:
                client.append((t + 0.001, o))
        if not lost:
            tun.append((t, pkt))
            srv.append((t + 0.0002 * (1 if d == C2S else -1), pkt))
    pts = []
    for name, pk, link in (("client:eth0", client, "ether"), ("gw:eth0", gw_out, "ether"),
                           ("gw:tun0", tun, "raw"), ("srv:eth0", srv, "ether")):  # fmt: skip
        pk.sort(key=lambda x: x[0])
        path = write(tmp / f"{name.replace(':', '_')}.pcap", pk, link=link)
        pts.append(PointInput(name=name, pcap=path))
    return pts


def test_long_esp_tunnel_cut_across_many_slices(tmp_path: Path) -> None:
    """A long TCP connection and short UDP flows through an IPsec gateway
    (`_tunnel_points`), the ESP flow and the connection cut across the slices, with
    datagrams lost inside the endpoint and on the way: the unsliced verdict, in one job
    and two, both ways along the path (the inner flows come out of the tunnel at gw, or
    go into it: the outer point not seeing them plain is no gap). Among them a long UDP
    stream, cut: its slices merged as one flow (with the leg the tunnel put first)."""
    pts = _tunnel_points(tmp_path)
    one = _same(pts, (300, 1000))
    (esp,) = [fl for fl in one["flows"] if fl["proto"] == "esp"]
    assert [(f["kind"], f["between"], f["packets"]) for f in esp["findings"]] == [
        # the 4 requests; the 3 UDP datagrams' outer ones took (greedy) other inner
        # packets of a size that fits within 50 ms: the unsliced run's pairing, kept
        ("drop", ["gw:eth0", "gw:tun0"], 4),
        ("drop", ["gw:eth0", "client:eth0"], 3),
    ]
    (tcp,) = [fl for fl in one["flows"] if fl["proto"] == "tcp"]
    assert [(leg["point"], leg["link"]) for leg in tcp["legs"]] == [
        ("gw:eth0", "tunnel"), ("gw:tun0", "same"), ("srv:eth0", "same")
    ]  # fmt: skip
    said = _cut_quietly(pts, 300)
    # (at gw:tun0 the connection and the long UDP stream)
    assert any(m.startswith("2 conversation(s) of more than 150 packets are cut") for m in said)
    # the long UDP stream, inside, is taken for an encrypted UDP tunnel whose inner
    # packets would be ESP datagrams at gw:eth0 (their sizes fit, unsliced too): a cut
    # UDP flow at an endpoint is decided over the run the same way
    (udp,) = [fl for fl in one["flows"] if fl["client"] == "10.9.0.2:7000"]
    assert [leg["tunnel"] for leg in udp["legs"]][1:] == ["encrypted udp"] * 2
    back = _same(pts[::-1], (300,))
    (tcp,) = [fl for fl in back["flows"] if fl["proto"] == "tcp"]
    assert tcp["summary"] == "OK: into the esp tunnel at gw:eth0 (through srv:eth0 -> gw:tun0)"
    inner = [fl for fl in back["flows"] if fl["proto"] != "esp"]
    inner = [fl for fl in inner if fl["client"] != "10.9.0.2:7000"]
    assert len(inner) == 1 + 13 and all(fl["summary"].startswith("OK: into") for fl in inner)


def _quiet_points(tmp: Path) -> tuple[list[PointInput], dict[str, Any]]:
    """Through a NAT firewall (two points, `a` inside, `b` outside): a UDP conversation
    (a VPN-like keep-alive and data channel) that falls silent twice for more than a
    minute, so that it is three flows, the NAT giving each a new port (its mapping
    expired in the silence); datagrams lost in the firewall in each piece, an answer now
    and then, an ICMP error (time exceeded, from the firewall) about one of the third
    piece; a ping that falls silent for 65 s with a reply lost; short DNS-like flows all
    along (where the windows fall, also within the silences)."""
    import random

    from pcapgen import write
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.packet import Raw

    rnd = random.Random(21)
    t0 = 1_763_790_000.0
    a: list[tuple[float, Any]] = []
    b: list[tuple[float, Any]] = []
    cli, srv, nat = "203.0.113.10", "203.0.113.80", "198.18.1.1"
    pieces = [(0.0, 300), (95.0, 40), (170.0, 320)]  # start (s), datagrams
    lost: list[int] = []
    err_at = None
    for p, (start, n) in enumerate(pieces):
        nport = 31000 + p
        for i in range(n):
            t = t0 + start + 0.01 * i
            data = rnd.randbytes(60 + i % 40)
            ipid = (p * 1000 + i) & 0xFFFF
            a.append((t, IP(src=cli, dst=srv, id=ipid, ttl=64) / UDP(sport=4500, dport=4500)
                      / Raw(data)))  # fmt: skip
            if (i + 7 * p) % 37 == 11:
                lost.append(p)
            else:
                b.append((t + 0.0003, IP(src=nat, dst=srv, id=ipid, ttl=63)
                          / UDP(sport=nport, dport=4500) / Raw(data)))  # fmt: skip
            if p == 2 and i == 200:
                q = IP(src=cli, dst=srv, id=ipid, ttl=1) / UDP(sport=4500, dport=4500) / Raw(data)
                err = IP(src="203.0.113.1", dst=cli, id=9) / ICMP(type=11, code=0) / q
                err_at = t + 0.0001
                a.append((err_at, err))
            if i % 25 == 3:  # an answer
                back = rnd.randbytes(30)
                b.append((t + 0.002, IP(src=srv, dst=nat, id=i, ttl=60)
                          / UDP(sport=4500, dport=nport) / Raw(back)))  # fmt: skip
                a.append((t + 0.0023, IP(src=srv, dst=cli, id=i, ttl=59)
                          / UDP(sport=4500, dport=4500) / Raw(back)))  # fmt: skip
    for p, (start, n) in enumerate([(0.5, 150), (66.0, 150)]):  # the ping
        for i in range(n):
            t = t0 + start + 0.02 * i
            seq = p * 1000 + i
            req = IP(src=cli, dst=srv, id=seq, ttl=64) / ICMP(type=8, id=777, seq=seq) / (b"p" * 48)
            rep = IP(src=srv, dst=cli, id=seq, ttl=60) / ICMP(type=0, id=777, seq=seq) / (b"p" * 48)
            out_req = (
                IP(src=nat, dst=srv, id=seq, ttl=63) / ICMP(type=8, id=5000, seq=seq) / (b"p" * 48)
            )
            out_rep = (
                IP(src=srv, dst=nat, id=seq, ttl=60) / ICMP(type=0, id=5000, seq=seq) / (b"p" * 48)
            )
            a.append((t, req))
            b.append((t + 0.0003, out_req))
            b.append((t + 0.001, out_rep))
            if not (p == 1 and i == 77):
                a.append((t + 0.0013, rep))
    for i in range(240):  # DNS-like, one a second
        t = t0 + 0.25 + i
        q = rnd.randbytes(30)
        r = rnd.randbytes(60)
        a.append((t, IP(src=cli, dst="203.0.113.53", id=i) / UDP(sport=20000 + i, dport=53)
                  / Raw(q)))  # fmt: skip
        b.append((t + 0.0003, IP(src=nat, dst="203.0.113.53", id=i, ttl=63)
                  / UDP(sport=40000 + i, dport=53) / Raw(q)))  # fmt: skip
        b.append((t + 0.001, IP(src="203.0.113.53", dst=nat, id=i) / UDP(sport=53, dport=40000 + i)
                  / Raw(r)))  # fmt: skip
        a.append((t + 0.0013, IP(src="203.0.113.53", dst=cli, id=i, ttl=63)
                  / UDP(sport=53, dport=20000 + i) / Raw(r)))  # fmt: skip
    a.sort(key=lambda x: x[0])
    b.sort(key=lambda x: x[0])
    pts = [
        PointInput(name="fw:eth0", pcap=write(tmp / "a.pcap", a)),
        PointInput(name="fw:eth1", pcap=write(tmp / "b.pcap", b)),
    ]
    return pts, {"lost": lost, "err_at": err_at}


def test_quiet_datagram_conversations_cut_piece_by_piece(tmp_path: Path) -> None:
    """UDP and ping conversations with a minute of silence or more, larger than a slice:
    each piece between silences (a flow of the unsliced run) is a conversation of the
    scan, cut across the slices on its own or read whole when small; the windows in a
    silence read neither piece. No warning; the verdict is the unsliced one (one process
    and two): three UDP flows each NATed to its own port with its own drops, the ICMP
    error in the third, two ping flows, the lost reply in the second."""
    pts, info = _quiet_points(tmp_path)
    one = _same(pts, (60, 150, 400))
    mine = sorted(
        (fl for fl in one["flows"] if fl["client"] == "203.0.113.10:4500"),
        key=lambda x: x["first_ts"],
    )
    assert [fl["legs"][1]["tuple"].split(" > ")[0] for fl in mine] == [
        "198.18.1.1:31000",
        "198.18.1.1:31001",
        "198.18.1.1:31002",
    ]
    for p, fl in enumerate(mine):
        drops = [f["packets"] for f in fl["findings"] if f["kind"] == "drop"]
        assert drops == [info["lost"].count(p)], (p, fl["findings"])
    assert [f["kind"] for f in mine[2]["findings"]].count("icmp") == 1
    ping = sorted((fl for fl in one["flows"] if fl["proto"] == "icmp"), key=lambda x: x["first_ts"])
    assert [[(f["kind"], f["direction"], f["packets"]) for f in fl["findings"]] for fl in ping] == [
        [],
        [("drop", "s2c", 1)],
    ]
    said = _cut_quietly(pts, 60)
    # the UDP conversation's three pieces and the ping's two (a datagram counts twice: at
    # 400 packets a slice, the piece of 40 is read whole)
    assert any(m.startswith("5 conversation(s) of more than 30 packets are cut") for m in said)


def test_quiet_conversation_pieces_by_time() -> None:
    """The scan's pieces of quiet conversations (`_Pieces`, a chunk at a time, in file
    order, as `build_dflows` splits flows) and a slice's reading of rows into them by
    time (`_piece_keys`) agree; an ICMP error goes with the piece under way."""
    from types import SimpleNamespace

    import numpy as np

    s = 10**9
    k = np.array([5, 5, 7, 5, 5, 7, 9, 5], np.uint64)
    ts = np.array([0, 10, 20, 100, 101, 150, 151, 300], np.int64) * s
    flow = np.array([1, 1, 1, 1, 0, 1, 1, 1], bool)  # the fifth: an ICMP error
    pc = sl._Pieces()
    got = np.concatenate([pc.add(k[:3], ts[:3], flow[:3]), pc.add(k[3:], ts[3:], flow[3:])])

    def pk(conv: int, j: int) -> int:
        return int(sl.piece_key(np.array([conv], np.uint64), np.array([j]))[0])

    assert pk(5, 0) == 5 and len({pk(5, 1), pk(5, 2), pk(7, 1), 5, 7}) == 5
    want = [5, 5, 7, pk(5, 1), pk(5, 1), pk(7, 1), 9, pk(5, 2)]
    assert got.tolist() == want
    qk, qn = pc.quiet()
    assert qk.tolist() == [5, 7] and qn.tolist() == [3, 2]
    keys = np.unique(got)
    first = np.array([int(ts[got == x].min()) for x in keys], np.int64)
    last = np.array([int(ts[got == x].max()) for x in keys], np.int64)
    z = np.zeros(keys.shape[0], np.int64)
    table, tangled, _ = sl._piece_table((keys, first, last, z, z), qk, qn)
    assert tangled.shape[0] == 0
    sc = SimpleNamespace(pieces=table)
    assert sl._piece_keys(sc, k, ts).tolist() == want  # type: ignore[arg-type]
    # rows of a slice in another order, one before the conversation's first piece
    o = np.array([7, 2, 0, 4])
    early = np.array([0, 20, 0, 101], np.int64) * s - np.array([0, 0, 1, 0])
    assert sl._piece_keys(sc, k[o], early).tolist() == [5, 7, 5, pk(5, 1)]  # type: ignore[arg-type]
    # pieces that overlap in time (a file out of time order): one conversation, whole
    last2 = last.copy()
    last2[keys == 5] = 200 * s
    table2, tangled2, (src, dst) = sl._piece_table((keys, first, last2, z, z), qk, qn)
    assert tangled2.tolist() == [5] and table2[0].tolist() == [7]
    assert sl._remap(got, src, dst).tolist() == [5, 5, 7, 5, 5, pk(7, 1), 9, 5]


def test_crowding_rule_cuts_alike_at_every_point() -> None:
    """`_crowded`: of three streams under half a slice alive at once (at two points, the
    second with a little loss), the largest are cut until half a slice is left alive,
    then every one of at least 3/4 of the smallest cut, at both points alike; streams
    alive one after the other, small ones, and those never cut are left."""
    import numpy as np

    def scan(keys: list[int], first: list[int], last: list[int], rows: list[int]) -> Any:
        o = np.argsort(np.array(keys, np.uint64))
        k, f, la, r = (np.array(x)[o] for x in (keys, first, last, rows))
        return sl.Scan(Path("x"), None, 0, [], None, {}, int(r.sum()), 0, None, None, None,
                       k.astype(np.uint64), f, la, r)  # fmt: skip

    s = 10**9
    # keys 1-3: three streams of 900 alive over [0, 100 s]; 4: one of 900 alone later;
    # 5: a small one; at b the same streams (other keys: NAT) with 1 % fewer packets
    a = scan([1, 2, 3, 4, 5], [0, s, 2 * s, 200 * s, 0], [100 * s] * 3 + [300 * s, 100 * s],
             [900, 880, 860, 900, 200])  # fmt: skip
    b = scan([11, 12, 13, 14, 15], [0, s, 2 * s, 200 * s, 0], [100 * s] * 3 + [300 * s, 100 * s],
             [891, 871, 851, 891, 198])  # fmt: skip
    got = sl._crowded([a, b], 1000, None, [0, 0])
    # alive together: 6 of ~870 each, 5,253 in all; the largest five cut (880 the least),
    # then every one of 660 or more: all three, and the later one alone, at both points
    assert [x.tolist() for x in got] == [[1, 2, 3, 4], [11, 12, 13, 14]]
    assert [x.tolist() for x in sl._crowded([a, None], 1800, None, [0, 0])] == [[1, 2, 3, 4], []]
    assert [x.shape[0] for x in sl._crowded([a, b], 10_000, None, [0, 0])] == [0, 0]
    b.whole = np.array([11, 12, 13], np.uint64)  # never cut there
    assert [x.tolist() for x in sl._crowded([a, b], 1000, None, [0, 0])][1] == [14]


def _keep_alive_through_a_proxy(
    tmp: Path, n: int = 40, itself: int = 0, gap: float = 0.05
) -> list[PointInput]:
    """One keep-alive client connection of `n` requests through an L7 proxy that opens a
    connection to the server for each (lb:eth0, lb:eth1, srv:eth0); the first transmission
    of every 7th forwarded request is lost before the server (retransmitted 0.2 s later).
    `itself`: every such request (the 1st, the `itself`+1st, ...) the proxy answers itself
    (a redirect: no connection beyond it). `gap`: seconds between an answer and the next
    request."""
    from test_lb_reuse import Site, forward, req, resp, xff

    site = Site()
    f = site.front(0)
    for i in range(n):
        # the request reaches the proxy, which then connects to the server for it
        site._at(f).request(req(i))
        site.t = f.t
        if itself and i % itself == 0:
            site._at(f).response(b"HTTP/1.1 302 Found\r\nLocation: /item/%d\r\n\r\n" % i)
            site.t = f.t + gap
            continue
        b = site.back(i)
        forward(b, xff(req(i), f.client[0]), lost=i % 7 == 3)
        b.response(resp(i))
        site.t = b.t
        site.close(b)
        site._at(f).response(resp(i))
        site.t = f.t + gap
    site.close(f)
    return site.points(tmp, lambda s: s.tag == "lost")


@pytest.mark.parametrize("itself", [0, 9])
def test_keep_alive_client_through_a_proxy_cut_across_slices(itself: int, tmp_path: Path) -> None:
    """A client connection cut across the slices whose requests went over a connection
    beyond the proxy each: the merged flow has every one of them, as the unsliced verdict
    has them (their legs in order, each one's findings apart: was the legs of the slice
    where the flow starts only, and one finding of all their drops added up). The requests
    the proxy answered itself (`itself`) are numbered over the whole client connection
    (`exchanges 1, 10, 19, 28, 37 of 40`), each judged by the slice whose window it
    begins in: was one note a slice, each numbering what it read of the connection
    (`exchange 13 of 36`, and the exchanges of other windows, whose connections beyond the
    proxy it did not read, as not carried). The verdict warns that the proxy's links were
    made per slice only when an exchange went on past what its slice read (here none:
    was always; docs/scale.md, Limits)."""
    pts = _keep_alive_through_a_proxy(tmp_path, itself=itself)
    one = correlate(pts).to_dict()
    (front,) = [fl for fl in one["flows"] if fl["client"].endswith(":55000")]
    n_back = 40 - (5 if itself else 0)
    assert len(one["flows"]) == 1 and len(front["legs"]) == 1 + 2 * n_back
    assert [f["packets"] for f in front["findings"]] == [1] * 6  # one a lost request
    assert front["legs"][0].get("details", []) == (
        ["exchanges 1, 10, 19, 28, 37 of 40 on this connection: no connection beyond the "
         "proxy carried their request (answered by the proxy itself, or not captured there)"]
        if itself else []
    )  # fmt: skip
    assert not one.get("warnings")
    for jobs in (1, 2):
        said: list[str] = []
        got = correlate(pts, slice_packets=60, slice_margin_s=1.0, jobs=jobs,
                        progress=said.append).to_dict()  # fmt: skip
        assert len([s for s in said if s.endswith("findings")]) > 10
        assert got == one  # (no exchange longer than the margin: no warning)


def test_keep_alive_client_silent_longer_than_the_margin_through_a_proxy(
    tmp_path: Path,
) -> None:
    """A keep-alive client through a proxy whose requests come 3 s apart: with the margin
    of the run (`PROXY_MARGIN_NS` in pass 2) the unsliced verdict; with a margin given
    shorter than the silences, a slice reads a request after a second of nothing and
    takes it for part of the exchange before (or splits it from where the stream was in
    the packets it read first), so its connection beyond the proxy is left a flow of its
    own: the verdict says so (was: no warning at such a margin, nor the unsliced verdict
    at 20 packets a slice: another cut flow of a connection beyond the proxy that pass 1,
    reading 2 s margins, did not link; it is the flow the slice where it starts put it
    in)."""
    pts = _keep_alive_through_a_proxy(tmp_path, n=30, gap=3.0)
    one = correlate(pts).to_dict()
    assert len(one["flows"]) == 1 and not one.get("warnings")
    for n in (20, 40):
        assert correlate(pts, slice_packets=n).to_dict() == one
        narrow = correlate(pts, slice_packets=n, slice_margin_s=1.0).to_dict()
        assert len(narrow["flows"]) > 1
        (warned,) = narrow["warnings"]
        assert warned.startswith("1 flow(s) through an L7 proxy were longer than a time slice")


N_SLOW = 40


def test_exchanges_through_a_proxy_longer_than_the_margin_are_read_whole(tmp_path: Path) -> None:
    """Two keep-alive clients through an L7 proxy sending identical requests, each with
    its own answers; the connection beyond the proxy for the first one's requests has its
    SYN answered only the third time (3 s later), while the second one's, sent 50 ms
    before, goes out at once. A slice that reads the first client's exchange without its
    answer (the margin after its window is 2 s) links the second client's connection to
    it (the same request, nearer in time) and leaves the second client's request not
    carried. Pass 2 reads 8 s margins when cut flows go through a proxy (`PROXY_MARGIN_NS`):
    the unsliced verdict (was: other links, and notes numbered per slice); a margin given
    (`slice_margin_s`) is the one read, and the verdict warns when an exchange went on
    past it."""
    pts = _slow_backends(tmp_path)
    one = correlate(pts).to_dict()
    assert len(one["flows"]) == 2 and not one.get("warnings")
    for fl in one["flows"]:
        assert len(fl["legs"]) == 1 + 2 * N_SLOW and "details" not in fl["legs"][0]
    for jobs in (1, 2):
        said: list[str] = []
        got = correlate(pts, slice_packets=40, jobs=jobs, progress=said.append).to_dict()
        assert len([s for s in said if s.endswith("findings")]) > 4
        assert got == one
    narrow = correlate(pts, slice_packets=40, slice_margin_s=2.0).to_dict()
    assert narrow["flows"] != one["flows"]
    (warned,) = narrow["warnings"]
    assert warned.startswith("2 flow(s) through an L7 proxy were longer than a time slice")


def test_the_proxy_margin_stays_within_the_memory_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """8 s margins beyond a proxy make a slice read 24 s of the capture or more: under a
    memory budget whose slices hold much less, pass 2 reads the widest margin whose slices
    read at most twice a slice of the budget or what its slices read already (the capture
    above at ~40 packets a slice), and says so; a budget whose slices hold the 8 s margins
    gives the unsliced verdict."""
    pts = _slow_backends(tmp_path)
    one = correlate(pts).to_dict()
    budget, _total = _budgets(pts, monkeypatch)
    # chunks of a few dozen records, as a large capture's are small beside it: the scan
    # places the packets of the conversations cut across slices in time by their chunks
    from hopcap.correlate import reader as rd

    monkeypatch.setattr(rd, "PARSE_CHUNK", 31)
    monkeypatch.setattr(rd, "CHUNK", 31)
    monkeypatch.setattr(sl, "DENSE_ROWS", 4)
    caplog.set_level(logging.INFO, logger="hopcap.correlate")
    tight = correlate(pts, memory=budget(40), jobs=1).to_dict()
    got = re.search(
        r"margins of ([\d.]+) s, not 8.0 s, to keep within the memory budget", caplog.text
    )
    assert got and 2.0 <= float(got[1]) < 8.0, caplog.text
    # (links the narrower margin read in part, if any, are warned of)
    assert tight == one or tight["warnings"][0].startswith("2 flow(s) through an L7 proxy")
    caplog.clear()
    said: list[str] = []
    # (~400 packets a slice: ~28 s windows, the clients' connections of 206 packets cut)
    roomy = correlate(pts, memory=budget(400), jobs=1, progress=said.append).to_dict()
    assert "the findings read margins of 8.0 s" in caplog.text, caplog.text
    assert len([s for s in said if s.endswith("findings")]) > 1
    assert roomy == one


def _slow_backends(tmp_path: Path) -> list[PointInput]:
    """The points of `test_exchanges_through_a_proxy_longer_than_the_margin_are_read_whole`."""
    from test_lb_reuse import LB, SRV, Site, forward, req, resp, xff

    site = Site()
    f0, f1 = site.front(0), site.front(1)
    t0 = site.t
    for i in range(N_SLOW):
        t = t0 + 0.2 + 4.0 * i
        f1.t = t - 0.05
        f1.request(req(1, same=True))
        f0.t = t
        f0.request(req(1, same=True))
        for f, n, delays in ((f1, 2 * i + 1, ()), (f0, 2 * i, (1.0, 2.0))):
            b = Conv(client=(LB, 38000 + n), server=SRV, seed=900 + n, t0=t + 0.0005)
            b.seg(C2S, "S", mss=1460, tag="synlost" if delays else "syn", advance=False)
            for k, dt in enumerate(delays):
                last = k == len(delays) - 1
                b.seg(C2S, "S", mss=1460, tag="syn" if last else "synlost", dt=dt, advance=False)
            b.nxt[C2S] += 1
            b.seg(S2C, "SA", mss=1460, tag="synack", dt=b.rtt / 2)
            b.seg(C2S, "A", tag="ack", dt=b.rtt / 2)
            forward(b, xff(req(1, same=True), f.client[0]))
            b.response(resp(n))
            b.close()
            site.backs.append(b)
            f.t = b.t
            f.response(resp(n))
    site.close(f0)
    site.close(f1)
    return site.points(tmp_path, lambda s: s.tag == "synlost")


def test_a_connection_beyond_the_proxy_not_linked_where_it_starts_is_left_out() -> None:
    """A connection beyond a proxy that the slice where it starts did not link to the cut
    flow (the client's side of an exchange longer than the margin read in part there) and
    kept as a flow of its own, judged whole: a later slice that links it judges its
    packets once more, so the merge leaves it out (was: its drops counted twice, 11 flows
    on the lb-srv-loss lab run at `--memory 5M`), or linked into a flow it kept whole:
    likewise. The views of one connection (a later
    slice may read it in part: from a later first packet) are one: its legs from where it
    starts, its findings added up; a tuple used again later is another. A connection is
    the flow's that the slice where it starts linked it to."""
    from hopcap.correlate.findings import Built
    from hopcap.model import Finding, Leg

    def drop(n: int, t: float) -> Finding:
        return Finding("drop", "c2s", ("lb:eth1", "srv:eth0"), n, 0, t,
                       "ACK seq=1 tsval=1 ipid=1")  # fmt: skip

    def sub(tup: str, t0: int, k: int, fs: list[Finding]) -> sl._Sub:
        legs = (Leg("lb:eth1", tup, "proxied", (f"slice {k}",)), Leg("srv:eth0", tup, "same"))
        win = (k * 10_000, (k + 1) * 10_000)  # (the point's clock 100 ahead)
        return sl._Sub(("lb:eth1", tup, t0), t0 + 300, win, 100, legs, fs, [], 0, {})

    def seg(subs: list[sl._Sub]) -> sl._Seg:
        b = Built("tcp", "c", "s", (), (), "", 0.0)
        return sl._Seg(0, False, b, {}, 0, 0, None, None, None, subs=subs)

    a = "198.18.2.1:38001 > 198.18.2.2:80"
    b = "198.18.2.1:38002 > 198.18.2.2:80"
    segs = [
        seg([sub(a, 9_950, 0, [drop(1, 2.0)])]),
        # b starts in window 0 (where it is not this flow's), a read in part from 10_010
        seg([sub(b, 9_000, 1, [drop(1, 3.0)]), sub(a, 10_010, 1, [drop(2, 2.5)])]),
        seg([sub(a, 30_500, 3, [drop(1, 4.0)])]),  # its tuple again, later: another one
    ]
    kept = {("lb:eth1", b, (9_000 - 100) / 1e9)}  # b, kept by the slice where it starts
    assert [len(x) for x in sl._assign_subs({0: segs}, set()).values()] == [4]
    got = sl._merged_subs([], sl._assign_subs({0: segs}, kept)[0])
    assert [[x.tuple for x in legs] for legs, *_ in got] == [[a, a], [a, a]]
    assert [legs[0].details for legs, *_ in got] == [("slice 0",), ("slice 3",)]
    # another client's flow linked a in a later slice (identical requests nearer in time
    # there): it is the flow's that the slice where it starts linked it to, counted once
    other = [seg([sub(a, 10_010, 1, [drop(1, 2.7)])])]
    moved = sl._assign_subs({0: segs, 1: other}, kept)
    assert sorted(moved) == [0] and len(moved[0]) == 4
    assert [[(x.packets, x.first_ts) for x in fs] for _l, fs, *_ in got] == [
        [(3, 2.0)],
        [(1, 4.0)],
    ]
    # one the slice where it starts linked into another client's flow that it kept whole
    # (a short client's; the slice before read the cut flow's exchange at the edge of what
    # it reads, its answer not yet, and linked it there): no cut flow's (was: in both
    # flows, 26 on the rsb lab run at `--memory 20M`)
    c = "198.18.2.1:38003 > 198.18.2.2:80"
    late = [seg([sub(c, 10_500, 0, [drop(1, 2.9)])])]
    assert [len(x) for x in sl._assign_subs({0: segs + late}, kept).values()] == [4]
    linked = {("lb:eth1", c, 10_500)}
    assert [len(x) for x in sl._assign_subs({0: segs + late}, kept, linked).values()] == [3]
    # the legs the merge does not take (a's view of slice 1: not where it starts, after
    # slice 0's), dropped as the slices' results come in: the same merge
    prune = sl._SubLegs()
    for x in segs:
        prune.prune([x])
    assert [len(v.legs) for x in segs for v in x.subs] == [2, 2, 0, 2]
    assert sl._merged_subs([], sl._assign_subs({0: segs}, kept)[0]) == got


def test_connections_on_a_reused_tuple_of_a_cut_conversation_sliced(tmp_path: Path) -> None:
    """Connections on a reused tuple, each a flow of its own as unsliced, when their
    conversation is cut across the slices (each is carried across them on its own: the
    scan splits a TCP conversation into its connections as `conns` does). Two from one
    client port 40 s apart through a NAT (other public ports: one conversation at fw:eth0),
    the later one losing a request inside fw; and one public port the NAT gives two other
    client ports 30 s apart (one conversation at fw:eth1). Was: the later connection merged
    into the earlier one's flow (one flow of the two, its drop in that flow), and a
    warning."""
    t0 = 1_763_790_000.0

    def conv(port: int, seed: int, t: float, lost: tuple[int, ...] = ()) -> Conv:
        return keepalive(("203.0.113.10", port), seed, t, 6, 0.3, lost)

    early = conv(42322, 90, t0)
    late = conv(42322, 91, t0 + 40, (3,))
    lost = [s for s in late.segs if s.tag == "req"][3]
    a = conv(42400, 92, t0 + 5)
    b = conv(42401, 93, t0 + 35)
    port = {id(early): 28355, id(late): 30704, id(a): 31000, id(b): 31000}

    def fw(c: Conv) -> View:
        nat = nat_map(c, sport=port[id(c)])
        return View(delay=0.0001, ttl_dec={C2S: 1}, nat=nat, drop=lambda s: s is lost)

    spec = [("fw:eth0", lambda c: View(ttl_dec={S2C: 1})), ("fw:eth1", fw)]
    pts = points(tmp_path, [early, a, b, late], spec)
    whole = correlate(pts)
    assert len(whole.flows) == 4 and not whole.warnings
    [drop] = [x for fl in whole.flows for x in fl.findings]
    assert drop.kind == "drop" and drop.first_ts is not None and drop.first_ts > t0 + 40
    one = whole.to_dict()
    for n in (10, 40):  # each connection is cut (more than half a slice), then one in two
        for jobs in (1, 2):
            said: list[str] = []
            got = correlate(pts, slice_packets=n, slice_margin_s=0.001, jobs=jobs,
                            progress=said.append)  # fmt: skip
            assert len([s for s in said if s.endswith("findings")]) >= 2  # really sliced
            assert got.to_dict() == one, (n, jobs)


def test_tunnel_pairing_as_a_stream() -> None:
    """The main process pairs a cut tunnel a window at a time (`tunnelcut._Stream`): the
    pairs of `tunnel._pair` over the whole (their count and overheads; losses shift the
    greedy pairing across windows), the state at each window's place the one a slice
    starts from, and it keeps only what later packets may take: with no datagrams one
    way, not the inner packets of the run."""
    import numpy as np

    from hopcap.correlate import tunnel, tunnelcut

    rng = np.random.default_rng(3)
    n = 20_000
    o_ts = np.cumsum(rng.integers(200_000, 3_000_000, n)).astype(np.int64)  # 0.2-3 ms apart
    o_len = rng.integers(180, 260, n).astype(np.int64)
    keep = rng.random(n) > 0.01  # lost inside the endpoint
    i_ts = (o_ts + rng.integers(20_000, 400_000, n))[keep]
    i_len = (o_len - 32 - rng.integers(0, 16, n))[keep]
    o = np.argsort(i_ts, kind="stable")
    i_ts, i_len = i_ts[o], i_len[o]
    whole = tunnel._pair(o_ts, o_len, i_ts, i_len, True)
    edges = [int(x) for x in np.linspace(0, int(o_ts[-1]) + 1, 41)]
    snap_at = [tunnelcut._LO] + [e - 5_000_000 for e in edges[1:-1]]
    st = tunnelcut._Stream(True, snap_at)
    empty = tunnelcut._Stream(True, [tunnelcut._LO])  # no datagram back: only inner ones
    z = np.zeros(0, np.int64)
    held = 0
    for a, b in pairwise(edges):
        upto = b if b < edges[-1] else tunnelcut._HI
        fo = (o_ts >= a) & (o_ts < upto)
        fi = (i_ts >= a) & (i_ts < upto)
        st.feed((o_ts[fo], o_len[fo]), (i_ts[fi], i_len[fi]), upto, upto)
        empty.feed((z, z), (i_ts[fi], i_len[fi]), upto, upto)
        held = max(held, st.sts.shape[0], empty.sts.shape[0])
    assert st.firsts == n and st.pairs == len(whole) and n - len(whole) > 100
    ovh = np.bincount([int(o_len[i] - i_len[j]) for i, j in whole.items()], minlength=201)
    assert (st.ovh == ovh).all()
    assert held < n // 20  # a window's and the pairing's 50 ms
    # a slice that starts from the state kept for its window pairs as the whole does
    for k in (7, 23):
        at, state = st.snaps[k]
        f0 = int(np.searchsorted(o_ts, at))
        used = tunnelcut._mark_used(i_ts, i_len, state)
        part, _lo = tunnel.greedy(o_ts[f0:], o_len[f0:], i_ts, i_len, True, used)
        assert {f0 + i: j for i, j in part.items()} == {i: j for i, j in whole.items() if i >= f0}


def _reuses(tmp: Path) -> Path:
    """One client port carrying connections one after another (new ISNs, SYNs retried with
    the same one), NAT ports used again by other clients' ports, and a client that resets
    a stale connection's challenge ACK and sends its SYN again with the same ISN."""
    from pcapgen import frame_bytes, write_pcap_raw
    from scapy.layers.inet import ICMP, IP, TCP

    t0 = 1_763_790_000.0
    convs = []
    for k in range(6):
        c = Conv(client=("198.18.0.10", 41000 + k % 2), seed=20 + k, t0=t0 + k * 3)
        c.handshake(syn_retries=k % 3)
        c.request(HTTP_REQ)
        c.response(HTTP_RESP)
        c.close()
        convs.append(c)
    frames = [(round(t * 1e9), frame_bytes(p, "ether")) for t, p in render(convs, View())]
    a, b = "198.18.0.20", "203.0.113.80"

    def pkt(t: float, fwd: bool, fl: str, seq: int, ack: int = 0) -> tuple[int, bytes]:
        s, d, sp, dp = (a, b, 42000, 80) if fwd else (b, a, 80, 42000)
        p = IP(src=s, dst=d) / TCP(sport=sp, dport=dp, flags=fl, seq=seq, ack=ack)
        return round(t * 1e9), frame_bytes(p, "ether")

    t1 = t0 + 30
    frames += [
        pkt(t1, True, "S", 100),
        pkt(t1 + 0.001, False, "A", 7000, 55),  # a challenge ACK of the stale connection
        pkt(t1 + 0.002, True, "R", 55),
        pkt(t1 + 0.003, True, "S", 100),  # the same ISN, after its RST: another connection
        pkt(t1 + 0.004, False, "SA", 900, 101),
        pkt(t1 + 0.005, True, "A", 101, 901),
    ]
    # an ICMP error about the second connection: with it, not the first (its piece by time)
    err = IP(src="198.18.0.1", dst=a) / ICMP(type=3, code=4, nexthopmtu=1400)
    err /= IP(src=a, dst=b) / TCP(sport=42000, dport=80, flags="A", seq=101, ack=901)
    frames.append((round((t1 + 0.006) * 1e9), frame_bytes(err, "ether")))
    frames.sort(key=lambda x: x[0])
    return write_pcap_raw(tmp / "reuses.pcap", frames)


def test_scan_cuts_tcp_conversations_into_the_connections_of_conns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan's pieces of a TCP conversation (`_Conns`, a chunk of a few records at a
    time, its tuples' state merged often) are `conns`' connections: the rows of one
    connection are one piece, and a tuple used again by a SYN (another ISN, or the same
    after a RST) starts another; on real captures no connection is split."""
    import numpy as np
    from test_conns_columns import _captures

    from hopcap.correlate import read_capture
    from hopcap.correlate import reader as rd
    from hopcap.correlate.conns import build_point

    monkeypatch.setattr(rd, "PARSE_CHUNK", 7)
    monkeypatch.setattr(rd, "CHUNK", 7)
    monkeypatch.setattr(sl, "_SYNS_SMALL", 2)
    split: dict[str, int] = {}
    for f in [_reuses(tmp_path), *_captures(tmp_path)]:
        sc = sl.scan(f)
        t = read_capture(f)
        keys = sl._piece_keys(sc, sl.tcp_keys(t), t.ts)
        conv = sl.tcp_keys(t)
        pc = build_point(t)
        pieces: dict[int, int] = {}  # piece -> connection
        for c in pc.conns:
            rows = np.concatenate([h.idx for h in (c.c, c.s) if h is not None])
            [k] = set(keys[rows].tolist())  # one piece
            if f.name == "reuses.pcap":
                assert pieces.setdefault(k, c.cid) == c.cid  # each connection its own
        split[f.name] = len(set(keys.tolist())) - len(set(conv.tolist()))
        if f.name == "reuses.pcap":
            assert len(pieces) == len(pc.conns) == 8
            d = t.dgram
            assert d is not None and len(d) == 1
            assert sl._piece_keys(sc, sl.dgram_keys(d), d.ts)[0] == keys[-1]
        t.close()
        sc.close()
    # four connections after the first on two ports, the SYN after a RST; and two
    # connections after a first one (`_reused_tuple`); no other
    assert {k: n for k, n in split.items() if n} == {"reuses.pcap": 5, "reuse.pcap": 2}


def test_a_reused_tuple_without_its_new_syn_is_warned(tmp_path: Path) -> None:
    """A later connection on a client port whose SYN and SYN-ACK the first point's capture
    lost: `conns` cuts the tuple at its first packet far in sequence from the earlier
    connection's FIN, the scan does not (no SYN), so, cut across the slices, it is merged
    into the earlier one's flow; the verdict says so (docs/scale.md, Limits)."""
    from test_path import http_conv

    t0 = 1_763_790_000.0
    early = http_conv(42322, seed=90, t0=t0)
    late = http_conv(42322, seed=91, t0=early.t + 40)
    port = {id(early): 28355, id(late): 30704}
    hs = {id(s) for s in late.segs[:2]}  # its SYN and SYN-ACK

    def fw0(c: Conv) -> View:
        return View(ttl_dec={S2C: 1}, drop=lambda s: id(s) in hs)

    def fw1(c: Conv) -> View:
        return View(delay=0.0001, ttl_dec={C2S: 1}, nat=nat_map(c, sport=port[id(c)]))

    pts = points(tmp_path, [early, late], [("fw:eth0", fw0), ("fw:eth1", fw1)])
    whole = correlate(pts)
    assert len(whole.flows) == 2
    cut = correlate(pts, slice_packets=10, slice_margin_s=0.001)
    assert len(cut.flows) == 1
    [w] = [x for x in cut.warnings if "reused tuple" in x]
    assert w.startswith("1 connection(s) on a reused tuple of a conversation longer than a time")


def test_a_budget_below_the_runs_fixed_part_says_what_it_needs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget smaller than the program's fixed part (`--memory 1M`): the warning says
    the budget and what the run needs before any slice; it blamed the verdict alone ("the
    verdict of 300 connections alone needs about 1 MB: more than the memory budget
    allows"; "about 0 MB" below 256 connections) when the fixed 96 MB had used it up."""
    a, b = busy_firewall(tmp_path, 300)
    said = _fixed_part_warnings([PointInput("fw:eth0", a), PointInput("fw:eth1", b)], caplog)
    want = _fixed_part_warning(sl.VERDICT_BYTES_PER_FLOW, "300 connections")
    assert said == [want], [r.getMessage() for r in caplog.records]


def _fixed_part_warnings(pts: list[PointInput], caplog: pytest.LogCaptureFixture) -> list[str]:
    """The memory budget's warnings of `pts` correlated under `--memory 1M`."""
    with caplog.at_level(logging.WARNING, logger="hopcap.correlate"):
        correlate(pts, memory=1 << 20, jobs=1)
    return [r.getMessage() for r in caplog.records if "memory budget (" in r.getMessage()]


def _fixed_part_warning(per_flow: int, what: str) -> str:
    """The warning `_fixed_part_warnings` expects for 300 flows of `per_flow` verdict bytes
    each, `what` they are."""
    need = size_text(sl.BASE_BYTES + 300 * per_flow)
    return (
        "the memory budget (1.0 MB) is less than this run needs before its slices: about "
        f"{need} (the program and the verdict of {what}); slices of 2000 packets, the "
        "fewest it reads"
    )


def test_a_budget_below_the_runs_fixed_part_names_datagram_conversations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same warning for a resolver's queries names them as what they are (it said
    "the verdict of 300 connections" of 300 DNS queries and answers)."""
    from pcapgen import UConv, dns_query, render_dgrams, write

    convs = []
    for i in range(300):
        u = UConv((f"198.18.{i // 200}.{1 + i % 200}", 40000 + i), ("203.0.113.53", 53),
                  t0=1_763_790_000.0 + i * 0.01, seed=i)  # fmt: skip
        q = dns_query(i, "example.com")
        u.send(C2S, q)
        u.send(S2C, q[:2] + b"\x81\x80" + q[4:])
        convs.append(u)
    a = write(tmp_path / "a.pcap", render_dgrams(convs, View()))
    b = write(tmp_path / "b.pcap", render_dgrams(convs, View(delay=0.0003)))
    said = _fixed_part_warnings([PointInput("a", str(a)), PointInput("b", str(b))], caplog)
    want = _fixed_part_warning(sl.VERDICT_BYTES_PER_DGRAM_FLOW, "300 datagram conversations")
    assert said == [want], [r.getMessage() for r in caplog.records]


def _begun_late(tmp_path: Path, n: int, late: int, nat: bool, others: int) -> list[PointInput]:
    """A keep-alive connection (60 rounds 0.5 s apart) through `n` points, the last one
    beyond a NAT with `nat`, and `others` short connections 0.5 s apart; the capture at
    point `late` began 5 s after the others (its start given, as `hopcap run` gives it)."""
    t0 = 1_763_790_000.0
    convs = [keepalive(("203.0.113.10", 41000), 90, t0 + 0.1, 60, 0.5)]
    for i in range(others):
        c = Conv(client=("198.18.0.20", 50000 + i), server=("203.0.113.80", 80), seed=300 + i,
                 t0=t0 + 0.3 + i * 0.5)  # fmt: skip
        c.handshake()
        c.request(HTTP_REQ)
        c.response(HTTP_RESP)
        c.close()
        convs.append(c)

    def view(j: int) -> Callable[[Conv], View]:
        def make(c: Conv) -> View:
            return View(
                delay=0.0001 * j,
                drop=(lambda s: s.t < t0 + 5) if j == late else None,
                nat=nat_map(c, sport=c.client[1] - 20000) if nat and j == n - 1 else {},
            )

        return make

    names = ["a:eth0", "b:eth0", "c:eth0"][:n]
    pts = points(tmp_path, convs, [(name, view(j)) for j, name in enumerate(names)])
    return [replace(p, start_ts=t0 + 5 * (j == late)) for j, p in enumerate(pts)]


def _late_point_judged(one: dict, n: int, late: int, nat: bool) -> None:
    """The keep-alive connection of `_begun_late`: one flow with a leg at every point,
    its packets before the late capture began gaps at that point only, nothing else."""
    names = ["a:eth0", "b:eth0", "c:eth0"][:n]
    [fl] = [fl for fl in one["flows"] if fl["client"] == "203.0.113.10:41000"]
    assert [leg["point"] for leg in fl["legs"]] == names
    assert [leg["link"] for leg in fl["legs"]][1:] == ["same"] * (n - 2) + [
        "nat" if nat else "same"
    ]
    assert fl["findings"] and all(
        f["kind"] == "gap" and names[late] in f["between"] for f in fl["findings"]
    ), fl["findings"]
    assert not one.get("warnings")


@pytest.mark.parametrize("nat", [False, True], ids=["same", "nat"])
@pytest.mark.parametrize(
    ("n", "late"),
    [(2, 0), (2, 1), (3, 1), (3, 2)],
    ids=["first-of-2", "second-of-2", "middle-of-3", "last-of-3"],
)
def test_a_long_connection_through_a_capture_begun_mid_connection_sliced(
    tmp_path: Path, n: int, late: int, nat: bool
) -> None:
    """A keep-alive connection cut across many slices, through a point whose capture began
    5 s after it (far more than the margin): sliced as unsliced, in one process or two.
    Was: the slice where it starts saw none of its packets at that point, so its flow
    (the flow's conversations are found there) left that point out; the flow had no leg
    there, its packets after the capture began were never matched there, and later
    slices' gaps read 'seen at a:eth0 and answered, never at b:eth0'. With that leg in
    the flow, the slice where it starts read its head only (packets from 5 s on) with none
    of the other points' packets of then: the sequence offset came from payloads alike,
    and the link read as a NAT ('nat' for 'same'). The first point's capture begun late:
    the server's data before it, unsliced a gap 'the capture at a:eth0 lost them: the
    receiver acknowledged them' (by the client's ACKs from 5 s on), read 'started after
    these packets: cannot tell' in the slices before 5 s (without those ACKs), one gap
    with the ACKs'."""
    pts = _begun_late(tmp_path, n, late, nat, 60)
    one = _same(pts, (120,))  # (16 slices at 2 points, 24 at 3)
    _late_point_judged(one, n, late, nat)
    assert correlate(pts, slice_packets=120, slice_margin_s=1.0).to_dict() == one


@pytest.mark.parametrize(("n", "late", "nat"), [(2, 1, False), (3, 2, True)])
def test_a_lone_connection_through_a_capture_begun_mid_connection(
    tmp_path: Path, n: int, late: int, nat: bool
) -> None:
    """The keep-alive connection alone: the point whose capture began late did not end
    early (its last packet is the connection's last, as at the other points), sliced or
    not. Was, unsliced: 'point b:eth0: its capture ended at 05:40:30.228 UTC (its last
    packet), before the others': the clocks of the hop (for that test) were taken from
    the connection's first packets at each point, 5 s apart at the late one."""
    pts = _begun_late(tmp_path, n, late, nat, 0)
    one = _same(pts, (40,))
    _late_point_judged(one, n, late, nat)


@pytest.mark.parametrize("nat", [False, True], ids=["same", "nat"])
def test_a_capture_begun_late_and_ended_early_has_a_gap_per_reason(
    tmp_path: Path, nat: bool
) -> None:
    """A keep-alive connection (30 s) through b, whose capture listened from 5 s to 25 s
    only (start and stop given): what crossed before it began and what crossed after it
    ended are two gaps each way, each with its reason, sliced or not. Was one gap each
    way with one reason: unsliced its last row's ("ended before these packets", also
    for those before it began), sliced its first slice's ("started after")."""
    t0 = 1_763_790_000.0
    c = keepalive(("203.0.113.10", 41000), 90, t0 + 0.1, 60, 0.5)

    def view(j: int) -> Callable[[Conv], View]:
        def make(cv: Conv) -> View:
            return View(
                delay=0.0001 * j,
                drop=(lambda s: s.t < t0 + 5 or s.t > t0 + 25) if j else None,
                nat=nat_map(cv, sport=cv.client[1] - 20000) if nat and j else {},
            )

        return make

    pts = points(tmp_path, [c], [("a:eth0", view(0)), ("b:eth0", view(1))])
    pts = [
        replace(p, start_ts=t0 + 5 * j, stop_ts=t0 + 25 if j else None) for j, p in enumerate(pts)
    ]
    one = _same(pts, (40,), margin_s=0.5)
    [fl] = one["flows"]
    why = [
        (f["direction"], re.search(r"(started after|ended before) these packets", f["what"])[1])  # type: ignore[index]
        for f in fl["findings"]
    ]
    assert all(f["kind"] == "gap" for f in fl["findings"])
    assert sorted(why) == [("c2s", "ended before"), ("c2s", "started after"),
                           ("s2c", "ended before"), ("s2c", "started after")]  # fmt: skip
    # each gap's packets on its side of the window
    for f in fl["findings"]:
        ends = (f["first_ts"], f.get("last_ts") or f["first_ts"])
        assert (
            all(t < t0 + 5 for t in ends)
            if "started" in f["what"]
            else all(t > t0 + 25 for t in ends)
        )
