"""Matching one direction of one connection between two adjacent points.

Upstream rows `a` (the point the packets cross first) and downstream rows `b`. Sequence
numbers of `a` are mapped into `b`'s space with the learned offset `delta` (constant per
direction: ISN randomisation), then:

1. control packets (SYN, FIN, RST, pure ACK) are matched as multisets on their own
   fingerprint (position in the sequence space, TSval, IP ID, class);
2. data packets with identical segmentation are matched exactly on (range, TSval, IP ID);
3. the rest is matched by byte ranges of the sequence space with the same transmission
   identity (TSval; IP IDs within a burst), so TSO/GSO/GRO differences are not loss and a
   lost original is told apart from its delivered retransmission;
4. what is left on both sides is paired ignoring the sequence number (a `tcp.seq`
   rewrite), and the remainder is undelivered upstream / unexplained downstream.
Matched pairs are compared for rewrites beyond the expected translation.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from hopcap import npsets
from hopcap.correlate._fastwalk import (
    field_diffs_ttl,
    hash_join,
    learn_offsets,
    match_core,
    occurrences,
    pair_delays,
    payloads_differ,
)
from hopcap.correlate.conns import mix, signed32
from hopcap.correlate.reader import (
    ACK,
    CWR,
    ECE,
    FIN,
    MSS_UNKNOWN,
    PSH,
    RST,
    SYN,
    URG,
    PacketTable,
)

I64 = npt.NDArray[np.int64]
M32 = 0xFFFFFFFF

CLS_ACK, CLS_SYN, CLS_FIN, CLS_RST = 0, 1, 2, 3


@functools.lru_cache(maxsize=512)
def _flags_str(f: int) -> str:
    names = [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"),
             (ECE, "ECE"), (CWR, "CWR")]  # fmt: skip
    return ",".join(n for b, n in names if f & b) or "none"


_FLAG_NAMES = tuple(_flags_str(f) for f in range(256))  # the named flags: the low 8 bits


def flags_str(f: int) -> str:
    """TCP flags in words ("SYN,ACK"; "none")."""
    return _FLAG_NAMES[f & 0xFF]


class Rewrite(NamedTuple):
    """A field of one packet changed on its way (made by the thousand: a tuple)."""

    field: str
    before: object
    after: object
    a_row: int
    b_row: int


@dataclass(slots=True)
class DirMatch:
    """One direction of a connection matched across a hop: what arrived, what did not."""

    matched: int = 0  # packets matched
    d_min: int | None = None  # min and median of (downstream ts - upstream ts), raw clocks
    d_med: float | None = None
    undelivered: list[int] = field(default_factory=list)  # a rows that never reached b
    undelivered_bytes: dict[int, int] = field(default_factory=dict)  # partially delivered
    unexplained: list[int] = field(default_factory=list)  # b rows never seen at a
    rewrites: list[Rewrite] = field(default_factory=list)
    base: int = 0  # b-space sequence base used for relative numbers in messages
    a_base: int = 0
    # with KEEP_PAIRS (time slices that cut a connection): the upstream row and one-way
    # delay of every matched pair, for a median over several slices
    pairs: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None
    # a time slice's: `undelivered` and `unexplained` as read, before it kept those its
    # window judges (`slices._keep_judged`): what the hop next to a point that lost the
    # whole connection saw of it (`findings._Chain.around`), wherever it is judged
    read: tuple[list[int], list[int]] | None = None


# set by `slices` while it correlates a slice that cuts a connection (a forked worker or
# the one process, one slice at a time): `DirMatch.pairs` is filled
KEEP_PAIRS = False


def _cls(flags: I64) -> I64:
    return np.where(
        flags & SYN,
        CLS_SYN,
        np.where(flags & RST, CLS_RST, np.where(flags & FIN, CLS_FIN, CLS_ACK)),
    )


def join_unique(ha: npt.NDArray[np.uint64], hb: npt.NDArray[np.uint64]) -> tuple[I64, I64]:
    """Positions (ia, ib) with ha[ia] == hb[ib]; keys in hb are unique."""
    if ha.shape[0] == 0 or hb.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    fast = hash_join(ha, hb)
    if fast is not None:
        return fast
    ob = np.argsort(hb)
    hbs = hb[ob]
    pos = np.searchsorted(hbs, ha)
    pos[pos >= hbs.shape[0]] = hbs.shape[0] - 1
    m = hbs[pos] == ha
    ia = np.nonzero(m)[0]
    return ia, ob[pos[ia]]


def _join_first(ha: npt.NDArray[np.uint64], hb: npt.NDArray[np.uint64]) -> tuple[I64, I64]:
    """Positions (ia, ib) with ha[ia] == hb[ib], ib the first row of hb with that key."""
    if ha.shape[0] and hb.shape[0]:
        fast = hash_join(ha, hb)  # keeps the first of equal keys: no sort needed
        if fast is not None:
            return fast
    _, first_b = np.unique(hb, return_index=True)
    ia, ib = join_unique(ha, hb[first_b])
    return ia, first_b[ib]


def _pair_multiset(ka: npt.NDArray[np.uint64], kb: npt.NDArray[np.uint64]) -> tuple[I64, I64]:
    """Pair equal keys in order (rows are in time order within a key); returns positions
    into ka and kb."""
    if ka.shape[0] == 0 or kb.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    def occ(k: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
        """Unique keys: the n-th repetition of a key becomes (key, n)."""
        oc = occurrences(k)
        if oc is None:
            o = np.argsort(k, kind="stable")
            ks = k[o]
            n = ks.shape[0]
            ar = np.arange(n, dtype=np.int64)
            start = np.ones(n, bool)
            start[1:] = ks[1:] != ks[:-1]
            oc = np.empty(n, np.int64)
            oc[o] = ar - np.maximum.accumulate(np.where(start, ar, 0))
        if not oc.any():
            return k
        return np.where(oc == 0, k, mix(k, oc))

    return join_unique(occ(ka), occ(kb))


@dataclass
class PairParams:
    """Per connection pair of one hop and direction (arrays indexed by pair id)."""

    delta: I64  # b seq minus a seq, mod 2**32
    ack_delta: I64  # -1: unknown
    base: I64  # b-space sequence base for relative numbers
    a_base: I64
    use_ipid: npt.NDArray[np.bool_]
    use_ts: npt.NDArray[np.bool_]


def match_batch(
    ta: PacketTable,
    ra: I64,
    pid_a: I64,
    tb: PacketTable,
    rb: I64,
    pid_b: I64,
    prm: PairParams,
    *,
    ttl_expected: tuple[int, ...] | None,
) -> list[DirMatch]:
    """Match rows `ra` of `ta` (upstream) with rows `rb` of `tb` (downstream); every row
    belongs to the connection pair `pid_*`; one DirMatch per pair. The steps are those of
    the module's docstring, each taking what the ones before left."""
    m = _Batch.compiled(ta, ra, pid_a, tb, rb, pid_b, prm)
    if m is None:
        m = _Batch.of(ta, ra, pid_a, tb, rb, pid_b, prm)
        _match_control(m)  # 1
        _match_exact_data(m)  # 2
    _match_moved(m)  # 3
    _match_options_changed(m)
    _match_new_ipid(m)
    _match_contained(m)  # 4a
    _match_overlaps(m)  # 4b
    return _results(m, ttl_expected)


