"""Each pre/post step against an independent reference computation (torch math, or by hand)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fixtures.tokenizer import tiny_tokenizer as _tiny_tokenizer
from torch2ort.errors import BundleError, PredictInputError
from torch2ort.runtime.processors import Context, image, postprocess, run_postprocess, run_preprocess, step_names, text

RNG = np.random.default_rng(0)


def _ctx(tmp_path=Path("."), labels=None, raw=None, feed=None):
    return Context(Path(tmp_path), labels, feed=feed or {}, raw=raw or {})


def _img(h=37, w=53):
    return (RNG.random((h, w, 3)) * 255).astype(np.uint8)


def test_registry_lists_every_step():
    pre, post = step_names()
    want = {"load_image", "resize", "center_crop", "scale", "normalize", "hwc_to_chw", "add_batch", "tokenize"}
    assert want <= set(pre)
    assert {"softmax", "sigmoid", "topk", "threshold", "argmax", "mean_pool", "l2_normalize"} <= set(post)


def test_load_image_from_path_bytes_and_array(tmp_path):
    from PIL import Image

    arr = _img()
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    for value in (str(path), path.read_bytes(), arr, Image.fromarray(arr).convert("L")):
        got = np.asarray(image.load_image(value, _ctx()))
        assert got.shape == arr.shape
    np.testing.assert_array_equal(np.asarray(image.load_image(str(path), _ctx())), arr)  # PNG is lossless


def test_resize_matches_torch_antialiased_bilinear():
    """Pillow's antialiased bilinear vs torch's interpolate(antialias=True): within a uint8 step or two."""
    from PIL import Image

    arr = _img(96, 120)
    got = np.asarray(image.resize(Image.fromarray(arr), _ctx(), [40, 50])).astype(np.float32)
    ref = F.interpolate(torch.from_numpy(arr).permute(2, 0, 1)[None].float(), size=(40, 50), mode="bilinear",
                        antialias=True, align_corners=False)[0].permute(1, 2, 0).numpy()
    assert got.shape == (40, 50, 3)
    assert np.abs(got - ref).max() <= 2.0
    assert np.abs(got - ref).mean() < 0.5
    short = image.resize(Image.fromarray(arr), _ctx(), 48)  # shorter side -> 48, aspect kept
    assert short.size == (60, 48)
    # 120 * 47 / 96 = 58.75: torchvision rounds the longer side, transformers floors it
    assert image.resize(Image.fromarray(arr), _ctx(), 47).size == (59, 47)
    assert image.resize(Image.fromarray(arr), _ctx(), 47, rounding="floor").size == (58, 47)


# --- an independent reference: Pillow's resampling (libImaging/Resample.c) written again in numpy -----------
# Each output pixel is a weighted sum over the input pixels within the filter's support (stretched by the
# scale when shrinking), the weights normalised to 1, then rounded to 22-bit fixed point; each pass rounds
# and clips to uint8. Written from the algorithm, not from Pillow's Python API, so it can disagree with it.
_BITS = 22


def _sinc(x: float) -> float:
    return 1.0 if x == 0 else math.sin(math.pi * x) / (math.pi * x)


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0:
        return 1.0
    if x >= 1:
        return 0.0
    return math.sin(x * math.pi) / (x * math.pi) * (0.54 + 0.46 * math.cos(x * math.pi))


def _bicubic(x: float, a: float = -0.5) -> float:
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    return (((x - 5) * x + 8) * x - 4) * a if x < 2 else 0.0


_KERNELS = {"box": (0.5, lambda x: 1.0 if -0.5 < x <= 0.5 else 0.0),
            "bilinear": (1.0, lambda x: max(0.0, 1 - abs(x))), "hamming": (1.0, _hamming),
            "bicubic": (2.0, _bicubic), "lanczos": (3.0, lambda x: _sinc(x) * _sinc(x / 3) if -3 < x < 3 else 0.0)}


def _resample_axis(arr: np.ndarray, out_size: int, filter: str, axis: int) -> np.ndarray:
    support, kernel = _KERNELS[filter]
    in_size = arr.shape[axis]
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support * stretch + 0.5), 0)
        hi = min(int(center + support * stretch + 0.5), in_size)
        w = np.array([kernel((x - center + 0.5) / stretch) for x in range(lo, hi)])
        w = w / w.sum() if w.sum() else w
        weights[i, lo:hi] = np.trunc(w * (1 << _BITS) + np.where(w < 0, -0.5, 0.5))
    acc = (1 << (_BITS - 1)) + np.moveaxis(arr.astype(np.int64), axis, -1) @ weights.T
    return np.moveaxis(np.clip(acc >> _BITS, 0, 255).astype(np.uint8), -1, axis)


def _reference_resize(arr: np.ndarray, h: int, w: int, filter: str) -> np.ndarray:
    """Horizontal pass, then vertical, each only when that side changes."""
    if w != arr.shape[1]:
        arr = _resample_axis(arr, w, filter, 1)
    return _resample_axis(arr, h, filter, 0) if h != arr.shape[0] else arr


def test_the_reference_resize_gives_hand_computed_values():
    row = np.array([[10, 20, 30, 50]], dtype=np.uint8)
    assert _reference_resize(row, 1, 2, "box").tolist() == [[15, 40]]  # halving with a box: pairwise means
    # bilinear, halving: a tent 2 pixels wide each side; at the edges the part outside is cut and the rest
    # renormalised: (3*10 + 3*20 + 1*30) / 7 = 17.1 and (1*20 + 3*30 + 3*50) / 7 = 37.1
    assert _reference_resize(row, 1, 2, "bilinear").tolist() == [[17, 37]]
    col = np.array([[0], [255]], dtype=np.uint8)
    assert _reference_resize(col, 4, 1, "bilinear").ravel().tolist() == [0, 64, 191, 255]  # 0, 1/4, 3/4, 1


@pytest.mark.parametrize("filter", ["bilinear", "bicubic", "lanczos", "box", "hamming"])
@pytest.mark.parametrize("size", [[24, 17], [9, 13], [80, 30], [50, 20], [7, 5]])
def test_resize_is_the_horizontal_pass_then_the_vertical_one(filter, size):
    """A fixed pass order (what the web page reproduces), bit for bit against the numpy reference above.
    Pillow 13's Image.resize runs the vertical pass first for some sizes: with the non-negative filters
    that moves pixels by two grey levels at most; bicubic and lanczos overshoot and clip between the
    passes, so the order matters more."""
    from PIL import Image

    arr = _img(61, 23)  # tall: Pillow 13 picks the vertical pass first for some sizes
    got = np.asarray(image.resize(Image.fromarray(arr), _ctx(), size, filter))
    np.testing.assert_array_equal(got, _reference_resize(arr, size[0], size[1], filter))
    if filter in ("bilinear", "box", "hamming"):
        one_call = Image.fromarray(arr).resize((size[1], size[0]), resample=image._FILTERS[filter])
        assert np.abs(got.astype(int) - np.asarray(one_call).astype(int)).max() <= 2


def test_center_crop_matches_slicing():
    arr = np.arange(10 * 13).reshape(10, 13)
    got = image.center_crop(arr, _ctx(), [4, 6])
    # top (10 - 4) / 2 = 3; left (13 - 6) / 2 = 3.5, which torchvision's int(round()) takes to 4
    np.testing.assert_array_equal(got, np.arange(3 * 13 + 4, 3 * 13 + 10)[None] + 13 * np.arange(4)[:, None])
    assert image.center_crop(arr, _ctx(), [4, 6], offset="floor")[0, 0] == 3 * 13 + 3
    with pytest.raises(ValueError, match="larger than the image"):
        image.center_crop(arr, _ctx(), 20)


def test_scale_normalize_layout_match_torch():
    arr = _img(8, 9)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = image.add_batch(image.hwc_to_chw(image.normalize(image.scale(arr, _ctx()), _ctx(), mean, std), _ctx()), _ctx())
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div(255.0)
    ref = ((t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]
    assert x.shape == (1, 3, 8, 9) and x.dtype == np.float32
    np.testing.assert_allclose(x, ref.numpy(), rtol=1e-6, atol=1e-6)


def test_softmax_sigmoid_argmax_topk_threshold_match_torch():
    logits = RNG.standard_normal((3, 6)).astype(np.float32)
    labels = list("abcdef")
    ctx = _ctx(labels=labels, raw={"y": logits})
    postprocess.softmax(ctx, "y", name="p")
    postprocess.sigmoid(ctx, "y", name="s")
    postprocess.topk(ctx, "p", k=3)
    postprocess.argmax(ctx, "y")
    postprocess.threshold(ctx, "s", threshold=0.5)
    t = torch.from_numpy(logits)
    np.testing.assert_allclose(ctx.results["p"], torch.softmax(t, -1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ctx.results["s"], torch.sigmoid(t).numpy(), rtol=1e-6)
    values, indices = torch.topk(torch.softmax(t, -1), 3)
    for row, vals, idx in zip(ctx.results["topk"], values, indices):
        assert [r["index"] for r in row] == idx.tolist()
        assert [r["label"] for r in row] == [labels[i] for i in idx.tolist()]
        np.testing.assert_allclose([r["score"] for r in row], vals.numpy(), rtol=1e-6)
    assert ctx.results["label"] == [labels[i] for i in torch.argmax(t, -1).tolist()]
    want = [[labels[j] for j in range(6) if torch.sigmoid(t)[i, j] >= 0.5] for i in range(3)]
    assert ctx.results["labels"] == want


def test_postprocess_keeps_raw_and_reports_unknown_names():
    ctx = _ctx(raw={"y": np.zeros((1, 2), np.float32)})
    out = run_postprocess([{"op": "softmax", "output": "y", "name": "p"}], ctx)
    assert set(out) == {"y", "p"}
    with pytest.raises(BundleError, match="refers to 'nope'; available: y"):
        run_postprocess([{"op": "softmax", "output": "nope"}], ctx)


def test_tokenize_pads_truncates_and_matches_hand_ids(tmp_path):
    vocab = _tiny_tokenizer(tmp_path / "tokenizer.json")
    ctx = _ctx(tmp_path)
    feed = run_preprocess([{"op": "tokenize", "max_length": 6}], ["List files", "show disk usage in a directory"], ctx)
    v = vocab
    assert feed["input_ids"].tolist() == [
        [v["[CLS]"], v["list"], v["files"], v["[SEP]"], 0, 0],
        [v["[CLS]"], v["show"], v["disk"], v["usage"], v["in"], v["[SEP]"]],  # truncated to 6
    ]
    assert feed["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert feed["input_ids"].dtype == np.int64
    single = text.tokenize("show disk", ctx, max_length=6)
    assert single["input_ids"].tolist() == [[2, 9, 10, 3]]


def test_mean_pool_and_l2_match_sentence_transformers_math():
    h = RNG.standard_normal((2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    ctx = _ctx(raw={"last_hidden_state": h}, feed={"attention_mask": mask})
    out = run_postprocess([{"op": "mean_pool"}, {"op": "l2_normalize"}], ctx)
    th, tm = torch.from_numpy(h), torch.from_numpy(mask).unsqueeze(-1).float()
    ref = F.normalize((th * tm).sum(1) / tm.sum(1).clamp(min=1e-9), p=2, dim=1)
    np.testing.assert_allclose(out["embeddings"], ref.numpy(), rtol=1e-5, atol=1e-6)


def _bilevel_png(path: Path, w: int, h: int) -> Path:
    """A w x h one-bit PNG: tiny on disk, w*h*3 bytes once decoded to RGB."""
    from PIL import Image

    Image.new("1", (w, h)).save(path)
    return path


def test_image_pixel_limit_is_checked_before_decoding(tmp_path):
    big = _bilevel_png(tmp_path / "big.png", 12500, 12500)
    assert big.stat().st_size < 1 << 20  # 156 Mpx: the 808 MB decode the issue reported
    with pytest.raises(PredictInputError, match="12500x12500 = 156,250,000 pixels, over the limit of 40,000,000"):
        image.load_image(big, _ctx(tmp_path))
    with pytest.raises(PredictInputError, match="over the limit"):
        image.load_image(big.read_bytes(), _ctx(tmp_path))
    small = _bilevel_png(tmp_path / "small.png", 40, 30)
    ctx = _ctx(tmp_path)
    ctx.cache["max_image_pixels"] = 1199
    with pytest.raises(PredictInputError, match="40x30 = 1,200 pixels, over the limit of 1,199"):
        image.load_image(small, ctx)
    ctx.cache["max_image_pixels"] = 1200
    assert image.load_image(small, ctx).size == (40, 30)


def test_pillows_own_bomb_error_is_one_line(tmp_path):
    from PIL import Image

    bomb = _bilevel_png(tmp_path / "bomb.png", 2 * Image.MAX_IMAGE_PIXELS // 10_000 + 1, 10_000)
    ctx = _ctx(tmp_path)
    ctx.cache["max_image_pixels"] = 10**12  # ours allows it: Pillow's own limit still refuses, in one line
    with pytest.raises(PredictInputError, match="refused by Pillow as a decompression bomb") as info:
        image.load_image(bomb, ctx)
    assert "\n" not in str(info.value)
