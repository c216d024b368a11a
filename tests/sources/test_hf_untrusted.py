"""An hf: folder is data, not code: its own Python runs only with --trust-remote-code, and nothing ever asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.families import run_cli
from fixtures.hf import bert_dir


def _remote_code_folder(path: Path, marker: Path) -> Path:
    """A folder whose config.json maps AutoModel to its own modelling file, which leaves a marker when imported."""
    bert_dir(path, cls="BertModel")
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="evilbert", architectures=["EvilModel"],
                  auto_map={"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertModel\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertModel):\n    config_class = EvilConfig\n")
    return path


def test_a_yes_on_stdin_does_not_run_the_folders_code(tmp_path):
    marker = tmp_path / "marker"
    model = _remote_code_folder(tmp_path / "model", marker)
    proc = subprocess.run([sys.executable, "-m", "torch2ort", "migrate", f"hf:{model}", "--task",
                           "feature-extraction", "--no-bench", "-o", str(tmp_path / "out")],
                          input="y\ny\n", capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not marker.exists(), "the folder's Python ran"
    assert "trust_remote_code" in proc.stderr or "custom code" in proc.stderr
    assert "Traceback" not in proc.stderr and "[y/N]" not in proc.stdout + proc.stderr


def test_trust_remote_code_is_an_explicit_opt_in(tmp_path):
    marker = tmp_path / "marker"
    model = _remote_code_folder(tmp_path / "model", marker)
    run_cli("export", f"hf:{model}", "--kwargs", '{"task": "feature-extraction"}', "--trust-remote-code",
            "-o", tmp_path / "m.onnx")
    assert marker.read_text() == "ran"


@pytest.mark.parametrize("entry, fragment", [
    ({"idx": 0, "name": "0", "path": "", "type": "evil.Transformer"}, "is not one of sentence-transformers' own"),
    ({"idx": 0, "name": "0", "path": "", "type": 7}, "must be objects with a \"type\""),
    ({"idx": 1, "name": "1", "path": "../../etc", "type": "sentence_transformers.models.Pooling"},
     "must be a folder inside the model"),
])
def test_modules_json_names_only_sentence_transformers_classes(tmp_path, capsys, entry, fragment):
    model = bert_dir(tmp_path / "model", cls="BertModel")
    (model / "modules.json").write_text(json.dumps([entry]))
    capsys.readouterr()
    assert run_cli("migrate", f"hf:{model}", "--no-bench", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err


def test_a_deeply_nested_config_is_a_one_line_error(tmp_path, capsys):
    model = bert_dir(tmp_path / "model", cls="BertModel")
    (model / "config.json").write_text("[" * 50_000 + "]" * 50_000)
    capsys.readouterr()
    assert run_cli("migrate", f"hf:{model}", "--no-bench", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err or "must hold a JSON object" in err, err
