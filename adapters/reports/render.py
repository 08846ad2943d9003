"""Pages to HTML with jinja2 (autoescaped: case ids, people and task names come from
the history), and the assets every page links relatively: the vendored Chart.js (with
its licence), report.js and report.css, copied into `<out>/assets/` so the output
directory works anywhere, opened from disk, with no network."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Sequence

import jinja2
import msgspec

from adapters.reports.catalog import Analyzer
from adapters.reports.manifest import Entry, write_atomic
from adapters.reports.page import Page, when

HERE = pathlib.Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CHARTJS = HERE.parent / "http" / "static" / "vendor" / "chartjs"
# <out>/assets/<name> <- source
ASSETS = {
    "chartjs/chart.umd.min.js": CHARTJS / "chart.umd.min.js",
    "chartjs/LICENSE.md": CHARTJS / "LICENSE.md",
    "report.js": STATIC / "report.js",
    "report.css": STATIC / "report.css",
}
# What decides how a page looks besides its data: a change to any of these regenerates
# every page.
_RENDERER_SOURCES = (HERE, HERE.parent.parent / "mapek" / "insights.py",
                     HERE.parent.parent / "mapek" / "economics.py",
                     HERE.parent.parent / "mapek" / "analyze.py")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals["when"] = when
    return env


_ENV = _environment()


def renderer_digest() -> str:
    h = hashlib.sha256()
    files: list[pathlib.Path] = []
    for src in _RENDERER_SOURCES:
        files += sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in
                        (".py", ".html", ".js", ".css")) if src.is_dir() else [src]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def render_page(analyzer: Analyzer, page: Page, entry: Entry) -> str:
    return _ENV.get_template("page.html").render(
        analyzer=analyzer, page=page, entry=entry,
        stamp_json=msgspec.to_builtins(entry))


def render_index(pages: Sequence[tuple[Analyzer, Entry]]) -> str:
    return _ENV.get_template("index.html").render(pages=pages)


def copy_assets(out: pathlib.Path) -> list[str]:
    """Copy the assets that are missing or differ; -> the names written."""
    written = []
    for name, src in ASSETS.items():
        data = src.read_bytes()
        dest = out / "assets" / name
        if dest.exists() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, data)
        written.append(f"assets/{name}")
    return written
