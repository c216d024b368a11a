"""Evidence section for the benchmark: the typed file form of ``BenchReport.to_dict()``.

Every worker's raw samples are kept (``runs``); the report draws its box plots from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch2ort.evidence.record import Record


@dataclass
class BenchMachine(Record):
    cpu: str = ""
    physical_cores: int | None = None
    logical_cores: int | None = None
    system: str = ""


@dataclass
class BenchSettings(Record):
    batches: list[int]
    threads: int | None = None
    seconds: float | None = None
    warmup: int = 0
    repeats: int = 0


@dataclass
class BatchSamples(Record):
    samples_ms: list[float] = field(default_factory=list)


@dataclass
class BenchRun(Record):
    """One worker process: its backend label and, per batch size, every timed call."""

    label: str
    batches: dict[str, BatchSamples] = field(default_factory=dict)


@dataclass
class BenchRow(Record):
    """Per backend and batch: the median of each statistic over repeats (``BenchReport.rows``)."""

    backend: str
    batch: int
    p50: float
    p90: float
    p99: float
    mean: float
    throughput: float
    peak_rss_mb: float


@dataclass
class RatioInfo(Record):
    median: float
    min: float
    max: float
    stable: bool = True      # False: the repeats disagree widely; reported as unstable, never quoted
    why: str = ""

    def text(self) -> str:
        figure = f"{self.median:.2f}× [{self.min:.2f}–{self.max:.2f}]"
        return figure if self.stable else f"unstable ({figure}: {self.why})"


@dataclass
class Overhead(Record):
    overhead_ms: float
    overhead_pct: float


@dataclass
class ColdStart(Record):
    import_s: float
    load_s: float
    first_inference_s: float
    total_s: float
    process_wall_s: float


@dataclass
class BenchInfo(Record):
    onnx: str
    options: BenchSettings
    machine: BenchMachine
    versions: dict[str, Any] = field(default_factory=dict)
    runs: list[BenchRun] = field(default_factory=list)
    rows: list[BenchRow] = field(default_factory=list)
    ratios: dict[str, dict[str, RatioInfo]] = field(default_factory=dict)  # candidate -> batch -> ratio
    cold: dict[str, ColdStart] = field(default_factory=dict)
    overhead: Overhead | None = None
    noise: dict[str, Any] = field(default_factory=dict)  # load average and CPU steal around the run
    # peer runtimes (bench --peers / migrate --peers): name -> {"measured", "note", "compile_s"}; their
    # ratios sit in ``ratios`` as "openvino", "onnxruntime vs openvino", …
    peers: dict[str, Any] = field(default_factory=dict)


@dataclass
class GenerationSide(Record):
    """One side of the generation benchmark: medians over its processes, or why it was not measured."""

    measured: bool
    note: str = ""
    ttft_ms: dict[str, float] = field(default_factory=dict)              # prompt length -> ms
    decode_tok_s: dict[str, float | None] = field(default_factory=dict)  # prompt length -> tokens/s
    peak_rss_mb: float | None = None


@dataclass
class GenerationBenchInfo(Record):
    """A decoder's bench (``benchmark/generation.py``): the bundle, transformers and onnxruntime-genai; every
    process's own figures and step times stay in each side's ``runs`` (kept in ``extra``)."""

    variant: str
    threads: int
    prompt_tokens: list[int]
    new_tokens: int
    repeats: int
    sides: dict[str, GenerationSide] = field(default_factory=dict)
    ratios: dict[str, dict[str, RatioInfo]] = field(default_factory=dict)  # "decode vs transformers" -> length ->
    kv_cache: dict[str, Any] = field(default_factory=dict)
    capped: str = ""
    machine: BenchMachine | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
