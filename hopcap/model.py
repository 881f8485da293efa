"""The shared data model: frozen dataclasses, stdlib only.

Every layer (inventory, orchestrator, correlate, bundle, cli) speaks these types. Times
inside hopcap are integer nanoseconds since the epoch where packet order matters
(`*_ns`); the public contracts (`verdict.json`, `manifest.json`) use float epoch seconds.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

ROLES: tuple[str, ...] = ("client", "firewall", "lb", "router", "server")
ROLE_ORDER: Mapping[str, int] = {r: i for i, r in enumerate(ROLES)}
CONNECTIONS: tuple[str, ...] = ("ssh", "local")  # `local`: the controller itself, no SSH
KINDS: tuple[str, ...] = ("linux", "fortigate")  # what a host is (fortigate: its CLI sniffer)

FindingKind = Literal["drop", "inject", "rewrite", "reset", "gap", "icmp", "around"]
LinkKind = Literal["same", "nat", "proxied", "tunnel"]
FINDING_KINDS: tuple[FindingKind, ...] = get_args(FindingKind)
LINK_KINDS: tuple[LinkKind, ...] = get_args(LinkKind)
BROKEN_KINDS: tuple[FindingKind, ...] = ("drop", "inject", "rewrite", "reset", "icmp")


def any_broken(findings: Sequence[Finding]) -> bool:
    """Is one of `findings` of a kind that breaks the flow (BROKEN_KINDS)? (A loop, not
    any() over a generator: it runs for every flow when verdicts are sorted.)"""
    for f in findings:  # noqa: SIM110 (see above)
        if f.kind in BROKEN_KINDS:
            return True
    return False


Direction = Literal["c2s", "s2c"]
# what the first packet of a finding was (its one-line summary names it)
PacketKind = Literal["SYN", "SYN-ACK", "RST", "FIN", "data", "ACK"]

DEFAULT_FILTER = "tcp or icmp"
DEFAULT_WINDOW_S = 30.0
_C = TypeVar("_C")


def _quick_init(cls: type[_C]) -> type[_C]:
    """Give the frozen slotted dataclass `cls` a quicker constructor (same parameters, same
    defaults). The generated `__init__` sets each field through `object.__setattr__` (a
    frozen class refuses plain stores); this one (`__new__`, no `__init__`) fills an
    object of a twin class, the same slots without the frozen `__setattr__`, by the
    interpreter's own slot stores, then makes it a `cls` (the layouts are the same): a
    Flow in ~0.4 us instead of ~1.2 (the generated one) or ~0.6 (each slot's descriptor
    called); a verdict holds tens of thousands of flows, legs and findings. A subclass
    of `cls` is made the slower way."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [f.name for f in fields]
    assert list(cls.__slots__) == names, cls  # type: ignore[attr-defined]
    defaults = {f"_d_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    assert all(f.default_factory is dataclasses.MISSING for f in fields), cls
    setters = {f"_s_{n}": vars(cls)[n].__set__ for n in names}  # slots' setters
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": tuple(names)})
    params = ", ".join(f"{n}=_d_{n}" if f"_d_{n}" in defaults else n for n in names)
    stores = "".join(f"            o.{n} = {n}\n" for n in names)
    sets = "".join(f"            _s_{n}(o, {n})\n" for n in names)
    src = (
        f"def make(_cls, _twin, _new, {', '.join([*setters, *defaults])}):\n"
        f"    def __new__(cls, {params}):\n"
        "        if cls is _cls:\n"
        f"            o = _new(_twin)\n{stores}"
        "            o.__class__ = _cls\n"
        "        else:\n"
        f"            o = _new(cls)\n{sets}"
        "        return o\n"
        "    return __new__\n"
    )
    ns: dict[str, Any] = {}
    exec(src, ns)  # as dataclasses writes its own __init__
    new = ns["make"](cls, twin, object.__new__, *setters.values(), *defaults.values())
    new.__qualname__ = f"{cls.__qualname__}.__new__"
    setattr(cls, "__new__", staticmethod(new))  # noqa: B010 (mypy: no assigning methods)
    delattr(cls, "__init__")  # object's: takes what `__new__` took
    # pickled as a call of this constructor with every field (`--jobs` sends the verdict's
    # objects between processes): a slotted dataclass's own state methods look the fields
    # up and set them one by one (twice the time of an instance dict; this: less)
    values = operator.attrgetter(*(f.name for f in fields))

    def __reduce__(self: _C) -> tuple[type[_C], tuple[Any, ...]]:
        return cls, values(self)

    setattr(cls, "__reduce__", __reduce__)  # noqa: B010
    return cls


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class Endpoint:
    """A host and port: the service under study (`Inventory.target`)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Repro:
    """A command that reproduces the problem: run on inventory host `on`."""

    on: str  # inventory host name the command runs on
    run: str  # shell command, run as given on that host


@dataclass(frozen=True)
class Host:
    """One inventory host after defaults and groups are applied."""

    name: str
    address: str
    port: int | None = None  # None: ~/.ssh/config's Port, else 22
    user: str | None = None
    identity: str | None = None  # path to a private key, `~` expanded
    known_hosts: str | None = None  # path, `~` expanded; None: asyncssh's default
    sudo: bool = False
    role: str | None = None  # one of ROLES; None for a pure jump host
    capture: tuple[str, ...] | Literal["auto"] = ()
    jump: str | None = None
    groups: tuple[str, ...] = ()
    connection: str = "ssh"  # one of CONNECTIONS
    kind: str = "linux"  # one of KINDS
    password_env: str | None = None  # name of the environment variable holding the password

    @property
    def is_local(self) -> bool:
        return self.connection == "local"

    @property
    def on_path(self) -> bool:
        return self.role is not None


@dataclass(frozen=True)
class Inventory:
    """The hosts of a network path, in hop order, and what to capture there."""

    source: str  # file the inventory came from (for messages and the manifest)
    hosts: Mapping[str, Host]
    path: tuple[str, ...]  # host names in hop order from the client side
    target: Endpoint | None = None
    filter: str = DEFAULT_FILTER
    window_s: float = DEFAULT_WINDOW_S
    repro: Repro | None = None

    def path_hosts(self) -> list[Host]:
        return [self.hosts[n] for n in self.path]

    def to_public_dict(self) -> dict[str, Any]:
        """The inventory as the manifest records it: no secrets (key paths are kept,
        key material never is; a password is named by its environment variable only)."""
        return {
            "source": self.source,
            "path": list(self.path),
            "target": str(self.target) if self.target else None,
            "filter": self.filter,
            "window_s": self.window_s,
            "repro": {"on": self.repro.on, "run": self.repro.run} if self.repro else None,
            "hosts": {
                h.name: {
                    "address": h.address,
                    "port": h.port,
                    "user": h.user,
                    "sudo": h.sudo,
                    "role": h.role,
                    "capture": h.capture if h.capture == "auto" else list(h.capture),
                    "jump": h.jump,
                    "connection": h.connection,
                    "kind": h.kind,
                    "password_env": h.password_env,
                }
                for h in self.hosts.values()
            },
        }


@dataclass(frozen=True)
class CapturePoint:
    """An interface of a host where packets are captured."""

    host: str
    interface: str

    @property
    def name(self) -> str:
        return f"{self.host}:{self.interface}"


# --------------------------------------------------------------------------- captures


@dataclass(frozen=True)
class PointCapture:
    """What the orchestrator knows about one capture point after a run."""

    point: CapturePoint
    pcap: Path | None  # local copy; None when nothing could be pulled
    command: str = ""
    tcpdump_version: str | None = None
    start_ts: float | None = None  # controller clock, epoch seconds
    ready_ts: float | None = None  # tcpdump said "listening on"
    stop_ts: float | None = None
    packets: int | None = None  # tcpdump "packets captured"
    received: int | None = None  # "packets received by filter"
    kernel_drops: int | None = None  # "packets dropped by kernel"
    clock_offset_s: float | None = None  # host clock minus controller clock
    clock_error_s: float | None = None
    sha256: str | None = None
    error: str | None = None  # why this point is incomplete or missing


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class PointInput:
    """One capture point handed to the correlator, in path order."""

    name: str
    pcap: Path | None  # None: the point is missing (its segments become `gap`)
    host: str = ""
    interface: str = ""
    kernel_drops: int | None = None
    clock_offset_hint_s: float | None = None  # e.g. from an SSH probe; seeds the estimate
    start_ts: float | None = None  # when the capture was listening (controller clock)
    stop_ts: float | None = None
    missing_reason: str | None = None
    # the user's files `pcap` was made from, when it is none of them (a decompressed copy,
    # the join of a rotated capture's files): a bundle names them as the originals
    sources: tuple[Path, ...] = ()

    @staticmethod
    def parse_name(name: str) -> tuple[str, str]:
        """`fw:eth1` -> ("fw", "eth1"); a bare name is its own host and interface ""."""
        host, _, iface = name.partition(":")
        return host, iface


@dataclass(frozen=True)
class PointRecord:
    """One capture point as a bundle's manifest records it (`manifest.json` "points"):
    made from a run's capture or from an offline input, written to and read back from the
    manifest, and handed to the correlator (`to_input`) in one way for all of them."""

    name: str
    host: str
    interface: str
    pcap: Path | None  # the capture inside the bundle
    command: str = ""
    tcpdump_version: str | None = None
    start_ts: float | None = None
    ready_ts: float | None = None
    stop_ts: float | None = None
    packets: int | None = None
    received: int | None = None
    kernel_drops: int | None = None
    clock_offset_s: float | None = None
    clock_error_s: float | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # more manifest keys, as given

    @staticmethod
    def from_capture(
        c: PointCapture,
        pcap: Path | None,
        error: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> PointRecord:
        return PointRecord(
            name=c.point.name,
            host=c.point.host,
            interface=c.point.interface,
            pcap=pcap,
            command=c.command,
            tcpdump_version=c.tcpdump_version,
            start_ts=c.start_ts,
            ready_ts=c.ready_ts,
            stop_ts=c.stop_ts,
            packets=c.packets,
            received=c.received,
            kernel_drops=c.kernel_drops,
            clock_offset_s=c.clock_offset_s,
            clock_error_s=c.clock_error_s,
            error=error,
            extra=dict(extra or {}),
        )

    @staticmethod
    def from_input(
        p: PointInput,
        pcap: Path | None,
        error: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> PointRecord:
        host, iface = (p.host, p.interface) if p.host else PointInput.parse_name(p.name)
        return PointRecord(
            name=p.name,
            host=host,
            interface=iface,
            pcap=pcap,
            start_ts=p.start_ts,
            ready_ts=p.start_ts,
            stop_ts=p.stop_ts,
            kernel_drops=p.kernel_drops,
            clock_offset_s=p.clock_offset_hint_s,
            error=error,
            extra=dict(extra or {}),
        )

    def to_manifest(self, out: Path, packets_in_file: int | None) -> dict[str, Any]:
        """The manifest entry; the capture's path relative to the bundle `out`."""
        file = self.pcap.relative_to(out).as_posix() if self.pcap is not None else None
        return {
            "name": self.name,
            "host": self.host,
            "interface": self.interface,
            "file": file,
            "command": self.command,
            "tcpdump_version": self.tcpdump_version,
            "start_ts": self.start_ts,
            "ready_ts": self.ready_ts,
            "stop_ts": self.stop_ts,
            "packets": self.packets,
            "packets_in_file": packets_in_file,
            "received": self.received,
            "kernel_drops": self.kernel_drops,
            "clock_offset_s": self.clock_offset_s,
            "clock_error_s": self.clock_error_s,
            "error": self.error,
            **self.extra,
        }

    @staticmethod
    def from_manifest(d: Mapping[str, Any], bundle: Path) -> PointRecord:
        """A manifest entry of the bundle directory `bundle` (its file relative to it)."""
        known = {f.name for f in dataclasses.fields(PointRecord)} | {"file", "packets_in_file"}
        rel = d.get("file")
        return PointRecord(
            name=d["name"],
            host=d.get("host", ""),
            interface=d.get("interface", ""),
            pcap=(bundle / rel) if rel else None,
            command=d.get("command") or "",
            tcpdump_version=d.get("tcpdump_version"),
            start_ts=d.get("start_ts"),
            ready_ts=d.get("ready_ts"),
            stop_ts=d.get("stop_ts"),
            packets=d.get("packets"),
            received=d.get("received"),
            kernel_drops=d.get("kernel_drops"),
            clock_offset_s=d.get("clock_offset_s"),
            clock_error_s=d.get("clock_error_s"),
            error=d.get("error"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_input(self, *, not_before: float | None = None) -> PointInput:
        """The correlator's view: its evidence starts when the capture was listening (or,
        not known, when it was started), and not before `not_before` (a recording keeps
        only its last ring of files)."""
        start = self.ready_ts if self.ready_ts is not None else self.start_ts
        if start is not None and not_before is not None:
            start = max(start, not_before)
        return PointInput(
            name=self.name,
            pcap=self.pcap,
            host=self.host,
            interface=self.interface,
            kernel_drops=self.kernel_drops,
            clock_offset_hint_s=self.clock_offset_s,
            start_ts=start,
            stop_ts=self.stop_ts,
            missing_reason=self.error if self.pcap is None else None,
        )


@dataclass(frozen=True)
class PointSummary:
    """A capture point as the verdict lists it: its packets, drops and clock offset."""

    name: str
    host: str
    interface: str
    packets: int
    kernel_drops: int | None = None
    clock_offset_s: float | None = 0.0
    clock_error_s: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    warnings: tuple[str, ...] = ()
    missing: str | None = None  # why nothing of this point could be used
    # what the capture says of the device that took it (an F5 capture's information
    # packet: BIG-IP version, host name, platform, tcpdump's command)
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "host": self.host,
            "interface": self.interface,
            "packets": self.packets,
            "kernel_drops": self.kernel_drops,
            "clock_offset_s": self.clock_offset_s,
        }
        if self.clock_error_s is not None:
            d["clock_error_s"] = self.clock_error_s
        if self.first_ts is not None:
            d["first_ts"] = self.first_ts
            d["last_ts"] = self.last_ts
        if self.warnings:
            d["warnings"] = list(self.warnings)
        if self.missing is not None:
            d["missing"] = self.missing
        if self.device is not None:
            d["device"] = self.device
        return d


_Strings = tuple[str, ...]  # `Leg.tuple` shadows the builtin inside that class
_Ranges = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LegPart:
    """The part of a leg's connection that carried this flow, when the connection carried
    other flows' requests too (a load balancer's reused backend connection): its
    request/response exchanges (1-based, in order) and their byte ranges [start, end) in
    each direction's stream, counted from the first byte after the SYN."""

    exchanges: tuple[int, ...]
    of: int  # exchanges the connection carried in all
    c2s: _Ranges
    s2c: _Ranges

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchanges": list(self.exchanges),
            "of": self.of,
            "c2s": [list(r) for r in self.c2s],
            "s2c": [list(r) for r in self.s2c],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> LegPart:
        return LegPart(
            exchanges=tuple(d.get("exchanges", ())),
            of=d.get("of", 0),
            c2s=tuple((int(a), int(b)) for a, b in d.get("c2s", ())),
            s2c=tuple((int(a), int(b)) for a, b in d.get("s2c", ())),
        )


@_quick_init
@dataclass(frozen=True, slots=True)
class Leg:
    """A flow at one capture point: its tuple there and how it links to the leg before."""

    point: str
    tuple: str  # "198.18.1.1:31378 > 198.18.1.2:80", client side first
    link: LinkKind
    details: _Strings = ()  # e.g. headers a proxy inserted
    latency_s: float | None = None  # median one-way delay from the previous leg, aligned
    part: LegPart | None = None  # a connection shared with other flows: this flow's part
    tunnel: str | None = None  # the flow is inside a tunnel at this point: "vxlan vni 42", "gre"
    # (decapsulated by the reader), "esp", "encrypted udp" (linked by timing and size)

    def to_dict(self) -> dict[str, Any]:
        return json_default(self)


@_quick_init
@dataclass(frozen=True, slots=True)
class Finding:
    """Packets dropped, injected, rewritten, reset or missing between two points."""

    kind: FindingKind
    direction: Direction
    between: tuple[str, str]  # in the packet's direction of travel
    packets: int
    bytes: int
    first_ts: float | None
    what: str
    field: str | None = None  # rewrite only
    before: Any = None
    after: Any = None
    # not in verdict.json (read by the one-line summaries, written before it): what the
    # first packet was (drop, inject), and whether the finding is a request the far end
    # never answered (a drop, or a gap where the capture could not tell)
    packet: PacketKind | None = dataclasses.field(default=None, compare=False, repr=False)
    unanswered: bool = dataclasses.field(default=False, compare=False, repr=False)
    # a gap put down to a point's kernel drops: (that point, its kernel drops, the kind
    # the gap would be otherwise: drop or inject, the packets' description);
    # `findings.charge_capture_loss` makes it that kind when the point misses more
    # packets than it dropped
    loss: tuple[str, int, str, str] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )
    # `around` only: the capture points (path order) the packets never crossed, whose
    # captures lost nothing: they went another way between the two points of `between`
    around: tuple[str, ...] | None = None
    # the capture time of its last packet, where it has several over a span of time (a
    # drop that went on for minutes); None: one packet or one instant (or an older verdict)
    last_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = json_default(self)
        d["between"] = list(self.between)
        if self.around is not None:
            d["around"] = list(self.around)
        return d


def last_of(fs: Iterable[Finding], first_ts: float | None) -> float | None:
    """`last_ts` of one finding made of the packets of `fs` whose first is at `first_ts`."""
    ts = [x.first_ts if x.last_ts is None else x.last_ts for x in fs]
    t1 = max((t for t in ts if t is not None), default=None)
    return t1 if t1 is not None and first_ts is not None and t1 > first_ts else None


@_quick_init
@dataclass(frozen=True, slots=True)
class Flow:
    """One connection along the path: its legs, point by point, and its findings."""

    id: str
    proto: str
    client: str
    server: str
    legs: tuple[Leg, ...]
    findings: tuple[Finding, ...]
    summary: str
    first_ts: float | None = None
    # False: seen at one point only and not on the path under study (addressed to, or sent
    # by, that point's own host; or entered the path there): kept, but not a finding
    path: bool = True
    local_to: str | None = None  # the host such a flow is local to
    target: bool = False  # of the target's family (the service under study)

    @property
    def broken(self) -> bool:
        return any_broken(self.findings)

    def to_dict(self) -> dict[str, Any]:
        d = json_default(self)
        d["legs"] = list(map(_LEG_DICT, self.legs))  # (no method looked up per item)
        d["findings"] = list(map(_FINDING_DICT, self.findings))
        return d


_FLOW_IDS: list[str] = []


def flow_ids(n: int) -> list[str]:
    """`["f1", "f2", ..., f"f{n}"]`: the ids of a verdict's flows in their order, made
    once per process (each verdict's tens of thousands of flows are numbered twice: when
    assembled and when put in their final order)."""
    global _FLOW_IDS
    if len(_FLOW_IDS) < n:
        _FLOW_IDS = [*_FLOW_IDS, *(f"f{i}" for i in range(len(_FLOW_IDS) + 1, n + 1))]
    return _FLOW_IDS[:n]


_LEG_DICT = Leg.to_dict
_FINDING_DICT = Finding.to_dict


def json_default(o: Any) -> dict[str, Any]:
    """The verdict.json object of a flow, leg or finding (what its `to_dict` gives) with
    its tuples left tuples and a flow's legs and findings left model objects: for an
    encoder that asks for each object's dict as it reaches it (`hopcap.jsonout`), once
    per object of the verdict (tens of thousands: the shapes are written out here, no
    call per object beyond this one). TypeError for anything else."""
    t = type(o)
    d: dict[str, Any]
    if t is Finding:
        if o.around is not None:
            d = {"kind": o.kind, "direction": o.direction, "between": o.between,
                 "packets": o.packets, "bytes": o.bytes, "first_ts": o.first_ts,
                 "what": o.what, "around": o.around}  # fmt: skip
        elif o.field is None and o.kind != "rewrite":
            d = {"kind": o.kind, "direction": o.direction, "between": o.between,
                 "packets": o.packets, "bytes": o.bytes, "first_ts": o.first_ts,
                 "what": o.what}  # fmt: skip
        else:
            d = {"kind": o.kind, "direction": o.direction, "between": o.between,
                 "packets": o.packets, "bytes": o.bytes, "first_ts": o.first_ts,
                 "what": o.what, "field": o.field, "before": o.before,
                 "after": o.after}  # fmt: skip
        if o.last_ts is not None:
            d["last_ts"] = o.last_ts
        return d
    if t is Leg:
        if o.tunnel is None and not o.details and o.part is None:  # most legs
            if o.latency_s is None:
                return {"point": o.point, "tuple": o.tuple, "link": o.link}
            return {"point": o.point, "tuple": o.tuple, "link": o.link,
                    "latency_s": o.latency_s}  # fmt: skip
        d = {"point": o.point, "tuple": o.tuple, "link": o.link}
        if o.tunnel:
            d["tunnel"] = o.tunnel
        if o.details:
            d["details"] = list(o.details)
        if o.latency_s is not None:
            d["latency_s"] = o.latency_s
        if o.part is not None:
            d["part"] = o.part.to_dict()
        return d
    if t is Flow:
        d = {"id": o.id, "proto": o.proto, "client": o.client, "server": o.server,
             "path": o.path, "legs": o.legs, "findings": o.findings,
             "summary": o.summary}  # fmt: skip
        if o.local_to is not None:
            d["local_to"] = o.local_to
        if o.target:
            d["target"] = True
        if o.first_ts is not None:
            d["first_ts"] = o.first_ts
        return d
    raise TypeError(f"{t.__name__} is not a flow, leg or finding")


@dataclass(frozen=True)
class Pattern:
    """The same finding (kind, direction, segment, field, before -> after) across many
    flows, computed from a built verdict by `hopcap.patterns.find_patterns`. `before` and
    `after` are None for a rewrite whose values differ from flow to flow (`values` says how
    many pairs). `policy`: what devices do to every flow on purpose (MSS clamping, TTL
    decrement, DSCP remarking), named by `label`."""

    kind: str
    direction: Direction
    between: tuple[str, str]
    flows: int  # flows with this finding
    of: int  # flows seen where the segment starts (that could have had it)
    packets: int
    bytes: int
    first_ts: float | None
    text: str  # one line for people
    field: str | None = None
    before: Any = None
    after: Any = None
    values: int = 1  # distinct before -> after pairs folded into this pattern
    policy: bool = False
    label: str | None = None  # e.g. "MSS clamping"
    flow_ids: tuple[str, ...] = ()
    # the first packet of its latest finding (with first_ts: when it came and went; a
    # fault that comes and goes shows as a span shorter than the window)
    last_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "direction": self.direction,
            "between": list(self.between),
            "field": self.field,
            "before": self.before,
            "after": self.after,
            "flows": self.flows,
            "of": self.of,
            "packets": self.packets,
            "bytes": self.bytes,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "policy": self.policy,
            "text": self.text,
            "flow_ids": list(self.flow_ids),
        }
        if self.values != 1:
            d["values"] = self.values
        if self.label is not None:
            d["label"] = self.label
        return d

    @staticmethod
    def from_dict(x: Mapping[str, Any]) -> Pattern:
        return Pattern(
            kind=x["kind"],
            direction=x.get("direction", "c2s"),
            between=(x["between"][0], x["between"][1]),
            flows=x.get("flows", 0),
            of=x.get("of", 0),
            packets=x.get("packets", 0),
            bytes=x.get("bytes", 0),
            first_ts=x.get("first_ts"),
            text=x.get("text", ""),
            field=x.get("field"),
            before=x.get("before"),
            after=x.get("after"),
            values=x.get("values", 1),
            policy=bool(x.get("policy", False)),
            label=x.get("label"),
            flow_ids=tuple(x.get("flow_ids", ())),
            last_ts=x.get("last_ts"),
        )


