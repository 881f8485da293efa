"""Correlation partitioned by connection (--jobs, --dask) gives the verdict of one job."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import HTTP_REQ, HTTP_RESP, nat_map, points

from hopcap.correlate import correlate
from hopcap.correlate import parallel as par
from hopcap.correlate.engine import partition, prepare, read_points
from hopcap.errors import CorrelationError
from hopcap.model import PointInput
from hopcap.patterns import with_patterns


def _scenario(tmp: Path) -> list[PointInput]:
    """Eight connections over three points (NAT, TSO, a drop, an MSS clamp, a forged RST),
    so that every partition has flows with findings and clean ones."""
    convs = []
    for i in range(8):
        c = Conv(client=("203.0.113.10", 50100 + i), server=("203.0.113.80", 80), seed=200 + i,
                 t0=1_763_790_000.0 + i * 0.02)  # fmt: skip
        c.handshake(answered=i != 5)
        if i != 5:
            c.request(HTTP_REQ)
            c.response(HTTP_RESP)
            c.close()
        convs.append(c)

    def fw(c: Conv) -> View:
        def change(s: Seg) -> Seg:
            if s.mss is not None and s.d == C2S:
                s.mss = 1380
            return s

        return View(delay=0.0002, nat=nat_map(c, sport=c.client[1] - 20000), change=change,
                    drop=lambda s: s.conv is convs[3] and s.tag == "resp" and s.seq % 3 == 0,
                    ttl_dec={C2S: 1})  # fmt: skip

    forged = Seg(d=S2C, t=convs[6].segs[5].t + 0.0001, flags="R", seq=convs[6].segs[5].ack,
                 ack=0, conv=convs[6], ipid=0)  # fmt: skip
    return points(tmp, convs, [
        ("client:eth0", lambda c: View(tso=True, ttl_dec={S2C: 1})),
        ("fw:eth0", lambda c: View(delay=0.0001, ttl_dec={S2C: 1}, extra=[forged])),
        ("fw:eth1", fw),
    ])  # fmt: skip


def test_jobs_give_the_verdict_of_one_job(tmp_path: Path) -> None:
    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    kinds = {f["kind"] for fl in one["flows"] for f in fl["findings"]}
    assert {"drop", "rewrite"} <= kinds and len(one["flows"]) == 8
    prep = prepare(read_points(pts), {})
    sizes = [len(p) for p in partition(prep, 3)]
    assert sum(sizes) == 8 and sum(1 for n in sizes if n) >= 2  # really split
    for jobs in (2, 3):
        assert correlate(pts, jobs=jobs, min_packets_per_job=0).to_dict() == one


def test_first_hops_keep_the_half_ids_of_their_legs(tmp_path: Path) -> None:
    """`Hop.hids`, set as `build_flows` makes a flow's first hop, are still its legs'
    halves once every flow is built (`match_hops` reads them, not the halves)."""
    prep = prepare(read_points(_scenario(tmp_path)), {})
    known = 0
    for f in prep.flows:
        for i, hop in enumerate(f.hops):
            if hop.hids is not None:
                x, y = f.legs[i], f.legs[i + 1]
                assert hop.hids == tuple(-1 if h is None else h.hid for h in (x.c, y.c, x.s, y.s))
                known += 1
    assert known >= 7  # (the unanswered SYN's flow has no downstream leg)


def test_dask_partitions_match_each_in_any_worker_process(tmp_path: Path) -> None:
    """Phase 2 of a partition in a process that did not match it (the dask scheduler may
    move a task) matches it there first: the verdict is still that of one job."""
    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    spec = par._Spec("t1", tuple(pts), (), 3)
    first = [par._dask_match(spec, i) for i in (0, 1)]  # partition 2 never matched here
    facts, warnings = first[0][1], first[0][2]
    prep, parts, matched = par._prepared(spec)
    assert matched == {0, 1}
    par.set_clocks(prep, [m for m, *_ in first] + [par.match_part(prep, parts[2])])
    clocks = par.clocks_of(prep.pts)
    par._dask_release("t1")  # a fresh process: read, link and match again
    built = [par._dask_finish(spec, i, clocks) for i in range(3)]
    par._dask_release("t1")
    got = par.assemble(prep.pts, par._in_order(8, parts, built), warnings, facts)
    assert with_patterns(got).to_dict() == one  # as correlate() finishes every verdict


def test_dask_local_cluster_of_two_worker_processes(tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        got = correlate(pts, dask=cluster.scheduler_address, jobs=2)
    assert got.to_dict() == one


def test_jobs_on_a_reused_backend_connection_shared_by_flows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flows that share a reused backend connection may land in different partitions: each
    matches the connection and keeps its own exchanges, as one job does."""
    import test_lb_reuse as lb

    site = lb.pooled(3, lost=1)
    (tmp_path / "one").mkdir()
    (tmp_path / "three").mkdir()
    one = site.capture(tmp_path / "one", drop=lambda s: s.tag == "lost", nat=True)
    assert {f.kind for fl in one.flows for f in fl.findings} == {"drop"}
    monkeypatch.setattr(lb, "correlate", partial(correlate, jobs=3, min_packets_per_job=0))
    got = site.capture(tmp_path / "three", drop=lambda s: s.tag == "lost", nat=True)
    assert got.to_dict() == one.to_dict()


