"""The decoder side of ``hf:DIR``: a transformers ``AutoModelForCausalLM`` folder as one graph with a KV cache.

The exported graph takes ``input_ids``, ``attention_mask`` (past plus new tokens), ``position_ids``
(where the family's forward takes them) and ``past_key_values.{i}.key/value``, and returns
``logits`` and ``present.{i}.key/value``. Batch, sequence and past length are dynamic, so the same
graph runs the prefill (an empty past) and every cached decode step, as Optimum's decoders do.

What the runtime needs to drive that graph (layers, cache shape, EOS and pad ids) goes into
``ModelHints.generation`` and from there into the bundle's manifest.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel, ModelHints
from torch2ort.sources.hf_text import read_json

TASK = "text-generation"
ARCH_SUFFIXES = ("ForCausalLM", "LMHeadModel")
# The prompts generation is verified on when the user gives none: short and long, ASCII and not.
PROMPTS = [
    "def fibonacci(n):",
    "The quick brown fox",
    "import os\nimport sys\n\n",
    "Der schnelle braune Fuchs springt",
]
# The example sizes the graph is traced at; all of them are dynamic. The mask spans past + new tokens.
EXAMPLE = {"batch": 2, "sequence": 3, "past_sequence": 5}
MASK_DIM = "total_sequence"


def is_decoder(path: Path) -> bool:
    archs = read_json(path / "config.json", "config").get("architectures") or []
    return any(a.endswith(ARCH_SUFFIXES) for a in archs)


def load(source: str, path: Path, from_pretrained, auto_detected: bool) -> LoadedModel:
    from torch2ort.sources.hf_text import tokenizer_info

    tok, _ = tokenizer_info(path)
    model = from_pretrained(path, "AutoModelForCausalLM")
    model.eval()
    config = model.config
    uses_positions = "position_ids" in inspect.signature(model.forward).parameters
    kv_heads, head_dim, layers = cache_shape(model)
    names = ["input_ids", "attention_mask"] + (["position_ids"] if uses_positions else [])
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    outputs = ["logits"] + [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    module = decoder_wrapper()(model, names, layers).eval()
    gen = generation_info(path, config, names, layers, kv_heads, head_dim)
    notes = [f"loaded {path} with transformers AutoModelForCausalLM (task {TASK}"
             + (", auto-detected" if auto_detected else "") + ")",
             f"one decoder graph with a KV cache: {', '.join(names)} and past_key_values.0..{layers - 1}.key/value "
             f"in, logits and present.* out ({kv_heads} KV heads of {head_dim}); batch, sequence and past dynamic",
             f"EOS {gen['eos_token_id']}, pad {gen['pad_token_id']}"]
    hints = ModelHints(task=TASK, tokenizer=str(tok), model_dir=str(path), texts=list(PROMPTS),
                       spec=decoder_spec(config, names, past, outputs, kv_heads, head_dim))
    hints.generation = gen
    return LoadedModel(module, source, "hf", notes, hints)


def cache_shape(model) -> tuple[int, int, int]:
    """(KV heads, head dim, layers), read from the cache a one-token forward fills: no per-family config names."""
    import torch

    with torch.inference_mode():
        out = model(input_ids=torch.zeros((1, 1), dtype=torch.long), use_cache=True)
    cache = _cache_of(out)
    layers = getattr(cache, "layers", None)
    if not layers or getattr(layers[0], "keys", None) is None:
        raise SourceError(f"{type(model).__name__} does not fill transformers' standard DynamicCache; only decoders "
                          "with the standard cache are supported")
    keys = layers[0].keys
    return int(keys.shape[1]), int(keys.shape[3]), len(layers)


def generation_info(path: Path, config, names: list[str], layers: int, kv_heads: int, head_dim: int) -> dict:
    """What the runtime's generation loop needs, from config.json and generation_config.json."""
    gen_cfg = {}
    if (path / "generation_config.json").is_file():
        gen_cfg = read_json(path / "generation_config.json", "generation config")
    eos = gen_cfg.get("eos_token_id", getattr(config, "eos_token_id", None))
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    pad = gen_cfg.get("pad_token_id", getattr(config, "pad_token_id", None))
    if pad is None:
        pad = eos[0] if eos else 0  # transformers' generate pads with EOS when no pad token is set
    return {"inputs": names, "layers": layers, "kv_heads": kv_heads, "head_dim": head_dim, "dtype": "float32",
            "eos_token_id": [int(e) for e in eos], "pad_token_id": int(pad),
            "bos_token_id": gen_cfg.get("bos_token_id", getattr(config, "bos_token_id", None)),
            "max_positions": int(getattr(config, "max_position_embeddings", 0) or 0) or None} | chat_info(path)


SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def chat_info(path: Path) -> dict:
    """The folder's chat template and the special tokens it may name, as ``apply_chat_template`` finds them:
    ``chat_template.jinja`` (transformers 5 saves it apart), else ``tokenizer_config.json``'s ``chat_template``
    (a string, or a list of named templates: the ``default`` one). Empty when the folder has none."""
    cfg = read_json(path / "tokenizer_config.json", "tokenizer config") if (path / "tokenizer_config.json").is_file() \
        else {}
    template = cfg.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    if not isinstance(template, str) or not template.strip():
        return {}
    tokens = {}
    for key in SPECIAL_TOKENS:
        value = cfg.get(key)
        value = value.get("content") if isinstance(value, dict) else value
        if isinstance(value, str):
            tokens[key] = value
    return {"chat_template": template, "special_tokens": tokens}


