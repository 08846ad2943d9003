"""`caseloop report` on the simulated pipeline (tests/conftest.py `simulated_db`): every
analyzer's page is there, offline, with numbers that agree with the store counted
another way; the manifest says what each page was computed from; a second run on the
same data writes nothing, and only pages whose inputs changed are rewritten."""

from __future__ import annotations

import datetime as dt
import hashlib
import html.parser
import json
import pathlib
import re
import shutil
import sqlite3
import subprocess
import sys
from typing import Any

import anyio
import msgspec
import pytest
import yaml

from adapters.reports.catalog import ANALYZERS
from adapters.reports.costs import load_costs
from adapters.reports.generate import Outcome, generate
from adapters.reports.manifest import Entry, Stamp
from adapters.reports.page import Cell, Column, Page, Section, Table
from adapters.reports.render import CHARTJS, render_page

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
LEADS, DEALS, REVENUE = "lead-qualification", "deal-approval-gate", "revenue-recognition"


class Tables(html.parser.HTMLParser):
    """Every <table id> of a page as {row key: {column key: data-value}}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self._table: dict[str, dict[str, str]] | None = None
        self._row: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table" and a.get("id"):
            self._table = self.tables.setdefault(a["id"] or "", {})
        elif tag == "tr" and self._table is not None and "data-key" in a:
            self._row = self._table.setdefault(a["data-key"] or "", {})
        elif tag == "td" and self._row is not None and "data-value" in a:
            self._row[a.get("data-col") or ""] = a["data-value"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "tr":
            self._row = None


def tables(page: pathlib.Path) -> dict[str, dict[str, dict[str, str]]]:
    parser = Tables()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.tables


def run(db: pathlib.Path, out: pathlib.Path, specs: pathlib.Path = SPECS,
        time_zone: str = "UTC") -> Outcome:
    return anyio.run(lambda: generate(db, out, specs, time_zone=time_zone))


def rows(db: pathlib.Path, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def reports(simulated_db: pathlib.Path, tmp_path_factory: pytest.TempPathFactory,
            ) -> tuple[pathlib.Path, pathlib.Path, Outcome]:
    """(the database copy, the output directory, the first run's outcome)."""
    work = tmp_path_factory.mktemp("reports")
    db = pathlib.Path(shutil.copy(simulated_db, work / "pipeline.db"))
    out = work / "reports"
    return db, out, run(db, out, time_zone="America/New_York")


# ------------------------------------------------------------------ the pages
def test_every_analyzer_has_a_complete_page(reports: tuple[pathlib.Path, pathlib.Path,
                                                            Outcome]) -> None:
    _db, out, outcome = reports
    assert [e.analyzer for e in outcome.written] == [a.id for a in ANALYZERS]
    assert outcome.seconds < 60, "the 1500-deal history should take seconds"
    index = (out / "index.html").read_text(encoding="utf-8")
    for a in ANALYZERS:
        page = (out / a.file).read_text(encoding="utf-8")
        assert f"<h1>{a.title}</h1>" in page
        assert a.meaning.replace("'", "&#39;") in page
        assert page.count("<canvas") >= 1 and page.count("<table") >= 1
        entry = next(e for e in outcome.written if e.analyzer == a.id)
        assert entry.generated_at in page and "Data stamp" in page
        assert f'href="{a.file}"' in index
        stamp = json.loads(re.search(r'<script type="application/json" id="stamp">(.*?)'
                                     r"</script>", page, re.S)[1])  # type: ignore[index]
        assert stamp["stamp"] == msgspec.to_builtins(entry.stamp)


def test_pages_work_offline(reports: tuple[pathlib.Path, pathlib.Path, Outcome]) -> None:
    _db, out, _ = reports
    remote = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
    local = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)""", re.I)
    for page in out.glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert not remote.search(text), f"{page.name} references the network"
        assert "http://" not in text and "https://" not in text
        for ref in local.findall(text):
            assert not ref.startswith("/"), f"{page.name}: {ref} is not relative"
            assert (out / ref).is_file(), f"{page.name}: {ref} is missing"
    chart = out / "assets" / "chartjs" / "chart.umd.min.js"
    assert chart.read_bytes() == (CHARTJS / "chart.umd.min.js").read_bytes()
    assert (out / "assets" / "chartjs" / "LICENSE.md").is_file()
    assert hashlib.sha256(chart.read_bytes()).hexdigest() == (
        "87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2")  # VENDOR.md


def test_conversion_counts_are_the_stats_counts(
        reports: tuple[pathlib.Path, pathlib.Path, Outcome]) -> None:
    """The /stats route's way: stays from the phases table, steps from the Monitor."""
    from adapters.sqlite_store import SQLiteStore
    from mapek.monitor import Monitor

    db, out, _ = reports

    async def stats() -> dict[str, float]:
        async with SQLiteStore(str(db)) as store:
            m = Monitor(store)
            await m.catch_up()
            booked = m.cases_completing(REVENUE, "BookRevenue")
            return {"leads_qualified": m.completions(LEADS, "AssignToSDR"),
                    "deals_approved": m.completions(DEALS, "AllApprovalsComplete"),
                    "deals_booked": len(booked),
                    "booked_acv": sum(float(m.attributes.get(c, {}).get("deal_acv") or 0)
                                      for c in booked)}

    expected = anyio.run(stats)
    for wf, key in ((LEADS, "leads"), (DEALS, "deals")):
        (expected[key],), = rows(db, "SELECT count(*) FROM phases WHERE workflow_id = ?",
                                 (wf,))
    t = tables(out / "conversion.html")
    funnel = {k: int(v["count"]) for k, v in t["funnel"].items()}
    for key in ("leads", "leads_qualified", "deals", "deals_approved", "deals_booked"):
        assert funnel[key] == expected[key], key
    segments = t["segments"]
    assert float(segments["all"]["booked_acv"]) == pytest.approx(expected["booked_acv"])
    assert int(segments["all"]["deals"]) == expected["deals"]
    parts = [s for k, s in segments.items() if k != "all"]
    assert {k for k in segments} >= {"smb", "mid_market", "enterprise"}
    for col in ("deals", "approved", "booked", "open", "lost"):
        assert sum(int(s[col]) for s in parts) == int(segments["all"][col]), col
    assert int(segments["all"]["deals"]) == sum(
        int(segments["all"][c]) for c in ("booked", "open", "lost"))


