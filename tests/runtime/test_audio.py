"""load_audio: real encoded files decoded, mixed to mono, resampled and peak-normalised without torch."""

from __future__ import annotations

import numpy as np
import pytest

from torch2ort.errors import PredictInputError
from torch2ort.runtime.processors.audio import load_audio

sf = pytest.importorskip("soundfile")


def _tone(rate: int, seconds: float, hz: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * hz * t)
    return np.stack([left, 0.25 * left][:channels], axis=1).astype(np.float32)


@pytest.mark.parametrize("fmt, subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_files_are_decoded_mixed_resampled(tmp_path, fmt, subtype):
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, _tone(44100, 1.0, 440.0), 44100, format=fmt, subtype=subtype)
    wave = load_audio(str(path), None, sample_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1 and abs(wave.size - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / wave.size - 440.0) < 2.0   # the tone survives resampling
    assert abs(float(np.max(np.abs(wave))) - 0.3125) < 0.02              # mono = mean of the 0.5 and 0.125 peaks
    assert float(np.max(np.abs(load_audio(path.read_bytes(), None, normalize="peak")))) == pytest.approx(1.0)


def test_silence_does_not_become_nan(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((8000, 1), np.float32), 8000)
    wave = load_audio(str(path), None, sample_rate=8000, normalize="peak")
    assert np.isfinite(wave).all() and not wave.any()


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "not readable audio"),
    (lambda p: p.write_text("not audio at all"), "not readable audio"),
    (lambda p: (sf.write(p, _tone(8000, 1.0, 100.0), 8000), p.write_bytes(p.read_bytes()[:30])), "not readable audio"),
])
def test_bad_audio_is_one_line(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(PredictInputError, match=message) as info:
        load_audio(str(path), None)
    assert "\n" not in str(info.value)


def test_limits_and_arrays(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.zeros((8000 * 3, 1), np.float32), 8000)
    with pytest.raises(PredictInputError, match="limit is 2 s"):
        load_audio(str(path), None, max_seconds=2)
    with pytest.raises(PredictInputError, match="not found"):
        load_audio(str(tmp_path / "missing.wav"), None)
    arr = _tone(8000, 0.5, 200.0)
    assert load_audio(arr, None, sample_rate=16000, input_rate=8000).shape == (8000,)
    with pytest.raises(PredictInputError, match="NaN"):
        load_audio(np.full(10, np.nan, np.float32), None)