@dataclass
class _Batch:
    """One match_batch run: both sides' columns (indexed by position in `ra`/`rb`), what
    is matched so far (control and data classes apart: a FIN with data is both), the
    matched position pairs, the rewrites and the partly delivered upstream packets."""

    ta: PacketTable
    ra: I64
    pid_a: I64
    tb: PacketTable
    rb: I64
    pid_b: I64
    prm: PairParams
    seq_a: I64  # upstream seq mapped into downstream space
    sa: I64  # relative (signed) sequence positions
    sb: I64
    pa: Any  # payload lengths
    pb: Any
    fa: Any  # flags
    fb: Any
    tva: I64  # TSval where it identifies a packet of the pair, else -1
    tvb: I64
    ida: I64  # IP ID where it survives the hop for the pair, else -1
    idb: I64
    ctl_a: npt.NDArray[np.bool_]
    ctl_b: npt.NDArray[np.bool_]
    dat_a: npt.NDArray[np.bool_]
    dat_b: npt.NDArray[np.bool_]
    mctl_a: npt.NDArray[np.bool_]
    mctl_b: npt.NDArray[np.bool_]
    mdat_a: npt.NDArray[np.bool_]
    mdat_b: npt.NDArray[np.bool_]
    pairs: list[tuple[I64, I64]] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    und_bytes: dict[int, int] = field(default_factory=dict)
    # pairs matched with another IP ID (a finding only where the pair kept the others)
    id_a: I64 = field(default_factory=lambda: np.zeros(0, np.int64))
    id_b: I64 = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def of(
        cls, ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64,
        prm: PairParams,
    ) -> _Batch:  # fmt: skip
        seq_a = (ta.seq[ra] + prm.delta[pid_a]) & M32
        pa, pb = ta.plen[ra], tb.plen[rb]
        fa, fb = ta.flags[ra], tb.flags[rb]
        return cls(
            ta, ra, pid_a, tb, rb, pid_b, prm,
            seq_a=seq_a,
            sa=signed32(seq_a - prm.base[pid_a]),
            sb=signed32(tb.seq[rb] - prm.base[pid_b]),
            pa=pa, pb=pb, fa=fa, fb=fb,
            tva=np.where(prm.use_ts[pid_a], ta.tsval[ra], -1),
            tvb=np.where(prm.use_ts[pid_b], tb.tsval[rb], -1),
            ida=np.where(prm.use_ipid[pid_a], ta.ipid[ra], -1),
            idb=np.where(prm.use_ipid[pid_b], tb.ipid[rb], -1),
            ctl_a=((fa & (SYN | FIN | RST)) != 0) | (pa == 0),
            ctl_b=((fb & (SYN | FIN | RST)) != 0) | (pb == 0),
            dat_a=pa > 0,
            dat_b=pb > 0,
            mctl_a=np.zeros(ra.shape[0], bool),
            mctl_b=np.zeros(rb.shape[0], bool),
            mdat_a=np.zeros(ra.shape[0], bool),
            mdat_b=np.zeros(rb.shape[0], bool),
        )  # fmt: skip

    @classmethod
    def compiled(
        cls, ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64,
        prm: PairParams,
    ) -> _Batch | None:  # fmt: skip
        """`of`, `_match_control` and `_match_exact_data` in one C pass (the same batch);
        None without the compiled helper."""
        got = match_core(ta, ra, pid_a, tb, rb, pid_b, prm)
        if got is None:
            return None
        pairs = [(got.pop("cpa"), got.pop("cpb")), (got.pop("epa"), got.pop("epb"))]
        ediff, encmp = got.pop("ediff"), got.pop("encmp")
        m = cls(ta, ra, pid_a, tb, rb, pid_b, prm, pairs=pairs, **got)
        ea, eb = pairs[1]
        for k in np.nonzero(ediff)[0].tolist():
            ai, bj = int(ra[ea[k]]), int(rb[eb[k]])
            m.rewrites.append(_payload_rewrite(ta, ai, tb, bj, int(encmp[k])))
        return m

    def leftovers(self) -> tuple[I64, I64]:
        """Positions not matched in every class they belong to."""
        la = np.nonzero((self.ctl_a & ~self.mctl_a) | (self.dat_a & ~self.mdat_a))[0]
        lb = np.nonzero((self.ctl_b & ~self.mctl_b) | (self.dat_b & ~self.mdat_b))[0]
        # a packet in both classes (FIN with data) counts once it is matched either way
        la = la[~((self.mctl_a[la] | ~self.ctl_a[la]) & (self.mdat_a[la] | ~self.dat_a[la]))]
        lb = lb[~((self.mctl_b[lb] | ~self.ctl_b[lb]) & (self.mdat_b[lb] | ~self.dat_b[lb]))]
        return la, lb

    def both(self, i: Any, j: Any) -> None:
        """Positions `i` (upstream) and `j` (downstream) matched in both classes."""
        self.mctl_a[i] = self.mdat_a[i] = True
        self.mctl_b[j] = self.mdat_b[j] = True

    def take(self, i: int, j: int, *, length_too: bool) -> None:
        """Positions `i` and `j` are one packet (matched in both classes); a payload
        rewrite when their captured bytes differ (or, `length_too`, their lengths)."""
        ta, tb = self.ta, self.tb
        ai, bj = int(self.ra[i]), int(self.rb[j])
        n = min(int(ta.pl_cap[ai]), int(tb.pl_cap[bj]))
        if (length_too and int(ta.plen[ai]) != int(tb.plen[bj])) or (
            n and ta.payload(ai, 0, n) != tb.payload(bj, 0, n)
        ):
            self.rewrites.append(_payload_rewrite(ta, ai, tb, bj, n))
        self.both(i, j)

    def payload_rewrites(
        self, ar_: I64, br_: I64, askip: I64, bskip: I64, ln: I64
    ) -> set[tuple[int, int]]:
        """A payload rewrite for every (upstream row, downstream row) whose compared bytes
        differ (at the skips, `ln` bytes, cut to what was captured); those row pairs."""
        ta, tb = self.ta, self.tb
        ln = np.minimum(ln, np.minimum(ta.pl_cap[ar_] - askip, tb.pl_cap[br_] - bskip))
        ok = ln > 0
        ar_, br_, askip, bskip, ln = ar_[ok], br_[ok], askip[ok], bskip[ok], ln[ok]
        differ = payloads_differ(ta.buf, ta.pl_off[ar_] + askip, tb.buf, tb.pl_off[br_] + bskip, ln)
        changed: set[tuple[int, int]] = set()
        for k in np.nonzero(differ)[0].tolist():
            ai, bj = int(ar_[k]), int(br_[k])
            x, y, m = int(askip[k]), int(bskip[k]), int(ln[k])
            changed.add((ai, bj))
            self.rewrites.append(
                _payload_rewrite(
                    ta, ai, tb, bj, m, ta.payload(ai, x, x + m), tb.payload(bj, y, y + m)
                )
            )
        return changed


