"""The outbox worker: delivers the notification rows the store wrote beside their events.

Theory of operation. A row is born `pending` in the same transaction as the events
that caused it (sqlite_store), so a breach is never recorded without its
notification. The worker loops:

1. claim -- one UPDATE .. RETURNING marks the due rows `claimed` by this worker until
   now + lease. Due means pending with next_at <= now, or claimed by someone whose
   lease has run out (a worker that crashed mid-delivery: its rows come back after
   the lease, 5 min by default; a live lease is never taken over);
2. deliver -- each claimed row through its channel (adapters/channels.py), at most
   `concurrency` at once, each bounded by `timeout`, so a slow receiver holds one
   slot for a while and never the worker;
3. settle -- success: `delivered`. Failure: attempts + 1, last_error, and
   next_at = now + base_delay * 2**(attempts-1), capped at max_delay, +- jitter; the
   claim query will not see the row before then. After the last attempt, or at once
   when the receiver refused for good (a webhook's 404/410, an SMTP 5xx: the same
   message would be refused again), `dead`, until someone retries it (`retry`: back
   to pending, attempts reset to 0).
4. sleep on the injected clock until the earliest next_at (or `poll` seconds, which
   catches rows written by other processes), unless woken earlier: by `wake()` (the
   store calls it after committing notices; the retry route too) or by a finished
   delivery freeing a slot.

Delivery is at least once: a worker that dies after the receiver answered but before
its settle committed leaves a claim that a later worker delivers again. Webhooks get
the row's key as `Idempotency-Key` to drop such duplicates. Every settle is
conditional on still holding the claim, so a worker whose lease was taken over cannot
overwrite the newer outcome.

All times come from the injected clock (VirtualClock in tests and the twin); only the
per-delivery timeout is wall-clock time, since it bounds real network I/O.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import socket
import sqlite3
from typing import Any

import anyio
import httpx
import msgspec

from actors.ports import Clock
from adapters.channels import Channels, DeliveryFailed, Message, OutboxSettings

log = logging.getLogger("caseloop.outbox")

STATES = ("pending", "claimed", "delivered", "dead")
_COLUMNS = ("id, key, case_id, topic, channel, target, subject, body, payload, state, attempts,"
            " next_at, created_at, claimed_by, claimed_until, delivered_at, last_error")

# A lease ends at claimed_until (like next_at, an instant from which the row is due).
# Taking over an expired claim notes whose it was: the only trace a crash leaves.
# Never this worker's own claim: its delivery may still be in flight (a virtual clock
# can jump past the lease during one POST) and would be made twice.
_CLAIM = (
    "UPDATE outbox SET state = 'claimed', claimed_by = ?, claimed_until = ?,"
    " last_error = CASE WHEN state = 'claimed' THEN 'the lease of ' || claimed_by ||"
    " ' expired (worker gone?); claimed again' ELSE last_error END"
    " WHERE id IN (SELECT id FROM outbox WHERE (state = 'pending' AND next_at <= ?)"
    " OR (state = 'claimed' AND claimed_until <= ? AND claimed_by != ?)"
    " ORDER BY next_at LIMIT ?)"
    f" RETURNING {_COLUMNS}")
_DELIVERED = (
    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?,"
    " claimed_by = NULL, claimed_until = NULL WHERE id = ? AND state = 'claimed'"
    " AND claimed_by = ?")
_FAILED = (
    "UPDATE outbox SET state = ?, attempts = ?, next_at = ?, last_error = ?,"
    " claimed_by = NULL, claimed_until = NULL WHERE id = ? AND state = 'claimed'"
    " AND claimed_by = ?")
_RELEASE = ("UPDATE outbox SET state = 'pending', claimed_by = NULL, claimed_until = NULL"
            " WHERE state = 'claimed' AND claimed_by = ?")
_NEXT_DUE = ("SELECT min(t) FROM (SELECT min(next_at) AS t FROM outbox WHERE state = 'pending'"
             " UNION ALL SELECT min(claimed_until) FROM outbox WHERE state = 'claimed'"
             " AND claimed_by != ?)")  # our own claims are not ours to take over


class OutboxRow(msgspec.Struct):
    id: int
    key: str
    case_id: str
    topic: str
    channel: str
    target: str
    subject: str
    body: str
    payload: str  # JSON text
    state: str
    attempts: int  # tries made, the successful one included
    next_at: float
    created_at: float
    claimed_by: str | None
    claimed_until: float | None
    delivered_at: float | None
    last_error: str | None


class UnknownRow(LookupError):
    def __init__(self, row_id: int) -> None:
        super().__init__(f"no outbox row {row_id}")
        self.row_id = row_id


class NotDead(Exception):
    """Only dead letters are retried by hand; the others are still in the worker's care."""

    def __init__(self, row: OutboxRow) -> None:
        super().__init__(f"outbox row {row.id} is {row.state}, not dead")
        self.row = row


