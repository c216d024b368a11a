"""Parity verification: PyTorch vs ONNX Runtime on synthetic, real and swept inputs.

Example::

    result = verify_onnx(loaded, "model.onnx", spec, n=3, samples="real.npz")
    if not result.report:
        print("\\n".join(result.report.failures()))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from torch2ort import values as V
from torch2ort.errors import RunnerError, UsageError
from torch2ort.inputs import InputCase, sample_cases, sweep_cases, synthetic_cases
from torch2ort.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, RunResults, compare, run
from torch2ort.runners.ort import OrtRunner
from torch2ort.runners.torch_eager import TorchRunner
from torch2ort.spec import InputSpec

if TYPE_CHECKING:
    from torch2ort.sources import LoadedModel


RUNTIMES = ("cpu", "web")


@dataclass
class VerifyResult:
    report: ParityReport
    results: RunResults
    cases: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    runtimes: dict[str, dict] = field(default_factory=dict)  # runner name -> what ran (web: version, threads)
    generation: dict | None = None  # a decoder's greedy-token check (parity/generation.py)
    feeds: dict[str, dict] = field(default_factory=dict, repr=False)  # case -> feed, for answer gates (not saved)

    def to_dict(self) -> dict:
        return {"passed": self.report.passed, "seconds": round(self.seconds, 3), "cases": self.cases,
                "runtimes": self.runtimes, "parity": self.report.to_dict(),
                **({"generation": self.generation} if self.generation is not None else {})}


def parse_runtimes(text: str | list[str] | None) -> list[str]:
    """``cpu``, ``web`` or ``cpu,web``: ORT in this process, onnxruntime-web in Chromium, or both."""
    from torch2ort.errors import unknown_name

    items = text if isinstance(text, list) else [t.strip() for t in (text or "cpu").split(",") if t.strip()]
    for item in items:
        if item not in RUNTIMES:
            raise UsageError(unknown_name("runtime", item, list(RUNTIMES)))
    return list(dict.fromkeys(items)) or ["cpu"]


def build_cases(spec: InputSpec, n: int = 3, samples: str | Path | None = None,
                sweep: dict[str, list[int]] | None = None, seed: int = 0) -> list[InputCase]:
    if n < 0:
        raise UsageError("--n must be >= 0")
    cases = synthetic_cases(spec, n, seed)
    if samples:
        cases += sample_cases(samples, spec)
    if sweep:
        cases += sweep_cases(spec, sweep, seed=seed + 1000)
    if not cases:
        raise UsageError("nothing to verify: --n 0 with no --samples and no dynamic dims to sweep")
    return cases


def graph_issues(onnx_path: str | Path, spec: InputSpec) -> list[str]:
    """Compare the ONNX graph's declared inputs with the spec: names, ranks, and dynamic dims."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    declared = {i.name: i for i in graph.input if i.name not in inits}
    issues = []
    for extra in [n for n in declared if n not in spec.names]:
        issues.append(f"the ONNX graph has an input {extra!r} that the spec does not name")
    for t in spec.inputs:
        vi = declared.get(t.name)
        if vi is None:
            issues.append(f"input {t.name!r} is not an input of the ONNX graph (inputs: {list(declared)})")
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(t.dims):
            issues.append(f"input {t.name!r} has rank {len(dims)} in the ONNX graph, spec says {len(t.dims)}")
            continue
        for axis, (d, spec_dim) in enumerate(zip(dims, t.dims)):
            if spec_dim.label and d.HasField("dim_value"):
                issues.append(f"input {t.name!r} dim {axis} ({spec_dim.label}) is baked static as "
                              f"{d.dim_value} in the ONNX graph; it should be dynamic")
            elif not spec_dim.label and d.HasField("dim_value") and d.dim_value != spec_dim.size:
                issues.append(f"input {t.name!r} dim {axis} is {d.dim_value} in the ONNX graph, "
                              f"spec says {spec_dim.size}")
    return issues


def check_options(n: int, seed: int, atol: float, rtol: float, web_threads: int | None) -> tuple:
    """verify's numbers, checked before any work: a NaN tolerance would pass every comparison (issue 27)."""
    return (V.count("--n", n, 0, V.MAX_CASES), V.count("--seed", seed, 0, 2**32 - 1),
            V.number("--atol", atol, 0.0, V.MAX_TOLERANCE), V.number("--rtol", rtol, 0.0, V.MAX_TOLERANCE),
            V.optional_count("--web-threads", web_threads, 1, V.MAX_THREADS))


