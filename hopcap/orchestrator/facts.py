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
from hopcap.orchestrator.transport import HostTransport, as_root

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


def facts_script(marker: str, only: Collection[str] | None = None) -> str:
    """One shell script for every fact (one SSH session per host, not one per fact): each
    section is `<marker> NAME`, the command's output, `<marker>rc CODE`. `only`: just
    these facts (the recorder's periodic snapshots)."""
    parts = []
    for name, command in FACT_COMMANDS.items():
        if only is not None and name not in only:
            continue
        parts.append(f"echo '{marker} {name}'; ({command}) 2>&1; echo \"{marker}rc $?\"")
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


async def clock_offset(transport: HostTransport, samples: int = 7) -> tuple[float, float]:
    """Estimate (remote clock - local clock, error bound) in seconds.

    One remote shell answers every probe (so channel and shell start-up are not part of the
    round trip); the sample with the smallest RTT wins, as in NTP, and its error bound is
    half that RTT. This machine (a `connection: local` host) is the controller's clock.
    """
    if isinstance(transport, LocalTransport):
        return 0.0, 0.0
    proc = await transport.spawn("while read x; do date +%s.%N; done", stdin=True)
    best: tuple[float, float] | None = None
    try:
        for i in range(samples):
            t0 = time.time()
            proc.write("\n")
            # the first answer also waits for the remote shell to start
            line = await asyncio.wait_for(proc.readline_stdout(), 30 if i == 0 else 10)
            t1 = time.time()
            try:
                remote = float(line.strip())
            except ValueError as exc:
                raise TransportError(
                    transport.name, f"cannot read the remote clock: {line!r}"
                ) from exc
            half_rtt = (t1 - t0) / 2
            if best is None or half_rtt < best[1]:
                best = (remote - (t0 + t1) / 2, half_rtt)
    except TimeoutError as exc:
        raise TransportError(transport.name, "the remote clock did not answer") from exc
    finally:
        proc.close()
    assert best is not None
    return best
