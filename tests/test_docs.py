"""docs/python.md's code blocks run, in order, as one script: the Python walkthrough cannot go stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def test_the_page_has_code_to_run():
    assert len(python_blocks(ROOT / "docs" / "python.md")) >= 6


@pytest.mark.slow
def test_python_md_runs(tmp_path):
    script = "\n\n".join(python_blocks(ROOT / "docs" / "python.md"))
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "walkthrough.py").write_text(script)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "walkthrough.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--atol nan: must be a number" in proc.stdout
    assert (tmp_path / "emotion-out" / "bundle" / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["emotion-bundle", "emotion-int8.onnx", "emotion-out", "emotion.onnx", "examples", "live.onnx",
         "walkthrough.py"])  # nothing written outside what the page names
