"""Bad input of every kind: exit 2, one clear line on stderr, never a traceback (real subprocess)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fixtures.families import MODELS

FAM = [f"{MODELS}:MobileNetTiny", "--input", "image:batch=1,3,32,32:float32"]


class Custom:
    pass


def _cli(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "torch2ort", *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _pickle_ckpt(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": {}, "obj": Custom()}, path)
    return path


def _wrong_keys(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save({"not.a.key": torch.zeros(1)}, path)
    return path


def _garbage_onnx(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"this is not protobuf")
    return path


CASES = {
    "corrupt onnx": (lambda p: ["verify", FAM[0], _garbage_onnx(p), *FAM[1:]], "could not load"),
    "bad spec": (lambda p: ["export", FAM[0], "--input", "image:1,3,x:float32"], "not an int or label=int"),
    "bad dtype": (lambda p: ["export", FAM[0], "--input", "image:1,3,32,32:double"], "unknown dtype"),
    "missing model file": (lambda p: ["export", f"{p}/nope.py:Net", *FAM[1:]], "model file not found"),
    "missing onnx": (lambda p: ["verify", *FAM[:1], p / "nope.onnx", *FAM[1:]], "ONNX file not found"),
    "missing checkpoint": (lambda p: ["export", *FAM, "--checkpoint", p / "no.pt"], "checkpoint not found"),
    "pickle without trust": (lambda p: ["export", *FAM, "--checkpoint", _pickle_ckpt(p)], "--trust-checkpoint"),
    "wrong keys": (lambda p: ["export", *FAM, "--checkpoint", _wrong_keys(p)], "unexpected: not.a.key"),
    "bad kwargs": (lambda p: ["export", *FAM, "--kwargs", "{nope"], "--kwargs is not valid JSON"),
    "spec does not fit model": (lambda p: ["export", FAM[0], "--input", "image:1,5,32,32:float32"],
                                "does not run on the example inputs"),
    "unknown option": (lambda p: ["export", *FAM, "--bogus"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exit_2_with_one_line(case, tmp_path):
    make_args, fragment = CASES[case]
    args = make_args(tmp_path)
    if args[0] == "export":
        args += ["-o", tmp_path / "out.onnx"]
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_help_lists_commands_and_exit_codes():
    proc = _cli("--help")
    assert proc.returncode == 0
    assert "export" in proc.stdout and "verify" in proc.stdout and "exit codes" in proc.stdout
