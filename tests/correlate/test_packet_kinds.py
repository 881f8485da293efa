"""A packet's kind is told by two functions, one per order (`kind_of`: a FIN with data is
a FIN, as a summary names a finding's first packet; `tally_kind`: it is data, as a tally
counts packets), and every reader of a finding's text agrees with them."""

from __future__ import annotations

from hopcap.correlate.findings import FLAG_BITS, kind_of, tally_kind
from hopcap.correlate.match import flags_str
from hopcap.correlate.reader import ACK, FIN, PSH, RST, SYN
from hopcap.correlate.slices import _kind_of_text
from hopcap.model import Finding
from hopcap.patterns import _add_kinds


def test_the_two_orders_differ_only_for_a_fin_with_data() -> None:
    for fl in range(256):
        for plen in (0, 1, 1448):
            a, b = kind_of(fl, plen), tally_kind(fl, plen)
            if fl & FIN and plen and not fl & (SYN | RST):
                assert (a, b) == ("FIN", "data")
            else:
                assert a == b
    assert kind_of(SYN | ACK, 0) == "SYN-ACK" and kind_of(SYN, 0) == "SYN"
    assert kind_of(RST | ACK | FIN, 10) == "RST"
    assert kind_of(ACK | PSH, 100) == "data" and kind_of(ACK, 0) == "ACK"


def test_flag_names_read_back() -> None:
    for fl in range(256):
        assert FLAG_BITS[flags_str(fl)] == fl


def test_a_findings_text_is_read_as_tallied() -> None:
    """`slices` (merging a cut flow's findings) and `patterns` (counting a pattern's
    packets) read the kind of a one-packet finding back from its text: as `tally_kind`."""
    for fl in range(256):
        for plen in (0, 536):
            if fl & SYN:
                text = f"{flags_str(fl)} seq=1234 tsval=5 ipid=7"
            else:
                text = f"{flags_str(fl)} seq=1" + (f" len={plen}" if plen else "") + " ipid=7"
            want = tally_kind(fl, plen)
            assert _kind_of_text(text) == want, text
            assert _kind_of_text(f"b answered with RST: {text}") == want
            kinds: dict[str, int] = {}
            _add_kinds(kinds, Finding("drop", "c2s", ("a", "b"), 1, plen, 0.0, text))
            if fl & (SYN | RST | FIN | ACK) or plen:  # (a packet with none of them: untold)
                assert kinds == {want: 1}, text