@dataclass(frozen=True)
class HostAddresses:
    """The addresses of one host of the path, as the correlator used them: `stated`
    (`--host`, or the run's facts: `ip addr`) or `inferred` from the captures (the host's
    own stack answered connections addressed to them)."""

    host: str
    addresses: tuple[str, ...]
    source: str  # "stated" or "inferred"

    def to_dict(self) -> dict[str, Any]:
        return {"addresses": list(self.addresses), "source": self.source}


@dataclass(frozen=True)
class Verdict:
    """What a correlation found: the points, every flow, the patterns and warnings."""

    points: tuple[PointSummary, ...]
    flows: tuple[Flow, ...]
    warnings: tuple[str, ...] = field(default=())
    patterns: tuple[Pattern, ...] = field(default=())
    hosts: tuple[HostAddresses, ...] = field(default=())
    target: str | None = None  # the service under study ("203.0.113.80:80"), when known

    def to_dict(self) -> dict[str, Any]:
        d = self.json_dict()
        d["flows"] = list(map(Flow.to_dict, self.flows))
        return d

    def json_dict(self) -> dict[str, Any]:
        """`to_dict` with the flows left model objects (see `json_default`)."""
        d: dict[str, Any] = {
            "points": [p.to_dict() for p in self.points],
            "patterns": [p.to_dict() for p in self.patterns],
            "flows": self.flows,
        }
        if self.hosts:
            d["hosts"] = {h.host: h.to_dict() for h in self.hosts}
        if self.target is not None:
            d["target"] = self.target
        if self.warnings:
            d["warnings"] = list(self.warnings)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Verdict:
        """Rebuild a verdict from its JSON form (for `hopcap report BUNDLE`); a verdict
        written before patterns existed gets them computed."""
        points = tuple(
            PointSummary(
                name=p["name"],
                host=p.get("host", ""),
                interface=p.get("interface", ""),
                packets=p.get("packets", 0),
                kernel_drops=p.get("kernel_drops"),
                clock_offset_s=p.get("clock_offset_s"),
                clock_error_s=p.get("clock_error_s"),
                first_ts=p.get("first_ts"),
                last_ts=p.get("last_ts"),
                warnings=tuple(p.get("warnings", ())),
                missing=p.get("missing"),
                device=p.get("device"),
            )
            for p in d.get("points", ())
        )
        flows = tuple(
            Flow(
                id=f["id"],
                proto=f.get("proto", "tcp"),
                client=f.get("client", ""),
                server=f.get("server", ""),
                legs=tuple(
                    Leg(
                        point=leg["point"],
                        tuple=leg.get("tuple", ""),
                        link=leg.get("link", "same"),
                        details=tuple(leg.get("details", ())),
                        latency_s=leg.get("latency_s"),
                        part=LegPart.from_dict(leg["part"]) if leg.get("part") else None,
                        tunnel=leg.get("tunnel"),
                    )
                    for leg in f.get("legs", ())
                ),
                findings=tuple(
                    Finding(
                        kind=x["kind"],
                        direction=x["direction"],
                        between=(x["between"][0], x["between"][1]),
                        packets=x.get("packets", 0),
                        bytes=x.get("bytes", 0),
                        first_ts=x.get("first_ts"),
                        what=x.get("what", ""),
                        field=x.get("field"),
                        before=x.get("before"),
                        after=x.get("after"),
                        around=tuple(x["around"]) if x.get("around") is not None else None,
                        last_ts=x.get("last_ts"),
                    )
                    for x in f.get("findings", ())
                ),
                summary=f.get("summary", ""),
                first_ts=f.get("first_ts"),
                path=bool(f.get("path", True)),
                local_to=f.get("local_to"),
                target=bool(f.get("target", False)),
            )
            for f in d.get("flows", ())
        )
        hosts = tuple(
            HostAddresses(name, tuple(h.get("addresses", ())), h.get("source", "stated"))
            for name, h in (d.get("hosts") or {}).items()
        )
        v = Verdict(
            points=points,
            flows=flows,
            warnings=tuple(d.get("warnings", ())),
            hosts=hosts,
            target=d.get("target"),
        )
        if "patterns" not in d:
            from hopcap.patterns import with_patterns

            return with_patterns(v)
        return replace(v, patterns=tuple(Pattern.from_dict(x) for x in d["patterns"]))


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class HostFacts:
    """Text outputs of fact commands on one host, before and after the window.

    `before` / `after` map a fact name (`nstat`, `ss-s`, `addr`, `route`, `conntrack`,
    `nft`, `iptables`, `sysctl`) to the command's output; `missing` maps a fact name to why
    it could not be collected (a missing tool is noted, never fatal).
    """

    host: str
    before: Mapping[str, str] = field(default_factory=dict)
    after: Mapping[str, str] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)
    clock_before: tuple[float, float] | None = None  # (offset_s, error_s)
    clock_after: tuple[float, float] | None = None


