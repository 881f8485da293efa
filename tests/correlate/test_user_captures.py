"""Captures as people actually have them (snap lengths, IPv6 fragments...): what a
demanding user's audit found the correlator read wrong."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from pcapgen import Conv, View, frame_bytes, render, write_pcap_raw

from hopcap.correlate import correlate, read_capture
from hopcap.correlate.reader import MSS_UNKNOWN, SYN
from hopcap.errors import CorrelationError
from hopcap.model import PointInput, Verdict


def _conv(v6: bool = False, seed: int = 5) -> Conv:
    if v6:
        c = Conv(client=("2001:db8::10", 40000), server=("2001:db8::80", 80), seed=seed)
    else:
        c = Conv(seed=seed)
    c.handshake()
    c.request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    c.response(b"r" * 4000)
    c.close()
    return c


def _frames(pkts: list[tuple[float, Any]]) -> list[tuple[int, bytes]]:
    return [(round(t * 1e9), frame_bytes(p)) for t, p in pkts]


def _pair(a: Path, b: Path) -> Verdict:
    return correlate([PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)])


def test_snap_length_that_cuts_the_options_is_no_mss_rewrite(
    tmp_path: Path, compiled: bool
) -> None:
    """`tcpdump -s 54` at one point (Ethernet + IP + the TCP header without its options):
    the SYN's MSS is not known there, which is not the MSS option removed (it was read
    as -1 and reported `tcp.mss rewritten 1460 -> -1`)."""
    c = _conv()
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([c], View())))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([c], View())), snaplen=54)
    t = read_capture(b)
    syns = [i for i in range(len(t)) if int(t.flags[i]) & SYN]
    assert syns and all(int(t.mss[i]) == MSS_UNKNOWN for i in syns)
    t.close()
    v = _pair(a, b)
    assert [f for fl in v.flows for f in fl.findings] == []

    # an MSS that was captured is still compared: the SYN's clamped between a and b
    def clamp(s: Any) -> Any:
        if s.mss is not None and s.d == "c2s":
            s.mss = 1400
        return s

    b2 = write_pcap_raw(tmp_path / "b2.pcap", _frames(render([c], View(change=clamp))))
    v = _pair(a, b2)
    got = {(f.field, f.before, f.after) for fl in v.flows for f in fl.findings}
    assert got == {("tcp.mss", 1460, 1400)}


def test_ipv6_fragments_are_read_like_ipv4_ones(tmp_path: Path, compiled: bool) -> None:
    """A point where the path fragments IPv6 packets (a fragment header after a hop-by-hop
    header): the first fragment carries the TCP header and is that segment; the later
    fragments are no packet of their own. Before, every fragmented segment was unread
    there and reported injected between the points."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6

    c = _conv(v6=True)
    plain = render([c], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(plain))
    frag: list[tuple[float, Any]] = []
    big = 0
    for t, p in plain:
        ip = p[IPv6]
        if len(ip) > 1000:
            big += 1
            whole = IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim) / IPv6ExtHdrFragment(id=big)
            frag += [(t, q) for q in fragment6(whole / ip.payload, 600)]
        else:
            frag.append(
                (t, IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim) / IPv6ExtHdrHopByHop() / ip.payload)
            )
    assert big >= 2
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(frag))
    t = read_capture(b)
    assert len(t) == len(plain)  # one row per segment: the first fragment
    assert int(t.records) > len(plain)
    t.close()
    v = _pair(a, b)
    tcp = [fl for fl in v.flows if fl.proto == "tcp"]
    assert len(tcp) == 1 and tcp[0].findings == ()
    assert tcp[0].summary.startswith("OK: delivered both ways")


# --------------------------------------------------------------------------- the command line


