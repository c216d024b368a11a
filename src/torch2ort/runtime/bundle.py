"""Load a bundle (checksums first, then a session) and predict, without torch.

Example::

    from torch2ort.runtime import Bundle
    bundle = Bundle.load("emotion-bundle")          # verifies every sha256 before loading
    out = bundle.predict("face.png")                 # raw input through the preprocess pipeline
    out["topk"], out.raw["logits"]

    # the same, stage by stage (the server runs them apart: validate, queue, run, post-process)
    feed = bundle.preprocess("face.png")             # checked model feed, or PredictInputError
    raw = bundle.run(feed)                           # session outputs by name
    results = bundle.postprocess(feed, raw)          # raw outputs plus post-processed results
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from torch2ort._env import physical_cores
from torch2ort.errors import BundleError, PredictInputError, describe
from torch2ort.runtime import manifest as mf
from torch2ort.runtime.processors import Context, check_pipeline, run_postprocess, run_preprocess
from torch2ort.runtime.processors.batching import split_by_tokens
from torch2ort.runtime.processors.image import check_max_pixels
from torch2ort.runtime.providers import requested_providers, usable_providers

log = logging.getLogger("torch2ort.runtime")

_ORT_DTYPES = {
    "tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8", "tensor(uint8)": "uint8",
    "tensor(bool)": "bool", "tensor(string)": "str",
}


TEXT_BATCH = 32     # sentence-transformers' default encode batch size
TEXT_TOKENS = 2048  # padded tokens per model call: past this, a CPU's caches lose the activations
SPEECH_OPTIONS = ("max_new_tokens", "chunk_length_s", "stride_length_s")  # pipeline("automatic-speech-recognition")'s


class Prediction(dict):
    """Named outputs (post-processed when the bundle has a postprocess pipeline); ``.raw`` has the rest."""

    def __init__(self, results: dict[str, Any], raw: dict[str, np.ndarray]) -> None:
        super().__init__(results)
        self.raw = raw


class Bundle:
    def __init__(self, path: Path, manifest: dict, session, providers: list[str], fallbacks: list[str]) -> None:
        self.path = path
        self.manifest = manifest
        self.session = session
        self.providers = providers
        self.fallbacks = fallbacks
        self.name = manifest["name"]
        self.labels = manifest.get("labels")
        self.inputs = manifest["inputs"]
        self.outputs = manifest["outputs"]
        self._ctx_cache: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | Path, providers: list[str] | str | None = None,
             intra_op_num_threads: int | None = None, max_image_pixels: int | None = None) -> Bundle:
        """Validate the manifest and every checksum, then create the ONNX Runtime session.

        ``max_image_pixels`` bounds images decoded by ``load_image`` (default 40 MP), checked from the header.
        """
        import onnxruntime as ort

        intra_op_num_threads = mf.check_threads(intra_op_num_threads)  # the options first, before any file
        limits = {"max_image_pixels": check_max_pixels(max_image_pixels)} if max_image_pixels is not None else {}
        wanted = requested_providers(providers)
        path = Path(path)
        manifest = mf.read_manifest(path)
        mf.verify_files(path, manifest["files"])
        mf.check_external_data(path, manifest["model"], manifest["files"])
        check_pipeline(manifest.get("preprocess", []), manifest.get("postprocess", []), manifest["inputs"],
                       manifest["outputs"])
        usable, fallbacks = usable_providers(wanted, ort.get_available_providers())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_num_threads or physical_cores()
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(mf.inside(path, manifest["model"])), opts, providers=usable)
        except Exception as exc:
            raise BundleError(f"onnxruntime could not load {manifest['model']}: {describe(exc)}"
                              ) from None
        active = session.get_providers()
        fallbacks += [f"{p} was requested but onnxruntime did not enable it (active: {', '.join(active)})"
                      for p in usable if p not in active]
        for note in fallbacks:
            log.warning("provider fallback: %s", note)
        bundle = cls(path, manifest, session, active, fallbacks)
        bundle._ctx_cache.update(limits)  # steps read their limits from the per-bundle context cache
        bundle._check_io()
        return bundle

    def _check_io(self) -> None:
        declared = {i.name for i in self.session.get_inputs()}
        listed = {t["name"] for t in self.inputs}
        if declared != listed:
            raise BundleError(f"the manifest's inputs {sorted(listed)} do not match the model's {sorted(declared)}")

    # --- predict: preprocess -> run -> postprocess ----------------------------------------------
    def predict(self, inputs: Any, raw: bool = False, batch_size: int | None = TEXT_BATCH,
                max_tokens: int | None = TEXT_TOKENS, **options: Any) -> Prediction:
        """A dict of arrays keyed by input name, or a raw input for the preprocess pipeline.

        ``options`` set postprocess parameters for this call, by the names transformers' pipelines use
        (``aggregation_strategy="first"`` for a token-classification bundle); a bundle refuses options
        none of its steps take.

        The composition of the three public stages, which a caller (the server) may also run apart.
        A list of texts runs as sentence-transformers runs it: sorted by length, tokenised
        ``batch_size`` at a time (so memory stays bounded), with the results put back in the
        caller's order. Each tokenised batch is then cut into model calls of at most ``max_tokens``
        padded tokens, each padded only to its own longest text. ``None`` turns either limit off.
        """
        for name, value in (("batch_size", batch_size), ("max_tokens", max_tokens)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise PredictInputError(f"{name} must be a whole number >= 1, got {value!r}")
        if self.transcribes:  # a Whisper bundle: encoder, then the cached decoder loop (runtime/transcribe.py)
            return self._predict_speech(inputs, options)
        pre_options, options = self._split_options(options)
        if self._texts(inputs) and len(inputs) > 1 and (batch_size or max_tokens):
            return self._predict_texts(list(inputs), raw, batch_size or len(inputs), max_tokens, options)
        meta: dict[str, Any] = {}
        feed = self.preprocess(inputs, meta, **pre_options)
        outputs = self.run(feed)
        texts = [inputs] if isinstance(inputs, str) else list(inputs) if self._texts(inputs) else None
        return Prediction(dict(outputs) if raw else self.postprocess(feed, outputs, texts, meta, **options), outputs)

    def _split_options(self, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the options preprocess steps take, the ones postprocess steps take), each checked; an option no
        step takes is refused by name."""
        from torch2ort.runtime.processors import split_options

        return split_options(self.manifest.get("preprocess", []), self.manifest.get("postprocess", []), options)

    # --- embeddings: a two-tower (zero-shot) bundle's image and text towers, one at a time --------------
    def embed_image(self, images: Any) -> np.ndarray:
        """L2-normalised image embeddings ``[images, dim]`` of a zero-shot bundle, for retrieval: the image
        tower alone (the text tower gets an empty batch). ``images``: one raw image or a list of them."""
        from torch2ort.runtime.processors.zero_shot import tower_feed

        steps = self._tower_steps()
        feed = self.check_feed(tower_feed(self, run_preprocess(steps[:-1], images, self._context()), "image"))
        return np.asarray(self.session.run(["image_embeds"], feed)[0])

    def embed_text(self, texts: str | list[str]) -> np.ndarray:
        """L2-normalised text embeddings ``[texts, dim]`` of a zero-shot bundle: each text as given (no
        hypothesis template), tokenised as the candidate labels are, through the text tower alone."""
        from torch2ort.runtime.processors.zero_shot import embed_texts, tower_feed

        step = self._tower_steps()[-1]
        feed = self.check_feed(tower_feed(self, embed_texts(texts, step, self._context()), "text"))
        return np.asarray(self.session.run(["text_embeds"], feed)[0])

    def _tower_steps(self) -> list[dict]:
        steps = self.manifest.get("preprocess", [])
        outputs = {o["name"] for o in self.outputs}
        if not steps or steps[-1].get("op") != "candidate_labels" or not {"image_embeds", "text_embeds"} <= outputs:
            raise PredictInputError(f"{self.name} is not a two-tower (zero-shot image classification) bundle: "
                                    "embed_image and embed_text need one; use predict()")
        return steps

    # --- generate: a decoder bundle (the manifest's ``generation`` section) -------------------------
    @property
    def generates(self) -> bool:
        """Whether this bundle is a decoder with a KV cache that ``generate`` and ``stream`` can drive."""
        return isinstance(self.manifest.get("generation"), dict)

    def generator(self):
        """The bundle's ``Generator`` (runtime/generate.py), made on first use."""
        if not self.generates:
            raise PredictInputError(f"{self.name} is not a text-generation bundle (its manifest has no "
                                    "'generation' section); use predict()")
        if "generator" not in self._ctx_cache:
            from torch2ort.runtime.generate import Generator, load_tokenizer

            info = self.manifest["generation"]
            tokenizer = load_tokenizer(mf.inside(self.path, info.get("tokenizer", "tokenizer.json")))
            self._ctx_cache["generator"] = Generator(self.session, tokenizer, info)
        return self._ctx_cache["generator"]

    def generate(self, prompts: str | list[str], *, max_new_tokens: int = 32, min_new_tokens: int = 0,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                 repetition_penalty: float = 1.0, seed: int | None = None, stop: list[str] | None = None):
        """New text for each prompt: a ``Generation`` with ``.token_ids``, ``.text`` and ``.finish_reason``.

        Greedy by default; ``do_sample=True`` draws with transformers' temperature, top-k and top-p
        processing, the same draws for the same ``seed``.
        """
        return self.generator().generate(
            prompts, max_new_tokens=max_new_tokens, stop=stop, min_new_tokens=min_new_tokens, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, seed=seed)

    def stream(self, prompts: str | list[str], *, max_new_tokens: int = 32, min_new_tokens: int = 0,
               do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
               repetition_penalty: float = 1.0, seed: int | None = None, stop: list[str] | None = None):
        """``generate`` one step at a time: yields a ``GenerationStep`` (each row's new token and text)."""
        return self.generator().stream(
            prompts, max_new_tokens=max_new_tokens, stop=stop, min_new_tokens=min_new_tokens, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty, seed=seed)

    # --- transcribe: a Whisper bundle (the manifest's ``speech`` section) ------------------------------
    @property
    def transcribes(self) -> bool:
        """Whether this bundle is a speech recogniser (an encoder plus a cached decoder)."""
        return isinstance(self.manifest.get("speech"), dict)

    def transcriber(self):
        """The bundle's ``Transcriber`` (runtime/transcribe.py), made on first use."""
        if not self.transcribes:
            raise PredictInputError(f"{self.name} is not a speech-recognition bundle (its manifest has no "
                                    "'speech' section); use predict()")
        if "transcriber" not in self._ctx_cache:
            from torch2ort.runtime.transcribe import Transcriber

            self._ctx_cache["transcriber"] = Transcriber.of_bundle(self, self.manifest["speech"])
        return self._ctx_cache["transcriber"]

    def transcribe(self, audio: Any, *, max_new_tokens: int | None = None, do_sample: bool = False,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0, seed: int | None = None):
        """Token-level speech recognition: a ``Generation`` (``.token_ids``, ``.text``, ``.finish_reason``) per clip.

        ``audio``: a path, bytes, a 16 kHz float array, or a list of them (one batch). Greedy by default, as
        transformers' Whisper ``generate``; ``max_new_tokens`` defaults to the model's generation config.
        """
        return self.transcriber().transcribe(audio, max_new_tokens=max_new_tokens, do_sample=do_sample,
                                             temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def _predict_speech(self, inputs: Any, options: dict[str, Any]) -> Prediction:
        """``{"text": ...}`` as ``pipeline("automatic-speech-recognition")`` answers (a list for a list of clips).

        Options, by the pipeline's names: ``max_new_tokens``; ``chunk_length_s`` and ``stride_length_s`` (a
        number or a ``[left, right]`` pair) transcribe in overlapping chunks as the pipeline does with them.
        Audio over one window is chunked without them too, at the window's length with a sixth as stride.
        ``.raw`` holds the encoder's outputs when no clip was chunked."""
        bad = [k for k in options if k not in SPEECH_OPTIONS]
        if bad:
            raise PredictInputError(f"a speech-recognition bundle takes the options {', '.join(SPEECH_OPTIONS)}; "
                                    f"got {bad}")
        transcriber = self.transcriber()
        limit = transcriber._limit(options.get("max_new_tokens"))
        chunking = transcriber.chunking(options.get("chunk_length_s"), options.get("stride_length_s"))
        many = isinstance(inputs, (list, tuple))
        looks_like_feed = isinstance(inputs, dict) and all(isinstance(v, np.ndarray) for v in inputs.values())
        if looks_like_feed:  # model inputs (log-mel features): one window each, nothing to chunk
            if chunking is not None:
                raise PredictInputError("chunk_length_s and stride_length_s need raw audio (a path, bytes or a "
                                        "16 kHz float array), not input_features")
            encoded = self.run(self._speech_feed(inputs))
            out = transcriber.decode(encoded, limit)
            return Prediction({"text": out.text[0] if len(out.text) == 1 else out.text,
                               "token_ids": out.token_ids[0] if len(out.token_ids) == 1 else out.token_ids}, encoded)
        if many and not inputs:
            raise PredictInputError("give at least one audio clip")
        done, encoded = transcriber.run_clips(list(inputs) if many else [inputs], chunking, limit)
        texts, ids = [t.text for t in done], [t.token_ids for t in done]
        return Prediction({"text": texts if many else texts[0], "token_ids": ids if many else ids[0]}, encoded)

    def _speech_feed(self, audio: Any) -> dict[str, np.ndarray]:
        """Each clip through the preprocess pipeline on its own, stacked into one batch."""
        if not isinstance(audio, (list, tuple)):
            return self.preprocess(audio)
        if not audio:
            raise PredictInputError("give at least one audio clip")
        feeds = [self.preprocess(a) for a in audio]
        return {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}

    def _texts(self, inputs: Any) -> bool:
        steps = self.manifest.get("preprocess", [])
        return (bool(steps) and steps[0].get("op") == "tokenize" and isinstance(inputs, (list, tuple))
                and all(isinstance(t, str) for t in inputs))

    def _predict_texts(self, texts: list[str], raw: bool, batch_size: int, max_tokens: int | None,
                       options: dict[str, Any]) -> Prediction:
        """Mini-batches of length-sorted texts; per-row results are reassembled in input order.

        Raw outputs whose non-batch shape depends on the padded length (token embeddings) are not
        kept across mini-batches: holding them for every text is what would make memory grow. With a
        tokenize ``stride`` (a text's windows are several rows), only per-text results are kept.
        """
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        # with a stride a text is several rows (its windows): a mini-batch is then run whole
        windowed = bool(self.manifest.get("preprocess", [{}])[0].get("stride"))
        parts: list[tuple[list[int], dict[str, Any], dict[str, np.ndarray]]] = []
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            tokenised = self.preprocess([texts[i] for i in chunk])
            for picked, feed in split_by_tokens(tokenised, None if windowed else max_tokens):
                if windowed:
                    picked = np.arange(len(chunk))
                rows = [chunk[i] for i in picked]
                outputs = self.run(feed)
                results = dict(outputs) if raw else self.postprocess(feed, outputs, [texts[i] for i in rows],
                                                                     **options)
                parts.append((rows, _per_row(results, len(rows)), _per_row(outputs, len(rows))))
        inverse = np.argsort(np.concatenate([np.asarray(rows) for rows, _, _ in parts]))
        return Prediction(_reassemble([r for _, r, _ in parts], inverse),
                          _reassemble([o for _, _, o in parts], inverse))

    def preprocess(self, inputs: Any, meta: dict[str, Any] | None = None, **options: Any) -> dict[str, np.ndarray]:
        """Stage 1: the checked model feed for ``inputs`` (raw input through the preprocess pipeline,
        or a dict of arrays keyed by input name, or one array for a single-input model).

        ``meta``, when given, receives what the steps learnt of the raw input that postprocessing may
        need (an image's original size); pass it on to ``postprocess``.
        ``options``: the call options preprocess steps take (a zero-shot bundle's ``candidate_labels``).
        Raises ``PredictInputError`` for input the model cannot take; nothing runs the model.
        """
        feed = inputs
        steps = self.manifest.get("preprocess", [])
        looks_like_feed = isinstance(inputs, dict) and all(isinstance(v, np.ndarray) for v in inputs.values())
        if steps and not looks_like_feed:
            ctx = self._context()
            feed = run_preprocess(steps, inputs, ctx, options)
            if meta is not None:
                meta.update(ctx.meta)
        if isinstance(feed, np.ndarray) and len(self.inputs) == 1:
            feed = {self.inputs[0]["name"]: feed}
        if not isinstance(feed, dict):
            names = ", ".join(t["name"] for t in self.inputs)
            raise PredictInputError(f"predict() takes a dict of numpy arrays keyed by input name ({names})"
                                    + ("" if not steps else ", or a raw input for the preprocess pipeline"))
        return self.check_feed(feed)

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stage 2: the ONNX Runtime session on a feed (checked again, cheaply): raw outputs by name."""
        feed = self.check_feed(feed)
        values = self.session.run(None, feed)
        return {o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), values)}

    def postprocess(self, feed: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                    texts: list[str] | None = None, meta: dict[str, Any] | None = None,
                    **options: Any) -> dict[str, Any]:
        """Stage 3: the postprocess pipeline over raw ``outputs`` (of ``run(feed)``): raw outputs plus
        every post-processed result, by name. Without a postprocess pipeline, the raw outputs.

        ``texts``: the raw texts ``feed`` was tokenised from, one per row, for steps that read them
        (entities); ``meta``: what ``preprocess`` filled in (an image's size, for segment);
        ``options`` as for ``predict``."""
        steps = self.manifest.get("postprocess", [])
        if not steps:
            return dict(outputs)
        ctx = self._context(feed, outputs)
        ctx.texts, ctx.meta = texts, dict(meta or {})
        return run_postprocess(steps, ctx, options)

    def _context(self, feed: dict[str, np.ndarray] | None = None,
                 outputs: dict[str, np.ndarray] | None = None) -> Context:
        """What steps see; the cache (tokenizer, label tables) is shared by every call on this bundle."""
        return Context(self.path, self.labels, feed=dict(feed or {}), raw=dict(outputs or {}),
                       cache=self._ctx_cache)

    def check_feed(self, feed: dict[str, Any]) -> dict[str, np.ndarray]:
        """Names, ranks, static dims and dtypes; safe casts only (documented in docs/bundle.md)."""
        expected = [t["name"] for t in self.inputs]
        missing = [n for n in expected if n not in feed]
        extra = [n for n in feed if n not in expected]
        if missing or extra:
            raise PredictInputError(f"inputs must be {expected}; missing {missing}, unexpected {extra}")
        out: dict[str, np.ndarray] = {}
        sizes: dict[str, int] = {}
        for t in self.inputs:
            arr = np.asarray(feed[t["name"]])
            want = f"{t['name']}: {t['dtype']} {t['shape']}"
            if arr.ndim != len(t["shape"]):
                raise PredictInputError(f"input {t['name']!r} has shape {list(arr.shape)}; expected {want}")
            for axis, (d, n) in enumerate(zip(t["shape"], arr.shape)):
                if isinstance(d, int) and d >= 0 and d != n:
                    raise PredictInputError(f"input {t['name']!r} dim {axis} is {n}; expected {want}")
                if isinstance(d, str) and sizes.setdefault(d, n) != n:
                    raise PredictInputError(f"input {t['name']!r} dim {axis} ({d}) is {n} but {sizes[d]} in "
                                            "another input; one label, one size")
            out[t["name"]] = _cast(arr, t["dtype"], want)
        return out


def _per_row(values: dict[str, Any], rows: int) -> dict[str, Any]:
    """The values that have one entry per input row (arrays with ``rows`` as their first dim, lists)."""
    return {k: v for k, v in values.items()
            if (isinstance(v, np.ndarray) and v.ndim and v.shape[0] == rows)
            or (isinstance(v, list) and len(v) == rows)}


def _reassemble(parts: list[dict[str, Any]], inverse: np.ndarray) -> dict[str, Any]:
    """Concatenate mini-batch results, keeping only names whose per-row shape agrees, in input order."""
    out: dict[str, Any] = {}
    for name in parts[0]:
        values = [p.get(name) for p in parts]
        if any(v is None for v in values):
            continue
        if all(isinstance(v, np.ndarray) for v in values):
            if len({v.shape[1:] for v in values}) == 1 and len({v.dtype for v in values}) == 1:
                out[name] = np.concatenate(values)[inverse]
        elif all(isinstance(v, list) for v in values):
            merged = [row for v in values for row in v]
            out[name] = [merged[i] for i in inverse]
    return out


def _cast(arr: np.ndarray, dtype: str, want: str) -> np.ndarray:
    """Allow float->float and int->int (when the values fit); refuse everything else."""
    target = np.dtype(dtype)
    if arr.dtype == target:
        return arr
    src = arr.dtype
    if src.kind == "f" and target.kind == "f":
        return arr.astype(target)
    if src.kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if arr.size == 0 or (arr.min() >= info.min and arr.max() <= info.max):
            return arr.astype(target)
        raise PredictInputError(f"input {want}: {src} values do not fit in {target}")
    raise PredictInputError(f"input {want}: got {src}; only float->float and int->int casts are automatic")


def ort_dtype(type_str: str) -> str:
    return _ORT_DTYPES.get(type_str, type_str)
