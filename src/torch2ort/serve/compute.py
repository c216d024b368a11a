"""Validation and compute for one bundle: a request body to a checked feed, then the bundle's stages.

``Compute`` uses only the runtime ``Bundle``'s public stages: ``preprocess`` (the checked feed),
``run`` and ``postprocess``. Requests are parsed and validated (names, dtypes, shapes, one size per
dim label, the outputs asked for, and the id and sequence bounds the graph states: ``runtime/graph_bounds.py``)
before anything is queued, so a bad request is a 400 and does not fail a batch. What only the run can
tell (ONNX Runtime refusing a feed) is a ``ProtocolError`` (400): the warm-up proved the session runs, so
a refused run is its input's fault; the scheduler then re-runs a batch's requests one by one.
Nothing here knows about queues or threads: that is ``scheduler.Scheduler``.

Structured answers (docs/serve.md, "Structured outputs"): a result that is, per input, a list of
records (``entities``, ``detections``, ``zero_shot``) leaves as a BYTES output of one JSON document per input;
per-image label maps of different sizes (``segmentation``) leave as one INT64 tensor padded with
``-1`` to the request's largest image. The request's ``parameters`` carry the call options
(``aggregation_strategy``, ``threshold``, ...) as ``Bundle.predict`` takes them; a zero-shot model's
``candidate_labels`` (a preprocess option: they make the text tower's input) go to its files' preprocess.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Any

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, ProtocolError, describe
from torch2ort.runtime.bundle import Bundle
from torch2ort.runtime.graph_bounds import InputBounds
from torch2ort.runtime.processors import CALL_OPTIONS, file_kind, split_options, structured_results
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


PAD_LABEL = -1  # a label map's padding, past an image's own height and width


class Feed(dict):
    """A checked model feed (arrays by input name), plus what its request's postprocess needs and the
    feed does not carry: the raw ``texts`` (entities), what preprocessing learnt (``meta``: each image's
    size, for boxes and maps) and the call ``options``. The scheduler hands each request's own ``Feed``
    to ``postprocess``, also when its rows ran in a batch with others."""

    def __init__(self, arrays: dict[str, np.ndarray], texts: list[str] | None = None,
                 meta: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> None:
        super().__init__(arrays)
        self.texts, self.meta, self.options = texts, dict(meta or {}), dict(options or {})


def call_options(bundle: Bundle, parameters: dict | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request parameters that are call options (``CALL_OPTIONS``), checked as ``Bundle.predict`` checks
    them, as (the preprocess's, the postprocess's), or ProtocolError(400). Other parameters
    (``binary_data_output``) are the protocol's own. A preprocess option (a zero-shot model's
    ``candidate_labels``: they make the text tower's input) goes with the request's files.

    A list option (``ignore_labels``, ``candidate_labels``) may come as a JSON array in a string: gRPC
    parameters are scalars."""
    options = {k: v for k, v in (parameters or {}).items() if k in CALL_OPTIONS}
    for key, value in options.items():
        if isinstance(value, str) and value.lstrip().startswith("["):
            try:
                options[key] = json.loads(value)
            except ValueError:
                raise ProtocolError(f"parameter {key!r}: {value[:40]!r} is not a JSON array") from None
    try:
        return split_options(bundle.manifest.get("preprocess", []), bundle.manifest.get("postprocess", []), options)
    except PredictInputError as exc:
        raise ProtocolError(f"parameters: {exc}") from None


def needs_labels(bundle: Bundle) -> bool:
    """Whether the bundle's preprocess asks each call for ``candidate_labels`` (zero-shot) and has none of its own."""
    return any(s.get("op") == "candidate_labels" and "candidate_labels" not in s
               for s in bundle.manifest.get("preprocess", []))


