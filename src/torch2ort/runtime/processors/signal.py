"""Multi-lead signal preprocessing without torch (ECG and similar): load, select leads, resample, crop/pad, standardise.

``load_signal`` reads a ``.npy``, ``.csv``, ``.mat`` (scipy.io; the PhysioNet ``val`` variable or
the only array) or a WFDB record (the ``wfdb`` package; give the ``.hea`` file) and returns
float32 ``[leads, samples]``, leads in the order ``leads`` asks for (names from the file's header
or ``lead_names``, or indices). ``resample`` (scipy.signal.resample_poly), ``crop_pad`` and
``standardize`` (per lead, a flat lead stays zero) work along the last axis.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Literal, get_args

import numpy as np

from torch2ort.errors import PredictInputError, one_line
from torch2ort.runtime.feeds import map_npy
from torch2ort.runtime.processors.audio import _rate, ctx_meta
from torch2ort.runtime.processors.bounds import MAX_VALUES, check_values
from torch2ort.runtime.processors.records import is_archive, unpacked
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


NUMERIC_MAT = {"double", "single", "logical", *(f"{u}int{b}" for u in ("", "u") for b in (8, 16, 32, 64))}
MAT_SLACK = 1 << 16  # bytes a .mat variable's own header (name, dims, tags) may add to its data
MAX_RECORD_BYTES = 512 << 20  # a WFDB record archive, unpacked


def _open(source: Path | bytes):
    """A binary file object over a path or over bytes in memory (nothing is written anywhere)."""
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)


def _name(source: Path | bytes, fmt: str) -> str:
    return source.name if isinstance(source, Path) else f"the {fmt} given as bytes"


def _read_csv(source: Path | bytes, max_values: int) -> tuple[np.ndarray, list[str] | None]:
    # Every value ends at a comma or a line end, so counting those bounds the values before any are parsed.
    commas = newlines = returns = 0
    with _open(source) as f:
        while chunk := f.read(1 << 20):
            commas, newlines, returns = (commas + chunk.count(b","), newlines + chunk.count(b"\n"),
                                         returns + chunk.count(b"\r"))
            if commas + max(newlines, returns) >= max_values:
                raise PredictInputError(f"{_name(source, 'csv')} holds more than {max_values:,} values (commas and "
                                        "line ends), over the limit")
    with io.TextIOWrapper(_open(source), encoding="utf-8", errors="strict", newline=None) as f:
        lines = (ln for ln in f if ln.strip())
        first = next(lines, "")
        names = None
        if any(c.isalpha() for c in first.replace("e", "").replace("E", "")):
            names = [c.strip() for c in first.split(",")]
        rows = lines if names else itertools.chain([first], lines)
        data = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2)  # streamed: no copy of the text is held
    return data.T, names  # a CSV holds one lead per column


MAT_CLASSES = dict(enumerate(("cell", "struct", "object", "char", "sparse", "double", "single", "int8", "uint8",
                               "int16", "uint16", "int32", "uint32", "int64", "uint64", "function", "opaque"), 1))


def _mat_element(buf: bytes, at: int, order: str) -> tuple[int, bytes, int]:
    """(type, data, next offset) of the v5 data element at ``at``, in its full or its small (<= 4 bytes) form."""
    first = int.from_bytes(buf[at:at + 4], order)
    if first >> 16:
        return first & 0xFFFF, buf[at + 4:at + 4 + (first >> 16)], at + 8
    size = int.from_bytes(buf[at + 4:at + 8], order)
    if at + 8 + size > len(buf):
        raise ValueError("a variable header runs past its data")
    return first, buf[at + 8:at + 8 + size], at + 8 + size + (-size % 8)


def _mat_variables(path: Path | bytes) -> list[tuple[str, tuple[int, ...], str, int, int]] | None:
    """(name, shape, class, offset, compressed size or 0) of each variable of a v5 .mat; None for v4.

    Read from the first 64 KB each variable inflates to, because scipy's ``whosmat`` inflates
    128 KB of compressed input at a time (up to ~130 MB of zeros) just to read a name.
    """
    found = []
    with _open(path) as f:
        size, head = f.seek(0, 2), (f.seek(0), f.read(128))[1]
        if len(head) < 128 or head[126:128] not in (b"IM", b"MI"):
            return None
        order, pos = ("little" if head[126:128] == b"IM" else "big"), 128
        while pos + 8 <= size and len(found) < 4096:
            f.seek(pos)
            tag = f.read(8)
            kind, length = int.from_bytes(tag[:4], order), int.from_bytes(tag[4:], order)
            if kind == 15:  # miCOMPRESSED
                inflate = zlib.decompressobj()
                body = inflate.decompress(f.read(min(length, 1 << 16)), 1 << 16)
            elif kind == 14:  # miMATRIX, uncompressed
                body = tag + f.read(min(length, 1 << 16))
            else:
                raise ValueError(f"a top-level element of type {kind}, not a variable")
            at = 8  # past the miMATRIX tag
            _, flags, at = _mat_element(body, at, order)
            _, dims, at = _mat_element(body, at, order)
            _, name, at = _mat_element(body, at, order)
            bits = int.from_bytes(flags[:4], order)
            kind_name = "logical" if bits & 0x200 else MAT_CLASSES.get(bits & 0xFF, "unknown")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype="<i4" if order == "little" else ">i4"))
            found.append((name.decode("latin1"), shape, kind_name, pos, length if kind == 15 else 0))
            pos += 8 + length
    return found


def _check_mat_inflation(path: Path | bytes, offset: int, length: int, limit: int) -> None:
    """Refuse a compressed variable whose zlib stream inflates past ``limit`` bytes.

    Its header declares a shape, but the data after it can inflate to gigabytes whatever that
    shape says; it is inflated here in 1 MB pieces, counted and dropped, before ``loadmat`` keeps any.
    """
    with _open(path) as f:
        f.seek(offset + 8)
        inflate, total, left = zlib.decompressobj(), 0, length
        while left > 0 and (chunk := f.read(min(1 << 20, left))):
            left -= len(chunk)
            while chunk:
                total += len(inflate.decompress(chunk, 1 << 20))
                if total > limit:
                    raise PredictInputError(f"{_name(path, 'mat')}: a compressed variable inflates past "
                                            f"{limit:,} bytes, more than its declared shape holds")
                chunk = inflate.unconsumed_tail


def _read_mat(path: Path | bytes, key: str | None, max_values: int) -> np.ndarray:
    from scipy.io import loadmat, whosmat

    listed, what = _mat_variables(path), _name(path, "mat")
    if listed is None:  # v4: uncompressed, so whosmat reads only headers
        with _open(path) as f:
            listed = [(name, shape, kind, 0, 0) for name, shape, kind in whosmat(f)]
    listed = [entry for entry in listed if entry[2] != "sparse" and entry[0]]
    names = list(dict.fromkeys(entry[0] for entry in listed))
    if key is None:
        key = "val" if "val" in names else (names[0] if len(names) == 1 else None)
    if key not in names:
        raise PredictInputError(f"{what} holds {sorted(names)}; name the signal with load_signal key=")
    _, shape, kind, offset, compressed = next(entry for entry in listed if entry[0] == key)  # loadmat takes the first
    if kind not in NUMERIC_MAT:
        raise PredictInputError(f"{what}: {key} is a {kind} variable, not a numeric array")
    values = math.prod(shape)
    check_values(values, f"{what} ({key})", max_values)
    if compressed:
        _check_mat_inflation(path, offset, compressed, values * 16 + MAT_SLACK)  # 16: a complex double
    with _open(path) as f:
        return np.asarray(loadmat(f, variable_names=[key])[key], dtype=np.float64)


def _read_wfdb(path: Path, max_values: int, inside: Path | None = None) -> tuple[np.ndarray, list[str], int]:
    """``inside``: the folder the record must keep to (an unpacked upload): every data file its header
    names must be a plain name of a file there, so a header cannot send wfdb to read another file."""
    # wfdb uses pandas APIs that newer pandas deprecates, at import and while reading: not the user's concern
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import wfdb
        except ImportError:  # pragma: no cover - depends on the install
            raise PredictInputError("WFDB records need the wfdb package: pip install wfdb") from None
        name = str(path.with_suffix(""))
        header = wfdb.rdheader(name)
        if inside is not None:
            for f in getattr(header, "file_name", None) or []:
                if not f or Path(f).name != f or not (inside / f).is_file():
                    raise PredictInputError(f"{path.name} names the data file {str(f)[:80]!r}, which is not a file "
                                            "of the archive")
        check_values(_wfdb_values(header, path.parent), path.name, max_values)
        record = wfdb.rdrecord(name)
    return np.asarray(record.p_signal, dtype=np.float64).T, list(record.sig_name), int(record.fs)


def _wfdb_values(header, folder: Path) -> int:
    """Samples a WFDB record will decode, from its header: length x signals x samples per frame.

    A header without a length is measured by its data files; every uncompressed format spends at
    least a byte a sample, a FLAC one (508, 516, 524) has no such bound and must state its length.
    """
    per_frame = sum(getattr(header, "samps_per_frame", None) or [1] * (header.n_sig or 0))
    if header.sig_len:
        return int(header.sig_len) * max(per_frame, 1)
    if any(str(f).startswith("5") for f in getattr(header, "fmt", None) or []):
        raise PredictInputError(f"{header.record_name}.hea: a FLAC-compressed record must state its length")
    files = {folder / f for f in getattr(header, "file_name", None) or [] if f}
    return sum(f.stat().st_size for f in files if f.is_file())


def _sniff(data: bytes) -> str:
    """The format of a file given as bytes, from its first bytes: an archive is a WFDB record."""
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data[:116].startswith(b"MATLAB"):
        return "mat"
    if is_archive(data):
        return "wfdb"
    if data[:4096].startswith((b"\x00\x00\x00\x00", b"\x00\x00\x00\x0a", b"\x0a\x00\x00\x00")):
        return "mat"  # a v4 .mat: no text header, an int32 type code of 0 or 10 (double, in either byte order)
    return "csv"


def _read_bytes(data: bytes, fmt: str | None, key: str | None, max_values: int
                ) -> tuple[np.ndarray, list[str] | None, int | None]:
    """A signal file given as bytes, decoded from memory; a WFDB record comes as a zip or tar of its files."""
    fmt = fmt or _sniff(data)
    what = f"the {fmt} given as bytes"
    if not data:
        raise PredictInputError("the signal given as bytes is empty")
    try:
        if fmt == "npy":
            return _npy_bytes(data, what, max_values), None, None
        if fmt == "csv":
            data_, names = _read_csv(data, max_values)
            return data_, names, None
        if fmt == "mat":
            return _read_mat(data, key, max_values), None, None
        if not is_archive(data):
            raise PredictInputError("a WFDB record given as bytes must be a zip or tar of its .hea and .dat files")
        # decompressed bytes: at most 8 per value (float64 data files) plus room for the header
        with unpacked(data, "the WFDB record archive", min(max_values * 8, MAX_RECORD_BYTES) + MAT_SLACK) as folder:
            heads = sorted(folder.glob("*.hea"))
            if len(heads) != 1:
                raise PredictInputError(f"the WFDB record archive holds {len(heads)} .hea files; give one record")
            return _read_wfdb(heads[0], max_values, inside=folder)
    except PredictInputError:
        raise
    except Exception as exc:  # numpy, scipy and wfdb raise many types for a bad file
        raise PredictInputError(f"{what} is not a readable {fmt} signal: {one_line(str(exc), 200)}") from None


def _npy_bytes(data: bytes, what: str, max_values: int) -> np.ndarray:
    """An .npy from memory: the header's shape is checked against ``max_values`` and against the bytes
    that follow it (a lying header) before an array is made; no pickles."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)  # 2.0 and 3.0 share the header's layout
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise PredictInputError(f"{what} holds Python objects (a pickle); give numbers")
    count = math.prod(shape)
    check_values(count, what, max_values)
    if count * dtype.itemsize > len(data) - f.tell():
        raise PredictInputError(f"{what}: the header claims {count * dtype.itemsize:,} bytes of data, the file holds "
                                f"{len(data) - f.tell():,}; refusing to read it")
    f.seek(0)
    return np.asarray(np.load(f, allow_pickle=False), dtype=np.float64)


