"""hf:DIR text architectures beyond BERT, each a tiny random-weight model built from its config:
migrated end to end (export, verify on real text up to max_length, bundle from raw text)."""

from __future__ import annotations

import json

import pytest

from fixtures.families import run_cli
from fixtures.tokenizer import tiny_tokenizer

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=64)
# name -> (config class, model class, config kwargs, task)
FAMILIES = {
    "distilbert": ("DistilBertConfig", "DistilBertForSequenceClassification",
                   dict(dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64),
                   "sequence-classification"),
    "electra": ("ElectraConfig", "ElectraForTokenClassification", dict(SMALL, embedding_size=16),
                "token-classification"),
    "bert-fill-mask": ("BertConfig", "BertForMaskedLM", SMALL, "fill-mask"),
    "roberta": ("RobertaConfig", "RobertaForSequenceClassification", dict(SMALL, max_position_embeddings=66,
                                                                          pad_token_id=1),
                "sequence-classification"),
    "deberta-v2": ("DebertaV2Config", "DebertaV2ForSequenceClassification",
                   dict(SMALL, max_relative_positions=64, position_buckets=16, relative_attention=True,
                        pos_att_type=["p2c", "c2p"]), "sequence-classification"),
    "modernbert": ("ModernBertConfig", "ModernBertForSequenceClassification",
                   dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                        max_position_embeddings=64, local_attention=16, pad_token_id=0, bos_token_id=2,
                        eos_token_id=3, cls_token_id=2, sep_token_id=3), "sequence-classification"),
}


def text_dir(path, family: str):
    import torch

    config_cls, model_cls, kwargs, _ = FAMILIES[family]
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_tokenizer(path / "tokenizer.json")
    config = getattr(transformers, config_cls)(vocab_size=len(vocab), num_labels=3, **kwargs)
    torch.manual_seed(0)
    getattr(transformers, model_cls)(config).save_pretrained(path)
    return path


def _migrate(tmp_path, family):
    path = text_dir(tmp_path / family, family)
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == FAMILIES[family][3]
    assert ev["verify"]["passed"] and all(o["passed"] for o in ev["check"]["outputs"].values())
    assert ev["check"]["input"] == "8 raw texts" and not ev["check"]["torch_imported"]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_text_family_migrates_from_text(tmp_path, family):
    _migrate(tmp_path, family)
