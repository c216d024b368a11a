"""Whisper's side of hf:DIR without an export: the log-mel step against WhisperFeatureExtractor, and what the
generation config must say (tests/pipeline/test_migrate_speech.py runs the whole migration)."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import SourceError


@pytest.mark.parametrize("mels", [80, 128])
def test_log_mel_equals_whisper_feature_extractor(tmp_path, mels):
    """The runtime's numpy log-mel (shipped filter bank) against transformers' numpy path, on speech-like clips of
    several lengths (short, one window exactly, longer than a window: cut to 30 s) and on silence."""
    from transformers import WhisperFeatureExtractor

    from torch2ort.inputs.media import speech_like
    from torch2ort.runtime.processors import Context
    from torch2ort.runtime.processors.audio_features import log_mel

    fe = WhisperFeatureExtractor(feature_size=mels)
    np.save(tmp_path / "mel.npy", np.asarray(fe.mel_filters, np.float64))
    ctx = Context(bundle_dir=tmp_path)
    rng = np.random.default_rng(mels)
    clips = [speech_like(16000, s, seed=i) for i, s in enumerate((0.5, 3.7, 30.0, 31.2))]
    clips += [np.zeros(8000, np.float32), (0.1 * rng.standard_normal(48000)).astype(np.float32)]
    for wave in clips:
        x = np.pad(wave, (0, max(0, fe.n_samples - wave.size)))[:fe.n_samples]
        got = log_mel(wave, ctx, filters="mel.npy", n_fft=fe.n_fft, hop_length=fe.hop_length, n_samples=fe.n_samples)
        assert got.shape == (mels, 3000) and got.dtype == np.float32
        # bit for bit the extractor's numpy path (what it runs without torch) ...
        assert np.array_equal(got, fe._np_extract_fbank_features(x[None], "cpu")[0])
        # ... and, with torch installed, its torch STFT path differs from its own numpy path by float32 rounding
        # (measured up to 2.3e-5 at 128 mels); the runtime is held to the same bound
        torch_path = fe(wave, sampling_rate=16000, return_tensors="np").input_features[0]
        assert float(np.abs(got - torch_path).max()) <= 5e-5


def test_speech_info_refuses_language_detection_and_beam_search(tmp_path):
    import transformers
    from tests.fixtures.speech import SOT, whisper_dir

    from torch2ort.sources.hf_speech import speech_info

    model = transformers.WhisperForConditionalGeneration.from_pretrained(str(whisper_dir(tmp_path / "w")))
    info = speech_info(tmp_path, model, 2, 4, 16, 1500)
    assert info["prefix"][0] == SOT and info["max_new_tokens"] == 60 and info["num_beams_set"]
    open_language = model.generation_config
    open_language.language = None
    with pytest.raises(SourceError, match="language detection"):
        speech_info(tmp_path, model, 2, 4, 16, 1500)
    open_language.language, open_language.num_beams = "<|en|>", 5
    with pytest.raises(SourceError, match="num_beams 5"):
        speech_info(tmp_path, model, 2, 4, 16, 1500)
