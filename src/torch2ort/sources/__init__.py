"""How a torch model is obtained: one small file per source kind, looked up in SOURCES.

A MODEL string picks its source:
    path/to/file.py:NAME, package.module:NAME  -> factory (plus --kwargs, --checkpoint)
    path/to/model.pt (torch.jit.save archive)  -> torchscript
    hf:DIR (transformers / sentence-transformers folder) -> hf
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch2ort.errors import SourceError

if TYPE_CHECKING:
    import torch

    from torch2ort.spec import InputSpec


@dataclass
class ModelHints:
    """What a source knows that the user would otherwise type; empty for sources that know nothing.

    Only hf fills it today: the input spec from the tokenizer or the image/audio processor, the
    runtime pipelines, real texts to verify on, and for sentence-transformers where pooling may run.
    """

    spec: InputSpec | None = None
    task: str | None = None
    preprocess: list[dict[str, Any]] = field(default_factory=list)
    postprocess: list[dict[str, Any]] = field(default_factory=list)
    labels: list[str] | None = None
    tokenizer: str | None = None            # tokenizer.json that goes into the bundle
    texts: list[str] | None = None          # real samples, tokenised with ``tokenizer``
    model_dir: str | None = None
    sweep: dict[str, list[int]] | None = None
    pooling: str | None = None              # sentence-transformers: "graph" or "runtime"
    pooling_mode: str | None = None         # mean, cls, max, mean_sqrt_len
    normalize: bool = False
    pooling_choices: list[str] = field(default_factory=list)
    media: str | None = None                # "image" or "audio": the bundle takes a raw file
    assets: dict[str, Any] = field(default_factory=dict)  # bundle file name -> numpy array (saved as .npy)
    generation: dict[str, Any] | None = None  # text-generation: the KV-cache layout, EOS and pad (hf_decoder)
    options: dict[str, Any] = field(default_factory=dict)  # call options for samples and the check (candidate_labels)
    speech: dict[str, Any] | None = None  # speech recognition: the decoder graph, prefix, limits (hf_speech)

    @property
    def max_length(self) -> int:
        """The tokenizer's truncation length (256 when the tokenize step does not say)."""
        return int(self.preprocess[0].get("max_length", 256)) if self.preprocess else 256


@dataclass
class LoadedModel:
    """A torch module ready to run: always in eval mode, with notes on how it was obtained."""

    module: torch.nn.Module
    source: str
    kind: str
    notes: list[str] = field(default_factory=list)
    hints: ModelHints = field(default_factory=ModelHints)


@dataclass(frozen=True)
class ModelRequest:
    """What the user asked for: MODEL plus the options that shape how it is built."""

    model: str
    kwargs: dict[str, Any] | None = None
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    strict: bool = True
    preprocess_module: str | None = None    # FILE.py:NAME fused in front of the model (sources/preprocess.py)
    trust_remote_code: bool = False         # hf: run the folder's own modelling code (auto_map); never asked


def _is_torchscript(model: str) -> bool:
    return ":" not in model and model.endswith((".pt", ".pth", ".ts", ".jit", ".zip"))


def _is_factory(model: str) -> bool:
    return ":" in model


def _is_hf(model: str) -> bool:
    return model.startswith("hf:")


def _load_hf(req: ModelRequest) -> LoadedModel:
    from torch2ort.sources import hf

    return hf.load(req)


def _load_factory(req: ModelRequest) -> LoadedModel:
    from torch2ort.sources import factory

    return factory.load(req)


def _load_torchscript(req: ModelRequest) -> LoadedModel:
    from torch2ort.sources import torchscript

    return torchscript.load(req)


# name -> (does MODEL look like this kind?, loader). Checked in order.
SOURCES: dict[str, tuple[Callable[[str], bool], Callable[[ModelRequest], LoadedModel]]] = {
    "hf": (_is_hf, _load_hf),
    "torchscript": (_is_torchscript, _load_torchscript),
    "factory": (_is_factory, _load_factory),
}


def load_model(req: ModelRequest) -> LoadedModel:
    """Build the torch module that ``req`` names, in eval mode."""
    for matches, loader in SOURCES.values():
        if matches(req.model):
            loaded = loader(req)
            if req.preprocess_module:
                from torch2ort.sources.preprocess import fuse

                loaded = fuse(loaded, req.preprocess_module)
            was_training = loaded.module.training
            loaded.module.eval()
            loaded.notes.append("model put in eval mode (dropout off, batch-norm uses running stats)"
                                + (" — it was in training mode" if was_training else ""))
            return loaded
    raise SourceError(f"MODEL {req.model!r} is not recognised; use path/to/file.py:NAME, "
                      "package.module:NAME, hf:DIR or a TorchScript archive (.pt saved with torch.jit.save)")
