"""``torch2ort predict``: run a bundle without torch and print JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        description="Run BUNDLE on arrays (name=FILE.npy), a raw input for its preprocess "
                    "pipeline (name=@image.png) or text (--text, repeatable).")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy|NAME=@FILE",
                   help="an input array from .npy, or @FILE as the raw input of the preprocess pipeline (any NAME "
                        "for audio and signal bundles, e.g. audio=@cough.wav; repeat it to batch several such files)")
    p.add_argument("--text", action="append", default=[], help="text for a bundle with a text preprocess")
    p.add_argument("--raw", action="store_true", help="skip the postprocess pipeline")
    p.add_argument("--providers", help="e.g. cuda,cpu (default: $TORCH2ORT_PROVIDERS or cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads, 1 to 4x the logical cores (default: physical cores)")
    p.add_argument("--max-image-pixels", type=int, metavar="N",
                   help="refuse images larger than N pixels, read from the file's header before decoding "
                        "(default 40000000)")
    p.set_defaults(func=run)


def _load_npy(name: str, path: str) -> np.ndarray:
    """np.load through a memory map first: a header claiming more bytes than the file holds is refused
    before anything is allocated (a 10**12-row header would otherwise be a MemoryError)."""
    from torch2ort.errors import PredictInputError

    where = f"--input {name}={path}"
    if not Path(path).is_file():
        raise PredictInputError(f"{where}: not a readable .npy file (no such regular file)")
    try:
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
        return np.array(mapped)
    except PredictInputError:
        raise
    except (OSError, ValueError, EOFError, TypeError, MemoryError) as exc:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise PredictInputError(f"{where}: not a readable .npy file ({text})") from None


def run(args: argparse.Namespace) -> int:
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle
    from torch2ort.runtime.processors import FILE_LOADERS

    bundle = Bundle.load(args.bundle, providers=args.providers, intra_op_num_threads=args.threads,
                         max_image_pixels=args.max_image_pixels)
    for note in bundle.fallbacks:
        print(f"warning: provider fallback: {note}", file=sys.stderr)
    names = [t["name"] for t in bundle.inputs]
    steps = bundle.manifest.get("preprocess", [])
    batchable = bool(steps) and steps[0]["op"] in FILE_LOADERS
    arrays, raws, seen = {}, [], set()
    for item in args.input:
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
            if not Path(value[1:]).is_file():
                raise PredictInputError(f"--input {item!r}: no such file {value[1:]}")
            raws.append(value[1:])
        else:
            arrays[name] = _load_npy(name, value)
    raw_value = None if not raws else (raws[0] if len(raws) == 1 else raws)  # several audio/signal files: a batch
    if args.text:
        raw_value = args.text if len(args.text) > 1 else args.text[0]
    if raw_value is not None and arrays:
        raise PredictInputError("give either arrays (NAME=FILE.npy) or one raw input (@FILE or --text), not both")
    if raw_value is None and not arrays:
        raise PredictInputError("no inputs: pass --input NAME=FILE.npy, --input NAME=@FILE or --text")
    result = bundle.predict(raw_value if raw_value is not None else arrays, raw=args.raw)
    print(json.dumps({"model": bundle.name, "providers": bundle.providers, "outputs": _jsonable(dict(result))},
                     indent=2))
    return 0


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
