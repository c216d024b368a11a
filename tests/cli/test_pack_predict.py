from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.families import FAMILIES, MODELS, run_cli
from runtime.test_processors import _tiny_tokenizer
from torch2ort.runtime import Bundle


def test_pack_from_model_records_parity(tmp_path, capsys):
    fam = FAMILIES["ecg_resnet1d"]
    labels = tmp_path / "labels.txt"
    labels.write_text("AF\nRBBB\nLBBB\nPVC\nNormal\n")
    out = tmp_path / "ecg"
    rc = run_cli("pack", fam.model, *fam.cli_inputs(), "-o", out, "--labels", labels, "--postprocess", "threshold")
    assert rc == 0
    m = json.loads((out / "torch2ort.json").read_text())
    assert m["name"] == "EcgResNet1d" and m["labels"][0] == "AF"
    assert m["parity"]["passed"] is True and m["parity"]["outputs"]["output_0"]["max_abs"] < 1e-4
    np.save(tmp_path / "ecg.npy", np.random.default_rng(0).standard_normal((3, 12, 256)).astype(np.float32))
    capsys.readouterr()
    assert run_cli("predict", out, "--input", f"ecg={tmp_path / 'ecg.npy'}") == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["outputs"]["labels"]) == 3 and np.array(printed["outputs"]["output_0"]).shape == (3, 5)
    assert run_cli("predict", out, "--input", f"ecg={tmp_path / 'ecg.npy'}", "--raw") == 0
    assert set(json.loads(capsys.readouterr().out)["outputs"]) == {"output_0"}


def test_failed_verification_writes_no_bundle(tmp_path):
    out = tmp_path / "b"
    rc = run_cli("pack", f"{MODELS}:DataDependentBranch", "--input", "x:batch=2,4:float32", "-o", out, "--n", "8")
    assert rc == 1 and not out.exists()


def test_text_bundle_predicts_from_raw_text(exported, tmp_path, capsys):
    _tiny_tokenizer(tmp_path / "tokenizer.json")
    post = json.dumps([{"op": "mean_pool", "output": "last_hidden_state"}, {"op": "l2_normalize"}])
    out = tmp_path / "text"
    assert run_cli("pack", exported("encoder"), "-o", out, "--tokenizer", tmp_path / "tokenizer.json",
                   "--preprocess", "text", "--postprocess", post) == 0
    capsys.readouterr()
    assert run_cli("predict", out, "--text", "list files", "--text", "show disk usage in a directory") == 0
    emb = np.array(json.loads(capsys.readouterr().out)["outputs"]["embeddings"])
    assert emb.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    bundle = Bundle.load(out)
    direct = bundle.predict(["list files", "show disk usage in a directory"])
    np.testing.assert_allclose(direct["embeddings"], emb, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args, fragment", [
    (["--input", "image"], "expected NAME=FILE.npy"),
    (["--input", "image=missing.npy"], "not a readable .npy"),
    (["--input", "image=@missing.png"], "no such file"),
    ([], "no inputs"),
])
def test_predict_bad_input_exit_2(exported, tmp_path, capsys, args, fragment):
    out = tmp_path / "b"
    assert run_cli("pack", exported("mobilenet"), "-o", out) == 0
    capsys.readouterr()
    assert run_cli("predict", out, *args) == 2
    assert fragment in capsys.readouterr().err


def test_predict_on_a_tampered_bundle_exit_2(exported, tmp_path, capsys):
    out = tmp_path / "b"
    assert run_cli("pack", exported("mobilenet"), "-o", out) == 0
    (out / "README.md").write_text("edited")
    assert run_cli("predict", out, "--input", "image=x.npy") == 2
    assert "'README.md' has been modified" in capsys.readouterr().err


def test_predict_reads_the_file_from_stdin(exported, tmp_path, monkeypatch, capsys):
    """`--input image=@-`: the file's bytes on standard input, decoded in memory, as `@FILE` answers."""
    import io
    import sys

    import numpy as np
    from PIL import Image

    out = tmp_path / "b"
    assert run_cli("pack", exported("mobilenet"), "-o", out, "--preprocess", "image") == 0
    path = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    capsys.readouterr()

    def predict(value: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))  # a pipe: not a terminal
        code = run_cli("predict", out, "--input", f"image={value}")
        return (code, *capsys.readouterr())

    by_path, by_stdin = predict(f"@{path}"), predict("@-", path.read_bytes())
    assert by_path[0] == 0 and by_stdin == by_path and '"output_0"' in by_path[1]
    empty = predict("@-")
    assert empty[0] == 2 and "standard input is empty" in empty[2] and "Traceback" not in empty[2]
    junk = predict("@-", b"not an image")
    assert junk[0] == 2 and "not a readable image" in junk[2]
