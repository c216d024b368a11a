"""``torch2ort predict``: run a bundle without torch and print JSON."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        description="Run BUNDLE on arrays (name=FILE.npy), a raw input for its preprocess "
                    "pipeline (name=@image.png) or text (--text, repeatable). A text-generation bundle "
                    "continues each --text: one prompt streams its new text to the terminal as it is "
                    "generated, several print JSON.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy|NAME=@FILE",
                   help="an input array from .npy, or @FILE as the raw input of the preprocess pipeline (any NAME "
                        "for audio and signal bundles, e.g. audio=@cough.wav; repeat it to batch several such files; "
                        "NAME=@- reads the file from standard input)")
    p.add_argument("--text", action="append", default=[], help="text for a bundle with a text preprocess")
    p.add_argument("--raw", action="store_true", help="skip the postprocess pipeline")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline option by its transformers pipeline name, e.g. aggregation_strategy=first "
                        "for a token-classification bundle, candidate_labels=cat,dog for a zero-shot one, "
                        "chunk_length_s=20 or stride_length_s=[4,2] for a speech-recognition one (VALUE is read "
                        "as JSON when it parses, else as text)")
    p.add_argument("--mask-dir", metavar="DIR",
                   help="segmentation bundles: write each image's colour mask (DIR/NAME.mask.png, PASCAL VOC palette) "
                        "and, for an image file, the mask over the image (DIR/NAME.overlay.png); only into DIR, "
                        "never over an existing file")
    p.add_argument("--providers", help="e.g. cuda,cpu (default: $TORCH2ORT_PROVIDERS or cpu)")
    p.add_argument("--threads", type=int, help="intra-op threads, 1 to 4x the logical cores (default: physical cores)")
    p.add_argument("--max-image-pixels", type=int, metavar="N",
                   help="refuse images larger than N pixels, read from the file's header before decoding "
                        "(default 40000000)")
    g = p.add_argument_group("text generation (bundles of a causal LM)")
    g.add_argument("--max-new-tokens", type=int, default=32, metavar="N", help="new tokens per prompt (default 32)")
    g.add_argument("--min-new-tokens", type=int, default=0, metavar="N", help="hold EOS back until N new tokens")
    g.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--seed", type=int, help="the same draws for the same seed (with --do-sample)")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT",
                   help="stop a row once its text contains TEXT (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort.runtime import Bundle
    from torch2ort.runtime.feeds import predict_feed

    _check_generation(args)  # option values first: a bad one is refused before any bundle is read
    bundle = Bundle.load(args.bundle, providers=args.providers, intra_op_num_threads=args.threads,
                         max_image_pixels=args.max_image_pixels)
    for note in bundle.fallbacks:
        print(f"warning: provider fallback: {note}", file=sys.stderr)
    if bundle.generates:
        return _generate(bundle, args)
    maps = _segmentation_output(bundle) if args.mask_dir else None
    feed = predict_feed(bundle, args.input, args.text)
    result = bundle.predict(feed, raw=args.raw, **_options(args.option))
    doc = {"model": bundle.name, "providers": bundle.providers, "outputs": _jsonable(dict(result))}
    if maps:
        doc["masks"] = [str(p) for p in _write_masks(result, maps, feed, args)]
    print(json.dumps(doc, indent=2))
    return 0


def _segmentation_output(bundle) -> str:
    from torch2ort.errors import UsageError

    names = [s.get("name", "segmentation") for s in bundle.manifest.get("postprocess", []) if s["op"] == "segment"]
    if not names:
        raise UsageError(f"--mask-dir: {bundle.name} has no segmentation output (no 'segment' postprocess step)")
    return names[0]


def _write_masks(result, output: str, feed, args: argparse.Namespace) -> list:
    from pathlib import Path

    from torch2ort.errors import UsageError
    from torch2ort.runtime.masks import write_masks

    if args.raw:
        raise UsageError("--mask-dir needs the postprocess: drop --raw")
    maps = list(result[output])
    if isinstance(feed, str):  # one image file: its name, and the overlay on it
        return write_masks(maps, args.mask_dir, [Path(feed).name], [feed])
    if isinstance(feed, bytes):  # from standard input
        return write_masks(maps, args.mask_dir, ["stdin"], [feed])
    return write_masks(maps, args.mask_dir, [f"map{i}" for i in range(len(maps))])  # arrays: the model's own size


def _options(pairs: list[str]) -> dict:
    from torch2ort.cli.common import parse_options

    return parse_options(pairs)


def _check_generation(args: argparse.Namespace) -> None:
    from torch2ort.errors import PredictInputError, UsageError
    from torch2ort.runtime.generate import MAX_NEW_TOKENS
    from torch2ort.runtime.sampling import SamplingOptions
    from torch2ort.values import count

    count("--max-new-tokens", args.max_new_tokens, 1, MAX_NEW_TOKENS)
    try:
        SamplingOptions(do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                        repetition_penalty=args.repetition_penalty, min_new_tokens=args.min_new_tokens,
                        seed=args.seed)
    except PredictInputError as exc:
        raise UsageError(str(exc)) from None


def _generate(bundle, args: argparse.Namespace) -> int:
    from torch2ort.errors import UsageError

    if not args.text or args.input:
        raise UsageError(f"{bundle.name} generates text: give the prompt with --text (repeatable)")
    opts = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "do_sample": args.do_sample, "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
            "repetition_penalty": args.repetition_penalty, "seed": args.seed, "stop": args.stop}
    if len(args.text) == 1:
        for step in bundle.stream(args.text, **opts):
            sys.stdout.write(step.text[0])
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    out = bundle.generate(args.text, **opts)
    print(json.dumps({"model": bundle.name, "text": out.text, "token_ids": out.token_ids,
                      "finish_reason": out.finish_reason}, indent=2))
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
