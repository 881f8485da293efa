"""An IPsec tunnel endpoint correlated by time slices: memory and time, and the verdict.

Generates two points of one gateway, `gw:eth0` (the outer ESP flow from the peer: one
conversation) and `gw:tun0` (the inner packets, decrypted 50 us after their datagram:
`--streams` UDP streams of a packet every 20 ms, of 228-243 bytes), `--packets` in all,
over as many seconds as it takes. `--lost` of the decrypted datagrams never appear on gw:tun0 (a
drop inside the endpoint). Then, interleaved `--rounds` times, as new processes:

  * `hopcap correlate gw:eth0=A gw:tun0=B --json` unsliced;
  * the same with `--memory M -j 1` and `-j 2` (the ESP conversation cut across the
    slices, whether it is a tunnel decided over the run: `tunnelcut`);
  * with `--old DIR` (a checkout run with PYTHONPATH), the old code with `--memory M
    -j 1` (the ESP conversation read whole into every slice it is alive in);

their wall and CPU time, peak anonymous memory (RssAnon of the main process, Pss_Anon
of it and its workers: `slice_bench._run`), the drops inside the endpoint found, and
whether each verdict is byte for byte the unsliced one.

    .venv/bin/python bench/esp_tunnel_bench.py --packets 1M --memory 300M \\
        --old /tmp/hopcap-main --dir /tmp/espb
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
from firewall_bench import _size
from pcapgen import write_pcap
from slice_bench import _run

NS = 1_000_000_000
PEER, GW = 0xC633640A, 0xC6336401  # 198.51.100.10, 198.51.100.1


def generate(n: int, streams: int, lost: float, d: Path, seed: int = 7) -> tuple[list[Path], int]:
    """The two captures, and how many datagrams were lost inside the endpoint."""
    rng = np.random.default_rng(seed)
    per = n // streams
    s = np.repeat(np.arange(streams), per)
    k = np.tile(np.arange(per), streams)
    t0 = 1_763_790_000 * NS
    # each stream every 20 ms, its own phase and a little jitter
    ts = t0 + k * 20_000_000 + s * 20_000_000 // streams + rng.integers(0, 200_000, s.shape[0])
    o = np.argsort(ts, kind="stable")
    s, k, ts = s[o], k[o], ts[o]
    m = s.shape[0]
    # media of about one size: the greedy pairing of `tunnel.py` (the earliest inner
    # packet that fits) takes a lost one's successor, and the one after it the next...:
    # with sizes this close the overheads stay alike and it is still taken for a tunnel
    # (the drops counted, at the end of the chain)
    plen = rng.integers(200, 216, m)
    inner_len = 20 + 8 + plen
    # the ESP payload: IV/header, padding to 16, tag (32-47 bytes more than the inner packet)
    eplen = 32 + (inner_len + 15) // 16 * 16
    gone = rng.random(m) < lost
    z = np.zeros(m, np.int64)
    cli = 0x0A090002 + s  # 10.9.0.x
    srv = 0x0A090150 + s  # 10.9.1.80 + x
    inner = {
        "ts": ts + 50_000, "plen": plen, "ipid": k & 0xFFFF, "ttl": z + 64, "src": cli,
        "dst": srv, "sport": 5000 + s, "dport": z + 6000, "seq": z, "ack": z, "flags": z,
        "tsval": z, "tsecr": z, "mss": z - 1, "win": z, "proto": z + 17,
    }  # fmt: skip
    outer = {
        "ts": ts, "plen": eplen, "ipid": rng.integers(0, 1 << 16, m), "ttl": z + 64,
        "src": z + PEER, "dst": z + GW, "sport": z + 0x1000, "dport": z,
        "seq": np.arange(1, m + 1), "ack": z, "flags": z, "tsval": z, "tsecr": z,
        "mss": z - 1, "win": z, "proto": z + 50,
    }  # fmt: skip
    keep = ~gone
    inner = {key: x[keep] for key, x in inner.items()}

    def payload(buf: np.ndarray, off: np.ndarray, v: dict[str, np.ndarray]) -> None:
        buf[off] = (v["ipid"] & 0xFF).astype(np.uint8)
        buf[off + 1] = (v["sport"] & 0xFF).astype(np.uint8)

    files = [d / "gw_eth0.pcap", d / "gw_tun0.pcap"]
    write_pcap(files[0], outer, payload)
    write_pcap(files[1], inner, payload)
    return files, int(gone.sum())


def _drops(out: Path) -> int:
    v = json.loads(out.read_text())
    return sum(
        f["packets"]
        for fl in v["flows"]
        if fl["proto"] == "esp"
        for f in fl["findings"]
        if f["kind"] == "drop" and f["between"] == ["gw:eth0", "gw:tun0"]
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--packets", type=_size, default=_size("1M"), help="inner packets")
    ap.add_argument("--streams", type=int, default=40)
    ap.add_argument("--lost", type=float, default=0.002, help="share lost inside gw")
    ap.add_argument("--memory", default="300M")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--old", type=Path, help="a checkout of the old code")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/hopcap-espbench"))
    args = ap.parse_args()
    d = args.dir
    d.mkdir(parents=True, exist_ok=True)
    files, gone = generate(args.packets, args.streams, args.lost, d)
    for f in files:  # in page cache: every run reads the same
        with f.open("rb") as fh:
            while fh.read(1 << 24):
                pass
    here = str(Path(__file__).resolve().parents[1])
    base = [sys.executable, "-c", "from hopcap.cli import main; main()", "correlate",
            f"gw:eth0={files[0]}", f"gw:tun0={files[1]}", "--json"]  # fmt: skip
    runs = [("unsliced", here, []),
            ("sliced -j1", here, ["--memory", args.memory, "-j", "1"]),
            ("sliced -j2", here, ["--memory", args.memory, "-j", "2"])]  # fmt: skip
    if args.old:
        runs.append(("old sliced -j1", str(args.old), ["--memory", args.memory, "-j", "1"]))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"{args.packets:,} inner packets in {args.streams} streams, as many ESP "
          f"datagrams; {gone:,} lost inside gw", flush=True)  # fmt: skip
    got: dict[str, bytes] = {}
    env0 = dict(os.environ)
    for r in range(args.rounds):
        for label, path, extra in runs:
            name = label.replace(" ", "_")
            out, err = d / f"v_{name}.json", d / f"err_{name}.txt"
            os.environ["PYTHONPATH"] = path
            load = os.getloadavg()[0]
            try:
                w, c, anon, tree = _run([*base, "-j", "1", *extra] if not extra else
                                        [*base, *extra], out, err)  # fmt: skip
            finally:
                os.environ.clear()
                os.environ.update(env0)
            # (the progress lines are rate-limited: the count is the last "slice N/M"'s M)
            slices = [int(m) for m in re.findall(r"slice \d+/(\d+)", err.read_text())][-1:]
            got.setdefault(label, out.read_bytes())
            print(f"round {r + 1} {label}: wall {w:.1f} s, cpu {c:.1f} s, {sum(slices)} slices, "
                  f"peak RssAnon {anon / 1e6:.0f} MB (all processes: Pss_Anon "
                  f"{tree / 1e6:.0f} MB), drops inside gw {_drops(out):,}; load {load:.1f}",
                  flush=True)  # fmt: skip
    for label, v in got.items():
        if label != "unsliced":
            print(f"{label}: verdict JSON identical to the unsliced one: {v == got['unsliced']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
