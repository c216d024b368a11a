"""Colour masks for segmentation maps: the PASCAL VOC palette, masks and overlays as PNG, the files
`predict --mask-dir` writes (only there, never over a file), and the mask the report carries inline."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fixtures.families import run_cli
from torch2ort.errors import OutputExistsError, PredictInputError, UsageError
from torch2ort.runtime.masks import colour_mask, mask_data_uri, mask_png, palette, write_masks


def _voc(n: int = 256) -> np.ndarray:
    """The colour map as the PASCAL VOC development kit's ``labelcolormap`` writes it."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return np.array(out, np.uint8)


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_the_palette_is_pascal_vocs():
    np.testing.assert_array_equal(palette(), _voc())
    assert palette()[:3].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def test_a_mask_colours_labels_wraps_past_255_and_keeps_padding_black():
    m = np.array([[0, 1, 2], [-1, 257, 21]])
    rgb = colour_mask(m)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb[0], palette()[[0, 1, 2]])
    assert rgb[1, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == palette()[1].tolist()
    np.testing.assert_array_equal(_png(mask_png(m)), rgb)
    for bad in (np.zeros((2, 2, 2), np.int64), np.zeros((2, 2), np.float32)):
        with pytest.raises(PredictInputError, match="integer labels"):
            colour_mask(bad)


def test_an_overlay_blends_over_the_image_and_leaves_padding_alone():
    image = np.full((2, 2, 3), 200, np.uint8)
    m = np.array([[1, -1], [0, 2]])
    blend = _png(mask_png(m, image, alpha=0.5))
    assert blend[0, 0].tolist() == [164, 100, 100] and blend[0, 1].tolist() == [200, 200, 200]
    for alpha in (0, -1, 1.5, float("nan"), True, "half"):
        with pytest.raises(PredictInputError, match="alpha"):
            mask_png(m, image, alpha=alpha)
    with pytest.raises(PredictInputError, match="must be at the image's size"):
        mask_png(np.zeros((3, 3), np.int64), image)


def test_the_reports_mask_is_small_and_inline():
    m = np.arange(1000 * 600).reshape(1000, 600) // 50000
    uri = mask_data_uri(m)
    import base64

    shrunk = _png(base64.b64decode(uri.split(",", 1)[1]))
    assert max(shrunk.shape[:2]) <= 192 and shrunk.shape[0] > shrunk.shape[1]
    from torch2ort.report import svg

    h, w = shrunk.shape[:2]
    assert f'width="{w}" height="{h}"' in svg.image(uri) and uri in svg.image(uri)


def test_write_masks_writes_only_into_its_folder_and_never_over_a_file(tmp_path):
    maps = [np.array([[0, 1], [2, 3]])]
    image = np.zeros((2, 2, 3), np.uint8)
    written = write_masks(maps, tmp_path / "masks", ["street.png"], [image])
    assert [p.name for p in written] == ["street.png.mask.png", "street.png.overlay.png"]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == sorted(p.name for p in written)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_masks(maps, tmp_path / "masks", ["street.png"])
    for name in ("../escape", "a/b", "", ".."):
        with pytest.raises(UsageError, match="plain file name"):
            write_masks(maps, tmp_path / "other", [name])
    assert not (tmp_path / "other").exists() and not (tmp_path / "escape.mask.png").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="cannot write the masks"):
        write_masks(maps, tmp_path / "file" / "sub", ["a"])


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    from serve.task_bundles import regions_bundle

    return regions_bundle(tmp_path_factory.mktemp("regions"))


def test_predict_mask_dir_writes_the_mask_and_the_overlay(regions, tmp_path, capsys):
    from PIL import Image

    from torch2ort.runtime import Bundle

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 44, 3), dtype=np.uint8)).save(image)
    assert run_cli("predict", regions, "--input", f"pixel_values=@{image}", "--mask-dir", tmp_path / "out") == 0
    doc = json.loads(capsys.readouterr().out)
    out = tmp_path / "out"
    assert doc["masks"] == [str(out / "photo.png.mask.png"), str(out / "photo.png.overlay.png")]
    want = Bundle.load(regions).predict(str(image))["segmentation"][0]
    np.testing.assert_array_equal(_png((tmp_path / "out" / "photo.png.mask.png").read_bytes()), colour_mask(want))
    assert _png((tmp_path / "out" / "photo.png.overlay.png").read_bytes()).shape == (30, 44, 3)
    assert run_cli("predict", regions, "--input", f"pixel_values=@{image}", "--mask-dir", tmp_path / "out") != 0
    assert "already exists" in capsys.readouterr().err


def test_mask_dir_on_a_bundle_without_segmentation_is_one_line(tmp_path, capsys):
    from serve.task_bundles import boxes_bundle

    bundle = boxes_bundle(tmp_path)
    assert run_cli("predict", bundle, "--input", "pixel_values=@x.png", "--mask-dir", tmp_path / "m") != 0
    err = capsys.readouterr().err.strip()
    assert "no segmentation output" in err and "\n" not in err and not (tmp_path / "m").exists()
