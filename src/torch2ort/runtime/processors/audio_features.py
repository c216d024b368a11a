"""Audio features after ``load_audio``, in numpy: what transformers' feature extractors compute.

``zero_mean_unit_var`` is Wav2Vec2/HuBERT/WavLM's normalisation. ``log_mel`` is Whisper's log-mel
spectrogram: STFT framing with numpy striding (centred, reflect-padded,
periodic Hann window), power spectrum, the mel filter bank shipped in the bundle as a checksummed
``.npy`` (computed at pack time by transformers' own feature extractor, so no mel maths is written
here), then Whisper's log10 / clamp / rescale.
"""

from __future__ import annotations

import numpy as np

from torch2ort.errors import BundleError, PredictInputError


def zero_mean_unit_var(wave, ctx, eps: float = 1e-7):
    """``(x - mean) / sqrt(var + eps)`` over the whole clip, as Wav2Vec2FeatureExtractor(do_normalize=True)."""
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise PredictInputError(f"zero_mean_unit_var needs a mono waveform [samples]; got shape {x.shape}")
    return (x - x.mean()) / np.sqrt(x.var() + np.float32(eps))


def _filters(ctx, path: str) -> np.ndarray:
    key = f"mel:{path}"
    if key not in ctx.cache:
        from torch2ort.runtime.manifest import inside

        try:
            ctx.cache[key] = np.load(inside(ctx.bundle_dir, path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"log_mel: the mel filter bank {path!r} is unreadable: {exc}") from None
    return ctx.cache[key]


def log_mel(wave, ctx, filters: str, n_fft: int = 400, hop_length: int = 160, n_samples: int | None = None):
    """Whisper's log-mel ``[n_mels, frames]`` of a mono waveform padded (zeros) or cut to ``n_samples``."""
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise PredictInputError(f"log_mel needs a mono waveform [samples]; got shape {x.shape}")
    if n_samples is not None:
        x = np.pad(x, (0, max(0, n_samples - x.size)))[:n_samples]
    mel = _filters(ctx, filters)  # [n_fft // 2 + 1, n_mels]
    x = x.astype(np.float64)
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2  # [frames, n_fft // 2 + 1]
    spec = (mel.T @ power.T)[:, :-1]  # Whisper drops the last frame
    logs = np.log10(np.clip(spec, 1e-10, None))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


PRE = {"zero_mean_unit_var": zero_mean_unit_var, "log_mel": log_mel}
