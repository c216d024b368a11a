"""Encoded files through the Open Inference Protocol: an image, audio and signal records (a WFDB record as a
zip or tar) sent as BYTES over REST JSON (base64), the binary tensor extension, and gRPC (raw and
bytes_contents), several to a request, answered exactly as ``Bundle.predict`` answers the same bytes."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg
from tritonclient.utils import InferenceServerException

from fixtures.server import free_port, running
from serve.conftest import LABELS
from serve.file_bundles import audio_file, csv_file, ecg, file_bundles, mat_file, npy_file, tarred, wfdb_files, zipped
from serve.test_http import call, error_of
from torch2ort.bundle.writer import pack
from torch2ort.runtime import Bundle
from torch2ort.serve import Limits


def png(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory, exported):
    root = tmp_path_factory.mktemp("file-bundles")
    paths = file_bundles(root) | {
        "faces": pack(exported("mobilenet"), root / "faces", name="faces", labels=LABELS, preprocess="image",
                      postprocess="softmax-topk")}
    port = free_port()
    with running(list(paths.values()), Limits(max_batch=4, max_delay_ms=2, max_file_mb=0.5),
                 grpc_port=port) as (url, hosts):
        yield url, f"127.0.0.1:{port}", {name: Bundle.load(p) for name, p in paths.items()}, root


@pytest.fixture(scope="module")
def records(served):
    data = ecg()
    files = wfdb_files(served[3] / "record", data)
    return {"npy": npy_file(data), "csv": csv_file(data), "mat": mat_file(data), "zip": zipped(files),
            "tar": tarred(files), "files": files}


def _cases(records) -> dict[str, tuple[str, str, list[bytes]]]:
    """model -> (its file input, output to compare, files for one request)."""
    return {"faces": ("image_file", "probabilities", [png(1), png(2, (64, 30))]),
            "cough": ("audio_file", "segment_prob", [audio_file(), audio_file(0.7, 16000, "FLAC", 1)]),
            "ecg": ("signal_file", "probs", [records[k] for k in ("npy", "csv", "mat", "zip", "tar")])}


def test_metadata_declares_the_file_input(served):
    client = th.InferenceServerClient(served[0])
    for model, name, accepts in [("faces", "image_file", "PNG, JPEG"), ("cough", "audio_file", "WAV, FLAC"),
                                 ("ecg", "signal_file", "WFDB record")]:
        inputs = {t["name"]: t for t in client.get_model_metadata(model)["inputs"]}
        meta = inputs[name]
        assert meta["datatype"] == "BYTES" and meta["shape"] == [-1]
        assert meta["parameters"]["content"] == "file" and accepts in meta["parameters"]["accepts"]
        assert meta["parameters"]["max_bytes"] == 2**19 and meta["parameters"]["json"] == "base64"
        assert set(meta["parameters"]["instead_of"]) == set(inputs) - {name}  # the model's tensors stay
    grpc_meta = tg.InferenceServerClient(served[1]).get_model_metadata("cough")
    assert [t.name for t in grpc_meta.inputs] == ["segments", "segment_mask", "audio_file"]


@pytest.mark.parametrize("model", ["faces", "cough", "ecg"])
@pytest.mark.parametrize("via", ["http-binary", "http-json", "grpc-raw", "grpc-bytes"])
def test_files_in_equal_bundle_predict(served, records, model, via):
    url, grpc_url, bundles, _ = served
    name, output, files = _cases(records)[model]
    expected = bundles[model].predict(files)[output]
    if via.startswith("http"):
        binary = via == "http-binary"
        data = np.array(files if binary else [base64.b64encode(f).decode() for f in files], dtype=object)
        tensor = th.InferInput(name, [len(files)], "BYTES")
        tensor.set_data_from_numpy(data, binary_data=binary)
        got = th.InferenceServerClient(url).infer(model, [tensor], outputs=[th.InferRequestedOutput(output)])
        got = got.as_numpy(output)
    elif via == "grpc-raw":
        tensor = tg.InferInput(name, [len(files)], "BYTES")
        tensor.set_data_from_numpy(np.array(files, dtype=object))
        got = tg.InferenceServerClient(grpc_url).infer(model, [tensor]).as_numpy(output)
    else:  # the plain generated stub, typed contents: bytes_contents
        request = pb.ModelInferRequest(model_name=model)
        t = request.inputs.add(name=name, datatype="BYTES", shape=[len(files)])
        t.contents.bytes_contents.extend(files)
        import grpc

        with grpc.insecure_channel(grpc_url) as channel:
            response = pbg.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        out = next(o for o in response.outputs if o.name == output)
        got = np.array(out.contents.fp32_contents, np.float32).reshape(list(out.shape))
    assert got.shape == expected.shape and got.shape[0] == len(files)
    np.testing.assert_array_equal(got, expected)


def test_one_file_equals_predict_on_bytes_and_on_a_file_object(served):
    url, _, bundles, _ = served
    wav = audio_file(2.1, 8000)
    body = {"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(wav).decode()]}]}
    status, _, raw = call(url, "/v2/models/cough/infer", body)
    outs = {o["name"]: o for o in json.loads(raw)["outputs"]}
    assert status == 200 and outs["segment_prob"]["shape"] == [1, 5]
    assert outs["bag_prob"]["data"] == bundles["cough"].predict(io.BytesIO(wav))["bag_prob"].tolist()
    assert outs["bag_prob"]["data"] == bundles["cough"].predict(wav)["bag_prob"].tolist()


def test_the_models_own_tensors_stay_accepted(served):
    url, _, bundles, _ = served
    x = np.random.default_rng(3).standard_normal((1, 3, 256)).astype(np.float32)
    tensor = th.InferInput("ecg", [1, 3, 256], "FP32")
    tensor.set_data_from_numpy(x)
    got = th.InferenceServerClient(url).infer("ecg", [tensor]).as_numpy("probs")
    np.testing.assert_array_equal(got, bundles["ecg"].predict({"ecg": x})["probs"])


def _post(url: str, model: str, name: str, files: list[bytes]):
    body = {"inputs": [{"name": name, "datatype": "BYTES", "shape": [len(files)],
                        "data": [base64.b64encode(f).decode() for f in files]}]}
    return call(url, f"/v2/models/{model}/infer", body)


def _zip_with(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16  # a symbolic link, as Info-ZIP stores one
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _lying(files: dict[str, bytes], declared: int) -> bytes:
    """A zip of the record whose first member's headers (local and central) declare ``declared`` bytes."""
    data = bytearray(zipped(files))
    data[22:26] = declared.to_bytes(4, "little")
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = declared.to_bytes(4, "little")
    return bytes(data)


