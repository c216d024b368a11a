"""Optimising a decoder: weight-only int8 / int4 variants behind generation gates, the fastest that holds.

Each variant is written by ``WeightOnly`` (ORT's MatMulNBitsQuantizer), judged against the fp32 export
by ``parity.generation_gates`` (teacher-forced top-1, perplexity ratio, greedy agreement, loops) and
timed by the runtime's own greedy loop (ms per decoded token, best of ``repeats``). The fp32 export is
always a candidate, so a variant is only chosen when it holds its gates *and* decodes faster; one that
loops or degrades is refused and says why.

    result = optimize_decoder("model.onnx", info, "tokenizer.json", prompts, chains="auto", out="best.onnx")
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch2ort.errors import UsageError, unknown_name

VARIANTS = {"int8-weight": {"bits": 8}, "int4-weight": {"bits": 4}}
BLOCK_SIZE = 32
ACCURACY_LEVEL = 4   # int8 activations per block inside MatMulNBits: the fast CPU path
TIMED_TOKENS = 48


@dataclass
class DecoderVariant:
    name: str
    label: str
    passed: bool
    gates: dict = field(default_factory=dict)
    ms_per_token: float | None = None
    size_mb: float | None = None
    details: dict = field(default_factory=dict)
    why: str = ""


@dataclass
class DecoderOptimizeResult:
    variants: list[DecoderVariant]
    chosen: str
    output: Path | None
    text: str

    @property
    def message(self) -> str:
        chosen = next(v for v in self.variants if v.name == self.chosen)
        return f"chose {chosen.label}: {chosen.why}"


def variant_names(chains) -> list[str]:
    names = list(VARIANTS) if chains in ("auto", ["auto"]) else [c for chain in chains for c in chain.split(",")]
    for name in names:
        if name not in VARIANTS:
            raise UsageError(unknown_name("decoder optimisation", name, ["auto", *VARIANTS]))
    return names


def optimize_decoder(onnx_path: str | Path, info: dict, tokenizer_file: str | Path, prompts: list[str], *,
                     chains="auto", model_dir: str | Path | None = None, out: str | Path,
                     threads: int = 2, repeats: int = 2, log: Callable[[str], None] = lambda line: None
                     ) -> DecoderOptimizeResult:
    import onnxruntime as ort

    from torch2ort.export.graph import model_bytes
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.weight_only import WeightOnly
    from torch2ort.parity.generation_gates import heldout_text, judge_decoder
    from torch2ort.runtime.generate import load_tokenizer

    names = variant_names(chains)
    tokenizer = load_tokenizer(Path(tokenizer_file))
    text, text_name = heldout_text(model_dir)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3

    def session(path):
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    reference = session(onnx_path)
    prompt = tokenizer.encode(prompts[0]).ids
    base = DecoderVariant("fp32", "fp32", True, ms_per_token=_ms_per_token(reference, info, prompt, repeats),
                          size_mb=model_bytes(onnx_path) / 2**20, why="the exported graph")
    variants = [base]
    with tempfile.TemporaryDirectory(prefix="torch2ort-decoder-opt-") as tmp:
        for name in names:
            p = WeightOnly(block_size=BLOCK_SIZE, accuracy_level=ACCURACY_LEVEL, **VARIANTS[name])
            log(f"{p.label}: quantising, then judging on {text_name} and {len(prompts)} prompts")
            res = p(onnx_path, Path(tmp) / f"{name}.onnx", PassContext(Path(tmp)))
            candidate = session(res.model)
            gates = judge_decoder(reference, candidate, info, tokenizer, prompts, text, text_name)
            v = DecoderVariant(name, p.label, gates.passed, gates.to_dict(),
                               _ms_per_token(candidate, info, prompt, repeats), model_bytes(res.model) / 2**20,
                               res.details, gates.summary() if gates.passed else "; ".join(gates.failures()))
            variants.append(v)
            shutil.copyfile(res.model, Path(tmp) / f"keep-{name}.onnx")
        held = [v for v in variants if v.passed]
        best = min(held, key=lambda v: v.ms_per_token)
        for v in variants:
            if v is best:
                v.why = f"the fastest that holds its gates ({v.ms_per_token:.2f} ms/token); {v.why}"
        out = Path(out)
        if best.name != "fp32":
            shutil.copyfile(Path(tmp) / f"keep-{best.name}.onnx", out)
    return DecoderOptimizeResult(variants, best.name, out if best.name != "fp32" else None, text_name)


def _ms_per_token(session, info: dict, prompt: list[int], repeats: int) -> float:
    """Greedy decode of TIMED_TOKENS tokens with the runtime's loop (IOBinding), ms per token, best of repeats."""
    from torch2ort.runtime.generate import Generator

    gen = Generator(session, None, {**info, "eos_token_id": []})
    gen.generate_ids([prompt], 4)  # warm-up
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        gen.generate_ids([prompt], TIMED_TOKENS)
        best = min(best, (time.perf_counter() - start) * 1000 / TIMED_TOKENS)
    return best
