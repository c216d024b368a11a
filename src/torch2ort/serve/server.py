"""Run the server: load bundles, build the app, serve with uvicorn; SIGTERM/SIGINT drain in-flight work.

Slow or half-open clients: uvicorn (h11) bounds the size of request headers (h11's own limit) and
closes idle keep-alive connections (``timeout_keep_alive``), but has no timeout for a client that
opens a connection and sends its headers slowly or never. ``_protocol_class`` adds that one timer
to uvicorn's h11 protocol: a connection whose request headers are not complete within
``read_timeout_s`` is closed. Body read timeouts live in the app (``app.Guard``, a 408).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading

from torch2ort.errors import UsageError
from torch2ort.serve.app import create_app
from torch2ort.serve.auth import read_token
from torch2ort.serve.host import load_hosts
from torch2ort.serve.options import Limits, ServeOptions


def serve(bundles: list[str], host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          max_body_mb: float = 64.0, providers: list[str] | str | None = None, threads: int | None = None,
          log_level: str = "info", graceful_s: float = 30.0, read_timeout_s: float = 30.0,
          grpc_port: int | None = None, token_file: str | None = None, ui: bool = True) -> None:
    """Serve ``bundles`` until SIGTERM or Ctrl-C. Every option is checked first (``ServeOptions``,
    ``Limits``: a bad value is a one-line ``UsageError``), then the ports, then the bundles load."""
    o = ServeOptions(host=host, port=port, grpc_port=grpc_port, max_body_mb=max_body_mb,
                     read_timeout_s=read_timeout_s, threads=threads, providers=providers,
                     token_file=token_file, log_level=log_level, graceful_s=graceful_s, ui=ui,
                     limits=Limits() if limits is None else limits)
    token = read_token(o.token_file) if o.token_file else None
    sock = bind(o.host, o.port)  # before loading anything: a busy port is a one-line usage error
    if o.grpc_port is not None:
        bind(o.host, o.grpc_port).close()  # free now (gRPC binds it itself when the app starts)
        try:
            import torch2ort.serve.grpc_server  # noqa: F401
        except ImportError as exc:
            raise UsageError(f"--grpc-port needs grpcio and protobuf ({exc}); "
                             "pip install 'torch2ort[serve]'") from None
    hosts = load_hosts(bundles, o.limits, o.providers, o.threads)
    for name, h in hosts.items():
        if "web/index.html" in h.bundle.manifest["files"]:
            print(f"web page for {name}: http://{_shown(o.host)}:{o.port}/bundles/{name}/web/", flush=True)
    if o.ui:
        print(f"page to try the models: http://{_shown(o.host)}:{o.port}/", flush=True)
    app = create_app(hosts, o.max_body_mb, o.read_timeout_s, token=token, grpc_port=o.grpc_port, grpc_host=o.host,
                     ui=o.ui)
    server = make_server(app, o.host, o.port, o.log_level, o.graceful_s, o.read_timeout_s, signals=True)
    server.run(sockets=[sock])


def _shown(host: str) -> str:
    """The address to print for a bound host (a wildcard address is shown as loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or UsageError (address in use, no such address)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server "
                         "running there? pick another --port)") from None
    sock.set_inheritable(True)
    return sock


def make_server(app, host: str, port: int, log_level: str = "info", graceful_s: float = 30.0,
                read_timeout_s: float = 30.0, signals: bool = False):
    """A uvicorn server for ``app`` with the header timeout; ``signals``: drain on SIGTERM, exit 0."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, http=_protocol_class(read_timeout_s),
                            timeout_graceful_shutdown=graceful_s, timeout_keep_alive=5,
                            access_log=log_level == "debug")
    return (_server_class() if signals else uvicorn.Server)(config)


def _protocol_class(header_timeout_s: float):
    """uvicorn's h11 protocol plus a timer: request headers must be complete within the timeout."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()  # the next request on this keep-alive connection gets the same time

        def connection_lost(self, exc) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            timer = getattr(self, "_header_timer", None)
            if timer is not None:
                timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # still no complete request line and headers

    return Protocol


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
