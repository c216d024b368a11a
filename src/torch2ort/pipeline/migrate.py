"""One command from a PyTorch model to a verified, benchmarked, torch-free bundle plus a report.

Stages, in order: load, export, verify, optimize, verify-optimized, bench, pack, check, report.
A stage that fails stops the run with its exit code; the report is written anyway and says
where the run stopped and why. Every number in ``evidence.json`` was measured in this run.

Example::

    result = migrate(ModelRequest("hf:./all-MiniLM-L6-v2"), None, "out", MigrateOptions(optimize="auto"))
    result.exit_code, result.evidence["outcome"]
"""

from __future__ import annotations

import datetime as _dt
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from torch2ort import __version__
from torch2ort.errors import ParityError, SampleError, SpecError, Torch2OrtError, describe
from torch2ort.outdir import prepare_outdir

STAGES = ("load", "export", "verify", "optimize", "verify-optimized", "bench", "pack", "check", "report")
EVIDENCE = "evidence.json"
# The bar for an unquantised sentence-transformers bundle against SentenceTransformer.encode.
ST_FP32_COSINE = 0.9999


@dataclass
class MigrateOptions:
    optimize: str | list[str] = "none"      # none, auto, or chains like "transformer,int8-dynamic"
    accept: list[str] = field(default_factory=list)
    samples: str | None = None              # .npz, a folder of them, or .txt (one text per line)
    n: int = 4
    seed: int = 0
    sweep: dict[str, list[int]] | None = None
    name: str | None = None
    labels: list[str] | None = None
    preprocess: str | list | None = None
    postprocess: str | list | None = None
    tokenizer: str | None = None
    bench: bool = True
    batches: list[int] | None = None
    seconds: float = 1.0
    repeats: int = 2
    threads: int | None = None
    force: bool = False
    command: str | None = None              # how this run was invoked, for the report


@dataclass
class MigrateResult:
    out: Path
    evidence: dict
    exit_code: int

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class _Stop(Exception):
    pass


Progress = Callable[[str, str, dict], None]  # (event: start|done|failed|skipped|log, stage, info)


def migrate(request, spec, out: str | Path, opts: MigrateOptions | None = None,
            progress: Progress | None = None) -> MigrateResult:
    """Run every stage; never raises for a failing stage (see ``exit_code``), only for a bad OUTDIR."""
    opts = opts or MigrateOptions()
    out = prepare_outdir(Path(out), opts.force, EVIDENCE, "a torch2ort migrate output")
    return _Migration(request, spec, out, opts, progress or (lambda *a: None)).run()


