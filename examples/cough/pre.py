"""The cough model's audio front-end in plain torch (torch.stft, no torchaudio): waveform segments -> spectrograms.

``[batch, segments, samples]`` -> ``[batch, segments, 3, 224, 224]``: STFT power -> mel (HTK scale,
torchaudio's filterbank formula) -> dB (top_db 80) -> [-1, 1] per segment -> letterbox to 224 ->
3 channels -> ImageNet normalisation, as in seed 001's ``waveform_to_mel_3ch``. torch2ort fuses it
with the model (``--preprocess-module pre.py:MelFrontEnd``), so the bundle needs none of it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """``[n_freqs, n_mels]`` triangular filters on the HTK mel scale (torchaudio.functional.melscale_fbanks)."""
    freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    m_min, m_max = (2595.0 * math.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    f_pts = 700.0 * (10 ** (torch.linspace(m_min, m_max, n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0).float()


class MelFrontEnd(nn.Module):
    def __init__(self, sample_rate: int = 16000, seconds: float = 2.0, n_fft: int = 1024, hop: int = 160,
                 n_mels: int = 160, size: int = 224, top_db: float = 80.0) -> None:
        super().__init__()
        self.n_fft, self.hop, self.size, self.top_db = n_fft, hop, size, top_db
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("fb", mel_filterbank(n_fft // 2 + 1, 0.0, sample_rate / 2, n_mels, sample_rate),
                             persistent=False)
        frames = int(round(seconds * sample_rate)) // hop + 1
        scale = size / max(n_mels, frames)
        self.hw = (max(1, round(n_mels * scale)), max(1, round(frames * scale)))
        dh, dw = size - self.hw[0], size - self.hw[1]
        self.pad = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, segments: torch.Tensor) -> torch.Tensor:
        b, s, n = segments.shape
        spec = torch.stft(segments.reshape(b * s, n), self.n_fft, hop_length=self.hop, window=self.window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = torch.view_as_real(spec).pow(2).sum(-1)                      # [b*s, freqs, frames]
        mel = torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)  # [b*s, mels, frames]
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        lo, hi = db.amin(dim=(1, 2), keepdim=True), db.amax(dim=(1, 2), keepdim=True)
        x = 2.0 * (db - lo) / torch.clamp(hi - lo, min=1e-6) - 1.0          # silence: all -1, not NaN
        x = F.interpolate(x.unsqueeze(1), size=self.hw, mode="bilinear", align_corners=False)
        x = F.pad(x, self.pad, value=-1.0).expand(-1, 3, -1, -1)           # letterbox, 3 channels
        x = ((x + 1.0) / 2.0 - self.mean) / self.std
        return x.reshape(b, s, 3, self.size, self.size)


def tiny() -> MelFrontEnd:
    """A small front-end (8 kHz, 0.5 s segments, 32x32) for quick checks and tests."""
    return MelFrontEnd(sample_rate=8000, seconds=0.5, n_fft=128, hop=64, n_mels=16, size=32)
