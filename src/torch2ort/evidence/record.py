"""Typed records that round-trip through JSON: the base class of every evidence section.

A ``Record`` is a dataclass whose fields are the keys something downstream reads; keys nobody
reads by name (raw samples, per-pass details) are kept in ``extra`` so that loading and saving
a file changes nothing. Field types drive decoding: nested records (and any class with
``from_dict``/``to_dict``, such as ``parity.gates.Gate``), ``list[...]``, ``dict[str, ...]`` and
``X | None`` are rebuilt; anything else is taken as it is.

Example::

    @dataclass
    class Ratio(Record):
        median: float

    Ratio.from_dict({"median": 3.1, "min": 2.9}).extra   # {"min": 2.9}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from torch2ort.errors import UsageError

R = TypeVar("R", bound="Record")
_HINTS: dict[type, dict[str, Any]] = {}


@dataclasses.dataclass
class Record:
    """Typed fields plus ``extra``: the keys of the same JSON object that no reader needs typed."""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, kw_only=True, repr=False, compare=True)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        if not isinstance(data, dict):
            raise UsageError(f"evidence: {cls.__name__} should be a JSON object, got {type(data).__name__}")
        hints = _hints(cls)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        required = [f.name for f in dataclasses.fields(cls) if f.name != "extra"
                    and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise UsageError(f"evidence: {cls.__name__} lacks {', '.join(missing)}")
        values = {n: _decode(hints[n], data[n]) for n in names if n in data}
        return cls(**values, extra={k: v for k, v in data.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        return out | {k: plain(v) for k, v in self.extra.items() if k not in out}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _decode(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _decode(inner[0], value) if len(inner) == 1 else value
    if isinstance(tp, type) and callable(getattr(tp, "from_dict", None)):  # a Record, or a Gate
        return tp.from_dict(value)
    if origin is list and args and isinstance(value, list):
        return [_decode(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _decode(args[1], v) for k, v in value.items()}
    return value


def plain(value: Any) -> Any:
    """Plain JSON types: records to objects, numpy scalars and arrays to numbers and lists, keys to str."""
    if isinstance(value, Record) or callable(getattr(value, "to_dict", None)):  # a Record, or a Gate
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
