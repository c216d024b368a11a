"""``torch2ort pack``: write a torch-free bundle from an .onnx file, or from a torch model (export + verify)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch2ort.cli.common import add_model_args, add_spec_args


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pack",
        description="Pack MODEL_OR_ONNX into a bundle directory. Given an .onnx file, only "
                    "numpy and onnxruntime are needed; given a torch MODEL, it is exported and "
                    "verified first, and a failed verification writes nothing (exit 1).")
    p.add_argument("model", nargs="?", metavar="MODEL_OR_ONNX")
    add_model_args(p)
    add_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="BUNDLE_DIR")
    p.add_argument("--name", help="model name in the manifest (default: the file's stem)")
    p.add_argument("--labels", metavar="FILE", help="class labels: one per line, or a JSON list")
    p.add_argument("--preprocess", metavar="PRESET|JSON", help="image, imagenet, text, or a JSON list of steps")
    p.add_argument("--postprocess", metavar="PRESET|JSON",
                   help="softmax-topk, sigmoid-threshold, threshold, argmax, embeddings, or a JSON list of steps")
    p.add_argument("--tokenizer", metavar="tokenizer.json", help="copied into the bundle for text preprocessing")
    p.add_argument("--parity", metavar="VERIFY.json", help="a `verify --json` report to record (for .onnx input)")
    p.add_argument("--n", type=int, default=3, help="synthetic inputs for the verification of a torch MODEL")
    p.add_argument("--web", action="store_true",
                   help="add web/: a page that runs the model in the browser with onnxruntime-web, with the "
                        "image preprocessing and postprocessing in JS (image classifiers)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort.bundle.writer import pack, pack_model, parity_summary, read_labels
    from torch2ort.errors import UsageError

    opts = {"name": args.name, "labels": read_labels(args.labels) if args.labels else None,
            "preprocess": args.preprocess, "postprocess": args.postprocess, "tokenizer": args.tokenizer,
            "web": args.web}
    if args.model and args.model.endswith(".onnx"):
        if args.preprocess_module:
            raise UsageError("--preprocess-module needs a torch MODEL (it is fused with it and exported); "
                             "an .onnx file is packed as it is")
        parity = None
        if args.parity:
            try:
                parity = parity_summary(json.loads(Path(args.parity).read_text()))
            except (OSError, ValueError, KeyError) as exc:
                raise UsageError(f"--parity {args.parity}: not a verify --json report ({exc})") from None
        out = pack(args.model, args.output, parity=parity, force=args.force, **opts)
        print(f"bundle written to {out}" + ("" if parity else " (no parity summary: pass --parity VERIFY.json)"))
        return 0
    from torch2ort.cli.common import input_spec, model_request
    from torch2ort.sources import load_model

    loaded = load_model(model_request(args, args.model))
    for note in loaded.notes:
        print(f"• {note}")
    out, result = pack_model(loaded, input_spec(args), args.output, verify_n=args.n, force=args.force,
                                     **opts)
    print(f"verified on {len(result.cases)} cases (max abs err {result.report.max_abs():.3g}); bundle written to {out}")
    return 0
