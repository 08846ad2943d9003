"""`caseloop import` and `caseloop export`: work history in and out of a SQLite store
directly, without a server.

Theory of operation
-------------------
Both open the store file the server uses (`--db`, which must exist: a typo should not
create an empty database) and name the workflow as the API does (its id, or the
tutorial's `wf_...` alias), checked against the specs registered in the store.
Import runs the same checks and the same one-transaction write as the HTTP route and
prints what it wrote, or every located problem and exit 1. A running server does not
see a CLI import until it restarts (its Monitor absorbs imports at start).
Export folds the event log with a Monitor of its own (`catch_up`), adds the store's
imported items, and writes XES or CSV to `--out` or stdout.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any, TextIO

import anyio

from adapters.history import HistoryInvalid, parse_history, write_history
from adapters.history_export import gather, write_csv, write_xes
from adapters.sqlite_store import SQLiteStore
from mapek.monitor import Monitor


class CommandFailed(Exception):
    """A located reason to exit 1; the message is printed as is."""


async def _workflow(store: SQLiteStore, name: str) -> str:
    known = {r.workflow_id for r in await store.specs()}
    if name in known:
        return name
    alias = name[3:].replace("_", "-") if name.startswith("wf_") else None
    if alias in known:
        return alias  # type: ignore[return-value]
    raise CommandFailed(f"error --workflow: {name!r} is not registered in the store; "
                        f"registered: {', '.join(sorted(known)) or 'none'}")


def _store(db: str) -> SQLiteStore:
    if not pathlib.Path(db).is_file():
        raise CommandFailed(f"error --db: no database {db!r} (run `caseloop serve --db "
                            f"{db}` once to create it and register the workflows)")
    return SQLiteStore(db)


async def import_file(args: argparse.Namespace, out: TextIO) -> int:
    path = pathlib.Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandFailed(f"error {path}: {exc.strerror or exc}") from None
    async with _store(args.db) as store:
        wid = await _workflow(store, args.workflow)
        try:
            history = await anyio.to_thread.run_sync(parse_history, data)
        except HistoryInvalid as exc:
            lines = [f"error {path}: {where}: {problem}" for where, problem in exc.problems]
            raise CommandFailed("\n".join([*lines, f"{path}: nothing imported"])) from None
        done = await write_history(store, wid, history)
    if not done.created:
        print(f"{path}: this history was imported into {wid} before (import "
              f"{done.import_id}): nothing imported", file=out)
        return 0
    print(f"imported {history.rows} rows as {len(history.items)} work items of "
          f"{history.cases} cases into {wid} (import {done.import_id})"
          + (f": {done.added} new, {done.updated} updated, {done.duplicates} imported "
             "before" if done.updated or done.duplicates else ""), file=out)
    return 0


async def export_file(args: argparse.Namespace, out: TextIO) -> int:
    async with _store(args.db) as store:
        wid = await _workflow(store, args.workflow)
        traces = await gather(store, Monitor(store), wid)
    chunks = write_xes(traces, wid) if args.format == "xes" else write_csv(traces)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as f:
            f.writelines(chunks)
        events = sum(t.count(cancelled=args.format == "xes") for t in traces)
        print(f"exported {len(traces)} cases, {events} events of {wid} to {args.out}",
              file=sys.stderr)
    else:
        out.writelines(chunks)
    return 0


def run(command: Any, args: argparse.Namespace) -> int:
    try:
        return int(anyio.run(command, args, sys.stdout))
    except CommandFailed as exc:
        print(exc, file=sys.stderr)
        return 1
