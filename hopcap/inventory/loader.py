"""`load()`: read an inventory file safely, detect its format, and build the Inventory."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from hopcap.errors import InventoryError, Problem
from hopcap.inventory import ansible
from hopcap.inventory._build import Builder
from hopcap.inventory._tree import parse_yaml
from hopcap.inventory.siteyml import read_site
from hopcap.model import Inventory

MAX_BYTES = 4 * 1024 * 1024  # an inventory is a few kB; anything this big is a mistake

_INI_SECTION = re.compile(r"\A\[[^\[\]\s]+\]\s*([#;].*)?\Z")
_INI_HOSTLINE = re.compile(r"\A[^\s=#;]*[^\s=#;:]\s+[A-Za-z_]\w*=")


def load(path: str | Path, *, path_override: Sequence[str] | None = None) -> Inventory:
    """Load and validate an inventory: hopcap's `site.yml`, or an Ansible inventory (INI or
    YAML, detected by content). `path_override` (from `--path a,b,c`) replaces the
    inventory's path.

    Raises InventoryError carrying every problem found in the file; never anything else.
    """
    file = str(path)
    text = _read(file)
    try:
        return _load_text(text, file, path_override)
    except InventoryError:
        raise
    except RecursionError:
        raise InventoryError(
            [Problem(file, None, None, None, "the file is nested too deeply to be an inventory")]
        ) from None
    except Exception as e:  # a bug in hopcap; still a message, never a traceback
        raise InventoryError(
            [Problem(file, None, None, None, f"internal error while reading the inventory: {e!r}")],
            hint="this is a bug in hopcap; please report it with the inventory file",
        ) from e


def loads(
    text: str, file: str = "<string>", *, path_override: Sequence[str] | None = None
) -> Inventory:
    """Like `load`, for inventory text already in memory (`file` names it in messages)."""
    try:
        return _load_text(text, file, path_override)
    except RecursionError:
        raise InventoryError(
            [Problem(file, None, None, None, "the file is nested too deeply to be an inventory")]
        ) from None


def _fail(
    file: str, message: str, line: int | None = None, col: int | None = None
) -> InventoryError:
    return InventoryError([Problem(file, line, col, None, message)])


def _read(file: str) -> str:
    try:
        st = os.stat(file)
    except FileNotFoundError:
        if os.path.islink(file):
            raise _fail(file, f"is a broken symbolic link (to '{os.readlink(file)}')") from None
        raise _fail(file, "no such file") from None
    except PermissionError:
        raise _fail(file, "permission denied: cannot read the inventory") from None
    except OSError as e:
        raise _fail(file, f"cannot read the inventory: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _fail(file, "is a directory; give the inventory file itself (e.g. site.yml)")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
        )
        raise _fail(file, f"is {kind}, not a regular file")
    if st.st_size > MAX_BYTES:
        raise _fail(file, f"is {st.st_size} bytes, too large for an inventory")
    try:
        with open(file, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except PermissionError:
        raise _fail(file, "permission denied: cannot read the inventory") from None
    except OSError as e:
        raise _fail(file, f"cannot read the inventory: {e.strerror or e}") from None
    return decode(data, file)


def decode(data: bytes, file: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _fail(file, "is UTF-16 encoded; save it as UTF-8")
    if b"\x00" in data:
        at = data.index(b"\x00")
        raise _fail(
            file,
            "is a binary file, not an inventory (NUL byte)",
            data[:at].count(b"\n") + 1,
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise _fail(
            file, f"is not valid UTF-8 (byte 0x{data[e.start]:02x}); save it as UTF-8", line, col
        ) from None


def looks_like_ini(text: str) -> bool:
    """An Ansible INI inventory: a `[section]` line at column 0 anywhere, or a first line
    like `host key=value`."""
    first = True
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if _INI_SECTION.match(raw.rstrip()):
            return True
        if first and _INI_HOSTLINE.match(line):
            return True
        first = False
    return False


def _load_text(text: str, file: str, path_override: Sequence[str] | None) -> Inventory:
    b = Builder(file)
    suffix = Path(file).suffix.lower()
    is_yaml_name = suffix in (".yml", ".yaml", ".json")
    if suffix in (".ini", ".cfg") or (not is_yaml_name and looks_like_ini(text)):
        return ansible.read_ini(b, text, path_override)
    root = parse_yaml(text, file, b.problems)
    if root is None:
        if not b.problems:
            b.add(None, None, "the file is empty: expected a mapping with 'hosts:'")
        b.fail_if_any()
        raise AssertionError("unreachable")
    if ansible.looks_like_ansible_yaml(root):
        return ansible.read_yaml(b, root, path_override)
    return read_site(b, root, path_override)
