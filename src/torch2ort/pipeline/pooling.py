"""Sentence-transformers: pooling in the graph or in the runtime, whichever matches encode() better.

Each placement is exported, packed and run from raw text, and compared with the reference
(``SentenceTransformer.encode``). The lower max abs error wins; on a tie the graph does, as it
serves every runtime (browser, Triton).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from torch2ort.evidence import Agreement, PoolingInfo
from torch2ort.pipeline.state import MigrationState

RULE = "lower max abs error vs the reference; graph on a tie"


def needs_choice(state: MigrationState) -> bool:
    """More than one placement is possible and the user did not pin one with --kwargs pooling."""
    return len(state.loaded.hints.pooling_choices) > 1 and "pooling" not in (state.request.kwargs or {})


def choose_pooling(state: MigrationState):
    """Export every placement, keep the winner as ``state.onnx``; returns its ExportResult.

    Updates ``state.request``, ``state.loaded`` and ``state.spec`` to the chosen placement and
    records the contest in ``state.evidence.pooling``.
    """
    from torch2ort.bundle.writer import pack
    from torch2ort.export import export_onnx
    from torch2ort.parity.metrics import agreement
    from torch2ort.runtime import Bundle
    from torch2ort.sources import load_model

    choices = state.loaded.hints.pooling_choices
    ref, how = state.sentence_reference()
    candidates: dict[str, dict] = {}
    by_choice = {}
    with tempfile.TemporaryDirectory(prefix="torch2ort-pooling-") as tmp:
        for choice in choices:
            req = replace(state.request, kwargs={**(state.request.kwargs or {}), "pooling": choice})
            loaded = load_model(req)
            hints = loaded.hints
            onnx_path = _candidate_path(state, choice)
            exported = export_onnx(loaded, hints.spec, onnx_path)
            bundle = pack(onnx_path, Path(tmp) / f"bundle-{choice}", preprocess=hints.preprocess,
                          postprocess=hints.postprocess or None, tokenizer=hints.tokenizer)
            got = np.asarray(Bundle.load(bundle).predict(state.texts)["sentence_embedding"])
            candidates[choice] = agreement(ref, got)
            by_choice[choice] = (req, loaded, exported)
            state.log(f"pooling in the {choice}: max abs {candidates[choice]['max_abs']:.2e}, "
                      f"min cosine {candidates[choice]['min_cosine']:.7f} vs {how}")
    chosen = min(choices, key=lambda c: (candidates[c]["max_abs"], c != "graph"))
    state.request, state.loaded, exported = by_choice[chosen]
    state.spec = state.loaded.hints.spec
    for choice in choices:  # keep the chosen export as the model; the other one was only evidence
        path = _candidate_path(state, choice)
        if choice == chosen:
            path.replace(state.onnx)
        else:
            path.unlink()
    exported.path = str(state.onnx)
    state.evidence.pooling = PoolingInfo(
        chosen=chosen, reference=how, texts=len(state.texts), rule=RULE,
        candidates={c: Agreement.from_dict(a) for c, a in candidates.items()})
    return exported


def _candidate_path(state: MigrationState, choice: str) -> Path:
    return state.onnx.parent / f"pooling-{choice}.onnx"
