"""A request that every hop delivered and that got no response at all (a server that
accepted the connection and never answered: the lab's `srv-accept-queue`, a hung
backend) has no finding, but it is not healthy: the terminal and the reports list it on
its own, with its summary, instead of counting it among the healthy flows ("not listed:
2 healthy" hid both such flows of the lab's run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pcapgen import Conv, View, render, write
from typer.testing import CliRunner

from hopcap import cli

REQ = b"GET / HTTP/1.1\r\nHost: 198.18.2.2:8081\r\nUser-Agent: curl/8.0\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


@pytest.fixture(scope="module")
def points(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    tmp = tmp_path_factory.mktemp("unanswered")
    served = Conv(("198.18.2.1", 51260), ("198.18.2.2", 8081), seed=1)
    served.handshake()
    served.request(REQ)
    served.response(RESP)
    served.close()
    hung = []
    for i in range(2):  # accepted, never answered: the client gives up after 3 s
        c = Conv(("198.18.2.1", 51270 + i), ("198.18.2.2", 8081), seed=2 + i, t0=1_763_790_000.5)
        c.handshake()
        c.request(REQ)
        c.t += 3.0
        c.close()
        hung.append(c)
    out = []
    for name, view in (("lb:eth1", View()), ("srv:eth0", View(delay=0.0001))):
        pk = sorted(render([served, *hung], view), key=lambda x: x[0])
        out.append(f"{name}={write(tmp / (name.replace(':', '_') + '.pcap'), pk)}")
    return out


def _run(*args: str) -> str:
    res = CliRunner().invoke(cli.app, ["correlate", *args])
    assert res.exit_code == 0, res.output
    return res.output


def test_the_terminal_lists_flows_that_got_no_response(points: list[str]) -> None:
    out = _run(*points)
    assert "no flow had drops, injections, resets or gaps" in out
    assert "flows whose request got no response, with no finding on the way (2):" in out
    rows = re.findall(r"^(f\d+)\s.*\bno response: the request \(\d+ bytes\)", out, re.M)
    assert len(rows) == 2, out
    assert "not listed: 1 healthy;" in out, out
    everything = _run(*points, "--all")
    assert len(re.findall(r"^f\d+\s", everything, re.M)) == 3


def test_the_reports_list_them_and_say_how_the_others_went(
    points: list[str], tmp_path: Path
) -> None:
    _run(*points, "--out", str(tmp_path / "b"))
    md = (tmp_path / "b" / "report.md").read_text()
    html = (tmp_path / "b" / "report.html").read_text()
    assert "1 healthy, 2 with no response" in md and "1 healthy, 2 with no response" in html
    assert "## Flows with no response (2)" in md
    assert "<h2>Flows with no response (2)</h2>" in html
    section = md.split("## Flows with no response (2)")[1].split("\n## ")[0]
    assert len(re.findall(r"^\| f\d+ \| .*no response: the request", section, re.M)) == 2
    # the healthy one, with how it went (it crossed the two points, not "every" one)
    assert "1 flow without a finding." in md
    assert re.search(r"^\| f\d+ \| 198\.18\.2\.1:51260 -> .* \| OK: delivered both ways", md, re.M)
    assert "crossed every capture point" not in md + html
