"""Weight-only int4 / int8 quantisation of MatMul weights, ONNX Runtime's ``MatMulNBitsQuantizer``.

Each MatMul whose weight is a constant becomes one ``MatMulNBits`` (weights in ``bits`` bits, one
scale per ``block_size`` values along K, symmetric); activations stay float. ``accuracy_level``
is the precision MatMulNBits computes in on CPU (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8: int8
activations quantised per block, the fast path on AVX2/AVX-512 VNNI). Options are recorded with
the result, so the report says which block size and accuracy level a variant used.

This is the decoders' quantisation (onnxruntime-genai's builder writes the same op); it is judged by
generation gates (``parity/generation_gates.py``), not by logits tolerance.

A tied LM head (Qwen2-0.5B's: the embedding matrix, 136 M of its 494 M parameters) reaches its MatMul
through a ``Transpose`` of the embedding, or, after the decoder fusion, as ``FusedMatMul(transB=1)``;
the quantiser takes neither, and a quarter of every token's FLOPs would stay fp32. Such a weight is
materialised transposed first (``untie_transposed_weights``), so the head is quantised too (the
embedding's Gather keeps the float matrix).

``embedding=True`` (4 bits only) quantises that Gather too, as ORT's ``GatherBlockQuantized`` (blocks along
the hidden axis), as onnxruntime-genai's builder does: the float embedding is otherwise the largest tensor
left in an int4 decoder (545 MB of Qwen2-0.5B's).
"""

from __future__ import annotations

from pathlib import Path

from torch2ort.optimization.passes.base import Pass, PassContext, PassError, PassResult, load_model, quiet_library

BITS = (4, 8)
ACCURACY_LEVELS = (0, 1, 2, 3, 4)


class WeightOnly(Pass):
    name = "weight-only"

    def __init__(self, bits: int = 4, block_size: int = 32, accuracy_level: int = 4, embedding: bool = False,
                 **options) -> None:
        if bits not in BITS:
            raise PassError(f"weight-only bits must be one of {BITS}, got {bits!r}")
        if not isinstance(embedding, bool):
            raise PassError(f"weight-only embedding must be true or false, got {embedding!r}")
        if embedding and bits != 4:
            raise PassError("weight-only embedding quantisation needs bits=4 (ORT's GatherBlockQuantized is 4-bit)")
        if not isinstance(block_size, int) or block_size < 16 or block_size & (block_size - 1):
            raise PassError(f"weight-only block_size must be a power of two >= 16, got {block_size!r}")
        if accuracy_level not in ACCURACY_LEVELS:
            raise PassError(f"weight-only accuracy_level must be one of {ACCURACY_LEVELS}, got {accuracy_level!r}")
        super().__init__(bits=bits, block_size=block_size, accuracy_level=accuracy_level, embedding=embedding,
                         **options)

    @property
    def label(self) -> str:
        o = self.options
        return (f"int{o['bits']}-weight[block={o['block_size']},accuracy={o['accuracy_level']}"
                + (",embedding" if o["embedding"] else "") + "]")

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        o = self.options
        source = load_model(src)
        untied = untie_transposed_weights(source)
        ops, axes, skip = ("MatMul",), (("MatMul", 0),), []
        if o["embedding"]:
            ops, axes = ("MatMul", "Gather"), (("MatMul", 0), ("Gather", 1))
            table = embedding_gathers(source)
            skip = [n.name for n in source.graph.node if n.op_type == "Gather" and n.name not in table]
        config = DefaultWeightOnlyQuantConfig(block_size=o["block_size"], is_symmetric=True,
                                              accuracy_level=o["accuracy_level"], bits=o["bits"],
                                              op_types_to_quantize=ops, quant_axes=axes)
        quantizer = MatMulNBitsQuantizer(source, bits=o["bits"], block_size=o["block_size"], is_symmetric=True,
                                         accuracy_level=o["accuracy_level"], algo_config=config, nodes_to_exclude=skip,
                                         op_types_to_quantize=ops, quant_axes=axes)
        with quiet_library():
            quantizer.process()
        model = quantizer.model.model
        biases = fold_bias_adds(model)
        quantized = sum(1 for n in model.graph.node if n.op_type == "MatMulNBits")
        gathers = sum(1 for n in model.graph.node if n.op_type == "GatherBlockQuantized")
        if not quantized:
            raise PassError(f"{self.label}: no MatMul with a constant weight to quantise")
        from torch2ort.optimization.passes.base import save_model

        save_model(model, out)
        return PassResult(out, True, {"bits": o["bits"], "block_size": o["block_size"],
                                      "accuracy_level": o["accuracy_level"], "matmulnbits": quantized,
                                      "transposed_weights": untied, "biases_folded": biases,
                                      **({"gather_block_quantized": gathers} if o["embedding"] else {})})


