"""Factory source: ``path/to/file.py:NAME`` or ``package.module:NAME``, plus an optional checkpoint."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from torch2ort.errors import SourceError
from torch2ort.sources import LoadedModel, ModelRequest


def _import_target(target: str):
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise SourceError(f"MODEL {target!r} must look like path/to/file.py:NAME or package.module:NAME")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise SourceError(f"model file not found: {where}")
        mod_name = "torch2ort_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        if spec is None or spec.loader is None:
            raise SourceError(f"cannot import {where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        # The user's file may import its siblings, as it would when run as a script.
        sys.path.insert(0, str(path.resolve().parent))
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise SourceError(f"importing {where} failed: {type(exc).__name__}: {exc}") from None
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise SourceError(f"cannot import module {where!r}: {exc}") from None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise SourceError(f"{where} has no attribute {attr!r}; it defines: {', '.join(names[:20])}")
    return getattr(module, attr)


def build_module(target: str, kwargs: dict | None):
    """Resolve NAME to a module: an instance, a class (called with kwargs) or a factory callable."""
    import torch

    obj = _import_target(target)
    kwargs = dict(kwargs or {})
    if isinstance(obj, torch.nn.Module):
        if kwargs:
            raise SourceError(f"{target} is a module instance; --kwargs only applies to a class or factory")
        return obj
    if not callable(obj):
        raise SourceError(f"{target} is a {type(obj).__name__}, not an nn.Module, class or factory")
    try:
        inspect.signature(obj).bind(**kwargs)
    except TypeError as exc:
        raise SourceError(f"{target} cannot be called with --kwargs {kwargs}: {exc}") from None
    except ValueError:
        pass  # builtins without a signature: just try the call
    # Seed construction: without a checkpoint, export and verify (separate processes) must build
    # the same random weights, or they would compare two different models.
    torch.manual_seed(0)
    try:
        module = obj(**kwargs)
    except Exception as exc:
        raise SourceError(f"calling {target}(**{kwargs}) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise SourceError(f"{target}() returned a {type(module).__name__}, not an nn.Module")
    return module


def load(req: ModelRequest) -> LoadedModel:
    module = build_module(req.model, req.kwargs)
    notes = [f"built {req.model}" + (f" with kwargs {req.kwargs}" if req.kwargs else "")]
    if req.checkpoint:
        from torch2ort.sources.checkpoint import apply_checkpoint

        notes += apply_checkpoint(module, req.checkpoint, trust=req.trust_checkpoint, strict=req.strict)
    elif any(True for _ in module.parameters()):
        notes.append("no --checkpoint: weights are the constructor's initialisation, seeded with 0")
    return LoadedModel(module, req.model, "factory", notes)
