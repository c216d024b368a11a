"""hf:DIR correctness found on real architectures: RoBERTa's offset positions, a PyTorch reference that
fails, and a tokenizer that cannot encode."""

from __future__ import annotations

import json

import pytest

from fixtures.families import run_cli
from fixtures.tokenizer import tiny_tokenizer

transformers = pytest.importorskip("transformers")


def _roberta_dir(path, positions: int):
    import torch

    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_tokenizer(path / "tokenizer.json")
    config = transformers.RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=32,
                                        max_position_embeddings=positions, pad_token_id=1, num_labels=2)
    torch.manual_seed(0)
    transformers.RobertaForSequenceClassification(config).save_pretrained(path)
    return path


def test_roberta_positions_are_offset_by_pad_token_id_plus_one(tmp_path):
    from torch2ort.sources import ModelRequest, load_model

    path = _roberta_dir(tmp_path / "roberta", 258)
    loaded = load_model(ModelRequest(f"hf:{path}"))
    assert loaded.hints.max_length == 256 and max(loaded.hints.sweep["sequence"]) == 256
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0  # failed with "index 258 is out of bounds"
    cases = json.loads((out / "evidence.json").read_text())["verify"]["cases"]
    assert any(c["shapes"]["input_ids"][1] == 256 for c in cases)


def test_max_length_longer_than_the_position_table_is_refused(tmp_path, capsys):
    path = _roberta_dir(tmp_path / "roberta", 66)
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out", "--kwargs",
                   '{"max_length": 66}') == 2
    assert "position table holds (64 tokens)" in capsys.readouterr().err


def test_a_failing_pytorch_reference_is_not_a_parity_failure(tmp_path, capsys):
    import numpy as np

    model = tmp_path / "emb.py"
    model.write_text("import torch\n\n\ndef build():\n    return torch.nn.Embedding(10, 4)\n")
    np.savez(tmp_path / "bad.npz", x=np.full((2, 8), 42, dtype=np.int64))  # ids past the table
    argv = ["migrate", f"{model}:build", "--input", "x:batch=2,seq=8:int64:0..9", "--samples", tmp_path / "bad.npz",
            "--no-bench", "-o", tmp_path / "out"]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert "the PyTorch model itself fails on case sample-bad" in err and "not a parity failure" in err
    assert "chosen by your --samples" in err and "Traceback" not in err and "disagree" not in err


def test_a_tokenizer_without_unk_is_a_one_line_error(tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers

    path = _roberta_dir(tmp_path / "roberta", 66)
    tok = Tokenizer(models.WordPiece({"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "list": 3}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.save(str(path / "tokenizer.json"))
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "cannot encode the text" in err and "Missing [UNK] token" in err
    assert "internal error" not in err.lower() and len(err.strip().splitlines()) <= 3
