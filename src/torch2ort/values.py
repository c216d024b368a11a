"""Checked option values: finite numbers in range, bounded counts, size lists.

One place for the rule that every tolerance, threshold, count and duration is finite and in
range, whichever way it arrived (CLI, ``--config`` TOML, Python call). Standard library and
``errors`` only, so the torch-free runtime and server use it too. NaN compares false with
everything, so a check written ``if x < 0`` lets it through; these use ``low <= x <= high``
after ``math.isfinite``, which NaN and ±inf both fail.

Example::

    atol = number("--atol", atol, 0, 1e6)          # UsageError for nan, inf, -1
    n = count("--n", n, 0, 10_000)                 # ints only: 2.5 and True are refused too
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from torch2ort.errors import UsageError


def number(flag: str, value, low: float, high: float) -> float:
    """A real number within [low, high]; bool, NaN, ±inf and non-numbers are usage errors."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{flag} {value!r:.40}: must be a number from {low:g} to {high:g}")
    if not (math.isfinite(value) and low <= value <= high):
        raise UsageError(f"{flag} {value}: must be a number from {low:g} to {high:g}")
    return float(value)


def count(flag: str, value, low: int, high: int) -> int:
    """An integer within [low, high]; floats (3.0 included), bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise UsageError(f"{flag} {value!r:.40}: must be a whole number from {low:,} to {high:,}")
    return value


def optional_count(flag: str, value, low: int, high: int) -> int | None:
    return None if value is None else count(flag, value, low, high)


def sizes(flag: str, values: Iterable | str, high: int = 65_536) -> list[int]:
    """Sizes like batch sizes: ``"1,8"`` or ``[1, 8]``, each from 1 to ``high``, order kept, repeats dropped."""
    if isinstance(values, str):
        try:
            values = [int(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"{flag} {values!r}: expected sizes like 1,8") from None
    out = [count(flag, v, 1, high) for v in values]
    if not out:
        raise UsageError(f"{flag}: give at least one size")
    return list(dict.fromkeys(out))


# The bounds every entry point shares, so the CLI, TOML and Python agree.
MAX_CASES = 10_000          # verification cases (--n): each runs torch and ORT once
MAX_SIZE = 65_536           # a batch size or a swept dynamic size
MAX_SECONDS = 3_600.0       # timed seconds per batch size and process
MAX_REPEATS = 1_000
MAX_THREADS = 1_024
MAX_TOLERANCE = 1e6         # atol / rtol: larger is no check at all

__all__ = ["MAX_CASES", "MAX_REPEATS", "MAX_SECONDS", "MAX_SIZE", "MAX_THREADS", "MAX_TOLERANCE", "count",
           "number", "optional_count", "sizes"]
