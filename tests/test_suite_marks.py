"""The suite's own rules: a test that uses a fixture which benchmarks in subprocesses is marked slow, and
a test marked ``serial`` runs alone when the suite runs on pytest-xdist workers."""

from __future__ import annotations

import json
import os
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


SERIAL_TEST = """
import json, os, time, pytest

def _log(name, start):
    with open(os.environ["TURNS_LOG"], "a") as f:
        f.write(json.dumps([name, start, time.monotonic()]) + "\\n")

@pytest.mark.serial
def test_alone():
    start = time.monotonic(); time.sleep(1.5); _log("serial", start)
"""
SHARED_TEST = """
import time, pytest
from test_a import _log

@pytest.mark.parametrize("i", range(8))
def test_shared(i):
    start = time.monotonic(); time.sleep(0.3); _log("shared", start)
"""


def _intervals(tmp_path: Path, *plugin: str) -> tuple[tuple, list[tuple]]:
    log = tmp_path / f"turns{len(plugin)}.log"
    log.unlink(missing_ok=True)
    (tmp_path / "test_a.py").write_text(SERIAL_TEST)
    (tmp_path / "test_b.py").write_text(SHARED_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: alone\n")
    env = {**os.environ, "TURNS_LOG": str(log), "PYTHONPATH": f"{ROOT / 'tests'}:{tmp_path}",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # only xdist (and the plugin under test): a quick start
    args = ["-q", "-p", "xdist", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", "--strict-markers",
            *plugin, str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    serial = next((a, b) for name, a, b in rows if name == "serial")
    return serial, [(a, b) for name, a, b in rows if name == "shared"]


def test_a_serial_test_has_the_machine_to_itself_under_xdist(tmp_path):
    """With the plugin (tests/fixtures/turns.py) no shared test overlaps the serial one; without it,
    the same two files do overlap, so the check can fail."""
    def overlaps(serial, shared):
        return [s for s in shared if s[0] < serial[1] and serial[0] < s[1]]

    serial, shared = _intervals(tmp_path, "-p", "fixtures.turns")
    assert len(shared) == 8 and not overlaps(serial, shared)
    serial, shared = _intervals(tmp_path)
    assert overlaps(serial, shared)


def test_test_modules_have_unique_names():
    """The test folders are not packages (rootdir-relative imports), so two test files with one basename cannot
    be collected in one run: the second is an 'import file mismatch' and the whole run stops."""
    names: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {k: v for k, v in names.items() if len(v) > 1}
