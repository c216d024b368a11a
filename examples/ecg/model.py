"""Seed 000's ECG classifier in plain torch: a 1-D ResNet34 over 12 leads, 9 logits (multi-label, sigmoid outside).

``ResNet34_1d()(ecg [B, 12, 5000]) -> logits [B, 9]`` for the CPSC 2018 classes in ``labels.txt``.
Random weights here (no checkpoint); pass ``--checkpoint`` to torch2ort for real ones.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 7, stride, 3, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 7, 1, 3, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)


class ResNet34_1d(nn.Module):
    def __init__(self, input_channels: int = 12, num_classes: int = 9, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(input_channels, width, 15, 2, 7, bias=False), nn.BatchNorm1d(width),
                                  nn.ReLU(inplace=True), nn.MaxPool1d(3, 2, 1))
        layers, cin = [], width
        for i, (blocks, w) in enumerate(zip((3, 4, 6, 3), (width, 2 * width, 4 * width, 8 * width))):
            for j in range(blocks):
                layers.append(Block(cin, w, 2 if (i > 0 and j == 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layers(self.stem(ecg)).mean(dim=-1))
