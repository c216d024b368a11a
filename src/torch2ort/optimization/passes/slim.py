"""onnxslim: constant folding, dead-node and redundant-op elimination, shape simplification."""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import Pass, PassContext, PassResult, load_model, save_model


class Slim(Pass):
    name = "slim"

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnxslim

        slimmed = onnxslim.slim(load_model(src))
        save_model(slimmed, out)
        return PassResult(out, False)
