"""Parity for Whisper's two graphs: encoder outputs, per-step decoder logits, greedy tokens, against transformers.

1. the encoder's ``last_hidden_state`` and cross-attention keys/values, on the features of each clip;
2. the decoder's logits for the forced prefix and ``steps`` cached steps, both sides fed transformers'
   greedy tokens (teacher forcing), the cross keys/values taken from the ONNX encoder, so a broken cache
   or cross-attention input shows at the step that reads it;
3. greedy tokens of the runtime's own loop (``runtime/transcribe.py``) identical to
   ``model.generate(input_features)``, each clip alone and all batched, with the first divergence.

Like ``parity/generation.py``, the logits become a ``RunResults`` judged by ``compare``; a greedy
divergence is an error of that report, and the smallest top-1 margin is recorded beside the error.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from torch2ort.errors import UsageError, describe
from torch2ort.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, RunRecord, RunResults, compare
from torch2ort.parity.generation import first_divergence, min_margin

if TYPE_CHECKING:
    from torch2ort.sources import LoadedModel

STEPS = 16        # cached decode steps whose logits are compared
NEW_TOKENS = 32   # greedy tokens compared per clip (fewer when the model's limit is lower, or at EOS)


def clip_waves(files: list[str]) -> list[np.ndarray]:
    """Each raw file decoded and resampled to 16 kHz mono by the runtime's own ``load_audio``."""
    from torch2ort.runtime.processors.audio import load_audio

    return [load_audio(str(f), None, sample_rate=16000) for f in files]


def verify_speech(loaded: LoadedModel, onnx_path: str | Path, files: list[str], *, steps: int = STEPS,
                  new_tokens: int = NEW_TOKENS, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                  providers: list[str] | None = None):
    """The Whisper graphs' verification as a ``VerifyResult`` (``.generation`` holds the greedy check)."""
    import onnxruntime as ort

    from torch2ort.parity.verify import VerifyResult
    from torch2ort.runtime.transcribe import Transcriber
    from torch2ort.sources.hf_speech import reference_features, reference_greedy, reference_steps

    start = time.perf_counter()
    info = loaded.hints.speech
    decoder_path = Path(onnx_path).with_name(info["decoder"])
    for p in (Path(onnx_path), decoder_path):
        if not p.is_file():
            raise UsageError(f"ONNX file not found: {p}")
    if not files:
        raise UsageError("a speech-recognition model is verified on audio files; none were given")
    providers = providers or ["CPUExecutionProvider"]
    try:
        encoder = ort.InferenceSession(str(onnx_path), providers=providers)
        decoder = ort.InferenceSession(str(decoder_path), providers=providers)
    except Exception as exc:
        raise UsageError(f"onnxruntime cannot load the Whisper graphs: {describe(exc)}") from None
    features = reference_features(loaded.hints.model_dir, clip_waves(files))
    n = info["layers"]
    past_names = [f"past_key_values.{i}.{k}" for i in range(n) for k in ("key", "value")]
    cross_names = [f"cross_attention.{i}.{k}" for i in range(n) for k in ("key", "value")]
    new_tokens = min(new_tokens, info["max_new_tokens"])
    steps = min(steps, new_tokens - 1)

    results, cases = RunResults(), []

    def record(name: str, kind: str, want: dict, got: dict, shapes: dict) -> None:
        results.records.extend([RunRecord("torch", name, kind, want), RunRecord("onnxruntime", name, kind, got)])
        cases.append({"name": name, "kind": kind, "sizes": {"batch": len(features)}, "shapes": shapes})

    # 1. the encoder, on every clip at once
    enc_out = dict(zip([o.name for o in encoder.get_outputs()], encoder.run(None, {"input_features": features})))
    ref = reference_steps(loaded, features, steps)
    with_torch = _torch_encoder(loaded, features)
    record("encoder", "encoder", with_torch, {k: enc_out[k] for k in with_torch},
           {"input_features": list(features.shape)})
    # 2. decoder logits step by step, teacher-forced, from the ONNX encoder's cross keys/values
    cross = {k: enc_out[k] for k in cross_names}
    heads, dim = info["heads"], info["head_dim"]
    past = {k: np.zeros((len(features), heads, 0, dim), np.float32) for k in past_names}
    ids = np.array([info["prefix"]] * len(features), np.int64)
    for step in range(steps + 1):
        outs = decoder.run(None, {"input_ids": ids, **past, **cross})
        past = dict(zip(past_names, outs[1:]))
        name = "prefix" if step == 0 else f"decode-{step}"
        record(name, "decode", {"logits": ref["logits"][step]}, {"logits": outs[0][:, -1]},
               {"input_ids": list(ids.shape)})
        ids = ref["tokens"][step].astype(np.int64)
    report = compare(results, "torch", atol, rtol)

    # 3. greedy tokens: the runtime's loop against model.generate, each clip alone and all batched
    transcriber = Transcriber(decoder, None, info)
    runs = [("alone", [i]) for i in range(len(features))] + [("batched", list(range(len(features))))]
    greedy = []
    for how, rows in runs:
        want = reference_greedy(loaded, features[rows], new_tokens)
        encoded = {k: v[rows] for k, v in enc_out.items()}
        got = transcriber.decode(encoded, new_tokens).token_ids
        for i, w, g in zip(rows, want, got):
            div = first_divergence(w, g)
            greedy.append({"prompt": i, "how": how, "tokens": len(w), "identical": div is None, "divergence": div})
            if div is not None:
                report.errors.append(
                    f"greedy tokens differ from transformers generate on clip {i} ({how}) {Path(files[i]).name}: "
                    f"first at step {div['step']}: transformers {div['expected']}, onnxruntime {div['got']}")
    margin = min_margin(ref["logits"])
    generation = {"prompts": [Path(f).name for f in files], "steps": steps, "new_tokens": new_tokens,
                  "greedy": greedy, "identical": all(g["identical"] for g in greedy), "min_top1_margin": margin,
                  "max_logit_error": max((c.max_abs for c in report.comparisons if c.output == "logits"), default=0.0),
                  "prefix": info["prefix"],
                  "kv_cache_bytes_per_token": 2 * n * heads * dim * 4}
    if margin <= generation["max_logit_error"]:
        generation["note"] = (f"the smallest top-1 margin ({margin:.2e}) is within the logits' error: equal greedy "
                              "tokens prove little on these weights")
    result = VerifyResult(report, results, cases, time.perf_counter() - start,
                          {"onnxruntime": {"version": ort.__version__, "providers": decoder.get_providers()}})
    result.generation = generation
    return result


def _torch_encoder(loaded: LoadedModel, features: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    names = ["last_hidden_state"] + [f"cross_attention.{i}.{k}" for i in range(loaded.hints.speech["layers"])
                                     for k in ("key", "value")]
    with torch.inference_mode():
        outs = loaded.module(torch.from_numpy(features))
    return {k: v.float().numpy() for k, v in zip(names, outs)}
