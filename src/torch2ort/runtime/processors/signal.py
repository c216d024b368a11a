"""Multi-lead signal preprocessing without torch (ECG and similar): load, select leads, resample, crop/pad, standardise.

``load_signal`` reads a ``.npy``, ``.csv``, ``.mat`` (scipy.io; the PhysioNet ``val`` variable or
the only array) or a WFDB record (the ``wfdb`` package; give the ``.hea`` file) and returns
float32 ``[leads, samples]``, leads in the order ``leads`` asks for (names from the file's header
or ``lead_names``, or indices). ``resample`` (scipy.signal.resample_poly), ``crop_pad`` and
``standardize`` (per lead, a flat lead stays zero) work along the last axis.
"""

from __future__ import annotations

import io
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np

from torch2ort.errors import PredictInputError, one_line
from torch2ort.runtime.processors.audio import _rate, ctx_meta
from torch2ort.runtime.typecheck import Name, Positive, Range, Rate, Size

SignalFormat = Literal["npy", "csv", "mat", "wfdb"]
FORMATS: tuple[str, ...] = get_args(SignalFormat)
LIBRARIES = {"mat": "scipy", "wfdb": "wfdb"}  # what each format needs beyond numpy


def formats_read(step: dict) -> tuple[str, ...]:
    """The formats a ``load_signal`` step may read: the one its ``format`` names, else all (it goes by suffix).

    >>> formats_read({"op": "load_signal", "format": "npy"})
    ('npy',)
    """
    return (step["format"],) if step.get("format") else FORMATS


def libraries(step: dict) -> set[str]:
    """The packages beyond numpy a ``load_signal`` step may import: its formats', scipy to resample."""
    needed = {LIBRARIES[f] for f in formats_read(step) if f in LIBRARIES}
    return needed | ({"scipy"} if step.get("sample_rate") else set())
MAX_VALUES = 200_000_000  # a larger signal is refused rather than read into memory


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    text = path.read_text(encoding="utf-8", errors="strict")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    names = None
    if lines and any(c.isalpha() for c in lines[0].replace("e", "").replace("E", "")):
        names, lines = [c.strip() for c in lines[0].split(",")], lines[1:]
    data = np.loadtxt(io.StringIO("\n".join(lines)), delimiter=",", dtype=np.float64, ndmin=2)
    return data.T, names  # a CSV holds one lead per column


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    from scipy.io import loadmat

    data = loadmat(str(path))
    arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    if key is None:
        key = "val" if "val" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
    if key not in arrays:
        raise PredictInputError(f"{path.name} holds {sorted(arrays)}; name the signal with load_signal key=")
    return np.asarray(arrays[key], dtype=np.float64)


def _read_wfdb(path: Path) -> tuple[np.ndarray, list[str], int]:
    # wfdb uses pandas APIs that newer pandas deprecates, at import and while reading: not the user's concern
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import wfdb
        except ImportError:  # pragma: no cover - depends on the install
            raise PredictInputError("WFDB records need the wfdb package: pip install wfdb") from None
        record = wfdb.rdrecord(str(path.with_suffix("")))
    return np.asarray(record.p_signal, dtype=np.float64).T, list(record.sig_name), int(record.fs)


