"""Input specs: tensor names, dims (static or labelled-dynamic), dtypes and value ranges.

Example::

    >>> spec = InputSpec.from_cli(["spectrograms:batch=1,segments=8,3,224,224:float32",
    ...                            "segment_mask:batch=1,segments=8:bool"])
    >>> spec.dynamic_labels()
    {'batch': 1, 'segments': 8}

Torch-free on purpose: the runtime and the bundle manifest reuse these types.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np

from torch2ort.errors import SpecError, unknown_name

DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}

# The example tensors are allocated (and traced, and run on every backend) at their example sizes:
# past this many bytes in all, a spec is refused before anything is allocated. Dynamic dims are
# traced small and still take any size at run time.
MAX_EXAMPLE_BYTES = 2 << 30

_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CLI_FORMAT = "NAME:DIMS:DTYPE[:LOW..HIGH], e.g. x:batch=1,3,224,224:float32"


@dataclass(frozen=True)
class Dim:
    """One dimension: a fixed ``size``, or a dynamic one named ``label`` traced at ``size``."""

    size: int
    label: str | None = None

    @property
    def dynamic(self) -> bool:
        return self.label is not None

    def __str__(self) -> str:
        return f"{self.label}={self.size}" if self.label else str(self.size)

    @classmethod
    def parse(cls, text: str, where: str) -> Dim:
        text = text.strip()
        label, _, size_text = text.rpartition("=")
        if label and not _LABEL.match(label):
            raise SpecError(f"{where}: dynamic dim label {label!r} must be an identifier, like batch=1")
        try:
            size = int(size_text)
        except ValueError:
            raise SpecError(f"{where}: dim {text!r} is not an int or label=int") from None
        if size < 1:
            raise SpecError(f"{where}: dim {text!r} must be at least 1")
        return cls(size, label or None)


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: dims, dtype and an optional [low, high] bound for synthetic values."""

    name: str
    dims: tuple[Dim, ...]
    dtype: str
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        where = f"input {self.name!r}"
        if not self.name or not re.match(r"^[A-Za-z_][A-Za-z0-9_.\-]*$", self.name):
            raise SpecError(f"input name {self.name!r} must start with a letter or _ ({_CLI_FORMAT})")
        if self.dtype not in DTYPES:
            raise SpecError(f"{where}: {unknown_name('dtype', self.dtype, list(DTYPES))}")
        if (self.low is None) != (self.high is None):
            raise SpecError(f"{where}: give both ends of the range, LOW..HIGH")
        if self.low is not None and not (math.isfinite(self.low) and math.isfinite(self.high)):
            # nan..inf (CLI or TOML) drew nothing but NaN, and NaN passes no comparison
            raise SpecError(f"{where}: range {self.low}..{self.high} must be two finite numbers")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise SpecError(f"{where}: range {self.low}..{self.high} is empty")

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    @property
    def example_bytes(self) -> int:
        n = self.np_dtype.itemsize
        for d in self.dims:
            n *= d.size
        return n

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(d.size for d in self.dims)

    def shape_for(self, sizes: dict[str, int]) -> tuple[int, ...]:
        """The concrete shape with dynamic dims taken from ``sizes`` (example size if absent)."""
        return tuple(sizes.get(d.label, d.size) if d.label else d.size for d in self.dims)

    def symbolic_shape(self) -> list[int | str]:
        return [d.label if d.label else d.size for d in self.dims]

    def to_cli(self) -> str:
        text = f"{self.name}:{','.join(str(d) for d in self.dims)}:{self.dtype}"
        if self.low is not None:
            text += f":{_num(self.low)}..{_num(self.high)}"
        return text

    @classmethod
    def from_cli(cls, text: str) -> TensorSpec:
        parts = text.split(":")
        if len(parts) not in (3, 4):
            raise SpecError(f"--input {text!r} does not parse; expected {_CLI_FORMAT}")
        name, dims_text, dtype = (p.strip() for p in parts[:3])
        where = f"--input {text!r}"
        if not dims_text:
            dims: tuple[Dim, ...] = ()
        else:
            dims = tuple(Dim.parse(d, where) for d in dims_text.split(","))
        low = high = None
        if len(parts) == 4:
            low, high = _parse_range(parts[3], where)
        return cls(name, dims, dtype, low, high)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": self.symbolic_shape(), "dims": [str(d) for d in self.dims],
                "dtype": self.dtype, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict) -> TensorSpec:
        where = f"input {data.get('name')!r}"
        dims_field = data.get("dims", data.get("shape"))
        if isinstance(dims_field, str):
            dims_field = dims_field.split(",") if dims_field else []
        if not isinstance(dims_field, list):
            raise SpecError(f"{where}: 'dims' must be a list like ['batch=1', 3, 224, 224]")
        dims = tuple(Dim.parse(str(d), where) for d in dims_field)
        try:
            return cls(str(data["name"]), dims, str(data["dtype"]), _opt_float(data.get("low")),
                       _opt_float(data.get("high")))
        except KeyError as exc:
            raise SpecError(f"{where}: missing key {exc.args[0]!r} (need name, dims, dtype)") from None


