"""Work history in and out (issue 6): CSV import over HTTP and the CLI, export as CSV
and XES, against a real `caseloop serve` and its real SQLite file.

Each test imports into a workflow of its own (registered here, a three-task spec), so
tests sharing the module's server never see each other's history. What was written
is checked in the database file itself, read-only beside the running server (WAL).
"""

from __future__ import annotations

import concurrent.futures
import csv
import datetime as dt
import importlib.util
import io
import json
import pathlib
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_kit import ROOT, Server

from adapters.history import MAX_PROBLEMS, parse_history
from adapters.http.history import IMPORT_PERMISSION, MAX_HISTORY

CSV = {"Content-Type": "text/csv"}
MANAGER = "marcus.thompson@acme.com"  # sales_manager: may not import history
SPEC = {"tasks": [{"id": "Qualify", "role": "sdr"}, {"id": "Approve", "role": "sdr"}],
        "flows": [{"from": "start", "to": "Qualify"}, {"from": "Qualify", "to": "Approve"},
                  {"from": "Approve", "to": "end"}]}

# Two cases: a repeated task, a lone started item, an open item, attributes (a number,
# a zip code that must stay a string, one given on a later row), a resource, offsets.
GOOD = """case_id,task,event,timestamp,resource,deal_acv,zip,segment
D-1,Qualify,enabled,2025-03-03T09:00:00+01:00,,40000,02139,
D-1,Qualify,started,2025-03-03T09:30:00+01:00,sarah.chen@acme.com,,,
D-1,Qualify,completed,2025-03-03T10:00:00+01:00,sarah.chen@acme.com,,,mid
D-1,Approve,enabled,2025-03-03T10:00:00+01:00,,,,
D-1,Approve,completed,2025-03-04T08:00:00Z,marcus.thompson@acme.com,,,
D-1,Qualify,enabled,2025-03-05T09:00:00+01:00,,,,
"D-2, ""quoted"" & <b>",Approve,started,2025-03-06T12:00:00-05:00,lisa.wong@acme.com,1.5,,
"""
GOOD_ITEMS = 4  # D-1: Qualify x2 (one open), Approve; D-2: Approve (started only)
GOOD_EVENTS = 7


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


@pytest.fixture(scope="module")
def srv(module_server: Server) -> Server:
    return module_server


_made = iter(range(1000))


@pytest.fixture
def wf(srv: Server) -> str:
    """A workflow of this test's own."""
    wid = f"history-{next(_made)}"
    r = httpx.post(srv.url + "/api/v1/workflows", json={"id": wid, **SPEC})
    assert r.status_code == 201, r.text
    return wid


def post(srv: Server, wid: str, body: str | bytes, headers: dict[str, str] | None = None,
         ) -> httpx.Response:
    return httpx.post(f"{srv.url}/api/v1/workflows/{wid}/history/import",
                      content=body.encode() if isinstance(body, str) else body,
                      headers={**CSV, **(headers or {})}, timeout=60)


def export(srv: Server, wid: str, fmt: str = "csv") -> httpx.Response:
    return httpx.get(f"{srv.url}/api/v1/workflows/{wid}/history/export",
                     params={"format": fmt}, timeout=60)


