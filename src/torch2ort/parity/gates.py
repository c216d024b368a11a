"""Accuracy gates: the task-level check every optimised variant must pass before it is kept.

A gate is ``[OUTPUT:]METRIC OP LIMIT``, e.g. ``cosine>=0.99`` or ``logits:top1>=0.99``. Metrics,
each aggregated over every verification case:

    cosine    min per-item cosine similarity to the PyTorch output      (embeddings)
    top1      share of rows whose argmax agrees with PyTorch            (classifier scores)
    decision  share of values on the same side of 0.5 as PyTorch        (multi-label sigmoids)
    sign      share of values with the same sign as PyTorch             (independent binary logits)
    maxabs    max |variant - PyTorch|                                   (regression, images)
    psnr      min peak signal-to-noise ratio in dB over the cases        (images, e.g. lip-sync frames)
    entities  share of entity groups both find (NER answers)             (parity.answers)
    boxes     share of detections matched, same label and IoU >= 0.9     (detection answers)
    pixels    share of pixels of the same class                          (segmentation answers)

The last three judge what the bundle answers (post-processed), not a raw tensor: they belong to the
answer a postprocess step makes (``entities``, ``detections``, ``segmentation``), and a gate on them
without an output name goes to that answer. A model whose postprocess makes such an answer is judged
on it by default (``entities>=0.95``, ``boxes>=0.95``, ``pixels>=0.99``), not on the raw tensors it reads.

Each is defined once, in ``parity.metrics``; here they are aggregated over cases and held to a limit.

Without ``--accept``, each output gets the default for its kind, read from the PyTorch output on
every case and from a declared sigmoid/softmax postprocess (``default_gate``). Whatever the gate,
NaN/Inf where PyTorch is finite, or a wrong shape or dtype, fails.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from torch2ort.errors import UsageError
from torch2ort.parity import metrics

METRICS = metrics.DIRECTIONS
_GATE = re.compile(r"^(?:(?P<output>[^:]+):)?(?P<metric>[a-z0-9]+)\s*(?P<op>>=|<=)\s*(?P<limit>[-+0-9.eE]+)$")
# what each metric can take: a limit outside can never hold, or always does
LIMITS = {"cosine": (-1.0, 1.0), "top1": (0.0, 1.0), "decision": (0.0, 1.0), "sign": (0.0, 1.0),
          "maxabs": (0.0, 1e6), "psnr": (0.0, 1000.0), "entities": (0.0, 1.0), "boxes": (0.0, 1.0),
          "pixels": (0.0, 1.0)}
EMBEDDING_WORDS = ("embed", "pool", "sentence", "feature", "vector", "hidden", "encod")


@dataclass(frozen=True)
class Gate:
    metric: str
    limit: float
    output: str | None = None  # None: every output without a gate of its own
    why: str = ""

    def __post_init__(self) -> None:  # a gate that NaN or inf could satisfy is no gate (issue 27)
        if self.metric not in METRICS:
            raise UsageError(f"gate metric {self.metric!r}: one of {', '.join(METRICS)}")
        low, high = LIMITS[self.metric]
        if isinstance(self.limit, bool) or not isinstance(self.limit, (int, float)) or not (
                math.isfinite(self.limit) and low <= self.limit <= high):
            raise UsageError(f"--accept {self.metric}{self.op}{self.limit!r:.40}: the {self.metric} limit must be a "
                             f"finite number from {low:g} to {high:g}")

    @property
    def op(self) -> str:
        return METRICS[self.metric]

    def text(self, with_output: bool = True) -> str:
        """``logits:top1>=0.99`` as ``--accept`` takes it; ``top1>=0.99`` where the output is said beside it."""
        return f"{self.output + ':' if self.output and with_output else ''}{self.metric}{self.op}{self.limit:g}"

    def holds(self, value: float | None) -> bool:
        return metrics.holds(self.metric, value, self.limit)

    def named(self, output: str) -> Gate:
        """The same gate, held by one output (a global ``--accept`` applied to each output)."""
        return Gate(self.metric, self.limit, output, self.why)

    def to_dict(self) -> dict[str, Any]:
        """Typed fields for readers, plus ``gate``: the text a person reads (and format 2 files hold)."""
        return {"gate": self.text(), "metric": self.metric, "limit": self.limit, "output": self.output, "why": self.why}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gate:
        """Read ``to_dict``'s form back; an older ``{"gate": TEXT, "why": ...}`` is parsed from its text."""
        if not isinstance(data, dict) or "metric" not in data and "gate" not in data:
            raise UsageError(f"a gate should be an object with metric and limit, got {data!r}")
        if "metric" not in data:
            return replace(parse_gate(data["gate"]), why=data.get("why", ""))
        if data["metric"] not in METRICS or not isinstance(data.get("limit"), (int, float)):
            raise UsageError(f"a gate needs a metric among {', '.join(METRICS)} and a numeric limit, got {data!r}")
        return cls(data["metric"], float(data["limit"]), data.get("output"), data.get("why", ""))


