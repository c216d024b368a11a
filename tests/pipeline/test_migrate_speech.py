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
    assert gen["identical"] and len(gen["greedy"]) == 6  # 3 clips alone + 3 batched
    assert all(g["tokens"] >= 32 or g["tokens"] for g in gen["greedy"])
    # peaked weights: the smallest top-1 margin is far above the logits' error
    assert gen["min_top1_margin"] > 100 * gen["max_logit_error"], gen
    cases = {c["name"] for c in ev["verify"]["cases"]}
    assert {"encoder", "prefix", "decode-16"} <= cases
    check = ev["check"]  # the packed bundle, torch-blocked, against pipeline("automatic-speech-recognition")
    assert check["torch_imported"] is False and check["outputs"]["text"]["passed"], check
    assert "3 raw audio files" in check["input"] and "num_beams=1" not in check["outputs"]["text"]["reference"]


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


def test_audio_over_one_window_is_refused_in_one_line(migrated, tmp_path):
    import soundfile

    from torch2ort.errors import PredictInputError
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(migrated[1].out / "bundle")
    long = tmp_path / "long.wav"
    soundfile.write(long, np.zeros(16000 * 4, np.float32), 16000)  # the fixture's window is 3 s (Whisper's: 30)
    for audio in (str(long), np.zeros(16000 * 4, np.float32)):
        with pytest.raises(PredictInputError, match="limit is 3 s") as err:
            bundle.predict(audio)
        assert "\n" not in str(err.value)
    for bad in (0, -1, 10**9, 1.5, True, "8"):
        with pytest.raises(PredictInputError, match="max_new_tokens"):
            bundle.transcribe(str(long)[:0] or np.zeros(1600, np.float32), max_new_tokens=bad)
    with pytest.raises(PredictInputError, match="takes the option max_new_tokens"):
        bundle.predict(np.zeros(1600, np.float32), threshold=0.5)


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
