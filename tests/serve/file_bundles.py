"""Bundles whose preprocess starts from a file (audio, signal) over tiny hand-built ONNX models, and the
files to send them: a WAV and a FLAC, an .npy, a .csv, a .mat and a WFDB record as a zip and a tar."""

from __future__ import annotations

import io
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from torch2ort.bundle.writer import pack

AUDIO_STEPS = [{"op": "load_audio", "sample_rate": 8000, "max_seconds": 20},
               {"op": "segments", "seconds": 0.5, "mask": "segment_mask"}, {"op": "add_batch"}]
LEADS = ["I", "II", "III"]


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def audio_model(path: Path) -> Path:
    """Per-segment probability sigmoid(mean |x| * 8) and the bag's (masked) maximum: a cough model's outputs."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Abs", ["segments"], ["a"]),
             helper.make_node("ReduceMean", ["a", "ax2"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "eight"], ["m8"]),
             helper.make_node("Sigmoid", ["m8"], ["segment_prob"]),
             helper.make_node("Cast", ["segment_mask"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["segment_prob", "mf"], ["masked"]),
             helper.make_node("ReduceMax", ["masked", "ax1"], ["bag_prob"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([2], np.int64), "ax2"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(8, np.float32), "eight")]
    graph = helper.make_graph(
        nodes, "cough", [helper.make_tensor_value_info("segments", TensorProto.FLOAT, ["batch", "segs", 4000]),
                         helper.make_tensor_value_info("segment_mask", TensorProto.BOOL, ["batch", "segs"])],
        [helper.make_tensor_value_info("segment_prob", TensorProto.FLOAT, ["batch", "segs"]),
         helper.make_tensor_value_info("bag_prob", TensorProto.FLOAT, ["batch"])], inits)
    return _save(graph, path)


def signal_model(path: Path) -> Path:
    """Per-lead mean |x| through a sigmoid: three 'labels' for a multi-label ECG-like bundle."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Abs", ["ecg"], ["a"]), helper.make_node("ReduceMean", ["a", "ax"], ["logits"],
                                                                      keepdims=0)]
    graph = helper.make_graph(
        nodes, "ecg", [helper.make_tensor_value_info("ecg", TensorProto.FLOAT, ["batch", 3, 256])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([2], np.int64), "ax")])
    return _save(graph, path)


def file_bundles(root: Path) -> dict[str, Path]:
    return {
        "cough": pack(audio_model(root / "cough.onnx"), root / "cough", name="cough", preprocess=AUDIO_STEPS),
        "ecg": pack(signal_model(root / "ecg.onnx"), root / "ecg", name="ecg", labels=["AF", "RBBB", "LBBB"],
                    preprocess=[{"op": "load_signal", "leads": [0, 1, 2], "max_values": 100_000},
                                {"op": "crop_pad", "length": 256}, {"op": "add_batch"}],
                    postprocess=[{"op": "sigmoid", "output": "logits", "name": "probs"},
                                 {"op": "threshold", "output": "probs", "thresholds": {"AF": 0.6, "RBBB": 0.8,
                                                                                       "LBBB": 0.95}}]),
    }


def audio_file(seconds: float = 1.3, rate: int = 22050, fmt: str = "WAV", seed: int = 0) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.4 * np.sin(2 * np.pi * 350 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, wave.astype(np.float32), rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def ecg(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 500
    return np.stack([np.sin(2 * np.pi * (k + 1) * t) * (k + 1) + 0.1 * rng.standard_normal(n) for k in range(3)])


def npy_file(data: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, data)
    return buf.getvalue()


def csv_file(data: np.ndarray) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, data.T, delimiter=",", header=",".join(LEADS), comments="")
    return buf.getvalue().encode()


def mat_file(data: np.ndarray) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"val": data}, do_compression=True)
    return buf.getvalue()


def wfdb_files(folder: Path, data: np.ndarray) -> dict[str, bytes]:
    """The .hea and .dat of a WFDB record of ``data`` (written by wfdb, read back as bytes)."""
    with warnings.catch_warnings():  # wfdb's own pandas deprecation warnings
        warnings.simplefilter("ignore")
        import wfdb

        folder.mkdir(parents=True, exist_ok=True)
        wfdb.wrsamp("rec", fs=500, units=["mV"] * 3, sig_name=LEADS, p_signal=data.T, fmt=["16"] * 3,
                    write_dir=str(folder))
    return {name: (folder / name).read_bytes() for name in ("rec.hea", "rec.dat")}


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return buf.getvalue()


def tarred(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return buf.getvalue()
