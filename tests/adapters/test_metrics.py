"""`GET /metrics` against a real `caseloop serve`: every number is checked against what
the test did or against another route that counts the same thing -- no mocks.

- commands move the counters by exactly what they did: task completions (and the
  histories agree), the command latency histogram (per route and status class; reads
  are not timed), cases by workflow and state (equal to /api/v1/stats);
- time moving past an SLO's alert raises breaches (counted as the histories record
  them, open until resolved), whose notification to a dead receiver becomes a dead
  letter in the outbox gauge as /api/v1/outbox lists it;
- after a restart the counters continue from the store's totals, the histogram starts
  afresh, and in token mode /metrics still needs no token (as /health);
- on a store filled by `caseloop simulate`, applying a MAPE-K recommendation moves it
  from ready_to_apply to applied in the recommendations gauge;
- the server's collector runs at `caseloop serve`'s pace, its pauses timed.
"""

from __future__ import annotations

import datetime as dt
import gc
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml
from http_kit import Server, free_port, make_tokens, poll
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from test_pipeline_http import SDR, START, TECHCORP_LEAD, Api

from adapters.collector import YOUNG

LEADS = "lead-qualification"
RECEIVE = "ReceiveMarketingLead"  # slos.yaml: alert after 4 h, as the lead's stay
COMPLETE = "/api/v1/cases/{case_id}/tasks/{task}/complete"
CREATE = "/api/v1/workflows/{workflow_id}/cases"
COMPLETIONS = "caseloop_task_completions_total"
BREACHES = "caseloop_sla_breaches_total"
OPEN_BREACHES = "caseloop_sla_breaches_open"
LATENCY = "caseloop_command_duration_seconds"
GC = "caseloop_gc_pause_seconds"
GC_THRESHOLD = "caseloop_gc_threshold"