@pytest.fixture(scope="module")
def bomb():
    """A real zip bomb for this bundle: 4 MiB of zeros (its unpacked limit is under 1 MiB) in about 4 KB."""
    return zipped({"rec.hea": b"rec 3 500 300\n", "rec.dat": bytes(4 << 20)})


def _hostile(records, bomb) -> list[tuple[str, str, bytes, int, str]]:
    files = records["files"]
    over = b"\x93NUMPY" + bytes(2**19)
    return [
        ("ecg", "signal_file", _zip_with({"../rec.hea": files["rec.hea"]}), 400, "not a plain file name"),
        ("ecg", "signal_file", _zip_with({"dir/rec.hea": files["rec.hea"]}), 400, "not a plain file name"),
        ("ecg", "signal_file", _zip_with(files, symlink="rec2.dat"), 400, "not a regular file"),
        ("ecg", "signal_file", tarred({**files, "/etc/rec.dat": b"x"}), 400, "not a plain file name"),
        ("ecg", "signal_file", bomb, 400, "over the limit"),
        ("ecg", "signal_file", _lying(files, 10), 400, "Bad CRC-32"),
        ("ecg", "signal_file", _lying(files, 10**5), 400, "its header declares 100,000"),
        ("ecg", "signal_file", zipped({"rec.hea": files["rec.hea"].replace(b"rec.dat", b"passwd")}), 400,
         "not a file of the archive"),
        ("ecg", "signal_file", zipped({"a.txt": b"x"}), 400, "holds 0 .hea files"),
        ("ecg", "signal_file", over, 413, "--max-file-mb"),
        ("ecg", "signal_file", b"\x93NUMPY\x01\x00" + b"v" * 10, 400, "not a readable npy"),
        ("faces", "image_file", b"\x89PNG\r\n\x1a\n" + b"junk" * 20, 400, "not a readable image"),
        ("cough", "audio_file", audio_file(21, 8000), 400, "the limit is 20 s"),
        ("cough", "audio_file", b"RIFF\x24\x00\x00\x00WAVEjunk", 400, "not readable audio"),
    ]


def test_hostile_files_are_refused_with_one_line(served, records, bomb):
    assert len(bomb) < 2**14
    for model, name, data, status, needle in _hostile(records, bomb):
        resp = _post(served[0], model, name, [data])
        message = error_of(resp)
        assert resp[0] == status and needle in message and "\n" not in message, (needle, resp[0], message)


def test_a_pixel_bomb_is_refused_from_its_header(served):
    from serve.probe_files import _bomb_png

    resp = _post(served[0], "faces", "image_file", [_bomb_png(8000, 6000)])  # 48 MP declared
    assert resp[0] == 400 and "over the limit of 40,000,000" in error_of(resp)


@pytest.mark.parametrize("body, needle", [
    ({"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]}, "base64"),
    ({"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1], "data": [3]}]}, "base64 string"),
    ({"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [0], "data": []}]}, "shape [N], N >= 1"),
    ({"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1], "data": [""]},
                {"name": "segment_mask", "datatype": "BOOL", "shape": [1, 1], "data": [True]}]}, "not both"),
])
def test_malformed_file_requests_are_400(served, body, needle):
    resp = call(served[0], "/v2/models/cough/infer", body)
    assert resp[0] == 400 and needle in error_of(resp)


def test_grpc_refuses_hostile_files_with_their_messages(served, records, bomb):
    client = tg.InferenceServerClient(served[1])
    tensor = tg.InferInput("signal_file", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([_zip_with({"../rec.hea": b"x"})], dtype=object))
    with pytest.raises(InferenceServerException, match="not a plain file name"):
        client.infer("ecg", [tensor])
    tensor.set_data_from_numpy(np.array([b"\x93NUMPY" + bytes(2**19)], dtype=object))
    with pytest.raises(InferenceServerException, match="max-file-mb"):
        client.infer("ecg", [tensor])
