"""benchmarks/generate_peers.py --quick: a tiny Qwen2 folder, transformers, our fp32 export and our fused int4
graph (GroupQueryAttention over a shared cache) each timed in its own process, and the table it would write
(not written: --no-write)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_times_each_side_in_its_own_process(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_peers.py"), "--quick", "--no-write",
                           "--sides", "transformers,ours-fp32,ours-fused-int4", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    sides = [r["side"] for r in results["results"]]
    assert sides == ["transformers", "ours-fp32", "ours-fused-int4"], results["skipped"]
    assert json.loads((tmp_path / "ours" / "ours-fused.json").read_text())["kv_cache"] == "shared"
    for r in results["results"]:
        assert set(r["ttft_ms"]) == {"16", "32"} and r["decode_tok_s"] > 0 and r["peak_rss_mb"] > 0
    assert "| ours-fp32 |" in proc.stdout and "vs transformers" in proc.stdout
