"""hf:DIR image classifiers: the translated image processor against transformers' own, then end to end.

Every family is a tiny random-weight model built from its transformers config and saved with its
own image processor; the images are real files (JPEG and PNG, landscape, portrait, small,
greyscale, RGBA) painted by ``inputs.media``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.hf_media import IMAGE_FAMILIES, LABELS, image_dir

transformers = pytest.importorskip("transformers")

# Measured on these images: at most 4.8e-7 (EfficientNet's extra float32 normalisations); 1.2e-7 for the rest.
PIXEL_TOL = 1e-6


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from torch2ort.inputs.media import make_images

    return make_images(tmp_path_factory.mktemp("images"))


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
def test_processor_steps_match_transformers_on_real_images(tmp_path, images, family):
    from torch2ort.runtime.processors import Context, run_preprocess
    from torch2ort.sources.hf_image import image_preprocess

    path = image_dir(tmp_path / family, family)
    steps, notes, size = image_preprocess(path)
    proc = transformers.AutoImageProcessor.from_pretrained(str(path), backend="pil")
    from PIL import Image

    for image in images:
        ours = run_preprocess(steps, str(image), Context(bundle_dir=tmp_path))["pixel_values"]
        ref = proc(Image.open(image).convert("RGB"), return_tensors="np")["pixel_values"]
        assert ours.shape == ref.shape == (1, 3, *size), image.name
        assert np.abs(ours - ref).max() <= PIXEL_TOL, (family, image.name)


def test_detect_task_and_spec(tmp_path):
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.sources.hf import detect_task

    path = image_dir(tmp_path / "convnext", "convnext")
    assert detect_task(path) == "image-classification"
    loaded = load_model(ModelRequest(f"hf:{path}"))
    assert loaded.hints.spec.to_cli() == ["pixel_values:batch=2,3,48,48:float32"]
    assert loaded.hints.labels == list(LABELS.values()) and loaded.hints.media == "image"
    ops = [s["op"] for s in loaded.hints.preprocess]
    assert ops == ["load_image", "resize", "center_crop", "to_array", "scale", "normalize", "hwc_to_chw",
                   "add_batch", "to_input"]
    assert loaded.hints.preprocess[1]["size"] == 53  # int(48 / 0.9), transformers' crop_pct rule


def _migrate_and_predict(tmp_path, capsys, family):
    from PIL import Image

    from torch2ort.runtime import Bundle
    from torch2ort.sources.hf_image import processor_pixels

    path = image_dir(tmp_path / family, family)
    out = tmp_path / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    ev = json.loads((out / "evidence.json").read_text())
    check = ev["check"]["outputs"]["logits"]
    assert ev["model"]["task"] == "image-classification" and ev["check"]["input"].startswith("the raw file")
    assert check["passed"] and check["gate"] == "maxabs<=0.0001" and not ev["check"]["torch_imported"]
    bundle = Bundle.load(out / "bundle")
    model = transformers.AutoModelForImageClassification.from_pretrained(str(path)).eval()
    import torch

    for image in sorted((out / "samples" / "raw").iterdir()):
        got = bundle.predict(str(image))
        with torch.inference_mode():
            ref = model(pixel_values=torch.from_numpy(processor_pixels(path, image))).logits.numpy()
        assert np.abs(got.raw["logits"] - ref).max() <= 1e-4, image.name
        assert got["topk"][0][0]["label"] == LABELS[int(ref.argmax())]
        assert np.array_equal(bundle.predict(Image.open(image)).raw["logits"], got.raw["logits"])
    capsys.readouterr()
    grey = out / "samples" / "raw" / "grey.png"
    assert run_cli("predict", out / "bundle", "--input", f"pixel_values=@{grey}") == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["topk"][0][0]["label"] in LABELS.values()
    return out


def test_vit_migrates_and_predicts_from_image_files(tmp_path, capsys):
    from torch2ort.bundle.web import web_problems

    out = _migrate_and_predict(tmp_path, capsys, "vit")
    manifest = json.loads((out / "bundle" / "torch2ort.json").read_text())
    assert web_problems(manifest["preprocess"], manifest["postprocess"], manifest["inputs"]) == []


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in IMAGE_FAMILIES if f != "vit"])
def test_each_family_migrates_and_predicts_from_image_files(tmp_path, capsys, family):
    _migrate_and_predict(tmp_path, capsys, family)


def test_unsupported_processor_is_a_one_line_error(tmp_path, capsys):
    path = image_dir(tmp_path / "vit", "vit")
    cfg = json.loads((path / "preprocessor_config.json").read_text())
    cfg["do_pad"] = True
    (path / "preprocessor_config.json").write_text(json.dumps(cfg))
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "pads (do_pad)" in err and "Traceback" not in err
    (path / "preprocessor_config.json").unlink()
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", tmp_path / "out2") == 2
    assert "preprocessor_config.json is missing" in capsys.readouterr().err
