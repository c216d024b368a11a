from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fixtures.families import FAMILIES
from torch2ort.bundle.writer import pack
from torch2ort.errors import BundleError, OutputExistsError, PredictInputError
from torch2ort.inputs import synthetic_feed
from torch2ort.runtime import Bundle
from torch2ort.runtime.manifest import FORMAT_VERSION, sha256_file
from torch2ort.runtime.processors.batching import split_by_tokens


def _rewrite_manifest(bundle, **changes):
    path = bundle / "torch2ort.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_manifest_contents(plain_bundle):
    m = json.loads((plain_bundle / "torch2ort.json").read_text())
    assert m["format_version"] == FORMAT_VERSION and m["name"] == "attn_mil"
    assert m["inputs"][0] == {"name": "spectrograms", "dtype": "float32", "shape": ["batch", "segments", 3, 32, 32],
                              "dynamic": ["batch", "segments"]}
    assert [o["name"] for o in m["outputs"]] == ["bag_prob", "bag_logit", "seg_probs", "attn_weights"]
    prov = m["provenance"]
    assert prov["exporter"] == "dynamo" and prov["torch"].startswith("2.13.0") and prov["opset"] >= 17
    assert prov["onnxruntime"] == ort.__version__ and prov["created"] and prov["input_spec_sha256"]
    assert set(m["files"]) == {"model.onnx", "requirements.txt", "README.md"}
    assert all(sha256_file(plain_bundle / f) == h for f, h in m["files"].items())
    reqs = (plain_bundle / "requirements.txt").read_text()
    assert "torch==" not in reqs.replace("torch2ort==", "") and f"onnxruntime=={ort.__version__}" in reqs
    assert "Bundle.load" in (plain_bundle / "README.md").read_text()


def test_predict_matches_onnxruntime(plain_bundle, exported):
    feed = synthetic_feed(FAMILIES["attn_mil"].spec, sizes={"batch": 3, "segments": 5}, seed=4)
    out = Bundle.load(plain_bundle).predict(feed)
    ref = ort.InferenceSession(str(exported("attn_mil"))).run(None, feed)
    assert list(out) == ["bag_prob", "bag_logit", "seg_probs", "attn_weights"]
    for got, want in zip(out.values(), ref):
        np.testing.assert_array_equal(got, want)


def test_tampered_model_is_refused(plain_bundle):
    with open(plain_bundle / "model.onnx", "r+b") as f:
        f.seek(-10, 2)
        byte = f.read(1)
        f.seek(-10, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BundleError, match="'model.onnx' has been modified"):
        Bundle.load(plain_bundle)


