"""`NAME=PCAP` command-line arguments -> PointInput."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hopcap.errors import CorrelationError, OptionError
from hopcap.model import PointInput

# HOST or HOST:INTERFACE; an F5 BIG-IP interface may carry its noise suffix (lb:0.0:nnnp)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-@/]+(:n{1,3}p?)?)?$")


def read_points_from_args(
    args: Sequence[str], join_dir: Path | None = None, warnings: list[str] | None = None
) -> list[PointInput]:
    """Turn `["client=c.pcap", "fw:eth0=a.pcap", ...]` into PointInputs in the given order.

    A point captured in several files (tcpdump -C/-G rotation: fw.pcap, fw.pcap1, ...) is
    given as NAME=FILE for each, or as a glob (`fw:eth0='fw.pcap*'`, quoted or not: a
    shell leaves a word that matches no file as it is); its files are joined in time order
    into one capture in `join_dir` (`hopcap.capfile.join_captures`: files whose packets
    overlap in time are refused), their damage appended to `warnings`. A file compressed
    with gzip, xz or bzip2 (`fw.pcap.gz`) is read from a decompressed copy there."""
    if not args:
        raise CorrelationError(
            "no capture points given",
            hint="pass NAME=PCAP arguments in path order, e.g. fw:eth0=a.pcap",
        )
    files_of: dict[str, list[Path]] = {}  # point -> its files, points in the given order
    files: dict[tuple[int, int], str] = {}  # (device, inode) -> the point given it
    copies: dict[tuple[int, bytes], tuple[str, Path]] = {}  # `_fingerprint` -> point, file
    for arg in args:
        name, sep, path = arg.partition("=")
        name = name.strip()
        if not sep and Path(arg).expanduser().is_file():
            raise CorrelationError(
                f"{arg}: a capture needs the name of its point: NAME={arg}",
                hint=f"e.g. client={arg} (points in the order packets from the client cross "
                "them; HOST or HOST:INTERFACE)",
            )
        if not sep or not name or not path:
            raise CorrelationError(
                f"bad capture point {arg!r}: expected NAME=PCAP", hint="e.g. fw:eth1=fw_eth1.pcap"
            )
        if not _NAME.match(name):
            raise CorrelationError(
                f"bad capture point name {name!r}: use HOST or HOST:INTERFACE (the host: "
                "letters, digits, '.', '_', '-'; the interface also '@' and '/')",
                hint="e.g. fw-1:eth0.100=fw.pcap or fw:Gi0/1=fw.pcap",
            )
        for p in _files(name, path):
            st = p.stat()
            other = files.get((st.st_dev, st.st_ino))
            if other == name:
                raise CorrelationError(f"{name}: capture file {p} is given twice")
            if other is not None:
                raise CorrelationError(
                    f"capture points {other} and {name} are given the same file {p}",
                    hint="each point needs the capture taken there: the same packets at two "
                    "points would show nothing between them (a file of several interfaces: "
                    "split it, tshark -r FILE -Y 'frame.interface_name == \"eth0\"' -w "
                    "eth0.pcapng, or 'sll.ifindex == N' for tcpdump -i any)",
                )
            files[(st.st_dev, st.st_ino)] = name
            # (captures without packets are alike: two points that saw nothing; a file of
            # 4 KiB or more holds packets, and their times)
            print_ = _fingerprint(p, st.st_size) if st.st_size >= 1 << 12 else None
            copy = copies.get(print_) if print_ is not None else None
            if copy is not None and copy[0] != name:
                raise CorrelationError(
                    f"capture points {copy[0]} and {name} are given identical files "
                    f"({copy[1]} and {p}): a copy of one capture?",
                    hint="each point needs the capture taken there: the same packets at two "
                    "points would show nothing between them",
                )
            if print_ is not None:
                copies[print_] = (name, p)
            files_of.setdefault(name, []).append(p)
    out: list[PointInput] = []
    for name, given in files_of.items():
        host, iface = PointInput.parse_name(name)
        paths = [_decompressed(name, p, join_dir, warnings) for p in given]
        pcap, drops = paths[0], None
        if len(paths) > 1:
            shown = {d: g.name for d, g in zip(paths, given, strict=True)}
            pcap, drops, ordered = _joined(name, paths, join_dir, warnings, shown)
            given = [dict(zip(paths, given, strict=True))[x] for x in ordered]  # time order
        sources = tuple(given) if pcap not in given else ()
        out.append(
            PointInput(
                name=name,
                pcap=pcap,
                host=host,
                interface=iface,
                kernel_drops=drops,
                sources=sources,
            )
        )
    return out


def _fingerprint(path: Path, size: int) -> tuple[int, bytes]:
    """A file's size and its first and last 64 KiB (compared as they are: hashlib's import
    alone costs more than the comparison): two captures of two points never have both
    alike (their packets' times differ); a copy has."""
    with path.open("rb") as f:
        head = f.read(1 << 16)
        if size > 1 << 17:
            f.seek(size - (1 << 16))
        return size, head + f.read(1 << 16)


def _files(name: str, path: str) -> list[Path]:
    """The capture file(s) of one NAME=PATH: PATH, or the files a glob in it matches."""
    p = Path(path).expanduser()
    if not p.exists() and any(c in path for c in "*?["):
        import glob

        got = [Path(x) for x in sorted(glob.glob(str(p))) if Path(x).is_file()]
        if not got:
            raise CorrelationError(f"{name}: no capture file matches {path}")
        return got
    if not p.exists():
        raise CorrelationError(f"{name}: capture file {path} does not exist")
    if not p.is_file():
        import stat

        mode = p.stat().st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode):
            raise CorrelationError(
                f"{name}: {path} is a pipe or a device, not a capture file: hopcap reads "
                "capture files (it maps them), not streams",
                hint="write the capture to a file first, e.g. zcat fw.pcap.gz > fw.pcap",
            )
        raise CorrelationError(
            f"{name}: {path} is a directory, not a capture file",
            hint=f"give the capture files in it ({name}='{path.rstrip('/')}/*.pcap*' for one "
            "capture rotated into several files)",
        )
    return [p]


