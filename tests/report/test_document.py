"""The report's blocks, built from typed evidence: partial and full runs, the title, every section's figures."""

from __future__ import annotations

import pytest

from fixtures.evidence import optimised_evidence, typed_evidence
from torch2ort.evidence import Evidence
from torch2ort.report import summary_lines
from torch2ort.report.document import build
from torch2ort.report.render import to_html, to_markdown

PARTIAL = Evidence.from_dict({
    "format": 2, "torch2ort": "0.1.0", "command": "torch2ort migrate x.py:Net --input 'x:2,4:float32' -o out",
    "started": "2026-11-21T00:00:00+00:00", "finished": "2026-11-21T00:00:05+00:00",
    "machine": {"python": "3.11"}, "versions": {"torch": "2.13.0"},
    "model": {"source": "x.py:Net <b>", "kind": "factory", "task": None, "notes": ["built"], "parameters": 20,
              "parameter_mb": 0.0001},
    "stages": [{"name": "load", "status": "ok", "seconds": 0.1, "summary": "ok", "error": None},
               {"name": "export", "status": "failed", "seconds": 1.0, "summary": "",
                "error": "both exporters failed: aten::linalg_eigh <unsupported>"},
               {"name": "verify", "status": "not run", "seconds": 0.0, "summary": "", "error": None}],
    "outcome": {"passed": False, "stopped_at": "export", "reason": "both exporters failed", "exit_code": 3},
})


def test_partial_evidence_renders_and_says_where_it_stopped():
    blocks = build(PARTIAL)
    md = to_markdown(blocks, {})
    assert "STOPPED at stage **export** (exit 3): both exporters failed" in md
    # escaped in Markdown: a raw <unsupported> would be swallowed as an unknown HTML tag when rendered
    assert "| export | failed | 1.0 s | both exporters failed: aten::linalg_eigh &lt;unsupported> |" in md
    lines = summary_lines(PARTIAL)
    assert lines[0].startswith("parity: not verified") and lines[1].startswith("speed-up: not measured")
    assert lines[2].startswith("footprint: not measured")


def test_html_escapes_user_text():
    html = to_html(build(PARTIAL), "t")
    assert "<unsupported>" not in html and "&lt;unsupported&gt;" in html
    assert "x.py:Net &lt;b&gt;" in html


def test_report_reads_typed_fields():
    ev = typed_evidence()
    parity, speed, footprint = summary_lines(ev)
    assert parity == ("parity: PASS, ONNX fp32 vs PyTorch on 1 cases (max abs 2.50e-07); bundle from a synthetic "
                      "input: y maxabs 1.00e-07 vs the PyTorch model")
    assert speed == ("speed-up: ONNX Runtime vs PyTorch, p50 latency, 2.00× at batch 1 [1.90–2.10] "
                     "(1 A/B pairs of fresh processes, 2 threads each)")
    assert footprint.startswith("footprint: bundle 3.0 MB; its runtime installs 40.0 MB (onnxruntime, …) vs 800.0 MB")
    md = to_markdown(build(ev), {"latency": "plots/latency.svg", "speedup": "plots/speedup.svg"})
    assert "PASSED: every stage ran" in md and "| optimize | skipped | 0.0 s | not asked for (--optimize none) |" in md
    assert "Optimisation not asked for (--optimize none)." in md
    assert "| y | the PyTorch model | 1.00e-07 | 1.0000000 | maxabs 1.00e-07 | maxabs<=0.001 | pass |" in md
    assert "| onnxruntime | 1 | 1.05 | 1.1 | 1.1 | 1.05 | 952.0 | 90 |" in md
    assert "| graph | 3.00e-07 | 1.0000000 | **chosen** |" in md
    assert "**dynamo** exporter (first choice) at opset 18: 3 nodes" in md
    assert "| input | x | float | ['batch', 4] |" in md
    assert "Measured on Test CPU (2 physical / 4 logical cores, Linux)" in md
    assert "torch2ort 0.1.0, torch 2.13.0; Python " in md  # versions that are None are left out