class _Migration:
    def __init__(self, request, spec, out: Path, opts: MigrateOptions, progress: Progress) -> None:
        from torch2ort._env import machine_info, versions

        self.request, self.spec, self.out, self.opts, self.progress = request, spec, out, opts, progress
        self.loaded = None
        self.onnx = out / "onnx" / "model.onnx"
        self.final = self.onnx
        self.samples: str | None = opts.samples
        self.texts: list[str] | None = None
        self.gates: dict[str, Any] | None = None
        self._reference: tuple[np.ndarray, str] | None = None
        self.ev: dict[str, Any] = {
            "format": 1, "torch2ort": __version__, "command": opts.command,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(), "versions": versions(), "options": _jsonable(asdict(opts)),
            "stages": [], "outcome": {},
        }

    def log(self, line: str) -> None:
        self.progress("log", "", {"line": line})

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> MigrateResult:
        exit_code = 0
        steps = [("load", self._load), ("export", self._export), ("verify", self._verify),
                 ("optimize", self._optimize), ("verify-optimized", self._verify_optimized),
                 ("bench", self._bench), ("pack", self._pack), ("check", self._check)]
        try:
            for name, fn in steps:
                self._stage(name, fn)
            self.ev["outcome"] = {"passed": True, "stopped_at": None, "reason": None, "exit_code": 0}
        except _Stop:
            exit_code = self.ev["outcome"]["exit_code"]
        done = {s["name"] for s in self.ev["stages"]}
        self.ev["stages"] += [{"name": n, "status": "not run", "seconds": 0.0, "summary": "", "error": None}
                              for n, _ in steps if n not in done]
        self._report()
        return MigrateResult(self.out, self.ev, exit_code)

    def _stage(self, name: str, fn: Callable[[], str | None]) -> None:
        self.progress("start", name, {})
        start = time.perf_counter()
        record: dict[str, Any] = {"name": name, "status": "ok", "summary": "", "error": None}
        try:
            summary = fn()
            if summary is None:
                record["status"] = "skipped"
            record["summary"] = summary or _SKIPPED.get(name, "skipped")
        except Torch2OrtError as exc:
            record |= {"status": "failed", "error": exc.one_line(), "exit_code": exc.exit_code}
        except Exception as exc:  # a bug: recorded like the rest, exit 4
            record |= {"status": "failed", "error": f"internal error: {describe(exc)}", "exit_code": 4}
        record["seconds"] = round(time.perf_counter() - start, 3)
        self.ev["stages"].append(record)
        self.progress(record["status"] if record["status"] != "ok" else "done", name, record)
        if record["status"] == "failed":
            self.ev["outcome"] = {"passed": False, "stopped_at": name, "reason": record["error"],
                                  "exit_code": record["exit_code"]}
            raise _Stop

    # -- stages ----------------------------------------------------------------------------------
    def _load(self) -> str:
        from torch2ort.sources import load_model

        self.loaded = load_model(self.request)
        hints = self.loaded.hints
        if self.spec is None:
            self.spec = hints.get("spec")
        if self.spec is None:
            raise SpecError("--input is required for this MODEL (only hf: sources know their own inputs)")
        self._prepare_samples()
        params = list(self.loaded.module.parameters())
        n = sum(p.numel() for p in params)
        self.ev["model"] = {
            "source": self.request.model, "kind": self.loaded.kind, "task": hints.get("task"),
            "notes": self.loaded.notes, "parameters": int(n),
            "parameter_mb": sum(p.numel() * p.element_size() for p in params) / 2**20,
            "spec": self.spec.to_cli(), "output_names": list(self.spec.output_names or []),
            "samples": self.samples, "texts": self.texts,
        }
        return f"{self.loaded.kind} model, {n / 1e6:.2f} M parameters"

    def _prepare_samples(self) -> None:
        """Text models verify on real text: tokenised here with the bundle's own tokenizer."""
        hints = self.loaded.hints
        samples = self.opts.samples
        if samples and samples.endswith(".txt"):
            if not hints.get("tokenizer"):
                raise SampleError(f"--samples {samples}: a text file needs a text model with a tokenizer")
            try:
                lines = Path(samples).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise SampleError(f"--samples {samples}: {exc}") from None
            self.texts = [ln.strip() for ln in lines if ln.strip()]
            if not self.texts:
                raise SampleError(f"--samples {samples}: no text lines")
            samples = None
        elif hints.get("tokenizer") and hints.get("texts"):
            self.texts = list(hints["texts"])
        if self.texts is None:
            return
        from torch2ort.runtime.processors.text import tokenize_texts

        folder = self.out / "samples"
        folder.mkdir(exist_ok=True)
        if samples:
            from torch2ort.inputs import sample_cases

            for case in sample_cases(samples, self.spec):
                np.savez(folder / f"{case.name}.npz", **case.feed)
        length = hints["preprocess"][0].get("max_length", 256)
        np.savez(folder / "real-text.npz", **tokenize_texts(hints["tokenizer"], self.texts, self.spec.names, length))
        self.samples = str(folder)

    def _export(self) -> str:
        from torch2ort.export import export_onnx
        from torch2ort.export.graph import graph_summary

        hints = self.loaded.hints
        if len(hints.get("pooling_choices", [])) > 1 and "pooling" not in (self.request.kwargs or {}):
            res = self._choose_pooling(hints["pooling_choices"])
        else:
            res = export_onnx(self.loaded, self.spec, self.onnx)
        self.ev["export"] = asdict(res) | {"graph": graph_summary(self.onnx)}
        g = self.ev["export"]["graph"]
        return f"{res.exporter} exporter, opset {res.opset}, {g['nodes']} nodes, {g['mb']:.1f} MB"

    def _choose_pooling(self, choices: list[str]):
        """Sentence-transformers: pooling in the graph or in the runtime, whichever matches encode() better."""
        from torch2ort.bundle.writer import pack
        from torch2ort.export import export_onnx
        from torch2ort.parity.metrics import agreement
        from torch2ort.runtime import Bundle
        from torch2ort.sources import load_model

        ref, how = self._sentence_reference()
        candidates: dict[str, dict] = {}
        loaded_by_choice = {}
        with tempfile.TemporaryDirectory(prefix="torch2ort-pooling-") as tmp:
            for choice in choices:
                req = replace(self.request, kwargs={**(self.request.kwargs or {}), "pooling": choice})
                loaded = load_model(req)
                onnx_path = self.out / "onnx" / f"pooling-{choice}.onnx"
                exported = export_onnx(loaded, loaded.hints["spec"], onnx_path)
                bundle = pack(onnx_path, Path(tmp) / f"bundle-{choice}", preprocess=loaded.hints["preprocess"],
                              postprocess=loaded.hints["postprocess"] or None, tokenizer=loaded.hints["tokenizer"])
                got = np.asarray(Bundle.load(bundle).predict(self.texts)["sentence_embedding"])
                candidates[choice] = agreement(ref, got)
                loaded_by_choice[choice] = (req, loaded, exported)
                self.log(f"pooling in the {choice}: max abs {candidates[choice]['max_abs']:.2e}, "
                         f"min cosine {candidates[choice]['min_cosine']:.7f} vs {how}")
        # Lower max abs error wins; on a tie the graph does, as it serves every runtime (browser, Triton).
        chosen = min(choices, key=lambda c: (candidates[c]["max_abs"], c != "graph"))
        self.request, self.loaded, exported = loaded_by_choice[chosen]
        self.spec = self.loaded.hints["spec"]
        for choice in choices:  # keep the chosen export as the model; the other one was only evidence
            path = self.out / "onnx" / f"pooling-{choice}.onnx"
            if choice == chosen:
                path.replace(self.onnx)
            else:
                path.unlink()
        exported.path = str(self.onnx)
        self.ev["pooling"] = {"chosen": chosen, "reference": how, "texts": len(self.texts),
                              "candidates": candidates, "rule": "lower max abs error vs the reference; graph on a tie"}
        return exported

    def _sentence_reference(self) -> tuple[np.ndarray, str]:
        """SentenceTransformer.encode on the sample texts, computed once for the pooling choice and the check."""
        if self._reference is None:
            from torch2ort.sources.hf import reference_sentence_embeddings

            self._reference = reference_sentence_embeddings(self.loaded.hints["model_dir"], self.texts)
        return self._reference

    def _verify(self) -> str:
        from torch2ort.parity.verify import verify_onnx

        res = verify_onnx(self.loaded, self.onnx, self.spec, n=self.opts.n, samples=self.samples,
                          sweep=self._sweep(), seed=self.opts.seed)
        self.ev["verify"] = res.to_dict()
        if not res.report:
            raise ParityError("PyTorch and ONNX Runtime disagree: " + "; ".join(res.report.failures()[:3]))
        return f"{len(res.cases)} cases, all outputs within tolerance (max abs {res.report.max_abs():.2e})"

    def _sweep(self) -> dict[str, list[int]]:
        from torch2ort.inputs import default_sweep

        if self.opts.sweep is not None:
            return self.opts.sweep
        return self.loaded.hints.get("sweep") or default_sweep(self.spec)

    def _bench_batches(self) -> list[int]:
        """--batch, else 1 and max(example, 8) with a dynamic batch dim, else the fixed batch."""
        from torch2ort.bench.run import batch_label

        if self.opts.batches:
            return list(self.opts.batches)
        label = batch_label(self.spec)
        if label:
            return sorted({1, max(self.spec.dynamic_labels()[label], 8)})
        return [self.spec.inputs[0].example_shape()[0]]

    def _optimize(self) -> str | None:
        if self.opts.optimize in ("none", None, []):
            return None
        from torch2ort.bench.run import BenchOptions
        from torch2ort.optimize.planner import optimize

        passes = "auto" if self.opts.optimize == "auto" else self.opts.optimize
        bench_opts = (BenchOptions(batches=[self._bench_batches()[-1]], seconds=min(self.opts.seconds, 0.5),
                                   repeats=self.opts.repeats, threads=self.opts.threads, warmup=3)
                      if self.opts.bench else None)
        target = self.out / "onnx" / "optimized.onnx"
        result = optimize(self.loaded, self.request, self.onnx, self.spec, passes=passes, accept=self.opts.accept,
                          samples=self.samples, n=self.opts.n, sweep=self._sweep(), seed=self.opts.seed,
                          bench_opts=bench_opts, out=target, force=True, log=self.log)
        self.ev["optimize"] = result.to_dict() | {"table": result.table()}
        if not result.output:
            raise ParityError(f"no variant passed the accuracy gate: {result.message}")
        self.gates = result.gates
        if result.chosen != "fp32":
            self.final = target
        else:
            target.unlink(missing_ok=True)
        return result.message

    def _verify_optimized(self) -> str | None:
        if self.final == self.onnx:
            return None
        from torch2ort.parity.gates import Gate, judge, parse_gate
        from torch2ort.parity.verify import verify_onnx

        res = verify_onnx(self.loaded, self.final, self.spec, n=self.opts.n, samples=self.samples,
                          sweep=self._sweep(), seed=self.opts.seed)
        gates = {}
        for name, g in self.gates.items():
            parsed = parse_gate(g["gate"])
            gates[name] = Gate(parsed.metric, parsed.limit, name, g["why"])
        verdict = judge(res.report, gates)
        self.ev["verify_optimized"] = {"variant": self.ev["optimize"]["chosen"], "file": str(self.final),
                                       "gate": verdict.to_dict(), "parity": res.to_dict()}
        if not verdict:
            raise ParityError("the written variant fails its gate: " + "; ".join(verdict.failures()[:3]))
        return f"{self.ev['optimize']['chosen']} re-read from disk: {verdict.summary()} on {len(res.cases)} cases"

    def _bench(self) -> str | None:
        if not self.opts.bench:
            return None
        from torch2ort.bench.run import BenchOptions, bench

        batches = self._bench_batches()
        opts = BenchOptions(batches=batches, seconds=self.opts.seconds, repeats=self.opts.repeats,
                            threads=self.opts.threads, warmup=3)
        self.log(f"timing torch and ONNX Runtime at batch {', '.join(map(str, batches))}, {opts.repeats} A/B pairs "
                 "of fresh processes")
        report = bench(self.request, self.spec, self.final, opts)
        self.ev["bench"] = report.to_dict()
        ratios = report.ratios.get("onnxruntime", {})
        return "speed-up vs torch (p50): " + ", ".join(f"batch {b}: {r['median']:.2f}×" for b, r in ratios.items())

    def _pack(self) -> str:
        from torch2ort.bundle.writer import pack, parity_summary
        from torch2ort.pipeline.footprint import closure_size, requirement_names, tree_bytes

        hints = self.loaded.hints
        name = self.opts.name or _default_name(self.request.model)
        parity = parity_summary(self.ev["verify"])
        if "verify_optimized" in self.ev:
            parity["variant"] = self.ev["verify_optimized"]["variant"]
            parity["gate"] = self.ev["verify_optimized"]["gate"]
        bundle = pack(self.final, self.out / "bundle", name=name, labels=self.opts.labels or hints.get("labels"),
                      preprocess=self.opts.preprocess or hints.get("preprocess") or None,
                      postprocess=self.opts.postprocess or hints.get("postprocess") or None,
                      tokenizer=self.opts.tokenizer or hints.get("tokenizer"), parity=parity, force=True)
        manifest = json.loads((bundle / "torch2ort.json").read_text())
        requirements = (bundle / "requirements.txt").read_text()
        torch_side = ["torch"] + (["transformers"] if self.loaded.kind == "hf" else [])
        if self.ev.get("pooling") and "sentence-transformers" in self.ev["pooling"]["reference"]:
            torch_side.append("sentence-transformers")
        self.ev["bundle"] = {"path": str(bundle), "bytes": tree_bytes(bundle), "files": manifest["files"],
                             "inputs": manifest["inputs"], "outputs": manifest["outputs"],
                             "preprocess": manifest["preprocess"], "postprocess": manifest["postprocess"],
                             "labels": manifest.get("labels"), "requirements": requirements}
        self.ev["footprint"] = {"bundle_bytes": tree_bytes(bundle),
                                "runtime": closure_size(requirement_names(requirements)),
                                "torch": closure_size(torch_side), "torch_roots": torch_side,
                                "method": "summed file sizes of each installed distribution's RECORD in this "
                                          "environment, dependencies included"}
        return f"{tree_bytes(bundle) / 2**20:.1f} MB bundle at {bundle}"

    def _check(self) -> str:
        from torch2ort.pipeline.checks import bundle_predict

        if self.texts is not None:
            results, info = bundle_predict(self.out / "bundle", self.texts)
            raw_input = f"{len(self.texts)} raw texts"
        else:
            feed = self._first_feed()
            results, info = bundle_predict(self.out / "bundle", feed)
            raw_input = "the first real sample" if self.samples else "a synthetic input"
        outputs = self._check_outputs(results)
        self.ev["check"] = {"input": raw_input, "torch_imported": info["torch_imported"],
                            "results": info["results"], "outputs": outputs}
        bad = [f"{k}: {v['reason']}" for k, v in outputs.items() if not v["passed"]]
        if info["torch_imported"]:
            bad.append("torch was imported while predicting")
        if bad:
            raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
        return (f"bundle.predict({raw_input}) in a torch-blocked process: "
                + ", ".join(f"{k} {v['metric']} {_metric(v['value'])}" for k, v in outputs.items()))

    def _first_feed(self) -> dict[str, np.ndarray]:
        from torch2ort.inputs import sample_cases, synthetic_feed

        if self.samples:
            return sample_cases(self.samples, self.spec)[0].feed
        return synthetic_feed(self.spec, seed=self.opts.seed + 7)

    def _check_outputs(self, results: dict[str, np.ndarray]) -> dict[str, dict]:
        """Compare the bundle's answers from raw input with the torch reference, under the gates."""
        from torch2ort.parity.metrics import agreement, holds, value_of

        hints = self.loaded.hints
        checks = {}
        if self.texts is not None and hints.get("task") == "sentence-embedding":
            refs = {"sentence_embedding": self._sentence_reference()}
        else:
            feed = self._feed_for_check()
            outs = _torch_outputs(self.loaded.module, self.spec, feed)
            refs = {f"raw:{k}": (v, "the PyTorch model on the same input") for k, v in outs.items()}
        for key, (ref, how) in refs.items():
            got = results.get(key)
            name = key.removeprefix("raw:")
            gate = self._check_gate(name, ref)
            if got is None:
                checks[name] = {"passed": False, "reason": f"the bundle returned no {key}", "metric": gate[0],
                                "value": float("nan"), "reference": how}
                continue
            a = agreement(ref, got)
            metric, limit, op = gate
            value = value_of(metric, a)
            ok = holds(metric, value, limit)
            checks[name] = a | {"metric": metric, "value": value if value is not None else float("nan"),
                                "gate": f"{metric}{op}{limit:g}", "passed": ok, "reference": how,
                                "reason": "" if ok else f"{metric} {value} fails {metric}{op}{limit:g}"}
        return checks

    def _feed_for_check(self) -> dict[str, np.ndarray]:
        if self.texts is not None:
            from torch2ort.runtime.processors.text import tokenize_texts

            length = self.loaded.hints["preprocess"][0].get("max_length", 256)
            return tokenize_texts(self.loaded.hints["tokenizer"], self.texts, self.spec.names, length)
        return self._first_feed()

    def _check_gate(self, name: str, ref: np.ndarray) -> tuple[str, float, str]:
        from torch2ort.parity.gates import default_gate, parse_gate

        if self.final == self.onnx:  # unquantised: hold it to near-identity
            if self.loaded.hints.get("task") == "sentence-embedding":
                return "cosine", ST_FP32_COSINE, ">="
            return "maxabs", (1e-3 if np.issubdtype(ref.dtype, np.floating) else 0.0), "<="
        g = self.gates.get(name) if self.gates else None
        gate = parse_gate(g["gate"]) if g else default_gate(name, ref)
        return gate.metric, gate.limit, gate.op

    def _report(self) -> None:
        from torch2ort.report import write_reports

        start = time.perf_counter()
        self.ev["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.ev["stages"].append({"name": "report", "status": "ok", "seconds": 0.0, "error": None,
                                  "summary": "report.md, report.html, evidence.json"})
        (self.out / EVIDENCE).write_text(json.dumps(_jsonable(self.ev), indent=1, allow_nan=True))
        paths = write_reports(self.ev, self.out)
        self.ev["stages"][-1]["seconds"] = round(time.perf_counter() - start, 3)
        assert all(p.is_file() for p in paths)
        (self.out / EVIDENCE).write_text(json.dumps(_jsonable(self.ev), indent=1, allow_nan=True))
        self.progress("done", "report", self.ev["stages"][-1])


_SKIPPED = {"optimize": "not asked for (--optimize none)", "verify-optimized": "nothing optimised",
            "bench": "not asked for (--no-bench)"}


def _metric(v: float) -> str:
    return f"{v:.7f}" if 0.99 < v < 1.0 or v == 1.0 else f"{v:.4g}"


def _default_name(model: str) -> str:
    if model.startswith("hf:"):
        return Path(model[3:].rstrip("/")).name or "model"
    return model.rpartition(":")[2] or Path(model).stem


def _torch_outputs(module, spec, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from torch2ort.runners.torch_eager import TorchRunner

    with TorchRunner(module, spec) as runner:
        return runner.infer(feed)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj
