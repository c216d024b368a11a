"""Audio preprocessing without torch: decode (soundfile), mix to mono, resample (soxr), peak-normalise.

``load_audio`` takes a path, bytes or a float array and returns a float32 waveform ``[samples]`` at
``sample_rate``. Decoding is libsndfile's (wav, flac, ogg/vorbis, mp3 where the build has it),
resampling is soxr's (VHQ), so no DSP that those libraries do is written here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from torch2ort.errors import PredictInputError, one_line

MAX_SECONDS = 3600.0  # a longer recording is refused, not decoded into memory


def _libs():
    try:
        import soundfile
        import soxr
    except ImportError:  # pragma: no cover - depends on the install
        raise PredictInputError("audio preprocessing needs soundfile and soxr: pip install soundfile soxr") from None
    return soundfile, soxr


def decode(value, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """(float32 [frames, channels], sample rate) from a path or encoded bytes; one-line errors for bad audio."""
    soundfile, _ = _libs()
    if isinstance(value, (str, Path)):
        source, what = Path(value), str(value)
        if not source.is_file():
            raise PredictInputError(f"audio file not found: {source}")
    elif isinstance(value, (bytes, bytearray)):
        source, what = io.BytesIO(bytes(value)), "the bytes given"
    else:
        raise PredictInputError(f"load_audio takes a file path, bytes or an array, not {type(value).__name__}")
    try:
        with soundfile.SoundFile(source) as f:
            if f.frames > max_seconds * f.samplerate:
                raise PredictInputError(f"{what} is {f.frames / f.samplerate:.0f} s long; the limit is "
                                        f"{max_seconds:g} s")
            data = f.read(dtype="float32", always_2d=True)
            rate = f.samplerate
    except PredictInputError:
        raise
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError for bad input
        raise PredictInputError(f"{what} is not readable audio (wav, flac, ogg): {one_line(str(exc), 200)}") from None
    if data.size == 0:
        raise PredictInputError(f"{what} holds no audio samples")
    return data, rate


def to_mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else data.astype(np.float32)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return wave
    _, soxr = _libs()
    return soxr.resample(wave, rate, target, quality="VHQ").astype(np.float32)


def peak_normalize(wave: np.ndarray) -> np.ndarray:
    """Scale to [-1, 1] by the peak; silence stays silence (no 0/0)."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    return wave / peak if peak > 0 else wave


def load_audio(value, ctx, sample_rate: int = 16000, mono: bool = True, normalize: str | None = None,
               input_rate: int | None = None, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """A path, bytes or float array -> float32 ``[samples]`` (mono) or ``[channels, samples]`` at ``sample_rate``.

    ``normalize``: None, or ``"peak"`` (divide by max |x|). An array needs ``input_rate`` unless it is
    already at ``sample_rate``.
    """
    if normalize not in (None, "peak"):
        raise PredictInputError(f"load_audio normalize={normalize!r}: choose peak or leave it out")
    if isinstance(value, np.ndarray):
        if value.ndim not in (1, 2) or not np.issubdtype(value.dtype, np.floating) or value.size == 0:
            raise PredictInputError("an audio array must be non-empty float [samples] or [samples, channels]")
        data, rate = (value[:, None] if value.ndim == 1 else value).astype(np.float32), input_rate or sample_rate
    else:
        data, rate = decode(value, max_seconds)
    if not np.isfinite(data).all():
        raise PredictInputError("the audio holds NaN or infinite samples")
    if mono:
        wave = resample(to_mono(data), rate, sample_rate)
    else:
        wave = np.stack([resample(np.ascontiguousarray(c), rate, sample_rate) for c in data.T])
    return peak_normalize(wave) if normalize == "peak" else wave


PRE = {"load_audio": load_audio}
