"""Where an int8 CNN spends its time: ORT's profiler, per op type, fp32 export vs int8-static QDQ.

Exports a zoo network, quantises it with torch2ort's int8-static pass (16 synthetic calibration feeds),
runs both graphs under ``SessionOptions.enable_profiling`` at 2 threads, and sums the profiler's
per-node kernel times by op type (median over runs). Quantised kernels show up as QLinearConv,
ConvInteger and the like once ORT fuses a DequantizeLinear→op→QuantizeLinear group; an op still
surrounded by DequantizeLinear/QuantizeLinear runs in float between conversions.

    nice -n 5 python benchmarks/profile_int8.py lipsync [--runs 10] [--subpixel]
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from zoo_models import ZOO  # noqa: E402


def profile(path: Path, feed: dict, runs: int, threads: int, workdir: Path) -> dict:
    """op type (as ORT runs it, after its fusions) -> median ms per run, and '(total)'."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(workdir / path.stem)
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for _ in range(runs + 3):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    runs_seen: list[dict] = []
    current: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs_seen.append(current | {"(total)": e["dur"] / 1000})
            current = collections.Counter()
        elif e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            current[e["args"]["op_name"]] += e["dur"] / 1000
    kept = runs_seen[3:]  # the first three are warm-up
    ops = sorted({k for r in kept for k in r})
    return {k: statistics.median(r.get(k, 0.0) for r in kept) for k in ops}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="zoo factory: lipsync, ecg, attn_mil, lipsync_trained…")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subpixel", action="store_true",
                        help="also profile the subpixel pass's graph (ConvTranspose as Conv + DepthToSpace), fp32 "
                             "and int8")
    args = parser.parse_args()
    from torch2ort.export import export_onnx
    from torch2ort.inputs import synthetic_cases
    from torch2ort.optimization.passes import PassContext
    from torch2ort.optimization.passes.int8_static import Int8Static
    from torch2ort.optimization.passes.subpixel import SubPixel
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.spec import InputSpec

    entry = next(e for e in ZOO.values() if e.factory == args.model.removesuffix("_trained"))
    spec = InputSpec.from_cli(entry.inputs)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ctx = PassContext(tmp / "work", [c.feed for c in synthetic_cases(spec, 16, 500)])
        graphs = {"fp32": tmp / "fp32.onnx"}
        export_onnx(load_model(ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{args.model}")), spec, graphs["fp32"])
        graphs["int8"] = Int8Static()(graphs["fp32"], tmp / "int8.onnx", ctx).model
        if args.subpixel:
            graphs["subpixel fp32"] = SubPixel()(graphs["fp32"], tmp / "sp.onnx", ctx).model
            graphs["subpixel int8"] = Int8Static()(graphs["subpixel fp32"], tmp / "sp-int8.onnx", ctx).model
        feed = synthetic_cases(spec, 1, 0)[0].feed
        prof = {k: profile(p, feed, args.runs, args.threads, tmp) for k, p in graphs.items()}
    ops = sorted({op for p in prof.values() for op in p}, key=lambda op: -max(p.get(op, 0) for p in prof.values()))
    print("| op type | " + " | ".join(f"{k} ms" for k in prof) + " |")
    print("| --- |" + " ---: |" * len(prof))
    for op in ops:
        print(f"| {op} | " + " | ".join(f"{p.get(op, 0):.2f}" for p in prof.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
