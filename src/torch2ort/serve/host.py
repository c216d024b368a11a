"""One served bundle, as three small objects with one job each, and the loading of several.

- ``info`` (``metadata.ModelInfo``): what the model is: name, version, inputs, outputs;
- ``compute`` (``compute.Compute``): request body → checked feed → the bundle's stages → outputs;
- ``scheduler`` (``scheduler.Scheduler``): queue slots, the worker thread, dynamic batching;
- ``generation`` (``generation.GenerationEngine``), for a bundle that generates text: its decode loop,
  on the scheduler's worker thread;
- for a speech-recognition (Whisper) bundle, ``compute`` is a ``transcription.SpeechCompute``: audio files in,
  transcripts out, through ``Bundle.predict`` (``transcribes`` is then true).

The warm-up run at load time is what joins them: it proves the session computes, and it tells
which outputs (post-processed ones included) the model answers with; a generating bundle warms up
with a short generation instead, and answers with text.
"""

from __future__ import annotations

from torch2ort.errors import BundleError
from torch2ort.runtime.bundle import Bundle
from torch2ort.serve.compute import Compute
from torch2ort.serve.metadata import ModelInfo
from torch2ort.serve.options import Limits
from torch2ort.serve.scheduler import Scheduler


class ModelHost:
    def __init__(self, bundle: Bundle, limits: Limits, version: str = "1") -> None:
        self.bundle = bundle
        self.generation = None
        self.transcribes = bundle.transcribes
        if self.transcribes:
            from torch2ort.serve.transcription import SpeechCompute

            self.compute = SpeechCompute(bundle, limits.caps)
            self.compute.warm_up()
            self.info = ModelInfo.transcribing(bundle, self.compute, version)
        elif bundle.generates:
            self.compute = Compute(bundle, limits.caps)
            self.info = ModelInfo.generating(bundle, version)
        else:
            self.compute = Compute(bundle, limits.caps)
            self.info = ModelInfo.of(bundle, self.compute.warm_up(), self.compute.text, limits.max_batch, version,
                                     self.compute.file_metadata(), self.compute.output_metadata())
        self.scheduler = Scheduler(bundle.name, limits, self.compute.run, self.compute.postprocess,
                                   self.info.batching)
        if bundle.generates:
            from torch2ort.serve.generation import GenerationEngine

            self.generation = GenerationEngine(bundle, limits, self.scheduler.executor)
            self.generation.warm_up()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def ready(self) -> bool:
        return self.scheduler.ready


def load_hosts(paths: list[str], limits: Limits, providers: list[str] | str | None = None,
               threads: int | None = None) -> dict[str, ModelHost]:
    hosts: dict[str, ModelHost] = {}
    for p in paths:
        host = ModelHost(Bundle.load(p, providers, threads), limits)
        if host.name in hosts:
            raise BundleError(f"two bundles are named {host.name!r}; model names must be unique")
        hosts[host.name] = host
    return hosts


__all__ = ["ModelHost", "load_hosts"]
