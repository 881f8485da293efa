"""Host facts before and after the window, and clock offset probes.

A missing tool is noted (in `HostFacts.missing`), never fatal.
"""

from __future__ import annotations

import asyncio
import time

from hopcap.errors import TransportError
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

# name -> (command, needs root)
FACT_COMMANDS: dict[str, tuple[str, bool]] = {
    "nstat": ("nstat -asz", False),
    "ss-s": ("ss -s", False),
    "ss-listen": ("ss -ltnp", True),
    "addr": ("ip -d addr show", False),
    "route": ("ip route show table all", False),
    "conntrack": ("conntrack -L -o extended 2>&1", True),
    "nft": ("nft list ruleset", True),
    "iptables": ("iptables-save -c", True),
    "sysctl": ("sysctl " + " ".join(SYSCTLS) + " 2>/dev/null; true", False),
}

_NOT_FOUND = (127,)


async def collect_facts(
    transport: HostTransport, *, sudo: bool, is_root: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Run every fact command concurrently; return (outputs, missing reasons)."""

    async def one(name: str, command: str, needs_root: bool) -> tuple[str, str | None, str | None]:
        cmd = as_root(command, sudo and needs_root and not is_root)
        try:
            res = await transport.run(cmd, timeout=20)
        except TransportError as exc:
            return name, None, str(exc)
        if res.exit_status in _NOT_FOUND:
            return name, None, f"`{command.split()[0]}` not installed"
        if res.exit_status != 0 and not res.stdout.strip():
            why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no output"
            return name, None, f"exit {res.exit_status}: {why}"
        return name, res.stdout, None

    results = await asyncio.gather(*(one(n, c, r) for n, (c, r) in FACT_COMMANDS.items()))
    outputs = {n: out for n, out, _ in results if out is not None}
    missing = {n: why for n, _, why in results if why is not None}
    return outputs, missing


async def clock_offset(transport: HostTransport, samples: int = 7) -> tuple[float, float]:
    """Estimate (remote clock - local clock, error bound) in seconds.

    One remote shell answers every probe (so channel and shell start-up are not part of the
    round trip); the sample with the smallest RTT wins, as in NTP, and its error bound is
    half that RTT.
    """
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