def test_cost_is_hours_times_rates(reports: tuple[pathlib.Path, pathlib.Path, Outcome],
                                   ) -> None:
    db, out, _ = reports
    rates = yaml.safe_load((SPECS / "costs.yaml").read_text(encoding="utf-8"))["rates"]
    t = tables(out / "cost.html")
    roles = {k: v for k, v in t["roles"].items() if k != "total"}
    assert roles, "someone worked"
    for role, r in roles.items():
        assert float(r["rate"]) == rates[role]
        assert float(r["cost"]) == pytest.approx(float(r["hours"]) * rates[role])
    total = t["roles"]["total"]
    assert float(total["cost"]) == pytest.approx(sum(float(r["cost"]) for r in roles.values()))
    assert float(total["hours"]) == pytest.approx(sum(float(r["hours"]) for r in roles.values()))
    # Shared working hours cannot exceed what a person is paid for: priya.patel is the
    # only legal counsel; 9-17 on weekdays over the period, plus the standard effort of
    # amendment rounds (2 h each, costs.yaml).
    (first, last), = rows(db, "SELECT min(at), max(at) FROM events")
    weeks = (last - first) / (7 * 86_400) + 1
    legal = roles["legal_counsel"]
    shared = float(legal["hours"]) - 2.0 * int(legal["standard"])
    assert 0 < shared <= weeks * 40
    segments = t["profit"]
    assert float(segments["all"]["contribution"]) == pytest.approx(
        float(segments["all"]["gross"]) - float(segments["all"]["serve"]))
    assert int(segments["all"]["deals"]) == int(tables(out / "conversion.html")
                                                ["segments"]["all"]["booked"])