def with_onnx_output_names(spec: InputSpec, onnx_path: str | Path) -> InputSpec:
    """Name PyTorch's outputs like the graph's when the spec does not name them (same count or not: a
    different count is then reported as a mismatch by the comparison, not hidden)."""
    if spec.output_names:
        return spec
    import onnx

    try:
        names = [o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output]
    except Exception:  # not a readable model: the ORT runner reports that in its own words
        return spec
    return replace(spec, output_names=tuple(names), _by_name={}) if names else spec


def verify_onnx(loaded: LoadedModel, onnx_path: str | Path, spec: InputSpec, *, n: int = 3,
                samples: str | Path | None = None, sweep: dict[str, list[int]] | None = None,
                atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, seed: int = 0,
                providers: list[str] | None = None, runtimes: list[str] | None = None,
                web_threads: int | None = None, extra_cases: list[InputCase] | None = None) -> VerifyResult:
    """Run torch and ORT on the same cases and compare every output; never raises on a mismatch.
    ``extra_cases`` run after the usual ones (the optimiser's confirmation cases, for a written variant)."""
    start = time.perf_counter()
    n, seed, atol, rtol, web_threads = check_options(n, seed, atol, rtol, web_threads)
    if loaded.hints.task == "text-generation":  # a decoder with a KV cache: step by step, then greedy tokens
        from torch2ort.parity.generation import verify_decoder

        if [r for r in runtimes or ["cpu"] if r != "cpu"]:
            raise UsageError("a text-generation model is verified on onnxruntime (cpu) only; --runtime web "
                             "does not run decoders yet")
        if samples or extra_cases:
            raise UsageError("a text-generation model is verified on prompts (its sample texts), not --samples")
        return verify_decoder(loaded, onnx_path, atol=atol, rtol=rtol, providers=providers)
    if loaded.hints.task == "automatic-speech-recognition":  # Whisper: encoder, cached decoder, greedy tokens
        return _verify_speech(loaded, onnx_path, runtimes, samples or extra_cases, atol, rtol, providers)
    if not Path(onnx_path).is_file():
        raise UsageError(f"ONNX file not found: {onnx_path}")
    spec = with_onnx_output_names(spec, onnx_path)
    cases = build_cases(spec, n, samples, sweep, seed) + list(extra_cases or [])
    runners = [TorchRunner(loaded.module, spec)]
    for runtime in runtimes or ["cpu"]:
        if runtime == "cpu":
            runners.append(OrtRunner(onnx_path, providers))
        else:
            from torch2ort._env import physical_cores
            from torch2ort.runners.web import WebRunner

            runners.append(WebRunner(onnx_path, threads=web_threads or physical_cores()))
    try:
        results = run(runners, cases)
    except RunnerError as exc:  # a runner could not even activate (e.g. an unreadable .onnx file)
        raise UsageError(str(exc)) from None
    info = {r.name: dict(getattr(r, "info", {}) or {}) for r in runners[1:]}
    for r in runners[1:]:
        if r.name == "onnxruntime":
            import onnxruntime

            info[r.name] = {"version": onnxruntime.__version__, "providers": r.providers}
    report = compare(results, "torch", atol, rtol)
    report.graph_issues = graph_issues(onnx_path, spec)
    summary = [{"name": c.name, "kind": c.kind, "sizes": c.sizes,
                "shapes": {k: list(v.shape) for k, v in c.feed.items()}} for c in cases]
    return VerifyResult(report, results, summary, time.perf_counter() - start, info,
                        feeds={c.name: c.feed for c in cases})


def _verify_speech(loaded, onnx_path, runtimes, samples, atol: float, rtol: float, providers) -> VerifyResult:
    """A Whisper model on speech-like clips made here (``inputs.media``), through ``parity.speech``."""
    import tempfile

    from torch2ort.inputs.media import make_audio
    from torch2ort.parity.speech import verify_speech

    if [r for r in runtimes or ["cpu"] if r != "cpu"]:
        raise UsageError("a speech-recognition model is verified on onnxruntime (cpu) only; --runtime web does not "
                         "run it yet")
    if samples:
        raise UsageError("a speech-recognition model is verified on audio clips made by torch2ort, not --samples; "
                         "migrate checks the packed bundle on raw files")
    with tempfile.TemporaryDirectory(prefix="torch2ort-speech-") as tmp:
        files = [str(f) for f in make_audio(Path(tmp))]
        return verify_speech(loaded, onnx_path, files, atol=atol, rtol=rtol, providers=providers)
