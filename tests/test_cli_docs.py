"""Every command and option of the command line is documented: named in README.md or in
docs/*.md (a user who reads `--help` finds it explained there, and the other way round:
the README's commands exist). `--anonymise`, the option that makes a bundle fit for a
vendor who must not see the site's addresses, was in `run --help` only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from hopcap import cli

ROOT = Path(__file__).resolve().parent.parent


def _docs() -> str:
    return "\n".join(
        p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    )


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command under `cmd` (typer's own click: its groups have `commands`)."""
    out = [(path, cmd)]
    if getattr(cmd, "commands", None):
        for name, sub in cmd.commands.items():
            out += _commands(sub, (*path, name))
    return out


def test_every_option_is_documented() -> None:
    docs = _docs()
    missing = []
    for path, cmd in _commands(typer.main.get_command(cli.app)):
        for param in cmd.params:
            for opt in param.opts:
                if (
                    opt.startswith("--")
                    and opt != "--help"
                    and not re.search(rf"{re.escape(opt)}(?![\w-])", docs)
                ):
                    missing.append(f"hopcap {' '.join(path)} {opt}")
    assert missing == []


def test_every_command_is_documented_and_every_documented_command_exists() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    root = typer.main.get_command(cli.app)
    names = {" ".join(path) for path, _cmd in _commands(root) if path}
    lines = readme.splitlines()
    for name in names:
        # `hopcap lab up [--fw busybox] | down | status`: a subcommand on its group's line
        group, _, sub = name.rpartition(" ")
        head = f"hopcap {group}" if group else "hopcap"
        assert any(
            head in line and re.search(rf"(?<![\w-]){re.escape(sub)}\b", line.split(head, 1)[1])
            for line in lines
            if head in line
        ), name
    # the README's command lines name commands that exist
    code = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.M | re.S))
    for first in set(re.findall(r"^(?:\$ )?hopcap ([a-z]+)\b", code, re.M)):
        assert first in names, first


def test_help_shows_flags_as_flags() -> None:
    """What `--help` shows a user: a flag takes no value (typer 0.29 writes every option's
    type, a flag's too: `--json <bool>`, `--help <bool>`, as if they took one), and no
    Python type names (`POINTS... <list[str]>`)."""
    from typer.testing import CliRunner

    root = typer.main.get_command(cli.app)
    runner = CliRunner()
    seen = {}
    for path, _cmd in _commands(root):
        res = runner.invoke(cli.app, [*path, "--help"], env={"COLUMNS": "150"})
        assert res.exit_code == 0, (path, res.output)
        seen[" ".join(path)] = res.output
        for line in res.output.splitlines():
            assert not re.search(r"<bool>|\bBOOLEAN\b", line), (path, line)
            assert not re.search(r"list\[|\[str\]", line), (path, line)
    assert re.search(r"--out\s+-o\s+\S*PATH", seen["correlate"], re.I)  # (a value's type stays)
    assert re.search(r"--json\s+print verdict.json", seen["correlate"])
    assert re.search(r"POINTS\s+NAME=PCAP \.\.\. in path order", seen["correlate"])
    assert re.search(r"--host\s+HOST=ADDR\[,ADDR\.\.\.\]\s+a host's own", seen["correlate"])


def test_fault_list_fits_the_terminal() -> None:
    """`hopcap lab fault list`: the descriptions (some 200 characters) wrapped to the
    terminal's width, every fault named once."""
    from typer.testing import CliRunner

    from hopcap import lab

    res = CliRunner().invoke(cli.app, ["lab", "fault", "list"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    named = [line.split()[0] for line in lines[2:] if line[:1].strip()]
    assert named == [r[0] for r in lab.fault_list()]
    assert "nothing is lost" in res.output  # (the end of a wrapped one)
