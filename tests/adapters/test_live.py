"""The live stream (`GET /api/v1/events/stream`, server-sent events) on a real
`caseloop serve` over a store filled by `caseloop simulate`: a completion made through
the API is announced as a `log` event, applying and rolling back a recommendation as
`recommendations` events; a reconnecting client that missed appends hears of them at
once; without `Accept: text/event-stream` the answer ends after `hello`; and a server
told to stop with a stream open stops promptly (uvicorn waits for open responses
before the app's shutdown: the stream must end by itself).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_kit import Server, serving

DIRECTOR = "olivia.bennett@acme.com"
LEGAL = "priya.patel@acme.com"
FOLLOW = {"Accept": "text/event-stream"}
WAIT = 20.0  # seconds for an awaited event (a tick is 1 s; the CI machine is shared)


@pytest.fixture(scope="module")
def server(simulated_db: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("live")
    db = work / "pipeline.db"
    shutil.copy(simulated_db, db)
    with serving(work, db=db) as srv:
        wait_for_quiet_log(srv.url)  # the start's own appends, before any test reads
        yield srv


def wait_for_quiet_log(url: str, quiet: float = 3.0, limit: float = 30.0) -> None:
    """Until the event log stopped growing for `quiet` seconds: automatic tasks the
    simulation left running complete within seconds of the start."""
    def pos() -> int:
        r = httpx.get(url + "/api/v1/events/stream", timeout=10.0)
        return int(next(x for x in r.text.splitlines() if x.startswith("id: "))[4:])

    began = changed = time.monotonic()
    last = pos()
    while time.monotonic() - changed < quiet and time.monotonic() - began < limit:
        time.sleep(0.5)
        if (now := pos()) != last:
            last, changed = now, time.monotonic()


def events(lines: Iterator[str], deadline: float) -> Iterator[dict[str, Any]]:
    """SSE events ({"event", "id", "data"}) from a line iterator, until `deadline`."""
    fields: dict[str, Any] = {}
    for line in lines:
        if time.monotonic() > deadline:
            return
        if line == "":
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def wait_for(lines: Iterator[str], kind: str, until: Any = lambda e: True) -> dict[str, Any]:
    for e in events(lines, time.monotonic() + WAIT):
        if e["event"] == kind and until(e):
            return e
    raise AssertionError(f"no {kind!r} event within {WAIT} s")


def open_item(api: httpx.Client) -> tuple[str, str]:
    items = api.get("/today", params={"user": LEGAL}).json()["items"]
    item = next(i for i in items if i["task"] == "SendToLegal")
    return item["case_id"], item["task"]


def test_hello_alone_without_accept(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        r = http.get("/api/v1/events/stream")  # reads to the end: it must end
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["cache-control"] == "no-cache"
    found = list(events(iter(r.text.split("\n")), time.monotonic() + 5))
    assert [e["event"] for e in found] == ["hello"]
    hello = found[0]
    assert hello["data"]["kind"] == "hello" and hello["data"]["pos"] > 1000
    assert hello["id"] == str(hello["data"]["pos"])
    assert "retry: " in r.text


def test_recommendation_status_changes_are_announced(server: Server) -> None:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=60.0) as api:
        wf = "contract-processing"
        recs = api.get(f"/workflows/{wf}/mape-k/recommendations").json()["recommendations"]
        rec = next(r for r in recs if r["status"] == "ready_to_apply")
        with api.stream("GET", "/events/stream", headers=FOLLOW) as stream:
            lines = stream.iter_lines()
            hello = wait_for(lines, "hello")
            assert {"id": rec["id"], "workflow_id": wf, "status": "ready_to_apply"} in \
                hello["data"]["recommendations"]
            base = f"/workflows/{wf}/mape-k/recommendations/{rec['id']}"
            r = api.post(base + "/apply", json={}, headers={"X-Caseloop-User": DIRECTOR})
            assert r.status_code == 200, r.text
            applied = wait_for(lines, "recommendations")
            assert applied["data"]["recommendations"] == [
                {"id": rec["id"], "workflow_id": wf, "status": "applied"}]
            r = api.post(base + "/rollback", json={}, headers={"X-Caseloop-User": DIRECTOR})
            assert r.status_code == 200, r.text
            back = wait_for(lines, "recommendations")
            assert back["data"]["recommendations"][0]["status"] == "rolled_back"


def test_completion_through_the_api_is_announced(server: Server) -> None:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=WAIT) as api, \
            api.stream("GET", "/events/stream", headers=FOLLOW) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        hello = wait_for(lines, "hello")
        case_id, task = open_item(api)
        done = api.post(f"/cases/{case_id}/tasks/{task}/complete",
                        json={"result": "approved", "completed_by": LEGAL})
        assert done.status_code == 200, done.text
        log = wait_for(lines, "log")
        assert log["data"]["pos"] > hello["data"]["pos"]
        assert log["id"] == str(log["data"]["pos"])


def test_a_reconnecting_client_hears_of_what_it_missed(server: Server) -> None:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=WAIT) as api, \
            api.stream("GET", "/events/stream",
                       headers={**FOLLOW, "Last-Event-ID": "1"}) as stream:
        lines = stream.iter_lines()
        hello = wait_for(lines, "hello")
        missed = wait_for(lines, "log")
        assert missed["data"]["pos"] == hello["data"]["pos"]


def test_shutdown_does_not_wait_for_an_open_stream(tmp_path: Any) -> None:
    srv = Server(tmp_path)
    srv.start()
    outcome: dict[str, Any] = {}

    def follow() -> None:
        try:
            with httpx.stream("GET", srv.url + "/api/v1/events/stream", headers=FOLLOW,
                              timeout=30.0) as r:
                kinds = [e["event"] for e in events(r.iter_lines(), time.monotonic() + 30)]
            outcome["kinds"] = kinds
        except httpx.HTTPError as exc:  # the server went away mid-stream
            outcome["error"] = repr(exc)

    reader = threading.Thread(target=follow, daemon=True)
    try:
        reader.start()
        time.sleep(1.5)  # connected, hello read, the stream idling in its tick
        began = time.monotonic()
        srv.stop()  # SIGTERM; killed only after a 10 s grace period
        took = time.monotonic() - began
    finally:
        srv.stop()
    reader.join(5)
    assert took < 5.0, f"shutdown took {took:.1f} s with a stream open:\n{srv.stderr}"
    assert "timeout graceful shutdown exceeded" not in srv.stderr
    assert outcome.get("kinds", [None])[0] == "hello", outcome  # ended cleanly, not cut
