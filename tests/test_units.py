"""The few number formats shared by the terminal and the reports."""

from __future__ import annotations

from hopcap.units import ms_text, size_text


def test_offsets_and_latencies_read_in_a_unit_that_fits() -> None:
    assert ms_text(0.000192) == "0.192 ms"
    assert ms_text(-0.000105, signed=True) == "-0.105 ms"
    assert ms_text(-1.5e-8, signed=True) == "+0.000 ms"  # never "-0.000"
    assert ms_text(2.5, signed=True) == "+2500.000 ms"
    # a clock hours off (a time zone): was "+10800000.400 ms"
    assert ms_text(10800.0004, signed=True) == "+10800.000 s (3 h 00 min)"
    assert ms_text(-5400.25, signed=True) == "-5400.250 s (1 h 30 min)"
    assert ms_text(42.0) == "42.000 s"


def test_sizes_count_in_powers_of_1000() -> None:
    assert [size_text(n) for n in (512, 305_300, 1_800_000, 31e9)] == [
        "512 B",
        "305.3 kB",
        "1.8 MB",
        "31.0 GB",
    ]