def _cli(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from hopcap.cli import app

    return CliRunner().invoke(app, ["correlate", *args])


def _one_error(res: Any) -> list[str]:
    """The error lines of a refused command: `hopcap: ...` and its hint, nothing else."""
    lines = res.output.splitlines()
    assert res.exit_code == 1, res.output
    assert len(lines) == 2 and lines[0].startswith("hopcap: "), res.output
    assert lines[1].startswith("  hint: "), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    return lines


def test_the_same_file_for_two_points_is_refused(tmp_path: Path) -> None:
    """A command copied and edited with one file left unchanged: the same packets at both
    points, which read as a healthy path (every flow `OK`), whatever happened there."""
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    (tmp_path / "link.pcap").symlink_to(a)
    for other in (a, tmp_path / "link.pcap", tmp_path / "." / "a.pcap"):
        lines = _one_error(_cli([f"fw:eth0={a}", f"fw:eth1={other}"]))
        assert (
            lines[0]
            == f"hopcap: capture points fw:eth0 and fw:eth1 are given the same file {other}"
        )
    # a copy of it
    import shutil
    import subprocess

    copy = tmp_path / "copy.pcap"
    shutil.copyfile(a, copy)
    lines = _one_error(_cli([f"fw:eth0={a}", f"fw:eth1={copy}"]))
    assert lines[0] == (
        f"hopcap: capture points fw:eth0 and fw:eth1 are given identical files ({a} and "
        f"{copy}): a copy of one capture?"
    )
    # two points that saw nothing have alike files, and are taken
    e1 = write_pcap_raw(tmp_path / "e1.pcap", [])
    e2 = write_pcap_raw(tmp_path / "e2.pcap", [])
    res = _cli([f"fw:eth0={a}", f"fw:eth1={e1}", f"lb:eth0={e2}"])
    assert res.exit_code == 0, res.output
    # the same capture twice among one point's files (one of them compressed)
    subprocess.run(["gzip", "-k", str(copy)], check=True)
    lines = _one_error(_cli([f"fw:eth0={copy}", f"fw:eth0={copy}.gz"]))
    assert lines[0].startswith("hopcap: fw:eth0: copy.pcap and copy.pcap.gz overlap in time (")


def test_a_bundle_is_not_written_into_a_directory_that_holds_something(tmp_path: Path) -> None:
    """`correlate ... --out D` into another bundle's directory left its captures beside the
    new ones (and `correlate D --out D` wrote a bundle over its own captures): refused
    before anything is read, as `run` refuses it; the directory is left as it was."""
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View(delay=0.0002))))
    old = tmp_path / "old"
    assert _cli([f"a={a}", f"b={b}", "--out", str(old)]).exit_code == 0
    before = sorted(p.relative_to(old) for p in old.rglob("*"))
    lines = _one_error(_cli([f"c={a}", f"d={b}", "--out", str(old)]))
    assert lines[0] == f"hopcap: {old} exists and is not empty; choose another --out"
    lines = _one_error(_cli([str(old), "--out", str(old)]))
    assert sorted(p.relative_to(old) for p in old.rglob("*")) == before
    (tmp_path / "empty").mkdir()
    assert _cli([f"a={a}", f"b={b}", "--out", str(tmp_path / "empty")]).exit_code == 0


def test_points_whose_bundle_files_would_collide_are_refused(tmp_path: Path) -> None:
    """`fw:eth0` and `fw_eth0` are both pcaps/fw_eth0.pcap in a bundle: one capture was
    written over the other, and the bundle re-correlated the same packets at both."""
    pk = render([_conv()], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(pk))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(pk[:4]))
    lines = _one_error(_cli([f"fw:eth0={a}", f"fw_eth0={b}", "--out", str(tmp_path / "x")]))
    assert (
        "fw:eth0 and fw_eth0 would both be written to the bundle as pcaps/fw_eth0.pcap" in lines[0]
    )
    assert not (tmp_path / "x").exists()
    # without a bundle they are two points
    res = _cli([f"fw:eth0={a}", f"fw_eth0={b}"])
    assert res.exit_code == 0, res.output


def test_a_capture_without_its_point_name(tmp_path: Path) -> None:
    """`hopcap correlate a.pcap` was taken for a bundle: 'no such bundle directory'."""
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    for args in ([str(a)], [str(a), f"b={a}"]):
        lines = _one_error(_cli(args))
        assert lines[0] == f"hopcap: {a}: a capture needs the name of its point: NAME={a}"
        assert lines[1].startswith(f"  hint: e.g. client={a} ")


