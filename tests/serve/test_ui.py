"""The page at ``/`` in real Chromium: upload files, and the answer it renders (top-k bars, per-label
probabilities against thresholds, a per-segment timeline) equals ``Bundle.predict`` on the same files;
with ``--token-file`` it asks for the token and keeps it out of every URL; ``--no-ui`` leaves it out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.server import running
from serve.conftest import LABELS
from serve.file_bundles import audio_file, ecg, file_bundles, wfdb_files, zipped
from serve.test_http import call
from torch2ort.bundle.writer import pack
from torch2ort.runtime import Bundle

TOKEN = "s3cret-token-26"


@pytest.fixture(scope="module")
def ui_setup(tmp_path_factory, exported):
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("ui")
    paths = file_bundles(root) | {
        "faces": pack(exported("mobilenet"), root / "faces", name="faces", labels=LABELS, preprocess="image",
                      postprocess="softmax-topk")}
    files = root / "files"
    files.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            files / f"face{i}.png")
    (files / "cough.wav").write_bytes(audio_file(2.1, 8000))
    (files / "record.zip").write_bytes(zipped(wfdb_files(root / "rec", ecg())))
    return paths, files


def _chromium(pw, profile: Path):
    from torch2ort.runners.web import CHROMIUM_FLAGS, chromium_path

    ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=chromium_path(), args=CHROMIUM_FLAGS,
                                                headless=True)
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    return ctx, page


def _upload(page, model: str, paths: list[Path]) -> None:
    before = page.evaluate("t2oServe.answers")
    if page.input_value("#model") != model:  # a change event reloads the metadata and clears the answer
        page.select_option("#model", model)
        page.wait_for_function("(m) => t2oServe.meta && t2oServe.meta.name === m", arg=model)
    page.set_input_files("#file", [str(p) for p in paths])
    page.wait_for_function("(n) => t2oServe.answers > n || t2oServe.error", arg=before)
    assert page.evaluate("t2oServe.error") is None, page.inner_text("#status")


def _attrs(page, selector: str, *names: str) -> list[tuple]:
    return page.eval_on_selector_all(selector, "(els, names) => els.map(e => names.map(n => e.dataset[n]))",
                                     list(names))


@pytest.mark.browser
def test_the_page_renders_what_bundle_predict_answers(ui_setup, tmp_path):
    from playwright.sync_api import sync_playwright

    paths, files = ui_setup
    bundles = {name: Bundle.load(p) for name, p in paths.items()}
    with sync_playwright() as pw, running(list(paths.values())) as (url, _):
        ctx, page = _chromium(pw, tmp_path / "profile")
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"http://{url}/")
        page.wait_for_function("() => t2oServe.ready === true")
        assert page.eval_on_selector_all("#model option", "els => els.map(e => e.value)") == ["cough", "ecg", "faces"]

        faces = [files / "face0.png", files / "face1.png"]  # two files: one request, one batch, two answers
        _upload(page, "faces", faces)
        for row, path in enumerate(faces):
            want = bundles["faces"].predict(str(path))["topk"][0]
            got = _attrs(page, f'[data-row="{row}"] .bar', "label", "score")
            assert [(label, float(score)) for label, score in got] == [(w["label"], w["score"]) for w in want]

        _upload(page, "ecg", [files / "record.zip"])
        want = bundles["ecg"].predict((files / "record.zip").read_bytes())
        got = _attrs(page, ".label-row", "label", "prob", "threshold", "on")
        assert [g[0] for g in got] == ["AF", "RBBB", "LBBB"]
        assert [float(g[1]) for g in got] == want["probs"][0].tolist()
        assert [g[0] for g in got if g[3] == "true"] == want["labels"][0]
        assert [float(g[2]) for g in got] == [0.6, 0.8, 0.95]

        _upload(page, "cough", [files / "cough.wav"])
        want = bundles["cough"].predict(str(files / "cough.wav"))
        cells = _attrs(page, '.timeline[data-output="segment_prob"] .segment', "index", "prob")
        assert [float(p) for _, p in cells] == want["segment_prob"][0].tolist() and len(cells) == 5
        bag = page.get_attribute('.output[data-output="bag_prob"]', "data-values")
        assert json.loads(bag) == want["bag_prob"].tolist()
        page.screenshot(path=str(tmp_path / "ui.png"))  # an artefact of the run, in pytest's tmp dir, not git
        assert not errors, errors
        ctx.close()


@pytest.mark.browser
def test_the_page_asks_for_the_token_and_keeps_it_out_of_urls(ui_setup, tmp_path):
    from playwright.sync_api import sync_playwright

    paths, files = ui_setup
    with sync_playwright() as pw, running([paths["cough"]], token=TOKEN) as (url, _):
        ctx, page = _chromium(pw, tmp_path / "profile")
        urls: list[str] = []
        page.on("request", lambda r: urls.append(r.url))
        page.goto(f"http://{url}/")
        page.wait_for_selector("#auth:not(.hidden)")
        assert "needs a token" in page.inner_text("#status")
        page.fill("#token", TOKEN)
        page.click("#use-token")
        page.wait_for_function("() => t2oServe.ready === true")
        page.evaluate("t2oServe.error = null")
        _upload(page, "cough", [files / "cough.wav"])
        assert page.eval_on_selector_all(".segment", "els => els.length") == 5
        assert urls and not any(TOKEN in u for u in urls) and TOKEN not in page.url
        assert page.input_value("#token") == ""
        ctx.close()


def test_no_ui_leaves_the_page_out_and_the_page_is_open_with_a_token(ui_setup):
    paths, _ = ui_setup
    with running([paths["cough"]], token=TOKEN, ui=False) as (url, _):
        assert call(url, "/")[0] == 404
    with running([paths["cough"]], token=TOKEN) as (url, _):
        status, headers, body = call(url, "/")
        assert status == 200 and headers["content-type"].startswith("text/html") and b"t2oServe" in body
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert call(url, "/v2/models/cough")[0] == 401  # the data behind it still needs the token
