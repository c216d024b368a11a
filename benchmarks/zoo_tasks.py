"""Synthetic tasks with learnable structure for the zoo's trained replicas (benchmarks/train_zoo.py).

Each task draws a batch from a seeded numpy Generator and returns numpy arrays (inputs and targets), so
the same draws serve training (as torch tensors) and ``optimize --samples`` (as .npz feeds).

- ``ecg``: 12-lead ECG-like signals at 500 Hz. Beats are sums of Gaussian P, QRS and T waves on a
  rhythm; 9 labels follow rhythm and morphology: bradycardia, tachycardia, irregular rhythm (no P
  waves, jittered RR), wide QRS, ST elevation, inverted T, low voltage, long PR, premature beats.
- ``cough``: bags of 8 "mel images" (3 channels: log-mel, and its first and second time
  differences). Background is banded noise; a cough is a short broadband burst that decays over
  time. Segment label: the segment holds a burst; bag label: any unmasked segment does.
- ``lipsync``: a face (ellipse, eyes, a mouth whose opening follows the mel window's loudness) on
  a coloured background. Input: the frame with its lower half masked, stacked with a reference
  frame of the same face with another mouth opening; target: the whole frame.
"""

from __future__ import annotations

import numpy as np

FS = 500
ECG_LABELS = ("bradycardia", "tachycardia", "irregular", "wide_qrs", "st_elevation", "inverted_t",
              "low_voltage", "long_pr", "premature_beats")