@pytest.mark.parametrize(
    ("tool", "said"), [(["gzip", "-k"], "gzip"), (["xz", "-k"], "xz"), (["bzip2", "-k"], "bzip2")]
)
def test_a_compressed_capture_is_read(tmp_path: Path, tool: list[str], said: str) -> None:
    """A `.pcap.gz` was 'not a pcap or pcapng capture ... text output of tcpdump cannot
    be read'. The command reads gzip, xz and bzip2 through a decompressed copy (as
    Wireshark reads them); one cut short (copied while it was written) gives what it
    holds, with a warning; the reader alone says how to decompress it."""
    import json
    import subprocess

    pk = render([_conv()], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(pk))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View(delay=0.0003))))
    plain = _cli([f"a={a}", f"b={b}", "--json"])
    subprocess.run([*tool, str(b)], check=True)
    z = next(p for p in tmp_path.iterdir() if p.name.startswith("b.pcap."))
    res = _cli([f"a={a}", f"b={z}", "--json", "--out", str(tmp_path / "bundle")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["flows"] == json.loads(plain.stdout)["flows"]
    m = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert m["points"][1]["original_path"] == str(z)  # not its decompressed copy
    with pytest.raises(CorrelationError, match=f"compressed with {said}"):
        read_capture(z)
    # cut short: the packets up to the cut, and both warnings (bzip2 gives nothing of a
    # block cut short, and this file is one block: nothing to read, an error)
    cut = tmp_path / f"cut{z.suffix}"
    cut.write_bytes(z.read_bytes()[: z.stat().st_size * 2 // 3])
    res = _cli([f"a={a}", f"b={cut}", "--json"])
    if said == "bzip2":
        assert res.exit_code == 1 and "cannot be decompressed (bzip2: ends early" in res.output
    else:
        assert res.exit_code == 0, res.output
        v = json.loads(res.stdout)
        assert 0 < v["points"][1]["packets"] < len(pk)
        early = "ends early (copied while it was written?): the capture in it is read up to there"
        assert f"warning: {cut.name}: the {said} file {early}" in res.stderr
    # not a capture inside
    junk = tmp_path / f"junk{z.suffix}"
    junk.write_bytes(z.read_bytes()[:12] + bytes(range(256)) * 4)
    res = _cli([f"a={a}", f"b={junk}"])
    assert res.exit_code == 1 and f"b: {junk}: cannot be decompressed ({said}" in res.output


def test_a_capture_compressed_otherwise_says_how_to_decompress_it(tmp_path: Path) -> None:
    import subprocess

    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View())))
    subprocess.run(["zstd", "-q", str(b)], check=True)
    z = tmp_path / "b.pcap.zst"
    lines = _one_error(_cli([f"a={a}", f"b={z}"]))
    assert lines == [
        f"hopcap: {z}: compressed with zstd, not a pcap or pcapng capture",
        f"  hint: decompress it first: unzstd {z}",
    ]


def test_bad_point_names_say_what_a_name_may_hold(tmp_path: Path) -> None:
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    lines = _one_error(_cli([f"fw:eth 0={a}"]))
    assert "the interface also '@' and '/'" in lines[0]
    # names as devices spell them are taken as they are
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View(delay=0.0002))))
    res = _cli([f"fw-1.dc2:eth0.100={a}", f"FW_1:Gi0/0/1={b}", "--json"])
    assert res.exit_code == 0, res.output


