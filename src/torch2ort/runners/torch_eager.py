"""PyTorch eager runner: eval mode, inference_mode, outputs named like the ONNX graph's."""

from __future__ import annotations

import numpy as np

from torch2ort._torch import flatten_outputs, name_outputs, to_torch_args
from torch2ort.errors import RunnerError
from torch2ort.runners.base import Runner
from torch2ort.spec import InputSpec


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, module, spec: InputSpec, name: str | None = None, threads: int | None = None) -> None:
        super().__init__(name)
        self.module = module
        self.spec = spec
        self.threads = threads
        self.input_names = spec.names

    def _activate(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        self.module.eval()

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            try:
                out = self.module(*to_torch_args(feed, self.spec.names))
            except Exception as exc:
                raise RunnerError(f"torch: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None
        flat = flatten_outputs(out)
        names = name_outputs(flat, self.spec.output_names)
        return {n: t.detach().cpu().numpy() for n, (_, t) in zip(names, flat)}
