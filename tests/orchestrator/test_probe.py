"""The probe's readings of what a host offers: which `timeout`, which capture rights
(pure functions over what the probe script printed; the lab tests run the script itself)."""

from __future__ import annotations

import subprocess

from hopcap.orchestrator.session import capture_method, timeout_flavour

# `timeout --version 2>&1 | head -n 4`, as printed by each (BusyBox 1.29 is the last
# with -t; its text is from its source, applets/timeout.c)
GNU = "timeout (GNU coreutils) 9.1 Copyright (C) 2022 Free Software Foundation, Inc."
BUSYBOX_129 = (
    "timeout: unrecognized option '--version' BusyBox v1.29.3 (2019-01-24) multi-call "
    "binary.  Usage: timeout [-t SECS] [-s SIG] PROG ARGS"
)


def test_timeout_flavours() -> None:
    here = subprocess.run(
        ["sh", "-c", "timeout --version 2>&1 | head -n 4 | tr '\\n' ' '"],
        capture_output=True,
        text=True,
    ).stdout
    bb = subprocess.run(
        ["sh", "-c", "busybox timeout --version 2>&1 | head -n 4 | tr '\\n' ' '"],
        capture_output=True,
        text=True,
    ).stdout
    assert timeout_flavour(here) == "coreutils"
    assert timeout_flavour(GNU) == "coreutils"
    assert timeout_flavour(bb) == "busybox"  # 1.35: -s SIG -k KILL_SECS SECS
    assert timeout_flavour(BUSYBOX_129) == "busybox-t"
    assert timeout_flavour("") is None


def _method(**kw: object) -> tuple[str | None, str | None]:
    args: dict[str, object] = dict(
        is_root=False, sudo=False, sudo_ok=None, capeff="0", getcap="", mode="755 0", gids=set()
    )
    args.update(kw)
    return capture_method(**args)  # type: ignore[arg-type]


def test_capture_rights() -> None:
    caps = "/home/u/bin/tcpdump cap_net_admin,cap_net_raw=eip"
    assert _method(is_root=True) == ("root", None)
    assert _method(sudo=True, sudo_ok=True) == ("sudo", None)
    assert _method(sudo=True, sudo_ok=False)[0] is None
    assert _method(getcap=caps) == ("capabilities", None)
    assert _method(getcap="/usr/sbin/tcpdump = cap_net_raw+ep") == ("capabilities", None)
    assert _method(getcap=caps, mode="750 1001", gids={"1000", "1001"}) == ("group", None)
    no_exec = _method(getcap=caps, mode="750 1001", gids={"1000"})
    assert no_exec[0] is None and "may not execute" in str(no_exec[1])
    assert _method(capeff="0000000000003000") == ("capabilities", None)  # the login's own
    assert _method(getcap=None) == ("unchecked", None)
    none = _method()
    assert none[0] is None and "tcpdump has no capabilities" in str(none[1])
