"""Shared fixtures: the model families, exported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.families import FAMILIES, run_cli


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

