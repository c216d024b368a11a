"""migrate from raw audio and signal files: a fused --preprocess-module, checked file -> answer without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fixtures.families import FIXTURES, run_cli

sf = pytest.importorskip("soundfile")
FRONT_END = str(Path(__file__).resolve().parents[2] / "examples" / "cough" / "pre.py") + ":tiny"
AUDIO_STEPS = json.dumps([{"op": "load_audio", "sample_rate": 8000, "normalize": "peak"},
                          {"op": "highpass", "cutoff": 50}, {"op": "segments", "seconds": 0.5, "hop_seconds": 0.25,
                                                               "mask": "segment_mask"}, {"op": "add_batch"}])


def _clips(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(22050 * 1.3)) / 22050
    cough = 0.4 * np.sin(2 * np.pi * 350 * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(folder / "cough.wav", cough.astype(np.float32), 22050, subtype="PCM_16")
    sf.write(folder / "short.flac", (0.2 * rng.standard_normal(3000)).astype(np.float32), 8000)
    return folder


@pytest.fixture(scope="module")
def audio_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("raw-audio")
    clips = _clips(tmp / "clips")
    code = run_cli("migrate", f"{FIXTURES / 'models.py'}:AttnMil", "--preprocess-module", FRONT_END,
                   "--input", "segments:batch=1,segments=3,4000:float32",
                   "--input", "segment_mask:batch=1,segments=3:bool", "--preprocess", AUDIO_STEPS,
                   "--samples", str(clips), "--no-bench", "-o", str(tmp / "out"))
    return code, tmp / "out", clips


def test_bundle_from_audio_files_matches_the_torch_pipeline(audio_run):
    code, out, _ = audio_run
    ev = json.loads((out / "evidence.json").read_text())
    assert code == 0, ev["outcome"]
    check = ev["check"]
    assert check["preprocess_module"] == "fused" and not check["torch_imported"]
    assert len(check["files"]) == 2 and len(check["outputs"]) == 8
    for name, o in check["outputs"].items():
        assert o["passed"] and o["max_abs"] <= 1e-4 and o["gate"] == "maxabs<=0.0001", name
    steps = {d["step"].split(" (")[0].split(" [")[0]: d for d in check["steps"]}
    assert steps["decoded waveform"]["max_abs"] == 0.0          # libsndfile and scipy agree on PCM16
    assert 0 < steps["resampled waveform"]["max_abs"] < 0.05    # soxr vs resample_poly: close, not equal
    assert steps["features"]["max_abs"] < 1e-4
    assert any("fused with the model" in n for n in ev["model"]["notes"])
    assert "Per-step drift" in (out / "report.md").read_text()


def test_bundle_predicts_files_and_batches_without_nan(audio_run, tmp_path):
    from torch2ort.runtime import Bundle

    _, out, clips = audio_run
    bundle = Bundle.load(out / "bundle")
    one = bundle.predict(str(clips / "cough.wav"))
    assert one["bag_prob"].shape == (1,) and one["seg_probs"].shape[0] == 1
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, np.float32), 8000)
    both = bundle.predict([str(clips / "cough.wav"), str(silent)])
    assert both["seg_probs"].shape[0] == 2 and np.isfinite(both["bag_prob"]).all()
    np.testing.assert_allclose(both["bag_prob"][0], one["bag_prob"][0], atol=1e-6)
    assert both.raw["attn_weights"].shape == (2, 5) and not both.raw["attn_weights"][1, 3:].any()  # padding masked


def test_predict_cli_takes_audio_under_any_name(audio_run, capsys):
    _, out, clips = audio_run
    assert run_cli("predict", str(out / "bundle"), "--input", f"audio=@{clips / 'cough.wav'}") == 0
    assert "bag_prob" in json.loads(capsys.readouterr().out)["outputs"]
    bad = clips.parent / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    assert run_cli("predict", str(out / "bundle"), "--input", f"audio=@{bad}") != 0
    err = capsys.readouterr().err.strip()
    assert "not readable audio" in err and len(err.splitlines()) == 1


def test_signal_files_give_labels_with_per_label_thresholds(tmp_path):
    from scipy.io import savemat

    from torch2ort.runtime import Bundle

    rng = np.random.default_rng(1)
    savemat(tmp_path / "rec.mat", {"val": (rng.standard_normal((12, 700)) * 200).astype(np.int16)})
    steps = [{"op": "load_signal", "input_rate": 500}, {"op": "crop_pad", "length": 256},
             {"op": "standardize"}, {"op": "add_batch"}]
    post = [{"op": "threshold", "output": "output_0", "threshold": 0.5, "thresholds": {"AF": 0.0},
             "labels": ["AF", "I-AVB", "LBBB", "RBBB", "PAC"]}]
    code = run_cli("migrate", f"{FIXTURES / 'models.py'}:EcgResNet1d", "--input", "ecg:batch=1,12,256:float32",
                   "--preprocess", json.dumps(steps), "--postprocess", json.dumps(post),
                   "--samples", str(tmp_path / "rec.mat"), "--no-bench", "-o", str(tmp_path / "out"))
    ev = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert code == 0, ev["outcome"]
    assert ev["check"]["outputs"]["output_0"]["max_abs"] <= 1e-4
    labels = Bundle.load(tmp_path / "out" / "bundle").predict(str(tmp_path / "rec.mat"))["labels"]
    assert labels[0][0] == "AF"  # threshold 0 for AF: always on


def test_audio_files_need_a_loader_step(tmp_path):
    clips = _clips(tmp_path / "clips")
    code = run_cli("migrate", f"{FIXTURES / 'models.py'}:AttnMil", "--preprocess-module", FRONT_END,
                   "--input", "segments:batch=1,segments=3,4000:float32",
                   "--input", "segment_mask:batch=1,segments=3:bool", "--samples", str(clips / "cough.wav"),
                   "--no-bench", "-o", str(tmp_path / "out"))
    ev = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert code != 0 and "start with load_audio or load_signal" in ev["outcome"]["reason"]


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_bytes(b""), "not readable audio"),
    (lambda p: p.write_bytes(b"ID3\x03\x00not a wav"), "not readable audio"),
    (lambda p: (sf.write(p, np.zeros(8000, np.float32), 8000), p.write_bytes(p.read_bytes()[:40])),
     "not readable audio"),
    (lambda p: sf.write(p, np.zeros(8000 * 601, np.int16), 8000, subtype="PCM_16"), "the limit is 600 s"),
])
def test_bad_audio_is_a_one_line_error_from_the_bundle(audio_run, tmp_path, capsys, make, fragment):
    from torch2ort.runtime import Bundle

    _, out, _ = audio_run
    bundle_dir = tmp_path / "bundle"
    import shutil

    shutil.copytree(out / "bundle", bundle_dir)
    manifest = json.loads((bundle_dir / "torch2ort.json").read_text())
    manifest["preprocess"][0]["max_seconds"] = 600
    (bundle_dir / "torch2ort.json").write_text(json.dumps(manifest))
    bad = tmp_path / "bad.wav"
    make(bad)
    assert run_cli("predict", str(bundle_dir), "--input", f"audio=@{bad}") == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 8000)
    assert np.isfinite(Bundle.load(bundle_dir).predict(str(silent))["bag_prob"]).all()


def test_verify_and_pack_take_the_preprocess_module(tmp_path, capsys):
    inputs = ["--input", "segments:batch=1,segments=3,4000:float32", "--input", "segment_mask:batch=1,segments=3:bool"]
    model = f"{FIXTURES / 'models.py'}:AttnMil"
    assert run_cli("pack", model, "--preprocess-module", FRONT_END, *inputs, "--preprocess", AUDIO_STEPS,
                   "-o", str(tmp_path / "b")) == 0
    assert json.loads((tmp_path / "b" / "torch2ort.json").read_text())["inputs"][0]["shape"][-1] == 4000
    assert run_cli("verify", model, str(tmp_path / "b" / "model.onnx"), "--preprocess-module", FRONT_END,
                   *inputs) == 0
    capsys.readouterr()
    assert run_cli("verify", model, str(tmp_path / "b" / "model.onnx"), *inputs) != 0  # the model alone differs
    assert run_cli("pack", str(tmp_path / "b" / "model.onnx"), "--preprocess-module", FRONT_END,
                   "-o", str(tmp_path / "c")) == 2
    assert "--preprocess-module needs a torch MODEL" in capsys.readouterr().err
    assert run_cli("pack", model, "--preprocess-module", "nope.py:X", *inputs, "-o", str(tmp_path / "d")) != 0
    assert "--preprocess-module: model file not found: nope.py" in capsys.readouterr().err