# compressed captures read through a decompressed copy (Wireshark reads them as they are):
# magic -> kind
_DECOMPRESS = {b"\x1f\x8b": "gzip", b"\xfd7zXZ": "xz", b"BZh": "bzip2"}


def _decompressed(name: str, path: Path, join_dir: Path | None, warnings: list[str] | None) -> Path:
    """`path`, or a decompressed copy of it in `join_dir` when it is compressed with gzip,
    xz or bzip2 (without `join_dir` the reader says how to decompress it). Damage is read
    up to, as in a capture: a compressed file that ends early (copied while it was
    written) or is damaged gives what it holds up to there, with a warning."""
    import logging

    from hopcap.capfile import read_head

    head = read_head(path, 6)
    kind = next((v for k, v in _DECOMPRESS.items() if head.startswith(k)), None)
    if kind is None or join_dir is None:
        return path
    # named as the file without its compression's suffix (warnings name it)
    sub = join_dir / f"d{len(list(join_dir.iterdir()))}"
    sub.mkdir()
    plain = path.name
    for suffix in (".gz", ".xz", ".bz2"):
        plain = plain.removesuffix(suffix)
    out = sub / plain
    with path.open("rb") as src, out.open("wb") as dst:
        damage = _decompress(kind, src, dst)
        written = dst.tell()
    if damage is not None:
        if not written:
            raise CorrelationError(
                f"{name}: {path}: cannot be decompressed ({kind}: {damage})",
                hint="is it a capture? decompress it yourself and give the capture",
            )
        if warnings is not None:
            warnings.append(
                f"{path.name}: the {kind} file {damage}: the capture in it is read up to there"
            )
    logging.getLogger(__name__).info("%s: %s decompressed (%s)", name, path, kind)
    return out


def _decompress(kind: str, src: Any, dst: Any) -> str | None:
    """Decompress `src` into `dst` as far as it goes (members one after the other, as
    `cat a.gz b.gz` makes); None, or what ended it early."""
    import bz2
    import lzma
    import zlib

    def new() -> Any:
        if kind == "gzip":
            return zlib.decompressobj(wbits=47)
        return lzma.LZMADecompressor() if kind == "xz" else bz2.BZ2Decompressor()

    d = new()
    try:
        while chunk := src.read(1 << 20):
            while chunk:
                dst.write(d.decompress(chunk))
                chunk = d.unused_data if d.eof else b""
                if chunk:
                    d = new()
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as e:
        return f"is damaged ({e})"
    return None if d.eof else "ends early (copied while it was written?)"


