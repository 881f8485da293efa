"""Writing, loading and re-rendering evidence bundles (see DESIGN.md, "Evidence bundle")."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import hopcap
from hopcap.bundle.anon import Anonymiser
from hopcap.bundle.facts import write_facts
from hopcap.bundle.merge import (
    MergePoint,
    Progress,
    anonymise_pcap,
    collect_addresses,
    write_merged,
)
from hopcap.bundle.report import render_html, render_markdown
from hopcap.bundle.vendoranon import anonymise_vendor_texts, collect_vendor_texts
from hopcap.errors import BundleError
from hopcap.jsonout import dumps
from hopcap.model import HostFacts, PointInput, PointRecord, RunRecord, Verdict, pcap_filename
from hopcap.patterns import ensure_patterns

FORMAT = "hopcap-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VERDICT = "verdict.json"
MERGED = "merged.pcapng"
FACTS_SUMMARY = "facts/summary.json"


# --------------------------------------------------------------------------- small helpers


def pcap_dir(out: Path) -> Path:
    """`out/pcaps`, created. The orchestrator pulls each point's capture to
    `pcap_dir(out) / pcap_filename(point.name)` before `write_bundle` runs."""
    d = Path(out) / "pcaps"
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot create {d}: {exc.strerror}") from exc
    return d


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _Digests:
    """The sha256 of the bundle's captures, hashed in threads from the start of the
    writing (hashlib lets the merge run meanwhile, on the other cores) and waited for
    when needed: the pulled files' check against the hosts' sums, the manifest."""

    def __init__(self, paths: Sequence[Path], threads: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max(1, min(len(paths), threads)))
        self._sums = {Path(p).resolve(): self._pool.submit(_sha256, Path(p)) for p in paths}
        self._pool.shutdown(wait=False)

    def get(self, path: Path) -> str:
        got = self._sums.get(Path(path).resolve())
        return got.result() if got is not None else _sha256(path)

    def known(self, out: Path) -> dict[str, str]:
        """The sums of the files under `out`, by the manifest's names."""
        return {
            p.relative_to(out.resolve()).as_posix(): f.result()
            for p, f in self._sums.items()
            if p.is_relative_to(out.resolve())
        }


def _dump(path: Path, obj: Any) -> None:
    path.write_bytes(dumps(obj) + b"\n")


_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|credential|auth[_-]?key",
    re.I,
)
_SECRET_INLINE = re.compile(
    r"(?i)\b(password|passwd|pwd|passphrase|secret|token|api[_-]?key)(\s*[=:]\s*)(\S+)"
)
_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)


def scrub_secrets(obj: Any) -> Any:
    """Drop anything that looks like a secret from a JSON-like object: values of keys named
    like passwords / tokens / keys, `password=...` inside strings, PEM private keys."""
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            # `password_env` names the variable that holds a secret: a reference, kept
            secret_key = isinstance(k, str) and _SECRET_KEY.search(k) and not k.endswith("_env")
            if secret_key and v not in (None, "", False):
                out[k] = "<removed>"
            else:
                out[k] = scrub_secrets(v)
        return out
    if isinstance(obj, list | tuple):
        return [scrub_secrets(v) for v in obj]
    if isinstance(obj, str):
        s = _PEM.sub("<private key removed>", obj)
        return _SECRET_INLINE.sub(lambda m: m.group(1) + m.group(2) + "<removed>", s)
    return obj


# --------------------------------------------------------------------------- points


def _place_pcap(out: Path, name: str, src: Path | None) -> Path | None:
    """The point's capture inside the bundle (copied in when it is elsewhere)."""
    dst = pcap_dir(out) / pcap_filename(name)
    if dst.exists():
        return dst
    if src is None or not Path(src).exists():
        return None
    try:
        shutil.copyfile(src, dst)
    except OSError as exc:
        raise BundleError(f"cannot copy {src} into the bundle: {exc.strerror}") from exc
    return dst


# --------------------------------------------------------------------------- writing


