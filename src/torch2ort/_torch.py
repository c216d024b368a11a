"""Small torch helpers shared by the exporter and the torch runner (torch is imported lazily)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from torch2ort.errors import SpecError


def to_torch_args(feed: dict[str, np.ndarray], names: list[str]) -> tuple:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in names)


def flatten_outputs(out: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Name every tensor in a model's output: dict keys, namedtuple fields, else output_<i>."""
    import torch

    if isinstance(out, torch.Tensor):
        return [(prefix or "output_0", out)]
    if isinstance(out, dict):
        items, named = list(out.items()), True
    elif isinstance(out, tuple) and hasattr(out, "_fields"):
        items, named = list(zip(out._fields, out)), True
    elif hasattr(out, "to_tuple") and hasattr(out, "keys"):  # transformers ModelOutput
        items, named = list(zip(out.keys(), out.to_tuple())), True
    elif isinstance(out, (tuple, list)):
        items, named = list(enumerate(out)), False
    else:
        raise SpecError(f"model returned a {type(out).__name__}; outputs must be tensors, "
                        "or tuples, lists, dicts or namedtuples of tensors")
    flat: list[tuple[str, Any]] = []
    for key, value in items:
        if value is None:
            continue
        if prefix:
            name = f"{prefix}.{key}"
        else:
            name = str(key) if named else f"output_{key}"
        flat += flatten_outputs(value, name)
    return flat


def name_outputs(flat: list[tuple[str, Any]], output_names: tuple[str, ...] | None) -> list[str]:
    if output_names is None:
        return [n for n, _ in flat]
    if len(output_names) != len(flat):
        raise SpecError(f"--output-names gives {len(output_names)} names but the model returns "
                        f"{len(flat)} tensors ({', '.join(n for n, _ in flat)})")
    return list(output_names)


@contextlib.contextmanager
def quiet() -> Iterator[list[str]]:
    """Swallow the exporters' stdout/stderr chatter and warnings (graph dumps, progress lines).

    Both exporters print from C++ and Python, so this redirects the file descriptors, not just
    sys.stdout. The captured text is appended to the yielded list for --verbose use.
    """
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                              "torch.fx.experimental.symbolic_shapes", "torch._export")]
    levels = [lg.level for lg in loggers]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))
