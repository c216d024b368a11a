from __future__ import annotations

import pytest

from torch2ort.bundle.writer import pack

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.fixture
def mobilenet_bundle(exported, tmp_path):
    """A bundle of the 7-class MobileNet fixture with image preprocess and softmax/top-k postprocess."""
    return pack(exported("mobilenet"), tmp_path / "bundle", name="mobilenet", labels=LABELS,
                preprocess="image", postprocess="softmax-topk")


@pytest.fixture
def plain_bundle(exported, tmp_path):
    return pack(exported("attn_mil"), tmp_path / "mil", name="attn_mil")
