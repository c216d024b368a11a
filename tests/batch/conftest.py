"""Bundles and corpora for the batch tests: the tiny image classifier and text encoder, a folder of
images with one corrupt file, and a text file."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.tokenizer import tiny_tokenizer
from torch2ort.bundle.writer import pack

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
TEXTS = ["list files", "show disk usage in a directory", "", "find text in files", "count lines", "kill a process",
         "compress a folder", "print working directory", "rename many files at once", "show running processes"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("batch-bundles")
    tok = root / "tokenizer.json"
    tiny_tokenizer(tok)
    return {
        "mobilenet": pack(exported("mobilenet"), root / "mobilenet", name="mobilenet", labels=LABELS,
                          preprocess="image", postprocess="softmax-topk"),
        "encoder": pack(exported("encoder"), root / "encoder", name="encoder", postprocess="embeddings",
                        preprocess=[{"op": "tokenize", "max_length": 64, "outputs": ["input_ids", "attention_mask"]}],
                        tokenizer=tok),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """11 images of assorted sizes in two folders, plus a corrupt .png and an empty .jpg."""
    from PIL import Image

    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(3)
    for i in range(11):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(exist_ok=True)
        size = (int(rng.integers(20, 60)), int(rng.integers(20, 60)))
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"face{i:02d}.png")
    (root / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image at all")
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"hidden: skipped")
    return root


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(TEXTS * 3) + "\n")
    return path
