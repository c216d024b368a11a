"""The README's cough and ECG examples at the seeds' sizes, end to end (slow: ResNet18 at 224x224, ResNet34-1d),
and the seeds' apps migrated: each example's client.py sends its file to a real `torch2ort serve` and gets
what `Bundle.predict` gives for the same file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.families import run_cli
from fixtures.server import running

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
    answer = _client(c / "client.py", tmp_path / "out" / "bundle", c / "cough.wav")
    assert abs(answer["bag_probability"] - outputs["bag_probability"][0]) < 1e-6
    assert len(answer["segment_probabilities"]) == 2  # [1, segments], flat in OIP JSON
    assert max(abs(a - b) for a, b in zip(answer["segment_probabilities"], outputs["segment_probabilities"][0])) < 1e-6


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
    answer = _client(e / "client.py", tmp_path / "out" / "bundle", e / "record.hea")
    assert answer["labels"] == labels[0] and set(answer["probabilities"]) == known


def _client(script: Path, bundle: Path, file: Path) -> dict:
    """Serve ``bundle`` and run the example's client against it, as its docstring says, in a fresh process."""
    import subprocess
    import sys

    from torch2ort.runtime import Bundle

    with running([bundle]) as (url, _):
        proc = subprocess.run([sys.executable, str(script), url, Bundle.load(bundle).name, str(file)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)
