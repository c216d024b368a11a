"""Real image and audio files for models that take them, when the user gives none.

Photographs cannot be downloaded here, so ``make_images`` paints natural-looking scenes
procedurally (sky gradient, sun, hills, textured ground, sensor noise, JPEG-compressed) in the
sizes and modes real inputs come in: landscape, portrait, small, greyscale (L) and RGBA.
``make_audio`` writes a voiced, speech-like signal (a gliding harmonic source with formant-like
envelopes, pauses and noise) at 44.1 kHz stereo, 8 kHz and 16 kHz, so decoding, mixing to mono and
resampling are exercised. Each file goes through the bundle's own preprocess steps into a
verification sample (``.npz``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# (name, width, height, PIL mode, format)
IMAGES = [("landscape", 320, 213, "RGB", "JPEG"), ("portrait", 180, 260, "RGB", "JPEG"),
          ("small-square", 64, 64, "RGB", "PNG"), ("grey", 150, 97, "L", "PNG"), ("rgba", 123, 200, "RGBA", "PNG")]
# (name, sample rate, channels, seconds)
CLIPS = [("speech-44k-stereo", 44100, 2, 1.3), ("speech-8k", 8000, 1, 0.9), ("speech-16k", 16000, 1, 2.1)]


def scene(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 outdoor-looking picture: smooth regions, edges and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    img = np.empty((height, width, 3), np.float32)
    img[...] = np.stack([90 + 80 * v, 140 + 70 * v, 235 - 40 * v], -1)  # sky
    sun = (u - 0.75) ** 2 + (v - 0.2) ** 2 < 0.01
    img[sun] = [255, 236, 170]
    horizon = 0.55 + 0.08 * np.sin(u * 7 + seed) + 0.04 * np.sin(u * 23)
    ground = v > horizon
    texture = rng.normal(0, 18, (height, width)).astype(np.float32)
    img[ground] = np.stack([60 + 50 * v, 120 + 40 * v, 40 + 10 * v], -1)[ground] + texture[ground, None]
    trunk = (np.abs(u - 0.3) < 0.02) & (v > horizon - 0.15) & ground.__invert__()
    img[trunk] = [90, 60, 30]
    crown = (u - 0.3) ** 2 / 0.01 + (v - horizon + 0.2) ** 2 / 0.006 < 1
    img[crown] = [30, 100, 35] + rng.normal(0, 12, (int(crown.sum()), 1))
    img += rng.normal(0, 3, img.shape)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def make_images(folder: Path) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, w, h, mode, fmt) in enumerate(IMAGES):
        img = Image.fromarray(scene(w, h, seed=i))
        if mode == "RGBA":
            alpha = np.linspace(60, 255, w * h).reshape(h, w).astype(np.uint8)
            img = Image.merge("RGBA", (*img.split(), Image.fromarray(alpha)))
        elif mode != "RGB":
            img = img.convert(mode)
        path = folder / f"{name}.{'jpg' if fmt == 'JPEG' else 'png'}"
        img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        paths.append(path)
    return paths


def speech_like(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """A mono float32 voiced signal in [-1, 1]: syllables of a gliding harmonic tone, with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 1.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12) if k * 300 < rate / 2)
    syllables = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
    wave = 0.3 * voice * syllables + 0.01 * rng.normal(size=t.size)
    return (wave / np.max(np.abs(wave)) * 0.8).astype(np.float32)


def make_audio(folder: Path) -> list[Path]:
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, rate, channels, seconds) in enumerate(CLIPS):
        wave = speech_like(rate, seconds, seed=i)
        data = np.stack([wave, 0.6 * np.roll(wave, 37)], 1) if channels == 2 else wave
        path = folder / f"{name}.wav"
        soundfile.write(path, data, rate, subtype="PCM_16")
        paths.append(path)
    return paths


def make_long_speech(folder: Path, window_s: float) -> Path:
    """A 16 kHz mono speech-like .wav of 2.2 windows: three chunks at the default stride (a sixth of the window
    each side), so a speech model's check covers chunked transcription and both kinds of merge."""
    import soundfile

    path = folder / "speech-long-16k.wav"
    soundfile.write(path, speech_like(16000, round(2.2 * window_s, 3), seed=len(CLIPS)), 16000, subtype="PCM_16")
    return path


def media_samples(steps: list[dict], media: str, folder: Path, assets: dict[str, np.ndarray] | None = None,
                  options: dict | None = None, tokenizer: str | None = None) -> tuple[list[str], str]:
    """(the raw files, a folder of .npz samples made from them by the runtime's preprocess ``steps``,
    which read the bundle files ``assets`` from ``folder/assets``; ``options``: call options the steps
    take, such as a zero-shot bundle's candidate labels, tokenised with ``tokenizer``)."""
    from torch2ort.runtime.processors import Context, run_preprocess

    raw = make_images(folder / "raw") if media == "image" else make_audio(folder / "raw")
    (folder / "assets").mkdir(exist_ok=True)
    for name, array in (assets or {}).items():
        np.save(folder / "assets" / name, array)
    if tokenizer:
        import shutil

        shutil.copyfile(tokenizer, folder / "assets" / "tokenizer.json")
    ctx = Context(bundle_dir=folder / "assets")
    for path in raw:
        feed = run_preprocess(steps, str(path), ctx, options)
        np.savez(folder / f"{path.stem}.npz", **feed)
    return [str(p) for p in raw], str(folder)
