"""The stages of a migration, one small object each: ``run(state)`` returns a summary, or None when skipped.

A stage raises a ``Torch2OrtError`` to stop the run (its exit code becomes the run's) and
writes what it measured into its own section of ``state.evidence``. The end-to-end check lives
in ``check_stage.py``, the report in ``report_stage.py``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from torch2ort.errors import ParityError, ReferenceFailedError, SpecError, one_line
from torch2ort.evidence import (
    BenchInfo,
    BundleInfo,
    ExportInfo,
    FootprintInfo,
    GateVerdictInfo,
    GenerationBenchInfo,
    ModelInfo,
    OptimizeInfo,
    VerifyInfo,
    VerifyOptimizedInfo,
)
from torch2ort.pipeline.state import MigrationState


class Stage:
    name = ""
    skipped = "skipped"  # the summary the report shows when run() returns None

    def run(self, state: MigrationState) -> str | None:
        raise NotImplementedError


class Load(Stage):
    name = "load"

    def run(self, state: MigrationState) -> str:
        from torch2ort.inputs.raw import prepare_raw, raw_files
        from torch2ort.inputs.texts import prepare_samples
        from torch2ort.sources import load_model

        state.loaded = loaded = load_model(state.request)
        if state.spec is None:
            state.spec = loaded.hints.spec
        if state.spec is None:
            raise SpecError("--input is required for this MODEL (only hf: sources know their own inputs)")
        files = raw_files(state.opts.samples)
        speech = loaded.hints.task == "automatic-speech-recognition"
        if files:  # audio/signal files: the bundle's own steps make the samples
            state.raw_files = files
            steps = state.raw_steps()
            if speech and steps:  # a recording over one window is fine: transcribed in chunks, verified on its first
                from torch2ort.runtime.processors.audio import MAX_SECONDS

                steps = [steps[0] | {"max_seconds": MAX_SECONDS}, *steps[1:]]
            state.samples = prepare_raw(state.raw_files, steps, list(state.spec.names), state.out / "samples",
                                        None if state.opts.preprocess else loaded.hints.assets)
        elif loaded.hints.task == "text-generation":  # a decoder: verified and checked on prompts, not feeds
            from torch2ort.inputs.texts import read_texts

            samples = state.opts.samples
            if samples and not samples.endswith(".txt"):
                raise SpecError(f"--samples {samples}: a text-generation model takes prompts, one per line in a .txt")
            state.texts = read_texts(samples) if samples else list(loaded.hints.texts or [])
        elif loaded.hints.media:  # an hf image/audio folder: real files made here, checked from raw input
            from torch2ort.inputs.media import media_samples

            state.raw_files, made = media_samples(loaded.hints.preprocess, loaded.hints.media, state.out / "samples",
                                                  loaded.hints.assets, loaded.hints.options,
                                                  loaded.hints.tokenizer)
            state.samples = state.opts.samples or made
            if speech:  # and one recording over the window, which the check transcribes in chunks
                from torch2ort.inputs.media import make_long_speech

                state.raw_files.append(str(make_long_speech(Path(state.raw_files[0]).parent,
                                                            loaded.hints.speech["max_seconds"])))
        else:
            state.texts, state.samples = prepare_samples(loaded.hints, state.spec, state.opts.samples,
                                                         state.out / "samples")
        params = list(loaded.module.parameters())
        n = sum(p.numel() for p in params)
        state.evidence.model = ModelInfo(
            source=state.request.model, kind=loaded.kind, task=loaded.hints.task, notes=loaded.notes,
            parameters=int(n), parameter_mb=sum(p.numel() * p.element_size() for p in params) / 2**20,
            spec=state.spec.to_cli(), output_names=list(state.spec.output_names or []),
            samples=state.samples, texts=state.texts)
        return f"{loaded.kind} model, {n / 1e6:.2f} M parameters"


class Export(Stage):
    name = "export"

    def run(self, state: MigrationState) -> str:
        from torch2ort.export import export_onnx
        from torch2ort.export.graph import graph_summary
        from torch2ort.pipeline.pooling import choose_pooling, needs_choice

        if state.loaded.hints.task == "automatic-speech-recognition":  # two graphs: encoder, cached decoder
            from torch2ort.export.speech import export_speech

            res = export_speech(state.loaded, state.spec, state.onnx)
        else:
            res = choose_pooling(state) if needs_choice(state) else export_onnx(state.loaded, state.spec, state.onnx)
        ex = state.evidence.export = ExportInfo.from_dict(asdict(res) | {"graph": graph_summary(state.onnx)})
        return f"{res.exporter} exporter, opset {res.opset}, {ex.graph.nodes} nodes, {ex.graph.mb:.1f} MB"


class Verify(Stage):
    name = "verify"

    def run(self, state: MigrationState) -> str:
        from torch2ort.parity.verify import verify_onnx

        if state.loaded.hints.task == "text-generation":
            from torch2ort.parity.generation import verify_decoder

            res = verify_decoder(state.loaded, state.onnx, prompts=state.texts)
        elif state.loaded.hints.task == "automatic-speech-recognition":
            from torch2ort.parity.speech import verify_speech

            res = verify_speech(state.loaded, state.onnx, [str(f) for f in state.raw_files])
        else:
            res = verify_onnx(state.loaded, state.onnx, state.spec, n=state.opts.n, samples=state.samples,
                              sweep=state.sweep(), seed=state.opts.seed)
        state.evidence.verify = VerifyInfo.from_dict(res.to_dict())
        reference_failed(res, state)
        if not res.report:
            raise ParityError("PyTorch and ONNX Runtime disagree: " + "; ".join(res.report.failures()[:3]))
        if res.generation:
            gen = res.generation
            if state.loaded.hints.task == "automatic-speech-recognition":
                return (f"encoder outputs and decoder logits of the prefix and {gen['steps']} cached steps within "
                        f"tolerance (max abs {res.report.max_abs():.2e}); greedy tokens identical to transformers "
                        f"generate on {len(gen['greedy'])} clip runs (alone and batched); smallest top-1 margin "
                        f"{gen['min_top1_margin']:.2e}")
            return (f"logits of the prefill and {gen['steps']} cached decode steps within tolerance (max abs "
                    f"{res.report.max_abs():.2e}); greedy tokens identical to transformers generate on "
                    f"{len(gen['greedy'])} prompt runs of {gen['new_tokens']} tokens (alone and batched)")
        return f"{len(res.cases)} cases, all outputs within tolerance (max abs {res.report.max_abs():.2e})"


class Optimize(Stage):
    name = "optimize"
    skipped = "not asked for (--optimize none)"

    def run(self, state: MigrationState) -> str | None:
        opts = state.opts
        if opts.optimize in ("none", None, []):
            return None
        if state.loaded.hints.task == "automatic-speech-recognition":
            self.skipped = "not built for speech recognition yet: the fp32 graphs are packed"
            return None
        if state.loaded.hints.task == "text-generation":
            return _optimize_decoder(state)
        from torch2ort.benchmark.run import BenchOptions
        from torch2ort.optimization.planner import optimize

        passes = "auto" if opts.optimize == "auto" else opts.optimize
        bench_opts = (BenchOptions(batches=[state.bench_batches()[-1]], seconds=min(opts.seconds, 0.5),
                                   repeats=opts.repeats, threads=opts.threads, warmup=3)
                      if opts.bench else None)
        target = state.optimized
        result = optimize(state.loaded, state.request, state.onnx, state.spec, passes=passes, accept=opts.accept,
                          samples=state.samples, n=opts.n, sweep=state.sweep(), seed=opts.seed,
                          bench_opts=bench_opts, out=target, force=True, log=state.log,
                          postprocess=_postprocess(opts.postprocess, state) or state.loaded.hints.postprocess or None)
        state.evidence.optimize = OptimizeInfo.from_dict(result.to_dict() | {"table": result.table()})
        if not result.output:
            raise ParityError(f"no variant passed the accuracy gate: {result.message}")
        state.gates, state.confirm_cases = result.gates, result.confirm_inputs
        if result.chosen != "fp32":
            state.final = target
        else:
            target.unlink(missing_ok=True)
        return result.message


def _optimize_decoder(state: MigrationState) -> str:
    """Decoder fusion and weight-only int8/int4 variants behind generation gates (optimization/decoder.py)."""
    from torch2ort.optimization.decoder import optimize_decoder, summary

    hints, opts = state.loaded.hints, state.opts
    res = optimize_decoder(state.onnx, hints.generation, hints.tokenizer, state.texts,
                           chains="auto" if opts.optimize == "auto" else opts.optimize, model_dir=hints.model_dir,
                           out=state.optimized, threads=opts.threads or 2, repeats=max(2, opts.repeats),
                           log=state.log, loaded=state.loaded)
    base = res.variants[0].ms_per_token
    rows = [{"variant": v.label, "gate": "pass" if v.passed else "FAIL", "metric": summary(v),
             "chosen": v.name == res.chosen, "pareto": False, "why": v.why, "p50_ms": v.ms_per_token,
             "vs_fp32": base / v.ms_per_token if v.ms_per_token else None, "size_mb": v.size_mb,
             "confirmed": None} for v in res.variants]
    positions = max((v.gates.get("positions", 0) for v in res.variants), default=0)
    state.evidence.optimize = OptimizeInfo.from_dict({
        "gates": {}, "cases": positions, "calibration": "none (weight-only: no activation statistics)",
        "table": rows, "chosen": res.chosen, "message": res.message, "decoder": res.evidence()})
    if res.output:
        state.final = res.output
    return res.message


class VerifyOptimized(Stage):
    name = "verify-optimized"
    skipped = "nothing optimised"

    def run(self, state: MigrationState) -> str | None:
        if state.final == state.onnx:
            return None
        if state.loaded.hints.task == "text-generation":
            self.skipped = ("the decoder variant was judged by its generation gates on the file written to disk, in "
                            "the optimize stage; the check stage holds the packed bundle to transformers")
            return None
        from torch2ort.parity.judge import judge
        from torch2ort.parity.verify import verify_onnx

        # the usual cases, plus the fresh ones the choice was confirmed on: enough rows for the 95% bound
        res = verify_onnx(state.loaded, state.final, state.spec, n=state.opts.n, samples=state.samples,
                          sweep=state.sweep(), seed=state.opts.seed, extra_cases=state.confirm_cases)
        reference_failed(res, state)
        from torch2ort.parity.answers import answer_comparisons, answers_of

        answers = {k: a for k, a in answers_of(_postprocess(state.opts.postprocess, state)
                                               or state.loaded.hints.postprocess).items() if k in state.gates}
        if answers:  # task gates judge the answer, post-processed from each case's raw outputs
            res.report.comparisons += answer_comparisons(res.results, answers, res.feeds, state.loaded.hints.labels,
                                                         "onnxruntime")
        verdict = judge(res.report, state.gates)
        variant = state.evidence.optimize.chosen
        state.evidence.verify_optimized = VerifyOptimizedInfo(
            variant=variant, file=str(state.final), gate=GateVerdictInfo.from_dict(verdict.to_dict()),
            parity=VerifyInfo.from_dict(res.to_dict()))
        if not verdict:
            raise ParityError("the written variant fails its gate: " + "; ".join(verdict.failures()[:3]))
        return f"{variant} re-read from disk: {verdict.summary()} on {len(res.cases)} cases"


class Bench(Stage):
    name = "bench"
    skipped = "not asked for (--no-bench)"

    def run(self, state: MigrationState) -> str | None:
        if not state.opts.bench:
            return None
        if state.loaded.hints.task == "automatic-speech-recognition":
            self.skipped = "not run for speech recognition: one encoder call is not a transcription figure"
            return None
        if state.loaded.hints.task == "text-generation":
            return _bench_generation(state)
        from torch2ort.benchmark.run import BenchOptions, bench
        from torch2ort.benchmark.stats import ratio_text

        batches = state.bench_batches()
        opts = BenchOptions(batches=batches, seconds=state.opts.seconds, repeats=state.opts.repeats,
                            threads=state.opts.threads, warmup=3, peers=state.opts.peers)
        state.log(f"timing torch and ONNX Runtime at batch {', '.join(map(str, batches))}, {opts.repeats} A/B "
                  "pairs of fresh processes")
        report = bench(state.request, state.spec, state.final, opts)
        state.evidence.bench = BenchInfo.from_dict(report.to_dict())
        ratios = report.ratios.get("onnxruntime", {})
        return "speed-up vs torch (p50): " + ", ".join(f"batch {b}: {ratio_text(r)}" for b, r in ratios.items())


def _bench_generation(state: MigrationState) -> str:
    """The packed bundle's own loop against transformers generate and onnxruntime-genai (benchmark/generation.py)."""
    from torch2ort.benchmark.generation import GenerateBenchOptions, bench_generation
    from torch2ort.benchmark.stats import ratio_text

    opts = state.opts
    gen_opts = GenerateBenchOptions(prompt_tokens=opts.prompt_tokens or [128, 512], new_tokens=opts.new_tokens,
                                    repeats=opts.repeats, threads=opts.threads, genai_python=opts.genai_python)
    variant = state.evidence.optimize.chosen if state.evidence.optimize and state.final != state.onnx else "fp32"
    state.log(f"timing generation: the bundle, transformers generate and onnxruntime-genai, {gen_opts.repeats} "
              "fresh processes each")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-generation-", dir=state.out) as work:  # genai's model: removed
        res = bench_generation(state.bundle_dir, state.loaded.hints.model_dir, work, gen_opts, variant=variant,
                               log=state.log)
    state.evidence.generation_bench = GenerationBenchInfo.from_dict(res)
    first = str(res["prompt_tokens"][0])
    parts = [f"decode {res['sides']['torch2ort']['decode_tok_s'][first]:.1f} tok/s at {first} prompt tokens"]
    for peer in ("transformers", "onnxruntime-genai"):
        r = res["ratios"].get(f"decode vs {peer}", {}).get(first)
        parts.append(f"vs {peer}: {ratio_text(r)}" if r else f"{peer}: not measured")
    return "; ".join(parts)


