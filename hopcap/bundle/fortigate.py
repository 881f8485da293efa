"""FortiGate `diagnose sniffer packet` text -> packets (and pcapng).

The sniffer prints, per packet, a header line and a hex dump:

    2015-06-24 10:07:11.556402 ppp0 out 10.108.236.47.59994 -> 8.8.8.8.53: udp 43
    0x0000	 0000 0000 0000 2031 3035 3233 0800 4500	.......10523..E.
    0x0010	 0047 000a 0000 4011 73f1 0a6c ec2f 0808	.G....@.s..l./..

- the time is absolute (`... 6 0 a`) or seconds since the sniffer started (no `a`);
- verbose 4-6 name the interface and the direction (`in`, `out`, `--`); 1-3 do not;
- verbose 3 and 6 dump from the Ethernet header (FortiOS makes one up for ppp0 and other
  interfaces without one), 2 and 5 from the layer-3 header;
- the end of a sniffer session is `N packets received by filter` / `M packets dropped by
  kernel`; `interfaces=[...]` and `filters=[...]` open one.

Terminal logs are messy: prompts, escape sequences, CRs, paging, and damage. A line that
should belong to a hex dump and does not parse drops that packet (with a warning naming the
line), a damaged header line orphans its hex lines (skipped, warned), a dump cut short
keeps what it has (`orig_len` from the IP header; warned), and the packet count is checked
against the sniffer's own "received by filter" count.

Pure: text in, packets out; `write_pcapng` writes them with one interface per sniffer
interface (`fgt:port1`), the direction as the pcapng `epb_flags` and a packet comment.
"""

from __future__ import annotations

import calendar
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hopcap.bundle.pcapio import PcapngWriter
from hopcap.errors import BundleError

LINKTYPE_ETHERNET = 1

