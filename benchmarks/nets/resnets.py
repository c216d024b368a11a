"""ResNet34-1D for 12-lead ECG (seed 000) and AttnMIL over ResNet18 segment features (seed 001).

ResNet1d follows the layout of the widely used PyTorch ECG ResNet (``resnet34(input_channels=12,
num_classes=9)``): a stem conv k=15 stride 2 + BN + ReLU + max-pool k=3 stride 2, BasicBlock1d
stages [3, 4, 6, 3] at widths 64-128-256-512 (convs k=7, the first of a stage strided 2 after
stage 1, a 1x1 strided conv on the shortcut when the shape changes, dropout 0.2 between the two
convs), then average and max pooling concatenated (1024) and one Linear to 9 logits. The logits
are meant for a sigmoid (multi-label); the sigmoid is left to the caller, as in the seed.
"""

from __future__ import annotations

import collections

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 7, stride=stride, padding=3, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.dropout = nn.Dropout(0.2)
        self.conv2 = nn.Conv1d(cout, cout, 7, padding=3, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dropout(F.relu(self.bn1(self.conv1(x))))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet1d(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), input_channels: int = 12, num_classes: int = 9) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(input_channels, 64, 15, stride=2, padding=7, bias=False),
                                  nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(3, stride=2, padding=1))
        blocks, cin = [], 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            for j in range(n):
                blocks.append(BasicBlock1d(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512 * 2, num_classes)

    def forward(self, ecg: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.stem(ecg))
        return self.fc(torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1))


def resnet34_1d(input_channels: int = 12, num_classes: int = 9) -> ResNet1d:
    return ResNet1d((3, 4, 6, 3), input_channels, num_classes)


class BasicBlock2d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18Features(nn.Module):
    """ResNet18 (He et al. 2016, [2, 2, 2, 2] basic blocks) up to the global average pool: 512 features."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
        blocks, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            for j in range(2):
                blocks.append(BasicBlock2d(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x)).mean(dim=(2, 3))


MilOutputs = collections.namedtuple("MilOutputs", "bag_prob seg_prob seg_logits bag_logit")


class AttnMIL(nn.Module):
    """Attention MIL (Ilse et al. 2018) over image segments: [B, S, 3, H, W] + bool mask [B, S].

    Each segment goes through the ResNet18 backbone (512 features); attention scores
    (Linear 512→128, Tanh, Linear 128→1) are softmaxed over the unmasked segments; the weighted
    bag feature goes through the bag head (Linear 512→512, ReLU, dropout, Linear 512→1); a linear
    segment head gives per-segment logits.
    """

    def __init__(self, attn_hidden: int = 128, head_hidden: int = 512) -> None:
        super().__init__()
        self.backbone = ResNet18Features(3)
        self.attn = nn.Sequential(nn.Linear(512, attn_hidden), nn.Tanh(), nn.Linear(attn_hidden, 1))
        self.bag_head = nn.Sequential(nn.Linear(512, head_hidden), nn.ReLU(), nn.Dropout(0.25),
                                      nn.Linear(head_hidden, 1))
        self.seg_head = nn.Linear(512, 1)

    def forward(self, segments: torch.Tensor, segment_mask: torch.Tensor) -> MilOutputs:
        b, s, c, h, w = segments.shape
        feats = self.backbone(segments.reshape(b * s, c, h, w)).reshape(b, s, 512)
        scores = self.attn(feats).squeeze(-1)
        # finfo.min, not -inf: a bag with every segment masked gets uniform weights, not NaN
        scores = scores.masked_fill(~segment_mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        bag_logit = self.bag_head((weights.unsqueeze(-1) * feats).sum(dim=1)).squeeze(-1)
        seg_logits = self.seg_head(feats).squeeze(-1)
        return MilOutputs(torch.sigmoid(bag_logit), torch.sigmoid(seg_logits), seg_logits, bag_logit)
