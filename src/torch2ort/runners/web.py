"""Web runner: the model in real headless Chromium with onnxruntime-web (WASM), driven by Playwright.

A local HTTP server on 127.0.0.1 serves a harness page, the model and the onnxruntime-web files
from the npm package pinned in package.json (no CDN), with COOP/COEP headers so WASM threads can
work. Tensors cross as raw bytes both ways. Debian's ``chromium`` is used; no browser is downloaded.

Example::

    with WebRunner("model.onnx", threads=2) as web:
        outputs = web.infer(feed)          # dict[str, np.ndarray], int64 and bool included
        web.info                           # {"version": "1.30.0", "threadsActive": True, ...}
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from torch2ort.errors import RunnerError, UsageError, describe, one_line
from torch2ort.runners.base import Runner

HERE = Path(__file__).resolve().parent.parent / "web"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
MIME = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
        ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".json": "application/json"}
DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int64": np.int64,
          "int32": np.int32, "uint8": np.uint8, "int8": np.int8, "bool": np.bool_}
# How onnxruntime-web names an op it cannot run: an unregistered op, or one without a kernel.
_UNSUPPORTED = [re.compile(r"(?:([\w.]+):)?(\w+)\((-?\d+)\) is not a registered function/op"),
                re.compile(r"(?:Could not find an implementation for|unsupported op(?:erator)?:?)\s*'?(?:([\w.]+):)?"
                           r"(\w+)(?:\((-?\d+)\))?", re.I)]


def chromium_path() -> str:
    """The system chromium; exit 2 naming the Debian package when there is none."""
    path = os.environ.get("TORCH2ORT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).is_file():
        raise UsageError("the web runtime needs Chromium: apt-get install -y chromium (Debian's package), "
                         "or set TORCH2ORT_CHROMIUM to its path")
    return path


def ort_web_dir() -> Path:
    """onnxruntime-web's dist folder, from $TORCH2ORT_ORT_WEB or the checkout's node_modules."""
    if os.environ.get("TORCH2ORT_ORT_WEB"):  # an explicit setting is the only candidate
        candidates = [Path(os.environ["TORCH2ORT_ORT_WEB"])]
    else:
        root = Path(__file__).resolve().parents[3]
        candidates = [root / "node_modules" / "onnxruntime-web" / "dist",
                      Path.cwd() / "node_modules" / "onnxruntime-web" / "dist"]
    for c in candidates:
        if (c / "ort.wasm.min.js").is_file():
            return c
    raise UsageError("onnxruntime-web is not installed: run `npm ci` in the torch2ort checkout (package.json pins "
                     "it) or `npm install onnxruntime-web@1.30.0`, or set TORCH2ORT_ORT_WEB to its dist folder "
                     f"(looked in {', '.join(str(c) for c in candidates)})")


def ort_web_version(dist: Path) -> str | None:
    import json

    pkg = dist.parent / "package.json"
    try:
        return json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


class _Store:
    """What the page may fetch (files, input tensors) and what it sends back (output tensors)."""

    def __init__(self, model: Path, ort_dir: Path) -> None:
        self.files = {"/": HERE / "harness.html", "/harness.js": HERE / "harness.js", "/model.onnx": model}
        self.ort_dir = ort_dir
        self.tensors: dict[str, bytes] = {}
        self.results: dict[str, bytes] = {}
        self.lock = threading.Lock()


def _handler(store: _Store):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            # Cross-origin isolation: without it there is no SharedArrayBuffer, so no WASM threads.
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = unquote(self.path.split("?", 1)[0])
            if path.startswith("/tensor/"):
                with store.lock:
                    body = store.tensors.get(path[len("/tensor/"):])
                if body is None:
                    return self._send(404, b"no such tensor", "text/plain")
                return self._send(200, body, "application/octet-stream")
            if path.startswith("/ort/"):
                name = path[len("/ort/"):]
                target = (store.ort_dir / name).resolve()
                if target.parent != store.ort_dir.resolve() or not target.is_file():
                    return self._send(404, b"not found", "text/plain")
            else:
                target = store.files.get(path)
                if target is None:
                    return self._send(404, b"not found", "text/plain")
            self._send(200, Path(target).read_bytes(), MIME.get(Path(target).suffix, "application/octet-stream"))

        def do_PUT(self) -> None:
            path = unquote(self.path)
            if not path.startswith("/result/"):
                return self._send(404, b"not found", "text/plain")
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with store.lock:
                store.results[path[len("/result/"):]] = body
            self._send(204, b"", "text/plain")

    return Handler


class WebRunner(Runner):
    """onnxruntime-web in headless Chromium; ``info`` says which version ran and whether threads were on."""

    name = "web"

    def __init__(self, model_path: str | Path, threads: int | None = None, timeout_s: float = 120.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.model_path = Path(model_path)
        self.threads = threads or 1
        self.timeout_s = timeout_s
        self.info: dict = {}
        self._server = None
        self._pw = None
        self._browser = None
        self._page = None
        self._profile = None
        self._count = 0

    def _activate(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise UsageError("the web runtime needs Playwright for Python: pip install playwright "
                             "(it drives the system chromium; no browser download)") from None
        if not self.model_path.is_file():
            raise RunnerError(f"web: no such model {self.model_path}")
        chromium = chromium_path()
        ort_dir = ort_web_dir()
        self._store = _Store(self.model_path, ort_dir)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._store))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._profile = tempfile.mkdtemp(prefix="torch2ort-chromium-")
        self._pw = sync_playwright().start()
        try:
            self._browser = self._pw.chromium.launch_persistent_context(
                self._profile, executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
            self._page = self._browser.new_page()
            self._page.set_default_timeout(self.timeout_s * 1000)
            self._page.goto(url)
            self.info = self._page.evaluate("(o) => t2o.init(o)", {"threads": self.threads})
        except Exception as exc:
            self._deactivate()
            raise RunnerError(f"web: {_short(exc, self.timeout_s)}") from None
        self.info["package_version"] = ort_web_version(ort_dir)
        self.input_names = list(self.info.get("inputs") or [])

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.info.get("error"):
            raise RunnerError(f"web: {describe_load_error(self.info['error'])}")
        case = self._put(feed)
        try:
            meta = self._page.evaluate("([id, inputs]) => t2o.run(id, inputs)", [case, self._meta(feed)])
        except Exception as exc:
            raise RunnerError(f"web: {_short(exc, self.timeout_s)}") from None
        out = {}
        with self._store.lock:
            for m in meta:
                body = self._store.results.pop(f"{case}/{m['name']}")
                out[m["name"]] = np.frombuffer(body, dtype=DTYPES[m["dtype"]]).reshape(m["shape"]).copy()
            for name in feed:
                self._store.tensors.pop(f"{case}/{name}", None)
        return out

    def bench(self, feed: dict[str, np.ndarray], warmup: int = 5, iters: int = 20, seconds: float = 1.0) -> list[float]:
        """Latencies (ms) of session.run measured in the page with performance.now()."""
        if not self.is_active:
            raise RunnerError("web: activate() the runner before bench()")
        if self.info.get("error"):
            raise RunnerError(f"web: {describe_load_error(self.info['error'])}")
        case = self._put(feed)
        try:
            return list(self._page.evaluate("([id, inputs, w, n, s]) => t2o.bench(id, inputs, w, n, s)",
                                             [case, self._meta(feed), warmup, iters, seconds]))
        except Exception as exc:
            raise RunnerError(f"web: {_short(exc, self.timeout_s)}") from None

    def _put(self, feed: dict[str, np.ndarray]) -> str:
        self._count += 1
        case = f"c{self._count}"
        with self._store.lock:
            for name, arr in feed.items():
                a = np.ascontiguousarray(arr)
                if a.dtype == np.bool_:
                    a = a.view(np.uint8)
                self._store.tensors[f"{case}/{name}"] = a.tobytes()
        return case

    @staticmethod
    def _meta(feed: dict[str, np.ndarray]) -> list[dict]:
        out = []
        for name, arr in feed.items():
            dtype = np.dtype(arr.dtype).name
            if dtype not in DTYPES:
                raise RunnerError(f"web: input {name!r} has dtype {dtype}, which onnxruntime-web does not take")
            out.append({"name": name, "dtype": dtype, "shape": list(arr.shape)})
        return out

    def _deactivate(self) -> None:
        for close in (lambda: self._browser and self._browser.close(), lambda: self._pw and self._pw.stop(),
                      lambda: self._server and self._server.shutdown()):
            try:
                close()
            except Exception:
                pass
        if self._server is not None:
            self._server.server_close()
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
        self._browser = self._pw = self._server = self._page = None


def describe_load_error(message: str) -> str:
    """Name the op when the WASM build cannot run one; otherwise the first line of ORT's message."""
    first = one_line(message)
    for pattern in _UNSUPPORTED:
        m = pattern.search(message)
        if m:
            domain, op, version = m.groups()
            where = f" from domain {domain}" if domain else ""
            since = f", opset {version}" if version and version != "-1" else ""
            return f"onnxruntime-web cannot run op {op}{where}{since}: {first}"
    return f"onnxruntime-web could not load the model: {first}"


def _short(exc: BaseException, timeout_s: float) -> str:
    if "Timeout" in type(exc).__name__ or "Timeout" in str(exc)[:80]:
        return f"the page timed out after {timeout_s:g} s"
    return describe(exc)
