"""Host facts in a bundle: the raw before/after outputs and what moved between them.

Parsers for the outputs the orchestrator collects (`nstat -asz`, `nft list ruleset`,
`iptables-save -c`, `conntrack -L [-o extended]`) and the deltas the report shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hopcap.model import HostFacts

# Counters that point at a drop or a refusal; shown first, marked in the report.
NOTABLE_COUNTERS: Mapping[str, str] = {
    "TcpExtListenOverflows": "accept queue full: SYNs/ACKs dropped by a listener",
    "TcpExtListenDrops": "connection requests dropped by a listener",
    "TcpExtTCPBacklogDrop": "socket backlog full",
    "TcpExtTCPReqQFullDrop": "SYN queue full, SYN dropped",
    "TcpExtTCPReqQFullDoCookies": "SYN queue full, SYN cookies sent",
    "TcpExtSyncookiesSent": "SYN cookies sent (SYN flood or full SYN queue)",
    "TcpExtSyncookiesFailed": "invalid SYN cookies received",
    "TcpExtTCPRcvQDrop": "receive queue full",
    "TcpExtTCPZeroWindowDrop": "dropped on zero window",
    "TcpExtTCPOFODrop": "out-of-order queue drop",
    "TcpExtTCPMinTTLDrop": "dropped by minimum TTL",
    "TcpExtPAWSEstabRejected": "PAWS: segments rejected by timestamp check",
    "TcpExtPAWSActive": "PAWS: active opens rejected",
    "TcpExtTCPChallengeACK": "challenge ACKs sent",
    "TcpExtTCPAbortOnData": "connections reset on unexpected data",
    "TcpExtTCPAbortOnTimeout": "connections aborted by timeout",
    "TcpExtTCPAbortOnClose": "connections reset on close with unread data",
    "TcpExtTCPAbortOnMemory": "connections aborted: out of memory",
    "TcpExtTCPSynRetrans": "SYN retransmissions",
    "TcpExtTCPTimeouts": "retransmission timeouts",
    "TcpExtLockDroppedIcmps": "ICMPs dropped (socket locked)",
    "TcpRetransSegs": "segments retransmitted",
    "TcpAttemptFails": "connection attempts failed",
    "TcpEstabResets": "established connections reset",
    "TcpOutRsts": "RSTs sent",
    "TcpInErrs": "bad TCP segments received",
    "TcpInCsumErrors": "TCP checksum errors",
    "IpInDiscards": "IP input discards",
    "IpOutDiscards": "IP output discards",
    "IpInHdrErrors": "IP header errors",
    "IpInAddrErrors": "IP address errors",
    "IpOutNoRoutes": "no route",
    "IpExtInNoRoutes": "no route (input)",
    "IpReasmFails": "reassembly failures",
    "UdpInErrors": "UDP input errors",
    "UdpRcvbufErrors": "UDP receive buffer full",
    "UdpNoPorts": "UDP to closed port",
    "IcmpInDestUnreachs": "ICMP destination unreachable received",
    "IcmpOutDestUnreachs": "ICMP destination unreachable sent",
}


# --------------------------------------------------------------------------- nstat


def parse_nstat(text: str) -> dict[str, int]:
    """`nstat -a[s]z` output -> {counter: value}. Lines are `Name value rate`."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith("#"):
            continue
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class CounterDelta:
    name: str
    before: int
    after: int
    notable: str | None

    @property
    def delta(self) -> int:
        return self.after - self.before

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "before": self.before,
            "after": self.after,
            "delta": self.delta,
        }
        if self.notable:
            d["notable"] = self.notable
        return d


def nstat_delta(before: str, after: str) -> list[CounterDelta]:
    """Counters that changed, notable ones first, then by |delta| (largest first)."""
    b = parse_nstat(before)
    a = parse_nstat(after)
    out = [
        CounterDelta(name, b.get(name, 0), a.get(name, 0), NOTABLE_COUNTERS.get(name))
        for name in sorted(set(a) | set(b))
        if a.get(name, 0) != b.get(name, 0)
    ]
    out.sort(key=lambda c: (c.notable is None, -abs(c.delta), c.name))
    return out


# --------------------------------------------------------------------------- nft / iptables

_NFT_COUNTER = re.compile(r"\bcounter packets (\d+) bytes (\d+)")
_NFT_BARE = re.compile(r"^\s*packets (\d+) bytes (\d+)\s*$")


@dataclass(frozen=True)
class RuleCounter:
    where: str  # "table inet filter / chain input"
    rule: str  # rule text with the counter values stripped
    packets: int
    bytes: int


def parse_nft(text: str) -> list[RuleCounter]:
    """Rules (and named counters) with counters in `nft list ruleset` output."""
    out: list[RuleCounter] = []
    stack: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("{"):
            stack.append(line[:-1].strip())
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        m = _NFT_COUNTER.search(line)
        if m:
            rule = _NFT_COUNTER.sub("counter", line)
            out.append(RuleCounter(" / ".join(stack), rule, int(m.group(1)), int(m.group(2))))
            continue
        m = _NFT_BARE.match(line)
        if m and stack and stack[-1].startswith("counter "):  # named counter object
            out.append(
                RuleCounter(" / ".join(stack[:-1]), stack[-1], int(m.group(1)), int(m.group(2)))
            )
    return out