def _positions(took: list[tuple[int, int]]) -> tuple[I64, I64]:
    a = np.array([i for i, _ in took], np.int64)
    b = np.array([j for _, j in took], np.int64)
    return a, b


def _match_control(m: _Batch) -> None:
    """1. SYN, FIN, RST and pure ACKs as multisets of (position after them, TSval, IP ID
    (not for a FIN: its retransmissions), class)."""
    ia = np.nonzero(m.ctl_a)[0]
    ib = np.nonzero(m.ctl_b)[0]
    fin_a = (m.fa[ia] & FIN) != 0
    fin_b = (m.fb[ib] & FIN) != 0
    ka = mix(m.pid_a[ia], m.sa[ia] + m.pa[ia], m.tva[ia], np.where(fin_a, -1, m.ida[ia]),
             _cls(m.fa[ia]))  # fmt: skip
    kb = mix(m.pid_b[ib], m.sb[ib] + m.pb[ib], m.tvb[ib], np.where(fin_b, -1, m.idb[ib]),
             _cls(m.fb[ib]))  # fmt: skip
    xa, xb = _pair_multiset(ka, kb)
    m.mctl_a[ia[xa]] = True
    m.mctl_b[ib[xb]] = True
    m.pairs.append((ia[xa], ib[xb]))


def _match_exact_data(m: _Batch) -> None:
    """2. Data packets with the same (position, length, TSval, IP ID); their payloads
    compared."""
    ia = np.nonzero(m.dat_a)[0]
    ib = np.nonzero(m.dat_b)[0]
    ka = mix(m.pid_a[ia], m.sa[ia], m.pa[ia], m.tva[ia], m.ida[ia])
    kb = mix(m.pid_b[ib], m.sb[ib], m.pb[ib], m.tvb[ib], m.idb[ib])
    xa, xb = _pair_multiset(ka, kb)
    m.mdat_a[ia[xa]] = True
    m.mdat_b[ib[xb]] = True
    exact_a, exact_b = ia[xa], ib[xb]
    m.pairs.append((exact_a, exact_b))
    ta, tb = m.ta, m.tb
    ea, eb = m.ra[exact_a], m.rb[exact_b]
    ncmp = np.minimum(ta.pl_cap[ea], tb.pl_cap[eb])
    differ = payloads_differ(ta.buf, ta.pl_off[ea], tb.buf, tb.pl_off[eb], ncmp)
    for k in np.nonzero(differ)[0].tolist():
        ai, bj = int(ea[k]), int(eb[k])
        m.rewrites.append(_payload_rewrite(ta, ai, tb, bj, int(ncmp[k])))


def _match_moved(m: _Batch) -> None:
    """3. The same packet (TSval + IP ID) at another sequence number: a tcp.seq rewrite."""
    left_a, left_b = m.leftovers()
    if not (left_a.shape[0] and left_b.shape[0]):
        return
    tb, ra, rb = m.tb, m.ra, m.rb
    ida, idb, tva, tvb = m.ida, m.idb, m.tva, m.tvb
    # identities specific enough: an IP ID, or a TSval together with the length
    ok_a = (ida[left_a] > 0) | ((tva[left_a] >= 0) & ~m.prm.use_ipid[m.pid_a[left_a]])
    ok_b = (idb[left_b] > 0) | ((tvb[left_b] >= 0) & ~m.prm.use_ipid[m.pid_b[left_b]])
    la, lb = left_a[ok_a], left_b[ok_b]
    plk_a = np.where(ida[la] > 0, -1, m.pa[la])
    plk_b = np.where(idb[lb] > 0, -1, m.pb[lb])
    kla = mix(m.pid_a[la], tva[la], ida[la], _cls(m.fa[la]), plk_a)
    klb = mix(m.pid_b[lb], tvb[lb], idb[lb], _cls(m.fb[lb]), plk_b)
    xa, xb = _pair_multiset(kla, klb)
    took: list[tuple[int, int]] = []
    for i, j in zip(la[xa].tolist(), lb[xb].tolist(), strict=True):
        ai, bj = int(ra[i]), int(rb[j])
        before = int(m.seq_a[i])
        after = int(tb.seq[bj])
        if before == after:
            continue  # same place in the stream: left to the byte-range matching
        m.rewrites.append(Rewrite("tcp.seq", before, after, ai, bj))
        m.take(i, j, length_too=True)
        took.append((i, j))
    m.pairs.append(_positions(took))