def parse_gate(text: str) -> Gate:
    m = _GATE.match(text.replace(" ", ""))
    if not m or m["metric"] not in METRICS:
        raise UsageError(f"--accept {text!r}: expected [OUTPUT:]METRIC>=X or maxabs<=X with METRIC one of "
                         f"{', '.join(f'{k}{v}' for k, v in METRICS.items())}, e.g. cosine>=0.99")
    if m["op"] != METRICS[m["metric"]]:
        raise UsageError(f"--accept {text!r}: {m['metric']} takes {METRICS[m['metric']]}")
    return Gate(m["metric"], float(m["limit"]), m["output"], "asked for with --accept")


def default_gate(name: str, refs: np.ndarray | list[np.ndarray], role: str | None = None) -> Gate:
    """The gate for an output, read from its PyTorch values over *every* case (docs/optimize.md).

    ``role`` is what the model declares about the output: ``sigmoid`` (independent logits or
    probabilities), ``softmax`` (class scores), or ``zero_shot`` (image-to-label logits, whose label
    axis is as long as the call's candidate list), from a postprocess step on it. A last axis whose
    size changes between cases (segments, tokens) is never a class axis, so it never gets top-1.
    """
    refs = [refs] if isinstance(refs, np.ndarray) else list(refs)
    if not all(np.issubdtype(r.dtype, np.floating) for r in refs):
        return Gate("maxabs", 0.0, name, "integer or bool output: must match exactly")
    if role == "zero_shot":  # top-1 zero-shot agreement: each image's best candidate label
        return Gate("top1", 0.99, name, "zero-shot logits: each image's top-1 candidate label, declared by the "
                                        "zero_shot postprocess")
    rs = [r.astype(np.float64) for r in refs]
    lowered = name.lower()
    ndims = {r.ndim for r in rs}
    ndim = ndims.pop() if len(ndims) == 1 else -1
    in_unit = all(bool(np.all((r >= 0) & (r <= 1))) for r in rs)
    fixed_classes = ndim == 2 and len({r.shape[-1] for r in rs}) == 1 and rs[0].shape[-1] >= 2
    unit_rows = ndim >= 2 and all(r.size and r.reshape(r.shape[0], -1).shape[1] > 1 and bool(
        np.all(np.abs(np.linalg.norm(r.reshape(r.shape[0], -1), axis=1) - 1) < 1e-3)) for r in rs)
    if ndim in (2, 3) and (any(w in lowered for w in EMBEDDING_WORDS) or unit_rows or ndim == 3) and role is None:
        return Gate("cosine", 0.99, name, "embedding or token features")
    independent = in_unit and ndim in (1, 2) or "logit" in lowered
    if role == "sigmoid" or (independent and not fixed_classes):
        why = "probabilities (sigmoid)" if in_unit else "independent logits (decision at 0, sigmoid's 0.5)"
        return Gate("decision", 0.99, name, why + (", declared by a sigmoid postprocess" if role else ""))
    if fixed_classes:
        softmax = in_unit and all(bool(np.allclose(r.sum(-1), 1.0, atol=1e-3)) for r in rs)
        if in_unit and not softmax and role != "softmax":
            return Gate("decision", 0.99, name, "independent probabilities (multi-label sigmoid)")
        return Gate("top1", 0.99, name, "class scores or softmax rows")
    return Gate("maxabs", 1e-3, name, "regression or image output")


def not_applicable(metric: str, refs: list[np.ndarray]) -> str | None:
    """Why ``metric`` cannot judge an output with these reference values, or None when it can."""
    if metric in ("cosine", "maxabs"):
        return None
    if not all(np.issubdtype(r.dtype, np.floating) for r in refs):
        return f"{metric} needs floating-point outputs (this one is {refs[0].dtype}); use maxabs<=0"
    if metric == "top1" and not all(r.ndim >= 2 and r.shape[-1] >= 2 for r in refs):
        shapes = sorted({str(list(r.shape)) for r in refs})
        return f"top1 needs class scores (a last axis of >= 2 classes); the output's shapes are {', '.join(shapes)}"
    if metric == "psnr" and not all(r.size for r in refs):
        return "psnr needs non-empty outputs"
    return None


@dataclass
class GateCheck:
    output: str
    gate: str
    metric: str
    value: float | None
    passed: bool
    why: str = ""
    reason: str = ""
    n: int | None = None          # rows or decisions judged (agreement), or cases (tolerance metrics)
    bound: float | None = None    # agreement metrics: the one-sided 95% lower bound that must clear the limit


