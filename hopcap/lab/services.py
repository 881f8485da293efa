"""The lab's services: haproxy on lb, the HTTP server on srv, and the stalled listener
of the `srv-accept-queue` fault. Pidfiles, configs and logs live in the state dir."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from hopcap.errors import LabError

from ._proc import alive, ns_exec, run, spawn_daemon
from .topology import LB_BACK, LB_FRONT, SRV_ADDR, SRV_PORT, Layout

HTTPD_SCRIPT = Path(__file__).with_name("httpd.py")
STALL_PORT = 8081


def haproxy_config(state: Path) -> str:
    return f"""\
# haproxy of the lab's lb, written by hopcap lab
global
    daemon
    pidfile {state / "lb" / "haproxy.pid"}
    maxconn 2000

defaults
    mode http
    option forwardfor
    option http-server-close
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend web
    bind {LB_FRONT}:80
    default_backend servers

backend servers
    source {LB_BACK}
    server srv {SRV_ADDR}:{SRV_PORT}
"""


def start_haproxy(layout: Layout, state: Path) -> None:
    ldir = state / "lb"
    ldir.mkdir(exist_ok=True)
    cfg = ldir / "haproxy.cfg"
    cfg.write_text(haproxy_config(state))
    run(["haproxy", "-c", "-q", "-f", str(cfg)])
    # -D: haproxy daemonises after binding, so a bind error shows up here
    run(ns_exec(layout.ns("lb"), ["haproxy", "-D", "-f", str(cfg)]))


def _pid_from(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _listening(ns_addr: str, port: int, layout: Layout) -> bool:
    proc = run(ns_exec(layout.ns("srv"), ["ss", "-Hltn", f"src {ns_addr}:{port}"]), check=False)
    return bool(proc.stdout.strip())


def _start_script(layout: Layout, state: Path, mode: str, port: int, name: str) -> None:
    sdir = state / "srv"
    sdir.mkdir(exist_ok=True)
    pidfile = sdir / f"{name}.pid"
    pidfile.unlink(missing_ok=True)
    spawn_daemon(
        layout.ns("srv"),
        [sys.executable, str(HTTPD_SCRIPT), mode, SRV_ADDR, str(port), str(pidfile)],
        sdir / f"{name}.log",
    )
    end = time.monotonic() + 10
    while not (pidfile.exists() and _listening(SRV_ADDR, port, layout)):
        if time.monotonic() > end:
            log = (sdir / f"{name}.log").read_text()[-500:]
            raise LabError(f"srv {name} did not start listening on {SRV_ADDR}:{port}: {log}")
        time.sleep(0.05)


def _stop_script(state: Path, name: str) -> bool:
    pidfile = state / "srv" / f"{name}.pid"
    pid = _pid_from(pidfile)
    pidfile.unlink(missing_ok=True)
    if pid is None or not alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 3
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def start_httpd(layout: Layout, state: Path) -> None:
    _start_script(layout, state, "serve", SRV_PORT, "httpd")


def stop_httpd(state: Path) -> bool:
    return _stop_script(state, "httpd")


def httpd_running(state: Path) -> bool:
    pid = _pid_from(state / "srv" / "httpd.pid")
    return pid is not None and alive(pid)


def start_stall(layout: Layout, state: Path) -> None:
    _start_script(layout, state, "stall", STALL_PORT, "stall")


def stop_stall(state: Path) -> bool:
    return _stop_script(state, "stall")
