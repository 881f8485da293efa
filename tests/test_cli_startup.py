"""What `hopcap` costs before it does anything: parameters taken without pydantic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.core import _TyperParameter

from hopcap import cli
from tests.realdata import REALDATA

# every kind of value the commands take, valid or not
SAMPLES: list[Any] = [None, "8G", "", " 3 ", "x", "0", "2", "007", "1_000", "+5", "-1", "\u0663",
                      "99999999999999999999", "a=1.2.3.4", ("a", "b"), ["c"], (), True]  # fmt: skip


def _typer_coerce(param: Any, value: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "ok", param.hopcap_plain.typer_coercion(param).coerce(value, param, ctx)
    except Exception as e:  # the error itself is compared
        return "error", (type(e).__name__, str(e))


def _plain_coerce(param: Any, value: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "ok", param.get_runtime_param().coerce(value, param, ctx)
    except Exception as e:
        return "error", (type(e).__name__, str(e))


def test_plain_values_are_what_typer_makes_of_them() -> None:
    """Every parameter of every command, given each sample value: the value (or the
    error) is the one typer's own pydantic coercion gives."""
    assert cli.plain_values()
    assert cli.plain_values()  # installed once: a second call keeps it
    assert isinstance(_TyperParameter.get_runtime_param(None), cli._PlainValues)  # type: ignore[arg-type]
    group = typer.main.get_command(cli.app)
    ctx = group.make_context("hopcap", ["correlate", "a=x"], resilient_parsing=True)
    checked = 0
    commands: list[Any] = [group]
    while commands:
        cmd = commands.pop()
        commands += list(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            if not isinstance(param, _TyperParameter):
                continue
            for value in SAMPLES:
                multi = param.multiple or param.nargs == -1
                if isinstance(value, bool) and param.type_descriptor.annotation is bool:
                    continue  # typer skips the coercion of a flag's bool
                if multi != isinstance(value, list | tuple) and value is not None:
                    continue  # click hands a sequence exactly to a multiple parameter
                assert _plain_coerce(param, value, ctx) == _typer_coerce(param, value, ctx), (
                    cmd.name,
                    param.name,
                    value,
                )
                checked += 1
    assert checked > 200


def test_correlate_starts_without_pydantic(tmp_path: Path) -> None:
    """`hopcap correlate ... --json` with str, int and list options never imports
    pydantic, and numpy (imported after `main` set it up) asks for no huge pages; the
    verdict is the one typer's own coercion gives."""
    cap = REALDATA / "tcpreplay" / "test.pcap"
    other = REALDATA / "tcpreplay" / "test.rewrite_1ttl"  # the same traffic, TTL set
    args = ["correlate", f"a={cap}", f"b={other}", "--json", "--jobs", "1", "--memory", "8G",
            "--host", "a=198.51.100.1", "--target", "198.51.100.1:80"]  # fmt: skip
    probe = (
        "import sys, runpy\n"
        "import hopcap.cli\n"
        "hopcap.cli._quick_exit = sys.exit  # come back here after the command\n"
        f"sys.argv = ['hopcap', *{args!r}]\n"
        "try:\n"
        "    runpy.run_module('hopcap', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('PYDANTIC' if 'pydantic' in sys.modules else 'NO-PYDANTIC', file=sys.stderr)\n"
        "from numpy._core import multiarray\n"
        "print('HUGEPAGES', multiarray._set_madvise_hugepage(True), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    r = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert r.stderr.strip().splitlines()[-2:] == ["NO-PYDANTIC", "HUGEPAGES False"], r.stderr
    # typer's own way (what `app` does without `main`): the same verdict
    from typer.testing import CliRunner

    with pytest.MonkeyPatch.context() as mp:
        original = _TyperParameter.hopcap_plain.typer_coercion  # type: ignore[attr-defined]
        mp.setattr(_TyperParameter, "get_runtime_param", original)
        ref = CliRunner().invoke(cli.app, args)
    assert ref.exit_code == 0, ref.output
    assert r.stdout == ref.stdout


def _run_main(args: list[str]) -> subprocess.CompletedProcess[str]:
    """`hopcap ARGS` through `main`, with an exit handler that tells whether the
    interpreter's teardown ran."""
    probe = (
        "import atexit, sys, runpy\n"
        "atexit.register(lambda: print('TEARDOWN', file=sys.stderr))\n"
        f"sys.argv = ['hopcap', *{args!r}]\n"
        "runpy.run_module('hopcap', run_name='__main__')\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)


def test_correlate_ends_without_teardown(tmp_path: Path) -> None:
    """A finished correlate leaves at once (its objects are not freed one by one): the
    verdict whole on stdout, the exit code and the message of a partial run kept; other
    commands end as usual."""
    import json
    import struct

    from hopcap.errors import EXIT_PARTIAL

    cap = REALDATA / "tcpreplay" / "test.pcap"
    other = REALDATA / "tcpreplay" / "test.rewrite_1ttl"  # the same traffic, TTL set
    r = _run_main(["correlate", f"a={cap}", f"b={other}", "--json"])
    assert r.returncode == 0, r.stderr
    assert "TEARDOWN" not in r.stderr
    assert json.loads(r.stdout)["points"]
    # a point of a link type hopcap cannot read: the run is partial (exit 4, and why)
    wifi = tmp_path / "wifi.pcap"
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 105)
    wifi.write_bytes(head + struct.pack("<IIII", 1, 0, 10, 10) + bytes(10))
    r = _run_main(["correlate", f"a={cap}", f"b={wifi}", "--json"])
    assert r.returncode == EXIT_PARTIAL, r.stderr
    assert "incomplete: nothing could be used of b" in r.stderr
    assert "TEARDOWN" not in r.stderr and json.loads(r.stdout)["points"]
    r = _run_main(["lab", "--help"])
    assert r.returncode == 0 and "TEARDOWN" in r.stderr


def test_correlate_leaves_its_state_to_the_exit() -> None:
    """Run as the program, a correlate keeps the engine's state and the verdict to the
    quick exit (the kernel frees them at once; freeing them object by object took 0.08 s
    of a 1.6 M-packet run; its JSON is written piece by piece, nothing of it kept), and
    prints the same verdict; called in another program's process (here, typer's runner)
    it keeps nothing."""
    from typer.testing import CliRunner

    from hopcap.correlate import engine

    cap = REALDATA / "tcpreplay" / "test.pcap"
    other = REALDATA / "tcpreplay" / "test.rewrite_1ttl"  # the same traffic, TTL set
    args = ["correlate", f"a={cap}", f"b={other}", "--json", "--jobs", "1"]
    probe = (
        "import os, sys, runpy\n"
        "import hopcap.cli as cli\n"
        "from hopcap.correlate import engine\n"
        "def done(code):\n"
        "    sys.stdout.flush()\n"
        "    kept = [type(x).__name__ for x in (engine._KEEP or []) + cli._KEPT]\n"
        "    print('KEPT', *kept, file=sys.stderr)\n"
        "    os._exit(code)\n"
        "cli._quick_exit = done\n"
        f"sys.argv = ['hopcap', *{args!r}]\n"
        "runpy.run_module('hopcap', run_name='__main__')\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "KEPT Prepared Verdict", r.stderr
    ref = CliRunner().invoke(cli.app, args)
    assert ref.exit_code == 0, ref.output
    assert r.stdout == ref.stdout
    assert engine._KEEP is None and cli._KEPT == []


def test_only_the_invoked_command_is_built() -> None:
    """`main` builds the click object of the one command (or group) its arguments name,
    after the group's own options: every command's help, and what a bare command says,
    are the whole group's; help, a typo or anything else before the command get the whole
    group (click lists every command then)."""
    from typer.testing import CliRunner

    everything = list(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    assert {"correlate", "run", "lab", "import"} <= set(everything)
    runner = CliRunner()
    for name in everything:
        for args in ([name, "--help"], ["-v", "--log-file", "/dev/null", name, "--help"], [name]):
            one = cli._invoked(cli.app, args)
            built = typer.main.get_command(one)
            assert list(built.commands) == [name]  # type: ignore[attr-defined]
            got, ref = runner.invoke(one, args), runner.invoke(cli.app, args)
            assert (got.exit_code, got.output) == (ref.exit_code, ref.output), (name, args)
    for args in ([], ["--help"], ["corelate", "a=x"], ["--bogus", "correlate"], ["-v"]):
        assert cli._invoked(cli.app, args) is cli.app, args
