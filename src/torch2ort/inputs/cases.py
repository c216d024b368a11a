"""Input cases: seeded synthetic feeds, real samples from .npz files, and dynamic-dim sweeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch2ort.errors import SampleError, SpecError
from torch2ort.spec import InputSpec, TensorSpec

# Default extra sizes tried for each dynamic dim, besides its example size.
SWEEP_CANDIDATES = (1, 3, 7, 2, 5)
INT_DEFAULT_RANGE = (0, 10)


@dataclass
class InputCase:
    """One named feed: input name -> array. ``kind`` is synthetic, sample or sweep."""

    name: str
    feed: dict[str, np.ndarray]
    kind: str = "synthetic"
    sizes: dict[str, int] = field(default_factory=dict)


def synthetic_tensor(t: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator,
                     allow_all_false: bool = False) -> np.ndarray:
    """Random values that respect dtype and range; bool masks keep a True in every row."""
    if t.dtype == "bool":
        if t.low is not None and t.low == t.high:
            return np.full(shape, bool(t.low))
        arr = rng.random(shape) < 0.6
        if not allow_all_false and arr.size and arr.ndim >= 1:
            # An all-False attention/segment mask is a degenerate input (softmax over nothing).
            rows = arr.reshape(-1, shape[-1]) if shape[-1] else arr.reshape(-1, 1)
            empty = ~rows.any(axis=1)
            if shape[-1]:
                rows[empty, rng.integers(0, shape[-1], size=int(empty.sum()))] = True
            arr = rows.reshape(shape)
        return arr
    if np.issubdtype(t.np_dtype, np.integer):
        info = np.iinfo(t.np_dtype)
        low, high = (t.low, t.high) if t.low is not None else INT_DEFAULT_RANGE
        if t.dtype == "uint8" and t.low is None:
            low, high = 0, 255
        low, high = max(int(low), info.min), min(int(high), info.max)
        return rng.integers(low, high, size=shape, endpoint=True).astype(t.np_dtype)
    if t.low is not None:
        arr = rng.uniform(t.low, t.high, size=shape)
    else:
        arr = rng.standard_normal(shape)
    return arr.astype(t.np_dtype)


def synthetic_feed(spec: InputSpec, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = sizes or {}
    return {t.name: synthetic_tensor(t, t.shape_for(sizes), rng, spec.allow_all_false_masks)
            for t in spec.inputs}


def synthetic_cases(spec: InputSpec, n: int, seed: int = 0) -> list[InputCase]:
    return [InputCase(f"synthetic-{i}", synthetic_feed(spec, seed=seed + i), "synthetic",
                      spec.dynamic_labels()) for i in range(n)]


def default_sweep(spec: InputSpec) -> dict[str, list[int]]:
    """Per dynamic label: its example size plus two others (1, 3, 7 when the example is one of them)."""
    out = {}
    for label, size in spec.dynamic_labels().items():
        others = [c for c in SWEEP_CANDIDATES if c != size][:2]
        out[label] = sorted({size, *others})
    return out


def parse_sweep(items: list[str], spec: InputSpec) -> dict[str, list[int]]:
    """``--sweep LABEL=v1,v2`` (repeatable) over the defaults for the labels not named."""
    sweep = default_sweep(spec)
    for item in items:
        label, sep, values = item.partition("=")
        if not sep or label not in sweep:
            valid = ", ".join(sweep) or "none (the spec has no dynamic dims)"
            raise SpecError(f"--sweep {item!r}: expected LABEL=v1,v2,... with LABEL one of: {valid}")
        try:
            sizes = sorted({int(v) for v in values.split(",") if v.strip()})
        except ValueError:
            raise SpecError(f"--sweep {item!r}: sizes must be integers") from None
        if not sizes or min(sizes) < 1:
            raise SpecError(f"--sweep {item!r}: sizes must be integers >= 1")
        sweep[label] = sizes
    return sweep


def sweep_cases(spec: InputSpec, sweep: dict[str, list[int]], seed: int = 100) -> list[InputCase]:
    """One case per (label, size) away from the example size, the other labels at their example."""
    examples = spec.dynamic_labels()
    cases = []
    for label, sizes in sweep.items():
        for size in sizes:
            if size == examples[label]:
                continue
            sizes_now = {**examples, label: size}
            cases.append(InputCase(f"sweep-{label}={size}", synthetic_feed(spec, {label: size}, seed + size),
                                   "sweep", sizes_now))
    return cases


def sample_cases(path: str | Path, spec: InputSpec) -> list[InputCase]:
    """Real samples: one .npz (keys = input names) or a directory of them."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise SampleError(f"--samples {path}: the directory holds no .npz files")
    elif path.is_file():
        files = [path]
    else:
        raise SampleError(f"--samples {path}: no such file or directory")
    cases = []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (ValueError, OSError, EOFError) as exc:
            raise SampleError(f"--samples {f}: not a readable .npz file ({exc})") from None
        cases.append(InputCase(f"sample-{f.stem}", check_feed(arrays, spec, f"--samples {f}"), "sample",
                               _sizes_of(arrays, spec)))
    return cases


def check_feed(arrays: dict[str, np.ndarray], spec: InputSpec, where: str) -> dict[str, np.ndarray]:
    """Validate names, ranks, static dims and dtypes of a user-given feed; cast safely."""
    missing = [n for n in spec.names if n not in arrays]
    extra = [k for k in arrays if k not in spec.names]
    if missing or extra:
        raise SampleError(f"{where}: keys must be the input names {spec.names}; "
                          f"missing {missing}, unexpected {extra}")
    feed = {}
    labels: dict[str, int] = {}
    for t in spec.inputs:
        arr = arrays[t.name]
        if arr.ndim != len(t.dims):
            raise SampleError(f"{where}: {t.name!r} has shape {arr.shape}, expected rank {len(t.dims)} "
                              f"({t.symbolic_shape()})")
        for axis, (d, n) in enumerate(zip(t.dims, arr.shape)):
            if d.label is None and n != d.size:
                raise SampleError(f"{where}: {t.name!r} dim {axis} is {n}, expected {d.size} "
                                  f"(shape {t.symbolic_shape()})")
            if d.label is not None and labels.setdefault(d.label, n) != n:
                raise SampleError(f"{where}: dynamic dim {d.label!r} is {labels[d.label]} in one "
                                  f"input and {n} in {t.name!r}")
        if arr.dtype != t.np_dtype:
            if not np.can_cast(arr.dtype, t.np_dtype, casting="same_kind"):
                raise SampleError(f"{where}: {t.name!r} is {arr.dtype}, expected {t.dtype}")
            arr = arr.astype(t.np_dtype)
        feed[t.name] = arr
    return feed


def _sizes_of(arrays: dict[str, np.ndarray], spec: InputSpec) -> dict[str, int]:
    sizes = {}
    for t in spec.inputs:
        for d, n in zip(t.dims, arrays[t.name].shape):
            if d.label:
                sizes[d.label] = int(n)
    return sizes
