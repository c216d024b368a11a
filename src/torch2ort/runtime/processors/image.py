"""Image preprocessing in numpy + Pillow: load, resize, center-crop, scale, normalize, layout."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from torch2ort import values as V
from torch2ort.errors import PredictInputError
from torch2ort.runtime.typecheck import Name, Range, Size

# 40 megapixels: a 12500x12500 PNG of 150 KB would otherwise decode to ~470 MB of RGB. Checked from the
# header, before decoding; Bundle.load(max_image_pixels=) and `predict --max-image-pixels` change it.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000


def check_max_pixels(limit) -> int:
    """The image pixel limit (``--max-image-pixels``): a whole number from 1 to 2**40."""
    return V.count("--max-image-pixels", limit, 1, 10**12)


def _pil():
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the install
        raise PredictInputError("image preprocessing needs Pillow: pip install pillow") from None
    return Image


def _open(source, what: str, limit: int):
    """Open lazily, check width x height from the header against ``limit``, then decode."""
    Image = _pil()
    try:
        with warnings.catch_warnings():  # our limit applies; Pillow's warning below its own is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
            w, h = img.size
            if w * h > limit:
                img.close()
                raise PredictInputError(f"{what} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                                        "(raise it with --max-image-pixels or Bundle.load(max_image_pixels=))")
            img.load()
    except PredictInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise PredictInputError(f"{what} is refused by Pillow as a decompression bomb: {exc}") from None
    except Exception as exc:  # Pillow raises several types for bad files
        raise PredictInputError(f"{what} is not a readable image: {exc}") from None
    return img


ImageMode = Literal["RGB", "L", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "1", "P"]
Side = Annotated[int, Range(1)]
Sides = Side | Annotated[list[Side], Size(2, 2)]  # an int (the shorter side, or a square) or [h, w]


def load_image(value, ctx, mode: ImageMode = "RGB"):
    """A path, bytes, PIL image or HxWxC uint8 array -> a PIL image in ``mode``.

    Files and bytes larger than ``ctx.cache["max_image_pixels"]`` (default 40 MP) are refused unread.
    """
    Image = _pil()
    limit = ctx.cache.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS) if ctx is not None else \
        DEFAULT_MAX_IMAGE_PIXELS
    if isinstance(value, Image.Image):
        img = value
    elif isinstance(value, (str, Path)):
        path = Path(value)
        if not path.is_file():
            raise PredictInputError(f"image file not found: {path}")
        img = _open(path, str(path), limit)
    elif isinstance(value, (bytes, bytearray)):
        img = _open(io.BytesIO(bytes(value)), "the image given as bytes", limit)
    elif isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim in (2, 3):
        img = Image.fromarray(value)
    else:
        raise PredictInputError("an image input must be a file path, bytes, a PIL image or an HxWxC uint8 array")
    if ctx is not None:  # the original size, for steps that answer in its pixels (segment)
        ctx.meta["image_size"] = (img.height, img.width)
    return img.convert(mode)


_FILTERS = {"bilinear": 2, "bicubic": 3, "nearest": 0, "lanczos": 1, "box": 4, "hamming": 5}


def resize(img, ctx, size: Sides, filter: Literal["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"] =
           "bilinear", rounding: Literal["round", "floor"] = "round",
           passes: Literal["separable", "pillow"] = "separable"):
    """``size`` [h, w], or an int for the shorter side (aspect kept). Pillow's filters (antialiased).

    ``rounding`` sizes the longer side: ``round`` (torchvision) or ``floor`` (transformers' image
    processors, ``int(size * long / short)``).

    ``passes="separable"`` (default): always the horizontal pass first, then the vertical one, each a
    one-axis ``Image.resize``: the result is then the same in every Pillow version (Pillow 13 runs the
    vertical pass first for some sizes, which moves some pixels by a grey level or more) and
    bit-identical to the bundle web page's resize. ``passes="pillow"``: one ``Image.resize`` call, in
    whatever order this Pillow picks, which is what transformers' image processors do.
    """
    if filter not in _FILTERS:
        raise ValueError(f"resize filter {filter!r}; valid: {', '.join(_FILTERS)}")
    if rounding not in ("round", "floor") or passes not in ("separable", "pillow"):
        raise ValueError(f"resize rounding={rounding!r} passes={passes!r}; valid: round|floor, separable|pillow")
    fit = round if rounding == "round" else int
    w, h = img.size
    if isinstance(size, int):
        if w <= h:
            new = (size, max(1, fit(h * size / w)))
        else:
            new = (max(1, fit(w * size / h)), size)
    else:
        new = (int(size[1]), int(size[0]))
    code = _FILTERS[filter]
    if passes == "pillow":
        return img.resize(new, resample=code) if new != (w, h) else img
    if new[0] != w:
        img = img.resize((new[0], h), resample=code)
    if new[1] != h:
        img = img.resize(new, resample=code)
    return img


def center_crop(img, ctx, size: Sides, offset: Literal["round", "floor"] = "round"):
    """Crop [h, w] (or an int square) from the centre: ``offset="round"`` places it like torchvision's
    CenterCrop, ``"floor"`` like transformers' image processors (``(h - th) // 2``)."""
    if offset not in ("round", "floor"):
        raise ValueError(f"center_crop offset {offset!r}; valid: round, floor")
    th, tw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    arr = np.asarray(img) if not isinstance(img, np.ndarray) else img
    h, w = arr.shape[:2]
    if th > h or tw > w:
        raise ValueError(f"center_crop {th}x{tw} is larger than the image {h}x{w}")
    if offset == "floor":
        top, left = (h - th) // 2, (w - tw) // 2
    else:
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return arr[top:top + th, left:left + tw]


def to_array(img, ctx, dtype: Literal["float32", "float16", "float64", "uint8", "int32", "int64"] = "float32"):
    return np.asarray(img).astype(dtype)


def scale(arr, ctx, factor: float = 1 / 255.0):
    """uint8 [0, 255] -> float32 [0, 1] by default."""
    return np.asarray(arr, dtype=np.float32) * np.float32(factor)


def normalize(arr, ctx, mean: Annotated[list[float], Size(1, 64)],
              std: Annotated[list[Annotated[float, Range(nonzero=True)]], Size(1, 64)]):
    """(x - mean) / std per channel, channels last (HWC)."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    return (np.asarray(arr, dtype=np.float32) - mean) / std


def hwc_to_chw(arr, ctx):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr[None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def add_batch(arr, ctx):
    """A leading batch axis of 1, on an array or on every array of a dict of inputs (segments + mask)."""
    if isinstance(arr, dict):
        return {k: np.asarray(v)[None] for k, v in arr.items()}
    return np.asarray(arr)[None]


def to_input(arr, ctx, name: Name):
    """Name the final array as the model input ``name`` (needed for multi-input models)."""
    return {name: np.asarray(arr)}


PRE = {
    "load_image": load_image,
    "resize": resize,
    "center_crop": center_crop,
    "to_array": to_array,
    "scale": scale,
    "normalize": normalize,
    "hwc_to_chw": hwc_to_chw,
    "add_batch": add_batch,
    "to_input": to_input,
}
