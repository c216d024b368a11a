"""Speech recognition over a Whisper bundle (encoder + cached decoder): numpy and onnxruntime only.

The bundle's main model is the encoder: ``input_features`` -> ``last_hidden_state`` and the
cross-attention keys and values of every decoder layer. ``decoder.onnx`` (the manifest's ``speech``
section) takes ``input_ids``, the self-attention past and those cross keys/values, and returns
``logits`` and ``present.*``. One call feeds the forced prefix (start, language, task,
no-timestamps); each step then feeds one token per row. As in ``generate.py``, the cache stays in
OrtValues bound through IOBinding: each step's ``present`` is the next step's past, and the cross
keys/values are bound once per clip, never copied through numpy again.

Tokens are chosen as transformers' Whisper ``generate`` chooses them: the suppress list at every
step, the begin-suppress list at the first, then greedy (or ``runtime/sampling.py``'s processors).

Example::

    bundle = Bundle.load("whisper-bundle")
    bundle.predict("speech.wav")["text"]            # as pipeline("automatic-speech-recognition") gives it
    out = bundle.transcribe(["a.wav", "b.wav"])      # a Generation: .token_ids, .text, .finish_reason
"""

from __future__ import annotations

from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, describe
from torch2ort.runtime.generate import Generation, load_tokenizer, run_bound
from torch2ort.runtime.sampling import SamplingOptions, TokenChooser


class Transcriber:
    """Drives the bundle's encoder session and its decoder session; made by ``Bundle.transcriber``."""

    def __init__(self, session, tokenizer, info: dict[str, Any], bundle=None) -> None:
        self.session, self.tokenizer, self.info, self.bundle = session, tokenizer, info, bundle
        self.layers = int(info["layers"])
        self.prefix = [int(t) for t in info["prefix"]]
        self.eos = [int(e) for e in info.get("eos_token_id") or []]
        self.pad = int(info.get("pad_token_id", self.eos[0] if self.eos else 0))
        self.suppress = [int(t) for t in info.get("suppress_tokens") or []]
        self.begin_suppress = [int(t) for t in info.get("begin_suppress_tokens") or []]
        self.max_new = int(info["max_new_tokens"])
        self.past_names = [f"past_key_values.{i}.{k}" for i in range(self.layers) for k in ("key", "value")]
        self.cross_names = [f"cross_attention.{i}.{k}" for i in range(self.layers) for k in ("key", "value")]
        self.output_names = ["logits"] + [f"present.{i}.{k}" for i in range(self.layers) for k in ("key", "value")]
        declared = {i.name for i in session.get_inputs()}
        missing = [n for n in ["input_ids", *self.past_names, *self.cross_names] if n not in declared]
        if bundle is not None:
            missing += [n for n in self.cross_names if n not in {o["name"] for o in bundle.outputs}]
        if missing:
            raise BundleError(f"the bundle's speech section does not fit its graphs (missing {missing[:4]})")

    @classmethod
    def of_bundle(cls, bundle, info: dict[str, Any]) -> Transcriber:
        """The decoder session beside the bundle's encoder session (same providers and threads), and the tokenizer."""
        import onnxruntime as ort

        from torch2ort.runtime import manifest as mf

        tokenizer = load_tokenizer(mf.inside(bundle.path, info.get("tokenizer", "tokenizer.json")))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = bundle.session.get_session_options().intra_op_num_threads
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(mf.inside(bundle.path, info["decoder"])), opts,
                                           providers=bundle.providers)
        except Exception as exc:
            raise BundleError(f"onnxruntime could not load the decoder {info['decoder']}: {describe(exc)}") from None
        return cls(session, tokenizer, info, bundle)

    def transcribe(self, audio, *, max_new_tokens: int | None = None, **sampling) -> Generation:
        """New tokens and text per clip (a path, bytes, an array, or a list of them)."""
        if self.bundle is None:
            raise PredictInputError("this Transcriber has no bundle to preprocess audio with; call decode()")
        limit = self._limit(max_new_tokens)
        options = SamplingOptions(**sampling)
        return self.decode(self.bundle.run(self.bundle._speech_feed(audio)), limit, options)

    def decode(self, encoded: dict[str, np.ndarray], max_new_tokens: int | None = None,
               options: SamplingOptions | None = None) -> Generation:
        """The decoder loop over the encoder's outputs (``cross_attention.*``)."""
        import onnxruntime as ort

        limit = self._limit(max_new_tokens)
        options = options or SamplingOptions()
        cross = {n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(encoded[n])) for n in self.cross_names}
        batch = int(encoded[self.cross_names[0]].shape[0])
        heads, dim = int(self.info["heads"]), int(self.info["head_dim"])
        empty = np.zeros((batch, heads, 0, dim), dtype=np.float32)
        past = {n: ort.OrtValue.ortvalue_from_numpy(empty) for n in self.past_names}
        ids = np.array([self.prefix] * batch, dtype=np.int64)
        chooser = TokenChooser(options, self.eos)
        binding = self.session.io_binding()
        rows: list[list[int]] = [[] for _ in range(batch)]
        done: list[str | None] = [None] * batch
        for step in range(limit):
            logits, past = self._run(binding, ids, past, cross)
            if self.suppress:
                logits[:, self.suppress] = -np.inf
            if step == 0 and self.begin_suppress:
                logits[:, self.begin_suppress] = -np.inf
            chosen = chooser(logits, [self.prefix + r for r in rows], step)
            tokens = []
            for i in range(batch):
                if done[i]:
                    tokens.append(self.pad)
                    continue
                token = int(chosen[i])
                rows[i].append(token)
                tokens.append(token)
                if token in self.eos:
                    done[i] = "eos"
            if all(done):
                break
            ids = np.array(tokens, dtype=np.int64)[:, None]  # finished rows feed the pad token, as transformers
        texts = [self.tokenizer.decode(r, skip_special_tokens=True) if self.tokenizer else "" for r in rows]
        return Generation(rows, texts, [d or "length" for d in done], [len(self.prefix)] * batch)

    def _limit(self, max_new_tokens: int | None) -> int:
        most = int(self.info["max_target_positions"]) - len(self.prefix)
        if max_new_tokens is None:
            return self.max_new
        whole = isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
        if not whole or not 1 <= max_new_tokens <= most:
            raise PredictInputError(f"max_new_tokens must be a whole number from 1 to {most} (the decoder's "
                                    f"{self.info['max_target_positions']} positions less the prefix), "
                                    f"got {max_new_tokens!r}")
        return max_new_tokens

    def _run(self, binding, ids: np.ndarray, past: dict, cross: dict) -> tuple[np.ndarray, dict]:
        logits, present = run_bound(self.session, binding, {"input_ids": ids}, {**past, **cross}, self.output_names,
                                    self.past_names)
        return logits.copy(), present
