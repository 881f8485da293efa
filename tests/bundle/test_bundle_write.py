"""Writing, loading and re-rendering a bundle built from real pcaps (scapy) and a verdict."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import bundle_scenario as sc
import pytest

from hopcap.bundle import (
    load_bundle,
    pcap_dir,
    render_report,
    write_bundle,
    write_offline_bundle,
)
from hopcap.errors import BundleError
from hopcap.model import PointInput, pcap_filename


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("b") / "bundle"
    sc.build_pcaps(pcap_dir(out))
    res = write_bundle(out, sc.make_run(pcap_dir(out)), sc.make_verdict(), tarball=True)
    return out, res


def tshark_fields(path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=/t"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    return [line.split("\t") for line in res.stdout.splitlines()]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_file_is_there_and_hashed(built: tuple[Path, Path]) -> None:
    out, _ = built
    for rel in (
        "manifest.json",
        "verdict.json",
        "report.md",
        "report.html",
        "merged.pcapng",
        "facts/summary.json",
        "facts/fw/before/nstat.txt",
        "facts/fw/after/nft.txt",
        "facts/fw/delta/nstat.txt",
        "facts/fw/delta/nft.txt",
        "facts/fw/delta/conntrack.txt",
        "facts/fw/missing.txt",
    ):
        assert (out / rel).is_file(), rel
    for p in sc.POINTS:
        assert (out / "pcaps" / pcap_filename(p)).is_file()
    m = json.loads((out / "manifest.json").read_text())
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {
        "manifest.json"
    }
    assert set(m["files"]) == on_disk
    for rel, digest in m["files"].items():
        assert sha(out / rel) == digest, rel


def test_manifest_content(built: tuple[Path, Path]) -> None:
    out, _ = built
    m = json.loads((out / "manifest.json").read_text())
    assert m["run_id"] == "20251122T051900Z-test"
    assert m["source"] == "run"
    assert m["hopcap_version"]
    assert m["started"].startswith("2025-11-22T05:39:57")
    assert m["complete"] is True and m["interrupted"] is False
    assert [p["name"] for p in m["points"]] == sc.POINTS
    fw1 = m["points"][2]
    assert fw1["file"] == "pcaps/fw_eth1.pcap"
    assert fw1["tcpdump_version"] == "4.99.3"
    assert fw1["clock_offset_s"] == 0.5
    assert fw1["packets_in_file"] == 6
    for key in (
        "command",
        "start_ts",
        "ready_ts",
        "stop_ts",
        "packets",
        "received",
        "kernel_drops",
        "clock_error_s",
        "error",
        "interface",
        "host",
    ):
        assert key in fw1
    assert m["start_skew_s"] == pytest.approx(0.06)
    # the inventory's password is gone, everything else kept
    text = (out / "manifest.json").read_text()
    assert "hunter2" not in text
    assert m["inventory"]["hosts"]["fw"]["address"] == "198.19.0.11"


def test_verdict_json_is_the_verdict(built: tuple[Path, Path]) -> None:
    out, _ = built
    text = (out / "verdict.json").read_text()
    assert json.loads(text) == sc.make_verdict().to_dict()
    assert text.startswith("{\n  ")  # pretty-printed


def test_capinfos_lists_every_point_in_path_order(built: tuple[Path, Path]) -> None:
    out, _ = built
    res = subprocess.run(
        ["capinfos", str(out / "merged.pcapng")], capture_output=True, text=True, check=True
    )
    names = [
        line.split("=", 1)[1].strip()
        for line in res.stdout.splitlines()
        if line.strip().startswith("Name =")
    ]
    assert names == sc.POINTS
    assert "Number of interfaces in file: 4" in res.stdout


def test_merged_packets_aligned_and_commented(built: tuple[Path, Path]) -> None:
    out, _ = built
    merged = tshark_fields(
        out / "merged.pcapng", "frame.interface_name", "frame.time_epoch", "ip.id", "tcp.flags"
    )
    # every packet of every point, nothing else
    per_point_src = {
        p: tshark_fields(out / "pcaps" / pcap_filename(p), "frame.time_epoch", "ip.id", "tcp.flags")
        for p in sc.POINTS
    }
    assert len(merged) == sum(len(v) for v in per_point_src.values()) == 28
    # timestamps are the source ones minus the point's offset (ns precision)
    for p in sc.POINTS:
        got = [(Decimal(t), i, f) for n, t, i, f in merged if n == p]
        want = [(Decimal(t) - Decimal(str(sc.OFFSETS[p])), i, f) for t, i, f in per_point_src[p]]
        assert got == want, p
    # merged in time order; the same packet is seen in path order on the aligned timeline
    times = [Decimal(t) for _, t, _, _ in merged]
    assert times == sorted(times)
    first_syn = [n for n, _, i, f in merged if i == "0x00c8" and f == "0x0002"]
    assert first_syn == sc.POINTS


def test_merged_comments(built: tuple[Path, Path]) -> None:
    out, _ = built
    rows = tshark_fields(
        out / "merged.pcapng", "frame.interface_name", "frame.comment", display="frame.comment"
    )
    comments = {(n, c) for n, c in rows}
    drop = [c for n, c in comments if "dropped after this hop" in c]
    assert len(drop) == 1
    assert drop[0].startswith("fw:eth0:")
    assert "f2" in drop[0] and "never seen at fw:eth1" in drop[0]
    # the dropped packet is the first SYN of f2 at fw:eth0
    marked = tshark_fields(
        out / "merged.pcapng",
        "frame.interface_name",
        "tcp.srcport",
        "ip.id",
        display='frame.comment contains "dropped"',
    )
    assert marked == [["fw:eth0", "40002", "0x0064"]]
    # NAT mapping: the first packet of f1 at fw:eth1 names the translated tuple
    assert any(
        n == "fw:eth1" and "f1 (nat): 198.18.1.1:31001 > 198.18.1.2:80" in c for n, c in comments
    )


def test_report_md(built: tuple[Path, Path]) -> None:
    out, _ = built
    md = (out / "report.md").read_text()
    assert "## Flows with drops, injections, resets or gaps (1)" in md
    assert "| drop | c2s | fw:eth0 -> fw:eth1 | 2 | 0 |" in md
    assert md.index("## Patterns (1)") < md.index("## Flows with drops")
    assert "| 1 | drop | dropped on 1 of 2 flows (2 packets: 2 SYN), c2s between fw:eth0 and" in md
    assert "SYN dropped inside fw" in md
    assert "&lt;never forwarded>" in md  # capture text cannot inject HTML into renderers
    assert md.index("## Flows with drops") < md.index("## Other flows (1)")
    assert "TcpExtListenOverflows | 0 | 12 | +12" in md
    assert "tcp dport 9999 counter drop" in md
    assert "Start skew:** 60.000 ms from the first to the last capture listening" in md


class _Checker(HTMLParser):
    VOID: ClassVar[set[str]] = {
        "meta",
        "br",
        "hr",
        "img",
        "input",
        "link",
        "circle",
        "line",
        "path",
        "rect",
    }

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.ids: list[str] = []
        self.fragments: list[str] = []  # links within the document

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for k, v in attrs:
            if k == "id" and v:
                self.ids.append(v)
            if k == "href" and v and v.startswith("#"):  # within the report: checked below
                self.fragments.append(v[1:])
            elif k in ("src", "href") or (v and "http" in v and k != "xmlns"):
                self.errors.append(f"external reference {k}={v}")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_html_well_formed_with_ladder(built: tuple[Path, Path]) -> None:
    out, _ = built
    doc = (out / "report.html").read_text()
    c = _Checker()
    c.feed(doc)
    c.close()
    assert c.errors == []
    assert c.stack == []
    # the pattern's example links to the flow shown in detail
    assert c.fragments == ["f2"] and set(c.fragments) <= set(c.ids)
    assert c.tags.count("svg") == 1  # one broken flow, one ladder
    assert "script" not in c.tags
    text = "".join(c.text)
    assert "<never forwarded>" in text  # escaped in the source, shown as text
    assert "&lt;never forwarded&gt;" in doc
    assert "SYN dropped inside fw" in text
    svg = doc[doc.index("<svg") : doc.index("</svg>")]
    for p in sc.POINTS:
        assert f">{p}</text>" in svg
    assert "DROP c2s" in svg


def test_load_bundle_round_trip(built: tuple[Path, Path]) -> None:
    out, tgz = built
    for path in (out, tgz):
        b = load_bundle(path)
        assert b.warnings == []
        assert b.verdict == sc.make_verdict()
        assert [p.name for p in b.points] == sc.POINTS
        fw = b.points[1]
        assert (
            fw.pcap is not None
            and fw.pcap.read_bytes() == (out / "pcaps" / "fw_eth0.pcap").read_bytes()
        )
        assert (fw.host, fw.interface, fw.kernel_drops, fw.clock_offset_hint_s) == (
            "fw",
            "eth0",
            0,
            0.5,
        )
        assert fw.start_ts == pytest.approx(sc.T0 - 1.9 + 0.02)
        b.close()
    with load_bundle(tgz) as b:
        assert b.tarball == tgz
        extracted = b.path
        assert extracted.is_dir()
    assert not extracted.exists(), "the temporary extraction is removed on close"


def test_tarball_holds_the_bundle(built: tuple[Path, Path]) -> None:
    out, tgz = built
    assert tgz == out.parent / "bundle.tar.gz"
    with tarfile.open(tgz) as tf:
        names = set(tf.getnames())
    assert "bundle/manifest.json" in names and "bundle/merged.pcapng" in names


def _copy(built: tuple[Path, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(built[0], dst)
    return dst


def test_damaged_bundles(built: tuple[Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    (b / "report.md").write_text("edited\n")
    assert [w.split(":")[0] for w in load_bundle(b).warnings] == ["report.md"]

    (b / "pcaps" / "srv_eth0.pcap").unlink()
    with pytest.raises(BundleError, match=r"incomplete.*pcaps/srv_eth0.pcap"):
        load_bundle(b)

    (b / "verdict.json").unlink()
    with pytest.raises(BundleError, match=r"verdict\.json is missing"):
        load_bundle(b)

    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(BundleError, match="not a readable bundle archive"):
        load_bundle(tmp_path / "junk.tar.gz")
    with pytest.raises(BundleError, match="no such bundle"):
        load_bundle(tmp_path / "nope")

    c = _copy(built, tmp_path / "c")
    (c / "verdict.json").write_text("{ not json")
    damaged = load_bundle(c)  # (re-correlating it makes a new verdict: never reads this)
    assert damaged.points and "verdict.json" in damaged.warnings[0]
    with pytest.raises(BundleError, match="damaged"):
        _ = damaged.verdict
    (c / "verdict.json").write_text('{"points": 1}')
    with pytest.raises(BundleError, match="damaged: missing or bad field"):
        _ = load_bundle(c).verdict


def test_load_hashes_only_when_asked(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a bundle (to correlate it again) hashes none of its files; its warnings
    hash them all, once."""
    import hopcap.bundle.core as core

    b = _copy(built, tmp_path)
    (b / "report.md").write_text("edited\n")
    hashed: list[Path] = []
    real = core._sha256
    monkeypatch.setattr(core, "_sha256", lambda p: hashed.append(p) or real(p))
    loaded = load_bundle(b)
    assert loaded.points and hashed == []
    assert [w.split(":")[0] for w in loaded.warnings] == ["report.md"]
    n = len(hashed)
    assert n == len(loaded.manifest["files"]) and loaded.warnings and len(hashed) == n


