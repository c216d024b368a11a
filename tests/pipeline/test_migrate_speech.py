"""Whisper from a .wav, end to end: hf:DIR -> encoder + cached decoder graphs -> torch-free transcripts (issue 25.8).

One module-scoped migration of a tiny Whisper folder (tests/fixtures/speech.py) serves every test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.fixtures.speech import EN, NO_TIMESTAMPS, SOT, TRANSCRIBE, whisper_dir


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    from torch2ort.pipeline.migrate import migrate
    from torch2ort.pipeline.state import MigrateOptions
    from torch2ort.sources import ModelRequest

    root = tmp_path_factory.mktemp("whisper")
    folder = whisper_dir(root / "tiny")
    res = migrate(ModelRequest(f"hf:{folder}"), None, root / "out", MigrateOptions(bench=False))
    return folder, res


def test_migrate_detects_speech_recognition_and_passes_every_stage(migrated):
    folder, res = migrated
    ev = json.loads((res.out / "evidence.json").read_text())
    assert res.exit_code == 0, ev["outcome"]
    assert ev["model"]["task"] == "automatic-speech-recognition"
    assert ev["export"]["exporter"] == "dynamo" and "decoder (decoder.onnx): dynamo" in ev["export"]["why"]
    gen = ev["verify"]["generation"]
    assert gen["prefix"] == [SOT, EN, TRANSCRIBE, NO_TIMESTAMPS]
    assert gen["identical"] and len(gen["greedy"]) == 8  # 4 clips alone + 4 batched (the long one: its first window)
    assert all(g["tokens"] >= 32 or g["tokens"] for g in gen["greedy"])
    # peaked weights: the smallest top-1 margin is far above the logits' error
    assert gen["min_top1_margin"] > 100 * gen["max_logit_error"], gen
    cases = {c["name"] for c in ev["verify"]["cases"]}
    assert {"encoder", "prefix", "decode-16"} <= cases
    check = ev["check"]  # the packed bundle, torch-blocked, against pipeline("automatic-speech-recognition")
    assert check["torch_imported"] is False and check["outputs"]["text"]["passed"], check
    assert "4 raw audio files" in check["input"] and "num_beams=1" not in check["outputs"]["text"]["reference"]
    # the recording of 2.2 windows: transcribed in chunks, equal to pipeline(chunk_length_s=3)
    assert "speech-long-16k.wav" in check["input"]
    assert "1 longer than the 3 s window, compared with the pipeline at chunk_length_s=3" in \
        check["outputs"]["text"]["reference"]


def test_bundle_predict_transcribes_a_wav_path_and_bytes_like_the_pipeline(migrated):
    from torch2ort.parity.speech import clip_waves
    from torch2ort.runtime import Bundle
    from torch2ort.sources.hf_speech import reference_greedy, reference_pipeline

    folder, res = migrated
    bundle = Bundle.load(res.out / "bundle")
    wav = sorted((res.out / "samples" / "raw").glob("*16k.wav"))[0]
    by_path = bundle.predict(str(wav))
    assert by_path["text"] == bundle.predict(wav.read_bytes())["text"]
    assert by_path["text"] == reference_pipeline(folder, clip_waves([str(wav)]))[0]
    assert len(by_path["text"]) > 0 and by_path["token_ids"][-1:] != []
    out = bundle.transcribe([str(wav)], max_new_tokens=40)  # the token-level API
    assert len(out.token_ids[0]) == 40 or out.finish_reason[0] == "eos"
    from torch2ort.sources import ModelRequest, load_model
    from torch2ort.sources.hf_speech import reference_features

    loaded = load_model(ModelRequest(f"hf:{folder}"))
    assert out.token_ids == reference_greedy(loaded, reference_features(folder, clip_waves([str(wav)])), 40)


_CHUNKED = """
import json, sys
from torch2ort.runtime import Bundle
bundle = Bundle.load(sys.argv[1])
options = json.loads(sys.argv[3])
out = bundle.predict(sys.argv[2], **options)
chunks = bundle.transcriber().transcripts([sys.argv[2]], bundle.transcriber().chunking(
    options["chunk_length_s"], options["stride_length_s"]), options["max_new_tokens"])[0].chunk_tokens
print(json.dumps({"text": out["text"], "ids": out["token_ids"], "chunks": chunks,
                  "torch_imported": "torch" in sys.modules}))
