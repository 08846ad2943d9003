"""Reading a YAML config file into a Struct, with errors that name the file and the
field (`channels.yaml: /outbox/attempts: Expected int >= 1`), so a bad config stops the
start with something a person can act on."""

from __future__ import annotations

import pathlib
import re
from typing import TypeVar

import msgspec
import yaml

T = TypeVar("T")

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def load_yaml(path: str | pathlib.Path, into: type[T], what: str) -> T:
    try:
        raw = yaml.safe_load(pathlib.Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the {what} file: {exc}") from None
    try:
        return msgspec.convert(raw, into)
    except msgspec.ValidationError as exc:
        m = _AT.match(str(exc))
        assert m is not None
        where = "/" + (m["path"] or "").lstrip(".").replace(".", "/")
        unknown = re.match(r"^Object contains unknown field `([^`]*)`$", m["msg"])
        if unknown:  # name the field itself, not the object holding it
            raise ValueError(f"{path}: {where.rstrip('/')}/{unknown[1]}: unknown field"
                             ) from None
        raise ValueError(f"{path}: {where}: {m['msg']}") from None
