"""The Python API: every command of the CLI as a function with the same options and defaults.

The CLI parses its arguments and calls these; nothing is checked or defaulted only there.
Options take the CLI's spellings (``inputs=["x:batch=1,3,64,64:float32"]``, ``sweep=["batch=1,4"]``,
``batch="1,8"``, a labels file) or plain Python values (an ``InputSpec``, ``{"batch": [1, 4]}``,
``[1, 8]``, a list of labels). A model is a MODEL string as on the command line, a
``ModelRequest``, or, where no fresh process has to load it again, a ``LoadedModel`` or a live
``torch.nn.Module``. See docs/python.md.

Example::

    import torch2ort
    result = torch2ort.migrate("hf:./all-MiniLM-L6-v2", "out", optimize="auto")
    result.passed, result.evidence.outcome.stopped_at
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch2ort import values as V
from torch2ort.errors import SpecError, UsageError
from torch2ort.outdir import check_writable
from torch2ort.sources import LoadedModel, ModelRequest
from torch2ort.spec import InputSpec

Inputs = InputSpec | Iterable[str] | None
Log = Callable[[str], None]
Sweep = Mapping[str, Iterable[int]] | Iterable[str] | None


def model_request(model: str | Path | ModelRequest, *, kwargs: Mapping[str, Any] | str | None = None,
                  checkpoint: str | Path | None = None, trust_checkpoint: bool = False, strict: bool = True,
                  preprocess_module: str | None = None, trust_remote_code: bool = False) -> ModelRequest:
    """A ``ModelRequest`` from a MODEL string and the CLI's model options (``kwargs`` as a dict or JSON text)."""
    if isinstance(model, ModelRequest):
        return model
    if not isinstance(model, (str, Path)) or not str(model):
        raise SpecError("no MODEL given: pass path/to/file.py:NAME, package.module:NAME, hf:DIR or a TorchScript "
                        "archive")
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise SpecError(f"--kwargs is not valid JSON: {exc}") from None
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise SpecError("--kwargs must be a JSON object, e.g. '{\"classes\": 7}'")
    return ModelRequest(str(model), dict(kwargs) if kwargs else None, str(checkpoint) if checkpoint else None,
                        bool(trust_checkpoint), bool(strict), preprocess_module, bool(trust_remote_code))


def load(model, *, log: Log | None = None, **model_options) -> LoadedModel:
    """The torch module ``model`` names, in eval mode: a MODEL string, ModelRequest, LoadedModel or nn.Module.
    ``log`` gets each note on how it was obtained (checkpoint keys, eval mode, …)."""
    loaded = _load(model, **model_options)
    for note in loaded.notes if log else ():
        log(note)
    return loaded


def _load(model, **model_options) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        was_training = model.training
        model.eval()
        kind = type(model)
        return LoadedModel(model, f"{kind.__module__}.{kind.__qualname__}", "module",
                           ["model put in eval mode" + (" — it was in training mode" if was_training else "")])
    from torch2ort.sources import load_model

    return load_model(model_request(model, **model_options))


def input_spec(inputs: Inputs, output_names: str | Iterable[str] | None = None, allow_all_false_masks: bool = False,
               loaded: LoadedModel | None = None) -> InputSpec:
    """The spec from ``inputs`` (CLI strings or an InputSpec), else the one the model's source knows (hf)."""
    if isinstance(inputs, InputSpec):
        spec = inputs
    elif inputs:
        if isinstance(inputs, str):
            inputs = [inputs]
        spec = InputSpec.from_cli(list(inputs), None, allow_all_false_masks)
    elif loaded is not None and loaded.hints.spec is not None:
        spec = loaded.hints.spec
    else:
        raise SpecError("no inputs given; pass inputs=['NAME:DIMS:DTYPE'] (CLI: --input NAME:DIMS:DTYPE)")
    if output_names:
        names = [n.strip() for n in output_names.split(",")] if isinstance(output_names, str) else list(output_names)
        spec = replace(spec, output_names=tuple(names), _by_name={})
    if allow_all_false_masks and not spec.allow_all_false_masks:
        spec = replace(spec, allow_all_false_masks=True, _by_name={})
    return spec


