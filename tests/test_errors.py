"""The error tree is whole, and ``describe`` is the one way an exception becomes a line of text."""

from __future__ import annotations

import pytest

from torch2ort import errors
from torch2ort.errors import (
    ExportError,
    PassFailedError,
    ProtocolError,
    RunnerError,
    Torch2OrtError,
    WireError,
    describe,
)


@pytest.mark.parametrize("cls", [RunnerError, ProtocolError, WireError, PassFailedError, errors.PassError])
def test_every_error_is_in_the_tree(cls):
    assert issubclass(cls, Torch2OrtError)


def test_exit_codes_follow_the_tree():
    assert PassFailedError("x").exit_code == 3 == RunnerError("x").exit_code == ExportError("x").exit_code
    assert errors.PassError("x").exit_code == 2
    assert ProtocolError("x", 413).status == 413 and ProtocolError("x").status == 400


def test_no_exception_class_is_defined_outside_errors_py():
    import ast
    from pathlib import Path

    src = Path(errors.__file__).parent
    defined = []
    for path in src.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id.endswith(("Error", "Exception")) for b in node.bases):
                defined.append(f"{path.relative_to(src)}:{node.name}")
    assert defined == [] or all(d.endswith("_Stop") for d in defined), defined


def test_describe_one_line():
    assert describe(ValueError("bad\n  value\tthere")) == "ValueError: bad value there"
    assert describe(KeyError()) == "KeyError"
    assert describe(Torch2OrtError("ours\nonly")) == "ours only"
    assert len(describe(RuntimeError("x" * 1000))) == len("RuntimeError: ") + 300



def test_a_library_crash_inside_a_pass_is_a_conversion_failure(tmp_path):
    """A quantiser that raises is exit 3 (conversion failed), not exit 2 (bad invocation)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from torch2ort.optimization.passes.base import Pass, PassContext

    class Crashes(Pass):
        name = "crashes"

        def run(self, src, out, ctx):
            raise ZeroDivisionError("inside the library")

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(src))
    with pytest.raises(PassFailedError) as info:
        Crashes()(src, tmp_path / "out.onnx", PassContext(workdir=tmp_path, calibration=[{"x": np.ones(1, "f")}]))
    assert info.value.exit_code == 3
    assert "crashes failed: ZeroDivisionError: inside the library" in info.value.one_line()