def stored(db: pathlib.Path, wid: str) -> list[tuple[Any, ...]]:
    """The items the store holds for a workflow, in a comparable order."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT case_id, task, resource, enabled_at, started_at, completed_at, attributes"
            " FROM imported_items WHERE workflow_id = ?", (wid,)).fetchall()
    return sorted(((*r[:6], json.loads(r[6]) if r[6] else None) for r in rows),
                  key=lambda r: (r[0], r[1], r[3] or r[4] or r[5]))


def error(r: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


# ------------------------------------------------------------------------ import
def test_import_pairs_rows_into_items(srv: Server, wf: str) -> None:
    r = post(srv, wf, GOOD)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["workflow_id"] == wf
    assert (body["rows"], body["items"], body["cases"]) == (7, GOOD_ITEMS, 2)
    items = stored(srv.db, wf)
    assert items[0] == ("D-1", "Approve", "marcus.thompson@acme.com",
                        at("2025-03-03T10:00:00+01:00"), None, at("2025-03-04T08:00:00Z"),
                        {"deal_acv": 40000, "zip": "02139", "segment": "mid"})
    qualify = [i for i in items if i[1] == "Qualify"]
    assert [(i[3], i[4], i[5]) for i in qualify] == [
        (at("2025-03-03T09:00:00+01:00"), at("2025-03-03T09:30:00+01:00"),
         at("2025-03-03T10:00:00+01:00")),
        (at("2025-03-05T09:00:00+01:00"), None, None)]  # the repeat, still open
    assert items[-1][:6] == ('D-2, "quoted" & <b>', "Approve", "lisa.wong@acme.com", None,
                             at("2025-03-06T12:00:00-05:00"), None)


def test_the_same_history_twice_is_imported_once(srv: Server, wf: str) -> None:
    # An exploratory test imported one export twice: every item counted twice in what
    # the MAPE-K loop learns.
    first = post(srv, wf, GOOD)
    assert first.status_code == 201 and first.json()["created"] is True, first.text
    header, *rows = GOOD.splitlines(keepends=True)
    for again in (GOOD, header + "".join(reversed(rows))):  # the same, in any order
        r = post(srv, wf, again)
        assert r.status_code == 200, r.text
        assert (r.json()["import_id"], r.json()["created"]) == (first.json()["import_id"],
                                                                False)
    assert len(stored(srv.db, wf)) == GOOD_ITEMS
    more = post(srv, wf, GOOD + "D-3,Qualify,enabled,2025-03-07T09:00:00Z,,,,\n")
    assert more.status_code == 201 and more.json()["import_id"] != first.json()["import_id"]
    # A new history, overlapping the first: only its new item is written.
    assert (more.json()["added"], more.json()["updated"], more.json()["duplicates"]) == (
        1, 0, GOOD_ITEMS)
    assert len(stored(srv.db, wf)) == GOOD_ITEMS + 1


def test_an_import_that_adds_nothing_does_not_stop_the_next(srv: Server, wf: str) -> None:
    # Found in review: an import of repeats only took an import id no item carried,
    # and the next import computed the same id: 500 for every import after it.
    assert post(srv, wf, GOOD).status_code == 201
    part = post(srv, wf, "".join(GOOD.splitlines(keepends=True)[:4]))  # another digest
    assert part.status_code == 201 and part.json()["added"] == 0, part.text
    more = post(srv, wf, GOOD + "D-9,Qualify,enabled,2025-03-07T09:00:00Z,,,,\n")
    assert more.status_code == 201 and more.json()["added"] == 1, more.text
    assert len({part.json()["import_id"], more.json()["import_id"]}) == 2


def test_overlapping_exports_add_what_is_new_and_complete_what_was_open(
        srv: Server, wf: str) -> None:
    # A monthly "last 90 days" export repeats two months of the one before; written
    # whole, every repeated item counted twice in what the MAPE-K loop learns.
    march = post(srv, wf, GOOD)
    assert march.status_code == 201, march.text
    april = (GOOD.splitlines(keepends=True)[0]
             + "D-1,Approve,enabled,2025-03-03T10:00:00+01:00,,,,\n"  # as before
             + "D-1,Approve,completed,2025-03-04T08:00:00Z,marcus.thompson@acme.com,,,\n"
             # the repeat of Qualify was open in March: done since, by Sarah
             + "D-1,Qualify,enabled,2025-03-05T09:00:00+01:00,,,,\n"
             + "D-1,Qualify,completed,2025-03-05T11:00:00+01:00,sarah.chen@acme.com,,,"
             "enterprise\n"  # the segment changed; the zip and ACV are not in this export
             + "D-4,Approve,enabled,2025-04-01T09:00:00Z,,,,\n"  # new
             + "D-4,Approve,completed,2025-04-01T15:00:00Z,lisa.wong@acme.com,,,\n")
    r = post(srv, wf, april)
    assert r.status_code == 201, r.text
    assert (r.json()["added"], r.json()["updated"], r.json()["duplicates"]) == (1, 1, 1)
    items = stored(srv.db, wf)
    assert len(items) == GOOD_ITEMS + 1
    qualify = [i[2:6] for i in items if i[:2] == ("D-1", "Qualify")]
    assert qualify[1] == ("sarah.chen@acme.com", at("2025-03-05T09:00:00+01:00"), None,
                          at("2025-03-05T11:00:00+01:00"))
    updated = next(i for i in items if i[:2] == ("D-1", "Qualify") and i[4] is None)
    assert updated[6] == {"deal_acv": 40000, "zip": "02139", "segment": "enterprise"}
    # The loop sees each item once, the open one now closed.
    analysis = httpx.get(f"{srv.url}/api/v1/workflows/{wf}/mape-k/analysis", timeout=60)
    assert analysis.status_code == 200, analysis.text
    assert analysis.json()["stamp"]["observations"] == GOOD_ITEMS + 1, analysis.json()
    # The export has each item once, as the store has it.
    lines = export(srv, wf).text.splitlines()
    assert sum(",Qualify,completed," in line for line in lines) == 2
    assert sum(",Approve,enabled," in line for line in lines) == 2


def test_a_row_listed_twice_in_one_file_is_one_event(srv: Server, wf: str) -> None:
    # An exploratory test imported a file with each row twice (two overlapping exports
    # pasted together): one item became three, an open one that never closes (counted
    # as open work for ever) and a completion with no start; sent as two files, the
    # same rows were one item.
    rows = ["D-1,Qualify,enabled,2025-03-03T09:00:00Z,",
            "D-1,Qualify,completed,2025-03-03T10:00:00Z,sarah.chen@acme.com"]
    body = "case_id,task,event,timestamp,resource\n" + "".join(
        f"{r}\n{r}\n" for r in rows)
    r = post(srv, wf, body)
    assert r.status_code == 201, r.text
    assert (r.json()["rows"], r.json()["items"]) == (4, 1), r.json()
    assert [i[:6] for i in stored(srv.db, wf)] == [
        ("D-1", "Qualify", "sarah.chen@acme.com", at("2025-03-03T09:00:00Z"), None,
         at("2025-03-03T10:00:00Z"))]


def test_two_people_completing_a_task_in_the_same_second_are_two_items(
        srv: Server, wf: str) -> None:
    # Not a row listed twice: a completions-only log where two reps closed the same
    # task of a case at the same second.
    r = post(srv, wf, "case_id,task,event,timestamp,resource\n"
             "D-2,Qualify,completed,2025-03-03T10:00:00Z,alice@acme.com\n"
             "D-2,Qualify,completed,2025-03-03T10:00:00Z,bob@acme.com\n")
    assert r.status_code == 201, r.text
    assert sorted(i[2] for i in stored(srv.db, wf)) == ["alice@acme.com", "bob@acme.com"]


def test_the_tutorial_alias_names_the_workflow_too(srv: Server) -> None:
    r = post(srv, "wf_pricing_exception", "case_id,task,event,timestamp\n"
             "P-1,CheckMargin,completed,2025-01-02T03:04:05Z\n")
    assert r.status_code == 201, r.text
    assert r.json()["workflow_id"] == "pricing-exception"


def test_xes_lifecycle_names_are_accepted(srv: Server, wf: str) -> None:
    r = post(srv, wf, "Case_ID,Task,Event,Timestamp\n"
             "X-1,Qualify,schedule,2025-03-03T09:00:00Z\n"
             "X-1,Qualify,START,2025-03-03T09:10:00Z\n"
             "X-1,Qualify,complete,2025-03-03T09:20:00Z\n")
    assert r.status_code == 201, r.text
    assert r.json()["items"] == 1
    assert stored(srv.db, wf) == [("X-1", "Qualify", None, at("2025-03-03T09:00:00Z"),
                                   at("2025-03-03T09:10:00Z"), at("2025-03-03T09:20:00Z"),
                                   None)]


def test_a_bad_row_rejects_the_whole_file_located_by_line(srv: Server, wf: str) -> None:
    before = export(srv, wf).text
    # Line 11 is bad; the quoted task before it spans lines 9 and 10, so counting
    # records would say 10.
    bad = GOOD + 'D-3,"Two\nlines",completed,2025-03-07T09:00:00Z,,,,\n' \
        "D-3,Approve,finished,2025-03-07T09:00:00Z,,,,\n"
    body = error(post(srv, wf, bad), 422, 1002)
    assert [d["field"] for d in body["details"]] == ["line 11: event"]
    assert "'finished' is not one of enabled, started, completed" in body["message"]
    assert "nothing imported" in body["message"]
    assert stored(srv.db, wf) == []
    assert export(srv, wf).text == before


def test_every_problem_is_listed(srv: Server, wf: str) -> None:
    body = error(post(srv, wf, "case_id,task,event,timestamp\n"
                      ",A,enabled,2025-03-03T09:00:00Z\n"
                      "C,,started,yesterday\n"
                      "C,A,completed\n"), 422, 1002)
    assert [d["field"] for d in body["details"]] == [
        "line 2: case_id", "line 3: task", "line 3: timestamp", "line 4: row"]


def test_a_naive_timestamp_is_refused(srv: Server, wf: str) -> None:
    body = error(post(srv, wf, "case_id,task,event,timestamp\n"
                      "N-1,Qualify,enabled,2025-03-03T09:00:00Z\n"
                      "N-1,Qualify,completed,2025-03-03T10:00:00\n"), 422, 1002)
    assert body["details"][0]["field"] == "line 3: timestamp"
    assert "no UTC offset" in body["details"][0]["problem"]
    assert stored(srv.db, wf) == []


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59",
                                  "1899-12-31T23:59:59Z", "9000-01-01T00:00:00Z"])
def test_a_time_no_date_can_hold_is_refused(srv: Server, wf: str, when: str) -> None:
    """Year 0 or 10000 in UTC was stored, and from then on every recommendation (of
    every workflow: one cycle analyses them all), the analysis and the export failed
    with a 500 as they turned the item's time into a date."""
    body = error(post(srv, wf, "case_id,task,event,timestamp\n"
                      "Y-1,Qualify,enabled,2025-03-03T09:00:00Z\n"
                      f"Y-1,Qualify,completed,{when}\n"), 422, 1002)
    assert body["details"][0]["field"] == "line 3: timestamp"
    assert "out of range" in body["details"][0]["problem"]
    assert stored(srv.db, wf) == []
    assert export(srv, wf, "xes").status_code == 200
    r = httpx.get(f"{srv.url}/api/v1/workflows/{wf}/mape-k/recommendations", timeout=60)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("data", "field", "problem"), [
    (b"", "line 1: header", "empty file"),
    (b"case_id,task,event,timestamp\n", "line 2: row", "no rows"),
    (b"case_id,task,when\nA,B,C\n", "line 1: header", "missing column(s) event, timestamp"),
    (b"case_id,task,event,timestamp\nA,B,enabled,2025-03-03T09:00:00Z\nC,\xe9t\xe9,enabled,x\n",
     "line 3: body", "not UTF-8"),
    (b"case_id,task,event,timestamp\nA,B,enabled,2025-03-03T12:00:00Z\n"
     b"A,B,completed,2025-03-03T09:00:00Z\n", "line 3: timestamp", "precedes its enabled"),
])
def test_files_that_are_not_event_logs(srv: Server, wf: str, data: bytes, field: str,
                                       problem: str) -> None:
    body = error(post(srv, wf, data), 422, 1002)
    assert body["details"][0]["field"] == field
    assert problem in body["details"][0]["problem"]


