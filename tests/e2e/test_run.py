"""`hopcap run` end to end on the lab: real sshd, tcpdump, nftables and haproxy."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hopcap import lab
from tests.e2e.conftest import PREFIX, hopcap_run

pytestmark = pytest.mark.lab

POINTS = ["client:eth0", "fw:eth0", "fw:eth1", "lb:eth0", "lb:eth1", "srv:eth0"]


def test_clean_run_gives_complete_bundle_and_no_fault(
    clean_lab: lab.LabInfo, tmp_path: Path
) -> None:
    res = hopcap_run(clean_lab.inventory, tmp_path / "b")
    assert res.code == 0, res.stderr
    assert f"bundle: {res.out}" in res.stdout

    man = res.manifest
    assert man["complete"] is True
    assert [p["name"] for p in man["points"]] == POINTS
    for p in man["points"]:
        assert p["packets"] > 0, p
        assert p["kernel_drops"] == 0
        assert p["ready_ts"] >= p["start_ts"]
        assert p["stop_ts"] > p["ready_ts"]
        # the host's clock, probed at the start and again at the end, with error bounds
        assert abs(p["clock_offset_s"]) < 0.05 and 0 < p["clock_error_s"] < 0.05
        assert abs(p["clock_offset_end_s"]) < 0.05 and 0 < p["clock_error_end_s"] < 0.05
    assert 0 <= man["start_skew_s"] < 5
    for rel, digest in man["files"].items():
        assert hashlib.sha256((res.out / rel).read_bytes()).hexdigest() == digest, rel
    assert {f"pcaps/{n.replace(':', '_')}.pcap" for n in POINTS} <= set(man["files"])
    assert man["repro"]["exit_status"] == 0
    # the barrier: the repro started only once every point was listening
    assert man["repro"]["started_ts"] >= max(p["ready_ts"] for p in man["points"])

    verdict = res.verdict
    assert [p["name"] for p in verdict["points"]] == POINTS
    assert verdict["flows"], "the curl must show up as a flow"
    assert res.findings("drop", "inject", "rewrite") == []
    # the curl's connection is followed from the client to the lb, and the proxied one to srv
    http = [f for f in verdict["flows"] if f["server"] == "203.0.113.80:80"]
    assert http
    legs = {leg["point"]: leg["link"] for leg in http[0]["legs"]}
    # a leg's link is relative to the previous point: NAT inside fw, a new TCP connection
    # from haproxy inside lb, and the same tuple across the wire from lb to srv
    assert legs == {
        "client:eth0": "same",
        "fw:eth0": "same",
        "fw:eth1": "nat",
        "lb:eth0": "same",
        "lb:eth1": "proxied",
        "srv:eth0": "same",
    }


def test_syn_dropped_in_fw_forward_chain(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    lab.fault_apply("fw-drop-syn", PREFIX)
    res = hopcap_run(clean_lab.inventory, tmp_path / "b")
    assert res.code == 0, res.stderr
    drops = res.findings("drop")
    assert drops, res.stdout
    syn = [d for d in drops if d["direction"] == "c2s"]
    assert syn and all(d["between"] == ["fw:eth0", "fw:eth1"] for d in syn), drops
    assert res.findings("inject", "rewrite") == []


def test_anonymised_tarball_for_a_vendor(clean_lab: lab.LabInfo, tmp_path: Path) -> None:
    res = hopcap_run(clean_lab.inventory, tmp_path / "b", "--anonymise", "--tar", "--no-facts")
    assert res.code == 0, res.stderr
    assert (tmp_path / "b.tar.gz").is_file()
    assert f"bundle: {tmp_path / 'b.tar.gz'}" in res.stdout
    for name in ("verdict.json", "report.md", "report.html", "manifest.json"):
        text = (res.out / name).read_text()
        for addr in ("203.0.113.10", "198.18.1.1", "198.18.2.2", clean_lab.mgmt["fw"]):
            assert addr not in text, (name, addr)
    assert res.manifest["anonymised"]["payload"].startswith("removed")


def test_a_correlator_crash_keeps_the_captures(
    clean_lab: lab.LabInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    import hopcap.correlate
    from hopcap.cli import app

    def broken(*_a: object, **_k: object) -> None:
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(hopcap.correlate, "correlate", broken)
    out = tmp_path / "b"
    res = CliRunner().invoke(
        app, ["run", "-i", str(clean_lab.inventory), "--out", str(out), "--no-facts"]
    )
    assert res.exit_code == 1, res.output
    assert "correlation failed (ZeroDivisionError: simulated bug)" in res.output
    assert "please report this bug" in res.output
    man = json.loads((out / "manifest.json").read_text())
    assert all((out / p["file"]).stat().st_size > 24 for p in man["points"])
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["flows"] == [] and "correlation failed" in verdict["warnings"][0]
