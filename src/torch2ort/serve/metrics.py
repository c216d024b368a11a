"""Prometheus metrics of one server (HTTP and gRPC alike), in a registry of its own (not the global
one, so one process can run several servers, as the tests do).

- ``torch2ort_requests_total{model,protocol}``: infer requests received for a served model;
- ``torch2ort_request_failures_total{model,protocol,code}``: of those, the ones answered with an
  error (``code``: the HTTP status; gRPC answers carry the same number);
- ``torch2ort_request_seconds{model,protocol}``: total latency, from the request to its answer;
- ``torch2ort_queue_seconds{model}``: waiting for the model (queue and dynamic-batching delay);
- ``torch2ort_compute_seconds{model}``: one ONNX Runtime run (a batch);
- ``torch2ort_batch_size{model}``: rows per run;
- ``torch2ort_queue_depth{model}``: requests admitted and not yet answered (queued or running);
- ``torch2ort_generated_tokens_total{model}``: tokens made by the decode loop (one per step of a stream);
- ``torch2ort_time_to_first_token_seconds{model}``: from a generation joining the loop to its first token;
- ``torch2ort_generations_total{model,reason}``: generations ended, by why (``eos``, ``stop``, ``length``,
  ``cancelled``: the client went away, ``deadline``: --generate-timeout-s, ``error``);
- ``torch2ort_generations_active{model}``: generations in the decode loop now.

Requests for unknown models are not labelled by name (no unbounded label sets from clients).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from torch2ort.errors import ProtocolError

LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ModelMetrics:
    """The per-model children a model's Scheduler records into (queue, compute, batch size)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.queue = metrics.queue.labels(model)
        self.compute = metrics.compute.labels(model)
        self.batch = metrics.batch.labels(model)
        self.tokens = metrics.tokens.labels(model)
        self.first_token = metrics.first_token.labels(model)
        self.generations = metrics.generations


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

    def attach(self, hosts: dict) -> None:
        """Give every host its recorders, and read its queue depth at scrape time."""
        for name, host in hosts.items():
            host.scheduler.metrics = ModelMetrics(self, name)
            self.depth.labels(name).set_function(lambda s=host.scheduler: s.inside)
            for protocol in ("http", "grpc"):  # present from the start, so rates work from the first scrape
                self.requests.labels(name, protocol)
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
