"""The check stage for object detection: the bundle's boxes from the raw file vs transformers' pipeline.

``pipeline("object-detection")`` on the same folder's model and image processor, on the same file, at
the bundle's threshold. The detections must agree query for query: the same labels, scores within
``SCORE_TOL``, and box corners within ``BOX_TOL`` pixels (both sides truncate to whole pixels, so a
corner a hair either side of an integer may land one apart).
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.evidence import OutputCheck
from torch2ort.pipeline.state import MigrationState

SCORE_TOL, SCORE_TOL_OPTIMISED = 1e-4, 0.05
BOX_TOL = 1  # pixels


def pipeline_detections(model_dir: str | Path, model, raw: str, threshold: float) -> list[dict]:
    import transformers

    from torch2ort.sources.hf_image import load_processor

    pipe = transformers.pipeline("object-detection", model=model, image_processor=load_processor(Path(model_dir)),
                                 device="cpu")
    return list(pipe(str(raw), threshold=threshold))


def judge_detections(got: list[dict] | None, ref: list[dict], score_tol: float, reference: str = "") -> OutputCheck:
    gate = f"the same detections: labels equal, scores within {score_tol:g}, corners within {BOX_TOL} px"
    problem, worst_score = "", 0.0
    if got is None:
        problem = "the bundle returned no detections"
    elif len(got) != len(ref):
        problem = f"{len(got)} detections where the pipeline finds {len(ref)}"
    else:
        for i, (a, b) in enumerate(zip(got, ref)):
            box = max(abs(a["box"][k] - b["box"][k]) for k in b["box"])
            score = abs(a["score"] - float(b["score"]))
            worst_score = max(worst_score, score)
            if not problem and (a["label"] != b["label"] or box > BOX_TOL or score > score_tol):
                problem = f"detection {i}: {a['label']} {a['score']:.4f} {a['box']} where the pipeline has " \
                          f"{b['label']} {float(b['score']):.4f} {b['box']}"
    return OutputCheck(metric="detections", value=float(not problem), passed=not problem, reference=reference,
                       gate=gate, reason=problem, max_abs=worst_score)


def check_detection(state: MigrationState, got: list | None, raw: str) -> OutputCheck:
    """``got``: the bundle's detections for ``raw`` (one image's list, in a one-image batch)."""
    step = next(s for s in state.loaded.hints.postprocess if s["op"] == "detections")
    ref = pipeline_detections(state.loaded.hints.model_dir, state.loaded.module.model.eval(), raw, step["threshold"])
    tol = SCORE_TOL_OPTIMISED if state.final != state.onnx else SCORE_TOL
    return judge_detections(None if got is None else got[0], ref, tol,
                            f'pipeline("object-detection", threshold={step["threshold"]:g}) on the same file')
