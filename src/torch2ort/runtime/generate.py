"""Text generation over a decoder bundle with a KV cache: numpy and onnxruntime only.

The graph takes ``input_ids``, ``attention_mask``, (``position_ids``) and ``past_key_values.{i}.key/value``
and returns ``logits`` and ``present.{i}.key/value`` (``sources/hf_decoder.py``). One call does the
prefill with an empty past; each decode step then feeds one token per row. The cache never passes
through Python: each step's ``present`` OrtValues are bound as the next step's past (IOBinding), so
the per-step cost does not grow with a copy of the whole cache into numpy and back.

Batches of prompts are left-padded, with positions counted from each row's first real token, as
transformers' ``generate`` does; each row stops at its own EOS or stop string.

Example::

    bundle = Bundle.load("gpt2-bundle")
    out = bundle.generate(["def add(a, b):"], max_new_tokens=32)
    out.text[0], out.token_ids[0]
    for step in bundle.stream(["Hello"], max_new_tokens=8):
        print(step.text[0], end="", flush=True)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from torch2ort.errors import BundleError, PredictInputError, describe
from torch2ort.runtime.sampling import SamplingOptions, TokenChooser

MAX_NEW_TOKENS = 1 << 16
MAX_PROMPTS = 1024


@dataclass
class GenerationStep:
    """One decode step of a stream: per row the new token (None once the row has finished) and its new text."""

    step: int
    token_ids: list[int | None]
    text: list[str]


@dataclass
class Generation:
    """What ``generate`` returns: per prompt, the new tokens (EOS included when it ended the row), their text,
    and why the row stopped (``eos``, ``stop`` or ``length``)."""

    token_ids: list[list[int]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    finish_reason: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)


@dataclass
class _Row:
    prompt: list[int]
    new: list[int] = field(default_factory=list)
    text: str = ""
    done: str | None = None
    prefix: int = 0   # incremental detokenisation: new[prefix:read] is the text already given out, decoded again
    read: int = 0     # as context for the next tokens, so the work per step does not grow with the text


class Generator:
    """Drives one decoder session; made by ``Bundle`` from the manifest's ``generation`` section."""

    def __init__(self, session, tokenizer, info: dict) -> None:
        self.session, self.tokenizer, self.info = session, tokenizer, info
        self.layers = int(info["layers"])
        self.inputs = list(info["inputs"])
        self.eos = [int(e) for e in info.get("eos_token_id") or []]
        self.pad = int(info.get("pad_token_id", 0))
        self.past_names = [f"past_key_values.{i}.{k}" for i in range(self.layers) for k in ("key", "value")]
        self.output_names = ["logits"] + [f"present.{i}.{k}" for i in range(self.layers) for k in ("key", "value")]
        declared = {i.name for i in session.get_inputs()}
        missing = [n for n in self.inputs + self.past_names if n not in declared]
        if missing:
            raise BundleError(f"the bundle's generation section names inputs the model lacks: {missing[:4]}")

    def encode(self, prompts: list[str]) -> list[list[int]]:
        rows = [e.ids for e in self.tokenizer.encode_batch(prompts)]
        for text, ids in zip(prompts, rows):
            if not ids:
                raise PredictInputError(f"the prompt {text[:40]!r} encodes to no tokens; give some text")
        return rows

    def stream(self, prompts: str | list[str], *, max_new_tokens: int = 32, stop: list[str] | None = None,
               **sampling) -> Iterator[GenerationStep]:
        """Yield a ``GenerationStep`` per decode step until every row has stopped."""
        prompts, stop, max_new_tokens = _check(prompts, stop, max_new_tokens)
        yield from self._steps(self.encode(prompts), max_new_tokens, stop, SamplingOptions(**sampling), [])

    def generate(self, prompts: str | list[str], *, max_new_tokens: int = 32, stop: list[str] | None = None,
                 **sampling) -> Generation:
        prompts, stop, max_new_tokens = _check(prompts, stop, max_new_tokens)
        rows: list[_Row] = []
        for _ in self._steps(self.encode(prompts), max_new_tokens, stop, SamplingOptions(**sampling), rows):
            pass
        return Generation([r.new for r in rows], [r.text for r in rows], [r.done or "length" for r in rows],
                          [len(r.prompt) for r in rows])

    def generate_ids(self, prompt_ids: list[list[int]], max_new_tokens: int, **sampling) -> list[list[int]]:
        """New token ids for already tokenised prompts (the parity check drives this)."""
        rows: list[_Row] = []
        for _ in self._steps([list(p) for p in prompt_ids], max_new_tokens, [], SamplingOptions(**sampling), rows,
                             decode=False):
            pass
        return [r.new for r in rows]

    def stream_ids(self, prompt_ids: list[list[int]], max_new_tokens: int, **sampling) -> Iterator[GenerationStep]:
        """``stream`` for already tokenised prompts, without detokenising (benchmarks and servers that count
        tokens drive this)."""
        return self._steps([list(p) for p in prompt_ids], max_new_tokens, [], SamplingOptions(**sampling), [],
                           decode=False)

    # --- the loop -----------------------------------------------------------------------------
    def _steps(self, prompt_ids: list[list[int]], max_new_tokens: int, stop: list[str],
               options: SamplingOptions, rows: list[_Row], decode: bool = True) -> Iterator[GenerationStep]:
        import onnxruntime as ort

        rows.extend(_Row(list(p)) for p in prompt_ids)
        batch, width = len(rows), max(len(r.prompt) for r in rows)
        ids = np.full((batch, width), self.pad, dtype=np.int64)
        mask = np.zeros((batch, width), dtype=np.int64)
        for i, r in enumerate(rows):  # left padding, as transformers' generate pads a decoder's batch
            ids[i, width - len(r.prompt):] = r.prompt
            mask[i, width - len(r.prompt):] = 1
        positions = np.where(mask == 0, 1, np.cumsum(mask, axis=1) - 1)
        kv, hd = int(self.info["kv_heads"]), int(self.info["head_dim"])
        empty = np.zeros((batch, kv, 0, hd), dtype=np.float32)
        past = {n: ort.OrtValue.ortvalue_from_numpy(empty) for n in self.past_names}
        chooser = TokenChooser(options, self.eos)
        binding = self.session.io_binding()
        for step in range(max_new_tokens):
            feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            logits, past = self._run(binding, feed, past)
            history = [r.prompt + r.new for r in rows]
            chosen = chooser(logits, history, step)
            tokens: list[int | None] = []
            deltas: list[str] = []
            for i, r in enumerate(rows):
                if r.done:
                    tokens.append(None)
                    deltas.append("")
                    continue
                token = int(chosen[i])
                r.new.append(token)
                tokens.append(token)
                if token in self.eos:
                    r.done = "eos"
                elif step + 1 == max_new_tokens:
                    r.done = "length"
                deltas.append(self._advance(r, stop, final=r.done is not None) if decode else "")
            yield GenerationStep(step, tokens, deltas)
            if all(r.done for r in rows):
                return
            # finished rows keep feeding the pad token, as transformers does, so the batch stays rectangular
            ids = np.array([[self.pad if t is None else t] for t in tokens], dtype=np.int64)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            positions = positions[:, -1:] + 1

    def _run(self, binding, feed: dict[str, np.ndarray], past: dict) -> tuple[np.ndarray, dict]:
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        for name in self.inputs:
            binding.bind_cpu_input(name, np.ascontiguousarray(feed[name]))
        for name, value in past.items():
            binding.bind_ortvalue_input(name, value)
        for name in self.output_names:
            binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PredictInputError(f"the decoder failed: {describe(exc)}") from None
        outs = binding.get_outputs()
        logits = outs[0].numpy()[:, -1, :]
        present = {p: outs[1 + i] for i, p in enumerate(self.past_names)}
        return logits, present

    def _advance(self, row: _Row, stop: list[str], final: bool) -> str:
        """The row's new text after its latest token: held back while it ends in half a character (unless the
        row has ended); cut after a stop string (which stays in the text, as transformers' ``stop_strings``
        keep it).

        Incremental, as text-generation-inference detokenises: only the tokens since the last text given
        out are decoded, with the few before them as context (a tokenizer may drop a leading space or
        join bytes across tokens), so a step costs the same at token 10 and token 1,000. Re-decoding the
        whole row each step grew with the text (0.65 ms per step at 1,000 tokens, BENCHMARKS.md).
        """
        window = row.new[row.prefix:]
        before = self.tokenizer.decode(window[:row.read - row.prefix], skip_special_tokens=True)
        after = self.tokenizer.decode(window, skip_special_tokens=True)
        if (after.endswith("\ufffd") and not final) or len(after) < len(before):
            return ""
        row.prefix, row.read = row.read, len(row.new)
        text = row.text + after[len(before):]
        for s in stop:
            at = text.find(s, max(0, len(row.text) - len(s)))
            if at >= 0:
                text = text[:at + len(s)]
                row.done = "stop"
                break
        delta, row.text = text[len(row.text):], text
        return delta


def load_tokenizer(path):
    """The bundle's tokenizer.json, as it is: no truncation, no padding (the loop pads on the left itself)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - depends on the install
        raise PredictInputError("text generation needs the tokenizers package: pip install tokenizers") from None
    if not path.is_file():
        raise BundleError(f"the bundle's tokenizer file {path.name!r} is missing")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception for bad files
        raise BundleError(f"the tokenizer file {path.name!r} does not load: {describe(exc)}") from None


def _check(prompts, stop, max_new_tokens) -> tuple[list[str], list[str], int]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise PredictInputError("prompts must be a string or a non-empty list of strings")
    if len(prompts) > MAX_PROMPTS:
        raise PredictInputError(f"at most {MAX_PROMPTS} prompts per call, got {len(prompts)}")
    if isinstance(stop, str):
        stop = [stop]
    stop = list(stop or [])
    if not all(isinstance(s, str) and s for s in stop):
        raise PredictInputError("stop must be a list of non-empty strings")
    whole = isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
    if not whole or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise PredictInputError(f"max_new_tokens must be a whole number from 1 to {MAX_NEW_TOKENS}, "
                                f"got {max_new_tokens!r}")
    return list(prompts), stop, max_new_tokens