def _match_options_changed(m: _Batch) -> None:
    """The same IPv4 packet (IP ID, length) with its TCP options changed too."""
    left_a, left_b = m.leftovers()
    if not (left_a.shape[0] and left_b.shape[0]):
        return
    ta, tb, ra, rb, ida, idb = m.ta, m.tb, m.ra, m.rb, m.ida, m.idb
    la = left_a[(ida[left_a] > 0) & m.prm.use_ts[m.pid_a[left_a]]]
    lb = left_b[(idb[left_b] > 0) & m.prm.use_ts[m.pid_b[left_b]]]
    xa, xb = _pair_multiset(
        mix(m.pid_a[la], ida[la], _cls(m.fa[la]), m.pa[la]),
        mix(m.pid_b[lb], idb[lb], _cls(m.fb[lb]), m.pb[lb]),
    )
    took: list[tuple[int, int]] = []
    for i, j in zip(la[xa].tolist(), lb[xb].tolist(), strict=True):
        ai, bj = int(ra[i]), int(rb[j])
        if int(m.seq_a[i]) != int(tb.seq[bj]):
            m.rewrites.append(Rewrite("tcp.seq", int(m.seq_a[i]), int(tb.seq[bj]), ai, bj))
        if int(ta.tsval[ai]) != int(tb.tsval[bj]):
            m.rewrites.append(
                Rewrite("tcp.options.tsval", int(ta.tsval[ai]), int(tb.tsval[bj]), ai, bj)
            )
        m.take(i, j, length_too=False)
        took.append((i, j))
    m.pairs.append(_positions(took))


def _match_new_ipid(m: _Batch) -> None:
    """The same packet (sequence position, length, TSval, class) with another IP ID; only
    where the IP ID is kept across the hop for this connection (use_ipid) and a TSval
    makes the identity certain. GSO/TSO pieces differ in length and never pair here."""
    left_a, left_b = m.leftovers()
    if not (left_a.shape[0] and left_b.shape[0]):
        return
    la = left_a[(m.ida[left_a] >= 0) & (m.tva[left_a] >= 0)]
    lb = left_b[(m.idb[left_b] >= 0) & (m.tvb[left_b] >= 0)]
    xa, xb = _pair_multiset(
        mix(m.pid_a[la], m.sa[la], m.pa[la], m.tva[la], _cls(m.fa[la])),
        mix(m.pid_b[lb], m.sb[lb], m.pb[lb], m.tvb[lb], _cls(m.fb[lb])),
    )
    m.id_a, m.id_b = la[xa], lb[xb]
    m.both(m.id_a, m.id_b)
    m.pairs.append((m.id_a, m.id_b))


def _match_contained(m: _Batch) -> None:
    """4a. Data whose segmentation differs, vectorised: a packet lying inside one packet of
    the other side (GRO merged segments downstream, or TSO/GSO pieces of one big packet
    upstream)."""
    ra_left = np.nonzero(m.dat_a & ~m.mdat_a)[0]
    rb_left = np.nonzero(m.dat_b & ~m.mdat_b)[0]
    if not (ra_left.shape[0] and rb_left.shape[0]):
        return
    sa, sb, pa, pb, ida, idb = m.sa, m.sb, m.pa, m.pb, m.ida, m.idb
    cov = _containment(m.pid_a, sa, pa, m.tva, ida, ra_left, m.pid_b, sb, pb, m.tvb, idb, rb_left)
    a_in_b, b_of_a, b_in_a, a_of_b = cov
    cov_a = np.bincount(a_of_b, weights=pb[b_in_a], minlength=sa.shape[0]).astype(np.int64)
    hit_a = np.zeros(sa.shape[0], bool)
    hit_a[a_in_b] = True
    hit_a[a_of_b] = True
    hit_b = np.zeros(sb.shape[0], bool)
    hit_b[b_in_a] = True
    hit_b[b_of_a] = True
    # an upstream packet split downstream is delivered as far as its pieces are
    split = npsets.unique(a_of_b)
    split = split[~npsets.isin(split, a_in_b)]
    short = split[cov_a[split] < pa[split]]
    # the very same packet (IP ID, start) that left with another length was cut or
    # rewritten, not partly lost
    pieces = np.bincount(a_of_b, minlength=sa.shape[0])
    same = (ida[a_of_b] > 0) & (idb[b_in_a] == ida[a_of_b]) & (sb[b_in_a] == sa[a_of_b])
    same &= (pb[b_in_a] != pa[a_of_b]) & (pieces[a_of_b] == 1)
    cut = list(zip(a_of_b[same].tolist(), b_in_a[same].tolist(), strict=True))
    short = short[~npsets.isin(short, a_of_b[same])]
    for i in short.tolist():
        m.und_bytes[i] = int(pa[i] - cov_a[i])
    m.mdat_a |= hit_a
    m.mdat_b |= hit_b
    m.pairs.append((a_in_b, b_of_a))
    m.pairs.append((a_of_b, b_in_a))
    ra, rb = m.ra, m.rb
    changed = m.payload_rewrites(
        np.concatenate([ra[a_in_b], ra[a_of_b]]),
        np.concatenate([rb[b_of_a], rb[b_in_a]]),
        np.concatenate([np.zeros(a_in_b.shape[0], np.int64), sb[b_in_a] - sa[a_of_b]]),
        np.concatenate([sa[a_in_b] - sb[b_of_a], np.zeros(b_in_a.shape[0], np.int64)]),
        np.concatenate([pa[a_in_b], pb[b_in_a]]).astype(np.int64),
    )
    for i, j in cut:  # the same bytes, fewer of them: cut short
        ai, bj = int(ra[i]), int(rb[j])
        if (ai, bj) not in changed:
            m.rewrites.append(
                Rewrite("payload", f"{int(pa[i])} bytes", f"{int(pb[j])} bytes", ai, bj)
            )