_TS_ABS = r"(?P<abs>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)"
_TS_REL = r"(?P<rel>\d+\.\d+)"
_HEADER = re.compile(
    rf"(?:{_TS_ABS}|{_TS_REL}) (?:(?P<iface>[A-Za-z0-9_.:/@-]+) (?P<dir>in|out|--) )?(?P<rest>.*)$"
)
_HEADER_AT_START = re.compile("^" + _HEADER.pattern)
# "0x0010\t 0047 000a ... \tascii" (FortiOS) or tcpdump -X's "\t0x0010:  0047 000a  ascii"
# "0x0010\t 0047 000a ... \tascii" (FortiOS), "000010\t 08 00 06 04 ...\tascii" (newer
# FortiOS) or tcpdump -X's "\t0x0010:  0047 000a  ascii"
_HEX = re.compile(
    r"^\s*(?:0x(?P<off>[0-9a-fA-F]{4})|(?P<off6>[0-9a-fA-F]{6})):?[ \t]+"
    r"(?P<hex>[0-9a-fA-F]{2,4}(?: [0-9a-fA-F]{2,4})*) *(?:\t.*|  .*)?$"
)
_HEXISH = re.compile(r"^\s*(?:0x[0-9a-fA-F]*|[0-9a-fA-F]{6}\t)")
_RECEIVED = re.compile(r"^(\d+) packets received by filter")
_DROPPED = re.compile(r"^(\d+) packets dropped by kernel")
_INTERFACES = re.compile(r"^interfaces=\[(?P<v>[^\]]*)\]")
_FILTERS = re.compile(r"^filters=\[(?P<v>.*)\]\s*$")
_COMMAND = re.compile(
    r"diag(?:nose)?\s+snif(?:fer)?\s+pack(?:et)?\s+(?P<iface>\S+)\s+"
    r"(?:\"(?P<filter>[^\"]*)\"|'(?P<filter2>[^']*)'|(?P<filter3>\S+))"
    r"(?:\s+(?P<verbose>[1-6]))?(?:\s+(?P<count>\d+))?(?:\s+(?P<tsfmt>[alr]))?\s*$"
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")
_MORE = re.compile(r"--More--\s*")

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ARP = 0x0806
_KNOWN_ETHERTYPES = {
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_ARP,
    0x8100,
    0x88A8,
    0x8863,  # PPPoE discovery
    0x8864,  # PPPoE session
    0x8847,
    0x8848,
    0x8890,  # FortiGate HA heartbeat (FGCP)
    0x8891,
    0x8893,
    0x88CC,  # LLDP
}

DIRECTION_FLAGS = {"in": 1, "out": 2}  # pcapng epb_flags bits 0-1


@dataclass(frozen=True)
class SnifferPacket:
    line: int  # 1-based line of the header
    session: int  # index of the sniffer session in the log
    ts_ns: int  # epoch ns (absolute) or ns since the session started (relative)
    interface: str | None
    direction: str | None  # "in", "out", or None ("--" or not shown)
    summary: str
    data: bytes  # from the Ethernet header (made up when the sniffer showed layer 3 only)
    orig_len: int
    absolute: bool = True  # ts_ns is epoch ns (else: since the session started)
    synthetic_l2: bool = False


@dataclass
class SnifferSession:
    index: int
    line: int
    command: str | None = None
    interfaces: str | None = None  # as the sniffer said: "any", "port2", ...
    filter: str | None = None
    verbose: int | None = None
    received: int | None = None  # "N packets received by filter"
    dropped: int | None = None
    packets: int = 0
    absolute: bool | None = None


@dataclass
class SnifferLog:
    packets: list[SnifferPacket] = field(default_factory=list)
    sessions: list[SnifferSession] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def interfaces(self) -> list[str]:
        """Every interface that appeared, in order of first appearance."""
        return list(dict.fromkeys(p.interface or "sniffer" for p in self.packets))

    @property
    def absolute(self) -> bool:
        return all(s.absolute is not False for s in self.sessions if s.packets)


def _clean(line: str) -> str:
    line = _ANSI.sub("", line)
    line = _MORE.sub("", line)
    # a terminal log keeps what was overwritten after a CR; the visible text is the last part
    if "\r" in line:
        parts = [p for p in line.split("\r") if p]
        line = parts[-1] if parts else ""
    return line.rstrip()


def _parse_ts(m: re.Match[str]) -> tuple[int, bool]:
    if m.group("abs"):
        text = m.group("abs")
        whole, _, frac = text.partition(".")
        secs = calendar.timegm(_strptime(whole))
        ns = int((frac + "000000000")[:9]) if frac else 0
        return secs * 1_000_000_000 + ns, True
    whole, _, frac = m.group("rel").partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9]), False


def _strptime(text: str) -> tuple[int, int, int, int, int, int]:
    date, _, clock = text.partition(" ")
    y, mo, d = (int(x) for x in date.split("-"))
    h, mi, s = (int(x) for x in clock.split(":"))
    return (y, mo, d, h, mi, s)


def _hex_bytes(groups: str) -> bytes | None:
    digits = groups.replace(" ", "")
    if len(digits) % 2:
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


def _l3_len(data: bytes, off: int) -> int | None:
    """Length of the layer-3 packet at `off` by its own header, if it is IP."""
    if len(data) < off + 1:
        return None
    version = data[off] >> 4
    if version == 4 and len(data) >= off + 4:
        return int(struct.unpack_from("!H", data, off + 2)[0])
    if version == 6 and len(data) >= off + 6:
        return 40 + int(struct.unpack_from("!H", data, off + 4)[0])
    return None


def _starts_at_l3(data: bytes, summary: str, verbose: int | None) -> bool:
    """Does this dump start at the layer-3 header (verbose 2/5) rather than Ethernet?"""
    if verbose in (2, 5):
        return True
    if verbose in (3, 6):
        return False
    if len(data) >= 14 and struct.unpack_from("!H", data, 12)[0] in _KNOWN_ETHERTYPES:
        et = struct.unpack_from("!H", data, 12)[0]
        if et not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6) or (data[14] >> 4) in (4, 6):
            return False
    if summary.startswith("arp ") and data[:4] == b"\x00\x01\x08\x00":
        return True
    total = _l3_len(data, 0)
    return total is not None and total >= 20 and abs(total - len(data)) <= 64