def _document(row: Any) -> str:
    """One input's records as JSON; a non-finite score (JSON has none) becomes null."""
    try:
        return json.dumps(row, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(row), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def padded_maps(maps: list[np.ndarray]) -> np.ndarray:
    """Per-image [H, W] label maps as one [N, max H, max W] int64 tensor, ``PAD_LABEL`` past each map."""
    height, width = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
    out = np.full((len(maps), height, width), PAD_LABEL, dtype=np.int64)
    for i, m in enumerate(maps):
        out[i, :m.shape[0], :m.shape[1]] = m
    return out


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
        post = bundle.manifest.get("postprocess", [])
        self.records = structured_results(post)  # result name -> its records' fields: one JSON document per input
        self.maps = [s.get("name", "segmentation") for s in post if s.get("op") == "segment"]
        self.labels = needs_labels(bundle)  # zero-shot: each request's candidate_labels make the text input
        self.bounds = InputBounds.of_file(bundle.path / bundle.manifest["model"])

    def warm_up(self) -> dict[str, np.ndarray]:
        """Run once on a made-up feed (so a served model has computed) and learn the outputs it returns."""
        if self.text:
            feed = self.preprocess_text(np.array(["Warm up in Paris."], dtype=object))
        elif self.file is not None and file_kind(self.bundle.manifest["preprocess"]) == "image":
            labels = {"candidate_labels": ["a photo", "a drawing"]} if self.labels else {}
            feed = self.preprocess_files(np.array([_warm_up_image()], dtype=object), labels)  # boxes need a size
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

    def preprocess_files(self, files: np.ndarray, options: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The model feed from encoded files: ``Bundle.preprocess`` on the bytes (a list of several is a batch),
        with the request's preprocess ``options`` (a zero-shot model's candidate labels)."""
        if files.dtype != object or files.ndim != 1 or files.size == 0:
            raise ProtocolError(f"input {self.file!r} must be BYTES with shape [N], N >= 1: one element per file")
        items = [bytes(f) for f in files]
        meta: dict[str, Any] = {}
        feed = self.bundle.preprocess(items[0] if len(items) == 1 else items, meta, **(options or {}))
        return Feed(feed, meta=meta)

    def preprocess_text(self, texts: np.ndarray) -> dict[str, np.ndarray]:
        strings = [str(t) for t in texts.ravel()]
        return Feed(self.bundle.preprocess(strings), texts=strings)

    def prepare(self, body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, np.ndarray], list[str]]:
        """Parse, validate and tokenize a request body: (request, model feed, outputs to return).

        CPU work that can take a while (JSON, BYTES, tokenizing): the server runs it off the event loop.
        """
        return self.finish(parse_request(body, header_length, self.caps))

    def finish(self, req: InferRequest) -> tuple[InferRequest, dict[str, np.ndarray], list[str]]:
        """What ``prepare`` does after parsing, for a request a parser process parsed."""
        feed = self.validate(req.inputs, req.parameters)
        return req, feed, self.select(req.outputs, feed)

    def select(self, requested: list[str] | None, feed: dict[str, np.ndarray] | None = None) -> list[str]:
        """The outputs to return: ``requested`` (None: all), or ProtocolError(400) naming the valid ones.

        A request that sent the model's own tensors gets no records (entities need the texts, boxes the
        image's size): asked for by name, they are a 400."""
        raw_only = not isinstance(feed, Feed) or (feed.texts is None and not feed.meta)
        missing = set(self.records) if feed is not None and raw_only else set()
        wanted = [o for o in self.output_names if o not in missing] if requested is None else requested
        unknown = [o for o in wanted if o not in self.output_names]
        if unknown:
            raise ProtocolError(f"unknown outputs {unknown}; outputs: {', '.join(self.output_names)}")
        needs = [o for o in wanted if o in missing]
        if needs:
            source = f"'{TEXT_INPUT}'" if self.text else repr(self.file) if self.file else "the raw input"
            raise ProtocolError(f"outputs {needs} are made from the raw input: send {source}, not the model's "
                                "own tensors")
        return list(wanted)

    def validate(self, inputs: dict[str, np.ndarray], parameters: dict | None = None) -> Feed:
        """The model feed for a request, or ProtocolError(400). Runs before anything is queued.

        ``parameters``: the request's; the call options among them go with the feed to ``postprocess``."""
        pre_options, options = call_options(self.bundle, parameters)
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
                if self.labels and "candidate_labels" not in pre_options:
                    raise ProtocolError('a zero-shot model needs candidate labels: send the parameter '
                                        '"candidate_labels", e.g. ["cat", "dog"]')
                inputs = self.preprocess_files(inputs[self.file], pre_options)
            elif pre_options:
                raise ProtocolError(f"parameters {sorted(pre_options)} apply to {self.file or 'the raw input'!r} "
                                    "(they make the model's own tensors), not to the model's tensors sent as they are")
            elif any(a.dtype == object for a in inputs.values()):
                raise ProtocolError("BYTES inputs are accepted only as 'text', for bundles with a text preprocess, "
                                    "and as the file input ('image_file', 'audio_file', 'signal_file') of bundles "
                                    "whose preprocess starts from a file")
            checked = self.bundle.preprocess(inputs)
            self.bounds.check(checked)
            feed = inputs if isinstance(inputs, Feed) else Feed({})
            return Feed(checked, feed.texts, feed.meta, options)
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
        """Raw outputs plus the post-processed results that are numeric arrays (embeddings, probabilities),
        the per-input records as JSON documents (BYTES) and per-image label maps (padded when their sizes
        differ). Post-processed as ``Bundle.predict`` post-processes: with the request's texts, image sizes
        and options (a ``Feed``)."""
        call = feed if isinstance(feed, Feed) else Feed({})
        results = self.bundle.postprocess(feed, raw, call.texts, call.meta, **call.options)
        arrays = {k: v for k, v in results.items() if isinstance(v, np.ndarray) and v.dtype != object}
        for name in self.records:
            if isinstance(results.get(name), list):
                arrays[name] = np.array([_document(row) for row in results[name]], dtype=object)
        for name in self.maps:
            if isinstance(results.get(name), list) and results[name]:
                arrays[name] = padded_maps(results[name])
        return raw | arrays

    def output_metadata(self) -> dict[str, dict]:
        """What the metadata says of the structured outputs, beyond the warm-up's shapes: name -> overrides."""
        out: dict[str, dict] = {}
        for name, fields in self.records.items():
            out[name] = {"shape": [-1], "parameters": {
                "content": "json", "per": "one JSON document per input (text or file): a list of records",
                "fields": fields}}
        for name in self.maps:
            out[name] = {"shape": [-1, -1, -1], "parameters": {
                "content": "label map", "per": "one [height, width] map per image, at the image's own size",
                "padding": f"{PAD_LABEL} past an image's own height and width, when a request's images differ "
                           "in size"}}
        return out


def _warm_up_image() -> bytes:
    """A small grey PNG, made here: image bundles warm up from a file, as their requests come."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 40), (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


__all__ = ["ACCEPTS", "PAD_LABEL", "TEXT_INPUT", "Compute", "Feed", "call_options", "file_input_name",
           "needs_labels", "padded_maps"]