def backoff(settings: OutboxSettings, failures: int, rng: random.Random) -> float:
    """Seconds to wait after the `failures`-th failed attempt."""
    delay = min(settings.max_delay, settings.base_delay * 2.0 ** (failures - 1))
    return delay * (1.0 + settings.jitter * rng.uniform(-1.0, 1.0))


async def list_rows(store: Any, state: str | None = None, limit: int = 100,
                    after: int = 0) -> list[OutboxRow]:
    """Rows by id after `after` (keyset pagination), of one state or all."""
    sql, args = f"SELECT {_COLUMNS} FROM outbox WHERE id > ?", [after]
    if state is not None:
        sql += " AND state = ?"
        args.append(state)
    rows = await store.query(sql + " ORDER BY id LIMIT ?", (*args, limit))
    return [OutboxRow(*r) for r in rows]


async def retry_row(store: Any, row_id: int, now: float) -> OutboxRow:
    """A dead letter back to pending, due now, with its attempts reset to 0 -- whoever
    retries by hand has usually fixed the cause and wants the whole retry schedule,
    not one try before it is dead again. last_error stays as the record of why it died.
    Raises UnknownRow, NotDead."""
    def retry(db: sqlite3.Connection) -> OutboxRow:
        row = db.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            raise UnknownRow(row_id)
        if row[9] != "dead":
            raise NotDead(OutboxRow(*row))
        return OutboxRow(*db.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, claimed_by = NULL,"
            f" claimed_until = NULL WHERE id = ? RETURNING {_COLUMNS}", (now, row_id)).fetchone())

    return await store.write(retry)  # type: ignore[no-any-return]