def test_unknown_workflow_is_404(srv: Server) -> None:
    error(post(srv, "no-such-workflow", GOOD), 404, 2001)
    error(export(srv, "no-such-workflow"), 404, 2001)


def test_import_needs_a_permission(srv: Server, wf: str) -> None:
    body = error(post(srv, wf, GOOD, {"X-Caseloop-User": MANAGER}), 403, 3002)
    assert IMPORT_PERMISSION in body["message"]
    assert stored(srv.db, wf) == []


def test_wrong_content_type_is_415(srv: Server, wf: str) -> None:
    r = httpx.post(f"{srv.url}/api/v1/workflows/{wf}/history/import", json={"rows": []})
    assert error(r, 415, 1000)["details"][0]["field"] == "Content-Type"
    error(post(srv, wf, GOOD, {"Content-Type": "text/csv; charset=latin-1"}), 415, 1000)


def test_a_body_over_the_limit_is_413(srv: Server, wf: str) -> None:
    row = "B-1,Qualify,enabled,2025-03-03T09:00:00Z\n"
    big = "case_id,task,event,timestamp\n" + row * (MAX_HISTORY // len(row) + 1)
    assert error(post(srv, wf, big), 413, 1000)["details"][0]["field"] == "body"
    assert stored(srv.db, wf) == []


def test_an_idempotency_key_imports_once(srv: Server, wf: str) -> None:
    key = {"Idempotency-Key": "history-upload-1"}
    first = post(srv, wf, GOOD, key)
    again = post(srv, wf, GOOD, key)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert len(stored(srv.db, wf)) == GOOD_ITEMS
    error(post(srv, wf, GOOD + "D-9,Qualify,enabled,2025-03-03T09:00:00Z,,,,\n", key),
          422, 1004)


def test_uploads_sent_at_once_with_one_key_import_once(srv: Server, wf: str) -> None:
    """Three concurrent uploads with one key once imported three times (import_id 1, 2
    and 3): the key was looked up before any had stored its answer. Now they wait on
    the key's lock, as every other POST's do."""
    rows = "".join(f"C-{i},Qualify,completed,2025-03-03T09:00:00Z,,,,\n" for i in range(3000))
    body = GOOD + rows  # parsing takes long enough for the uploads to overlap
    key = {"Idempotency-Key": "history-upload-at-once"}
    start = threading.Barrier(3)

    def upload(_: int) -> httpx.Response:
        start.wait()
        return post(srv, wf, body, key)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(upload, range(3)))
    assert [a.status_code for a in answers] == [201] * 3, [a.text for a in answers]
    assert len({a.json()["import_id"] for a in answers}) == 1, [a.json() for a in answers]
    assert [a.headers.get("Idempotent-Replayed") for a in answers].count("true") == 2
    assert len(stored(srv.db, wf)) == GOOD_ITEMS + 3000


