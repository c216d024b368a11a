"""The bundle's web page (``pack --web``): ``web/index.html`` + ``web/app.js`` + onnxruntime-web.

The page runs the bundle's model in the browser with onnxruntime-web (WASM) and does the
manifest's image preprocessing and postprocessing in JS (``web/page/app.js``), so it only works
for pipelines that file implements. ``web_problems`` says what stops a bundle from getting one;
``write_web`` copies the page and the pinned onnxruntime-web files into the bundle (no CDN).
See docs/bundle.md.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torch2ort.errors import UsageError

PAGE_DIR = Path(__file__).resolve().parent.parent / "web" / "page"
PAGE_FILES = ["index.html", "app.js"]
# What ort.wasm.min.js loads: its ES-module glue and the threaded SIMD WASM binary.
ORT_FILES = ["ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"]
WEB_PRE = {"load_image", "resize", "center_crop", "to_array", "scale", "normalize", "hwc_to_chw", "add_batch",
           "to_input"}
WEB_POST = {"softmax", "sigmoid", "topk", "argmax", "threshold"}
WEB_FILTERS = {"bilinear", "bicubic", "box", "hamming", "lanczos"}


def web_problems(pre: list[dict], post: list[dict], inputs: list[dict]) -> list[str]:
    """Why the page could not run this bundle's pipelines; empty when it can."""
    problems = []
    if not pre or pre[0].get("op") != "load_image":
        problems.append("the page needs an image preprocess pipeline starting with load_image "
                        "(--preprocess image or imagenet)")
    for step in pre:
        op = step.get("op")
        if op not in WEB_PRE:
            problems.append(f"preprocess step {op!r} has no web implementation "
                            f"(the page does {', '.join(sorted(WEB_PRE))})")
        elif op == "load_image" and step.get("mode", "RGB") not in ("RGB", "L"):
            problems.append(f"load_image mode {step['mode']!r}: the page reads RGB or L images")
        elif op == "resize" and step.get("filter", "bilinear") not in WEB_FILTERS:
            problems.append(f"resize filter {step['filter']!r}: the page has {', '.join(sorted(WEB_FILTERS))}")
    for step in post:
        op = step.get("op")
        if op not in WEB_POST:
            problems.append(f"postprocess step {op!r} has no web implementation "
                            f"(the page does {', '.join(sorted(WEB_POST))})")
        elif op == "softmax" and step.get("axis", -1) != -1:
            problems.append("softmax over an axis other than the last is not implemented on the page")
    named = [s for s in pre if s.get("op") == "to_input"]
    if len(inputs) != 1 and not named:
        problems.append(f"the model has {len(inputs)} inputs; the page feeds one image tensor")
    for t in inputs:
        if t["dtype"] != "float32":
            problems.append(f"input {t['name']!r} is {t['dtype']}; the page builds float32 tensors")
    return problems


def check_web(pre: list[dict], post: list[dict], inputs: list[dict]) -> None:
    problems = web_problems(pre, post, inputs)
    if problems:
        raise UsageError("--web makes a page for image classifiers, and this bundle cannot have one: "
                         + "; ".join(problems))


def ort_web_files() -> Path:
    """The onnxruntime-web dist folder holding every file the page needs."""
    from torch2ort.runners.web import ort_web_dir

    dist = ort_web_dir()
    missing = [f for f in ORT_FILES if not (dist / f).is_file()]
    if missing:
        raise UsageError(f"onnxruntime-web in {dist} lacks {', '.join(missing)}; reinstall it with `npm ci`")
    return dist


def write_web(out: Path) -> str | None:
    """Copy the page and onnxruntime-web into ``out/web``; returns the onnxruntime-web version."""
    from torch2ort.runners.web import ort_web_version

    dist = ort_web_files()
    web = out / "web"
    (web / "ort").mkdir(parents=True, exist_ok=True)
    for name in PAGE_FILES:
        shutil.copyfile(PAGE_DIR / name, web / name)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, web / "ort" / name)
    version = ort_web_version(dist)
    (web / "ort" / "NOTICE.txt").write_text(
        f"onnxruntime-web {version or ''} (npm package, dist/ files copied unmodified).\n"
        "Copyright (c) Microsoft Corporation. Licensed under the MIT License.\n"
        "https://github.com/microsoft/onnxruntime\n")
    return version