def test_render_report_rerenders(built: tuple[Path, Path], tmp_path: Path) -> None:
    b = _copy(built, tmp_path)
    before = (b / "report.html").read_text()
    (b / "report.md").unlink()
    (b / "report.html").write_text("stale")
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["files"].pop("report.md")
    (b / "manifest.json").write_text(json.dumps(manifest))
    md, html = render_report(b)
    assert "| drop | c2s | fw:eth0 -> fw:eth1 |" in md.read_text()
    assert html.read_text() == before
    assert load_bundle(b).warnings == []


def test_offline_bundle(tmp_path: Path) -> None:
    src = tmp_path / "src"
    sc.build_pcaps(src)
    points = [PointInput(name=p, pcap=src / pcap_filename(p)) for p in sc.POINTS]
    points.append(PointInput(name="lb", pcap=None, missing_reason="not captured"))
    out = write_offline_bundle(tmp_path / "off", points, sc.make_verdict())
    m = json.loads((out / "manifest.json").read_text())
    assert m["source"] == "offline"
    assert m["complete"] is False
    assert [p["name"] for p in m["points"]] == [*sc.POINTS, "lb"]
    assert m["points"][-1]["file"] is None and m["points"][-1]["error"] == "not captured"
    assert m["points"][0]["host"] == "client" and m["points"][4]["host"] == "lb"
    for p in sc.POINTS:
        assert (out / "pcaps" / pcap_filename(p)).read_bytes() == (
            src / pcap_filename(p)
        ).read_bytes()
    b = load_bundle(out)
    assert b.points[-1].pcap is None and b.points[-1].missing_reason == "not captured"
    res = subprocess.run(
        ["capinfos", str(out / "merged.pcapng")], capture_output=True, text=True, check=True
    )
    assert "Name = lb" in res.stdout and "missing: not captured" in res.stdout
    assert "lb" in (out / "report.md").read_text().split("Missing points:")[1].splitlines()[0]
    # no facts, and why: "No facts were collected." read as a run whose facts failed
    for report in ("report.md", "report.html"):
        text = (out / report).read_text()
        assert "None: `hopcap correlate` takes no facts (`hopcap run` takes them" in text
        assert "No facts were collected" not in text


