"""Validation and compute for one bundle: a request body to a checked feed, then the bundle's stages.

``Compute`` uses only the runtime ``Bundle``'s public stages: ``preprocess`` (the checked feed),
``run`` and ``postprocess``. Requests are parsed and validated (names, dtypes, shapes, one size per
dim label, the outputs asked for, and the id and sequence bounds the graph states: ``runtime/graph_bounds.py``)
before anything is queued, so a bad request is a 400 and does not fail a batch. What only the run can
tell (ONNX Runtime refusing a feed) is a ``ProtocolError`` (400): the warm-up proved the session runs, so
a refused run is its input's fault; the scheduler then re-runs a batch's requests one by one.
Nothing here knows about queues or threads: that is ``scheduler.Scheduler``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, ProtocolError, describe
from torch2ort.runtime.bundle import Bundle
from torch2ort.runtime.graph_bounds import InputBounds
from torch2ort.runtime.processors import file_kind
from torch2ort.serve.protocol import Caps, InferRequest, parse_request

TEXT_INPUT = "text"
# what each kind of file input accepts, as its metadata says
ACCEPTS = {
    "image": "an encoded image file (PNG, JPEG, BMP, GIF, TIFF, WebP: what Pillow reads)",
    "audio": "an encoded audio file (WAV, FLAC, OGG/Vorbis, MP3 where libsndfile has it)",
    "signal": "a signal file: .npy, .csv (one lead per column), .mat (v4/v5), or a WFDB record (its .hea and .dat "
              "files) as one zip or tar",
}


def file_input_name(bundle: Bundle) -> str | None:
    """``image_file``, ``audio_file`` or ``signal_file`` for a bundle whose preprocess starts from a file."""
    kind = file_kind(bundle.manifest.get("preprocess", []))
    return None if kind is None else f"{kind}_file"


class Compute:
    def __init__(self, bundle: Bundle, caps: Caps) -> None:
        self.bundle = bundle
        pre = bundle.manifest.get("preprocess", [])
        self.text = bool(pre) and pre[0].get("op") == "tokenize"  # clients send strings as 'text'
        self.file = file_input_name(bundle)  # clients send encoded files (bytes) there
        if self.file in {t["name"] for t in bundle.inputs}:
            self.file = "file"  # a model whose own tensor has that name
        self.caps = replace(caps, files=frozenset({self.file})) if self.file else caps
        self.output_names: list[str] = []  # learned by warm_up
        self.bounds = InputBounds.of_file(bundle.path / bundle.manifest["model"])

    def warm_up(self) -> dict[str, np.ndarray]:
        """Run once on a made-up feed (so a served model has computed) and learn the outputs it returns."""
        if self.text:
            feed = self.preprocess_text(np.array(["warm up"], dtype=object))
        else:
            feed = {}
            for t in self.bundle.inputs:
                shape = [d if isinstance(d, int) and d >= 0 else 1 for d in t["shape"]]
                feed[t["name"]] = np.zeros(shape, dtype=t["dtype"]) if t["dtype"] != "bool" else np.ones(shape, bool)
        outputs = self.postprocess(feed, self.run(feed))
        self.output_names = list(outputs)
        return outputs

    def file_metadata(self) -> dict | None:
        """The file input as metadata shows it: a BYTES tensor of one element per file, and what it accepts."""
        if self.file is None:
            return None
        kind = file_kind(self.bundle.manifest["preprocess"])
        return {"name": self.file, "datatype": "BYTES", "shape": [-1], "parameters": {
            "content": "file", "accepts": ACCEPTS[kind], "max_bytes": self.caps.max_file_bytes,
            "json": "base64", "batch": "one element per file; several files are one batch",
            "instead_of": [t["name"] for t in self.bundle.inputs]}}

    def preprocess_files(self, files: np.ndarray) -> dict[str, np.ndarray]:
        """The model feed from encoded files: ``Bundle.preprocess`` on the bytes (a list of several is a batch)."""
        if files.dtype != object or files.ndim != 1 or files.size == 0:
            raise ProtocolError(f"input {self.file!r} must be BYTES with shape [N], N >= 1: one element per file")
        items = [bytes(f) for f in files]
        return self.bundle.preprocess(items[0] if len(items) == 1 else items)

    def preprocess_text(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        return self.bundle.preprocess([str(t) for t in texts.ravel()])

    def prepare(self, body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray], list[str]]:
        """Parse, validate and tokenize a request body: (request, model feed, outputs to return).

        CPU work that can take a while (JSON, BYTES, tokenizing): the server runs it off the event loop.
        """
        return self.finish(parse_request(body, header_length, self.caps))

    def finish(self, req: InferRequest) -> tuple[InferRequest, dict[str, np.ndarray], list[str]]:
        """What ``prepare`` does after parsing, for a request a parser process parsed."""
        return req, self.validate(req.inputs), self.select(req.outputs)

    def select(self, requested: list[str] | None) -> list[str]:
        """The outputs to return: ``requested`` (None: all), or ProtocolError(400) naming the valid ones."""
        wanted = self.output_names if requested is None else requested
        unknown = [o for o in wanted if o not in self.output_names]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; outputs: {', '.join(self.output_names)}")
        return list(wanted)

    def validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model feed for a request, or ProtocolError(400). Runs before anything is queued."""
        try:
            if self.text and set(inputs) == {TEXT_INPUT}:
                texts = inputs[TEXT_INPUT]
                if texts.dtype != object or texts.ndim != 1 or texts.size == 0:
                    raise ProtocolError(f"input {TEXT_INPUT!r} must be BYTES with shape [N], N >= 1")
                inputs = self.preprocess_text(texts)
            elif self.file is not None and self.file in inputs:
                if len(inputs) > 1:
                    raise ProtocolError(f"send either {self.file!r} (encoded files) or the model's tensors "
                                        f"({', '.join(t['name'] for t in self.bundle.inputs)}), not both")
                inputs = self.preprocess_files(inputs[self.file])
            elif any(a.dtype == object for a in inputs.values()):
                raise ProtocolError("BYTES inputs are accepted only as 'text', for bundles with a text preprocess, "
                                    "and as the file input ('image_file', 'audio_file', 'signal_file') of bundles "
                                    "whose preprocess starts from a file")
            feed = self.bundle.preprocess(inputs)
            self.bounds.check(feed)
            return feed
        except (PredictInputError, BundleError) as exc:
            raise ProtocolError(str(exc)) from None

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The session's outputs, or ProtocolError(400) when ONNX Runtime refuses the feed."""
        try:
            return self.bundle.run(feed)
        except Exception as exc:
            if type(exc).__module__.startswith("onnxruntime"):
                raise ProtocolError(f"the model cannot run on this input: {describe(exc)}", 400) from None
            raise

    def postprocess(self, feed: dict[str, np.ndarray], raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw outputs plus the post-processed results that are numeric arrays (embeddings, probabilities)."""
        results = self.bundle.postprocess(feed, raw)
        arrays = {k: v for k, v in results.items() if isinstance(v, np.ndarray) and v.dtype != object}
        return raw | arrays


__all__ = ["ACCEPTS", "TEXT_INPUT", "Compute", "file_input_name"]