def _read(value, fmt: str | None, key: str | None, max_values: int = MAX_VALUES
          ) -> tuple[np.ndarray, list[str] | None, int | None]:
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64), None, None
    if isinstance(value, (bytes, bytearray)):
        return _read_bytes(bytes(value), fmt, key, max_values)
    if not isinstance(value, (str, Path)):
        raise PredictInputError(f"load_signal takes a file path, bytes or an array, not {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise PredictInputError(f"signal file not found: {path}")
    fmt = fmt or {".hea": "wfdb", ".dat": "wfdb"}.get(path.suffix.lower(), path.suffix.lower().lstrip("."))
    if fmt not in FORMATS:
        raise PredictInputError(f"{path.name}: unknown signal format {fmt!r}; valid: .npy, .csv, .mat, .hea (WFDB)")
    try:
        if fmt == "npy":
            mapped = map_npy(path, path.name)  # only the header is read until the size is known
            check_values(mapped.size, path.name, max_values)
            return np.asarray(mapped, dtype=np.float64), None, None
        if fmt == "csv":
            data, names = _read_csv(path, max_values)
            return data, names, None
        if fmt == "mat":
            return _read_mat(path, key, max_values), None, None
        return _read_wfdb(path, max_values)
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
                input_rate: Rate | None = None, max_values: Annotated[int, Range(1, MAX_VALUES)] = MAX_VALUES
                ) -> np.ndarray:
    """A file or array -> float32 ``[leads, samples]``. ``layout``: ``leads_first``, ``samples_first`` or
    ``auto`` (the shorter axis holds the leads). ``sample_rate`` resamples to it from the file's rate
    (WFDB) or ``input_rate``. ``max_values`` bounds the values read (checked from the file's header
    first) and the values after resampling."""
    data, names, rate = _read(value, format, key, max_values)
    names = lead_names or names
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.size == 0:
        raise PredictInputError(f"a signal must be a non-empty [leads, samples] array; got shape {list(data.shape)}")
    check_values(data.size, "the signal", max_values)
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
        data = resample(data, ctx, sample_rate, input_rate=rate, max_values=max_values)
    return np.ascontiguousarray(data, dtype=np.float32)


def resample(data, ctx, sample_rate: Rate, input_rate: Rate | None = None,
             max_values: Annotated[int, Range(1, MAX_VALUES)] = MAX_VALUES) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly) along the last axis, from the rate load_* found;
    a result over ``max_values`` values is refused before it is computed."""
    from scipy.signal import resample_poly

    rate = _rate(ctx, input_rate, "resample")
    ctx_meta(ctx)["sample_rate"] = sample_rate
    if rate == sample_rate:
        return np.asarray(data, dtype=np.float32)
    ratio = Fraction(sample_rate, rate).limit_denominator(1000)
    check_values(np.size(data), "the signal", max_values, rate, sample_rate)
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
