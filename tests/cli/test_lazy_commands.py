"""Commands load lazily: ``torch2ort predict`` imports its own module and nothing torch-side."""

from __future__ import annotations

import json
import subprocess
import sys

from torch2ort.cli import COMMANDS, build_parser

PROBE = """
import json, sys
from torch2ort.cli import main
try:
    main([{argv}])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("torch2ort", "torch", "onnx")))))
"""


def _loaded(*argv: str) -> list[str]:
    code = PROBE.format(argv=", ".join(repr(a) for a in argv))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_predict_help_loads_only_its_own_command():
    loaded = _loaded("predict", "--help")
    assert "torch2ort.cli.predict" in loaded
    assert not [m for m in loaded if m.startswith("torch2ort.cli.") and m != "torch2ort.cli.predict"]
    assert not [m for m in loaded if m.split(".")[0] in ("torch", "onnx", "onnxscript")]


def test_top_level_help_lists_every_command_without_importing_them():
    loaded = _loaded("--help")
    assert not [m for m in loaded if m.startswith("torch2ort.cli.")]
    text = build_parser().format_help()
    for name, (_, help_line) in COMMANDS.items():
        assert name in text and help_line.split()[0] in text


def test_each_command_builds_its_full_parser():
    for name in COMMANDS:
        parser = build_parser(name)
        sub = next(a for a in parser._actions if a.dest == "command")  # noqa: SLF001
        assert any(a.option_strings for a in sub.choices[name]._actions if a.dest != "help"), name
