"""The Open Inference Protocol over gRPC (KServe v2 ``inference.GRPCInferenceService``), in the same
process and event loop as the HTTP app, over the same ModelHosts (queues, batching, limits, metrics).

The messages are KServe's ``grpc_predict_v2.proto`` (plus Triton's RepositoryIndex), built from the
proto in a private descriptor pool (``oip_messages.py``), and the service is registered with a
generic handler under its full name, so tritonclient is not needed to serve, and a process may
import both the server and tritonclient (whose copies of the same messages live in protobuf's
default pool). On the wire they are the same messages: tritonclient's client works as it is.

Implemented: ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer
(``raw_input_contents`` or typed ``contents``; the answer uses the same form; a file input's
BYTES, ``image_file`` and the like, stay bytes, never UTF-8 text), RepositoryIndex. The
others answer UNIMPLEMENTED. Errors carry the HTTP side's messages, with codes: 400 INVALID_ARGUMENT,
401 UNAUTHENTICATED, 404 NOT_FOUND, 413 RESOURCE_EXHAUSTED, 503 UNAVAILABLE, 500 INTERNAL.

Memory and auth (issue 27, item 9), as on the HTTP side:

- ``TokenGate``, an interceptor, checks the token from the call's metadata before anything else:
  a refused call (any method, unknown ones included; ServerLive and ServerReady stay open) is
  answered UNAUTHENTICATED without its message ever being read.
- A message is at most ``--max-body-mb`` (``grpc.max_receive_message_length``).
- ModelInfer is registered as a stream-unary method (the same bytes on the wire: unary clients
  work unchanged), so it reads its one message itself: only after taking one of the server's intake
  slots (``ServerState.reading``, shared with HTTP), and it drops the message once parsed. gRPC's
  own unary path would hold every message read at once, for the whole call.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from torch2ort import __version__
from torch2ort.errors import ProtocolError
from torch2ort.serve import oip_messages as pb
from torch2ort.serve import protocol
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
            return await call(*args)
        except ProtocolError as exc:
            code, message = CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message
        except Exception as exc:
            log.exception("internal error (gRPC)")
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
        # outside the except block: the abort must not chain the error, whose traceback holds the
        # frames that held the request (a 60 MB message kept alive by a reference cycle until gc ran)
        await context.abort(code, message)

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

    async def ModelInfer(self, requests, context):
        """Stream-unary on the wire's unary call: an intake slot first, then the message, which is read,
        parsed and dropped within the slot; only the feed waits for the model."""
        async def infer():
            loop = asyncio.get_running_loop()
            await self.s.reading.acquire()
            reading = True
            try:
                request = await _one_message(context)
                host = self.s.host_of(request.model_name, request.model_version or None)
                with self.s.metrics.track(host.name, "grpc"):
                    if getattr(host, "generation", None) is not None:  # its KV-cache tensors are not a client's
                        raise ProtocolError(f"model {host.name!r} generates text: use HTTP, /v2/models/{host.name}"
                                            "/generate or /infer with text_input (gRPC has no generation)")
                    host.scheduler.admit()
                    try:
                        raw, request_id = bool(request.raw_input_contents), request.id
                        reading = False  # s.decode releases the slot, once the decoding has finished
                        with self.s.metrics.timed(host.name, "grpc", "decode"):
                            feed, wanted = await self.s.decode(
                                loop.run_in_executor(self.s.parse_pool, _prepare, host.compute, request),
                                host.compute.caps.decode_timeout_s)
                        del request
                        outputs = await host.scheduler.infer(feed)
                        with self.s.metrics.timed(host.name, "grpc", "encode"):
                            return await loop.run_in_executor(self.s.parse_pool, _encode, host, raw, request_id,
                                                              {k: outputs[k] for k in wanted})
                    finally:
                        host.scheduler.release()
            finally:
                if reading:
                    self.s.reading.release()
        return await self._guard(context, infer)


async def _one_message(context):
    """The call's one request message (a second one is refused: ModelInfer is unary)."""
    request = await context.read()
    if request is grpc.aio.EOF:
        raise ProtocolError("ModelInfer needs a request message")
    if await context.read() is not grpc.aio.EOF:
        raise ProtocolError("ModelInfer takes one request message per call")
    return request


