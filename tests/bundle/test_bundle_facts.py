"""Fact deltas from real command output (fixtures/ made by fixtures/make_fixtures.sh)."""

from __future__ import annotations

from pathlib import Path

from hopcap.bundle.facts import (
    conntrack_new,
    nstat_delta,
    parse_iptables_save,
    parse_nft,
    parse_nstat,
    rules_delta,
    write_facts,
)
from hopcap.model import HostFacts

FX = Path(__file__).parent / "fixtures"


def rd(name: str) -> str:
    return (FX / name).read_text()


def simple_nstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines()[1:]:
        name, value, _rate = line.split()
        out[name] = int(value)
    return out


def test_parse_nstat_reads_every_counter() -> None:
    before = parse_nstat(rd("nstat_before.txt"))
    assert before == simple_nstat(rd("nstat_before.txt"))
    assert len(before) > 300


def test_nstat_delta_from_real_output() -> None:
    b, a = simple_nstat(rd("nstat_before.txt")), simple_nstat(rd("nstat_after.txt"))
    changed = {n for n in set(a) | set(b) if a.get(n, 0) != b.get(n, 0)}
    deltas = nstat_delta(rd("nstat_before.txt"), rd("nstat_after.txt"))
    assert {d.name for d in deltas} == changed
    by = {d.name: d for d in deltas}
    lo = by["TcpExtListenOverflows"]
    assert (lo.before, lo.after, lo.delta) == (
        0,
        a["TcpExtListenOverflows"],
        a["TcpExtListenOverflows"],
    )
    assert lo.delta > 0 and lo.notable
    assert by["TcpExtListenDrops"].notable
    # counters that appear only after (nstat -z still omits some) count from zero
    only_after = set(a) - set(b)
    for n in only_after & changed:
        assert by[n].before == 0
    # notable ones first, then by |delta| descending
    notable = [d for d in deltas if d.notable]
    assert deltas[: len(notable)] == notable
    rest = [abs(d.delta) for d in deltas[len(notable) :]]
    assert rest == sorted(rest, reverse=True)
    assert "TcpInSegs" in by and by["TcpInSegs"].notable is None


def test_parse_nft_real_ruleset() -> None:
    rules = parse_nft(rd("nft_after.txt"))
    assert len(rules) == rd("nft_after.txt").count("counter packets")
    drop = [r for r in rules if r.rule == "tcp dport 9999 counter drop"]
    assert len(drop) == 1
    assert drop[0].where == "table inet filter / chain input"
    assert drop[0].packets == 1 and drop[0].bytes == 60
    nat = [r for r in rules if "dnat to" in r.rule]
    assert nat[0].where == "table ip nat / chain prerouting"


def test_nft_delta_real_ruleset() -> None:
    deltas = rules_delta(parse_nft(rd("nft_before.txt")), parse_nft(rd("nft_after.txt")))
    by = {(d.where, d.rule): d for d in deltas}
    # independent computation: same line with the numbers stripped
    import re

    def table(text: str) -> dict[str, tuple[int, int]]:
        out = {}
        for line in text.splitlines():
            m = re.search(r"counter packets (\d+) bytes (\d+)", line)
            if m:
                key = re.sub(r"counter packets \d+ bytes \d+", "counter", line.strip())
                out[key] = (int(m.group(1)), int(m.group(2)))
        return out

    b, a = table(rd("nft_before.txt")), table(rd("nft_after.txt"))
    moved = {k: (a[k][0] - b[k][0], a[k][1] - b[k][1]) for k in a if a[k] != b[k]}
    assert {r for _, r in by} == set(moved)
    for (_, rule), d in by.items():
        assert (d.packets, d.bytes) == moved[rule]
    assert ("table inet filter / chain input", "tcp dport 9999 counter drop") in by
    assert [abs(d.packets) for d in deltas] == sorted(
        (abs(d.packets) for d in deltas), reverse=True
    )
    # rules that did not move are not listed
    assert not any("dnat" in d.rule for d in deltas)


