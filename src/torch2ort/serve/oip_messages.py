"""The KServe v2 gRPC messages (``grpc_predict_v2.proto``), built in a private descriptor pool.

tritonclient registers messages with the same full names (``inference.ModelInferRequest``…) in
protobuf's default pool, which refuses a second file defining them; so these classes live in a pool
of their own, and a process may import both the server and tritonclient. The wire format is the
same: tritonclient's client talks to the server unchanged.

    >>> from torch2ort.serve import oip_messages as pb
    >>> pb.ModelInferRequest(model_name="m").SerializeToString()
    b'\\n\\x01m'

``METHODS`` maps each RPC of ``SERVICE`` to its (request, response) classes.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from torch2ort.serve._oip_descriptor import SERIALIZED

SERVICE = "inference.GRPCInferenceService"

_pool = descriptor_pool.DescriptorPool()
_file = _pool.Add(descriptor_pb2.FileDescriptorProto.FromString(SERIALIZED))


def _message(name: str):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"inference.{name}"))


ServerLiveRequest, ServerLiveResponse = _message("ServerLiveRequest"), _message("ServerLiveResponse")
ServerReadyRequest, ServerReadyResponse = _message("ServerReadyRequest"), _message("ServerReadyResponse")
ModelReadyRequest, ModelReadyResponse = _message("ModelReadyRequest"), _message("ModelReadyResponse")
ServerMetadataRequest, ServerMetadataResponse = _message("ServerMetadataRequest"), _message("ServerMetadataResponse")
ModelMetadataRequest, ModelMetadataResponse = _message("ModelMetadataRequest"), _message("ModelMetadataResponse")
ModelInferRequest, ModelInferResponse = _message("ModelInferRequest"), _message("ModelInferResponse")
RepositoryIndexRequest = _message("RepositoryIndexRequest")
RepositoryIndexResponse = _message("RepositoryIndexResponse")
InferTensorContents, InferParameter = _message("InferTensorContents"), _message("InferParameter")

_service = _pool.FindServiceByName(SERVICE)
METHODS = {m.name: (message_factory.GetMessageClass(m.input_type), message_factory.GetMessageClass(m.output_type))
           for m in _service.methods}

__all__ = ["METHODS", "SERVICE", "InferParameter", "InferTensorContents", "ModelInferRequest", "ModelInferResponse",
           "ModelMetadataRequest", "ModelMetadataResponse", "ModelReadyRequest", "ModelReadyResponse",
           "RepositoryIndexRequest", "RepositoryIndexResponse", "ServerLiveRequest", "ServerLiveResponse",
           "ServerMetadataRequest", "ServerMetadataResponse", "ServerReadyRequest", "ServerReadyResponse"]