# ------------------------------------------------------------------------ export
def test_unknown_format_is_400(srv: Server, wf: str) -> None:
    body = error(export(srv, wf, "parquet"), 400, 1000)
    assert body["details"][0]["field"] == "format"


def test_csv_export_imports_into_another_workflow_as_the_same_items(
        srv: Server, wf: str) -> None:
    assert post(srv, wf, GOOD).status_code == 201
    out = export(srv, wf)
    assert out.status_code == 200
    assert out.headers["content-type"].startswith("text/csv")
    assert out.text.splitlines()[0] == "case_id,task,event,timestamp,resource,deal_acv," \
        "segment,zip"
    assert len(out.text.splitlines()) == 1 + GOOD_EVENTS
    other = f"{wf}-copy"
    r = httpx.post(srv.url + "/api/v1/workflows", json={"id": other, **SPEC})
    assert r.status_code == 201, r.text
    again = post(srv, other, out.text)
    assert again.status_code == 201, again.text
    assert again.json()["items"] == GOOD_ITEMS
    assert stored(srv.db, other) == stored(srv.db, wf)
    assert export(srv, other).text == out.text


def test_export_includes_cases_run_here(srv: Server) -> None:
    """A deal created and approved through the API shows in both formats."""
    case = "deal-history-1"
    r = httpx.post(srv.url + "/api/v1/workflows/deal-approval-gate/cases", json={
        "case_id": case, "data": {"deal_name": "History", "customer_name": "Hist Inc",
                                  "deal_acv": 40000, "discount_percent": 0}})
    assert r.status_code == 201, r.text
    r = httpx.post(f"{srv.url}/api/v1/cases/{case}/tasks/SendToSalesManager/complete",
                   json={"result": "approved"}, headers={"X-Caseloop-User": MANAGER})
    assert r.status_code == 200, r.text
    rows = [line.split(",") for line in export(srv, "deal-approval-gate").text.splitlines()]
    mine = [(r[1], r[2], r[4]) for r in rows if r[0] == case]
    assert ("SendToSalesManager", "enabled", "") in mine
    assert ("SendToSalesManager", "completed", MANAGER) in mine
    assert all(r[5] == "40000" for r in rows if r[0] == case)  # deal_acv, a case attribute
    xes = export(srv, "deal-approval-gate", "xes")
    assert xes.headers["content-type"].startswith("application/xml")
    assert f'<string key="concept:name" value="{case}"/>' in xes.text


