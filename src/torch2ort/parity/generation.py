"""Parity for a decoder with a KV cache: logits step by step, then greedy tokens, against transformers.

Three checks, each against transformers on the same prompts:

1. the logits of the prefill (every real position: the graph's ``logits_to_keep`` is left at its default,
   all) and of ``steps`` cached decode steps, both sides
   fed transformers' own greedy tokens (teacher forcing), so an error in the cache update shows at
   the first step that reads it;
2. greedy tokens of the bundle's own generation loop (``runtime/generate.py``) identical to
   ``model.generate(do_sample=False)`` for ``new_tokens`` tokens, each prompt alone and all batched
   (left padding);
3. the first divergence, by prompt, step and token, when there is one.

The logits become an ordinary ``RunResults`` (cases ``prefill``, ``decode-1``, …) judged by
``compare``; a greedy divergence is an error of that report, so ``bool(report)`` holds all three.
The smallest top-1 margin is recorded too: where it is below the logits' error, equal greedy tokens
would prove little (near-uniform random weights), and the report says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from torch2ort.errors import UsageError, describe
from torch2ort.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, RunRecord, RunResults, compare

if TYPE_CHECKING:
    from torch2ort.sources import LoadedModel

STEPS = 16        # cached decode steps whose logits are compared
NEW_TOKENS = 32   # greedy tokens compared per prompt


def encode_prompts(tokenizer_file: str | Path, prompts: list[str]) -> list[list[int]]:
    from torch2ort.runtime.generate import load_tokenizer

    tok = load_tokenizer(Path(tokenizer_file))
    return [e.ids for e in tok.encode_batch(list(prompts))]


def verify_decoder(loaded: LoadedModel, onnx_path: str | Path, *, prompts: list[str] | None = None,
                   steps: int = STEPS, new_tokens: int = NEW_TOKENS, atol: float = DEFAULT_ATOL,
                   rtol: float = DEFAULT_RTOL, providers: list[str] | None = None):
    """The decoder's verification as a ``VerifyResult`` (``.generation`` holds the greedy check)."""
    import onnxruntime as ort

    from torch2ort.parity.verify import VerifyResult
    from torch2ort.runtime.generate import Generator
    from torch2ort.sources.hf_decoder import left_pad, reference_greedy, reference_steps

    start = time.perf_counter()
    if not Path(onnx_path).is_file():
        raise UsageError(f"ONNX file not found: {onnx_path}")
    gen = loaded.hints.generation
    prompts = list(prompts or loaded.hints.texts or [])
    prompt_ids = encode_prompts(loaded.hints.tokenizer, prompts)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # not ORT's warning that an overridable initializer (logits_to_keep) is not folded
    try:
        session = ort.InferenceSession(str(onnx_path), opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:
        raise UsageError(f"onnxruntime cannot load {onnx_path}: {describe(exc)}") from None

    # 1. logits: prefill and cached decode steps, teacher-forced with transformers' greedy tokens
    ref = reference_steps(loaded, prompt_ids, steps)
    ids, mask, positions = left_pad(prompt_ids, gen["pad_token_id"])
    names = [f"past_key_values.{i}.{k}" for i in range(gen["layers"]) for k in ("key", "value")]
    past = {n: np.zeros((len(prompt_ids), gen["kv_heads"], 0, gen["head_dim"]), np.float32) for n in names}
    real = mask.astype(bool)
    results = RunResults()
    cases = []
    feed_ids = ids
    for step in range(steps + 1):
        feed = {"input_ids": feed_ids, "attention_mask": mask, "position_ids": positions}
        feed = {k: v for k, v in feed.items() if k in gen["inputs"]}
        outs = session.run(None, {**feed, **past})
        past = dict(zip(names, outs[1:]))
        name = "prefill" if step == 0 else f"decode-{step}"
        got, want = (outs[0][real], ref["prefill"][real]) if step == 0 else (outs[0][:, -1], ref["decode"][step - 1])
        results.records += [RunRecord("torch", name, "prefill" if step == 0 else "decode", {"logits": want}),
                            RunRecord("onnxruntime", name, "prefill" if step == 0 else "decode", {"logits": got})]
        cases.append({"name": name, "kind": "prefill" if step == 0 else "decode",
                      "sizes": {"batch": len(prompt_ids), "past_sequence": int(mask.shape[1]) - feed_ids.shape[1]},
                      "shapes": {k: list(v.shape) for k, v in feed.items()}})
        if step == steps:
            break
        feed_ids = ref["tokens"][step]
        mask = np.concatenate([mask, np.ones_like(feed_ids)], axis=1)
        positions = positions[:, -1:] + 1
    report = compare(results, "torch", atol, rtol)

    # 2. greedy tokens: the bundle's own loop against model.generate, each prompt alone and all batched
    generator = Generator(session, None, gen)
    runs = [("alone", [i]) for i in range(len(prompt_ids))] + [("batched", list(range(len(prompt_ids))))]
    greedy = []
    for how, rows in runs:
        want = reference_greedy(loaded, [prompt_ids[i] for i in rows], new_tokens)
        got = generator.generate_ids([prompt_ids[i] for i in rows], new_tokens)
        for i, w, g in zip(rows, want, got):
            div = first_divergence(w, g)
            greedy.append({"prompt": i, "how": how, "tokens": len(w), "identical": div is None, "divergence": div})
            if div is not None:
                report.errors.append(
                    f"greedy tokens differ from transformers generate on prompt {i} ({how}) {prompts[i][:30]!r}: "
                    f"first at step {div['step']}: transformers {div['expected']}, onnxruntime {div['got']}")
    margin = min_margin([ref["prefill"][real][-1:]] + ref["decode"])
    # fp32 keys and values of every layer, for one token of one sequence: what the cache grows by per token
    kv_bytes = 2 * gen["layers"] * gen["kv_heads"] * gen["head_dim"] * 4
    generation = {"prompts": prompts, "steps": steps, "new_tokens": new_tokens, "greedy": greedy,
                  "kv_cache_bytes_per_token": kv_bytes,
                  "identical": all(g["identical"] for g in greedy), "min_top1_margin": margin,
                  "max_logit_error": report.max_abs()}
    if margin <= report.max_abs():
        generation["note"] = (f"the smallest top-1 margin ({margin:.2e}) is within the logits' error "
                              f"({report.max_abs():.2e}): equal greedy tokens prove little on these weights")
    result = VerifyResult(report, results, cases, time.perf_counter() - start,
                          {"onnxruntime": {"version": ort.__version__, "providers": session.get_providers()}})
    result.generation = generation
    return result


def first_divergence(expected: list[int], got: list[int]) -> dict | None:
    """The first step where two token sequences differ (a missing token counts as ``None``)."""
    for step in range(max(len(expected), len(got))):
        e = expected[step] if step < len(expected) else None
        g = got[step] if step < len(got) else None
        if e != g:
            return {"step": step, "expected": e, "got": g}
    return None


def min_margin(logits: list[np.ndarray]) -> float:
    """The smallest gap between the best and second-best logit over the rows given."""
    gaps = []
    for arr in logits:
        rows = arr.reshape(-1, arr.shape[-1])
        top2 = np.partition(rows, -2, axis=-1)[:, -2:]
        gaps.append(float(np.min(top2[:, 1] - top2[:, 0])))
    return min(gaps) if gaps else float("nan")
