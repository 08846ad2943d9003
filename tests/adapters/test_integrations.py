"""Integrations over real HTTP: the e-signature action of contract-processing POSTs its
work item to a webhook and the case waits for the other system's callback
(`POST /api/v1/cases/{case}/signals/SendForSignature`).

Everything is real: a local HTTP receiver (a threaded `http.server` recording every
request, or answering 500), and `caseloop serve` in a subprocess over a copy of the
shipped specs whose integrations.yaml points `e_signature` at the receiver and
`callback_base` at the server itself (the server's port is chosen up front, so the
callback_url the receiver gets is the one it calls -- also after a restart).

A failing receiver is retried by the runtime's retry policy (4 tries, 1-2-4 s
backoff, not configurable from `caseloop serve`); that test runs the server on a
virtual clock (`--virtual-clock`) and moves it with `POST /api/v1/clock/advance`, so
the backoff takes no wall time.

Finding I1 (fixed): an awaited item taken up again through
`POST /incidents/{case}/{item}/retry` was not marked as awaiting its callback -- the
retry starts the item as the person who retried it, and AWAIT_CALLBACK only claimed an
*enabled* item -- so after a restart `_recover` ran the action again and the receiver
got a second POST. The hand-over now reassigns a started item to "awaiting:<action>"
(`WorkItemReassigned`, actors/runtime.py `_hand_over`).
"""

from __future__ import annotations

import http.server
import json
import pathlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import http_kit
import httpx
import pytest
from http_kit import SPECS, Server, free_port

API = "/api/v1"
MANAGER = "marcus.thompson@acme.com"
FINANCE = "james.rodriguez@acme.com"
INTEGRATION = "integrations@acme.com"
SDR = "sarah.chen@acme.com"
DEAL = {"deal_name": "Acme Small", "customer_name": "Acme", "deal_acv": 40000,
        "discount_percent": 0}
WAIT = 15.0  # seconds to wait for the server to act on its own