@pytest.fixture
def xes_file(srv: Server, wf: str, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    assert post(srv, wf, GOOD).status_code == 201
    path = tmp_path / f"{wf}.xes"
    r = export(srv, wf, "xes")
    assert r.status_code == 200
    path.write_bytes(r.content)
    yield path


@pytest.mark.skipif(importlib.util.find_spec("pm4py") is None,
                    reason="pm4py is not installed (pip install -e '.[dev]')")
@pytest.mark.filterwarnings("ignore:Install the optional requirement")  # a faster parser
def test_the_xes_export_loads_in_pm4py(xes_file: pathlib.Path) -> None:
    import pm4py

    log = pm4py.read_xes(str(xes_file))
    assert len(log) == GOOD_EVENTS
    assert set(log["case:concept:name"]) == {"D-1", 'D-2, "quoted" & <b>'}
    assert set(log["lifecycle:transition"]) == {"schedule", "start", "complete"}
    d1 = log[log["case:concept:name"] == "D-1"]
    assert list(d1["concept:name"]) == ["Qualify"] * 3 + ["Approve"] * 2 + ["Qualify"]
    assert set(d1["case:deal_acv"]) == {40000}
    assert set(d1["case:zip"]) == {"02139"}
    first = d1["time:timestamp"].iloc[0]
    assert first.timestamp() == at("2025-03-03T09:00:00+01:00")
    assert "sarah.chen@acme.com" in set(d1["org:resource"])


# --------------------------------------------------------------------------- CLI
def caseloop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_import_and_export_on_the_store(server_factory: Any,
                                            tmp_path: pathlib.Path) -> None:
    """Import with the server stopped; a restart absorbs the history into the Monitor
    (the SLO compliance of SendToFinance counts the imported completions)."""
    srv = server_factory()
    srv.stop()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = ["case_id,task,event,timestamp,resource"]
    for n in range(3):
        t0 = now - dt.timedelta(hours=5 - n)
        t1 = t0 + dt.timedelta(hours=1.5 * n)
        rows += [f"C-{n},SendToFinance,enabled,{t0.isoformat()},",
                 f"C-{n},SendToFinance,completed,{t1.isoformat()},james.rodriguez@acme.com"]
    good = tmp_path / "good.csv"
    good.write_text("\n".join(rows) + "\n")
    done = caseloop("import", "--workflow", "deal-approval-gate", str(good), "--db",
                    str(srv.db))
    assert done.returncode == 0, done.stderr
    assert "imported 6 rows as 3 work items of 3 cases into deal-approval-gate" in done.stdout
    done = caseloop("import", "--workflow", "deal-approval-gate", str(good), "--db",
                    str(srv.db))
    assert done.returncode == 0, done.stderr
    assert "imported into deal-approval-gate before" in done.stdout, done.stdout

    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*rows, "C-9,SendToFinance,completed,2025-01-01 09:00,"]) + "\n")
    done = caseloop("import", "--workflow", "deal-approval-gate", str(bad), "--db",
                    str(srv.db))
    assert done.returncode == 1
    assert f"error {bad}: line 8: timestamp: '2025-01-01 09:00' has no UTC offset" \
        in done.stderr
    assert caseloop("import", "--workflow", "nope", str(good), "--db",
                    str(srv.db)).returncode == 1
    assert len(stored(srv.db, "deal-approval-gate")) == 3

    out = tmp_path / "out.xes"
    done = caseloop("export", "--workflow", "wf_deal_approval_gate", "--format", "xes",
                    "--out", str(out), "--db", str(srv.db))
    assert done.returncode == 0, done.stderr
    assert out.read_text().count("<event>") == 6
    done = caseloop("export", "--workflow", "deal-approval-gate", "--format", "csv",
                    "--db", str(srv.db))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("C-0,SendToFinance,enabled,")

    srv.start()
    metrics = httpx.get(srv.url + "/api/v1/workflows/deal-approval-gate/metrics",
                        params={"time_range": "1d"}).json()
    finance = next(t for t in metrics["tasks"] if t["task"] == "SendToFinance")
    assert (finance["completed"], finance["within_target"]) == (3, 2)  # 0, 1.5, 3 h


