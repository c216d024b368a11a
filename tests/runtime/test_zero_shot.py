"""The zero-shot steps without a model: candidate labels to token rows, logits to the pipeline's sorted answer."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.tokenizer import tiny_tokenizer
from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.processors import Context, check_options, run_postprocess, run_preprocess

POST = [{"op": "zero_shot", "output": "logits_per_image", "name": "zero_shot"}]


def _answer(logits, labels):
    ctx = Context(None, raw={"logits_per_image": np.asarray(logits, np.float32)}, meta={"candidate_labels": labels})
    return run_postprocess(POST, ctx)["zero_shot"]


def test_scores_are_the_softmax_over_labels_best_first_ties_in_given_order():
    got = _answer([[0.0, 2.0, 0.0, 1.0], [3.0, 3.0, 3.0, 3.0]], ["a", "b", "c", "d"])
    e = np.exp([0.0, 2.0, 0.0, 1.0])
    assert [r["label"] for r in got[0]] == ["b", "d", "a", "c"]  # a and c tie: a was given first
    np.testing.assert_allclose([r["score"] for r in got[0]], sorted(e / e.sum(), reverse=True), rtol=1e-6)
    assert [r["label"] for r in got[1]] == ["a", "b", "c", "d"] and all(r["score"] == 0.25 for r in got[1])
    assert set(got[0][0]) == {"score", "label"} and isinstance(got[0][0]["score"], float)


def test_without_labels_nothing_and_a_wrong_width_is_a_bundle_error():
    ctx = Context(None, raw={"logits_per_image": np.zeros((1, 3), np.float32)})
    assert "zero_shot" not in run_postprocess(POST, ctx)  # a feed given as arrays: the scores have no names
    with pytest.raises(BundleError, match="3 labels"):
        _answer(np.zeros((1, 2)), ["a", "b", "c"])


def _steps():
    return [{"op": "candidate_labels", "hypothesis_template": "a {}", "file": "tokenizer.json", "max_length": 8,
             "pad_id": 0}]


def test_labels_are_formatted_tokenised_and_told_to_the_postprocess(tmp_path):
    vocab = tiny_tokenizer(tmp_path / "tokenizer.json")
    ctx = Context(tmp_path)
    feed = run_preprocess(_steps(), {"pixel_values": np.zeros((2, 3, 4, 4), np.float32)}, ctx,
                          {"candidate_labels": "list files, disk usage,,"})  # a string splits at commas
    assert ctx.meta["candidate_labels"] == ["list files", "disk usage"]
    assert feed["pixel_values"].shape == (2, 3, 4, 4)  # the images are left as they are
    want = [[vocab["[CLS]"], vocab["a"], vocab["list"], vocab["files"], vocab["[SEP]"]],
            [vocab["[CLS]"], vocab["a"], vocab["disk"], vocab["usage"], vocab["[SEP]"]]]
    assert feed["input_ids"].tolist() == want and feed["attention_mask"].tolist() == [[1] * 5] * 2
    feed = run_preprocess(_steps(), {"pixel_values": np.zeros((1, 3, 4, 4))}, ctx,
                          {"candidate_labels": ["show"], "hypothesis_template": "{} disk usage"})
    assert feed["input_ids"].tolist() == [[vocab[t] for t in ("[CLS]", "show", "disk", "usage", "[SEP]")]]


def test_a_batch_of_images_gets_the_labels_once(tmp_path):
    from PIL import Image

    tiny_tokenizer(tmp_path / "tokenizer.json")
    files = []
    for i, size in enumerate([(20, 30), (40, 24)]):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((*size, 3), 40 * i, np.uint8)).save(files[-1])
    steps = [{"op": "load_image"}, {"op": "resize", "size": [8, 8]}, {"op": "to_array"}, {"op": "hwc_to_chw"},
             {"op": "add_batch"}, {"op": "to_input", "name": "pixel_values"}, *_steps()]
    feed = run_preprocess(steps, [str(f) for f in files], Context(tmp_path), {"candidate_labels": ["a", "list"]})
    assert feed["pixel_values"].shape == (2, 3, 8, 8) and feed["input_ids"].shape[0] == 2
    one = run_preprocess(steps, str(files[1]), Context(tmp_path), {"candidate_labels": ["a", "list"]})
    np.testing.assert_array_equal(one["pixel_values"][0], feed["pixel_values"][1])


@pytest.mark.parametrize("options, message", [
    ({"candidate_labels": []}, "too short"), ({"candidate_labels": [1]}, "not of type 'string'"),
    ({"candidate_labels": float("nan")}, "not of type"), ({"candidate_labels": ["x"] * 1025}, "at most 1024"),
    ({"candidate_labels": ["x" * 1001]}, "at most 1000"), ({"candidate_labels": [""]}, "too short"),
    ({"hypothesis_template": "no slot"}, "one {}"), ({"hypothesis_template": "{} and {}"}, "one {}"),
    ({"hypothesis_template": "{0.__class__}"}, "one {}"), ({"hypothesis_template": 7}, "not of type 'string'"),
])
def test_bad_call_options_are_one_line_errors(options, message):
    with pytest.raises(PredictInputError, match=message) as err:
        check_options(_steps(), options, "preprocess")
    assert "\n" not in str(err.value)


def test_missing_or_empty_labels_say_how_to_give_them(tmp_path):
    tiny_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(PredictInputError, match="needs candidate_labels"):
        run_preprocess(_steps(), {"pixel_values": np.zeros((1, 3, 4, 4))}, Context(tmp_path))
    with pytest.raises(PredictInputError, match="holds no label"):
        run_preprocess(_steps(), {"pixel_values": np.zeros((1, 3, 4, 4))}, Context(tmp_path),
                       {"candidate_labels": " , "})
