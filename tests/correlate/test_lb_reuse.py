"""An L7 load balancer that reuses backend connections (keep-alive pools, HAProxy's
`http-reuse`), spreads one client connection's requests over several backend connections,
and retries/redispatches: generated captures at the proxy's front (lb:eth0), its back
(lb:eth1) and the server (srv:eth0)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pcapgen import C2S, S2C, Conv, Seg, View
from test_path import points

from hopcap.correlate import correlate
from hopcap.correlate.link import ATTEMPT, RESENT, TIME_ONLY
from hopcap.model import Flow, PointInput, Verdict

T0 = 1_763_790_000.0
VIP = ("203.0.113.80", 80)
LB = "198.18.2.1"
SRV = ("198.18.2.2", 8080)
SRV2 = ("198.18.2.3", 8080)


def req(n: int, *, same: bool = False) -> bytes:
    path = b"/index.html" if same else b"/item/%d" % n
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: www.example.test\r\n"
        b"User-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"
    )


def resp(n: int, *, same: bool = False) -> bytes:
    m = 0 if same else n
    body = b"".join(b"<p>page %d, part %d</p>" % (m, k) for k in range(100))
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def xff(data: bytes, client: str) -> bytes:
    return data.replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: " + client.encode() + b"\r\n\r\n", 1)


@dataclass
class Site:
    """Ground truth of a proxy's traffic: front (client) and back (server) connections on
    one clock."""

    t: float = T0
    fronts: list[Conv] = field(default_factory=list)
    backs: list[Conv] = field(default_factory=list)
    sent: dict[int, list[Seg]] = field(default_factory=dict)  # id(back) -> its request segs

    def _at(self, c: Conv) -> Conv:
        c.t = max(c.t, self.t)
        return c

    def front(self, i: int, *, client: str | None = None, ts: bool = True) -> Conv:
        c = Conv(client=(client or f"203.0.113.{10 + i}", 55000 + i), server=VIP,
                 seed=800 + i, t0=self.t, ts=ts)  # fmt: skip
        c.handshake()
        self.t = c.t
        self.fronts.append(c)
        return c

    def back(self, i: int, server: tuple[str, int] = SRV, *, ts: bool = True) -> Conv:
        c = Conv(client=(LB, 38000 + i), server=server, seed=900 + i, t0=self.t + 0.0001, ts=ts)
        c.handshake()
        self.t = c.t
        self.backs.append(c)
        return c

    def exchange(self, f: Conv, b: Conv, n: int, *, same: bool = False, lost: bool = False) -> None:
        """Request `n` from `f` forwarded over `b` (X-Forwarded-For added), its response
        back; `lost`: the forwarded request's first transmission never reaches the server
        (retransmitted 200 ms later)."""
        self._at(f).request(req(n, same=same))
        self.t = f.t
        data = xff(req(n, same=same), f.client[0])
        self._at(b)
        forward(b, data, lost=lost)
        b.response(resp(n, same=same))
        self.t = b.t
        self._at(f).response(resp(n, same=same))
        self.t = f.t + 0.005

    def close(self, c: Conv) -> None:
        self._at(c).close()
        self.t = c.t

    def capture(
        self,
        tmp: Path,
        drop: Callable[[Seg], bool] = lambda s: False,
        *,
        drop_back: Callable[[Seg], bool] = lambda s: False,
        nat: bool = False,
    ) -> Verdict:
        """The verdict of `points` (the same arguments)."""
        return correlate(self.points(tmp, drop, drop_back=drop_back, nat=nat))

    def points(
        self,
        tmp: Path,
        drop: Callable[[Seg], bool] = lambda s: False,
        *,
        drop_back: Callable[[Seg], bool] = lambda s: False,
        nat: bool = False,
    ) -> list[PointInput]:
        """Points lb:eth0, lb:eth1, srv:eth0; `drop`: lost before srv:eth0, `drop_back`:
        lost before lb:eth1 (responses); `nat`: a NAT with sequence offsets between lb:eth1
        and srv:eth0 (the server sees the proxy as 198.18.3.1:41000+)."""
        fronts = {id(c) for c in self.fronts}

        def front_only(c: Conv) -> View:
            return View(drop=lambda s: id(s.conv) not in fronts)

        def at_back(c: Conv) -> View:
            return View(delay=0.0001, drop=lambda s: id(s.conv) in fronts or drop_back(s))

        def at_srv(c: Conv) -> View:
            v = View(delay=0.0002,
                     drop=lambda s: id(s.conv) in fronts or s.conv.server != SRV or drop(s))  # type: ignore[union-attr]  # fmt: skip
            if nat and id(c) not in fronts:
                port = 41000 + c.client[1] % 1000
                v.nat = {C2S: ("198.18.3.1", port, *c.server), S2C: (*c.server, "198.18.3.1", port)}
                v.seq_off = {C2S: 0x10000000 + port, S2C: 0x20000000 + port}
            return v

        return points(tmp, [*self.fronts, *self.backs], [
            ("lb:eth0", front_only), ("lb:eth1", at_back), ("srv:eth0", at_srv),
        ])  # fmt: skip


def forward(b: Conv, data: bytes, *, lost: bool = False) -> None:
    """The proxy's request `data` over `b`; `lost`: its first transmission never reaches
    the server (tagged "lost"), retransmitted 200 ms later and acknowledged."""
    if lost:
        orig = b.seg(C2S, "PA", data, tag="lost", advance=False)
        b.seg(C2S, "PA", data, seq=orig.seq, dt=0.2, tag="retrans")
        b.nxt[C2S] += len(data)
        b.seg(S2C, "A", tag="ack", dt=b.rtt / 2)
    else:
        b.request(data)


def flow_of(v: Verdict, client: str) -> Flow:
    return next(fl for fl in v.flows if fl.client == client)


def legs(fl: Flow) -> list[tuple[str, str, str]]:
    return [(leg.point, leg.link, leg.tuple) for leg in fl.legs]


def back_tuple(i: int, server: tuple[str, int] = SRV) -> str:
    return f"{LB}:{38000 + i} > {server[0]}:{server[1]}"


def pooled(n_clients: int, *, same: bool = False, lost: int | None = None) -> Site:
    """`n_clients` client connections, one request each, forwarded one after the other
    over ONE backend connection (HAProxy `http-reuse always`)."""
    site = Site()
    b = site.back(0)
    for i in range(n_clients):
        f = site.front(i, client="203.0.113.10" if same else None)
        site.exchange(f, b, i, same=same, lost=lost == i)
        site.close(f)
    site.close(b)
    return site


def test_three_clients_over_one_backend_connection_each_get_their_exchange(
    tmp_path: Path,
) -> None:
    site = pooled(3)
    v = site.capture(tmp_path)
    assert [f for fl in v.flows for f in fl.findings] == []
    assert len(v.flows) == 3, [fl.client for fl in v.flows]  # no flow of leftover bytes
    sent = [xff(req(i), f"203.0.113.{10 + i}") for i in range(3)]
    got = [resp(i) for i in range(3)]
    for i in range(3):
        fl = flow_of(v, f"203.0.113.{10 + i}:{55000 + i}")
        assert legs(fl) == [
            ("lb:eth0", "same", f"203.0.113.{10 + i}:{55000 + i} > 203.0.113.80:80"),
            ("lb:eth1", "proxied", back_tuple(0)),
            ("srv:eth0", "same", back_tuple(0)),
        ]
        part = fl.legs[1].part
        assert part is not None and fl.legs[2].part == part
        assert part.exchanges == (i + 1,) and part.of == 3
        c0, s0 = sum(map(len, sent[:i])), sum(map(len, got[:i]))
        assert part.c2s == ((c0, c0 + len(sent[i])),), part
        assert part.s2c == ((s0, s0 + len(got[i])),), part
        d = fl.legs[1].details
        assert f"c2s inserted: x-forwarded-for: 203.0.113.{10 + i}" in d, d
        assert any(x.startswith(f"reused connection: exchange {i + 1} of 3") for x in d), d
        assert fl.summary.startswith("OK"), fl.summary
    assert Verdict.from_dict(v.to_dict()).flows == v.flows  # `part` survives verdict.json
    assert fl.legs[0].part is None and fl.legs[1].to_dict()["part"] == {
        "exchanges": [3], "of": 3, "c2s": [list(part.c2s[0])], "s2c": [list(part.s2c[0])],
    }  # fmt: skip


def test_identical_requests_of_two_clients_are_told_apart_by_time(tmp_path: Path) -> None:
    """The same request and response for both clients from one address: only time order
    tells which exchange of the shared backend connection was whose."""
    site = pooled(2, same=True)
    v = site.capture(tmp_path)
    assert [f for fl in v.flows for f in fl.findings] == [] and len(v.flows) == 2
    for i in range(2):
        fl = flow_of(v, f"203.0.113.10:{55000 + i}")
        part = fl.legs[1].part
        assert part is not None and part.exchanges == (i + 1,), (i, part)


def test_request_dropped_on_the_backend_side_is_that_clients_drop(tmp_path: Path) -> None:
    """The second client's request, forwarded on the shared backend connection, is lost
    between the proxy and the server (and retransmitted): the drop is the second client's,
    the other two flows are clean."""
    site = pooled(3, lost=1)
    v = site.capture(tmp_path, drop=lambda s: s.tag == "lost")
    assert len(v.flows) == 3
    for i in (0, 2):
        fl = flow_of(v, f"203.0.113.{10 + i}:{55000 + i}")
        assert fl.findings == (), (i, fl.findings)
    fl = flow_of(v, "203.0.113.11:55001")
    assert [(f.kind, f.direction, f.between, f.packets) for f in fl.findings] == [
        ("drop", "c2s", ("lb:eth1", "srv:eth0"), 1)
    ], fl.findings
    assert fl.findings[0].bytes == len(xff(req(1), "203.0.113.11"))
    assert fl.summary.startswith("data dropped between lb:eth1 and srv:eth0"), fl.summary


def test_front_keepalive_requests_spread_over_two_backend_connections(tmp_path: Path) -> None:
    """Client A sends three requests on one connection; the proxy forwards the 1st and 3rd
    over backend connection 0 (which also carries client B's request in between) and the
    2nd over backend connection 1."""
    site = Site()
    b0 = site.back(0)
    fa = site.front(0)
    fb = site.front(1)
    site.exchange(fa, b0, 0)
    site.exchange(fb, b0, 1)
    b1 = site.back(1)
    site.exchange(fa, b1, 2)
    site.exchange(fa, b0, 3)
    for c in (fa, fb, b0, b1):
        site.close(c)
    v = site.capture(tmp_path)
    assert [f for fl in v.flows for f in fl.findings] == []
    assert len(v.flows) == 2, [fl.client for fl in v.flows]
    a = flow_of(v, "203.0.113.10:55000")
    assert legs(a) == [
        ("lb:eth0", "same", "203.0.113.10:55000 > 203.0.113.80:80"),
        ("lb:eth1", "proxied", back_tuple(0)),
        ("srv:eth0", "same", back_tuple(0)),
        ("lb:eth1", "proxied", back_tuple(1)),
        ("srv:eth0", "same", back_tuple(1)),
    ]
    p0 = a.legs[1].part
    assert p0 is not None and (p0.exchanges, p0.of) == ((1, 3), 3)
    assert a.legs[3].part is None  # backend connection 1 carried client A's request only
    b = flow_of(v, "203.0.113.11:55001")
    assert [leg.point for leg in b.legs] == ["lb:eth0", "lb:eth1", "srv:eth0"]
    pb = b.legs[1].part
    assert pb is not None and (pb.exchanges, pb.of) == ((2,), 3)
    assert a.summary.startswith("OK") and b.summary.startswith("OK"), (a.summary, b.summary)


def test_exchanges_no_client_connection_claimed_are_a_flow_of_their_own(tmp_path: Path) -> None:
    """The middle client's connection was not captured at the front: the backend
    connection's second exchange is a flow of its own, from lb:eth1 on."""
    site = pooled(3)
    site.fronts.pop(1)
    v = site.capture(tmp_path)
    rest = [fl for fl in v.flows if fl.legs[0].point == "lb:eth1"]
    assert len(rest) == 1, [legs(fl) for fl in v.flows]
    part = rest[0].legs[0].part
    assert part is not None and part.exchanges == (2,) and part.of == 3
    assert rest[0].findings == ()
    for i in (0, 2):
        fl = flow_of(v, f"203.0.113.{10 + i}:{55000 + i}")
        p = fl.legs[1].part
        assert p is not None and p.exchanges == (i + 1,) and fl.findings == ()


def test_retry_after_a_reset_and_redispatch_to_another_server_are_legs_of_one_flow(
    tmp_path: Path,
) -> None:
    """The proxy's first connection to the server is refused (RST); it redispatches to a
    second server (captured at lb:eth1 only), which serves the request: one flow, both
    backend connections its legs, the reset its finding, the summary says it was served."""
    site = Site()
    f = site.front(0)
    f.request(req(0))
    site.t = f.t
    refused = Conv(client=(LB, 38000), server=SRV, seed=950, t0=site.t + 0.0003)
    refused.handshake(answered=False)
    refused.seg(S2C, "RA", tag="rst", dt=refused.rtt / 2)
    site.backs.append(refused)
    site.t = refused.t + 1.0  # HAProxy waits a second before the retry
    b = site.back(1, server=SRV2)
    b.request(xff(req(0), f.client[0]))
    b.response(resp(0))
    site.t = b.t
    site._at(f).response(resp(0))
    site.t = f.t
    site.close(f)
    site.close(b)
    v = site.capture(tmp_path)
    assert len(v.flows) == 1, [legs(fl) for fl in v.flows]
    fl = v.flows[0]
    assert legs(fl) == [
        ("lb:eth0", "same", "203.0.113.10:55000 > 203.0.113.80:80"),
        ("lb:eth1", "proxied", back_tuple(0)),
        ("srv:eth0", "same", back_tuple(0)),
        ("lb:eth1", "proxied", back_tuple(1, SRV2)),
    ]
    assert fl.legs[1].details == (TIME_ONLY, ATTEMPT)
    assert "c2s inserted: x-forwarded-for: 203.0.113.10" in fl.legs[3].details
    assert [(x.kind, x.between) for x in fl.findings] == [("reset", ("srv", "srv:eth0"))]
    assert fl.summary.startswith("OK"), fl.summary
    assert "after 1 failed connection attempt" in fl.summary, fl.summary
    assert "srv reset the connection" in fl.summary, fl.summary


def test_exchange_the_proxy_changed_beyond_recognition_stays_with_its_client(
    tmp_path: Path,
) -> None:
    """One client, three requests over one backend connection; the proxy rewrote the
    second request and its response entirely (nothing in common): the connection is still
    the client's alone, one flow, no leftover."""
    site = Site()
    b = site.back(0)
    f = site.front(0)
    site.exchange(f, b, 0)
    site._at(f).request(req(1))
    site.t = f.t
    site._at(b).request(b"POST /rewritten HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    b.response(b"HTTP/1.1 204 No Content\r\n\r\n")
    site.t = b.t
    site._at(f).response(resp(1))
    site.t = f.t + 0.005
    site.exchange(f, b, 2)
    site.close(f)
    site.close(b)
    v = site.capture(tmp_path)
    assert len(v.flows) == 1 and v.flows[0].findings == (), [legs(fl) for fl in v.flows]
    fl = v.flows[0]
    assert [(leg.point, leg.link) for leg in fl.legs] == [
        ("lb:eth0", "same"), ("lb:eth1", "proxied"), ("srv:eth0", "same"),
    ]  # fmt: skip
    assert fl.legs[1].part is None  # the whole connection


@pytest.mark.parametrize("back_ts", [True, False], ids=["backend-ts", "no-ts-anywhere"])
def test_clients_without_tcp_timestamps_are_not_nat_linked_by_the_same_response(
    tmp_path: Path, back_ts: bool
) -> None:
    """Windows clients send no TCP timestamps; the proxy's backend connections may not
    either (Windows servers). The response bytes are the same on both sides of the proxy,
    the requests are not (the proxy inserted a header): that is a proxy, not a NAT, and no
    drop or injection."""
    site = Site()
    b = site.back(0, ts=back_ts)
    for i in range(2):
        f = site.front(i, ts=False)
        site.exchange(f, b, i)
        site.close(f)
    site.close(b)
    v = site.capture(tmp_path)
    assert [f for fl in v.flows for f in fl.findings] == []
    assert len(v.flows) == 2
    for i, fl in enumerate(sorted(v.flows, key=lambda x: x.client)):
        assert [(leg.point, leg.link) for leg in fl.legs] == [
            ("lb:eth0", "same"), ("lb:eth1", "proxied"), ("srv:eth0", "same"),
        ]  # fmt: skip
        part = fl.legs[1].part
        assert part is not None and part.exchanges == (i + 1,)


def test_request_the_proxy_answered_itself_is_named_on_the_client_leg(tmp_path: Path) -> None:
    """Of three requests on one client connection the proxy forwarded the 1st and 3rd; it
    answered the 2nd itself (a 403 from a deny rule): the client leg says so."""
    site = Site()
    b = site.back(0)
    f = site.front(0)
    site.exchange(f, b, 0)
    site._at(f).request(req(1))
    f.response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    site.t = f.t + 0.005
    site.exchange(f, b, 2)
    site.close(f)
    site.close(b)
    v = site.capture(tmp_path)
    assert len(v.flows) == 1 and v.flows[0].findings == ()
    fl = v.flows[0]
    assert [(leg.point, leg.link) for leg in fl.legs] == [
        ("lb:eth0", "same"), ("lb:eth1", "proxied"), ("srv:eth0", "same"),
    ]  # fmt: skip
    assert fl.legs[0].details == (
        "exchange 2 of 3 on this connection: no connection beyond the proxy carried its "
        "request (answered by the proxy itself, or not captured there)",
    )
    assert fl.legs[1].part is None  # both of the backend connection's exchanges are its


def test_response_lost_behind_a_nat_on_the_shared_connection_is_that_clients(
    tmp_path: Path,
) -> None:
    """A NAT with sequence offsets between lb:eth1 and srv:eth0; the server's response to
    the second client leaves srv:eth0 and never reaches lb:eth1 (TCP resends it): the drop
    is the second client's, placed by the exchange boundaries carried across the NAT."""
    site = pooled(3)
    b = site.backs[0]
    lost = next(
        s for s in b.segs if s.d == S2C and s.data.startswith(b"HTTP") and b"page 1," in s.data
    )
    again = b.seg(S2C, lost.flags, lost.data, seq=lost.seq, dt=0.3, tag="retrans")
    b.segs.remove(again)
    b.segs.insert(b.segs.index(lost) + 1, again)  # the resend, right after in ground truth
    again.t = lost.t + 0.2
    v = site.capture(tmp_path, drop_back=lambda s: s is lost, nat=True)
    assert len(v.flows) == 3, [legs(fl) for fl in v.flows]
    for i in (0, 2):
        fl = flow_of(v, f"203.0.113.{10 + i}:{55000 + i}")
        assert fl.findings == (), (i, fl.findings)
        assert [leg.link for leg in fl.legs] == ["same", "proxied", "nat"]
    fl = flow_of(v, "203.0.113.11:55001")
    assert [(f.kind, f.direction, f.between, f.packets) for f in fl.findings] == [
        ("drop", "s2c", ("srv:eth0", "lb:eth1"), 1)
    ], fl.findings
    assert fl.legs[2].tuple.startswith("198.18.3.1:")


def test_health_check_to_a_down_server_during_a_request_is_not_its_retry(
    tmp_path: Path,
) -> None:
    """The proxy's health check of a server that is down (SYN answered with RST) starts
    while a request is being forwarded and fails after the request already went out on a
    pooled connection: not a failed attempt of that request."""
    site = Site()
    b = site.back(0)
    f = site.front(0)
    f.request(req(0))
    check = Conv(client=(LB, 39000), server=SRV, seed=990, t0=f.t - 0.00005)
    check.seg(C2S, "S", mss=1460, tag="syn")
    check.seg(S2C, "RA", dt=0.005, tag="rst")  # a server 5 ms away
    site.backs.append(check)
    site.t = f.t
    site._at(b).request(xff(req(0), f.client[0]))
    b.response(resp(0))
    site.t = b.t
    site._at(f).response(resp(0))
    site.t = f.t
    site.close(f)
    site.close(b)
    v = site.capture(tmp_path)
    fl = flow_of(v, "203.0.113.10:55000")
    assert [leg.tuple for leg in fl.legs if leg.point == "lb:eth1"] == [back_tuple(0)]
    assert fl.findings == () and fl.summary.startswith("OK"), fl.summary
    other = flow_of(v, f"{LB}:39000")
    assert [x.kind for x in other.findings] == ["reset"]


def test_pipelined_requests_forwarded_over_two_backend_connections(tmp_path: Path) -> None:
    """Client A pipelines two requests (one exchange at the front); the proxy forwards the
    first over backend connection 0 and the second over backend connection 1, which then
    carries client B's request too."""
    site = Site()
    b0, b1 = site.back(0), site.back(1)
    fa = site.front(0)
    fa.request(req(0) + req(1))
    site.t = fa.t
    for b, n in ((b0, 0), (b1, 1)):
        site._at(b).request(xff(req(n), fa.client[0]))
        b.response(resp(n))
        site.t = b.t
        site._at(fa).response(resp(n))
        site.t = fa.t
    fb = site.front(1)
    site.exchange(fb, b1, 2)
    for c in (fa, fb, b0, b1):
        site.close(c)
    v = site.capture(tmp_path)
    assert [f for fl in v.flows for f in fl.findings] == []
    assert len(v.flows) == 2, [legs(fl) for fl in v.flows]
    a = flow_of(v, "203.0.113.10:55000")
    at_back = [(leg.tuple, leg.part.exchanges if leg.part else None)
               for leg in a.legs if leg.point == "lb:eth1"]  # fmt: skip
    assert at_back == [(back_tuple(0), None), (back_tuple(1), (1,))], at_back
    bfl = flow_of(v, "203.0.113.11:55001")
    part = bfl.legs[1].part
    assert bfl.legs[1].tuple == back_tuple(1) and part is not None and part.exchanges == (2,)


def test_request_resent_after_an_empty_answer_is_a_failed_attempt_leg(tmp_path: Path) -> None:
    """HAProxy `retry-on empty-response`: the request goes out on a first backend
    connection, the server closes it without an answer; the proxy sends the request again
    on a second connection, which answers. One flow, the first connection a failed
    attempt."""
    site = Site()
    f = site.front(0)
    f.request(req(0))
    site.t = f.t
    b0 = site.back(0)
    b0.request(xff(req(0), f.client[0]))
    b0.seg(S2C, "RA", tag="rst", dt=0.001)
    site.t = b0.t
    b1 = site.back(1)
    b1.request(xff(req(0), f.client[0]))
    b1.response(resp(0))
    site.t = b1.t
    site._at(f).response(resp(0))
    site.t = f.t
    site.close(f)
    site.close(b1)
    v = site.capture(tmp_path)
    assert len(v.flows) == 1, [legs(fl) for fl in v.flows]
    fl = v.flows[0]
    assert [leg.tuple for leg in fl.legs if leg.point == "lb:eth1"] == [
        back_tuple(0), back_tuple(1),
    ]  # fmt: skip
    assert RESENT in fl.legs[1].details, fl.legs[1].details
    assert [(x.kind, x.between) for x in fl.findings] == [("reset", ("srv", "srv:eth0"))]
    assert fl.summary.startswith("OK") and "after 1 failed connection attempt" in fl.summary


def _same_at_once(site: Site) -> tuple[Conv, Conv]:
    """Two clients behind one address that send the same request 0.1 ms apart."""
    fa = site.front(0, client="203.0.113.10")
    fb = site.front(1, client="203.0.113.10")
    fa.t = fb.t = site.t
    fa.request(req(0, same=True))
    fb.t = fa.t + 0.0001
    fb.request(req(0, same=True))
    site.t = fb.t
    return fa, fb


def _tried(site: Site, i: int, t0: float) -> None:
    """A proxy's backend connection (port 38000 + i) whose SYN is never answered, sent
    again a second later."""
    c = Conv(client=(LB, 38000 + i), server=SRV, seed=900 + i, t0=t0)
    c.handshake(answered=False, syn_retries=1)
    site.backs.append(c)


def _served(site: Site, f: Conv, i: int, t0: float, syn_retries: int = 0) -> Conv:
    """`f`'s request over a backend connection (port 38000 + i) opened at `t0` (its SYN
    sent again `syn_retries` times, a second apart), its answer relayed back to `f`."""
    b = Conv(client=(LB, 38000 + i), server=SRV, seed=900 + i, t0=t0)
    b.handshake(syn_retries=syn_retries)
    site.backs.append(b)
    b.request(xff(req(0, same=True), f.client[0]))
    b.response(resp(0, same=True))
    site.t = b.t
    site._at(f).response(resp(0, same=True))
    return b


def test_a_failed_attempt_is_of_the_request_whose_connection_opened_after_it(
    tmp_path: Path,
) -> None:
    """Two clients behind one address send the same request at once. The proxy's first
    connection for the first one's is never answered (its SYN sent again a second later);
    the proxy gives up after 2 s and opens another. The second one's request goes over a
    connection opened just after that attempt, whose first SYN was lost (sent again a
    second later, then answered): its request left after the attempt ended, but its
    connection was opened before: a proxy tries again only once a try failed, so the
    attempt is the first client's (was the second's, the latest request before it still
    waiting)."""
    site = Site()
    fa, fb = _same_at_once(site)
    t = site.t
    _tried(site, 0, t + 0.0001)
    bb = _served(site, fb, 1, t + 0.0002, syn_retries=1)
    ba = _served(site, fa, 2, t + 2.0001)
    site.t = fa.t
    for c in (fa, fb, bb, ba):
        site.close(c)
    v = site.capture(tmp_path)
    backs = {fl.client: [(leg.tuple, leg.details) for leg in fl.legs if leg.point == "lb:eth1"]
             for fl in v.flows}  # fmt: skip
    assert len(v.flows) == 2, backs
    assert [t for t, _d in backs["203.0.113.10:55000"]] == [back_tuple(0), back_tuple(2)], backs
    assert backs["203.0.113.10:55000"][0][1] == (TIME_ONLY, ATTEMPT), backs
    assert [t for t, _d in backs["203.0.113.10:55001"]] == [back_tuple(1)], backs
    fa_flow = flow_of(v, "203.0.113.10:55000")
    assert "after 1 failed connection attempt" in fa_flow.summary, fa_flow.summary
    assert "attempt" not in flow_of(v, "203.0.113.10:55001").summary


def test_attempts_at_the_same_time_are_of_two_requests(tmp_path: Path) -> None:
    """Two clients behind one address send the same request at once; the proxy's first
    connection for each is never answered, and it tries again for each two seconds later.
    One request has one connection at a time: the two attempts, open at the same time,
    are one each (was: both the second's, the latest request before them)."""
    site = Site()
    fa, fb = _same_at_once(site)
    t = site.t
    for i in (0, 1):
        _tried(site, i, t + 0.0001 * (i + 1))
    for i, f in ((2, fa), (3, fb)):
        site.close(_served(site, f, i, t + 2.0 + 0.0001 * i))
    for f in (fa, fb):
        site.close(f)
    v = site.capture(tmp_path)
    tried = {fl.client: [leg.tuple for leg in fl.legs if leg.point == "lb:eth1" and
                         ATTEMPT in leg.details] for fl in v.flows}  # fmt: skip
    assert len(v.flows) == 2, tried
    assert sorted(map(len, tried.values())) == [1, 1], tried
    for fl in v.flows:
        assert "after 1 failed connection attempt" in fl.summary, fl.summary


def _chunks_by_the_byte(data: bytes) -> list[bytes]:
    """`link.chunks` as it is defined: the rolling gear hash stepped byte by byte."""
    from hopcap.correlate.link import _GEAR, _HEADER

    out: list[bytes] = []
    for line in data.split(b"\n"):
        if len(line) <= 256:
            if line.strip():
                line = line.rstrip(b"\r")
                m = _HEADER.match(line)
                if m:
                    line = m.group(1).lower() + line[m.end(1) :]
                out.append(line)
            continue
        h = start = 0
        for i, c in enumerate(line):
            h = ((h << 1) + _GEAR[c]) & 0xFFFFFFFF
            if i - start >= 32 and (h & 0x3F) == 0:
                out.append(line[start : i + 1])
                start = i + 1
        if start < len(line):
            out.append(line[start:])
    return out


def test_content_chunks_cut_where_the_rolling_hash_says() -> None:
    """The vectorised cut points are the byte-by-byte hash's, also at a line's first
    bytes (the hash starts at 0 on each line) and in runs of one byte value."""
    import random

    from hopcap.correlate.link import chunks

    rng = random.Random(12)
    datas = [b"", b"\n", b"x" * 300, bytes(257), b"\xff" * 5000]
    for size in (257, 300, 1000, 16384):
        datas.append(rng.randbytes(size))
        datas.append(bytes(rng.choice(b"ab \r\n:") for _ in range(size)))
        datas.append(b"Host: a\r\n" + rng.randbytes(size) + b"\nX-Y: z\r\n" + bytes(size))
    cuts = 0
    for data in datas:
        got = chunks(data)
        assert got == _chunks_by_the_byte(data)
        cuts += len(got)
    assert cuts > 500  # long lines were cut, many times
