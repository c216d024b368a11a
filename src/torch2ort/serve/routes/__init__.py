"""The REST routes, one ``APIRouter`` per protocol area, over the app's ``ServerState``.

- ``health``: liveness, readiness, server and model metadata;
- ``infer``: ``POST …/infer``;
- ``generate``: Triton's generate extension (``…/generate``, ``…/generate_stream``) for generating bundles;
- ``openai``: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` for generating bundles;
- ``audio``: ``/v1/audio/transcriptions`` for speech-recognition bundles;
- ``repository``: the model repository index and ``/metrics``;
- ``files``: a bundle's own files (its web page);
- ``ui``: the page at ``/`` to try the models (off with ``--no-ui``).

A route gets the shared state with ``Depends(server_state)``; an error is a raised ``ProtocolError``
(the app turns it into ``{"error": …}``) or an ``error(status, message)`` answer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from torch2ort.serve.state import ServerState


def server_state(request: Request) -> ServerState:
    return request.app.state.server


State = Annotated[ServerState, Depends(server_state)]


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def routers(ui: bool = True) -> list:
    """Every router, in the order the app includes them (the catch-all bundle files come last);
    ``ui``: with the page at ``/``."""
    from torch2ort.serve.routes import audio, files, generate, health, infer, openai, repository
    from torch2ort.serve.routes import ui as page

    return [health.router, infer.router, generate.router, openai.router, audio.router, repository.router,
            *([page.router] if ui else []), files.router]


__all__ = ["State", "error", "routers", "server_state"]