def _match_overlaps(m: _Batch) -> None:
    """4b. What is left of the data: partial overlaps of byte ranges with the same
    transmission identity (pair, TSval; IP IDs within a burst), one by one."""
    ra_left = np.nonzero(m.dat_a & ~m.mdat_a)[0]
    rb_left = np.nonzero(m.dat_b & ~m.mdat_b)[0]
    if not (ra_left.shape[0] and rb_left.shape[0]):
        return
    sa, sb, pa, pb, ida, idb = m.sa, m.sb, m.pa, m.pb, m.ida, m.idb
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for j in rb_left.tolist():
        groups[(int(m.pid_b[j]), int(m.tvb[j]))].append((int(sb[j]), int(sb[j] + pb[j]), j))
    starts: dict[tuple[int, int], list[int]] = {}
    for g, lst in groups.items():
        lst.sort()
        starts[g] = [x[0] for x in lst]
    ov_a: list[int] = []
    ov_b: list[int] = []
    cmp: list[tuple[int, int, int, int, int]] = []  # a row, b row, a skip, b skip, length
    for i in ra_left.tolist():
        g = (int(m.pid_a[i]), int(m.tva[i]))
        lst = groups.get(g, [])
        if not lst:
            continue
        s, e = int(sa[i]), int(sa[i] + pa[i])
        st = starts[g]
        k = bisect.bisect_left(st, s)
        k = max(k - 1, 0)
        while k > 0 and lst[k - 1][1] > s:
            k -= 1
        covered = 0
        hit: list[int] = []
        same_packet = False  # this very packet (IP ID) came out with another length
        idv = int(ida[i])
        while k < len(lst) and lst[k][0] < e:
            bs, be, j = lst[k]
            k += 1
            if be <= s:
                continue
            if idv >= 0 and idb[j] >= 0:
                d = (int(idb[j]) - idv) & 0xFFFF
                if not (d <= 128 or d >= 0xFFFF - 128):
                    continue
            hit.append(j)
            covered += min(be, e) - max(bs, s)
            if idv > 0 and int(idb[j]) == idv and bs == s and be != e:
                same_packet = True
        if not hit:
            continue
        m.mdat_a[i] = True
        for j in hit:
            if not m.mdat_b[j]:
                m.mdat_b[j] = True
                ov_a.append(i)
                ov_b.append(j)
            bs, be = int(sb[j]), int(sb[j] + pb[j])
            lo, hi = max(bs, s), min(be, e)
            cmp.append((int(m.ra[i]), int(m.rb[j]), lo - s, lo - bs, hi - lo))
        if covered < e - s and not same_packet:
            m.und_bytes[i] = (e - s) - covered
    m.pairs.append((np.array(ov_a, np.int64), np.array(ov_b, np.int64)))
    if cmp:
        ar_, br_, askip, bskip, ln = np.array(cmp, np.int64).T
        m.payload_rewrites(ar_, br_, askip, bskip, ln)