def _prepare(compute: Compute, request) -> tuple[dict[str, np.ndarray], list[str]]:
    """A ModelInferRequest to the model feed and the outputs to return, or ProtocolError (400)."""
    caps = compute.caps
    raw = list(request.raw_input_contents)  # each a bytes object of its own: the arrays view them
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
            inputs[name] = _from_binary(name, datatype, shape, count, memoryview(raw[i]), caps, copy=False)
            continue
        if datatype not in CONTENTS:
            raise ProtocolError(f"input {name!r}: {datatype} travels in raw_input_contents only")
        values = list(getattr(t.contents, CONTENTS[datatype]))
        if datatype == "BYTES" and name in caps.files:  # encoded files: bytes as they are, sized first
            if len(values) != count:
                raise ProtocolError(f"input {name!r}: shape {shape} needs {count} values, bytes_contents has "
                                    f"{len(values)}")
            inputs[name] = protocol.decode_files(name, np.array(values, dtype=object).reshape(shape), caps)
            continue
        if datatype == "BYTES":
            try:
                values = [v.decode("utf-8") for v in values]
            except UnicodeDecodeError:
                raise ProtocolError(f"input {name!r}: BYTES elements must be UTF-8 text") from None
        inputs[name] = _from_json(name, datatype, shape, count, values, caps)
    feed = compute.validate(inputs, _parameters(request))
    return feed, compute.select([o.name for o in request.outputs] or None, feed)


def _parameters(request) -> dict:
    """The request's parameters as plain values (the call options are among them: ``compute.call_options``)."""
    out = {}
    for key, param in request.parameters.items():
        choice = param.WhichOneof("parameter_choice")
        out[key] = None if choice is None else getattr(param, choice)
    return out


def _encode(host: ModelHost, raw: bool, request_id: str, outputs: dict[str, np.ndarray]):
    """The ModelInferResponse: raw_output_contents when the request sent raw inputs, else typed contents."""
    response = pb.ModelInferResponse(model_name=host.name, model_version=host.version, id=request_id)
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


OPEN_METHODS = ("ServerLive", "ServerReady")  # health, like /v2/health/*: no token needed
STREAMED = ("ModelInfer",)  # read by the method itself, after it takes an intake slot


def handler(servicer: Servicer) -> grpc.GenericRpcHandler:
    """The service under its full name, each RPC with its messages' own (de)serializers."""
    rpcs = {}
    for name, (req, resp) in pb.METHODS.items():
        kind = grpc.stream_unary_rpc_method_handler if name in STREAMED else grpc.unary_unary_rpc_method_handler
        rpcs[name] = kind(getattr(servicer, name), request_deserializer=req.FromString,
                          response_serializer=resp.SerializeToString)
    return grpc.method_handlers_generic_handler(pb.SERVICE, rpcs)


class TokenGate(grpc.aio.ServerInterceptor):
    """With a token: every call but health must carry it, checked from the metadata before the method
    is even looked up, so a refused call is UNAUTHENTICATED (unknown methods too) and its message is
    never read."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_service(self, continuation, details):
        if details.method.rpartition("/")[2] not in OPEN_METHODS:
            header = dict(details.invocation_metadata or ()).get("authorization")
            if not authorized(header, self.token):
                return _REFUSE
        return await continuation(details)


async def _refuse(requests, context):
    """Stream-unary, so gRPC does not read the request before this runs: nothing of it is read."""
    await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                        "missing or wrong bearer token (authorization: Bearer <token>)")


_REFUSE = grpc.stream_unary_rpc_method_handler(_refuse)


async def start_grpc(state: ServerState, host: str, port: int, max_message_bytes: int):
    """A started grpc.aio server on host:port (``stop(grace)`` it), on the running event loop."""
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)],
                             interceptors=[TokenGate(state.token)] if state.token is not None else None)
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
