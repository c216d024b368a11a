"""Long-form speech recognition as ``pipeline("automatic-speech-recognition", chunk_length_s=…)`` does it for
Whisper: overlapping chunks of the waveform, each transcribed on its own, their tokens merged. numpy only.

Three pieces, each following transformers 5's pipeline (``pipelines/automatic_speech_recognition.py``) and
the Whisper tokenizer's ``_decode_asr`` / ``_find_longest_common_sequence``:

- ``Chunking.of(chunk_length_s, stride_length_s, …)`` checks the options and ``spans(samples)`` cuts the
  waveform as the pipeline's ``chunk_iter`` does: chunks of ``chunk_length_s`` that step by the chunk less
  both strides, the first without a left stride and the last without a right one;
- ``longest_common_sequence(seqs)`` merges the chunks' text tokens: each next chunk is slid along the
  previous one, the alignment with the best share of equal tokens wins (ties to the longer overlap), and
  the overlap is split at its middle, the left half from the earlier chunk;
- ``transcript(outputs, strides, vocab, decode)`` is ``_decode_asr`` without timestamps: special tokens
  dropped, a change of language token closes a segment, timestamp tokens (which a model may emit even
  with ``<|notimestamps|>``) split segments and are skipped inside the strides, exactly as the pipeline
  does; the segments' texts are joined.

Example::

    plan = Chunking.of(30, 5, rate=16000, window_s=30.0)
    spans = plan.spans(len(wave))             # [Span(start, stop, left, right), ...] in samples
    text, ids = transcript([tokens_of(s) for s in spans], [s.stride for s in spans], vocab, tokenizer_decode)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from torch2ort.errors import PredictInputError

SEGMENT_FRAMES = 1500  # _decode_asr's segment_size (the pipeline leaves it at its default)
_TIMESTAMP_TEXT = re.compile(r"<\|(\d+\.\d+)\|>")  # WhisperTokenizer.decode drops these from the text
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@dataclass(frozen=True)
class Span:
    """One chunk in samples: ``wave[start:stop]``, with ``left``/``right`` samples of stride (overlap)."""

    start: int
    stop: int
    left: int
    right: int

    @property
    def stride(self) -> tuple[int, int, int]:
        """(chunk samples, left stride, right stride), as the pipeline hands it to ``_decode_asr``."""
        return self.stop - self.start, self.left, self.right


@dataclass(frozen=True)
class Chunking:
    """Chunk and stride lengths in samples (the pipeline rounds seconds x rate to whole samples)."""

    chunk: int
    left: int
    right: int

    @classmethod
    def of(cls, chunk_length_s: Any, stride_length_s: Any, *, rate: int, window_s: float) -> Chunking:
        """Checked options: ``chunk_length_s`` from >0 to the model's window (default: the window), and
        ``stride_length_s`` a number or a ``[left, right]`` pair >= 0 (default: a sixth of the chunk, each side);
        the chunk must be longer than both strides together."""
        chunk_s = window_s if chunk_length_s is None else _seconds("chunk_length_s", chunk_length_s)
        if not 0 < chunk_s <= window_s:
            raise PredictInputError(f"chunk_length_s must be above 0 and at most the model's window of {window_s:g} s "
                                    f"(a longer chunk would be cut to the window), got {chunk_length_s!r}")
        if stride_length_s is None:
            stride_length_s = chunk_s / 6
        if isinstance(stride_length_s, (list, tuple)):
            if len(stride_length_s) != 2:
                raise PredictInputError(f"stride_length_s must be a number or a [left, right] pair of seconds, got "
                                        f"{list(stride_length_s)!r}")
            left_s, right_s = (_seconds("stride_length_s", s) for s in stride_length_s)
        else:
            left_s = right_s = _seconds("stride_length_s", stride_length_s)
        if left_s < 0 or right_s < 0:
            raise PredictInputError(f"stride_length_s must be >= 0 seconds, got {stride_length_s!r}")
        chunk, left, right = (int(round(s * rate)) for s in (chunk_s, left_s, right_s))
        if chunk <= left + right:
            raise PredictInputError(f"chunk_length_s ({chunk_s:g} s) must be longer than stride_length_s left and "
                                    f"right together ({left_s:g} + {right_s:g} s)")
        return cls(chunk, left, right)

    def spans(self, samples: int) -> list[Span]:
        """The chunks of a waveform of ``samples`` samples, as the pipeline's ``chunk_iter`` yields them."""
        step = self.chunk - self.left - self.right
        out = []
        for start in range(0, samples, step):
            stop = start + self.chunk
            last = stop >= samples
            span = Span(start, min(stop, samples), 0 if start == 0 else self.left, 0 if last else self.right)
            if span.stop - span.start > span.left:  # a tail that is all left stride adds nothing
                out.append(span)
            if last:
                break
        return out


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PredictInputError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or abs(value) > 86400:
        raise PredictInputError(f"{name} must be a finite number of seconds up to a day, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class AsrVocab:
    """What ``_decode_asr`` reads from the tokenizer and the model, recorded at export (``sources/hf_speech.py``)."""

    special_ids: frozenset[int]
    languages: dict[int, str]     # special id -> language name (the tokenizer's <|xx|> codes)
    timestamp_begin: int          # <|notimestamps|> + 1: ids from here on are timestamps
    time_precision: float         # seconds per timestamp step: the extractor's chunk_length / encoder positions
    sampling_rate: int
    prompt_token_id: int | None   # <|startofprev|>: a sequence starting with it is cut to its <|startoftranscript|>
    start_token_id: int | None
    clean_up: bool = False        # the tokenizer's clean_up_tokenization_spaces, where transformers applies it

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> AsrVocab | None:
        """The manifest's ``speech.transcript`` facts, or None for a bundle packed without them."""
        t = info.get("transcript")
        if not isinstance(t, dict):
            return None
        return cls(frozenset(int(i) for i in t["special_ids"]), {int(k): str(v) for k, v in t["languages"].items()},
                   int(t["timestamp_begin"]), float(t["time_precision"]), int(t["sampling_rate"]),
                   None if t.get("prompt_token_id") is None else int(t["prompt_token_id"]),
                   None if t.get("start_token_id") is None else int(t["start_token_id"]), bool(t.get("clean_up")))

    def decode(self, tokenizer) -> Callable[[list[int]], str]:
        """``WhisperTokenizer.decode(ids)`` with a ``tokenizers.Tokenizer``: special tokens kept (none are left
        by then), timestamp text removed, and the clean-up where the folder's tokenizer applies it."""
        def decode(ids: list[int]) -> str:
            text = _TIMESTAMP_TEXT.sub("", tokenizer.decode(ids, skip_special_tokens=False))
            if self.clean_up:
                for old, new in _CLEAN_UP:
                    text = text.replace(old, new)
            return text
        return decode


def longest_common_sequence(sequences: list[list[int]]) -> list[int]:
    """The chunks' token lists merged into one (the pipeline's ``_find_longest_common_sequence``).

    For each next sequence every alignment against the running tail is scored by the share of equal tokens
    in the overlap plus overlap/10000 (favouring long matches); at least two tokens must agree. The overlap
    is then cut at its middle: the first half from the left sequence, the rest from the right one."""
    total: list[int] = []
    left = list(sequences[0])
    for right in sequences[1:]:
        right = list(right)
        n_left, n_right = len(left), len(right)
        a, b = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
        best, cut = 0.0, (n_left, n_left, 0, 0)
        for i in range(1, n_left + n_right):
            l0, l1 = max(0, n_left - i), min(n_left, n_left + n_right - i)
            r0, r1 = max(0, i - n_left), min(n_right, i)
            matches = int(np.count_nonzero(a[l0:l1] == b[r0:r1]))
            score = matches / i + i / 10000.0
            if matches > 1 and score > best:
                best, cut = score, (l0, l1, r0, r1)
        l0, l1, r0, r1 = cut
        total.extend(left[:(l0 + l1) // 2])
        left = right[(r0 + r1) // 2:]
    total.extend(left)
    return total


def transcript(outputs: list[list[int]], strides: list[tuple[int, int, int]] | None, vocab: AsrVocab,
               decode: Callable[[list[int]], str]) -> tuple[str, list[int]]:
    """(the text, the merged text tokens) of one recording from its chunks' generated tokens.

    ``strides``: each chunk's (samples, left, right) stride in samples, or None for one unchunked window.
    This is ``_decode_asr`` with ``return_timestamps`` and ``return_language`` off: the segments it closes
    (at a language change, or a timestamp that ends a segment outside the strides) are merged and decoded
    on their own, and their texts joined."""
    tb, precision = vocab.timestamp_begin, vocab.time_precision
    texts: list[str] = []
    merged: list[int] = []
    pending: list[list[int]] = []  # the open segment's token lists, one per chunk, merged when it closes
    segment_start: float | None = None
    last_language: str | None = None
    time_offset, skip = 0.0, False

    def close() -> None:
        nonlocal pending, segment_start
        tokens = longest_common_sequence(pending)
        texts.append(decode(tokens))
        merged.extend(tokens)
        pending, segment_start = [], None

    for k, tokens in enumerate(outputs):
        tokens = _strip_prompt(list(tokens), vocab)
        stride = strides[k] if strides is not None else None
        last_timestamp, first_timestamp = None, tb
        current_max = penultimate = earlier_segments = 0.0
        if stride is not None:
            chunk_s, left_s, right_s = (x / vocab.sampling_rate for x in stride)
            time_offset -= left_s
            right_start = chunk_s - right_s
            if left_s:
                first_timestamp = left_s / precision + tb
            if right_s:  # the last timestamp at or past the right stride's start is where the chunk's text stops
                for token in reversed(tokens):
                    if token >= tb:
                        if last_timestamp is not None and (token - tb) * precision < right_start:
                            break
                        last_timestamp = token
        current: list[int] = []
        for i, token in enumerate(tokens):
            if token in vocab.special_ids:
                language = vocab.languages.get(token)
                if language is not None:
                    if last_language and language != last_language:
                        pending.append(current)
                        close()
                        current = []
                    last_language = language
            elif token >= tb:
                stamp = float((token - tb) * precision)
                if stamp < current_max:  # a new segment of a long-form generation started
                    if i >= 2 and not (tokens[i - 1] >= tb and tokens[i - 2] >= tb):
                        earlier_segments += precision * SEGMENT_FRAMES
                    else:
                        current_max = penultimate
                        earlier_segments += penultimate
                penultimate, current_max = current_max, stamp
                time = round((token - tb) * precision + time_offset + earlier_segments, 2)
                if last_timestamp and token >= last_timestamp:
                    skip = True  # inside the right stride: timestamps come in pairs, so the next one goes too
                elif skip or (pending and token < first_timestamp):
                    skip = False
                elif segment_start is None:
                    segment_start = time
                elif time != segment_start:  # a repeated start stamp stays a start
                    pending.append(current)
                    close()
                    current = []
            else:
                current.append(token)
        if stride is not None:
            time_offset += chunk_s - right_s
        if current:
            pending.append(current)
        elif not any(pending):
            pending, segment_start = [], None
    if pending:
        close()
    return "".join(texts), merged


def _strip_prompt(tokens: list[int], vocab: AsrVocab) -> list[int]:
    if tokens and vocab.prompt_token_id is not None and tokens[0] == vocab.prompt_token_id:
        return tokens[tokens.index(vocab.start_token_id):] if vocab.start_token_id in tokens else []
    return tokens
