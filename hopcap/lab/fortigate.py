"""A lab host that speaks like a FortiGate over SSH.

sshd runs this as the login shell (ForceCommand) of a second sshd in a lab namespace, so
that hopcap's FortiGate driver meets what it meets on a real box: a `#` prompt, `--More--`
paging until `config system console / set output standard / end`, `get system status`,
and `diagnose sniffer packet <intf|any> '<filter>' <verbose> <count> <a|l|r>` printing
the FortiOS text for the real traffic of the namespace's interfaces (from tcpdump's
Linux cooked v2 stream, which carries each packet's interface and direction), stopped by
Ctrl-C (SIGINT from the terminal, or a 0x03 byte without one) with its "N packets
received by filter" lines. Its tcpdump dies with it (parent-death signal), as a real
FortiGate's sniffer ends with the CLI session.

    python -m hopcap.lab.fortigate [--hostname NAME]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import os
import queue
import re
import select
import shlex
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, TextIO

FGT_PORT = 2244  # 2222-2223: the password tests; 2200: the no-SFTP test
VERSION = "FortiGate-VM64 v7.2.8,build1639,240313 (GA.M)"
SERIAL = "FGVMHOPCAPLAB001"
PAGE_LINES = 20
_PR_SET_PDEATHSIG = 1


class Cli:
    def __init__(self, hostname: str, out: TextIO) -> None:
        self.hostname = hostname
        self.out = out
        self.paging = True
        self.section: str | None = None
        self.interrupt = threading.Event()
        self.sniffing: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ output
    def write(self, text: str) -> None:
        self.out.write(text)  # a terminal's ONLCR makes CR LF of it
        self.out.flush()

    def prompt(self) -> None:
        where = f" ({self.section})" if self.section else ""
        self.write(f"{self.hostname}{where} # ")

    def page(self, lines: list[str], stdin: BinaryIO) -> None:
        """Print `lines`, stopping every PAGE_LINES at `--More--` when paging is on."""
        for i, line in enumerate(lines):
            if self.paging and i and i % PAGE_LINES == 0:
                self.write("--More-- ")
                key = stdin.read(1)
                self.write("\r         \r")
                if key in (b"q", b"Q", b""):
                    return
            self.write(line + "\n")

    # ------------------------------------------------------------------ commands
    def status_lines(self) -> list[str]:
        now = dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
        lines = [
            f"Version: {VERSION}",
            "Virus-DB: 1.00000(2018-04-09 18:07)",
            "IPS-DB: 6.00741(2015-12-01 02:30)",
            f"Serial-Number: {SERIAL}",
            "License Status: Valid",
            "BIOS version: 04000002",
            "Log hard disk: Not available",
            f"Hostname: {self.hostname}",
            "Private Encryption: Disable",
            "Operation Mode: NAT",
            "Current virtual domain: root",
            "Max number of virtual domains: 1",
            "Virtual domains status: 1 in NAT mode, 0 in TP mode",
            "Virtual domain configuration: disable",
            "FIPS-CC mode: disable",
            "Current HA mode: standalone",
            "Branch point: 1639",
            "Release Version Information: GA",
            "FortiOS x86-64: Yes",
            f"System time: {now}",
            "Last reboot reason: warm reboot",
        ]
        return lines

    def run_line(self, line: str, stdin: BinaryIO) -> bool:
        """Run one command line; False to end the session."""
        try:
            words = shlex.split(line)
        except ValueError:
            self.write("Command fail. Return code -61\n")
            return True
        if not words:
            return True
        head = " ".join(words[:3]).lower()
        if words[0] in ("exit", "quit", "logout") and self.section is None:
            return False
        if words[:3] == ["config", "system", "console"]:
            self.section = "console"
        elif self.section == "console" and words[:2] == ["set", "output"] and len(words) == 3:
            self.paging = words[2] != "standard"
        elif words[0] in ("end", "next", "abort") or (words[0] == "exit" and self.section):
            self.section = None
        elif head == "get system status":
            self.page(self.status_lines(), stdin)
        elif words[0].startswith("diag") and len(words) > 2 and words[1].startswith("snif"):
            self.sniffer(words[3:] if len(words) > 3 else [], stdin)
        else:
            self.write("Unknown action 0\nCommand fail. Return code -1\n")
        return True

    # ------------------------------------------------------------------ the sniffer
    def sniffer(self, args: list[str], stdin: BinaryIO) -> None:
        iface = args[0] if args else "any"
        bpf = args[1] if len(args) > 1 else ""
        verbose = int(args[2]) if len(args) > 2 and args[2].isdigit() else 1
        count = int(args[3]) if len(args) > 3 and args[3].isdigit() else 0
        fmt = args[4] if len(args) > 4 else "r"
        names = _interfaces()
        if iface != "any" and iface not in names.values():
            self.write(f"Interface {iface} is not found!\n")
            return
        # -Z root: dropping to the tcpdump user would clear the parent-death signal
        argv = ["tcpdump", "-Z", "root", "-i", "any", "-y", "LINUX_SLL2", "-n", "-s", "0", "-U",
                "-B", "32768",
                "--immediate-mode", "-w", "-"] + ([bpf] if bpf.strip() else [])  # fmt: skip
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self.sniffing = proc
        try:
            self._sniff(proc, iface, bpf, verbose, count, fmt, names, stdin)
        finally:
            self.sniffing = None
            if proc.poll() is None:
                proc.kill()

    def _sniff(
        self,
        proc: subprocess.Popen[bytes],
        iface: str,
        bpf: str,
        verbose: int,
        count: int,
        fmt: str,
        names: dict[int, str],
        stdin: BinaryIO,
    ) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        said = proc.stderr.readline().decode(errors="replace")
        while said and "listening on" not in said:
            said = proc.stderr.readline().decode(errors="replace")
        if not said:
            proc.wait()
            self.write("Sniffer failed to start\n")
            return
        # like the box: these two lines once the sniffer is running
        self.write(f"interfaces=[{iface}]\nfilters=[{bpf}]\n")
        self.interrupt.clear()
        stats = {"seen": 0}
        done = threading.Event()
        want = None if iface == "any" else next(k for k, v in names.items() if v == iface)
        t_start = time.time()

        # tcpdump is drained at once into a queue, so that a console slower than the
        # traffic makes the box lag (as a real one does), never the kernel drop packets
        packets: queue.Queue[tuple[float, int, int, bytes] | None] = queue.Queue()

        def drain() -> None:
            try:
                for item in _read_sll2(proc.stdout):  # type: ignore[arg-type]
                    packets.put(item)
            finally:
                packets.put(None)

        def pump() -> None:
            try:
                while (item := packets.get()) is not None:
                    ts, ifindex, pkttype, frame = item
                    if want is not None and ifindex != want:
                        continue
                    stats["seen"] += 1
                    self.write(_format(ts, names.get(ifindex, f"if{ifindex}"), pkttype, frame,
                                       verbose, fmt, t_start))  # fmt: skip
                    if count and stats["seen"] >= count:
                        self.interrupt.set()
                        return
            finally:
                done.set()

        threading.Thread(target=drain, daemon=True).start()
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        while not self.interrupt.is_set() and not done.is_set():
            r, _w, _x = select.select([stdin], [], [], 0.1)
            if r:
                try:
                    b = os.read(stdin.fileno(), 64)
                except OSError:  # EIO: the terminal hung up
                    b = b""
                if not b:  # the session is gone
                    raise SystemExit(0)
                if b"\x03" in b:
                    break
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        t.join(timeout=60)  # the box prints what it captured before its counts
        said = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        m = re.search(r"(\d+) packets? dropped by kernel", said)
        dropped = int(m.group(1)) if m else 0
        self.write(
            f"\n{stats['seen']} packets received by filter\n{dropped} packets dropped by kernel\n"
        )


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgrp()  # the terminal's Ctrl-C is the CLI's to handle, not tcpdump's


def _interfaces() -> dict[int, str]:
    out: dict[int, str] = {}
    for p in Path("/sys/class/net").iterdir():
        try:
            out[int((p / "ifindex").read_text())] = p.name
        except (OSError, ValueError):
            continue
    return out


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_sll2(f: BinaryIO):  # type: ignore[no-untyped-def]
    """(epoch seconds, ifindex, packet type, Ethernet frame) of a LINUX_SLL2 pcap stream."""
    head = _read_exact(f, 24)
    if head is None:
        return
    endian = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = head[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    while True:
        rec = _read_exact(f, 16)
        if rec is None:
            return
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
        data = _read_exact(f, incl)
        if data is None or len(data) < 20:
            return
        proto, _res, ifindex, _hatype, pkttype, alen = struct.unpack("!HHIHBB", data[:12])
        addr = data[12 : 12 + min(alen, 6)].ljust(6, b"\0")
        src = addr if pkttype != 4 else b"\x02\x00\x00\x00\x00\x01"
        dst = b"\x02\x00\x00\x00\x00\x01" if pkttype != 4 else b"\0" * 6
        frame = dst + src + struct.pack("!H", proto) + data[20:]
        yield sec + frac / (1e9 if nano else 1e6), ifindex, pkttype, frame


def _summary(frame: bytes) -> str:
    et = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if et == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 15) * 4
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        proto = ip[9]
        l4 = ip[ihl:]
        if proto == 6 and len(l4) >= 20:
            sp, dp, seq, ack = struct.unpack("!HHII", l4[:12])
            fl = l4[13]
            words = [w for bit, w in ((2, "syn"), (1, "fin"), (4, "rst"), (8, "psh")) if fl & bit]
            text = " ".join(words) + f" {seq}" if words else ""
            if fl & 16:
                text += f" ack {ack}"
            return f"{src}.{sp} -> {dst}.{dp}: {text.strip()}"
        if proto == 17 and len(l4) >= 8:
            sp, dp, ln = struct.unpack("!HHH", l4[:6])
            return f"{src}.{sp} -> {dst}.{dp}: udp {ln - 8}"
        if proto == 1 and len(l4) >= 2:
            return f"{src} -> {dst}: icmp: type-{l4[0]}"
        return f"{src} -> {dst}: ip-proto-{proto}"
    if et == 0x0806:
        return "arp"
    return f"ether proto 0x{et:04x}"


def _format(
    ts: float, iface: str, pkttype: int, frame: bytes, verbose: int, fmt: str, start: float
) -> str:
    if fmt == "a":
        stamp = dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        stamp = f"{ts - start:.6f}"
    direction = "out" if pkttype == 4 else "in"
    head = f"{stamp} {iface} {direction} " if verbose >= 4 else f"{stamp} "
    lines = [head + _summary(frame)]
    data = frame if verbose in (3, 6) else frame[14:] if verbose in (2, 5) else b""
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        words = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"0x{off:04x}\t {words:<39}\t{text}")
    return "\n".join(lines) + "\n\n"


def start(prefix: str, host: str = "fw", port: int = FGT_PORT) -> tuple[str, int]:
    """Start a second sshd in lab host `host`'s namespace whose every session is this CLI
    (the lab's user key logs in as admin... as root); its host key is trusted in the lab's
    known_hosts. It ends with `hopcap lab down`. Returns (address, port)."""
    from hopcap.errors import LabError

    from . import sshd
    from ._proc import ns_exec, run
    from .control import _layout
    from .state import state_dir_of

    layout = _layout(prefix)
    sdir = state_dir_of(prefix)
    if sdir is None:
        raise LabError(f"lab {prefix} is not up")
    hdir = sdir / host
    addr = layout.mgmt_addr(host)
    cfg = hdir / "fgt_sshd_config"
    text = sshd.config_text(layout, host, sdir)
    text = text.replace(f"ListenAddress {addr}:22", f"ListenAddress {addr}:{port}")
    text = text.replace(f"PidFile {hdir / 'sshd.pid'}", f"PidFile {hdir / 'fgt_sshd.pid'}")
    root = Path(__file__).resolve().parents[2]  # this hopcap, also from a source checkout
    cli = f"env PYTHONPATH={root} {sys.executable} -m hopcap.lab.fortigate"
    text = text.replace(
        "Subsystem sftp internal-sftp", f"ForceCommand {cli} --hostname FGT-{prefix.upper()}"
    )
    cfg.write_text(text)
    run([sshd.SSHD, "-t", "-f", str(cfg)])
    run(ns_exec(layout.ns(host), [sshd.SSHD, "-f", str(cfg), "-E", str(hdir / "fgt_sshd.log")]))
    pub = (hdir / "ssh_host_ed25519_key.pub").read_text().split()
    known = sdir / "known_hosts"
    entry = f"[{addr}]:{port} {pub[0]} {pub[1]}"
    if entry not in known.read_text():
        with known.open("a") as f:
            f.write(entry + "\n")
    end = time.monotonic() + 10
    while not sshd.accepts(addr, port):
        if time.monotonic() > end:
            raise LabError(f"the FortiGate-like sshd of {host} does not accept on {addr}:{port}")
        time.sleep(0.05)
    return addr, port


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hostname", default="FGT-HOPCAP")
    args = ap.parse_args(argv)
    cli = Cli(args.hostname, sys.stdout)
    signal.signal(signal.SIGINT, lambda *_: cli.interrupt.set())

    def hangup(*_: object) -> None:
        if cli.sniffing is not None:
            cli.sniffing.kill()
        os._exit(0)

    signal.signal(signal.SIGHUP, hangup)
    stdin = sys.stdin.buffer
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "").strip()
    if command:  # `ssh fgt 'get system status'`: one command, no prompt
        cli.paging = False
        cli.run_line(command, stdin)
        return 0
    cli.prompt()
    line = b""
    while True:
        r, _w, _x = select.select([stdin], [], [], 0.5)
        if not r:
            continue
        try:
            b = os.read(stdin.fileno(), 4096)
        except OSError:  # EIO: the terminal hung up
            return 0
        if not b:
            return 0
        line += b
        while b"\n" in line or b"\r" in line:
            cut = min(i for i in (line.find(b"\n"), line.find(b"\r")) if i >= 0)
            text, line = line[:cut].decode(errors="replace"), line[cut + 1 :]
            if not os.isatty(0):
                cli.write(text + "\n")  # no terminal to echo it
            if not cli.run_line(text, stdin):
                return 0
            cli.prompt()


if __name__ == "__main__":
    sys.exit(main())
