"""Colour masks for segmentation maps: one documented palette, a label map to RGB, and a PNG (over the image).

The palette is the PASCAL VOC colour map, the one most segmentation tools draw with: label ``i``'s
red, green and blue take the bits of ``i`` in turn, most significant first (0 black, 1 dark red,
2 dark green, 3 olive, 4 navy, ...). It has 256 colours; a label past 255 takes the colour of
``label % 256``, and a negative label (the server's padding, ``-1``) is black and, in an overlay,
leaves the image as it is. The page at ``/`` draws with the same table (sent in its display hints).

Example::

    from torch2ort.runtime.masks import mask_png
    png = mask_png(bundle.predict("street.jpg")["segmentation"][0])          # the mask alone
    png = mask_png(label_map, image="street.jpg", alpha=0.5)                 # blended over the photo
"""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from torch2ort.errors import PredictInputError

COLOURS = 256


@cache
def _table() -> np.ndarray:
    labels = np.arange(COLOURS)
    out = np.zeros((COLOURS, 3), dtype=np.uint8)
    for shift in range(7, -1, -1):  # bit 0 of the label feeds the top bit of red, bit 1 green, bit 2 blue, ...
        for channel in range(3):
            out[:, channel] |= (((labels >> (channel + 3 * (7 - shift))) & 1) << shift).astype(np.uint8)
    out.setflags(write=False)
    return out


def palette() -> np.ndarray:
    """The [256, 3] uint8 colour table: the PASCAL VOC colour map (read-only)."""
    return _table()


def colour_mask(label_map: Any) -> np.ndarray:
    """A [H, W] map of integer labels as a [H, W, 3] uint8 RGB image (negative labels black)."""
    labels = np.asarray(label_map)
    if labels.ndim != 2 or labels.dtype.kind not in "iu":
        raise PredictInputError(f"a colour mask needs a [height, width] map of integer labels; got "
                                f"{labels.dtype} {list(labels.shape)}")
    rgb = _table()[np.mod(labels, COLOURS)]
    rgb[labels < 0] = 0
    return rgb


def mask_png(label_map: Any, image: Any = None, alpha: float = 0.5) -> bytes:
    """The colour mask as PNG bytes; with ``image`` (a path, bytes or an [H, W, 3] array of the map's size)
    the mask is blended over it, ``alpha`` the mask's weight (0 < alpha <= 1)."""
    from PIL import Image

    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha <= 1):
        raise PredictInputError(f"alpha must be a number in (0, 1], got {alpha!r}")
    rgb = colour_mask(label_map)
    if image is not None:
        base = _rgb(image)
        if base.shape != rgb.shape:
            raise PredictInputError(f"the image is {base.shape[1]}x{base.shape[0]} but the map is "
                                    f"{rgb.shape[1]}x{rgb.shape[0]}; the map must be at the image's size")
        blend = np.rint(base * (1 - alpha) + rgb * alpha).astype(np.uint8)
        outside = np.asarray(label_map) < 0
        blend[outside] = base[outside]
        rgb = blend
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _rgb(image: Any) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        return image.astype(np.float32)
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else Path(image)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise PredictInputError(f"cannot read the image to blend the mask over: {exc}") from None


__all__ = ["COLOURS", "colour_mask", "mask_png", "palette"]