def decoder_spec(config, names, past, outputs, kv_heads: int, head_dim: int):
    from torch2ort.spec import InputSpec

    vocab = int(config.vocab_size)
    b, s, p = (f"{k}={v}" for k, v in EXAMPLE.items())
    total = f"{MASK_DIM}={EXAMPLE['sequence'] + EXAMPLE['past_sequence']}"
    positions = int(getattr(config, "max_position_embeddings", 0) or 64)
    items = {"input_ids": f"input_ids:{b},{s}:int64:0..{vocab - 1}",
             "attention_mask": f"attention_mask:{b},{total}:int64:1..1",
             "position_ids": f"position_ids:{b},{s}:int64:0..{min(positions, 1 << 20) - 1}"}
    return InputSpec.from_cli([items[n] for n in names] + [f"{n}:{b},{kv_heads},{p},{head_dim}:float32"
                                                           for n in past], outputs)


_CLASSES: dict[str, Any] = {}
# transformers 5 renamed the forward's ``past_key_values`` to ``cache`` (the old name still works, with a warning)
_CACHE_KWARG = "cache"


def _cache_of(out):
    return out["cache"] if "cache" in out else out["past_key_values"]



def decoder_wrapper():
    """The nn.Module around the causal LM, defined on first use so this file imports without torch."""
    if "DecoderWithPast" in _CLASSES:
        return _CLASSES["DecoderWithPast"]
    import torch

    class DecoderWithPast(torch.nn.Module):
        """Flat tensors in and out: the past as ``past_key_values.{i}.key/value``, the cache as ``present.*``.

        The exported graph gets one more input, ``logits_to_keep`` (export/logits.py), with a default of 0 (logits
        at every position); the runtime's prefill feeds 1.

        The past length of the exported mask is ``past_sequence + sequence``, a relation torch.export
        infers (``torch2ort_derived_dims``); no Dim can spell a sum of two others.
        """

        torch2ort_derived_dims = (MASK_DIM,)
        torch2ort_logits_to_keep = "logits"  # the exporter adds the input that lets the prefill skip the head

        def __init__(self, model, names: list[str], layers: int) -> None:
            super().__init__()
            self.model, self.names, self.layers = model, list(names), layers

        def forward(self, *args):
            from transformers import DynamicCache

            named = dict(zip(self.names, args))
            past = args[len(self.names):]
            # full layers everywhere: a sliding-window layer would crop the past (the mask still applies the window)
            cache = DynamicCache()
            for i in range(self.layers):
                cache.update(past[2 * i], past[2 * i + 1], i)
            out = self.model(**named, **{_CACHE_KWARG: cache}, use_cache=True)
            flat = []
            for layer in _cache_of(out).layers:
                flat += [layer.keys, layer.values]
            return (out.logits, *flat)

    _CLASSES["DecoderWithPast"] = DecoderWithPast
    return DecoderWithPast


# --- the reference side of verification: transformers itself -----------------------------------

def left_pad(prompt_ids: list[list[int]], pad: int):
    """(input_ids, attention_mask, position_ids) as numpy, left-padded as transformers' generate pads a batch."""
    import numpy as np

    width = max(len(p) for p in prompt_ids)
    ids = np.full((len(prompt_ids), width), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p):] = p
        mask[i, width - len(p):] = 1
    positions = np.where(mask == 0, 1, np.cumsum(mask, axis=1) - 1)
    return ids, mask, positions


def reference_steps(loaded: LoadedModel, prompt_ids: list[list[int]], steps: int) -> dict:
    """transformers on the prefill, then ``steps`` cached decode steps fed its own greedy tokens.

    Returns numpy: ``prefill`` logits (batch, sequence, vocab), the ``mask`` of the prompt, and per decode
    step the token fed and the logits that came back (``tokens``, ``decode``).
    """
    import torch
    from transformers import DynamicCache

    model, gen = loaded.module.model, loaded.hints.generation
    ids, mask, positions = left_pad(prompt_ids, gen["pad_token_id"])
    uses_positions = "position_ids" in gen["inputs"]
    cache = DynamicCache(config=model.config)
    out: dict[str, Any] = {"mask": mask, "tokens": [], "decode": []}
    t_ids, t_mask, t_pos = (torch.from_numpy(a) for a in (ids, mask, positions))
    with torch.inference_mode():
        for step in range(steps + 1):
            kwargs = {"position_ids": t_pos} if uses_positions else {}
            logits = model(input_ids=t_ids, attention_mask=t_mask, **{_CACHE_KWARG: cache}, use_cache=True,
                           **kwargs).logits.float()
            if step == 0:
                out["prefill"] = logits.numpy()
            else:
                out["decode"].append(logits[:, -1].numpy())
            token = logits[:, -1].argmax(-1, keepdim=True)
            out["tokens"].append(token.numpy())
            t_ids = token
            t_mask = torch.cat([t_mask, torch.ones_like(token)], dim=1)
            t_pos = t_pos[:, -1:] + 1
    out["tokens"] = out["tokens"][:steps]
    return out


def reference_greedy(loaded: LoadedModel, prompt_ids: list[list[int]], new_tokens: int) -> list[list[int]]:
    """``model.generate(do_sample=False)`` on the left-padded batch: each row's new tokens, up to its EOS."""
    import torch

    model, gen = loaded.module.model, loaded.hints.generation
    ids, mask, _ = left_pad(prompt_ids, gen["pad_token_id"])
    eos = gen["eos_token_id"]
    with torch.inference_mode():
        seqs = model.generate(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens if not eos else 0,
                              do_sample=False, num_beams=1, repetition_penalty=1.0, pad_token_id=gen["pad_token_id"],
                              eos_token_id=eos or None)
    rows = []
    for row in seqs[:, ids.shape[1]:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        rows.append(row[:cut])
    return rows
