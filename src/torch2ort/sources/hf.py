"""Hugging Face source: ``hf:DIR``, a local transformers or sentence-transformers directory.

The task is read from the directory (``modules.json`` means sentence-transformers, otherwise the
config's ``architectures``); for text, the inputs are what the tokenizer produces, with dynamic
``batch`` and ``sequence`` dims (``hf_text``); image and audio classifiers take their input and
preprocessing from the folder's processor (``hf_media``, ``hf_image``). Models are called with
keyword arguments, as transformers 5.x requires. Nothing is downloaded: ``HF_HUB_OFFLINE=1`` and
``local_files_only`` are always set.

Options come through ``--kwargs`` (``ModelRequest.kwargs``)::

    {"task": "sequence-classification", "pooling": "graph" | "runtime", "max_length": 256, "stride": 32}

``stride`` (token classification only) runs a long text as windows of ``max_length`` tokens that
overlap by ``stride``, as ``pipeline("token-classification", stride=...)`` does.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from torch2ort.errors import SourceError, describe, unknown_name
from torch2ort.sources import LoadedModel, ModelHints, ModelRequest
from torch2ort.sources.hf_decoder import is_decoder
from torch2ort.sources.hf_speech import is_speech
from torch2ort.sources.hf_text import SAMPLE_TEXTS, check_tokenizer, input_spec, max_length, tokenizer_info
from torch2ort.sources.hf_text import read_json as _json

PREFIX = "hf:"
# task -> (transformers auto class, the output kept, its ONNX name)
TASKS = {
    "feature-extraction": ("AutoModel", "last_hidden_state", "last_hidden_state"),
    "sentence-embedding": ("AutoModel", "last_hidden_state", "sentence_embedding"),
    "sequence-classification": ("AutoModelForSequenceClassification", "logits", "logits"),
    "token-classification": ("AutoModelForTokenClassification", "logits", "logits"),
    "fill-mask": ("AutoModelForMaskedLM", "logits", "logits"),
    "image-classification": ("AutoModelForImageClassification", "logits", "logits"),
    "audio-classification": ("AutoModelForAudioClassification", "logits", "logits"),
    "semantic-segmentation": ("AutoModelForSemanticSegmentation", "logits", "logits"),
    "object-detection": ("AutoModelForObjectDetection", "logits", "logits"),
    "text-generation": ("AutoModelForCausalLM", "logits", "logits"),  # hf_decoder: logits and the KV cache
    # hf_clip: logits_per_image and both towers' embeddings
    "zero-shot-image-classification": ("AutoModelForZeroShotImageClassification", "logits_per_image",
                                       "logits_per_image"),
    "automatic-speech-recognition": ("AutoModelForSpeechSeq2Seq", "logits", "logits"),  # hf_speech: two graphs
}
ARCH_SUFFIXES = {"ForSequenceClassification": "sequence-classification",
                 "ForTokenClassification": "token-classification", "ForMaskedLM": "fill-mask",
                 "ForImageClassification": "image-classification",
                 "ForAudioClassification": "audio-classification",
                 "ForSemanticSegmentation": "semantic-segmentation", "ForObjectDetection": "object-detection",
                 "Model": "feature-extraction"}
OPTIONS = ("task", "pooling", "max_length", "stride")
POOLINGS = ("graph", "runtime")
ST_MODULES = "sentence_transformers.models."


def model_dir(model: str) -> Path:
    path = Path(model[len(PREFIX):]).expanduser()
    if not path.is_dir():
        raise SourceError(f"{model}: no such directory (hf:DIR takes a local transformers or "
                          "sentence-transformers folder; nothing is downloaded)")
    if not (path / "config.json").is_file():
        raise SourceError(f"{model}: config.json is missing; is this a transformers model directory?")
    return path


def sentence_transformers_modules(path: Path) -> list[dict] | None:
    modules = path / "modules.json"
    return _json(modules, "sentence-transformers modules", list) if modules.is_file() else None


def detect_task(path: Path) -> str:
    """sentence-embedding for a modules.json folder, else from ``architectures`` in config.json."""
    if sentence_transformers_modules(path) is not None:
        return "sentence-embedding"
    archs = _json(path / "config.json", "config").get("architectures") or []
    if is_decoder(path):  # before the suffixes: GPT2LMHeadModel ends in "Model" too
        return "text-generation"
    from torch2ort.sources.hf_clip import TASK, is_zero_shot

    if is_zero_shot(path):  # before the suffixes: CLIPModel ends in "Model" too
        return TASK
    if is_speech(path):
        return "automatic-speech-recognition"
    for arch in archs:
        for suffix, task in ARCH_SUFFIXES.items():
            if arch.endswith(suffix):
                audio = task == "sequence-classification" and _feature_extractor(path)
                return "audio-classification" if audio else task
    raise SourceError(f"cannot tell the task of {path} from config.json (architectures: {archs}); "
                      f"pass --task, one of: {', '.join(TASKS)}")


def _feature_extractor(path: Path) -> bool:
    """Wav2Vec2-style audio classifiers are ``…ForSequenceClassification`` too: their folder has a feature extractor."""
    pre = path / "preprocessor_config.json"
    return pre.is_file() and "feature_extractor_type" in _json(pre, "preprocessor config")


def _options(req: ModelRequest) -> dict[str, Any]:
    opts = dict(req.kwargs or {})
    bad = [k for k in opts if k not in OPTIONS]
    if bad:
        raise SourceError(f"hf: sources take --kwargs keys {', '.join(OPTIONS)}; got {', '.join(bad)}")
    if opts.get("task") is not None and opts["task"] not in TASKS:
        raise SourceError(unknown_name("task", opts["task"], list(TASKS)))
    if opts.get("pooling") is not None and opts["pooling"] not in POOLINGS:
        raise SourceError(unknown_name("pooling", opts["pooling"], list(POOLINGS)))
    return opts


def _pooling_config(path: Path, modules: list[dict]) -> tuple[str, bool]:
    """(mode, normalize) from the modules.json chain; anything else is refused by name."""
    mode, normalize = "mean", False
    for m in modules:
        if not isinstance(m, dict) or not isinstance(m.get("type"), str):
            raise SourceError(f"{path}: modules.json entries must be objects with a \"type\"")
        # Only sentence-transformers' own classes: SentenceTransformer(path) imports whatever module a
        # type names, so "evil.Transformer" would run the folder's (or any installed) code.
        kind = m["type"].rpartition(".")[2]
        if not m["type"].startswith(ST_MODULES):
            raise SourceError(f"{path}: sentence-transformers module {m['type']!r} is not one of "
                              f"sentence-transformers' own ({ST_MODULES}Transformer, Pooling, Normalize)")
        if kind == "Transformer":
            continue
        if kind == "Pooling":
            where = m.get("path", "")
            if not isinstance(where, str) or Path(where).is_absolute() or ".." in Path(where).parts:
                raise SourceError(f"{path}: modules.json Pooling path {where!r} must be a folder inside the model")
            cfg = _json(path / where / "config.json", "pooling config")
            modes = [k for k in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")
                     if cfg.get(f"pooling_mode_{k}")]
            if len(modes) != 1:
                raise SourceError(f"{path}: pooling {modes or 'none'} is not supported; one of cls, mean, max, "
                                  "mean_sqrt_len")
            mode = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
                    "mean_sqrt_len_tokens": "mean_sqrt_len"}[modes[0]]
        elif kind == "Normalize":
            normalize = True
        else:
            raise SourceError(f"{path}: sentence-transformers module {m.get('type')!r} is not supported "
                              "(supported: Transformer, Pooling, Normalize)")
    return mode, normalize


def load(req: ModelRequest) -> LoadedModel:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = model_dir(req.model)
    opts = _options(req)
    task = opts.get("task") or detect_task(path)
    modules = sentence_transformers_modules(path)
    if task == "sentence-embedding" and modules is None:
        raise SourceError(f"{path}: task sentence-embedding needs a sentence-transformers folder (modules.json)")
    st_pooling = _pooling_config(path, modules) if task == "sentence-embedding" else None  # before any import
    from_pretrained = functools.partial(_from_pretrained, trust_remote_code=req.trust_remote_code)
    if task in ("image-classification", "audio-classification", "semantic-segmentation", "object-detection"):
        from torch2ort.sources import hf_media

        return hf_media.load(req.model, path, task, not opts.get("task"), from_pretrained)
    if task == "zero-shot-image-classification":
        from torch2ort.sources import hf_clip

        return hf_clip.load(req.model, path, not opts.get("task"), from_pretrained)
    if task == "automatic-speech-recognition":
        from torch2ort.sources import hf_speech

        return hf_speech.load(req.model, path, from_pretrained, not opts.get("task"))
    if task == "text-generation":
        from torch2ort.sources import hf_decoder

        return hf_decoder.load(req.model, path, from_pretrained, not opts.get("task"))
    tok, names = tokenizer_info(path)
    length = max_length(path, opts)
    check_tokenizer(tok, names, length)
    auto_cls, key, onnx_name = TASKS[task]
    model = from_pretrained(path, auto_cls)
    config = model.config
    notes = [f"loaded {path} with transformers {auto_cls} (task {task}"
             + (", auto-detected" if not opts.get("task") else "") + ")",
             f"inputs from the tokenizer: {', '.join(names)} (dynamic batch and sequence; max_length {length})"]
    hints = ModelHints(task=task, tokenizer=str(tok), model_dir=str(path), texts=list(SAMPLE_TEXTS),
                       preprocess=[{"op": "tokenize", "outputs": names, "max_length": length}])
    if task == "sentence-embedding":
        mode, normalize = st_pooling
        pooling = opts.get("pooling") or "graph"
        if pooling == "runtime" and mode != "mean":
            raise SourceError(f"pooling 'runtime' needs mean pooling (the runtime's mean_pool step); {path} uses "
                              f"{mode}: keep it in the graph")
        module = wrappers()["SentenceEmbedding"](model, names, mode, normalize, in_graph=pooling == "graph")
        onnx_name = "sentence_embedding" if pooling == "graph" else "token_embeddings"
        hints.pooling, hints.pooling_mode, hints.normalize = pooling, mode, normalize
        hints.pooling_choices = ["graph", "runtime"] if mode == "mean" else ["graph"]
        if pooling == "runtime":
            hints.postprocess = [{"op": "mean_pool", "output": "token_embeddings", "name": "sentence_embedding"}]
            if normalize:
                hints.postprocess.append({"op": "l2_normalize", "output": "sentence_embedding"})
        notes.append(f"sentence-transformers: {mode} pooling" + (" + L2 normalize" if normalize else "")
                     + (" inside the ONNX graph" if pooling == "graph" else " in the runtime's postprocess"))
    else:
        module = wrappers()["KwargsModel"](model, names, key)
        if task in ("sequence-classification", "token-classification"):
            id2label = getattr(config, "id2label", None) or {}
            labels = [str(id2label.get(i, id2label.get(str(i), i))) for i in range(len(id2label))]
            hints.labels = labels or None
        if task == "sequence-classification":
            hints.postprocess = [{"op": "softmax", "output": "logits", "name": "probabilities"},
                                 {"op": "topk", "output": "probabilities", "k": min(5, max(1, len(labels)))}]
        elif task == "token-classification":  # entity groups as pipeline("token-classification") gives them
            stride = _stride(opts, length)
            hints.postprocess = [{"op": "entities", "output": "logits", "aggregation_strategy": "simple",
                                  "max_length": length} | ({"stride": stride} if stride else {})]
            if stride:
                hints.preprocess[0]["stride"] = stride
                notes.append(f"long texts as windows of {length} tokens overlapping by {stride} (stride)")
            notes.append("entities from the logits in the runtime, as pipeline(\"token-classification\") "
                         "groups them (aggregation_strategy simple; predict(..., aggregation_strategy=...) "
                         "takes none, first, average or max)")
    if opts.get("stride") is not None and task != "token-classification":
        raise SourceError(f"--kwargs stride is for token classification; {path} is {task}")
    hints.spec = input_spec(path, names, onnx_name)
    # Sequences up to max_length, so the longest input a user can send has been verified.
    hints.sweep = {"batch": [1, 2, 7], "sequence": sorted({n for n in (1, 16, 77) if n < length} | {length})}
    return LoadedModel(module, req.model, "hf", notes, hints)


def _stride(opts: dict[str, Any], length: int) -> int:
    stride = opts.get("stride")
    if stride is None:
        return 0
    if isinstance(stride, bool) or not isinstance(stride, int) or not 0 < stride < length - 2:
        raise SourceError(f"--kwargs stride must be a whole number from 1 to {length - 3} (below max_length "
                          f"{length} less the special tokens); got {stride!r}")
    return stride


def _from_pretrained(path: Path, auto_cls: str, trust_remote_code: bool = False):
    try:
        import transformers
    except ImportError:
        raise SourceError("hf: sources need transformers: pip install 'torch2ort[hf]'") from None
    import torch

    cls = getattr(transformers, auto_cls)
    torch.manual_seed(0)  # heads missing from the checkpoint get the same init in every process
    transformers.utils.logging.disable_progress_bar()
    try:
        # trust_remote_code always explicit: left as None, transformers asks on stdin for a folder with
        # auto_map, and `echo y | torch2ort migrate hf:DIR` ran the folder's Python (issue 27).
        return cls.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # OSError for missing weights, ValueError for unknown configs, …
        raise SourceError(f"transformers could not load {path}: {describe(exc)}") from None


_CLASSES: dict[str, type] = {}


def wrappers() -> dict[str, type]:
    """The nn.Module wrappers, defined on first use so this file imports without torch."""
    if _CLASSES:
        return _CLASSES
    import torch

    class KwargsModel(torch.nn.Module):
        """``model(**dict(zip(names, args)))[key]``: positional for the exporter, keywords for transformers."""

        def __init__(self, model, names: list[str], key: str) -> None:
            super().__init__()
            self.model, self.names, self.key = model, list(names), key

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(**{n: given[n] for n in self.names})[self.key]

    class SentenceEmbedding(KwargsModel):
        """Transformer + pooling (+ L2 normalize) as sentence-transformers runs them, or the token embeddings."""

        def __init__(self, model, names: list[str], mode: str, normalize: bool, in_graph: bool) -> None:
            super().__init__(model, names, "last_hidden_state")
            self.mode, self.normalize, self.in_graph = mode, normalize, in_graph

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            h = super().forward(input_ids, attention_mask, token_type_ids)
            if not self.in_graph:
                return h
            mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).unsqueeze(-1)
            mask = mask.to(h.dtype)
            if self.mode == "cls":
                pooled = h[:, 0]
            elif self.mode == "max":
                pooled = h.masked_fill(mask == 0, -1e9).max(dim=1).values
            else:
                total = (h * mask).sum(dim=1)
                count = mask.sum(dim=1).clamp(min=1e-9)
                pooled = total / (count.sqrt() if self.mode == "mean_sqrt_len" else count)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    _CLASSES.update(KwargsModel=KwargsModel, SentenceEmbedding=SentenceEmbedding)
    return _CLASSES


def reference_sentence_embeddings(path: str | Path, texts: list[str]):
    """The real thing, ``SentenceTransformer(path).encode(texts)``; without the package, this source's
    own pooling wrapper on the same tokenisation. Returns (embeddings, what produced them)."""
    try:
        import sentence_transformers
        from sentence_transformers import SentenceTransformer
    except ImportError:
        sentence_transformers = None
    if sentence_transformers is not None:
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True, trust_remote_code=False)
        emb = model.encode(list(texts), convert_to_numpy=True, batch_size=len(texts))
        return emb, f"sentence-transformers {sentence_transformers.__version__} SentenceTransformer.encode"
    import torch

    from torch2ort.runtime.processors.text import tokenize_texts

    loaded = load(ModelRequest(f"{PREFIX}{path}", {"pooling": "graph"}))
    loaded.module.eval()
    names = loaded.hints.spec.names
    feed = tokenize_texts(loaded.hints.tokenizer, texts, names, loaded.hints.max_length)
    with torch.inference_mode():
        emb = loaded.module(*(torch.from_numpy(feed[n]) for n in names)).numpy()
    return emb, "torch2ort's pooling of the transformers model (sentence-transformers is not installed)"
