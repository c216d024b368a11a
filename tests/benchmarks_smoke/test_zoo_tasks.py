"""The trained replicas' synthetic tasks carry their labels in the signal, and a missing cache is a clear error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import zoo_models  # noqa: E402
import zoo_tasks  # noqa: E402


def test_ecg_labels_follow_rhythm_and_voltage():
    x, y = zoo_tasks.ecg(np.random.default_rng(0), 48, 5000)
    assert x.shape == (48, 12, 5000) and y.shape == (48, 9) and set(np.unique(y)) <= {0.0, 1.0}
    lead = x[:, 1] - x[:, 1].mean(1, keepdims=True)
    # beats per 10 s: count upward crossings of half the lead's peak
    beats = [int(np.sum(np.diff((np.abs(s) > 0.5 * np.abs(s).max()).astype(int)) == 1)) for s in lead]
    brady, tachy = y[:, 0] > 0, y[:, 1] > 0
    assert np.mean(np.array(beats)[brady]) < np.mean(np.array(beats)[tachy])
    low = y[:, 6] > 0
    assert np.abs(x[low]).max(axis=(1, 2)).mean() < np.abs(x[~low]).max(axis=(1, 2)).mean()


def test_cough_bags_are_positive_exactly_when_an_unmasked_segment_holds_a_burst():
    x, mask, bag, seg = zoo_tasks.cough(np.random.default_rng(1), 6, 8, 64)
    assert x.shape == (6, 8, 3, 64, 64) and mask.dtype == bool
    assert np.array_equal(bag, (seg * mask).max(1)) and not (seg * ~mask).any()
    # a burst raises the segment's loudest column well above the background's
    loud = x[:, :, 0].mean(axis=2).max(axis=2)
    assert loud[seg > 0].mean() > loud[(seg == 0) & mask].mean() + 0.5


def test_lipsync_masks_the_lower_half_and_the_mel_follows_the_mouth():
    face, mel, target = zoo_tasks.lipsync(np.random.default_rng(2), 4, 64)
    assert face.shape == (4, 6, 64, 64) and target.shape == (4, 3, 64, 64) and mel.shape == (4, 1, 80, 16)
    assert not face[:, :3, 32:].any() and np.array_equal(face[:, :3, :32], target[:, :, :32])
    assert 0.0 <= face.min() and face.max() <= 1.0


def test_a_trained_factory_without_weights_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_models, "TRAINED", tmp_path)
    with pytest.raises(FileNotFoundError, match="benchmarks/train_zoo.py"):
        zoo_models.ecg_trained()
