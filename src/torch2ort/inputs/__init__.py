"""Inputs for verification and benchmarks: feeds (``cases``), real texts, raw audio/signal files and media.

The names here are the feeds every layer above uses; the builders of real inputs are submodules
(``texts``, ``raw``, ``media``) that import the tokenizer and file loaders only when used.
"""

from __future__ import annotations

from torch2ort.inputs.cases import (
    INT_DEFAULT_RANGE,
    SWEEP_CANDIDATES,
    InputCase,
    check_feed,
    default_sweep,
    parse_sweep,
    sample_cases,
    sweep_cases,
    synthetic_cases,
    synthetic_feed,
    synthetic_tensor,
)

__all__ = ["INT_DEFAULT_RANGE", "SWEEP_CANDIDATES", "InputCase", "check_feed", "default_sweep", "parse_sweep",
           "sample_cases", "sweep_cases", "synthetic_cases", "synthetic_feed", "synthetic_tensor"]
