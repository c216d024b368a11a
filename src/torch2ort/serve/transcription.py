"""Speech recognition served: a Whisper bundle's requests go through ``Bundle.predict``, never the bare encoder.

A Whisper bundle's main graph is only its encoder; the transcript needs the cached decoder loop
(``runtime/transcribe.py``) and, for audio over one window, the chunking and merging of
``runtime/longform.py``. ``SpeechCompute`` takes ``compute.Compute``'s place for such a bundle, with the same
methods the HTTP infer route, the gRPC service and the scheduler call (``prepare``/``finish``, ``validate``,
``select``, ``run``, ``postprocess``), so OIP infer over HTTP and gRPC transcribes:

- in: ``audio_file``, BYTES of shape [N], one encoded file (wav, flac, ogg…) per element, as for every audio
  bundle (raw bytes in the binary extension or gRPC, base64 in JSON); at most ``--max-file-mb`` each;
- out: ``text_output``, BYTES of shape [N], each file's transcript (the name the generating bundles answer with);
- parameters: ``Bundle.predict``'s speech options (``max_new_tokens``, ``chunk_length_s``, ``stride_length_s``:
  a number, or a ``[left, right]`` pair, over gRPC as a JSON array in a string), checked before queueing.

The run (decoding the audio, the encoder, the decoder loop) is ``Bundle.predict`` on the model's worker
thread: the transcript is the one ``predict`` gives for the same file (up to the runtime's hour of audio).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, ProtocolError
from torch2ort.runtime.bundle import SPEECH_OPTIONS, Bundle
from torch2ort.runtime.processors.audio import MAX_SECONDS
from torch2ort.serve.compute import ACCEPTS, Feed
from torch2ort.serve.protocol import Caps, InferRequest, parse_request

AUDIO_INPUT, TEXT_OUTPUT = "audio_file", "text_output"
OPTION_HELP = {
    "max_new_tokens": "whole number: tokens one window may generate (default: the bundle's)",
    "chunk_length_s": "number of seconds, above 0 and at most the model's window: transcribe in chunks",
    "stride_length_s": "number of seconds, or a [left, right] pair (over gRPC: a JSON array in a string)",
}


class SpeechCompute:
    """``Compute`` for a Whisper bundle: encoded audio files in, their transcripts out (module docstring)."""

    def __init__(self, bundle: Bundle, caps: Caps) -> None:
        self.bundle = bundle
        self.file = AUDIO_INPUT
        self.text = False
        self.caps = Caps(caps.max_rows, caps.max_text_chars, caps.max_file_bytes, frozenset({AUDIO_INPUT}),
                         caps.decode_timeout_s)
        self.output_names = [TEXT_OUTPUT]
        self.records: dict = {}
        self.metrics = None  # metrics.ModelMetrics, when the app records Prometheus metrics
        self.transcriber = bundle.transcriber()  # loads the decoder and tokenizer now: a bad bundle fails at load

    @property
    def window_s(self) -> float:
        return self.transcriber.window_s

    def warm_up(self) -> dict[str, np.ndarray]:
        """One second of silence through ``Bundle.predict``: both sessions and the loop have run once."""
        rate = self.transcriber.vocab.sampling_rate if self.transcriber.vocab else 16000
        text = self.bundle.predict(np.zeros(rate, dtype=np.float32))["text"]
        return {TEXT_OUTPUT: np.array([text], dtype=object)}

    def file_metadata(self) -> dict:
        return {"name": AUDIO_INPUT, "datatype": "BYTES", "shape": [-1], "parameters": {
            "content": "file", "accepts": ACCEPTS["audio"], "max_bytes": self.caps.max_file_bytes,
            "max_seconds": MAX_SECONDS, "json": "base64",
            "batch": "one element per file; several files are transcribed together"}}

    def language(self) -> str | None:
        """The language the bundle's forced prefix transcribes in (``english``), when its facts say."""
        facts = self.transcriber.info.get("transcript") or {}
        prefix = self.transcriber.prefix
        return (facts.get("languages") or {}).get(str(prefix[1])) if len(prefix) > 1 else None

    def language_token(self) -> str | None:
        """The forced language token's text (``<|en|>``), when the prefix has one."""
        prefix, tok = self.transcriber.prefix, self.transcriber.tokenizer
        if len(prefix) < 2 or tok is None or self.language() is None:
            return None
        return tok.id_to_token(prefix[1])

    # --- the Compute interface ---------------------------------------------------------------------------
    def prepare(self, body: bytes, header_length: str | None):
        return self.finish(parse_request(body, header_length, self.caps))

    def finish(self, req: InferRequest):
        feed = self.validate(req.inputs, req.parameters)
        return req, feed, self.select(req.outputs, feed)

    def select(self, requested: list[str] | None, feed: dict | None = None) -> list[str]:
        wanted = list(self.output_names) if requested is None else list(requested)
        unknown = [o for o in wanted if o not in self.output_names]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; outputs: {TEXT_OUTPUT}")
        return wanted

    def validate(self, inputs: dict[str, np.ndarray], parameters: dict | None = None) -> Feed:
        """The checked request (its files and options), or ProtocolError(400); nothing is decoded yet."""
        if set(inputs) != {AUDIO_INPUT}:
            raise ProtocolError(f"model {self.bundle.name!r} transcribes speech: send one BYTES input "
                                f"{AUDIO_INPUT!r} of shape [N], one encoded audio file per element (got "
                                f"{', '.join(map(repr, sorted(inputs))) or 'no inputs'})")
        files = inputs[AUDIO_INPUT]
        if files.dtype != object or files.ndim != 1 or files.size == 0:
            raise ProtocolError(f"input {AUDIO_INPUT!r} must be BYTES with shape [N], N >= 1: one element per file")
        empty = [i for i, f in enumerate(files) if not len(f)]
        if empty:
            raise ProtocolError(f"input {AUDIO_INPUT!r}: file {empty[0]} is empty")
        return Feed({AUDIO_INPUT: files}, options=self.options(parameters))

    def options(self, parameters: dict | None) -> dict[str, Any]:
        """The request parameters that are ``predict``'s speech options, checked as ``predict`` checks them."""
        options = {k: v for k, v in (parameters or {}).items() if k != "binary_data_output"}
        unknown = sorted(k for k in options if k not in SPEECH_OPTIONS)
        if unknown:
            raise ProtocolError(f"parameters {unknown}: a speech-recognition model takes "
                                f"{', '.join(SPEECH_OPTIONS)}")
        stride = options.get("stride_length_s")
        if isinstance(stride, str) and stride.lstrip().startswith("["):
            try:
                options["stride_length_s"] = json.loads(stride)
            except ValueError:
                raise ProtocolError(f"parameter 'stride_length_s': {stride[:40]!r} is not a JSON array") from None
        try:
            self.transcriber._limit(options.get("max_new_tokens"))
            self.transcriber.chunking(options.get("chunk_length_s"), options.get("stride_length_s"))
        except PredictInputError as exc:
            raise ProtocolError(f"parameters: {exc}") from None
        return options

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``Bundle.predict`` on the request's files (on the model's worker thread): their transcripts."""
        files = [bytes(f) for f in feed[AUDIO_INPUT]]
        options = feed.options if isinstance(feed, Feed) else {}
        try:
            texts = self.bundle.predict(files, **options)["text"]
        except (PredictInputError, BundleError) as exc:
            raise ProtocolError(str(exc)) from None
        if self.metrics is not None:
            self.metrics.transcriptions.inc(len(files))
        return {TEXT_OUTPUT: np.array(texts, dtype=object)}

    def postprocess(self, feed: dict[str, np.ndarray], raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return raw

    def output_metadata(self) -> dict[str, dict]:
        return {TEXT_OUTPUT: {"shape": [-1], "parameters": {"content": "text", "per": "one transcript per file"}}}


__all__ = ["AUDIO_INPUT", "OPTION_HELP", "TEXT_OUTPUT", "SpeechCompute"]
