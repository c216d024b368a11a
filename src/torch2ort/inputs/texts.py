"""Real inputs for a migration: text models verify on real text, tokenised with the bundle's own tokenizer.

Example::

    texts, folder = prepare_samples(hints, spec, "texts.txt", out / "samples")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from torch2ort.errors import SampleError
from torch2ort.inputs.long_texts import LONG_TEXTS

if TYPE_CHECKING:
    from torch2ort.sources import ModelHints
    from torch2ort.spec import InputSpec


def read_texts(path: str) -> list[str]:
    """One text per non-blank line of a .txt file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SampleError(f"--samples {path}: {exc}") from None
    texts = [ln.strip() for ln in lines if ln.strip()]
    if not texts:
        raise SampleError(f"--samples {path}: no text lines")
    return texts


def tokenize(hints: ModelHints, texts: list[str], spec: InputSpec) -> dict[str, np.ndarray]:
    """The model's feed for ``texts``, as the bundle's tokenize step will build it."""
    from torch2ort.runtime.processors.text import tokenize_texts

    return tokenize_texts(hints.tokenizer, texts, spec.names, hints.max_length)


def prepare_samples(hints: ModelHints, spec: InputSpec, samples: str | None,
                    folder: Path) -> tuple[list[str] | None, str | None]:
    """(raw texts or None, the samples to verify on).

    A .txt file, or the source's own texts for a model with a tokenizer, is tokenised into
    ``folder/real-text.npz``, next to any .npz samples given, and long real paragraphs that reach
    ``max_length`` into ``folder/long-text.npz`` (a case of its own, so the short texts are not all
    padded to it); otherwise ``samples`` is returned as is.
    """
    texts = None
    if samples and samples.endswith(".txt"):
        if not hints.tokenizer:
            raise SampleError(f"--samples {samples}: a text file needs a text model with a tokenizer")
        texts = read_texts(samples)
        samples = None
    elif hints.tokenizer and hints.texts:
        texts = list(hints.texts)
    if texts is None:
        return None, samples
    folder.mkdir(exist_ok=True)
    if samples:
        from torch2ort.inputs.cases import sample_cases

        for case in sample_cases(samples, spec):
            np.savez(folder / f"{case.name}.npz", **case.feed)
    np.savez(folder / "real-text.npz", **tokenize(hints, texts, spec))
    np.savez(folder / "long-text.npz", **tokenize(hints, LONG_TEXTS, spec))
    return texts, str(folder)
