"""The runtime must load and predict with torch impossible to import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

BLOCK = """
import importlib.abc, sys
class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test ({name})")
for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
    del sys.modules[mod]
sys.meta_path.insert(0, BlockTorch())
"""


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True, timeout=120)


def test_block_really_blocks():
    proc = _run("import torch")
    assert proc.returncode != 0 and "torch is blocked" in proc.stderr


def test_load_and_predict_without_torch(mobilenet_bundle, tmp_path):
    from PIL import Image

    img = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)).save(img)
    np.save(tmp_path / "x.npy", np.random.default_rng(1).random((2, 3, 32, 32), dtype=np.float32))
    code = """
import sys, json
import numpy as np
from torch2ort.runtime import Bundle
b = Bundle.load(sys.argv[1])
out = b.predict(sys.argv[2])
arr = b.predict({"image": np.load(sys.argv[3])})
from torch2ort.cli import main
rc = main(["predict", sys.argv[1], "--input", "image=@" + sys.argv[2]])
assert "torch" not in sys.modules
print(json.dumps({"top": out["topk"][0][0]["label"], "shape": list(arr.raw["output_0"].shape), "rc": rc}))
"""
    proc = _run(code, str(mobilenet_bundle), str(img), str(tmp_path / "x.npy"))
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["shape"] == [2, 7] and last["rc"] == 0 and last["top"]
    printed = json.loads(proc.stdout[:proc.stdout.rindex("\n{")])
    assert printed["outputs"]["topk"][0][0]["label"] == last["top"]


def test_pack_from_onnx_without_torch(exported, tmp_path):
    proc = _run("import sys\nfrom torch2ort.cli import main\nsys.exit(main(['pack', sys.argv[1], '-o', sys.argv[2]]))",
                str(exported("attn_mil")), str(tmp_path / "b"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "b" / "torch2ort.json").is_file()