def test_missing_and_extra_files_are_refused(plain_bundle):
    (plain_bundle / "stray.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="does not list: stray.onnx"):
        Bundle.load(plain_bundle)
    (plain_bundle / "stray.onnx").unlink()
    (plain_bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match="'model.onnx' is missing"):
        Bundle.load(plain_bundle)


def test_newer_format_version_asks_for_upgrade(plain_bundle):
    _rewrite_manifest(plain_bundle, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match="upgrade torch2ort"):
        Bundle.load(plain_bundle)


@pytest.mark.parametrize("change, fragment", [
    ({"inputs": "x"}, "'inputs' has the wrong type"),
    ({"files": {"model.onnx": "abc"}}, "sha256 hex digest"),
    ({"postprocess": [{"op": "nope"}]}, "unknown postprocess step 'nope'; valid: argmax"),
    ({"postprocess": [{"op": "topk", "kk": 3}]}, "bad parameters"),
])
def test_bad_manifests(plain_bundle, change, fragment):
    _rewrite_manifest(plain_bundle, **change)
    with pytest.raises(BundleError, match=fragment):
        Bundle.load(plain_bundle)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a directory"):
        Bundle.load(tmp_path / "nope")
    with pytest.raises(BundleError, match="no torch2ort.json"):
        Bundle.load(tmp_path)
    (tmp_path / "torch2ort.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(tmp_path)


def _external_model(tmp_path, exported):
    src = tmp_path / "ext" / "m.onnx"
    src.parent.mkdir()
    model = onnx.load(str(exported("mobilenet")))
    onnx.save(model, str(src), save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data",
              size_threshold=1024)
    return src


def test_external_data_is_packed_and_checked(tmp_path, exported):
    bundle = pack(_external_model(tmp_path, exported), tmp_path / "b")
    assert (bundle / "m.onnx.data").is_file()
    m = json.loads((bundle / "torch2ort.json").read_text())
    assert "m.onnx.data" in m["files"]
    feed = synthetic_feed(FAMILIES["mobilenet"].spec)
    np.testing.assert_allclose(Bundle.load(bundle).predict(feed)["output_0"],
                               ort.InferenceSession(str(exported("mobilenet"))).run(None, feed)[0])


@pytest.mark.parametrize("location, fragment", [("../secret.data", "outside the bundle directory"),
                                                ("m.onnx.data\x00.png", "NUL byte")])
def test_external_data_escape_is_refused(tmp_path, exported, location, fragment):
    bundle = pack(_external_model(tmp_path, exported), tmp_path / "b")
    # Point the model at ../secret.data and fix up every checksum: only the escape check remains.
    (tmp_path / "secret.data").write_bytes((bundle / "m.onnx.data").read_bytes())
    model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(bundle / "model.onnx"))
    (bundle / "m.onnx.data").unlink()
    m = json.loads((bundle / "torch2ort.json").read_text())
    files = {"model.onnx": sha256_file(bundle / "model.onnx"), "README.md": m["files"]["README.md"],
             "requirements.txt": m["files"]["requirements.txt"]}
    _rewrite_manifest(bundle, files=files)
    with pytest.raises(BundleError, match=fragment):
        Bundle.load(bundle)


@pytest.mark.parametrize("feed, fragment", [
    ({"image": np.zeros((1, 3, 32, 32), np.float32), "extra": np.zeros(1)}, "unexpected \\['extra'\\]"),
    ({"img": np.zeros((1, 3, 32, 32), np.float32)}, "missing \\['image'\\]"),
    ({"image": np.zeros((1, 3, 31, 32), np.float32)}, r"dim 2 is 31; expected image: float32 \['batch', 3, 32, 32\]"),
    ({"image": np.zeros((3, 32, 32), np.float32)}, "has shape \\[3, 32, 32\\]"),
    ({"image": np.zeros((1, 3, 32, 32), np.int64)}, "only float->float and int->int"),
])
def test_wrong_inputs_name_the_input_and_spec(exported, tmp_path, feed, fragment):
    bundle = Bundle.load(pack(exported("mobilenet"), tmp_path / "b"))
    with pytest.raises(PredictInputError, match=fragment):
        bundle.predict(feed)


def test_safe_casts(exported, tmp_path):
    bundle = Bundle.load(pack(exported("encoder"), tmp_path / "b"))
    feed64 = synthetic_feed(FAMILIES["encoder"].spec)
    feed32 = {k: v.astype(np.int32) for k, v in feed64.items()}
    np.testing.assert_array_equal(bundle.predict(feed32)["pooled"], bundle.predict(feed64)["pooled"])
    with pytest.raises(PredictInputError, match="do not fit"):
        bundle.check_feed({k: v.astype(np.uint64) + np.uint64(2**63) for k, v in feed64.items()})
    img = Bundle.load(pack(exported("mobilenet"), tmp_path / "c"))
    x = np.random.default_rng(0).random((2, 3, 32, 32))  # float64 -> float32 is allowed
    np.testing.assert_allclose(img.predict({"image": x})["output_0"],
                               img.predict({"image": x.astype(np.float32)})["output_0"])


def test_provider_fallback_is_reported(plain_bundle, caplog, monkeypatch):
    with caplog.at_level(logging.WARNING, logger="torch2ort.runtime"):
        bundle = Bundle.load(plain_bundle, providers=["cuda", "cpu"])
    assert bundle.providers == ["CPUExecutionProvider"]
    assert bundle.fallbacks and "CUDAExecutionProvider" in bundle.fallbacks[0]
    assert "provider fallback" in caplog.text
    monkeypatch.setenv("TORCH2ORT_PROVIDERS", "tensorrt")
    assert "TensorrtExecutionProvider" in Bundle.load(plain_bundle).fallbacks[0]
    with pytest.raises(BundleError, match="unknown execution provider 'gpu'"):
        Bundle.load(plain_bundle, providers="gpu")


def test_threads(plain_bundle):
    from torch2ort._env import physical_cores

    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)
    bundle = Bundle.load(plain_bundle, intra_op_num_threads=1)
    assert bundle.session.get_session_options().intra_op_num_threads == 1
    default = Bundle.load(plain_bundle)
    assert default.session.get_session_options().intra_op_num_threads == physical_cores()


