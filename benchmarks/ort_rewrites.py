"""Two graph rewrites that let ONNX Runtime's CPU EP do what OpenVINO does on the zoo's CNNs (issue 24, part 5).

OpenVINO's CPU plugin runs the ECG ResNet's 1-D convolutions as 2-D ones in a channels-last layout, with the
residual Add and the ReLU fused into each convolution; it runs the lip-sync decoder's ConvTranspose natively
in that layout. ORT's layout transformer (NCHWc, ORT_ENABLE_ALL) handles 2-D Conv only, so:

- ``conv1d_as_2d``: lifts every 1-D Conv and MaxPool to 2-D with a unit height (one Unsqueeze where a 3-D
  tensor enters, one Squeeze where a 2-D result leaves for an op that is not lifted); element-wise ops
  between them (Relu, Add of two lifted tensors) stay lifted. ORT then blocks the convolutions in NCHWc and
  fuses Add + Relu into them.
- ``convtranspose_as_conv``: a stride-1, ungrouped, undilated ConvTranspose is a Conv with the kernel
  flipped in space and its in/out channels swapped, padded by kernel - 1 - pad. As a Conv it joins NCHWc, so
  the reorders around it go.

Both keep the arithmetic (the same multiply-adds, reordered); ``python benchmarks/ort_rewrites.py IN.onnx OUT.onnx``
checks the rewritten model against the original on ORT before writing it. ``conv1d_as_2d`` ships as the
``lift1d`` pass (torch2ort.optimization.passes.lift1d), which ``auto`` offers on graphs with 1-D convs; the
ConvTranspose rewrites stay measurement tools here (``subpixel`` is the shipped one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from torch2ort.optimization.passes.base import replace_nodes
from torch2ort.optimization.passes.lift1d import conv1d_as_2d  # noqa: F401  (the lift1d pass's rewrite)


def _named(node, suffix: str) -> str:
    return node.name + suffix if node.name else ""


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def convtranspose_as_conv(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Stride-1 ConvTranspose -> Conv with a flipped, channel-swapped kernel; returns the model and the count."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    n = 0
    for i, node in enumerate(g.node):
        if node.op_type != "ConvTranspose" or node.input[1] not in inits:
            continue
        a = _attrs(node)
        k = a.get("kernel_shape") or list(numpy_helper.to_array(inits[node.input[1]]).shape[2:])
        if any(s != 1 for s in a.get("strides", [1] * len(k))) or a.get("group", 1) != 1 \
                or any(d != 1 for d in a.get("dilations", [1] * len(k))) or any(a.get("output_padding", [0])) \
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or "output_shape" in a:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])          # (C_in, C_out, kh, kw)
        wc = np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim))).swapaxes(0, 1))
        name = node.input[1] + "__as_conv"
        g.initializer.append(numpy_helper.from_array(wc, name))
        pads = a.get("pads", [0] * 2 * len(k))
        d = len(k)
        conv_pads = [k[j % d] - 1 - pads[j] for j in range(2 * d)]
        if any(p < 0 for p in conv_pads):
            continue
        g.node[i].CopyFrom(helper.make_node("Conv", [node.input[0], name, *node.input[2:]], list(node.output),
                                            name=_named(node, "__as_conv"), kernel_shape=k, pads=conv_pads))
        n += 1
    replace_nodes(g, list(g.node))
    return model, n


# Stride-2, 4-tap ConvTranspose (pad 1), per spatial dim: output phase r takes input taps i-1, i, i+1 with
# these kernel indices (None: no tap), from y[2i+r] = sum over k with 2i+r+1-k even of x[(2i+r+1-k)/2] W[k].
_PHASE_TAPS = {0: (3, 1, None), 1: (None, 2, 0)}


def upsample_convtranspose_as_conv(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Stride-2, kernel-4, pad-1 ConvTranspose (the usual x2 decoder step) -> one 3x3 Conv with 4x the output
    channels (one block per output phase) + DepthToSpace(2, DCR). The 3x3 conv does 9/4 of the multiply-adds,
    but it runs in ORT's blocked NCHWc kernels instead of ConvTranspose's GEMM + col2im."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    new_nodes, n = [], 0
    for node in g.node:
        a = _attrs(node)
        ok = (node.op_type == "ConvTranspose" and node.input[1] in inits and a.get("group", 1) == 1
              and list(a.get("strides", [])) == [2, 2] and list(a.get("kernel_shape", [])) == [4, 4]
              and list(a.get("pads", [])) == [1, 1, 1, 1] and not any(a.get("output_padding", [0]))
              and not any(d != 1 for d in a.get("dilations", [1, 1])) and "output_shape" not in a)
        if not ok:
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])                  # (C_in, C_out, 4, 4)
        cin, cout = w.shape[:2]
        k = np.zeros((4, cout, cin, 3, 3), dtype=w.dtype)                 # block (rh*2 + rw), then DCR channels
        for rh in (0, 1):
            for rw in (0, 1):
                for th, kh in enumerate(_PHASE_TAPS[rh]):
                    for tw, kw in enumerate(_PHASE_TAPS[rw]):
                        if kh is not None and kw is not None:
                            k[rh * 2 + rw, :, :, th, tw] = w[:, :, kh, kw].T
        wname = node.input[1] + "__phases"
        g.initializer.append(numpy_helper.from_array(k.reshape(4 * cout, cin, 3, 3), wname))
        ins = [node.input[0], wname]
        if len(node.input) > 2 and node.input[2]:
            b = numpy_helper.to_array(inits[node.input[2]])
            g.initializer.append(numpy_helper.from_array(np.tile(b, 4), node.input[2] + "__phases"))
            ins.append(node.input[2] + "__phases")
        mid = node.output[0] + "__phases"
        new_nodes.append(helper.make_node("Conv", ins, [mid], name=_named(node, "__phases"),
                                          kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        new_nodes.append(helper.make_node("DepthToSpace", [mid], list(node.output), blocksize=2, mode="DCR"))
        n += 1
    replace_nodes(g, new_nodes)
    return model, n


def check(original: Path, rewritten: Path, spec_cli: list[str]) -> float:
    """Largest |rewritten - original| on ORT over all outputs, relative to the original's largest |value|."""
    import onnxruntime as ort

    from torch2ort.inputs import synthetic_feed
    from torch2ort.spec import InputSpec

    feed = synthetic_feed(InputSpec.from_cli(spec_cli), {}, seed=3)
    a = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"]).run(None, feed)
    b = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"]).run(None, feed)
    return max(float(np.max(np.abs(x - y)) / max(float(np.max(np.abs(x))), 1e-12)) for x, y in zip(a, b))


def rewrite(src: Path, dst: Path, upsample: bool = True) -> dict[str, int]:
    model = onnx.load(str(src))
    model, n1 = conv1d_as_2d(model)
    model, n2 = convtranspose_as_conv(model)
    n3 = 0
    if upsample:
        model, n3 = upsample_convtranspose_as_conv(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {"conv1d_as_2d": n1, "convtranspose_as_conv": n2, "upsample_convtranspose_as_conv": n3}


if __name__ == "__main__":
    print(rewrite(Path(sys.argv[1]), Path(sys.argv[2])))
