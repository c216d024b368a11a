"""Shared fixtures: the model families users migrate, exported once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from torch2ort.cli import main
from torch2ort.spec import InputSpec

FIXTURES = Path(__file__).parent / "fixtures"
MODELS = FIXTURES / "models.py"


@dataclass(frozen=True)
class Family:
    name: str
    target: str
    inputs: tuple[str, ...]

    @property
    def model(self) -> str:
        return f"{MODELS}:{self.target}"

    @property
    def spec(self) -> InputSpec:
        return InputSpec.from_cli(list(self.inputs))

    def cli_inputs(self) -> list[str]:
        return [a for i in self.inputs for a in ("--input", i)]


FAMILIES = {
    f.name: f for f in [
        Family("ecg_resnet1d", "EcgResNet1d", ("ecg:batch=2,12,256:float32",)),
        Family("attn_mil", "AttnMil", ("spectrograms:batch=1,segments=8,3,32,32:float32",
                                       "segment_mask:batch=1,segments=8:bool")),
        Family("mobilenet", "MobileNetTiny", ("image:batch=1,3,32,32:float32:0..1",)),
        Family("lipsync", "LipSyncTiny", ("face:batch=1,6,32,32:float32:0..1", "mel:batch=1,1,16,20:float32")),
        Family("encoder", "TinyEncoder", ("input_ids:batch=2,seq=16:int64:0..99",
                                          "attention_mask:batch=2,seq=16:int64:1..1")),
    ]
}


def run_cli(*argv: str) -> int:
    return main([str(a) for a in argv])


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


def load_family(name: str):
    from torch2ort.sources import ModelRequest, load_model

    return load_model(ModelRequest(FAMILIES[name].model))