def sweep_sizes(sweep: Sweep, spec: InputSpec | None) -> dict[str, list[int]] | None:
    """``--sweep`` as ``["batch=1,4"]`` or ``{"batch": [1, 4]}``, over the spec's defaults for labels not named.

    Without a spec (an hf: model, whose spec is known only once it is loaded) the labels are kept as
    given and checked when the spec is known.
    """
    from torch2ort.inputs import default_sweep

    if sweep is None or (not isinstance(sweep, Mapping) and not list(sweep)):
        return default_sweep(spec) if spec is not None else None
    items = sweep.items() if isinstance(sweep, Mapping) else [_split_sweep(s) for s in sweep]
    out = default_sweep(spec) if spec is not None else {}
    for label, sizes in items:
        if spec is not None and label not in out:
            valid = ", ".join(out) or "none (the spec has no dynamic dims)"
            raise SpecError(f"--sweep {label}: not a dynamic dim label; valid: {valid}")
        out[label] = sorted(V.sizes(f"--sweep {label}", sizes, V.MAX_SIZE))
    return out


def _split_sweep(item: str) -> tuple[str, str]:
    label, sep, sizes = str(item).partition("=")
    if not sep or not label.strip():
        raise SpecError(f"--sweep {item!r}: expected LABEL=v1,v2")
    return label.strip(), sizes


def labels_of(labels: str | Path | Iterable[str] | None) -> list[str] | None:
    """Class labels: a list, or a file with one per line or a JSON list."""
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        from torch2ort.bundle.writer import read_labels

        return read_labels(labels)
    labels = list(labels)
    if not labels or not all(isinstance(x, str) for x in labels):
        raise UsageError("labels must be a non-empty list of strings")
    return labels


def export_onnx(model, inputs: Inputs = None, output: str | Path = "model.onnx", *, opset: int | None = None,
                exporter: str = "auto", verbose: bool = False, force: bool = False, output_names=None,
                allow_all_false_masks: bool = False, log: Log | None = None, **model_options):
    """``torch2ort export``: torch -> ONNX, dynamo first. Returns ``ExportResult``; an existing file needs ``force``."""
    from torch2ort.export.exporters import check_opset
    from torch2ort.export.exporters import export_onnx as export

    check_opset(opset)
    out = check_writable(output, force)
    loaded = load(model, log=log, **model_options)
    spec = input_spec(inputs, output_names, allow_all_false_masks, loaded)
    if loaded.hints.task == "automatic-speech-recognition":  # Whisper: the cached decoder graph beside the encoder
        from torch2ort.export.speech import export_speech

        return export_speech(loaded, spec, out, opset=opset, exporter=exporter, verbose=verbose)
    return export(loaded, spec, out, opset=opset, exporter=exporter, verbose=verbose)


def verify_onnx(model, onnx: str | Path, inputs: Inputs = None, *, n: int = 3, samples: str | Path | None = None,
                sweep: Sweep = None, atol: float | None = None, rtol: float | None = None, seed: int = 0,
                runtime: str | list[str] = "cpu", web_threads: int | None = None,
                providers: list[str] | None = None, json_path: str | Path | None = None, force: bool = False,
                output_names=None, allow_all_false_masks: bool = False, log: Log | None = None,
                **model_options):
    """``torch2ort verify``: torch vs ONNX Runtime on synthetic, real and swept inputs. Returns ``VerifyResult``
    (falsy ``.report`` on a mismatch); ``json_path`` also writes the full report."""
    from torch2ort.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL
    from torch2ort.parity.verify import check_options, parse_runtimes
    from torch2ort.parity.verify import verify_onnx as verify

    atol, rtol = DEFAULT_ATOL if atol is None else atol, DEFAULT_RTOL if rtol is None else rtol
    check_options(n, seed, atol, rtol, web_threads)
    runtimes = parse_runtimes(runtime)
    json_out = check_writable(json_path, force) if json_path else None
    loaded = load(model, log=log, **model_options)
    spec = input_spec(inputs, output_names, allow_all_false_masks, loaded)
    result = verify(loaded, onnx, spec, n=n, samples=samples, sweep=sweep_sizes(sweep, spec),
                    atol=atol, rtol=rtol, seed=seed, providers=providers, runtimes=runtimes, web_threads=web_threads)
    if json_out:
        json_out.write_text(json.dumps({"model": loaded.source, "onnx": str(onnx), "spec": spec.to_dict(),
                                        **result.to_dict()}, indent=2))
    return result