def test_pack_never_clobbers(exported, tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--force"):
        pack(exported("mobilenet"), target)
    with pytest.raises(OutputExistsError, match="not a torch2ort bundle"):
        pack(exported("mobilenet"), target, force=True)
    assert (target / "notes.txt").read_text() == "precious"
    bundle = pack(exported("mobilenet"), tmp_path / "b")
    pack(exported("attn_mil"), bundle, force=True)
    assert Bundle.load(bundle).name == "attn_mil"


def test_preprocess_and_postprocess_end_to_end(mobilenet_bundle, tmp_path):
    from PIL import Image

    img = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)).save(img)
    bundle = Bundle.load(mobilenet_bundle)
    out = bundle.predict(str(img))
    assert set(out) >= {"output_0", "probabilities", "topk"}
    top = out["topk"][0]
    assert len(top) == 5 and top[0]["score"] >= top[1]["score"]
    assert top[0]["label"] == bundle.labels[int(np.argmax(out.raw["output_0"][0]))]
    np.testing.assert_allclose(out["probabilities"].sum(-1), 1.0, rtol=1e-5)
    raw = bundle.predict(str(img), raw=True)
    assert set(raw) == {"output_0"}


def test_public_stages_compose_to_predict(mobilenet_bundle, tmp_path):
    from PIL import Image

    img = tmp_path / "face.png"
    Image.fromarray((np.random.default_rng(1).random((40, 48, 3)) * 255).astype(np.uint8)).save(img)
    bundle = Bundle.load(mobilenet_bundle)
    feed = bundle.preprocess(str(img))
    assert list(feed) == ["image"] and feed["image"].dtype == np.float32 and feed["image"].shape[0] == 1
    raw = bundle.run(feed)
    assert set(raw) == {"output_0"}
    results = bundle.postprocess(feed, raw)
    assert set(results) >= {"output_0", "probabilities", "topk"}
    whole = bundle.predict(str(img))
    np.testing.assert_array_equal(whole.raw["output_0"], raw["output_0"])
    np.testing.assert_array_equal(whole["probabilities"], results["probabilities"])
    assert whole["topk"] == results["topk"]
    # a ready feed goes through preprocess unchanged (checked), and bad input fails in that stage
    assert bundle.preprocess(feed)["image"] is feed["image"]
    with pytest.raises(PredictInputError, match="dim 2 is 5"):
        bundle.preprocess({"image": np.zeros((1, 3, 5, 64), np.float32)})


def test_run_checks_its_feed_and_postprocess_without_steps_is_raw(plain_bundle):
    bundle = Bundle.load(plain_bundle)
    feed = synthetic_feed(FAMILIES["attn_mil"].spec, sizes={"batch": 2, "segments": 3}, seed=2)
    raw = bundle.run(feed)
    assert bundle.postprocess(feed, raw) == raw
    with pytest.raises(PredictInputError, match="missing"):
        bundle.run({})


