"""`pack --web`: the bundle's page, and (browser) the page's JS pipelines against the Python runtime."""

from __future__ import annotations

import base64
import functools
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from fixtures.families import run_cli
from fixtures.server import running
from torch2ort.runtime import Bundle
from torch2ort.runtime.processors import Context, image, run_preprocess

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
REPO = Path(__file__).resolve().parents[2]


def _pack(onnx: Path, out: Path, *extra: str) -> int:
    labels = out.parent / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    return run_cli("pack", onnx, "-o", out, "--labels", labels, *extra)


@pytest.fixture(scope="module")
def web_bundle(tmp_path_factory, exported) -> Path:
    out = tmp_path_factory.mktemp("web") / "cnn"
    assert _pack(exported("mobilenet"), out, "--name", "cnn", "--preprocess", "imagenet", "--postprocess",
                 "softmax-topk", "--web") == 0
    return out


def test_pack_web_writes_the_page_and_the_pinned_onnxruntime_web(web_bundle):
    files = json.loads((web_bundle / "torch2ort.json").read_text())["files"]
    for rel in ("web/index.html", "web/app.js", "web/ort/ort.wasm.min.js", "web/ort/ort-wasm-simd-threaded.mjs",
                "web/ort/ort-wasm-simd-threaded.wasm"):
        assert rel in files  # checksummed like every other bundle file
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    bundle = Bundle.load(web_bundle)  # the page's files pass the loader's checks
    assert bundle.manifest["provenance"]["onnxruntime_web"] == pinned.lstrip("^~=")
    assert "## Browser" in (web_bundle / "README.md").read_text()
    assert "--web" in _help("pack")


def _help(cmd: str) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        run_cli(cmd, "--help")
    return buf.getvalue()


@pytest.mark.parametrize("name, extra, needle", [
    ("encoder", ["--preprocess", "text", "--tokenizer", "TOK"], "preprocess step 'tokenize' has no web"),
    ("attn_mil", [], "needs an image preprocess pipeline"),
    ("mobilenet", ["--preprocess", '[{"op": "load_image", "mode": "CMYK"}, {"op": "scale"}]'], "mode 'CMYK'"),
    ("mobilenet", ["--preprocess", "image", "--postprocess", "embeddings"], "'mean_pool' has no web"),
])
def test_pack_web_refuses_what_the_page_cannot_run(exported, tmp_path, capsys, name, extra, needle):
    from fixtures.tokenizer import tiny_tokenizer

    tok = tmp_path / "tokenizer.json"
    tiny_tokenizer(tok)
    extra = [str(tok) if e == "TOK" else e for e in extra]
    out = tmp_path / "b"
    assert _pack(exported(name), out, *extra, "--web") == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()  # nothing written


