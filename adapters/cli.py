"""The `caseloop` command line.

    caseloop validate specs/            check spec files; located problems, exit 1 if any
    caseloop walk [--specs specs/]      walk the tutorial's TechCorp deal through the
                                        pipeline in memory and print what happens
    caseloop serve [--host 127.0.0.1] [--port 8080] [--db caseloop.db]
                                        the HTTP API on the embedded SQLite store, with
                                        the pipeline in specs/ registered at start
    caseloop token create USER [--tokens caseloop-tokens.yaml]
                                        mint a bearer token for a person of roles.yaml
    caseloop simulate [--deals 2000] [--days 30] [--pattern seasonal] [--seed 42]
                      [--db caseloop.db] [--start ISO] [--specs specs] [--config FILE]
                                        simulated people and customers work the
                                        pipeline into the database (the digital twin)
    caseloop import --workflow ID FILE.csv [--db caseloop.db]
                                        import work history (CSV event log) for MAPE-K
    caseloop export --workflow ID [--format xes|csv] [--out FILE] [--db caseloop.db]
                                        a workflow's history as XES or CSV
    caseloop report [--db caseloop.db] [--out reports] [--specs specs] [--time-zone UTC]
                                        one HTML page per analyzer + manifest.json;
                                        rewrites only the pages whose data changed
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import pathlib
import sqlite3
import stat
import sys
import time
from collections.abc import Sequence
from typing import Any

from adapters.registry import SPEC_SUFFIXES, looks_like_workflow
from adapters.sqlite_schema import NewerSchema, check_version
from engine import Case, Net, SpecError, compile, decode_spec
from engine.spec import SpecDecodeError


class CommandFailed(Exception):
    """What the person gave cannot be used: `caseloop COMMAND: error: MESSAGE`, exit 1."""


def _spec_files(paths: Sequence[str]) -> list[tuple[pathlib.Path, bool]]:
    """(file, named explicitly). Files found in a directory may be other config."""
    out = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            out += [(f, False) for f in sorted(p.iterdir()) if f.suffix in SPEC_SUFFIXES]
        else:
            out.append((p, True))
    return out


def load_nets(paths: Sequence[str], out: Any = None) -> tuple[dict[str, Net], int]:
    """Compile every workflow spec under `paths`; print a line per file. -> (nets, errors)."""
    out = out or sys.stdout
    nets: dict[str, Net] = {}
    errors = 0
    for f, explicit in _spec_files(paths):
        if not f.exists():
            print(f"error {f}: no such file or directory", file=out)
            errors += 1
            continue
        text = f.read_text(encoding="utf-8")
        if not explicit and not looks_like_workflow(text, f.suffix):
            continue
        try:
            spec = decode_spec(text, "json" if f.suffix == ".json" else "yaml")
            net = compile(spec)
        except SpecDecodeError as exc:
            print(f"error {f}:{exc.path or '/'}: {exc.problem}", file=out)
            errors += 1
            continue
        except SpecError as exc:
            for p in exc.problems:
                print(f"error {f}:{p.path}: {p.problem}", file=out)
            errors += 1
            continue
        if net.workflow_id in nets:
            print(f"error {f}: workflow id {net.workflow_id!r} is defined twice", file=out)
            errors += 1
            continue
        nets[net.workflow_id] = net
        print(f"ok    {f}: {net.workflow_id} v{net.version}, {len(net.tasks)} tasks, sound",
              file=out)
        for w in net.warnings:
            print(f"warn  {f}: {w}", file=out)
    for net in nets.values():
        for i, (target, _) in enumerate(net.handovers):
            if target not in nets:
                print(f"warn  {net.workflow_id}:/on_complete/{i}/workflow: hands on to "
                      f"{target!r}, which is not among the specs checked", file=out)
    return nets, errors


def cmd_validate(args: argparse.Namespace) -> int:
    nets, errors = load_nets(args.paths)
    if not nets and not errors:
        print("no workflow specs found")
        return 1
    return 1 if errors else 0


def cmd_walk(args: argparse.Namespace) -> int:
    """Drive the TechCorp deal from WF2 to the end of the pipeline, everyone approving."""
    nets, errors = load_nets([args.specs], out=io.StringIO())  # quiet: only the walk prints
    if errors or "deal-approval-gate" not in nets:
        print("the specs do not validate: run `caseloop validate` first")
        return 1
    deal = json.loads((pathlib.Path(args.specs) / "examples" / "techcorp-deal.json")
                      .read_text(encoding="utf-8"))  # the tutorial's TechCorp deal
    case, events = Case.create(nets["deal-approval-gate"], "deal_techcorp_001", deal, 0.0)
    at = 0.0
    print(f"{case.case_id} in {case.net.workflow_id}: enabled {case.enabled_tasks()}")
    for _ in range(200):
        if case.status == "completed" and case.hand_on_to:
            nxt = nets.get(case.hand_on_to)
            if nxt is None:
                print(f"hands on to {case.hand_on_to!r}, which is not loaded")
                return 1
            events += case.hand_on(nxt, at)
            print(f"-> handed on to {nxt.workflow_id}: enabled {case.enabled_tasks()}")
            continue
        if case.status != "active":
            break
        open_items = [i for i in case.work_items() if i.state != "failed"]
        if not open_items:
            break
        item = open_items[0]
        task = case.net.tasks[item.task]
        at += 3600.0
        # Everyone approves; a task that lists its results (a signature, a payment) takes
        # its first, the happy one.
        result = ("approved" if not task.spec.results or "approved" in task.spec.results
                  else task.spec.results[0])
        events += case.complete(item.id, at, result, _walk_output(task.id))
        print(f"   {task.id} completed ({task.spec.kind}); enabled {case.enabled_tasks()}")
    print(f"{case.case_id}: {case.status} after {len(events)} events")
    return 0 if case.status == "completed" else 1


def _walk_output(task: str) -> dict[str, Any]:
    # What people and actions report in the tutorial's happy path.
    return {"ScoringDecision": {"lead_score": 72}}.get(task, {})


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    import yaml

    from adapters.collector import serving_pace
    from adapters.http import Settings, create_app
    from adapters.http.app import check_config
    from adapters.http.context import LOOPBACK_NAMES
    from adapters.people import load_tokens
    from adapters.sqlite_store import deployed_writer

    tokens = args.tokens or os.environ.get("CASELOOP_TOKENS")
    if tokens:
        # Asked for token mode: a file that is missing or names no one must stop the
        # start, not fall back to open mode, where every request is the local operator.
        given = "--tokens" if args.tokens else "CASELOOP_TOKENS"
        try:
            named = load_tokens(tokens)
        except FileNotFoundError:
            problem = "does not exist"
        except (OSError, ValueError, yaml.YAMLError) as exc:
            problem = f"cannot be read: {' '.join(str(exc).split())}"
        else:
            problem = "" if named else "names no one"
        if problem:
            print(f"refusing to start: the tokens file {tokens} ({given}) {problem}. "
                  f"Create tokens with `caseloop token create USER --tokens {tokens}`, "
                  "or leave tokens out for open mode on 127.0.0.1.", file=sys.stderr)
            return 2
    elif args.host not in LOOPBACK_NAMES:
        print(f"refusing to listen on {args.host}: without auth anyone who can reach it "
              "could act as the local operator. Create tokens (`caseloop token create "
              "USER --tokens FILE`) and pass --tokens FILE, or bind 127.0.0.1.",
              file=sys.stderr)
        return 2
    specs = None if args.no_specs else args.specs
    if specs is not None and not pathlib.Path(specs).is_dir():
        print(f"no spec directory {specs!r} (pass --specs DIR or --no-specs)", file=sys.stderr)
        return 2
    start = None
    if args.virtual_clock is not None:
        try:
            start = dt.datetime.fromisoformat(args.virtual_clock.replace("Z", "+00:00"))
        except ValueError:
            print(f"--virtual-clock: not an ISO 8601 time: {args.virtual_clock!r}",
                  file=sys.stderr)
            return 2
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
    settings = Settings(db=args.db, specs=specs, tokens=tokens, slos=args.slos,
                        roles=args.roles, durability=args.durability,
                        # A server's commands come many at a time: there the writer
                        # process answers a quarter to a third more completions/s over
                        # HTTP (bench/README, "A new machine"); the library's default
                        # stays the thread (one command at a time it is quicker).
                        writer=args.writer or deployed_writer("process"),
                        monitor=args.monitor,
                        channels=args.channels or os.environ.get("CASELOOP_CHANNELS"),
                        bench_route=args.bench_route,
                        virtual_clock=start.timestamp() if start else None)
    # uvicorn reports a failed lifespan as a traceback and "Application startup
    # failed": a missing or broken config file is found here first, as one line.
    check_config(settings)
    serving = serve_lock(args.db)
    app = create_app(settings)
    # The collector's pace: young collections every 10,000 allocations, not 700 (a
    # third of the loop's CPU under load went to them; adapters/collector.py).
    pace = serving_pace() if args.collector == "serving" else contextlib.nullcontext()
    with serving, pace:  # the lock held for as long as this process serves
        # A backstop for the live streams' own shutdown hook (adapters/http/live.py):
        # what is still open 10 s after the signal is cancelled rather than holding the
        # exit. loop="asyncio", not uvicorn's "auto" (uvloop when installed): the loop
        # the tests and benchmarks run. uvloop measured no faster here (bench/README,
        # "uvloop").
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                    access_log=args.access_log, timeout_graceful_shutdown=10,
                    loop="asyncio")
    return 0


def serve_lock(db: str) -> io.FileIO:
    """The lock that makes this process the one server of `db`, held while the file
    is open (CommandFailed: another server holds it). Two servers over one database
    would each arm the same timers and run the same automatic work -- an action's
    effect twice -- and answer 500 for a command on a case the other wrote since.
    Other writers (import, simulate) write cases of their own and take no lock.

    A file beside the database, not the database: closing any descriptor of the
    database file drops this process's SQLite locks on it. flock, so that the kernel
    releases it however the process ends (SIGKILL too)."""
    import fcntl

    if db == ":memory:":  # nobody else can open it
        return io.FileIO(os.devnull, "r")
    path = _serve_lock_path(db)
    try:
        f = io.FileIO(path, "a+")
    except OSError as exc:
        raise CommandFailed(f"--db {db}: cannot open {path}: {exc.strerror or exc}"
                            ) from None
    for attempt in range(3):  # `caseloop import` looks at the lock for a moment
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt < 2:
                time.sleep(0.05)
                continue
            pid = _pid_in(f)
            f.close()
            raise CommandFailed(
                f"--db {db}: is already being served (caseloop serve, pid {pid}); two "
                "servers over one database would both run its timers and automatic work: "
                "stop the other first") from None
    f.truncate(0)
    f.write(f"{os.getpid()}\n".encode())  # for the message above, in the next one
    return f


def _pid_in(lock: io.FileIO) -> str:
    """The pid the server holding `lock` wrote into it ("?" if none yet)."""
    lock.seek(0)
    return lock.read().decode(errors="replace").strip() or "?"


def _serve_lock_path(db: str) -> str:
    # The file itself, whatever link or relative path names it.
    return f"{os.path.realpath(db)}-serve.lock"


def served_by(db: str) -> str | None:
    """The pid of the `caseloop serve` holding `db`'s serve lock, if one does."""
    import fcntl

    try:
        f = io.FileIO(_serve_lock_path(db), "r")
    except OSError:
        return None  # never served, or not ours to read
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(f)
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return None