# ------------------------------------------------------------ the other system
@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Receiver:
    """A webhook receiver on a free port; records every POST, answers `status`."""

    status: int = 200
    seen: list[Seen] = field(default_factory=list)
    # Called with each POST's body before it is answered (a system quick to call back).
    before_answering: Callable[[dict[str, Any]], None] | None = None
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                receiver.seen.append(Seen(self.path, {k.lower(): v for k, v in
                                                      self.headers.items()}, body))
                if receiver.before_answering is not None:
                    receiver.before_answering(body)
                out = json.dumps({"ok": receiver.status < 400}).encode()
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def posts(self, path: str = "/esign") -> list[Seen]:
        return [s for s in self.seen if s.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


# --------------------------------------------------------------- the server
@pytest.fixture
def esign_server(tmp_path: pathlib.Path, receiver: Receiver,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Start `caseloop serve` over a copy of specs/ with e_signature on the receiver.
    The server's port is fixed before start, so callback_base can name it."""
    started: list[Server] = []

    def start(*extra: str, local: str | None = None) -> Server:
        """`local`: e_signature without a webhook, completing itself after that."""
        port = free_port()
        monkeypatch.setattr(http_kit, "free_port", lambda: port)
        specs = tmp_path / f"specs{len(started)}"
        specs.mkdir()
        for f in [*SPECS.glob("*.json"), *(SPECS / n for n in ("roles.yaml", "icp.yaml",
                                                               "slos.yaml"))]:
            shutil.copy(f, specs / f.name)
        (specs / "integrations.yaml").write_text(
            f"callback_base: http://127.0.0.1:{port}\n"
            "actions:\n"
            + (f"  e_signature: {{webhook: '{receiver.url}/esign', local_delay: 0s}}\n"
               if local is None else
               f"  e_signature: {{local_delay: {local}, local_result: signed}}\n") +
            "  send_invoice: {local_delay: 0s}\n"
            "  setup_billing: {local_delay: 0s}\n", encoding="utf-8")
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        srv = Server(workdir, specs=specs)
        started.append(srv)
        srv.start(*extra)
        assert srv.port == port
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


def call(srv: Server, method: str, path: str, body: Any = None, user: str | None = None,
         ) -> httpx.Response:
    headers = {"X-Caseloop-User": user} if user else {}
    return httpx.request(method, srv.url + API + path, json=body, headers=headers,
                         timeout=30.0)


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    return r.json()  # type: ignore[no-any-return]


def error_code(r: httpx.Response) -> int:
    return int(r.json()["error"]["code"])


def eventually(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def approve_deal(srv: Server, case_id: str) -> None:
    """A 40K deal: only the manager and finance approve; then contract-processing."""
    view = ok(call(srv, "POST", "/workflows/deal-approval-gate/cases",
                   {"case_id": case_id, "data": DEAL}), 201)
    assert sorted(view["enabled_tasks"]) == ["SendToFinance", "SendToSalesManager"]
    ok(call(srv, "POST", f"/cases/{case_id}/tasks/SendToSalesManager/complete",
            {"result": "approved"}, MANAGER))
    ok(call(srv, "POST", f"/cases/{case_id}/tasks/SendToFinance/complete",
            {"result": "approved"}, FINANCE))


def signature_item(view: dict[str, Any]) -> dict[str, Any] | None:
    items = [w for w in view["work_items"] if w["task"] == "SendForSignature"]
    return items[0] if items else None


def awaiting(srv: Server, case_id: str) -> dict[str, Any]:
    """The case once its SendForSignature item is started by the awaiting action."""
    def check() -> dict[str, Any] | None:
        view = ok(call(srv, "GET", f"/cases/{case_id}"))
        it = signature_item(view)
        return view if it and it["assignee"] == "awaiting:e_signature" else None
    return eventually(check, "SendForSignature awaiting its callback")  # type: ignore[no-any-return]


def sent_for_signature(srv: Server, receiver: Receiver, case_id: str) -> Seen:
    eventually(receiver.posts, "the e-signature webhook POST")
    view = awaiting(srv, case_id)
    (post,) = receiver.posts()
    it = signature_item(view)
    assert it is not None
    assert post.body["key"] == f"{case_id}:{it['item']}"
    return post


# ------------------------------------------------------------------ the flow
def test_esignature_posts_once_waits_and_the_callback_completes_it(
        esign_server: Callable[..., Server], receiver: Receiver) -> None:
    srv = esign_server()
    case_id = "deal_esign_1"
    approve_deal(srv, case_id)
    post = sent_for_signature(srv, receiver, case_id)

    view = ok(call(srv, "GET", f"/cases/{case_id}"))
    assert view["workflow_id"] == "contract-processing" and view["state"] == "active"
    assert "SendForSignature" in view["enabled_tasks"]
    item = signature_item(view)
    assert item is not None
    assert (item["kind"], item["state"], item["assignee"]) == (
        "automatic", "started", "awaiting:e_signature")

    body = post.body
    key = f"{case_id}:{item['item']}"
    assert body["key"] == key and post.headers["idempotency-key"] == key
    assert (body["action"], body["case_id"], body["task"], body["workflow_id"],
            body["item"], body["attempt"]) == ("e_signature", case_id, "SendForSignature",
                                               "contract-processing", item["item"], 1)
    assert body["callback_url"] == (f"{srv.url}{API}/cases/{case_id}/signals/"
                                    "SendForSignature")
    assert body["callback_url"].endswith(f"/api/v1/cases/{case_id}/signals/SendForSignature")
    assert body["data"]["deal_acv"] == 40000 and body["data"]["approval_status"] == "approved"
    assert post.headers["content-type"].startswith("application/json")

    time.sleep(0.5)  # nothing more is sent while the case waits
    assert len(receiver.posts()) == 1
    assert receiver.seen == receiver.posts()

    # a person without send_signals cannot sign for the customer
    r = httpx.post(body["callback_url"], json={"result": "signed"},
                   headers={"X-Caseloop-User": SDR}, timeout=30.0)
    assert r.status_code == 403 and error_code(r) == 3002
    assert signature_item(ok(call(srv, "GET", f"/cases/{case_id}"))) == item

    # the other system calls back
    r = httpx.post(body["callback_url"], json={"result": "signed"},
                   headers={"X-Caseloop-User": INTEGRATION}, timeout=30.0)
    view = ok(r)
    assert view["workflow_id"] == "revenue-recognition", view
    assert view["data"]["contract_status"] == "signed"
    history = ok(call(srv, "GET", f"/cases/{case_id}/history"))["events"]
    done = [e for e in history if e["type"] == "TaskCompleted"
            and e.get("task") == "SendForSignature"]
    assert [(e["result"], e["by"]) for e in done] == [("signed", INTEGRATION)]

    # a second callback finds the work done: 3004, as a second completion (the
    # service's retry must not read "no such work", 2003)
    r = httpx.post(body["callback_url"], json={"result": "signed"},
                   headers={"X-Caseloop-User": INTEGRATION}, timeout=30.0)
    assert r.status_code == 409 and error_code(r) == 3004
    # a signal nobody waits for
    r = call(srv, "POST", f"/cases/{case_id}/signals/NoSuchSignal", {"result": "x"},
             INTEGRATION)
    assert r.status_code in (404, 409) and error_code(r) in (2001, 2002, 2003)
    assert "NoSuchSignal" in r.json()["error"]["message"]
    # still exactly one POST to the other system
    assert len(receiver.posts()) == 1


def test_a_signal_for_an_unknown_case_is_404(esign_server: Callable[..., Server]) -> None:
    srv = esign_server()
    r = call(srv, "POST", "/cases/no_such_case/signals/SendForSignature",
             {"result": "signed"}, INTEGRATION)
    assert r.status_code == 404 and error_code(r) == 2003


def test_a_declined_signature_ends_the_contract(esign_server: Callable[..., Server],
                                                receiver: Receiver) -> None:
    srv = esign_server()
    approve_deal(srv, "deal_declined")
    post = sent_for_signature(srv, receiver, "deal_declined")
    view = ok(call(srv, "POST", "/cases/deal_declined/signals/SendForSignature",
                   {"result": "declined"}, INTEGRATION))
    assert view["state"] == "completed" and view["workflow_id"] == "contract-processing"
    assert view["data"]["contract_status"] == "rejected"
    assert post.body["task"] == "SendForSignature" and len(receiver.posts()) == 1


def test_a_restart_does_not_post_again_and_the_callback_still_completes(
        esign_server: Callable[..., Server], receiver: Receiver) -> None:
    srv = esign_server()
    case_id = "deal_restart"
    approve_deal(srv, case_id)
    post = sent_for_signature(srv, receiver, case_id)

    srv.restart()
    assert post.body["callback_url"].startswith(srv.url), "same port after the restart"
    time.sleep(1.0)  # recovery re-arms timers and resumes automatic items at start
    assert len(receiver.posts()) == 1, "an awaited item was run again after the restart"
    view = awaiting(srv, case_id)
    assert view["workflow_id"] == "contract-processing"

    view = ok(httpx.post(post.body["callback_url"], json={"result": "signed"},
                         headers={"X-Caseloop-User": INTEGRATION}, timeout=30.0))
    assert view["workflow_id"] == "revenue-recognition"
    assert len(receiver.posts()) == 1


def test_a_failing_receiver_ends_as_an_incident(esign_server: Callable[..., Server],
                                                receiver: Receiver) -> None:
    receiver.status = 500
    srv = esign_server("--virtual-clock", "2025-03-03T09:00:00Z")
    case_id = "deal_failing"
    approve_deal(srv, case_id)
    eventually(receiver.posts, "the first webhook POST")
    # the retries' backoff sleeps on the virtual clock: move it past all of them
    ok(call(srv, "POST", "/clock/advance", {"by": "10m"}))
    posts = receiver.posts()
    assert [p.body["attempt"] for p in posts] == [1, 2, 3, 4]
    assert {p.headers["idempotency-key"] for p in posts} == {posts[0].body["key"]}

    incidents = ok(call(srv, "GET", "/incidents"))["incidents"]
    (inc,) = [i for i in incidents if i["case_id"] == case_id]
    assert (inc["task"], inc["action"], inc["attempts"]) == ("SendForSignature",
                                                             "e_signature", 4)
    assert "500" in inc["error"]
    view = ok(call(srv, "GET", f"/cases/{case_id}"))
    item = signature_item(view)
    assert item is not None and item["state"] == "failed"
    assert item["item"] == inc["item"]

    # a callback does not complete a failed item; the incident is retried instead
    r = call(srv, "POST", f"/cases/{case_id}/signals/SendForSignature", {"result": "signed"},
             INTEGRATION)
    assert r.status_code == 409
    receiver.status = 200
    ok(call(srv, "POST", f"/incidents/{case_id}/{inc['item']}/retry", {}, FINANCE))
    eventually(lambda: len(receiver.posts()) == 5, "the retried POST")
    assert ok(call(srv, "GET", "/incidents"))["incidents"] == []
    view = ok(call(srv, "POST", f"/cases/{case_id}/signals/SendForSignature",
                   {"result": "signed"}, INTEGRATION))
    assert view["workflow_id"] == "revenue-recognition"


def test_a_retried_awaited_item_is_not_posted_again_after_a_restart(
        esign_server: Callable[..., Server], receiver: Receiver) -> None:
    """Finding I1: after an incident retry, the item waits for its callback like any
    other -- a restart must not run the action again."""
    receiver.status = 500
    srv = esign_server("--virtual-clock", "2025-03-03T09:00:00Z")
    case_id = "deal_retried"
    approve_deal(srv, case_id)
    eventually(receiver.posts, "the first webhook POST")
    ok(call(srv, "POST", "/clock/advance", {"by": "10m"}))
    (inc,) = ok(call(srv, "GET", "/incidents"))["incidents"]
    receiver.status = 200
    ok(call(srv, "POST", f"/incidents/{case_id}/{inc['item']}/retry", {}, FINANCE))
    eventually(lambda: len(receiver.posts()) == 5, "the retried POST")
    time.sleep(0.5)
    srv.restart("--virtual-clock", "2025-03-03T10:00:00Z")
    time.sleep(1.0)
    assert len(receiver.posts()) == 5, "the awaited item was posted again after the restart"
    view = ok(call(srv, "POST", f"/cases/{case_id}/signals/SendForSignature",
                   {"result": "signed"}, INTEGRATION))
    assert view["workflow_id"] == "revenue-recognition"


def test_a_signal_cannot_answer_for_an_action_that_runs_here(
        esign_server: Callable[..., Server], receiver: Receiver) -> None:
    """A signal completes an automatic item only when its action handed the work to
    another system and waits for the callback. An action that runs here decides its own
    result: here the e-signature in local mode, signing after 2 h; before, a "declined"
    from any holder of send_signals ended the contract (and so could any action of the
    pipeline be answered, ICP scoring included, with a result of the sender's choosing)."""
    srv = esign_server("--virtual-clock", "2025-03-03T09:00:00Z", local="2h")
    case_id = "deal_local"
    approve_deal(srv, case_id)
    item = eventually(lambda: signature_item(ok(call(srv, "GET", f"/cases/{case_id}"))),
                      "the signature item")
    r = call(srv, "POST", f"/cases/{case_id}/signals/SendForSignature",
             {"result": "declined"}, INTEGRATION)
    assert (r.status_code, error_code(r)) == (403, 3002), r.text
    assert r.json()["error"]["details"][0]["field"] == "name"
    assert signature_item(ok(call(srv, "GET", f"/cases/{case_id}")))["item"] == item["item"]
    ok(call(srv, "POST", "/clock/advance", {"by": "3h"}))
    view = eventually(lambda: (v := ok(call(srv, "GET", f"/cases/{case_id}")))[
        "workflow_id"] == "revenue-recognition" and v, "the action's own signature")
    assert view["data"]["contract_status"] == "signed"
    assert receiver.posts() == []


def test_a_callback_that_comes_before_the_webhook_is_answered_completes_the_item(
        esign_server: Callable[..., Server], receiver: Receiver) -> None:
    """A quick system may call back before it answers the webhook POST, before the
    runtime has written that it waits: the e-signature's action hands work elsewhere,
    so its callback is taken then too (and the hand-over after it finds the item done)."""
    answers: list[int] = []
    receiver.before_answering = lambda body: answers.append(httpx.post(
        body["callback_url"], json={"result": "signed"},
        headers={"X-Caseloop-User": INTEGRATION}, timeout=30.0).status_code)
    srv = esign_server("--virtual-clock", "2025-03-03T09:00:00Z")
    case_id = "deal_quick"
    approve_deal(srv, case_id)
    view = eventually(lambda: (v := ok(call(srv, "GET", f"/cases/{case_id}")))[
        "workflow_id"] == "revenue-recognition" and v, "the callback's signature")
    assert answers == [200]
    assert view["data"]["contract_status"] == "signed"
    assert len(receiver.posts()) == 1
