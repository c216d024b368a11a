"""Every numeric option of every command, given NaN, ±inf, 0, a negative and a huge value: exit 2 with one
line, never a traceback, exit 4 or a hang (issue 27). The other arguments name files that do not exist, so a
value the option accepts still ends at once, on that other error."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from torch2ort.cli import COMMANDS, build_parser

VALUES = ["nan", "inf", "-inf", "-1", "0", "1e30", "1" + "0" * 30]
INVALID = {"nan", "inf", "-inf", "-1", "1e30", "1" + "0" * 30}  # for every option: its error comes first


def numeric_options(command: str) -> list[str]:
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(a.option_strings[-1] for a in sub.choices[command]._actions
                  if a.option_strings and a.type in (int, float))


def base_argv(command: str, tmp) -> list[str]:
    model, onnx, bundle, spec = "nowhere/net.py:Net", str(tmp / "missing.onnx"), str(tmp / "no-bundle"), \
        ["--input", "x:batch=1,3:float32"]
    return {
        "migrate": [model, *spec, "--no-bench", "-o", str(tmp / "out")],
        "export": [model, *spec, "-o", str(tmp / "m.onnx")],
        "verify": [model, onnx, *spec],
        "pack": [onnx, "-o", str(tmp / "b")],
        "bench": [model, "--onnx", onnx, *spec],
        "optimize": [model, onnx, *spec, "-o", str(tmp / "o.onnx")],
        "predict": [bundle],
        "serve": [bundle],
        "batch": [bundle, str(tmp / "in.txt"), "-o", str(tmp / "out.parquet")],
        "triton": [bundle, "-o", str(tmp / "repo")],
    }[command]


def test_every_numeric_option_fails_in_one_line(tmp_path):
    cases = [[command, *base_argv(command, tmp_path), f"{option}={value}"]
             for command in COMMANDS for option in numeric_options(command) for value in VALUES]
    assert len(cases) > 200
    script = (
        "import contextlib, io, json, sys\n"
        "from torch2ort.cli import main\n"
        "out = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            rc = main(argv)\n"
        "        except SystemExit as exc:\n"
        "            rc = exc.code\n"
        "    out.append([argv, rc, err.getvalue()])\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True,
                          timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad = []
    for argv, rc, err in json.loads(proc.stdout):
        lines = err.strip().splitlines()
        option, _, value = argv[-1].partition("=")
        named = option in err or option.lstrip("-").replace("-", "_") in err
        if rc != 2 or len(lines) != 1 or "internal error" in err or "Traceback" in err or (
                value in INVALID and not named):
            bad.append(f"{' '.join(argv[:1] + argv[-1:])}: rc {rc}: {err.strip()[:200]}")
    assert not bad, f"{len(bad)} bad:\n" + "\n".join(bad)