_IPT_SAVE = re.compile(r"^\[(\d+):(\d+)\]\s+(.*)$")
_IPT_POLICY = re.compile(r"^:(\S+)\s+(\S+)\s+\[(\d+):(\d+)\]")


def parse_iptables_save(text: str) -> list[RuleCounter]:
    """`iptables-save -c` output: `[packets:bytes] -A CHAIN ...` and chain policies."""
    out: list[RuleCounter] = []
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
            continue
        m = _IPT_POLICY.match(line)
        if m:
            out.append(
                RuleCounter(
                    f"table {table}",
                    f":{m.group(1)} {m.group(2)} (policy)",
                    int(m.group(3)),
                    int(m.group(4)),
                )
            )
            continue
        m = _IPT_SAVE.match(line)
        if m:
            out.append(RuleCounter(f"table {table}", m.group(3), int(m.group(1)), int(m.group(2))))
    return out


@dataclass(frozen=True)
class RuleDelta:
    where: str
    rule: str
    packets: int  # delta
    bytes: int
    packets_after: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "where": self.where,
            "rule": self.rule,
            "packets": self.packets,
            "bytes": self.bytes,
            "packets_after": self.packets_after,
        }


def _rule_key_counts(rules: list[RuleCounter]) -> dict[tuple[str, str, int], RuleCounter]:
    seen: dict[tuple[str, str], int] = {}
    out: dict[tuple[str, str, int], RuleCounter] = {}
    for r in rules:
        n = seen.get((r.where, r.rule), 0)
        seen[(r.where, r.rule)] = n + 1
        out[(r.where, r.rule, n)] = r
    return out


def rules_delta(before: list[RuleCounter], after: list[RuleCounter]) -> list[RuleDelta]:
    """Rules whose counters moved, matched by their text with the counter stripped
    (identical rules in one chain are matched by their order). A rule only present after
    counts from zero. Sorted by packets moved, largest first."""
    b = _rule_key_counts(before)
    out: list[RuleDelta] = []
    for key, r in _rule_key_counts(after).items():
        old = b.get(key)
        dp = r.packets - (old.packets if old else 0)
        db = r.bytes - (old.bytes if old else 0)
        if dp or db:
            out.append(RuleDelta(r.where, r.rule, dp, db, r.packets))
    out.sort(key=lambda d: (-abs(d.packets), -abs(d.bytes), d.where, d.rule))
    return out


# --------------------------------------------------------------------------- conntrack

_CT_FIELD = re.compile(r"\b(src|dst|sport|dport)=(\S+)")


def conntrack_key(line: str) -> tuple[str, ...] | None:
    """The original-direction tuple of one `conntrack -L` line (timeouts and state vary)."""
    if "src=" not in line:
        return None
    words = line.split()
    proto = next(
        (
            w
            for w in words
            if w in ("tcp", "udp", "icmp", "icmpv6", "sctp", "dccp", "gre", "udplite")
        ),
        words[0],
    )
    seen: dict[str, str] = {}
    for name, val in _CT_FIELD.findall(line):
        if name in seen:
            break  # the reply direction starts
        seen[name] = val
    # zone / mark stay out of the key on purpose: they may be set during the window
    return (
        proto,
        seen.get("src", ""),
        seen.get("sport", ""),
        seen.get("dst", ""),
        seen.get("dport", ""),
    )


def conntrack_new(before: str, after: str) -> tuple[list[str], int]:
    """(entries in `after` whose tuple was not in `before`, count of entries gone)."""
    bkeys = {k for k in (conntrack_key(x) for x in before.splitlines()) if k is not None}
    akeys: set[tuple[str, ...]] = set()
    new: list[str] = []
    for line in after.splitlines():
        k = conntrack_key(line)
        if k is None:
            continue
        akeys.add(k)
        if k not in bkeys:
            new.append(line.strip())
    return new, len(bkeys - akeys)


# --------------------------------------------------------------------------- writing


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "_"


def host_summary(facts: HostFacts) -> dict[str, Any]:
    """What moved on one host (the JSON form written to facts/summary.json)."""
    s: dict[str, Any] = {"missing": dict(facts.missing)}
    b, a = facts.before, facts.after
    if "nstat" in b and "nstat" in a:
        s["nstat"] = [c.to_dict() for c in nstat_delta(b["nstat"], a["nstat"])]
    for name, parser in (("nft", parse_nft), ("iptables", parse_iptables_save)):
        if name in b and name in a:
            s[name] = [d.to_dict() for d in rules_delta(parser(b[name]), parser(a[name]))]
    if "conntrack" in b and "conntrack" in a:
        new, gone = conntrack_new(b["conntrack"], a["conntrack"])
        s["conntrack"] = {"new": len(new), "gone": gone, "new_entries": new[:50]}
    if facts.clock_before is not None:
        s["clock_before"] = {"offset_s": facts.clock_before[0], "error_s": facts.clock_before[1]}
    if facts.clock_after is not None:
        s["clock_after"] = {"offset_s": facts.clock_after[0], "error_s": facts.clock_after[1]}
    return s


