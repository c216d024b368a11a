"""Weight-only int4 / int8 quantisation of MatMul weights, ONNX Runtime's ``MatMulNBitsQuantizer``.

Each MatMul whose weight is a constant becomes one ``MatMulNBits`` (weights in ``bits`` bits, one
scale per ``block_size`` values along K, symmetric); activations stay float. ``accuracy_level``
is the precision MatMulNBits computes in on CPU (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8: int8
activations quantised per block, the fast path on AVX2/AVX-512 VNNI). Options are recorded with
the result, so the report says which block size and accuracy level a variant used.

This is the decoders' quantisation (onnxruntime-genai's builder writes the same op); it is judged by
generation gates (``parity/generation_gates.py``), not by logits tolerance.
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import Pass, PassContext, PassError, PassResult, load_model, quiet_library

BITS = (4, 8)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)


class WeightOnly(Pass):
    name = "weight-only"

    def __init__(self, bits: int = 4, block_size: int = 32, accuracy_level: int = 4, **options) -> None:
        if bits not in BITS:
            raise PassError(f"weight-only bits must be one of {BITS}, got {bits!r}")
        if not isinstance(block_size, int) or block_size < 16 or block_size & (block_size - 1):
            raise PassError(f"weight-only block_size must be a power of two >= 16, got {block_size!r}")
        if accuracy_level not in ACCURACY_LEVELS:
            raise PassError(f"weight-only accuracy_level must be one of {ACCURACY_LEVELS}, got {accuracy_level!r}")
        super().__init__(bits=bits, block_size=block_size, accuracy_level=accuracy_level, **options)

    @property
    def label(self) -> str:
        o = self.options
        return f"int{o['bits']}-weight[block={o['block_size']},accuracy={o['accuracy_level']}]"

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        o = self.options
        config = DefaultWeightOnlyQuantConfig(block_size=o["block_size"], is_symmetric=True,
                                              accuracy_level=o["accuracy_level"], bits=o["bits"])
        quantizer = MatMulNBitsQuantizer(load_model(src), bits=o["bits"], block_size=o["block_size"],
                                         is_symmetric=True, accuracy_level=o["accuracy_level"], algo_config=config)
        with quiet_library():
            quantizer.process()
        model = quantizer.model.model
        quantized = sum(1 for n in model.graph.node if n.op_type == "MatMulNBits")
        if not quantized:
            raise PassError(f"{self.label}: no MatMul with a constant weight to quantise")
        from torch2ort.optimization.passes.base import save_model

        save_model(model, out)
        return PassResult(out, True, {"bits": o["bits"], "block_size": o["block_size"],
                                      "accuracy_level": o["accuracy_level"], "matmulnbits": quantized})