class Scrape:
    """One exposition, parsed by prometheus-client's own parser."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        r = httpx.get(url + "/metrics", headers=headers or {}, timeout=60.0)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == CONTENT_TYPE_LATEST
        self.samples = [s for fam in text_string_to_metric_families(r.text)
                        for s in fam.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
        return sum(s.value for s in self.samples if s.name == name
                   and all(s.labels.get(k) == v for k, v in labels.items()))

    def series(self, name: str, *keys: str) -> dict[tuple[str, ...], float]:
        return {tuple(s.labels[k] for k in keys): s.value for s in self.samples
                if s.name == name}


def lead(i: int) -> dict[str, Any]:
    return {**TECHCORP_LEAD, "contact_email": f"buyer{i}@techcorp.com"}


def history_counts(api: Api, case_ids: list[str]) -> tuple[dict[tuple[str, str], int],
                                                            dict[tuple[str, str], int]]:
    """(completions, SLA breaches) by (workflow, task) as the cases' histories tell
    them; a breach of the stay in a workflow (item 0) under task ""."""
    done: dict[tuple[str, str], int] = {}
    breached: dict[tuple[str, str], int] = {}
    for cid in case_ids:
        wf = ""
        for e in api.history(cid):
            if e["type"] in ("CaseCreated", "WorkflowEntered"):
                wf = e["workflow_id"]
            elif e["type"] in ("TaskCompleted", "TaskRouted"):
                done[(wf, e["task"])] = done.get((wf, e["task"]), 0) + 1
            elif e["type"] == "SlaBreached":
                key = (wf, "" if e["item"] == 0 else e["task"])
                breached[key] = breached.get(key, 0) + 1
    return done, breached


def assert_cases_match_stats(api: Api, scrape: Scrape) -> None:
    stats = api.ok(api.get("/stats"))["workflows"]
    assert stats, "no workflows"
    gauge = scrape.series("caseloop_cases", "workflow", "state")
    assert gauge == {(w["workflow_id"], state): float(w[state]) for w in stats
                     for state in ("active", "completed", "cancelled", "failed")}


def test_counters_histogram_gauges_and_dead_letters_follow_what_was_done(
        server_factory: Callable[..., Server], tmp_path: pathlib.Path) -> None:
    # Breach notices go to Slack (slos.yaml), here a port nobody listens on: one
    # attempt, and each is a dead letter.
    channels = tmp_path / "channels.yaml"
    channels.write_text(yaml.safe_dump({
        "slack": {"url": f"http://127.0.0.1:{free_port()}/slack"},
        "outbox": {"attempts": 1, "poll": 0.2}}))
    args = ("--virtual-clock", START, "--channels", str(channels))
    srv = server_factory(*args)
    api = Api(srv)
    before = Scrape(srv.url)
    assert before.value(COMPLETIONS) == 0 and before.value(LATENCY + "_count") == 0

    cases = [f"lead_m{i}" for i in range(3)]
    for i, cid in enumerate(cases):
        api.create(LEADS, cid, lead(i))
    for cid in cases[:2]:
        api.ok(api.complete(cid, RECEIVE, SDR, "received"))
    api.error(api.complete(cases[0], RECEIVE, SDR, "received"), 409)  # done already
    api.settle()
    assert_cases_match_stats(api, after := Scrape(srv.url))

    # Completions: exactly the two made, and everything the histories hold.
    assert after.value(COMPLETIONS, workflow=LEADS, task=RECEIVE) == 2
    done, _ = history_counts(api, cases)
    assert after.series(COMPLETIONS, "workflow", "task") == {k: float(n)
                                                             for k, n in done.items()}
    # Latency: one observation per command, by route and status class; reads untimed.
    assert after.value(LATENCY + "_count", route=CREATE, code="2xx") == 3
    assert after.value(LATENCY + "_count", route=COMPLETE, code="2xx") == 2
    assert after.value(LATENCY + "_count", route=COMPLETE, code="4xx") == 1
    assert after.value(LATENCY + "_bucket", route=COMPLETE, code="2xx", le="+Inf") == 2
    assert 0 < after.value(LATENCY + "_sum", route=COMPLETE) < 60
    assert not [s for s in after.samples if s.name.startswith(LATENCY)
                and s.labels.get("method") not in (None, "POST")]
    assert after.value(BREACHES) == 0 and after.value(OPEN_BREACHES) == 0
    # Past the 4 h alerts: the third lead's unreceived task and every lead's stay in
    # lead-qualification (none has left it) are breached.
    api.advance("5h")
    breached = Scrape(srv.url)
    _, from_history = history_counts(api, cases)
    assert from_history == {(LEADS, RECEIVE): 1, (LEADS, ""): 3}
    assert breached.series(BREACHES, "workflow", "task") == {
        k: float(n) for k, n in from_history.items()}
    assert breached.series(OPEN_BREACHES, "workflow", "task") == {
        k: float(n) for k, n in from_history.items()}
    # Receiving the late lead resolves its task's breach; the count of raised stays.
    api.ok(api.complete(cases[2], RECEIVE, SDR, "received"))
    api.settle()
    resolved = Scrape(srv.url)
    assert resolved.value(OPEN_BREACHES, task=RECEIVE) == 0
    assert resolved.value(OPEN_BREACHES, task="") == 3
    assert resolved.value(BREACHES, task=RECEIVE) == 1
    assert resolved.value(COMPLETIONS, task=RECEIVE) == 3

    # Each breach told Slack once; nobody answers: four dead letters, no backlog.
    def dead() -> list[dict[str, Any]]:
        return api.ok(api.get("/outbox", state="dead"))["notifications"]  # type: ignore[no-any-return]

    assert len(poll(dead, lambda rows: len(rows) == 4)) == 4
    outbox = Scrape(srv.url)
    assert outbox.series("caseloop_outbox_notifications", "state") == {
        ("pending",): 0.0, ("claimed",): 0.0, ("dead",): 4.0}
    assert_cases_match_stats(api, outbox)
    # The server's collector, at the pace `caseloop serve` sets: young collections
    # every YOUNG allocations, the older generations at the interpreter's default. (So
    # a test's few commands make none; the histogram of their pauses is tested below,
    # test_gc_pauses_are_timed_by_generation_while_installed.)
    assert outbox.series(GC_THRESHOLD, "generation") == {
        ("0",): YOUNG, ("1",): gc.get_threshold()[1], ("2",): gc.get_threshold()[2]}
    totals = (outbox.series(COMPLETIONS, "workflow", "task"),
              outbox.series(BREACHES, "workflow", "task"))
    api.close()

    # A restart in token mode: counters rebuilt from the store, histogram from zero,
    # and /metrics, like /health, wants no token while the API does.
    tokens, _ = make_tokens(tmp_path, SDR)
    # (And at the interpreter's own collector pace, as `--collector default` asks.)
    srv.restart(*args, "--tokens", str(tokens), "--collector", "default")
    assert httpx.get(srv.url + "/api/v1/stats").status_code == 401
    again = Scrape(srv.url)
    assert (again.series(COMPLETIONS, "workflow", "task"),
            again.series(BREACHES, "workflow", "task")) == totals
    assert again.value("caseloop_outbox_notifications", state="dead") == 4
    assert again.value(LATENCY + "_count") == 0
    assert again.value(GC_THRESHOLD, generation="0") == gc.get_threshold()[0] != YOUNG


def test_recommendations_by_status_follow_an_apply(
        server_factory: Callable[..., Server], simulated_db: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    db = tmp_path / "pipeline.db"
    shutil.copy(simulated_db, db)  # the session's store is read by others: a copy
    # On a virtual clock standing at now: the history's timers that fell due since it
    # was simulated fire at the first advance, and none while the test compares
    # counters (on the system clock they fired whenever the start-up got to them: on a
    # busy machine, between the two scrapes of "no work done").
    now = dt.datetime.now(dt.UTC).isoformat()
    srv = server_factory("--virtual-clock", now, db=db)
    api = Api(srv)
    try:
        api.ok(api.post("/clock/advance", {"by": "0s"}))  # what was due, done
        ready = []
        for wf in api.ok(api.get("/workflows"))["workflows"]:
            wid = wf["workflow_id"]
            # (`current`: analysed over the history as it is; a busy machine may take
            # longer than a request waits)
            found = poll(lambda w=wid: api.ok(api.get(f"/workflows/{w}/mape-k/recommendations")),
                         lambda body: body["current"], timeout=120)
            ready += [(wid, r) for r in found["recommendations"]
                      if r["status"] == "ready_to_apply"]
        assert ready, "the simulated store should yield a recommendation"
        wid, rec = ready[0]
        before = Scrape(srv.url)
        assert_cases_match_stats(api, before)
        labels = {"workflow": wid, "type": rec["type"]}
        n_ready = before.value("caseloop_recommendations", **labels, status="ready_to_apply")
        assert n_ready == sum(1 for w, r in ready if w == wid and r["type"] == rec["type"])
        assert before.value("caseloop_recommendations", **labels, status="applied") == 0
        assert before.value(COMPLETIONS) > 0  # the simulated history, read from the log

        applied = api.ok(api.post(
            f"/workflows/{wid}/mape-k/recommendations/{rec['id']}/apply", {}))
        assert applied["status"] == "applied"
        after = Scrape(srv.url)
        assert after.value("caseloop_recommendations", **labels,
                           status="ready_to_apply") == n_ready - 1
        assert after.value("caseloop_recommendations", **labels, status="applied") == 1
        assert after.value(COMPLETIONS) == before.value(COMPLETIONS)  # no work done

        # Imported history is another system's work: the loop learns from it, the
        # completions counter (this engine's work) does not move.
        csv = ("case_id,task,event,timestamp\n"
               "x-1,SendForSignature,enabled,2025-03-03T09:00:00+00:00\n"
               "x-1,SendForSignature,completed,2025-03-03T11:30:00+00:00\n")
        r = api.http.post(f"/workflows/{wid}/history/import", content=csv.encode(),
                          headers={"Content-Type": "text/csv"})
        assert r.status_code in (200, 201), r.text
        assert Scrape(srv.url).value(COMPLETIONS) == before.value(COMPLETIONS)
    finally:
        api.close()


def test_gc_pauses_are_timed_by_generation_while_installed() -> None:
    """The collector's pauses, as the histogram counts them: a full collection made here
    is one in generation 2, its seconds in the sum and in the +Inf bucket; once the app
    that installed it stops, collections are no longer counted (nor is it called)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from adapters.http.metrics import GcPauses

    pauses = GcPauses()
    registry = CollectorRegistry()
    registry.register(pauses)

    def full() -> tuple[float, float]:
        fam = {s.name: s for f in text_string_to_metric_families(
            generate_latest(registry).decode()) for s in f.samples
               if s.labels.get("generation") == "2" and s.labels.get("le") in (None, "+Inf")}
        return fam[GC + "_count"].value, fam[GC + "_bucket"].value

    pauses.install()
    try:
        gc.collect(2)
        gc.collect(2)
        count, inf = full()
        assert count == inf == 2
        assert pauses.series[("2",)][-1] > 0  # seconds
    finally:
        pauses.uninstall()
    assert pauses not in gc.callbacks
    gc.collect(2)
    assert full()[0] == 2
    pauses.uninstall()  # twice: no error (a lifespan's finally)