def _nstat_text(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'counter':<34} {'before':>14} {'after':>14} {'delta':>12}  note"]
    for r in rows:
        note = ("! " + r["notable"]) if r.get("notable") else ""
        lines.append(
            f"{r['name']:<34} {r['before']:>14} {r['after']:>14} {r['delta']:>+12}  {note}".rstrip()
        )
    return "\n".join(lines) + "\n"


def _rules_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        lines.append(
            f"+{r['packets']} packets +{r['bytes']} bytes (now {r['packets_after']})  "
            f"[{r['where']}]  {r['rule']}"
        )
    return "\n".join(lines) + ("\n" if lines else "(no rule counter moved)\n")


def write_facts(facts_dir: Path, facts: tuple[HostFacts, ...] | list[HostFacts]) -> dict[str, Any]:
    """Write facts/<host>/{before,after,delta}/ and missing.txt; return the summary dict
    (the caller writes it as facts/summary.json, after anonymisation if asked)."""
    summary: dict[str, Any] = {}
    for hf in facts:
        hdir = facts_dir / _safe(hf.host)
        for when, outputs in (("before", hf.before), ("after", hf.after)):
            if outputs:
                (hdir / when).mkdir(parents=True, exist_ok=True)
            for name, text in outputs.items():
                (hdir / when / f"{_safe(name)}.txt").write_text(text)
        hdir.mkdir(parents=True, exist_ok=True)
        if hf.missing:
            (hdir / "missing.txt").write_text(
                "".join(f"{k}: {v}\n" for k, v in sorted(hf.missing.items()))
            )
        s = host_summary(hf)
        summary[hf.host] = s
        delta = hdir / "delta"
        if "nstat" in s or "nft" in s or "iptables" in s or "conntrack" in s:
            delta.mkdir(exist_ok=True)
        if "nstat" in s:
            (delta / "nstat.txt").write_text(_nstat_text(s["nstat"]))
        for name in ("nft", "iptables"):
            if name in s:
                (delta / f"{name}.txt").write_text(_rules_text(s[name]))
        if "conntrack" in s:
            new, _ = conntrack_new(hf.before["conntrack"], hf.after["conntrack"])
            c = s["conntrack"]
            (delta / "conntrack.txt").write_text(
                f"# {c['new']} new entries, {c['gone']} gone\n" + "".join(x + "\n" for x in new)
            )
    return summary


_INET = re.compile(r"^\s*inet6?\s+([0-9A-Fa-f.:]+)(?:/\d+)?\b", re.MULTILINE)


def parse_ip_addr(text: str) -> list[str]:
    """The addresses in `ip addr show` / `ip -d addr show` output (IPv4 and IPv6, prefix
    lengths dropped), in order, without repeats; BusyBox prints the same lines."""
    out: list[str] = []
    for m in _INET.finditer(text):
        a = m.group(1)
        if a not in out:
            out.append(a)
    return out


def host_addresses(facts: tuple[HostFacts, ...] | list[HostFacts]) -> dict[str, list[str]]:
    """Every host's own addresses from its `addr` fact (before and after the window): the
    addresses the correlator treats as that host's (traffic to them ends there)."""
    out: dict[str, list[str]] = {}
    for hf in facts:
        addrs: list[str] = []
        for when in (hf.before, hf.after):
            for a in parse_ip_addr(when.get("addr", "")):
                if a not in addrs:
                    addrs.append(a)
        if addrs:
            out[hf.host] = addrs
    return out


def _bundle_facts(bundle_dir: Path, *names: str) -> list[HostFacts]:
    """The facts `names` (e.g. "addr") of every host of a bundle, as `write_facts` wrote
    them (`facts/<host>/{before,after}/<name>.txt`); what is missing is left out."""
    facts_dir = Path(bundle_dir) / "facts"
    if not facts_dir.is_dir():
        return []

    def read(d: Path) -> dict[str, str]:
        return {n: f.read_text(errors="replace") for n in names if (f := d / f"{n}.txt").is_file()}

    return [
        HostFacts(h.name, read(h / "before"), read(h / "after"))
        for h in sorted(facts_dir.iterdir())
        if h.is_dir()
    ]


def conntrack_after(facts: Iterable[HostFacts]) -> dict[str, str]:
    """Each host's `conntrack -L` at the end of the run: what the correlator is handed."""
    return {f.host: f.after["conntrack"] for f in facts if "conntrack" in f.after}


def bundle_conntrack(bundle_dir: Path) -> dict[str, str]:
    """`conntrack_after` of a bundle (`facts/<host>/after/conntrack.txt`), as `hopcap run`
    had it: a bundle correlated again gets the run's verdict."""
    return conntrack_after(_bundle_facts(bundle_dir, "conntrack"))


def bundle_host_addresses(bundle_dir: Path) -> dict[str, list[str]]:
    """`host_addresses` of a bundle's `facts/<host>/{before,after}/addr.txt`."""
    return host_addresses(_bundle_facts(bundle_dir, "addr"))
