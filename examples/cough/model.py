"""Seed 001's cough model in plain torch: a ResNet18 backbone (no torchvision) under attention MIL, 4 outputs.

``AttnMILResNet(spectrograms [B, S, 3, 224, 224], segment_mask [B, S] bool)`` returns
``(bag_probability [B], segment_probabilities [B, S], segment_logits [B, S], bag_logit [B])``:
each segment through ResNet18 (512 features), a tanh attention over the unmasked segments, a bag
head on the attention-pooled features and a per-segment head. Random weights here (no checkpoint);
pass ``--checkpoint`` to torch2ort for real ones.
"""

from __future__ import annotations

import collections

import torch
from torch import nn

Outputs = collections.namedtuple("Outputs", "bag_probability segment_probabilities segment_logits bag_logit")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision's resnet18 layout (the same state_dict keys), without the final fc: [N, 3, H, W] -> [N, 512]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, cin = (64, 128, 256, 512), 64
        for i, w in enumerate(widths, 1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class AttnMILResNet(nn.Module):
    def __init__(self, dropout: float = 0.3, attn_dim: int = 128, hidden: int = 512) -> None:
        super().__init__()
        self.backbone = ResNet18()
        self.dropout = nn.Dropout(dropout)
        self.attn = nn.Sequential(nn.Linear(512, attn_dim), nn.Tanh(), nn.Linear(attn_dim, 1))
        self.bag_head = nn.Sequential(nn.Linear(512, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))
        self.seg_head = nn.Linear(512, 1)

    def forward(self, spectrograms: torch.Tensor, segment_mask: torch.Tensor) -> Outputs:
        b, s, c, h, w = spectrograms.shape
        feats = self.dropout(self.backbone(spectrograms.reshape(b * s, c, h, w)))   # [B*S, 512]
        feats_bs = feats.reshape(b, s, -1)
        scores = self.attn(feats).reshape(b, s)
        scores = torch.where(segment_mask, scores, torch.full_like(scores, float("-inf")))
        weights = torch.softmax(scores, dim=1)
        bag_logit = self.bag_head((weights.unsqueeze(-1) * feats_bs).sum(dim=1)).squeeze(1)
        seg_logits = self.seg_head(feats).reshape(b, s)
        return Outputs(torch.sigmoid(bag_logit), torch.sigmoid(seg_logits), seg_logits, bag_logit)