def _with_l2(data: bytes, summary: str) -> bytes:
    if data and data[0] >> 4 == 6:
        et = ETHERTYPE_IPV6
    elif data and data[0] >> 4 == 4:
        et = ETHERTYPE_IPV4
    else:
        et = ETHERTYPE_ARP if summary.startswith("arp") else ETHERTYPE_IPV4
    return b"\0" * 12 + struct.pack("!H", et) + data


def _orig_len(data: bytes) -> int:
    if len(data) < 14:
        return len(data)
    et = struct.unpack_from("!H", data, 12)[0]
    off = 14
    while et in (0x8100, 0x88A8) and len(data) >= off + 4:
        et = struct.unpack_from("!H", data, off + 2)[0]
        off += 4
    if et in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        n = _l3_len(data, off)
        if n is not None:
            return max(len(data), off + n)
    return len(data)


class _Parser:
    def __init__(self, name: str) -> None:
        self.name = name
        self.log = SnifferLog()
        self.session: SnifferSession | None = None
        self.head: tuple[int, re.Match[str]] | None = None  # the packet being read
        self.hex: list[bytes] = []
        self.expect_off = 0
        self.damaged = False
        self.orphans: int | None = None  # line of the first orphaned hex line in a run
        self.cut_short: list[int] = []
        self.no_dump: list[int] = []  # header lines without a hex dump (verbose 1, 2 or 4)

    def warn(self, line: int, text: str) -> None:
        self.log.warnings.append(f"{self.name}:{line}: {text}")

    def new_session(self, line: int, command: str | None = None) -> SnifferSession:
        self.finish()
        s = SnifferSession(index=len(self.log.sessions), line=line, command=command)
        if command:
            m = _COMMAND.search(command)
            if m and m.group("verbose"):
                s.verbose = int(m.group("verbose"))
        self.log.sessions.append(s)
        self.session = s
        return s

    def finish(self) -> None:
        """End the packet being read, keeping it unless it was damaged."""
        if self.head is None:
            return
        line, m = self.head
        self.head = None
        data = b"".join(self.hex)
        if self.damaged:
            return
        if not data:
            self.no_dump.append(line)
            return
        s = self.session or self.new_session(line)
        ts, absolute = _parse_ts(m)
        if s.absolute is None:
            s.absolute = absolute
        summary = m.group("rest").strip()
        synthetic = _starts_at_l3(data, summary, s.verbose)
        frame = _with_l2(data, summary) if synthetic else data
        orig = _orig_len(frame)
        if orig > len(frame):
            self.cut_short.append(line)
        direction = m.group("dir")
        self.log.packets.append(
            SnifferPacket(
                line=line,
                session=s.index,
                ts_ns=ts,
                interface=m.group("iface"),
                direction=direction if direction in DIRECTION_FLAGS else None,
                summary=summary,
                data=frame,
                orig_len=orig,
                absolute=absolute,
                synthetic_l2=synthetic,
            )
        )
        s.packets += 1

    def feed(self, lineno: int, raw: str) -> None:
        line = _clean(raw)
        if not line.strip():
            self.finish()
            self._end_orphans()
            return
        if self.head is not None:
            hm = _HEX.match(line)
            if hm is not None:
                if self.damaged:
                    return
                off = int(hm.group("off") or hm.group("off6"), 16)
                chunk = _hex_bytes(hm.group("hex"))
                if chunk is None or off != self.expect_off:
                    self.damaged = True
                    self.warn(
                        lineno,
                        f"damaged hex dump ({line.strip()[:40]!r}); the packet of line "
                        f"{self.head[0]} is dropped",
                    )
                    return
                self.hex.append(chunk)
                self.expect_off += len(chunk)
                return
            if _HEXISH.match(line):
                if not self.damaged:
                    self.damaged = True
                    self.warn(
                        lineno,
                        f"damaged hex dump ({line.strip()[:40]!r}); the packet of line "
                        f"{self.head[0]} is dropped",
                    )
                return
            self.finish()
        self._other(lineno, line)

    def _end_orphans(self) -> None:
        if self.orphans is not None:
            self.warn(self.orphans, "hex dump without a packet header (damaged header?): skipped")
            self.orphans = None

    def _other(self, lineno: int, line: str) -> None:
        text = line.strip()
        if m := _COMMAND.search(text):
            self._end_orphans()
            self.new_session(lineno, m.group(0))
            return
        if m := _INTERFACES.match(text):
            s = self.session
            if s is None or s.packets or s.interfaces is not None:
                s = self.new_session(lineno)
            s.interfaces = m.group("v")
            return
        if (m := _FILTERS.match(text)) and self.session is not None:
            self.session.filter = m.group("v")
            return
        if (m := _RECEIVED.match(text)) and self.session is not None:
            self.session.received = int(m.group(1))
            return
        if (m := _DROPPED.match(text)) and self.session is not None:
            self.session.dropped = int(m.group(1))
            return
        if m := _HEADER_AT_START.match(text):
            self._end_orphans()
            self.head = (lineno, m)
            self.hex = []
            self.expect_off = 0
            self.damaged = False
            return
        if _HEX.match(text) or _HEXISH.match(text):
            if self.orphans is None:
                self.orphans = lineno
            return
        if _HEADER.search(text) and re.search(r" (?:in|out|--) ", text):
            self.warn(lineno, f"damaged packet header ({text[:40]!r}): that packet is skipped")
        # anything else is terminal noise: prompts, banners, other commands

    def close(self) -> SnifferLog:
        self.finish()
        self._end_orphans()
        log = self.log
        if self.cut_short:
            where = ", ".join(str(n) for n in self.cut_short[:5])
            more = f" and {len(self.cut_short) - 5} more" if len(self.cut_short) > 5 else ""
            self.log.warnings.append(
                f"{self.name}: {len(self.cut_short)} packet(s) cut short in the dump (lines "
                f"{where}{more}); kept with their original length from the IP header"
            )
        if self.no_dump:
            self.log.warnings.append(
                f"{self.name}:{self.no_dump[0]}: {len(self.no_dump)} packet header(s) without a "
                "hex dump skipped (the sniffer ran with verbose 1, 2 or 4: use 6)"
            )
        for s in log.sessions:
            if s.received is None:
                if s.packets:
                    self.log.warnings.append(
                        f"{self.name}:{s.line}: the sniffer session ends without its "
                        f"'packets received by filter' line (log cut short?); {s.packets} "
                        f"packets read"
                    )
            elif s.received != s.packets:
                self.log.warnings.append(
                    f"{self.name}:{s.line}: the sniffer reported {s.received} packets received "
                    f"by filter, the log holds {s.packets}"
                )
        return log


