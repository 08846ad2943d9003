"""Shared fixtures for the workflow-pattern conformance tests (WCP-1 .. WCP-43).

`new_case(spec, data)` compiles a spec dict and creates a case whose commands also
append their events to `case.events`; `refuses(case, Error, "command", *args)` checks
a forbidden action raises and leaves the case unchanged; `replays(case)` checks the
event log rebuilds the same state.
"""

from __future__ import annotations

from typing import Any

import pytest

from engine import Case, Net, compile_document, replay

_COMMANDS = frozenset({"start", "complete", "cancel_item", "fail_item", "cancel", "fire_timer",
                       "signal", "add_instance", "force_complete", "hand_on"})


class Recorded:
    """A Case that keeps its own log: every command's events are appended to `.events`."""

    def __init__(self, net: Net, data: dict[str, Any] | None, case_id: str = "c1") -> None:
        self.net = net
        self.case, self.events = Case.create(net, case_id, data, at=0.0)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.case, name)
        if name not in _COMMANDS:
            return attr

        def command(*args: Any, **kwargs: Any) -> list[Any]:
            out = attr(*args, **kwargs)
            self.events.extend(out)
            return out

        return command


def snapshot(case: Any) -> dict[str, Any]:
    """Everything observable about a case's state."""
    return {
        "status": case.status,
        "enabled": sorted(case.enabled_tasks()),
        "tokens": case.tokens_by_condition(),
        "data": case.data,
        "items": sorted((i.id, case.net.tasks[i.task].id, i.state, i.parent, i.data)
                        for i in case.work_items()),
        "version": case.version,
    }


@pytest.fixture
def new_case():
    def make(spec: dict[str, Any] | Net, data: dict[str, Any] | None = None) -> Recorded:
        net = spec if isinstance(spec, Net) else compile_document(spec)
        return Recorded(net, data)

    return make


@pytest.fixture
def refuses():
    def check(case: Any, error: type[Exception], command: str, *args: Any,
              **kwargs: Any) -> Exception:
        before = snapshot(case)
        with pytest.raises(error) as info:
            getattr(case, command)(*args, **kwargs)
        assert snapshot(case) == before
        return info.value

    return check


@pytest.fixture
def replays():
    def check(case: Recorded) -> Case:
        again = replay(case.events, case.net)
        assert snapshot(again) == snapshot(case)
        assert again.marked == case.marked
        return again

    return check