class Outbox:
    def __init__(self, store: Any, clock: Clock, channels: Channels, *,
                 worker_id: str | None = None, rng: random.Random | None = None) -> None:
        self.store = store
        self.clock = clock
        self.channels = channels
        self.settings = channels.outbox
        # Unique per process and start: a restarted worker must not think it still
        # holds the claims of its previous life (those wait for their lease).
        self.worker_id = worker_id or (f"{socket.gethostname()}:{os.getpid()}:"
                                       f"{secrets.token_hex(3)}")
        self._rng = rng or random.Random()
        self._kick = anyio.Event()
        self.inflight: set[int] = set()  # row ids being delivered now
        # Observable progress (health, tests): rounds of claiming, outcomes.
        self.rounds = 0
        self.claim_failing: str | None = None  # the store's failure while claiming fails
        self.napping = False
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        """Look for due rows now rather than at the next poll. Event-loop thread only."""
        self._kick.set()

    async def rows(self, state: str | None = None, limit: int = 100,
                   after: int = 0) -> list[OutboxRow]:
        return await list_rows(self.store, state, limit, after)

    async def retry(self, row_id: int) -> OutboxRow:
        row = await retry_row(self.store, row_id, self.clock.now())
        self.wake()
        return row

    # ------------------------------------------------------------------- the loop
    async def run(self) -> None:
        """Deliver until cancelled (run it in a task group). On the way out, the claims
        still held go back to pending so a restart delivers them at once."""
        try:
            async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
                while True:
                    self._kick = anyio.Event()  # before looking: a wake from now on counts
                    until = await self._round(client, tg)
                    self.rounds += 1
                    await self._nap(until)
        finally:
            with anyio.move_on_after(5, shield=True):
                try:
                    await self.store.write(lambda db: db.execute(_RELEASE, (self.worker_id,)))
                except Exception as exc:  # the store is gone too: the leases expire
                    log.warning("outbox: could not release claims on the way out (they "
                                "come back when their leases expire): %r", exc)

    async def _round(self, client: httpx.AsyncClient, tg: Any) -> float:
        """Claim what is due into the free slots and start delivering; -> when to look
        again (a finished delivery or wake() may cut the wait short)."""
        now = self.clock.now()
        poll = now + self.settings.poll
        free = self.settings.concurrency - len(self.inflight)
        if free <= 0:
            return poll  # a finishing delivery kicks the loop
        try:
            rows = await self.claim(free)
            for row in rows:
                self.inflight.add(row.id)
                tg.start_soon(self._deliver, client, row)
            if len(rows) == free:
                return poll  # maybe more due: claimed again when a slot frees
            nxt = (await self.store.query(_NEXT_DUE, (self.worker_id,)))[0][0]
        except Exception as exc:  # the store failed: say so, try again at the next poll
            # Once per failure, not at every poll (a store that cannot write until a
            # restart would fill the log with the same traceback several times a second).
            if self.claim_failing is None:
                log.exception("outbox: claiming failed; trying again at every poll")
            elif self.claim_failing != repr(exc):
                log.warning("outbox: claiming still fails, now with %r", exc)
            self.claim_failing = repr(exc)
            return poll
        if self.claim_failing is not None:
            log.warning("outbox: claiming works again")
            self.claim_failing = None
        return poll if nxt is None else min(poll, nxt)

    async def claim(self, n: int) -> list[OutboxRow]:
        now = self.clock.now()
        until = now + self.settings.lease
        rows = await self.store.write(lambda db: db.execute(
            _CLAIM, (self.worker_id, until, now, now, self.worker_id, n)).fetchall())
        return sorted((OutboxRow(*r) for r in rows), key=lambda r: r.next_at)

    async def _nap(self, until: float) -> None:
        self.napping = not self.inflight
        try:
            async with anyio.create_task_group() as tg:
                async def alarm() -> None:
                    await self.clock.sleep_until(until)
                    tg.cancel_scope.cancel()

                tg.start_soon(alarm)
                await self._kick.wait()
                tg.cancel_scope.cancel()
        finally:
            self.napping = False

    async def _deliver(self, client: httpx.AsyncClient, row: OutboxRow) -> None:
        try:
            await self.attempt(client, row)
        except Exception:  # settling failed (the store): the lease brings the row back
            log.exception("outbox: recording the outcome of row %s failed", row.id)
        finally:
            self.inflight.discard(row.id)
            self.wake()  # a slot is free

    async def attempt(self, client: httpx.AsyncClient, row: OutboxRow) -> None:
        """Deliver one claimed row and record the outcome."""
        error: str | None = None
        final = False
        try:
            msg = Message(row.key, row.case_id, row.topic, row.channel, row.target,
                          row.subject, row.body, json.loads(row.payload or "{}"))
            with anyio.fail_after(self.settings.timeout):
                await self.channels.deliver(msg, client)
        except DeliveryFailed as exc:
            error, final = str(exc), exc.permanent
        except TimeoutError:
            error = f"{row.channel}: no answer within {self.settings.timeout:g} s"
        except Exception as exc:  # a library's surprise must not kill the worker; its
            # text may hold a URL, so the details go to the log, not the row
            log.exception("outbox: delivering row %s failed", row.id)
            error = f"{row.channel}: {type(exc).__name__} (see the server log)"
        with anyio.CancelScope(shield=True):  # delivered is delivered: record it
            await self.settle(row, error, final)

    async def settle(self, row: OutboxRow, error: str | None, final: bool = False) -> None:
        """Record an attempt: delivered, pending again after the backoff, or dead after
        the last attempt or a refusal no retry can change (`final`)."""
        now = self.clock.now()
        if error is None:
            self.delivered += 1
            await self.store.write(lambda db: db.execute(
                _DELIVERED, (now, row.id, self.worker_id)))
            return
        self.failed += 1
        tries = row.attempts + 1
        if tries >= self.settings.attempts or final:
            state, next_at = "dead", now
            log.warning("outbox: row %s (%s to %s) is dead after %d attempts%s: %s",
                        row.id, row.channel, row.target, tries,
                        " (refused for good)" if final else "", error)
        else:
            state, next_at = "pending", now + backoff(self.settings, tries, self._rng)
        await self.store.write(lambda db: db.execute(
            _FAILED, (state, tries, next_at, error, row.id, self.worker_id)))
