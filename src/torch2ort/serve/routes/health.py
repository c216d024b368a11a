"""Health and metadata: ``/v2/health/*``, ``/v2``, ``/v2/models/{name}[/versions/{v}][/ready]``."""

from __future__ import annotations

from fastapi import APIRouter

from torch2ort import __version__
from torch2ort.serve import openapi as oa
from torch2ort.serve.routes import State, error

router = APIRouter()


@router.get("/v2/health/live")
async def live():
    return {"live": True}


@router.get("/v2/health/ready", responses={503: oa.error_response("not ready")})
async def ready(s: State):
    if not s.ready:
        return error(503, "not ready")
    return {"ready": True}


@router.get("/v2")
async def server_metadata(s: State):
    return {"name": "torch2ort", "version": __version__, "extensions": list(s.extensions)}


@router.get("/v2/models/{name}", responses=oa.MODEL_RESPONSES)
@router.get("/v2/models/{name}/versions/{version}", responses=oa.MODEL_RESPONSES)
async def model_metadata(s: State, name: str, version: str | None = None):
    return s.host_of(name, version).info.metadata()


@router.get("/v2/models/{name}/ready", responses=oa.READY_RESPONSES)
@router.get("/v2/models/{name}/versions/{version}/ready", responses=oa.READY_RESPONSES)
async def model_ready(s: State, name: str, version: str | None = None):
    if not s.host_of(name, version).ready:
        return error(503, f"model {name!r} is not ready")
    return {"name": name, "ready": True}
