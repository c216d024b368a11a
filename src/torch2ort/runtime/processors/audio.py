"""Audio preprocessing without torch: decode (soundfile), mono, resample (soxr), peak-normalise, high-pass, segment.

``load_audio`` takes a path, bytes or a float array and returns a float32 waveform ``[samples]`` at
``sample_rate``. Decoding is libsndfile's (wav, flac, ogg/vorbis, mp3 where the build has it),
resampling is soxr's (VHQ), filtering is scipy.signal's, so no DSP that those libraries do is
written here. ``segments`` cuts the waveform into a multiple-instance bag: ``{name: [segments,
samples], mask: [segments]}``; ``add_batch`` (or several files given at once) adds the batch axis.
"""

from __future__ import annotations

import io
import re
import typing
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from torch2ort.errors import PredictInputError, one_line
from torch2ort.runtime.processors.bounds import MAX_CHANNELS, MAX_VALUES, check_values
from torch2ort.runtime.typecheck import Name, Range, Rate

MAX_SECONDS = 3600.0  # a longer recording is refused, not decoded into memory
MAX_RATE = typing.get_args(Rate)[1].hi  # a file's own rate, held to what a step may ask for
_BUFFER_REPR = re.compile(r"<_io\.\w+[^>]*>")  # libsndfile's name for what it read: a buffer's address, a repr


def _libs():
    try:
        import soundfile
        import soxr
    except ImportError:  # pragma: no cover - depends on the install
        raise PredictInputError("audio preprocessing needs soundfile and soxr: pip install soundfile soxr") from None
    return soundfile, soxr


