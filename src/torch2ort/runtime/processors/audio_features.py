"""Audio features after ``load_audio``, in numpy: what transformers' feature extractors compute.

``zero_mean_unit_var`` is Wav2Vec2/HuBERT/WavLM's normalisation. ``log_mel`` is Whisper's log-mel
spectrogram: STFT framing with numpy striding (centred, reflect-padded,
periodic Hann window), power spectrum, the mel filter bank shipped in the bundle as a checksummed
``.npy`` (computed at pack time by transformers' own feature extractor, so no mel maths is written
here), then Whisper's log10 / clamp / rescale. ``kaldi_fbank`` is AST's Kaldi-style filter bank
(uncentred frames, DC removal, pre-emphasis, the shipped window and filter bank, natural log),
padded or cut to a fixed number of frames.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np

from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.typecheck import Match, Range

NpyFile = Annotated[str, Match(r"[A-Za-z0-9_.-]+\.npy", "must be a .npy file name at the top of the bundle (no '/')")]
Bins = Annotated[int, Range(2, 65536)]
Hop = Annotated[int, Range(1, 65536)]


def zero_mean_unit_var(wave, ctx, eps: Annotated[float, Range(above=0, hi=1)] = 1e-7):
    """``(x - mean) / sqrt(var + eps)`` over the whole clip, as Wav2Vec2FeatureExtractor(do_normalize=True)."""
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise PredictInputError(f"zero_mean_unit_var needs a mono waveform [samples]; got shape {x.shape}")
    return (x - x.mean()) / np.sqrt(x.var() + np.float32(eps))


def _filters(ctx, path: str) -> np.ndarray:
    """A bundle .npy (filter bank or window), read once per bundle."""
    key = f"mel:{path}"
    if key not in ctx.cache:
        from torch2ort.runtime.manifest import inside

        try:
            ctx.cache[key] = np.load(inside(ctx.bundle_dir, path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BundleError(f"the bundle's array {path!r} (mel filter bank or window) is unreadable: {exc}"
                              ) from None
    return ctx.cache[key]


def log_mel(wave, ctx, filters: NpyFile, n_fft: Bins = 400, hop_length: Hop = 160,
            n_samples: Annotated[int, Range(1, 100_000_000)] | None = None):
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
    # as transformers' spectrogram(): the FFT stored as complex64, the power in float64, the log cast to float32
    # before Whisper's clamp and rescale (which run in float32); with float64 throughout the result differed by 2e-5
    spectrum = np.fft.rfft(frames * window, axis=-1).astype(np.complex64)
    power = np.abs(spectrum, dtype=np.float64) ** 2  # [frames, n_fft // 2 + 1]
    spec = np.maximum(1e-10, mel.T @ power.T)
    logs = np.log10(spec).astype(np.float32)[:, :-1]  # Whisper drops the last frame
    logs = np.maximum(logs, logs.max() - np.float32(8.0))
    return (logs + np.float32(4.0)) / np.float32(4.0)


def kaldi_fbank(wave, ctx, filters: NpyFile, window: NpyFile, max_frames: Annotated[int, Range(1, 1_000_000)],
                frame_length: Bins = 400, hop_length: Hop = 160, fft_length: Bins = 512,
                preemphasis: Annotated[float, Range(0, 1)] = 0.97,
                mel_floor: Annotated[float, Range(above=0)] = 1.192092955078125e-07):
    """AST's log filter bank ``[max_frames, n_mels]`` (float32), zero-padded or cut to ``max_frames``."""
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1 or x.size < frame_length:
        raise PredictInputError(f"kaldi_fbank needs a mono waveform of at least {frame_length} samples; "
                                f"got shape {x.shape}")
    mel, win = _filters(ctx, filters), _filters(ctx, window)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), frame_length)[::hop_length].copy()
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= preemphasis * frames[:, :-1].copy()
    frames[:, 0] *= 1 - preemphasis
    spec = np.fft.rfft(frames * win, n=fft_length, axis=-1).astype(np.complex64)  # as transformers stores it
    power = np.abs(spec, dtype=np.float64) ** 2
    logs = np.log(np.maximum(mel_floor, mel.T @ power.T)).T.astype(np.float32)
    out = np.zeros((max_frames, logs.shape[1]), np.float32)
    out[:min(max_frames, len(logs))] = logs[:max_frames]
    return out


PRE = {"zero_mean_unit_var": zero_mean_unit_var, "log_mel": log_mel, "kaldi_fbank": kaldi_fbank}
