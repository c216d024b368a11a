"""Task-level checks of a packed bundle: raw input in, through the runtime, in a process without torch.

``bundle_predict`` runs ``Bundle.load(dir).predict(raw)`` in a fresh interpreter where ``import
torch`` raises, so a passing check proves the bundle works as shipped: tokenizer or image
pipeline, model and postprocessing, with no torch at hand.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from torch2ort.errors import BundleError

BLOCK_TORCH = """
import importlib.abc, sys
class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked ({name})")
sys.meta_path.insert(0, _BlockTorch())
"""

_PREDICT = """
import json, sys
import numpy as np
from torch2ort.runtime import Bundle
bundle_dir, raw_path, out_path, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if raw_path.endswith(".json"):
    raw = json.load(open(raw_path))
else:
    with np.load(raw_path) as data:
        raw = {k: data[k] for k in data.files}
out = Bundle.load(bundle_dir).predict(raw, **options)
arrays = {}
for k, v in list(out.items()) + [("raw:" + k, v) for k, v in out.raw.items()]:
    if isinstance(v, np.ndarray) and v.dtype.kind in "biuf":  # lists (top-k rows, entities) are not arrays
        arrays[k] = v
np.savez(out_path, **arrays)
structured = {k: v for k, v in out.items() if isinstance(v, list)}  # entities, detections, top-k rows
print(json.dumps({"torch_imported": "torch" in sys.modules, "results": sorted(out), "structured": structured}))
"""


def bundle_predict(bundle_dir: str | Path, raw: str | list[str] | dict[str, np.ndarray],
                   timeout_s: float = 300, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Predict with the bundle in a torch-blocked subprocess; returns (numeric results, info); ``info``
    holds ``torch_imported``, the result names and, under ``structured``, the results that are lists.

    ``raw``: texts, a feed, or one file path (an image or audio file for a media bundle); ``options``: the
    call options (a zero-shot bundle's candidate labels)."""
    with tempfile.TemporaryDirectory(prefix="torch2ort-check-") as tmp:
        tmp = Path(tmp)
        if isinstance(raw, dict):
            raw_path = tmp / "raw.npz"
            np.savez(raw_path, **raw)
        else:  # a list of texts, or the path of a raw file (audio, signal, image)
            raw_path = tmp / "raw.json"
            raw_path.write_text(json.dumps(raw if isinstance(raw, str) else list(raw)))
        out_path = tmp / "out.npz"
        proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + _PREDICT, str(bundle_dir), str(raw_path),
                               str(out_path), json.dumps(options or {})], capture_output=True, text=True,
                              timeout=timeout_s)
        if proc.returncode != 0 or not out_path.is_file():
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:400]
            raise BundleError(f"the bundle failed to predict in a torch-free process: {tail}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out_path) as data:
            return {k: data[k] for k in data.files}, info


_GENERATE = """
import json, sys
from torch2ort.runtime import Bundle
bundle_dir, prompts_path, new_tokens = sys.argv[1:4]
out = Bundle.load(bundle_dir).generate(json.load(open(prompts_path)), max_new_tokens=int(new_tokens))
print(json.dumps({"token_ids": out.token_ids, "text": out.text, "torch_imported": "torch" in sys.modules}))
"""


def bundle_generate(bundle_dir: str | Path, prompts: list[str], new_tokens: int,
                    timeout_s: float = 300) -> tuple[dict, dict]:
    """Greedy ``Bundle.generate`` in a torch-blocked subprocess; returns ({token_ids, text}, info)."""
    with tempfile.TemporaryDirectory(prefix="torch2ort-check-") as tmp:
        path = Path(tmp) / "prompts.json"
        path.write_text(json.dumps(list(prompts)))
        proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + _GENERATE, str(bundle_dir), str(path),
                               str(new_tokens)], capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:400]
            raise BundleError(f"the bundle failed to generate in a torch-free process: {tail}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        return data, {"torch_imported": data.pop("torch_imported")}
