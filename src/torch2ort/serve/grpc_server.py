"""The Open Inference Protocol over gRPC (KServe v2 ``inference.GRPCInferenceService``), in the same
process and event loop as the HTTP app, over the same ModelHosts (queues, batching, limits, metrics).

The messages are KServe's ``grpc_predict_v2.proto`` (plus Triton's RepositoryIndex), built from the
proto in a private descriptor pool (``oip_messages.py``), and the service is registered with a
generic handler under its full name, so tritonclient is not needed to serve, and a process may
import both the server and tritonclient (whose copies of the same messages live in protobuf's
default pool). On the wire they are the same messages: tritonclient's client works as it is.

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer
(``raw_input_contents`` or typed ``contents``; the answer uses the same form), RepositoryIndex. The
others answer UNIMPLEMENTED. Errors carry the HTTP side's messages, with codes: 400 INVALID_ARGUMENT,
401 UNAUTHENTICATED, 404 NOT_FOUND, 503 UNAVAILABLE, 500 INTERNAL. ServerLive and ServerReady stay
open when a token is set; the rest needs ``authorization: Bearer <token>`` metadata.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from torch2ort import __version__
from torch2ort.errors import ProtocolError
from torch2ort.serve import oip_messages as pb
from torch2ort.serve.auth import authorized
from torch2ort.serve.compute import Compute
from torch2ort.serve.host import ModelHost
from torch2ort.serve.protocol import DATATYPES, _bytes_payload, _count, _from_binary, _from_json, oip_datatype
from torch2ort.serve.state import ServerState

log = logging.getLogger("torch2ort.serve")
CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
         404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
         413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


class Servicer:
    """One async method per implemented RPC of ``pb.SERVICE``, each ``(request, context) -> response``."""

    def __init__(self, state: ServerState) -> None:
        self.s = state

    async def _guard(self, context, call, *args):
        """Run ``call``; a ProtocolError becomes the matching gRPC status with its message."""
        try:
            if self.s.token is not None:
                header = dict(context.invocation_metadata() or ()).get("authorization")
                if not authorized(header, self.s.token):
                    raise ProtocolError("missing or wrong bearer token (authorization: Bearer <token>)", 401)
            return await call(*args)
        except ProtocolError as exc:
            await context.abort(CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message)
        except Exception as exc:
            log.exception("internal error (gRPC)")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}")

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.s.ready)

    async def ModelReady(self, request, context):
        async def ready():
            return pb.ModelReadyResponse(ready=self.s.host_of(request.name, request.version or None).ready)
        return await self._guard(context, ready)

    async def ServerMetadata(self, request, context):
        async def meta():
            return pb.ServerMetadataResponse(name="torch2ort", version=__version__, extensions=self.s.extensions)
        return await self._guard(context, meta)

    async def ModelMetadata(self, request, context):
        async def meta():
            m = self.s.host_of(request.name, request.version or None).info.metadata()
            tensors = [{k: t[k] for k in ("name", "datatype", "shape")} for t in m["inputs"]]
            outputs = [{k: t[k] for k in ("name", "datatype", "shape")} for t in m["outputs"]]
            return pb.ModelMetadataResponse(name=m["name"], versions=m["versions"], platform=m["platform"],
                                            inputs=tensors, outputs=outputs)
        return await self._guard(context, meta)

    async def RepositoryIndex(self, request, context):
        async def index():
            models = [pb.RepositoryIndexResponse.ModelIndex(name=n, version=h.version,
                                                              state="READY" if h.ready else "UNAVAILABLE")
                      for n, h in sorted(self.s.hosts.items()) if h.ready or not request.ready]
            return pb.RepositoryIndexResponse(models=models)
        return await self._guard(context, index)

    async def ModelInfer(self, request, context):
        async def infer():
            host = self.s.host_of(request.model_name, request.model_version or None)
            with self.s.metrics.track(host.name, "grpc"):
                host.scheduler.admit()
                try:
                    loop = asyncio.get_running_loop()
                    feed, wanted = await loop.run_in_executor(self.s.parse_pool, _prepare, host.compute, request)
                    outputs = await host.scheduler.infer(feed)
                    return await loop.run_in_executor(self.s.parse_pool, _encode, host, request,
                                                      {k: outputs[k] for k in wanted})
                finally:
                    host.scheduler.release()
        return await self._guard(context, infer)


def _prepare(compute: Compute, request) -> tuple[dict[str, np.ndarray], list[str]]:
    """A ModelInferRequest to the model feed and the outputs to return, or ProtocolError (400)."""
    caps = compute.caps
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; give one per input")
    if not request.inputs:
        raise ProtocolError("the request needs at least one input")
    inputs: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        name, datatype, shape = t.name, t.datatype, list(t.shape)
        if not name or name in inputs:
            raise ProtocolError(f"inputs[{i}] needs a name, once" + (f" ({name!r} is given twice)" if name else ""))
        if datatype not in DATATYPES:
            raise ProtocolError(f"input {name!r}: datatype {datatype[:40]!r}; valid: {', '.join(DATATYPES)}")
        if any(d < 0 for d in shape) or len(shape) > 16:
            raise ProtocolError(f"input {name!r}: shape must be at most 16 non-negative dims")
        count = _count(name, shape, caps)
        if datatype == "BYTES" and count > caps.max_rows:
            raise ProtocolError(f"input {name!r}: {count} BYTES elements; at most {caps.max_rows} (--max-rows)")
        if raw:
            inputs[name] = _from_binary(name, datatype, shape, count, memoryview(raw[i]), caps)
            continue
        if datatype not in CONTENTS:
            raise ProtocolError(f"input {name!r}: {datatype} travels in raw_input_contents only")
        values = list(getattr(t.contents, CONTENTS[datatype]))
        if datatype == "BYTES":
            try:
                values = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise ProtocolError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
        inputs[name] = _from_json(name, datatype, shape, count, values, caps)
    return compute.validate(inputs), compute.select([o.name for o in request.outputs] or None)


def _encode(host: ModelHost, request, outputs: dict[str, np.ndarray]):
    """The ModelInferResponse: raw_output_contents when the request sent raw inputs, else typed contents."""
    raw = bool(request.raw_input_contents)
    response = pb.ModelInferResponse(model_name=host.name, model_version=host.version, id=request.id)
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        datatype = oip_datatype(arr.dtype)
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        if raw or datatype not in CONTENTS:
            response.raw_output_contents.append(_bytes_payload(arr) if arr.dtype == object
                                                else np.ascontiguousarray(arr).tobytes())
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(x).encode() for x in arr.ravel())
        else:
            getattr(tensor.contents, CONTENTS[datatype]).extend(arr.ravel().tolist())
    if raw and len(response.raw_output_contents) != len(response.outputs):  # FP16 among typed outputs
        raise ProtocolError("FP16 outputs need raw contents: send the inputs as raw_input_contents", 400)
    return response


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The service under its full name, each RPC with its messages' own (de)serializers."""
    rpcs = {name: grpc.unary_unary_rpc_method_handler(getattr(servicer, name), request_deserializer=req.FromString,
                                                      response_serializer=resp.SerializeToString)
            for name, (req, resp) in pb.METHODS.items()}
    return grpc.method_handlers_generic_handler(pb.SERVICE, rpcs)


async def start_grpc(state: ServerState, host: str, port: int, max_message_bytes: int):
    """A started grpc.aio server on host:port (``stop(grace)`` it), on the running event loop."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler(Servicer(state)),))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ProtocolError(f"cannot listen for gRPC on {address}: {exc}", 500) from None
    if not bound:
        raise ProtocolError(f"cannot listen for gRPC on {address} (in use? pick another --grpc-port)", 500)
    await server.start()
    return server