@dataclass
class GateVerdict:
    checks: list[GateCheck] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.errors and bool(self.checks) and all(c.passed for c in self.checks)

    def summary(self) -> str:
        """``cosine 0.9927`` for one output; ``logits top1 1, probs decision 0.998`` for several."""
        if len(self.checks) == 1:
            return f"{self.checks[0].metric} {_fmt(self.checks[0].value)}{_bound(self.checks[0])}"
        return ", ".join(f"{c.output} {c.metric} {_fmt(c.value)}{_bound(c)}" for c in self.checks) or "-"

    def failures(self) -> list[str]:
        return self.errors + [f"{c.output}: {c.reason}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {"passed": bool(self), "checks": [asdict(c) for c in self.checks], "errors": self.errors}


def _bound(c: GateCheck) -> str:
    """`` (≥0.981 at 95%, n=270)`` for an agreement gate; nothing for the others."""
    return "" if c.bound is None else f" (≥{_fmt(c.bound)} at 95%, n={c.n})"


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.5g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def resolve_gates(accept: list[Gate], references: dict[str, np.ndarray | list[np.ndarray]],
                  roles: dict[str, str] | None = None, answers: dict | None = None) -> dict[str, Gate]:
    """One gate per output: an output-specific --accept, else a global one, else the default.

    ``references`` holds each output's PyTorch values on every verification case; a gate whose metric
    cannot judge an output (top-1 on a single score, say) is a usage error that says why.
    ``answers`` (``parity.answers.answers_of``): the post-processed answers a task gate judges; with
    them, the raw outputs they read are judged through them (``_answer_gates``).
    """
    if answers:
        return _answer_gates(accept, references, roles, answers)
    for g in accept:
        if g.metric in metrics.ANSWER:
            raise UsageError(f"--accept {g.text()}: {g.metric} judges the answer of a bundle whose postprocess "
                             "makes one (entities, detections, segment); this model has none")
    refs = {k: [v] if isinstance(v, np.ndarray) else list(v) for k, v in references.items()}
    roles = roles or {}
    known = set(refs)
    for g in accept:
        if g.output and g.output not in known:
            raise UsageError(f"--accept {g.text()}: no output named {g.output!r} (outputs: {', '.join(known)})")
    global_gates = [g for g in accept if not g.output]
    if len(global_gates) > 1:
        raise UsageError("give at most one --accept without an output name; name outputs for the others")
    gates = {}
    for name, values in refs.items():
        own = [g for g in accept if g.output == name]
        if own:
            gates[name] = own[-1]
        elif global_gates:
            gates[name] = global_gates[0].named(name)
        else:
            gates[name] = default_gate(name, values, roles.get(name))
        why_not = not_applicable(gates[name].metric, values)
        if why_not:
            raise UsageError(f"--accept {gates[name].text()}: {why_not} (output {name!r})")
    return gates


def _answer_gates(accept: list[Gate], references: dict, roles: dict[str, str] | None,
                  answers: dict) -> dict[str, Gate]:
    """Gates for a model whose postprocess makes answers: each answer gets its metric's gate (``--accept``
    by name, or a global one of its metric, else ``>=0.99``); the raw outputs an answer reads are judged
    through it, other raw outputs as usual; a raw-output gate asked for by name still holds too."""
    from torch2ort.parity.answers import DEFAULT_LIMIT

    read = {n for a in answers.values() for n in (a.output, a.boxes) if n}
    gates: dict[str, Gate] = {}
    for name, answer in answers.items():
        own = [g for g in accept if g.output == name or (g.output is None and g.metric == answer.metric)]
        wrong = [g for g in own if g.metric != answer.metric]
        if wrong:
            raise UsageError(f"--accept {wrong[0].text()}: the answer {name!r} is judged by {answer.metric}, "
                             f"e.g. {name}:{answer.metric}>=0.99")
        gates[name] = own[-1].named(name) if own else Gate(
            answer.metric, DEFAULT_LIMIT[answer.metric], name, f"the {name} the bundle answers, post-processed "
                                                               "(parity.answers)")
    for g in accept:
        if g.metric in metrics.ANSWER and g.output is None and g.metric not in {a.metric for a in answers.values()}:
            raise UsageError(f"--accept {g.text()}: no answer of this bundle is judged by {g.metric}; "
                             f"its answers: {', '.join(f'{n} ({a.metric})' for n, a in answers.items())}")
    raw_accept = [g for g in accept if g.metric not in metrics.ANSWER and g.output not in answers]
    rest = {k: v for k, v in references.items() if k not in read or any(g.output == k for g in raw_accept)}
    if rest:
        gates |= resolve_gates(raw_accept, rest, roles)
    return gates


def roles_from_postprocess(steps: list[dict] | None) -> dict[str, str]:
    """Output name -> ``sigmoid``, ``softmax`` or ``zero_shot``, where a postprocess step declares it."""
    roles = {s["output"]: s["op"] for s in steps or [] if s.get("op") in ("sigmoid", "softmax") and s.get("output")}
    return roles | {s.get("output", "logits_per_image"): "zero_shot" for s in steps or [] if s.get("op") == "zero_shot"}
