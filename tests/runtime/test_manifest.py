"""The manifest is checked in full at load: typed record, model name, step parameters, what the folder may hold."""

from __future__ import annotations

import inspect
import json
import os
import typing

import pytest

from runtime.tiny_models import image_model, rewrite_manifest, vector_model
from torch2ort.bundle.writer import pack
from torch2ort.errors import BundleError
from torch2ort.runtime import Bundle
from torch2ort.runtime import manifest as mf
from torch2ort.runtime.processors import _tables, step_signature


@pytest.fixture
def vec_bundle(tmp_path):
    return pack(vector_model(tmp_path / "vec.onnx"), tmp_path / "b", name="vec", postprocess="softmax-topk")


def test_every_step_parameter_has_a_type_hint():
    """The signature is the step's schema: a parameter without a hint would go unchecked."""
    for kind, table in zip(("preprocess", "postprocess"), _tables()):
        for op, fn in table.items():
            signature, hints = step_signature(fn)
            params = list(signature.parameters.values())[2 if kind == "preprocess" else 1:]
            untyped = [p.name for p in params if p.name not in hints]
            assert not untyped, f"{kind} step {op!r}: {untyped} have no type hint"
            for p in params:  # and every default fits its own hint (None-able where the default is None)
                if p.default is not inspect.Parameter.empty and p.default is not None:
                    default = list(p.default) if isinstance(p.default, tuple) else p.default
                    mf.validate(_doc([{"op": op, **_required(op), p.name: default}], kind), f"{op}.{p.name}")


def _required(op: str) -> dict:
    return {"output": "y"} if op not in ("mean_pool", "l2_normalize") and op in _tables()[1] else {
        "resize": {"size": 4}, "center_crop": {"size": 4}, "normalize": {"mean": [0.5], "std": [0.5]},
        "to_input": {"name": "x"}, "highpass": {"cutoff": 50}, "segments": {"seconds": 1},
        "resample": {"sample_rate": 500}, "crop_pad": {"length": 10}, "log_mel": {"filters": "mel.npy"},
        "kaldi_fbank": {"filters": "mel.npy", "window": "w.npy", "max_frames": 10}}.get(op, {})


def _doc(steps: list, kind: str = "preprocess") -> dict:
    return {"format_version": mf.FORMAT_VERSION, "name": "m", "model": "model.onnx", "files": {"model.onnx": "0" * 64},
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [1, 4]}], kind: steps}


@pytest.mark.parametrize("step, fragment", [
    ({"op": "topk", "output": "y", "k": True}, "k: True is not of type 'integer'"),
    ({"op": "topk", "output": "y", "k": 10**7}, "k: 10000000 is greater than the maximum of 1000000"),
    ({"op": "threshold", "output": "y", "thresholds": {"AF": "high"}}, "thresholds.AF: 'high' is not of type"),
    ({"op": "softmax", "output": ""}, "output: '' is too short"),
    ({"op": "resize", "size": [224, 0]}, "size[1]: 0 is less than the minimum of 1"),
    ({"op": "detections", "threshold": float("nan")}, "threshold: nan is not a number within the allowed range"),
    ({"op": "resize", "size": [1, 2, 3]}, "size: [1, 2, 3] is too long (at most 2 items)"),
    ({"op": "resize", "size": 8, "filter": "sinc"}, "filter: 'sinc' is not one of bilinear, bicubic"),
    ({"op": "normalize", "mean": [0.5, 0.5], "std": [0.5, 0]}, "std[1] must be a non-zero number"),
    ({"op": "tokenize", "max_length": 1 << 30}, "max_length: 1073741824 is greater than the maximum"),
    ({"op": "tokenize", "outputs": ["input_ids", "input_ids"]}, "has non-unique elements"),
    ({"op": "tokenize", "outputs": []}, "outputs: [] is too short"),
    ({"op": "load_audio", "sample_rate": 0}, "sample_rate: 0 is less than the minimum of 1"),
    ({"op": "load_audio", "max_seconds": 0}, "max_seconds: 0 is less than or equal to the minimum of 0"),
    ({"op": "load_audio", "normalize": "rms"}, "normalize: 'rms' is not one of None, peak"),
    ({"op": "segments", "seconds": 1, "max_segments": 10**6}, "max_segments: 1000000 is greater than"),
    ({"op": "load_signal", "leads": []}, "leads: [] is too short"),
    ({"op": "load_signal", "format": "edf"}, "format: 'edf' is not one of npy, csv, mat, wfdb"),
    ({"op": "crop_pad", "length": 10**9}, "length: 1000000000 is greater than the maximum of 100000000"),
    ({"op": "log_mel", "filters": "../../etc/passwd.npy"}, "filters must be a .npy file name"),
    ({"op": "kaldi_fbank", "filters": "m.npy", "window": "w.npy"}, "missing a required argument: 'max_frames'"),
    ({"op": "crop_pad", "length": 10, "whence": "start"}, "unexpected keyword argument 'whence'"),
    ({"op": "hwc_to_chw", "axes": [2, 0, 1]}, "unexpected keyword argument 'axes'"),
])
def test_hostile_step_parameters_are_refused_by_their_signature(step, fragment):
    kind = "postprocess" if step["op"] in _tables()[1] else "preprocess"
    with pytest.raises(BundleError) as info:
        mf.validate(_doc([{"op": "to_array"}, step] if kind == "preprocess" else [step], kind), "m.json")
    index = 1 if kind == "preprocess" else 0
    assert f"m.json: {kind} step {step['op']!r} ({kind}[{index}]) has bad parameters: " in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("value, hint, ok", [
    (3, int, True), (True, int, False), (3, float, True), (3.5, int, False), (None, int | None, True),
    ([1, "I"], list[typing.Union[int, str]], True), ([1, 2.5], list[typing.Union[int, str]], False),
    ({"a": 1.0}, dict[str, float], True), ({"a": None}, dict[str, float], False), ((1, 2), list[int], False),
    ("peak", typing.Literal[None, "peak"], True), (None, typing.Literal[None, "peak"], True),
    (0, typing.Literal[False], False), (1, typing.Literal[True], False),
])
def test_json_values_against_hints(value, hint, ok):
    from torch2ort.runtime.typecheck import Mismatch, check

    if ok:
        check(value, hint)
    else:
        with pytest.raises(Mismatch):
            check(value, hint)


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


def test_an_integer_past_pythons_digit_limit_is_a_bundle_error(vec_bundle):
    path = vec_bundle / mf.MANIFEST
    text = path.read_text()
    path.write_text(text.replace('"format_version": 1', '"format_version": 1' + "0" * 5000, 1))
    with pytest.raises(BundleError, match="not a torch2ort manifest"):
        Bundle.load(vec_bundle)