# ------------------------------------------------------- spreadsheet formulas (CSV)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
# History from another system whose text a spreadsheet would run: a case id, a task, a
# resource, an attribute's name and values; a negative figure, which is only a number.
FORMULAS = '''case_id,task,event,timestamp,resource,=evil,delta,note
=1+2,@Approve,enabled,2025-03-03T09:00:00+01:00,,x,-5,-2+3
=1+2,@Approve,completed,2025-03-03T10:00:00+01:00,"+cmd|' /C calc'!A0",,,
'''


def formula_cells(text: str) -> list[str]:
    return [c for row in csv.reader(io.StringIO(text, newline="")) for c in row
            if c.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(c)]


def test_csv_export_runs_no_formula_and_imports_back_the_same(srv: Server, wf: str) -> None:
    assert post(srv, wf, FORMULAS).status_code == 201
    (item,) = stored(srv.db, wf)
    assert item[:3] == ("=1+2", "@Approve", "+cmd|' /C calc'!A0")
    assert item[6] == {"=evil": "x", "delta": -5, "note": "-2+3"}
    out = export(srv, wf)
    assert out.status_code == 200
    assert formula_cells(out.text) == [], out.text
    assert out.text.splitlines()[:2] == [
        "case_id,task,event,timestamp,resource,'=evil,delta,note",
        "'=1+2,'@Approve,enabled,2025-03-03T08:00:00+00:00,,x,-5,'-2+3"]
    other = f"{wf}-copy"
    r = httpx.post(srv.url + "/api/v1/workflows", json={"id": other, **SPEC})
    assert r.status_code == 201, r.text
    assert post(srv, other, out.text).status_code == 201
    assert stored(srv.db, other) == stored(srv.db, wf)
    assert export(srv, other).text == out.text


