"""Object detection from image files: `migrate hf:DIR` on a DETR folder (transformers' own ResNet backbone)
gives a bundle whose detections equal pipeline("object-detection") on the same files: labels, scores
and boxes in the original image's pixels."""

from __future__ import annotations

import json
import random

import pytest

from fixtures.detection import CLASSES, detr_dir
from fixtures.families import run_cli

transformers = pytest.importorskip("transformers")


def test_the_capped_resize_is_transformers_own():
    """DETR's shortest_edge/longest_edge rule, against get_size_with_aspect_ratio on 5,000 random sizes."""
    from transformers.image_transforms import get_size_with_aspect_ratio

    from torch2ort.runtime.processors.image import _capped

    rng = random.Random(0)
    for _ in range(5000):
        h, w, size = rng.randint(1, 4000), rng.randint(1, 4000), rng.randint(1, 1000)
        cap = rng.randint(size, 1500)
        want = get_size_with_aspect_ratio((h, w), size, cap)
        if min(want) > 0:  # transformers can answer 0 for extreme aspects; the runtime keeps 1 px
            assert _capped(h, w, size, cap)[::-1] == want, (h, w, size, cap)


@pytest.fixture(scope="module")
def migrated_det(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    path = detr_dir(root / "detr")
    out = root / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    return path, out


@pytest.mark.slow
def test_detections_equal_the_pipeline_on_every_sample(migrated_det):
    from torch2ort.pipeline.check_detection import judge_detections, pipeline_detections
    from torch2ort.runtime import Bundle

    path, out = migrated_det
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "object-detection"
    assert ev["check"]["outputs"]["detections"]["passed"] and not ev["check"]["torch_imported"]
    bundle = Bundle.load(out / "bundle")
    model = transformers.AutoModelForObjectDetection.from_pretrained(str(path)).eval()
    found = 0
    for image in sorted((out / "samples" / "raw").iterdir()):
        for threshold in (0.5, 0.0):
            got = bundle.predict(str(image), threshold=threshold)["detections"]
            assert len(got) == 1
            verdict = judge_detections(got[0], pipeline_detections(path, model, str(image), threshold), 1e-4)
            assert verdict.passed, (image.name, threshold, verdict.reason)
            found += len(got[0]) if threshold else 0
        assert {d["label"] for d in got[0]} <= set(CLASSES) and len(got[0]) == 12  # threshold 0: every query
    assert found  # the 0.5 threshold keeps some queries on some images


@pytest.mark.slow
def test_a_planted_resize_fault_fails_the_detection_check(migrated_det, tmp_path):
    from fixtures.faults import bundle_with, step
    from torch2ort.pipeline.check_detection import judge_detections, pipeline_detections
    from torch2ort.runtime import Bundle

    path, out = migrated_det

    def squeeze(manifest):  # every image resized with its longer side capped at the shorter side's size
        resize = step(manifest, "resize")
        resize["max_size"] = resize["size"]

    broken = bundle_with(out / "bundle", tmp_path / "bundle", squeeze)
    model = transformers.AutoModelForObjectDetection.from_pretrained(str(path)).eval()
    image = str(out / "samples" / "raw" / "landscape.jpg")
    ref = pipeline_detections(path, model, image, 0.0)
    assert judge_detections(Bundle.load(out / "bundle").predict(image, threshold=0.0)["detections"][0], ref,
                            1e-4).passed
    verdict = judge_detections(Bundle.load(broken).predict(image, threshold=0.0)["detections"][0], ref, 1e-4)
    assert not verdict.passed and "where the pipeline has" in verdict.reason


@pytest.mark.slow
def test_batch_writes_boxes_as_nested_records(migrated_det, tmp_path):
    """A folder of images of different sizes: each row's boxes are in its own image's pixels."""
    import pyarrow.parquet as pq

    from torch2ort.batch import run_batch
    from torch2ort.runtime import Bundle

    _, out = migrated_det
    images = out / "samples" / "raw"
    table_path = tmp_path / "boxes.parquet"
    run_batch(out / "bundle", images, table_path, batch_size=3, shard_rows=8, progress=False)
    table = pq.read_table(table_path)
    assert "box: struct<xmin: int64" in str(table.schema.field("detections").type)
    bundle = Bundle.load(out / "bundle")
    rows = table.to_pylist()
    assert len(rows) == len(list(images.iterdir())) and not any(r["error"] for r in rows)
    for row in rows:
        want = bundle.predict(str(images / row["source"]))["detections"][0]
        assert [(d["label"], d["box"]) for d in row["detections"]] == [(d["label"], d["box"]) for d in want]


@pytest.fixture(scope="module")
def migrated_cdetr(tmp_path_factory):
    from fixtures.detection import conditional_detr_dir

    root = tmp_path_factory.mktemp("cdetr")
    path = conditional_detr_dir(root / "cdetr")
    out = root / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    return path, out


@pytest.mark.slow
def test_conditional_detr_detections_equal_the_pipeline(migrated_cdetr):
    """A second family: Conditional DETR's sigmoid per class and top-100 (query, class) pairs, not DETR's
    softmax with a no-object class; the same check as DETR's on every sample image at 0.5 and 0."""
    from torch2ort.pipeline.check_detection import judge_detections, pipeline_detections
    from torch2ort.runtime import Bundle

    path, out = migrated_cdetr
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "object-detection" and not ev["check"]["torch_imported"]
    assert ev["check"]["outputs"]["detections"]["passed"]
    bundle = Bundle.load(out / "bundle")
    assert bundle.manifest["postprocess"][0] | {"threshold": 0} == {
        "op": "detections", "output": "logits", "boxes": "pred_boxes", "threshold": 0, "activation": "sigmoid",
        "top_k": 100}
    model = transformers.AutoModelForObjectDetection.from_pretrained(str(path)).eval()
    kept = 0
    for image in sorted((out / "samples" / "raw").iterdir()):
        for threshold in (0.5, 0.0):
            got = bundle.predict(str(image), threshold=threshold)["detections"][0]
            verdict = judge_detections(got, pipeline_detections(path, model, str(image), threshold), 1e-4)
            assert verdict.passed, (image.name, threshold, verdict.reason)
            kept += len(got) if threshold else 0
        assert len(got) == 12 * len(CLASSES)  # threshold 0: every (query, class) pair, 48 < top_k
    assert kept


@pytest.mark.slow
def test_the_migrated_bundle_serves_its_detections(migrated_det):
    """The real DETR bundle behind `torch2ort serve`: each sample image in its own request (DETR's input
    follows the image's size), answered as Bundle.predict answers it (one JSON document per image)."""
    import base64

    from fixtures.server import running
    from serve.test_http import call
    from torch2ort.runtime import Bundle

    _, out = migrated_det
    bundle = Bundle.load(out / "bundle")
    with running([out / "bundle"]) as (url, hosts):
        for image in sorted((out / "samples" / "raw").iterdir())[:2]:
            body = {"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [1],
                                "data": [base64.b64encode(image.read_bytes()).decode()]}],
                    "parameters": {"threshold": 0.0}, "outputs": [{"name": "detections"}]}
            status, _, raw = call(url, f"/v2/models/{next(iter(hosts))}/infer", body)
            assert status == 200, raw
            want = bundle.predict(str(image), threshold=0.0)["detections"]
            assert [json.loads(d) for d in json.loads(raw)["outputs"][0]["data"]] == want and len(want[0]) == 12
