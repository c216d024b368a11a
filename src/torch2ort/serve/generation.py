"""Text generation for a served decoder bundle: requests checked and tokenised, then batched continuously.

``GenerationEngine`` runs one model's decode loop on the model's worker thread (the scheduler's, so
OIP infer requests and generation share one ONNX Runtime thread). Each request is a ``Stream``, one
row of the model's ``DecodeBatch`` (runtime/generate.py): a request joins at the next step (its
prefill), and every step then runs all rows in one session call, each row choosing its own token
with its own sampling options. So concurrent requests advance together, token by token, and a long
generation cannot hold a short one back; greedy rows get exactly the tokens ``Bundle.generate``
gives them alone.

A stream ends at EOS, a stop string, its token budget, its deadline (``--generate-timeout-s``,
503), or when its client goes away (``Stream.cancel``). The loop checks before every step, so a
client that disconnects costs at most the step in flight, and its row (its KV cache) leaves the
batch at once.

Example (inside the server)::

    prepared = engine.prepare("def add(a, b):", GenerateParams(max_new_tokens=16))
    stream = engine.submit(prepared)
    async for delta in stream.events():
        print(delta.text, end="")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

from torch2ort.errors import PredictInputError, ProtocolError
from torch2ort.runtime.bundle import Bundle
from torch2ort.runtime.generate import DecodeBatch
from torch2ort.runtime.sampling import SamplingOptions
from torch2ort.serve.options import Limits

log = logging.getLogger("torch2ort.serve")
DEFAULT_MAX_TOKENS = 16  # OpenAI's completions default, used by every route that is not given one


@dataclass(frozen=True)
class GenerateParams:
    """What a request may set; ``max_new_tokens`` None: the route's default. Checked by ``engine.prepare``."""

    max_new_tokens: int | None = None
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def sampling(self) -> dict:
        return {"min_new_tokens": self.min_new_tokens, "do_sample": self.do_sample, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p, "repetition_penalty": self.repetition_penalty,
                "seed": self.seed}


@dataclass(frozen=True)
class Prepared:
    """A checked request: its prompt's token ids and its resolved parameters (``max_new_tokens`` set)."""

    prompt_ids: list[int]
    params: GenerateParams


@dataclass(frozen=True)
class Delta:
    """One decode step of one stream: the new token, the new text (may be empty while a character is
    incomplete), and why the stream ended at this step (``stop`` or ``length``; None while it runs)."""

    token: int
    text: str
    finish_reason: str | None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


@dataclass(eq=False)  # compared by identity: the loop's lists hold each stream once
class Stream:
    """One request in the decode loop; ``events()`` yields its ``Delta``s as the loop makes them."""

    prepared: Prepared
    deadline: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    steps: int = 0

    def cancel(self) -> None:
        """The client went away: the loop drops this stream before its next step."""
        self.cancelled = True

    async def events(self) -> AsyncIterator[Delta]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def result(self) -> Completion:
        text, tokens, finish = [], [], "length"
        async for d in self.events():
            text.append(d.text)
            tokens.append(d.token)
            finish = d.finish_reason or finish
        return Completion("".join(text), tokens, finish, len(self.prepared.prompt_ids))


# why a generation ended, as metrics label it (besides the finish reasons)
CANCELLED, DEADLINE, FAILED = "cancelled", "deadline", "error"


