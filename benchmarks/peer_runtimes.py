"""The runtimes a user could pick instead of ONNX Runtime, on the zoo and MiniLM, same threads, fresh processes.

Per model: the fp32 ONNX export (torch2ort's dynamo exporter), then ``torch2ort.benchmark.bench_variants``
runs, each in its own fresh process and alternating order over repeats: eager torch, ``torch.compile``
(inductor; its first call, the compilation, reported apart), ONNX Runtime's CPU EP on the fp32 export (and
on `auto`, when benchmarks/out/<factory>/auto.onnx exists from an optimise run), and OpenVINO's own CPU
runtime reading the same fp32 ONNX (``compile_model``, reported apart; fp32, latency hint). Every side gets
the same thread count (torch.set_num_threads, intra_op_num_threads, INFERENCE_NUM_THREADS). Before timing,
OpenVINO's outputs are checked against ORT's on one synthetic input. The whole run holds
/tmp/t2o-bench.lock, so other benchmarks on this machine wait.

``--ort-options`` then looks into a peer's lead: ORT session variants (graph optimisation levels, no
spinning, no arena) timed against OpenVINO on the same file, and the node counts of ORT's optimised graph
next to the export's.

    nice -n 5 .venv/bin/python benchmarks/peer_runtimes.py                 # everything, writes BENCHMARKS.md
    nice -n 5 .venv/bin/python benchmarks/peer_runtimes.py --only ECG --ort-options --no-write
    .venv/bin/python benchmarks/peer_runtimes.py --quick                   # smoke test, never quoted
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from zoo_models import ZOO, Entry, count, long_texts, short_texts, tokenize  # noqa: E402

from torch2ort.benchmark import BenchOptions  # noqa: E402
from torch2ort.benchmark.run import bench_variants  # noqa: E402
from torch2ort.benchmark.stats import ratio_text  # noqa: E402
from torch2ort.errors import Torch2OrtError  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
LOCK = "/tmp/t2o-bench.lock"
OV = "OpenVINO fp32"


def minilm_entries() -> dict[str, Entry]:
    """MiniLM at the padded shapes of the real text sets (synthetic ids at those shapes: latency only)."""
    out = {}
    for label, texts in (("short", short_texts()), ("long", long_texts())):
        b, s = tokenize(texts)["input_ids"].shape
        out[f"all-MiniLM-L6-v2, {label} set ({b}×{s} tokens)"] = Entry(
            "MiniLMEmbed", [f"input_ids:{b},{s}:int64:1000..2000", f"attention_mask:{b},{s}:int64:1..1"], [b])
    return out


def export(entry: Entry, path: Path) -> InputSpec:
    from torch2ort.export import export_onnx
    from torch2ort.sources import ModelRequest, load_model

    spec = InputSpec.from_cli(entry.inputs)
    export_onnx(load_model(ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{entry.factory}")), spec, path)
    return spec


def ov_vs_ort(path: Path, spec: InputSpec, threads: int) -> float:
    """Largest |OpenVINO - ORT| over every output on one synthetic input, relative to ORT's largest |value|."""
    import numpy as np
    import onnxruntime as ort
    import openvino as ov

    from torch2ort.inputs import synthetic_feed

    feed = synthetic_feed(spec, {}, seed=1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    ref = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)
    got = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                      "INFERENCE_PRECISION_HINT": "f32"})(feed)
    worst = 0.0
    for i, r in enumerate(ref):
        worst = max(worst, float(np.max(np.abs(np.asarray(got[i]) - r)) / max(float(np.max(np.abs(r))), 1e-12)))
    return worst


