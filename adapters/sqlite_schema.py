"""The SQLite store's tables, and what an older database needs to become today's.

Both the store (adapters.sqlite_store) and benchmarks that fill a database directly
(bench/recovery.py) create it from here; the writer process (adapters.sqlite_writer)
opens a file the store has already created.
"""

from __future__ import annotations

import sqlite3

SCHEMA = """
-- One row per append: the events one command caused, numbered first_seq..last_seq
-- within their case. A row per command rather than per event keeps the B-tree work
-- of a commit small; `pos` orders all appends for readers that tail the log.
CREATE TABLE IF NOT EXISTS events (
    pos INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    at REAL NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (case_id, first_seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
    case_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cases (
    case_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    closed_at REAL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_by_workflow ON cases (workflow_id, state, created_at);
CREATE TABLE IF NOT EXISTS work_items (
    case_id TEXT NOT NULL,
    item INTEGER NOT NULL,
    task TEXT NOT NULL,
    kind TEXT NOT NULL,
    role TEXT,
    state TEXT NOT NULL,
    enabled_at REAL NOT NULL,
    due REAL,
    assignee TEXT,
    held_until REAL,  -- a dispatch policy holds the item out of worklists until then
    PRIMARY KEY (case_id, item)
);
CREATE INDEX IF NOT EXISTS work_items_due ON work_items (due) WHERE due IS NOT NULL;
CREATE INDEX IF NOT EXISTS work_items_role ON work_items (role, state);
CREATE TABLE IF NOT EXISTS specs (
    workflow_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    document TEXT NOT NULL,
    registered_at REAL NOT NULL,
    PRIMARY KEY (workflow_id, version)
);
-- A case's passage through each workflow (a deal visits WF2..WF5 under one id).
CREATE TABLE IF NOT EXISTS phases (
    case_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    entered_at REAL NOT NULL,
    left_at REAL,
    outcome TEXT,
    PRIMARY KEY (case_id, workflow_id)
);
CREATE INDEX IF NOT EXISTS phases_by_workflow ON phases (workflow_id, entered_at);
-- Notifications to deliver, inserted in the same transaction as the events that cause
-- them; a worker claims rows with a lease (claimed_until), delivers, retries with
-- backoff (next_at) and moves a row to 'dead' after its last attempt.
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    case_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    created_at REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL,
    delivered_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);
-- History imported from other systems for MAPE-K (POST .../history/import): one row
-- per work item; one import is one transaction, so a bad file leaves nothing behind.
CREATE TABLE IF NOT EXISTS imported_items (
    import_id INTEGER NOT NULL,
    workflow_id TEXT NOT NULL,
    case_id TEXT NOT NULL,
    task TEXT NOT NULL,
    resource TEXT,
    enabled_at REAL,
    started_at REAL,
    completed_at REAL,
    attributes TEXT  -- JSON object: the file's other columns for this case
);
CREATE INDEX IF NOT EXISTS imported_by_workflow ON imported_items (workflow_id, import_id);
-- Which history each import wrote (adapters.history.history_digest): the same history
-- is imported once per workflow.
CREATE TABLE IF NOT EXISTS history_imports (
    import_id INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    UNIQUE (workflow_id, digest)
);
-- MAPE-K knowledge, append-only: policy versions, recommendations and their status
-- changes, fitted models. The current state is a fold over it; nothing is rewritten,
-- so the table is also the audit trail.
CREATE TABLE IF NOT EXISTS knowledge (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS knowledge_by_kind ON knowledge (kind, subject, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    status INTEGER NOT NULL,
    response BLOB NOT NULL,
    expires_at REAL NOT NULL
);
-- Lead intake (adapters/intake.py): every signal, its normalized lead (payload) and
-- ICP score; outcome case_started | duplicate | below_threshold. A duplicate points
-- at the earlier signal it was merged into (duplicate_of).
CREATE TABLE IF NOT EXISTS signals (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    email TEXT NOT NULL,
    domain TEXT,
    company TEXT NOT NULL,
    payload TEXT NOT NULL,
    score INTEGER NOT NULL,
    breakdown TEXT NOT NULL,
    outcome TEXT NOT NULL,
    case_id TEXT,
    duplicate_of TEXT,
    merged_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS signals_by_email ON signals (email, received_at);
CREATE INDEX IF NOT EXISTS signals_by_domain ON signals (domain, received_at);
CREATE INDEX IF NOT EXISTS signals_by_time ON signals (received_at, id);
CREATE INDEX IF NOT EXISTS signals_by_outcome ON signals (outcome, received_at, id);
"""


# The PRAGMA user_version the steps of create_schema bring a database to. Raise it
# with every step added there.
SCHEMA_VERSION = 2


class NewerSchema(Exception):
    """The database was written by a later caseloop (an upgrade rolled back): this one
    does not know its tables' meaning and must not write them."""

    def __init__(self, found: int) -> None:
        super().__init__(
            f"its schema is version {found}, newer than this caseloop's "
            f"({SCHEMA_VERSION}): it was written by a later caseloop. Run that one, or "
            "a copy of the database from before the upgrade")
        self.found = found


def check_version(db: sqlite3.Connection) -> None:
    """Raise NewerSchema if `db` is of a schema later than this code's."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise NewerSchema(found)


def create_schema(db: sqlite3.Connection) -> None:
    """Create what is missing, and bring a database of an earlier version up to date;
    refuse one of a later version (NewerSchema)."""
    check_version(db)
    db.executescript(SCHEMA)
    # Databases from before the phases projection: one phase per case, from the
    # cases row (a deal handed on earlier shows under its current workflow only).
    if db.execute("PRAGMA user_version").fetchone()[0] < 1:
        db.execute(
            "INSERT OR IGNORE INTO phases (case_id, workflow_id, version, entered_at,"
            " left_at, outcome) SELECT case_id, workflow_id, workflow_version, created_at,"
            " closed_at, CASE WHEN state = 'active' THEN NULL ELSE state END FROM cases"
            " WHERE NOT EXISTS (SELECT 1 FROM phases p WHERE p.case_id = cases.case_id)")
        db.execute("PRAGMA user_version = 1")
    # Databases written before a touch of the cases row was kept from moving it back
    # (adapters.sqlite_writer.TOUCH_CASE): a case whose last append shared a round with
    # an earlier one may show the earlier one's time and version. The log says which.
    if db.execute("PRAGMA user_version").fetchone()[0] < 2:
        db.execute(
            "UPDATE cases SET (seq, updated_at) = (SELECT e.last_seq, e.at FROM events e"
            " WHERE e.case_id = cases.case_id ORDER BY e.first_seq DESC LIMIT 1)"
            " WHERE seq < (SELECT max(e.last_seq) FROM events e"
            " WHERE e.case_id = cases.case_id)")
        db.execute("PRAGMA user_version = 2")
    # Databases from before dispatch holds: the work_items projection gains a column.
    if not any(r[1] == "held_until" for r in db.execute("PRAGMA table_info(work_items)")):
        db.execute("ALTER TABLE work_items ADD COLUMN held_until REAL")