def test_missing_point_and_bad_pull(tmp_path: Path) -> None:
    import dataclasses

    out = tmp_path / "partial"
    sc.build_pcaps(pcap_dir(out))
    (out / "pcaps" / "srv_eth0.pcap").unlink()
    data = (out / "pcaps" / "fw_eth1.pcap").read_bytes()
    (out / "pcaps" / "fw_eth1.pcap").write_bytes(data[:-7])  # pull cut short
    run = sc.make_run(pcap_dir(out))
    caps = list(run.captures)
    caps[3] = dataclasses.replace(caps[3], pcap=None, error="srv: connection refused")
    caps[0] = dataclasses.replace(caps[0], sha256="00" * 32)
    run = dataclasses.replace(run, captures=tuple(caps), complete=False, errors=("srv: down",))
    write_bundle(out, run, sc.make_verdict())
    m = json.loads((out / "manifest.json").read_text())
    assert m["complete"] is False
    assert m["points"][3]["file"] is None
    assert m["points"][3]["error"] == "srv: connection refused"
    assert m["errors"] == ["srv: down"]
    warnings = "\n".join(m["warnings"])
    assert "client:eth0: pcaps/client_eth0.pcap does not match the sha256" in warnings
    # where the damage is, and how much was read before it
    assert re.search(
        r"fw:eth1: fw_eth1\.pcap: truncated: (record|block) at byte \d+ runs past the end of the "
        r"file \(read 5 packets before it\)",
        warnings,
    ), warnings
    assert m["points"][2]["packets_in_file"] == 5
    md = (out / "report.md").read_text()
    assert "**Missing points:** srv:eth0" in md
    assert "srv: connection refused" in md
    res = subprocess.run(
        ["capinfos", str(out / "merged.pcapng")], capture_output=True, text=True, check=True
    )
    assert "Name = srv:eth0" in res.stdout
    assert "missing: srv: connection refused" in res.stdout
    rows = tshark_fields(out / "merged.pcapng", "frame.interface_name")
    assert len(rows) == 8 + 8 + 5
    b = load_bundle(out)
    assert b.points[3].pcap is None
    assert b.points[3].missing_reason == "srv: connection refused"


