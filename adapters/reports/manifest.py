"""manifest.json: which page was computed from what, and when.

One entry per analyzer: its file, when it was generated and its data stamp -- the
event log position it read (adapters.reports.collect.LogStamp), the digests of the
config files it depends on, its options (the time zone of arrivals) and the digest of
the code and templates that render it. A page whose stamp equals the one `caseloop
report` would compute now is up to date and is not rewritten; a manifest that cannot
be read is treated as none (every page is regenerated).
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import msgspec

from adapters.reports.collect import LogStamp

MANIFEST = "manifest.json"


class Stamp(msgspec.Struct, frozen=True):
    log: LogStamp
    config: dict[str, str]  # file of --specs -> sha256 prefix (or "absent")
    options: dict[str, str]
    renderer: str  # digest of the reports' code, templates and assets


class Entry(msgspec.Struct, frozen=True):
    analyzer: str
    title: str
    file: str
    generated_at: str  # ISO 8601, UTC
    stamp: Stamp


class Manifest(msgspec.Struct, frozen=True):
    reports: list[Entry]
    generator: str = "caseloop report"
    version: int = 1

    def entry(self, analyzer: str) -> Entry | None:
        return next((e for e in self.reports if e.analyzer == analyzer), None)


def read_manifest(out: pathlib.Path) -> Manifest | None:
    try:
        return msgspec.json.decode((out / MANIFEST).read_bytes(), type=Manifest)
    except (OSError, msgspec.DecodeError):
        return None


def write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Write through a temporary file and a rename: a reader (a browser, a second
    `caseloop report`) sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the page from a web server
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_manifest(out: pathlib.Path, manifest: Manifest) -> None:
    write_atomic(out / MANIFEST, msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