"""


def test_long_audio_in_chunks_equals_the_pipeline_chunk_for_chunk_without_torch(migrated, monkeypatch):
    """Uneven strides and a chunk shorter than the window: the bundle in a torch-blocked process gives the
    pipeline's text, and each chunk's generated tokens equal the tokens the pipeline merged (read off its
    ``_decode_asr`` call); the merge really overlaps (fewer tokens than the chunks hold, more than any one)."""
    import subprocess
    import sys

    import transformers

    from torch2ort.parity.speech import clip_waves
    from torch2ort.pipeline.checks import BLOCK_TORCH
    from torch2ort.sources.hf_speech import reference_pipeline

    folder, res = migrated
    wav = str(res.out / "samples" / "raw" / "speech-long-16k.wav")
    options = {"chunk_length_s": 2.5, "stride_length_s": [0.8, 0.4], "max_new_tokens": 20}
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH + _CHUNKED, str(res.out / "bundle"), wav,
                           json.dumps(options)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    seen = []
    real = transformers.WhisperTokenizer._decode_asr

    def record(self, model_outputs, **kw):
        seen.append([o["tokens"][0].tolist() for o in model_outputs])
        return real(self, model_outputs, **kw)

    monkeypatch.setattr(transformers.WhisperTokenizer, "_decode_asr", record)
    want = reference_pipeline(folder, clip_waves([wav]), **options)[0]
    assert not got["torch_imported"]
    assert got["chunks"] == seen[0] and len(seen[0]) == 5  # 6.6 s in 2.5 s chunks stepping 1.3 s
    assert got["text"] == want
    assert max(map(len, got["chunks"])) < len(got["ids"]) < sum(map(len, got["chunks"]))


def test_long_audio_options_are_checked_in_one_line(migrated, tmp_path, capsys):
    import soundfile
    from tests.fixtures.families import run_cli

    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated[1].out / "bundle")
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(16000 * 4, np.float32), 16000)  # the fixture's window is 3 s (Whisper's: 30)
    # predict chunks it (one window, a sixth as stride); the token-level transcribe() stays one window per clip
    assert bundle.predict(str(long))["text"] == bundle.predict(str(long), chunk_length_s=3)["text"]
    with pytest.raises(PredictInputError, match="limit is 3 s"):
        bundle.transcribe(str(long))
    bad = [{"chunk_length_s": v} for v in (float("nan"), float("inf"), 0, -1, 1e99, 3.5, "8", True, [3])]
    bad += [{"stride_length_s": v} for v in (float("nan"), -1, [1], [1, 2, 3], "1", 1.5, [2, 1])]
    bad += [{"max_new_tokens": v} for v in (0, -1, 10**9, 1.5, True, "8")] + [{"threshold": 0.5}]
    for options in bad:
        with pytest.raises(PredictInputError) as err:
            bundle.predict(str(long), **options)
        assert "\n" not in str(err.value) and next(iter(options)) in str(err.value), options
    with pytest.raises(PredictInputError, match=r"^input 1: .*NaN"):  # a bad clip in a list is named by place
        bundle.predict([str(long), np.full(1600, np.nan, np.float32)])
    features = bundle.preprocess(np.zeros(1600, np.float32))
    with pytest.raises(PredictInputError, match="need raw audio"):
        bundle.predict(features, chunk_length_s=2)
    assert bundle.predict(features)["text"] == bundle.predict(np.zeros(1600, np.float32))["text"]
    out = migrated[1].out / "bundle"
    for value in ("nan", "-1", "[1,2,3]", "x"):
        capsys.readouterr()
        assert run_cli("predict", out, "--input", f"audio=@{long}", "--option", f"stride_length_s={value}") == 2
        err = capsys.readouterr().err.strip()
        assert "stride_length_s" in err and len(err.splitlines()) == 1, err
    assert run_cli("predict", out, "--input", f"audio=@{long}", "--option", "chunk_length_s=2",
                   "--option", "stride_length_s=[0.5,0.25]") == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["text"] == \
        bundle.predict(str(long), chunk_length_s=2, stride_length_s=[0.5, 0.25])["text"]


def test_the_decoder_cache_stays_in_onnxruntime_between_steps(migrated):
    """IOBinding: each step binds the previous step's ``present`` OrtValues as its past (the same objects, the
    same buffers) and the cross keys/values bound once per clip; only ``input_ids`` goes in from numpy, and only
    the logits come out to numpy. Copying the cache through numpy at any step fails this."""
    from torch2ort.runtime import Bundle
    from torch2ort.runtime.transcribe import Transcriber

    bundle = Bundle.load(migrated[1].out / "bundle")
    real = bundle.transcriber()
    steps: list[dict] = []

    class Binding:  # the real IOBinding, with a record of what each step binds and gets back
        def __init__(self, inner) -> None:
            self.inner = inner

        def bind_cpu_input(self, name, value):
            steps.append({"numpy": [name], "ort": {}, "out": None})
            self.inner.bind_cpu_input(name, value)

        def bind_ortvalue_input(self, name, value):
            steps[-1]["ort"][name] = value
            self.inner.bind_ortvalue_input(name, value)

        def get_outputs(self):
            outs = self.inner.get_outputs()
            steps[-1]["out"] = list(outs)
            return outs

        def __getattr__(self, name):
            return getattr(self.inner, name)

    class Session:
        def __init__(self, inner) -> None:
            self.inner = inner

        def io_binding(self):
            return Binding(self.inner.io_binding())

        def __getattr__(self, name):
            return getattr(self.inner, name)

    watched = Transcriber(Session(real.session), real.tokenizer, real.info, bundle)
    wav = str(sorted((migrated[1].out / "samples" / "raw").glob("*16k.wav"))[0])
    encoded = bundle.run(bundle.preprocess(wav))
    got = watched.decode(encoded, 12)
    assert got.token_ids == real.decode(encoded, 12).token_ids and len(steps) == len(got.token_ids[0]) == 12
    names = real.output_names
    for before, step in zip(steps, steps[1:]):
        assert step["numpy"] == ["input_ids"]
        for past in real.past_names:
            present = before["out"][names.index(past.replace("past_key_values", "present"))]
            assert step["ort"][past] is present and step["ort"][past].data_ptr() == present.data_ptr()
        for cross in real.cross_names:
            assert step["ort"][cross] is steps[0]["ort"][cross]


def test_a_broken_decoder_cache_fails_verify(migrated, tmp_path):
    import shutil

    from tests.fixtures.decoders import plant_cache_fault

    from torch2ort.parity.speech import verify_speech
    from torch2ort.sources import ModelRequest, load_model

    folder, res = migrated
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    shutil.copyfile(res.out / "onnx" / "model.onnx", onnx_dir / "model.onnx")
    plant_cache_fault(res.out / "onnx" / "decoder.onnx", onnx_dir / "decoder.onnx")
    loaded = load_model(ModelRequest(f"hf:{folder}"))
    files = [str(sorted((res.out / "samples" / "raw").glob("*.wav"))[0])]
    result = verify_speech(loaded, onnx_dir / "model.onnx", files)
    assert not result.report
    failed = {c.case for c in result.report.comparisons if not c.passed}
    assert "decode-1" in failed and "prefix" not in failed and "encoder" not in failed  # the first step reading it


def test_a_wrong_mel_filterbank_moves_the_encoder_output(migrated, tmp_path):
    from tests.fixtures.faults import bundle_with

    from torch2ort.runtime import Bundle
    from torch2ort.runtime.manifest import sha256_file

    folder, res = migrated
    files = [str(f) for f in sorted((res.out / "samples" / "raw").glob("*.wav"))]
    dest = tmp_path / "bad"

    def wrong_filters(manifest: dict) -> None:  # each mel bin reads its neighbour's filter, checksum kept valid
        path = dest / "mel_filters.npy"
        np.save(path, np.roll(np.load(path), 1, axis=1))
        manifest["files"]["mel_filters.npy"] = sha256_file(path)

    good = Bundle.load(res.out / "bundle").predict(files[0]).raw["last_hidden_state"]
    bad = Bundle.load(bundle_with(res.out / "bundle", dest, wrong_filters)).predict(files[0]).raw["last_hidden_state"]
    # the encoder output the check compares moves far past the verify tolerance (the tiny model's transcripts
    # barely depend on the audio, so the texts alone would not show it)
    assert float(np.abs(good - bad).max()) > 1e-2


def test_a_bundle_packed_before_the_transcript_facts_keeps_to_one_window(migrated, tmp_path):
    from tests.fixtures.faults import bundle_with

    from torch2ort.errors import BundleError
    from torch2ort.runtime import Bundle

    def drop(manifest: dict) -> None:
        del manifest["speech"]["transcript"]

    res = migrated[1]
    old = Bundle.load(bundle_with(res.out / "bundle", tmp_path / "old", drop))
    wav, long = (str(res.out / "samples" / "raw" / f"speech-{n}16k.wav") for n in ("", "long-"))
    assert old.predict(wav)["text"] == Bundle.load(res.out / "bundle").predict(wav)["text"]
    for options in ({}, {"chunk_length_s": 2}):
        with pytest.raises(BundleError, match="migrate the model again"):
            old.predict(long if not options else wav, **options)


def test_samples_given_by_the_user_may_be_longer_than_the_window(migrated, tmp_path):
    """The load stage makes each file's feed (its first window, as the feature extractor cuts it) rather than
    refusing a recording over the window; the check then transcribes it in chunks."""
    import shutil

    from torch2ort.evidence import Evidence
    from torch2ort.pipeline.stages import Load
    from torch2ort.pipeline.state import MigrateOptions, MigrationState
    from torch2ort.sources import ModelRequest

    folder, res = migrated
    samples = tmp_path / "clips"
    samples.mkdir()
    for name in ("speech-16k.wav", "speech-long-16k.wav"):
        shutil.copyfile(res.out / "samples" / "raw" / name, samples / name)
    state = MigrationState(ModelRequest(f"hf:{folder}"), None, tmp_path / "out",
                           MigrateOptions(samples=str(samples), bench=False), Evidence(torch2ort="test"))
    Load().run(state)
    assert [p.split("/")[-1] for p in state.raw_files] == ["speech-16k.wav", "speech-long-16k.wav"]
    feeds = sorted((tmp_path / "out" / "samples").glob("*.npz"))
    assert len(feeds) == 2 and all(np.load(f)["input_features"].shape == (1, 80, 300) for f in feeds)
