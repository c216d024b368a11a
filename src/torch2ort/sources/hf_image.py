"""Image classifiers from ``hf:DIR``: the folder's image processor translated into runtime steps.

transformers is read at load time only (``AutoImageProcessor.from_pretrained``); the bundle gets
plain steps (``load_image``, ``resize``, ``center_crop``, ``scale``, ``normalize``, layout) that the
torch-free runtime runs. Processors that override the standard pipeline with rules not translated
here are refused by name rather than approximated. The steps reproduce transformers' PIL backend:
sizes with ``int()`` (``rounding: floor``), crops at ``(h - th) // 2`` (``offset: floor``) and one
``Image.resize`` call (``passes: pillow``).

Example::

    steps, notes = image_preprocess(Path("vit-folder"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import SourceError, describe

INPUT = "pixel_values"
# PILImageResampling values -> the runtime's filter names
FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def load_processor(path: Path):
    """transformers' own image processor for the folder (the PIL backend when torchvision is missing)."""
    if not any((path / name).is_file() for name in ("preprocessor_config.json", "processor_config.json")):
        raise SourceError(f"{path}: preprocessor_config.json is missing (an image model needs its image "
                          "processor saved alongside: processor.save_pretrained(DIR))")
    import transformers

    try:  # the PIL backend: transformers' default needs torchvision, and it is what the steps reproduce
        return transformers.AutoImageProcessor.from_pretrained(str(path), local_files_only=True, backend="pil",
                                                               trust_remote_code=False)  # never ask on stdin
    except Exception as exc:
        raise SourceError(f"transformers could not load the image processor of {path}: {describe(exc)}") from None


# PIL-backend processors that override PilBackend methods, and the rules this file knows they follow
# (MobileNet's overrides only add segmentation-map handling, and SegFormer's label reduction, which
# touches only label maps; EfficientNet adds rescale_offset and include_top; DETR resizes the shorter side
# with the longer one capped, and pads a batch to its largest image, which a single image never needs).
KNOWN = {"ConvNextImageProcessorPil": "convnext", "MobileNetV2ImageProcessorPil": "standard",
         "MobileNetV1ImageProcessorPil": "standard", "EfficientNetImageProcessorPil": "efficientnet",
         "SegformerImageProcessorPil": "standard", "DetrImageProcessorPil": "detr",
         "ConditionalDetrImageProcessorPil": "detr"}  # DETR's resize, rescale, normalize and pad, copied
BASE_METHODS = ("_preprocess", "resize", "center_crop", "rescale", "normalize", "process_image")


def _standard(proc, *methods: str) -> bool:
    from transformers.image_processing_backends import PilBackend

    return all(getattr(type(proc), m) is getattr(PilBackend, m) for m in methods)


def _size(value) -> dict:
    return {k: v for k, v in dict(value or {}).items() if v is not None}


