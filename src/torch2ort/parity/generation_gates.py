"""Gates fit for generation: a quantised decoder against the fp32 export, on text and on its own tokens.

- **next-token top-1 agreement** under teacher forcing: both graphs read the same held-out text, and
  at every position their most likely next token must agree;
- **perplexity ratio**: the quantised graph's perplexity on that text over the fp32 graph's;
- **greedy agreement**: the runtime's greedy loop on each prompt, both graphs; the share of the fp32
  tokens the quantised run reproduces before its first divergence, averaged over prompts. A variant
  that falls into a loop the fp32 graph does not (the int4 failure users report) is refused by name.

The report says which text each gate read. Torch-free: ONNX Runtime and numpy only.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from torch2ort.errors import UsageError

# Limits a quantised decoder must hold to be kept; fixed, not tuned per model.
MIN_TOP1 = 0.90
MAX_PPL_RATIO = 1.10
MIN_GREEDY = 0.50
LIMITS = {"top1": MIN_TOP1, "ppl_ratio": MAX_PPL_RATIO, "greedy": MIN_GREEDY}
CHUNK = 128           # tokens per teacher-forced row
MAX_CHUNKS = 8
GREEDY_TOKENS = 32
# Offline held-out text when the model folder has no heldout.txt: standard-library sources, named in the report.
STDLIB_TEXTS = ("textwrap.py", "shlex.py", "fnmatch.py")


@dataclass
class GenerationGates:
    top1: float
    ppl_ratio: float
    ppl_reference: float
    greedy: float
    loops: list[int] = field(default_factory=list)   # prompts where only the candidate ends in a loop
    text: str = ""                                    # which text the teacher-forced gates read
    positions: int = 0
    limits: dict = field(default_factory=lambda: dict(LIMITS))

    @property
    def passed(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        out = []
        if not self.top1 >= self.limits["top1"]:
            out.append(f"next-token top-1 agreement {self.top1:.3f} < {self.limits['top1']}")
        if not self.ppl_ratio <= self.limits["ppl_ratio"]:
            out.append(f"perplexity ratio {self.ppl_ratio:.3f} > {self.limits['ppl_ratio']}")
        if not self.greedy >= self.limits["greedy"]:
            out.append(f"greedy agreement {self.greedy:.3f} < {self.limits['greedy']}")
        if self.loops:
            out.append(f"loops where fp32 does not (prompts {self.loops})")
        return out

    def summary(self) -> str:
        return (f"top-1 {self.top1:.3f}, perplexity ×{self.ppl_ratio:.3f}, greedy {self.greedy:.2f}"
                + (f", loops on prompts {self.loops}" if self.loops else ""))

    def to_dict(self) -> dict:
        return {"top1": self.top1, "ppl_ratio": self.ppl_ratio, "ppl_reference": self.ppl_reference,
                "greedy": self.greedy, "loops": self.loops, "text": self.text, "positions": self.positions,
                "limits": self.limits, "passed": self.passed, "failures": self.failures()}


def heldout_text(model_dir: str | Path | None) -> tuple[str, str]:
    """(text, what it is): the folder's heldout.txt when it has one, else standard-library sources."""
    if model_dir and (Path(model_dir) / "heldout.txt").is_file():
        return (Path(model_dir) / "heldout.txt").read_text(encoding="utf-8", errors="replace"), \
            f"{Path(model_dir).name}/heldout.txt"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in STDLIB_TEXTS if (stdlib / name).is_file()]
    if not texts:
        raise UsageError("no held-out text for the generation gates (the standard library's sources are missing)")
    return "\n".join(texts), "Python standard library sources: " + ", ".join(STDLIB_TEXTS)


def judge_decoder(reference, candidate, info: dict, tokenizer, prompts: list[str], text: str,
                  text_name: str) -> GenerationGates:
    """Hold ``candidate`` (an InferenceSession) to the fp32 ``reference`` session on ``text`` and ``prompts``."""
    from torch2ort.runtime.generate import Generator

    ids = tokenizer.encode(text).ids
    rows = [ids[i:i + CHUNK] for i in range(0, len(ids) - CHUNK, CHUNK)][:MAX_CHUNKS]
    if not rows:
        raise UsageError(f"the held-out text ({text_name}) is shorter than {CHUNK} tokens")
    batch = np.asarray(rows, dtype=np.int64)
    ref_logits, cand_logits = (_forward(s, info, batch) for s in (reference, candidate))
    top1 = float(np.mean(ref_logits.argmax(-1) == cand_logits.argmax(-1)))
    ppl_ref, ppl_cand = _perplexity(ref_logits, batch), _perplexity(cand_logits, batch)
    prompt_ids = [e.ids for e in tokenizer.encode_batch(list(prompts))]
    ref_runs = Generator(reference, None, info).generate_ids(prompt_ids, GREEDY_TOKENS)
    cand_runs = Generator(candidate, None, info).generate_ids(prompt_ids, GREEDY_TOKENS)
    shares, loops = [], []
    for i, (r, c) in enumerate(zip(ref_runs, cand_runs)):
        same = next((k for k, (a, b) in enumerate(zip(r, c)) if a != b), min(len(r), len(c)))
        shares.append(same / max(1, len(r)))
        if _loops(c) and not _loops(r):
            loops.append(i)
    return GenerationGates(top1, ppl_cand / ppl_ref, ppl_ref, float(np.mean(shares)), loops, text_name,
                           int(batch.size))


def _forward(session, info: dict, ids: np.ndarray) -> np.ndarray:
    batch, width = ids.shape
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
            "position_ids": np.broadcast_to(np.arange(width, dtype=np.int64), ids.shape).copy()}
    feed = {k: v for k, v in feed.items() if k in info["inputs"]}
    for i in range(info["layers"]):
        for kind in ("key", "value"):
            feed[f"past_key_values.{i}.{kind}"] = np.zeros((batch, info["kv_heads"], 0, info["head_dim"]), np.float32)
    return session.run(["logits"], feed)[0]


def _perplexity(logits: np.ndarray, ids: np.ndarray) -> float:
    """exp(mean cross-entropy of each next token), in float64."""
    lg = logits[:, :-1].astype(np.float64)
    lg -= lg.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, ids[:, 1:, None], axis=-1)
    return float(np.exp(nll.mean()))


def _loops(tokens: list[int], tail: int = 16, max_period: int = 4) -> bool:
    """The last ``tail`` tokens repeat with a period of at most ``max_period`` (e.g. "the the the")."""
    if len(tokens) < tail:
        return False
    end = tokens[-tail:]
    return any(all(end[i] == end[i % p] for i in range(tail)) for p in range(1, max_period + 1))
