"""ConvTranspose as a Conv plus DepthToSpace (sub-pixel convolution), so int8 can reach the decoder.

ONNX Runtime's CPU provider has no int8 ConvTranspose kernel: in a QDQ graph a ConvTranspose stays in
float between a DequantizeLinear of its input and weight and a QuantizeLinear of its output, and on
the zoo's lip-sync decoder it was 41% of the int8 model's time (benchmarks/profile_int8.py). A 2-D
ConvTranspose with stride s is, exactly, s×s interleaved convolutions of the input: output pixel
``(s*i + r, s*j + q)`` sums the taps ``m`` with ``m ≡ r + pad (mod s)``, taken from input pixel
``i - (m - r - pad) / s``. This pass writes each phase as its own Conv (for k=4, s=2, pad 1: four 2×2
convs, each with its own pads), concatenates them and interleaves them with a DepthToSpace (DCR);
with s = 1 it is the flipped-kernel Conv alone. The phase convs together do exactly the
ConvTranspose's multiply-adds. ``joint=True`` writes one Conv with s×s×C_out outputs instead, whose
kernel must span every phase's offsets (3×3 for k=4, s=2): one op, but 9/4 of the multiply-adds, and
in a profile of the lip-sync decoder under load that Conv cost more than the ConvTranspose did. The
result equals the ConvTranspose up to float rounding, and Conv has an int8 kernel (QLinearConv);
Concat and DepthToSpace only move bytes.

Rewritten: 2-D ConvTranspose with a constant weight, group 1, dilation 1, no output_padding and no
explicit output_shape, whose output length on each axis is a multiple of the stride and whose taps
land within the pads the rewrite needs. Other ConvTranspose nodes are left as they are and counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.optimization.passes.base import Pass, PassContext, PassResult, load_model, replace_nodes, save_model


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _axis_plan(k: int, s: int, p_begin: int, p_end: int, joint: bool) -> list | None:
    """Per output phase r: its taps as (m, t) pairs (ConvTranspose tap m -> conv tap t), kernel size and
    pads. ``joint``: one kernel size and pad pair for all phases (one Conv); else each phase its own.
    None when this axis cannot be rewritten."""
    # ConvTranspose: y[s*i + r] = sum over taps m with (m - r - p) % s == 0 of x[i - (m - r - p) // s] * W[m]
    # The output length (n - 1)s - p_begin - p_end + k must be s * n_phase for every n:
    if (k - p_begin - p_end) % s:
        return None
    ds = {r: [(m - r - p_begin) // s for m in range(k) if (m - r - p_begin) % s == 0] for r in range(s)}
    if not all(ds.values()):
        return None
    plans = []
    for r in range(s):
        pool = [d for v in ds.values() for d in v] if joint else ds[r]
        dmin, dmax = min(pool), max(pool)
        size = dmax - dmin + 1
        # conv: y_r[i] = sum_t xpad[i + t] K[t], xpad = x with pad_lo zeros in front: x[i - d] <=> t = pad_lo - d;
        # its length n + pad_lo + pad_hi - size + 1 must be n_phase = n + (k - p_begin - p_end) / s - 1
        pad_lo = dmax
        pad_hi = (k - p_begin - p_end) // s - 1 - pad_lo + size - 1
        if pad_lo < 0 or pad_hi < 0:
            return None
        plans.append(([(m, dmax - (m - r - p_begin) // s) for m in range(k) if (m - r - p_begin) % s == 0],
                      size, pad_lo, pad_hi))
    return plans


def _rewrite(node, weight: np.ndarray, bias: np.ndarray | None, joint: bool) -> tuple | None:
    """[(kernel, bias, pads)] per phase, in DepthToSpace DCR order (one entry when ``joint``), and the stride."""
    if weight.ndim != 4 or _attr(node, "group", 1) != 1 or any(d != 1 for d in _attr(node, "dilations", [1, 1])):
        return None
    if any(_attr(node, "output_padding", [0, 0])) or _attr(node, "output_shape", None):
        return None
    if _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    strides = list(_attr(node, "strides", [1, 1]))
    pads = list(_attr(node, "pads", [0, 0, 0, 0]))
    if len(strides) != 2 or len(pads) != 4 or strides[0] != strides[1]:
        return None
    s = strides[0]
    cin, cout, kh, kw = weight.shape
    plan_h, plan_w = (_axis_plan(k, s, pads[a], pads[a + 2], joint) for a, k in enumerate((kh, kw)))
    if plan_h is None or plan_w is None:
        return None
    convs = []
    for rh in range(s):
        for rw in range(s):
            (taps_h, size_h, lo_h, hi_h), (taps_w, size_w, lo_w, hi_w) = plan_h[rh], plan_w[rw]
            kernel = np.zeros((cout, cin, size_h, size_w), weight.dtype)
            for mh, th in taps_h:
                for mw, tw in taps_w:
                    kernel[:, :, th, tw] = weight[:, :, mh, mw].T
            convs.append((kernel, bias, [lo_h, lo_w, hi_h, hi_w]))
    if joint:  # the phases share kernel size and pads: one Conv with s*s*cout outputs
        kernel = np.concatenate([c[0] for c in convs])
        convs = [(kernel, None if bias is None else np.tile(bias, s * s).astype(bias.dtype), convs[0][2])]
    return convs, s


class SubPixel(Pass):
    name = "subpixel"

    def __init__(self, joint: bool = False) -> None:
        super().__init__(joint=joint)
        self.joint = joint

    def run(self, src: Path, out: Path, ctx: PassContext) -> PassResult:
        import onnx
        from onnx import numpy_helper

        model = load_model(src)
        graph = model.graph
        inits = {i.name: i for i in graph.initializer}
        new_nodes, rewritten, kept = [], 0, 0
        for node in graph.node:
            if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in inits:
                kept += node.op_type == "ConvTranspose"
                new_nodes.append(node)
                continue
            weight = numpy_helper.to_array(inits[node.input[1]])
            bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits \
                else None
            if len(node.input) > 2 and node.input[2] and bias is None:
                kept += 1
                new_nodes.append(node)
                continue
            plan = _rewrite(node, weight, bias, self.joint)
            if plan is None:
                kept += 1
                new_nodes.append(node)
                continue
            convs, s = plan
            base = node.name or f"convtranspose_{rewritten}"
            outs = []
            for i, (kernel, conv_bias, pads) in enumerate(convs):
                w_name = f"{base}_subpixel{i}_weight"
                graph.initializer.append(numpy_helper.from_array(kernel, w_name))
                inputs = [node.input[0], w_name]
                if conv_bias is not None:
                    graph.initializer.append(numpy_helper.from_array(conv_bias, f"{base}_subpixel{i}_bias"))
                    inputs.append(f"{base}_subpixel{i}_bias")
                outs.append(node.output[0] if s == 1 else f"{base}_subpixel{i}")
                new_nodes.append(onnx.helper.make_node("Conv", inputs, [outs[-1]], name=f"{base}_subpixel{i}",
                                                       pads=pads, kernel_shape=list(kernel.shape[2:])))
            if s > 1:
                phases = outs[0]
                if len(outs) > 1:
                    phases = f"{base}_subpixel_phases"
                    new_nodes.append(onnx.helper.make_node("Concat", outs, [phases], name=f"{base}_subpixel_concat",
                                                           axis=1))
                new_nodes.append(onnx.helper.make_node("DepthToSpace", [phases], [node.output[0]],
                                                       name=f"{base}_depth_to_space", blocksize=s, mode="DCR"))
            rewritten += 1
        replace_nodes(graph, new_nodes)
        save_model(model, out)
        notes = [f"{rewritten} ConvTranspose rewritten as Conv + DepthToSpace"
                 + (f"; {kept} left as they are (unsupported attributes)" if kept else "")] if rewritten or kept else []
        return PassResult(out, rewritten > 0, {"rewritten": rewritten, "kept": kept}, notes)