@pytest.mark.anyio
async def test_the_app_times_its_processs_collections_while_it_serves(
        tmp_path: pathlib.Path) -> None:
    """The app's lifespan installs the pause histogram: a collection in its process
    while it serves is counted in /metrics (made here: at `caseloop serve`'s pace a
    test's few commands need not make one); once it stops, none is timed."""
    from http_kit import in_process

    from adapters.http.metrics import GcPauses

    async with in_process(tmp_path) as api:
        gc.collect(0)
        gc.collect(2)
        r = await api.get("/metrics")
        assert r.status_code == 200, r.text
        samples = [s for f in text_string_to_metric_families(r.text) for s in f.samples]
        counts = {s.labels["generation"]: s.value for s in samples if s.name == GC + "_count"}
        assert counts.get("0", 0) >= 1 and counts.get("2", 0) >= 1, counts
        assert any(isinstance(cb, GcPauses) for cb in gc.callbacks)
    assert not any(isinstance(cb, GcPauses) for cb in gc.callbacks)


def test_the_serving_pace_holds_while_serving_and_is_undone_after() -> None:
    """`caseloop serve`'s pace (adapters/collector.py): young collections every YOUNG
    allocations inside the block, the thresholds as they were after it -- an error
    leaving it too."""
    from adapters.collector import serving_pace

    was = gc.get_threshold()
    gc.set_threshold(700, 11, 12)  # whatever the process had: kept, not reset to 700
    try:
        with pytest.raises(RuntimeError), serving_pace():
            assert gc.get_threshold() == (YOUNG, 11, 12)
            raise RuntimeError("the server failed")
        assert gc.get_threshold() == (700, 11, 12)
    finally:
        gc.set_threshold(*was)
