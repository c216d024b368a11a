"""The Runner contract: activate once, infer many times, deactivate (Polygraphy's template method).

Subclasses override only ``_activate``, ``_infer`` and ``_deactivate``. ``infer`` validates the
feed, times the call and checks that ``_infer`` kept the contract: a dict of numpy arrays.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from torch2ort.errors import RunnerError


class Runner:
    name = "runner"

    def __init__(self, name: str | None = None) -> None:
        if name:
            self.name = name
        self.is_active = False
        self.last_seconds: float | None = None
        self.input_names: list[str] = []

    # --- public, final --------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.is_active:
            raise RunnerError(f"{self.name}: activate() the runner before infer()")
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise RunnerError(f"{self.name}: feed lacks input(s) {missing}")
        start = time.perf_counter()
        outputs = self._infer(feed)
        self.last_seconds = time.perf_counter() - start
        if not isinstance(outputs, dict) or not all(
                isinstance(k, str) and isinstance(v, np.ndarray) for k, v in outputs.items()):
            raise TypeError(f"{type(self).__name__}._infer must return dict[str, np.ndarray]")
        return outputs

    # --- hooks ----------------------------------------------------------------------------
    def _activate(self) -> None:  # expensive set-up goes here, not in __init__
        pass

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _deactivate(self) -> None:
        pass
