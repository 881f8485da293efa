"""The evidence bundle: manifest, verdict, report, merged pcapng, facts. Pure file I/O.

Public API:
    pcap_dir(out) -> Path
    write_bundle(out, run, verdict, *, tarball=False, anonymise=False) -> Path
    write_offline_bundle(out, points, verdict) -> Path
    load_bundle(path) -> LoadedBundle
    render_report(bundle_dir) -> (report.md, report.html)
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

__all__ = [
    "LoadedBundle",
    "load_bundle",
    "make_tarball",
    "pcap_dir",
    "render_report",
    "scrub_secrets",
    "write_bundle",
    "write_offline_bundle",
]
