"""Zero-shot image classification from ``hf:DIR``: a CLIP-style two-tower model and its processor.

One ONNX graph with two entry points (``benchmarks/clip_towers.py`` measured the choice; see
docs/hf.md): the image tower reads ``pixel_values`` and the text tower ``input_ids`` and
``attention_mask``; the graph returns ``logits_per_image`` (the temperature, ``exp(logit_scale)``,
applied inside as ``CLIPModel`` applies it), and the L2-normalised ``image_embeds`` and
``text_embeds``. Each tower depends on its own inputs only, so the runtime embeds one side by giving
the other an empty batch (``Bundle.embed_image`` / ``Bundle.embed_text``).

The runtime pipeline: the folder's image processor translated into steps (``hf_image``), then
``candidate_labels``, which formats each label with ``hypothesis_template`` and tokenises the lot as
``pipeline("zero-shot-image-classification")`` does; after the model, ``zero_shot`` turns the logits
into the pipeline's ``[{"score", "label"}]``, best first.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel, ModelHints
from torch2ort.sources.hf_text import read_json

TASK = "zero-shot-image-classification"
MODEL_TYPES = ("clip",)  # softmax over labels; SigLIP's sigmoid and max_length padding are not translated
TEMPLATE = "This is a photo of {}."   # the pipeline's default hypothesis_template
OUTPUTS = ["logits_per_image", "image_embeds", "text_embeds"]
# Candidate labels for verification and the check when the user gives none: short and long, one repeated word.
SAMPLE_LABELS = ["cat", "dog", "tree", "car on a road", "sunset", "mountain lake", "red bicycle", "a photo"]


def is_zero_shot(path: Path) -> bool:
    """A two-tower folder (text_config and vision_config) of a model type transformers pairs with the task."""
    cfg = read_json(path / "config.json", "config")
    if not (isinstance(cfg.get("text_config"), dict) and isinstance(cfg.get("vision_config"), dict)):
        return False
    return any(str(a).endswith("Model") for a in cfg.get("architectures") or []) and cfg.get("model_type") in (
        *MODEL_TYPES, "siglip", "siglip2", "chinese_clip", "align", "altclip", "blip")


def _text_inputs(path: Path) -> tuple[Path, int, int]:
    """(tokenizer.json, the longest text the position table holds, the pad id)."""
    tok = path / "tokenizer.json"
    if not tok.is_file():
        raise SourceError(f"{path}: tokenizer.json is missing (a fast tokenizer is needed, for the bundle too)")
    cfg = read_json(path / "config.json", "config")
    cap = int(cfg["text_config"].get("max_position_embeddings", 77))
    tcfg = read_json(path / "tokenizer_config.json", "tokenizer config") if (
        path / "tokenizer_config.json").is_file() else {}
    model_max = tcfg.get("model_max_length")
    length = min(cap, int(model_max)) if isinstance(model_max, int) and model_max > 0 else cap
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True,
                                                               trust_remote_code=False)
    except Exception as exc:
        from torch2ort.errors import describe

        raise SourceError(f"transformers could not load the tokenizer of {path}: {describe(exc)}") from None
    pad = tokenizer.pad_token_id
    return tok, length, int(pad if pad is not None else 0)


def load(source: str, path: Path, auto: bool, from_pretrained) -> LoadedModel:
    """``hf:DIR`` for a CLIP folder: the two towers as one module, the image steps, the label step."""
    from torch2ort.sources.hf_image import image_preprocess
    from torch2ort.spec import InputSpec

    cfg = read_json(path / "config.json", "config")
    if cfg.get("model_type") not in MODEL_TYPES:
        raise SourceError(f"{path}: zero-shot image classification is translated for {', '.join(MODEL_TYPES)} "
                          f"(softmax over the candidate labels); {cfg.get('model_type')!r} is not yet")
    steps, notes, out = image_preprocess(path, "pixel_values", fixed=True)
    tok, length, pad = _text_inputs(path)
    steps.append({"op": "candidate_labels", "hypothesis_template": TEMPLATE, "file": "tokenizer.json",
                  "max_length": length, "pad_id": pad})
    model = from_pretrained(path, "AutoModelForZeroShotImageClassification")
    text = model.config.text_config
    post = [{"op": "zero_shot", "output": "logits_per_image", "name": "zero_shot"}]
    hints = ModelHints(task=TASK, model_dir=str(path), tokenizer=str(tok), preprocess=steps, postprocess=post,
                       media="image", options={"candidate_labels": list(SAMPLE_LABELS)},
                       sweep={"batch": [1, 2], "labels": [2, 3, 8], "sequence": [4, 9, length]})
    vocab = int(text.vocab_size)
    # at least 2 labels in every case: top-1 over one label means nothing (and the zero-shot gate refuses it)
    hints.spec = InputSpec.from_cli([f"pixel_values:batch=2,3,{out[0]},{out[1]}:float32",
                                     f"input_ids:labels=3,sequence=9:int64:0..{vocab - 1}",
                                     "attention_mask:labels=3,sequence=9:int64:1..1"], OUTPUTS)
    notes = [f"loaded {path} with transformers AutoModelForZeroShotImageClassification (task {TASK}"
             + (", auto-detected)" if auto else ")"), *notes,
             f"candidate labels formatted with hypothesis_template (default {TEMPLATE!r}) and tokenised as the "
             f"pipeline does (padded to the longest; at most {length} tokens, the text position table)",
             "one graph, two entry points: the image tower (pixel_values) and the text tower (input_ids, "
             "attention_mask); logits_per_image carries the model's exp(logit_scale) "
             f"= {float(model.logit_scale.detach().exp()):.4g}",
             "labels with scores, best first, as pipeline(\"zero-shot-image-classification\") returns them"]
    return LoadedModel(towers()[0](model), source, "hf", notes, hints)


def pipeline_text_inputs(model_dir: str | Path, labels: list[str], template: str = TEMPLATE) -> dict:
    """``input_ids`` and ``attention_mask`` as ``pipeline("zero-shot-image-classification")`` makes them:
    the folder's tokenizer, every label formatted with ``template``, padded to the longest."""
    import numpy as np
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True, trust_remote_code=False)
    enc = tok([template.format(x) for x in labels], padding=True, return_tensors="np")
    return {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}


_CLASSES: list[type] = []


def towers() -> tuple[type, type, type]:
    """(both towers, image tower, text tower) as modules (defined on first use: this file imports without torch)."""
    if _CLASSES:
        return tuple(_CLASSES)
    import torch

    class TwoTowers(torch.nn.Module):
        """``CLIPModel``'s forward, positional: (logits_per_image, image_embeds, text_embeds)."""

        def __init__(self, model) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixel_values, input_ids, attention_mask):
            out = self.model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask)
            return out.logits_per_image, out.image_embeds, out.text_embeds

    class ImageTower(TwoTowers):
        def forward(self, pixel_values):
            emb = self.model.get_image_features(pixel_values=pixel_values)
            emb = getattr(emb, "pooler_output", emb)
            return emb / emb.norm(p=2, dim=-1, keepdim=True)

    class TextTower(TwoTowers):
        def forward(self, input_ids, attention_mask):
            emb = self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            emb = getattr(emb, "pooler_output", emb)
            return emb / emb.norm(p=2, dim=-1, keepdim=True)

    _CLASSES.extend([TwoTowers, ImageTower, TextTower])
    return tuple(_CLASSES)
