"""schemathesis against the live `torch2ort serve`, with its default checks on (no 500; status codes,
content types, headers and bodies as the published OpenAPI document says; schema-invalid bodies
rejected; unsupported methods answered 405 with Allow). Bounded: a few examples per operation.

schemathesis runs through its own CLI (``python -m schemathesis.cli run``): its pytest plugin does
not load under this pytest. One worker: with several, CPython 3.11.7's ``ast.parse`` (which
hypothesis calls from each worker thread to describe lambdas) intermittently raises "AST
constructor recursion depth mismatch". One check is left out, ``positive_data_acceptance``: the
document has one generic OIP request schema for every model, so a schema-valid request naming
inputs the model does not have is rightly a 400. The generation routes are left to
``test_generation.py``, which runs schemathesis on them against a model that generates (here every
model would refuse them at once).
"""

from __future__ import annotations

import subprocess
import sys


def test_api_matches_its_openapi_document(serve_process, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"http://{serve_process.url}/openapi.json",
         "--max-examples", "15", "--generation-deterministic", "--request-timeout", "30",
         "--no-color", "--workers", "1", "--exclude-checks", "positive_data_acceptance",
         "--exclude-path-regex", "generate|/v1/"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "No issues found" in proc.stdout or "passed" in proc.stdout, proc.stdout[-3000:]
