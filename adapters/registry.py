"""Workflow registration: versions, idempotence, and reloading after a restart.

Registering the spec new cases already take (same content, whatever its `version`
field says) changes nothing and answers with its version. Any other content under the
same id becomes the next version -- an older version's content too: who posts a spec
means new cases to run it, and versions are immutable (cases keep the version they
started with, new cases take the latest), so going back is going forward to a copy.
The spec directory registered at start is the exception: content some version already
has changes nothing there, or every restart would undo what was registered since.
Every version is kept in the store, so a restart compiles the same nets for the cases
that still run on old versions.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any

import anyio
import msgspec
import yaml

from actors import Runtime
from actors.ports import SpecRow
from engine import Net, WorkflowSpec, compile, decode_spec

SPEC_SUFFIXES = (".json", ".yaml", ".yml")


def spec_digest(spec: WorkflowSpec) -> str:
    """Content identity of a spec, not counting its version number."""
    body = msgspec.json.encode(msgspec.structs.replace(spec, version=0), order="sorted")
    return hashlib.sha256(body).hexdigest()[:16]


class Registered(msgspec.Struct):
    net: Net
    digest: str
    created: bool
    warnings: list[str]  # the soundness check's, and hand-overs to nowhere yet


class Registry:
    def __init__(self, store: Any, runtime: Runtime) -> None:
        self.store = store
        self.runtime = runtime
        self._versions: dict[str, list[SpecRow]] = {}
        # One registration at a time: two changed specs for one id registered at once
        # must not both take the same next version number.
        self._lock = anyio.Lock()

    async def load(self) -> int:
        """Compile every stored version into the runtime; -> how many."""
        rows = await self.store.specs()
        for row in rows:
            spec = decode_spec(row.document, "json")
            self.runtime.add_net(compile(spec, check_soundness=False))  # checked when stored
            self._versions.setdefault(row.workflow_id, []).append(row)
        return len(rows)

    async def register(self, document: bytes | str | dict[str, Any], now: float,
                       *, at_start: bool = False) -> Registered:
        """Decode, compile and store a spec; new cases take it (see the module
        docstring; `at_start`: the spec directory). Raises SpecDecodeError / SpecError."""
        async with self._lock:
            return await self._register(document, now, at_start)

    async def _register(self, document: bytes | str | dict[str, Any], now: float,
                        at_start: bool) -> Registered:
        # Decoding and compiling run on a worker thread: a YAML spec near the body limit
        # takes seconds to parse, the soundness check a second or two, and every other
        # request would wait for them.
        spec = await anyio.to_thread.run_sync(decode_spec, document)
        digest = spec_digest(spec)
        known = self._versions.get(spec.id, [])
        for row in known if at_start else known[-1:]:  # rows in version order
            if row.digest == digest:
                net = self.runtime.net(spec.id, row.version)
                return Registered(net, digest, False, self._warnings(net))
        version = max(spec.version, max((r.version for r in known), default=0) + 1)
        spec = msgspec.structs.replace(spec, version=version)
        net = await anyio.to_thread.run_sync(compile, spec)  # nothing stored if it raises
        row = SpecRow(spec.id, version, digest, msgspec.json.encode(spec).decode(), now)
        await self.store.save_spec(row)
        self._versions.setdefault(spec.id, []).append(row)
        self.runtime.add_net(net)
        return Registered(net, digest, True, self._warnings(net))

    def _warnings(self, net: Net) -> list[str]:
        # A hand-over to a workflow nobody registered ends the case there, silently: say
        # so while the spec's author is looking (not an error: the pipeline's workflows
        # are registered one by one, and the target may come next).
        known = {n.workflow_id for n in self.runtime.workflows()}
        return list(net.warnings) + [
            f"on_complete hands on to {wf!r}, which is not registered: until it is, cases "
            "that reach it end here" for wf in sorted({wf for wf, _ in net.handovers
                                                        if wf not in known})]

    def versions(self, workflow_id: str) -> list[SpecRow]:
        return list(self._versions.get(workflow_id, []))

    def document(self, workflow_id: str, version: int) -> dict[str, Any]:
        for row in self._versions.get(workflow_id, []):
            if row.version == version:
                return msgspec.json.decode(row.document)
        raise KeyError((workflow_id, version))


def looks_like_workflow(text: str, suffix: str) -> bool:
    """A spec has flows or a list of tasks (slos.yaml's `tasks` is a mapping); other
    JSON or YAML beside it is configuration. A file that does not parse counts as a
    spec, so that its errors get reported."""
    try:
        doc: Any = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except Exception:
        return True
    return isinstance(doc, dict) and ("flows" in doc or isinstance(doc.get("tasks"), list))


def workflow_files(directory: str | pathlib.Path) -> list[pathlib.Path]:
    """The workflow specs in a directory (not its subdirectories)."""
    return [f for f in sorted(pathlib.Path(directory).iterdir())
            if f.suffix in SPEC_SUFFIXES
            and looks_like_workflow(f.read_text(encoding="utf-8"), f.suffix)]