def test_jobs_claim_pieces_and_send_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every process claims the next unclaimed piece of flows until none is left (a slow
    process takes fewer); a child sends each piece it finished back (through a shared
    file) while the parent takes them in between its own: with pieces of one flow and a
    slow parent, the children do most of them, and the verdict is still that of one job."""
    import os
    import time

    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    monkeypatch.setattr(par, "PIECE", 1)
    parent = os.getpid()
    match = par.match_part
    here: list[int] = []

    def slow_here(prep: object, idxs: list[int]) -> object:
        if os.getpid() == parent:
            here.append(len(idxs))
            time.sleep(0.3)
        else:
            # not so quick that a child takes every piece while the parent still forks
            # the next child (a piece of one flow takes well under 1 ms: it flaked once;
            # a fork under load can take tens of ms)
            time.sleep(0.05)
        return match(prep, idxs)  # type: ignore[arg-type]

    sent: list[int] = []
    loads = par.ForkingPickler.loads

    def counted(data: bytes) -> object:
        got = loads(data)
        if isinstance(got, list):  # a piece (the pipe's messages are tuples)
            sent.append(len(got))
        return got

    monkeypatch.setattr(par, "match_part", slow_here)
    monkeypatch.setattr(par.ForkingPickler, "loads", counted)
    for jobs in (2, 3):
        here.clear()
        sent.clear()
        assert correlate(pts, jobs=jobs, min_packets_per_job=0).to_dict() == one
        # one flow a piece, each matched and finished by one process
        assert here and set(here) == {1} and set(sent) == {1}
        assert len(here) + len(sent) == 8 and len(sent) > len(here)


def test_the_parent_takes_over_pieces_of_a_child_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that finishes slowly (no core of its own): the parent, done with its own
    pieces, matches again and finishes the child's last pieces while it has two or more
    left; the child skips them; the verdict is still that of one job."""
    import os
    import time

    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    monkeypatch.setattr(par, "PIECE", 1)
    parent = os.getpid()
    match, finish, set_clocks = par.match_part, par.finish_part, par.set_clocks
    phase = [1]
    again: list[int] = []

    def matched(prep: object, idxs: list[int]) -> object:
        if os.getpid() == parent and phase[0] == 2:
            again.extend(idxs)
        elif os.getpid() == parent:
            time.sleep(0.3)  # the child matches most pieces
        return match(prep, idxs)  # type: ignore[arg-type]

    def slow_child(prep: object, idxs: list[int]) -> object:
        if os.getpid() != parent:
            time.sleep(0.4)
        return finish(prep, idxs)  # type: ignore[arg-type]

    def clocks(*args: object) -> None:
        set_clocks(*args)  # type: ignore[arg-type]
        phase[0] = 2

    monkeypatch.setattr(par, "match_part", matched)
    monkeypatch.setattr(par, "finish_part", slow_child)
    monkeypatch.setattr(par, "set_clocks", clocks)
    sent: list[int] = []
    loads = par.ForkingPickler.loads

    def counted(data: bytes) -> object:
        got = loads(data)
        if os.getpid() == parent and isinstance(got, list):
            sent.append(len(got))
        return got

    monkeypatch.setattr(par.ForkingPickler, "loads", counted)
    assert correlate(pts, jobs=2, min_packets_per_job=0).to_dict() == one
    assert again  # taken over
    # the child finished at least the piece it had started, and each piece was finished once
    assert sent and sum(sent) + len(again) <= 8


def _boom(*args: object) -> None:
    raise ValueError("boom in a child")


def test_a_failing_or_dying_child_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in a child is raised in the parent; a child that dies (killed, out of
    memory) is a CorrelationError that says to retry with one job; no child is left."""
    import multiprocessing as mp
    import os
    import time

    from hopcap.errors import CorrelationError

    pts = _scenario(tmp_path)
    parent = os.getpid()
    finish = par.finish_part
    match = par.match_part

    def slow_here(prep: object, idxs: list[int]) -> object:
        if os.getpid() == parent:  # the children claim pieces too
            time.sleep(0.3)
        return match(prep, idxs)  # type: ignore[arg-type]

    monkeypatch.setattr(par, "PIECE", 1)
    monkeypatch.setattr(par, "match_part", slow_here)

    def failing(prep: object, idxs: object) -> object:
        if os.getpid() != parent:
            _boom()
        return finish(prep, idxs)  # type: ignore[arg-type]

    monkeypatch.setattr(par, "finish_part", failing)
    with pytest.raises(ValueError, match="boom in a child"):
        correlate(pts, jobs=2, min_packets_per_job=0)
    assert not mp.active_children()

    def dying(prep: object, idxs: object) -> object:
        if os.getpid() != parent:
            os._exit(9)
        return finish(prep, idxs)  # type: ignore[arg-type]

    monkeypatch.setattr(par, "finish_part", dying)
    with pytest.raises(CorrelationError, match="worker process died") as err:
        correlate(pts, jobs=2, min_packets_per_job=0)
    assert "--jobs 1" in (err.value.hint or "")
    assert not mp.active_children()


DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize(
    "files",
    [
        ["tcpreplay/test.pcap", "tcpreplay/test.rewrite_1ttl"],
        ["tcpreplay/test.pcap", "tcpreplay/test.rewrite_endpoint"],
        ["tcpreplay/test.pcap", "tcpreplay/test.rewrite_pnat"],
        ["tcpreplay/test.pcap", "tcpreplay/test.rewrite_l7fuzzing"],
    ],
)
def test_jobs_on_real_captures_in_pieces_of_one_flow(
    files: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real captures (tests/data/PROVENANCE.md): 2 and 3 jobs, every flow a piece of its
    own (claimed by whichever process comes first), give the verdict of one job."""
    import multiprocessing as mp
    import os
    import time

    pts = [PointInput(f"p{i}", pcap=str(DATA / f)) for i, f in enumerate(files)]
    one = correlate(pts).to_dict()
    assert len(one["flows"]) >= 20
    monkeypatch.setattr(par, "PIECE", 1)
    parent = os.getpid()
    match = par.match_part
    here: list[int] = []
    # (shared with the forked children) pieces the parent / the children have claimed:
    # each side's first piece waits (up to 10 s) for the other side to claim one, so both
    # take some whatever the scheduler does (at a load of 9, timing alone failed: the
    # children started late, or took every piece before the parent claimed one)
    mine, theirs = mp.Value("i", 0), mp.Value("i", 0)

    def await_other(other: Any) -> None:
        end = time.monotonic() + 10
        while other.value == 0 and time.monotonic() < end:
            time.sleep(0.002)

    def slow_here(prep: object, idxs: list[int]) -> object:
        if os.getpid() == parent:  # the children get pieces too
            here.append(idxs[0])
            mine.value += 1
            await_other(theirs)
        else:
            with theirs.get_lock():
                theirs.value += 1
            await_other(mine)
        return match(prep, idxs)  # type: ignore[arg-type]

    monkeypatch.setattr(par, "match_part", slow_here)
    for jobs in (2, 3):
        here.clear()
        mine.value = theirs.value = 0
        assert correlate(pts, jobs=jobs, min_packets_per_job=0).to_dict() == one
        # the parent took pieces and so did the children
        assert 0 < len(here) < len(one["flows"]) and theirs.value > 0


