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

Audio longer than one window is cut into overlapping chunks and merged as the pipeline does with
``chunk_length_s`` (``runtime/longform.py``); the chunks of every clip in a call go through the encoder and
the decoder loop ``CHUNK_BATCH`` at a time.

Example::

    bundle = Bundle.load("whisper-bundle")
    bundle.predict("speech.wav")["text"]            # as pipeline("automatic-speech-recognition") gives it
    bundle.predict("talk.wav", chunk_length_s=30, stride_length_s=5)["text"]   # as the pipeline, same options
    out = bundle.transcribe(["a.wav", "b.wav"])      # a Generation: .token_ids, .text, .finish_reason
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, describe
from torch2ort.runtime.generate import Generation, load_tokenizer, run_bound
from torch2ort.runtime.longform import AsrVocab, Chunking, Span, transcript
from torch2ort.runtime.sampling import SamplingOptions, TokenChooser

CHUNK_BATCH = 8  # chunks per encoder call and decoder loop: a 2-minute recording at 30/5 s is 6 chunks, one call


@dataclass
class Transcript:
    """One recording's transcript: ``text`` as the pipeline gives it, the ``token_ids`` it decodes from (the
    chunks' text tokens merged; a single window's generated tokens, EOS included), and per chunk its span
    in samples and generated tokens."""

    text: str
    token_ids: list[int]
    spans: list[Span]
    chunk_tokens: list[list[int]]


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
        self.window_s = float(info.get("max_seconds") or 30.0)
        self.vocab = AsrVocab.from_info(info)
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
        return Generation(rows, self._texts(rows), [d or "length" for d in done], [len(self.prefix)] * batch)

    def chunking(self, chunk_length_s: Any = None, stride_length_s: Any = None) -> Chunking | None:
        """The checked chunk options (``None`` when neither is given: then only audio over one window is
        chunked, at the window's length and a sixth of it as stride)."""
        if chunk_length_s is None and stride_length_s is None:
            return None
        return Chunking.of(chunk_length_s, stride_length_s, rate=self._rate(), window_s=self.window_s)

    def transcripts(self, audio: list, chunking: Chunking | None = None,
                    max_new_tokens: int | None = None, batch: int = CHUNK_BATCH) -> list[Transcript]:
        """Each raw clip (a path, bytes or a 16 kHz float array) as ``pipeline("automatic-speech-recognition")``
        transcribes it: one window as it is; with ``chunking``, or over one window, in chunks merged as the
        pipeline merges them. The chunks of all clips run ``batch`` at a time through encoder and decoder."""
        return self.run_clips(audio, chunking, max_new_tokens, batch)[0]

    def run_clips(self, audio: list, chunking: Chunking | None = None, max_new_tokens: int | None = None,
                  batch: int = CHUNK_BATCH) -> tuple[list[Transcript], dict[str, np.ndarray]]:
        """``transcripts`` and the encoder's outputs, one row per clip, when no clip was chunked (else ``{}``:
        a long recording's cross keys and values are not held past their own batch)."""
        if self.bundle is None:
            raise PredictInputError("this Transcriber has no bundle to preprocess audio with; call decode()")
        limit = self._limit(max_new_tokens)
        waves = []
        for i, clip in enumerate(audio):
            try:
                waves.append(self._waveform(clip))
            except PredictInputError as exc:
                raise PredictInputError(f"input {i}: {exc}" if len(audio) > 1 else str(exc)) from None
        long = [w.size > self.window_s * self._rate() for w in waves]
        if self.vocab is None and (chunking is not None or any(long)):
            raise BundleError("this bundle was packed without the tokenizer facts long-form transcription needs; "
                              "migrate the model again")
        plans = [chunking.spans(w.size) if chunking else
                 Chunking.of(None, None, rate=self._rate(), window_s=self.window_s).spans(w.size) if big else
                 [Span(0, w.size, 0, 0)] for w, big in zip(waves, long)]
        jobs = [(i, s) for i, spans in enumerate(plans) for s in spans]
        keep = chunking is None and not any(long)
        tokens: list[list[int]] = []
        kept: list[dict[str, np.ndarray]] = []
        for start in range(0, len(jobs), batch):
            part = jobs[start:start + batch]
            features = np.concatenate([self._features(waves[i][s.start:s.stop]) for i, s in part])
            encoded = self.bundle.run({self.bundle.inputs[0]["name"]: features})
            tokens += self.decode(encoded, limit).token_ids
            if keep:
                kept.append(encoded)
        out, at = [], 0
        for i, spans in enumerate(plans):
            rows, at = tokens[at:at + len(spans)], at + len(spans)
            chunked = chunking is not None or long[i]
            if chunked:
                text, ids = transcript(rows, [s.stride for s in spans], self.vocab, self.vocab.decode(self.tokenizer))
            else:
                text, ids = self._texts(rows)[0], rows[0]
            out.append(Transcript(text, ids, spans, rows))
        return out, {k: np.concatenate([e[k] for e in kept]) for k in kept[0]} if kept else {}

    def _rate(self) -> int:
        return self.vocab.sampling_rate if self.vocab else 16000

    def _waveform(self, audio) -> np.ndarray:
        """The clip decoded by the bundle's ``load_audio`` step, up to the runtime's hour rather than one window."""
        from torch2ort.runtime.processors import run_preprocess
        from torch2ort.runtime.processors.audio import MAX_SECONDS

        steps = self.bundle.manifest.get("preprocess") or [{}]
        if steps[0].get("op") != "load_audio":
            raise BundleError("a speech bundle's preprocess must start with load_audio")
        if isinstance(audio, dict):
            raise PredictInputError("chunked transcription takes raw audio (a path, bytes or a 16 kHz float array), "
                                    "not model inputs")
        wave = run_preprocess([steps[0] | {"max_seconds": MAX_SECONDS}], audio, self.bundle._context())
        return np.asarray(wave, dtype=np.float32)

    def _features(self, wave: np.ndarray) -> np.ndarray:
        """One chunk's model input (the log-mel of its samples, padded to the window) as ``[1, mels, frames]``."""
        from torch2ort.runtime.processors import run_preprocess

        ctx = self.bundle._context()
        ctx.meta = {"sample_rate": self._rate()}
        feed = self.bundle.check_feed(run_preprocess(self.bundle.manifest["preprocess"][1:], wave, ctx))
        return feed[self.bundle.inputs[0]["name"]]

    def _texts(self, rows: list[list[int]]) -> list[str]:
        """Each window's text as the pipeline decodes one unchunked window (``_decode_asr``), or, for a bundle
        packed without its facts, the tokenizer's decode without special tokens."""
        if not self.tokenizer:
            return [""] * len(rows)
        if self.vocab is None:
            return [self.tokenizer.decode(r, skip_special_tokens=True) for r in rows]
        decode = self.vocab.decode(self.tokenizer)
        return [transcript([r], None, self.vocab, decode)[0] for r in rows]

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