def _read(value, fmt: str | None, key: str | None) -> tuple[np.ndarray, list[str] | None, int | None]:
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64), None, None
    if not isinstance(value, (str, Path)):
        raise PredictInputError(f"load_signal takes a file path or an array, not {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise PredictInputError(f"signal file not found: {path}")
    fmt = fmt or {".hea": "wfdb", ".dat": "wfdb"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
    if fmt not in FORMATS:
        raise PredictInputError(f"{path.name}: unknown signal format {fmt!r}; valid: .npy, .csv, .mat, .hea (WFDB)")
    try:
        if fmt == "npy":
            return np.load(path, allow_pickle=False).astype(np.float64), None, None
        if fmt == "csv":
            data, names = _read_csv(path)
            return data, names, None
        if fmt == "mat":
            return _read_mat(path, key), None, None
        return _read_wfdb(path)
    except PredictInputError:
        raise
    except Exception as exc:  # numpy, scipy and wfdb raise many types for a bad file
        raise PredictInputError(f"{path.name} is not a readable {fmt} signal: {one_line(str(exc), 200)}"
                                ) from None


def _pick_leads(data: np.ndarray, names: list[str] | None, leads: list | None) -> np.ndarray:
    if leads is None:
        return data
    rows = []
    for lead in leads:
        if isinstance(lead, int):
            if not -data.shape[0] <= lead < data.shape[0]:
                raise PredictInputError(f"lead {lead} does not exist; the signal has {data.shape[0]} leads")
            rows.append(lead)
        elif names and lead in names:
            rows.append(names.index(lead))
        else:
            known = ", ".join(names or []) or "unnamed"
            raise PredictInputError(f"lead {lead!r} is not in the signal; its leads: {known}")
    return data[rows]


def load_signal(value, ctx, format: SignalFormat | None = None, key: Name | None = None,
                leads: Annotated[list[int | Name], Size(1, 4096)] | None = None,
                lead_names: Annotated[list[Name], Size(0, 4096)] | None = None,
                layout: Literal["auto", "leads_first", "samples_first"] = "auto", sample_rate: Rate | None = None,
                input_rate: Rate | None = None) -> np.ndarray:
    """A file or array -> float32 ``[leads, samples]``. ``layout``: ``leads_first``, ``samples_first`` or
    ``auto`` (the shorter axis holds the leads). ``sample_rate`` resamples to it from the file's rate
    (WFDB) or ``input_rate``."""
    data, names, rate = _read(value, format, key)
    names = lead_names or names
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.size == 0:
        raise PredictInputError(f"a signal must be a non-empty [leads, samples] array; got shape {list(data.shape)}")
    if data.size > MAX_VALUES:
        raise PredictInputError(f"the signal has {data.size:,} values, over the limit of {MAX_VALUES:,}")
    if layout == "samples_first" or (layout == "auto" and data.shape[0] > data.shape[1]):
        data = data.T
    elif layout not in ("auto", "leads_first", "samples_first"):
        raise PredictInputError(f"load_signal layout {layout!r}: choose auto, leads_first or samples_first")
    if not np.isfinite(data).all():
        raise PredictInputError("the signal holds NaN or infinite values")
    data = _pick_leads(data, names, leads)
    rate = rate or input_rate
    if sample_rate and not rate:
        raise PredictInputError(f"load_signal sample_rate={sample_rate} needs the recording's rate: WFDB records "
                                "carry it; for .npy, .csv and .mat give input_rate")
    ctx_meta(ctx)["sample_rate"] = rate
    if sample_rate and rate != sample_rate:
        data = resample(data, ctx, sample_rate, input_rate=rate)
    return np.ascontiguousarray(data, dtype=np.float32)


def resample(data, ctx, sample_rate: Rate, input_rate: Rate | None = None) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) along the last axis, from the rate load_* found."""
    from scipy.signal import resample_poly

    rate = _rate(ctx, input_rate, "resample")
    ctx_meta(ctx)["sample_rate"] = sample_rate
    if rate == sample_rate:
        return np.asarray(data, dtype=np.float32)
    ratio = Fraction(sample_rate, rate).limit_denominator(1000)
    return resample_poly(np.asarray(data, dtype=np.float64), ratio.numerator, ratio.denominator,
                         axis=-1).astype(np.float32)


def crop_pad(data, ctx, length: Annotated[int, Range(1, 100_000_000)],
             where: Literal["start", "center", "end"] = "start") -> np.ndarray:
    """Exactly ``length`` samples: crop (from the ``start``, ``center`` or ``end``) or zero-pad at the end."""
    if where not in ("start", "center", "end"):
        raise PredictInputError(f"crop_pad where={where!r}: choose start, center or end")
    data = np.asarray(data, dtype=np.float32)
    n = data.shape[-1]
    if n >= length:
        first = {"start": 0, "center": (n - length) // 2, "end": n - length}[where]
        return np.ascontiguousarray(data[..., first:first + length])
    return np.concatenate([data, np.zeros((*data.shape[:-1], length - n), dtype=np.float32)], axis=-1)


def standardize(data, ctx, eps: Positive = 1e-8) -> np.ndarray:
    """Per lead (last axis): zero mean, unit standard deviation; a flat lead becomes zeros, not NaN."""
    data = np.asarray(data, dtype=np.float64)
    mean = data.mean(axis=-1, keepdims=True)
    std = data.std(axis=-1, keepdims=True)
    return ((data - mean) / np.where(std > eps, std, 1.0)).astype(np.float32)


PRE = {"load_signal": load_signal, "resample": resample, "crop_pad": crop_pad, "standardize": standardize}
