"""``torch2ort pack``: write a torch-free bundle from an .onnx file, or from a torch model (export + verify)."""

from __future__ import annotations

import argparse

from torch2ort.cli.common import add_model_args, add_spec_args, make_console, model_options, note_printer, spec_options


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
    from torch2ort import api

    result = api.pack(args.model, args.output, name=args.name, labels=args.labels, preprocess=args.preprocess,
                      postprocess=args.postprocess, tokenizer=args.tokenizer, parity=args.parity, n=args.n,
                      web=args.web, force=args.force, log=note_printer(make_console()), **spec_options(args),
                      **model_options(args))
    verified = result.verification
    if verified is None:
        print(f"bundle written to {result.path}" + ("" if args.parity else
                                                     " (no parity summary: pass --parity VERIFY.json)"))
    else:
        print(f"verified on {len(verified.cases)} cases (max abs err {verified.report.max_abs():.3g}); "
              f"bundle written to {result.path}")
    return 0
