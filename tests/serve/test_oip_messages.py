"""The server's own KServe v2 gRPC messages: current with the .proto, the same wire format as
tritonclient's, and enough to serve and call gRPC with tritonclient impossible to import."""

from __future__ import annotations

import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as triton_pb

from fixtures.server import free_port
from serve.probes import wait_ready
from torch2ort.runtime import Bundle
from torch2ort.serve import oip_messages as pb

ROOT = Path(__file__).resolve().parents[2]


def test_the_checked_in_descriptor_is_generated_from_the_proto():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) makes the descriptor")
    render = runpy.run_path(str(ROOT / "scripts" / "gen_oip_proto"))["render"]
    checked_in = (ROOT / "src" / "torch2ort" / "serve" / "_oip_descriptor.py").read_text()
    assert checked_in == render(), "stale: run python scripts/gen_oip_proto"


def _fields(descriptor) -> dict:
    # is_repeated, not label: protobuf 7 dropped FieldDescriptor.label (proto3 has no required fields)
    return {f.name: (f.number, f.type, f.is_repeated, f.message_type.full_name if f.message_type else None)
            for f in descriptor.fields}


def _messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _messages(nested)


def test_every_message_has_tritonclients_fields_and_numbers():
    """Triton's grpc_service.proto is a superset of KServe's: each of our messages must match its namesake."""
    checked = 0
    for top in pb._file.message_types_by_name.values():
        for ours in _messages(top):
            theirs = triton_pb.DESCRIPTOR.pool.FindMessageTypeByName(ours.full_name)
            assert _fields(ours) == {k: v for k, v in _fields(theirs).items() if k in _fields(ours)}, ours.full_name
            checked += 1
    assert checked >= 20
    ours = {m.name: (m.input_type.full_name, m.output_type.full_name) for m in pb._service.methods}
    theirs = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours == {n: (theirs.methods_by_name[n].input_type.full_name, theirs.methods_by_name[n].output_type.full_name)
                    for n in ours}


def test_bytes_round_trip_between_the_two_definitions():
    x = np.arange(6, dtype=np.float32)
    theirs = triton_pb.ModelInferRequest(
        model_name="m", model_version="1", id="r-1",
        parameters={"binary_data_output": triton_pb.InferParameter(bool_param=True)},
        inputs=[triton_pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[2, 3])],
        outputs=[triton_pb.ModelInferRequest.InferRequestedOutputTensor(name="y")], raw_input_contents=[x.tobytes()])
    ours = pb.ModelInferRequest.FromString(theirs.SerializeToString())
    assert ours.id == "r-1" and list(ours.inputs[0].shape) == [2, 3]
    assert ours.parameters["binary_data_output"].bool_param
    assert np.array_equal(np.frombuffer(ours.raw_input_contents[0], np.float32), x)
    assert triton_pb.ModelInferRequest.FromString(ours.SerializeToString()) == theirs
    typed = pb.ModelInferResponse(outputs=[{"name": "y", "datatype": "INT64", "shape": [2],
                                            "contents": {"int64_contents": [7, -1]}}])
    back = triton_pb.ModelInferResponse.FromString(typed.SerializeToString())
    assert list(back.outputs[0].contents.int64_contents) == [7, -1]


SERVE_WITHOUT_TRITONCLIENT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tritonclient", "torch"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
try:
    import tritonclient.grpc
except ImportError:
    pass
else:
    raise SystemExit("the block did not block")
from torch2ort.cli import main
rc = main(sys.argv[1:])
assert "torch2ort.serve.grpc_server" in sys.modules and not any(m.startswith("tritonclient") for m in sys.modules)
print("clean exit", rc, flush=True)
sys.exit(rc)
"""


def test_grpc_serves_with_tritonclient_blocked(bundles):
    port, grpc_port = free_port(), free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", SERVE_WITHOUT_TRITONCLIENT, "serve", str(bundles["mobilenet"]),
                             "--port", str(port), "--grpc-port", str(grpc_port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_ready(f"127.0.0.1:{port}", proc)
        x = np.random.default_rng(3).random((2, 3, 32, 32), dtype=np.float32)
        request = pb.ModelInferRequest(model_name="mobilenet", id="raw-1", raw_input_contents=[x.tobytes()],
                                       inputs=[{"name": "image", "datatype": "FP32", "shape": list(x.shape)}],
                                       outputs=[{"name": "probabilities"}])
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                        request_serializer=pb.ModelInferRequest.SerializeToString,
                                        response_deserializer=pb.ModelInferResponse.FromString)
            response = infer(request, timeout=30)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert response.id == "raw-1" and [o.name for o in response.outputs] == ["probabilities"]
    got = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(list(response.outputs[0].shape))
    np.testing.assert_allclose(got, Bundle.load(bundles["mobilenet"]).predict({"image": x})["probabilities"],
                               rtol=1e-6, atol=1e-6)
    assert proc.returncode == 0 and "clean exit 0" in out, err[-2000:]
