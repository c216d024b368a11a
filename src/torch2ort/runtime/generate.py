"""Text generation over a decoder bundle with a KV cache: numpy and onnxruntime only.

The graph takes ``input_ids``, ``attention_mask``, (``position_ids``) and ``past_key_values.{i}.key/value``
and returns ``logits`` and ``present.{i}.key/value`` (``sources/hf_decoder.py``). One call does the
prefill with an empty past; each decode step then feeds one token per row. The cache never passes
through Python: each step's ``present`` OrtValues are bound as the next step's past (IOBinding), so
the per-step cost does not grow with a copy of the whole cache into numpy and back.

A graph whose attention is ORT's ``GroupQueryAttention`` (``decoder-fusion`` on grouped KV heads; the
manifest's ``generation.cache`` is ``shared``) goes further: one buffer per layer's key and value, the
prompt plus up to ``GROW`` steps long (doubled, copied once, when full; never past the prompt plus
``max_new_tokens``), is bound as both the past input and the present output, so GQA writes each step's
K/V in place and nothing is concatenated or copied per step.
Any other graph (``cache: concat``) concatenates its cache in the graph, one new buffer per step.

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
# An exported decoder's optional input (export/logits.py): how many last positions reach the LM head, 0 (its
# default) all. The prefill feeds 1: one position's logits, not the whole prompt's.
LOGITS_TO_KEEP = "logits_to_keep"
CACHE_MODES = ("concat", "shared")
# A shared cache starts this many steps past the prompt and doubles when full (each growth copies it once), so
# max_new_tokens=65536 does not allocate 65,536 positions for a reply that stops at 20.
GROW = 256
KV_CACHE_KEY = "torch2ort.kv_cache"   # the graph's own say (decoder-fusion stamps it), when the manifest has none


@dataclass
class GenerationStep:
    """One decode step of a stream: per row the new token (None once the row has finished), its new text, and
    why the row stopped when it stopped at this step (``eos``, ``stop``, ``length``; else None)."""

    step: int
    token_ids: list[int | None]
    text: list[str]
    finish_reason: list[str | None] = field(default_factory=list)


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
        overridable = {i.name for i in session.get_overridable_initializers()}
        self.prefill_feed = {}  # bound as an OrtValue: IOBinding takes an overridable initializer no other way
        if LOGITS_TO_KEEP in overridable:
            import onnxruntime as ort

            self.prefill_feed[LOGITS_TO_KEEP] = ort.OrtValue.ortvalue_from_numpy(np.array(1, np.int64))
        missing = [n for n in self.inputs + self.past_names if n not in declared]
        if missing:
            raise BundleError(f"the bundle's generation section names inputs the model lacks: {missing[:4]}")
        self.cache = cache_mode(session, info)
        vocab = session.get_outputs()[0].shape[-1]
        self.vocab = vocab if isinstance(vocab, int) and vocab > 0 else None  # None: a symbolic dim

    def encode(self, prompts: list[str], special_tokens: bool = True) -> list[list[int]]:
        """Token ids per prompt; ``special_tokens=False`` for text that already holds them (a rendered chat)."""
        rows = [e.ids for e in self.tokenizer.encode_batch(prompts, add_special_tokens=special_tokens)]
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
        shared = self.cache == "shared"
        # shared: one zeroed buffer per past, written in place by the graph, grown (copied once) when full
        capacity = width + min(max_new_tokens, GROW) if shared else 0
        empty = np.zeros((batch, kv, capacity, hd), dtype=np.float32)
        past = {n: ort.OrtValue.ortvalue_from_numpy(empty.copy() if shared else empty) for n in self.past_names}
        chooser = TokenChooser(options, self.eos)
        binding = self.session.io_binding()
        for step in range(max_new_tokens):
            feed = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
            if shared and mask.shape[1] > capacity:
                capacity = min(width + max_new_tokens, 2 * capacity)
                past = {n: ort.OrtValue.ortvalue_from_numpy(_grown(v.numpy(), capacity)) for n, v in past.items()}
            logits, past = self._run(binding, feed | (self.prefill_feed if step == 0 else {}), past, shared)
            history = [r.prompt + r.new for r in rows]
            chosen = chooser(logits, history, step)
            tokens: list[int | None] = []
            deltas: list[str] = []
            ended: list[str | None] = []
            for i, r in enumerate(rows):
                if r.done:
                    tokens.append(None)
                    deltas.append("")
                    ended.append(None)
                    continue
                token = int(chosen[i])
                r.new.append(token)
                tokens.append(token)
                if token in self.eos:
                    r.done = "eos"
                elif step + 1 == max_new_tokens:
                    r.done = "length"
                deltas.append(self._advance(r, stop, final=r.done is not None) if decode else "")
                ended.append(r.done)
            yield GenerationStep(step, tokens, deltas, ended)
            if all(r.done for r in rows):
                return
            # finished rows keep feeding the pad token, as transformers does, so the batch stays rectangular
            ids = np.array([[self.pad if t is None else t] for t in tokens], dtype=np.int64)
            mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            positions = positions[:, -1:] + 1

    def _run(self, binding, feed: dict[str, np.ndarray], past: dict, shared: bool = False) -> tuple[np.ndarray, dict]:
        if shared:
            return self._run_shared(binding, feed, past)
        values = past | {k: feed[k] for k in self.prefill_feed if k in feed}
        return run_bound(self.session, binding, {k: feed[k] for k in self.inputs}, values, self.output_names,
                         self.past_names)

    def _run_shared(self, binding, feed: dict[str, np.ndarray], past: dict) -> tuple[np.ndarray, dict]:
        """A step over a shared cache. What does not change between steps stays bound: each past and present to
        its one buffer (bound again only when the cache grows, a new ``past``), ``logits_to_keep`` = 1 (at a
        decode step, one new token, that keeps the one position there is anyway), and the logits to one array
        of (batch, 1, vocab) when the graph keeps one position. A step then binds only the three small inputs,
        instead of the 2 x layers cache bindings and a fresh logits buffer (on the Qwen2-0.5B shape about 0.3 ms
        of a 15 ms step)."""
        import onnxruntime as ort

        state = getattr(binding, "_torch2ort", None)
        if state is None:
            state = {"past": None, "logits": None}
            binding._torch2ort = state
            for name, value in self.prefill_feed.items():
                binding.bind_ortvalue_input(name, value)
            if self.prefill_feed and self.vocab:
                array = np.empty((len(feed["input_ids"]), 1, self.vocab), dtype=np.float32)
                state["logits"] = (array, ort.OrtValue.ortvalue_from_numpy(array))
                binding.bind_ortvalue_output("logits", state["logits"][1])
            else:  # bound first, so it is output 0; bound again each step (in its place) as ORT sizes it
                binding.bind_output("logits", "cpu")
        if state["past"] is not past:
            for name, past_name in zip(self.output_names[1:], self.past_names):
                binding.bind_ortvalue_input(past_name, past[past_name])
                binding.bind_ortvalue_output(name, past[past_name])
            state["past"] = past
        for name in self.inputs:
            binding.bind_cpu_input(name, np.ascontiguousarray(feed[name]))
        if state["logits"] is None:
            binding.bind_output("logits", "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise PredictInputError(f"the decoder failed: {describe(exc)}") from None
        logits = state["logits"][0] if state["logits"] is not None else binding.get_outputs()[0].numpy()
        return logits[:, -1, :], past  # a view of the bound array: the loop reads it before the next step runs

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



@dataclass(eq=False)
class _Member:
    """One request in a ``DecodeBatch``: its row, its own chooser (so its draws do not depend on its company),
    its budget and stop strings."""

    key: object
    row: _Row
    chooser: TokenChooser
    max_new_tokens: int
    stop: list[str]


class DecodeBatch:
    """Continuous batching: requests join and leave between decode steps, and every step runs all of them in
    one session call. It always runs the cache as ``concat`` (each step's present, one column longer, bound as
    the next past): a shared buffer would have to be reallocated whenever a row joins or leaves anyway, and a
    GroupQueryAttention graph concatenates its past correctly when the buffers are not shared.

    A joining request's prompt runs alone (its prefill); its cache is then merged into the batch's, the
    shorter side left-padded with masked positions, as ``generate`` left-pads a batch of prompts (each row's
    positions count its own tokens). Rows that end (or are dropped) leave at the next step, and the columns
    no row uses any more are cut off. The cache passes through numpy only when the membership changes; between
    changes it stays in ONNX Runtime's buffers (IOBinding), as in ``generate``. Each row chooses its next token
    with its own ``TokenChooser``, so greedy rows get the tokens ``generate`` gives them alone, and a seeded
    row the same draws.

    Example::

        batch = DecodeBatch(bundle.generator())
        batch.join("a", ids_a, max_new_tokens=16)
        while batch:
            for key, token, text, finish in batch.step():
                ...
    """

    def __init__(self, generator: Generator) -> None:
        self.g = generator
        self.members: list[_Member] = []
        self.joining: list[_Member] = []
        self.leaving: set[int] = set()          # id() of keys to drop at the next step
        self.past: dict | None = None           # name -> OrtValue (batch, kv, P, hd)
        self.mask = np.zeros((0, 0), dtype=np.int64)  # (batch, P): 1 where a row's cache holds a real token
        self.binding = generator.session.io_binding()
        self.runs: list[int] = []               # rows per decode run, for the caller's metrics (then cleared)

    def __bool__(self) -> bool:
        return bool(self.members or self.joining)

    def join(self, key, prompt_ids: list[int], *, max_new_tokens: int = 32, stop: list[str] | None = None,
             **sampling) -> None:
        _, stop, max_new_tokens = _check(["-"], stop, max_new_tokens)
        if not prompt_ids:
            raise PredictInputError("the prompt needs at least one token")
        self.joining.append(_Member(key, _Row(list(prompt_ids)), TokenChooser(SamplingOptions(**sampling),
                                                                              self.g.eos), max_new_tokens, stop))

    def drop(self, key) -> None:
        """Take ``key`` out before the next step (its client went away, or its deadline passed)."""
        self.leaving.add(id(key))
        self.joining = [m for m in self.joining if m.key is not key]

    def step(self) -> list[tuple[object, int, str, str | None]]:
        """One token for every member: (key, token, new text, finish reason or None). New members take their
        prefill now (that is their first token); members that ended leave before the next step."""
        out = []
        if self.leaving:
            self._keep([m for m in self.members if id(m.key) not in self.leaving])
        self.leaving.clear()
        if self.members:
            out += self._decode()
            if any(m.row.done for m in self.members):  # ended rows leave now: their cache is freed at once
                self._keep([m for m in self.members if not m.row.done])
        joined, self.joining = self.joining, []
        for m in joined:
            try:
                logits, present = self._prefill(m.row.prompt)
            except PredictInputError as exc:
                out.append((m.key, exc, "", None))
                continue
            out.append(self._choose(m, logits[0], 0))
            if not m.row.done:
                self._merge(m, present)
        return out

    # --- internals --------------------------------------------------------------------------------
    def _choose(self, m: _Member, logits: np.ndarray, step: int) -> tuple[object, int, str, str | None]:
        r = m.row
        token = int(m.chooser(logits[None, :], [r.prompt + r.new], len(r.new))[0])
        r.new.append(token)
        if token in self.g.eos:
            r.done = "eos"
        elif len(r.new) >= m.max_new_tokens:
            r.done = "length"
        text = self.g._advance(r, m.stop, final=r.done is not None)
        return m.key, token, text, r.done

    def _prefill(self, prompt: list[int]):
        import onnxruntime as ort

        n = len(prompt)
        feed = {"input_ids": np.array([prompt], dtype=np.int64), "attention_mask": np.ones((1, n), dtype=np.int64),
                "position_ids": np.arange(n, dtype=np.int64)[None, :], **self.g.prefill_feed}
        empty = np.zeros((1, int(self.g.info["kv_heads"]), 0, int(self.g.info["head_dim"])), dtype=np.float32)
        past = {name: ort.OrtValue.ortvalue_from_numpy(empty) for name in self.g.past_names}
        return self.g._run(self.g.session.io_binding(), feed, past)

    def _decode(self) -> list[tuple[object, int, str, str | None]]:
        rows = [m.row for m in self.members]
        batch = len(rows)
        feed = {"input_ids": np.array([[r.new[-1]] for r in rows], dtype=np.int64),
                "attention_mask": np.concatenate([self.mask, np.ones((batch, 1), dtype=np.int64)], axis=1),
                "position_ids": np.array([[len(r.prompt) + len(r.new) - 1] for r in rows], dtype=np.int64)}
        logits, self.past = self.g._run(self.binding, feed, self.past)
        self.mask = feed["attention_mask"]
        self.runs.append(batch)
        return [self._choose(m, logits[i], len(m.row.new)) for i, m in enumerate(self.members)]

    def _arrays(self) -> dict[str, np.ndarray]:
        return {} if self.past is None else {k: v.numpy() for k, v in self.past.items()}

    def _set(self, arrays: dict[str, np.ndarray], mask: np.ndarray) -> None:
        import onnxruntime as ort

        used = np.flatnonzero(mask.any(axis=0))  # columns some row still holds: the rest is cut
        start = int(used[0]) if used.size else mask.shape[1]
        self.mask = np.ascontiguousarray(mask[:, start:])
        self.past = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a[:, :, start:, :]))
                     for k, a in arrays.items()}

    def _keep(self, members: list[_Member]) -> None:
        index = [i for i, m in enumerate(self.members) if m in members]
        self.members = [self.members[i] for i in index]
        if not self.members:
            self.past, self.mask = None, np.zeros((0, 0), dtype=np.int64)
            return
        self._set({k: a[index] for k, a in self._arrays().items()}, self.mask[index])

    def _merge(self, m: _Member, present: dict) -> None:
        new = {k: v.numpy() for k, v in present.items()}
        length = len(m.row.prompt)
        if not self.members:
            self.members = [m]
            self._set(new, np.ones((1, length), dtype=np.int64))
            return
        old = self._arrays()
        width = max(self.mask.shape[1], length)

        def pad(a: np.ndarray, to: int) -> np.ndarray:
            return np.pad(a, [(0, 0), (0, 0), (to - a.shape[2], 0), (0, 0)]) if a.shape[2] < to else a

        arrays = {k: np.concatenate([pad(old[k], width), pad(new[k], width)]) for k in old}
        mask = np.zeros((len(self.members) + 1, width), dtype=np.int64)
        mask[:-1, width - self.mask.shape[1]:] = self.mask
        mask[-1, width - length:] = 1
        self.members.append(m)
        self._set(arrays, mask)

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


def _grown(cache: np.ndarray, capacity: int) -> np.ndarray:
    out = np.zeros(cache.shape[:2] + (capacity,) + cache.shape[3:], dtype=cache.dtype)
    out[:, :, :cache.shape[2]] = cache
    return out


def cache_mode(session, info: dict) -> str:
    """``shared`` or ``concat``: the manifest's ``generation.cache`` when it says, else the graph's metadata."""
    mode = info.get("cache")
    if mode is None:
        mode = session.get_modelmeta().custom_metadata_map.get(KV_CACHE_KEY, "concat")
    if mode not in CACHE_MODES:
        raise BundleError(f"the generation section's cache {mode!r} is not one of {', '.join(CACHE_MODES)}")
    return mode


def run_bound(session, binding, arrays: dict[str, np.ndarray], values: dict, output_names: list[str],
              past_names: list[str]) -> tuple[np.ndarray, dict]:
    """One cached decoder step through IOBinding: ``arrays`` bound from numpy, ``values`` (the past, and any
    other OrtValues) bound as they are; returns the last position's logits and the ``present`` OrtValues,
    which the next step binds as its past without their leaving ONNX Runtime. (A shared cache, written in
    place, keeps its bindings between steps instead: ``Generator._run_shared``.)"""
    binding.clear_binding_inputs()
    binding.clear_binding_outputs()
    for name, value in arrays.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(value))
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    binding.bind_output(output_names[0], "cpu")
    for name in output_names[1:]:
        binding.bind_output(name, "cpu")
    try:
        session.run_with_iobinding(binding)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise PredictInputError(f"the decoder failed: {describe(exc)}") from None
    outs = binding.get_outputs()
    return outs[0].numpy()[:, -1, :], {p: outs[1 + i] for i, p in enumerate(past_names)}
