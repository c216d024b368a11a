"""Orchestrate isolated A/B runs: torch and ONNX Runtime each in fresh processes, several repeats.

Example::

    report = bench(ModelRequest("net.py:Net"), spec, "net.onnx", BenchOptions(batches=[1, 8]))
    report.ratios["onnxruntime"]["8"]    # Ratio(median, min, max): torch p50 / ORT p50
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from torch2ort import values as V
from torch2ort._env import machine_info, noise_between, noise_snapshot, physical_cores, versions
from torch2ort.benchmark.stats import Ratio, jitter
from torch2ort.errors import UsageError
from torch2ort.runtime.providers import ALIASES
from torch2ort.spec import InputSpec


@dataclass
class BenchOptions:
    batches: list[int] = field(default_factory=lambda: [1])
    threads: int | None = None          # default: physical cores, the same on both sides
    iters: int | None = None            # fixed count, or …
    seconds: float | None = 2.0         # … run each batch for this long (at least 5 calls)
    warmup: int = 5
    repeats: int = 3                    # A/B pairs, each in fresh processes
    providers: list[str] = field(default_factory=lambda: ["cpu"])
    compile: bool = False               # add a torch.compile row (compile time reported apart): peers torch-compile
    peers: bool | str | list[str] = False  # runtimes a user could pick instead: True for all, or names of PEER_LABELS
    profile: bool = True                # ORT profiling run for the binding overhead
    timeout_s: float = 900.0

    def __post_init__(self) -> None:  # NaN or inf seconds would time forever (issue 27)
        self.batches = V.sizes("--batch", self.batches)
        self.threads = V.optional_count("--threads", self.threads, 1, V.MAX_THREADS)
        self.iters = V.optional_count("--iters", self.iters, 1, 10_000_000)
        if self.seconds is not None:
            self.seconds = V.number("--seconds", self.seconds, 0.001, V.MAX_SECONDS)
        self.warmup = V.count("--warmup", self.warmup, 0, 1_000_000)
        self.repeats = V.count("--repeats", self.repeats, 1, V.MAX_REPEATS)
        self.timeout_s = V.number("timeout_s", self.timeout_s, 1.0, 86_400.0)
        self.peers = peer_names(self.peers)
        if self.compile and "torch-compile" not in self.peers:  # --compile: the torch.compile peer
            self.peers = [*self.peers, "torch-compile"]


@dataclass
class BenchReport:
    model: str
    onnx: str
    spec: dict
    options: dict
    machine: dict
    versions: dict
    batch_label: str | None
    runs: list[dict] = field(default_factory=list)       # every worker's output, samples included
    cold_runs: list[dict] = field(default_factory=list)  # cold-start-only processes
    ratios: dict = field(default_factory=dict)           # candidate -> batch -> Ratio dict
    cold: dict = field(default_factory=dict)             # backend -> medians over repeats
    overhead: dict | None = None
    compile_s: float | None = None
    peers: dict = field(default_factory=dict)             # peer -> {"measured": bool, "note": str, "compile_s": …}
    web: dict | None = None                               # onnxruntime-web in Chromium: info + per-batch stats
    noise: dict = field(default_factory=dict)             # load average and CPU steal around the measurement

    def rows(self) -> list[dict]:
        """Per backend and batch: the median of each statistic over repeats."""
        grouped: dict[tuple[str, str], list[dict]] = {}
        for r in self.runs:
            for b, data in r.get("batches", {}).items():
                grouped.setdefault((r["label"], b), []).append(r | {"stats": data["stats"]})
        rows = []
        for (label, b), runs in grouped.items():
            keys = runs[0]["stats"].keys()
            stats = {k: float(np.median([x["stats"][k] for x in runs])) for k in keys}
            rows.append({"backend": label, "batch": int(b), "repeats": len(runs), **stats,
                         "peak_rss_mb": float(np.median([x["peak_rss_mb"] for x in runs])),
                         "size_mb": runs[0]["size_mb"]})
        return sorted(rows, key=lambda r: (r["batch"], r["backend"]))

    def to_dict(self) -> dict:
        return asdict(self) | {"rows": self.rows()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: dict) -> BenchReport:
        d = {k: v for k, v in d.items() if k != "rows"}
        return cls(**d)


def batch_label(spec: InputSpec) -> str | None:
    labels = spec.dynamic_labels()
    if "batch" in labels:
        return "batch"
    first = spec.inputs[0].dims[0] if spec.inputs[0].dims else None
    return first.label if first is not None and first.label else None


def _spawn(cfg: dict, workdir: Path, timeout_s: float) -> dict:
    """Run one worker in a fresh interpreter; returns its result plus the parent-measured wall time."""
    n = len(list(workdir.glob("cfg-*.json")))
    cfg_path, out_path = workdir / f"cfg-{n}.json", workdir / f"out-{n}.json"
    cfg_path.write_text(json.dumps(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": str(cfg["threads"])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch2ort.benchmark.worker", str(cfg_path), str(out_path)],
                          capture_output=True, text=True, timeout=timeout_s, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.is_file():
        tail = " ".join(proc.stderr.strip().splitlines()[-3:])[:400]
        raise UsageError(f"the {cfg['backend']} benchmark process failed (exit {proc.returncode}): {tail}")
    result = json.loads(out_path.read_text())
    if "error" in result:
        raise UsageError(f"the {cfg['backend']} benchmark failed: {result['error']}")
    result["process_wall_s"] = wall
    return result


def _provider(name: str) -> str:
    full = ALIASES.get(name.lower(), name)
    if full not in ("CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"):
        raise UsageError(f"--providers takes cpu, cuda, tensorrt; got {name!r}")
    return full


def bench(request, spec: InputSpec, onnx_path: str | Path, opts: BenchOptions) -> BenchReport:
    """Benchmark torch vs ORT per batch size, each backend in its own processes, ``repeats`` times."""
    import onnxruntime as ort

    if not Path(onnx_path).is_file():
        raise UsageError(f"ONNX file not found: {onnx_path}")
    label = batch_label(spec)
    example = spec.dynamic_labels().get(label) if label else None
    if label is None and any(b != spec.inputs[0].dims[0].size for b in opts.batches if spec.inputs[0].dims):
        raise UsageError("--batch needs a dynamic batch dim in the spec (e.g. x:batch=1,3,224,224:float32)")
    providers = [_provider(p) for p in opts.providers]
    missing = [p for p in providers if p not in ort.get_available_providers()]
    if missing:
        raise UsageError(f"{', '.join(missing)} not available in this onnxruntime build "
                         f"(available: {', '.join(ort.get_available_providers())}); no silent fallback in a benchmark")
    threads = opts.threads or physical_cores()
    base = _base_cfg(request, spec, onnx_path, opts, threads, label)
    report = BenchReport(request.model, str(onnx_path), spec.to_dict(),
                         asdict(opts) | {"threads": threads, "example_batch": example}, machine_info(),
                         versions(), label)
    gpu = any(p != "CPUExecutionProvider" for p in providers)
    before = noise_snapshot()
    with tempfile.TemporaryDirectory(prefix="torch2ort-bench-") as tmp:
        work = Path(tmp)
        jobs = [("torch", {"backend": "torch", "device": "cpu"})]
        if gpu:
            jobs.append(("torch-cuda", {"backend": "torch", "device": "cuda"}))
        jobs += [(_job_label(p), {"backend": "onnxruntime", "provider": p, "trt_cache": str(work / "trt")})
                 for p in providers]
        if opts.peers:
            report.peers = {k: v for k, v in peer_status().items() if k in opts.peers}
            jobs += [(PEER_LABELS[name], {"backend": name, "device": "cpu"})
                     for name, status in report.peers.items() if status["measured"]]
        for repeat in range(opts.repeats):
            order = jobs if repeat % 2 == 0 else list(reversed(jobs))  # alternate, so order bias cancels
            for job_label, extra in order:
                result = _spawn(base | extra, work, opts.timeout_s)
                report.runs.append(result | {"label": job_label, "repeat": repeat})
                if extra["backend"] == "torch-compile":
                    continue  # its first call is the compilation, reported apart; no cold-only process
                # Cold start: a process that only imports, loads and runs once, timed from outside too.
                cold = _spawn(base | extra | {"cold_only": True}, work, opts.timeout_s)
                report.cold_runs.append(cold | {"label": job_label, "repeat": repeat})
        if opts.profile:
            prof = _spawn(base | {"backend": "onnxruntime", "profile": True, "profile_dir": str(work),
                                  "iters": opts.iters or 50}, work, opts.timeout_s)["profile"]
            over = prof["wall_ms"] - prof["model_run_ms"]
            report.overhead = {**prof, "overhead_ms": over, "overhead_pct": 100.0 * over / prof["wall_ms"]}
    report.noise = noise_between(before, noise_snapshot())
    _summarise(report)
    return report


PEER_LABELS = {"torch-compile": "torch.compile", "openvino": "openvino"}


def peer_names(peers: bool | str | list[str] | None) -> list[str]:
    """``True`` or ``"all"``: every peer; a comma list or list of names from PEER_LABELS; falsy: none."""
    if peers is True or peers == "all":
        return list(PEER_LABELS)
    if not peers:
        return []
    names = [n.strip() for n in peers.split(",")] if isinstance(peers, str) else [str(n).strip() for n in peers]
    bad = [n for n in names if n not in PEER_LABELS]
    if bad or not names:
        raise UsageError(f"--peers takes all or some of {', '.join(PEER_LABELS)}; got {', '.join(bad) or 'nothing'}")
    return list(dict.fromkeys(names))


def peer_status() -> dict[str, dict]:
    """Which peer runtimes this environment can time; a missing one gets a note saying how to add it."""
    import importlib.util

    status = {"torch-compile": {"measured": True, "note": "torch.compile (inductor), default mode"}}
    try:
        found = importlib.util.find_spec("openvino") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        status["openvino"] = {"measured": False,
                              "note": "openvino is not installed (pip install 'torch2ort[peers]'); not measured"}
    else:
        from importlib.metadata import version

        status["openvino"] = {"measured": True, "note": f"OpenVINO {version('openvino')} CPU plugin reading the "
                                                        "same ONNX file, fp32, latency hint"}
    return status


def bench_web(spec: InputSpec, onnx_path: str | Path, opts: BenchOptions, threads: int) -> dict:
    """onnxruntime-web latency per batch size, timed inside the page with performance.now()."""
    from torch2ort.benchmark.stats import LatencyStats
    from torch2ort.inputs import synthetic_feed
    from torch2ort.runners.web import WebRunner

    label = batch_label(spec)
    out: dict = {"batches": {}}
    with WebRunner(onnx_path, threads=threads) as web:
        out["info"] = web.info
        for b in opts.batches:
            feed = synthetic_feed(spec, {label: b} if label else None, seed=b)
            samples = web.bench(feed, warmup=opts.warmup, iters=opts.iters or 5,
                                seconds=0.0 if opts.iters else (opts.seconds or 1.0))
            out["batches"][str(b)] = {"stats": LatencyStats.from_samples(samples, b).to_dict(), "samples_ms": samples}
    return out


def _base_cfg(request, spec: InputSpec, onnx_path, opts: BenchOptions, threads: int, label: str | None) -> dict:
    return {"spec": spec.to_dict(), "onnx": str(onnx_path), "batches": opts.batches, "threads": threads,
            "iters": opts.iters, "seconds": None if opts.iters else opts.seconds, "warmup": opts.warmup,
            "batch_label": label, "model": asdict(request)}


def bench_variants(request, spec: InputSpec, variants: dict[str, str | Path | dict], opts: BenchOptions,
                   reference: str | None = None) -> dict:
    """Torch and each ONNX variant, each in its own processes, alternating order over ``repeats``.

    A variant is an ONNX path (run by ORT's CPU EP, or ``opts.providers[0]``) or a worker job: ``{"backend":
    "openvino" | "torch-compile" | "onnxruntime", "onnx": path, …}`` plus the ORT worker's session keys
    (``graph_level``, ``arena``, ``session_config``). Returns ``{"rows": {label: median stats at the first batch
    size, with load_s and first_inference_s}, "vs_torch": {label: Ratio}, "vs_reference": {label: Ratio}}``;
    ``reference`` names the variant the second ratio divides by.
    """
    label = batch_label(spec)
    threads = opts.threads or physical_cores()
    batch = str(opts.batches[0])
    p50s: dict[str, list[float]] = {}
    runs: dict[str, list[dict]] = {}
    before = noise_snapshot()
    jobs = [("torch", {"backend": "torch", "device": "cpu"}, None)]
    for name, v in variants.items():
        job = {"backend": "onnxruntime", "provider": _provider(opts.providers[0])}
        if isinstance(v, dict):
            job = (job if v.get("backend", "onnxruntime") == "onnxruntime" else {"device": "cpu"}) | v
            jobs.append((name, job, v.get("onnx", "")))
        else:
            jobs.append((name, job, v))
    with tempfile.TemporaryDirectory(prefix="torch2ort-bench-") as tmp:
        for repeat in range(opts.repeats):
            for name, extra, path in (jobs if repeat % 2 == 0 else list(reversed(jobs))):
                cfg = _base_cfg(request, spec, path or "", opts, threads, label) | extra
                result = _spawn(cfg, Path(tmp), opts.timeout_s)
                runs.setdefault(name, []).append(result)
                p50s.setdefault(name, []).append(result["batches"][batch]["stats"]["p50"])
    rows = {}
    for name, rs in runs.items():
        keys = rs[0]["batches"][batch]["stats"].keys()
        rows[name] = {k: float(np.median([r["batches"][batch]["stats"][k] for r in rs])) for k in keys}
        rows[name] |= {"size_mb": rs[0]["size_mb"], "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in rs])),
                       "repeats": len(rs), "batch": int(batch), "threads": threads,
                       "p50_min": float(min(p50s[name])), "p50_values": p50s[name],
                       **{k: float(np.median([r["cold"][k] for r in rs])) for k in ("load_s", "first_inference_s")}}
    out = {"rows": rows, "vs_torch": {}, "vs_reference": {}, "machine": machine_info(), "versions": versions(),
           "noise": noise_between(before, noise_snapshot())}

    def worst(*names: str) -> float:
        return jitter([r["batches"][batch]["stats"] for n in names for r in runs[n]])

    for name in variants:
        out["vs_torch"][name] = asdict(Ratio.of(p50s["torch"], p50s[name], worst("torch", name)))
        if reference and reference in p50s:
            out["vs_reference"][name] = asdict(Ratio.of(p50s[reference], p50s[name], worst(reference, name)))
    return out


def _job_label(provider: str) -> str:
    return {"CPUExecutionProvider": "onnxruntime", "CUDAExecutionProvider": "onnxruntime-cuda",
            "TensorrtExecutionProvider": "onnxruntime-tensorrt"}[provider]


def _summarise(report: BenchReport) -> None:
    cold_by_label: dict[str, list[dict]] = {}
    for r in report.cold_runs:
        cold_by_label.setdefault(r["label"], []).append(r)
    for label, runs in cold_by_label.items():
        keys = ["import_s", "load_s", "first_inference_s", "total_s"]
        report.cold[label] = {k: float(np.median([r["cold"][k] for r in runs])) for k in keys}
        report.cold[label]["process_wall_s"] = float(np.median([r["process_wall_s"] for r in runs]))
    by_label: dict[str, list[dict]] = {}
    for r in report.runs:
        by_label.setdefault(r["label"], []).append(r)
    compiled = [r["cold"]["first_inference_s"] for r in by_label.get("torch.compile", [])]
    if compiled:
        report.compile_s = float(np.median(compiled))
    for label, status in report.peers.items():
        runs = by_label.get(PEER_LABELS[label], [])
        if runs:  # compile time apart from warm latency: torch.compile's first call, OpenVINO's compile_model
            key = "first_inference_s" if label == "torch-compile" else "load_s"
            status["compile_s"] = float(np.median([r["cold"][key] for r in runs]))
    for cand, baseline in (("onnxruntime", "torch"), ("onnxruntime-cuda", "torch-cuda"),
                           ("onnxruntime-tensorrt", "torch-cuda"), ("openvino", "torch"),
                           ("torch.compile", "torch"), ("onnxruntime vs openvino", "openvino"),
                           ("onnxruntime vs torch.compile", "torch.compile")):
        if cand.startswith("onnxruntime vs "):  # ORT's own standing against each peer: peer p50 / ORT p50
            if "onnxruntime" not in by_label or baseline not in by_label:
                continue
            cand_key = "onnxruntime"
        else:
            cand_key = cand
        if cand_key not in by_label or baseline not in by_label \
                or len(by_label[cand_key]) != len(by_label[baseline]):  # --compile's single run: no A/B pairs
            continue
        report.ratios[cand] = {}
        for b in map(str, report.options["batches"]):
            base_runs = sorted(by_label[baseline], key=lambda r: r["repeat"])
            cand_runs = sorted(by_label[cand_key], key=lambda r: r["repeat"])
            base = [r["batches"][b]["stats"]["p50"] for r in base_runs]
            cnd = [r["batches"][b]["stats"]["p50"] for r in cand_runs]
            worst = jitter([r["batches"][b]["stats"] for r in base_runs + cand_runs])
            report.ratios[cand][b] = asdict(Ratio.of(base, cnd, worst))