class Pack(Stage):
    name = "pack"

    def run(self, state: MigrationState) -> str:
        from torch2ort.bundle.footprint import measure_footprint, tree_bytes
        from torch2ort.bundle.writer import pack, parity_summary

        ev, hints, opts = state.evidence, state.loaded.hints, state.opts
        parity = parity_summary(ev.verify.to_dict())
        if ev.verify_optimized:
            parity["variant"] = ev.verify_optimized.variant
            parity["gate"] = ev.verify_optimized.gate.to_dict()
        elif ev.optimize and state.final != state.onnx:  # a decoder variant, held to its generation gates
            parity["variant"] = ev.optimize.chosen
            parity["gate"] = next(v["gates"] for v in ev.optimize.extra["decoder"]["variants"]
                                  if v["name"] == ev.optimize.chosen)
        bundle = pack(state.final, state.bundle_dir, name=opts.name or default_name(state.request.model),
                      labels=opts.labels or hints.labels, preprocess=opts.preprocess or hints.preprocess or None,
                      postprocess=opts.postprocess or hints.postprocess or None,
                      tokenizer=opts.tokenizer or hints.tokenizer, parity=parity, force=True,
                      assets=hints.assets or None, generation=hints.generation, speech=hints.speech)
        manifest = json.loads((bundle / "torch2ort.json").read_text())
        requirements = (bundle / "requirements.txt").read_text()
        ev.bundle = BundleInfo.from_dict({
            "path": str(bundle), "bytes": tree_bytes(bundle), "files": manifest["files"],
            "inputs": manifest["inputs"], "outputs": manifest["outputs"], "preprocess": manifest["preprocess"],
            "postprocess": manifest["postprocess"], "labels": manifest.get("labels"), "requirements": requirements})
        torch_side = ["torch"] + (["transformers"] if state.loaded.kind == "hf" else [])
        if ev.pooling and "sentence-transformers" in ev.pooling.reference:
            torch_side.append("sentence-transformers")
        ev.footprint = FootprintInfo.from_dict(measure_footprint(bundle, requirements, torch_side))
        return f"{ev.bundle.bytes / 2**20:.1f} MB bundle at {bundle}"


