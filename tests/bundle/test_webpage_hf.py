"""`pack --web` on a bundle migrated from an hf: image classifier (ConvNeXt: crop_pct, floor rounding and
offsets, one-call Pillow resize), and (browser) its page against the Python runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.hf_media import image_dir
from fixtures.server import running

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_web_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfweb")
    path = image_dir(root / "convnext", "convnext")
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", root / "out") == 0
    manifest = json.loads((root / "out" / "bundle" / "torch2ort.json").read_text())
    (root / "labels.txt").write_text("\n".join(manifest["labels"]) + "\n")
    out = root / "web"
    assert run_cli("pack", root / "out" / "bundle" / "model.onnx", "-o", out, "--name", "convnext",
                   "--labels", root / "labels.txt", "--preprocess", json.dumps(manifest["preprocess"]),
                   "--postprocess", json.dumps(manifest["postprocess"]), "--web") == 0
    return out, root / "out" / "samples" / "raw"


def test_pack_web_accepts_the_hf_image_pipeline(hf_web_bundle):
    from torch2ort.runtime import Bundle

    out, _ = hf_web_bundle
    bundle = Bundle.load(out)
    assert "web/app.js" in bundle.manifest["files"]
    ops = {s["op"]: s for s in bundle.manifest["preprocess"]}
    assert ops["resize"]["rounding"] == "floor" and ops["center_crop"]["offset"] == "floor"


@pytest.mark.browser
def test_hf_page_matches_the_python_runtime(hf_web_bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    from bundle.test_webpage import _Browser
    from torch2ort.runtime import Bundle
    from torch2ort.runtime.processors import Context, run_preprocess

    out, raw = hf_web_bundle
    bundle = Bundle.load(out)
    with sync_playwright() as pw, running([out]) as (url, _):
        browser = _Browser(pw, f"http://{url}/bundles/convnext/web/", tmp_path / "profile")
        assert browser.ready, browser.status()
        for path in sorted(raw.iterdir()):
            if path.suffix == ".jpg" or "rgba" in path.name:
                continue  # the browser's JPEG decoder and alpha handling are not Pillow's
            got = browser.classify(path)
            want = run_preprocess(bundle.manifest["preprocess"], str(path), Context(bundle.path))
            err = float(np.abs(got["tensor"] - want["pixel_values"]).max())
            assert err <= 1e-3, (path.name, err)  # measured 0.0
            assert got["top1"] == bundle.predict(str(path))["topk"][0][0]["label"], path.name
        browser.ctx.close()
