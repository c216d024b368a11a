"""The check stage: the packed bundle from raw input, in a torch-free process, judged against torch.

``judge_output`` is the one place that turns a reference and an answer into a verdict (the
metric functions of ``pipeline.checks`` and the gates of ``parity.gates``), so swapping the
metrics touches one function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import ParityError
from torch2ort.evidence import CheckInfo, OutputCheck
from torch2ort.pipeline.stages import Stage
from torch2ort.pipeline.state import MigrationState

# The bar for an unquantised sentence-transformers bundle against SentenceTransformer.encode.
ST_FP32_COSINE = 0.9999
# hf image/audio bundles: logits from the raw file vs transformers' processor + model (issue 17).
HF_MEDIA_FP32_MAXABS = 1e-4


class Check(Stage):
    name = "check"

    def run(self, state: MigrationState) -> str:
        from torch2ort.pipeline.checks import bundle_predict

        if state.raw_files:
            if not state.loaded.hints.media:  # audio/signal files through the user's steps and module
                from torch2ort.pipeline.check_raw import check_raw_files

                return check_raw_files(state)
            results, info = bundle_predict(state.bundle_dir, state.raw_files[0])  # an hf image/audio folder
            raw_input = f"the raw file {Path(state.raw_files[0]).name}"
        elif state.texts is not None:
            results, info = bundle_predict(state.bundle_dir, state.texts)
            raw_input = f"{len(state.texts)} raw texts"
        else:
            results, info = bundle_predict(state.bundle_dir, first_feed(state))
            raw_input = "the first real sample" if state.samples else "a synthetic input"
        outputs = {name: judge_output(key, results.get(key), ref, how, gate_for(state, name, ref))
                   for name, key, ref, how in _pairs(state)}
        state.evidence.check = CheckInfo(input=raw_input, torch_imported=info["torch_imported"],
                                         results=list(info["results"]), outputs=outputs)
        bad = [f"{k}: {v.reason}" for k, v in outputs.items() if not v.passed]
        if info["torch_imported"]:
            bad.append("torch was imported while predicting")
        if bad:
            raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
        return (f"bundle.predict({raw_input}) in a torch-blocked process: "
                + ", ".join(f"{k} {v.metric} {_metric(v.value)}" for k, v in outputs.items()))


def judge_output(key: str, got: np.ndarray | None, ref: np.ndarray, how: str,
                 gate: tuple[str, float, str]) -> OutputCheck:
    """How close the bundle's answer ``key`` is to ``ref`` under ``gate`` = (metric, limit, ">=" or "<=")."""
    from torch2ort.parity.metrics import agreement, holds, value_of

    metric, limit, op = gate
    if got is None:
        return OutputCheck(passed=False, reason=f"the bundle returned no {key}", metric=metric,
                           value=float("nan"), reference=how)
    a = agreement(ref, got)
    value = value_of(metric, a)
    ok = holds(metric, value, limit)
    return OutputCheck.from_dict(a | {
        "metric": metric, "value": value if value is not None else float("nan"), "gate": f"{metric}{op}{limit:g}",
        "passed": ok, "reference": how, "reason": "" if ok else f"{metric} {value} fails {metric}{op}{limit:g}"})


def gate_for(state: MigrationState, name: str, ref: np.ndarray) -> tuple[str, float, str]:
    """Near-identity for an unquantised bundle; the chosen variant's gate (or the default) otherwise."""
    from torch2ort.parity.gates import default_gate, parse_gate

    if state.final == state.onnx:
        if state.loaded.hints.task == "sentence-embedding":
            return "cosine", ST_FP32_COSINE, ">="
        if state.loaded.hints.media:  # the issue's bar against transformers' processor + model on the same file
            return "maxabs", HF_MEDIA_FP32_MAXABS, "<="
        return "maxabs", (1e-3 if np.issubdtype(ref.dtype, np.floating) else 0.0), "<="
    g = state.gates.get(name) if state.gates else None
    gate = parse_gate(g["gate"]) if g else default_gate(name, ref)
    return gate.metric, gate.limit, gate.op


def _pairs(state: MigrationState):
    """(output name, the key of the bundle's answer, the reference, what produced the reference)."""
    if state.texts is not None and state.loaded.hints.task == "sentence-embedding":
        ref, how = state.sentence_reference()
        yield "sentence_embedding", "sentence_embedding", ref, how
        return
    from torch2ort.pipeline.samples import tokenize
    from torch2ort.runners.torch_eager import TorchRunner

    how = "the PyTorch model on the same input"
    if state.raw_files:
        from torch2ort.sources.hf_media import reference_feed

        feed = reference_feed(state.loaded.hints, state.raw_files[0])
        how = "transformers' own processor + the PyTorch model on the same file"
    elif state.texts is not None:
        feed = tokenize(state.loaded.hints, state.texts, state.spec)
    else:
        feed = first_feed(state)
    with TorchRunner(state.loaded.module, state.spec) as runner:
        outs = runner.infer(feed)
    for k, v in outs.items():  # the runtime returns the graph's own outputs as raw:NAME
        yield k, f"raw:{k}", v, how


def first_feed(state: MigrationState) -> dict[str, np.ndarray]:
    """The first real sample, else a seeded synthetic input."""
    from torch2ort.inputs import sample_cases, synthetic_feed

    if state.samples:
        return sample_cases(state.samples, state.spec)[0].feed
    return synthetic_feed(state.spec, seed=state.opts.seed + 7)


def _metric(v: float) -> str:
    return f"{v:.7f}" if 0.99 < v < 1.0 or v == 1.0 else f"{v:.4g}"
