"""Correlation of one capture set by several processes, on this machine or a dask cluster.

The work splits by connection: once every point is read and adjacent points are linked
(NAT and proxies are known), the flows are split into parts, each handled in two phases:

1. match every hop of its flows (byte ranges, rewrites) and report the smallest one-way
   delays per hop;
2. with the clock offsets estimated from every part's minima, write its flows' findings.

The verdict is assembled from the parts' flows in the original flow order, so it is the
verdict of one job.

Locally (`run_forked`) the parts are pieces of `PIECE` consecutive flows, claimed one at
a time by this process and its forked children (which inherit the read captures,
copy-on-write: nothing is sent but the results) until none is left, so that a process
with less of a core simply takes fewer. A child pickles each piece it finished into a
file in memory it shares with the parent (the pipe carries only where each piece is): it
never waits for the parent, which takes the pieces in between pieces of its own.

On dask (`correlate_dask`) the parts are partitions by a hash of the flows' normalised
tuple (engine.partition); every task reads the captures from the same paths (a shared
filesystem) and keeps only its partition; a worker process that handles several
partitions reads them once.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from hopcap.correlate.clocks import Minima, apply_clocks, clocks_of, merge_minima
from hopcap.correlate.engine import (
    PointFacts,
    Prepared,
    assemble,
    finish_datagrams,
    finish_part,
    match_part,
    partition,
    point_facts,
    prepare,
    read_points,
    set_clocks,
)
from hopcap.correlate.findings import Built
from hopcap.correlate.flows import Point, host_of
from hopcap.correlate.stages import plan_stages
from hopcap.errors import CorrelationError
from hopcap.model import PointInput, Verdict


def _in_order(n: int, parts: Sequence[Sequence[int]], built: Sequence[list[Built]]) -> list[Built]:
    out: list[Built | None] = [None] * n
    for idxs, bs in zip(parts, built, strict=True):
        for i, b in zip(idxs, bs, strict=True):
            out[i] = b
    assert all(b is not None for b in out)
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- local processes


LOCK_WAIT_S = 60.0


class _Shared:
    """What the processes of a run share (made before the forks): the number of the next
    piece to match, and which pieces' finishing a process has taken."""

    def __init__(self, ctx: Any, pieces: int) -> None:
        self.next = ctx.Value("q", 0)
        self.lock = self.next.get_lock()
        self.taken = ctx.RawArray("b", pieces)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        # held for a few instructions: not got in LOCK_WAIT_S, its holder died in them
        if not self.lock.acquire(timeout=LOCK_WAIT_S):
            raise _died()
        try:
            yield
        finally:
            self.lock.release()

    def claim(self) -> int:
        """The next piece to match."""
        with self.locked():
            k: int = self.next.value
            self.next.value = k + 1
        return k

    def take(self, k: int) -> bool:
        """Take piece `k` to finish, unless another process has."""
        with self.locked():
            if self.taken[k]:
                return False
            self.taken[k] = 1
        return True

    def untaken(self, ks: Sequence[int]) -> list[int]:
        with self.locked():
            return [k for k in ks if not self.taken[k]]


def _match_claimed(
    prep: Prepared, pieces: list[list[int]], shared: _Shared
) -> tuple[list[int], Minima]:
    """Match pieces of flows as long as some are left (each by the first process to claim
    it): the pieces matched here and their delay minima."""
    mine: list[int] = []
    minima: list[Minima] = []
    while (k := shared.claim()) < len(pieces):
        minima.append(match_part(prep, pieces[k]))
        mine.append(k)
    return mine, merge_minima(minima)


def _child(
    conn: Connection, prep: Prepared, pieces: list[list[int]], shared: _Shared, out: int
) -> None:
    try:
        mine, minima = _match_claimed(prep, pieces, shared)
        conn.send(("ok", (mine, minima)))
        apply_clocks(prep.pts, conn.recv())
        # the pieces matched here (but those the parent took over), each finished and
        # pickled into the shared file `out` as soon as it is done (the pipe carries
        # where): the parent takes them in between pieces of its own, and nothing here
        # ever waits for it
        at = 0
        for k in mine:
            if not shared.take(k):
                continue
            data = ForkingPickler.dumps(finish_part(prep, pieces[k]))
            with memoryview(data) as view:
                for lo in range(0, len(view), 1 << 30):
                    os.pwrite(out, view[lo : lo + (1 << 30)], at + lo)
            conn.send(("part", (k, at, len(data))))
            at += len(data)
        conn.send(("ok", None))
    except BaseException as exc:  # handed to the parent, which raises it
        conn.send(("err", exc))
    finally:
        conn.close()


# flows in a piece: what a process claims, matches, finishes and sends back at a time
# (~0.3 MB pickled); small enough that the processes end within a piece of each other
PIECE = 512