def ort_graph_nodes(path: Path, level: str, work: Path, tag: str = "") -> Counter:
    """Op counts of the graph ORT actually runs, from its optimized_model_filepath."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {"extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    out = work / f"ort-{tag}{level}.onnx"
    so.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(out), load_external_data=False).graph.node)


def measure(name: str, entry: Entry, args, threads: int, work: Path) -> dict:
    from torch2ort.sources import ModelRequest

    path = work / f"{entry.factory}-{abs(hash(name)) % 10**6}.onnx"
    spec = export(entry, path)
    params, gflops = count(entry.factory, entry.inputs)
    batch = entry.batches[0] if entry.factory == "MiniLMEmbed" else 1
    # count() runs the entry's own inputs: one item for the CNNs (batch 1), the whole text set for MiniLM
    res = {"model": name, "factory": entry.factory, "params": params, "gflops_per_call": gflops, "batch": batch,
           "ov_rel_diff": ov_vs_ort(path, spec, threads), "notes": []}
    variants: dict = {"ORT fp32": str(path), OV: {"backend": "openvino", "onnx": str(path)}}
    auto = args.auto_dir / entry.factory / "auto.onnx"
    if auto.is_file():
        variants["ORT auto"] = str(auto)
    else:
        res["notes"].append(f"no {auto.relative_to(ROOT) if auto.is_relative_to(ROOT) else auto}: ORT auto not run")
    if args.ort_options:
        variants |= {
            "ORT extended (no NCHWc layout)": {"onnx": str(path), "graph_level": "extended"},
            "ORT all, no spinning": {"onnx": str(path), "session_config": {"session.intra_op.allow_spinning": 0}},
            "ORT all, no arena": {"onnx": str(path), "arena": False},
            # OpenVINO pins its threads to cores by default, ORT does not: is that its lead?
            "OpenVINO, no CPU pinning": {"backend": "openvino", "onnx": str(path),
                                         "ov_config": {"ENABLE_CPU_PINNING": False}},
        }
        res["ort_nodes"] = {lvl: dict(ort_graph_nodes(path, lvl, work)) for lvl in ("extended", "all")}
        variants |= rewritten_variants(path, entry, res)
    opts = BenchOptions(batches=[batch], seconds=args.seconds, repeats=args.repeats, threads=threads,
                        warmup=1 if args.quick else 5, profile=False, timeout_s=1800)
    request = ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:{entry.factory}")
    res["bench"] = bench_variants(request, spec, variants, opts, reference="ORT fp32")
    # torch.compile spends a minute or more compiling in every fresh process, so it gets its own, shorter A/B set
    # (torch, torch.compile, ORT fp32), and its ratio to ORT comes from that set.
    if args.compile_repeats:
        copts = BenchOptions(batches=[batch], seconds=args.seconds, repeats=args.compile_repeats, threads=threads,
                             warmup=1 if args.quick else 5, profile=False, timeout_s=1800)
        try:
            comp = bench_variants(request, spec, {"torch.compile": {"backend": "torch-compile"},
                                                  "ORT fp32": str(path)}, copts, reference="ORT fp32")
            res["bench"]["rows"]["torch.compile"] = comp["rows"]["torch.compile"]
            res["bench"]["vs_reference"]["torch.compile"] = comp["vs_reference"]["torch.compile"]
            res["compile_set"] = comp
        except Torch2OrtError as exc:  # torch.compile can fail on a model; the rest stands
            res["notes"].append(f"{name}: torch.compile failed: {exc}")
    print(f"{name}: " + ", ".join(f"{k} {v['p50']:.2f} ms" for k, v in res["bench"]["rows"].items()), flush=True)
    return res


def rewritten_variants(path: Path, entry: Entry, res: dict) -> dict:
    """The ORT graph rewrites of benchmarks/ort_rewrites.py, where they change something, checked on ORT first."""
    from ort_rewrites import check, rewrite

    out, seen = {}, set()
    for upsample, label in ((False, "ORT rewritten (1-D conv as 2-D, stride-1 ConvT as Conv)"),
                            (True, "ORT rewritten, + x2 ConvT as Conv + DepthToSpace")):
        dst = path.with_suffix(f".rw{int(upsample)}.onnx")
        counts = rewrite(path, dst, upsample=upsample)
        key = tuple(counts.values())
        if not any(key) or key in seen:
            continue
        seen.add(key)
        diff = check(path, dst, entry.inputs)
        res.setdefault("rewrites", {})[label] = {"counts": counts, "rel_diff_vs_ort": diff}
        res["ort_nodes"][label] = dict(ort_graph_nodes(dst, "all", dst.parent, tag=dst.stem))
        out[label] = str(dst)
    return out


def _cell(rows: dict, key: str, compile_key: str | None = None) -> str:
    r = rows.get(key)
    if not r:
        return "-"
    text = f"{r['p50']:.2f} ({r['p50_min']:.2f})"
    return text + (f"; {r[compile_key]:.1f} s" if compile_key else "")


def markdown(results: list[dict], threads: int, args, load: tuple[str, str]) -> str:
    from torch2ort._env import versions

    v = versions()
    import openvino

    lines = [
        f"Command: `nice -n 5 .venv/bin/python benchmarks/peer_runtimes.py{' --quick' if args.quick else ''}` "
        f"({args.seconds} s timed per process after 5 warm-up calls, {args.repeats} repeats of every backend in "
        f"fresh processes, alternating order, {threads} threads on every side; torch {v['torch']}, onnxruntime "
        f"{v['onnxruntime']}, OpenVINO {openvino.__version__.split('-')[0]}). Load average (1/5/15 min) before: "
        f"{load[0]}; after: {load[1]} — a machine shared with other work, so read ratios near 1 as level. "
        "Cells: median over repeats of each process's p50 ms (the fastest repeat's p50 in brackets). "
        "*ORT vs peer* is the peer's p50 / ORT fp32's p50 per repeat, median [min–max]: below 1 the peer is "
        f"faster. torch.compile is timed in its own {args.compile_repeats} set(s) of torch, torch.compile and "
        "ORT fp32 processes (it compiles afresh in each, a minute or more here), and compared with ORT from "
        "that set. Compile: torch.compile's first call; OpenVINO's `compile_model` (read + compile); ORT's "
        "session creation. Items per call = batch (AttnMIL: one bag)."
        + (" **A --quick smoke run: these figures are not for quoting.**" if args.quick else ""), "",
        "| model | params (M) | GFLOPs per call | torch eager | torch.compile; compile | ORT fp32; session | "
        "ORT auto | OpenVINO fp32; compile | ORT vs OpenVINO | ORT vs torch.compile | OpenVINO vs ORT outputs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for res in results:
        b = res["bench"]
        rows, ratio = b["rows"], b["vs_reference"]

        def inv(key: str, ratio: dict = ratio) -> str:  # vs_reference: ORT p50 / peer p50; shown: peer / ORT
            r = ratio.get(key)
            if not r:
                return "-"
            return ratio_text({**r, "median": 1 / r["median"], "min": 1 / r["max"], "max": 1 / r["min"]})

        lines.append(
            f"| {res['model']} | {res['params'] / 1e6:.2f} | {res['gflops_per_call']:.2f} | "
            f"{_cell(rows, 'torch')} | {_cell(rows, 'torch.compile', 'first_inference_s')} | "
            f"{_cell(rows, 'ORT fp32', 'load_s')} | {_cell(rows, 'ORT auto')} | {_cell(rows, OV, 'load_s')} | "
            f"{inv(OV)} | {inv('torch.compile')} | {res['ov_rel_diff']:.1e} |")
    notes = sorted({n for res in results for n in res["notes"]})
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def options_markdown(results: list[dict]) -> str:
    keys = list(dict.fromkeys(k for res in results for k in res["bench"]["rows"]
                              if k not in ("torch", "torch.compile", "ORT auto")))
    keys = [k for k in keys if k != OV] + [OV]
    lines = ["| variant | " + " | ".join(res["model"] for res in results) + " |",
             "| --- |" + " ---: |" * len(results)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(_cell(res["bench"]["rows"], k) for res in results) + " |")
    for res in results:
        for label, rw in res.get("rewrites", {}).items():
            lines.append(f"\n{res['model']}, {label}: {rw['counts']}; outputs vs the original on ORT: relative "
                         f"max abs {rw['rel_diff_vs_ort']:.1e}; ORT's optimised graph: "
                         + ", ".join(f"{op} {c}" for op, c in sorted(res['ort_nodes'][label].items(),
                                                                      key=lambda x: -x[1])))
    lines += ["", "ORT's optimised graph (ops that differ between levels, from `optimized_model_filepath`):", ""]
    for res in results:
        ext, full = res["ort_nodes"]["extended"], res["ort_nodes"]["all"]
        diff = {op: (ext.get(op, 0), full.get(op, 0)) for op in sorted(set(ext) | set(full))
                if ext.get(op, 0) != full.get(op, 0)}
        lines.append(f"- {res['model']}: {sum(ext.values())} nodes at extended, {sum(full.values())} at all; "
                     + ", ".join(f"{op} {a}→{b}" for op, (a, b) in diff.items()))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per process")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every backend, each in a fresh process")
    parser.add_argument("--threads", type=int, default=2, help="threads on every side (default 2)")
    parser.add_argument("--compile-repeats", type=int, default=1,
                        help="A/B sets of torch, torch.compile and ORT (each compiles afresh; 0: skip torch.compile)")
    parser.add_argument("--only", help="substrings of model names to run, comma-separated")
    parser.add_argument("--ort-options", action="store_true",
                        help="also time ORT session variants against OpenVINO and count ORT's optimised graph")
    parser.add_argument("--auto-dir", type=Path, default=OUT, help="where <factory>/auto.onnx are looked for")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 repeat, 0.2 s; never quoted")
    parser.add_argument("--out", type=Path, default=OUT, help="where peer_runtimes.json/.md go")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--from-json", type=Path, help="re-render the tables of an earlier run's JSON, timing nothing")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 0.2, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = {**{k: v for k, v in ZOO.items()}, **minilm_entries()}
    wanted = [w.strip().lower() for w in (args.only or "").split(",") if w.strip()]
    models = {k: v for k, v in models.items() if not wanted or any(w in k.lower() for w in wanted)}
    if args.from_json:
        return render(json.loads(args.from_json.read_text()), args)
    results = []
    with open(LOCK, "w") as lock, tempfile.TemporaryDirectory() as tmp:
        print(f"waiting for {LOCK} …", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)  # the machine-wide benchmark lock: one benchmark at a time
        before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for name, entry in models.items():
            results.append(measure(name, entry, args, args.threads, Path(tmp)))
        after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    (args.out).mkdir(parents=True, exist_ok=True)
    saved = {"args": {k: str(v) for k, v in vars(args).items()}, "load": [before, after], "results": results}
    stem = "peer_runtimes" + ("-options" if args.ort_options else "")
    (args.out / f"{stem}.json").write_text(json.dumps(saved, indent=1))
    return render(saved, args)


def render(saved: dict, args) -> int:
    """The tables from a run's results; updates BENCHMARKS.md unless the run was partial or a smoke test."""
    results, (before, after) = saved["results"], saved["load"]
    run = saved["args"]
    for res in results:  # runs saved before the rename counted MiniLM's whole text set as one item
        res.setdefault("gflops_per_call", res.get("gflops_per_item"))
    args.quick, args.seconds, args.repeats = run["quick"] == "True", float(run["seconds"]), int(run["repeats"])
    args.compile_repeats, args.ort_options, args.only = int(run["compile_repeats"]), run["ort_options"] == "True", \
        None if run["only"] == "None" else run["only"]
    threads = int(run["threads"])
    body = markdown(results, threads, args, (before, after))
    if args.ort_options:
        body += "\n\n**ORT session options against OpenVINO** (same processes, same cells):\n\n" + options_markdown(
            results)
    print(body)
    stem = "peer_runtimes" + ("-options" if args.ort_options else "")
    (args.out / f"{stem}.md").write_text(body + "\n")
    print(f"\nwrote {args.out / stem}.json and .md", flush=True)
    if not (args.no_write or args.quick or args.only or args.ort_options):
        update_section(ROOT / "BENCHMARKS.md", "peer-runtimes",
                       "Peer runtimes: OpenVINO and torch.compile vs ONNX Runtime (CPU)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