@dataclass
class PackResult:
    path: Path
    verification: Any = None    # VerifyResult when a torch model was exported and verified first


def pack(model, output: str | Path, inputs: Inputs = None, *, name: str | None = None, labels=None,
         preprocess: str | list | None = None, postprocess: str | list | None = None,
         tokenizer: str | Path | None = None, parity: Mapping | str | Path | None = None, n: int = 3,
         web: bool = False, force: bool = False, output_names=None, allow_all_false_masks: bool = False,
         log: Log | None = None, **model_options) -> PackResult:
    """``torch2ort pack``: an .onnx file packed as it is (no torch), or a torch model exported and verified first
    (a failed verification writes nothing). ``parity``: a ``verify --json`` report (dict or file) to record."""
    from torch2ort.bundle.writer import pack as pack_onnx
    from torch2ort.bundle.writer import pack_model, parity_summary

    opts = {"name": name, "labels": labels_of(labels), "preprocess": preprocess, "postprocess": postprocess,
            "tokenizer": tokenizer, "web": web}
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        if model_options.get("preprocess_module"):
            raise UsageError("--preprocess-module needs a torch MODEL (it is fused with it and exported); "
                             "an .onnx file is packed as it is")
        summary = None
        if parity is not None:
            try:
                report = parity if isinstance(parity, Mapping) else json.loads(Path(parity).read_text())
                summary = parity_summary(report)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"--parity {parity if not isinstance(parity, Mapping) else '(dict)'}: not a "
                                 f"verify --json report ({type(exc).__name__}: {exc})") from None
        return PackResult(pack_onnx(model, output, parity=summary, force=force, **opts))
    n = V.count("--n", n, 1, V.MAX_CASES)
    loaded = load(model, log=log, **model_options)
    spec = input_spec(inputs, output_names, allow_all_false_masks, loaded)
    path, result = pack_model(loaded, spec, output, verify_n=n, force=force, **opts)
    return PackResult(path, result)


def _gates(accept: Iterable) -> list:
    """``--accept`` values checked before any work: a gate NaN or inf could satisfy is refused here."""
    from torch2ort.parity.gates import Gate, parse_gate

    if isinstance(accept, str):
        accept = [accept]
    return [g if isinstance(g, Gate) else parse_gate(g) for g in accept]


def _live_model_error(what: str) -> UsageError:
    return UsageError(f"{what} loads the model again in fresh processes, so it needs a MODEL reference "
                      "(path/to/file.py:NAME, package.module:NAME, hf:DIR or a TorchScript archive), not a live module")


