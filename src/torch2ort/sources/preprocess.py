"""``--preprocess-module FILE.py:NAME``: the user's torch preprocessing, fused with the model into one graph.

The module maps what the bundle's runtime steps produce (for audio: waveform segments ``[batch,
segments, samples]``) to the model's first input (for example ``[batch, segments, 3, 224, 224]``
spectrograms written with ``torch.stft``). It is loaded like a factory MODEL (an instance, a class
or a factory, built seeded) and composed as ``model(pre(x), *rest)``: one module that is exported,
verified, optimised and benchmarked like any model, so the bundle runs file -> steps -> (preprocess
∘ model) -> postprocess without torch. The other inputs (a segment mask) go to the model unchanged.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel

FUSED_NOTE = "fused with the model: one ONNX graph computes {pre} ∘ {model}"


@lru_cache(maxsize=1)
def wrapper_class() -> type:
    """``WithPreprocess(pre, model)``: ``model(pre(x), *rest)``, an nn.Module (torch imported lazily)."""
    from torch import nn

    class WithPreprocess(nn.Module):
        """The preprocess module on the first input, the other inputs passed to the model unchanged."""

        def __init__(self, pre: nn.Module, model: nn.Module) -> None:
            super().__init__()
            self.pre = pre
            self.model = model

        def forward(self, x, *rest):
            return self.model(self.pre(x), *rest)

    return WithPreprocess


def _fixed_arity(model) -> type:
    """A ``WithPreprocess`` subclass whose forward has the model's positional arity: exporters need a fixed
    signature, not ``*rest``."""
    base = wrapper_class()
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return base
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or any(p.kind not in kinds for p in params):
        return base
    rest = [f"arg{i}" for i in range(1, len(params))]
    scope: dict = {}
    exec(f"def forward({', '.join(['self', 'x', *rest])}):\n"
         f"    return self.model(self.pre(x){''.join(', ' + r for r in rest)})\n", scope)
    return type("WithPreprocess", (base,), {"forward": scope["forward"]})


def load_preprocess_module(target: str):
    """Build ``FILE.py:NAME`` or ``package.module:NAME`` (no kwargs, seeded), in eval mode."""
    from torch2ort.sources.factory import build_module

    if ":" not in target:
        raise SourceError(f"--preprocess-module {target!r} must look like path/to/file.py:NAME or package.module:NAME")
    try:
        module = build_module(target, None)
    except SourceError as exc:
        raise SourceError(f"--preprocess-module: {exc.one_line()}") from None
    return module.eval()


def fuse(loaded: LoadedModel, target: str) -> LoadedModel:
    """``loaded`` with its module replaced by preprocess ∘ model; notes say so."""
    pre = load_preprocess_module(target)
    loaded.module = _fixed_arity(loaded.module)(pre, loaded.module).eval()
    loaded.notes.append(FUSED_NOTE.format(pre=target, model=loaded.source))
    return loaded