def ecg(rng: np.random.Generator, n: int, length: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """``n`` signals [n, 12, length] (float32, mV-like) and labels [n, 9] (0/1 float32)."""
    t = np.arange(length) / FS
    x = np.zeros((n, 12, length), np.float32)
    y = np.zeros((n, 9), np.float32)
    for i in range(n):
        lab = rng.random(9) < 0.3
        if lab[0] and lab[1]:
            lab[rng.integers(0, 2)] = False
        y[i] = lab
        hr = rng.uniform(40, 55) if lab[0] else rng.uniform(110, 160) if lab[1] else rng.uniform(65, 95)
        rr = 60.0 / hr
        qrs_w = rng.uniform(0.030, 0.040) if lab[3] else rng.uniform(0.010, 0.016)
        pr = rng.uniform(0.26, 0.32) if lab[7] else rng.uniform(0.12, 0.17)
        t_sign = -1.0 if lab[5] else 1.0
        st = rng.uniform(0.25, 0.4) if lab[4] else 0.0
        gain = rng.uniform(0.25, 0.4) if lab[6] else rng.uniform(0.9, 1.4)
        lead_qrs = rng.uniform(0.6, 1.4, 12) * rng.choice([1, 1, 1, -1], 12)
        lead_pt = rng.uniform(0.5, 1.2, 12)
        beats, pos = [], rng.uniform(0, rr)
        while pos < t[-1] + rr:
            beats.append(pos)
            step = rr * (rng.uniform(0.6, 1.4) if lab[2] else rng.uniform(0.97, 1.03))
            pos += step
        beats = np.asarray(beats)
        premature = np.zeros(len(beats), bool)
        if lab[8] and len(beats) > 3:
            k = rng.choice(np.arange(1, len(beats) - 1), size=max(1, len(beats) // 4), replace=False)
            premature[k] = True
            beats[k] -= 0.35 * rr
        sig = np.zeros((12, length), np.float32)
        for b, early in zip(beats, premature):
            w = qrs_w * (2.5 if early else 1.0)
            qrs = np.exp(-0.5 * ((t - b) / w) ** 2) - 0.25 * np.exp(-0.5 * ((t - b - 2.2 * w) / w) ** 2)
            tw = t_sign * 0.3 * np.exp(-0.5 * ((t - b - 0.3) / 0.045) ** 2)
            seg = st * ((t > b + 2 * w) & (t < b + 0.25))
            p = 0.0 if (lab[2] or early) else 0.15 * np.exp(-0.5 * ((t - b + pr) / 0.025) ** 2)
            sig += (lead_qrs[:, None] * (qrs + seg) + lead_pt[:, None] * (tw + p)).astype(np.float32)
        wander = 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3))
        fib = 0.04 * np.sin(2 * np.pi * rng.uniform(5, 7) * t) if lab[2] else 0.0
        x[i] = gain * sig + wander + fib + rng.normal(0, 0.03, (12, length))
    return x, y


def cough(rng: np.random.Generator, n: int, segments: int = 8, size: int = 224,
          p_bag: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bags [n, S, 3, size, size] float32, mask [n, S] bool, bag labels [n], segment labels [n, S]."""
    x = np.zeros((n, segments, 3, size, size), np.float32)
    seg_y = np.zeros((n, segments), np.float32)
    mask = np.ones((n, segments), bool)
    f = np.linspace(0, 1, size)[:, None]   # mel bin (rows)
    tt = np.linspace(0, 1, size)[None, :]  # time (columns)
    for i in range(n):
        used = rng.integers(max(2, segments // 2), segments + 1)
        mask[i, used:] = False
        positive = rng.random() < p_bag
        coughs = rng.random(segments) < 0.35 if positive else np.zeros(segments, bool)
        if positive and not coughs[:used].any():
            coughs[rng.integers(0, used)] = True
        coughs[used:] = False
        seg_y[i] = coughs
        for s in range(segments):
            bands = sum(rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * (rng.uniform(2, 12) * f + rng.uniform(0, 1)))
                        for _ in range(3))
            img = -1.0 + 0.5 * (1 - f) + bands * 0.3 + rng.normal(0, 0.25, (size, size))
            if coughs[s]:
                for _ in range(rng.integers(1, 3)):
                    t0, dur = rng.uniform(0.1, 0.7), rng.uniform(0.06, 0.15)
                    on = (tt >= t0) & (tt < t0 + dur)
                    decay = np.exp(-(tt - t0) / (0.5 * dur)) * on
                    img += rng.uniform(1.5, 2.5) * decay * (0.4 + 0.6 * np.exp(-((f - 0.4) / 0.5) ** 2))
            d1 = np.diff(img, axis=1, prepend=img[:, :1])
            d2 = np.diff(d1, axis=1, prepend=d1[:, :1])
            x[i, s] = np.stack([img, d1, d2]).astype(np.float32)
    return x, mask, seg_y.max(1), seg_y


def lipsync(rng: np.random.Generator, n: int, size: int = 320) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """face [n, 6, size, size] in [0, 1], mel [n, 1, 80, 16], target frame [n, 3, size, size]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    face_in = np.zeros((n, 6, size, size), np.float32)
    mel = np.zeros((n, 1, 80, 16), np.float32)
    target = np.zeros((n, 3, size, size), np.float32)

    def frame(bg, skin, cx, cy, opening):
        img = np.broadcast_to(bg[:, None, None], (3, size, size)).copy()
        head = ((xx - cx) / 0.3) ** 2 + ((yy - cy) / 0.4) ** 2 < 1
        img[:, head] = skin[:, None]
        for ex in (-0.11, 0.11):
            eye = ((xx - cx - ex) / 0.05) ** 2 + ((yy - cy + 0.12) / 0.03) ** 2 < 1
            img[:, eye] = 0.1
        mouth = ((xx - cx) / 0.12) ** 2 + ((yy - cy - 0.2) / max(0.005, 0.07 * opening)) ** 2 < 1
        img[:, mouth] = np.array([0.45, 0.08, 0.1])[:, None]
        return img

    for i in range(n):
        bg, skin = rng.uniform(0.1, 0.9, 3), rng.uniform(0.4, 0.95, 3)
        cx, cy = rng.uniform(0.42, 0.58), rng.uniform(0.42, 0.52)
        opening, ref_opening = rng.uniform(0, 1), rng.uniform(0, 1)
        full = frame(bg, skin, cx, cy, opening)
        ref = frame(bg, skin, cx, cy, ref_opening)
        masked = full.copy()
        masked[:, size // 2:, :] = 0.0
        face_in[i] = np.concatenate([masked, ref])
        target[i] = full
        spectrum = -4 + 4 * opening * np.exp(-np.linspace(0, 3, 80))[:, None]
        mel[i, 0] = spectrum + rng.normal(0, 0.3, (80, 16))
    return face_in, mel, target
