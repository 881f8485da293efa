"""Files that are not inventories at all: each is one clear problem, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.inventory.inv_helpers import problems_of

VALID = "hosts:\n  client: {address: 198.19.0.10, role: client, capture: [eth0]}\n"


def one(path: Path | str) -> str:
    problems = problems_of(path)
    assert len(problems) == 1, problems
    return str(problems[0])


def test_empty_file(write: Callable[..., Path]) -> None:
    p = write("")
    assert one(p) == f"{p}: the file is empty: expected a mapping with 'hosts:'"


def test_only_comments(write: Callable[..., Path]) -> None:
    p = write("# nothing here\n\n# still nothing\n")
    assert "the file is empty" in one(p)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.yml"
    assert one(p) == f"{p}: no such file"


def test_directory(tmp_path: Path) -> None:
    assert (
        one(tmp_path)
        == f"{tmp_path}: is a directory; give the inventory file itself (e.g. site.yml)"
    )


def test_fifo_does_not_block(tmp_path: Path) -> None:
    p = tmp_path / "site.yml"
    os.mkfifo(p)
    assert one(p) == f"{p}: is a FIFO, not a regular file"


def test_device() -> None:
    assert one("/dev/null") == "/dev/null: is a device, not a regular file"


def test_broken_symlink(tmp_path: Path) -> None:
    p = tmp_path / "site.yml"
    p.symlink_to(tmp_path / "gone.yml")
    assert one(p) == f"{p}: is a broken symbolic link (to '{tmp_path / 'gone.yml'}')"


def test_unreadable_file_as_unprivileged_user(tmp_path: Path) -> None:
    """Tests run as root, for whom chmod 000 changes nothing: drop to `nobody` in a child
    process (after importing hopcap as root) so the open really fails."""
    tmp_path.chmod(0o755)
    for parent in tmp_path.parents:  # let nobody reach the file itself
        if parent == Path("/tmp") or parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)
    p = tmp_path / "site.yml"
    p.write_text(VALID)
    p.chmod(0o000)
    code = (
        "import os, sys\n"
        "from hopcap.inventory import load\n"
        "from hopcap.errors import InventoryError\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        "    load(sys.argv[1])\n"
        "except InventoryError as e:\n"
        "    print(e.problems[0]); sys.exit(3)\n"
        "print('loaded')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(p)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stdout.strip() == f"{p}: permission denied: cannot read the inventory"
    assert r.stderr == ""


def test_binary_file(write: Callable[..., Path]) -> None:
    p = write(b"\x7fELF\x02\x01\x01\x00\x00\x00\n\x00\x01")
    assert one(p) == f"{p}:1: is a binary file, not an inventory (NUL byte)"


def test_invalid_utf8_names_the_line(write: Callable[..., Path]) -> None:
    p = write(b"hosts:\n  client: {address: caf\xe9, role: client}\n")
    assert one(p) == f"{p}:2:24: is not valid UTF-8 (byte 0xe9); save it as UTF-8"


def test_utf16(write: Callable[..., Path]) -> None:
    p = write(VALID.encode("utf-16"))
    assert one(p) == f"{p}: is UTF-16 encoded; save it as UTF-8"


def test_utf8_bom_is_fine(write: Callable[..., Path]) -> None:
    from hopcap.inventory import load

    inv = load(write(b"\xef\xbb\xbf" + VALID.encode()))
    assert inv.path == ("client",)


def test_control_character(write: Callable[..., Path]) -> None:
    p = write("hosts:\n  client: {address: 198.19.0.10\x07, role: client}\n")
    assert one(p) == f"{p}:2:32: control character U+0007 is not allowed in YAML"


def test_too_large(write: Callable[..., Path]) -> None:
    p = write("#" * (5 * 1024 * 1024))
    assert "too large for an inventory" in one(p)


def test_deep_nesting(write: Callable[..., Path]) -> None:
    p = write("hosts: " + "[" * 5000 + "]" * 5000 + "\n")
    msg = one(p)
    assert "nested too deeply" in msg or "'hosts' must map host names" in msg


def test_alias_bomb_is_cheap(write: Callable[..., Path]) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    lines.append("hosts: {client: {address: 198.19.0.10, role: client, capture: *a11}}")
    problems = problems_of(write("\n".join(lines) + "\n"))
    assert any("unknown key 'a0' in the top level" in p.message for p in problems)
    assert any(
        p.key == "capture" and "expected interface names, got a list" in p.message for p in problems
    )
