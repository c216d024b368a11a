"""A Wav2Lip-style two-input lip-sync generator at 320x320 (seed 003: a 46 MB model, about 11.5 M params).

Face encoder: the masked lower-half frame and the reference frame stacked on channels [B, 6, 320, 320],
down through stride-2 stages 320→160→80→40→20→10→5 (each a Conv-BN-ReLU and a residual block),
then a 5x5 valid conv to a 1x1 bottleneck. Audio encoder: a mel window [B, 1, 80, 16] through
strided Conv-BN-ReLU blocks (each with a residual block) to a 1x1 embedding. The two are
concatenated, and the decoder goes back up 1→5→10→…→320 with a transposed conv per stage,
concatenating the face encoder's feature map of the same size (skip connections), and ends
in a 1x1 conv and a sigmoid: an RGB frame [B, 3, 320, 320] in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

FACE_WIDTHS = (16, 32, 64, 128, 160, 224, 224)   # at 320, 160, 80, 40, 20, 10, 5
BOTTLENECK = 192
AUDIO_WIDTHS = (32, 64, 128, 192)


class ConvBlock(nn.Module):
    """Conv-BN-ReLU, with an identity shortcut when ``residual`` (same shape in and out)."""

    def __init__(self, cin: int, cout: int, k=3, stride=1, padding=1, residual: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.relu(y + x if self.residual else y)


class UpBlock(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 4, stride: int = 2, padding: int = 1) -> None:
        super().__init__()
        self.up = nn.Sequential(nn.ConvTranspose2d(cin, cout, k, stride, padding, bias=False), nn.BatchNorm2d(cout),
                                nn.ReLU())
        self.res = ConvBlock(cout, cout, residual=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.up(x))


class LipSyncNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        w = FACE_WIDTHS
        enc = [nn.Sequential(ConvBlock(6, w[0], 7, 1, 3))]
        for cin, cout in zip(w, w[1:]):
            enc.append(nn.Sequential(ConvBlock(cin, cout, 3, 2, 1), ConvBlock(cout, cout, residual=True)))
        enc.append(nn.Sequential(ConvBlock(w[-1], BOTTLENECK, 5, 1, 0)))    # 5x5 → 1x1
        self.face_encoder = nn.ModuleList(enc)
        a = AUDIO_WIDTHS
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, a[0], 3, (2, 1), 1), ConvBlock(a[0], a[0], residual=True),    # 40x16
            ConvBlock(a[0], a[1], 3, 2, 1), ConvBlock(a[1], a[1], residual=True),      # 20x8
            ConvBlock(a[1], a[2], 3, 2, 1), ConvBlock(a[2], a[2], residual=True),      # 10x4
            ConvBlock(a[2], a[3], 3, 2, 1), ConvBlock(a[3], a[3], residual=True),      # 5x2
            ConvBlock(a[3], BOTTLENECK, (5, 2), 1, 0),                                 # 1x1
        )
        dec = [UpBlock(2 * BOTTLENECK, w[-1], 5, 1, 0)]                  # 1 → 5
        skips = list(reversed(w))                                         # 5, 10, …, 320 feature maps
        for i in range(len(w) - 1):
            dec.append(UpBlock(2 * skips[i], skips[i + 1]))
        self.decoder = nn.ModuleList(dec)
        self.output = nn.Sequential(nn.Conv2d(2 * w[0], w[0], 3, 1, 1), nn.ReLU(), nn.Conv2d(w[0], 3, 1))

    def forward(self, face: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        feats = []
        x = face
        for stage in self.face_encoder:
            x = stage(x)
            feats.append(x)
        x = torch.cat([x, self.audio_encoder(mel)], dim=1)
        for stage, skip in zip(self.decoder, reversed(feats[:-1])):
            x = torch.cat([stage(x), skip], dim=1)
        return torch.sigmoid(self.output(x))