def _joined(
    name: str,
    paths: list[Path],
    join_dir: Path | None,
    warnings: list[str] | None,
    shown: dict[Path, str] | None = None,
) -> tuple[Path, int | None, list[Path]]:
    """The files of one point joined into one capture in `join_dir`, the kernel drops
    they report, and the files in the order joined (their packets' time)."""
    import logging

    from hopcap.capfile import CaptureFileError, join_captures
    from hopcap.model import pcap_filename

    if join_dir is None:
        raise CorrelationError(f"{name}: {len(paths)} files given for one point")
    out = join_dir / pcap_filename(name)
    try:
        got = join_captures(paths, out, shown)
    except CaptureFileError as e:
        raise CorrelationError(f"{name}: {e.message}", hint=e.hint) from None
    logging.getLogger(__name__).info(
        "%s: %d files joined in time order: %s", name, len(paths), ", ".join(map(str, got.parts))
    )
    if warnings is not None:
        warnings += got.warnings
    return out, got.kernel_drops, got.parts


def check_bundle_files(points: Sequence[PointInput]) -> None:
    """Every point's capture gets a file of its own in a bundle (`--out`): two names that
    differ only in ':' against '_' or '/' (`fw:eth0` and `fw_eth0`) would share one."""
    from hopcap.model import pcap_filename

    named: dict[str, str] = {}
    for p in points:
        f = pcap_filename(p.name)
        if f in named:
            raise CorrelationError(
                f"capture points {named[f]} and {p.name} would both be written to the "
                f"bundle as pcaps/{f}",
                hint="rename one of them",
            )
        named[f] = p.name


def read_hosts_from_args(
    args: Sequence[str], points: Sequence[PointInput] | None = None
) -> dict[str, list[str]]:
    """`["relay=10.19.0.5,2001:db8::5", ...]` (`--host`) -> {host: [address, ...]}: the
    host's own addresses (traffic to them ends there). A host must be one of `points`'."""
    from hopcap.correlate.local import norm_addr

    hosts = {p.host or PointInput.parse_name(p.name)[0] for p in points or ()}
    out: dict[str, list[str]] = {}
    for arg in args:
        name, sep, rest = arg.partition("=")
        name = name.strip()
        if not sep or not name or not rest.strip():
            raise OptionError(
                f"bad --host {arg!r}: expected HOST=ADDRESS[,ADDRESS...]",
                hint="e.g. --host relay=10.19.0.5,2001:db8::5",
            )
        if points is not None and name not in hosts:
            raise OptionError(
                f"--host {name}: no capture point of a host named {name!r} "
                f"(hosts: {', '.join(sorted(hosts))})",
                hint="HOST is the part of a point's name before ':' (fw of fw:eth0)",
            )
        for a in rest.split(","):
            a = a.strip().split("/")[0]
            if not a:
                continue
            try:
                addr = norm_addr(a)
            except ValueError:
                raise OptionError(
                    f"--host {name}: {a!r} is not an IP address",
                    hint="e.g. --host relay=10.19.0.5,2001:db8::5",
                ) from None
            out.setdefault(name, [])
            if addr not in out[name]:
                out[name].append(addr)
    return out


def check_target(text: str | None) -> str | None:
    """`--target ADDR[:PORT]` checked (`203.0.113.80:80`, `[2001:db8::1]:443`, `203.0.113.80`)."""
    if text is None:
        return None
    from hopcap.correlate.local import norm_addr

    t = text.strip()
    if t.startswith("["):
        a, _, port = t[1:].partition("]")
        port = port.lstrip(":")
    elif t.count(":") == 1:
        a, _, port = t.partition(":")
    else:
        a, port = t, ""
    try:
        norm_addr(a)
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(port)
    except ValueError:
        raise OptionError(
            f"bad --target {text!r}: expected ADDRESS[:PORT]", hint="e.g. 203.0.113.80:80"
        ) from None
    return t
