"""The served models as a repository (``POST /v2/repository/index``, Triton's) and ``GET /metrics``."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from torch2ort.errors import ProtocolError
from torch2ort.serve import openapi as oa
from torch2ort.serve.metrics import CONTENT_TYPE
from torch2ort.serve.routes import State

router = APIRouter()


@router.post("/v2/repository/index", openapi_extra=oa.INDEX_BODY, responses=oa.INDEX_RESPONSES)
async def repository_index(s: State, request: Request):
    """Triton's repository index: every served model, its version and state."""
    body = await request.body()
    ready_only = False
    if body.strip():
        try:
            query = json.loads(body)
        except (ValueError, RecursionError):
            raise ProtocolError("the repository index request body must be JSON, e.g. {\"ready\": true}") from None
        if not isinstance(query, dict) or not isinstance(query.get("ready", False), bool):
            raise ProtocolError('the repository index request body is {"ready": true|false} (optional)')
        ready_only = query.get("ready", False)
    return [{"name": n, "version": h.version, "state": "READY" if h.ready else "UNAVAILABLE", "reason": ""}
            for n, h in sorted(s.hosts.items()) if h.ready or not ready_only]


@router.get("/metrics", responses=oa.METRICS_RESPONSES)
async def prometheus_metrics(s: State):
    return Response(s.metrics.exposition(), media_type=CONTENT_TYPE)