def fold_bias_adds(model) -> int:
    """``Add(MatMulNBits(x), b)`` with ``b`` a 1-D float initializer of N values becomes MatMulNBits' own bias input
    (index 5), in place, when the Add is the MatMulNBits output's only reader and not a graph output; one node
    less per biased projection (Qwen2's packed Q/K/V). Returns how many."""
    inits = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}
    attrs = lambda n: {a.name: a.i for a in n.attribute if a.type == a.INT}  # noqa: E731
    dead, count = [], 0
    for node in model.graph.node:
        if node.op_type != "MatMulNBits" or (len(node.input) > 5 and node.input[5]) or node.output[0] in outputs:
            continue
        users = readers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add" or users[0].domain not in ("", "ai.onnx"):
            continue
        add = users[0]
        bias = next((i for i in add.input if i != node.output[0]), None)
        init = inits.get(bias)
        if init is None or list(add.input).count(node.output[0]) != 1 or init.data_type != 1 \
                or list(init.dims) != [attrs(node).get("N")]:
            continue
        while len(node.input) < 5:
            node.input.append("")
        node.input.append(bias)
        node.output[0] = add.output[0]
        dead.append(add)
        count += 1
    for add in dead:
        model.graph.node.remove(add)
    return count


def embedding_gathers(model) -> set[str]:
    """Names of the Gathers that look rows up in a 2-D float32 initializer with a name (a token embedding): the only
    Gathers ``embedding=True`` quantises (ORT's quantiser would otherwise try every Gather of a constant)."""
    inits = {i.name: i for i in model.graph.initializer}
    return {n.name for n in model.graph.node if n.op_type == "Gather" and n.name and n.input[0] in inits
            and len(inits[n.input[0]].dims) == 2 and inits[n.input[0]].data_type == 1}


def untie_transposed_weights(model) -> int:
    """``MatMul(x, Transpose(W))`` and ``FusedMatMul(x, W, transB=1)`` with a constant 2-D ``W`` become
    ``MatMul(x, Wᵀ)`` with ``Wᵀ`` a new initializer, in place; returns how many."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    made: dict[str, str] = {}

    def transposed(name: str) -> str:
        if name not in made:
            made[name] = f"{name}.transposed"
            model.graph.initializer.append(
                numpy_helper.from_array(numpy_helper.to_array(inits[name]).T.copy(), made[name]))
        return made[name]

    count = 0
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and len(node.input) == 2:
            t = producer.get(node.input[1])
            perm = next((list(a.ints) for a in t.attribute if a.name == "perm"), None) if t is not None else None
            if t is not None and t.op_type == "Transpose" and perm == [1, 0] and t.input[0] in inits \
                    and len(inits[t.input[0]].dims) == 2:
                node.input[1] = transposed(t.input[0])
                count += 1
        elif node.op_type == "FusedMatMul" and node.domain == "com.microsoft" and node.input[1] in inits:
            attrs = {a.name: (a.i if a.type == a.INT else a.f) for a in node.attribute}
            if attrs.get("transB") == 1 and not attrs.get("transA") and attrs.get("alpha", 1.0) == 1.0 \
                    and not attrs.get("transBatchA") and not attrs.get("transBatchB") \
                    and len(inits[node.input[1]].dims) == 2:
                node.input[1] = transposed(node.input[1])
                node.op_type, node.domain = "MatMul", ""
                del node.attribute[:]
                count += 1
    if count:  # a Transpose nothing reads any more
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node if n.op_type == "Transpose" and not any(o in used for o in n.output)]
        for n in dead:
            model.graph.node.remove(n)
        used = {i for n in model.graph.node for i in n.input}
        for name in made:
            if name not in used:
                model.graph.initializer.remove(inits[name])
    return count