def cmd_token(args: argparse.Namespace) -> int:
    from adapters.people import create_token, load_directory

    roles = pathlib.Path(args.roles)
    if not roles.exists():
        print(f"no {roles}: tokens are for the people it names (--roles FILE)",
              file=sys.stderr)
        return 2
    if args.user not in load_directory(roles).people:
        print(f"{args.user!r} is not a person of {roles}", file=sys.stderr)
        return 2
    print(create_token(args.tokens, args.user))
    print(f"(its digest is in {args.tokens}; start the server with --tokens {args.tokens})",
          file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from adapters.history_commands import import_file, run

    code = run(import_file, args)
    pid = served_by(args.db)
    if code == 0 and pid is not None:
        # Its Monitor reads imported history at start: until then it answers without it.
        print(f"note: {args.db} is being served (caseloop serve, pid {pid}); that server "
              "sees this import after its next restart (POST .../history/import to a "
              "running server is seen at once)", file=sys.stderr)
    return code


def cmd_export(args: argparse.Namespace) -> int:
    from adapters.history_commands import export_file, run

    return run(export_file, args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from adapters.simulation import run_cli

    return run_cli(args)


def cmd_report(args: argparse.Namespace) -> int:
    from adapters.reports.generate import run_cli

    return run_cli(args)


def port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return n


def check_database(path: str) -> None:
    """Open the SQLite file `path` before the command uses it, so that a file that is no
    database, or a directory that does not exist, is one line naming it rather than the
    store's traceback from deep inside. A missing file is left to the command: serve and
    simulate create it, import, export and report say it is missing."""
    p = pathlib.Path(path)
    if p.is_dir():
        raise CommandFailed(f"--db {path}: is a directory, not a database file")
    if not p.exists():
        if not p.parent.is_dir():
            raise CommandFailed(f"--db {path}: no directory {str(p.parent)!r}")
        return
    try:
        with contextlib.closing(sqlite3.connect(p)) as db:
            db.execute("PRAGMA schema_version")  # reads the header: "not a database"
            check_version(db)
    except sqlite3.DatabaseError as exc:
        raise CommandFailed(f"--db {path}: {exc}") from None
    except NewerSchema as exc:
        raise CommandFailed(f"--db {path}: {exc}") from None


# The options and arguments that name files or directories (not --host, --log-level...).
_PATH_ARGS = ("db", "out", "specs", "tokens", "slos", "roles", "channels", "config",
              "file", "paths")


def _named_paths(args: argparse.Namespace) -> list[pathlib.Path]:
    """Every path the command line named (defaults included)."""
    values: list[Any] = []
    for name in _PATH_ARGS:
        v = getattr(args, name, None)
        values += v if isinstance(v, list) else [v]
    return [pathlib.Path(v).absolute() for v in values if isinstance(v, str) and v]


def _about_named_file(name: Any, args: argparse.Namespace, on_the_way: bool = False
                      ) -> bool:
    """Is `name` one of the paths the person gave, or inside one (or, `on_the_way`, a
    directory on the way to one: mkdir of its parents)? Then an error about it is
    theirs to fix, not a bug."""
    if not isinstance(name, str | os.PathLike) or not str(name):
        return False
    p = pathlib.Path(name).absolute()
    return any(p == q or q in p.parents or (on_the_way and p in q.parents)
               for q in _named_paths(args))


def _quiet_broken_pipe() -> int:
    # The reader of stdout has gone (`caseloop export | head`): stop like other Unix
    # tools, and point stdout at devnull so the flush at exit does not fail again
    # (Python docs, "Note on SIGPIPE").
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def _stdout_is_a_pipe() -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="caseloop", description="caseloop workflow engine")
    sub = ap.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check workflow spec files")
    v.add_argument("paths", nargs="+", help="spec files or directories")
    v.set_defaults(fn=cmd_validate)
    w = sub.add_parser("walk", help="walk the tutorial deal through the pipeline in memory")
    w.add_argument("--specs", default="specs", help="directory of workflow specs")
    w.set_defaults(fn=cmd_walk)
    s = sub.add_parser("serve", help="run the HTTP API (uvicorn) on the SQLite store")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=port, default=8080)
    s.add_argument("--db", default="caseloop.db", help="SQLite database file")
    s.add_argument("--specs", default="specs",
                   help="workflow specs registered at start (and roles.yaml, slos.yaml)")
    s.add_argument("--no-specs", action="store_true", help="register nothing at start")
    s.add_argument("--tokens", help="tokens file (caseloop token create); env "
                   "CASELOOP_TOKENS; missing or empty: refused. Without one: open mode, "
                   "loopback only")
    s.add_argument("--durability", choices=["normal", "full"], default="normal",
                   help="normal survives a killed process; full also power loss")
    s.add_argument("--writer", choices=["thread", "process"], default=None,
                   help="where the store writes: a process of its own beside the server "
                   "(the default: faster from ~10 concurrent commands on, bench/README) "
                   "or a thread of this process; env CASELOOP_STORE_WRITER")
    s.add_argument("--monitor", choices=["process", "loop"], default="process",
                   help="where the MAPE-K Monitor folds the event log: a process of its "
                   "own (the default: off the event loop, bench/README) or the event loop")
    s.add_argument("--collector", choices=["serving", "default"], default="serving",
                   help="the garbage collector's pace: young collections every 10,000 "
                   "allocations (the default: a quarter more completions/s under load, "
                   "bench/README) or the interpreter's 700")
    s.add_argument("--log-level", default="info")
    s.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--slos", help="service levels (default: slos.yaml in --specs)")
    s.add_argument("--roles", help="roles and people (default: roles.yaml in --specs)")
    s.add_argument("--channels", metavar="FILE", help="notification channels for the "
                   "outbox (env CASELOOP_CHANNELS; default: channels.yaml in --specs)")
    s.add_argument("--virtual-clock", metavar="START",
                   help="run on a virtual clock starting at START (ISO 8601) that moves "
                   "only through POST /api/v1/clock/advance: demos, simulations, tests")
    s.add_argument("--bench-route", action="store_true", help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_serve)
    t = sub.add_parser("token", help="bearer tokens for the people of roles.yaml")
    tsub = t.add_subparsers(dest="token_command", required=True)
    tc = tsub.add_parser("create", help="mint a token for USER and print it")
    tc.add_argument("user")
    tc.add_argument("--tokens", default="caseloop-tokens.yaml", help="tokens file")
    tc.add_argument("--roles", default="specs/roles.yaml")
    tc.set_defaults(fn=cmd_token)
    i = sub.add_parser("import", help="import work history from a CSV event log")
    i.add_argument("--workflow", required=True, help="workflow id the history belongs to")
    i.add_argument("file", help="CSV: case_id,task,event,timestamp[,resource][,attributes]")
    i.add_argument("--db", default="caseloop.db", help="SQLite database file")
    i.set_defaults(fn=cmd_import)
    x = sub.add_parser("export", help="a workflow's work history as XES or CSV")
    x.add_argument("--workflow", required=True)
    x.add_argument("--format", choices=["xes", "csv"], default="xes")
    x.add_argument("--out", help="file to write (default: stdout)")
    x.add_argument("--db", default="caseloop.db", help="SQLite database file")
    x.set_defaults(fn=cmd_export)
    m = sub.add_parser("simulate", help="simulated people and customers work the pipeline "
                       "into the database (virtual time; the same seed, the same history)")
    m.add_argument("--deals", type=int, default=2000, help="deals arriving in the period")
    m.add_argument("--days", type=float, default=30.0, help="length of the period")
    m.add_argument("--pattern", choices=["base", "seasonal", "burst", "decline"],
                   default="seasonal", help="arrival pattern")
    m.add_argument("--seed", type=int, default=42)
    m.add_argument("--db", default="caseloop.db", help="SQLite database file")
    m.add_argument("--start", help="start of the period, ISO 8601 (default: today 00:00 "
                   "UTC minus --days, so the history ends today)")
    m.add_argument("--specs", default="specs", help="workflow specs and roles.yaml")
    m.add_argument("--config", help="response models and mix (default: simulation.yaml "
                   "in --specs)")
    m.set_defaults(fn=cmd_simulate)
    r = sub.add_parser("report", help="HTML reports, one page per analyzer, that work "
                       "opened from disk; only pages whose data changed are rewritten")
    r.add_argument("--db", default="caseloop.db", help="SQLite database file")
    r.add_argument("--out", default="reports", help="directory to write the pages into")
    r.add_argument("--specs", default="specs", help="roles.yaml, slos.yaml, costs.yaml")
    r.add_argument("--time-zone", default="UTC", help="the clock arrival patterns are "
                   "read on (IANA name, e.g. America/New_York)")
    r.set_defaults(fn=cmd_report)
    args = ap.parse_args(argv)
    command = f"{ap.prog} {args.command}"
    # Only mistakes in what the person named end in one line (exit 1; 2 is argparse's,
    # for a command line that does not parse): any other exception is a bug, and its
    # traceback is what finds it.
    try:
        if getattr(args, "db", None):
            check_database(args.db)
        return int(args.fn(args))
    except CommandFailed as exc:
        message = str(exc)
    except BrokenPipeError:
        if not _stdout_is_a_pipe():
            raise
        return _quiet_broken_pipe()
    except OSError as exc:
        if not _about_named_file(exc.filename, args, on_the_way=True):
            raise
        message = f"{exc.filename}: {exc.strerror or exc}"
    except ValueError as exc:
        # The config loaders' errors begin with the file they read ("nope.yaml: ...").
        if not _about_named_file(str(exc).split(": ", 1)[0], args):
            raise
        message = str(exc)
    print(f"{command}: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
