"""ONNX Runtime runner (CPU EP by default); torch-free."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from torch2ort.errors import RunnerError, one_line
from torch2ort.runners.base import Runner


class OrtRunner(Runner):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, providers: list[str] | None = None,
                 threads: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        self.model_path = str(model_path)
        self.providers = providers or ["CPUExecutionProvider"]
        self.threads = threads
        self.session = None

    def _activate(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(self.model_path, opts, providers=self.providers)
        except Exception as exc:
            raise RunnerError(f"onnxruntime could not load {self.model_path}: {_short(exc)}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.session is not None
        try:
            values = self.session.run(None, {n: feed[n] for n in self.input_names})
        except Exception as exc:
            raise RunnerError(f"onnxruntime: {_short(exc)}") from None
        return {n: np.asarray(v) for n, v in zip(self.output_names, values)}

    def _deactivate(self) -> None:
        self.session = None


def _short(exc: BaseException) -> str:
    return one_line(str(exc)) or type(exc).__name__
