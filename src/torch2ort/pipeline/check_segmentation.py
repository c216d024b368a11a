"""The check stage for semantic segmentation: the bundle's per-pixel classes vs transformers' processor.

The reference is ``post_process_semantic_segmentation`` (target size: the original image's) over the
PyTorch model's scores on transformers' own pixels for the same file. The bundle passes when at least
``PIXEL_AGREEMENT`` of the pixels get the same class and every pixel that differs is a near-tie in the
reference's resized scores (the two best classes within ``TIE``): a boundary, not a wrong region.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from torch2ort.evidence import OutputCheck
from torch2ort.pipeline.state import MigrationState

PIXEL_AGREEMENT = 0.999
TIE = 1e-3           # unquantised: float32 resize order only
TIE_OPTIMISED = 0.5  # a quantised model moves scores; differences must still sit where classes nearly tie


def reference_segmentation(module, model_dir: str | Path, raw: str) -> tuple[np.ndarray, np.ndarray]:
    """(class map [H, W], resized scores [C, H, W]) from transformers for the file ``raw``; ``module``
    maps pixel_values to logits."""
    import torch
    from PIL import Image

    from torch2ort.sources.hf_image import load_processor, processor_pixels

    with Image.open(raw) as img:
        width, height = img.size
    pixels = torch.from_numpy(processor_pixels(Path(model_dir), raw))
    with torch.inference_mode():
        logits = module(pixels)
    out = load_processor(Path(model_dir)).post_process_semantic_segmentation(
        SimpleNamespace(logits=logits), target_sizes=[(height, width)], return_segmentation_scores=True)[0]
    return out["segmentation"].numpy(), out["segmentation_scores"].numpy()


def judge_segmentation(got: np.ndarray | None, ref: np.ndarray, scores: np.ndarray, tie: float,
                       reference: str = "") -> OutputCheck:
    """The bundle's map [1, H, W] against the reference map [H, W] and its resized scores [C, H, W]."""
    gate = f"pixels>={PIXEL_AGREEMENT:g}, differences only at ties (top-2 within {tie:g})"
    if got is None or np.asarray(got).shape[1:] != ref.shape:
        shape = None if got is None else list(np.asarray(got).shape)
        return OutputCheck(metric="pixels", value=0.0, passed=False, reference=reference, gate=gate,
                           reason=f"the bundle's segmentation has shape {shape}, the reference {list(ref.shape)}")
    differ = np.asarray(got)[0] != ref
    share = float(1 - differ.mean())
    top2 = np.sort(scores[:, differ], axis=0)[-2:] if differ.any() else np.zeros((2, 0))
    margin = float((top2[1] - top2[0]).max()) if top2.shape[1] else 0.0
    passed = share >= PIXEL_AGREEMENT and margin <= tie
    reason = "" if passed else f"{share:.6f} of pixels agree; the widest margin where they differ is {margin:.3g}"
    return OutputCheck(metric="pixels", value=share, passed=passed, reference=reference, gate=gate, reason=reason,
                       max_abs=margin)


def check_segmentation(state: MigrationState, got: np.ndarray | None, raw: str) -> OutputCheck:
    ref, scores = reference_segmentation(state.loaded.module.eval(), state.loaded.hints.model_dir, raw)
    tie = TIE_OPTIMISED if state.final != state.onnx else TIE
    return judge_segmentation(got, ref, scores, tie,
                              "the processor's post_process_semantic_segmentation over the PyTorch model, same file")
