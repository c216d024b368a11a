"""The benchmark zoo is what BENCHMARKS.md says it is: layer tables, sizes, outputs, and the real texts."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import zoo_models  # noqa: E402
from _textbench import min_cosine  # noqa: E402
from nets.mobile import EfficientNetB0, MobileNetV2  # noqa: E402
from texts import long_texts, short_texts, tokenizer  # noqa: E402


@pytest.fixture(autouse=True)
def _weights_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_models, "WEIGHTS", tmp_path / "weights")


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mobile_nets_match_the_papers_imagenet_parameter_counts():
    # torchvision's mobilenet_v2 and efficientnet_b0 (1000 classes) have exactly these counts
    assert _params(MobileNetV2(1000)) == 3_504_872
    assert _params(EfficientNetB0(1000)) == 5_288_548


@pytest.mark.slow
def test_lipsync_is_the_seed_size_and_outputs_a_frame_in_0_1():
    model = zoo_models.lipsync()
    assert abs(_params(model) - 11.5e6) <= 0.1 * 11.5e6
    with torch.inference_mode():
        y = model(torch.rand(1, 6, 320, 320), torch.randn(1, 1, 80, 16))
    assert y.shape == (1, 3, 320, 320) and 0.0 <= float(y.min()) and float(y.max()) <= 1.0


@pytest.mark.slow
def test_ecg_resnet34_gives_9_input_dependent_logits_and_the_same_weights_from_its_cache():
    model = zoo_models.ecg()
    assert 16e6 < _params(model) < 17e6
    x = torch.randn(2, 12, 1000)  # the net is length-agnostic; 5000 samples would only cost time here
    with torch.inference_mode():
        y = model(x)
        again = zoo_models.ecg()(x)  # loaded from benchmarks/out/weights (here tmp_path), not rebuilt
    assert len(list(zoo_models.WEIGHTS.glob("ResNet1d-*.pt"))) == 1
    assert y.shape == (2, 9) and float(y.abs().max()) < 50 and float((y[0] - y[1]).abs().max()) > 1e-3
    torch.testing.assert_close(again, y)


@pytest.mark.slow
def test_attn_mil_outputs_in_order_and_survives_a_fully_masked_bag():
    model = zoo_models.attn_mil()
    assert 11e6 < _params(model) < 12e6
    mask = torch.tensor([[True, False, True], [False, False, False]])
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 3, 64, 64), mask)
    assert out._fields == ("bag_prob", "seg_prob", "seg_logits", "bag_logit")
    assert out.seg_logits.shape == (2, 3) and out.bag_prob.shape == (2,)
    assert all(bool(torch.isfinite(t).all()) for t in out)
    torch.testing.assert_close(out.bag_prob, torch.sigmoid(out.bag_logit))


def test_text_sets_are_real_and_sized_as_documented():
    tok = tokenizer()
    tok.no_truncation()
    long, short = long_texts(), short_texts()
    assert len(short) == 10 and len(long) == 32 and len(set(long)) == 32
    lengths = [len(tok.encode(t).ids) for t in long]
    assert min(lengths) >= 150 and max(lengths) <= 250


def test_min_cosine_is_the_worst_row():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 0.0], [1.0, 1.0]])
    assert min_cosine(a, b) == pytest.approx(np.sqrt(0.5))
