"""Build optimised variants of an ONNX model, re-verify each against PyTorch, benchmark, pick one.

Example::

    result = optimize(loaded, request, "model.onnx", spec, passes="auto", out="model.opt.onnx")
    result.chosen            # "transformer+int8-dynamic[per-channel]", or None when nothing passed
    result.table()           # variant, gate metric, latency, speed-ups, size, Pareto flag

Every variant, the unmodified fp32 export included, is judged by the accuracy gates in
``gates.py`` on the same verification cases. A variant that fails is listed with its numbers and
never written as the result.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from torch2ort.errors import OutputExistsError, PassFailedError, RunnerError, UsageError
from torch2ort.export.graph import model_bytes, op_counts
from torch2ort.inputs import InputCase, sample_cases, synthetic_cases
from torch2ort.optimization.passes import Pass, PassContext, PassError, parse_chain
from torch2ort.optimization.passes.fp16 import Fp16
from torch2ort.optimization.passes.graph import GraphOptimize
from torch2ort.optimization.passes.int8_dynamic import OP_TYPES, Int8Dynamic, quantisable_nodes
from torch2ort.optimization.passes.int8_static import Int8Static
from torch2ort.optimization.passes.lift1d import Lift1d, conv1d_count
from torch2ort.optimization.passes.subpixel import SubPixel
from torch2ort.optimization.passes.transformer import TransformerFusion, looks_like_transformer
from torch2ort.parity import metrics
from torch2ort.parity.answers import answer_comparisons, answers_of
from torch2ort.parity.compare import RunResults, compare, run
from torch2ort.parity.gates import Gate, GateVerdict, parse_gate, resolve_gates, roles_from_postprocess
from torch2ort.parity.judge import judge
from torch2ort.parity.metrics import LOGIT_DECISION_THRESHOLD
from torch2ort.parity.verify import build_cases, with_onnx_output_names
from torch2ort.runners.ort import OrtRunner
from torch2ort.runners.torch_eager import TorchRunner
from torch2ort.spec import InputSpec

BASELINE = "fp32"
SMOOTH_ALPHA = 0.7  # SmoothQuant's migration strength in auto; 0.5 left MiniLM's down-projections too coarse


@dataclass
class Variant:
    name: str
    passes: list[str] = field(default_factory=list)
    path: str | None = None
    size_mb: float | None = None
    build_s: float = 0.0
    details: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    gate: dict = field(default_factory=dict)
    passed: bool = False
    summary: str = "-"
    max_abs: float | None = None
    min_cosine: float | None = None
    latency: dict | None = None      # median stats at the benchmark batch
    vs_torch: dict | None = None     # Ratio: torch p50 / variant p50
    vs_fp32: dict | None = None      # Ratio: fp32 ONNX p50 / variant p50
    pareto: bool = False
    confirmed: bool | None = None    # held its gates on fresh cases after it was chosen (None: not confirmed)
    confirmation: dict = field(default_factory=dict)  # GateVerdict.to_dict() on those cases
    float_layers: int = 0            # layers int8-static[float-layers=k] kept in float (0: none, or not that pass)


@dataclass
class OptimizeResult:
    variants: list[Variant]
    gates: dict[str, Gate]
    cases: int
    calibration: str
    gate_cases: dict = field(default_factory=dict)   # which verification cases the gates were judged on, and why
    confirm_cases: dict = field(default_factory=dict)  # the fresh cases the chosen variant was confirmed on
    confirm_inputs: list = field(default_factory=list, repr=False)  # those cases' feeds (not serialised)
    chosen: str | None = None
    output: str | None = None
    message: str = ""
    bench: dict | None = None
    seconds: float = 0.0
    decoder: dict | None = None   # a decoder's run (optimization/decoder.py): its gates' text, limits and variants

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def to_dict(self) -> dict:
        data = asdict(replace(self, confirm_inputs=[]))
        del data["confirm_inputs"]
        return data | {"gates": {k: g.to_dict() for k, g in self.gates.items()}}

    def table(self) -> list[dict]:
        rows = []
        for v in self.variants:
            rows.append({"variant": v.name, "gate": "pass" if v.passed else "FAIL", "metric": v.summary,
                         "p50_ms": (v.latency or {}).get("p50"), "p99_ms": (v.latency or {}).get("p99"),
                         "vs_torch": (v.vs_torch or {}).get("median"), "vs_fp32": (v.vs_fp32 or {}).get("median"),
                         "stable": all(r.get("stable", True) for r in (v.vs_torch, v.vs_fp32) if r),
                         "size_mb": v.size_mb, "pareto": v.pareto, "chosen": v.name == self.chosen,
                         "confirmed": v.confirmed,
                         "why": v.error or "; ".join(gate_failures(v.gate) + [
                             f"confirmation: {line}" for line in gate_failures(v.confirmation)])})
        return rows


def gate_failures(gate: dict) -> list[str]:
    """The failure lines of a GateVerdict.to_dict()."""
    return list(gate.get("errors", [])) + [f"{c['output']}: {c['reason']}" for c in gate.get("checks", [])
                                           if not c["passed"]]


def plan_auto(onnx_path: str | Path, providers: list[str], reduce_range: str | bool = "auto") -> tuple[list, list]:
    """The variants worth trying for this graph, and fallbacks tried only when no quantised one passes."""
    counts = op_counts(onnx_path)
    primary: list[list[Pass]] = [[GraphOptimize()]]
    fallback: list[list[Pass]] = []
    gpu = any(p != "CPUExecutionProvider" for p in providers)
    if looks_like_transformer(counts):
        # On CPU the residual add and LayerNormalization stay apart (ORT's SkipLayerNormalization kernel is
        # the slower of the two there); packed Attention keeps its Q/K/V projection in float, so the
        # MultiHeadAttention form leaves those MatMuls to int8 too. SmoothQuant moves activation outliers
        # into the weights first. Keeping the spikiest or last layers in float is a fallback, tried only
        # when none of these holds its gate.
        norm = "fused" if gpu else "unfused"
        fuse, fuse_cpu = TransformerFusion(), TransformerFusion(skip_norm=norm)
        fuse_mha = TransformerFusion(attention="mha", skip_norm=norm)
        per_layer = max(1, len(quantisable_nodes(Path(onnx_path), OP_TYPES)) // max(1, counts.get("Softmax", 1)))
        primary += [[fuse]] + ([[fuse_cpu]] if norm != "fused" else [])
        primary += [[fuse_cpu, Int8Dynamic(reduce_range=reduce_range)],
                    [fuse_cpu, Int8Dynamic(per_channel=True, reduce_range=reduce_range)],
                    [fuse_mha, Int8Dynamic(per_channel=True, reduce_range=reduce_range)],
                    [fuse_mha, Int8Dynamic(per_channel=True, reduce_range=reduce_range, smooth=SMOOTH_ALPHA)]]
        fallback += [[fuse_mha, Int8Dynamic(per_channel=True, reduce_range=reduce_range, exclude_outliers=per_layer)],
                     [fuse_mha, Int8Dynamic(per_channel=True, reduce_range=reduce_range,
                                            exclude_outliers=2 * per_layer)],
                     [fuse_mha, Int8Dynamic(per_channel=True, reduce_range=reduce_range, exclude_last=per_layer)],
                     [Int8Static(per_channel=True, reduce_range=reduce_range, op_types=["MatMul", "Gemm"])]]
        if gpu:
            primary.append([fuse, Fp16()])
    else:
        if counts.get("Conv", 0):
            primary += [[Int8Static(reduce_range=reduce_range)],
                        [Int8Static(method="percentile", reduce_range=reduce_range)]]
            # The first conv sees the raw input, the last weighted node writes the output: in float
            # only when no all-int8 variant holds its gate (EfficientNet-B0 in the zoo). Then the
            # layers that add the most quantisation noise, measured, in float: k = 1, 2, 4… up to a
            # quarter of the weighted layers, tried in that order until one holds (float_ladder).
            fallback += [[Int8Static(reduce_range=reduce_range, exclude=["first", "last"])]]
            if _conv1d(onnx_path):
                # ORT's NCHWc layout takes 2-D convs only; lifted, the 1-D ones join it (OpenVINO's edge on ECG).
                # Whether that is faster depends on the machine: the timing decides
                primary += [[Lift1d()]]
            if counts.get("ConvTranspose", 0):
                # ORT's CPU provider has no int8 ConvTranspose: as Conv + DepthToSpace it gets QLinearConv
                primary += [[SubPixel()], [SubPixel(), Int8Static(reduce_range=reduce_range)]]
            # the ladder is built on each calibration method; only the one whose whole-model variant came
            # closer to its gates is climbed (percentile, on the trained ECG of issue 24)
            fallback += [[Int8Static(method=m, reduce_range=reduce_range, float_layers=k)]
                         for m in ("minmax", "percentile") for k in float_ladder(onnx_path)]
        elif counts.get("MatMul", 0) + counts.get("Gemm", 0):
            primary += [[Int8Dynamic(reduce_range=reduce_range)],
                        [Int8Dynamic(per_channel=True, reduce_range=reduce_range)]]
        if gpu:
            primary.append([Fp16()])
    return primary, fallback


def _conv1d(onnx_path: str | Path) -> int:
    import onnx

    return conv1d_count(onnx.load(str(onnx_path), load_external_data=False).graph)


def float_ladder(onnx_path: str | Path) -> list[int]:
    """The counts of most noise-adding layers kept in float that ``auto`` tries: 1, 2, 4… up to a quarter
    of the graph's weighted layers (at least 1)."""
    import onnx

    from torch2ort.optimization.passes.base import weighted_nodes

    n = len(weighted_nodes(onnx.load(str(onnx_path), load_external_data=False).graph))
    ladder, k = [], 1
    while k <= max(1, n // 4):
        ladder.append(k)
        k *= 2
    return ladder


def _ladder_step(chain: list[Pass]) -> bool:
    return bool(chain) and isinstance(chain[-1], Int8Static) and chain[-1].float_layers > 0


def _closest_method(variants: list[Variant], gates: dict[str, Gate]) -> str:
    """The calibration method whose whole-model ``int8-static`` variant came closest to its gates (its worst
    check's bound or value against the limit, relative to the limit); minmax when none was judged."""
    def margin(v: Variant) -> float:
        if v.error is not None or not v.gate.get("checks"):
            return -math.inf
        worst = math.inf
        for c in v.gate["checks"]:
            gate, value = gates[c["output"]], c["bound"] if c.get("bound") is not None else c["value"]
            if value is None or math.isnan(value):
                return -math.inf
            gap = value - gate.limit if gate.op == ">=" else gate.limit - value
            worst = min(worst, gap / max(abs(gate.limit), 1e-12))
        return worst

    scored = {}
    for v in variants:
        if len(v.passes) == 1 and v.passes[0].startswith("int8-static") and "float-layers" not in v.passes[0] \
                and "exclude" not in v.passes[0]:
            scored["percentile" if "method=percentile" in v.passes[0] else
                   "entropy" if "method=entropy" in v.passes[0] else "minmax"] = margin(v)
    return max(scored, key=scored.get) if scored else "minmax"


def optimize(loaded, request, onnx_path: str | Path, spec: InputSpec, *, passes: str | list[str] = "auto",
             accept: list[str | Gate] | None = None, samples: str | Path | None = None, n: int = 8,
             sweep: dict[str, list[int]] | None = None, seed: int = 0, providers: list[str] | None = None,
             pass_options: dict[str, dict] | None = None, bench_opts=None, out: str | Path | None = None,
             force: bool = False, log: Callable[[str], None] = lambda line: None,
             postprocess: list[dict] | None = None) -> OptimizeResult:
    """Build, verify, benchmark and choose; writes ``out`` only when a variant passes its gates.

    ``postprocess`` is the bundle's postprocess pipeline, when known: a sigmoid or softmax step on an
    output says what the output is (logits), which picks its default gate and decision threshold.
    """
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UsageError(f"ONNX file not found: {onnx_path}")
    if out is not None and Path(out).exists() and not force:
        raise OutputExistsError(f"{out} already exists; pass --force to overwrite it")
    providers = providers or ["CPUExecutionProvider"]
    gates_in = [g if isinstance(g, Gate) else parse_gate(g) for g in (accept or [])]
    spec = with_onnx_output_names(spec, onnx_path)
    cases = build_cases(spec, n, samples, sweep, seed)
    gate_cases, fresh = _gate_cases(spec, cases)
    # calibrate on the user's samples, less those kept back to confirm: confirmation must see inputs
    # that took no part in calibration either
    kept = {c.name for c in fresh}
    calibration = ([c.feed for c in sample_cases(samples, spec) if c.name not in kept] if samples
                   else [c.feed for c in synthetic_cases(spec, 16, seed + 500)])
    calib_text = (f"{len(calibration)} sample feeds from {Path(samples).name}"
                  + (f" ({len(kept)} more kept back to confirm)" if kept else "") if samples
                  else f"{len(calibration)} synthetic feeds (seeds apart from the verification cases)")
    auto = passes == "auto" or passes == ["auto"]
    pass_options = pass_options or {}
    if auto:
        primary, fallback = plan_auto(onnx_path, providers, pass_options.get("int8-dynamic", {})
                                      .get("reduce_range", "auto"))
    else:
        chains = [passes] if isinstance(passes, str) else passes
        primary, fallback = [parse_chain(c, pass_options) for c in chains], []

    log(f"verifying against PyTorch on {len(cases)} cases")
    results = run([TorchRunner(loaded.module, spec)], cases)
    failed = next((r for r in results.records if r.error), None)
    if failed:
        raise UsageError(f"PyTorch itself failed on verification case {failed.case}: {failed.error}")
    references = {name: [r.outputs[name] for r in results.records] for name in results.records[0].outputs}
    roles = roles_from_postprocess(postprocess)
    answers = answers_of(postprocess)  # NER, detection, segmentation: judged on the answer (parity.answers)
    gates = resolve_gates(gates_in, references, roles, answers)
    task = _TaskAnswers(answers, getattr(getattr(loaded, "hints", None), "labels", None))
    thresholds = {name: LOGIT_DECISION_THRESHOLD for name, role in roles.items() if role == "sigmoid"}
    extra = _cases_to_resolve(spec, gates, references, gate_cases, cases, seed)
    if extra:
        log(f"adding {len(extra)} synthetic cases: too few rows or decisions for a 95% bound to reach the gate")
        more = run([TorchRunner(loaded.module, spec)], extra)
        results = RunResults(results.records + more.records)
        cases = cases + extra
        gate_cases["cases"] += [c.name for c in extra]
        gate_cases["why"] += f"; {len(extra)} synthetic cases added so a 95% lower bound can reach the limit"
    judged = set(gate_cases["cases"])
    log(f"gates judged on {len(judged)} of {len(cases)} cases: {gate_cases['why']}")
    confirm, confirm_info = _confirm_cases(spec, fresh, len(judged), seed)
    top_up = _confirm_top_up(spec, gates, {r.case: r.outputs for r in results.records}, fresh, seed)
    if top_up:
        confirm = confirm + top_up
        confirm_info = {"cases": confirm_info["cases"] + [c.name for c in top_up],
                        "why": f"{confirm_info['why']}, and {len(top_up)} synthetic cases from fresh seeds: the "
                               "samples alone hold too few rows or decisions for a 95% bound to reach the gate"}
    with tempfile.TemporaryDirectory(prefix="torch2ort-opt-") as tmp:
        ctx = PassContext(Path(tmp), calibration, providers)
        variants = [Variant(BASELINE, [], str(onnx_path), model_bytes(onnx_path) / 2**20)]
        _judge(variants[0], results, cases, gates, providers, thresholds, judged, task)
        log(f"{BASELINE}: {'pass' if variants[0].passed else 'FAIL'} ({variants[0].summary})")
        built: dict[tuple, tuple[Path, list, list]] = {}
        for round_chains in (primary, fallback):
            if round_chains is fallback and (not fallback or any(v.passed and _quantised_name(v) for v in variants)):
                continue
            closest = _closest_method(variants, gates)
            for chain in round_chains:
                if _ladder_step(chain) and any(v.passed and v.float_layers for v in variants):
                    continue  # the float-layers ladder stops at the first k that holds: more float is slower
                if _ladder_step(chain) and chain[-1].method != closest:
                    continue
                variant = _build(chain, onnx_path, ctx, built)
                variant.float_layers = chain[-1].float_layers if _ladder_step(chain) else 0
                variants.append(variant)
                if variant.error is None:
                    _judge(variant, results, cases, gates, providers, thresholds, judged, task)
                status = "error" if variant.error else ("pass" if variant.passed else "FAIL")
                log(f"{variant.name}: {status} ({variant.error or variant.summary}, {variant.build_s:.1f} s)")
        bench = None
        passing = [v for v in variants if v.passed]
        if bench_opts is not None and passing:
            from torch2ort.benchmark.run import bench_variants

            log(f"benchmarking torch and {len(passing)} passing variants in separate processes")
            bench = bench_variants(request, spec, {v.name: v.path for v in passing}, bench_opts, reference=BASELINE)
            for v in passing:
                v.latency = bench["rows"][v.name]
                v.vs_torch = bench["vs_torch"][v.name]
                v.vs_fp32 = bench["vs_reference"].get(v.name)
            bench["torch"] = bench["rows"]["torch"]
        _mark_pareto(variants, gates)
        # kept-back real samples are among any later verification's cases already; fresh ones are not
        result = OptimizeResult(variants, gates, len(cases), calib_text, gate_cases, confirm_info,
                                top_up if fresh else confirm, bench=bench)
        _choose(result, auto, bench is not None)
        _confirm(result, auto, bench is not None, loaded, spec, confirm, gates, providers, thresholds, log, task)
        if result.chosen and out is not None:
            write_variant(result.variant(result.chosen), Path(out), gates)
            result.output = str(out)
        for v in variants:  # the temporary files are gone after this
            if v.name != BASELINE:
                v.path = None
    result.seconds = time.perf_counter() - start
    return result


def _quantised_name(v: Variant) -> bool:
    return any(p.startswith(("int8", "fp16")) for p in v.passes)


def _build(chain: list[Pass], src: Path, ctx: PassContext, built: dict) -> Variant:
    """Apply the chain, reusing results of shared prefixes (graph, transformer fusion…)."""
    labels = [p.label for p in chain]
    variant = Variant("+".join(labels), labels)
    current, t0 = src, time.perf_counter()
    for i, p in enumerate(chain):
        key = tuple(labels[: i + 1])
        if key not in built:
            target = ctx.workdir / f"v{len(built)}.onnx"
            try:
                res = p(current, target, ctx)
            except (PassError, PassFailedError) as exc:
                variant.error, variant.build_s = exc.one_line(), time.perf_counter() - t0
                return variant
            built[key] = (res.model, [{"pass": p.label, "changed": res.changed, **res.details}], res.notes)
        current, details, notes = built[key]
        variant.details += details
        variant.notes += notes
    variant.path, variant.size_mb = str(current), model_bytes(current) / 2**20
    variant.build_s = time.perf_counter() - t0
    if not any(d["changed"] for d in variant.details):
        variant.notes.append("the passes left the model unchanged")
    return variant


def _gate_cases(spec: InputSpec, cases) -> tuple[dict, list]:
    """The cases that choose, and the real ones kept back to confirm the choice.

    Text models are gated on real text: random token ids are adversarial and unlike any input a user
    sends, so they refuse variants that hold on real text. They still prove fp32 parity (``verify``).
    Every other sample is kept back (issue 24: a winner picked on the cases that judged it is flattered);
    for other models too, when there are at least 4 samples, so the choice is confirmed on real inputs.
    """
    text_model = all(np.issubdtype(t.np_dtype, np.integer) for t in spec.inputs)
    real = [c for c in cases if c.kind == "sample"]
    chosen, kept = (real[0::2], real[1::2]) if len(real) >= 4 else (real, [])
    if text_model and real:
        return {"cases": [c.name for c in chosen], "kinds": ["sample"],
                "why": "real text only (the sample texts, tokenised): random token ids are not text"
                       + (f"; {len(kept)} others kept back to confirm the choice" if kept else "")}, kept
    judged = [c for c in cases if c.name not in {k.name for k in kept}]
    return {"cases": [c.name for c in judged], "kinds": sorted({c.kind for c in judged}),
            "why": "every verification case" + (" (no real text to judge on)" if text_model else "")
                   + (f" but {len(kept)} samples kept back to confirm the choice" if kept else "")}, kept


MAX_GATE_CASES = 256  # synthetic cases added so an agreement gate's bound can reach its limit, at most


def _cases_to_resolve(spec: InputSpec, gates: dict[str, Gate], references: dict, gate_cases: dict, cases,
                      seed: int) -> list:
    """Synthetic cases enough for every agreement gate to clear its limit at 95% with room for a few flips
    (twice the count that a flawless run needs), within ``MAX_GATE_CASES``; none for real-text gates."""
    if gate_cases["kinds"] == ["sample"]:
        return []
    names = [c.name for c in cases]
    want = 0
    for name, gate in gates.items():
        need = metrics.needed_count(gate.limit) if gate.metric in metrics.AGREEMENT else None
        if need is None or name not in references:  # an answer gate: its units are counted after the run
            continue
        units = [_units(gate.metric, r) for case, r in zip(names, references[name]) if case in gate_cases["cases"]]
        have, per_row = sum(units), max(1, min(units, default=1) // max(1, _example_batch(spec)))
        want = max(want, math.ceil(max(0, 2 * need - have) / (per_row * RESOLVE_BATCH)))
    return _fresh_cases(spec, "resolve", min(want, MAX_GATE_CASES), seed + 2000) if want else []


RESOLVE_BATCH = 16  # rows per added case, where the batch dim is dynamic: more rows judged per run


def _example_batch(spec: InputSpec) -> int:
    from torch2ort.benchmark.run import batch_label

    label = batch_label(spec)
    return spec.dynamic_labels()[label] if label else 1


def _fresh_cases(spec: InputSpec, prefix: str, n: int, seed: int) -> list[InputCase]:
    """``n`` synthetic cases named apart from the verification cases, at ``RESOLVE_BATCH`` rows where the
    batch dim is dynamic."""
    from torch2ort.benchmark.run import batch_label
    from torch2ort.inputs import synthetic_feed

    label = batch_label(spec)
    sizes = spec.dynamic_labels() | ({label: RESOLVE_BATCH} if label else {})
    return [InputCase(f"{prefix}-{i}", synthetic_feed(spec, sizes, seed=seed + i), "synthetic", sizes)
            for i in range(n)]


def _units(metric: str, ref: np.ndarray) -> int:
    """Rows (top-1) or decisions (every element) one reference output gives a gate."""
    return int(np.prod(ref.shape[:-1])) if metric == "top1" and ref.ndim else int(ref.size)


def _confirm_cases(spec: InputSpec, kept: list, judged: int, seed: int) -> tuple[list, dict]:
    """Fresh cases for the chosen variant: the real samples kept back, else synthetic ones from seeds that
    neither the verification cases, the added cases nor the calibration feeds use."""
    if kept:
        return kept, {"cases": [c.name for c in kept], "why": "real samples kept out of the choice"}
    fresh = _fresh_cases(spec, "fresh", max(8, min(judged, 32)), seed + 7000)
    return fresh, {"cases": [c.name for c in fresh],
                   "why": f"{len(fresh)} synthetic cases from fresh seeds, used neither to choose nor to calibrate"}


def _confirm_top_up(spec: InputSpec, gates: dict[str, Gate], outputs: dict[str, dict], kept: list,
                    seed: int) -> list:
    """Synthetic cases from fresh seeds to go with the real samples kept back to confirm, where those hold
    fewer rows or decisions than an agreement gate's 95% bound needs to reach its limit (2 kept images of
    one row each can never show top1>=0.99, so every variant failed its confirmation); none for text
    models, whose random ids are not text, nor where nothing was kept back."""
    if not kept or all(np.issubdtype(t.np_dtype, np.integer) for t in spec.inputs):
        return []
    want = 0
    for name, gate in gates.items():
        need = metrics.needed_count(gate.limit) if gate.metric in metrics.AGREEMENT else None
        if need is None:
            continue
        units = [_units(gate.metric, outputs[c.name][name]) for c in kept if name in outputs.get(c.name, {})]
        per_row = max(1, min(units, default=1) // max(1, _example_batch(spec)))
        want = max(want, math.ceil(max(0, need - sum(units)) / (per_row * RESOLVE_BATCH)))
    return _fresh_cases(spec, "confirm", min(want, MAX_GATE_CASES), seed + 9000) if want else []


def _confirm(result: OptimizeResult, auto: bool, benched: bool, loaded, spec: InputSpec, cases, gates: dict,
             providers: list[str], thresholds: dict[str, float], log: Callable[[str], None],
             task: _TaskAnswers | None = None) -> None:
    """Hold the chosen variant to its gates on the fresh cases; one that fails is dropped and the next
    choice confirmed in turn. The fp32 export needs no confirmation: verify proves it."""
    if not cases or not result.chosen or result.chosen == BASELINE:
        return
    reference = run([TorchRunner(loaded.module, spec)], cases)
    names = {c.name for c in cases}
    while result.chosen and result.chosen != BASELINE:
        v = result.variant(result.chosen)
        probe = Variant(v.name, v.passes, v.path)
        _judge(probe, reference, cases, gates, providers, thresholds, names, task)
        v.confirmation, v.confirmed = probe.gate, probe.passed and probe.error is None
        if v.confirmed:
            log(f"{v.name}: confirmed on {len(cases)} fresh cases ({probe.summary})")
            return
        log(f"{v.name}: FAILED confirmation on {len(cases)} fresh cases ({probe.error or probe.summary}); "
            "choosing again without it")
        result.message, result.chosen = "", None
        _choose(result, auto, benched)
        result.message = f"{result.message} ({v.name} was chosen first but failed on fresh cases)"


@dataclass(frozen=True)
class _TaskAnswers:
    """The answers a task gate judges (``parity.answers``) and the class labels that name entity tags."""

    answers: dict
    labels: list[str] | None = None


def _judge(variant: Variant, results: RunResults, cases, gates: dict[str, Gate], providers: list[str],
           thresholds: dict[str, float], judged: set[str], task: _TaskAnswers | None = None) -> None:
    try:
        got = run([OrtRunner(variant.path, providers, name=variant.name)], cases)
    except RunnerError as exc:
        variant.error = str(exc)
        return
    combined = RunResults([r for r in results.records if r.runner == "torch"] + got.records)
    report = compare(combined, "torch", decision_thresholds=thresholds)
    if task is not None and task.answers:
        report.comparisons += answer_comparisons(combined, task.answers, {c.name: c.feed for c in cases},
                                                 task.labels, variant.name)
    verdict: GateVerdict = judge(report, gates, variant.name, judged)
    variant.gate, variant.passed, variant.summary = verdict.to_dict(), bool(verdict), verdict.summary()
    finite = [c for c in report.comparisons if not math.isnan(c.max_abs)]
    variant.max_abs = max((c.max_abs for c in finite), default=None)
    variant.min_cosine = min((c.cosine for c in finite if not math.isnan(c.cosine)), default=None)


def _mark_pareto(variants: list[Variant], gates: dict[str, Gate]) -> None:
    """Passing variants that no other passing variant beats on latency, size and every gate metric."""
    passing = [v for v in variants if v.passed]

    def score(v: Variant) -> list[float]:
        lat = (v.latency or {}).get("p50", math.inf)
        vals = [-(c["value"]) if gates[c["output"]].op == ">=" else c["value"] for c in v.gate["checks"]]
        return [lat, v.size_mb or math.inf, *vals]

    for v in passing:
        s = score(v)
        v.pareto = not any(all(a <= b for a, b in zip(score(o), s)) and score(o) != s for o in passing if o is not v)


def _choose(result: OptimizeResult, auto: bool, benched: bool) -> None:
    passing = [v for v in result.variants if v.passed and v.confirmed is not False]
    optimised = [v for v in passing if v.name != BASELINE]
    base = result.variant(BASELINE)
    if not base.passed:
        result.message = (f"the fp32 export itself fails the accuracy gate ({'; '.join(gate_failures(base.gate))});"
                          " fix the export or the gate first")
        if not optimised:
            return
    pool = passing if auto else optimised
    if not pool:
        result.message = ("no optimised variant passed the accuracy gate; " +
                          ("kept the fp32 export" if base.passed and auto else "nothing written"))
        if auto and base.passed:
            result.chosen = BASELINE
        return
    key = (lambda v: v.latency["p50"]) if benched else (lambda v: (v.size_mb, len(v.passes)))
    best = min(pool, key=key)
    result.chosen = best.name
    why = "the fastest variant that passes" if benched else "the smallest variant that passes (not benchmarked)"
    if best.name == BASELINE and optimised:
        why += "; no optimised variant beat the fp32 export"
    elif best.name == BASELINE:
        why = "no optimised variant passed the accuracy gate; kept the fp32 export"
    result.message = result.message or f"chose {best.name}: {why}"


def write_variant(variant: Variant, out: Path, gates: dict[str, Gate]) -> None:
    """The chosen variant at ``out``, stamped with its name, gates and metric in the model's metadata."""
    import onnx

    from torch2ort.optimization.passes.base import save_model

    model = onnx.load(variant.path)
    stamp = {"torch2ort.optimize.variant": variant.name,
             "torch2ort.optimize.gates": " ".join(g.text() for g in gates.values()),
             "torch2ort.optimize.metric": variant.summary}
    kept = [p for p in model.metadata_props if p.key not in stamp]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in stamp.items():
        model.metadata_props.add(key=k, value=v)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out)


__all__ = ["OptimizeResult", "Variant", "float_ladder", "optimize", "plan_auto"]