def test_case_data_like_a_formula_exports_safely_over_http_and_the_cli(
        server_factory: Any) -> None:
    srv = server_factory()
    # Case data the export carries (the Monitor's kept attributes), typed by whoever
    # entered the deal; and a case id the API allows.
    named = {"industry": '=HYPERLINK("http://evil.example","Open")',
             "segment": "'=1+1"}  # an apostrophe of its own: kept
    r = httpx.post(srv.url + "/api/v1/workflows/deal-approval-gate/cases", json={
        "case_id": "@deal-1", "data": {**named, "deal_name": "D", "customer_name": "C",
                                       "deal_acv": 40000, "discount_percent": 0}})
    assert r.status_code == 201, r.text
    over_http = export(srv, "deal-approval-gate").text
    srv.stop()
    done = caseloop("export", "--workflow", "deal-approval-gate", "--format", "csv",
                    "--db", str(srv.db))
    assert done.returncode == 0, done.stderr
    for text in (over_http, done.stdout):
        assert formula_cells(text) == [], text
        attributes = parse_history(text.encode()).attributes
        assert {k: attributes["@deal-1"][k] for k in named} == named


def test_imported_acv_that_is_no_number_leaves_the_stats_working(
        caseloop_server: Server) -> None:
    # /stats adds up the ACV of booked deals, imported ones included; a CRM export's
    # "n/a" or "$120,000" made it a 500 for good (the dashboard's overview with it).
    body = "case_id,task,event,timestamp,deal_acv\n" + "".join(
        f"R-{i},BookRevenue,{ev},2025-03-0{i}T{h}:00:00Z,{acv}\n"
        for i, acv in ((1, "1000"), (2, "n/a"), (3, '"$120,000"'))
        for ev, h in (("enabled", "09"), ("completed", "10")))
    r = post(caseloop_server, "revenue-recognition", body)
    assert r.status_code == 201, r.text
    r = httpx.get(caseloop_server.url + "/api/v1/stats")
    assert r.status_code == 200, r.text
    conversion = r.json()["conversion"]
    assert (conversion["deals_booked"], conversion["booked_acv"]) == (3, 1000.0)


