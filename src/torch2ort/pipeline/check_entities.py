"""The check stage for token classification: entities from raw text, bundle vs transformers' pipeline.

The packed bundle predicts the sample texts in a torch-blocked process once per aggregation strategy;
``pipeline("token-classification")`` on the same folder's model and tokenizer gives the reference.
The entities must agree text for text (``parity.entities``), for every strategy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from torch2ort.errors import BundleError
from torch2ort.evidence import OutputCheck
from torch2ort.parity.entities import compare_entities
from torch2ort.pipeline.checks import BLOCK_TORCH
from torch2ort.pipeline.state import MigrationState

STRATEGIES = ("none", "simple", "first", "average", "max")
SCORE_TOL = 1e-4       # an unquantised bundle: fp32 through ONNX Runtime vs PyTorch
SCORE_TOL_OPTIMISED = 0.05  # a quantised one: labels, spans and words must still agree

_ENTITIES = """
import json, sys
from torch2ort.runtime import Bundle
bundle_dir, texts_path, strategies = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
texts = json.load(open(texts_path))
bundle = Bundle.load(bundle_dir)
out = {s: bundle.predict(texts, aggregation_strategy=s)["entities"] for s in strategies}
print(json.dumps({"torch_imported": "torch" in sys.modules, "entities": out}))
"""


def bundle_entities(bundle_dir: str | Path, texts: list[str], strategies=STRATEGIES,
                    timeout_s: float = 300) -> tuple[dict[str, list], bool]:
    """({strategy: entities per text}, whether torch got imported), from the bundle in a torch-blocked process."""
    with tempfile.TemporaryDirectory(prefix="torch2ort-check-") as tmp:
        path = Path(tmp) / "texts.json"
        path.write_text(json.dumps(list(texts)))
        proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + _ENTITIES, str(bundle_dir), str(path),
                               ",".join(strategies)], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:400]
        raise BundleError(f"the bundle failed to predict entities in a torch-free process: {tail}")
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer["entities"], answer["torch_imported"]


def pipeline_entities(model_dir: str | Path, model, texts: list[str], strategies, stride: int = 0,
                      max_length: int | None = None) -> dict[str, list[list[dict]]]:
    """{strategy: entities per text} from transformers' ``pipeline("token-classification")`` on the loaded
    model and the folder's tokenizer (loaded once), truncating (or windowing) at the bundle's
    ``max_length``, as the pipeline does at ``model_max_length``."""
    import warnings

    import transformers

    extra = {"model_max_length": max_length} if max_length else {}
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, **extra)
    pipe = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer, device="cpu")
    windows = {"stride": stride} if stride else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Tokenizer does not support real words": the pipeline's own
        return {s: [list(pipe(t, aggregation_strategy=s, **windows)) for t in texts] for s in strategies}


def check_entities(state: MigrationState) -> tuple[dict[str, OutputCheck], bool]:
    """One OutputCheck per strategy, and whether torch was imported while predicting."""
    hints, texts = state.loaded.hints, list(state.texts or [])
    stride = next((s.get("stride", 0) for s in hints.postprocess if s.get("op") == "entities"), 0)
    strategies = [s for s in STRATEGIES if not (stride and s == "none")]  # none cannot merge windows
    got, torch_imported = bundle_entities(state.bundle_dir, texts, strategies)
    tol = SCORE_TOL_OPTIMISED if state.final != state.onnx else SCORE_TOL
    model = state.loaded.module.model.eval()
    checks = {}
    refs = pipeline_entities(hints.model_dir, model, texts, strategies, stride, hints.max_length)
    for strategy in strategies:
        ref = refs[strategy]
        a = compare_entities(got[strategy], ref, texts, tol)
        checks[f"entities[{strategy}]"] = OutputCheck(
            metric="entities", value=a.share, passed=a.agree == a.texts and a.texts > 0,
            reference=f'pipeline("token-classification", aggregation_strategy="{strategy}"'
                      + (f", stride={stride}" if stride else "") + ") on the same texts",
            reason=a.first_difference, gate=f"every text's entities agree (scores within {tol:g})",
            max_abs=a.max_score_diff)
    return checks, torch_imported
