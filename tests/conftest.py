"""Shared fixtures: the model families, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.families import FAMILIES, run_cli

pytest_plugins = ["fixtures.turns"]  # `serial` tests run alone under pytest-xdist

# Fixtures that benchmark in subprocesses (or migrate with the bench on): a test that uses one is slow,
# whatever its own marks say. Checked by name; keep these names unique across the suite.
SLOW_FIXTURES = {"migrated", "bench_report"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """family name -> path of its ONNX export (exported on first use, then cached)."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("exported")

    def get(name: str) -> Path:
        if name not in cache:
            fam = FAMILIES[name]
            out = root / f"{name}.onnx"
            assert run_cli("export", fam.model, *fam.cli_inputs(), "-o", out) == 0
            cache[name] = out
        return cache[name]

    return get


@pytest.fixture(scope="session")
def llama_decoder(tmp_path_factory):
    """A tiny peaked Llama: its folder, the loaded model, its ONNX export (KV cache) and a bundle of that."""
    from types import SimpleNamespace

    from fixtures.decoders import decoder_dir, export_decoder
    from torch2ort.bundle.writer import pack
    from torch2ort.sources import ModelRequest, load_model

    root = tmp_path_factory.mktemp("decoder")
    folder = decoder_dir(root / "llama", "llama")
    loaded = load_model(ModelRequest(f"hf:{folder}"))
    export = export_decoder(loaded, root / "llama.onnx")
    hints = loaded.hints
    bundle = pack(export.path, root / "bundle", name="llama", tokenizer=hints.tokenizer, generation=hints.generation)
    return SimpleNamespace(folder=folder, loaded=loaded, export=export, onnx=Path(export.path), bundle=bundle)


@pytest.fixture(scope="session")
def qwen2_decoder(tmp_path_factory):
    """A tiny peaked Qwen2 (attention biases, grouped KV heads): its folder, the loaded model and its ONNX export."""
    from types import SimpleNamespace

    from fixtures.decoders import decoder_dir, export_decoder
    from torch2ort.sources import ModelRequest, load_model

    root = tmp_path_factory.mktemp("decoder-qwen2")
    folder = decoder_dir(root / "qwen2", "qwen2")
    loaded = load_model(ModelRequest(f"hf:{folder}"))
    export = export_decoder(loaded, root / "qwen2.onnx")
    return SimpleNamespace(folder=folder, loaded=loaded, export=export, onnx=Path(export.path))


@pytest.fixture(scope="session")
def migrated(tmp_path_factory):
    """One full `torch2ort migrate` of the mobilenet family, bench included (short), shared by tests."""
    fam = FAMILIES["mobilenet"]
    out = tmp_path_factory.mktemp("migrated") / "out"
    labels = out.parent / "labels.txt"
    labels.write_text("\n".join(f"class_{i}" for i in range(7)) + "\n")
    code = run_cli("migrate", fam.model, *fam.cli_inputs(), "--output-names", "logits", "--labels", labels,
                   "--preprocess", "image", "--postprocess", "softmax-topk", "--batch", "1,4", "--seconds", "0.1",
                   "--repeats", "1", "-o", out)
    assert code == 0
    return out