def test_pack_web_without_onnxruntime_web_names_the_fix(exported, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TORCH2ORT_ORT_WEB", str(tmp_path / "empty"))
    out = tmp_path / "b"
    assert _pack(exported("mobilenet"), out, "--preprocess", "image", "--web") == 2
    err = capsys.readouterr().err
    assert "npm ci" in err and "onnxruntime-web@" in err
    assert not out.exists()


# --- in Chromium -------------------------------------------------------------------------------

def _images(root: Path) -> dict[str, Path]:
    """Landscape and tall RGB PNGs, a JPEG (4:2:0), and a greyscale PNG; all different sizes."""
    from PIL import Image

    rng = np.random.default_rng(7)
    out = {}

    def scene(h, w):
        y, x = np.mgrid[0:h, 0:w]
        arr = np.stack([x * 255 // w, y * 255 // h, (x * y // 5) % 256], -1).astype(np.uint8)
        arr[h // 5:h // 2, w // 4:w // 2] = [235, 40, 30]
        return np.clip(arr + rng.integers(-12, 12, arr.shape), 0, 255).astype(np.uint8)

    for name, (h, w) in {"landscape.png": (53, 71), "tall.png": (97, 23), "photo.jpg": (120, 160)}.items():
        img = Image.fromarray(scene(h, w))
        img.save(root / name, **({"quality": 85, "subsampling": 2} if name.endswith(".jpg") else {}))
        out[name] = root / name
    Image.fromarray(scene(40, 45)).convert("L").save(root / "grey.png")
    out["grey.png"] = root / "grey.png"
    return out


class _Browser:
    """One Chromium page on the bundle's web page; records requests and console errors."""

    def __init__(self, pw, url: str, profile: Path) -> None:
        from torch2ort.runners.web import CHROMIUM_FLAGS, chromium_path

        self.ctx = pw.chromium.launch_persistent_context(str(profile), executable_path=chromium_path(),
                                                         args=CHROMIUM_FLAGS, headless=True,
                                                         viewport={"width": 1000, "height": 760})
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(60_000)
        self.requests: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.goto(url)
        self.ready = self.page.evaluate("t2oPage.ready")

    def classify(self, path: Path) -> dict:
        self.page.set_input_files("#file", str(path))
        self.page.wait_for_function("(n) => t2oPage.lastFile === n", arg=path.name)
        tensor = self.page.evaluate("(() => { const t = Object.values(t2oPage.lastInput)[0];"
                                    " return {shape: t.shape, data: Array.from(t.data)}; })()")
        return {"tensor": np.asarray(tensor["data"], np.float32).reshape(tensor["shape"]),
                "top1": self.page.get_attribute("[data-top1]", "data-top1"),
                "topk": self.page.evaluate("t2oPage.lastResults.topk[0]")}

    def status(self) -> str:
        return self.page.inner_text("#status")


@pytest.fixture(scope="module")
def pw():
    """One Playwright driver for the module (the sync API allows one per thread at a time)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(web_bundle, pw, tmp_path_factory):
    with running([web_bundle]) as (url, _):
        b = _Browser(pw, f"http://{url}/bundles/cnn/web/", tmp_path_factory.mktemp("profile"))
        b.origin = f"http://{url}/"
        yield b
        b.ctx.close()


@pytest.mark.browser
def test_the_page_loads_isolated_with_threads_and_fetches_nothing_else(browser, web_bundle):
    assert browser.ready, browser.status()
    info = browser.page.evaluate("t2oPage.info")
    assert info["crossOriginIsolated"] and info["threads"] >= 2 and info["checksum"] == "sha256 checked"
    assert info["version"] == Bundle.load(web_bundle).manifest["provenance"]["onnxruntime_web"]
    assert "threads" in browser.page.inner_text("#runtime")
    assert all(u.startswith((browser.origin, "blob:", "data:")) for u in browser.requests), browser.requests


@pytest.mark.browser
@pytest.mark.parametrize("name", ["landscape.png", "tall.png", "photo.jpg", "grey.png"])
def test_page_preprocessing_and_top1_match_the_python_runtime(browser, web_bundle, tmp_path, name):
    path = _images(tmp_path)[name]
    got = browser.classify(path)
    bundle = Bundle.load(web_bundle)
    want = run_preprocess(bundle.manifest["preprocess"], str(path), Context(bundle.path))
    assert got["tensor"].shape == want.shape
    err = float(np.abs(got["tensor"] - want).max())
    assert err <= 1e-3, f"{name}: JS preprocessing differs from the Python runtime by {err}"
    pred = bundle.predict(str(path))["topk"][0]
    assert got["top1"] == pred[0]["label"]
    assert [r["label"] for r in got["topk"]] == [r["label"] for r in pred]
    np.testing.assert_allclose([r["score"] for r in got["topk"]], [r["score"] for r in pred], atol=1e-5)
    assert not browser.errors and not browser.failed, (browser.errors, browser.failed)


@pytest.mark.browser
def test_page_resize_is_pillow_exact_for_every_filter_and_greyscale(browser):
    """T2O.pilResize on random pixels, up and down, tall and wide, vs the Python runtime's resize."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for filt in ("bilinear", "bicubic", "lanczos", "box", "hamming"):
        for (h, w), (oh, ow) in [((37, 53), (16, 23)), ((61, 23), (24, 17)), ((12, 9), (30, 40)),
                                 ((50, 20), (50, 7))]:
            channels = 1 if (oh + ow) % 2 else 3
            arr = rng.integers(0, 256, (h, w, channels) if channels == 3 else (h, w), dtype=np.uint8)
            got = browser.page.evaluate(
                "([b64, w, h, c, ow, oh, f]) => Array.from(T2O.pilResize({width: w, height: h, channels: c,"
                " data: Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0))}, ow, oh, f).data)",
                [base64.b64encode(arr.tobytes()).decode(), w, h, channels, ow, oh, filt])
            want = np.asarray(image.resize(Image.fromarray(arr), Context(Path(".")), [oh, ow], filt))
            np.testing.assert_array_equal(np.asarray(got, np.uint8).reshape(want.shape), want,
                                          err_msg=f"{filt} {h}x{w} -> {oh}x{ow}")


@pytest.mark.browser
def test_greyscale_pipeline_matches(browser, tmp_path):
    """load_image mode L (Pillow's rounded ITU-R 601 luma) through normalize, decoded by the browser."""
    steps = [{"op": "load_image", "mode": "L"}, {"op": "resize", "size": 29, "filter": "bicubic"},
             {"op": "center_crop", "size": [24, 24]}, {"op": "scale"},
             {"op": "normalize", "mean": [0.5], "std": [0.25]}, {"op": "hwc_to_chw"}, {"op": "add_batch"}]
    path = _images(tmp_path)["photo.jpg"]
    got = browser.page.evaluate(
        "async ([b64, steps]) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));"
        " const t = T2O.preprocess(steps, await t2oPage.decode(new Blob([bytes])));"
        " return {shape: t.shape, data: Array.from(t.data)}; }",
        [base64.b64encode(path.read_bytes()).decode(), steps])
    want = run_preprocess(steps, str(path), Context(Path(".")))
    assert got["shape"] == list(want.shape) == [1, 1, 24, 24]
    assert np.abs(np.asarray(got["data"], np.float32).reshape(want.shape) - want).max() <= 1e-3


@pytest.mark.browser
def test_screenshot_of_the_page_with_a_result(browser, tmp_path):
    got = browser.classify(_images(tmp_path)["landscape.png"])
    shot = tmp_path / "page.png"
    browser.page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("TORCH2ORT_SCREENSHOTS"):  # to look at it: TORCH2ORT_SCREENSHOTS=DIR pytest …
        shutil.copyfile(shot, Path(os.environ["TORCH2ORT_SCREENSHOTS"]) / "bundle-web-page.png")
    assert browser.page.inner_text(".top1") == got["top1"]
    assert "in this browser" in browser.page.inner_text("#timing")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.browser
def test_plain_static_server_runs_single_threaded_and_a_swapped_model_is_refused(web_bundle, pw, tmp_path):
    """`python -m http.server`: no COOP/COEP, so one thread; a model that fails its sha256 never runs."""
    swapped = tmp_path / "swapped"
    shutil.copytree(web_bundle, swapped)
    model = bytearray((swapped / "model.onnx").read_bytes())
    model[-20] ^= 0xFF
    (swapped / "model.onnx").write_bytes(bytes(model))
    results = {}
    for label, folder in (("intact", web_bundle), ("swapped", swapped)):
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            b = _Browser(pw, f"http://127.0.0.1:{server.server_address[1]}/web/", tmp_path / f"p-{label}")
            results[label] = (b.ready, b.status(), b.page.evaluate("t2oPage.info"))
            if label == "intact":
                results["top1"] = b.classify(_images(tmp_path)["landscape.png"])["top1"]
            b.ctx.close()
        finally:
            server.shutdown()
            server.server_close()
    ready, _, info = results["intact"]
    assert ready and info["threads"] == 1 and not info["crossOriginIsolated"]
    assert results["top1"] == Bundle.load(web_bundle).predict(str(_images(tmp_path)["landscape.png"]))["topk"][0][0][
        "label"]
    ready, status, _ = results["swapped"]
    assert not ready and "does not match its sha256" in status
