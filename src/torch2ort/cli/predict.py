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
                   help="an input array from .npy, or @FILE as the raw input of the preprocess pipeline")
    p.add_argument("--text", action="append", default=[], help="text for a bundle with a text preprocess")
    p.add_argument("--raw", action="store_true", help="skip the postprocess pipeline")
    p.add_argument("--providers", help="e.g. cuda,cpu (default: $TORCH2ORT_PROVIDERS or cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    p.set_defaults(func=run)


def _load_npy(name: str, path: str) -> np.ndarray:
    from torch2ort.errors import PredictInputError

    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PredictInputError(f"--input {name}={path}: not a readable .npy file ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(args.bundle, providers=args.providers, intra_op_num_threads=args.threads)
    for note in bundle.fallbacks:
        print(f"warning: provider fallback: {note}", file=sys.stderr)
    arrays, raw_value = {}, None
    for item in args.input:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise PredictInputError(f"--input {item!r}: expected NAME=FILE.npy or NAME=@FILE")
        if value.startswith("@"):
            if not Path(value[1:]).is_file():
                raise PredictInputError(f"--input {item!r}: no such file {value[1:]}")
            raw_value = value[1:]
        else:
            arrays[name] = _load_npy(name, value)
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
