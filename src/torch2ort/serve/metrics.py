"""Prometheus metrics of one server (HTTP and gRPC alike), in a registry of its own (not the global
one, so one process can run several servers, as the tests do).

- ``torch2ort_requests_total{model,protocol}``: infer requests received for a served model;
- ``torch2ort_request_failures_total{model,protocol,code}``: of those, the ones answered with an
  error (``code``: the HTTP status; gRPC answers carry the same number);
- ``torch2ort_request_seconds{model,protocol}``: total latency, from the request to its answer;
- ``torch2ort_queue_seconds{model}``: waiting for the model (queue and dynamic-batching delay);
- ``torch2ort_compute_seconds{model}``: one ONNX Runtime run (a batch);
- ``torch2ort_postprocess_seconds{model}``: the bundle's postprocess steps for one request;
- ``torch2ort_stage_seconds{model,protocol,stage}``: the serving path's own stages per request:
  ``read`` (the HTTP body arriving; HTTP only: a gRPC message is read before its model is known), ``decode`` (parsing,
  checking and decoding the inputs: JSON, binary, files, text) and ``encode`` (the answer's bytes);
- ``torch2ort_batch_size{model}``: rows per run;
- ``torch2ort_queue_depth{model}``: requests admitted and not yet answered (queued or running);
- ``torch2ort_generated_tokens_total{model}``: tokens made by the decode loop (one per step of a stream);
- ``torch2ort_time_to_first_token_seconds{model}``: from a generation joining the loop to its first token;
- ``torch2ort_generations_total{model,reason}``: generations ended, by why (``eos``, ``stop``, ``length``,
  ``cancelled``: the client went away, ``deadline``: --generate-timeout-s, ``error``);
- ``torch2ort_generations_active{model}``: generations in the decode loop now;
- ``torch2ort_transcriptions_total{model}``: audio files a speech-recognition model transcribed (OIP infer,
  gRPC and ``/v1/audio/transcriptions`` alike).

Requests for unknown models are not labelled by name (no unbounded label sets from clients).

``Breakdown.between(before, after, model, protocol)`` turns two scrapes into where a request's time
went, on average, and what a server in another language could save at most (``benchmarks/serve_overhead``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from torch2ort.errors import ProtocolError

LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONTENT_TYPE = CONTENT_TYPE_LATEST
STAGES = ("read", "decode", "encode")


class ModelMetrics:
    """The per-model children a model's Scheduler records into (queue, compute, batch size)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.queue = metrics.queue.labels(model)
        self.compute = metrics.compute.labels(model)
        self.batch = metrics.batch.labels(model)
        self.postprocess = metrics.postprocess.labels(model)
        self.tokens = metrics.tokens.labels(model)
        self.first_token = metrics.first_token.labels(model)
        self.generations = metrics.generations
        self.transcriptions = metrics.transcriptions.labels(model)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("torch2ort_requests", "Infer requests received", ["model", "protocol"], registry=r)
        self.failures = Counter("torch2ort_request_failures", "Infer requests answered with an error",
                                ["model", "protocol", "code"], registry=r)
        self.total = Histogram("torch2ort_request_seconds", "Infer latency, request to answer",
                               ["model", "protocol"], buckets=LATENCY, registry=r)
        self.queue = Histogram("torch2ort_queue_seconds", "Time waiting for the model (queue and batching delay)",
                               ["model"], buckets=LATENCY, registry=r)
        self.compute = Histogram("torch2ort_compute_seconds", "One ONNX Runtime run", ["model"], buckets=LATENCY,
                                 registry=r)
        self.postprocess = Histogram("torch2ort_postprocess_seconds", "The bundle's postprocess for one request",
                                     ["model"], buckets=LATENCY, registry=r)
        self.stage = Histogram("torch2ort_stage_seconds", "The serving path's own stages per request "
                               "(read, decode, encode)", ["model", "protocol", "stage"], buckets=LATENCY,
                               registry=r)
        self.batch = Histogram("torch2ort_batch_size", "Rows per ONNX Runtime run", ["model"], buckets=ROWS,
                               registry=r)
        self.depth = Gauge("torch2ort_queue_depth", "Requests admitted and not yet answered", ["model"], registry=r)
        self.tokens = Counter("torch2ort_generated_tokens", "Tokens generated (decode steps)", ["model"], registry=r)
        self.first_token = Histogram("torch2ort_time_to_first_token_seconds",
                                     "From a generation joining the decode loop to its first token", ["model"],
                                     buckets=LATENCY, registry=r)
        self.generations = Counter("torch2ort_generations", "Generations ended, by reason", ["model", "reason"],
                                   registry=r)
        self.active = Gauge("torch2ort_generations_active", "Generations in the decode loop", ["model"], registry=r)
        self.transcriptions = Counter("torch2ort_transcriptions", "Audio files transcribed", ["model"], registry=r)

    def attach(self, hosts: dict) -> None:
        """Give every host its recorders, and read its queue depth at scrape time."""
        for name, host in hosts.items():
            host.scheduler.metrics = ModelMetrics(self, name)
            self.depth.labels(name).set_function(lambda s=host.scheduler: s.inside)
            for protocol in ("http", "grpc"):  # present from the start, so rates work from the first scrape
                self.requests.labels(name, protocol)
                for stage in STAGES[protocol == "grpc":]:  # gRPC's message is read before the call is known
                    self.stage.labels(name, protocol, stage)
            if getattr(host, "transcribes", False):
                host.compute.metrics = host.scheduler.metrics
                self.transcriptions.labels(name)
            engine = getattr(host, "generation", None)
            if engine is not None:
                engine.metrics = host.scheduler.metrics
                self.tokens.labels(name)
                self.active.labels(name).set_function(lambda e=engine: len(e.active))

    @contextmanager
    def track(self, model: str, protocol: str):
        """Count one infer request for a served ``model``; a raised error counts as a failure (its status)."""
        self.requests.labels(model, protocol).inc()
        start = time.perf_counter()
        try:
            yield
        except ProtocolError as exc:
            self.failures.labels(model, protocol, str(exc.status)).inc()
            raise
        except BaseException:
            self.failures.labels(model, protocol, "500").inc()
            raise
        finally:
            self.total.labels(model, protocol).observe(time.perf_counter() - start)

    @contextmanager
    def timed(self, model: str, protocol: str, stage: str):
        """Time one of the serving path's ``STAGES`` for a served ``model`` (failed ones too)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage.labels(model, protocol, stage).observe(time.perf_counter() - start)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def samples(text: str) -> dict[tuple, float]:
    """A Prometheus text exposition as ``{(sample name, sorted label items): value}``."""
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for family in text_string_to_metric_families(text) for x in family.samples}


@dataclass(frozen=True)
class Breakdown:
    """Where an infer request's time went, in mean milliseconds per request, between two scrapes.

    ``total`` is request to answer as the server saw it; ``other`` is what no stage accounts for
    (routing, the event loop, thread hand-offs, the error and metrics bookkeeping). Queue, compute and
    postprocess are per model, not per protocol: scrape around traffic of one protocol at a time.
    With dynamic batching a run serves several requests, so compute is shared out per request.
    """

    requests: int
    total: float
    read: float
    decode: float
    queue: float
    compute: float
    postprocess: float
    encode: float

    @property
    def other(self) -> float:
        return self.total - self.read - self.decode - self.queue - self.compute - self.postprocess - self.encode

    @property
    def serving(self) -> float:
        """Everything but the ONNX Runtime run: the most a server written in another language could save."""
        return self.total - self.compute

    @classmethod
    def between(cls, before: str, after: str, model: str, protocol: str) -> Breakdown:
        a, b = samples(before), samples(after)

        def delta(name: str, **labels) -> float:
            key = (name, tuple(sorted(labels.items())))
            return b.get(key, 0.0) - a.get(key, 0.0)

        n = int(delta("torch2ort_request_seconds_count", model=model, protocol=protocol))
        if n <= 0:
            raise ValueError(f"no {protocol} requests for {model!r} between the two scrapes")
        per = lambda seconds: 1000.0 * seconds / n  # noqa: E731
        stage = lambda s: per(delta("torch2ort_stage_seconds_sum", model=model, protocol=protocol, stage=s))  # noqa: E731
        return cls(requests=n,
                   total=per(delta("torch2ort_request_seconds_sum", model=model, protocol=protocol)),
                   read=stage("read"), decode=stage("decode"), encode=stage("encode"),
                   queue=per(delta("torch2ort_queue_seconds_sum", model=model)),
                   compute=per(delta("torch2ort_compute_seconds_sum", model=model)),
                   postprocess=per(delta("torch2ort_postprocess_seconds_sum", model=model)))

    def go_would_save(self) -> str:
        """The serving path's answer to "what would Go save?": an upper bound, from the histograms."""
        share = 100.0 * self.serving / self.total if self.total > 0 else 0.0
        return (f"A server in Go or C++ around the same ONNX Runtime could save at most {self.serving:.3f} ms per "
                f"request ({share:.1f}% of the server's {self.total:.3f} ms): everything but the model's run "
                f"({self.compute:.3f} ms), which is the same C++ in every language.")