def parse_sniffer(text: str | Iterable[str], *, name: str = "log") -> SnifferLog:
    """Parse a FortiGate sniffer terminal log (verbose 1-6; 3 or 6 for full frames)."""
    p = _Parser(name)
    # a terminal ends lines with CR LF, sometimes CR CR LF; a bare CR overwrites (`_clean`)
    lines = text.split("\n") if isinstance(text, str) else text
    for i, raw in enumerate(lines, 1):
        p.feed(i, raw.rstrip("\n"))
    return p.close()


def read_sniffer_log(path: Path) -> SnifferLog:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror}") from exc
    if b"\0" in raw[:4096]:
        raise BundleError(f"{path} is binary, not the text of a FortiGate sniffer")
    log = parse_sniffer(raw.decode("utf-8", "replace"), name=path.name)
    if not log.packets:
        raise BundleError(
            f"{path}: no sniffer packets found",
            hint="capture with `diagnose sniffer packet <intf> '<filter>' 6 0 a` "
            "(verbose 3 or 6 dumps whole frames)",
        )
    return log


def _tcp_syn(frame: bytes) -> int | None:
    """The sequence number of a SYN without ACK in an Ethernet/IPv4|6 frame, else None."""
    if len(frame) < 14:
        return None
    et = struct.unpack_from("!H", frame, 12)[0]
    off = 14
    if et == ETHERTYPE_IPV4 and len(frame) >= off + 20 and frame[off + 9] == 6:
        off += (frame[off] & 15) * 4
    elif et == ETHERTYPE_IPV6 and len(frame) >= off + 40 and frame[off + 6] == 6:
        off += 40
    else:
        return None
    if len(frame) < off + 14 or frame[off + 13] & 0x12 != 0x02:
        return None
    return int(struct.unpack_from("!I", frame, off + 4)[0])