class GenerationEngine:
    """The decode loop of one generating bundle; see the module docstring."""

    def __init__(self, bundle: Bundle, limits: Limits, executor: Executor) -> None:
        self.bundle, self.limits, self.executor = bundle, limits, executor
        self.generator = bundle.generator()
        self.info = bundle.manifest["generation"]
        self.name = bundle.name
        self.max_positions = self.info.get("max_positions") or None
        self.active: list[Stream] = []
        self._new: list[Stream] = []
        self.batch = DecodeBatch(self.generator)
        self.metrics = None  # metrics.ModelMetrics, set when the app records Prometheus metrics
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._chat = None
        if self.chat_template is not None:  # a template that does not compile fails the load, not a request
            from torch2ort.serve.chat_template import ChatTemplate

            self._chat = ChatTemplate(self.chat_template, self.info.get("special_tokens") or {})

    # --- checks, off the event loop -------------------------------------------------------------
    def warm_up(self) -> str:
        """One short generation at load time: the session runs, and the tokenizer decodes."""
        return self.bundle.generate("warm up", max_new_tokens=2).text[0]

    @property
    def chat_template(self) -> str | None:
        return self.info.get("chat_template") or None

    def render_chat(self, messages: list[dict]) -> str:
        if self._chat is None:
            raise ProtocolError(f"model {self.name!r} has no chat template (its tokenizer_config.json has none); "
                                "use /v1/completions with a prompt")
        return self._chat.render(messages)

    def prepare(self, prompt: str, params: GenerateParams, special_tokens: bool = True,
                default_max: int | None = DEFAULT_MAX_TOKENS) -> Prepared:
        """Tokenise and check one prompt against the caps, or ProtocolError(400) in one line.

        ``default_max``: the budget when the request sets none (None: the rest of the context, capped)."""
        if not isinstance(prompt, str) or not prompt:
            raise ProtocolError("the prompt is empty; give some text")
        if len(prompt) > self.limits.max_text_chars:
            raise ProtocolError(f"the prompt has {len(prompt):,} characters; at most {self.limits.max_text_chars:,} "
                                "(--max-text-chars)")
        try:
            SamplingOptions(**params.sampling())
            ids = self.generator.encode([prompt], special_tokens=special_tokens)[0]
        except PredictInputError as exc:
            raise ProtocolError(str(exc)) from None
        cap = self.limits.max_prompt_tokens
        if len(ids) > cap:
            raise ProtocolError(f"the prompt is {len(ids):,} tokens; at most {cap:,} (--max-prompt-tokens)")
        room = self.limits.max_new_tokens
        if self.max_positions:
            if len(ids) >= self.max_positions:
                raise ProtocolError(f"the prompt is {len(ids):,} tokens; the model's context is "
                                    f"{self.max_positions:,} positions")
            room = min(room, self.max_positions - len(ids))
        wanted = params.max_new_tokens
        if wanted is None:
            wanted = room if default_max is None else min(default_max, room)
        if wanted > self.limits.max_new_tokens:
            raise ProtocolError(f"max_tokens {wanted:,} is over the server's cap of {self.limits.max_new_tokens:,} "
                                "(--max-new-tokens)")
        if wanted > room:
            raise ProtocolError(f"max_tokens {wanted:,} does not fit the model's context: the prompt is {len(ids):,} "
                                f"tokens of its {self.max_positions:,} positions")
        if params.min_new_tokens > wanted:
            raise ProtocolError(f"min_tokens {params.min_new_tokens} is over max_tokens {wanted}")
        return Prepared(ids, replace(params, max_new_tokens=wanted))

    # --- the loop -------------------------------------------------------------------------------
    def submit(self, prepared: Prepared) -> Stream:
        """Start a checked request; it joins the batch (its prefill) at the next step."""
        stream = Stream(prepared, time.monotonic() + self.limits.generate_timeout_s)
        self.active.append(stream)
        self._new.append(stream)
        if self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.create_task(self._loop(), name=f"generate-{self.name}")
        self._wake.set()
        return stream

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for s in self.active:
            s.queue.put_nowait(_End(ProtocolError(f"model {self.name!r} is shutting down", 503)))
        self.active.clear()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.active:
                self._wake.clear()
                await self._wake.wait()
                continue
            new, self._new = self._new, []
            outcomes = await loop.run_in_executor(self.executor, self._step, new, list(self.active))
            for stream, outcome in outcomes:
                if isinstance(outcome, Delta):
                    stream.queue.put_nowait(outcome)
                    if outcome.finish_reason is None:
                        continue
                    outcome = _End()
                stream.queue.put_nowait(outcome)
                self.active.remove(stream)

    def _step(self, new: list[Stream], streams: list[Stream]) -> list[tuple[Stream, Delta | _End]]:
        """On the worker thread: new streams join the batch, cancelled and late ones leave it, then one
        decode step for all (``DecodeBatch.step``)."""
        out: list[tuple[Stream, Delta | _End]] = []
        for s in new:
            p = s.prepared.params
            try:
                self.batch.join(s, s.prepared.prompt_ids, max_new_tokens=p.max_new_tokens, stop=list(p.stop),
                                **p.sampling())
            except PredictInputError as exc:
                out.append((s, self._end(FAILED, ProtocolError(str(exc)))))
        for s in streams:
            if s.cancelled:
                self.batch.drop(s)
                out.append((s, self._end(CANCELLED)))
            elif time.monotonic() > s.deadline:
                self.batch.drop(s)
                out.append((s, self._end(DEADLINE, ProtocolError(
                    f"the generation took longer than {self.limits.generate_timeout_s:g} s (--generate-timeout-s) "
                    f"after {s.steps} tokens", 503))))
        gone = {id(s) for s, _ in out}
        try:
            steps = self.batch.step()
        except Exception as exc:  # a batched run failed: every member shares it
            if not isinstance(exc, PredictInputError):
                log.exception("generation failed")
            error = ProtocolError(str(exc)) if isinstance(exc, PredictInputError) else exc
            for s in streams:
                if id(s) not in gone:
                    self.batch.drop(s)
                    out.append((s, self._end(FAILED, error)))
            return out
        m = self.metrics
        for s, token, text, finish in steps:
            if isinstance(token, Exception):  # this one's prefill was refused
                out.append((s, self._end(FAILED, ProtocolError(str(token)))))
                continue
            s.steps += 1
            if m is not None:
                m.tokens.inc()
                if s.steps == 1:
                    m.first_token.observe(time.perf_counter() - s.submitted)
            if finish is not None:
                self._end(finish)
            out.append((s, Delta(token, text, finish)))
        if m is not None:
            for rows in self.batch.runs:
                m.batch.observe(rows)
        self.batch.runs.clear()
        return out

    def _end(self, why: str, error: BaseException | None = None) -> _End:
        if self.metrics is not None:
            self.metrics.generations.labels(self.name, why).inc()
        return _End(error)


