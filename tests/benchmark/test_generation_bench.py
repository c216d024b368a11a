"""A decoder's bench (benchmark/generation.py): the packed bundle and transformers generate, each in its own fresh
processes, onnxruntime-genai when an interpreter has it; the report's generation section from those figures.
No timing is asserted: only that each figure was measured where it says."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fixtures.families import run_cli
from torch2ort.benchmark.generation import GENAI_ENV, GenerateBenchOptions, bench_generation, genai_version
from torch2ort.errors import UsageError
from torch2ort.evidence import Evidence, GenerationBenchInfo, ModelInfo
from torch2ort.pipeline.state import MigrateOptions
from torch2ort.report import summary_lines
from torch2ort.report.document import build
from torch2ort.report.render import to_markdown

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def timed(llama_decoder, tmp_path_factory):
    """Prompts of 8 and 300 tokens (300 is past the fixture's 256 positions), 4 new tokens, one process per side."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(GENAI_ENV, raising=False)
        opts = GenerateBenchOptions(prompt_tokens=[8, 300], new_tokens=4, repeats=1, threads=1)
        return bench_generation(llama_decoder.bundle, llama_decoder.folder, tmp_path_factory.mktemp("gen-bench"), opts)


def test_the_bundle_and_transformers_are_timed_in_fresh_processes(timed):
    assert timed["prompt_tokens"] == [8, 252] and "300 capped to 252" in timed["capped"]
    sides = timed["sides"]
    for name in ("torch2ort", "transformers"):
        side = sides[name]
        assert side["measured"] and len(side["runs"]) == 1
        assert set(side["ttft_ms"]) == {"8", "252"} and all(v > 0 for v in side["ttft_ms"].values())
        assert all(v > 0 for v in side["decode_tok_s"].values()) and side["peak_rss_mb"] > 0
        assert all(len(r["decode_step_ms"]["8"]) == 3 for r in side["runs"])  # 4 tokens: the first, then 3 steps
    assert not sides["torch2ort"]["torch_imported"] and sides["transformers"]["torch_imported"]
    pids = [r["pid"] for s in ("torch2ort", "transformers") for r in sides[s]["runs"]]
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert set(timed["ratios"]) == {"ttft vs transformers", "decode vs transformers"}
    assert set(timed["ratios"]["decode vs transformers"]) == {"8", "252"}
    # 2 layers x 2 KV heads x head_dim 8, keys and values, fp32
    assert timed["kv_cache"]["bytes_per_token"] == 2 * 2 * 2 * 8 * 4
    assert GenerationBenchInfo.from_dict(json.loads(json.dumps(timed))).to_dict() == json.loads(json.dumps(timed))


def test_without_an_interpreter_onnxruntime_genai_is_not_measured_and_says_how(timed):
    genai = timed["sides"]["onnxruntime-genai"]
    assert not genai["measured"] and "runs" not in genai and genai["ttft_ms"] == {} and genai["peak_rss_mb"] is None
    assert genai["note"].startswith("not measured") and "--genai-python" in genai["note"] and GENAI_ENV in genai["note"]


def _decoder_evidence(timed) -> Evidence:
    return Evidence(model=ModelInfo(source="hf:llama", kind="hf", parameters=1, parameter_mb=0.0,
                                    task="text-generation"),
                    generation_bench=GenerationBenchInfo.from_dict(timed))


def test_the_report_shows_ttft_tokens_per_second_memory_and_the_cache(timed):
    md = to_markdown(build(_decoder_evidence(timed)), {})
    section = md[md.index("## Performance: generation"):]
    assert "| side | TTFT 8 (ms) | TTFT 252 (ms) | decode tok/s @8 | decode tok/s @252 | peak RSS MB |" in section
    assert "| torch2ort |" in section and "| transformers |" in section and "| onnxruntime-genai |" not in section
    assert "decode vs transformers" in section and "time to first token vs transformers" in section
    assert "onnxruntime-genai: not measured" in section and "1 intra-op threads" in section
    assert ("KV cache: 0.2 KiB per token per sequence (float32 keys and values: 2 × 2 layers × 2 KV heads × 8)"
            in section)
    assert "300 capped to 252" in section
    line = summary_lines(_decoder_evidence(timed))[1]
    assert line.startswith("speed-up: the bundle decodes") and "onnxruntime-genai not measured" in line


def test_an_unstable_generation_ratio_is_marked_not_quoted(timed):
    shaken = json.loads(json.dumps(timed))
    shaken["ratios"]["decode vs transformers"]["8"] |= {"stable": False, "why": "A/B repeats spread 90%"}
    md = to_markdown(build(_decoder_evidence(shaken)), {})
    assert "| decode vs transformers | 8 | unstable (" in md and "A/B repeats spread 90%" in md


def test_a_decoder_run_without_the_bench_says_why():
    ev = Evidence.from_dict({"format": 2, "model": {"source": "hf:x", "kind": "hf", "parameters": 1,
                                                    "parameter_mb": 0.0, "task": "text-generation"},
                             "stages": [{"name": "bench", "status": "skipped",
                                         "summary": "not asked for (--no-bench)"}]})
    md = to_markdown(build(ev), {})
    assert "## Performance: generation\n\nNot measured in this run (not asked for (--no-bench))." in md


@pytest.mark.parametrize("kw", [{"prompt_tokens": "0"}, {"prompt_tokens": "nan"}, {"prompt_tokens": ""},
                                {"prompt_tokens": [-1]}, {"prompt_tokens": [10**9]}, {"new_tokens": 1},
                                {"new_tokens": float("nan")}, {"new_tokens": 10**9}, {"new_tokens": True},
                                {"repeats": 0}, {"genai_python": 3}, {"genai_python": ""}],
                         ids=lambda kw: f"{next(iter(kw))}")
def test_bad_bench_options_are_one_line_errors(kw):
    with pytest.raises(UsageError) as err:
        GenerateBenchOptions(**kw)
    assert "\n" not in str(err.value)


def test_a_bad_genai_interpreter_is_a_one_line_error(tmp_path, monkeypatch):
    text = tmp_path / "python"
    text.write_text("not a program")
    for path in (tmp_path / "nowhere", text):
        with pytest.raises(UsageError, match="--genai-python .*not an executable file") as err:
            GenerateBenchOptions(genai_python=str(path))
        assert "\n" not in str(err.value)
    monkeypatch.setenv(GENAI_ENV, str(text))
    with pytest.raises(UsageError, match=r"\$TORCH2ORT_GENAI_PYTHON"):
        MigrateOptions()
    monkeypatch.delenv(GENAI_ENV)
    if sys.executable and "onnxruntime_genai" not in sys.modules:  # an interpreter without it: said in one line
        with pytest.raises(UsageError, match="onnxruntime_genai does not import there") as err:
            genai_version(sys.executable)
        assert "\n" not in str(err.value)


def test_migrate_refuses_a_bad_genai_interpreter_before_any_work(tmp_path, capsys):
    assert run_cli("migrate", f"hf:{tmp_path / 'no-folder'}", "--genai-python", tmp_path / "nope",
                   "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an executable file" in err and not (tmp_path / "out").exists()
    # a python without onnxruntime_genai (this one): refused before the run too
    assert run_cli("migrate", f"hf:{tmp_path / 'no-folder'}", "--genai-python", sys.executable,
                   "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "onnxruntime_genai does not import there" in err


def _genai_python() -> str | None:
    for path in (os.environ.get(GENAI_ENV), ROOT / ".venv-genai" / "bin" / "python"):
        if path and Path(path).is_file():
            return str(path)
    return None


@pytest.mark.slow
@pytest.mark.skipif(_genai_python() is None, reason="no interpreter with onnxruntime-genai (.venv-genai)")
def test_onnxruntime_genai_builds_and_times_a_tiny_qwen2(tmp_path):
    from fixtures.decoders import decoder_dir, export_decoder
    from torch2ort.bundle.writer import pack
    from torch2ort.sources import ModelRequest, load_model

    folder = decoder_dir(tmp_path / "qwen2", "qwen2", hidden_size=64)  # head size 16: genai's GQA needs a multiple
    loaded = load_model(ModelRequest(f"hf:{folder}"))
    export = export_decoder(loaded, tmp_path / "qwen2.onnx")
    bundle = pack(export.path, tmp_path / "bundle", name="qwen2", tokenizer=loaded.hints.tokenizer,
                  generation=loaded.hints.generation)
    res = bench_generation(bundle, folder, tmp_path / "work", GenerateBenchOptions(
        prompt_tokens=[16], new_tokens=4, repeats=1, threads=1, genai_python=_genai_python()))
    genai = res["sides"]["onnxruntime-genai"]
    assert genai["measured"], genai["note"]
    assert genai["version"] and genai["ttft_ms"]["16"] > 0 and genai["decode_tok_s"]["16"] > 0
    assert (tmp_path / "work" / "genai-fp32" / "genai_config.json").is_file()
    assert set(res["ratios"]) >= {"decode vs onnxruntime-genai", "ttft vs onnxruntime-genai"}
