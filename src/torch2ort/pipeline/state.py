"""What flows between the stages of a migration: the options, the model, the files and the evidence.

Stages read and fill one ``MigrationState``; each writes its own section of ``state.evidence``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from torch2ort import values as V
from torch2ort.evidence import Evidence

if TYPE_CHECKING:
    from torch2ort.parity.gates import Gate
    from torch2ort.sources import LoadedModel, ModelRequest
    from torch2ort.spec import InputSpec


@dataclass
class MigrateOptions:
    optimize: str | list[str] = "none"      # none, auto, or chains like "transformer,int8-dynamic"
    accept: list[str] = field(default_factory=list)
    samples: str | None = None              # .npz, a folder of them, or .txt (one text per line)
    n: int = 4
    seed: int = 0
    sweep: dict[str, list[int]] | None = None
    name: str | None = None
    labels: list[str] | None = None
    preprocess: str | list | None = None
    postprocess: str | list | None = None
    tokenizer: str | None = None
    bench: bool = True
    batches: list[int] | None = None
    seconds: float = 1.0
    repeats: int = 2
    threads: int | None = None
    peers: bool | str | list[str] = False   # time torch.compile / OpenVINO too: the report's "what else" line
    prompt_tokens: list[int] | None = None  # text-generation bench: prompt lengths (default 128, 512; capped)
    new_tokens: int = 32                    # text-generation bench: tokens generated per prompt
    genai_python: str | None = None         # an interpreter with onnxruntime-genai (default $TORCH2ORT_GENAI_PYTHON)
    force: bool = False
    command: str | None = None              # how this run was invoked, for the report

    def __post_init__(self) -> None:  # the same bounds from the CLI, a TOML file or Python
        self.n = V.count("--n", self.n, 1, V.MAX_CASES)
        self.seed = V.count("--seed", self.seed, 0, 2**32 - 1)
        self.seconds = V.number("--seconds", self.seconds, 0.01, V.MAX_SECONDS)
        self.repeats = V.count("--repeats", self.repeats, 1, V.MAX_REPEATS)
        self.threads = V.optional_count("--threads", self.threads, 1, V.MAX_THREADS)
        if self.batches is not None:
            self.batches = V.sizes("--batch", self.batches)
        if self.prompt_tokens is not None:
            self.prompt_tokens = V.sizes("--prompt-tokens", self.prompt_tokens, 1 << 20)
        self.new_tokens = V.count("--new-tokens", self.new_tokens, 2, 1 << 16)
        from torch2ort.benchmark.generation import genai_python

        self.genai_python = genai_python(self.genai_python)


@dataclass
class MigrationState:
    """The run so far. ``onnx`` is the fp32 export; ``final`` the file that gets packed."""

    request: ModelRequest
    spec: InputSpec | None
    out: Path
    opts: MigrateOptions
    evidence: Evidence
    log: Callable[[str], None] = lambda line: None
    loaded: LoadedModel | None = None
    samples: str | None = None              # .npz file or folder verification runs on
    texts: list[str] | None = None          # raw texts, for text models
    raw_files: list[str] = field(default_factory=list)  # raw files the check predicts from: audio/signal
                                                        # --samples, or the media made for an hf image/audio folder
    gates: dict[str, Gate] | None = None    # output -> the gate the chosen variant passed
    confirm_cases: list = field(default_factory=list)  # the optimiser's fresh cases: verify-optimized reruns them
    reference: tuple[np.ndarray, str] | None = None  # SentenceTransformer.encode(texts), computed once
    final: Path | None = None               # the file that gets packed; the fp32 export unless a variant won

    def __post_init__(self) -> None:
        self.samples = self.opts.samples
        self.final = self.final or self.onnx

    @property
    def onnx(self) -> Path:
        return self.out / "onnx" / "model.onnx"

    @property
    def optimized(self) -> Path:
        return self.out / "onnx" / "optimized.onnx"

    @property
    def bundle_dir(self) -> Path:
        return self.out / "bundle"

    def raw_steps(self) -> list[dict]:
        """The preprocess steps that read raw files (--preprocess as JSON, a .json file or a list)."""
        from torch2ort.bundle.writer import pipeline_steps

        return pipeline_steps(self.opts.preprocess or self.loaded.hints.preprocess or None, lambda *a: [])

    def sweep(self) -> dict[str, list[int]]:
        """--sweep, else the source's own sweep, else the example size and two others per dynamic dim."""
        from torch2ort.inputs import default_sweep

        if self.opts.sweep is not None:
            return self.opts.sweep
        return self.loaded.hints.sweep or default_sweep(self.spec)

    def bench_batches(self) -> list[int]:
        """--batch, else 1 and max(example, 8) with a dynamic batch dim, else the fixed batch."""
        from torch2ort.benchmark.run import batch_label

        if self.opts.batches:
            return list(self.opts.batches)
        label = batch_label(self.spec)
        if label:
            return sorted({1, max(self.spec.dynamic_labels()[label], 8)})
        return [self.spec.inputs[0].example_shape()[0]]

    def check_gate(self, name: str, ref: np.ndarray) -> Gate:
        """The gate the packed bundle's answer ``name`` is held to by the check stage."""
        from torch2ort.parity.judge import bundle_gate

        shipped = self.gates.get(name) if self.gates else None
        return bundle_gate(name, ref, shipped, optimised=self.final != self.onnx, task=self.loaded.hints.task,
                           from_file=bool(self.raw_files))

    def sentence_reference(self) -> tuple[np.ndarray, str]:
        """SentenceTransformer.encode on the sample texts, computed once for the pooling choice and the check."""
        if self.reference is None:
            from torch2ort.sources.hf import reference_sentence_embeddings

            self.reference = reference_sentence_embeddings(self.loaded.hints.model_dir, self.texts)
        return self.reference
