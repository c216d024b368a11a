"""Run the server: load bundles, build the app, serve with uvicorn; SIGTERM/SIGINT drain in-flight work."""

from __future__ import annotations

import contextlib
import signal
import threading

from torch2ort.serve.app import create_app
from torch2ort.serve.host import Limits, load_hosts


def serve(bundles: list[str], host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          max_body_mb: float = 64.0, providers: list[str] | None = None, threads: int | None = None,
          log_level: str = "info", graceful_s: float = 30.0) -> None:
    import uvicorn

    hosts = load_hosts(bundles, limits or Limits(), providers, threads)
    for name, h in hosts.items():
        if "web/index.html" in h.bundle.manifest["files"]:
            shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            print(f"web page for {name}: http://{shown}:{port}/bundles/{name}/web/", flush=True)
    app = create_app(hosts, max_body_mb)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=graceful_s, access_log=log_level == "debug")
    _server_class()(config).run()


def _server_class():
    """Built on first use, so importing this module does not import uvicorn."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising SIGTERM after the drain: a clean stop exits 0."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server

