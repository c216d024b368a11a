"""The check stage: the packed bundle from raw input, in a torch-free process, judged against torch.

Each answer is judged by ``parity.judge`` (``bundle_gate`` picks the gate, ``judge_answer`` holds
the answer to it); audio and signal files go through ``check_raw``; a token classifier's entities are
held to transformers' pipeline by ``check_entities``, a segmentation map to the processor's by
``check_segmentation``, detections to the object-detection pipeline by ``check_detection``, a
zero-shot bundle's labels and scores to the zero-shot pipeline by ``check_zero_shot``.
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

        if state.loaded.hints.task == "text-generation":
            return _check_generation(state)
        if state.loaded.hints.task == "automatic-speech-recognition":
            from torch2ort.pipeline.check_speech import check_speech

            return check_speech(state)
        if state.raw_files:
            if not state.loaded.hints.media:  # audio/signal files through the user's steps and module
                from torch2ort.pipeline.check_raw import check_raw_files

                return check_raw_files(state)
            results, info = bundle_predict(state.bundle_dir, state.raw_files[0],  # an hf image/audio folder
                                           options=state.loaded.hints.options)
            raw_input = f"the raw file {Path(state.raw_files[0]).name}"
        elif state.texts is not None:
            results, info = bundle_predict(state.bundle_dir, state.texts)
            raw_input = f"{len(state.texts)} raw texts"
        else:
            results, info = bundle_predict(state.bundle_dir, first_feed(state))
            raw_input = "the first real sample" if state.samples else "a synthetic input"
        mask = None
        outputs = {name: OutputCheck.from_dict(judge_answer(key, results.get(key), ref, state.check_gate(name, ref),
                                                            how).to_dict())
                   for name, key, ref, how in _pairs(state)}
        if state.raw_files and state.loaded.hints.task == "object-detection":
            from torch2ort.pipeline.check_detection import check_detection

            outputs["detections"] = check_detection(state, info["structured"].get("detections"), state.raw_files[0])
        if state.raw_files and state.loaded.hints.task == "semantic-segmentation":
            from torch2ort.pipeline.check_segmentation import check_segmentation

            outputs["segmentation"] = check_segmentation(state, results.get("segmentation"), state.raw_files[0])
            if results.get("segmentation") is not None:  # the report shows the bundle's map as a colour mask
                from torch2ort.runtime.masks import mask_data_uri

                mask = mask_data_uri(results["segmentation"][0])
        if state.raw_files and state.loaded.hints.task == "zero-shot-image-classification":
            from torch2ort.pipeline.check_zero_shot import check_zero_shot

            outputs["zero_shot"], imported = check_zero_shot(state)
            info["torch_imported"] = info["torch_imported"] or imported
        if state.texts is not None and state.loaded.hints.task == "token-classification":
            from torch2ort.pipeline.check_entities import check_entities

            entities, imported = check_entities(state)
            outputs |= entities
            info["torch_imported"] = info["torch_imported"] or imported
        state.evidence.check = CheckInfo(input=raw_input, torch_imported=info["torch_imported"],
                                         results=list(info["results"]), outputs=outputs, mask=mask)
        bad = [f"{k}: {v.reason}" for k, v in outputs.items() if not v.passed]
        if info["torch_imported"]:
            bad.append("torch was imported while predicting")
        if bad:
            raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
        return (f"bundle.predict({raw_input}) in a torch-blocked process: "
                + ", ".join(f"{k} {v.metric} {_metric(v.value)}" for k, v in outputs.items()))


def _check_generation(state: MigrationState) -> str:
    """The packed bundle's own ``generate`` on the prompts, batched, in a torch-blocked process, against
    transformers' ``generate(do_sample=False)`` on the same batch: the tokens must be identical."""
    from torch2ort.parity.generation import NEW_TOKENS, encode_prompts, first_divergence
    from torch2ort.pipeline.checks import bundle_generate
    from torch2ort.sources.hf_decoder import reference_greedy

    got, info = bundle_generate(state.bundle_dir, state.texts, NEW_TOKENS)
    want = reference_greedy(state.loaded, encode_prompts(state.loaded.hints.tokenizer, state.texts), NEW_TOKENS)
    divergences = [(i, first_divergence(w, g)) for i, (w, g) in enumerate(zip(want, got["token_ids"]))]
    lines = [f"prompt {i}: first divergence at step {d['step']} (transformers {d['expected']}, bundle {d['got']})"
             for i, d in divergences if d is not None]
    if state.final == state.onnx:  # the fp32 export: every token identical
        same = sum(d is None for _, d in divergences) / max(1, len(divergences))
        bad, metric, gate = lines, "greedy tokens identical", "identical"
    else:  # a quantised variant: the greedy gate it was chosen under, against transformers itself
        from torch2ort.parity.generation_gates import MIN_GREEDY

        same = sum((d["step"] if d else len(w)) / max(1, len(w)) for (_, d), w in zip(divergences, want)) / len(want)
        bad = [] if same >= MIN_GREEDY else [f"greedy agreement {same:.2f} < {MIN_GREEDY}: " + "; ".join(lines)]
        metric, gate = "greedy agreement (share of tokens before the first divergence)", f">= {MIN_GREEDY}"
    reason = "; ".join(bad) if bad else (f"identical on {len(want)} prompts" if not lines else "; ".join(lines))
    outputs = {"token_ids": OutputCheck(metric=metric, value=same, passed=not bad,
                                        reference="transformers generate(do_sample=False), same batch",
                                        reason=reason, gate=gate)}
    state.evidence.check = CheckInfo(input=f"{len(state.texts)} prompts, batched",
                                     torch_imported=info["torch_imported"], results=["token_ids", "text"],
                                     outputs=outputs)
    if info["torch_imported"]:
        bad.append("torch was imported while generating")
    if bad:
        raise ParityError("the packed bundle fails its end-to-end check: " + "; ".join(bad))
    return (f"bundle.generate({len(state.texts)} prompts, {NEW_TOKENS} new tokens) in a torch-blocked process: "
            f"{metric} {same:.2f} against transformers")


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
        if any(s.get("stride") for s in state.loaded.hints.preprocess):
            return  # a text is several windows: the entities check holds the bundle end to end
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
