"""Structured answers through the Open Inference Protocol: named entities from text, detections, a
segmentation map and zero-shot labels from image files, over REST JSON, the binary extension and gRPC, equal to
``Bundle.predict`` on the same inputs, with the call options as request parameters."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from fixtures.ner import TEXTS
from fixtures.server import free_port, running
from serve.task_bundles import task_bundles
from serve.test_files import png
from serve.test_http import call, error_of
from torch2ort.runtime import Bundle
from torch2ort.serve import Limits
from torch2ort.serve.metadata import OPTION_HELP

IMAGES = [png(1), png(2, (64, 30)), png(3, (20, 52))]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    paths = task_bundles(tmp_path_factory.mktemp("tasks"))
    port = free_port()
    with running(list(paths.values()), Limits(max_batch=4, max_delay_ms=2), grpc_port=port) as (url, _):
        yield url, f"127.0.0.1:{port}", {name: Bundle.load(p) for name, p in paths.items()}


def _files(model: str, images: list[bytes], parameters: dict | None = None, outputs: list[str] | None = None):
    body = {"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [len(images)],
                        "data": [base64.b64encode(f).decode() for f in images]}]}
    if parameters is not None:
        body["parameters"] = parameters
    if outputs is not None:
        body["outputs"] = [{"name": o} for o in outputs]
    return body


def _outputs(resp) -> dict:
    status, _, raw = resp
    assert status == 200, raw
    return {o["name"]: o for o in json.loads(raw)["outputs"]}


def test_metadata_declares_the_structured_outputs(served):
    url, _, _ = served
    for model, name, datatype, shape in [("ner", "entities", "BYTES", [-1]), ("boxes", "detections", "BYTES", [-1]),
                                         ("regions", "segmentation", "INT64", [-1, -1, -1])]:
        meta = json.loads(call(url, f"/v2/models/{model}")[2])
        out = {o["name"]: o for o in meta["outputs"]}[name]
        assert (out["datatype"], out["shape"]) == (datatype, shape)
        assert out["parameters"]["content"] == ("label map" if model == "regions" else "json")
        hints = meta["parameters"]["torch2ort_display"]
        assert hints.get("entities" if model == "ner" else "detections" if model == "boxes" else "mask")
    fields = {o["name"]: o for o in json.loads(call(url, "/v2/models/boxes")[2])["outputs"]}["detections"]
    assert fields["parameters"]["fields"]["box"] == {"xmin": "int", "ymin": "int", "xmax": "int", "ymax": "int"}


@pytest.mark.parametrize("strategy", ["simple", "first", "max"])
def test_entities_over_tritonclient_binary_equal_predict(served, strategy):
    url, _, bundles = served
    tensor = th.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array(TEXTS, dtype=object), binary_data=True)
    got = th.InferenceServerClient(url).infer("ner", [tensor], outputs=[th.InferRequestedOutput("entities")],
                                              parameters={"aggregation_strategy": strategy})
    docs = [json.loads(d) for d in got.as_numpy("entities")]
    want = bundles["ner"].predict(TEXTS, aggregation_strategy=strategy)["entities"]
    assert docs == want and any(docs)


def test_entities_over_grpc_with_a_list_option(served):
    _, grpc_url, bundles = served
    tensor = tg.InferInput("text", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(TEXTS[:2], dtype=object))
    got = tg.InferenceServerClient(grpc_url).infer("ner", [tensor], parameters={
        "aggregation_strategy": "first", "ignore_labels": '["O", "ORG"]'})
    want = bundles["ner"].predict(TEXTS[:2], aggregation_strategy="first", ignore_labels=["O", "ORG"])["entities"]
    assert [json.loads(d) for d in got.as_numpy("entities")] == want
    assert all(e["entity_group"] != "ORG" for row in want for e in row) and any(want)


@pytest.mark.parametrize("threshold", [None, 0.0, 0.9])
def test_detections_over_rest_json_equal_predict(served, threshold):
    url, _, bundles = served
    params = None if threshold is None else {"threshold": threshold}
    outs = _outputs(call(url, "/v2/models/boxes/infer", _files("boxes", IMAGES, params)))
    assert outs["detections"]["datatype"] == "BYTES" and outs["detections"]["shape"] == [3]
    want = bundles["boxes"].predict(IMAGES, **({} if threshold is None else {"threshold": threshold}))["detections"]
    assert [json.loads(d) for d in outs["detections"]["data"]] == want and any(want)
    if threshold == 0.0:
        assert all(len(row) == 6 for row in want)  # every query
    assert "logits" in outs and "pred_boxes" in outs  # the raw outputs stay


def test_detections_over_grpc_equal_predict(served):
    _, grpc_url, bundles = served
    tensor = tg.InferInput("image_file", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[:2], dtype=object))
    got = tg.InferenceServerClient(grpc_url).infer("boxes", [tensor], parameters={"threshold": 0.25})
    want = bundles["boxes"].predict(IMAGES[:2], threshold=0.25)["detections"]
    assert [json.loads(d) for d in got.as_numpy("detections")] == want


def test_segmentation_maps_are_padded_per_request_and_equal_predict(served):
    url, grpc_url, bundles = served
    want = bundles["regions"].predict(IMAGES)["segmentation"]  # three sizes: a list of maps
    outs = _outputs(call(url, "/v2/models/regions/infer", _files("regions", IMAGES, outputs=["segmentation"])))
    seg = outs["segmentation"]
    got = np.array(seg["data"], dtype=np.int64).reshape(seg["shape"])
    assert seg["datatype"] == "INT64" and seg["shape"] == [3, 64, 52]
    for m, g in zip(want, got):
        h, w = m.shape
        np.testing.assert_array_equal(g[:h, :w], m)
        assert (g[h:] == -1).all() and (g[:, w:] == -1).all()
    one = _outputs(call(url, "/v2/models/regions/infer", _files("regions", IMAGES[1:2])))["segmentation"]
    assert one["shape"] == [1, 64, 30] and one["data"] == want[1].ravel().tolist()  # one image: no padding
    tensor = tg.InferInput("image_file", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[2:], dtype=object))
    grpc_map = tg.InferenceServerClient(grpc_url).infer("regions", [tensor]).as_numpy("segmentation")
    np.testing.assert_array_equal(grpc_map[0], want[2])


def test_the_models_own_tensors_get_no_records(served):
    url, _, _ = served
    x = np.zeros((1, 3, 32, 32), np.float32)
    body = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 32, 32],
                        "data": x.ravel().tolist()}]}
    outs = _outputs(call(url, "/v2/models/boxes/infer", body))
    assert set(outs) == {"logits", "pred_boxes"}
    resp = call(url, "/v2/models/boxes/infer", body | {"outputs": [{"name": "detections"}]})
    assert resp[0] == 400 and "send 'image_file'" in error_of(resp)


BAD = [
    ("boxes", {"threshold": "high"}, "'high' is not of type 'number'"),
    ("boxes", {"threshold": 2}, "threshold"),
    ("boxes", {"threshold": -1e-9}, "threshold"),
    ("boxes", {"threshold": True}, "threshold"),
    ("boxes", {"threshold": None}, "threshold"),
    ("boxes", {"aggregation_strategy": "first"}, "takes no option 'aggregation_strategy'"),
    ("ner", {"aggregation_strategy": "best"}, "aggregation_strategy"),
    ("ner", {"aggregation_strategy": ""}, "aggregation_strategy"),
    ("ner", {"ignore_labels": "[O"}, "not a JSON array"),
    ("ner", {"ignore_labels": 3}, "ignore_labels"),
    ("ner", {"threshold": 0.5}, "takes no option 'threshold'"),
    ("regions", {"threshold": 0.5}, "it takes: none"),
    ("zeroshot", {"hypothesis_template": "a {}"}, "needs candidate labels"),
    ("zeroshot", {"candidate_labels": []}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": [1, 2]}, "not of type 'string'"),
    ("zeroshot", {"candidate_labels": [""]}, "too short"),
    ("zeroshot", {"candidate_labels": ["x"] * 1025}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": ["x" * 1001]}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": " , ,"}, "holds no label"),
    ("zeroshot", {"candidate_labels": "[list"}, "not a JSON array"),
    ("zeroshot", {"candidate_labels": 3.5}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": None}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": {"a": 1}}, "candidate_labels"),
    ("zeroshot", {"candidate_labels": ["list"], "hypothesis_template": "no slot"}, "one {}"),
    ("zeroshot", {"candidate_labels": ["list"], "hypothesis_template": "{0.__class__}"}, "one {}"),
    ("zeroshot", {"candidate_labels": ["list"], "hypothesis_template": 7}, "hypothesis_template"),
    ("zeroshot", {"candidate_labels": ["list"], "threshold": 0.5}, "takes no option 'threshold'"),
]


@pytest.mark.parametrize("model,params,needle", BAD, ids=[f"{m}-{next(iter(p))}-{i}" for i, (m, p, _) in
                                                          enumerate(BAD)])
def test_bad_call_options_are_one_line_400s(served, model, params, needle):
    url, _, _ = served
    body = ({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["Paris"]}]}
            if model == "ner" else _files(model, IMAGES[:1]))
    resp = call(url, f"/v2/models/{model}/infer", body | {"parameters": params})
    message = error_of(resp)
    assert resp[0] == 400 and needle in message and "\n" not in message, (resp[0], message)


def test_non_finite_thresholds_are_refused_over_grpc(served):
    _, grpc_url, _ = served
    tensor = tg.InferInput("image_file", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[:1], dtype=object))
    for value in (float("nan"), float("inf"), float("-inf"), 1e308):
        with pytest.raises(InferenceServerException) as info:
            tg.InferenceServerClient(grpc_url).infer("boxes", [tensor], parameters={"threshold": value})
        assert "INVALID_ARGUMENT" in str(info.value.status()) and "threshold" in info.value.message()


ZS_LABELS = ["list", "files", "disk usage"]


def test_zero_shot_metadata_declares_the_answer_and_the_parameters_it_takes(served):
    url, _, _ = served
    meta = json.loads(call(url, "/v2/models/zeroshot")[2])
    out = {o["name"]: o for o in meta["outputs"]}["zero_shot"]
    assert (out["datatype"], out["shape"]) == ("BYTES", [-1])
    assert out["parameters"]["fields"] == {"score": "float", "label": "str"}
    options = meta["parameters"]["torch2ort_call_options"]
    assert set(options) == {"candidate_labels", "hypothesis_template"}
    assert options["candidate_labels"]["required"] and "array" in options["candidate_labels"]["type"]
    assert options["hypothesis_template"] == {"type": OPTION_HELP["hypothesis_template"], "required": False,
                                              "default": "a {}"}
    assert meta["parameters"]["torch2ort_display"]["zero_shot"] == {"output": "zero_shot"}
    # each request's labels make its own text rows: requests are never stacked into one run
    assert meta["parameters"]["torch2ort_dynamic_batching"] is False
    boxes = json.loads(call(url, "/v2/models/boxes")[2])["parameters"]["torch2ort_call_options"]
    assert boxes == {"threshold": {"type": OPTION_HELP["threshold"], "required": False, "default": 0.5}}


@pytest.mark.parametrize("template", [None, "{} on a disk"])
def test_zero_shot_over_rest_json_equals_predict(served, template):
    url, _, bundles = served
    params = {"candidate_labels": ZS_LABELS} | ({} if template is None else {"hypothesis_template": template})
    outs = _outputs(call(url, "/v2/models/zeroshot/infer", _files("zeroshot", IMAGES, params)))
    assert outs["zero_shot"]["datatype"] == "BYTES" and outs["zero_shot"]["shape"] == [3]
    want = bundles["zeroshot"].predict(IMAGES, **params)["zero_shot"]
    got = [json.loads(d) for d in outs["zero_shot"]["data"]]
    assert got == want and len({row[0]["label"] for row in got}) > 1  # top-1 differs between the images
    assert outs["logits_per_image"]["shape"] == [3, 3]


def test_zero_shot_over_grpc_and_binary_http_equals_predict(served):
    url, grpc_url, bundles = served
    tensor = tg.InferInput("image_file", [2], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[1:], dtype=object))
    client = tg.InferenceServerClient(grpc_url)
    for labels in (json.dumps(ZS_LABELS), "list, files, disk usage"):  # a JSON array in a string, or commas
        got = client.infer("zeroshot", [tensor], parameters={"candidate_labels": labels,
                                                             "hypothesis_template": "a {} here"})
        want = bundles["zeroshot"].predict(IMAGES[1:], candidate_labels=ZS_LABELS, hypothesis_template="a {} here")
        assert [json.loads(d) for d in got.as_numpy("zero_shot")] == want["zero_shot"]
    one = th.InferInput("image_file", [1], "BYTES")
    one.set_data_from_numpy(np.array(IMAGES[:1], dtype=object), binary_data=True)
    got = th.InferenceServerClient(url).infer("zeroshot", [one], outputs=[th.InferRequestedOutput("zero_shot")],
                                              parameters={"candidate_labels": ["show", "directory"]})
    want = bundles["zeroshot"].predict(IMAGES[0], candidate_labels=["show", "directory"])["zero_shot"]
    assert [json.loads(d) for d in got.as_numpy("zero_shot")] == want


def test_zero_shot_labels_are_refused_with_the_models_own_tensors(served):
    url, grpc_url, _ = served
    x = np.zeros((1, 3, 32, 32), np.float32)
    body = {"inputs": [{"name": "pixel_values", "datatype": "FP32", "shape": [1, 3, 32, 32],
                        "data": x.ravel().tolist()},
                       {"name": "input_ids", "datatype": "INT64", "shape": [2, 3], "data": [2, 4, 3, 2, 5, 3]},
                       {"name": "attention_mask", "datatype": "INT64", "shape": [2, 3], "data": [1] * 6}]}
    outs = _outputs(call(url, "/v2/models/zeroshot/infer", body))
    assert "zero_shot" not in outs and outs["logits_per_image"]["shape"] == [1, 2]
    resp = call(url, "/v2/models/zeroshot/infer", body | {"parameters": {"candidate_labels": ["list"]}})
    assert resp[0] == 400 and "apply to 'image_file'" in error_of(resp)
    tensor = tg.InferInput("image_file", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(IMAGES[:1], dtype=object))
    with pytest.raises(InferenceServerException) as info:
        tg.InferenceServerClient(grpc_url).infer("zeroshot", [tensor], parameters={"candidate_labels": "[1, 2]"})
    assert "INVALID_ARGUMENT" in str(info.value.status()) and "candidate_labels" in info.value.message()


@pytest.mark.browser
def test_the_page_renders_spans_boxes_a_colour_mask_and_zero_shot_bars_as_predict_answers(served, tmp_path):
    from playwright.sync_api import sync_playwright

    from serve.test_ui import _attrs, _chromium, _upload
    from torch2ort.runtime.masks import colour_mask

    url, _, bundles = served
    for i, image in enumerate(IMAGES[:2] * 3):  # the same two images under new names: a file input
        (tmp_path / f"image{i}.png").write_bytes(image)  # fires no change event for the same files again
    with sync_playwright() as pw:
        ctx, page = _chromium(pw, tmp_path / "profile")
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"http://{url}/")
        page.wait_for_function("() => t2oServe.ready === true")

        page.select_option("#model", "ner")
        page.wait_for_function("() => t2oServe.meta && t2oServe.meta.name === 'ner'")
        page.fill("#text", "\n".join(TEXTS[:2]))
        page.click("#send-text")
        page.wait_for_function("() => t2oServe.answers > 0 || t2oServe.error")
        for row, text in enumerate(TEXTS[:2]):
            want = bundles["ner"].predict(text)["entities"][0]
            got = _attrs(page, f'[data-row="{row}"] .entities mark', "label", "score", "start", "end")
            assert [(g[0], float(g[1]), int(g[2]), int(g[3])) for g in got] == [
                (e["entity_group"], e["score"], e["start"], e["end"]) for e in want] and want

        images = [tmp_path / "image0.png", tmp_path / "image1.png"]
        _upload(page, "boxes", images)
        page.wait_for_function("() => document.querySelectorAll('canvas.detections[data-drawn]').length === 2")
        want = bundles["boxes"].predict([p.read_bytes() for p in images])["detections"]
        for row in range(2):
            got = _attrs(page, f'[data-row="{row}"] .detection', "label", "score", "box")
            assert [(g[0], float(g[1]), json.loads(g[2])) for g in got] == [
                (d["label"], d["score"], d["box"]) for d in want[row]] and want[row]

        images = [tmp_path / "image2.png", tmp_path / "image3.png"]
        _upload(page, "regions", images)
        maps = bundles["regions"].predict([p.read_bytes() for p in images])["segmentation"]
        for row, m in enumerate(maps):
            rgba = page.eval_on_selector(f'[data-row="{row}"] canvas.mask', """c => Array.from(
                c.getContext('2d').getImageData(0, 0, c.width, c.height).data)""")
            size = page.eval_on_selector(f'[data-row="{row}"] canvas.mask', "c => [c.height, c.width]")
            pixels = np.array(rgba, np.uint8).reshape(*size, 4)[:m.shape[0], :m.shape[1]]
            np.testing.assert_array_equal(pixels[..., :3], colour_mask(m))
            assert (pixels[..., 3] == 255).all()
        legend = _attrs(page, '[data-row="0"] .legend span', "label")
        assert [g[0] for g in legend] == [bundles["regions"].labels[i] for i in np.unique(maps[0])]

        page.select_option("#model", "zeroshot")
        page.wait_for_function("() => t2oServe.meta && t2oServe.meta.name === 'zeroshot'")
        assert page.is_visible("#labels")
        page.fill("#labels", "list, files, disk usage")
        images = [tmp_path / "image4.png", tmp_path / "image5.png"]
        _upload(page, "zeroshot", images)
        want = bundles["zeroshot"].predict([p.read_bytes() for p in images], candidate_labels=ZS_LABELS)["zero_shot"]
        for row in range(2):
            got = _attrs(page, f'[data-row="{row}"] .topk .bar', "label", "score")
            assert [(g[0], float(g[1])) for g in got] == [(d["label"], d["score"]) for d in want[row]]
        page.screenshot(path=str(tmp_path / "tasks.png"))  # an artefact in pytest's tmp dir, not git
        assert not errors, errors
        ctx.close()