def test_nft_named_counter_and_new_rule() -> None:
    before = "table inet t {\n\tcounter c1 {\n\t\tpackets 1 bytes 10\n\t}\n\tchain x {\n\t}\n}\n"
    after = (
        "table inet t {\n\tcounter c1 {\n\t\tpackets 4 bytes 70\n\t}\n\tchain x {\n"
        "\t\tip saddr 192.0.2.1 counter packets 2 bytes 120 drop\n\t}\n}\n"
    )
    deltas = rules_delta(parse_nft(before), parse_nft(after))
    got = {(d.where, d.rule): (d.packets, d.bytes) for d in deltas}
    assert got == {
        ("table inet t", "counter c1"): (3, 60),
        ("table inet t / chain x", "ip saddr 192.0.2.1 counter drop"): (2, 120),
    }


def test_iptables_save_counters() -> None:
    # iptables is not installed on this machine; this is the documented `iptables-save -c`
    # format (policy counters on chain lines, [packets:bytes] before each rule).
    before = "*filter\n:INPUT ACCEPT [10:800]\n[0:0] -A INPUT -p tcp --dport 80 -j DROP\nCOMMIT\n"
    after = "*filter\n:INPUT ACCEPT [12:960]\n[3:180] -A INPUT -p tcp --dport 80 -j DROP\nCOMMIT\n"
    deltas = rules_delta(parse_iptables_save(before), parse_iptables_save(after))
    got = {d.rule: (d.packets, d.bytes) for d in deltas}
    assert got == {
        "-A INPUT -p tcp --dport 80 -j DROP": (3, 180),
        ":INPUT ACCEPT (policy)": (2, 160),
    }


def test_conntrack_new_entries() -> None:
    before, after = rd("conntrack_before.txt"), rd("conntrack_after.txt")
    new, gone = conntrack_new(before, after)
    entries_after = [x for x in after.splitlines() if "src=" in x]
    entries_before = [x for x in before.splitlines() if "src=" in x]
    ports_before = {x.split("sport=")[1].split()[0] for x in entries_before}
    expect = [x for x in entries_after if x.split("sport=")[1].split()[0] not in ports_before]
    assert new == expect
    assert len(new) == len(entries_after) - len(entries_before)
    assert gone == 0
    # the entry present in both (timeout changed) is not new
    assert all("dport=8081" not in x for x in new)


def test_write_facts_files(tmp_path: Path) -> None:
    hf = HostFacts(
        host="fw",
        before={
            "nstat": rd("nstat_before.txt"),
            "nft": rd("nft_before.txt"),
            "conntrack": rd("conntrack_before.txt"),
        },
        after={
            "nstat": rd("nstat_after.txt"),
            "nft": rd("nft_after.txt"),
            "conntrack": rd("conntrack_after.txt"),
            "route": "default via 198.18.0.1\n",
        },
        missing={"iptables": "not installed"},
    )
    summary = write_facts(tmp_path, [hf])
    d = tmp_path / "fw"
    assert (d / "before" / "nstat.txt").read_text() == rd("nstat_before.txt")
    assert (d / "after" / "route.txt").read_text() == "default via 198.18.0.1\n"
    assert (d / "missing.txt").read_text() == "iptables: not installed\n"
    nstat = (d / "delta" / "nstat.txt").read_text().splitlines()
    assert nstat[1].split()[0] in ("TcpExtListenDrops", "TcpExtListenOverflows")
    assert "!" in nstat[1]
    assert "tcp dport 9999 counter drop" in (d / "delta" / "nft.txt").read_text()
    ct = (d / "delta" / "conntrack.txt").read_text()
    assert ct.startswith(f"# {summary['fw']['conntrack']['new']} new entries")
    assert summary["fw"]["nstat"][0]["notable"]
    assert summary["fw"]["missing"] == {"iptables": "not installed"}
