"""Hostile input through the real CLI: exit 2 with one line on stderr, and nothing written outside the folder named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fixtures.families import FAMILIES, MODELS, run_cli
from runtime.tiny_models import image_model, rewrite_manifest, vector_model
from torch2ort.bundle.writer import pack


def _refused(capsys, *argv, fragment: str) -> str:
    capsys.readouterr()
    rc = run_cli(*argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def vec(tmp_path):
    return pack(vector_model(tmp_path / "vec.onnx"), tmp_path / "vec", name="vec")


@pytest.fixture
def img(tmp_path):
    return pack(image_model(tmp_path / "img.onnx"), tmp_path / "img", name="img", preprocess="image",
                postprocess="softmax-topk")


# --- model names: pack and triton -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil", "/tmp/evil-abs", "a/b", ".hidden", "x" * 200])
def test_pack_refuses_a_bad_name_and_writes_nothing(tmp_path, capsys, name):
    src = vector_model(tmp_path / "src" / "tiny.onnx")
    before = _tree(tmp_path)
    _refused(capsys, "pack", src, "-o", tmp_path / "out", "--name", name,
             fragment=f"--name {name!r} is not allowed: a model name is 1 to 128 characters")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("evil", ["../victim", "ABS"])
def test_triton_refuses_a_bundle_whose_name_escapes(tmp_path, capsys, vec, evil):
    tri = tmp_path / "tri"
    (tri / "victim").mkdir(parents=True)
    (tri / "victim" / "notes.txt").write_text("mine")
    (tri / "repo").mkdir()
    name = str(tri / "victim") if evil == "ABS" else evil
    rewrite_manifest(vec, name=name)  # the manifest is not checksummed: only its own check stands in the way
    before = _tree(tmp_path)
    _refused(capsys, "triton", vec, "-o", tri / "repo", "--force", fragment="is not allowed: a model name is")
    assert _tree(tmp_path) == before and (tri / "victim" / "notes.txt").read_text() == "mine"


def test_triton_never_touches_the_users_readme(tmp_path, capsys, img):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# my models\n")
    assert run_cli("triton", img, "-o", repo) == 0
    assert (repo / "README.md").read_text() == "# my models\n"
    notes = (repo / "img" / "README.md").read_text()
    assert "preprocess `resize`" in notes and "must now do itself" in notes
    assert run_cli("triton", img, "-o", repo, "--force") == 0  # replacing our own model keeps theirs
    assert (repo / "README.md").read_text() == "# my models\n"


def test_triton_force_does_not_delete_a_folder_that_is_not_a_triton_model(tmp_path, capsys, vec):
    (tmp_path / "repo" / "vec").mkdir(parents=True)
    (tmp_path / "repo" / "vec" / "thesis.tex").write_text("years of work")
    _refused(capsys, "triton", vec, "-o", tmp_path / "repo", "--force", fragment="has no config.pbtxt")
    assert (tmp_path / "repo" / "vec" / "thesis.tex").read_text() == "years of work"


# --- predict ----------------------------------------------------------------------------------------
def _npy_header_only(path, shape):
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(b"\0" * 64)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda p: (p / "empty.npy").write_bytes(b"") and None or p / "empty.npy", "the file is empty"),
    (lambda p: "/dev/null", "not a readable .npy file (no such regular file)"),
    (lambda p: _npy_header_only(p / "huge.npy", (10**12, 3, 64, 64)), "header claims more data than the file"),
    (lambda p: (p / "text.npy").write_text("hello") and p / "text.npy", "not a readable .npy file"),
])
def test_predict_bad_npy(tmp_path, capsys, vec, make, fragment):
    _refused(capsys, "predict", vec, "--input", f"x={make(tmp_path)}", fragment=fragment)


def test_predict_threads_are_bounded(tmp_path, capsys, vec):
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    _refused(capsys, "predict", vec, "--input", f"x={tmp_path / 'x.npy'}", "--threads", "100000",
             fragment="threads 100000 is out of range: give 1 to")
    assert run_cli("predict", vec, "--input", f"x={tmp_path / 'x.npy'}", "--threads", "1") == 0


def test_predict_input_names_are_checked_and_given_once(tmp_path, capsys, img, vec):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    _refused(capsys, "predict", img, "--input", f"img=@{tmp_path / 'x.png'}",
             fragment="the bundle has no input 'img'; its inputs: image")
    _refused(capsys, "predict", vec, "--input", f"x={tmp_path / 'x.npy'}", "--input", f"x={tmp_path / 'x.npy'}",
             fragment="--input x=... is given twice")
    capsys.readouterr()
    assert run_cli("predict", img, "--input", f"image=@{tmp_path / 'x.png'}") == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["topk"][0][0]["index"] in (0, 1, 2)


def test_predict_image_pixel_limit(tmp_path, capsys, img):
    from PIL import Image

    Image.new("1", (12500, 12500)).save(tmp_path / "bomb.png")
    _refused(capsys, "predict", img, "--input", f"image=@{tmp_path / 'bomb.png'}",
             fragment="12500x12500 = 156,250,000 pixels, over the limit of 40,000,000")
    Image.new("RGB", (20, 10)).save(tmp_path / "small.png")
    _refused(capsys, "predict", img, "--input", f"image=@{tmp_path / 'small.png'}", "--max-image-pixels", "199",
             fragment="over the limit of 199")
    _refused(capsys, "predict", img, "--input", f"image=@{tmp_path / 'small.png'}", "--max-image-pixels", "0",
             fragment="--max-image-pixels 0: must be a whole number from 1")
    assert run_cli("predict", img, "--input", f"image=@{tmp_path / 'small.png'}", "--max-image-pixels", "200") == 0


# --- export (refused before the model is even loaded) -------------------------------------------------
def _cli(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "torch2ort", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


@pytest.mark.parametrize("argv, fragment", [
    (["--input", "image:batch=1,3,32,32:float32", "-o", "/proc/x.onnx"], "cannot write /proc/x.onnx"),
    (["--input", "image:batch=100000,3,6400,6400:float32", "-o", "out.onnx"], "the example inputs would take"),
])
def test_export_refusals_are_one_line(tmp_path, argv, fragment):
    proc = _cli("export", f"{MODELS}:MobileNetTiny", *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_output_folders_that_cannot_exist_are_one_line(exported, tmp_path, capsys):
    """Issue 27: `pack -o userfile/b`, `pack -o /proc/x` and `triton -o` under a file were tracebacks."""
    user = tmp_path / "userfile"
    user.write_text("mine")
    onnx_path = exported("mobilenet")
    bundle = tmp_path / "bundle"
    assert run_cli("pack", onnx_path, "-o", bundle) == 0
    for argv in (["pack", onnx_path, "-o", user / "b"], ["pack", onnx_path, "-o", "/proc/torch2ort-x"],
                 ["triton", bundle, "-o", user / "repo"], ["triton", bundle, "-o", "/proc/torch2ort-r"]):
        capsys.readouterr()
        assert run_cli(*argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "cannot create the folder" in err and len(err.splitlines()) == 1, err
    assert user.read_text() == "mine"


@pytest.mark.parametrize("argv, fragment", [
    (["--max-delay-ms", "nan"], "--max-delay-ms nan"),
    (["--max-delay-ms", "inf"], "--max-delay-ms inf"),
    (["--max-batch", "-1"], "--max-batch -1"),
    (["--instances", "0"], "--instances 0"),
])
def test_triton_values_are_checked(exported, tmp_path, capsys, argv, fragment):
    bundle = tmp_path / "bundle"
    assert run_cli("pack", exported("mobilenet"), "-o", bundle) == 0
    capsys.readouterr()
    assert run_cli("triton", bundle, "-o", tmp_path / "repo", *argv) == 2
    assert fragment in capsys.readouterr().err and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("content, fragment", [(bytes(range(256)) * 4, "not a UTF-8 text file"),
                                               (b"[1, 2", "not a JSON list")])
def test_labels_that_are_not_labels(exported, tmp_path, capsys, content, fragment):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(content)
    assert run_cli("pack", exported("mobilenet"), "-o", tmp_path / "b", "--labels", labels) == 2
    assert fragment in capsys.readouterr().err


def test_a_nan_input_range_is_refused(tmp_path, capsys):
    fam = FAMILIES["mobilenet"]
    assert run_cli("export", fam.model, "--input", "image:batch=1,3,32,32:float32:nan..inf",
                   "-o", tmp_path / "m.onnx") == 2
    assert "must be two finite numbers" in capsys.readouterr().err
