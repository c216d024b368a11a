"""The ``torch2ort`` command: thin subcommands over the library, one file each.

Exit codes, for every command: 0 pass, 1 parity outside tolerance, 2 bad invocation or input,
3 export or conversion failed, 4 an internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from torch2ort import __version__
from torch2ort.errors import Torch2OrtError, describe

# command -> (module, one-line help). Each module has add_parser(subparsers) and run(args) -> int, and is
# imported only when its command runs, so `torch2ort predict` loads no torch-side module.
COMMANDS = {
    "migrate": ("torch2ort.cli.migrate", "the whole migration in one command: a verified torch-free bundle + a report"),
    "export": ("torch2ort.cli.export", "export a PyTorch model to ONNX (dynamo first, TorchScript fallback)"),
    "verify": ("torch2ort.cli.verify", "prove PyTorch/ONNX Runtime parity (exit 1 on a mismatch)"),
    "pack": ("torch2ort.cli.pack", "write a torch-free bundle (model, manifest, checksums, pipelines)"),
    "bench": ("torch2ort.cli.bench", "benchmark PyTorch vs ONNX Runtime in isolated processes"),
    "optimize": ("torch2ort.cli.optimize", "optimise and quantise behind accuracy gates; keep the fastest that passes"),
    "predict": ("torch2ort.cli.predict", "run a bundle (torch-free) and print JSON"),
    "serve": ("torch2ort.cli.serve", "serve bundles over the Open Inference Protocol (KServe v2) REST API"),
    "batch": ("torch2ort.cli.batch", "batch inference over a folder, text file or table into Parquet (local or Ray)"),
    "triton": ("torch2ort.cli.triton", "export a bundle to a Triton model repository (config.pbtxt + model.onnx)"),
}

EPILOG = ("exit codes: 0 pass, 1 parity outside tolerance, 2 bad input, 3 export or conversion failed, "
          "4 internal error (a bug)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser for ``command`` (its module imported); every other command is a name and a help line."""
    parser = _Parser(prog="torch2ort", description="Migrate PyTorch models to ONNX Runtime, with proof.",
                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"torch2ort {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_line) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    parser.set_defaults(command_parsers=sub.choices)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand named in argv: the first word that is not an option."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    words = list(argv) if argv is not None else sys.argv[1:]
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    args.argv = words  # for "the command to reproduce this"
    if not args.command:
        parser.print_help()
        return 2
    try:
        if getattr(args, "config", None):  # the file's values become defaults; what the command line gave wins
            from torch2ort.cli.common import config_defaults

            args.command_parsers[args.command].set_defaults(**config_defaults(args.config, args.command))
            args = parser.parse_args(words)
            args.argv = words
        return int(args.func(args) or 0)
    except Torch2OrtError as exc:
        print(f"torch2ort {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `torch2ort predict … | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if os.environ.get("TORCH2ORT_DEBUG"):
            raise
        print(f"torch2ort {args.command}: internal error: {describe(exc)} "
              "(set TORCH2ORT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 4


def entry() -> None:
    sys.exit(main())
