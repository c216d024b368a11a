"""``--config torch2ort.toml``: the same options as the CLI, in a file. See docs/config.md.

Example::

    model = "examples/emotion_cnn.py:EmotionCNN"
    kwargs = { classes = 7 }
    inputs = ["image:batch=1,3,64,64:float32:0..1"]
    output_names = ["logits"]

    [verify]
    n = 3
    atol = 1e-4
    sweep = { batch = [1, 2, 5] }
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch2ort.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = {"model", "kwargs", "checkpoint", "trust_checkpoint", "trust_remote_code", "non_strict", "preprocess_module",
            "inputs", "input", "output_names", "allow_all_false_masks", "export", "verify"}
SECTION_KEYS = {"export": {"opset", "exporter", "output"},
                "verify": {"n", "atol", "rtol", "samples", "sweep", "seed"}}


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a config file; relative paths inside it resolve against its folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"--config {path}: not valid TOML ({exc})") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SpecError(f"--config {path}: unknown key(s) {sorted(unknown)}; valid: {sorted(TOP_KEYS)}")
    for section, keys in SECTION_KEYS.items():
        extra = set(data.get(section, {})) - keys
        if extra:
            raise SpecError(f"--config {path}: unknown key(s) {sorted(extra)} in [{section}]; "
                            f"valid: {sorted(keys)}")
    for key in ("trust_checkpoint", "trust_remote_code", "non_strict", "allow_all_false_masks"):
        if key in data and not isinstance(data[key], bool):  # "false" is a string, and a true one
            raise SpecError(f"--config {path}: {key} must be true or false, not {data[key]!r}")
    base = path.resolve().parent
    for key in ("checkpoint",):
        if key in data:
            data[key] = str(base / data[key])
    if "samples" in data.get("verify", {}):
        data["verify"]["samples"] = str(base / data["verify"]["samples"])
    pre = data.get("preprocess_module")
    if isinstance(pre, str) and ":" in pre and (pre.rpartition(":")[0].endswith(".py") or "/" in pre):
        data["preprocess_module"] = f"{base / pre.rpartition(':')[0]}:{pre.rpartition(':')[2]}"
    model = data.get("model")
    if isinstance(model, str) and ":" in model and not model.startswith("hf:"):
        where, _, attr = model.rpartition(":")
        if where.endswith(".py") or "/" in where:
            data["model"] = f"{base / where}:{attr}"
    elif isinstance(model, str):
        data["model"] = str(base / model) if not model.startswith("hf:") else model
    if "input" in data and "inputs" in data:
        raise SpecError(f"--config {path}: use either inputs = [...] strings or [[input]] tables, not both")
    return data


def config_inputs(data: dict[str, Any]) -> list[str]:
    """The config's inputs as CLI-style strings."""
    from torch2ort.spec import TensorSpec

    if "inputs" in data:
        if not isinstance(data["inputs"], list) or not all(isinstance(i, str) for i in data["inputs"]):
            raise SpecError("config: inputs must be a list of NAME:DIMS:DTYPE[:LOW..HIGH] strings")
        return list(data["inputs"])
    tables = data.get("input", [])
    if not isinstance(tables, list):
        raise SpecError("config: [[input]] must be an array of tables")
    return [TensorSpec.from_dict(t).to_cli() for t in tables]