def test_scrub_secrets_keeps_the_name_of_a_password_variable() -> None:
    from hopcap.bundle import scrub_secrets

    got = scrub_secrets(
        {
            "hosts": {"fw": {"password_env": "FW_PW", "password": "x1", "api_key": "k"}},
            "stdout": "login password=hunter2 ok",
        }
    )
    assert got["hosts"]["fw"] == {
        "password_env": "FW_PW",
        "password": "<removed>",
        "api_key": "<removed>",
    }
    assert "hunter2" not in got["stdout"]


def test_archives_leave_no_extraction_behind(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`report` on an archive is refused before extracting; a damaged archive, and a good
    one once closed, leave nothing in the temporary directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    _, tgz = built
    with pytest.raises(BundleError, match="not an archive"):
        render_report(tgz)
    assert list(tmp.iterdir()) == []
    with load_bundle(tgz) as loaded:
        assert loaded.tarball == tgz and loaded.path.is_relative_to(tmp)
    assert list(tmp.iterdir()) == []
    # the same archive with its verdict damaged
    src = tmp_path / "src"
    with tarfile.open(tgz) as tf:
        tf.extractall(src, filter="data")
    (next(src.rglob("verdict.json"))).write_text("{ not json")
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        for p in src.iterdir():
            tf.add(p, arcname=p.name)
    with pytest.raises(BundleError, match="damaged"), load_bundle(bad) as loaded:
        _ = loaded.verdict  # (read on first use, while the extraction is there)
    assert list(tmp.iterdir()) == []
    # and one that fails to load (a capture missing)
    next(src.rglob("*.pcap")).unlink()
    with tarfile.open(bad, "w:gz") as tf:
        for p in src.iterdir():
            tf.add(p, arcname=p.name)
    with pytest.raises(BundleError, match="incomplete"):
        load_bundle(bad)
    assert list(tmp.iterdir()) == []


def test_a_flow_with_thousands_of_legs_is_listed_short(tmp_path: Path) -> None:
    """A keep-alive client connection through a balancer that opens a backend connection
    per request has a leg for each (thousands): the reports list the first MAX_LEGS and
    count the rest (verdict.json keeps them all); the ladder marks each point once."""
    from dataclasses import replace

    from hopcap.bundle.report import MAX_LEGS, render_html, render_markdown
    from hopcap.model import Leg

    verdict = sc.make_verdict()
    broken = next(f for f in verdict.flows if f.findings)
    back = tuple(
        Leg(point="srv:eth0", tuple=f"198.18.1.1:{20000 + k} > 198.18.1.2:80", link="proxied")
        for k in range(3000)
    )
    many = replace(broken, legs=(*broken.legs, *back))
    v = replace(verdict, flows=(many, *(f for f in verdict.flows if f is not broken)))
    md = render_markdown({}, v, {})
    html = render_html({}, v, {})
    legs = len(broken.legs) + 3000
    more = legs - MAX_LEGS
    assert f"... {more:,} more legs (at srv:eth0), {legs:,} in all" in md
    assert f"... {more:,} more legs (at srv:eth0), {legs:,} in all" in html
    assert md.count("198.18.1.1:2") <= MAX_LEGS and len(md) < 100_000
    assert html.count('r="4" fill="#999"') <= len(sc.POINTS)  # a circle a point
    # a flow with few legs lists them all, and says nothing more
    assert all(f"{leg.tuple}" in render_markdown({}, verdict, {}) for leg in broken.legs)
    assert "more legs" not in render_markdown({}, verdict, {})


def test_a_flow_with_hundreds_of_findings_is_shown_short() -> None:
    """A client connection through a balancer whose backend link loses packets has a drop
    finding for each of its backend connections (hundreds, lab `lb-srv-loss`): table and
    ladder show MAX_FINDINGS of them, always the first of each kind (an inject after the
    drops is not hidden), and count the rest per kind, direction and hop."""
    from dataclasses import replace

    from hopcap.bundle.report import MAX_FINDINGS, render_html, render_markdown
    from hopcap.model import Finding

    verdict = sc.make_verdict()
    broken = next(f for f in verdict.flows if f.findings)

    def drop(k: int, d: str) -> Finding:
        hop = ("lb:eth1", "srv:eth0") if d == "c2s" else ("srv:eth0", "lb:eth1")
        return Finding("drop", d, hop, 2, 0, 1e9 + k, f"ACK seq={k} dropped-{k}")  # type: ignore[arg-type]

    drops = [drop(k, "c2s" if k % 3 else "s2c") for k in range(400)]
    late = Finding("inject", "s2c", ("fw:eth1", "fw:eth0"), 1, 0, 2e9, "RST seq=1 late-inject")  # type: ignore[arg-type]
    many = replace(broken, findings=(*drops, late))
    v = replace(verdict, flows=(many, *(f for f in verdict.flows if f is not broken)))
    md, html = render_markdown({}, v, {}), render_html({}, v, {})
    shown = MAX_FINDINGS - 1  # the earliest drops, and the inject
    for text, times in ((md, 1), (html, 2)):  # (html: in the table and the ladder)
        assert text.count("late-inject") == times
        assert text.count("dropped-") == shown * times
        assert text.count(f"dropped-{shown - 1}") == times and f"dropped-{shown}" not in text
    c2s = sum(1 for k in range(shown, 400) if k % 3)
    s2c = 400 - shown - c2s
    more = (
        f"... {400 - shown:,} more findings ({c2s:,} drop c2s lb:eth1 -> srv:eth0 "
        f"({2 * c2s:,} packets); {s2c:,} drop s2c srv:eth0 -> lb:eth1 ({2 * s2c:,} packets)), "
        "401 in all: verdict.json lists every one."
    )
    assert more in md and more.replace(">", "&gt;") in html
    # the ladder has a row per finding shown and one for the rest, not one per finding
    height = int(
        html.split('aria-label="ladder diagram of flow ' + many.id)[0]
        .rsplit('height="', 1)[1]
        .split('"')[0]
    )
    assert height < 60 + (MAX_FINDINGS + 3) * 46
    assert "more findings" not in render_markdown({}, verdict, {})


def test_a_recorrelated_bundle_keeps_the_runs_facts_and_context(
    built: tuple[Path, Path], tmp_path: Path
) -> None:
    """`hopcap correlate BUNDLE --out NEW` (say, after an upgrade, for the vendor) wrote a
    bundle without the run's facts, inventory or repro: its report said "No facts were
    collected." The new bundle carries them, says where it comes from, and hashes them."""
    from typer.testing import CliRunner

    from hopcap import cli

    out, tgz = built
    for src, name in ((out, "re"), (tgz, "re-tgz")):
        new = tmp_path / name
        res = CliRunner().invoke(cli.app, ["correlate", str(src), "--out", str(new)])
        assert res.exit_code == 0, res.output
        old_m = json.loads((out / "manifest.json").read_text())
        m = json.loads((new / "manifest.json").read_text())
        assert m["source"] == "offline"
        assert m["recorrelated_from"]["run_id"] == old_m["run_id"]
        assert m["recorrelated_from"]["source"] == old_m["source"]
        for key in ("inventory", "repro"):
            assert m[key] == old_m[key] and m[key]
        facts = sorted(p.relative_to(out).as_posix() for p in (out / "facts").rglob("*"))
        assert facts and facts == sorted(
            p.relative_to(new).as_posix() for p in (new / "facts").rglob("*")
        )
        for f in facts:
            if (out / f).is_file():
                assert (new / f).read_bytes() == (out / f).read_bytes()
                assert m["files"][f] == sha(new / f)
        md = (new / "report.md").read_text()
        assert f"- **Re-correlated from:** {old_m['run_id']} (run, hopcap" in md
        assert "No facts were collected" not in md and "takes no facts" not in md
        moved = md.split("## Facts that moved")[1].split("\n## ")[0]
        assert "### fw" in moved
        assert "## Reproduction" in md
        assert load_bundle(new).warnings == []