@dataclass(frozen=True)
class RunRecord:
    """Everything a bundle needs about a run besides the pcaps and the verdict."""

    run_id: str
    started_ts: float
    finished_ts: float
    inventory: Mapping[str, Any]  # Inventory.to_public_dict()
    captures: tuple[PointCapture, ...]  # in path order
    facts: tuple[HostFacts, ...] = ()
    complete: bool = True
    interrupted: bool = False
    errors: tuple[str, ...] = ()  # host-level failures, one line each
    repro: Mapping[str, Any] | None = None  # {"command", "exit_status", "stdout", "stderr"}
    # `hopcap record`: what ended the recording (host, command, exit status, output, time)
    trigger: Mapping[str, Any] | None = None
    recording: Mapping[str, Any] | None = None  # ring, post, snapshots, pulled time range

    @property
    def start_skew_s(self) -> float | None:
        ready = [c.ready_ts for c in self.captures if c.ready_ts is not None]
        return (max(ready) - min(ready)) if len(ready) >= 2 else (0.0 if ready else None)


def pcap_filename(point_name: str) -> str:
    """File name of a point's capture inside a bundle's `pcaps/` (`fw:eth1` -> `fw_eth1.pcap`)."""
    return point_name.replace(":", "_").replace("/", "_") + ".pcap"
