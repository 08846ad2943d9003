"""The report pages in a real browser, opened from disk (file://) with the network
unused: no console errors, every chart drawn on its canvas, nothing requested but
local files. Screenshots go to tests/artifacts/reports/ (gitignored) for a look.

Uses Debian's /usr/bin/chromium through Playwright (no browser download); skipped with
the reason when it is not there."""

from __future__ import annotations

import pathlib
import shutil

import anyio
import pytest

CHROMIUM = pathlib.Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "artifacts" / "reports"
ROOT = pathlib.Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"no browser: {CHROMIUM} is not installed")

# Per canvas: does it hold any painted pixel? (a chart drawn, not an empty box)
PAINTED = """() => Array.from(document.querySelectorAll('canvas')).map(c => {
  const ctx = c.getContext('2d');
  const data = ctx.getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) { if (data[i] !== 0) return true; }
  return false;
})"""


def test_report_pages_draw_offline(simulated_db: pathlib.Path, tmp_path: pathlib.Path,
                                   ) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from adapters.reports.catalog import ANALYZERS
    from adapters.reports.generate import generate

    db = pathlib.Path(shutil.copy(simulated_db, tmp_path / "pipeline.db"))
    out = tmp_path / "reports"
    anyio.run(lambda: generate(db, out, ROOT / "specs", time_zone="America/New_York"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            for name in ["index.html", *(a.file for a in ANALYZERS)]:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                problems: list[str] = []
                page.on("console", lambda m, problems=problems: problems.append(
                    f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
                page.on("pageerror", lambda e, problems=problems: problems.append(f"{e}"))
                page.on("request", lambda r, problems=problems: problems.append(
                    f"request {r.url}") if not r.url.startswith("file:") else None)
                page.goto((out / name).as_uri())
                page.wait_for_load_state("load")
                canvases = page.locator("canvas").count()
                if canvases:
                    page.wait_for_function("document.documentElement.dataset.charts === "
                                           "'drawn'", timeout=10_000)
                drawn = page.locator("canvas[data-drawn='true']").count()
                painted = page.evaluate(PAINTED)
                page.screenshot(path=str(ARTIFACTS / f"{pathlib.Path(name).stem}.png"),
                                full_page=True)
                page.close()
                assert not problems, f"{name}: {problems}"
                assert drawn == canvases, f"{name}: {drawn} of {canvases} charts drawn"
                assert all(painted), f"{name}: blank canvases at {painted}"
                if name != "index.html":
                    assert canvases >= 2, f"{name}: a report page has charts"
        finally:
            browser.close()