@dataclass(frozen=True)
class InputSpec:
    """The model's inputs, in positional order, plus optional output names."""

    inputs: tuple[TensorSpec, ...]
    output_names: tuple[str, ...] | None = None
    allow_all_false_masks: bool = False
    _by_name: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise SpecError(f"no inputs given; pass --input {_CLI_FORMAT}")
        names = [t.name for t in self.inputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SpecError(f"input name(s) given twice: {', '.join(dupes)}")
        if self.output_names is not None:
            if len(set(self.output_names)) != len(self.output_names) or not all(self.output_names):
                raise SpecError("--output-names must be distinct and non-empty")
        sizes: dict[str, tuple[int, str]] = {}
        for t in self.inputs:
            for d in t.dims:
                if d.label is None:
                    continue
                if d.label in sizes and sizes[d.label][0] != d.size:
                    other = sizes[d.label][1]
                    raise SpecError(f"dynamic dim {d.label!r} has example size {sizes[d.label][0]} in "
                                    f"{other!r} but {d.size} in {t.name!r}; one label, one size")
                sizes.setdefault(d.label, (d.size, t.name))
        total = sum(t.example_bytes for t in self.inputs)
        if total > MAX_EXAMPLE_BYTES:
            biggest = max(self.inputs, key=lambda t: t.example_bytes)
            raise SpecError(f"the example inputs would take {total / 2**30:,.1f} GiB ({biggest.to_cli()} alone "
                            f"{biggest.example_bytes / 2**30:,.1f} GiB); the limit is {MAX_EXAMPLE_BYTES >> 30} GiB. "
                            "Use smaller example sizes: a dynamic dim (label=N) still takes any size at run time")
        self._by_name.update({t.name: t for t in self.inputs})

    def __getitem__(self, name: str) -> TensorSpec:
        return self._by_name[name]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def dynamic_labels(self) -> dict[str, int]:
        """Each dynamic label with its example size, in order of first appearance."""
        out: dict[str, int] = {}
        for t in self.inputs:
            for d in t.dims:
                if d.label:
                    out.setdefault(d.label, d.size)
        return out

    @classmethod
    def from_cli(cls, inputs: list[str], output_names: str | list[str] | None = None,
                 allow_all_false_masks: bool = False) -> InputSpec:
        if isinstance(output_names, str):
            output_names = [n.strip() for n in output_names.split(",")]
        return cls(tuple(TensorSpec.from_cli(t) for t in inputs),
                   tuple(output_names) if output_names else None, allow_all_false_masks)

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs],
                "output_names": list(self.output_names) if self.output_names else None,
                "allow_all_false_masks": self.allow_all_false_masks}

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        outs = data.get("output_names")
        return cls(tuple(TensorSpec.from_dict(t) for t in data.get("inputs", [])),
                   tuple(outs) if outs else None, bool(data.get("allow_all_false_masks", False)))

    def sha256(self) -> str:
        """A stable hash of the spec, recorded in the ONNX provenance."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_cli(self) -> list[str]:
        return [t.to_cli() for t in self.inputs]


def _parse_range(text: str, where: str) -> tuple[float, float]:
    low, sep, high = text.partition("..")
    if not sep:
        raise SpecError(f"{where}: range {text!r} must look like LOW..HIGH, e.g. 0..30521")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise SpecError(f"{where}: range {text!r} must hold two numbers, LOW..HIGH") from None
    return lo, hi


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SpecError(f"range bound {value!r} is not a number") from None


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)
