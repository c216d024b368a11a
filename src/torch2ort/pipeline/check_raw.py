"""The check stage for raw audio and signal files: the bundle from each file, without torch, against torch.

The bundle predicts from the file itself in a torch-blocked process (``checks.bundle_predict``).
The reference is the same pipeline in torch: the bundle's runtime steps (decode, resample,
filter, segment: numpy code with no torch counterpart here) on the same file, then the user's
preprocess module and the model in PyTorch. An unquantised bundle must agree within max abs
1e-4 (``parity.judge.RAW_FP32_MAXABS``). Per-step drift against independent implementations is
recorded, not gated: the decoded waveform (libsndfile vs scipy.io.wavfile, for .wav), the resampled
waveform (soxr VHQ vs scipy.signal.resample_poly) and the features (the preprocess module in torch vs
its own ONNX export in ONNX Runtime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import ParityError, describe
from torch2ort.evidence import CheckInfo, OutputCheck, StepDrift
from torch2ort.parity.judge import judge_answer
from torch2ort.parity.metrics import max_abs
from torch2ort.pipeline.state import MigrationState

MAX_FILES = 4           # files predicted from one by one (each is a fresh torch-free process)


def check_raw_files(state: MigrationState) -> str:
    from torch2ort.inputs.raw import feed_of
    from torch2ort.pipeline.checks import bundle_predict
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
            key = k if len(files) == 1 else f"{Path(f).name}: {k}"
            outputs[key] = OutputCheck.from_dict(
                judge_answer(f"raw:{k}", got.get(f"raw:{k}"), v, state.check_gate(k, v), how).to_dict())
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
    from torch2ort.inputs.raw import feed_of

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


def _diff(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    n = min(ref.size, got.size)
    a, b = ref.reshape(-1)[:n].astype(np.float64), got.reshape(-1)[:n].astype(np.float64)
    return {"max_abs": max_abs(a, b),  # the metrics module's definition, on the overlapping samples
            "rms": float(np.sqrt(np.mean((a - b) ** 2))) if n else 0.0, "values": int(n)}


def audio_drift(path: str, step: dict) -> list[dict[str, Any]]:
    """Decoded and resampled waveform of one file against independent decoders/resamplers."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    from torch2ort.runtime.processors.audio import decode, resample, to_mono

    data, rate = decode(path)
    out: list[dict[str, Any]] = []
    if path.lower().endswith(".wav"):
        ref_rate, ref = wavfile.read(path)
        ref = ref.astype(np.float64) / (2.0 ** (8 * ref.dtype.itemsize - 1)) if ref.dtype.kind == "i" else ref
        out.append({"step": "decoded waveform", "ours": "soundfile (libsndfile)", "reference": "scipy.io.wavfile",
                    **_diff(ref.reshape(len(ref), -1), data)})
    else:
        out.append({"step": "decoded waveform", "ours": "soundfile (libsndfile)", "reference": "",
                    "note": "not compared: no second decoder for this format here"})
    target = int(step.get("sample_rate", 16000))
    mono = to_mono(data)
    if rate != target:
        from fractions import Fraction

        ratio = Fraction(target, rate)
        ref = resample_poly(mono.astype(np.float64), ratio.numerator, ratio.denominator)
        out.append({"step": f"resampled waveform ({rate} -> {target} Hz)", "ours": "soxr VHQ",
                    "reference": "scipy.signal.resample_poly", **_diff(ref, resample(mono, rate, target))})
    else:
        out.append({"step": "resampled waveform", "ours": "soxr VHQ", "reference": "",
                    "note": f"not compared: the file is already at {target} Hz"})
    return out


def feature_drift(pre, spec, feed: dict[str, np.ndarray], folder: Path) -> dict[str, Any]:
    """The preprocess module in torch vs its own export (torch2ort's exporter) in ONNX Runtime, on a file's feed."""
    import onnxruntime as ort

    from torch2ort.export import export_onnx
    from torch2ort.runners.torch_eager import TorchRunner
    from torch2ort.sources import LoadedModel
    from torch2ort.spec import InputSpec

    first = spec.inputs[0].name
    alone = InputSpec(inputs=(spec.inputs[0],), output_names=("features",))
    path = folder / "preprocess-only.onnx"
    export_onnx(LoadedModel(pre, "--preprocess-module", "factory"), alone, path)
    with TorchRunner(pre, alone) as runner:
        ref = runner.infer({first: feed[first]})["features"]
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {first: feed[first]})[0]
    for f in folder.glob("preprocess-only.onnx*"):
        f.unlink()
    return {"step": f"features {list(ref.shape)}", "ours": "the preprocess module's own ONNX graph",
            "reference": "the preprocess module in torch", **_diff(ref, got)}
