"""The outbox worker against real receivers: a local HTTP server (uvicorn) that can
fail its first requests or hang, a local SMTP server (aiosmtpd), the real SQLite
store writing the rows beside their events, and a virtual clock for every wait --
so backoff of minutes is checked in milliseconds, and "not before next_at" is
checked by moving time to just before it.

The last test runs `caseloop serve --channels FILE` and drives the HTTP routes.
"""

from __future__ import annotations

import logging
import pathlib
import random
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any

import anyio
import httpx
import msgspec
import pytest
import uvicorn
import yaml
from aiosmtpd.controller import Controller
from http_kit import Server, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from actors import VirtualClock
from actors.ports import Append, AppendConflict, Notice
from actors.projection import case_row, changes
from adapters.channels import Channels, OutboxSettings, load_channels
from adapters.outbox import NotDead, Outbox, UnknownRow, backoff
from adapters.sqlite_store import SQLiteStore
from engine import Case, compile_document

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
NET = compile_document({
    "id": "note", "name": "Note", "version": 1, "tasks": [{"id": "Step"}],
    "flows": [{"from": "start", "to": "Step"}, {"from": "Step", "to": "end"}]})


# ------------------------------------------------------------------ real receivers
@dataclass
class Seen:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Receiver:
    """An HTTP receiver: answers 500 to its first `fail_first` requests, 200 after;
    requests to /slow wait until released (or the test ends)."""

    fail_first: int = 0
    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    release: anyio.Event = field(default_factory=anyio.Event)

    def paths(self) -> list[str]:
        return [s.path for s in self.requests]

    async def endpoint(self, request: Request) -> JSONResponse:
        self.requests.append(Seen(request.url.path, await request.json(),
                                  dict(request.headers)))
        if request.url.path == "/slow":
            with anyio.move_on_after(10):
                await self.release.wait()
        if request.url.path in ("/gone", "/throttled"):  # for good, and not now
            return JSONResponse({"error": "no"}, 410 if request.url.path == "/gone" else 429)
        if len(self.requests) <= self.fail_first:
            return JSONResponse({"error": "down for now"}, 500)
        return JSONResponse({"ok": True})


@asynccontextmanager
async def receiving(fail_first: int = 0) -> AsyncIterator[Receiver]:
    rx = Receiver(fail_first)
    app = Starlette(routes=[Route("/{path:path}", rx.endpoint, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # a port of its own: no race with other tests
    rx.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off",
                                           access_log=False))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(3):
            while not server.started:
                await anyio.sleep(0.005)
        try:
            yield rx
        finally:
            rx.release.set()
            server.should_exit = True


class Mailbox:
    """aiosmtpd handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Any]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy@"):
            return "452 4.2.2 mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    ctl = Controller(box, hostname="127.0.0.1", port=free_port())
    ctl.start()
    try:
        yield box, ctl.port
    finally:
        ctl.stop()


# ------------------------------------------------------------------------- helpers
def channels(**raw: Any) -> Channels:
    """Channels as load_channels reads them (same validation), jitter 0 by default."""
    raw.setdefault("outbox", {})
    raw["outbox"] = {"jitter": 0, "poll": 1.0, **raw["outbox"]}
    return msgspec.convert(raw, Channels)


def every_channel(rx: Receiver, smtp_port: int, webhook: str, slack: str) -> Channels:
    """The webhook and Slack at paths of `rx`, e-mail to the local SMTP server."""
    return channels(webhook={"url": rx.url + webhook}, slack={"url": rx.url + slack},
                    email={"host": "127.0.0.1", "port": smtp_port,
                           "sender": "caseloop@acme.com"})


def notice(key: str, channel: str = "webhook", target: str = "revops-alerts",
           subject: str = "SLA breached: Review on deal-1") -> Notice:
    return Notice(key, channel, target, "sla.breached", subject,
                  "task Review of case deal-1 passed its alert threshold.", "deal-1",
                  {"task": "Review", "alert_hours": 4})


async def notify(store: SQLiteStore, case_id: str, *notices: Notice, at: float,
                 first_seq: int = 1) -> None:
    """Append a new case's events with notices, as the runtime does on a breach."""
    case, events = Case.create(NET, case_id, {}, at)
    upserts, deletes, _phases = changes(case, events)
    await store.append(Append(case_id, first_seq, events, case_row(case, at), upserts,
                              deletes, notices=list(notices)))


async def outbox_rows(store: SQLiteStore) -> dict[str, dict[str, Any]]:
    rows = await store.query("SELECT key, state, attempts, next_at, claimed_by, delivered_at,"
                             " last_error, id FROM outbox ORDER BY id")
    names = ("key", "state", "attempts", "next_at", "claimed_by", "delivered_at",
             "last_error", "id")
    return {r[0]: dict(zip(names, r, strict=True)) for r in rows}


@asynccontextmanager
async def working(store: SQLiteStore, clock: VirtualClock, chans: Channels,
                  **kw: Any) -> AsyncIterator[Outbox]:
    ob = Outbox(store, clock, chans, rng=random.Random(7), **kw)
    store.on_notices = ob.wake
    async with anyio.create_task_group() as tg:
        tg.start_soon(ob.run)
        try:
            yield ob
        finally:
            store.on_notices = None
            tg.cancel_scope.cancel()


async def quiet(ob: Outbox) -> None:
    """Until the worker has looked at the table again and sleeps with nothing in flight:
    whatever was due at the clock's time has been attempted and settled."""
    seen = ob.rounds
    ob.wake()
    with anyio.fail_after(4):
        while not (ob.rounds > seen and ob.napping):
            await anyio.sleep(0.005)


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "outbox.db")) as s:
        yield s


