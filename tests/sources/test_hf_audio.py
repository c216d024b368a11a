"""hf:DIR audio classifiers: the translated feature extractor against transformers' own, then end to end.

The audio is real speech (espeak-ng) committed as tiny files in three containers and rates
(22.05 kHz wav, 32 kHz stereo flac, 8 kHz ogg/vorbis), so decoding, mixing to mono and resampling
to the extractor's rate all run. Both sides get the same decoded 16 kHz waveform; the comparison
is the feature extraction (zero-mean/unit-variance, or Whisper's log-mel) and the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.hf_media import AUDIO_FAMILIES, AUDIO_FILES, LABELS, audio_dir

transformers = pytest.importorskip("transformers")

# Measured on these files: Wav2Vec2/HuBERT/WavLM normalisation 0.0 (the same numpy float32 maths);
# Whisper log-mel at most 2.4e-5 (numpy float64 FFT vs transformers' torch.stft in float32), on values up to 1.3;
# AST's Kaldi-style fbank 0.0 (transformers' numpy path, without torchaudio), limit 1e-6.
TOL = {"wav2vec2": 0.0, "hubert": 0.0, "wavlm": 0.0, "whisper": 5e-5, "ast": 1e-6}


@pytest.mark.parametrize("family", AUDIO_FAMILIES)
def test_features_match_the_feature_extractor_on_real_speech(tmp_path, family):
    from torch2ort.runtime.processors import Context, run_preprocess
    from torch2ort.runtime.processors.audio import load_audio
    from torch2ort.sources.hf_media import audio_preprocess

    path = audio_dir(tmp_path / family, family)
    assets: dict = {}
    name, steps, notes, dims, sweep = audio_preprocess(path, assets)
    for rel, array in assets.items():
        np.save(tmp_path / rel, array)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(str(path))
    for clip in AUDIO_FILES:
        ours = run_preprocess(steps, str(clip), Context(bundle_dir=tmp_path))[name]
        wave = load_audio(str(clip), None, sample_rate=extractor.sampling_rate)
        ref = extractor(wave, sampling_rate=extractor.sampling_rate, return_tensors="np")[name]
        assert ours.shape == ref.shape, clip.name
        assert np.abs(ours - ref).max() <= TOL[family], (family, clip.name)


def test_whisper_filter_bank_is_shipped_as_a_checksummed_file(tmp_path):
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.sources.hf import detect_task

    path = audio_dir(tmp_path / "whisper", "whisper")
    assert detect_task(path) == "audio-classification"
    loaded = load_model(ModelRequest(f"hf:{path}"))
    assert loaded.hints.spec.to_cli() == ["input_features:batch=2,80,100:float32"]
    assert loaded.hints.assets["mel_filters.npy"].shape == (201, 80)
    assert [s["op"] for s in loaded.hints.preprocess] == ["load_audio", "log_mel", "add_batch", "to_input"]


def _migrate_and_predict(tmp_path, capsys, family):
    import torch

    from torch2ort.runtime import Bundle
    from torch2ort.sources.hf_media import reference_feed

    path = audio_dir(tmp_path / family, family)
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    check = ev["check"]["outputs"]["logits"]
    assert ev["model"]["task"] == "audio-classification" and ev["check"]["input"].startswith("the raw file")
    assert check["passed"] and check["gate"] == "maxabs<=0.0001" and not ev["check"]["torch_imported"]
    assert {"soundfile>=0.12", "soxr>=0.3"} <= set((out / "bundle" / "requirements.txt").read_text().split())
    bundle = Bundle.load(out / "bundle")
    model = transformers.AutoModelForAudioClassification.from_pretrained(str(path)).eval()
    loaded_hints = _hints(path)
    for clip in AUDIO_FILES:
        got = bundle.predict(str(clip))
        with torch.inference_mode():
            feed = reference_feed(loaded_hints, str(clip))
            ref = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        assert np.abs(got.raw["logits"] - ref).max() <= 1e-4, clip.name
        assert got["topk"][0][0]["label"] == LABELS[int(ref.argmax())], clip.name
    name = ev["bundle"]["inputs"][0]["name"]
    capsys.readouterr()
    assert run_cli("predict", out / "bundle", "--input", f"{name}=@{AUDIO_FILES[2]}") == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["topk"][0][0]["label"] in LABELS.values()


def _hints(path):
    from torch2ort.sources import ModelRequest, load_model

    return load_model(ModelRequest(f"hf:{path}")).hints


@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
def test_migrates_and_predicts_from_audio_files(tmp_path, capsys, family):
    _migrate_and_predict(tmp_path, capsys, family)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["hubert", "wavlm", "ast"])
def test_other_audio_families_migrate(tmp_path, capsys, family):
    _migrate_and_predict(tmp_path, capsys, family)


def test_unsupported_feature_extractor_is_a_one_line_error(tmp_path, capsys):
    path = audio_dir(tmp_path / "wav2vec2", "wav2vec2")
    transformers.SeamlessM4TFeatureExtractor(feature_size=8, num_mel_bins=8).save_pretrained(path)
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "not translated yet" in err and "Traceback" not in err