def _hopcap(args: list[str]) -> Any:
    """`hopcap ARGS` as the program runs (through `main`, unlike typer's CliRunner)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hopcap", *args], capture_output=True, text=True, timeout=120
    )


def test_refused_command_lines_are_one_line_and_a_hint(tmp_path: Path) -> None:
    """click's refusals were a box of several lines under a usage line, exit 2 for all,
    also for a bad option value (README: exit 3, as hopcap's own checks of values)."""
    from hopcap.errors import EXIT_INVENTORY, EXIT_USAGE

    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    cases = [
        (["correlate"], EXIT_USAGE, "Missing argument 'POINTS'."),
        (["correlate", f"a={a}", "--bogus"], EXIT_USAGE, "No such option: --bogus"),
        (["correlate", f"a={a}", "--flow"], EXIT_USAGE, "Option '--flow' requires an argument."),
        (["lab"], EXIT_USAGE, "Missing command."),
        (["correlate", f"a={a}", "--jobs", "0"], EXIT_INVENTORY, "Invalid value for '--jobs'"),
        (["correlate", f"a={a}", "--memory", "12Q"], EXIT_INVENTORY, "'12Q' is not a size"),
        (["correlate", f"a={a}", "--target", "x"], EXIT_INVENTORY, "bad --target 'x'"),
        (["correlate", f"a={a}", "--host", "a=x"], EXIT_INVENTORY, "'x' is not an IP address"),
    ]
    for args, code, said in cases:
        r = _hopcap(args)
        lines = r.stderr.splitlines()
        assert r.returncode == code, (args, r.stderr)
        assert len(lines) == 2 and lines[0].startswith("hopcap: ") and said in lines[0], args
        assert lines[1].startswith("  hint: "), args
        if args[0] == "correlate" and "--target" not in args and "--host" not in args:
            assert lines[1] == "  hint: `hopcap correlate --help` shows its arguments and options"
        assert r.stdout == "" and "Traceback" not in r.stderr
    # help is still help
    r = _hopcap(["correlate", "--help"])
    assert r.returncode == 0 and "NAME=PCAP" in r.stdout
    r = _hopcap([])
    assert r.returncode == EXIT_USAGE and "correlate" in r.stdout + r.stderr


def test_a_rotated_capture_is_one_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tcpdump -C 1 -w s.pcap` wrote s.pcap, s.pcap1, s.pcap2: each file given as the same
    point (or a glob) is joined in time order (was: "capture point 's' is given twice";
    the first file alone read as flows dropped and injected at s, and the later ones as
    answered before s)."""
    convs = [_conv(seed=s) for s in (1, 2, 3)]
    for i, c in enumerate(convs):  # one after the other, as curl after curl
        for s in c.segs:
            s.t += i * 0.5
    whole = _frames(render(convs, View()))
    write_pcap_raw(tmp_path / "c.pcap", whole)
    at_s = _frames(render(convs, View(delay=0.0005)))
    third = len(at_s) // 3
    # the names do not sort in time order (a -W ring wraps: s.pcap2 may be the oldest)
    parts = [
        write_pcap_raw(tmp_path / "s.pcap2", at_s[:third]),
        write_pcap_raw(tmp_path / "s.pcap0", at_s[third : 2 * third]),
        write_pcap_raw(tmp_path / "s.pcap1", at_s[2 * third :]),
    ]
    monkeypatch.chdir(tmp_path)
    # the joins go to a temporary directory of the test's own (another hopcap process
    # on the machine may have its own join in the system's at the same time)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for args in (
        ["c=c.pcap", "s=s.pcap*"],
        ["c=c.pcap", "s=s.pcap0", "s=s.pcap1", "s=s.pcap2"],
    ):
        res = _cli([*args, "--json", "--out", "b"])
        assert res.exit_code == 0, res.output
        import json

        v = json.loads(res.stdout)
        assert [p["packets"] for p in v["points"]] == [len(whole), len(at_s)]
        flows = [fl for fl in v["flows"] if fl["proto"] == "tcp"]
        assert len(flows) == 3 and all(not fl["findings"] for fl in flows), flows
        # the bundle holds the joined capture: re-correlated, the same verdict
        assert sorted(p.name for p in (tmp_path / "b" / "pcaps").iterdir()) == [
            "c.pcap",
            "s.pcap",
        ]
        again = _cli(["b", "--json"])
        assert json.loads(again.stdout)["flows"] == v["flows"]
        # the manifest names the user's files, in time order (not the join)
        m = json.loads((tmp_path / "b" / "manifest.json").read_text())
        assert m["points"][1]["original_paths"] == ["s.pcap2", "s.pcap0", "s.pcap1"]
        assert m["points"][1]["original_path"] is None
        import shutil

        shutil.rmtree(tmp_path / "b")
    assert all(p.is_file() for p in parts)  # the user's files are left as they are
    assert tempfile.gettempdir() == str(tmp_path / "tmp")
    assert not list((tmp_path / "tmp").glob("hopcap-join-*"))  # the join is removed

    # another point's capture given as a part: its packets overlap the others' in time
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render(convs, View(delay=0.001))))
    lines = _one_error(_cli(["c=c.pcap", "s=s.pcap0", f"s={b}"]))
    assert lines[0].startswith("hopcap: s: b.pcap and s.pcap0 overlap in time ("), lines
    assert lines[0].endswith("UTC in both): they are not the parts of one capture")
    res = _cli(["c=c.pcap", "s=nothing*"])
    assert res.exit_code == 1 and "s: no capture file matches nothing*" in res.output


def _any_capture(tmp: Path, nat: bool, link: str = "sll2") -> tuple[Path, Path, Path, Verdict]:
    """A client, `tcpdump -i any` on the router after it (each packet on its way in and,
    TTL lowered, on its way out; NATed on the way out with `nat`), and the server."""
    convs = [_conv(seed=s) for s in (1, 2)]
    for s in convs[1].segs:
        s.t += 0.5
    out_nat = {"c2s": ("198.51.100.1", 40001, "203.0.113.80", 80),
               "s2c": ("203.0.113.80", 80, "198.51.100.1", 40001)} if nat else {}  # fmt: skip
    # the router lowers the TTL both ways: the client's side sees the answers lowered
    inside = View(delay=0.0001, ttl_dec={"s2c": 1})
    outside = View(delay=0.0002, ttl_dec={"c2s": 1}, nat=out_nat if nat else {})
    at_s = View(delay=0.0003, ttl_dec={"c2s": 1}, nat=out_nat if nat else {})
    both = sorted(render(convs[:1], inside) + render(convs[:1], outside), key=lambda x: x[0])
    both += sorted(render(convs[1:], inside) + render(convs[1:], outside), key=lambda x: x[0])
    c = write_pcap_raw(tmp / "c.pcap", _frames(render(convs, View())))
    linktype = {"sll2": 276, "ether": 1}[link]
    fw = write_pcap_raw(
        tmp / "fw.pcap",
        [(round(t * 1e9), frame_bytes(p, link)) for t, p in both],
        linktype=linktype,
    )
    s = write_pcap_raw(tmp / "s.pcap", _frames(render(convs, at_s)))
    pts = [
        PointInput(name="c", pcap=c),
        PointInput(name="fw:any", pcap=fw),
        PointInput(name="s", pcap=s),
    ]
    return c, fw, s, correlate(pts)


@pytest.mark.parametrize("nat", [False, True], ids=["routed", "nat"])
def test_a_capture_of_both_sides_of_a_forwarding_host_is_warned_about(
    tmp_path: Path, nat: bool
) -> None:
    """`tcpdump -i any` on a router: each packet twice, in and out. As one point the
    verdict of a healthy path was SYNs dropped and injected around it (and ttl rewritten
    63 -> 63), with nothing said; now a warning names the cause and the way out (the
    verdict itself stays what the file gives)."""
    _c, fw, _s, v = _any_capture(tmp_path, nat)
    said = [w for w in v.warnings if "captured twice" in w]
    assert len(said) == 1, v.warnings
    assert said[0].startswith(f"{fw.name}: 24 of its first 48 TCP packets were captured twice")
    assert "tcpdump -i any" in said[0] and "sll.ifindex" in said[0]
    fw_point = next(p for p in v.points if p.name == "fw:any")
    assert said[0] in fw_point.warnings
    # the time slices' scan says the same
    sliced = correlate(
        [
            PointInput(name=n, pcap=tmp_path / f)
            for n, f in (("c", "c.pcap"), ("fw:any", "fw.pcap"), ("s", "s.pcap"))
        ],
        memory=1 << 20,
    )
    assert [w for w in sliced.warnings if "captured twice" in w] == said


def test_retransmissions_are_not_packets_captured_twice(tmp_path: Path) -> None:
    c = _conv()
    for s in list(c.segs):
        if s.data:
            c.retransmit(s, dt=0.0003)  # the same segment again: same TTL, new IP ID
    c.segs.sort(key=lambda s: s.t)
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([c], View())))
    t = read_capture(a)
    assert not [w for w in t.warnings if "captured twice" in w]
    t.close()


def test_a_capture_with_every_packet_copied_has_them_removed(tmp_path: Path) -> None:
    """A mirror port that copies both directions (or a bridge and its port in a
    `tcpdump -i any`): every packet twice, the same bytes a few microseconds apart. As a
    point the healthy path read as SYNs dropped after it and injected before it, with a
    warning to remove them by hand (editcap -D); now they are removed as it is read and the
    warning says so: the verdict is the one of the capture without them."""
    c = _conv()
    plain = render([c], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(plain))
    twice = [(t + dt, p) for t, p in plain for dt in (0.0, 0.000007)]
    m = write_pcap_raw(tmp_path / "span.pcap", _frames(twice))
    (tmp_path / "once").mkdir()
    once = write_pcap_raw(tmp_path / "once" / "span.pcap", _frames(plain))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([c], View(delay=0.0002))))
    without = correlate([PointInput("a", a), PointInput("sw:span", once), PointInput("b", b)])
    pts = [
        PointInput(name="a", pcap=a),
        PointInput(name="sw:span", pcap=m),
        PointInput(name="b", pcap=b),
    ]
    for memory in (None, 1 << 20):
        v = correlate(pts, memory=memory)
        assert list(v.warnings) == [
            f"span.pcap: {len(plain)} exact copies within 1 ms removed (a mirror port or a "
            "bridge in -i any): the same packet again, IP ID, TSval and payload alike, which "
            "as one point read as drops and injections; capture one interface to have none"
        ], v.warnings
        assert v.flows == without.flows and not without.warnings
        assert [p.packets for p in v.points] == [p.packets for p in without.points]


def test_a_pipe_or_a_directory_given_as_a_capture(tmp_path: Path) -> None:
    """`b=<(zcat b.pcap.gz)` and a directory of rotated files were '... is not a file'."""
    import os

    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    lines = _one_error(_cli([f"a={a}", f"b={fifo}"]))
    assert lines[0] == (
        f"hopcap: b: {fifo} is a pipe or a device, not a capture file: hopcap reads capture "
        "files (it maps them), not streams"
    )
    d = tmp_path / "rot"
    d.mkdir()
    lines = _one_error(_cli([f"a={a}", f"b={d}/"]))
    assert lines == [
        f"hopcap: b: {d}/ is a directory, not a capture file",
        f"  hint: give the capture files in it (b='{d}/*.pcap*' for one capture rotated into "
        "several files)",
    ]


def test_files_joined_with_cat_say_so(tmp_path: Path, compiled: bool) -> None:
    """`cat s.pcap s.pcap1 > all.pcap`: the second file's header is damage to a reader
    of one file; the warning names it and the way to give them (was a bare 'corrupt
    record header')."""
    pk = _frames(render([_conv()], View()))
    one = write_pcap_raw(tmp_path / "s.pcap", pk[:6]).read_bytes()
    two = write_pcap_raw(tmp_path / "s.pcap1", pk[6:]).read_bytes()
    cat = tmp_path / "all.pcap"
    cat.write_bytes(one + two)
    for memory in (None, 1 << 20):
        v = correlate(
            [PointInput(name="a", pcap=tmp_path / "s.pcap1"), PointInput(name="b", pcap=cat)],
            memory=memory,
        )
        said = [w for w in v.warnings if w.startswith("all.pcap: corrupt record header")]
        assert len(said) == 1, v.warnings
        assert said[0].endswith(
            f"; another capture file starts at byte {len(one)} (files joined with cat?): give "
            "each file as NAME=FILE of the same point, hopcap joins them"
        )


def test_an_empty_file_is_a_missing_point(tmp_path: Path) -> None:
    """A file of 0 bytes (or less than a capture header) is a capture never written
    (a tcpdump killed before it flushed, a failed copy), not one that saw nothing: the
    point is missing and the run partial (exit 4), as README's exit codes say; was exit
    0 with 'point b captured no packets'. A header without packets still saw nothing."""
    from hopcap.errors import EXIT_PARTIAL

    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    head = write_pcap_raw(tmp_path / "head.pcap", [])
    for size in (0, 10):
        b = tmp_path / f"b{size}.pcap"
        b.write_bytes(head.read_bytes()[:size])
        what = "an empty file" if not size else "10 bytes, less than a capture's header"
        for memory in (None, 1 << 20):
            v = correlate(
                [PointInput(name="a", pcap=a), PointInput(name="b", pcap=b)], memory=memory
            )
            assert v.points[1].missing == f"{b.name}: {what}: the capture was never written"
        res = _cli([f"a={a}", f"b={b}"])
        assert res.exit_code == EXIT_PARTIAL, res.output
        assert "incomplete: nothing could be used of b" in res.output
    v = correlate([PointInput(name="a", pcap=a), PointInput(name="b", pcap=head)])
    assert v.points[1].missing is None and "point b captured no packets" in v.warnings


def test_what_the_command_line_handler_leaves_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is no refused command line goes on as it is (a bug's traceback), and
    Ctrl-C in a command is exit 130: the handler's except clauses named a click class
    that typer's own click does not have, which turned both into an AttributeError."""
    from hopcap import cli
    from hopcap.errors import EXIT_INTERRUPTED

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli.typer, "echo", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        cli._run_app(["version"])

    def ctrl_c(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.typer, "echo", ctrl_c)
    with pytest.raises(SystemExit) as done:
        cli._run_app(["version"])
    assert done.value.code == EXIT_INTERRUPTED


def test_a_flow_id_is_checked_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--flow zz` was found wrong after the whole correlation (exit 1, under the points
    table), and `run --flow` after the whole run; its number alone is taken too."""
    from hopcap import correlate as corr
    from hopcap.errors import EXIT_INVENTORY

    a = write_pcap_raw(tmp_path / "a.pcap", _frames(render([_conv()], View())))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View(delay=0.0002))))

    def never(*_a: Any, **_k: Any) -> None:
        raise AssertionError("correlated")

    with monkeypatch.context() as m:
        m.setattr(corr, "correlate", never)
        for bad in ("zz", "f0", "f1x"):
            r = _cli([f"a={a}", f"b={b}", "--flow", bad])
            assert r.exit_code == EXIT_INVENTORY, r.output
            assert (
                r.output.splitlines()[0]
                == f"hopcap: --flow {bad}: not a flow id (f and its number, e.g. f12)"
            )
        r = _hopcap(["run", "--inventory", str(tmp_path / "none.yml"), "--flow", "zz"])
        assert r.returncode == EXIT_INVENTORY and "--flow zz: not a flow id" in r.stderr
    r = _cli([f"a={a}", f"b={b}", "--flow", "1"])
    assert r.exit_code == 0 and "flow f1: 203.0.113.10" in r.output


def test_copies_are_removed_also_when_interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decompressed and joined copies (which can be large) are removed when the
    correlation is interrupted (Ctrl-C), not only when it ends or fails."""
    import subprocess

    from hopcap import correlate as corr

    pk = render([_conv()], View())
    a = write_pcap_raw(tmp_path / "a.pcap", _frames(pk))
    b = write_pcap_raw(tmp_path / "b.pcap", _frames(render([_conv()], View(delay=0.0003))))
    subprocess.run(["gzip", str(b)], check=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    seen: list[list[str]] = []

    def interrupted(*_a: Any, **_k: Any) -> None:
        seen.append([p.name for p in tmp.rglob("*")])
        raise KeyboardInterrupt

    monkeypatch.setattr(corr, "correlate", interrupted)
    res = _cli([f"a={a}", f"b={b}.gz"])
    assert res.exit_code != 0
    assert seen and "b.pcap" in seen[0]  # the copy was there while correlating
    assert list(tmp.iterdir()) == []
