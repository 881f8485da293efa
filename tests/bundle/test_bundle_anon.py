"""anonymise=True: no original address survives anywhere, pseudonyms are stable."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path

import bundle_scenario as sc
import pytest

from hopcap.bundle import load_bundle, pcap_dir, write_bundle
from hopcap.bundle.anon import Anonymiser
from hopcap.model import pcap_filename

V4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
MAC = re.compile(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b", re.I)


def originals(tmp: Path) -> tuple[set[str], set[str]]:
    """Every IPv4 address and MAC in the plain bundle's inputs, found independently."""
    texts: list[str] = [json.dumps(sc.make_verdict().to_dict())]
    run = sc.make_run(tmp)
    texts.append(json.dumps(dict(run.inventory)))
    texts += [c.command for c in run.captures]
    for hf in run.facts:
        texts += list(hf.before.values()) + list(hf.after.values())
    ips = {a for t in texts for a in V4.findall(t)}
    ips |= {sc.CLIENT, sc.VIP, sc.FW_OUT, sc.SRV}
    keep = {"127.0.0.1", "0.0.0.0", "255.255.255.255"}
    macs = {m.lower() for t in texts for m in MAC.findall(t)} | {
        f"02:00:00:00:00:{i:02x}" for i in range(1, 7)
    }
    return ips - keep, macs - {"ff:ff:ff:ff:ff:ff"}


@pytest.fixture(scope="module")
def anon_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("a") / "bundle"
    sc.build_pcaps(pcap_dir(out))
    write_bundle(out, sc.make_run(pcap_dir(out)), sc.make_verdict(), anonymise=True)
    return out


def test_no_original_address_in_text_files(anon_bundle: Path, tmp_path: Path) -> None:
    ips, macs = originals(tmp_path)
    assert len(ips) >= 10
    texts = [
        p
        for p in anon_bundle.rglob("*")
        if p.is_file() and p.suffix in (".json", ".md", ".html", ".txt")
    ]
    assert len(texts) > 10
    for p in texts:
        text = p.read_text()
        for a in ips:
            assert not re.search(rf"(?<![\d.]){re.escape(a)}(?![\d])", text), (a, p)
        for m in macs:
            assert m not in text.lower(), (m, p)
    # loopback addresses from conntrack stay: they identify nothing
    assert "127.0.0.1" in (anon_bundle / "facts/fw/after/conntrack.txt").read_text()


def tshark(path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in res.stdout.splitlines()]


def test_no_original_address_or_payload_in_captures(anon_bundle: Path, tmp_path: Path) -> None:
    ips, macs = originals(tmp_path)
    raw_ips = [ipaddress.ip_address(a).packed for a in ips]
    files = [anon_bundle / "merged.pcapng"] + [
        anon_bundle / "pcaps" / pcap_filename(p) for p in sc.POINTS
    ]
    for f in files:
        data = f.read_bytes()
        for raw in raw_ips:
            assert raw not in data, (ipaddress.ip_address(raw), f)
        for m in macs:
            assert bytes.fromhex(m.replace(":", "")) not in data, (m, f)
        assert b"GET /" not in data and b"hello" not in data
        rows = tshark(f, "ip.src", "ip.dst", "frame.len", "frame.cap_len", "tcp.len")
        assert len(rows) == {"merged.pcapng": 28}.get(f.name, len(rows)) and rows
        for src, dst, flen, clen, tlen in rows:
            assert src not in ips and dst not in ips
            assert int(clen) == int(flen) - int(tlen)  # only the payload is gone
        assert tshark(f, "frame.number", display="tcp.payload") == []


def test_pseudonyms_stable_across_the_bundle(anon_bundle: Path) -> None:
    verdict = json.loads((anon_bundle / "verdict.json").read_text())
    f2 = next(f for f in verdict["flows"] if f["id"] == "f2")
    client = f2["client"].rsplit(":", 1)[0]
    assert client != sc.CLIENT
    assert ipaddress.ip_address(client) in ipaddress.ip_network("192.0.2.0/24")
    # the same pseudonym in the report, the manifest's copy of nothing else, and the packets
    assert f2["client"] in (anon_bundle / "report.md").read_text()
    assert f2["client"] in (anon_bundle / "report.html").read_text()
    srcs = {
        r[0]
        for r in tshark(anon_bundle / "merged.pcapng", "ip.src", display="tcp.srcport == 40002")
    }
    assert srcs == {client}
    comment = tshark(
        anon_bundle / "merged.pcapng", "frame.comment", display='frame.comment contains "dropped"'
    )
    assert comment and f2["server"] in comment[0][0]
    m = json.loads((anon_bundle / "manifest.json").read_text())
    assert m["anonymised"]["addresses"] > 0
    assert m["inventory"]["target"] == f2["server"]


def test_anonymised_bundle_loads_cleanly(anon_bundle: Path) -> None:
    b = load_bundle(anon_bundle)
    assert b.warnings == []
    assert len(b.verdict.flows) == 2


def test_anonymiser_text_rules() -> None:
    a = Anonymiser()
    text = (
        "inet 198.51.100.7/24 brd 198.51.100.255 mask 255.255.255.0 lo 127.0.0.1 "
        "v6 2001:db8:1::5 [2001:db8:1::5]:443 fe80::1%eth0 ::1 time 10:20:30 "
        "mac 02:42:ac:11:00:02 at end 2001:db8:1::5."
    )
    a.add_text(text)
    a.freeze()
    out = a.text(text)
    assert "198.51.100.7" not in out and "198.51.100.255" not in out
    assert "2001:db8:1::5" not in out and "fe80::1" not in out
    assert "02:42:ac:11:00:02" not in out
    for kept in ("255.255.255.0", "127.0.0.1", "::1", "10:20:30", "/24"):
        assert kept in out
    # same address -> same pseudonym, and it is not one of the originals
    v6 = re.findall(r"2001:db8:ffff::\w+", out)
    assert len(v6) == 4  # three times 2001:db8:1::5, once fe80::1
    assert len(set(v6)) == 2 and max(v6.count(x) for x in v6) == 3
    assert a.text("x 198.51.100.7 y") == a.text("x 198.51.100.7 y")
    # an address never collected is still hidden
    assert "203.0.113.9" not in a.text("203.0.113.9")
