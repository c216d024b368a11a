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


def test_bad_audio_bytes_never_show_a_buffer_address():
    with pytest.raises(PredictInputError, match="not readable audio") as info:
        load_audio(b"not audio at all", None)
    assert "0x" not in str(info.value) and "BytesIO" not in str(info.value), info.value


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


def test_highpass_removes_low_frequencies():
    from torch2ort.runtime.processors import Context
    from torch2ort.runtime.processors.audio import highpass

    t = np.arange(16000) / 16000
    wave = (np.sin(2 * np.pi * 10 * t) + np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    ctx = Context(None, meta={"sample_rate": 16000})
    out = highpass(wave, ctx, cutoff=50, order=4)
    spectrum = np.abs(np.fft.rfft(out[4000:]))  # after the filter settles
    assert spectrum[1000 * 12000 // 16000] > 50 * spectrum[10 * 12000 // 16000]
    with pytest.raises(PredictInputError, match="sample rate"):
        highpass(wave, None, cutoff=50)
    with pytest.raises(PredictInputError, match="Nyquist"):
        highpass(wave, ctx, cutoff=9000)


def test_segments_overlap_pad_and_fill():
    from torch2ort.runtime.processors.audio import segments

    wave = np.arange(27, dtype=np.float32)
    out = segments(wave, None, seconds=1.0, hop_seconds=0.5, sample_rate=10)
    assert out["segments"].shape == (5, 10) and out["mask"].tolist() == [True] * 5
    assert out["segments"][1, 0] == 5 and out["segments"][4, 6] == 26 and not out["segments"][4, 7:].any()
    kept = segments(wave, None, seconds=1.0, hop_seconds=0.5, pad=False, sample_rate=10)
    assert kept["segments"].shape == (4, 10)
    full = segments(wave, None, seconds=1.0, max_segments=6, fill=True, sample_rate=10, name="x", mask="m")
    assert full["x"].shape == (6, 10) and full["m"].tolist() == [True, True, True, False, False, False]
    short = segments(wave[:3], None, seconds=1.0, sample_rate=10)
    assert short["segments"].shape == (1, 10)
    with pytest.raises(PredictInputError, match="shorter than one"):
        segments(wave[:3], None, seconds=1.0, pad=False, sample_rate=10)


def test_several_files_are_padded_and_masked(tmp_path):
    from torch2ort.runtime.processors import Context, run_preprocess

    paths = []
    for i, seconds in enumerate((1.0, 2.5)):
        paths.append(str(tmp_path / f"c{i}.wav"))
        sf.write(paths[-1], _tone(8000, seconds, 300.0, channels=1), 8000)
    steps = [{"op": "load_audio", "sample_rate": 8000, "normalize": "peak"}, {"op": "highpass", "cutoff": 50},
             {"op": "segments", "seconds": 1.0, "hop_seconds": 0.5}, {"op": "add_batch"}]
    feed = run_preprocess(steps, paths, Context(tmp_path))
    assert feed["segments"].shape == (2, 4, 8000) and feed["mask"].shape == (2, 4)
    assert feed["mask"].tolist() == [[True, False, False, False], [True, True, True, True]]
    single = run_preprocess(steps, paths[1], Context(tmp_path))
    np.testing.assert_array_equal(single["segments"][0], feed["segments"][1])
    with pytest.raises(PredictInputError, match="input 1: audio file not found"):
        run_preprocess(steps, [paths[0], str(tmp_path / "nope.wav")], Context(tmp_path))


def test_silent_file_through_the_whole_audio_pipeline_is_finite(tmp_path):
    from torch2ort.runtime.processors import Context, run_preprocess

    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((16000, 1), np.float32), 16000)
    steps = [{"op": "load_audio", "sample_rate": 16000, "normalize": "peak"}, {"op": "highpass", "cutoff": 50},
             {"op": "segments", "seconds": 0.5}, {"op": "add_batch"}]
    feed = run_preprocess(steps, str(path), Context(tmp_path))
    assert np.isfinite(feed["segments"]).all() and feed["segments"].shape == (1, 2, 8000)


def _wav_with_data_size(path, declared: int, keep: int) -> None:
    """A real 1 s 8 kHz WAV whose data chunk claims ``declared`` bytes, cut to ``keep`` bytes of data."""
    import struct

    sf.write(path, _tone(8000, 1.0, 100.0, channels=1), 8000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    struct.pack_into("<I", raw, at + 4, declared)
    path.write_bytes(bytes(raw[:at + 8 + keep]))


@pytest.mark.parametrize("declared, keep", [(16000, 2), (16000, 200), (10**6, 16000)],
                         ids=["one-silent-frame", "cut-in-transfer", "header-overstates"])
def test_a_wav_shorter_than_its_header_is_an_error_not_silence(tmp_path, declared, keep):
    """libsndfile shortens the data chunk to what is there: 1 sample of silence was scored (issue 27)."""
    path = tmp_path / "short.wav"
    _wav_with_data_size(path, declared, keep)
    for value in (str(path), path.read_bytes()):
        with pytest.raises(PredictInputError, match=f"cut short: its header declares {declared:,} bytes of audio, "
                                                    f"the file holds {keep:,}") as info:
            load_audio(value, None)
        assert "\n" not in str(info.value)


def test_mixing_to_mono_block_by_block_matches_the_whole_file(tmp_path):
    path = tmp_path / "three.flac"
    rng = np.random.default_rng(0)
    sf.write(path, rng.uniform(-0.9, 0.9, (200_003, 3)).astype(np.float32), 8000, format="FLAC")
    whole = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(load_audio(str(path), None, sample_rate=8000), whole)
    both = load_audio(str(path), None, sample_rate=8000, mono=False)
    np.testing.assert_array_equal(both, sf.read(path, dtype="float32", always_2d=True)[0].T)