def reference_failed(res, state: MigrationState) -> None:
    """PyTorch failing on a case is not a parity failure: a bad input, or a case torch2ort chose wrongly."""
    failed = [r for r in res.results.records if r.runner == "torch" and r.error]
    if not failed:
        return
    first = failed[0]
    shapes = next((c["shapes"] for c in res.cases if c["name"] == first.case), {})
    opts = state.opts
    user = ((first.kind == "sample" and opts.samples) or (first.kind == "sweep" and opts.sweep is not None)
            or (first.kind == "synthetic" and state.loaded.hints.spec is None))
    chosen = {"sample": "your --samples", "sweep": "your --sweep"}.get(first.kind, "your --input") if user \
        else "torch2ort"
    raise ReferenceFailedError(
        f"the PyTorch model itself fails on case {first.case} {shapes} ({len(failed)} of {len(res.cases)} cases): "
        f"{one_line(first.error)} — not a parity failure: the input is outside what the model "
        f"accepts (chosen by {chosen}" + ("; a torch2ort bug, please report it)" if chosen == "torch2ort" else ")"))


def default_name(model: str) -> str:
    """The bundle's model name when --name is not given: the folder of hf:DIR, else the factory's NAME,
    made valid under the one model-name rule (a default is repaired; a name the user gives is checked)."""
    from torch2ort.runtime.manifest import safe_model_name

    if model.startswith("hf:"):
        return safe_model_name(Path(model[3:].rstrip("/")).name or "model")
    return safe_model_name(model.rpartition(":")[2] or Path(model).stem)


def _postprocess(value: str | list | None, state: MigrationState) -> list[dict]:
    """--postprocess as steps, so the optimisation gates know which outputs a sigmoid or softmax reads."""
    if not value:
        return []
    from torch2ort.bundle.writer import pipeline_steps, postprocess_preset

    first = (list(state.spec.output_names or []) or ["output_0"])[0]
    return pipeline_steps(value, postprocess_preset, [{"name": first}])
