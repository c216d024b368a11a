"""Raw audio and signal files as migration samples, and the per-step drift of the pipeline that reads them.

``--samples`` may name audio (.wav .flac .ogg) or signal (.npy .csv .mat .hea) files, or a folder
of them, when ``--preprocess`` starts with ``load_audio`` or ``load_signal``. Each file goes
through the bundle's own runtime steps (numpy, in this process) into a feed saved as a sample,
so verification runs on real inputs; the check stage then predicts from the files themselves.

``step_drift`` compares what can be compared with an independent implementation: the decoded
waveform (libsndfile vs scipy.io.wavfile, for .wav), the resampled waveform (soxr VHQ vs
scipy.signal.resample_poly) and the features (the preprocess module in torch vs its own ONNX
export in ONNX Runtime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import SampleError
from torch2ort.parity.metrics import max_abs

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SIGNAL_SUFFIXES = (".npy", ".csv", ".mat", ".hea")


def raw_files(samples: str | None) -> list[str]:
    """The audio/signal files ``--samples`` names (a file or a folder of them); [] for .npz samples and texts."""
    if not samples:
        return []
    path = Path(samples)
    suffixes = AUDIO_SUFFIXES + SIGNAL_SUFFIXES
    if path.is_file():
        return [str(path)] if path.suffix.lower() in suffixes else []
    if path.is_dir() and not any(path.glob("*.npz")):
        return [str(p) for p in sorted(path.iterdir()) if p.suffix.lower() in suffixes]
    return []


def feed_of(steps: list[dict], path: str, names: list[str]) -> dict[str, np.ndarray]:
    """The model's feed for one file, built by the bundle's runtime steps."""
    from torch2ort.errors import Torch2OrtError
    from torch2ort.runtime.processors import Context, run_preprocess

    try:
        value = run_preprocess(steps, path, Context(Path(path).parent))
    except Torch2OrtError as exc:
        raise SampleError(f"--samples {path}: {exc.one_line()}") from None
    if isinstance(value, np.ndarray):
        value = {names[0]: value}
    if not isinstance(value, dict):
        raise SampleError(f"--samples {path}: the preprocess steps give a {type(value).__name__}, not arrays")
    return value


def prepare_raw(files: list[str], steps: list[dict], names: list[str], folder: Path) -> str:
    """Write one ``raw-<stem>.npz`` feed per file into ``folder``; returns the folder (the samples to verify on)."""
    from torch2ort.runtime.processors import FILE_LOADERS

    if not steps or steps[0]["op"] not in FILE_LOADERS:
        raise SampleError(f"--samples {files[0]}: audio and signal files need --preprocess steps that start with "
                          f"{' or '.join(FILE_LOADERS)}")
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        np.savez(folder / f"raw-{i:02d}-{Path(f).stem}.npz", **feed_of(steps, f, names))
    return str(folder)


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
