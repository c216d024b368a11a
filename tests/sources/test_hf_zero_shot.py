"""Zero-shot image classification from image files: `migrate hf:DIR` on a CLIP folder gives a bundle whose
answer equals pipeline("zero-shot-image-classification") on the same files, labels and template, torch-free;
its towers give the model's own embeddings for retrieval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.clip import LABELS, clip_dir
from fixtures.families import run_cli

transformers = pytest.importorskip("transformers")

TEMPLATE = "a picture of {}"  # not the bundle's default: the call's template must reach the tokenizer


@pytest.fixture(scope="module")
def migrated_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    path = clip_dir(root / "clip")
    out = root / "out"
    assert run_cli("migrate", f"hf:{path}", "--no-bench", "-o", out) == 0
    images = sorted(str(p) for p in (out / "samples" / "raw").iterdir())
    return path, out, images


@pytest.fixture(scope="module")
def reference(migrated_clip):
    """The pipeline's answers on every sample image, with the test's labels and template, and the model."""
    from torch2ort.pipeline.check_zero_shot import pipeline_zero_shot

    path, _, images = migrated_clip
    model = transformers.CLIPModel.from_pretrained(str(path)).eval()
    return model, pipeline_zero_shot(path, model, images, LABELS, TEMPLATE)


@pytest.mark.slow
def test_migrate_detects_the_task_and_checks_it_against_the_pipeline(migrated_clip):
    _, out, _ = migrated_clip
    ev = json.loads((out / "evidence.json").read_text())
    assert ev["model"]["task"] == "zero-shot-image-classification"
    check = ev["check"]["outputs"]["zero_shot"]
    assert check["passed"] and check["value"] == 1.0 and check["max_abs"] < 1e-4 and not ev["check"]["torch_imported"]
    manifest = json.loads((out / "bundle" / "torch2ort.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == ["logits_per_image", "image_embeds", "text_embeds"]
    assert manifest["preprocess"][-1]["op"] == "candidate_labels" and manifest["postprocess"][0]["op"] == "zero_shot"


@pytest.mark.slow
def test_predict_equals_the_pipeline_on_every_image_at_once(migrated_clip, reference):
    from torch2ort.pipeline.check_zero_shot import judge_zero_shot
    from torch2ort.runtime import Bundle

    _, out, images = migrated_clip
    bundle = Bundle.load(out / "bundle")
    got = bundle.predict(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE)["zero_shot"]
    verdict = judge_zero_shot(got, reference[1], 1e-4)
    assert verdict.passed and verdict.value == 1.0, verdict.reason
    assert [r["label"] for r in got[0]] == [r["label"] for r in reference[1][0]]  # the pipeline's order
    assert bundle.predict(images[1], candidate_labels=LABELS, hypothesis_template=TEMPLATE)["zero_shot"] == [got[1]]
    # livened weights: the answer depends on the image, and no label wins by default
    assert len({row[0]["label"] for row in got}) >= 2 and min(row[0]["score"] for row in got) < 0.99


@pytest.mark.slow
def test_embeddings_are_the_towers_own_and_give_the_scores(migrated_clip, reference):
    import torch

    from torch2ort.runtime import Bundle
    from torch2ort.sources.hf_clip import pipeline_text_inputs
    from torch2ort.sources.hf_image import processor_pixels

    path, out, images = migrated_clip
    model = reference[0]
    bundle = Bundle.load(out / "bundle")
    texts = [TEMPLATE.format(x) for x in LABELS]
    image_emb, text_emb = bundle.embed_image(images), bundle.embed_text(texts)
    pixels = torch.from_numpy(np.concatenate([processor_pixels(path, i) for i in images]))
    feed = {k: torch.from_numpy(v) for k, v in pipeline_text_inputs(path, LABELS, TEMPLATE).items()}
    with torch.inference_mode():
        ref = model(pixel_values=pixels, **feed)
    np.testing.assert_allclose(image_emb, ref.image_embeds.numpy(), atol=1e-5)
    np.testing.assert_allclose(text_emb, ref.text_embeds.numpy(), atol=1e-5)
    # the scores are the softmax of exp(logit_scale) x cosine, the model's own temperature (20 here, not 1/0.07)
    logits = float(model.logit_scale.detach().exp()) * image_emb @ text_emb.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    got = bundle.predict(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE)["zero_shot"]
    for row, p in zip(got, probs):
        np.testing.assert_allclose([r["score"] for r in row], np.sort(p)[::-1], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["normalize", "truncated-labels"])
def test_a_planted_fault_fails_the_zero_shot_check(migrated_clip, reference, tmp_path, fault):
    from fixtures.faults import bundle_with, step
    from torch2ort.pipeline.check_zero_shot import judge_zero_shot
    from torch2ort.runtime import Bundle

    _, out, images = migrated_clip

    def plant(manifest):
        if fault == "normalize":  # ImageNet's mean and std where CLIP's belong
            step(manifest, "normalize").update(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        else:  # the labels cut to 4 tokens, so the template's words crowd them out
            step(manifest, "candidate_labels")["max_length"] = 4

    broken = Bundle.load(bundle_with(out / "bundle", tmp_path / "bundle", plant))
    got = broken.predict(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE)["zero_shot"]
    verdict = judge_zero_shot(got, reference[1], 1e-4)
    assert not verdict.passed and verdict.reason.startswith("image ")


@pytest.mark.slow
def test_predict_cli_takes_the_labels_and_refuses_bad_ones_in_one_line(migrated_clip, capsys):
    _, out, images = migrated_clip
    bundle = out / "bundle"
    image = f"pixel_values=@{images[0]}"
    assert run_cli("predict", bundle, "--input", image, "--option", "candidate_labels=cat, dog,tree",
                   "--option", f"hypothesis_template={TEMPLATE}") == 0
    answer = json.loads(capsys.readouterr().out)["outputs"]["zero_shot"]
    assert len(answer) == 1 and sorted(r["label"] for r in answer[0]) == ["cat", "dog", "tree"]
    bad = {"candidate_labels=[]": "too short", "candidate_labels=[1,2]": "not of type 'string'",
           "candidate_labels=,": "holds no label", "candidate_labels=NaN": "not of type",
           f"candidate_labels={json.dumps(['x'] * 1025)}": "at most 1024",
           "hypothesis_template=no label here": "one {}", "hypothesis_template={0.__class__}": "one {}",
           "threshold=0.5": "takes no option 'threshold'"}
    for option, message in bad.items():
        assert run_cli("predict", bundle, "--input", image, "--option", option) == 2, option
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (option, err)
    assert run_cli("predict", bundle, "--input", image) == 2
    assert "needs candidate_labels" in capsys.readouterr().err


@pytest.mark.slow
def test_the_migrated_bundle_serves_and_batches_its_labels(migrated_clip, tmp_path):
    """The real CLIP bundle behind `torch2ort serve` (every sample image in one request, the labels and
    template as request parameters) and `torch2ort batch --option`, answered as Bundle.predict answers."""
    import base64
    from pathlib import Path

    import pyarrow.parquet as pq

    from fixtures.server import running
    from serve.test_http import call
    from torch2ort.runtime import Bundle

    _, out, images = migrated_clip
    bundle = Bundle.load(out / "bundle")
    want = bundle.predict(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE)["zero_shot"]
    with running([out / "bundle"]) as (url, hosts):
        body = {"inputs": [{"name": "image_file", "datatype": "BYTES", "shape": [len(images)],
                            "data": [base64.b64encode(Path(p).read_bytes()).decode() for p in images]}],
                "parameters": {"candidate_labels": LABELS, "hypothesis_template": TEMPLATE},
                "outputs": [{"name": "zero_shot"}]}
        status, _, raw = call(url, f"/v2/models/{next(iter(hosts))}/infer", body)
        assert status == 200, raw
        assert [json.loads(d) for d in json.loads(raw)["outputs"][0]["data"]] == want
    dataset = tmp_path / "zs.parquet"
    assert run_cli("batch", out / "bundle", out / "samples" / "raw", "-o", dataset, "--no-progress", "--batch-size",
                   "2", "--option", "candidate_labels=" + json.dumps(LABELS), "--option",
                   f"hypothesis_template={TEMPLATE}") == 0
    rows = sorted(pq.read_table(dataset).to_pylist(), key=lambda r: r["row"])
    assert [r["source"] for r in rows] == [p.rsplit("/", 1)[1] for p in images] and not any(r["error"] for r in rows)
    for r, w in zip(rows, want):
        assert [d["label"] for d in r["zero_shot"]] == [d["label"] for d in w]
        np.testing.assert_allclose([d["score"] for d in r["zero_shot"]], [d["score"] for d in w], rtol=1e-5, atol=1e-6)
