"""Arguments shared by commands, and how they merge with --config."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from torch2ort.errors import OutputExistsError, SpecError, UsageError


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--config", metavar="FILE.toml", help="read MODEL, inputs and options from a TOML file "
                   "(docs/config.md); command-line options win")
    g.add_argument("--kwargs", metavar="JSON", help="constructor arguments for NAME, e.g. '{\"classes\": 7}'")
    g.add_argument("--checkpoint", metavar="FILE", help="state_dict in .pt/.pth (bare or under "
                   "model_state_dict/state_dict/model) or .safetensors")
    g.add_argument("--trust-checkpoint", action="store_true", default=None,
                   help="allow pickle code execution when loading --checkpoint (only for files you trust)")
    g.add_argument("--preprocess-module", metavar="FILE.py:NAME",
                   help="a torch module from what the --preprocess steps give (e.g. waveform segments) to the "
                        "model's first input (e.g. spectrograms); fused with MODEL into one graph, exported and "
                        "verified with it; --input then describes the fused model's inputs (docs/audio.md)")
    g.add_argument("--non-strict", action="store_true", default=None,
                   help="load a checkpoint whose keys do not all match (the mismatches are still printed)")


def add_spec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--input", action="append", default=[], metavar="NAME:DIMS:DTYPE[:LOW..HIGH]",
                   help="repeatable, in the model's argument order; a dim is an int or label=int "
                        "(dynamic), e.g. x:batch=1,3,224,224:float32; dtypes: float32 float16 int64 "
                        "int32 uint8 bool")
    g.add_argument("--output-names", metavar="a,b,c", help="names for the outputs (default: dict keys or "
                   "namedtuple fields, else output_0, output_1, ...)")
    g.add_argument("--allow-all-false-masks", action="store_true", default=None,
                   help="let synthetic bool masks be all False (by default each row keeps a True)")


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "_config", None) is None:
        from torch2ort.config import load_config

        args._config = load_config(args.config) if args.config else {}
    return args._config


def pick(args: argparse.Namespace, name: str, section: str | None = None, default: Any = None) -> Any:
    """CLI value if given, else the config's, else ``default``."""
    value = getattr(args, name, None)
    if value is not None and value != []:
        return value
    cfg = config_of(args)
    if section:
        cfg = cfg.get(section, {})
    return cfg.get(name, default)


def model_request(args: argparse.Namespace, model: str | None):
    from torch2ort.sources import ModelRequest

    model = model or config_of(args).get("model")
    if not model:
        raise SpecError("no MODEL given (as an argument or `model = ...` in --config)")
    kwargs = pick(args, "kwargs")
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as exc:
            raise SpecError(f"--kwargs is not valid JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise SpecError("--kwargs must be a JSON object, e.g. '{\"classes\": 7}'")
    return ModelRequest(model, kwargs or None, pick(args, "checkpoint"),
                        bool(pick(args, "trust_checkpoint", default=False)),
                        not bool(pick(args, "non_strict", default=False)), pick(args, "preprocess_module"))


def input_spec(args: argparse.Namespace):
    from torch2ort.config import config_inputs
    from torch2ort.spec import InputSpec

    inputs = args.input or config_inputs(config_of(args))
    names = pick(args, "output_names")
    return InputSpec.from_cli(inputs, names, bool(pick(args, "allow_all_false_masks", default=False)))


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse, before any work, an output that exists (without --force) or that cannot be written at all.

    Probed by opening it for appending (nothing is written; a file the probe created is removed again),
    so `-o /proc/x.onnx` is a one-line error naming the path, not an export failure after the work.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    existed = path.exists()
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the writer creates missing parents
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a directory")
        if existed or parent == path.parent:
            with open(path, "ab"):
                pass
            if not existed:
                path.unlink()
        elif not os.access(parent, os.W_OK):
            raise PermissionError(f"{parent} is not writable")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def make_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # logs and CI: wide enough that tables do not fold
        console = Console(highlight=False, width=160)
    return console


def print_notes(console, loaded) -> None:
    for note in loaded.notes:
        console.print(f"[dim]•[/dim] {note}", highlight=False)
