"""Whisper speech recognition from ``hf:DIR``: an encoder graph and a cached decoder graph, and transformers' side.

A ``…ForConditionalGeneration`` folder with a Whisper feature extractor is ``automatic-speech-recognition``.
It becomes two graphs:

- the **encoder** (``model.onnx``): ``input_features`` → ``last_hidden_state`` and, per decoder layer, the
  cross-attention keys and values ``cross_attention.{i}.key/value`` (each decoder layer's ``k_proj`` /
  ``v_proj`` of the encoder output), computed once per clip;
- the **decoder** (``decoder.onnx``): ``input_ids``, ``past_key_values.{i}.key/value`` (self-attention) and
  ``cross_attention.{i}.key/value`` → ``logits`` and ``present.{i}.key/value``. Batch, sequence and past are
  dynamic, so the same graph runs the forced prefix and every cached step. The cross keys and values go
  in as they are: no decoder step projects the 1,500 encoder frames again.

The prefix (start, language, task, no-timestamps), the suppress lists and the length limit are read
from the folder's generation config the way transformers' Whisper ``generate`` reads them, and go into
the bundle's ``speech`` section (``runtime/transcribe.py`` drives the graphs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel, ModelHints
from torch2ort.sources.hf_text import read_json

TASK = "automatic-speech-recognition"
DECODER_FILE = "decoder.onnx"
PIPELINE_MAX_NEW_TOKENS = 256  # transformers 5's ASR pipeline default (_default_generation_config)


def is_speech(path: Path) -> bool:
    archs = read_json(path / "config.json", "config").get("architectures") or []
    return any(a.startswith("Whisper") and a.endswith("ForConditionalGeneration") for a in archs)


def load(source: str, path: Path, from_pretrained, auto_detected: bool) -> LoadedModel:
    from torch2ort.sources.hf_media import audio_preprocess
    from torch2ort.spec import InputSpec

    tok = path / "tokenizer.json"
    if not tok.is_file():
        raise SourceError(f"{path}: tokenizer.json is missing (save the WhisperProcessor with the model)")
    assets: dict[str, np.ndarray] = {}
    name, steps, notes, dims, _ = audio_preprocess(path, assets)
    if name != "input_features":
        raise SourceError(f"{path}: speech recognition is translated for Whisper's feature extractor only")
    # one Whisper window (30 s for the released models): the encoder's input; the runtime cuts longer audio into
    # chunks of at most this (runtime/longform.py), as pipeline(chunk_length_s=...) does
    window = next(s for s in steps if s["op"] == "log_mel")["n_samples"] / steps[0]["sample_rate"]
    steps[0]["max_seconds"] = window
    model = from_pretrained(path, "AutoModelForSpeechSeq2Seq")
    model.eval()
    config = model.config
    layers, heads = int(config.decoder_layers), int(config.decoder_attention_heads)
    head_dim = int(config.d_model) // heads
    frames = int(config.max_source_positions)
    cross = [f"cross_attention.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    speech = speech_info(path, model, layers, heads, head_dim, frames)
    speech["max_seconds"] = window
    speech["transcript"] = transcript_facts(path, frames)
    hints = ModelHints(task=TASK, model_dir=str(path), preprocess=steps, media="audio", assets=assets,
                       tokenizer=str(tok), sweep={"batch": [1, 2, 3]})
    hints.spec = InputSpec.from_cli([f"input_features:{dims}:float32"], ["last_hidden_state", *cross])
    hints.speech = speech
    notes = [f"loaded {path} with transformers AutoModelForSpeechSeq2Seq (task {TASK}"
             + (", auto-detected)" if auto_detected else ")"), *notes,
             f"two graphs: the encoder (input_features -> last_hidden_state and the cross-attention keys/values of "
             f"{layers} decoder layers, once per clip) and {DECODER_FILE} (input_ids, past_key_values.0..{layers - 1}"
             f".key/value and cross_attention.* in; logits and present.* out; batch, sequence and past dynamic)",
             f"prefix {speech['prefix']}, EOS {speech['eos_token_id']}, at most {speech['max_new_tokens']} new "
             f"tokens; audio over {window:g} s (one window) is transcribed in overlapping chunks merged as "
             f"pipeline(chunk_length_s={window:g}) merges them"]
    return LoadedModel(encoder_wrapper()(model, layers), source, "hf", notes, hints)


def speech_info(path: Path, model, layers: int, heads: int, head_dim: int, frames: int) -> dict[str, Any]:
    """What transformers' Whisper ``generate`` would do for a clip, from the folder's generation config."""
    g = model.generation_config
    config = model.config
    start = g.decoder_start_token_id
    prefix = [int(start)]
    language, task = getattr(g, "language", None), getattr(g, "task", None)
    lang_to_id, task_to_id = getattr(g, "lang_to_id", None) or {}, getattr(g, "task_to_id", None) or {}
    if language is not None:
        key = language if language in lang_to_id else f"<|{language}|>"
        if key not in lang_to_id:
            raise SourceError(f"{path}: generation_config language {language!r} is not in its lang_to_id")
        prefix.append(int(lang_to_id[key]))
    elif getattr(g, "forced_decoder_ids", None):
        forced = sorted(g.forced_decoder_ids)
        if any(t is None for _, t in forced):
            raise SourceError(f"{path}: the generation config leaves the language open (language detection); "
                              "torch2ort transcribes with a fixed language: set generation_config.language")
        prefix += [int(t) for _, t in forced]
    elif lang_to_id and getattr(g, "is_multilingual", False):
        raise SourceError(f"{path}: the generation config leaves the language open (language detection); "
                          "torch2ort transcribes with a fixed language: set generation_config.language")
    if task is not None:
        if task not in task_to_id:
            raise SourceError(f"{path}: generation_config task {task!r} is not in its task_to_id")
        ids = set(task_to_id.values())
        prefix = [t for t in prefix if t not in ids] + [int(task_to_id[task])]
    elif language is not None and "transcribe" in task_to_id and not set(prefix) & set(task_to_id.values()):
        prefix.append(int(task_to_id["transcribe"]))
    nots = getattr(g, "no_timestamps_token_id", None)
    if nots is not None and prefix[-1] != nots:
        prefix.append(int(nots))
    eos = g.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    targets = int(config.max_target_positions)
    # Whisper's generate: max_length grows by the prefix, capped at max_target_positions; without max_new_tokens
    # the new tokens are what is left (transformers' _set_max_new_tokens_and_length, short-form)
    if (g.num_beams or 1) > 1:
        raise SourceError(f"{path}: the generation config asks for beam search (num_beams {g.num_beams}); torch2ort's "
                          "runtime decodes greedily: set num_beams=1")
    # pipeline("automatic-speech-recognition") asks for max_new_tokens=256 unless the folder sets it, and Whisper's
    # generate caps it at max_target_positions less the prefix (_set_max_new_tokens_and_length)
    new = min(int(g.max_new_tokens if g.max_new_tokens is not None else PIPELINE_MAX_NEW_TOKENS),
              targets - len(prefix))
    return {"decoder": DECODER_FILE, "layers": layers, "heads": heads, "head_dim": head_dim,
            "encoder_frames": frames, "prefix": prefix, "eos_token_id": [int(e) for e in eos],
            "pad_token_id": int(g.pad_token_id if g.pad_token_id is not None else (eos or [0])[0]),
            "suppress_tokens": [int(t) for t in (getattr(g, "suppress_tokens", None) or [])],
            "begin_suppress_tokens": [int(t) for t in (getattr(g, "begin_suppress_tokens", None) or [])],
            "max_new_tokens": int(new), "max_target_positions": targets,
            "num_beams_set": g.num_beams is not None}


def transcript_facts(path: Path, encoder_positions: int) -> dict[str, Any]:
    """What the pipeline's ``_decode_asr`` reads from the tokenizer and the model, for ``runtime/longform.py``:
    the special ids, which of them are languages, where timestamps begin, seconds per timestamp, and the
    prompt and start tokens it strips a sequence to (``encoder_positions``: the model's max_source_positions)."""
    import transformers
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from torch2ort.sources.hf_media import load_extractor

    tok = transformers.AutoTokenizer.from_pretrained(str(path))
    fe = load_extractor(path)
    special = sorted({int(i) for i in tok.all_special_ids})
    languages = {str(i): LANGUAGES[tok.decode([i])[2:-2]] for i in special if tok.decode([i])[2:-2] in LANGUAGES}
    # transformers 5 skips the clean-up for BPE tokenizers (Whisper's) unless told to corrupt the output
    bpe = type(tok.backend_tokenizer.model).__name__ == "BPE" if hasattr(tok, "backend_tokenizer") else False
    forced = getattr(tok, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
    prompt = tok.convert_tokens_to_ids("<|startofprev|>")
    start = tok.convert_tokens_to_ids("<|startoftranscript|>")
    return {"special_ids": special, "languages": languages,
            "timestamp_begin": int(tok.convert_tokens_to_ids("<|notimestamps|>")) + 1,
            "time_precision": fe.chunk_length / encoder_positions,
            "sampling_rate": int(fe.sampling_rate),
            "prompt_token_id": None if prompt is None else int(prompt),
            "start_token_id": None if start is None else int(start),
            "clean_up": bool(getattr(tok, "clean_up_tokenization_spaces", False)) and (not bpe or bool(forced))}


def decoder_loaded(loaded: LoadedModel) -> LoadedModel:
    """The decoder graph's module and spec as a ``LoadedModel`` of its own, for ``export_onnx``."""
    from torch2ort.spec import InputSpec

    info, model = loaded.hints.speech, loaded.module.model
    n, h, d, f = info["layers"], info["heads"], info["head_dim"], info["encoder_frames"]
    vocab = int(model.config.vocab_size)
    names = [f"past_key_values.{i}.{k}" for i in range(n) for k in ("key", "value")]
    cross = [f"cross_attention.{i}.{k}" for i in range(n) for k in ("key", "value")]
    outputs = ["logits"] + [f"present.{i}.{k}" for i in range(n) for k in ("key", "value")]
    items = [f"input_ids:batch=2,sequence=3:int64:0..{vocab - 1}"]
    items += [f"{x}:batch=2,{h},past_sequence=5,{d}:float32" for x in names]
    items += [f"{x}:batch=2,{h},{f},{d}:float32" for x in cross]
    hints = ModelHints(task=TASK, spec=InputSpec.from_cli(items, outputs))
    return LoadedModel(decoder_wrapper()(model, n).eval(), loaded.source, "hf", [], hints)


_CLASSES: dict[str, Any] = {}


def encoder_wrapper():
    """``input_features`` -> (last_hidden_state, cross K/V per decoder layer); defined on first use (no torch here)."""
    if "Encoder" in _CLASSES:
        return _CLASSES["Encoder"]
    import torch

    class WhisperEncoderWithCross(torch.nn.Module):
        def __init__(self, model, layers: int) -> None:
            super().__init__()
            self.model, self.layers = model, layers

        def forward(self, input_features):
            hidden = self.model.model.encoder(input_features=input_features).last_hidden_state
            flat = [hidden]
            for layer in self.model.model.decoder.layers[:self.layers]:
                attn = layer.encoder_attn
                shape = (hidden.shape[0], -1, attn.num_heads, attn.head_dim)
                flat.append(attn.k_proj(hidden).view(shape).transpose(1, 2))
                flat.append(attn.v_proj(hidden).view(shape).transpose(1, 2))
            return tuple(flat)

    class WhisperDecoderWithPast(torch.nn.Module):
        """Self-attention past in, ``present`` out; the cross keys/values taken as given (``is_updated``)."""

        def __init__(self, model, layers: int) -> None:
            super().__init__()
            self.model, self.layers = model, layers

        def forward(self, input_ids, *flat):
            from transformers import DynamicCache, EncoderDecoderCache

            n = self.layers
            past, cross = flat[:2 * n], flat[2 * n:]
            config = self.model.config
            self_cache, cross_cache = DynamicCache(config=config), DynamicCache(config=config)
            for i in range(n):
                self_cache.update(past[2 * i], past[2 * i + 1], i)
                cross_cache.update(cross[2 * i], cross[2 * i + 1], i)
            cache = EncoderDecoderCache(self_cache, cross_cache)
            for i in range(n):
                cache.is_updated[i] = True  # the layers read the given cross K/V, never project the encoder again
            # the decoder layers take the cross-attention branch only when encoder states are given; these are
            # never read (the cache holds the keys and values), only their presence counts
            stand_in = cross[0][:, 0]
            out = self.model.model.decoder(input_ids=input_ids, encoder_hidden_states=stand_in, cache=cache,
                                           use_cache=True)
            flat_out = [self.model.proj_out(out.last_hidden_state)]
            for layer in out.past_key_values.self_attention_cache.layers:
                flat_out += [layer.keys, layer.values]
            return tuple(flat_out)

    _CLASSES.update(Encoder=WhisperEncoderWithCross, Decoder=WhisperDecoderWithPast)
    return WhisperEncoderWithCross


def decoder_wrapper():
    encoder_wrapper()
    return _CLASSES["Decoder"]


# --- the reference side: transformers itself -------------------------------------------------------

def reference_features(model_dir: str | Path, waves: list[np.ndarray]) -> np.ndarray:
    """The folder's WhisperFeatureExtractor on 16 kHz mono waveforms: ``input_features`` [batch, mels, frames]."""
    from torch2ort.sources.hf_media import load_extractor

    fe = load_extractor(Path(model_dir))
    return np.asarray(fe(list(waves), sampling_rate=fe.sampling_rate, return_tensors="np").input_features, np.float32)


def reference_steps(loaded: LoadedModel, features: np.ndarray, steps: int) -> dict:
    """transformers: the prefix, then ``steps`` cached steps fed its own greedy tokens; numpy logits per step."""
    import torch

    model, info = loaded.module.model, loaded.hints.speech
    ids = torch.tensor([info["prefix"]] * len(features))
    out: dict[str, Any] = {"tokens": [], "logits": []}
    with torch.inference_mode():
        enc = model.model.encoder(input_features=torch.from_numpy(features))
        res = model(encoder_outputs=enc, decoder_input_ids=ids, use_cache=True)
        for step in range(steps + 1):
            logits = res.logits[:, -1].float()
            out["logits"].append(logits.numpy())
            token = logits.argmax(-1, keepdim=True)
            out["tokens"].append(token.numpy())
            if step == steps:
                break
            res = model(encoder_outputs=enc, decoder_input_ids=token, cache=res.past_key_values,
                        use_cache=True)
        out["encoder"] = enc.last_hidden_state.numpy()
    return out


def reference_greedy(loaded: LoadedModel, features: np.ndarray, new_tokens: int | None = None) -> list[list[int]]:
    """``model.generate(input_features)``: each row's new tokens, up to and with its EOS."""
    import torch

    model, info = loaded.module.model, loaded.hints.speech
    kwargs = {"max_new_tokens": new_tokens} if new_tokens else {}
    with torch.inference_mode():
        seqs = model.generate(torch.from_numpy(features), **kwargs)
    rows = []
    for row in seqs.tolist():
        if row[:len(info["prefix"])] == info["prefix"]:
            row = row[len(info["prefix"]):]
        cut = next((i + 1 for i, t in enumerate(row) if t in info["eos_token_id"]), len(row))
        rows.append(row[:cut])
    return rows


def reference_pipeline(model_dir: str | Path, waves: list[np.ndarray], greedy: bool = False,
                       **call: Any) -> list[str]:
    """``pipeline("automatic-speech-recognition")`` on the same folder, each 16 kHz waveform alone: the texts.

    ``greedy``: pass ``num_beams=1`` (for a folder whose generation config does not set num_beams, where the
    pipeline would search with 5 beams and the runtime does not). ``call``: options of the call (``chunk_length_s``,
    ``stride_length_s``, ``max_new_tokens``), passed as given."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    kwargs = {"generate_kwargs": {"num_beams": 1}} if greedy else {}
    pipe = transformers.pipeline(TASK, model=str(model_dir), device="cpu", **kwargs)
    # chunking with a seq2seq model logs an "experimental" warning per call; ignore_warning is the pipeline's own switch
    extra = {"ignore_warning": True, **call} if "chunk_length_s" in call else call
    return [pipe({"raw": np.asarray(w, np.float32), "sampling_rate": 16000}, **extra)["text"] for w in waves]
