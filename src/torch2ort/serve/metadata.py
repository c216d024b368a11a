"""What one served model is, in OIP terms: its name, versions, inputs and outputs (``GET /v2/models/{name}``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torch2ort.runtime.bundle import Bundle
from torch2ort.serve.compute import TEXT_INPUT
from torch2ort.serve.protocol import oip_datatype


def batch_label(bundle: Bundle) -> str | None:
    """The label every input and output carries as its first dim, when there is one (dynamic batching's axis)."""
    firsts = {t["shape"][0] if t["shape"] else None for t in bundle.inputs + bundle.outputs}
    label = firsts.pop() if len(firsts) == 1 else None
    return label if isinstance(label, str) else None


def display(bundle: Bundle, outputs: dict[str, np.ndarray]) -> dict:
    """How the page at ``/`` shows a model's answer, from its manifest: the labels, the top-k output
    (softmax + topk), the multi-label output with each label's threshold, and per-segment outputs
    (rank 2, their second dim the segment dim of an input, e.g. ``[batch, segments]``)."""
    labels = bundle.labels or None
    hints: dict = {"labels": labels}
    for step in bundle.manifest.get("postprocess", []):
        if step["op"] == "topk" and step["output"] in outputs:
            hints["topk"] = {"output": step["output"], "k": step.get("k", 5)}
        if step["op"] == "threshold" and step["output"] in outputs:
            names = step.get("labels") or labels or [str(i) for i in range(outputs[step["output"]].shape[-1])]
            per = step.get("thresholds") or {}
            hints["thresholds"] = {"output": step["output"], "labels": names,
                                   "thresholds": [float(per.get(n, step.get("threshold", 0.5))) for n in names]}
    segment_dims = {t["shape"][1] for t in bundle.inputs if len(t["shape"]) > 1 and isinstance(t["shape"][1], str)}
    hints["segments"] = [o["name"] for o in bundle.outputs
                         if len(o["shape"]) == 2 and o["shape"][1] in segment_dims and o["name"] in outputs]
    for step in bundle.manifest.get("postprocess", []):  # structured answers: spans, boxes, a colour mask
        name = step.get("name", {"segment": "segmentation"}.get(step["op"], step["op"]))
        if step["op"] in ("entities", "detections", "zero_shot") and name in outputs:
            hints[step["op"]] = {"output": name}
        if step["op"] == "segment" and name in outputs:
            from torch2ort.runtime.masks import palette

            hints["mask"] = {"output": name, "palette": palette().tolist(), "padding": -1}
    return hints


# what each call option is, as a request parameter (docs/serve.md, "Structured outputs")
OPTION_HELP = {
    "aggregation_strategy": "string: none, simple, first, average or max",
    "ignore_labels": "array of strings (over gRPC: a JSON array in a string parameter)",
    "threshold": "number from 0 to 1",
    "candidate_labels": "array of 1 to 1024 strings (over gRPC: a JSON array in a string parameter); a string "
                        "is split at commas",
    "hypothesis_template": "string with one {} where each label goes",
}


def call_options(bundle: Bundle) -> dict[str, dict]:
    """The request parameters the model takes (``CALL_OPTIONS`` its steps take): name -> what it is,
    whether every request needs it, and its default when the manifest sets one."""
    from torch2ort.runtime.processors import step_options
    from torch2ort.serve.compute import needs_labels

    out: dict[str, dict] = {}
    for kind in ("preprocess", "postprocess"):
        steps = bundle.manifest.get(kind, [])
        for name in step_options(steps, kind):
            info = {"type": OPTION_HELP.get(name, "see docs/serve.md"),
                    "required": name == "candidate_labels" and needs_labels(bundle)}
            default = next((s[name] for s in steps if name in s), None)
            if default is not None:
                info["default"] = default
            out[name] = info
    return out


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    inputs: list[dict]       # {"name", "datatype", "shape"}, -1 for a dynamic dim
    outputs: list[dict]
    batch_label: str | None
    batching: bool           # dynamic batching is on: max_batch > 1 and a shared batch dim
    display: dict | None = None  # how the page at / shows an answer (``display``)
    generation: dict | None = None  # a generating bundle: its routes and context (``generating``)
    options: dict | None = None  # the request parameters it takes (``call_options``)
    transcription: dict | None = None  # a speech-recognition bundle: its routes and window (``transcribing``)

    @classmethod
    def of(cls, bundle: Bundle, outputs: dict[str, np.ndarray], text: bool, max_batch: int,
           version: str = "1", file_input: dict | None = None,
           output_meta: dict[str, dict] | None = None) -> ModelInfo:
        """From the bundle's manifest and the outputs one warm-up run returned (post-processed ones included).

        ``file_input``: the BYTES input that takes encoded files, listed after the model's own tensors
        (a request sends one or the other); ``output_meta``: per output, what to say beyond the warm-up's
        shape (structured outputs: ``Compute.output_metadata``)."""
        if text:
            inputs = [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}]
        else:
            inputs = [{"name": t["name"], "datatype": oip_datatype(t["dtype"]), "shape": _dims(t["shape"])}
                      for t in bundle.inputs] + ([file_input] if file_input else [])
        declared = {o["name"]: o for o in bundle.outputs}
        metas = [{"name": name, "datatype": oip_datatype(arr.dtype),
                  "shape": _dims(declared[name]["shape"]) if name in declared else [-1, *arr.shape[1:]]}
                 for name, arr in outputs.items()]
        metas = [m | (output_meta or {}).get(m["name"], {}) for m in metas]
        label = batch_label(bundle)
        return cls(bundle.name, version, inputs, metas, label, max_batch > 1 and label is not None,
                   display(bundle, outputs), options=call_options(bundle))

    @classmethod
    def generating(cls, bundle: Bundle, version: str = "1") -> ModelInfo:
        """A decoder bundle: prompts in (BYTES ``text_input``), text out (BYTES ``text_output``); the KV-cache
        tensors are the server's business, not the client's."""
        info = bundle.manifest["generation"]
        return cls(bundle.name, version, [{"name": "text_input", "datatype": "BYTES", "shape": [-1]}],
                   [{"name": "text_output", "datatype": "BYTES", "shape": [-1]}], None, False, None,
                   generation={"generate": f"/v2/models/{bundle.name}/generate",
                    "generate_stream": f"/v2/models/{bundle.name}/generate_stream",
                    "openai": ["/v1/completions"] + (["/v1/chat/completions"] if info.get("chat_template") else []),
                    "max_positions": info.get("max_positions")})

    @classmethod
    def transcribing(cls, bundle: Bundle, compute, version: str = "1") -> ModelInfo:
        """A Whisper bundle: encoded audio files in (BYTES ``audio_file``), transcripts out (BYTES ``text_output``);
        the encoder's and decoder's tensors are the server's business. ``compute``: its ``SpeechCompute``."""
        from torch2ort.serve.transcription import OPTION_HELP

        out = [{"name": n, "datatype": "BYTES", "shape": [-1]} | m for n, m in compute.output_metadata().items()]
        return cls(bundle.name, version, [compute.file_metadata()], out, None, False, None,
                   options={k: {"type": v, "required": False} for k, v in OPTION_HELP.items()},
                   transcription={"openai": "/v1/audio/transcriptions", "window_s": compute.window_s,
                                  "language": compute.language()})

    def metadata(self) -> dict:
        params = {"torch2ort_dynamic_batching": self.batching, "batch_dim": self.batch_label,
                  "torch2ort_display": self.display}
        if self.generation is not None:
            params["torch2ort_generation"] = self.generation
        if self.transcription is not None:
            params["torch2ort_transcription"] = self.transcription
        return {"name": self.name, "versions": [self.version], "platform": "onnxruntime_onnx",
                "inputs": self.inputs, "outputs": self.outputs,
                "parameters": params | {"torch2ort_call_options": self.options or {}}}


__all__ = ["OPTION_HELP", "ModelInfo", "batch_label", "call_options", "display"]