def bench(model, onnx: str | Path | None = None, inputs: Inputs = None, *, bundle: str | Path | None = None,
          batch: str | Iterable[int] = "1", threads: int | None = None, providers: str | list[str] = "cpu",
          runtime: str | list[str] = "cpu", iters: int | None = None, seconds: float | None = 2.0, warmup: int = 5,
          repeats: int = 3, compile: bool = False, peers: bool = False, profile: bool = True,
          json_path: str | Path | None = None, plot: str | Path | None = None, force: bool = False, output_names=None,
          allow_all_false_masks: bool = False, **model_options):
    """``torch2ort bench``: torch vs ONNX Runtime (and onnxruntime-web with ``runtime="cpu,web"``), each backend
    in fresh processes. Give ``onnx`` or a ``bundle`` (checksums verified first). ``peers=True`` adds the runtimes a
    user could pick instead, torch.compile and OpenVINO (when installed), on the same threads.
    Returns ``BenchReport``."""
    from torch2ort.benchmark.run import BenchOptions, bench_web
    from torch2ort.benchmark.run import bench as run_bench
    from torch2ort.parity.verify import parse_runtimes

    if isinstance(model, LoadedModel) or not isinstance(model, (str, Path, ModelRequest)):
        raise _live_model_error("bench")
    if (onnx is None) == (bundle is None):
        raise UsageError("give the ONNX model or a bundle (--onnx FILE or --bundle DIR), one of them")
    runtimes = parse_runtimes(runtime)
    opts = BenchOptions(batches=V.sizes("--batch", batch), threads=threads, iters=iters,
                        seconds=None if iters else seconds, warmup=warmup, repeats=repeats,
                        providers=[p.strip() for p in providers.split(",") if p.strip()]
                        if isinstance(providers, str) else list(providers), compile=compile, peers=peers,
                        profile=profile)
    json_out = check_writable(json_path, force) if json_path else None
    plot_out = check_writable(plot, force) if plot else None
    if bundle is not None:
        from torch2ort.runtime import Bundle

        onnx = str(Path(bundle) / Bundle.load(bundle).manifest["model"])  # checksums verified before timing
    request = model_request(model, **model_options)
    spec = input_spec(inputs, output_names, allow_all_false_masks)
    report = run_bench(request, spec, onnx, opts)
    if "web" in runtimes:
        report.web = bench_web(spec, onnx, opts, report.options["threads"])
    if json_out:
        json_out.write_text(report.to_json())
    if plot_out:
        from torch2ort.benchmark.plot import plot as draw

        draw(report, plot_out)
    return report


def pass_options(*, per_channel: bool = False, reduce_range: str | bool = "auto", calibration: str = "minmax",
                 exclude_last: int = 0, exclude_outliers: int = 0, smooth: float = 0.0, attention: str = "packed",
                 skip_norm: str = "fused", level: str = "extended",
                 fp16_block: str | Iterable[str] | None = None, float_layers: int = 0) -> dict[str, dict]:
    """The per-pass options of ``torch2ort optimize`` (each pass checks its own values when built)."""
    if isinstance(fp16_block, str):
        fp16_block = [o.strip() for o in fp16_block.split(",") if o.strip()]
    return {"graph": {"level": level},
            "int8-dynamic": {"per_channel": per_channel, "reduce_range": reduce_range,
                             "exclude_last": V.count("--exclude-last", exclude_last, 0, 1_000_000),
                             "exclude_outliers": V.count("--exclude-outliers", exclude_outliers, 0, 1_000_000),
                             "smooth": V.number("--smooth", smooth, 0.0, 1.0)},
            "transformer": {"attention": attention, "skip_norm": skip_norm},
            "int8-static": {"method": calibration, "reduce_range": reduce_range,
                            "float_layers": V.count("--float-layers", float_layers, 0, 1_000_000)},
            "fp16": {"op_block_list": list(fp16_block) if fp16_block else None}}