def image_preprocess(path: Path, input_name: str = INPUT, fixed: bool = True
                     ) -> tuple[list[dict], list[str], tuple[int, int] | None]:
    """(the bundle's preprocess steps, notes, the (height, width) the model receives: None when it
    follows the image, which only a model with ``fixed=False`` (a detector) may take)."""
    proc = load_processor(path)
    name = type(proc).__name__
    if getattr(proc, "backend", None) != "pil":
        raise SourceError(f"{path}: image processor {name} has no PIL backend to translate")
    kind = KNOWN.get(name) or ("standard" if _standard(proc, *BASE_METHODS) else None)
    if kind is None:
        raise SourceError(f"{path}: image processor {name} has its own processing rules, which torch2ort does not "
                          "translate yet (supported: the standard resize / center-crop / rescale / normalize "
                          f"pipeline, and {', '.join(sorted(KNOWN))})")
    convnext = kind == "convnext"
    if getattr(proc, "do_pad", False) and kind != "detr":
        raise SourceError(f"{path}: image processor {name} pads (do_pad); padding is not translated")
    resample = int(getattr(proc, "resample", 2) if proc.resample is not None else 2)
    if resample not in FILTERS:
        raise SourceError(f"{path}: image processor {name} resample={resample} is not a Pillow filter")
    filt = FILTERS[resample]
    steps: list[dict] = [{"op": "load_image", "mode": "RGB"}]
    size, crop = _size(proc.size), _size(getattr(proc, "crop_size", None))
    out: tuple[int, int] | None = None
    how = []
    if proc.do_resize:
        resize = {"op": "resize", "filter": filt, "rounding": "floor", "passes": "pillow"}
        if convnext:
            edge = int(size["shortest_edge"])
            if edge < 384:
                steps += [resize | {"size": int(edge / proc.crop_pct)},
                          {"op": "center_crop", "size": [edge, edge], "offset": "floor"}]
                how.append(f"shortest side to int({edge} / crop_pct {proc.crop_pct:g}) ({filt}), centre crop {edge}")
            else:
                steps.append(resize | {"size": [edge, edge]})
                how.append(f"resize to {edge}x{edge} ({filt})")
            out = (edge, edge)
        elif kind == "detr" and "shortest_edge" in size and "longest_edge" in size:
            steps.append(resize | {"size": int(size["shortest_edge"]), "max_size": int(size["longest_edge"])})
            how.append(f"shortest side to {size['shortest_edge']}, longest at most {size['longest_edge']} ({filt})")
        elif "shortest_edge" in size and "longest_edge" not in size:
            steps.append(resize | {"size": int(size["shortest_edge"])})
            how.append(f"shortest side to {size['shortest_edge']} ({filt})")
        elif "height" in size and "width" in size and len(size) == 2:
            steps.append(resize | {"size": [int(size["height"]), int(size["width"])]})
            how.append(f"resize to {size['height']}x{size['width']} ({filt})")
            out = (int(size["height"]), int(size["width"]))
        else:
            raise SourceError(f"{path}: image processor {name} size {size} is not translated (supported: "
                              "shortest_edge, or height and width)")
    if getattr(proc, "do_center_crop", False):
        if "height" not in crop or "width" not in crop:
            raise SourceError(f"{path}: image processor {name} crop_size {crop} needs height and width")
        steps.append({"op": "center_crop", "size": [int(crop["height"]), int(crop["width"])], "offset": "floor"})
        how.append(f"centre crop {crop['height']}x{crop['width']}")
        out = (int(crop["height"]), int(crop["width"]))
    if out is None and fixed:
        raise SourceError(f"{path}: image processor {name} does not give a fixed image size (resize to "
                          "height/width or centre crop); the model needs one")
    steps.append({"op": "to_array", "dtype": "float32"})
    if proc.do_rescale:
        steps.append({"op": "scale", "factor": float(proc.rescale_factor)})
        how.append(f"rescale by {float(proc.rescale_factor):.6g}")
        if kind == "efficientnet" and proc.rescale_offset:
            steps.append({"op": "normalize", "mean": [1.0] * 3, "std": [1.0] * 3})
            how.append("minus 1 (rescale_offset)")
    if proc.do_normalize:
        mean, std = _channels(proc.image_mean), _channels(proc.image_std)
        steps.append({"op": "normalize", "mean": mean, "std": std})
        how.append("normalize")
    if kind == "efficientnet" and proc.include_top:
        steps.append({"op": "normalize", "mean": [0.0] * 3, "std": _channels(proc.image_std)})
        how.append("divide by std again (include_top)")
    steps += [{"op": "hwc_to_chw"}, {"op": "add_batch"}, {"op": "to_input", "name": input_name}]
    notes = [f"image processor {name} translated into runtime steps: RGB, " + ", ".join(how)]
    return steps, notes, out


def _channels(value) -> list[float]:
    vals = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    return vals * 3 if len(vals) == 1 else vals


def processor_pixels(model_dir: str | Path, image) -> np.ndarray:
    """transformers' own ``pixel_values`` for one image (a path or PIL image), converted to RGB first."""
    from PIL import Image

    proc = load_processor(Path(model_dir))
    img = Image.open(image) if isinstance(image, (str, Path)) else image
    return np.asarray(proc(img.convert("RGB"), return_tensors="np")["pixel_values"], dtype=np.float32)
