"""Optimising a decoder: fusion and weight-only int8 / int4 variants behind generation gates, the fastest that holds.

Variants, each one or two passes:

- ``fused``: ``DecoderFusion`` (onnxscript's ORT fusions plus our rotary and masked-GQA rules:
  GroupQueryAttention over a shared KV buffer where KV heads are grouped, else MultiHeadAttention;
  RotaryEmbedding, SkipSimplifiedLayerNormalization), then ``PackProjections`` (MatMuls sharing an input,
  Q/K/V and gate/up, as one MatMul and a Split). Neither changes a weight's value, so the result is held to
  what the export is held to: re-verified against transformers (logits on the prefill and cached steps,
  greedy tokens alone and batched, ``parity.generation.verify_decoder``) when the torch model is at hand;
- ``int8-weight`` / ``int4-weight``: ``WeightOnly`` (ORT's MatMulNBitsQuantizer);
- ``fused+int8-weight`` / ``fused+int4-weight``: the quantiser on the fused, packed graph (refused with it
  when that graph fails its parity). Packing first means one MatMulNBits per group: 4 weight MatMuls per
  Qwen2 layer instead of 7. ``fused+int4-weight`` quantises the token embedding too (GatherBlockQuantized,
  as onnxruntime-genai's int4 does): on the Qwen2-0.5B shape that halves the decoding process's peak RSS
  (BENCHMARKS.md). ``int4-weight`` leaves the embedding float, so a model whose embedding does not take
  4 bits still has an int4 variant that can hold its gates.

The export's ``logits_to_keep`` input (``export/logits.py``) is carried through every variant: the
fusion's optimiser drops it, and it is put back (``restore_logits_to_keep``).

Every variant is also judged against the fp32 export by ``parity.generation_gates`` (teacher-forced
top-1, perplexity ratio, greedy agreement, loops) and timed by the runtime's own greedy loop (ms per
decoded token, best of ``repeats``). The fp32 export is always a candidate, so a variant is only
chosen when it holds its gates *and* decodes faster; one that loops or degrades is refused and says why.

    result = optimize_decoder("model.onnx", info, "tokenizer.json", prompts, chains="auto", out="best.onnx")
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch2ort.errors import PassError, PassFailedError, UsageError, unknown_name

if TYPE_CHECKING:
    from torch2ort.sources import LoadedModel

# name -> the steps, in order: "fused" (DecoderFusion) and/or a weight-only bit width
VARIANTS = {"fused": ("fused",), "int8-weight": (8,), "int4-weight": (4,),
            "fused+int8-weight": ("fused", 8), "fused+int4-weight": ("fused", 4)}
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
    parity: dict = field(default_factory=dict)   # a fused graph against transformers: passed, max_abs, greedy


@dataclass
class DecoderOptimizeResult:
    variants: list[DecoderVariant]
    chosen: str
    output: Path | None
    text: str
    seconds: float = 0.0

    @property
    def message(self) -> str:
        chosen = next(v for v in self.variants if v.name == self.chosen)
        return f"chose {chosen.label}: {chosen.why}"

    def to_optimize_result(self):
        """The planner's ``OptimizeResult``, so ``optimize --json`` and its table have one shape for every model."""
        from torch2ort.optimization.planner import OptimizeResult, Variant

        base = self.variants[0].ms_per_token
        rows = []
        for v in self.variants:
            failures = [] if v.passed else [v.why]
            rows.append(Variant(
                name=v.label, passes=[] if v.name == "fp32" else list(map(str, VARIANTS[v.name])),
                path=str(self.output) if v.name == self.chosen and self.output else None, size_mb=v.size_mb,
                details=[v.details] if v.details else [], gate={"passed": v.passed, "checks": [], "errors": failures},
                passed=v.passed, summary=summary(v), error=None if v.passed else v.why,
                latency=None if v.ms_per_token is None else {"p50": v.ms_per_token, "unit": "ms per decoded token"},
                vs_fp32=None if not v.ms_per_token else {"median": base / v.ms_per_token, "stable": True}))
        chosen = next(v for v in self.variants if v.name == self.chosen)
        positions = max((v.gates.get("positions", 0) for v in self.variants), default=0)
        return OptimizeResult(
            rows, {}, positions, "none (weight-only: no activation statistics)",
            gate_cases={"cases": [], "why": f"teacher-forced on {self.text}"}, chosen=chosen.label,
            output=str(self.output) if self.output else None, message=self.message, seconds=self.seconds,
            decoder=self.evidence())

    def evidence(self) -> dict:
        from torch2ort.parity.generation_gates import CHUNK, LIMITS

        return {"text": self.text, "variants": [vars(v) for v in self.variants], "limits": LIMITS, "chunk": CHUNK,
                "timing": "ms per decoded token, the runtime's greedy loop, best of the repeats"}