def optimize(model, onnx: str | Path, inputs: Inputs = None, *, output: str | Path,
             passes: str | Iterable[str] = "auto", accept: Iterable[str] = (), samples: str | Path | None = None,
             n: int = 8, seed: int = 0, sweep: Sweep = None, providers: str | list[str] = "cpu",
             bench: bool = True, batch: int | None = None, seconds: float = 1.0, repeats: int = 2,
             threads: int | None = None, json_path: str | Path | None = None, force: bool = False,
             log: Log | None = None, output_names=None, allow_all_false_masks: bool = False,
             model_options: Mapping[str, Any] | None = None, **options):
    """``torch2ort optimize``: build variants, re-verify each behind its gate, time the passing ones, write the
    fastest to ``output``. ``options`` are ``pass_options``' keywords; ``model_options`` those of
    ``model_request``. Returns ``OptimizeResult`` (``.output`` is None when no variant passed)."""
    from torch2ort.benchmark.run import BenchOptions, batch_label
    from torch2ort.optimization.planner import optimize as plan
    from torch2ort.runtime.providers import ALIASES

    model_options = dict(model_options or {})
    accept = _gates(accept)
    n, seed = V.count("--n", n, 1, V.MAX_CASES), V.count("--seed", seed, 0, 2**32 - 1)
    if batch is not None:
        batch = V.count("--batch", batch, 1, V.MAX_SIZE)
    bench_opts = BenchOptions(batches=[batch or 1], seconds=seconds, repeats=repeats, threads=threads, warmup=3,
                              providers=["cpu"]) if bench else None
    if bench and (isinstance(model, LoadedModel) or not isinstance(model, (str, Path, ModelRequest))):
        raise _live_model_error("optimize with bench=True")
    chains = [passes] if isinstance(passes, str) else list(passes)
    options = pass_options(**options)
    out = check_writable(output, force)
    json_out = check_writable(json_path, force) if json_path else None
    names = [p.strip() for p in providers.split(",") if p.strip()] if isinstance(providers, str) else list(providers)
    if not names:
        raise UsageError("--providers: give at least one, e.g. cpu or cuda")
    loaded = load(model, log=log, **model_options)
    if loaded.hints.task == "text-generation":
        result = _optimize_decoder(loaded, onnx, chains, out, samples=samples, threads=threads, repeats=repeats,
                                   log=log)
        if json_out:
            json_out.write_text(json.dumps({"model": loaded.source, "onnx": str(onnx), **result.to_dict()},
                                           indent=1, default=str))
        return result
    request = model if isinstance(model, ModelRequest) else (
        model_request(model, **model_options) if isinstance(model, (str, Path)) else None)
    spec = input_spec(inputs, output_names, allow_all_false_masks, loaded)
    label = batch_label(spec)
    if bench_opts is not None:  # the batch to time: as asked, else the spec's example
        bench_opts.batches = [batch or (spec.dynamic_labels().get(label) if label else None) or 1]
        bench_opts.providers = [names[0]]
    result = plan(loaded, request, onnx, spec, passes=chains or "auto", accept=list(accept), samples=samples,
                  n=n, sweep=sweep_sizes(sweep, spec), seed=seed,
                  providers=[ALIASES.get(p.lower(), p) for p in names], pass_options=options,
                  bench_opts=bench_opts, out=out, force=True, log=log or (lambda line: None),
                  postprocess=loaded.hints.postprocess or None)
    if json_out:
        json_out.write_text(json.dumps({"model": loaded.source, "onnx": str(onnx), **result.to_dict()}, indent=1,
                                       default=str))
    return result


def _optimize_decoder(loaded: LoadedModel, onnx: str | Path, chains: list[str], out: Path, *, samples, threads,
                      repeats: int, log: Log | None):
    """``optimize`` for a text-generation model: decoder fusion and weight-only variants behind generation gates,
    returned in the planner's ``OptimizeResult`` shape (``optimization/decoder.py``)."""
    from torch2ort.inputs.texts import read_texts
    from torch2ort.optimization.decoder import optimize_decoder
    from torch2ort.optimization.planner import write_variant

    if not Path(onnx).is_file():
        raise UsageError(f"ONNX file not found: {onnx}")
    if samples is not None and not str(samples).endswith(".txt"):
        raise UsageError(f"--samples {samples}: a text-generation model takes prompts, one per line in a .txt")
    prompts = read_texts(str(samples)) if samples else list(loaded.hints.texts or [])
    hints = loaded.hints
    res = optimize_decoder(onnx, hints.generation, hints.tokenizer, prompts, chains=chains, model_dir=hints.model_dir,
                           out=out, threads=threads or 2, repeats=max(1, V.count("--repeats", repeats, 1, 100)),
                           log=log or (lambda line: None), loaded=loaded)
    result = res.to_optimize_result()
    if res.chosen == "fp32" and list(chains) != ["auto"]:  # as for other models: named variants, none held
        result.chosen, result.output = None, None
        result.message = "no optimised variant held its gates; nothing written"
        return result
    chosen = result.variant(result.chosen)   # with auto, the fp32 export too, as optimize keeps it for other models
    chosen.path = str(res.output or onnx)
    write_variant(chosen, out, {})
    result.output = str(out)
    return result