async def merged(streams: list[Stream]) -> AsyncIterator[tuple[int, Delta]]:
    """The deltas of several streams as they come, each with its stream's index (a request of several prompts)."""
    if len(streams) == 1:
        async for d in streams[0].events():
            yield 0, d
        return
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, s: Stream) -> None:
        try:
            async for d in s.events():
                queue.put_nowait((i, d))
            queue.put_nowait((i, None))
        except BaseException as exc:
            queue.put_nowait((i, exc))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_ = len(streams)
        while open_:
            i, item = await queue.get()
            if item is None:
                open_ -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()


async def until_disconnect(receive: Callable) -> None:
    """Returns when the client has gone away (``http.disconnect``); the request body must be read already."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def complete(streams: list[Stream], receive: Callable) -> list[Completion] | None:
    """Every stream's whole result, or None when the client disconnects first (the streams are cancelled)."""
    results = asyncio.ensure_future(asyncio.gather(*(s.result() for s in streams)))
    gone = asyncio.ensure_future(until_disconnect(receive))
    try:
        await asyncio.wait({results, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not results.done():
        for s in streams:
            s.cancel()
        results.cancel()
        return None
    for s in streams:  # one failed: the others are not wanted any more
        s.cancel()
    return results.result()


__all__ = ["DEFAULT_MAX_TOKENS", "Completion", "Delta", "GenerateParams", "GenerationEngine", "Prepared", "Stream",
           "complete", "merged", "until_disconnect"]
