"""The runtime's audio feature steps and the transformers-compatible resize/crop options, without torch."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.processors import Context, check_pipeline
from torch2ort.runtime.processors.audio_features import kaldi_fbank, log_mel, zero_mean_unit_var
from torch2ort.runtime.processors.image import center_crop, resize


def test_zero_mean_unit_var():
    x = np.random.default_rng(0).normal(3.0, 2.0, 16000).astype(np.float32)
    y = zero_mean_unit_var(x, None)
    assert y.dtype == np.float32 and abs(float(y.mean())) < 1e-5 and abs(float(y.std()) - 1) < 1e-4
    with pytest.raises(PredictInputError, match="mono waveform"):
        zero_mean_unit_var(np.zeros((2, 100), np.float32), None)


def test_log_mel_reads_its_filter_bank_from_the_bundle(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "mel.npy", np.abs(rng.normal(size=(201, 8))))
    ctx = Context(bundle_dir=tmp_path)
    out = log_mel(rng.normal(size=3000).astype(np.float32), ctx, filters="mel.npy", n_samples=4000)
    assert out.shape == (8, 25) and out.dtype == np.float32  # 4000 / 160 frames, the last one dropped
    assert float(out.max()) - float(out.min()) <= 2.0 + 1e-6  # clamped to max - 8 in log10, then / 4
    with pytest.raises(BundleError, match="array 'missing.npy' .* is unreadable"):
        log_mel(np.zeros(400, np.float32), Context(bundle_dir=tmp_path), filters="missing.npy")


def test_kaldi_fbank_pads_to_a_fixed_number_of_frames(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "mel.npy", np.abs(rng.normal(size=(257, 6))))
    np.save(tmp_path / "win.npy", np.hanning(400))
    ctx = Context(bundle_dir=tmp_path)
    out = kaldi_fbank(rng.normal(size=2000).astype(np.float32), ctx, "mel.npy", "win.npy", max_frames=20)
    assert out.shape == (20, 6) and out.dtype == np.float32
    assert np.all(out[11:] == 0) and np.all(out[:11] != 0)  # 1 + (2000 - 400) // 160 = 11 frames, then zeros
    with pytest.raises(PredictInputError, match="at least 400 samples"):
        kaldi_fbank(np.zeros(100, np.float32), ctx, "mel.npy", "win.npy", max_frames=20)


def test_resize_floor_and_pillow_passes_match_one_image_resize():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (97, 150, 3), dtype=np.uint8))
    out = resize(img, None, 45, "bicubic", rounding="floor", passes="pillow")
    assert out.size == (int(45 * 150 / 97), 45)  # 69, where round() gives 70
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((69, 45), resample=3)))
    assert resize(img, None, 45, "bicubic").size == (70, 45)
    with pytest.raises(ValueError, match="rounding"):
        resize(img, None, 45, rounding="ceil")


def test_center_crop_floor_offset():
    arr = np.arange(7 * 7).reshape(7, 7)
    assert center_crop(arr, None, 4, offset="floor")[0, 0] == 8  # top = left = (7 - 4) // 2 = 1
    assert center_crop(arr, None, 4)[0, 0] == 16  # round(1.5) = 2


def test_new_steps_are_in_the_schema_and_registry():
    from torch2ort.runtime import manifest as mf

    pre = [{"op": "load_audio", "sample_rate": 16000}, {"op": "log_mel", "filters": "mel_filters.npy",
                                                        "n_samples": 16000}, {"op": "zero_mean_unit_var"},
           {"op": "resize", "size": 8, "rounding": "floor", "passes": "pillow"},
           {"op": "center_crop", "size": 4, "offset": "floor"},
           {"op": "kaldi_fbank", "filters": "mel_filters.npy", "window": "window.npy", "max_frames": 1024}]
    check_pipeline(pre, [])
    doc = {"format_version": mf.FORMAT_VERSION, "name": "m", "model": "model.onnx", "inputs": [], "outputs": [],
           "preprocess": pre, "postprocess": [], "files": {"model.onnx": "0" * 64}}
    mf.validate(doc, "test")
    doc["preprocess"] = [{"op": "log_mel", "filters": "../etc/x.npy"}]
    with pytest.raises(BundleError):
        mf.validate(doc, "test")
