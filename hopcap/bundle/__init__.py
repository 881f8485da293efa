"""The evidence bundle: manifest, verdict, report, merged pcapng, facts. Pure file I/O.

Public API:
    pcap_dir(out) -> Path
    write_bundle(out, run, verdict, *, tarball=False, anonymise=False) -> Path
    write_offline_bundle(out, points, verdict) -> Path
    load_bundle(path) -> LoadedBundle
    render_report(bundle_dir) -> (report.md, report.html)
    trim_pcap(path, start_ts, end_ts) -> TrimResult | None (keep a time range of a pcap)
    write_windows_summary(out, [WindowResult]) -> (windows.json, windows.md)
"""

from hopcap.bundle.core import (
    LoadedBundle,
    load_bundle,
    make_tarball,
    pcap_dir,
    render_report,
    scrub_secrets,
    write_bundle,
    write_offline_bundle,
)
from hopcap.bundle.trim import TrimResult, trim_pcap
from hopcap.bundle.windows import WindowResult, write_windows_summary

__all__ = [
    "LoadedBundle",
    "TrimResult",
    "WindowResult",
    "load_bundle",
    "make_tarball",
    "pcap_dir",
    "render_report",
    "scrub_secrets",
    "trim_pcap",
    "write_bundle",
    "write_offline_bundle",
    "write_windows_summary",
]
