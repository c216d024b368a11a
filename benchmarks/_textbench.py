"""Time text-embedding backends on a real text set, each in fresh processes (benchmarks/text_worker.py).

Used by run_zoo.py and optimize_zoo.py (torch2ort's MiniLM against sentence-transformers' torch
``encode``) and by peers.py (sentence-transformers' ONNX backends too). Jobs run in alternating order
over ``repeats``; speed-ups are torch2ort Ratios (median over repeats of the per-repeat ratio, marked
unstable when the repeats or the processes' own latencies spread too much); accuracy is the minimum
over texts of the cosine between a backend's embedding and the reference backend's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from torch2ort.benchmark.stats import Ratio, jitter

WORKER = Path(__file__).resolve().parent / "text_worker.py"


def spawn(cfg: dict, python: str, work: Path, timeout_s: float = 1800) -> dict:
    """One worker process; raises RuntimeError with its last stderr lines when it fails."""
    n = len(list(work.glob("cfg-*.json")))
    cfg_path, out_path = work / f"cfg-{n}.json", work / f"out-{n}.json"
    cfg = cfg | {"embeddings": str(work / f"emb-{n}.npy")}
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"]), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    proc = subprocess.run([python, str(WORKER), str(cfg_path), str(out_path)], capture_output=True, text=True,
                          timeout=timeout_s, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.is_file():
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:400]
        raise RuntimeError(f"{cfg['backend']} worker failed (exit {proc.returncode}): {tail}")
    result = json.loads(out_path.read_text())
    if "error" in result:
        raise RuntimeError(f"{cfg['backend']} worker failed: {result['error']}")
    return result | {"process_wall_s": wall, "embeddings_file": cfg["embeddings"]}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def text_bench(jobs: dict[str, dict], texts: str, *, threads: int, seconds: float, repeats: int,
               reference: str, warmup: int = 3, log=print) -> dict:
    """``jobs``: label -> {"python": interpreter, "backend": …, plus backend keys}; ``reference`` is a label.

    Returns {"texts", "threads", "rows": {label: medians + cosine}, "vs_reference": {label: Ratio dict}}.
    """
    runs: dict[str, list[dict]] = {label: [] for label in jobs}
    with tempfile.TemporaryDirectory(prefix="torch2ort-textbench-") as tmp:
        work = Path(tmp)
        for repeat in range(repeats):
            order = list(jobs) if repeat % 2 == 0 else list(reversed(jobs))
            for label in order:
                job = dict(jobs[label])
                python = job.pop("python", sys.executable)
                cfg = job | {"texts": texts, "threads": threads, "seconds": seconds, "warmup": warmup}
                result = spawn(cfg, python, work)
                result["emb"] = np.load(result["embeddings_file"])
                runs[label].append(result)
                log(f"  {texts} {label} repeat {repeat}: p50 {result['stats']['p50']:.1f} ms")
        ref = runs[reference][-1]["emb"]
        rows, ratios = {}, {}
        for label, rs in runs.items():
            stats = {k: float(np.median([r["stats"][k] for r in rs])) for k in ("p50", "p90", "p99", "mean", "min")}
            cold = {k: float(np.median([r["cold"][k] for r in rs])) for k in rs[0]["cold"]}
            rows[label] = {**stats, "n_texts": rs[0]["n_texts"], "repeats": len(rs), "cold": cold,
                           "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in rs])),
                           "min_cosine": min(min_cosine(r["emb"], ref) for r in rs),
                           "versions": rs[0]["versions"], "backend": rs[0]["backend"],
                           "p50_per_repeat": [r["stats"]["p50"] for r in rs],
                           "jitter": jitter([r["stats"] for r in rs]),
                           "texts_per_s": 1000.0 * rs[0]["n_texts"] / stats["p50"]}
            if label != reference:
                worst = jitter([r["stats"] for r in rs + runs[reference]])
                ratios[label] = asdict(Ratio.of([r["stats"]["p50"] for r in runs[reference]],
                                                [r["stats"]["p50"] for r in rs], worst))
    return {"texts": texts, "threads": threads, "seconds": seconds, "repeats": repeats, "reference": reference,
            "rows": rows, "vs_reference": ratios}
