"""The machine's fp32 matrix-multiply roof, measured with ONNX Runtime's own MatMul (MLAS) at 2 threads,
and each zoo CNN's achieved GFLOP/s from run_zoo.json as a share of it.

    .venv/bin/python benchmarks/sgemm_roof.py [--threads 2] [--run-zoo benchmarks/out/run_zoo.json]

Prints a Markdown table; the roof is the best rate over a few square sizes (best of 5 runs each).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def ort_sgemm_gflops(threads: int, sizes: tuple[int, ...] = (1024, 2048, 3072)) -> float:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    best = 0.0
    for n in sizes:
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                                  [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n]),
                                   helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])],
                                  [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        feed = {k: np.random.default_rng(0).standard_normal((n, n)).astype(np.float32) for k in "ab"}
        sess.run(None, feed)
        for _ in range(5):
            t = time.perf_counter()
            sess.run(None, feed)
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-zoo", type=Path, default=Path(__file__).parent / "out" / "run_zoo.json")
    args = parser.parse_args()
    roof = ort_sgemm_gflops(args.threads)
    print(f"ONNX Runtime MatMul (MLAS) fp32 roof: {roof:.1f} GFLOP/s at {args.threads} threads "
          "(best over 1024², 2048², 3072², best of 5 each)\n")
    data = json.loads(args.run_zoo.read_text())
    print("| model | batch | ORT p50 ms | achieved GFLOP/s | share of the roof |\n| --- | ---: | ---: | ---: | ---: |")
    for m in data["cnn"]:
        for row in m["report"]["rows"]:
            if row["backend"] != "onnxruntime":
                continue
            rate = m["gflops_per_item"] * row["batch"] / (row["p50"] / 1e3)
            print(f"| {m['model']} | {row['batch']} | {row['p50']:.2f} | {rate:.1f} | {100 * rate / roof:.0f}% |")


if __name__ == "__main__":
    main()
