"""One backend in its own process: ``python -m torch2ort.benchmark.worker CONFIG.json RESULT.json``.

Run in a fresh interpreter so ORT's spinning threads and torch's pool never share a process.
It measures, in order: import time, model load time, first inference (the cold start), then
warm-up and timed iterations per batch size, then peak RSS. Torch is imported only when the
backend is torch.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from torch2ort.benchmark.generate_worker import peak_rss_mb  # noqa: E402  (shared with the generation sides)
from torch2ort.benchmark.stats import LatencyStats  # noqa: E402
from torch2ort.errors import describe  # noqa: E402
from torch2ort.inputs import synthetic_feed  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402


def _batched(spec: InputSpec, batch_label: str | None, batch: int, seed: int) -> dict[str, np.ndarray]:
    return synthetic_feed(spec, {batch_label: batch} if batch_label else {}, seed=seed)


class _Torch:
    def __init__(self, cfg: dict) -> None:
        t = time.perf_counter()
        import torch

        self.torch = torch
        self.import_s = time.perf_counter() - t
        torch.set_num_threads(cfg["threads"])
        self.cuda = cfg.get("device") == "cuda"
        if self.cuda:  # TF32 off on both sides, so both compute in plain fp32
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        t = time.perf_counter()
        from torch2ort.sources import ModelRequest, load_model

        self.module = load_model(ModelRequest(**cfg["model"])).module
        if self.cuda:
            self.module = self.module.cuda()
        self.compiled = cfg["backend"] == "torch-compile"
        if self.compiled:
            self.module = torch.compile(self.module)
        self.load_s = time.perf_counter() - t
        self.names = InputSpec.from_dict(cfg["spec"]).names
        import io

        buf = io.BytesIO()
        torch.save(self.module.state_dict(), buf)  # the weights a torch deployment ships
        self.size_mb = buf.tell() / 2**20

    def prepare(self, feed: dict[str, np.ndarray]):
        args = tuple(self.torch.from_numpy(feed[n]) for n in self.names)
        return tuple(a.cuda() for a in args) if self.cuda else args

    def call(self, args) -> None:
        with self.torch.inference_mode():
            self.module(*args)
        if self.cuda:
            self.torch.cuda.synchronize()


class _Ort:
    def __init__(self, cfg: dict) -> None:
        t = time.perf_counter()
        import onnxruntime as ort

        self.ort = ort
        self.import_s = time.perf_counter() - t
        t = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cfg["threads"]
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        # Session variants for looking into a peer's lead (benchmarks/peer_runtimes.py --ort-options)
        level = cfg.get("graph_level")
        if level:
            opts.graph_optimization_level = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                             "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                             "layout": ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT,
                                             "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
        if cfg.get("arena") is False:
            opts.enable_cpu_mem_arena = False
        for key, value in (cfg.get("session_config") or {}).items():
            opts.add_session_config_entry(key, str(value))
        if cfg.get("profile"):
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(cfg["profile_dir"]) / "ort_profile")
        self.provider = cfg.get("provider", "CPUExecutionProvider")
        providers: list = [self.provider]
        if self.provider == "CUDAExecutionProvider":
            providers = [(self.provider, {"use_tf32": 0}), "CPUExecutionProvider"]
        elif self.provider == "TensorrtExecutionProvider":
            providers = [(self.provider, {"trt_engine_cache_enable": True,
                                          "trt_engine_cache_path": cfg.get("trt_cache", "trt-cache")}),
                         ("CUDAExecutionProvider", {"use_tf32": 0}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(cfg["onnx"], opts, providers=providers)
        if self.provider not in self.session.get_providers():
            raise RuntimeError(f"{self.provider} did not activate (active: {self.session.get_providers()})")
        self.load_s = time.perf_counter() - t
        self.gpu = self.provider != "CPUExecutionProvider"
        model = Path(cfg["onnx"])
        extra = sum(p.stat().st_size for p in model.parent.glob(model.name + "*.data"))
        self.size_mb = (model.stat().st_size + extra) / 2**20
        self.outputs = [o.name for o in self.session.get_outputs()]

    def prepare(self, feed: dict[str, np.ndarray]):
        if not self.gpu:
            return feed
        # IOBinding: inputs live on the GPU and outputs stay there, so copies are not timed as compute.
        binding = self.session.io_binding()
        for name, arr in feed.items():
            binding.bind_ortvalue_input(name, self.ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
        for name in self.outputs:
            binding.bind_output(name, "cuda")
        return binding

    def call(self, prepared) -> None:
        if self.gpu:
            self.session.run_with_iobinding(prepared)
            prepared.synchronize_outputs()
        else:
            self.session.run(None, prepared)


class _OpenVino:
    """OpenVINO's own runtime reading the same ONNX file (not ORT's OpenVINO EP, which skips non-Intel CPUs).

    Threads as on the other sides (INFERENCE_NUM_THREADS), one stream under the latency hint, fp32 kept
    explicitly (the CPU plugin would pick bf16 where the CPU has it). ``load_s`` is read + compile.
    """

    def __init__(self, cfg: dict) -> None:
        t = time.perf_counter()
        import openvino as ov

        self.import_s = time.perf_counter() - t
        t = time.perf_counter()
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": cfg["threads"], "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                  "INFERENCE_PRECISION_HINT": "f32"} | cfg.get("ov_config", {})  # variants: peer_runtimes.py
        self.compiled = core.compile_model(cfg["onnx"], "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.load_s = time.perf_counter() - t
        got = {k: self.compiled.get_property(k) for k in config}  # what the plugin applied, as text
        self.config = {k: v.get_type_name() if hasattr(v, "get_type_name") else str(v) for k, v in got.items()}
        model = Path(cfg["onnx"])
        extra = sum(p.stat().st_size for p in model.parent.glob(model.name + "*.data"))
        self.size_mb = (model.stat().st_size + extra) / 2**20

    def prepare(self, feed: dict[str, np.ndarray]):
        return feed

    def call(self, feed) -> None:
        self.request.infer(feed)


BACKENDS = {"torch": _Torch, "torch-compile": _Torch, "onnxruntime": _Ort, "openvino": _OpenVino}


def _timed(backend, prepared, warmup: int, iters: int | None, seconds: float | None) -> list[float]:
    for _ in range(warmup):
        backend.call(prepared)
    samples: list[float] = []
    deadline = time.perf_counter() + (seconds or 0)
    while True:
        t = time.perf_counter()
        backend.call(prepared)
        samples.append((time.perf_counter() - t) * 1000.0)
        if iters is not None and len(samples) >= iters:
            return samples
        if iters is None and time.perf_counter() >= deadline and len(samples) >= 5:
            return samples


def run(cfg: dict) -> dict:
    spec = InputSpec.from_dict(cfg["spec"])
    backend = BACKENDS[cfg["backend"]](cfg)
    batches = cfg["batches"]
    label = cfg.get("batch_label")
    first_prepared = backend.prepare(_batched(spec, label, batches[0], seed=0))
    t = time.perf_counter()
    backend.call(first_prepared)
    first_s = time.perf_counter() - t
    out: dict = {
        "backend": cfg["backend"],
        "pid": __import__("os").getpid(),
        "torch_imported": "torch" in sys.modules,
        "size_mb": backend.size_mb,
        "config": getattr(backend, "config", {}),
        "cold": {"import_s": backend.import_s, "load_s": backend.load_s, "first_inference_s": first_s,
                 "total_s": backend.import_s + backend.load_s + first_s,
                 "since_worker_start_s": time.perf_counter() - _T0},
        "batches": {},
    }
    if cfg.get("cold_only"):
        return out
    if cfg.get("profile"):
        walls = _timed(backend, first_prepared, cfg["warmup"], cfg.get("iters") or 50, None)
        profile = backend.session.end_profiling()
        runs = [e["dur"] / 1000.0 for e in json.loads(Path(profile).read_text())
                if e.get("name") == "model_run" and e.get("cat") == "Session"]
        timed_runs = runs[-len(walls):]
        out["profile"] = {"wall_ms": float(np.mean(walls)), "model_run_ms": float(np.mean(timed_runs)),
                          "calls": len(walls)}
        Path(profile).unlink(missing_ok=True)
        return out
    for batch in batches:
        prepared = backend.prepare(_batched(spec, label, batch, seed=batch))
        samples = _timed(backend, prepared, cfg["warmup"], cfg.get("iters"), cfg.get("seconds"))
        out["batches"][str(batch)] = {"stats": LatencyStats.from_samples(samples, batch).to_dict(),
                                      "samples_ms": samples}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    try:
        result = run(cfg)
    except Exception as exc:  # reported to the parent as data, which turns it into one line
        result = {"error": describe(exc, 500)}
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
