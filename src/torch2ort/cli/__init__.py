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
from torch2ort.errors import Torch2OrtError

# command -> module; each module has add_parser(subparsers) and run(args) -> int.
COMMANDS = {
    "migrate": "torch2ort.cli.migrate",
    "export": "torch2ort.cli.export",
    "verify": "torch2ort.cli.verify",
    "pack": "torch2ort.cli.pack",
    "bench": "torch2ort.cli.bench",
    "optimize": "torch2ort.cli.optimize",
    "predict": "torch2ort.cli.predict",
    "serve": "torch2ort.cli.serve",
    "triton": "torch2ort.cli.triton",
}

EPILOG = "exit codes: 0 pass, 1 parity outside tolerance, 2 bad input, 3 export failed, 4 internal error"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors: one line, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torch2ort", description="Migrate PyTorch models to ONNX Runtime, with proof.",
                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"torch2ort {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # for "the command to reproduce this"
    if not args.command:
        parser.print_help()
        return 2
    try:
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
        first = " ".join(str(exc).split())[:300]
        print(f"torch2ort {args.command}: internal error: {type(exc).__name__}: {first} "
              "(set TORCH2ORT_DEBUG=1 for the traceback)", file=sys.stderr)
        return 4


def entry() -> None:
    sys.exit(main())
