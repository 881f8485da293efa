"""The CLI's text tables drawn without tabulate (its import costs more than the tables)
are tabulate's, cell for cell; what it would read otherwise (numbers in text, bools,
floats, wide or invisible characters) is left to it."""

from __future__ import annotations

import random

import pytest
from tabulate import tabulate as real_tabulate

from hopcap.cli import _columns, _simple_table, tabulate

POINTS = ["point", "packets", "kernel drops", "clock offset"]


def test_points_tables_are_tabulates() -> None:
    cases = [
        [["a", 798590, "?", "+0.000 ms"], ["b", 798495, "?", "+0.000 ms"]],
        [["fw:eth0", 12, 0, "+0.000 ms"], ["fw:eth1", 3, 2, "-1.250 ms"]],
        [["client", 5, "?", ""], ["lb:eth1", 0, 7, ""]],  # a column of "" only
        [["x", 5, "", "+2.000 ms"], ["y", 40, 3, ""]],  # "" among integers
    ]
    for rows in cases:
        assert _simple_table(rows, POINTS) == real_tabulate(rows, headers=POINTS)
    # random tables of words and integers
    rnd = random.Random(7)
    words = ["a", "fw:eth0", "?", "", "+0.000 ms", "lb:eth1", "x y", "srv"]
    drawn = 0
    for _ in range(3000):
        ncol, nrow = rnd.randint(1, 4), rnd.randint(1, 4)
        headers = [rnd.choice([*POINTS, "h"]) for _ in range(ncol)]
        rows = [
            [rnd.choice(words) if rnd.random() < 0.5 else rnd.randint(-5, 10 ** rnd.randint(0, 7))
             for _ in range(ncol)]
            for _ in range(nrow)
        ]  # fmt: skip
        got = _simple_table(rows, headers)
        assert got is not None
        assert got == real_tabulate(rows, headers=headers), (rows, headers)
        drawn += 1
    assert drawn == 3000


def test_what_tabulate_reads_otherwise_is_left_to_it() -> None:
    for odd in ("1", "2.5", "nan", "1_0", "True", " a", "é", "a\tb", 1.5, True, None):
        rows = [["a", 1, odd, "x"]]
        assert _simple_table(rows, POINTS) is None, odd
        assert tabulate(rows, headers=POINTS) == real_tabulate(rows, headers=POINTS)
    assert _simple_table([], POINTS) is None
    assert tabulate([], headers=POINTS) == real_tabulate([], headers=POINTS)


def test_flow_list_columns() -> None:
    rows = [["f1", "a:1 -> b:2", "3", "drop 2", "data dropped"], ["f10", "c -> d", "-", "-", ""]]
    text = _columns(rows, ["flow", "client -> server", "packets", "findings", "summary"])
    assert text.splitlines() == [
        "flow  client -> server  packets  findings  summary",
        "----  ----------------  -------  --------  ------------",
        "f1    a:1 -> b:2        3        drop 2    data dropped",
        "f10   c -> d            -        -         ",
    ]
    assert _columns([], ["flow", "summary"]).splitlines() == ["flow  summary", "----  -------"]


def test_flow_list_fits_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the summaries are cut to its width (a missing point's reason made a
    450-character summary, wrapped into lines the table's columns no longer read across);
    a file or a pipe gets them whole."""
    from hopcap import cli

    long = "incomplete evidence between lb:eth1 and srv:eth0: no capture at srv:eth0 " * 5
    rows = [["f1", "a:1 -> b:2", "3", "gap 1", long], ["f2", "c -> d", "-", "-", "short"]]
    headers = ["flow", "client -> server", "packets", "findings", "summary"]
    assert _columns(rows, headers).splitlines()[2].endswith(long)  # (not a terminal here)
    monkeypatch.setattr(cli, "_terminal_width", lambda: 100)
    lines = _columns(rows, headers).splitlines()
    assert max(map(len, lines)) == 100, lines
    assert (
        lines[2].endswith("…")
        and lines[2][:-1] in "f1    a:1 -> b:2        3        gap 1     " + long
    )
    assert lines[3].endswith("short") and lines[1].endswith("-" * 53)


def test_check_table_names_every_column_and_has_no_negative_zero() -> None:
    """`hopcap check`'s last column (ok / FAIL) had no name, and a clock 20 µs behind read
    "-0.0 ms"."""
    from hopcap.cli import _check_table
    from hopcap.orchestrator.check import HostCheck

    ok = HostCheck("fw", "198.19.76.11", True, "tcpdump version 4.99.3", "-", "sftp", "root",
                   ["eth0", "eth1"], 22076, -2e-5, 4e-4)  # fmt: skip
    bad = HostCheck("lb", "198.19.76.12", False, problems=["ssh: connection refused"])
    lines = _check_table([ok, bad]).splitlines()
    assert lines[0].split() == [
        "host", "address", "ssh", "tcpdump", "sudo", "rights", "pull", "capture", "free",
        "clock", "ready",
    ]  # fmt: skip
    assert lines[2].split()[-4:] == ["+0.0", "ms", "(±0.4)", "ok"], lines[2]
    assert lines[3].split()[-2:] == ["-", "FAIL"], lines[3]
    # a host whose clock is set to another time zone: seconds (was "+10800000.4 ms")
    tz = HostCheck("srv", "198.19.76.13", True, "tcpdump version 4.99.3", "-", "sftp", "root",
                   ["eth0"], 22076, 10800.0004, 4e-4)  # fmt: skip
    row = _check_table([tz]).splitlines()[2]
    assert row.split()[-9:] == ["+10800.000", "s", "(3", "h", "00", "min)", "(±0.4", "ms)", "ok"], (
        row
    )
