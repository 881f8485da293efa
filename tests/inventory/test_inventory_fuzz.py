"""Fuzz-ish: random bytes and random mutations of valid inventories never raise anything
but InventoryError, and never an "internal error" (hopcap's own safety net)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from hopcap.errors import InventoryError
from hopcap.inventory import load
from hopcap.model import Inventory
from tests.inventory.inv_helpers import EXAMPLES

SEEDS = [
    (EXAMPLES / "site.yml", "site.yml"),
    (EXAMPLES / "ansible" / "hosts.yml", "hosts.yml"),
    (EXAMPLES / "ansible" / "hosts.ini", "hosts.ini"),
]
SPECIALS = [*list(":-[]{},#&*!|>'\"%@` \t\n?;=$()\\"), "\x00", "é", "\x85", "\ufeff"]


def _check(path: Path) -> None:
    try:
        inv = load(path)
    except InventoryError as e:
        assert e.problems
        for p in e.problems:
            assert "internal error" not in p.message, p
            assert p.message
        str(e)  # renders
    else:
        assert isinstance(inv, Inventory)
        assert all(n in inv.hosts for n in inv.path)
        inv.to_public_dict()


def _mutate(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        i = rng.randrange(len(lines))
        if op == 0 and lines[i]:  # delete a character
            j = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:j] + lines[i][j + 1 :]
        elif op == 1:  # insert a YAML/INI special character
            j = rng.randint(0, len(lines[i]))
            lines[i] = lines[i][:j] + rng.choice(SPECIALS) + lines[i][j:]
        elif op == 2:  # duplicate a line (duplicate keys)
            lines.insert(i, lines[i])
        elif op == 3:  # drop a line
            del lines[i]
            if not lines:
                lines = [""]
        elif op == 4:  # swap two lines
            k = rng.randrange(len(lines))
            lines[i], lines[k] = lines[k], lines[i]
        elif op == 5:  # change indentation
            lines[i] = " " * rng.choice([0, 1, 2, 3, 4, 6, 8]) + lines[i].lstrip()
        elif op == 6:  # replace a word with a random token
            words = lines[i].split(" ")
            w = rng.randrange(len(words))
            words[w] = rng.choice(
                [
                    "auto",
                    "-1",
                    "0",
                    "99999",
                    "true",
                    "null",
                    "~",
                    "[]",
                    "{}",
                    "eth0;reboot",
                    "'",
                    "&a",
                    "*a",
                    "!!binary",
                    "!!python/none",
                    "1:30",
                    "2024-13-45",
                    "1e999",
                ]
            )
            lines[i] = " ".join(words)
        else:  # truncate
            lines = lines[: i + 1]
    return "\n".join(lines)


@pytest.mark.parametrize(("seed_file", "name"), SEEDS, ids=[s[1] for s in SEEDS])
def test_mutations(tmp_path: Path, seed_file: Path, name: str) -> None:
    rng = random.Random(f"hopcap-{name}")
    base = seed_file.read_text()
    path = tmp_path / name
    for _ in range(400):
        path.write_text(_mutate(rng, base), encoding="utf-8", errors="surrogatepass")
        _check(path)


def test_random_bytes(write: Callable[..., Path]) -> None:
    rng = random.Random(1234)
    alphabet = b"abc:-[]{},#&*!|>'\" \t\n=;0123456789\x00\xff\xc3\xa9"
    for i in range(400):
        n = rng.randint(0, 300)
        data = bytes(rng.choice(alphabet) for _ in range(n)) if i % 2 else rng.randbytes(n)
        _check(write(data, "site.yml" if i % 3 else "hosts"))
