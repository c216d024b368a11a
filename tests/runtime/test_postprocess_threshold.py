"""The threshold step with per-label thresholds and label names, and the schema for the audio and signal steps."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import BundleError
from torch2ort.runtime.manifest import validate
from torch2ort.runtime.processors import Context, run_postprocess

LABELS = ["AF", "LBBB", "RBBB"]


def _run(steps, labels=None):
    ctx = Context(None, labels, raw={"logits": np.array([[2.0, -1.0, 0.1], [-3.0, 0.5, -0.2]], np.float32)})
    return run_postprocess(steps, ctx)


def test_per_label_thresholds_and_names():
    steps = [{"op": "sigmoid", "output": "logits", "name": "p"},
             {"op": "threshold", "output": "p", "threshold": 0.5, "thresholds": {"RBBB": 0.4, "AF": 0.95}}]
    assert _run(steps, LABELS)["labels"] == [["RBBB"], ["LBBB", "RBBB"]]
    named = [{**steps[1], "labels": ["a", "b", "c"], "thresholds": {"c": 0.9}}]
    assert _run([steps[0], *named])["labels"] == [["a"], ["b"]]
    with pytest.raises(BundleError, match="unknown labels"):
        _run([steps[0], {**steps[1], "thresholds": {"PVC": 0.3}}], LABELS)
    with pytest.raises(BundleError, match="2 label names for 3 columns"):
        _run([steps[0], {**steps[1], "labels": ["a", "b"], "thresholds": None}])


def _manifest(pre, post=()):
    return {"format_version": 1, "name": "m", "model": "model.onnx", "files": {"model.onnx": "0" * 64},
            "inputs": [{"name": "x", "dtype": "float32", "shape": [1]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}], "preprocess": pre, "postprocess": list(post)}


def test_schema_declares_the_new_steps():
    validate(_manifest([{"op": "load_audio", "sample_rate": 16000, "normalize": "peak"},
                        {"op": "highpass", "cutoff": 50}, {"op": "segments", "seconds": 2.0, "hop_seconds": 0.5,
                                                           "max_segments": 32, "mask": "segment_mask"},
                        {"op": "add_batch"}]))
    validate(_manifest([{"op": "load_signal", "leads": ["I", 1]}, {"op": "resample", "sample_rate": 500},
                        {"op": "crop_pad", "length": 5000}, {"op": "standardize"}],
                       [{"op": "threshold", "output": "y", "thresholds": {"AF": 0.3}, "labels": ["AF"]}]))
    for bad in ({"op": "highpass"}, {"op": "segments", "seconds": 1, "hop": 1}, {"op": "crop_pad", "length": 0},
                {"op": "load_signal", "layout": "rows"}):
        with pytest.raises(BundleError):
            validate(_manifest([bad]))
