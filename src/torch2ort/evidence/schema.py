"""The sections of ``evidence.json`` and the ``Evidence`` that holds them: what a migration measured.

Each stage fills its own section. The sections are the file format, kept apart from the
in-memory classes that produce them (``VerifyResult``, ``BenchReport``, ``OptimizeResult``), so
those can change without silently changing the file. Keys the report does not read stay in each
section's ``extra`` (see ``record.py``), so a file loads and saves unchanged.

Example::

    ev = Evidence.from_json(Path("out/evidence.json").read_text())
    ev.outcome.passed, ev.check.outputs["logits"].value

Format 2 (torch2ort 0.1): the keys of format 1 under typed sections; ``stages[].exit_code`` is
always present; ``optimize.gates`` holds ``parity.gates.Gate.to_dict()`` (the older ``{gate, why}``
entries only gain keys, so both load). Other formats are refused with a one-line error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from torch2ort.errors import UsageError
from torch2ort.evidence.bench import BenchInfo, GenerationBenchInfo
from torch2ort.evidence.parity import GateVerdictInfo, OptimizeInfo, VerifyInfo
from torch2ort.evidence.record import Record

FORMAT = 2
Step = dict[str, Any]  # a pipeline step as the bundle manifest holds it: {"op": ..., params}


@dataclass
class StageRecord(Record):
    name: str
    status: str                     # ok | skipped | failed | not run
    seconds: float = 0.0
    summary: str = ""
    error: str | None = None
    exit_code: int | None = None


@dataclass
class Outcome(Record):
    passed: bool = False
    stopped_at: str | None = None
    reason: str | None = None
    exit_code: int = 0


@dataclass
class MachineInfo(Record):
    cpu: str = ""
    logical_cores: int | None = None
    physical_cores: int | None = None
    system: str = ""
    python: str = ""


@dataclass
class ModelInfo(Record):
    source: str
    kind: str
    parameters: int
    parameter_mb: float
    task: str | None = None
    notes: list[str] = field(default_factory=list)
    spec: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    samples: str | None = None
    texts: list[str] | None = None


@dataclass
class TensorInfo(Record):
    name: str
    dtype: str
    shape: list[Any]                # ints, and strings for dynamic dims


@dataclass
class GraphInfo(Record):
    nodes: int
    ops: dict[str, int]
    initializers: int
    mb: float
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    opset: int | None = None


@dataclass
class ExportInfo(Record):
    exporter: str
    why: str
    opset: int
    graph: GraphInfo
    attempts: dict[str, str] = field(default_factory=dict)


@dataclass
class Agreement(Record):
    """``parity.metrics.agreement`` of an answer with its reference."""

    max_abs: float | None = None
    min_cosine: float | None = None
    top1: float | None = None


@dataclass
class PoolingInfo(Record):
    chosen: str
    reference: str
    texts: int
    candidates: dict[str, Agreement]
    rule: str


@dataclass
class VerifyOptimizedInfo(Record):
    variant: str
    file: str
    gate: GateVerdictInfo
    parity: VerifyInfo


@dataclass
class BundleInfo(Record):
    path: str
    bytes: int
    files: dict[str, str]           # relative path -> sha256, as in the manifest
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    preprocess: list[Step] = field(default_factory=list)
    postprocess: list[Step] = field(default_factory=list)
    labels: list[str] | None = None
    requirements: str = ""


@dataclass
class Closure(Record):
    """Installed size of some packages and their dependencies (``footprint.closure_size``)."""

    bytes: int
    packages: dict[str, int]
    missing: list[str] = field(default_factory=list)


@dataclass
class FootprintInfo(Record):
    bundle_bytes: int
    runtime: Closure
    torch: Closure
    torch_roots: list[str]
    method: str


@dataclass
class OutputCheck(Agreement):
    """One output of the bundle's answer from raw input, judged against its reference."""

    metric: str = ""
    value: float = float("nan")
    passed: bool = False
    reference: str = ""
    reason: str = ""
    gate: str = ""


@dataclass
class StepDrift(Record):
    """One preprocessing step of the raw-file pipeline against an independent implementation."""

    step: str
    ours: str = ""
    reference: str = ""
    max_abs: float | None = None
    rms: float | None = None
    values: int | None = None
    note: str = ""


@dataclass
class CheckInfo(Record):
    input: str
    torch_imported: bool
    results: list[str]
    outputs: dict[str, OutputCheck]
    files: list[str] = field(default_factory=list)              # raw files predicted from, when given
    preprocess_module: str | None = None                        # "fused": one graph with the model
    steps: list[StepDrift] = field(default_factory=list)        # per-step drift of the raw-file pipeline
    mask: str | None = None                                     # segmentation: the bundle's colour mask (data: PNG)


@dataclass
class Evidence(Record):
    """Everything one migration measured; sections are None for stages that did not run."""

    format: int = FORMAT
    torch2ort: str = ""
    command: str | None = None
    started: str = ""
    finished: str | None = None
    machine: MachineInfo = field(default_factory=MachineInfo)
    versions: dict[str, str | None] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)       # MigrateOptions, as given
    stages: list[StageRecord] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    model: ModelInfo | None = None
    export: ExportInfo | None = None
    pooling: PoolingInfo | None = None
    verify: VerifyInfo | None = None
    optimize: OptimizeInfo | None = None
    verify_optimized: VerifyOptimizedInfo | None = None
    bench: BenchInfo | None = None
    generation_bench: GenerationBenchInfo | None = None  # a decoder's bench: TTFT, tokens/s, memory per side
    bundle: BundleInfo | None = None
    footprint: FootprintInfo | None = None
    check: CheckInfo | None = None

    def stage(self, name: str) -> StageRecord | None:
        return next((s for s in self.stages if s.name == name), None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=True)

    def to_dict(self) -> dict[str, Any]:
        # Sections of stages that did not run are left out, as format 1 did.
        return {k: v for k, v in super().to_dict().items() if v is not None or k in ("command", "finished")}

    @classmethod
    def from_json(cls, text: str, where: str = "evidence.json") -> Evidence:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{where} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{where} should hold a JSON object")
        version = data.get("format")
        if version != FORMAT:
            raise UsageError(f"{where} is evidence format {version}; this torch2ort reads format {FORMAT} "
                             "(re-run torch2ort migrate to regenerate it)")
        return cls.from_dict(data)
