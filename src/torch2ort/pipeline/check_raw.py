"""The check stage for raw audio and signal files: the bundle from each file, without torch, against torch.

The bundle predicts from the file itself in a torch-blocked process (``checks.bundle_predict``).
The reference is the same pipeline in torch: the bundle's runtime steps (decode, resample,
filter, segment: numpy code with no torch counterpart here) on the same file, then the user's
preprocess module and the model in PyTorch. An unquantised bundle must agree within max abs
1e-4. Per-step drift against independent implementations (``raw_inputs``) is recorded, not gated.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.errors import ParityError, describe
from torch2ort.evidence import CheckInfo, StepDrift
from torch2ort.pipeline.state import MigrationState

RAW_FP32_MAXABS = 1e-4  # the bar for file -> bundle vs file -> torch pipeline
MAX_FILES = 4           # files predicted from one by one (each is a fresh torch-free process)


def check_raw_files(state: MigrationState) -> str:
    from torch2ort.pipeline.check_stage import gate_for, judge_output
    from torch2ort.pipeline.checks import bundle_predict
    from torch2ort.pipeline.raw_inputs import feed_of
    from torch2ort.runners.torch_eager import TorchRunner

    steps, names = state.raw_steps(), list(state.spec.names)
    files = state.raw_files[:MAX_FILES]
    outputs, results, imported = {}, [], False
    how = ("the same steps, then the preprocess module and the model in PyTorch" if state.request.preprocess_module
           else "the same steps, then the PyTorch model")
    for f in files:
        got, info = bundle_predict(state.bundle_dir, f)
        results, imported = list(info["results"]), imported or info["torch_imported"]
        with TorchRunner(state.loaded.module, state.spec) as runner:
            ref = runner.infer(feed_of(steps, f, names))
        for k, v in ref.items():
            gate = ("maxabs", RAW_FP32_MAXABS, "<=") if state.final == state.onnx else gate_for(state, k, v)
            key = k if len(files) == 1 else f"{Path(f).name}: {k}"
            outputs[key] = judge_output(f"raw:{k}", got.get(f"raw:{k}"), v, how, gate)
    state.evidence.check = CheckInfo(
        input=", ".join(Path(f).name for f in files), torch_imported=imported, results=results, outputs=outputs,
        files=files, preprocess_module="fused" if state.request.preprocess_module else None,
        steps=step_drift(state, steps, files[0]))
    bad = [f"{k}: {v.reason}" for k, v in outputs.items() if not v.passed]
    if imported:
        bad.append("torch was imported while predicting")
    if bad:
        raise ParityError("the packed bundle fails its end-to-end check from raw files: " + "; ".join(bad[:4]))
    worst = max(v.max_abs for v in outputs.values() if v.max_abs is not None)
    return (f"bundle.predict(file) on {len(files)} raw file(s) in a torch-blocked process vs the torch pipeline: "
            f"max abs {worst:.2e} over {len(outputs)} outputs")


def step_drift(state: MigrationState, steps: list[dict], path: str) -> list[StepDrift]:
    """Decoded/resampled waveform and features of one file against independent implementations; never fails."""
    from torch2ort.pipeline.raw_inputs import audio_drift, feature_drift, feed_of

    out: list[StepDrift] = []
    try:
        if steps[0]["op"] == "load_audio":
            out += [StepDrift.from_dict(d) for d in audio_drift(path, steps[0])]
        if state.request.preprocess_module:
            feed = feed_of(steps, path, list(state.spec.names))
            out.append(StepDrift.from_dict(feature_drift(state.loaded.module.pre, state.spec, feed, state.out)))
    except Exception as exc:  # drift is information, not a gate: record why it is missing
        out.append(StepDrift(step="per-step drift", note=f"not measured: {describe(exc)}"))
    return out