def write_bundle(
    out: Path,
    run: RunRecord,
    verdict: Verdict,
    *,
    tarball: bool = False,
    anonymise: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Write a bundle for a run into `out` (which already holds `pcaps/`); return `out`,
    or the path of `<out>.tar.gz` when `tarball` is true. See `hopcap.bundle.anon` for
    what `anonymise` changes. `progress` hears what it is doing (a line at a time)."""
    out = Path(out)
    points = []
    clock_end = {f.host: f.clock_after for f in run.facts if f.clock_after is not None}
    for c in run.captures:
        pcap = _place_pcap(out, c.point.name, c.pcap)
        end = clock_end.get(c.point.host)
        err = c.error
        if pcap is None and err is None:
            err = "no capture file"
        # the host's clock probed again after the window: drift shows as a change
        extra = {"clock_offset_end_s": end[0], "clock_error_end_s": end[1]} if end else {}
        points.append(PointRecord.from_capture(c, pcap, err, extra))
    digests = _Digests([p.pcap for p in points if p.pcap is not None])
    pulled = [(c, p) for c, p in zip(run.captures, points, strict=True) if c.sha256 and p.pcap]

    def pulled_warnings() -> list[str]:
        return [
            f"{c.point.name}: {p.pcap.relative_to(out).as_posix()} does not match the sha256 "
            f"taken on the host ({c.sha256})"
            for c, p in pulled
            if p.pcap is not None and c.sha256 and digests.get(p.pcap) != c.sha256.lower()
        ]

    base: dict[str, Any] = {
        "source": "run",
        "run_id": run.run_id,
        "started_ts": run.started_ts,
        "started": _iso(run.started_ts),
        "finished_ts": run.finished_ts,
        "finished": _iso(run.finished_ts),
        "inventory": scrub_secrets(dict(run.inventory)) if run.inventory else None,
        "start_skew_s": run.start_skew_s,
        "complete": run.complete and all(p.pcap is not None for p in points),
        "interrupted": run.interrupted,
        "errors": list(run.errors),
        "repro": scrub_secrets(dict(run.repro)) if run.repro else None,
    }
    if run.trigger is not None:  # `hopcap record`: what fired
        base["trigger"] = scrub_secrets(dict(run.trigger))
    if run.recording is not None:
        base["recording"] = scrub_secrets(dict(run.recording))
    return _write(
        out,
        base,
        points,
        verdict,
        run.facts,
        tarball=tarball,
        anonymise=anonymise,
        digests=digests,
        warnings=pulled_warnings,
        progress=progress,
    )


def write_offline_bundle(
    out: Path,
    points: Sequence[PointInput],
    verdict: Verdict,
    progress: Progress | None = None,
    source: LoadedBundle | None = None,
) -> Path:
    """A bundle for `hopcap correlate NAME=PCAP... --out DIR`: the captures are copied into
    `pcaps/`; the manifest says `"source": "offline"` (no inventory, facts or timings).
    `progress` hears what it is doing (a line at a time). `source`: the bundle re-correlated
    (`hopcap correlate BUNDLE --out DIR`): its facts, inventory, repro and trigger come
    along (the new bundle lost them: its report said "No facts were collected"), and the
    manifest's `recorrelated_from` names it."""
    out = Path(out)
    pts: list[PointRecord] = []
    if progress is not None and any(p.pcap is not None for p in points):
        progress("writing the bundle: copying the captures in")
    for p in points:
        pcap = _place_pcap(out, p.name, p.pcap) if p.pcap is not None else None
        err = p.missing_reason
        if pcap is None and err is None:
            err = "no capture file" if p.pcap is None else f"{p.pcap} does not exist"
        original: dict[str, Any] = {"original_path": str(p.pcap) if p.pcap is not None else None}
        if p.sources:  # (a decompressed copy, a rotated capture's files joined)
            original = {"original_path": str(p.sources[0]) if len(p.sources) == 1 else None}
            if len(p.sources) > 1:
                original["original_paths"] = [str(x) for x in p.sources]
        pts.append(PointRecord.from_input(p, pcap, err, original))
    firsts = [v.first_ts for v in verdict.points if v.first_ts is not None]
    lasts = [v.last_ts for v in verdict.points if v.last_ts is not None]
    started = min(firsts) if firsts else None
    finished = max(lasts) if lasts else None
    ready = [p.ready_ts for p in pts if p.ready_ts is not None]
    now = time.time()
    base: dict[str, Any] = {
        "source": "offline",
        "run_id": "offline-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)),
        "started_ts": started,
        "started": _iso(started),
        "finished_ts": finished,
        "finished": _iso(finished),
        "inventory": None,
        "start_skew_s": (max(ready) - min(ready)) if len(ready) >= 2 else None,
        "complete": all(p.pcap is not None for p in pts),
        "interrupted": False,
        "errors": [f"{p.name}: {p.error}" for p in pts if p.error],
        "repro": None,
    }
    facts_summary: dict[str, Any] = {}
    if source is not None:
        sm = source.manifest
        base["recorrelated_from"] = {
            k: sm.get(k) for k in ("run_id", "source", "hopcap_version", "created")
        }
        for key in ("inventory", "repro", "trigger", "recording"):
            if sm.get(key):
                base[key] = sm[key]
        facts_summary = _copy_facts(source.path, out, source.facts_summary)
    digests = _Digests([p.pcap for p in pts if p.pcap is not None])
    return _write(
        out, base, pts, verdict, (), tarball=False, anonymise=False, digests=digests,
        progress=progress, facts_summary=facts_summary,
    )  # fmt: skip


def _copy_facts(src: Path, out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The facts of bundle `src` copied into `out` (as they are: they are what the hosts
    said then); their summary, for the reports. Nothing when `out` is `src` itself."""
    facts = src / "facts"
    if not facts.is_dir():
        return {}
    try:
        if facts.resolve() != (out / "facts").resolve():
            shutil.copytree(facts, out / "facts", dirs_exist_ok=True)
    except OSError as exc:
        raise BundleError(f"cannot copy the facts of {src} into {out}: {exc}") from exc
    return summary


def _anonymise_facts(facts: Sequence[HostFacts], anon: Anonymiser) -> list[HostFacts]:
    return [
        replace(
            hf,
            before={k: anon.text(v) for k, v in hf.before.items()},
            after={k: anon.text(v) for k, v in hf.after.items()},
            missing={k: anon.text(v) for k, v in hf.missing.items()},
        )
        for hf in facts
    ]


def _write(
    out: Path,
    base: dict[str, Any],
    points: list[PointRecord],
    verdict: Verdict,
    facts: Sequence[HostFacts],
    *,
    tarball: bool,
    anonymise: bool,
    digests: _Digests,
    warnings: Callable[[], list[str]] = list,
    progress: Progress | None = None,
    facts_summary: dict[str, Any] | None = None,
) -> Path:
    """`digests`: the captures' sums, hashed meanwhile; `warnings`: the manifest's first
    warnings, asked for once merged.pcapng is written (they may wait for the sums);
    `facts_summary`: of facts already in `out` (a re-correlated bundle's)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        pcap_dir(out)
    except OSError as exc:
        raise BundleError(f"cannot create bundle directory {out}: {exc.strerror}") from exc
    created = time.time()
    verdict = ensure_patterns(verdict)
    verdict_dict = verdict.to_dict()
    offsets = {p.name: (p.clock_offset_s or 0.0) for p in verdict.points}

    anon: Anonymiser | None = None
    vendor: list[str] = []
    if anonymise:
        anon = Anonymiser()
        anon.add_obj(verdict_dict)
        anon.add_obj(base)
        anon.add_obj([p.to_manifest(out, None) for p in points])
        for hf in facts:
            anon.add_obj([dict(hf.before), dict(hf.after), dict(hf.missing)])
        if progress is not None:
            progress("writing the bundle: the addresses to anonymise")
        collect_addresses(anon, [p.pcap for p in points if p.pcap is not None])
        collect_vendor_texts(anon, pcap_dir(out))
        anon.freeze()

    try:
        # facts
        facts_summary = dict(facts_summary or {})
        if facts:
            written = _anonymise_facts(facts, anon) if anon else list(facts)
            facts_summary = write_facts(out / "facts", written)
            _dump(out / FACTS_SUMMARY, facts_summary)

        # merged.pcapng (from the original captures; annotations from the original verdict)
        stats = write_merged(
            out / MERGED,
            [MergePoint(p.name, p.pcap, offsets.get(p.name, 0.0), p.error) for p in points],
            verdict,
            anon,
            progress=progress,
            copies=True,
        )
        if anon is not None:
            for p in points:
                if p.pcap is not None and p.name not in stats.anonymised:
                    if progress is not None:
                        progress(f"writing the bundle: anonymising {p.pcap.name}")
                    anonymise_pcap(p.pcap, anon, p.name)
            vendor = anonymise_vendor_texts(anon, pcap_dir(out))
            verdict_dict = anon.obj(verdict_dict)
        _dump(out / VERDICT, verdict_dict)

        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hopcap_version": hopcap.__version__,
            **base,
            "created_ts": created,
            "created": _iso(created),
            "points": [p.to_manifest(out, stats.packets.get(p.name)) for p in points],
            "merged": {
                "file": MERGED,
                "packets": sum(stats.packets.values()),
                "comments": stats.comments,
                "annotated_findings": stats.annotated_findings,
                "truncated_inputs": stats.truncated,
            },
            "anonymised": (
                {
                    **(anon.counts if anon else {}),
                    "payload": "removed (packets truncated after the transport header)",
                    "pcaps": "rewritten as pcapng with pseudonymised addresses",
                    **(
                        {
                            "vendor_texts": f"{', '.join(vendor)}: hex dumps removed, "
                            "addresses pseudonymised"
                        }
                        if vendor
                        else {}
                    ),
                }
                if anon
                else False
            ),
            "warnings": warnings() + stats.warnings,
        }
        if anon is not None:
            manifest = anon.obj(manifest)
        manifest = scrub_secrets(manifest)

        shown_verdict = Verdict.from_dict(verdict_dict)
        if progress is not None:
            progress("writing the bundle: the reports, every file's sha256")
        (out / "report.md").write_text(render_markdown(manifest, shown_verdict, facts_summary))
        (out / "report.html").write_text(render_html(manifest, shown_verdict, facts_summary))

        # merged.pcapng was hashed as it was written, the captures meanwhile (anonymised:
        # rewritten since)
        known = {} if anonymise else digests.known(out)
        if stats.sha256 is not None:
            known[MERGED] = stats.sha256
        manifest["files"] = _hash_files(out, known)
        _dump(out / MANIFEST, manifest)
    except OSError as exc:
        raise BundleError(f"cannot write bundle {out}: {exc}") from exc

    if tarball:
        return make_tarball(out)
    return out


def _hash_files(out: Path, known: dict[str, str]) -> dict[str, str]:
    """Every file's sha256 but the manifest's (those in `known` as they are there)."""
    files: dict[str, str] = {}
    for p in sorted(out.rglob("*")):
        name = p.relative_to(out).as_posix()
        if p.is_file() and name != MANIFEST:
            files[name] = known[name] if name in known else _sha256(p)
    return files


def make_tarball(out: Path) -> Path:
    """`<out>.tar.gz` next to the bundle directory (top-level folder = the bundle's name)."""
    tgz = out.parent / (out.name + ".tar.gz")
    try:
        with tarfile.open(tgz, "w:gz") as tf:
            tf.add(out, arcname=out.name)
    except OSError as exc:
        raise BundleError(f"cannot write {tgz}: {exc}") from exc
    return tgz


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadedBundle:
    path: Path  # the bundle directory (extracted, for a tarball)
    manifest: dict[str, Any]
    points: list[PointInput]  # in path order, for re-correlation
    tarball: Path | None = None  # the .tar.gz it was extracted from
    facts_summary: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def verdict(self) -> Verdict:
        """The stored verdict, read on first use (of an archive: before `close`):
        re-correlating a bundle makes a new one and never reads this (22 MB of JSON for a
        lab run with 43 k backend connections: 0.4 s), nor needs it intact."""
        vd = _read_json(self.path / VERDICT, "the verdict")
        try:
            return Verdict.from_dict(vd)
        except (KeyError, TypeError, IndexError, AttributeError) as exc:
            raise BundleError(
                f"{self.path / VERDICT} is damaged: missing or bad field {exc}"
            ) from exc

    @functools.cached_property
    def warnings(self) -> list[str]:
        """The files whose sha256 does not match the manifest, hashed on first read (of an
        archive: before `close`). Re-correlating a bundle reads its captures and never this:
        a lab run's bundle holds ~1.5 GB (its captures and their merge), ~0.9 s of hashing
        on two cores before the correlation could begin."""
        files = self.manifest.get("files") or {}
        sums = _Digests([self.path / f for f in files], os.cpu_count() or 1)  # at once
        return [
            f"{f}: sha256 does not match the manifest (changed after the bundle was written)"
            for f, digest in files.items()
            if sums.get(self.path / f) != digest
        ]

    def close(self) -> None:
        """Remove the temporary extraction of a tarball (nothing to do for a directory)."""
        if self.tarball is not None:
            shutil.rmtree(self._extraction_root(), ignore_errors=True)

    def _extraction_root(self) -> Path:
        return _extraction_root(self.path)

    def __enter__(self) -> LoadedBundle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


_EXTRACT_PREFIX = "hopcap-bundle-"


def _extraction_root(inside: Path) -> Path:
    """The temporary directory an archive was extracted into, from a path inside it."""
    p = inside
    while p.parent != p and not p.name.startswith(_EXTRACT_PREFIX):
        p = p.parent
    return p if p.name.startswith(_EXTRACT_PREFIX) else inside


def _extract(tgz: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=_EXTRACT_PREFIX))
    try:
        with tarfile.open(tgz, "r:*") as tf:
            tf.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"{tgz} is not a readable bundle archive: {exc}") from exc
    found = sorted(p.parent for p in tmp.rglob(MANIFEST))
    if not found:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BundleError(f"{tgz} holds no {MANIFEST}: not a hopcap bundle")
    return found[0]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(
            f"{path.parent} is not a hopcap bundle: {path.name} is missing ({what})"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} is damaged: {exc}") from exc


