"""Pin what ``import torch2ort`` exports: the same objects whatever was imported first, and every CLI option
reachable from Python under the same name."""

from __future__ import annotations

import argparse
import inspect
import subprocess
import sys

import pytest

import torch2ort
from torch2ort import api
from torch2ort.cli import COMMANDS, build_parser

PUBLIC = sorted([
    "Bundle", "BundleError", "Dim", "ExportError", "InputSpec", "ModelRequest", "ParityError", "ParityReport",
    "RunResults", "TensorSpec", "Torch2OrtError", "UsageError", "__version__", "bench", "compare", "export_onnx",
    "load", "load_model", "migrate", "optimize", "pack", "run", "serve", "verify_onnx"])


def test_public_names():
    assert torch2ort.__all__ == PUBLIC
    assert set(PUBLIC) <= set(dir(torch2ort)) | set(torch2ort._LAZY)


def test_names_are_the_objects_they_claim_to_be():
    from torch2ort.parity import compare
    from torch2ort.runtime import Bundle
    from torch2ort.sources import ModelRequest, load_model

    for name in ("migrate", "export_onnx", "verify_onnx", "optimize", "bench", "pack", "load"):
        assert getattr(torch2ort, name) is getattr(api, name), name
        assert inspect.isfunction(getattr(torch2ort, name)), name
    assert torch2ort.Bundle is Bundle
    assert torch2ort.ModelRequest is ModelRequest and torch2ort.load_model is load_model
    assert torch2ort.compare is compare.compare and torch2ort.run is compare.run
    assert torch2ort.serve is sys.modules["torch2ort.serve"] and callable(torch2ort.serve.serve)


@pytest.mark.parametrize("first", ["torch2ort.optimization.planner", "torch2ort.benchmark.run", "torch2ort.api"])
def test_identity_does_not_depend_on_import_order(first):
    # Issue 23: torch2ort.optimize was the function, then the module once the subpackage was imported.
    code = ("import importlib, torch2ort\n"
            "a = (torch2ort.optimize, torch2ort.bench, torch2ort.migrate)\n"
            f"importlib.import_module({first!r})\n"
            "import torch2ort.optimization.passes, torch2ort.benchmark.stats, torch2ort.pipeline.migrate\n"
            "b = (torch2ort.optimize, torch2ort.bench, torch2ort.migrate)\n"
            "assert all(x is y for x, y in zip(a, b)), (a, b)\n"
            "assert all(callable(x) and type(x).__name__ == 'function' for x in b), b\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_does_not_pull_torch():
    code = ("import sys, torch2ort, torch2ort.spec, torch2ort.parity.compare, torch2ort.api\n"
            "torch2ort.Bundle, torch2ort.migrate, torch2ort.serve\n"
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# CLI dest -> the api keyword it becomes, where the names differ; None: the option is about the CLI itself.
RENAMED = {"input": "inputs", "json": "json_path", "non_strict": "strict", "no_bench": "bench",
           "no_profile": "profile", "config": None, "func": None, "command": None, "help": None,
           "positional": None}
API_OF = {"migrate": api.migrate, "export": api.export_onnx, "verify": api.verify_onnx, "pack": api.pack,
          "bench": api.bench, "optimize": api.optimize}
MODEL_OPTIONS = set(inspect.signature(api.model_request).parameters) - {"model"}


def _dests(command: str) -> set[str]:
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices[command]._actions} - {"help"}


@pytest.mark.parametrize("command", sorted(API_OF))
def test_every_cli_option_has_its_api_keyword(command):
    params = set(inspect.signature(API_OF[command]).parameters)
    if command == "optimize":  # pass options and model options travel as keyword groups
        params |= set(inspect.signature(api.pass_options).parameters) | MODEL_OPTIONS
    else:
        params |= MODEL_OPTIONS
    missing = []
    for dest in _dests(command):
        key = RENAMED.get(dest, dest)
        if key is not None and key not in params:
            missing.append(dest)
    assert not missing, f"{command}: CLI options with no api keyword: {missing}"
    assert set(COMMANDS) >= set(API_OF)
