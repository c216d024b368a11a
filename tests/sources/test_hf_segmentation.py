"""Semantic segmentation from image files: `migrate hf:DIR` on a SegFormer folder gives a bundle whose
per-pixel classes, at the original image size, match the processor's post_process_semantic_segmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.segmentation import CLASSES, segformer_dir

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # one migration with its image samples


@pytest.fixture(scope="module")
def migrated_seg(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    path = segformer_dir(root / "segformer")
    out = root / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    return path, out


def test_the_check_holds_the_map_to_the_processor(migrated_seg):
    _, out = migrated_seg
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "semantic-segmentation"
    check = ev["check"]["outputs"]["segmentation"]
    assert check["passed"] and check["value"] >= 0.999 and check["metric"] == "pixels", check
    assert not ev["check"]["torch_imported"]
    assert ev["check"]["mask"].startswith("data:image/png;base64,")  # the report shows the map as a colour mask
    assert ev["check"]["mask"] in (out / "report.html").read_text() and (out / "plots" / "mask.svg").is_file()


def test_every_sample_image_matches_at_its_own_size(migrated_seg):
    import torch
    from PIL import Image

    from torch2ort.runtime import Bundle
    from torch2ort.sources.hf_image import load_processor, processor_pixels

    path, out = migrated_seg
    bundle = Bundle.load(out / "bundle")
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(str(path)).eval()
    proc = load_processor(path)
    images = sorted((out / "samples" / "raw").iterdir())
    classes_seen = set()
    for image in images:
        got = bundle.predict(str(image))["segmentation"]
        with Image.open(image) as img:
            w, h = img.size
        with torch.inference_mode():
            logits = model(pixel_values=torch.from_numpy(processor_pixels(path, image))).logits
        ref = proc.post_process_semantic_segmentation(type("O", (), {"logits": logits}), target_sizes=[(h, w)])[0]
        assert got.shape == (1, h, w) and got.dtype == np.int64, image.name
        assert (got[0] == ref.numpy()).mean() >= 0.999, image.name
        classes_seen |= set(np.unique(got).tolist())
    assert len(images) >= 3 and len(classes_seen) >= 2  # real maps: several sizes, several classes
    assert classes_seen <= set(range(len(CLASSES)))


def test_a_feed_gets_the_map_at_the_models_own_size(migrated_seg):
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated_seg[1] / "bundle")
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    result = bundle.predict({"pixel_values": x})
    assert result["segmentation"].shape == (2, 16, 16)
    np.testing.assert_array_equal(result["segmentation"], result.raw["logits"].argmax(1))


def test_a_planted_preprocess_fault_fails_the_pixel_check(migrated_seg, tmp_path):
    """A copy of the bundle whose normalize step uses the wrong mean: the check's judge must refuse its maps."""
    from fixtures.faults import bundle_with, step
    from torch2ort.pipeline.check_segmentation import TIE, judge_segmentation, reference_segmentation
    from torch2ort.runtime import Bundle

    path, out = migrated_seg

    def shift(manifest):
        norm = step(manifest, "normalize")
        norm["mean"] = [m + 0.5 for m in norm["mean"]]

    broken = bundle_with(out / "bundle", tmp_path / "bundle", shift)
    image = sorted((out / "samples" / "raw").iterdir())[0]
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(str(path)).eval()
    ref, scores = reference_segmentation(lambda x: model(pixel_values=x).logits, path, str(image))
    assert judge_segmentation(Bundle.load(out / "bundle").predict(str(image))["segmentation"], ref, scores,
                              TIE).passed
    verdict = judge_segmentation(Bundle.load(broken).predict(str(image))["segmentation"], ref, scores, TIE)
    assert not verdict.passed and "of pixels agree" in verdict.reason


def test_batch_writes_each_map_at_its_own_images_size(migrated_seg, tmp_path):
    import pyarrow.parquet as pq

    from torch2ort.batch import run_batch
    from torch2ort.runtime import Bundle

    _, out = migrated_seg
    images = out / "samples" / "raw"
    table_path = tmp_path / "maps.parquet"
    run_batch(out / "bundle", images, table_path, batch_size=4, shard_rows=8, progress=False)
    bundle = Bundle.load(out / "bundle")
    rows = pq.read_table(table_path).to_pylist()
    assert len(rows) == len(list(images.iterdir())) and not any(r["error"] for r in rows)
    for row in rows:
        want = bundle.predict(str(images / row["source"]))["segmentation"][0]
        np.testing.assert_array_equal(np.array(row["segmentation"]), want)


def test_migrate_optimize_judges_the_variant_on_its_pixels(migrated_seg, tmp_path):
    """`migrate --optimize` with a task gate: the variants, the confirmation and the re-read written file
    are all judged on the segmentation map (pixels), not on the raw logits."""
    path, _ = migrated_seg
    out = tmp_path / "opt"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "--optimize", "graph", "--accept", "pixels>=0.99",
                   "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    assert list(ev["optimize"]["gates"]) == ["segmentation"] and ev["optimize"]["chosen"] == "graph"
    check = ev["verify_optimized"]["gate"]["checks"][0]
    assert (check["output"], check["metric"], check["value"]) == ("segmentation", "pixels", 1.0)
    assert check["passed"] and check["n"] >= 11 * 16 * 16 and check["bound"] > 0.99