def test_cycle_times_and_arrivals_count_the_phases(
        reports: tuple[pathlib.Path, pathlib.Path, Outcome]) -> None:
    db, out, _ = reports
    per_wf = {wf: (done, still, n) for wf, done, still, n in rows(
        db, "SELECT workflow_id, sum(outcome = 'completed'), sum(left_at IS NULL), count(*)"
            " FROM phases GROUP BY workflow_id")}
    cycle = tables(out / "cycle-time.html")["workflows"]
    arrivals = tables(out / "arrivals.html")["patterns"]
    for wf, (done, still, n) in per_wf.items():
        assert int(cycle[wf]["closed"]) == done and int(cycle[wf]["open"]) == still
        assert int(arrivals[wf]["arrivals"]) == n
    assert float(cycle[DEALS]["target"]) == 8.0  # slos.yaml
    heat = tables(out / "arrivals.html")[f"week-{DEALS}"]
    assert sum(int(v) for row in heat.values() for k, v in row.items() if k != "day") == (
        per_wf[DEALS][2])
    assert "America/New_York" in (out / "arrivals.html").read_text(encoding="utf-8")


def test_manifest_says_what_each_page_was_computed_from(
        reports: tuple[pathlib.Path, pathlib.Path, Outcome]) -> None:
    db, out, _ = reports
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    (events, last), = rows(db, "SELECT count(*), max(pos) FROM events")
    assert [r["analyzer"] for r in manifest["reports"]] == [a.id for a in ANALYZERS]
    for r in manifest["reports"]:
        assert set(r) >= {"analyzer", "file", "generated_at", "stamp"}
        assert (out / r["file"]).is_file()
        assert dt.datetime.fromisoformat(r["generated_at"]).tzinfo is not None
        log = r["stamp"]["log"]
        assert (log["events"], log["last_pos"]) == (events, last)
    by = {r["analyzer"]: r["stamp"] for r in manifest["reports"]}
    digest = hashlib.sha256((SPECS / "costs.yaml").read_bytes()).hexdigest()[:16]
    assert by["cost"]["config"]["costs.yaml"] == digest
    assert "slos.yaml" in by["cycle-time"]["config"]
    assert by["conversion"]["config"] == {}  # depends on the log alone
    assert by["arrivals"]["options"] == {"time_zone": "America/New_York"}


