"""Check a JSON value against a type hint: the manifest's typed records and the steps' signatures.

A hint is what a Python signature already says (``int``, ``str | None``, ``list[str]``,
``Literal["start", "end"]``, a ``TypedDict``), plus bounds as ``Annotated`` metadata::

    k: Annotated[int, Range(1, 1_000_000)] = 5
    size: Annotated[int, Range(1)] | Annotated[list[Annotated[int, Range(1)]], Size(2, 2)]

``check(value, hint)`` raises ``Mismatch`` for the first thing that does not fit, with
jsonschema's wording (``'five' is not of type 'integer'``), so the message names where and what.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Literal, Union

from torch2ort.errors import Mismatch

JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null", list: "array",
             tuple: "array", dict: "object"}


@dataclass(frozen=True)
class Range:
    """A number's bounds: ``lo <= x <= hi``; ``above``: ``x > above`` (an open lower bound)."""

    lo: float | None = None
    hi: float | None = None
    above: float | None = None
    nonzero: bool = False


@dataclass(frozen=True)
class Size:
    """A string's or list's length: ``lo <= len(x) <= hi``; ``unique``: no item twice."""

    lo: int = 0
    hi: int | None = None
    unique: bool = False


@dataclass(frozen=True)
class Match:
    """A string that matches ``pattern`` in full; ``message`` replaces the default text."""

    pattern: str
    message: str | None = None


Name = Annotated[str, Size(1, 256)]  # a tensor, file or result name
Rate = Annotated[int, Range(1, 768_000)]  # a sample rate in Hz
Positive = Annotated[float, Range(above=0)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:120] + "..."


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is tuple:
        return isinstance(value, list)  # JSON has no tuples
    return isinstance(value, kind)


def _names(hint: Any) -> list[str]:
    """The JSON type names a hint accepts, for "is not of type" messages."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _names(typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return [n for arg in typing.get_args(hint) for n in _names(arg)]
    if origin is Literal:
        return sorted({JSON_TYPE.get(type(a), "string") for a in typing.get_args(hint)})
    if typing.is_typeddict(hint):
        return ["object"]
    return [JSON_TYPE.get(origin or hint, "object")]


def _fits_type(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the right JSON type for ``hint`` (its bounds and items aside)."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return True
    if origin is Annotated:
        return _fits_type(value, typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return any(_fits_type(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(type(value) is type(a) for a in typing.get_args(hint))
    if typing.is_typeddict(hint):
        return isinstance(value, dict)
    if hint is None or hint is type(None):
        return value is None
    return _is(value, origin or hint)


@cache
def record_hints(record: type) -> dict[str, Any]:
    return typing.get_type_hints(record, include_extras=True)


def check(value: Any, hint: Any) -> None:
    """Raise ``Mismatch`` where ``value`` does not fit ``hint``."""
    if hint is Any or hint is object:
        return
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *marks = typing.get_args(hint)
        check(value, base)
        for mark in marks:
            _bound(value, mark)
        return
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if _fits_type(value, arg)]
        if not options:
            raise _wrong_type(value, hint)
        first = None
        for arg in options:
            try:
                return check(value, arg)
            except Mismatch as exc:
                first = first or exc
        raise first
    if origin is Literal:
        allowed = typing.get_args(hint)
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise Mismatch(f"{_short(value)} is not one of {', '.join(map(str, allowed))}")
        return
    if not _fits_type(value, hint):
        raise _wrong_type(value, hint)
    if typing.is_typeddict(hint):
        return check_record(value, hint)
    args = typing.get_args(hint)
    if origin in (list, tuple) and args:
        item = args[0]
        for i, v in enumerate(value):
            try:
                check(v, item)
            except Mismatch as exc:
                raise exc.under(i) from None
    elif origin is dict and args:
        for k, v in value.items():
            try:
                check(v, args[1])
            except Mismatch as exc:
                raise exc.under(k) from None


def check_record(value: dict, record: type) -> None:
    """A ``TypedDict``: its required keys present, every declared key of its type; other keys are let be."""
    hints = record_hints(record)
    for key in hints:  # in declaration order, so the first missing key named is always the same
        if key in record.__required_keys__ and key not in value:
            raise Mismatch(f"missing required key {key!r}", "required")
    for key, hint in hints.items():
        if key in value:
            try:
                check(value[key], hint)
            except Mismatch as exc:
                raise exc.under(key) from None


def _wrong_type(value: Any, hint: Any) -> Mismatch:
    names = _names(hint)
    return Mismatch(f"{_short(value)} is not of type {', '.join(map(repr, names))}", "type", (), names,
                    type(value).__name__)


def _bound(value: Any, mark: Any) -> None:
    if isinstance(mark, Range):
        if isinstance(value, float) and math.isnan(value):  # every comparison with NaN is False: refuse it here
            raise Mismatch("nan is not a number within the allowed range")
        if mark.lo is not None and value < mark.lo:
            raise Mismatch(f"{value} is less than the minimum of {mark.lo}")
        if mark.above is not None and value <= mark.above:
            raise Mismatch(f"{value} is less than or equal to the minimum of {mark.above}")
        if mark.hi is not None and value > mark.hi:
            raise Mismatch(f"{value} is greater than the maximum of {mark.hi}")
        if mark.nonzero and value == 0:
            raise Mismatch("must be a non-zero number", "predicate")
    elif isinstance(mark, Size):
        what = "characters" if isinstance(value, str) else "items"
        if len(value) < mark.lo:
            raise Mismatch(f"{_short(value)} is too short (at least {mark.lo} {what})")
        if mark.hi is not None and len(value) > mark.hi:
            raise Mismatch(f"{_short(value)} is too long (at most {mark.hi} {what})")
        if mark.unique and len({repr(v) for v in value}) != len(value):
            raise Mismatch(f"{_short(value)} has non-unique elements")
    elif isinstance(mark, Match) and not re.fullmatch(mark.pattern, value):
        if mark.message:
            raise Mismatch(mark.message, "predicate")
        raise Mismatch(f"{_short(value)} does not match {mark.pattern!r}")
