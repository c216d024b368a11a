"""The manifest is checked in full at load: schema, model name, step parameters, what the folder may hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from runtime.tiny_models import image_model, rewrite_manifest, vector_model
from torch2ort.bundle.writer import pack
from torch2ort.errors import BundleError
from torch2ort.runtime import Bundle
from torch2ort.runtime import manifest as mf
from torch2ort.runtime.processors import step_names


@pytest.fixture
def vec_bundle(tmp_path):
    return pack(vector_model(tmp_path / "vec.onnx"), tmp_path / "b", name="vec", postprocess="softmax-topk")


def test_the_schema_is_a_valid_json_schema():
    schema = json.loads((Path(mf.__file__).parent / "manifest.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    pre, post = step_names()  # every step in the registry has its parameters in the schema
    assert set(schema["$defs"]) == {"pre_step", "post_step", *pre, *post}


def test_a_packed_bundle_passes_and_loads(vec_bundle):
    data = json.loads((vec_bundle / mf.MANIFEST).read_text())
    mf.validate(data)
    assert Bundle.load(vec_bundle).name == "vec"


@pytest.mark.parametrize("name", ["resnet50", "resnet-50_v1.5", "_private", "a" * 128, "9lives"])
def test_good_model_names(name):
    assert mf.check_model_name(name) == name


@pytest.mark.parametrize("name", ["../victim", "/etc/evil", "a/b", "a\\b", "..", ".hidden", "-flag", "",
                                  "a..b", "a" * 129, "sp ace", "nul\x00", "é", 7, None])
def test_bad_model_names_state_the_rule(name):
    with pytest.raises(BundleError, match="letters, digits, '_', '-' and '.'"):
        mf.check_model_name(name)


@pytest.mark.parametrize("changes, fragment", [
    ({"name": "../victim"}, "name '../victim' is not allowed"),
    ({"name": "/tmp/abs"}, "name '/tmp/abs' is not allowed"),
    ({"postprocess": [{"op": "topk", "output": "y", "k": "five"}]}, "step 'topk' (postprocess[0]) has bad parameters"),
    ({"postprocess": [{"op": "softmax", "output": "y", "axis": 5}]}, "axis 5 is outside 'y', which has rank 2"),
    ({"postprocess": [{"op": "softmax", "output": "nope"}]}, "reads 'nope', which is not a model output"),
    ({"postprocess": [{"op": "topk", "output": "y"}, {"op": "topk", "output": "topk"}]}, "list of per-row results"),
    ({"inputs": [{"name": "x", "dtype": "complex1024", "shape": ["batch", 4]}]}, "'complex1024' is not one of"),
    ({"format_version": True}, "'format_version' has the wrong type (bool; expected integer)"),
    ({"format_version": 0}, "format_version: 0 is less than the minimum of 1"),
    ({"labels": [1, 2]}, "labels[0]: 1 is not of type 'string'"),
    ({"preprocess": ["load_image"]}, "has bad parameters"),
    ({"files": {"model.onnx": "abc"}}, "files.model.onnx must be a sha256 hex digest"),
])
def test_bad_manifests_are_refused_at_load(vec_bundle, changes, fragment):
    rewrite_manifest(vec_bundle, **changes)
    with pytest.raises(BundleError) as info:
        Bundle.load(vec_bundle)
    assert fragment in str(info.value)
    assert "\n" not in info.value.one_line()


def test_missing_key_is_named(vec_bundle):
    data = json.loads((vec_bundle / mf.MANIFEST).read_text())
    del data["outputs"]
    rewrite_manifest(vec_bundle, text=json.dumps(data))
    with pytest.raises(BundleError, match="missing required key 'outputs'"):
        Bundle.load(vec_bundle)


@pytest.mark.parametrize("deep", ["[" * 100_000 + "]" * 100_000, "[" * 40 + "]" * 40])
def test_deeply_nested_manifest_is_refused(vec_bundle, deep):
    text = (vec_bundle / mf.MANIFEST).read_text()
    rewrite_manifest(vec_bundle, text=text.replace('"provenance": {', f'"deep": {deep}, "provenance": {{', 1))
    with pytest.raises(BundleError, match="nest"):
        Bundle.load(vec_bundle)


def test_manifest_symlink_out_of_the_bundle_is_refused(vec_bundle, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text((vec_bundle / mf.MANIFEST).read_text())
    (vec_bundle / mf.MANIFEST).unlink()
    (vec_bundle / mf.MANIFEST).symlink_to(outside)
    with pytest.raises(BundleError, match="not a regular file"):
        Bundle.load(vec_bundle)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_unlisted_fifo_is_refused(vec_bundle):
    os.mkfifo(vec_bundle / "pipe")
    with pytest.raises(BundleError, match="does not list: pipe .not regular files: pipe"):
        Bundle.load(vec_bundle)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_listed_fifo_is_refused_without_reading_it(vec_bundle):
    data = json.loads((vec_bundle / mf.MANIFEST).read_text())
    (vec_bundle / "README.md").unlink()
    os.mkfifo(vec_bundle / "README.md")  # opening it to hash it would block forever
    rewrite_manifest(vec_bundle, text=json.dumps(data))
    with pytest.raises(BundleError, match="'README.md' is not a regular file"):
        Bundle.load(vec_bundle)


def test_listed_symlink_out_of_the_bundle_is_refused(vec_bundle, tmp_path):
    (tmp_path / "secret.md").write_text((vec_bundle / "README.md").read_text())
    (vec_bundle / "README.md").unlink()
    (vec_bundle / "README.md").symlink_to(tmp_path / "secret.md")
    with pytest.raises(BundleError, match="resolves outside the bundle"):
        Bundle.load(vec_bundle)


@pytest.mark.parametrize("threads, ok", [(None, True), (1, True), (100_000, False), (-1, False)])
def test_threads_are_bounded(vec_bundle, threads, ok):
    if ok:
        Bundle.load(vec_bundle, intra_op_num_threads=threads)
    else:
        with pytest.raises(BundleError, match="threads .* is out of range: give 1 to"):
            Bundle.load(vec_bundle, intra_op_num_threads=threads)


def test_pack_refuses_bad_steps_before_writing(tmp_path):
    src = image_model(tmp_path / "img.onnx")
    for post, fragment in ([{"op": "softmax", "output": "logits", "axis": 2}], "axis 2 is outside 'logits'"),\
                          ([{"op": "topk", "output": "logits", "k": 0}], "has bad parameters"):
        with pytest.raises(BundleError, match=fragment):
            pack(src, tmp_path / "b", postprocess=post)
        assert not (tmp_path / "b").exists()
    pack(src, tmp_path / "b", preprocess="image", postprocess="softmax-topk")  # the presets pass


def test_default_names_are_made_valid(tmp_path):
    src = vector_model(tmp_path / "..odd name!.onnx")
    out = pack(src, tmp_path / "b")
    assert json.loads((out / mf.MANIFEST).read_text())["name"] == "odd_name_"
