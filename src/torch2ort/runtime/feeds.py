"""What ``torch2ort predict`` hands a bundle, built from its ``NAME=FILE.npy`` / ``NAME=@FILE`` / text options.

Example::

    feed = predict_feed(bundle, ["image=@face.png"])          # -> "face.png", the raw input
    feed = predict_feed(bundle, ["x=x.npy"])                  # -> {"x": array}, read safely
    feed = predict_feed(bundle, ["audio=@-"])                 # -> standard input's bytes, decoded from memory
    bundle.predict(feed)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from torch2ort.errors import PredictInputError


def map_npy(path: str | Path, where: str) -> np.ndarray:
    """A .npy file's array, memory-mapped where it can be, so that only its header has been read.

    A header claiming more bytes than the file holds is refused before anything is allocated (a
    10**12-row header would otherwise be a MemoryError). No pickles. A bad file raises the readers'
    own errors (OSError, ValueError, EOFError); callers word them.
    """
    if Path(path).stat().st_size == 0:
        raise EOFError("the file is empty")
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if "mmap length is greater than file size" in str(exc):
            raise PredictInputError(f"{where}: the .npy header claims more data than the file holds; "
                                    "refusing to read it") from None
        mapped = np.load(path, allow_pickle=False)  # e.g. an empty array, which cannot be mapped
    if not isinstance(mapped, np.ndarray):
        mapped.close()
        raise ValueError("an .npz archive; give one array per --input as .npy")
    return mapped


def load_npy(path: str | Path, where: str = "", max_values: int | None = None) -> np.ndarray:
    """np.load through a memory map (``map_npy``): more than ``max_values`` values are refused from the
    header, before the data is read."""
    where = where or str(path)
    if not Path(path).is_file():
        raise PredictInputError(f"{where}: not a readable .npy file (no such regular file)")
    try:
        mapped = map_npy(path, where)
        if max_values is not None and mapped.size > max_values:
            raise PredictInputError(f"{where}: holds {mapped.size:,} values, over the limit of {max_values:,}")
        return np.array(mapped)
    except PredictInputError:
        raise
    except (OSError, ValueError, EOFError, TypeError, MemoryError, OverflowError) as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PredictInputError(f"{where}: not a readable .npy file ({text})") from None


def read_stdin() -> bytes:
    """Standard input's bytes (``--input NAME=@-``); an empty or interactive stdin is refused."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or sys.stdin.isatty():
        raise PredictInputError("--input NAME=@- reads the file from standard input; pipe or redirect it "
                                "(torch2ort predict BUNDLE --input audio=@- < cough.wav)")
    data = stream.read()
    if not data:
        raise PredictInputError("--input NAME=@-: standard input is empty")
    return data


def predict_feed(bundle, inputs: Iterable[str] = (), texts: Iterable[str] = ()):
    """The value for ``bundle.predict``: arrays by name, one raw file (several for audio/signal bundles,
    which batch them), or text(s). Mixing arrays with a raw input, or giving nothing, is refused."""
    from torch2ort.runtime.processors import FILE_LOADERS

    names = [t["name"] for t in bundle.inputs]
    steps = bundle.manifest.get("preprocess", [])
    batchable = bool(steps) and steps[0]["op"] in FILE_LOADERS
    arrays, raws, seen = {}, [], set()
    for item in inputs:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise PredictInputError(f"--input {item!r}: expected NAME=FILE.npy or NAME=@FILE")
        raw = value.startswith("@")
        if name not in names and not (raw and batchable):  # an audio/signal file may take any name (audio=@x.wav)
            raise PredictInputError(f"--input {item!r}: the bundle has no input {name!r}; its inputs: "
                                    f"{', '.join(names)}")
        if name in seen and not (raw and batchable):
            raise PredictInputError(f"--input {name}=... is given twice; give each input once")
        seen.add(name)
        if raw:
            if raws and not batchable:
                raise PredictInputError("give one raw input (@FILE); the preprocess pipeline takes a single one")
            if value == "@-":  # the file's bytes on standard input, decoded from memory
                if any(isinstance(r, bytes) for r in raws):
                    raise PredictInputError("--input NAME=@- is given twice; standard input holds one file")
                raws.append(read_stdin())
                continue
            if not Path(value[1:]).is_file():
                what = "not a regular file" if Path(value[1:]).exists() else "no such file"
                raise PredictInputError(f"--input {item!r}: {what}: {value[1:]}")
            raws.append(value[1:])
        else:
            arrays[name] = load_npy(value, f"--input {name}={value}")
    texts = list(texts)
    raw_value = None if not raws else (raws[0] if len(raws) == 1 else raws)  # several audio/signal files: a batch
    if texts:
        if raw_value is not None:
            raise PredictInputError("give either text or one raw input (@FILE), not both")
        raw_value = texts if len(texts) > 1 else texts[0]
    if raw_value is not None and arrays:
        raise PredictInputError("give either arrays (NAME=FILE.npy) or one raw input (@FILE or --text), not both")
    if raw_value is None and not arrays:
        raise PredictInputError("no inputs: pass --input NAME=FILE.npy, --input NAME=@FILE or --text")
    return raw_value if raw_value is not None else arrays


__all__ = ["load_npy", "map_npy", "predict_feed"]
