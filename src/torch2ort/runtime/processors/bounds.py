"""How large a raw input may grow in memory: one bound, checked from a file's header before it is decoded.

A 673 KB FLAC or a 1.5 MB compressed ``.mat`` can decode to gigabytes (issue 27), so the loaders
count what the header declares (samples x channels, an array's shape, a record's length), and
what resampling to the target rate would make of it, before they read any data::

    check_values(frames * channels, "clip.flac", max_values, rate=44100, target=16000)
"""

from __future__ import annotations

import math

from torch2ort.errors import PredictInputError

MAX_VALUES = 200_000_000  # decoded samples held at once (float32: 800 MB; a signal is float64 while read)
MAX_CHANNELS = 64  # audio channels; libsndfile allows 1024, which times the frames is the bomb


def resampled(values: int, rate: int | None, target: int | None) -> int:
    """How many values ``values`` samples at ``rate`` Hz become at ``target`` Hz (rounded up)."""
    if not rate or not target or rate == target:
        return values
    return math.ceil(values * target / rate)


def check_values(values: int, what: str, limit: int = MAX_VALUES, rate: int | None = None,
                 target: int | None = None) -> None:
    """Refuse ``values`` decoded samples, or what they become resampled from ``rate`` to ``target``, over ``limit``."""
    if values > limit:
        raise PredictInputError(f"{what} holds {values:,} values, over the limit of {limit:,}")
    after = resampled(values, rate, target)
    if after > limit:
        raise PredictInputError(f"{what} would hold {after:,} values resampled from {rate} Hz to {target} Hz, "
                                f"over the limit of {limit:,}")