def test_many_texts_run_in_length_sorted_mini_batches(exported, tmp_path, monkeypatch):
    """Like sentence-transformers' encode: sorted by length, mini-batches, results back in input order."""
    from fixtures.tokenizer import tiny_tokenizer

    tok = tmp_path / "tokenizer.json"
    tiny_tokenizer(tok)
    path = pack(exported("encoder"), tmp_path / "enc", name="enc", postprocess="embeddings", tokenizer=tok,
                preprocess=[{"op": "tokenize", "max_length": 64, "outputs": ["input_ids", "attention_mask"]}])
    bundle = Bundle.load(path)
    words = "list show find kill compress files disk usage process archive".split()
    texts = [" ".join(words[: 1 + (i * 7) % len(words)]) for i in range(23)]
    whole = bundle.predict(texts, batch_size=None, max_tokens=None)
    calls = []
    real_run = bundle.run
    monkeypatch.setattr(bundle, "run", lambda feed: calls.append(len(next(iter(feed.values())))) or real_run(feed))
    batched = bundle.predict(texts, batch_size=5)
    assert calls == [5, 5, 5, 5, 3]
    key = next(k for k, v in whole.items() if isinstance(v, np.ndarray) and v.shape == (23, 32))
    np.testing.assert_allclose(batched[key], whole[key], atol=1e-5)  # same rows, same order
    single = bundle.predict([texts[7]], batch_size=None)
    np.testing.assert_allclose(batched[key][7], single[key][0], atol=1e-5)
    # token-level raw outputs depend on each mini-batch's padding: not kept across mini-batches
    assert all(v.shape[0] == 23 and v.ndim == 2 for v in batched.raw.values())
    with pytest.raises(PredictInputError, match="batch_size"):
        bundle.predict(texts, batch_size=0)
    # a token budget per call: each call padded only to its own longest text, same rows, same order
    shapes = []
    monkeypatch.setattr(bundle, "run", lambda feed: shapes.append(feed["input_ids"].shape) or real_run(feed))
    budgeted = bundle.predict(texts, batch_size=None, max_tokens=40)
    assert len(shapes) > 1 and all(rows * seq <= 40 or rows == 1 for rows, seq in shapes)
    assert sum(rows for rows, _ in shapes) == 23 and len({seq for _, seq in shapes}) > 1
    np.testing.assert_allclose(budgeted[key], whole[key], atol=1e-5)
    with pytest.raises(PredictInputError, match="max_tokens"):
        bundle.predict(texts, max_tokens=0)


def test_split_by_tokens_cuts_padding_per_sub_batch():
    mask = np.array([[1] * 6, [1] * 5 + [0], [1] * 3 + [0] * 3, [1] * 2 + [0] * 4, [1] + [0] * 5])
    feed = {"input_ids": np.arange(30).reshape(5, 6), "attention_mask": mask, "lengths": np.arange(5)}
    parts = split_by_tokens(feed, 12)
    assert [list(rows) for rows, _ in parts] == [[0, 1], [2, 3, 4]]
    assert [sub["input_ids"].shape for _, sub in parts] == [(2, 6), (3, 3)]
    np.testing.assert_array_equal(parts[1][1]["input_ids"], feed["input_ids"][2:, :3])
    np.testing.assert_array_equal(parts[1][1]["lengths"], [2, 3, 4])
    assert [list(r) for r, _ in split_by_tokens(feed, 1)] == [[0], [1], [2], [3], [4]]  # one row always fits
    whole = split_by_tokens({"x": np.zeros((3, 4))}, 2)  # no mask: nothing to cut by
    assert len(whole) == 1 and list(whole[0][0]) == [0, 1, 2]


def test_predict_decodes_bytes_and_file_objects_as_it_decodes_paths(mobilenet_bundle, tmp_path):
    """Bundle.predict(bytes | BinaryIO): the same answer as the path, a list of several is one batch."""
    import io

    from PIL import Image

    paths = []
    for i, size in enumerate([(40, 48), (64, 30)]):
        pixels = np.random.default_rng(i).integers(0, 256, (*size, 3), dtype=np.uint8)
        paths.append(tmp_path / f"face{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    bundle = Bundle.load(mobilenet_bundle)
    want = [bundle.predict(str(p))["probabilities"] for p in paths]
    with open(paths[0], "rb") as f:
        np.testing.assert_array_equal(bundle.predict(f)["probabilities"], want[0])
    np.testing.assert_array_equal(bundle.predict(io.BytesIO(paths[1].read_bytes()))["probabilities"], want[1])
    both = bundle.predict([paths[0].read_bytes(), memoryview(paths[1].read_bytes())])["probabilities"]
    np.testing.assert_allclose(both, np.concatenate(want), rtol=1e-6, atol=1e-7)
    with pytest.raises(PredictInputError, match="opened in binary mode"):
        with open(paths[0], encoding="latin-1") as text:
            bundle.predict(text)