def test_a_child_dead_holding_the_pieces_lock_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed while it held the lock of the pieces (a few instructions) must not
    leave the others waiting for ever."""
    import multiprocessing as mp
    import os

    from hopcap.errors import CorrelationError

    ctx = mp.get_context("fork")
    shared = par._Shared(ctx, 4)
    assert [shared.claim(), shared.claim()] == [0, 1]
    assert shared.take(3) and not shared.take(3) and shared.untaken([1, 2, 3]) == [1, 2]

    def die_holding() -> None:
        shared.lock.acquire()
        os._exit(9)

    proc = ctx.Process(target=die_holding)
    proc.start()
    proc.join()
    monkeypatch.setattr(par, "LOCK_WAIT_S", 0.2)
    with pytest.raises(CorrelationError, match="worker process died"):
        shared.claim()


def test_the_parent_does_not_wait_for_a_finished_child_to_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that has sent its last piece is exiting (the kernel tearing down its copy of
    the parent's mappings: ~50 ms at 6.4 M packets): the verdict does not wait for it (a
    parent that waited would kill it after 5 s: it exits here only once the verdict is
    back)."""
    import multiprocessing as mp
    import time

    pts = _scenario(tmp_path)
    one = correlate(pts).to_dict()
    child = par._child
    verdict_back = tmp_path / "verdict-back"

    def slow_exit(*args: Any) -> None:
        child(*args)
        end = time.monotonic() + 30
        while not verdict_back.exists() and time.monotonic() < end:
            time.sleep(0.01)  # still "exiting" after its last message

    monkeypatch.setattr(par, "_child", slow_exit)
    assert correlate(pts, jobs=2, min_packets_per_job=0).to_dict() == one
    kids = mp.active_children()
    verdict_back.touch()
    for k in kids:
        k.join(30)
    assert len(kids) == 1 and kids[0].exitcode == 0


def test_a_process_that_ends_with_the_verdict_leaves_the_engine_state_to_its_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`engine.keep_state_until_exit()` (the CLI's `correlate`, whose process ends right
    after the verdict): the same verdict, with one job and two, the read captures left
    open and the engine's state referenced (`engine._KEEP`) for the exit to take back; by
    default they are closed before `correlate` returns."""
    from hopcap.correlate import engine

    pts = _scenario(tmp_path)
    read: list[list[Any]] = []

    def reading(*args: Any, **kw: Any) -> Any:
        got = read_points(*args, **kw)
        read.append(got)
        return got

    monkeypatch.setattr(engine, "read_points", reading)
    one = correlate(pts).to_dict()
    assert engine._KEEP is None and read[-1][0].pc.table.buf.closed
    for jobs in (1, 2):
        monkeypatch.setattr(engine, "_KEEP", [])
        got = correlate(pts, jobs=jobs, min_packets_per_job=0)
        assert got.to_dict() == one
        assert engine._KEEP is not None and len(engine._KEEP) == 1
        prep = engine._KEEP[0]
        assert isinstance(prep, engine.Prepared) and prep.pts is read[-1]
        assert len(prep.flows) == 8
        assert not any(p.pc.table.buf.closed for p in prep.pts)
        for p in prep.pts:
            p.pc.table.close()


def test_points_read_in_threads_are_those_of_one_thread(tmp_path: Path) -> None:
    """The points' captures read by several threads (this one too) come back in point
    order, as one thread reads them; a file that is no capture is the error of the first
    such point in order, whichever thread read it."""
    from hopcap.correlate.engine import _in_threads

    pts = _scenario(tmp_path)

    def facts(got: list[Any]) -> list[tuple[str, int, int]]:
        return [(p.name, len(p.pc.table), len(p.pc.halves)) for p in got]

    one = facts(read_points(pts))
    assert len(one) == 3 and all(n for _, n, _ in one)
    for threads in (2, 3, 5):
        assert facts(read_points(pts, threads=threads)) == one
    bad = [tmp_path / "bad1.pcap", tmp_path / "bad2.pcap"]
    for i, f in enumerate(bad):
        f.write_bytes(b"tcpdump text %d\n" % i * 10)
    mixed = [pts[0], PointInput("x", pcap=str(bad[0])), pts[1], PointInput("y", pcap=str(bad[1]))]
    with pytest.raises(CorrelationError, match=r"bad1\.pcap: not a pcap or pcapng"):
        read_points(mixed, threads=3)
    # every item done once, results in order, by up to n threads
    assert _in_threads(lambda x: x * x, list(range(50)), 4) == [x * x for x in range(50)]