# ------------------------------------------------------------------ incremental
def snapshot(out: pathlib.Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_only_what_changed_is_rewritten(simulated_db: pathlib.Path,
                                        tmp_path: pathlib.Path) -> None:
    from adapters.simulation import default_start, simulate_into

    db = pathlib.Path(shutil.copy(simulated_db, tmp_path / "pipeline.db"))
    specs = pathlib.Path(shutil.copytree(SPECS, tmp_path / "specs"))
    out = tmp_path / "reports"
    first = run(db, out, specs)
    assert len(first.written) == len(ANALYZERS) and not first.up_to_date
    before = snapshot(out)

    again = run(db, out, specs)  # same data, same config: nothing at all is written
    assert again.up_to_date and not again.written
    assert len(again.unchanged) == len(ANALYZERS)
    assert snapshot(out) == before

    # A rate changes: the cost page alone is recomputed (the index lists it anew).
    costs = specs / "costs.yaml"
    costs.write_text(costs.read_text(encoding="utf-8").replace("legal_counsel: 160",
                                                               "legal_counsel: 200"),
                     encoding="utf-8")
    priced = run(db, out, specs)
    assert [e.analyzer for e in priced.written] == ["cost"]
    after = snapshot(out)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {"cost.html", "index.html", "manifest.json"}
    legal = tables(out / "cost.html")["roles"]["legal_counsel"]
    assert float(legal["rate"]) == 200.0

    # Arrivals read on another clock: that page alone.
    zoned = anyio.run(lambda: generate(db, out, specs, time_zone="Asia/Kolkata"))
    assert [e.analyzer for e in zoned.written] == ["arrivals"]

    # More history is appended (a small simulation with another seed, into the same
    # store): every page is computed from the log, so every page moves on.
    anyio.run(lambda: simulate_into(str(db), deals=12, days=1, pattern="base", seed=7,
                                    start=default_start(1), specs=str(specs)))
    grown = run(db, out, specs)
    assert {e.analyzer for e in grown.written} == {a.id for a in ANALYZERS}
    stamps = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["reports"]
    (events,), = rows(db, "SELECT count(*) FROM events")
    assert all(r["stamp"]["log"]["events"] == events for r in stamps)
    leads = tables(out / "conversion.html")["funnel"]["leads"]["count"]
    (n,), = rows(db, "SELECT count(*) FROM phases WHERE workflow_id = ?", (LEADS,))
    assert int(leads) == n

    # A page deleted by hand is regenerated even though its stamp did not change.
    (out / "arrivals.html").unlink()
    healed = run(db, out, specs)
    assert [e.analyzer for e in healed.written] == ["arrivals"]


# ------------------------------------------------------------------ CLI and config
def test_cli_end_to_end(simulated_db: pathlib.Path, tmp_path: pathlib.Path) -> None:
    db = pathlib.Path(shutil.copy(simulated_db, tmp_path / "pipeline.db"))
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "adapters.cli", "report", "--db", str(db), "--out",
           str(out), "--specs", str(SPECS)]
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    for a in ANALYZERS:
        assert a.file in first.stdout
    assert "6 written" in first.stdout
    assert (out / "index.html").is_file() and (out / "manifest.json").is_file()
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=300, check=False)
    assert second.returncode == 0 and "up to date" in second.stdout
    missing = subprocess.run([*cmd[:5], str(tmp_path / "nope.db"), *cmd[6:]],
                             capture_output=True, text=True, cwd=ROOT, env=env,
                             timeout=300, check=False)
    assert missing.returncode == 1 and "no database" in missing.stderr
    assert not (tmp_path / "nope.db").exists()  # a report never creates a store


@pytest.mark.parametrize(("text", "where"), [
    ("rates: {sales_mgr: 90}\n", "/rates/sales_mgr: unknown role"),
    ("rates: {sdr: -1}\n", "/rates/sdr: must be a number >= 0"),
    ("rates: {sdr: 50}\neffort_hours: {CustomerSignature: .nan}\n",
     "/effort_hours/CustomerSignature: must be"),
    ("rates: {sdr: 50}\nworking_hours: {start: 17, end: 9}\n", "/working_hours: end must"),
    ("rates: {sdr: 50}\nhourly: 3\n", "/hourly: unknown field"),
    ("rates: {sdr: 50}\nworking_hours: {start: 9, end: 17, weekend: true}\n",
     "/working_hours/weekend: unknown field"),
    ("rates: {sdr: 50}\ndefault_margin: 2\n", "/default_margin"),
])
def test_a_bad_cost_model_is_located(tmp_path: pathlib.Path, text: str, where: str) -> None:
    from adapters.people import load_directory

    path = tmp_path / "costs.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{path}: {where}")):
        load_costs(path, load_directory(SPECS / "roles.yaml"))


def test_the_shipped_cost_model_prices_every_role() -> None:
    from adapters.people import load_directory

    model = load_costs(SPECS / "costs.yaml", load_directory(SPECS / "roles.yaml"))
    assert set(model.rates) == set(load_directory(SPECS / "roles.yaml").roles)


def test_text_from_the_history_is_escaped() -> None:
    from adapters.reports.collect import LogStamp

    hostile = '<script>alert("x")</script>'
    page = Page([Section(hostile, hostile, [], [Table(
        "t", hostile, [Column("who", hostile, False)], [(hostile, [Cell(hostile, hostile)])])])],
        [(hostile, Cell(hostile, hostile))])
    stamp = Stamp(LogStamp(1, 1, 0.0, "ab", 0, None), {}, {}, "r")
    text = render_page(ANALYZERS[0], page, Entry("x", hostile, "x.html", "now", stamp))
    assert hostile not in text
    assert "&lt;script&gt;" in text
