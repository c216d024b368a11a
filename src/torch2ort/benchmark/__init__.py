"""Isolated-process measurements: torch vs ONNX Runtime, latency, throughput, cold start, memory."""

from __future__ import annotations

from torch2ort.benchmark.run import BenchOptions, BenchReport, bench
from torch2ort.benchmark.stats import LatencyStats, Ratio

__all__ = ["BenchOptions", "BenchReport", "LatencyStats", "Ratio", "bench"]
