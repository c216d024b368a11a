"""``torch2ort triton``: write a bundle into a Triton Inference Server model repository."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "triton",
        description="Write BUNDLE as <repo>/<name>/config.pbtxt and <repo>/<name>/1/model.onnx for "
                    "Triton's onnxruntime backend, and list in <repo>/<name>/README.md the pre/post-"
                    "processing the client must do. Torch-free.")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_REPOSITORY")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="max_batch_size when every tensor has a dynamic first dim (default 8; 0 turns batching off)")
    p.add_argument("--max-delay-ms", type=float, default=5.0, help="dynamic batching queue delay (default 5)")
    p.add_argument("--instances", type=int, default=1, metavar="K", help="instance_group count (default 1)")
    p.add_argument("--gpu", action="store_true", help="KIND_GPU instances with the TensorRT accelerator")
    p.add_argument("--no-tensorrt", action="store_true", help="with --gpu: plain CUDA, no TensorRT accelerator")
    p.add_argument("--force", action="store_true", help="replace this model if the repository already has it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from torch2ort.bundle.triton import export_triton

    result = export_triton(args.bundle, args.output, max_batch=args.max_batch, instances=args.instances,
                           gpu=args.gpu, tensorrt=args.gpu and not args.no_tensorrt,
                           max_delay_ms=args.max_delay_ms, force=args.force)
    print(f"wrote {result.model_dir}/config.pbtxt and {result.model_dir}/1/model.onnx "
          f"(max_batch_size {result.max_batch_size})")
    if result.client_steps:
        print(f"the client must do {len(result.client_steps)} pre/post-processing steps itself: "
              f"see {result.model_dir}/README.md")
    return 0
