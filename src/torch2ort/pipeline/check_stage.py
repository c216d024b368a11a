"""The check stage: the packed bundle from raw input, in a torch-free process, judged against torch.

Each answer is judged by ``parity.judge`` (``bundle_gate`` picks the gate, ``judge_answer`` holds
the answer to it); audio and signal files go through ``check_raw``; a token classifier's entities are
held to transformers' pipeline by ``check_entities``, a segmentation map to the processor's by
``check_segmentation``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import ParityError
from torch2ort.evidence import CheckInfo, OutputCheck
from torch2ort.parity.judge import judge_answer
from torch2ort.pipeline.stages import Stage
from torch2ort.pipeline.state import MigrationState


class Check(Stage):
    name = "check"

    def run(self, state: MigrationState) -> str:
        from torch2ort.pipeline.checks import bundle_predict

        if state.raw_files:
            if not state.loaded.hints.media:  # audio/signal files through the user's steps and module
                from torch2ort.pipeline.check_raw import check_raw_files

                return check_raw_files(state)
            results, info = bundle_predict(state.bundle_dir, state.raw_files[0])  # an hf image/audio folder
            raw_input = f"the raw file {Path(state.raw_files[0]).name}"
        elif state.texts is not None:
            results, info = bundle_predict(state.bundle_dir, state.texts)
            raw_input = f"{len(state.texts)} raw texts"
        else:
            results, info = bundle_predict(state.bundle_dir, first_feed(state))
            raw_input = "the first real sample" if state.samples else "a synthetic input"
        outputs = {name: OutputCheck.from_dict(judge_answer(key, results.get(key), ref, state.check_gate(name, ref),
                                                            how).to_dict())
                   for name, key, ref, how in _pairs(state)}
        if state.raw_files and state.loaded.hints.task == "semantic-segmentation":
            from torch2ort.pipeline.check_segmentation import check_segmentation

            outputs["segmentation"] = check_segmentation(state, results.get("segmentation"), state.raw_files[0])
        if state.texts is not None and state.loaded.hints.task == "token-classification":
            from torch2ort.pipeline.check_entities import check_entities

            entities, imported = check_entities(state)
            outputs |= entities
            info["torch_imported"] = info["torch_imported"] or imported
        state.evidence.check = CheckInfo(input=raw_input, torch_imported=info["torch_imported"],
                                         results=list(info["results"]), outputs=outputs)
        bad = [f"{k}: {v.reason}" for k, v in outputs.items() if not v.passed]
        if info["torch_imported"]:
            bad.append("torch was imported while predicting")
        if bad:
            raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
        return (f"bundle.predict({raw_input}) in a torch-blocked process: "
                + ", ".join(f"{k} {v.metric} {_metric(v.value)}" for k, v in outputs.items()))


def _pairs(state: MigrationState):
    """(output name, the key of the bundle's answer, the reference, what produced the reference)."""
    if state.texts is not None and state.loaded.hints.task == "sentence-embedding":
        ref, how = state.sentence_reference()
        yield "sentence_embedding", "sentence_embedding", ref, how
        return
    from torch2ort.inputs.texts import tokenize
    from torch2ort.runners.torch_eager import TorchRunner

    how = "the PyTorch model on the same input"
    if state.raw_files:
        from torch2ort.sources.hf_media import reference_feed

        feed = reference_feed(state.loaded.hints, state.raw_files[0])
        how = "transformers' own processor + the PyTorch model on the same file"
    elif state.texts is not None:
        feed = tokenize(state.loaded.hints, state.texts, state.spec)
    else:
        feed = first_feed(state)
    with TorchRunner(state.loaded.module, state.spec) as runner:
        outs = runner.infer(feed)
    for k, v in outs.items():  # the runtime returns the graph's own outputs as raw:NAME
        yield k, f"raw:{k}", v, how


def first_feed(state: MigrationState) -> dict[str, np.ndarray]:
    """The first real sample, else a seeded synthetic input."""
    from torch2ort.inputs import sample_cases, synthetic_feed

    if state.samples:
        return sample_cases(state.samples, state.spec)[0].feed
    return synthetic_feed(state.spec, seed=state.opts.seed + 7)


def _metric(v: float) -> str:
    return f"{v:.7f}" if 0.99 < v < 1.0 or v == 1.0 else f"{v:.4g}"