@pytest.mark.parametrize("source, title", [
    ("hf:/home/me/models/all-MiniLM-L6-v2/", "all-MiniLM-L6-v2"),
    ("/venv/lib/python3.11/site-packages/examples/cough/model.py:AttnMILResNet", "model.py:AttnMILResNet"),
    ("examples/cough/model.py:AttnMILResNet", "model.py:AttnMILResNet"),
    ("C:\\work\\nets\\model.py:Net", "model.py:Net"),
    ("torchvision.models:resnet18", "torchvision.models:resnet18"),
    ("/tmp/exports/traced net.pt", "traced net.pt"),
])
def test_the_title_is_the_models_name_and_the_body_keeps_the_source(source, title):
    blocks = build(optimised_evidence(source))
    assert blocks[0] == ("h1", f"Migration report: {title}")
    assert f"Source: `{source}` (hf, task sentence-embedding)" in to_markdown(blocks, _figures())


def _figures() -> dict[str, str]:
    return {"latency": "plots/latency.svg", "speedup": "plots/speedup.svg"}


def test_a_full_run_has_every_section_in_order():
    blocks = build(optimised_evidence())
    assert [b[1] for b in blocks if b[0] == "h2"] == [
        "Stages", "What is in the ONNX graph, and what is not", "Parity: PyTorch vs ONNX Runtime (fp32 export)",
        "Optimisation variants", "End to end: the bundle from raw input, without torch", "Performance",
        "Footprint", "Deploy it", "Reproduce"]
    assert [b[1] for b in blocks if b[0] == "figure"] == ["latency", "speedup"]
    assert blocks[1] == ("banner", True, "PASSED: every stage ran and every check held. Bundle: `out/bundle`")


def test_the_optimisation_section_reads_the_typed_gates_and_the_re_read_variant():
    md = to_markdown(build(optimised_evidence()), _figures())
    assert "held to its gate: `y:cosine>=0.99` (embedding or token features), judged on 1 case(s) (real-text)" in md
    assert "| → int8-dynamic | pass | cosine 0.9952 | 0.95 | 1.1 | 3.40× | 2.10× | 22.1 | - | ★ |  |" in md
    assert "| fp16 | FAIL | cosine 0.97 | - | - | - | - | - | - |  | y: cosine 0.97 fails y:cosine>=0.99 |" in md
    assert ("The written file (`int8-dynamic`) was read back from disk and verified again on 1 cases: "
            "pass (y cosine 0.99517 vs y:cosine>=0.99).") in md
    assert "shipped int8-dynamic: pass (y cosine 0.99517 vs y:cosine>=0.99)" in summary_lines(optimised_evidence())[0]


def test_the_check_outside_the_graph_and_deploy_sections_follow_the_bundle():
    md = to_markdown(build(optimised_evidence()), _figures())
    assert ("| sentence_embedding | SentenceTransformer.encode | 0.02 | 0.9951000 | cosine 0.9951000 | cosine>=0.99 "
            "| pass |") in md
    assert "Preprocessing, in the torch-free runtime: `tokenize` (file=tokenizer.json, max_length=256)" in md
    assert "Postprocessing, in the runtime: `normalize` (output=y)" in md
    assert 'out = bundle.predict(["first text", "second text"])' in md
    assert "| the bundle folder | 3.0 MB | model.onnx, tokenizer.json |" in md
    assert "```text\nonnxruntime>=1.20\nnumpy\n```" in md


def test_a_feed_model_without_preprocessing_is_told_to_build_its_arrays():
    ev = optimised_evidence("nets.py:Net")
    ev.bundle.preprocess, ev.bundle.inputs[0].name = [], "x"
    md = to_markdown(build(ev), _figures())
    assert "**your code must still build the input arrays** (`x` int64 ['batch', 'sequence'])" in md
    assert 'bundle.predict({"x": np.load("x.npy")})' in md and "--input x=x.npy" in md