def load_bundle(path: Path) -> LoadedBundle:
    """Read a bundle directory or `.tar.gz`. Raises BundleError when it is not a bundle or
    files are missing; sha256 mismatches are its `warnings` (hashed when read)."""
    path = Path(path)
    if path.is_file() and (path.name.endswith((".tar.gz", ".tgz", ".tar"))):
        inside = _extract(path)
        try:
            return _load_dir(inside, path)
        except BaseException:
            # a damaged archive leaves nothing behind in the temporary directory
            shutil.rmtree(_extraction_root(inside), ignore_errors=True)
            raise
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle directory or .tar.gz")
    return _load_dir(path, None)


def _load_dir(path: Path, tgz: Path | None) -> LoadedBundle:
    manifest = _read_json(path / MANIFEST, "the bundle's manifest")
    if not isinstance(manifest, dict) or manifest.get("format", FORMAT) != FORMAT:
        raise BundleError(f"{path / MANIFEST} is not a hopcap manifest")
    if not (path / VERDICT).is_file():
        raise BundleError(f"{path} is not a hopcap bundle: {VERDICT} is missing (the verdict)")
    files = manifest.get("files") or {}
    missing = sorted(f for f in files if not (path / f).is_file())
    if missing:
        raise BundleError(
            f"bundle {path} is incomplete: {len(missing)} file(s) listed in the manifest are "
            f"missing: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")
        )
    points: list[PointInput] = []
    for d in manifest.get("points", []):
        rec = PointRecord.from_manifest(d, path)
        if rec.pcap is not None and not rec.pcap.is_file():
            raise BundleError(f"bundle {path} is incomplete: {d.get('file')} is missing")
        if rec.pcap is None and rec.error is None:
            rec = replace(rec, error="no capture in the bundle")
        points.append(rec.to_input())
    summary_path = path / FACTS_SUMMARY
    facts_summary = _read_json(summary_path, "facts summary") if summary_path.is_file() else {}
    return LoadedBundle(path, manifest, points, tgz, facts_summary)


def render_report(bundle_dir: Path) -> tuple[Path, Path]:
    """Re-render report.md and report.html of a bundle directory from its manifest, verdict
    and facts summary; the manifest's sha256 entries for the reports are updated."""
    if not Path(bundle_dir).is_dir():
        # checked before reading: an archive would be extracted only to be refused
        raise BundleError(f"{bundle_dir}: re-render a bundle directory, not an archive")
    b = load_bundle(bundle_dir)
    md, ht = b.path / "report.md", b.path / "report.html"
    try:
        md.write_text(render_markdown(b.manifest, b.verdict, b.facts_summary))
        ht.write_text(render_html(b.manifest, b.verdict, b.facts_summary))
        files = dict(b.manifest.get("files") or {})
        files["report.md"] = _sha256(md)
        files["report.html"] = _sha256(ht)
        manifest = dict(b.manifest)
        manifest["files"] = dict(sorted(files.items()))
        _dump(b.path / MANIFEST, manifest)
    except OSError as exc:
        raise BundleError(f"cannot write the report in {b.path}: {exc}") from exc
    return md, ht
