"""Checkpoint loading: safe by default, explicit about every key that does not match."""

from __future__ import annotations

import pickle
from pathlib import Path

from torch2ort.errors import CheckpointError

_WRAPPER_KEYS = ("model_state_dict", "state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
_SHOW = 8


def read_state_dict(path: str | Path, trust: bool = False) -> dict:
    """Read a state_dict from .pt/.pth (pickle, weights_only unless trusted) or .safetensors."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return _strip_prefixes(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        if trust:
            raise CheckpointError(f"{path} could not be unpickled: {_first_line(exc)}") from None
        raise CheckpointError(
            f"{path} needs pickle code execution to load (it holds more than tensors and plain "
            f"containers: {_blocked_global(exc)}). Loading it can run arbitrary code; if you trust "
            "its source, pass --trust-checkpoint") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError) as exc:
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {_first_line(exc)}") from None
    return _strip_prefixes(_unwrap(obj, path))


def _unwrap(obj: object, path: Path) -> dict:
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    for key in _WRAPPER_KEYS:
        if key in obj:
            inner = obj[key]
            if isinstance(inner, torch.nn.Module):
                return inner.state_dict()
            if isinstance(inner, dict):
                return inner
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    keys = ", ".join(map(str, list(obj)[:10]))
    raise CheckpointError(f"{path} is a dict but not a state_dict, and has none of the keys "
                          f"{', '.join(_WRAPPER_KEYS)}; its top-level keys are: {keys}")


def _strip_prefixes(state: dict) -> dict:
    for prefix in _PREFIXES:
        if state and all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def apply_checkpoint(module, path: str | Path, trust: bool = False, strict: bool = True) -> list[str]:
    """Load ``path`` into ``module``. Mismatched keys raise unless ``strict`` is False; never silent."""
    state = read_state_dict(path, trust=trust)
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)})"
                   for k in expected if k in state and hasattr(state[k], "shape")
                   and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for title, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f" … and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            problems.append(f"{len(keys)} {title}: {', '.join(keys[:_SHOW])}{more}")
    if wrong_shape or (problems and strict):
        hint = "" if wrong_shape else " (pass --non-strict to load the matching keys anyway)"
        raise CheckpointError(f"checkpoint {path} does not match the model: {'; '.join(problems)}{hint}")
    usable = {k: v for k, v in state.items() if k in expected}
    module.load_state_dict(usable, strict=False)
    notes = [f"loaded {len(usable)} tensors from {path}" + (" (trusted pickle)" if trust else "")]
    notes += [f"WARNING checkpoint key mismatch, loaded anyway (--non-strict): {p}" for p in problems]
    return notes


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _blocked_global(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if "Unsupported global" in line or "GLOBAL" in line:
            return line.strip().rstrip(".")
    return _first_line(exc)
