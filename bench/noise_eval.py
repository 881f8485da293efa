"""How much Internet noise hopcap takes for a fault, on real three-point captures.

The public dataset https://github.com/miqsoft/proxydetection holds, per proxy kind and
case, `data/<kind>/<case>/pcaps/{client,relay,server}.pcap`: tcpdump on a client VM
behind two NATs, a relay and a server with public addresses, while one tool (curl, ssh,
ftp, websocat, dig) talked through the relay (3proxy, sshuttle, tinc; `base`: straight to
the server). Besides the run's own traffic the relay's and server's captures carry what the
Internet sends to their own addresses: scanners' SYNs, the hosts' DNS, NTP, ICMP. A
healthy case (the tool got its answer; no `logs/*_err.log`) should show no drop, injection,
reset or rewrite that is not device policy.

The dataset carries no licence, so it is not in this repository; bring a checkout:

    git clone https://github.com/miqsoft/proxydetection /tmp/proxydetection
    git -C /tmp/proxydetection checkout 5a7bff97c0c4802c3f3007d73e8fc3a675b09de9
    .venv/bin/python bench/noise_eval.py /tmp/proxydetection [--kinds 3proxy,base,sshuttle,tinc]
    .venv/bin/python bench/noise_eval.py /tmp/proxydetection --show 3proxy/socks5_ftps

(measured at 5a7bff97c0c4802c3f3007d73e8fc3a675b09de9). Prints one row per case (the
finding counts; `-` for a case that failed, not counted as healthy), the totals, and how
many healthy cases are clean. `--show KIND/CASE` prints that case's findings.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from hopcap.correlate import correlate
from hopcap.model import PointInput, Verdict

POINTS = ("client", "relay", "server")
FAULTS = ("drop", "inject", "reset", "rewrite")
KINDS = ("3proxy", "base", "sshuttle", "tinc")  # a proxy or a TCP tunnel through the relay


def cases(root: Path, kinds: list[str]) -> list[tuple[str, str, Path]]:
    """(kind, case, directory) of every case with all three captures, sorted."""
    out = []
    for kind in kinds:
        for d in sorted((root / "data" / kind).iterdir()):
            pc = d / "pcaps"
            if all((pc / f"{p}.pcap").is_file() for p in POINTS):
                out.append((kind, d.name, d))
    return out


def healthy(d: Path) -> bool:
    """The tool of the case ran to its end: no error log was written."""
    return not any(f.stat().st_size for f in (d / "logs").glob("*_err.log"))


def faults(v: Verdict) -> list[tuple[str, str, str, str]]:
    """(flow id, kind, where, what) of the drops, injections, resets and rewrites that are
    not device policy (the patterns say which: MSS clamping, TTL decrement)."""
    policy = {
        (fid, p.kind, p.between, p.field) for p in v.patterns if p.policy for fid in p.flow_ids
    }
    return [
        (fl.id, f.kind, " -> ".join(f.between), f"{fl.client} > {fl.server}: {f.what}")
        for fl in v.flows
        for f in fl.findings
        if f.kind in FAULTS and (fl.id, f.kind, f.between, f.field) not in policy
    ]


def run(d: Path) -> Verdict:
    return correlate([PointInput(name=p, pcap=d / "pcaps" / f"{p}.pcap") for p in POINTS])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkout", type=Path, help="a checkout of miqsoft/proxydetection")
    ap.add_argument("--kinds", default=",".join(KINDS), help="proxy kinds (data/<kind>)")
    ap.add_argument("--show", metavar="KIND/CASE", help="print the findings of one case")
    args = ap.parse_args()
    root: Path = args.checkout
    if not (root / "data").is_dir():
        print(f"{root}: no data/ directory (a proxydetection checkout?)", file=sys.stderr)
        return 2
    if args.show:
        d = root / "data" / args.show
        v = run(d)
        for fid, kind, where, what in faults(v):
            print(f"{fid:>5} {kind:8} {where:18} {what}")
        off = Counter(fl.local_to for fl in v.flows if not fl.path)
        print(f"set apart: {dict(off)}; on the path: {sum(fl.path for fl in v.flows)} flows")
        return 0
    total: Counter[str] = Counter()
    n_ok = n_clean = 0
    print(f"{'kind':9} {'case':18} {'ok':3} " + " ".join(f"{k:>7}" for k in FAULTS))
    for kind, name, d in cases(root, args.kinds.split(",")):
        ok = healthy(d)
        c = Counter(f[1] for f in faults(run(d)))
        mark = "" if ok else "-"
        print(f"{kind:9} {name:18} {'yes' if ok else 'no':3} " + " ".join(
            f"{c[k]:>7}" for k in FAULTS) + f" {mark}")  # fmt: skip
        if ok:
            n_ok += 1
            n_clean += not c
            total.update(c)
    print(f"{'healthy':28} " + " ".join(f"{total[k]:>7}" for k in FAULTS))
    print(f"clean: {n_clean}/{n_ok} healthy cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