def test_a_number_beyond_float_range_stays_text_and_later_imports_still_update(
        srv: Server, wf: str) -> None:
    # "1.0e999" parsed to inf and was stored as `{"x": Infinity}`, which is no JSON:
    # the next import completing the same item met SQLite's json_patch -> 500.
    head = "case_id,task,event,timestamp,x\n"
    first = head + "B-1,Qualify,enabled,2025-03-03T09:00:00Z,1.0e999\n"
    assert post(srv, wf, first).status_code == 201
    r = post(srv, wf, first + "B-1,Qualify,completed,2025-03-03T10:00:00Z,\n")
    assert r.status_code == 201, r.text
    assert r.json()["updated"] == 1
    [item] = stored(srv.db, wf)
    assert item[5] is not None and item[6] == {"x": "1.0e999"}


def test_a_wide_header_is_checked_in_linear_time() -> None:
    # Duplicate columns were found with a list search per column: 100,000 columns
    # (a 0.9 MB file, of the 50 MiB allowed) took over two minutes of CPU.
    n = 200_000
    data = ("case_id,task,event,timestamp," + ",".join(f"c{i}" for i in range(n)) + "\n"
            + "K-1,Qualify,enabled,2025-03-03T09:00:00Z," + ",".join("1" * n) + "\n")
    started = time.perf_counter()
    history = parse_history(data.encode())
    assert time.perf_counter() - started < 20  # ~0.5 s; quadratic: ~10 minutes
    assert len(history.attributes["K-1"]) == n


def test_a_header_wrong_throughout_is_refused_in_a_bounded_answer(
        srv: Server, wf: str) -> None:
    # 300 KB of commas: 300,000 nameless columns, each once a problem of its own and
    # listed again after "found:" -- a 20 MB answer, 66 bytes per byte sent.
    r = post(srv, wf, "," * 300_000 + "\n")
    err = error(r, 422, 1002)
    assert len(err["details"]) == MAX_PROBLEMS
    assert len(r.content) < 16_384