def _died() -> CorrelationError:
    return CorrelationError("a correlation worker process died", hint="retry with --jobs 1")


def recv(conn: Connection) -> Any:
    try:
        tag, val = conn.recv()
    except EOFError:
        raise _died() from None
    if tag == "err":
        raise val
    return val


def _shared_file() -> int:
    """A file descriptor the forked children inherit: in memory where the system can."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("hopcap-part", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as f:  # unlinked at once; the duplicate keeps it
        return os.dup(f.fileno())


class _Kid:
    """A forked child: the pipe to it and the file its finished pieces come back in."""

    def __init__(self, ctx: Any, prep: Prepared, pieces: list[list[int]], shared: _Shared) -> None:
        self.file = _shared_file()
        self.conn, there = ctx.Pipe()
        self.proc = ctx.Process(
            target=_child, args=(there, prep, pieces, shared, self.file), daemon=True
        )
        self.proc.start()
        there.close()
        self.done = False

    def take(self, built: dict[int, list[Built]], *, wait: bool, one: bool = False) -> None:
        """Take in the pieces that are ready (with `wait`: all of them, up to the end; with
        `one` too: the next message)."""
        while not self.done and (wait or self.conn.poll()):
            where = recv(self.conn)
            if where is None:
                self.done = True
                continue
            k, at, size = where
            data = os.pread(self.file, size, at)
            while len(data) < size:  # pread returns at most 2 GiB at a time
                more = os.pread(self.file, size - len(data), at + len(data))
                if not more:
                    raise _died()
                data += more
            built[k] = ForkingPickler.loads(data)
            if one:
                return

    def close(self) -> None:
        self.conn.close()
        os.close(self.file)
        if self.done:
            # it has said its last and is exiting: the kernel tearing down its copy of
            # this process's mappings takes ~50 ms at 6.4 M packets, and nothing here
            # needs to wait for it (multiprocessing reaps it at its next start or
            # `active_children()`, or the process's end)
            return
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run_forked(prep: Prepared, n: int) -> list[Built]:
    """Every TCP flow's findings in `n` processes (this one and n - 1 forks); the caller
    adds the datagram flows (engine.finish_datagrams).

    The flows are cut in pieces of `PIECE`; each process matches the next piece nobody
    has claimed yet until none is left (a process that gets less of a core, or slower
    flows, simply matches fewer), then, with the clocks known, finishes the pieces it
    matched. This process, done with its own, takes over the last pieces a child has not
    started when the child is that far behind (e.g. has no core of its own): when the
    child's pieces left would take it longer, at its pace so far, than matching again and
    finishing one here."""
    every = list(range(len(prep.flows)))
    if "fork" not in mp.get_all_start_methods():
        set_clocks(prep, [match_part(prep, every)])
        return finish_part(prep, every)
    ctx = mp.get_context("fork")
    pieces = [every[lo : lo + PIECE] for lo in range(0, len(every), PIECE)]
    shared = _Shared(ctx, len(pieces))
    kids: list[_Kid] = []
    try:
        for _ in range(n - 1):
            kids.append(_Kid(ctx, prep, pieces, shared))
        t0 = time.perf_counter()
        mine, minima = _match_claimed(prep, pieces, shared)
        t_match = (time.perf_counter() - t0) / max(len(mine), 1)
        theirs = [recv(k.conn) for k in kids]
        # the datagrams' minima too, should no piece be matched here
        set_clocks(prep, [prep.dminima, minima, *(m for _, m in theirs)])
        clocks = clocks_of(prep.pts)
        for kid in kids:
            kid.conn.send(clocks)
        built: dict[int, list[Built]] = {}

        def finish(k: int, *, again: bool = False) -> None:
            if again:
                match_part(prep, pieces[k])
            built[k] = finish_part(prep, pieces[k])
            for kid in kids:
                kid.take(built, wait=False)

        t1 = time.perf_counter()
        for k in mine:
            shared.take(k)
            finish(k)
        t2 = time.perf_counter()
        # what taking a piece over costs here (with no piece of its own: as good as nothing)
        t_steal = t_match + (t2 - t1) / len(mine) if mine else 0.0
        for kid, (ks, _) in zip(kids, theirs, strict=True):
            while not kid.done and len(left := shared.untaken(ks)) >= 2:
                done = sum(1 for k in ks if k in built)
                pace = (time.perf_counter() - t1) / (done + 1)  # the one it is on counts
                if len(left) * pace <= t_steal:
                    kid.take(built, wait=True, one=True)  # and look again
                elif shared.take(left[-1]):
                    finish(left[-1], again=True)
        for kid in kids:
            kid.take(built, wait=True)
    finally:
        for kid in kids:
            kid.close()
    return [b for k in range(len(pieces)) for b in built[k]]


# --------------------------------------------------------------------------- dask


@dataclass(frozen=True)
class _Spec:
    token: str
    points: tuple[PointInput, ...]
    conntrack: tuple[tuple[str, str], ...]
    parts: int


_cache: dict[str, tuple[Prepared, list[list[int]], set[int]]] = {}
_cache_lock = threading.Lock()


def _prepared(spec: _Spec) -> tuple[Prepared, list[list[int]], set[int]]:
    """The captures read, linked and partitioned, once per worker process and run (with
    the partitions matched here so far)."""
    with _cache_lock:
        got = _cache.get(spec.token)
        if got is None:
            for k in list(_cache):  # one run at a time per worker process
                _close(_cache.pop(k)[0])
            plan = plan_stages(spec.points)
            pts = read_points(plan.points, tables=plan.tables)
            prep = prepare(pts, dict(spec.conntrack))
            got = _cache[spec.token] = (prep, partition(prep, spec.parts), set())
    return got


def _close(prep: Prepared) -> None:
    for p in prep.pts:
        if p.pc is not None:
            p.pc.table.close()


def _dask_match(
    spec: _Spec, part: int
) -> tuple[Minima, list[PointFacts | None], list[str], list[int]]:
    prep, parts, matched = _prepared(spec)
    minima = match_part(prep, parts[part])
    matched.add(part)
    return minima, point_facts(prep.pts), prep.warnings, parts[part]


def _dask_finish(spec: _Spec, part: int, clocks: list[tuple[int, int | None]]) -> list[Built]:
    prep, parts, matched = _prepared(spec)
    if part not in matched:  # phase 1 ran in another worker process: match here too
        match_part(prep, parts[part])
        matched.add(part)
    apply_clocks(prep.pts, clocks)
    return finish_part(prep, parts[part])


def _dask_datagrams(
    spec: _Spec, clocks: list[tuple[int, int | None]], built: list[Built]
) -> list[Built]:
    """engine.finish_datagrams on a worker (the client holds no capture)."""
    prep, _parts, _matched = _prepared(spec)
    apply_clocks(prep.pts, clocks)
    return finish_datagrams(prep, built)


def _dask_release(token: str) -> None:
    with _cache_lock:
        got = _cache.pop(token, None)
    if got is not None:
        _close(got[0])


def correlate_dask(
    original: Sequence[PointInput],
    points: Sequence[PointInput],
    conntrack: Mapping[str, str],
    address: str,
    parts: int,
) -> Verdict:
    """The partitions as tasks on the dask.distributed scheduler at `address`; every
    worker must see the capture files at the same paths. `original`: the points as given
    (each worker plans a device's stage points itself); `points`: as planned."""
    try:
        # untyped library: everything from it is Any here
        client_cls: Any = importlib.import_module("dask.distributed").Client
    except ImportError:
        raise CorrelationError(
            "--dask needs dask.distributed", hint="pip install 'hopcap[dask]'"
        ) from None
    try:
        client = client_cls(address, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise CorrelationError(
            f"cannot reach the dask scheduler at {address}: {exc}",
            hint="start one with `dask scheduler` and workers with `dask worker ADDRESS`",
        ) from None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        n = max(parts, workers, 1)
        spec = _Spec(uuid.uuid4().hex, tuple(original), tuple(sorted(conntrack.items())), n)
        try:
            futs = [client.submit(_dask_match, spec, i, pure=False) for i in range(n)]
            first = client.gather(futs)
            # phase 2 of a partition where its phase 1 ran: that worker process holds the
            # matched flows (anywhere else would read, link and match again)
            where = client.who_has(futs)
            hosts = [list(where.get(f.key, ())) or None for f in futs]
            facts, warnings = first[0][1], first[0][2]
            pts = [Point(i, inp, inp.name, *host_of(inp), None) for i, inp in enumerate(points)]
            present = [i for i, f in enumerate(facts) if f is not None]
            prep = Prepared(pts, present, [], warnings)
            set_clocks(prep, [m for m, *_ in first])
            clocks = clocks_of(pts)
            built = client.gather(
                [
                    client.submit(_dask_finish, spec, i, clocks, pure=False, workers=hosts[i],
                                  allow_other_workers=True)
                    for i in range(n)
                ]
            )  # fmt: skip
            order = [idxs for *_, idxs in first]
            every = _in_order(sum(map(len, order)), order, built)
            # datagram flows, tunnels and ICMP errors need every flow's legs: one task
            whole = client.submit(_dask_datagrams, spec, clocks, every, pure=False,
                                  workers=hosts[0], allow_other_workers=True)  # fmt: skip
            every = client.gather(whole)
        finally:
            client.run(_dask_release, spec.token)
    finally:
        client.close()
    return assemble(pts, every, warnings, facts)