def migrate(model, output: str | Path, inputs: Inputs = None, *, task: str | None = None,
            samples: str | Path | None = None, n: int = 4, seed: int = 0, sweep: Sweep = None,
            optimize: str | Iterable[str] = "none", accept: Iterable[str] = (), name: str | None = None,
            labels=None, preprocess: str | list | None = None, postprocess: str | list | None = None,
            tokenizer: str | Path | None = None, bench: bool = True, batch: str | Iterable[int] | None = None,
            seconds: float = 1.0, repeats: int = 2, threads: int | None = None, peers: bool | str | list[str] = False,
            prompt_tokens: str | Iterable[int] | None = None, new_tokens: int = 32,
            genai_python: str | Path | None = None, force: bool = False,
            progress: Callable[[str, str, dict], None] | None = None, command: str | None = None,
            output_names=None, allow_all_false_masks: bool = False, **model_options):
    """``torch2ort migrate``: load, export, verify, optimise, verify again, pack, check, benchmark and report
    into ``output``. Never raises for a failing stage: see ``.passed`` / ``.exit_code`` of the ``MigrateResult``.
    ``optimize``: "none", "auto", a chain like "transformer,int8-dynamic", or a list of chains. ``peers=True``
    times torch.compile and OpenVINO (when installed) next to ORT for the report's "what else you could use" line.
    A text-generation model is timed as generation instead: time to first token at ``prompt_tokens`` (default 128
    and 512), decode tokens/s over ``new_tokens`` and peak RSS, against transformers ``generate`` and, with
    ``genai_python`` (an interpreter with onnxruntime-genai; default ``$TORCH2ORT_GENAI_PYTHON``), onnxruntime-genai."""
    from torch2ort.benchmark.run import peer_names
    from torch2ort.pipeline.migrate import MigrateOptions
    from torch2ort.pipeline.migrate import migrate as run

    if isinstance(model, LoadedModel) or not isinstance(model, (str, Path, ModelRequest)):
        raise _live_model_error("migrate")
    _gates(accept)
    request = model_request(model, **model_options)
    if task:
        if not request.model.startswith("hf:"):
            raise UsageError("--task applies to hf:DIR models only")
        request = replace(request, kwargs={**(request.kwargs or {}), "task": task})
    spec = input_spec(inputs, output_names, allow_all_false_masks) if inputs else None
    if spec is None and output_names:
        raise UsageError("output_names needs inputs; an hf: model names its outputs itself")
    chains = optimize if isinstance(optimize, str) else list(optimize)
    opts = MigrateOptions(
        optimize=chains if chains in ("none", "auto") or not isinstance(chains, str) else [chains],
        accept=list(accept), samples=str(samples) if samples is not None else None, n=n, seed=seed,
        sweep=sweep_sizes(sweep, spec) if sweep else None, name=name, labels=labels_of(labels),
        preprocess=preprocess, postprocess=postprocess, tokenizer=str(tokenizer) if tokenizer else None,
        bench=bench, batches=V.sizes("--batch", batch) if batch is not None else None, seconds=seconds,
        repeats=repeats, threads=threads, peers=peer_names(peers),
        prompt_tokens=V.sizes("--prompt-tokens", prompt_tokens, 1 << 20) if prompt_tokens is not None else None,
        new_tokens=new_tokens, genai_python=str(genai_python) if isinstance(genai_python, Path) else genai_python,
        force=force, command=command)
    if opts.bench and opts.genai_python:  # an interpreter without onnxruntime-genai: said now, not after the run
        from torch2ort.benchmark.generation import genai_version

        genai_version(opts.genai_python)
    return run(request, spec, output, opts, progress=progress)


__all__ = ["PackResult", "bench", "export_onnx", "input_spec", "labels_of", "load", "migrate", "model_request",
           "optimize", "pack", "pass_options", "sweep_sizes", "verify_onnx"]
