"""The README's cough and ECG examples at the seeds' sizes, end to end (slow: ResNet18 at 224x224, ResNet34-1d)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.families import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.slow


def test_cough_example_from_wav(tmp_path, capsys):
    c = EXAMPLES / "cough"
    code = run_cli("migrate", f"{c / 'model.py'}:AttnMILResNet", "--preprocess-module", f"{c / 'pre.py'}:MelFrontEnd",
                   "--input", "segments:batch=1,segments=2,32000:float32",
                   "--input", "segment_mask:batch=1,segments=2:bool",
                   "--output-names", "bag_probability,segment_probabilities,segment_logits,bag_logit",
                   "--preprocess", str(c / "preprocess.json"), "--samples", str(c / "cough.wav"), "--no-bench",
                   "-o", str(tmp_path / "out"))
    ev = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert code == 0, ev["outcome"]
    assert all(o["passed"] and o["max_abs"] <= 1e-4 for o in ev["check"]["outputs"].values())
    capsys.readouterr()
    assert run_cli("predict", str(tmp_path / "out" / "bundle"), "--input", f"audio=@{c / 'cough.wav'}") == 0
    outputs = json.loads(capsys.readouterr().out)["outputs"]
    assert len(outputs["bag_probability"]) == 1 and len(outputs["segment_probabilities"][0]) == 2


def test_ecg_example_from_wfdb(tmp_path, capsys):
    e = EXAMPLES / "ecg"
    code = run_cli("migrate", f"{e / 'model.py'}:ResNet34_1d", "--input", "ecg:batch=1,12,5000:float32",
                   "--output-names", "logits", "--preprocess", str(e / "preprocess.json"),
                   "--postprocess", str(e / "postprocess.json"), "--labels", str(e / "labels.txt"),
                   "--samples", str(e / "record.hea"), "--no-bench", "-o", str(tmp_path / "out"))
    ev = json.loads((tmp_path / "out" / "evidence.json").read_text())
    assert code == 0, ev["outcome"]
    capsys.readouterr()
    assert run_cli("predict", str(tmp_path / "out" / "bundle"), "--input", f"signal=@{e / 'record.hea'}") == 0
    labels = json.loads(capsys.readouterr().out)["outputs"]["labels"]
    known = set((e / "labels.txt").read_text().split())
    assert len(labels) == 1 and set(labels[0]) <= known