def summary(v: DecoderVariant) -> str:
    """The metric cell of a variant's row: its gates, and a fused graph's parity and fused-op counts."""
    parts = []
    if v.gates.get("top1") is not None:
        parts.append(f"top-1 {v.gates['top1']:.3f}, ppl ×{v.gates['ppl_ratio']:.3f}, greedy {v.gates['greedy']:.2f}")
    if v.parity:
        parts.append("parity vs transformers " + ("pass" if v.parity["passed"] else "FAIL")
                     + (f" (max abs {v.parity['max_abs']:.1e})" if v.parity.get("max_abs") is not None else ""))
    fused = v.details.get("fused_ops")
    if fused:
        parts.append("fused " + ", ".join(f"{n} {op}" for op, n in fused.items()))
    packed = v.details.get("packed")
    if packed and packed["groups"]:
        parts.append(f"{packed['merged']} MatMuls packed into {packed['groups']}")
    return "; ".join(parts) or "-"


def variant_names(chains) -> list[str]:
    if isinstance(chains, str):
        chains = [chains]
    names = list(VARIANTS) if list(chains) == ["auto"] else [c.strip() for chain in chains for c in chain.split(",")
                                                             if c.strip()]
    for name in names:
        if name not in VARIANTS:
            raise UsageError(unknown_name("decoder optimisation", name, ["auto", *VARIANTS]))
    if not names:
        raise UsageError(f"no decoder optimisation named; choose from auto, {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


def optimize_decoder(onnx_path: str | Path, info: dict, tokenizer_file: str | Path, prompts: list[str], *,
                     chains="auto", model_dir: str | Path | None = None, out: str | Path,
                     threads: int = 2, repeats: int = 2, log: Callable[[str], None] = lambda line: None,
                     loaded: LoadedModel | None = None) -> DecoderOptimizeResult:
    """``loaded``: the transformers model, so a fused graph is re-verified against it (without it, a fused
    graph is held only to the generation gates against the fp32 export, and its row says so)."""
    import onnxruntime as ort

    from torch2ort.export.graph import model_bytes
    from torch2ort.export.logits import restore_logits_to_keep
    from torch2ort.optimization.passes.base import PassContext
    from torch2ort.optimization.passes.decoder_fusion import DecoderFusion
    from torch2ort.optimization.passes.pack import PackProjections
    from torch2ort.optimization.passes.weight_only import WeightOnly
    from torch2ort.parity.generation_gates import heldout_text, judge_decoder
    from torch2ort.runtime.generate import load_tokenizer

    started = time.perf_counter()
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
        ctx = PassContext(Path(tmp))
        fused: dict = {}

        def fuse() -> dict:
            """The fused graph, built and re-verified once for every variant that starts from it."""
            if not fused:
                p = DecoderFusion(max_positions=info.get("max_positions"))
                log(f"{p.label}: fusing, then re-verifying against transformers")
                try:
                    res = p(onnx_path, Path(tmp) / "fused.onnx", ctx)
                    restore_logits_to_keep(onnx_path, res.model)
                    packed = PackProjections()(res.model, Path(tmp) / "packed.onnx", ctx)
                except (PassError, PassFailedError) as exc:
                    fused.update(error=str(exc))
                    return fused
                log(f"{PackProjections.name}: {packed.details['merged']} MatMuls packed into "
                    f"{packed.details['groups']}")
                fused.update(path=packed.model, details=res.details | {"packed": _packed(packed.details)},
                             parity=_parity(loaded, packed.model, prompts))
            return fused

        for name in names:
            steps, src, details, label = VARIANTS[name], Path(onnx_path), {}, []
            parity: dict = {}
            why = ""
            for step in steps:
                if step == "fused":
                    f = fuse()
                    label.append("decoder-fusion+pack-projections")
                    if "error" in f:
                        why = f["error"]
                        break
                    src, parity = f["path"], f["parity"]
                    details["fused_ops"] = f["details"]["fused_ops"]
                    details["packed"] = f["details"]["packed"]
                    if not parity["passed"]:
                        why = "the fused graph fails parity against transformers: " + "; ".join(parity["failures"][:2])
                        break
                else:
                    p = WeightOnly(block_size=BLOCK_SIZE, accuracy_level=ACCURACY_LEVEL, bits=step,
                                   embedding=step == 4 and "fused" in steps)
                    label.append(p.label)
                    log(f"{p.label}: quantising{' the fused graph' if src != Path(onnx_path) else ''}")
                    try:
                        res = p(src, Path(tmp) / f"{name}.onnx", ctx)
                    except (PassError, PassFailedError) as exc:
                        why = str(exc)
                        break
                    src = res.model
                    details.update({k: v for k, v in res.details.items() if k not in ("nodes_before", "nodes_after")})
            if why:
                variants.append(DecoderVariant(name, "+".join(label), False, details=details, why=why, parity=parity))
                continue
            log(f"{name}: judging on {text_name} and {len(prompts)} prompts")
            candidate = session(src)
            gates = judge_decoder(reference, candidate, info, tokenizer, prompts, text, text_name)
            v = DecoderVariant(name, "+".join(label), gates.passed, gates.to_dict(),
                               _ms_per_token(candidate, info, prompt, repeats), model_bytes(src) / 2**20, details,
                               gates.summary() if gates.passed else "; ".join(gates.failures()), parity)
            variants.append(v)
            shutil.copyfile(src, Path(tmp) / f"keep-{name}.onnx")
        held = [v for v in variants if v.passed]
        best = min(held, key=lambda v: v.ms_per_token)
        best.why = f"the fastest that holds its gates ({best.ms_per_token:.2f} ms/token); {best.why}"
        out = Path(out)
        if best.name != "fp32":
            shutil.copyfile(Path(tmp) / f"keep-{best.name}.onnx", out)
    return DecoderOptimizeResult(variants, best.name, out if best.name != "fp32" else None, text_name,
                                 time.perf_counter() - started)


def _packed(details: dict) -> dict:
    """What ``PackProjections`` did, for the variant's details and its summary."""
    return {k: details[k] for k in ("groups", "merged", "biases", "matmuls_before", "matmuls_after")}


def _parity(loaded: LoadedModel | None, path: Path, prompts: list[str]) -> dict:
    """A fused graph against transformers, as the export was verified; without the model, the reason why not."""
    if loaded is None:
        return {"passed": True, "checked": False, "failures": [],
                "note": "not re-verified against transformers (no torch model given); held to the generation gates"}
    from torch2ort.parity.generation import verify_decoder

    res = verify_decoder(loaded, path, prompts=prompts)
    return {"passed": bool(res.report), "checked": True, "max_abs": res.report.max_abs(),
            "greedy_identical": res.generation["identical"], "failures": res.report.failures()[:3]}


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