def test_an_unstable_speed_up_is_not_quoted():
    ev = typed_evidence()
    ratio = ev.bench.ratios["onnxruntime"]["1"]
    ratio.stable, ratio.why = False, "repeats range 0.9× to 2.1×"
    md = to_markdown(build(ev), _figures())
    assert ("**Unstable** (repeats disagree, so no speed-up is quoted): batch 1: unstable (2.00× [1.90–2.10]: "
            "repeats range 0.9× to 2.1×)") in md
    assert "batch 1: unstable (" in summary_lines(ev)[1] and "2.00× at batch 1" not in summary_lines(ev)[1]


def test_the_binding_overhead_says_what_go_would_save():
    """Seed 003 planned a Go rewrite for 1.5-2x: the report bounds what any caller language can gain."""
    from torch2ort.report.document import go_would_save

    line = go_would_save(0.05, 20.0)
    assert "at most 0.0500 ms per call (20.0% of the call): at most 1.250× faster" in line
    assert go_would_save(0.0, 0.0).endswith("same C++ in every language.") and "1.000×" in go_would_save(0.0, 0.0)
    assert go_would_save(1.0, 100.0) == ""  # a profile that cannot be right states nothing


def test_peers_line_says_what_was_faster_from_measured_ratios_only():
    from torch2ort.evidence.bench import RatioInfo

    ev = typed_evidence()
    assert len(summary_lines(ev)) == 3  # no peers timed: no line at all
    ev.bench.peers = {"openvino": {"measured": True, "note": "OpenVINO 2026.4.1", "compile_s": 0.31},
                      "torch-compile": {"measured": True, "note": "inductor", "compile_s": 41.0}}
    ev.bench.ratios["onnxruntime vs openvino"] = {"1": RatioInfo(0.8, 0.75, 0.85)}       # OV p50 / ORT p50
    ev.bench.ratios["onnxruntime vs torch.compile"] = {"1": RatioInfo(1.5, 1.4, 1.6)}
    line = summary_lines(ev)[3]
    assert line.startswith("what else you could use (timed on the same threads, p50): ")
    assert "OpenVINO FASTER than ONNX Runtime at batch 1 (ORT takes 1.25× its time [1.18–1.33]), worth a try, " \
           "compile 0.3 s" in line
    assert "torch.compile slower at batch 1 (ORT 1.50× faster [1.40–1.60]), compile 41.0 s" in line
    ev.bench.peers["openvino"] = {"measured": False, "note": "openvino is not installed; not measured"}
    ev.bench.ratios["onnxruntime vs torch.compile"]["1"] = RatioInfo(0.9, 0.7, 1.3, stable=False, why="spread")
    line = summary_lines(ev)[3]
    assert "OpenVINO: openvino is not installed; not measured" in line and "FASTER" not in line
    assert "batch 1: unstable (0.90× [0.70–1.30]: spread)" in line
    again = type(ev).from_dict(ev.to_dict())
    assert summary_lines(again) == summary_lines(ev)


def test_a_segmentation_check_shows_its_colour_mask_inline():
    import numpy as np

    from torch2ort.runtime.masks import mask_data_uri

    ev = typed_evidence()
    assert ev.check is not None and not any(b[0] == "figure" and b[1] == "mask" for b in build(ev))
    ev.check.mask = mask_data_uri(np.array([[0, 1], [2, 3]]))
    blocks = build(ev)
    figure = next(b for b in blocks if b[0] == "figure" and b[1] == "mask")
    assert ev.check.mask in figure[2] and ev.check.mask in to_html(blocks, "t")
    figures = {b[1]: f"plots/{b[1]}.svg" for b in blocks if b[0] == "figure"}
    assert "![mask](plots/mask.svg)" in to_markdown(blocks, figures)
    ev.check.mask = "javascript:alert(1)"  # only a PNG data URI becomes an image
    assert not any(b[0] == "figure" and b[1] == "mask" for b in build(ev))
