"""The check stage for zero-shot image classification: the bundle's labels and scores vs transformers' pipeline.

Every raw sample image goes through the packed bundle at once (a batch of files, in a torch-blocked
process) with the sample candidate labels, and through ``pipeline("zero-shot-image-classification")``
on the same folder's model, tokenizer and image processor, one image at a time, with the same labels
and template. Per image, the bundle must give every label a score within ``SCORE_TOL`` of the
pipeline's, and the same order: two labels may trade places only where the pipeline's own scores for
them are within ``SCORE_TOL`` (a tie that float32 rounding can break either way).
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.evidence import OutputCheck
from torch2ort.pipeline.state import MigrationState

SCORE_TOL = 1e-4            # an unquantised bundle: fp32 through ONNX Runtime vs PyTorch
SCORE_TOL_OPTIMISED = 0.05  # a quantised one: the top-1 label must still agree (the variant's own gate)


def pipeline_zero_shot(model_dir: str | Path, model, files: list[str], labels: list[str], template: str
                       ) -> list[list[dict]]:
    import transformers

    from torch2ort.sources.hf_image import load_processor

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    pipe = transformers.pipeline("zero-shot-image-classification", model=model, tokenizer=tokenizer,
                                 image_processor=load_processor(Path(model_dir)), device="cpu")
    return [list(pipe(str(f), candidate_labels=list(labels), hypothesis_template=template)) for f in files]


def compare_zero_shot(got: list[dict], ref: list[dict], tol: float) -> tuple[str, float]:
    """(the first difference, or ""; the largest score difference) between one image's two answers."""
    if sorted(r["label"] for r in got) != sorted(r["label"] for r in ref):
        return f"labels {[r['label'] for r in got]} where the pipeline has {[r['label'] for r in ref]}", float("inf")
    want = {r["label"]: float(r["score"]) for r in ref}
    worst = max(abs(float(r["score"]) - want[r["label"]]) for r in got)
    if worst > tol:
        label = max(got, key=lambda r: abs(float(r["score"]) - want[r["label"]]))["label"]
        return f"{label!r} scores {dict((r['label'], r['score']) for r in got)[label]:.6f}, the pipeline " \
               f"{want[label]:.6f}", worst
    for i, (a, b) in enumerate(zip(got, ref)):
        if a["label"] != b["label"] and abs(want[a["label"]] - float(b["score"])) > tol:
            return f"rank {i}: {a['label']!r} where the pipeline has {b['label']!r}", worst
    return "", worst


def judge_zero_shot(got: list[list[dict]] | None, ref: list[list[dict]], tol: float, reference: str = ""
                    ) -> OutputCheck:
    gate = f"every image: the same labels in the same order (ties within {tol:g} aside), scores within {tol:g}"
    if got is None or len(got) != len(ref):
        return OutputCheck(metric="top-1 agreement", value=0.0, passed=False, reference=reference, gate=gate,
                           reason=f"the bundle answered for {0 if got is None else len(got)} images, not {len(ref)}")
    problems, worst, top1 = [], 0.0, 0
    for i, (a, b) in enumerate(zip(got, ref)):
        problem, diff = compare_zero_shot(a, b, tol)
        worst = max(worst, diff)
        top1 += bool(a) and bool(b) and a[0]["label"] == b[0]["label"]
        if problem:
            problems.append(f"image {i}: {problem}")
    return OutputCheck(metric="top-1 agreement", value=top1 / len(ref), passed=not problems, reference=reference,
                       gate=gate, reason="; ".join(problems[:2]), max_abs=worst)


def check_zero_shot(state: MigrationState) -> tuple[OutputCheck, bool]:
    """The bundle on every raw sample image against the pipeline; and whether torch was imported."""
    from torch2ort.pipeline.checks import bundle_predict

    hints = state.loaded.hints
    step = next(s for s in hints.preprocess if s["op"] == "candidate_labels")
    labels, template = hints.options["candidate_labels"], step["hypothesis_template"]
    _, info = bundle_predict(state.bundle_dir, list(state.raw_files),
                             options={"candidate_labels": labels, "hypothesis_template": template})
    ref = pipeline_zero_shot(hints.model_dir, state.loaded.module.model.eval(), state.raw_files, labels, template)
    tol = SCORE_TOL_OPTIMISED if state.final != state.onnx else SCORE_TOL
    check = judge_zero_shot(info["structured"].get("zero_shot"), ref, tol,
                            f'pipeline("zero-shot-image-classification") on the same {len(ref)} files, '
                            f"{len(labels)} candidate labels")
    return check, info["torch_imported"]
