"""What computing Whisper's cross-attention keys/values once (on the encoder side) saves per decoder step.

torch2ort's decoder graph takes ``cross_attention.{i}.key/value`` as inputs, computed once per clip by the
encoder graph. The alternative graph takes the encoder hidden states and projects them again at every
step (``k_proj``/``v_proj`` of each decoder layer over all encoder frames). This times, with ONNX Runtime
and 2 intra-op threads, on a whisper-tiny-shaped model (random weights: d_model 384, 4 decoder layers,
6 heads, 1,500 encoder frames):

- ``decoder step``: one cached step of torch2ort's decoder graph (batch 1, past 16 tokens);
- ``cross projections``: the per-step work the other design adds, the same projections as a graph of
  their own over the 1,500 frames.

    nice -n 5 flock /tmp/t2o-bench.lock .venv/bin/python benchmarks/whisper_cross_kv.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import onnxruntime as ort
    import torch
    import transformers

    from torch2ort.export import export_onnx
    from torch2ort.sources import LoadedModel, ModelHints
    from torch2ort.sources.hf_speech import decoder_loaded
    from torch2ort.spec import InputSpec

    config = transformers.WhisperConfig(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                                        decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                                        vocab_size=51865, max_source_positions=1500, max_target_positions=448)
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    layers, heads, dim, frames = 4, 6, 64, 1500
    shell = LoadedModel(None, "bench", "hf", [], ModelHints())
    shell.module = type("M", (), {"model": model})()
    shell.hints.speech = {"layers": layers, "heads": heads, "head_dim": dim, "encoder_frames": frames}
    dec = decoder_loaded(shell)

    class Projections(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = model.model.decoder.layers

        def forward(self, hidden):
            out = []
            for layer in self.layers:
                a = layer.encoder_attn
                shape = (hidden.shape[0], -1, a.num_heads, a.head_dim)
                out += [a.k_proj(hidden).view(shape).transpose(1, 2), a.v_proj(hidden).view(shape).transpose(1, 2)]
            return tuple(out)

    proj = LoadedModel(Projections().eval(), "bench", "hf", [],
                       ModelHints(spec=InputSpec.from_cli([f"hidden:1,{frames},384:float32"])))
    with tempfile.TemporaryDirectory() as tmp:
        dec_path, proj_path = Path(tmp) / "decoder.onnx", Path(tmp) / "proj.onnx"
        export_onnx(dec, dec.hints.spec, dec_path)
        export_onnx(proj, proj.hints.spec, proj_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 2
        s_dec = ort.InferenceSession(str(dec_path), opts, providers=["CPUExecutionProvider"])
        s_proj = ort.InferenceSession(str(proj_path), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {"input_ids": np.array([[50]], np.int64)}
        for i in range(layers):
            for k in ("key", "value"):
                feed[f"past_key_values.{i}.{k}"] = rng.standard_normal((1, heads, 16, dim), np.float32)
                feed[f"cross_attention.{i}.{k}"] = rng.standard_normal((1, heads, frames, dim), np.float32)
        hidden = {"hidden": rng.standard_normal((1, frames, 384), np.float32)}

        def timed(session, inputs, n=50) -> float:
            for _ in range(5):
                session.run(None, inputs)
            times = []
            for _ in range(n):
                t = time.perf_counter()
                session.run(None, inputs)
                times.append((time.perf_counter() - t) * 1e3)
            return statistics.median(times)

        step, extra = timed(s_dec, feed), timed(s_proj, hidden)
    load = os.getloadavg()[0]
    print(f"whisper-tiny shape, 2 threads, load {load:.1f}: decoder step {step:.2f} ms (median of 50); "
          f"cross projections {extra:.2f} ms per step; recomputing would make a step {(step + extra) / step:.1f}x "
          "as long")


if __name__ == "__main__":
    sys.exit(main())
