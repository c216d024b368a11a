"""Arguments shared by commands, and how they merge with --config."""

from __future__ import annotations

import argparse
from typing import Any


class Repeatable(argparse.Action):
    """``append``, except that the first use on the command line replaces the default (a ``--config``
    value) instead of adding to it: command-line options win, repeatable ones included."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_given", set())
        items = list(getattr(namespace, self.dest) or []) if self.dest in given else []
        given.add(self.dest)
        setattr(namespace, self.dest, items + [values])


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--config", metavar="FILE.toml", help="read MODEL, inputs and options from a TOML file "
                   "(docs/config.md); command-line options win")
    g.add_argument("--kwargs", metavar="JSON", help="constructor arguments for NAME, e.g. '{\"classes\": 7}'")
    g.add_argument("--checkpoint", metavar="FILE", help="state_dict in .pt/.pth (bare or under "
                   "model_state_dict/state_dict/model) or .safetensors")
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow pickle code execution when loading --checkpoint (only for files you trust)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="hf:DIR only: run the folder's own Python (config.json auto_map) to build the model; "
                        "only for folders you trust. Without it such a folder is refused; nothing ever asks")
    g.add_argument("--preprocess-module", metavar="FILE.py:NAME",
                   help="a torch module from what the --preprocess steps give (e.g. waveform segments) to the "
                        "model's first input (e.g. spectrograms); fused with MODEL into one graph, exported and "
                        "verified with it; --input then describes the fused model's inputs (docs/audio.md)")
    g.add_argument("--non-strict", action="store_true",
                   help="load a checkpoint whose keys do not all match (the mismatches are still printed)")


def add_spec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inputs")
    g.add_argument("--input", action=Repeatable, default=[], metavar="NAME:DIMS:DTYPE[:LOW..HIGH]",
                   help="repeatable, in the model's argument order; a dim is an int or label=int "
                        "(dynamic), e.g. x:batch=1,3,224,224:float32; dtypes: float32 float16 int64 "
                        "int32 uint8 bool")
    g.add_argument("--output-names", metavar="a,b,c", help="names for the outputs (default: dict keys or "
                   "namedtuple fields, else output_0, output_1, ...)")
    g.add_argument("--allow-all-false-masks", action="store_true",
                   help="let synthetic bool masks be all False (by default each row keeps a True)")


def add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def config_defaults(path: str, command: str) -> dict[str, Any]:
    """A ``--config`` file as argparse defaults for ``command`` (dest -> value); command-line values win.

    Top-level keys apply to every command; ``[export]`` to export; ``[verify]`` to verify, and its
    n, seed, samples and sweep to migrate and optimize too.
    """
    from torch2ort.config import config_inputs, load_config

    data = load_config(path)
    keys = ("model", "kwargs", "checkpoint", "trust_checkpoint", "trust_remote_code", "non_strict",
            "preprocess_module", "output_names", "allow_all_false_masks")
    out = {k: data[k] for k in keys if k in data}
    inputs = config_inputs(data)
    if inputs:
        out["input"] = inputs
    if command == "export":
        out.update(data.get("export", {}))
    verify = data.get("verify", {})
    shared = ("n", "seed", "samples", "sweep") if command in ("migrate", "optimize") else ()
    out.update({k: v for k, v in verify.items() if command == "verify" or k in shared})
    return out


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """The model options of ``add_model_args`` as ``torch2ort.api`` keywords."""
    return {"kwargs": args.kwargs, "checkpoint": args.checkpoint, "trust_checkpoint": args.trust_checkpoint,
            "strict": not args.non_strict, "preprocess_module": args.preprocess_module,
            "trust_remote_code": args.trust_remote_code}


def spec_options(args: argparse.Namespace) -> dict[str, Any]:
    """The inputs of ``add_spec_args`` as ``torch2ort.api`` keywords."""
    return {"inputs": args.input or None, "output_names": args.output_names,
            "allow_all_false_masks": args.allow_all_false_masks}


def make_console():
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # logs and CI: wide enough that tables do not fold
        console = Console(highlight=False, width=160)
    return console


def note_printer(console):
    """A ``log`` for the API calls: one dim bullet line per note."""
    from rich.markup import escape

    return lambda note: console.print(f"[dim]•[/dim] {escape(note)}", highlight=False)


def parse_options(pairs: list[str]) -> dict:
    """``--option NAME=VALUE`` pairs (``predict``, ``batch``): a value that parses as JSON is that JSON."""
    import json

    from torch2ort.errors import UsageError

    options = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name.isidentifier():
            raise UsageError(f"--option {pair!r}: expected NAME=VALUE, e.g. aggregation_strategy=first")
        try:
            options[name] = json.loads(value)
        except ValueError:
            options[name] = value
    return options
