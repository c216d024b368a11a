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


def mask_data_uri(label_map: Any, max_side: int = 192) -> str:
    """The colour mask, shrunk (nearest label) to at most ``max_side`` pixels a side, as a ``data:`` PNG URI:
    small enough for the report to carry it inline."""
    labels = np.asarray(label_map)
    step = max(1, -(-max(labels.shape[:2]) // max_side))
    import base64

    return "data:image/png;base64," + base64.b64encode(mask_png(labels[::step, ::step])).decode()


def write_masks(maps: Any, folder: str | Path, names: list[str], images: list[Any] | None = None) -> list[Path]:
    """Write each map's colour mask as ``FOLDER/NAME.mask.png`` and, given its image, the mask over it as
    ``NAME.overlay.png``; only into ``folder`` (made if missing), never over an existing file.

    ``maps``: ``Bundle.predict(...)["segmentation"]`` (one [H, W] map per image, or [N, H, W])."""
    from torch2ort.errors import OutputExistsError, UsageError

    maps = list(maps)
    if len(names) != len(maps) or (images is not None and len(images) != len(maps)):
        raise UsageError(f"{len(maps)} segmentation maps for {len(names)} names")
    folder = Path(folder)
    plan = []
    for i, name in enumerate(names):
        if not name or Path(name).name != name or name in (".", ".."):
            raise UsageError(f"{name!r} is not a plain file name for a mask")
        image = images[i] if images is not None else None
        plan += [(folder / f"{name}.mask.png", maps[i], None)]
        plan += [(folder / f"{name}.overlay.png", maps[i], image)] if image is not None else []
    taken = [str(path) for path, _, _ in plan if path.exists() or path.is_symlink()]
    if taken:
        raise OutputExistsError(f"{', '.join(taken)} already exists; remove it or pick another folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, label_map, image in plan:
            with open(path, "xb") as f:  # x: never through a file or link that appeared meanwhile
                f.write(mask_png(label_map, image))
    except OSError as exc:
        raise UsageError(f"cannot write the masks into {folder}: {exc.strerror or exc}") from None
    return [path for path, _, _ in plan]


def _rgb(image: Any) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        return image.astype(np.float32)
    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else Path(image)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise PredictInputError(f"cannot read the image to blend the mask over: {exc}") from None


__all__ = ["COLOURS", "colour_mask", "mask_png", "mask_data_uri", "palette", "write_masks"]