def _results(m: _Batch, ttl_expected: tuple[int, ...] | None) -> list[DirMatch]:
    """One DirMatch per pair: matched count and one-way delays, what is left on either
    side, partly delivered packets, and every rewrite (those found by the steps, IP ID
    rewrites, header fields of the matched pairs)."""
    ta, tb, ra, rb, pid_a, pid_b, prm = m.ta, m.tb, m.ra, m.rb, m.pid_a, m.pid_b, m.prm
    npairs = int(prm.delta.shape[0])
    left_a, left_b = m.leftovers()
    pairs = m.pairs
    pa_all = np.concatenate([p[0] for p in pairs]) if pairs else np.zeros(0, np.int64)
    pb_all = np.concatenate([p[1] for p in pairs]) if pairs else np.zeros(0, np.int64)
    # the matched rows of both sides and their pairs, gathered once
    ga_all, gb_all, pid_all = ra[pa_all], rb[pb_all], pid_a[pa_all]
    n_ok = np.zeros(npairs, np.int64)  # matched packets per pair
    d_min = np.zeros(npairs, np.int64)
    d_med = np.zeros(npairs, np.float64)
    by_pair: tuple[I64, I64, I64] | None = None  # with KEEP_PAIRS: rows, delays, cuts by pair
    fast = None
    if pa_all.shape[0] and not KEEP_PAIRS:
        fast = pair_delays(ga_all, gb_all, pid_all, ta.ts, tb.ts, npairs)
    if fast is not None:
        n_ok, d_min, d_med = fast
    elif pa_all.shape[0]:
        # one-way delays per pair (raw clocks): the minimum for clock offsets, the median
        # for latency; the pairs themselves are not kept
        dl = tb.ts[gb_all] - ta.ts[ga_all]
        if KEEP_PAIRS:
            o = np.argsort(pid_all, kind="stable")
            at = np.searchsorted(pid_all[o], np.arange(npairs + 1))
            by_pair = (ga_all[o], dl[o], at)
        pp, dl = _sort_by_pair(pid_all, dl)
        cuts = np.searchsorted(pp, np.arange(npairs + 1))
        ks = np.nonzero(np.diff(cuts))[0]
        lo, hi = cuts[ks], cuts[ks + 1]
        n = hi - lo
        n_ok[ks] = n
        d_min[ks] = dl[lo]
        d_med[ks] = (dl[lo + (n - 1) // 2] + dl[lo + n // 2]).astype(np.float64) / 2
    cols = (n_ok.tolist(), d_min.tolist(), d_med.tolist(), prm.base.tolist(),
            prm.a_base.tolist())  # fmt: skip
    out = [
        DirMatch(c, d0, dm, [], {}, [], [], b, a)
        if c
        else DirMatch(0, None, None, [], {}, [], [], b, a)
        for c, d0, dm, b, a in zip(*cols, strict=True)
    ]
    if by_pair is not None:
        rows_a, dl_o, at = by_pair
        for k in range(npairs):
            out[k].pairs = (rows_a[at[k] : at[k + 1]], dl_o[at[k] : at[k + 1]])
    for p, r in zip(pid_a[left_a].tolist(), ra[left_a].tolist(), strict=True):
        out[p].undelivered.append(r)
    for p, r in zip(pid_b[left_b].tolist(), rb[left_b].tolist(), strict=True):
        out[p].unexplained.append(r)
    for i, n_ in m.und_bytes.items():
        out[int(pid_a[i])].undelivered_bytes[int(ra[i])] = n_
    rewrites = m.rewrites
    id_a, id_b = m.id_a, m.id_b
    if id_a.shape[0]:
        # an IP ID rewrite is a finding where the other packets of the connection kept
        # theirs (a device that gives every packet a new ID is policy, not a finding)
        n_rw = np.bincount(pid_a[id_a], minlength=npairs)
        kept = n_ok - n_rw
        keep = n_rw[pid_a[id_a]] < kept[pid_a[id_a]]
        ai, bj = ra[id_a[keep]].tolist(), rb[id_b[keep]].tolist()
        before, after = ta.ipid[ai].tolist(), tb.ipid[bj].tolist()
        for x, y, i, j in zip(before, after, ai, bj, strict=True):
            rewrites.append(Rewrite("ip.id", x, y, i, j))
    if rewrites:
        # the pair of each rewrite's upstream row (the last pair of a row listed twice, as
        # a row -> pair column would say): a lookup in this batch's rows, not a column
        # the size of the whole capture zeroed and filled for every batch
        o = np.argsort(ra, kind="stable")
        at = np.searchsorted(ra[o], np.array([rw.a_row for rw in rewrites], np.int64), "right")
        for rw, k in zip(rewrites, pid_a[o[at - 1]].tolist(), strict=True):
            out[k].rewrites.append(rw)
    for rw, k in _field_rewrites(ta, ga_all, tb, gb_all, pid_all, prm, ttl_expected=ttl_expected):
        out[k].rewrites.append(rw)
    return out


def _sort_by_pair(pp: I64, d: I64) -> tuple[I64, I64]:
    """(pp, d) sorted by pair, then by d. One sort of a packed key when both fit in 62
    bits (the usual case: delays within a few minutes), else a lexsort."""
    dmin, dmax = int(d.min()), int(d.max())
    bits = (dmax - dmin).bit_length()
    if bits + int(pp.max()).bit_length() <= 62 and int(pp.min()) >= 0:
        key = np.sort((pp << bits) | (d - dmin))
        return key >> bits, (key & ((1 << bits) - 1)) + dmin
    o = np.lexsort((d, pp))
    return pp[o], d[o]


def _containment(
    pid_a: I64, sa: I64, pa: npt.NDArray[np.integer], tva: I64, ida: npt.NDArray[np.integer],
    la: I64, pid_b: I64, sb: I64, pb: npt.NDArray[np.integer], tvb: I64,
    idb: npt.NDArray[np.integer], lb: I64,
) -> tuple[I64, I64, I64, I64]:  # fmt: skip
    """Rows of `la` lying inside one row of `lb` with the same transmission identity (pair,
    TSval, IP ID within a burst), and the reverse: (a_in_b, b_of_a, b_in_a, a_of_b)."""

    def inside(
        xs: I64, ps: Any, xe: I64, xg: Any, xid: I64, ys: I64, ye: I64, yg: Any, yid: I64
    ) -> tuple[I64, I64]:
        # rank the groups densely so that (group, start) fits one sortable int64
        allg = np.concatenate([xg, yg])
        _, inv = np.unique(allg, return_inverse=True)
        rx, ry = inv[: xg.shape[0]].astype(np.int64), inv[xg.shape[0] :].astype(np.int64)
        off = 1 << 31
        ky = (ry << 33) | (np.clip(ys, -off, off - 1) + off)
        kx = (rx << 33) | (np.clip(xs, -off, off - 1) + off)
        o = np.argsort(ky, kind="stable")
        kys = ky[o]
        pos = np.searchsorted(kys, kx, side="right") - 1
        okp = pos >= 0
        pos = np.where(okp, pos, 0)
        j = o[pos]
        good = okp & (ry[j] == rx) & (ys[j] <= xs) & (ye[j] >= xe)
        both = (xid >= 0) & (yid[j] >= 0)
        d = (yid[j] - xid) & 0xFFFF
        good &= ~both | (d <= 128) | (d >= 0xFFFF - 128)
        return np.nonzero(good)[0], j[good]

    empty = np.zeros(0, np.int64)
    if la.shape[0] == 0 or lb.shape[0] == 0:
        return empty, empty, empty, empty
    ga = mix(pid_a[la], tva[la])
    gb = mix(pid_b[lb], tvb[lb])
    sa_, ea_ = sa[la], sa[la] + pa[la]
    sb_, eb_ = sb[lb], sb[lb] + pb[lb]
    ida_, idb_ = ida[la].astype(np.int64), idb[lb].astype(np.int64)
    xa, jb = inside(sa_, pa[la], ea_, ga, ida_, sb_, eb_, gb, idb_)
    xb, ja = inside(sb_, pb[lb], eb_, gb, idb_, sa_, ea_, ga, ida_)
    return la[xa], lb[jb], lb[xb], la[ja]


def _payload_rewrite(
    ta: PacketTable,
    ai: int,
    tb: PacketTable,
    bj: int,
    n: int,
    a_bytes: bytes | None = None,
    b_bytes: bytes | None = None,
) -> Rewrite:
    a = a_bytes if a_bytes is not None else ta.payload(ai)
    b = b_bytes if b_bytes is not None else tb.payload(bj)
    k = 0
    m = min(len(a), len(b))
    while k < m and a[k] == b[k]:
        k += 1
    lo = max(k - 8, 0)

    def show(x: bytes) -> str:
        return x[lo : lo + 48].decode("latin-1").encode("unicode_escape").decode("ascii")

    return Rewrite("payload", show(a), show(b), ai, bj)


def _field_rewrites(
    ta: PacketTable,
    a: I64,
    tb: PacketTable,
    b: I64,
    pid: I64,
    prm: PairParams,
    *,
    ttl_expected: tuple[int, ...] | None,
) -> list[tuple[Rewrite, int]]:
    out: list[tuple[Rewrite, int]] = []
    if a.shape[0] == 0:
        return out

    def add(name: str, mask: npt.NDArray[np.bool_], before: Any, after: Any) -> None:
        """One Rewrite per row in `mask`: the columns are gathered at those rows only."""
        k = np.nonzero(mask)[0]
        if not k.shape[0]:
            return
        cols = (before[k].tolist(), after[k].tolist(), a[k].tolist(), b[k].tolist())
        for x, y, ra, rb, p in zip(*cols, pid[k].tolist(), strict=True):
            out.append((Rewrite(name, x, y, ra, rb), p))

    got = field_diffs_ttl(ta, a, tb, b, pid, prm.delta, prm.ack_delta, ttl_expected)
    if got is not None:
        # compared in one pass, the TTL judged too (bit 32) unless a decrement is out of
        # the usual range; before/after values gathered only where they differ
        d16, what, judged = got
        if not judged:
            what[_ttl_off_mode(pid, d16.astype(np.int64))] |= 32
        nz = np.nonzero(what)[0]
        w = what[nz]
        k = nz[(w & 32) != 0]
        _rewrites_at(out, "ip.ttl", k, a, b, pid, ta.ttl[a[k]], tb.ttl[b[k]])
        for bit, name, col, shift in _FIELD_BITS:
            k = nz[(w & bit) != 0]
            if k.shape[0]:
                before, after = getattr(ta, col)[a[k]], getattr(tb, col)[b[k]]
                if name == "tcp.ack":
                    before = (ta.ack[a[k]] + prm.ack_delta[pid[k]]) & M32
                _rewrites_at(out, name, k, a, b, pid, before >> shift, after >> shift)
        return out
    # each column is gathered once; before/after values are read only where they differ
    ttl_a, ttl_b = ta.ttl[a], tb.ttl[b]
    dttl = ttl_a - ttl_b
    # TTL: a constant decrement per routed hop is expected (across hosts: the most
    # common decrement of each connection, if it is a plausible hop count)
    bad_ttl = (
        ~npsets.isin(dttl, ttl_expected) if ttl_expected is not None else _ttl_off_mode(pid, dttl)
    )
    add("ip.ttl", bad_ttl, ttl_a, ttl_b)
    del ttl_a, ttl_b, dttl
    dscp_a, dscp_b = ta.tos[a] >> 2, tb.tos[b] >> 2
    add("ip.dscp", dscp_a != dscp_b, dscp_a, dscp_b)
    del dscp_a, dscp_b
    # PSH (and FIN on the last piece) move when segmentation differs; ECN bits are
    # routers' business
    flags_a, flags_b = ta.flags[a], tb.flags[b]
    resegmented = (ta.plen[a] != tb.plen[b]) | (((ta.seq[a] + prm.delta[pid]) & M32) != tb.seq[b])
    keep = ~(PSH | ECE | CWR)
    fa = np.where(resegmented, flags_a & keep & ~FIN, flags_a & keep)
    fb = np.where(resegmented, flags_b & keep & ~FIN, flags_b & keep)
    add("tcp.flags", fa != fb, flags_a, flags_b)
    del fa, fb
    win_a, win_b = ta.win[a], tb.win[b]
    add("tcp.window", (win_a != win_b) & ~resegmented, win_a, win_b)
    del win_a, win_b
    # only SYNs carry an MSS option: the column is read at SYN rows only
    syn = np.nonzero((flags_a & SYN) != 0)[0]
    if syn.shape[0]:
        mss_a = np.full(a.shape[0], -1, np.int64)
        mss_b = np.full(a.shape[0], -1, np.int64)
        mss_a[syn], mss_b[syn] = ta.mss[a[syn]], tb.mss[b[syn]]
        # an MSS that a capture cut off (its snap length) is not compared
        known = (mss_a != MSS_UNKNOWN) & (mss_b != MSS_UNKNOWN)
        add("tcp.mss", (mss_a != mss_b) & known, mss_a, mss_b)
    ackd = prm.ack_delta[pid]
    has_ack = ((flags_a & ACK) != 0) & ((flags_b & ACK) != 0) & (ackd >= 0)
    exp_ack = (ta.ack[a] + ackd) & M32
    ack_b = tb.ack[b]
    add("tcp.ack", has_ack & (exp_ack != ack_b), exp_ack, ack_b)
    return out


# the fields of hopcap_fields_ttl's bits (32, the TTL, apart): (bit, rewrite name, column,
# shift of its values)
_FIELD_BITS = ((1, "ip.dscp", "tos", 2), (2, "tcp.flags", "flags", 0), (4, "tcp.window", "win", 0),
               (8, "tcp.mss", "mss", 0), (16, "tcp.ack", "ack", 0))  # fmt: skip


def _rewrites_at(
    out: list[tuple[Rewrite, int]], name: str, k: I64, a: I64, b: I64, pid: I64,
    before: Any, after: Any,
) -> None:  # fmt: skip
    """One Rewrite per position `k` of the matched pairs (values `before`, `after`)."""
    rows = zip(repeat(name), before.tolist(), after.tolist(), a[k].tolist(), b[k].tolist())
    out += zip(map(tuple.__new__, repeat(Rewrite), rows), pid[k].tolist(), strict=True)


def _ttl_off_mode(pid: I64, dttl: I64) -> npt.NDArray[np.bool_]:
    """Rows whose TTL decrement differs from their connection's most common one (taken as
    0 unless it is a plausible hop count, 0..8; ties go to the smaller decrement)."""
    npairs = int(pid.max()) + 1
    if int(dttl.min()) >= 0 and int(dttl.max()) <= 8:
        # the usual case, in one pass: counts per (connection, decrement 0..8)
        counts = np.bincount(pid * 9 + dttl, minlength=npairs * 9).reshape(npairs, 9)
        m = np.argmax(counts, axis=1).astype(np.int64)[pid]
        fast: npt.NDArray[np.bool_] = dttl != m
        return fast
    key = pid * 1024 + np.clip(dttl, -500, 500) + 512
    vals, counts = np.unique(key, return_counts=True)
    o = np.lexsort((-counts, vals // 1024))
    vals, counts = vals[o], counts[o]
    first = np.ones(vals.shape[0], bool)
    first[1:] = (vals[1:] // 1024) != (vals[:-1] // 1024)
    mode = np.zeros(npairs, np.int64)
    mode[vals[first] // 1024] = (vals[first] % 1024) - 512
    m = mode[pid]
    m = np.where((m >= 0) & (m <= 8), m, 0)
    slow: npt.NDArray[np.bool_] = dttl != m
    return slow


def _rank_in_group(pid: I64) -> I64:
    """Position of each row within its run of equal (contiguous) pair ids."""
    n = pid.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    ar = np.arange(n, dtype=np.int64)
    start = np.ones(n, bool)
    start[1:] = pid[1:] != pid[:-1]
    return ar - np.maximum.accumulate(np.where(start, ar, 0))


def learn_deltas(
    ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64, npairs: int
) -> tuple[I64, I64]:
    """The constant sequence offset (b - a, mod 2**32) of one direction of every pair, from
    the SYNs or from packets that carry the same identity (TSval + IP ID + length) at both
    points, else from payloads; -1 when unknown. Also returns, per pair, whether a packet
    of the sample matched on an identity that includes the IP ID (1; 0: the IP ID does not
    survive)."""
    fast = learn_offsets(ta, ra, pid_a, tb, rb, pid_b, npairs)
    delta, votes = (
        fast if fast is not None else _learn_sampled(ta, ra, pid_a, tb, rb, pid_b, npairs)
    )
    unknown = np.nonzero(delta < 0)[0]
    if unknown.shape[0]:
        # every packet of a pair whose samples (its first packets at each point) share
        # none: one point saw much more of the connection first (its capture began with
        # the handshake, the other's seconds later); its payloads would pair one request
        # with another alike (a keep-alive connection's): every later packet 'rewritten'
        wa, wb = np.isin(pid_a, unknown), np.isin(pid_b, unknown)
        got = _vote_offsets(ta, ra[wa], pid_a[wa], tb, rb[wb], pid_b[wb], npairs)
        if got is not None:
            pp, d = got
            votes[pp] = 1
            delta[pp] = d
            unknown = np.nonzero(delta < 0)[0]
    # payloads, for what is left (no TSval, IP ID not kept)
    if unknown.shape[0]:
        _learn_by_payload(ta, ra, pid_a, tb, rb, pid_b, delta, unknown)
    return delta, votes


def _vote_offsets(
    ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64, npairs: int
) -> tuple[I64, I64] | None:
    """The pairs among `pid_a`/`pid_b` (rows `ra`, `rb`) that have packets with the same
    identity (TSval + IP ID + length) at both points, and each one's most common sequence
    offset (b - a, mod 2**32; ties: the smallest); None: no pair has."""
    oka = (ta.tsval[ra] >= 0) | (ta.ipid[ra] > 0)
    okb = (tb.tsval[rb] >= 0) | (tb.ipid[rb] > 0)
    xa, xb = ra[oka], rb[okb]
    ka = mix(pid_a[oka], ta.tsval[xa], ta.ipid[xa], ta.plen[xa])
    kb = mix(pid_b[okb], tb.tsval[xb], tb.ipid[xb], tb.plen[xb])
    ia, ib = _join_first(ka, kb)
    if not ia.shape[0]:
        return None
    return _most_common(pid_a[oka][ia], (tb.seq[xb[ib]] - ta.seq[xa[ia]]) & M32)


def _most_common(pp: I64, d: I64) -> tuple[I64, I64]:
    """Each pair of `pp` once, with its most common offset among `d` (ties: the smallest)."""
    key = (pp << 32) | d
    vals, counts = np.unique(key, return_counts=True)
    o = np.lexsort((-counts, vals >> 32))
    vals = vals[o]
    first = np.ones(vals.shape[0], bool)
    first[1:] = (vals[1:] >> 32) != (vals[:-1] >> 32)
    return vals[first] >> 32, vals[first] & M32


def _learn_sampled(
    ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64, npairs: int
) -> tuple[I64, I64]:
    """`learn_deltas` from the SYNs and the identity sample (numpy; hopcap_learn in C)."""
    delta = np.full(npairs, -1, np.int64)
    votes = np.zeros(npairs, np.int64)
    if npairs == 0:
        return delta, votes
    # a sample is enough: the first packets of every pair (rows come grouped by pair)
    oka = ((ta.tsval[ra] >= 0) | (ta.ipid[ra] > 0)) & (_rank_in_group(pid_a) < 32)
    okb = ((tb.tsval[rb] >= 0) | (tb.ipid[rb] > 0)) & (_rank_in_group(pid_b) < 48)
    xa, xb = ra[oka], rb[okb]
    ka = mix(pid_a[oka], ta.tsval[xa], ta.ipid[xa], ta.plen[xa])
    kb = mix(pid_b[okb], tb.tsval[xb], tb.ipid[xb], tb.plen[xb])
    ia, ib = _join_first(ka, kb)
    # SYNs decide when both sides have one (the votes below only for the other pairs)
    by_syn = np.zeros(npairs, bool)
    sa = (ta.flags[ra] & SYN) != 0
    sb = (tb.flags[rb] & SYN) != 0
    if sa.any() and sb.any():
        pa_, ia_ = np.unique(pid_a[sa], return_index=True)
        pb_, ib_ = np.unique(pid_b[sb], return_index=True)
        common, xa2, xb2 = np.intersect1d(pa_, pb_, assume_unique=True, return_indices=True)
        rows_a = ra[sa][ia_[xa2]]
        rows_b = rb[sb][ib_[xb2]]
        delta[common] = (tb.seq[rows_b] - ta.seq[rows_a]) & M32
        by_syn[common] = True
    if ia.shape[0]:
        pp = pid_a[oka][ia]
        votes += np.bincount(pp, minlength=npairs)
        vote = ~by_syn[pp]
        pp, ia, ib = pp[vote], ia[vote], ib[vote]
        # the most common offset of each pair (ties: the smallest)
        p2, d2 = _most_common(pp, (tb.seq[xb[ib]] - ta.seq[xa[ia]]) & M32)
        delta[p2] = d2
    return delta, np.minimum(votes, 1)


def _learn_by_payload(
    ta: PacketTable, ra: I64, pid_a: I64, tb: PacketTable, rb: I64, pid_b: I64, delta: I64,
    unknown: I64,
) -> None:  # fmt: skip
    """`delta` of the pairs `unknown` from payloads that both points carry (in place)."""
    import xxhash

    da = ra[npsets.isin(pid_a, unknown) & (ta.pl_cap[ra] > 0)]
    db = rb[npsets.isin(pid_b, unknown) & (tb.pl_cap[rb] > 0)]
    if da.shape[0] and db.shape[0]:
        pa_map = dict(zip(ra.tolist(), pid_a.tolist(), strict=True))
        pb_map = dict(zip(rb.tolist(), pid_b.tolist(), strict=True))
        hb: dict[tuple[int, int], int] = {}
        seen: dict[int, int] = {}
        for j in db.tolist():
            k = pb_map[j]
            if seen.get(k, 0) >= 64:
                continue
            seen[k] = seen.get(k, 0) + 1
            hb.setdefault((k, xxhash.xxh3_64_intdigest(tb.payload(int(j)))), int(j))
        tally: dict[int, Counter[int]] = defaultdict(Counter)
        seen.clear()
        for i in da.tolist():
            k = pa_map[i]
            if seen.get(k, 0) >= 64:
                continue
            seen[k] = seen.get(k, 0) + 1
            j2 = hb.get((k, xxhash.xxh3_64_intdigest(ta.payload(int(i)))))
            if j2 is not None:
                tally[k][int((int(tb.seq[j2]) - int(ta.seq[i])) & M32)] += 1
        for k, c in tally.items():
            delta[k] = c.most_common(1)[0][0]