def _wav_shortfall(source, what: str) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk runs past the end of the file.

    libsndfile shortens such a chunk to what is there without an error, so a WAV cut short in
    transfer, or one whose header overstates its length, decoded as a few samples (often silence)
    and scored like a recording (issue 27).
    """
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    head = source.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    for _ in range(4096):  # a hostile file of empty chunks is not walked for ever; libsndfile reads it then
        source.seek(pos)
        tag = source.read(8)
        if len(tag) < 8:
            return
        length = int.from_bytes(tag[4:], "little")
        if tag[:4] == b"data":
            held = size - pos - 8
            if length > held:
                raise PredictInputError(f"{what} is cut short: its header declares {length:,} bytes of audio, the "
                                        f"file holds {held:,} (a truncated or mis-written WAV)")
            return
        pos += 8 + length + (length & 1)


def decode(value, max_seconds: float = MAX_SECONDS, max_values: int = MAX_VALUES, target: int | None = None,
           mono: bool = False) -> tuple[np.ndarray, int]:
    """(float32 [frames, channels] sample rate) from a path or encoded bytes; one-line errors for bad audio.

    The header's frames x channels (x target / rate, the size after resampling) are checked
    against ``max_values`` before anything is decoded. ``mono`` mixes block by block, so only
    ``[frames, 1]`` is ever held. A file that yields fewer frames than its header declares is refused.
    """
    soundfile, _ = _libs()
    if isinstance(value, (str, Path)):
        path, what = Path(value), str(value)
        if not path.is_file():
            raise PredictInputError(f"audio file not found: {path}")
    elif isinstance(value, (bytes, bytearray)):
        path, what = None, "the bytes given"
    else:
        raise PredictInputError(f"load_audio takes a file path, bytes or an array, not {type(value).__name__}")
    try:
        with (path.open("rb") if path else io.BytesIO(bytes(value))) as source:
            _wav_shortfall(source, what)
            source.seek(0)
            with soundfile.SoundFile(source) as f:
                rate, frames, channels = f.samplerate, f.frames, f.channels
                if not 1 <= rate <= MAX_RATE:
                    raise PredictInputError(f"{what} declares a sample rate of {rate} Hz; the limit is {MAX_RATE:,}")
                if not 1 <= channels <= MAX_CHANNELS:
                    raise PredictInputError(f"{what} declares {channels} channels; the limit is {MAX_CHANNELS}")
                if frames > max_seconds * rate:
                    raise PredictInputError(f"{what} is {frames / rate:.0f} s long; the limit is {max_seconds:g} s")
                check_values(frames * (1 if mono else channels), what, max_values, rate, target)
                data = _read_mono(f, frames) if mono else f.read(frames, dtype="float32", always_2d=True)
    except PredictInputError:
        raise
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError for bad input
        why = _BUFFER_REPR.sub("the data", str(exc))
        raise PredictInputError(f"{what} is not readable audio (wav, flac, ogg): {one_line(why, 200)}") from None
    if len(data) < frames:
        raise PredictInputError(f"{what} is cut short: its header declares {frames:,} frames, it holds {len(data):,}")
    if data.size == 0:
        raise PredictInputError(f"{what} holds no audio samples")
    return data, rate


def _read_mono(f, frames: int, block: int = 1 << 16) -> np.ndarray:
    """The mean of the channels, ``[frames read, 1]``, decoded ``block`` frames at a time."""
    out = np.empty((frames, 1), dtype=np.float32)
    done = 0
    while done < frames:
        part = f.read(min(block, frames - done), dtype="float32", always_2d=True)
        if not len(part):
            break
        out[done:done + len(part), 0] = part.mean(axis=1, dtype=np.float32)
        done += len(part)
    return out[:done]


def to_mono(data: np.ndarray) -> np.ndarray:
    if data.ndim == 2 and data.shape[1] == 1:
        return data[:, 0]
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


def load_audio(value, ctx, sample_rate: Rate = 16000, mono: bool = True, normalize: Literal[None, "peak"] = None,
               input_rate: Rate | None = None, max_seconds: Annotated[float, Range(above=0, hi=86400)] = MAX_SECONDS,
               max_values: Annotated[int, Range(1, MAX_VALUES)] = MAX_VALUES) -> np.ndarray:
    """A path, bytes or float array -> float32 ``[samples]`` (mono) or ``[channels, samples]`` at ``sample_rate``.

    ``normalize``: None, or ``"peak"`` (divide by max |x|). An array needs ``input_rate`` unless it is
    already at ``sample_rate``. ``max_values``: samples kept (x channels unless ``mono``), decoded and
    after resampling; checked from the file's header before decoding.
    """
    if normalize not in (None, "peak"):
        raise PredictInputError(f"load_audio normalize={normalize!r}: choose peak or leave it out")
    if isinstance(value, np.ndarray):
        if value.ndim not in (1, 2) or not np.issubdtype(value.dtype, np.floating) or value.size == 0:
            raise PredictInputError("an audio array must be non-empty float [samples] or [samples, channels]")
        data, rate = (value[:, None] if value.ndim == 1 else value).astype(np.float32), input_rate or sample_rate
        if data.shape[0] > max_seconds * rate:
            seconds = data.shape[0] / rate
            raise PredictInputError(f"the audio array is {seconds:.1f} s long; the limit is {max_seconds:g} s")
        check_values(data.shape[0] * (1 if mono else data.shape[1]), "the audio array", max_values, rate, sample_rate)
    else:
        data, rate = decode(value, max_seconds, max_values, sample_rate, mono)
    if not np.isfinite(data).all():
        raise PredictInputError("the audio holds NaN or infinite samples")
    if mono:
        wave = resample(to_mono(data), rate, sample_rate)
    else:
        wave = np.stack([resample(np.ascontiguousarray(c), rate, sample_rate) for c in data.T])
    ctx_meta(ctx)["sample_rate"] = sample_rate
    return peak_normalize(wave) if normalize == "peak" else wave


def ctx_meta(ctx) -> dict:
    """Per-call facts an earlier step leaves for a later one (the sample rate); a scratch dict without a context."""
    return ctx.meta if ctx is not None else {}


def _rate(ctx, sample_rate: int | None, step: str) -> int:
    rate = sample_rate or ctx_meta(ctx).get("sample_rate")
    if not rate:
        raise PredictInputError(f"{step} needs the sample rate: put load_audio/load_signal first or give sample_rate")
    return int(rate)


def highpass(wave, ctx, cutoff: Annotated[float, Range(above=0)], order: Annotated[int, Range(1, 16)] = 2,
             zero_phase: bool = False, sample_rate: Rate | None = None) -> np.ndarray:
    """Butterworth high-pass (scipy.signal, second-order sections) along the last axis; causal unless ``zero_phase``."""
    from scipy import signal

    rate = _rate(ctx, sample_rate, "highpass")
    if not 0 < cutoff < rate / 2:
        raise PredictInputError(f"highpass cutoff {cutoff:g} Hz must lie between 0 and {rate / 2:g} Hz (Nyquist)")
    sos = signal.butter(order, cutoff, btype="highpass", fs=rate, output="sos")
    wave = np.asarray(wave, dtype=np.float64)
    out = signal.sosfiltfilt(sos, wave, axis=-1) if zero_phase else signal.sosfilt(sos, wave, axis=-1)
    return out.astype(np.float32)


Seconds = Annotated[float, Range(above=0, hi=3600)]


def segments(wave, ctx, seconds: Seconds, hop_seconds: Seconds | None = None,
             max_segments: Annotated[int, Range(1, 100_000)] | None = None, pad: bool = True, fill: bool = False,
             name: Name = "segments", mask: Name = "mask", sample_rate: Rate | None = None) -> dict[str, np.ndarray]:
    """``[samples]`` -> ``{name: float32 [segments, seconds*rate], mask: bool [segments]}``.

    Windows start every ``hop_seconds`` (default: ``seconds``, no overlap). ``pad``: a last partial
    window (or a clip shorter than one window) is zero-padded and kept; otherwise dropped (a clip
    shorter than one window is then an error). ``max_segments`` keeps the first ones; ``fill`` pads
    the bag up to ``max_segments`` with zero segments whose mask is False (for a static segment axis).
    """
    rate = _rate(ctx, sample_rate, "segments")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise PredictInputError(f"segments takes a mono waveform [samples]; got shape {list(wave.shape)}")
    size, hop = int(round(seconds * rate)), int(round((hop_seconds or seconds) * rate))
    if size < 1 or hop < 1:
        raise PredictInputError(f"segments of {seconds:g} s, hop {hop_seconds or seconds:g} s at {rate} Hz are empty")
    n = wave.size
    if n < size:
        if not pad:
            raise PredictInputError(f"the audio is {n / rate:.2f} s long, shorter than one {seconds:g} s segment")
        starts = [0]
    else:
        starts = list(range(0, n - size + 1, hop))
        if pad and starts[-1] + size < n:
            starts.append(starts[-1] + hop)
    if max_segments:
        starts = starts[:max_segments]
    out = np.zeros((len(starts), size), dtype=np.float32)
    for i, s in enumerate(starts):
        piece = wave[s:s + size]
        out[i, :piece.size] = piece
    keep = np.ones(len(starts), dtype=bool)
    if fill and max_segments and len(starts) < max_segments:
        out = np.concatenate([out, np.zeros((max_segments - len(starts), size), dtype=np.float32)])
        keep = np.concatenate([keep, np.zeros(max_segments - len(starts), dtype=bool)])
    return {name: out, mask: keep}


PRE = {"load_audio": load_audio, "highpass": highpass, "segments": segments}
