"""Serving a Whisper bundle (issue 25, parts 6 and 8): a real `torch2ort serve` process transcribes through
OIP infer (tritonclient over HTTP and gRPC) and the OpenAI-compatible ``/v1/audio/transcriptions`` (the real
``openai`` client), each transcript equal to ``Bundle.predict`` on the same file (whose equality with
transformers' pipeline tests/pipeline/test_migrate_speech.py proves); bad requests are one-line 4xx.

One module-scoped bundle: the tiny peaked Whisper of tests/fixtures/speech.py (3 s windows), exported and
packed without the migration's checks (the speech tests run those), served next to ``lookup`` (not speech).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from tests.fixtures.hf_media import AUDIO_FILES

import torch2ort
from serve.probes import Target, request

pytest.importorskip("torch")
pytest.importorskip("openai")


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """(bundle dir, the served clips: three real recordings at 22/32/8 kHz and one of 2.2 windows)."""
    from tests.fixtures.speech import whisper_dir

    from torch2ort.bundle.writer import pack
    from torch2ort.export.speech import export_speech
    from torch2ort.inputs.media import make_long_speech
    from torch2ort.sources import ModelRequest, load_model

    root = tmp_path_factory.mktemp("whisper-serve")
    loaded = load_model(ModelRequest(f"hf:{whisper_dir(root / 'tiny')}"))
    h = loaded.hints
    (root / "onnx").mkdir()
    export_speech(loaded, h.spec, root / "onnx" / "model.onnx")
    bundle = pack(root / "onnx" / "model.onnx", root / "whisper", name="whisper", preprocess=h.preprocess,
                  tokenizer=h.tokenizer, assets=h.assets, speech=h.speech)
    return bundle, [*AUDIO_FILES, make_long_speech(root, h.speech["max_seconds"])]


@pytest.fixture(scope="module")
def expected(whisper):
    """``Bundle.predict`` on each clip, in this process: what every route must answer."""
    from torch2ort.runtime import Bundle

    bundle = Bundle.load(whisper[0])
    return {str(p): bundle.predict(str(p))["text"] for p in whisper[1]}


@pytest.fixture(scope="module")
def served(whisper, lookup_bundle, tmp_path_factory):
    src = str(Path(torch2ort.__file__).resolve().parents[1])
    t = Target(src, [str(whisper[0]), str(lookup_bundle)], ["--max-file-mb", "1", "--log-level", "warning"],
               grpc=True)
    t.start(tmp_path_factory.mktemp("asr-log") / "server.log")
    yield t
    t.stop()
    assert t.proc.returncode == 0, t.log.read_text()[-2000:]


def _openai(t: Target):
    import openai

    return openai.OpenAI(base_url=f"http://{t.url}/v1", api_key="unused", max_retries=0)


def test_metadata_names_the_audio_input_and_the_transcript_output(served):
    status, _, body = request(served.url, "GET", "/v2/models/whisper")
    meta = json.loads(body)
    assert status == 200
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("audio_file", "BYTES")]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [("text_output", "BYTES")]
    assert meta["parameters"]["torch2ort_transcription"] == {
        "openai": "/v1/audio/transcriptions", "window_s": 3.0, "language": "english"}
    models = json.loads(request(served.url, "GET", "/v1/models")[2])
    assert [m["id"] for m in models["data"]] == ["whisper"]  # lookup neither generates nor transcribes
    maps = Path(f"/proc/{served.proc.pid}/maps").read_text()  # warmed up (a transcription ran) without torch
    assert "libtorch" not in maps and "onnxruntime" in maps


def test_oip_infer_over_http_and_grpc_transcribes_as_bundle_predict(served, whisper, expected):
    import tritonclient.grpc as tg
    import tritonclient.http as th

    clips = whisper[1]
    files = np.array([Path(p).read_bytes() for p in clips], dtype=object)
    want = [expected[str(p)] for p in clips]
    assert len(set(want)) >= 2 and all(want)  # non-empty, and not one answer for every file
    b64 = np.array([base64.b64encode(f).decode() for f in files], dtype=object)
    for binary in (True, False):  # the binary extension (raw bytes) and JSON (base64)
        client = th.InferenceServerClient(served.url)
        inp = th.InferInput("audio_file", [len(files)], "BYTES")
        inp.set_data_from_numpy(files if binary else b64, binary_data=binary)
        out = client.infer("whisper", [inp], outputs=[th.InferRequestedOutput("text_output", binary_data=binary)])
        got = [t.decode() if isinstance(t, bytes) else t for t in out.as_numpy("text_output")]
        assert got == want, binary
    gclient = tg.InferenceServerClient(served.grpc_url)
    ginp = tg.InferInput("audio_file", [1], "BYTES")
    ginp.set_data_from_numpy(files[-1:])  # the long one: chunked on the server as predict chunks it
    assert [t.decode() for t in gclient.infer("whisper", [ginp]).as_numpy("text_output")] == want[-1:]


def test_infer_parameters_are_predicts_options(served, whisper):
    from torch2ort.runtime import Bundle

    wav = whisper[1][0]
    options = {"chunk_length_s": 1.5, "stride_length_s": [0.25, 0.25], "max_new_tokens": 20}
    want = Bundle.load(whisper[0]).predict(str(wav), **options)["text"]
    body = {"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(wav.read_bytes()).decode()]}], "parameters": options}
    status, _, out = request(served.url, "POST", "/v2/models/whisper/infer", json.dumps(body).encode())
    assert status == 200, out
    assert json.loads(out)["outputs"][0]["data"] == [want]


def test_openai_client_transcribes_as_bundle_predict(served, whisper, expected):
    client = _openai(served)
    for wav in whisper[1]:
        with open(wav, "rb") as f:
            assert client.audio.transcriptions.create(model="whisper", file=f).text == expected[str(wav)]
    with open(whisper[1][1], "rb") as f:
        text = client.audio.transcriptions.create(model="whisper", file=f, response_format="text", language="en",
                                                  temperature=0)
    assert text == expected[str(whisper[1][1])]
    scrape = request(served.url, "GET", "/metrics")[2].decode()
    line = next(x for x in scrape.splitlines() if x.startswith('torch2ort_transcriptions_total{model="whisper"}'))
    assert float(line.split()[-1]) >= 5


@pytest.mark.parametrize("fields, status, says", [
    ({"response_format": "verbose_json"}, 400, "response_format 'verbose_json' is not served"),
    ({"response_format": "srt"}, 400, "formats: json, text"),
    ({"language": "de"}, 400, "transcribes 'en' only"),
    ({"temperature": "0.7"}, 400, "only 0 is served"),
    ({"temperature": "nan"}, 400, "only 0 is served"),
    ({"temperature": "warm"}, 400, "is not a number"),
    ({"prompt": "Hello."}, 400, "prompt is not served"),
    ({"stream": "true"}, 400, "stream is not served"),
    ({"timestamp_granularities[]": "word"}, 400, "not served; fields"),
    ({"model": "nope"}, 404, "unknown model 'nope'"),
    ({"model": "lookup"}, 400, "does not transcribe speech; models that do: whisper"),
    ({"model": ""}, 400, "needs 'model'"),
    ({"file": None}, 400, "needs 'file'"),
    ({"file": b""}, 400, "is empty"),
    ({"file": b"RIFF not really a wav"}, 400, "is not readable audio"),
    ({"file": b"\0" * (2 * 2**20)}, 413, "--max-file-mb"),
], ids=["verbose-json", "srt", "language", "temperature", "temperature-nan", "temperature-text", "prompt",
        "stream", "unknown-field", "unknown-model", "not-speech", "no-model", "no-file", "empty-file", "not-audio",
        "too-large"])
def test_bad_transcription_requests_are_one_line_4xx_in_openais_shape(served, whisper, fields, status, says):
    import requests

    form = {"model": "whisper"} | {k: v for k, v in fields.items() if k != "file"}
    data = fields.get("file", whisper[1][0].read_bytes())
    parts = {k: (None, v) for k, v in form.items()} | ({"file": ("clip.wav", data)} if data is not None else {})
    r = requests.post(f"http://{served.url}/v1/audio/transcriptions", files=parts, timeout=60)  # multipart
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    assert says in message and "\n" not in message, message


def test_bad_oip_requests_are_one_line_400s(served):
    def infer(body: dict) -> tuple[int, str]:
        status, _, out = request(served.url, "POST", "/v2/models/whisper/infer", json.dumps(body).encode())
        return status, json.loads(out)["error"]

    wav = {"name": "audio_file", "datatype": "BYTES", "shape": [1], "data": ["UklGRg=="]}
    cases = [
        ({"inputs": [{"name": "input_features", "datatype": "FP32", "shape": [1], "data": [0.0]}]}, "send one BYTES"),
        ({"inputs": [wav]}, "not readable audio"),
        ({"inputs": [wav | {"data": [""]}]}, "is empty"),
        ({"inputs": [wav], "parameters": {"num_beams": 5}}, "takes max_new_tokens, chunk_length_s"),
        ({"inputs": [wav], "parameters": {"chunk_length_s": 99}}, "chunk_length_s must be"),
        ({"inputs": [wav], "parameters": {"max_new_tokens": 0}}, "max_new_tokens must be"),
        ({"inputs": [wav], "outputs": [{"name": "logits"}]}, "outputs: text_output"),
    ]
    for body, says in cases:
        status, message = infer(body)
        assert status == 400 and says in message and "\n" not in message, (body, message)
    assert request(served.url, "GET", "/v2/health/ready")[0] == 200
