"""Parsing and validating the scheduling options of `hopcap run` (pure, no hosts)."""

from __future__ import annotations

import datetime as dt

import pytest

from hopcap.errors import EXIT_INVENTORY, OptionError
from hopcap.orchestrator.schedule import make_schedule, parse_at, window_name

NOW = dt.datetime(2026, 12, 3, 14, 30, 0).astimezone().timestamp()


def test_relative_at() -> None:
    assert parse_at("+15m", NOW) == NOW + 900
    assert parse_at("+5s", NOW) == NOW + 5


def test_time_of_day_is_the_next_one() -> None:
    later = parse_at("15:00", NOW)
    assert later - NOW == pytest.approx(1800, abs=3600)  # a DST change moves it at most 1 h
    assert dt.datetime.fromtimestamp(later).strftime("%H:%M") == "15:00"
    earlier = parse_at("03:00", NOW)  # already past today: tomorrow
    assert dt.datetime.fromtimestamp(earlier).strftime("%d %H:%M") == "04 03:00"
    assert dt.datetime.fromtimestamp(parse_at("14:30:05", NOW)).second == 5


def test_iso_date_time() -> None:
    assert (
        parse_at("2026-12-04T03:00:00Z", NOW)
        == dt.datetime(2026, 12, 4, 3, 0, tzinfo=dt.UTC).timestamp()
    )
    local = parse_at("2026-12-04 03:00", NOW)
    assert dt.datetime.fromtimestamp(local).strftime("%Y-%m-%d %H:%M") == "2026-12-04 03:00"


@pytest.mark.parametrize(
    ("at", "every", "count", "message"),
    [
        ("25:99", None, None, "--at 25:99: not a time of day"),
        ("12:60", None, None, "not a time of day"),
        ("tomorrow", None, None, "expected HH:MM"),
        ("+-5m", None, None, "cannot be negative"),
        ("2020-01-01T00:00", None, None, "is in the past"),
        (None, "0", None, "--every 0: must be longer than 0"),
        (None, "0s", 3, "must be longer than 0"),
        (None, "ten", None, "--every ten"),
        ("+1m", "5m", 0, "--count 0: must be at least 1"),
        ("+1m", None, 3, "--count needs --every"),
    ],
)
def test_bad_values_are_option_errors(
    at: str | None, every: str | None, count: int | None, message: str
) -> None:
    with pytest.raises(OptionError) as e:
        make_schedule(at, every, count, NOW)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert e.value.exit_code == EXIT_INVENTORY


def test_schedule_windows() -> None:
    s = make_schedule("+5s", "10m", 3, NOW)
    assert [s.start(i) - NOW for i in range(3)] == [5, 605, 1205]
    assert s.count == 3
    assert make_schedule(None, "1h", None, NOW).count is None  # until Ctrl-C
    assert make_schedule("+1m", None, None, NOW).count == 1


def test_window_names_sort_in_order() -> None:
    assert window_name(0, 3, NOW).startswith("w01-20261203T1430")
    assert window_name(9, 120, NOW).startswith("w010-")
    assert window_name(11, None, NOW).startswith("w12-")
