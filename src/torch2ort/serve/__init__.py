"""Torch-free serving of bundles over the Open Inference Protocol (KServe v2) REST API."""

from __future__ import annotations

from torch2ort.errors import ProtocolError
from torch2ort.serve.host import ModelHost, load_hosts
from torch2ort.serve.options import Limits, ServeOptions
from torch2ort.serve.protocol import InferRequest, encode_response, parse_request


def create_app(*args, **kwargs):
    from torch2ort.serve.app import create_app as _create

    return _create(*args, **kwargs)


def serve(*args, **kwargs):
    from torch2ort.serve.server import serve as _serve

    return _serve(*args, **kwargs)


__all__ = ["InferRequest", "Limits", "ModelHost", "ProtocolError", "ServeOptions", "create_app", "encode_response",
           "load_hosts", "parse_request", "serve"]
