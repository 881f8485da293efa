"""Host facts before and after the window, and clock offset probes.

A missing tool is noted (in `HostFacts.missing`), never fatal.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Collection

from hopcap.errors import TransportError
from hopcap.orchestrator.local import LocalTransport
from hopcap.orchestrator.transport import HostTransport, SSHTransport, as_root

SYSCTLS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_max_syn_backlog",
    "net.core.somaxconn",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait",
    "net.netfilter.nf_conntrack_tcp_loose",
)

FACT_COMMANDS: dict[str, str] = {
    "nstat": "nstat -asz",
    "ss-s": "ss -s",
    "ss-listen": "ss -ltnp",
    "addr": "ip -d addr show",
    "route": "ip route show table all",
    "conntrack": "conntrack -L -o extended",
    "nft": "nft list ruleset",
    "iptables": "iptables-save -c",
    "sysctl": "sysctl " + " ".join(SYSCTLS) + " 2>/dev/null; true",
}


# /proc/net/snmp and /proc/net/netstat (pairs of "Prefix: names" / "Prefix: values" lines)
# in nstat's format, `PrefixName value rate`, for hosts without nstat (BusyBox routers)
_PROC_NSTAT = (
    "echo '#kernel (no nstat on this host: /proc/net/snmp and /proc/net/netstat)'; "
    'awk \'{ if (!($1 in h)) { h[$1] = $0 } else { n = split(h[$1], k, " "); '
    "p = substr($1, 1, length($1) - 1); "
    'for (i = 2; i <= n; i++) printf "%s%s %s 0.0\\n", p, k[i], $i; delete h[$1] } }\' '
    "/proc/net/snmp /proc/net/netstat"
)

# what to read when a fact's tool is missing (BusyBox hosts have no ss, nstat, conntrack);
# the output has the tool's format where the bundle parses it (nstat, conntrack)
FALLBACKS: dict[str, str] = {
    "nstat": _PROC_NSTAT,
    "ss-s": "cat /proc/net/sockstat",
    "ss-listen": "netstat -ltn 2>/dev/null || cat /proc/net/tcp",
    "addr": "ip addr show",
    # no conntrack tool and no /proc table: noted as the tool missing (exit 127)
    "conntrack": "if [ -e /proc/net/nf_conntrack ]; then cat /proc/net/nf_conntrack; "
    "else exit 127; fi",
    "sysctl": "for k in "
    + " ".join(SYSCTLS)
    + '; do f=/proc/sys/$(echo $k | tr . /); [ -r $f ] && echo "$k = $(cat $f)"; done; true',
}


def facts_script(marker: str, only: Collection[str] | None = None) -> str:
    """One shell script for every fact (one SSH session per host, not one per fact): each
    section is `<marker> NAME`, the command's output, `<marker>rc CODE`. A fact whose tool
    the host lacks is read from /proc where it can be (`FALLBACKS`). `only`: just these
    facts (the recorder's periodic snapshots)."""
    parts = []
    for name, command in FACT_COMMANDS.items():
        if only is not None and name not in only:
            continue
        tool = command.split()[0]
        fallback = FALLBACKS.get(name)
        if fallback and name == "addr":  # BusyBox `ip` has no -d
            body = f"{command} 2>/dev/null || {fallback}"
        elif fallback:
            body = f"if command -v {tool} >/dev/null 2>&1; then {command}; else {fallback}; fi"
        else:
            body = command
        parts.append(f"echo '{marker} {name}'; ({body}) 2>&1; echo \"{marker}rc $?\"")
    return "; ".join(parts)


def parse_facts(
    output: str, marker: str, only: Collection[str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    outputs: dict[str, str] = {}
    missing: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines(keepends=True):
        if line.startswith(marker + " ") and name is None:
            name, lines = line[len(marker) + 1 :].strip(), []
        elif line.startswith(marker + "rc ") and name is not None:
            rc = line[len(marker) + 3 :].strip()
            text = "".join(lines)
            if rc == "0":
                outputs[name] = text
            elif rc == "127":
                missing[name] = f"`{FACT_COMMANDS[name].split()[0]}` not installed"
            else:
                last = text.strip().splitlines()[-1] if text.strip() else "no output"
                missing[name] = f"exit {rc}: {last}"
            name = None
        elif name is not None:
            lines.append(line)
    for n in FACT_COMMANDS:
        if only is not None and n not in only:
            continue
        if n not in outputs and n not in missing:
            missing[n] = "no answer (the fact script was cut short)"
    return outputs, missing


async def collect_facts(
    transport: HostTransport, *, sudo: bool, is_root: bool, only: Collection[str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Collect every fact in one remote command; return (outputs, missing reasons).
    Conntrack and the rulesets need root: with `sudo` the whole script runs through it."""
    marker = "@@hopcap-" + secrets.token_hex(6)
    try:
        res = await transport.run(
            as_root(facts_script(marker, only), sudo and not is_root), timeout=60
        )
    except TransportError as exc:
        return {}, {n: str(exc) for n in FACT_COMMANDS if only is None or n in only}
    return parse_facts(res.stdout, marker, only)


# BusyBox's `date` has no %N: its `adjtimex` reads the kernel's time in microseconds
# (nanoseconds when the status has STA_NANO, 0x2000)
_ADJTIMEX_NOW = (
    "adjtimex | awk '/status:/ {st = $2} /tv_sec/ {s = $2} /tv_usec/ {u = $2} "
    'END {if (int(st / 8192) % 2) printf "%d.%09d\\n", s, u; else printf "%d.%06d\\n", s, u}\''
)


async def clock_offset(
    transport: HostTransport, samples: int = 7, *, date_ns: bool = True
) -> tuple[float, float]:
    """Estimate (remote clock - local clock, error bound) in seconds.

    One remote shell answers every probe (so channel and shell start-up are not part of the
    round trip); the sample with the smallest RTT wins, as in NTP, and its error bound is
    half that RTT. This machine (a `connection: local` host) is the controller's clock.
    `date_ns` False: the host's `date` has no %N (BusyBox).
    """
    if isinstance(transport, LocalTransport):
        return 0.0, 0.0
    now = "date +%s.%N" if date_ns else _ADJTIMEX_NOW
    if isinstance(transport, SSHTransport) and transport.command_shell:
        # the first answer also waits for the shell; a sample is one write and one line
        answers = await transport.timed_lines(now, samples, timeout=30)
    else:
        answers = await _loop_samples(transport, now, samples)
    best: tuple[float, float] | None = None
    for t0, line, t1 in answers:
        try:
            remote = float(line.strip())
        except ValueError as exc:
            raise TransportError(transport.name, f"cannot read the remote clock: {line!r}") from exc
        half_rtt = (t1 - t0) / 2
        if best is None or half_rtt < best[1]:
            best = (remote - (t0 + t1) / 2, half_rtt)
    assert best is not None
    return best


async def _loop_samples(
    transport: HostTransport, now: str, samples: int
) -> list[tuple[float, str, float]]:
    """The samples from a remote shell loop of its own (a transport without command shells)."""
    proc = await transport.spawn(f"while read x; do {now}; done", stdin=True)
    out: list[tuple[float, str, float]] = []
    try:
        for i in range(samples):
            t0 = time.time()
            proc.write("\n")
            # the first answer also waits for the remote shell to start
            line = await asyncio.wait_for(proc.readline_stdout(), 30 if i == 0 else 10)
            out.append((t0, line, time.time()))
    except TimeoutError as exc:
        raise TransportError(transport.name, "the remote clock did not answer") from exc
    finally:
        proc.close()
    return out
