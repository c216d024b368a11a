"""A small emotion classifier (MobileNet-style depthwise-separable CNN), the built-in demo model.

Seven classes, 64x64 RGB faces scaled to [0, 1]: the shape of the browser emotion models our users
migrate. Plain torch.nn: torchvision is not needed.
"""

from __future__ import annotations

import torch
from torch import nn

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class EmotionCNN(nn.Module):
    def __init__(self, classes: int = len(LABELS), width: int = 24) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU6(inplace=True),
            _separable(width, 2 * width, 2),
            _separable(2 * width, 2 * width, 1),
            _separable(2 * width, 4 * width, 2),
            _separable(4 * width, 4 * width, 1),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * width, classes))
        self._init_like_trained()

    def _init_like_trained(self) -> None:
        """He-init convs and non-trivial batch-norm statistics, so that without a checkpoint the
        output still depends on the input (PyTorch's default init lets activations fade away)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.8, 1.2)
                nn.init.normal_(m.bias, 0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image).mean(dim=(2, 3)))
