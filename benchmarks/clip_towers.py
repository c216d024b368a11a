"""CLIP's two towers as one ONNX graph with two entry points, or as two graphs: size and latency of each.

Measures, for a zero-shot CLIP (transformers ``CLIPModel``, random weights), both layouts exported
with torch2ort's exporter (dynamo first):

- ``one``: one graph, inputs ``pixel_values``, ``input_ids``, ``attention_mask``; outputs
  ``logits_per_image``, ``image_embeds``, ``text_embeds`` (what the zero-shot bundle ships);
- ``two``: ``image.onnx`` (pixels -> image_embeds) and ``text.onnx`` (ids, mask -> text_embeds), the
  logits in numpy (``exp(logit_scale) * image @ text.T``).

Per layout: bytes on disk, and the median latency (ONNX Runtime, CPU) of a zero-shot call (1 image,
8 labels), an image embedding, and 8 text embeddings. The one-graph layout embeds one side by
feeding the other an empty batch (0 rows). Run it under the bench lock and record the load::

    flock /tmp/t2o-bench.lock nice -n -10 python benchmarks/clip_towers.py --config tiny base32
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import update_section  # noqa: E402

CONFIGS = {  # (vision, text, projection): the test fixture's size, and ViT-B/32-shaped CLIP
    "tiny": (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8), dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      max_position_embeddings=32, vocab_size=400), 16),
    "base32": (dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=32), dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                                                         num_attention_heads=8, max_position_embeddings=77,
                                                         vocab_size=49408), 512),
}
LABELS, SEQUENCE = 8, 12


def build(name: str):
    import torch
    import transformers

    vision, text, proj = CONFIGS[name]
    torch.manual_seed(0)
    config = transformers.CLIPConfig(text_config=text | {"eos_token_id": 1, "bos_token_id": 0, "pad_token_id": 1},
                                     vision_config=vision, projection_dim=proj)
    return transformers.CLIPModel(config).eval(), vision["image_size"], text["vocab_size"]


def export(model, size: int, vocab: int, folder: Path) -> dict[str, list[Path]]:
    from torch2ort.export import export_onnx
    from torch2ort.sources import LoadedModel
    from torch2ort.sources.hf_clip import towers
    from torch2ort.spec import InputSpec

    both, image, text = towers()
    pix = f"pixel_values:batch=1,3,{size},{size}:float32"
    ids = [f"input_ids:labels=2,sequence=8:int64:2..{vocab - 1}", "attention_mask:labels=2,sequence=8:int64:1..1"]
    one = folder / "one.onnx"
    export_onnx(LoadedModel(both(model), "clip", "hf"),
                InputSpec.from_cli([pix, *ids], ["logits_per_image", "image_embeds", "text_embeds"]), one)
    export_onnx(LoadedModel(image(model), "clip", "hf"), InputSpec.from_cli([pix], ["image_embeds"]),
                folder / "image.onnx")
    export_onnx(LoadedModel(text(model), "clip", "hf"), InputSpec.from_cli(ids, ["text_embeds"]),
                folder / "text.onnx")
    return {"one": [one], "two": [folder / "image.onnx", folder / "text.onnx"]}


def median_ms(fn, seconds: float = 2.0) -> float:
    for _ in range(3):
        fn()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 10:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def measure(files: dict[str, list[Path]], size: int, vocab: int, scale: float) -> dict[str, dict[str, float]]:
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    pix = rng.normal(size=(1, 3, size, size)).astype(np.float32)
    ids = rng.integers(2, vocab, size=(LABELS, SEQUENCE)).astype(np.int64)
    ids[:, -1] = 1
    mask = np.ones_like(ids)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = {p.stem: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
               for paths in files.values() for p in paths}
    no_pix, no_ids = pix[:0], ids[:0]
    one, image, text = session["one"], session["image"], session["text"]

    def two_classify():
        i = image.run(None, {"pixel_values": pix})[0]
        t = text.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        return scale * i @ t.T

    out = {"one": {"MB": sum(p.stat().st_size for p in files["one"]) / 2**20,
                   "zero-shot (1 image, 8 labels)": median_ms(
                       lambda: one.run(None, {"pixel_values": pix, "input_ids": ids, "attention_mask": mask})),
                   "image embedding": median_ms(
                       lambda: one.run(["image_embeds"], {"pixel_values": pix, "input_ids": no_ids,
                                                          "attention_mask": no_ids})),
                   "8 text embeddings": median_ms(
                       lambda: one.run(["text_embeds"], {"pixel_values": no_pix, "input_ids": ids,
                                                         "attention_mask": mask}))},
           "two": {"MB": sum(p.stat().st_size for p in files["two"]) / 2**20,
                   "zero-shot (1 image, 8 labels)": median_ms(two_classify),
                   "image embedding": median_ms(lambda: image.run(None, {"pixel_values": pix})),
                   "8 text embeddings": median_ms(lambda: text.run(None, {"input_ids": ids, "attention_mask": mask}))}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=["tiny"], choices=list(CONFIGS))
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md as it is")
    args = ap.parse_args()
    lines = []
    for name in args.config:
        model, size, vocab = build(name)
        with tempfile.TemporaryDirectory(prefix="clip-towers-") as tmp:
            files = export(model, size, vocab, Path(tmp))
            load = os.getloadavg()[0]
            rows = measure(files, size, vocab, float(model.logit_scale.detach().exp()))
        load = max(load, os.getloadavg()[0])
        keys = list(rows["one"])
        lines += [f"**{name}** (load average up to {load:.1f} while timing"
                  + (": unstable, indicative only" if load > 3 else "") + "; times are medians in ms)", "",
                  "| layout | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
        lines += [f"| {layout} | " + " | ".join(f"{row[k]:.2f}" for k in keys) + " |" for layout, row in rows.items()]
        lines.append("")
    body = "\n".join(["`python benchmarks/clip_towers.py --config " + " ".join(args.config) + "`: CLIP's towers as "
                      "one ONNX graph with two entry points (what the zero-shot bundle ships) or as two graphs. "
                      "The one-graph layout embeds one side by giving the other tower an empty batch.", "",
                      *lines])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "clip-towers", "CLIP: one graph or two (zero-shot bundles)", body)


if __name__ == "__main__":
    main()