# --------------------------------------------------------------------------- tests
async def test_delivers_webhook_slack_and_email_when_woken_by_the_commit(
        store: SQLiteStore, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    clock = VirtualClock(T0)
    async with receiving() as rx:
        chans = every_channel(rx, port, "/hook", "/slack")
        async with working(store, clock, chans) as ob:
            await quiet(ob)  # asleep until T0 + poll, and the clock does not move
            await notify(store, "deal-1", notice("n:hook"), notice("n:slack", "slack"),
                         notice("n:mail", "email", "marcus.thompson@acme.com"), at=T0)
            with anyio.fail_after(4):  # the commit woke it: no clock movement needed
                while len(rx.requests) < 2 or not box.messages:
                    await anyio.sleep(0.01)
            await quiet(ob)
    by_path = {s.path: s for s in rx.requests}
    assert sorted(by_path) == ["/hook", "/slack"] and len(rx.requests) == 2
    hook = by_path["/hook"]
    assert hook.body == {"key": "n:hook", "topic": "sla.breached",
                         "subject": "SLA breached: Review on deal-1",
                         "body": "task Review of case deal-1 passed its alert threshold.",
                         "case_id": "deal-1", "target": "revops-alerts",
                         "payload": {"task": "Review", "alert_hours": 4}}
    assert hook.headers["idempotency-key"] == "n:hook"
    assert by_path["/slack"].body == {
        "text": "*SLA breached: Review on deal-1*\n"
                "task Review of case deal-1 passed its alert threshold."}
    [(rcpt, msg)] = box.messages
    assert rcpt == ["marcus.thompson@acme.com"]
    assert msg["To"] == "marcus.thompson@acme.com"
    assert msg["From"] == "caseloop@acme.com"
    assert msg["Subject"] == "SLA breached: Review on deal-1"
    assert "passed its alert threshold" in msg.get_payload()
    rows = await outbox_rows(store)
    assert {k: (r["state"], r["attempts"], r["delivered_at"], r["claimed_by"])
            for k, r in rows.items()} == {k: ("delivered", 1, T0, None)
                                          for k in ("n:hook", "n:slack", "n:mail")}


async def test_failing_receiver_is_retried_after_the_backoff_and_delivered_once(
        store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    async with receiving(fail_first=2) as rx:
        chans = channels(webhook={"url": rx.url + "/hook"})
        await notify(store, "deal-1", notice("n:1"), at=T0)
        async with working(store, clock, chans) as ob:
            await quiet(ob)
            row = (await outbox_rows(store))["n:1"]
            assert len(rx.requests) == 1
            assert (row["state"], row["attempts"], row["next_at"]) == ("pending", 1, T0 + 60)
            assert "HTTP 500" in row["last_error"] and rx.url not in row["last_error"]

            clock.advance_to(T0 + 59.9)  # just before next_at: not tried
            await quiet(ob)
            assert len(rx.requests) == 1
            clock.advance_to(T0 + 60)  # due: second attempt fails too, waits twice as long
            await quiet(ob)
            assert len(rx.requests) == 2
            row = (await outbox_rows(store))["n:1"]
            assert (row["state"], row["attempts"], row["next_at"]) == (
                "pending", 2, T0 + 60 + 120)

            clock.advance_to(T0 + 179.9)
            await quiet(ob)
            assert len(rx.requests) == 2
            clock.advance_to(T0 + 180)
            await quiet(ob)
            assert len(rx.requests) == 3
            clock.advance_to(T0 + 86400)  # a day later: nothing more is sent
            await quiet(ob)
    assert len(rx.requests) == 3
    assert len({s.headers["idempotency-key"] for s in rx.requests}) == 1
    row = (await outbox_rows(store))["n:1"]
    assert (row["state"], row["attempts"], row["delivered_at"]) == ("delivered", 3, T0 + 180)


async def test_a_refusal_for_good_is_a_dead_letter_at_once_a_refusal_for_now_is_retried(
        store: SQLiteStore, smtp: tuple[Mailbox, int]) -> None:
    box, port = smtp
    clock = VirtualClock(T0)
    async with receiving() as rx:
        chans = every_channel(rx, port, "/gone", "/throttled")
        await notify(store, "deal-1", notice("gone"), notice("throttled", "slack"),
                     notice("nobody", "email", "nobody@acme.com"),
                     notice("busy", "email", "busy@acme.com"), at=T0)
        async with working(store, clock, chans) as ob:
            await quiet(ob)
            rows = await outbox_rows(store)
    assert box.messages == []
    # A webhook that is gone (410) and a mailbox that does not exist (550): one try.
    for key, said in (("gone", "HTTP 410"), ("nobody", "550")):
        assert (rows[key]["state"], rows[key]["attempts"]) == ("dead", 1), rows[key]
        assert said in rows[key]["last_error"], rows[key]
    # Throttled (429) and a full mailbox (452): tried again after the backoff.
    for key, said in (("throttled", "HTTP 429"), ("busy", "452")):
        assert (rows[key]["state"], rows[key]["attempts"], rows[key]["next_at"]) == (
            "pending", 1, T0 + 60), rows[key]
        assert said in rows[key]["last_error"], rows[key]


async def test_backoff_doubles_caps_and_ends_in_dead_letter(store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    refused = f"http://127.0.0.1:{free_port()}/hook"  # nobody listens there
    chans = channels(webhook={"url": refused},
                     outbox={"attempts": 6, "base_delay": 10, "max_delay": 40})
    await notify(store, "deal-1", notice("n:1"), at=T0)
    waits = []
    async with working(store, clock, chans) as ob:
        for _ in range(6):
            await quiet(ob)
            row = (await outbox_rows(store))["n:1"]
            if row["state"] == "dead":
                break
            assert row["state"] == "pending"
            waits.append(row["next_at"] - clock.now())
            clock.advance_to(row["next_at"])
        clock.advance_to(T0 + 10 * 86400)
        await quiet(ob)
    assert waits == [10, 20, 40, 40, 40]
    row = (await outbox_rows(store))["n:1"]
    assert (row["state"], row["attempts"], row["delivered_at"]) == ("dead", 6, None)
    assert row["last_error"].startswith("webhook: ConnectError")
    assert refused not in row["last_error"]


def test_backoff_jitter_stays_within_its_share() -> None:
    s = OutboxSettings(base_delay=60, max_delay=3600, jitter=0.2)
    rng = random.Random(1)
    for failures, nominal in [(1, 60), (2, 120), (6, 1920), (7, 3600), (30, 3600)]:
        seen = [backoff(s, failures, rng) for _ in range(200)]
        assert all(0.8 * nominal <= w <= 1.2 * nominal for w in seen)
        assert max(seen) - min(seen) > 0.2 * nominal  # it does spread the retries
    assert backoff(OutboxSettings(jitter=0), 3, rng) == 240


async def test_unconfigured_channel_fails_clearly_and_ends_dead(store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    await notify(store, "deal-1", notice("n:slack", "slack"), at=T0)
    async with working(store, clock, channels(outbox={"attempts": 2, "base_delay": 5})) as ob:
        await quiet(ob)
        clock.advance_to(T0 + 5)
        await quiet(ob)
    row = (await outbox_rows(store))["n:slack"]
    assert (row["state"], row["attempts"]) == ("dead", 2)
    assert row["last_error"] == "slack: channel not configured (channels file, --channels)"


async def test_retry_brings_a_dead_letter_back_and_it_is_delivered(
        store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    async with receiving(fail_first=1) as rx:
        chans = channels(webhook={"url": rx.url + "/hook"}, outbox={"attempts": 1})
        await notify(store, "deal-1", notice("n:1"), at=T0)
        async with working(store, clock, chans) as ob:
            await quiet(ob)
            row = (await outbox_rows(store))["n:1"]
            assert (row["state"], row["attempts"]) == ("dead", 1)
            clock.advance_to(T0 + 3600)
            await quiet(ob)
            assert len(rx.requests) == 1  # dead stays dead

            back = await ob.retry(row["id"])
            assert (back.state, back.attempts, back.next_at) == ("pending", 0, T0 + 3600)
            await quiet(ob)
            with pytest.raises(NotDead):
                await ob.retry(row["id"])
            with pytest.raises(UnknownRow):
                await ob.retry(row["id"] + 100)
    assert len(rx.requests) == 2
    row = (await outbox_rows(store))["n:1"]
    assert (row["state"], row["attempts"], row["delivered_at"]) == ("delivered", 1, T0 + 3600)
    assert "HTTP 500" in row["last_error"]  # why it had died, kept


async def test_claims_of_a_crashed_worker_are_recovered_a_live_lease_is_not(
        store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    async with receiving() as rx:
        chans = channels(webhook={"url": rx.url + "/hook"})
        await notify(store, "deal-1", notice("n:stale"), notice("n:live"), at=T0 - 600)
        await store.write(lambda db: db.executemany(
            "UPDATE outbox SET state = 'claimed', claimed_by = ?, claimed_until = ?"
            " WHERE key = ?", [("crashed-worker", T0 - 1, "n:stale"),
                               ("busy-worker", T0 + 100, "n:live")]))
        async with working(store, clock, chans, worker_id="fresh-worker") as ob:
            await quiet(ob)
            rows = await outbox_rows(store)
            assert [s.body["key"] for s in rx.requests] == ["n:stale"]
            assert rows["n:stale"]["state"] == "delivered"
            assert "crashed-worker" in rows["n:stale"]["last_error"]
            assert (rows["n:live"]["state"], rows["n:live"]["claimed_by"]) == (
                "claimed", "busy-worker")

            clock.advance_to(T0 + 99.9)  # busy-worker's lease still holds
            await quiet(ob)
            assert len(rx.requests) == 1
            clock.advance_to(T0 + 100)  # it has run out: busy-worker is gone
            await quiet(ob)
    assert [s.body["key"] for s in rx.requests] == ["n:stale", "n:live"]
    assert (await outbox_rows(store))["n:live"]["state"] == "delivered"


async def test_notices_are_written_with_their_events_and_once_per_key(
        store: SQLiteStore) -> None:
    await notify(store, "deal-1", notice("n:same"), at=T0)
    await notify(store, "deal-2", notice("n:same"), notice("n:other"), at=T0 + 1)
    with pytest.raises(AppendConflict):  # the events are refused: so is the notice
        await notify(store, "deal-1", notice("n:lost"), at=T0 + 2)
    rows = await store.query("SELECT key, case_id, next_at FROM outbox ORDER BY id")
    assert rows == [("n:same", "deal-1", T0), ("n:other", "deal-1", T0 + 1)]

    clock = VirtualClock(T0 + 2)
    async with receiving() as rx, working(store, clock, channels(webhook={"url": rx.url})) as ob:
        await quiet(ob)
    assert sorted(s.body["key"] for s in rx.requests) == ["n:other", "n:same"]


async def test_a_slow_receiver_times_out_without_holding_up_the_rest(
        store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    async with receiving() as rx:
        chans = channels(webhook={"url": rx.url + "/slow"}, slack={"url": rx.url + "/fast"},
                         outbox={"timeout": 0.5, "concurrency": 2})
        await notify(store, "deal-1", notice("n:slow"), at=T0)
        async with working(store, clock, chans) as ob:
            with anyio.fail_after(2):
                while rx.paths() != ["/slow"]:
                    await anyio.sleep(0.005)
            started = time.monotonic()
            await notify(store, "deal-2", notice("n:fast", "slack"), at=T0)
            with anyio.fail_after(2):
                while (await outbox_rows(store))["n:fast"]["state"] != "delivered":
                    await anyio.sleep(0.01)
            assert time.monotonic() - started < 0.45  # not behind the slow one
            await quiet(ob)
            slow = (await outbox_rows(store))["n:slow"]
    assert (slow["state"], slow["attempts"]) == ("pending", 1)
    assert slow["last_error"] == "webhook: no answer within 0.5 s"


async def test_a_cancelled_worker_hands_back_its_claims(store: SQLiteStore) -> None:
    clock = VirtualClock(T0)
    async with receiving() as rx:
        await notify(store, "deal-1", notice("n:1"), at=T0)
        async with working(store, clock, channels(webhook={"url": rx.url + "/slow"})):
            with anyio.fail_after(2):
                while not rx.requests:
                    await anyio.sleep(0.005)
            assert (await outbox_rows(store))["n:1"]["state"] == "claimed"
    row = (await outbox_rows(store))["n:1"]
    assert (row["state"], row["claimed_by"], row["attempts"]) == ("pending", None, 0)


async def test_a_claim_the_store_refuses_is_logged_once_not_at_every_poll(
        store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    """A store that fails (here: its outbox table gone from under it) would otherwise
    log the same traceback at every poll, several times a second, until a restart."""
    clock = VirtualClock(T0)
    con = sqlite3.connect(store.path, isolation_level=None)
    con.execute("ALTER TABLE outbox RENAME TO outbox_away")

    async def rounds(n: int, ob: Outbox) -> None:
        for _ in range(n):
            seen = ob.rounds
            ob.wake()
            with anyio.fail_after(4):
                while ob.rounds == seen:
                    await anyio.sleep(0.005)

    caplog.set_level(logging.WARNING, logger="caseloop.outbox")
    async with working(store, clock, channels()) as ob:
        await rounds(5, ob)
        said = [r for r in caplog.records if "claiming" in r.getMessage()]
        assert len(said) == 1 and said[0].exc_info is not None, said
        con.execute("ALTER TABLE outbox_away RENAME TO outbox")
        await rounds(2, ob)
        said = [r.getMessage() for r in caplog.records if "claiming" in r.getMessage()]
        assert said[1:] == ["outbox: claiming works again"], said
    con.close()


# ------------------------------------------------------------------- configuration
@pytest.mark.parametrize(("text", "expected"), [
    ("outbox: {attempts: 0}\n", "/outbox/attempts: Expected `int` >= 1"),
    ("outbox: {jitter: 1.5}\n", "/outbox/jitter"),
    ("outbox: {base_delay: 600, max_delay: 60}\n", "/outbox/max_delay"),
    ("outbox: {lease: 30, timeout: 30}\n", "/outbox/lease: must be longer than timeout"),
    ("webhook: {url: ftp://example.com/x}\n", "/webhook/url"),
    ("slack: {url: http://a/b, url_env: X}\n", "/slack: give exactly one of url and url_env"),
    ("email: {host: h, sender: nobody}\n", "/email/sender"),
    ("email: {host: h}\n", "/email: Object missing required field `sender`"),
    ("emial: {host: h}\n", "/emial: unknown field"),
    ("webhook: [1\n", "cannot read the channels file"),
])
def test_bad_channels_files_name_the_file_and_the_field(
        tmp_path: pathlib.Path, text: str, expected: str) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_channels(path)
    assert str(err.value).startswith(f"{path}: ")
    assert expected in str(err.value)


def test_configured_channels_and_the_shipped_example(monkeypatch: pytest.MonkeyPatch) -> None:
    example = pathlib.Path(__file__).resolve().parents[2] / "specs/examples/channels.yaml"
    monkeypatch.delenv("CASELOOP_SLACK_WEBHOOK", raising=False)
    chans = load_channels(example)
    assert chans.configured() == {"webhook", "email"}  # slack's variable is unset
    assert chans.outbox == OutboxSettings()  # the example spells out the defaults
    monkeypatch.setenv("CASELOOP_SLACK_WEBHOOK", "https://hooks.example.com/T0/B0/secret")
    assert chans.configured() == {"webhook", "email", "slack"}
    assert Channels().configured() == set()


# ------------------------------------------------------------------ over real HTTP
def seed(db: pathlib.Path, *notices: Notice, delivered: tuple[str, ...] = ()) -> None:
    """Rows written by the real store, before the server starts on the same file."""
    async def write() -> None:
        async with SQLiteStore(str(db)) as s:
            await notify(s, "deal-1", *notices, at=time.time() - 1)
            await s.write(lambda c: c.executemany(
                "UPDATE outbox SET state = 'delivered', attempts = 1, delivered_at = next_at"
                " WHERE key = ?", [(k,) for k in delivered]))

    anyio.run(write)


def test_outbox_routes_over_http(server_factory: Callable[..., Server],
                                 tmp_path: pathlib.Path) -> None:
    port = free_port()  # nothing listens: every delivery is refused
    cfg = tmp_path / "channels.yaml"
    cfg.write_text(yaml.safe_dump({"webhook": {"url": f"http://127.0.0.1:{port}/hook"},
                                   "outbox": {"attempts": 1, "poll": 0.2}}))
    db = tmp_path / "served.db"
    seed(db, notice("n:dies"), notice("n:done"), delivered=("n:done",))
    srv = server_factory("--channels", str(cfg), db=db)
    api = srv.url + "/api/v1"

    def dead_rows() -> list[dict[str, Any]]:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            r = httpx.get(api + "/outbox", params={"state": "dead"})
            assert r.status_code == 200, r.text
            if r.json()["notifications"]:
                return r.json()["notifications"]  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError("no dead notification in time")

    [dead] = dead_rows()
    assert dead["key"] == "n:dies" and dead["state"] == "dead" and dead["attempts"] == 1
    assert dead["channel"] == "webhook" and dead["target"] == "revops-alerts"
    assert dead["last_error"].startswith("webhook: ConnectError")
    assert dead["next_at"].endswith("Z") and dead["delivered_at"] is None
    listing = httpx.get(api + "/outbox")
    assert [n["key"] for n in listing.json()["notifications"]] == ["n:dies", "n:done"]
    assert str(port) not in listing.text and "url" not in listing.text  # no channel settings
    page = httpx.get(api + "/outbox", params={"limit": 1}).json()
    assert [n["key"] for n in page["notifications"]] == ["n:dies"]
    rest = httpx.get(api + "/outbox", params={"limit": 1, "after": page["next_after"]}).json()
    assert [n["key"] for n in rest["notifications"]] == ["n:done"]

    for params, name in [({"state": "lost"}, "state"), ({"limit": "0"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"after": "-1"}, "after")]:
        r = httpx.get(api + "/outbox", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == 1000
        assert r.json()["error"]["details"][0]["field"] == name

    # Addresses and case details: an SDR may not read the outbox.
    r = httpx.get(api + "/outbox", headers={"X-Caseloop-User": "sarah.chen@acme.com"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, 3002)

    done_id = listing.json()["notifications"][1]["id"]
    retry = f"{api}/outbox/{dead['id']}/retry"
    r = httpx.post(retry, headers={"X-Caseloop-User": "sarah.chen@acme.com"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, 3002)
    r = httpx.post(f"{api}/outbox/{dead['id'] + 999}/retry")
    assert (r.status_code, r.json()["error"]["code"]) == (404, 2003)
    r = httpx.post(f"{api}/outbox/{done_id}/retry")
    assert (r.status_code, r.json()["error"]["code"]) == (409, 2003)
    assert r.json()["error"]["details"] == [{"field": "state", "problem": "delivered"}]
    r = httpx.post(f"{api}/outbox/abc/retry")
    assert (r.status_code, r.json()["error"]["details"][0]["field"]) == (400, "id")

    key = {"Idempotency-Key": "retry-1",
           "X-Caseloop-User": "james.rodriguez@acme.com"}  # finance may retry
    r = httpx.post(retry, headers=key)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["attempts"]) == ("pending", 0)
    again = httpx.post(retry, headers=key)
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == r.json()
    [dead] = dead_rows()  # woken at once, tried once more (attempts from 0), refused
    assert (dead["key"], dead["attempts"]) == ("n:dies", 1)
    assert "outbox: channels" in srv.stderr
    doc = httpx.get(srv.url + "/openapi.json").json()
    assert set(doc["paths"]["/api/v1/outbox/{id}/retry"]["post"]["responses"]) >= {
        "200", "400", "403", "404", "409"}
