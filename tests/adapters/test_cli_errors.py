"""The command line on files, databases and ports it cannot use: a one-line error that
names the file, a non-zero exit, never a traceback. Each case runs the real `caseloop`
in a process of its own, as a person at a shell would."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
import subprocess
import sys

import pytest
from http_kit import ROOT, SPECS

from adapters.sqlite_schema import SCHEMA_VERSION

WORKFLOW = "deal-approval-gate"


def caseloop(*args: str, cwd: pathlib.Path,
             stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CASELOOP_TOKENS", None)
    env.pop("CASELOOP_CHANNELS", None)
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """sc.db (a small simulation), notdb.db (not SQLite), afile (a regular file),
    future.db (sc.db as a later caseloop's schema would leave it)."""
    d = tmp_path_factory.mktemp("cli-errors")
    done = caseloop("simulate", "--deals", "5", "--days", "1", "--seed", "1", "--db",
                    "sc.db", "--specs", str(SPECS), cwd=d)
    assert done.returncode == 0, done.stderr
    (d / "notdb.db").write_text("garbage\n")
    (d / "future.db").write_bytes((d / "sc.db").read_bytes())
    with contextlib.closing(sqlite3.connect(d / "future.db")) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    (d / "afile").write_text("a file, not a directory\n")
    (d / "roles-garbage.yaml").write_text("just a string\n")
    return d


SPECS_ARGS = ("--specs", str(SPECS))
SERVE = ("serve", "--port", "0", *SPECS_ARGS)
# (argv, what stderr must name): every one a mistake in what the person typed
CASES = {
    "export --out in a missing directory": (
        ("export", "--workflow", WORKFLOW, "--db", "sc.db", "--out", "/nonexistent/x.xes"),
        "/nonexistent/x.xes"),
    "export --out a directory": (
        ("export", "--workflow", WORKFLOW, "--db", "sc.db", "--out", "/tmp"), "/tmp"),
    "export --out under a file": (
        ("export", "--workflow", WORKFLOW, "--db", "sc.db", "--format", "csv",
         "--out", "afile/x.csv"), "afile/x.csv"),
    "report --out a file": (
        ("report", "--db", "sc.db", "--out", "afile", *SPECS_ARGS), "afile"),
    "report on a file that is not a database": (
        ("report", "--db", "notdb.db", "--out", "reports", *SPECS_ARGS), "notdb.db"),
    "export from a file that is not a database": (
        ("export", "--workflow", WORKFLOW, "--db", "notdb.db"), "notdb.db"),
    "import into a file that is not a database": (
        ("import", "--workflow", WORKFLOW, "afile", "--db", "notdb.db"), "notdb.db"),
    "serve a file that is not a database": ((*SERVE, "--db", "notdb.db"), "notdb.db"),
    "simulate into a file that is not a database": (
        ("simulate", "--deals", "1", "--days", "1", "--db", "notdb.db", *SPECS_ARGS),
        "notdb.db"),
    # A later caseloop's database (an upgrade rolled back): this one must not write it.
    "serve a database of a newer schema": ((*SERVE, "--db", "future.db"), "future.db"),
    "export from a database of a newer schema": (
        ("export", "--workflow", WORKFLOW, "--db", "future.db"), "future.db"),
    "simulate into a database of a newer schema": (
        ("simulate", "--deals", "1", "--days", "1", "--db", "future.db", *SPECS_ARGS),
        "future.db"),
    "serve a database in a missing directory": (
        (*SERVE, "--db", "/nonexistent/t.db"), "/nonexistent/t.db"),
    "simulate into a missing directory": (
        ("simulate", "--deals", "1", "--days", "1", "--db", "/nonexistent/sx.db",
         *SPECS_ARGS), "/nonexistent/sx.db"),
    "serve a directory as the database": ((*SERVE, "--db", "/tmp"), "/tmp"),
    "serve --channels missing": (
        (*SERVE, "--db", "new.db", "--channels", "nope.yaml"), "nope.yaml"),
    "serve --slos missing": ((*SERVE, "--db", "new.db", "--slos", "nope.yaml"), "nope.yaml"),
    "serve --roles missing": ((*SERVE, "--db", "new.db", "--roles", "nope.yaml"), "nope.yaml"),
    "serve --roles not a roles file": (
        (*SERVE, "--db", "new.db", "--roles", "roles-garbage.yaml"), "roles-garbage.yaml"),
    "token create --tokens in a missing directory": (
        ("token", "create", "sarah.chen@acme.com", "--roles", str(SPECS / "roles.yaml"),
         "--tokens", "/nonexistent/tokens.yaml"), "/nonexistent/tokens.yaml"),
    "token create --roles not a roles file": (
        ("token", "create", "sarah.chen@acme.com", "--roles", "roles-garbage.yaml",
         "--tokens", "tokens.yaml"), "roles-garbage.yaml"),
}


@pytest.mark.parametrize("argv,names", CASES.values(), ids=CASES.keys())
def test_a_file_it_cannot_use_is_one_line(workdir: pathlib.Path, argv: tuple[str, ...],
                                          names: str) -> None:
    done = caseloop(*argv, cwd=workdir)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    command = argv[0]
    assert lines[0].startswith(f"caseloop {command}: error: "), done.stderr
    assert names in lines[0], done.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_port_out_of_range_is_a_usage_error(workdir: pathlib.Path, port: str) -> None:
    done = caseloop(*SERVE, "--db", "new.db", "--port", port, cwd=workdir)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert "caseloop serve: error: argument --port: " in done.stderr, done.stderr
    assert port in done.stderr


def test_a_closed_pipe_ends_export_quietly(workdir: pathlib.Path) -> None:
    """`caseloop export ... | head -3`: the reader is gone before the export writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = caseloop("export", "--workflow", WORKFLOW, "--db", "sc.db", "--format",
                        "csv", cwd=workdir, stdout=write)
    finally:
        os.close(write)
    assert done.stderr == "", done.stderr
    assert done.returncode == 1


def test_the_files_named_still_work(workdir: pathlib.Path) -> None:
    """The checks before a command stop nothing that works: export of the same store."""
    done = caseloop("export", "--workflow", WORKFLOW, "--db", "sc.db", "--format", "csv",
                    cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("case_id,"), done.stdout[:200]


def test_simulate_with_a_missing_config_names_it(workdir: pathlib.Path) -> None:
    """simulate's own check (after its progress bar has begun): one line, all of it."""
    done = caseloop("simulate", "--deals", "1", "--days", "1", "--db", "cfg.db",
                    "--config", "nope.yaml", *SPECS_ARGS, cwd=workdir)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert any(line.startswith("caseloop simulate: error: nope.yaml: ")
               for line in done.stderr.splitlines()), done.stderr
