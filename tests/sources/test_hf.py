"""hf:DIR sources: tiny randomly initialised BERTs built from a config, saved like a hub folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.hf import bert_dir
from fixtures.tokenizer import tiny_tokenizer

transformers = pytest.importorskip("transformers")


def test_task_and_inputs_are_read_from_the_folder(tmp_path):
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.sources.hf import detect_task

    path = bert_dir(tmp_path, num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"})
    assert detect_task(path) == "sequence-classification"
    loaded = load_model(ModelRequest(f"hf:{path}"))
    spec = loaded.hints.spec
    assert spec.names == ["input_ids", "attention_mask", "token_type_ids"]
    assert [str(d) for d in spec.inputs[0].dims] == ["batch=2", "sequence=16"]
    assert spec.output_names == ("logits",) and loaded.hints.labels == ["neg", "neutral", "pos"]


def test_migrate_a_tiny_classifier_then_predict_from_text(tmp_path, capsys):
    from torch2ort.runtime import Bundle

    path = bert_dir(tmp_path / "bert", num_labels=3, id2label={0: "neg", 1: "neutral", 2: "pos"})
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "sequence-classification"
    sizes = {tuple(c["shapes"]["input_ids"]) for c in ev["verify"]["cases"]}
    assert (2, 64) in sizes and (7, 16) in sizes  # the sweep reached max_length and other batch sizes
    assert ev["check"]["outputs"]["logits"]["passed"] and ev["check"]["input"] == "8 raw texts"
    bundle = Bundle.load(out / "bundle")
    got = bundle.predict(["list files in a directory", "show disk usage"])
    assert got["probabilities"].shape == (2, 3) and got["topk"][0][0]["label"] in {"neg", "neutral", "pos"}
    capsys.readouterr()
    assert run_cli("predict", out / "bundle", "--text", "show disk usage") == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["topk"][0][0]["label"] in {"neg", "neutral", "pos"}


def test_feature_extraction_export_matches_transformers(tmp_path):
    import torch

    from torch2ort.export import export_onnx
    from torch2ort.inputs import default_sweep
    from torch2ort.parity.verify import verify_onnx
    from torch2ort.sources import ModelRequest, load_model

    path = bert_dir(tmp_path, cls="BertModel")
    loaded = load_model(ModelRequest(f"hf:{path}"))
    assert loaded.hints.task == "feature-extraction"
    spec = loaded.hints.spec
    export_onnx(loaded, spec, tmp_path / "m.onnx")
    assert verify_onnx(loaded, tmp_path / "m.onnx", spec, n=2, sweep=default_sweep(spec)).report
    # the wrapper really is the transformers model, called with keywords
    ids = torch.tensor([[2, 4, 5, 3]])
    ones = torch.ones_like(ids)
    ref = transformers.BertModel.from_pretrained(path).eval()(input_ids=ids, attention_mask=ones).last_hidden_state
    with torch.inference_mode():
        got = loaded.module(ids, ones, torch.zeros_like(ids))
    assert torch.allclose(ref, got, atol=1e-6)


def test_sentence_transformers_folder_pools_where_it_verifies_better(tmp_path):
    path = bert_dir(tmp_path / "st", cls="BertModel")
    (path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (path / "1_Pooling").mkdir()
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 16,
                                                                "pooling_mode_mean_tokens": True}))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    pooling = ev["pooling"]
    assert set(pooling["candidates"]) == {"graph", "runtime"} and pooling["chosen"] in ("graph", "runtime")
    best = min(pooling["candidates"].values(), key=lambda c: c["max_abs"])
    assert pooling["candidates"][pooling["chosen"]]["max_abs"] == best["max_abs"]
    assert ev["check"]["outputs"]["sentence_embedding"]["min_cosine"] >= 0.9999
    from torch2ort.runtime import Bundle

    emb = Bundle.load(out / "bundle").predict(["list files", "show disk usage in a directory"])["sentence_embedding"]
    assert emb.shape == (2, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("setup, kwargs, message", [
    (lambda p: None, None, "no such directory"),
    (lambda p: p.mkdir(), None, "config.json is missing"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text(json.dumps({"model_type": "bert", "architectures":
                                                                      ["BertModel"]}))), None,
     "tokenizer.json is missing"),
    (lambda p: (p.mkdir(), (p / "config.json").write_text(json.dumps({"model_type": "bert", "architectures":
                                                                      ["BertModel"]})),
                tiny_tokenizer(p / "tokenizer.json")), None, "transformers could not load"),
    (lambda p: bert_dir(p, cls="BertModel"), '{"task": "translation"}', "unknown task"),
    (lambda p: bert_dir(p, cls="BertModel"), '{"revision": "main"}', "take --kwargs keys"),
])
def test_bad_folders_give_one_line_errors(tmp_path, capsys, setup, kwargs, message):
    path = tmp_path / "model"
    setup(path)
    argv = ["migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out"] + (["--kwargs", kwargs] if kwargs else [])
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert message in err.lower() or message in err
    assert "Traceback" not in err
