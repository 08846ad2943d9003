"""`caseloop serve` told to require tokens never starts in open mode instead: a tokens
file (--tokens or CASELOOP_TOKENS) that is missing or names no one stops the start
with one line naming the file, exit 2, before the database is opened. (Without
tokens, a non-loopback address is refused: test_http_errors.py.)

The CLI runs as a subprocess, as a user runs it; the app's own refusal (for whoever
builds it with Settings) runs in-process.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from http_kit import ROOT, SPECS

from adapters.http import Settings, create_app

MISSING = "nope.yaml"


def serve(tmp_path: pathlib.Path, *extra: str, host: str = "127.0.0.1",
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CASELOOP_TOKENS"}
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", "serve", "--host", host, "--port", "0",
         "--db", str(tmp_path / "t.db"), "--specs", str(SPECS), *extra],
        cwd=tmp_path, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=30)


def refused_with_one_line(proc: subprocess.CompletedProcess[str],
                          tmp_path: pathlib.Path) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert not (tmp_path / "t.db").exists()  # refused before opening anything
    return lines[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_missing_tokens_file_is_refused_naming_it(tmp_path: pathlib.Path,
                                                    host: str) -> None:
    line = refused_with_one_line(serve(tmp_path, "--tokens", MISSING, host=host), tmp_path)
    assert f"tokens file {MISSING} (--tokens) does not exist" in line
    assert "pass --tokens FILE" not in line  # it was passed


def test_a_missing_tokens_file_from_the_environment_is_refused(
        tmp_path: pathlib.Path) -> None:
    proc = serve(tmp_path, env={"CASELOOP_TOKENS": MISSING})
    assert f"{MISSING} (CASELOOP_TOKENS) does not exist" in refused_with_one_line(
        proc, tmp_path)


@pytest.mark.parametrize("text", ["", "tokens: {}\n"])
def test_a_tokens_file_naming_no_one_is_refused(tmp_path: pathlib.Path, text: str) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text(text, encoding="utf-8")
    line = refused_with_one_line(serve(tmp_path, "--tokens", str(empty)), tmp_path)
    assert f"tokens file {empty} (--tokens) names no one" in line


def test_a_tokens_file_that_is_not_one_is_refused(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens: [a, b]\n", encoding="utf-8")
    line = refused_with_one_line(serve(tmp_path, "--tokens", str(bad)), tmp_path)
    assert f"tokens file {bad} (--tokens) cannot be read" in line


@pytest.mark.anyio
@pytest.mark.parametrize("text", [None, "tokens: {}\n"])
async def test_the_app_refuses_a_missing_or_empty_tokens_file(tmp_path: pathlib.Path,
                                                              text: str | None) -> None:
    path = tmp_path / "tokens.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    app = create_app(Settings(db=str(tmp_path / "t.db"), specs=str(SPECS),
                              tokens=str(path)))
    with pytest.raises((FileNotFoundError, ValueError), match="tokens file"):
        async with app.router.lifespan_context(app):
            pass
