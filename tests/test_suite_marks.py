"""The suite's own rules: a test that uses a fixture which benchmarks in subprocesses is marked slow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collected(*args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 5), proc.stdout[-2000:] + proc.stderr[-2000:]
    return {line.split("::")[-1] for line in proc.stdout.splitlines() if "::" in line}


def test_tests_on_benchmarking_fixtures_are_slow():
    files = ["tests/pipeline/test_migrate.py", "tests/benchmark/test_bench.py"]
    everything, quick = _collected(*files), _collected(*files, "-m", "not slow")
    for name in ("test_end_to_end_writes_bundle_reports_and_evidence", "test_every_backend_ran_in_its_own_process"):
        assert name in everything and name not in quick
    assert "test_bad_invocations_exit_2[args0-expected sizes like 1,8]" in quick  # the hook marks only those