def path_order(log: SnifferLog) -> list[str]:
    """The log's interfaces in the order packets from the client cross them: the first
    connection seen opening on two interfaces enters by the one that saw its SYN first
    (NAT keeps the SYN's sequence number; ISN randomisers are rare on FortiGates).
    Interfaces that carried no such SYN follow in order of appearance."""
    first: dict[tuple[int, str], int] = {}  # (seq, interface) -> time
    for p in log.packets:
        seq = _tcp_syn(p.data)
        if seq is not None:
            first.setdefault((seq, p.interface or "sniffer"), p.ts_ns)
    by_seq: dict[int, list[tuple[int, str]]] = {}
    for (seq, iface), ts in first.items():
        by_seq.setdefault(seq, []).append((ts, iface))
    order: list[str] = []
    for seen in sorted(by_seq.values(), key=lambda s: min(s)):
        if len(seen) > 1:
            for _ts, iface in sorted(seen):
                if iface not in order:
                    order.append(iface)
    return order + [i for i in log.interfaces if i not in order]


@dataclass(frozen=True)
class Written:
    path: Path
    interfaces: dict[str, int]  # point name -> packets


def point_name(host: str, interface: str | None) -> str:
    return f"{host}:{interface or 'sniffer'}"


def write_pcapng(
    log: SnifferLog,
    out: Path,
    *,
    host: str = "fgt",
    start_ns: int | None = None,
    utc_offset_s: int = 0,
    interfaces: Iterable[str] | None = None,
) -> Written:
    """Write the log's packets to `out`, one pcapng interface per sniffer interface.

    Absolute sniffer times are the box's local time: `utc_offset_s` is subtracted to make
    them UTC. Relative times are added to `start_ns` (the sniffer's start, epoch ns).
    `interfaces` keeps only those (all when None)."""
    keep = set(interfaces) if interfaces is not None else None
    counts: dict[str, int] = {}
    with PcapngWriter(out) as w:
        ids: dict[str, int] = {}
        for p in log.packets:
            iface = p.interface or "sniffer"
            if keep is not None and iface not in keep:
                continue
            name = point_name(host, p.interface)
            if name not in ids:
                desc = "FortiGate diagnose sniffer packet"
                if p.synthetic_l2:
                    desc += " (verbose 5: Ethernet header made up by hopcap)"
                ids[name] = w.add_interface(LINKTYPE_ETHERNET, name, description=desc)
                counts[name] = 0
            ts = p.ts_ns - utc_offset_s * 1000000000 if p.absolute else (start_ns or 0) + p.ts_ns
            comment = f"{p.direction or '--'} {p.summary}"[:200]
            w.write_packet(
                ids[name],
                ts,
                p.data,
                p.orig_len,
                comment=comment,
                flags=DIRECTION_FLAGS.get(p.direction or ""),
            )
            counts[name] += 1
    return Written(out, counts)
