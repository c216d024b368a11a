"""Hostile-client probes against a real ``torch2ort serve`` process, by family (the hardening issue).

Each probe sends real HTTP (or runs the real CLI) and returns ``None`` when the server behaved, or
a one-line failure. ``test_probes.py`` runs every probe as a test; run this file directly to get
the family → cases → failures table for any source tree (e.g. an older commit). The probes
themselves are in ``probe_bodies.py`` (items 4-5), ``probe_clients.py`` (items 6-8, names) and
``probe_hostile.py`` (issue 27: refused runs, zero-size shapes, gRPC limits and auth, big text,
the intake), ``probe_files.py`` (issue 26: corrupt and hostile files, file size, decode deadline) and
``probe_generate.py`` (issue 25.6: the generation routes on models that do not generate)::

    python tests/serve/probes.py --src /tmp/base/src --image BUNDLE --text BUNDLE --lookup BUNDLE \
        [--arg=--read-timeout-s=2]

``--lookup`` is a bundle whose model indexes a table with no bound the graph states (the conftest
builds one): the model itself refuses an index past the table at run time.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVE = "import sys; from torch2ort.cli import main; sys.exit(main(sys.argv[1:]))"
INFER = "/v2/models/mobilenet/infer"
TEXT_INFER = "/v2/models/encoder/infer"


@dataclass
class Target:
    src: str                      # PYTHONPATH of the torch2ort under test
    bundles: list[str]            # mobilenet (image) and encoder (text) bundles
    args: list[str] = field(default_factory=list)
    lookup: str | None = None     # a bundle that fails at run time on an out-of-table index
    grpc: bool = False            # also serve gRPC (on ``grpc_port``)
    port: int = 0
    grpc_port: int = 0
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def cli(self, *args: str, timeout: float = 60, memory_mb: int | None = None) -> subprocess.CompletedProcess:
        """The CLI in a child; ``memory_mb`` caps its address space (for probes where old code would
        read without end, so a regression fails with a MemoryError rather than eat the machine)."""
        env = os.environ | {"PYTHONPATH": self.src, "HF_HUB_OFFLINE": "1"}
        limit = None
        if memory_mb is not None:
            def limit() -> None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        return subprocess.run([sys.executable, "-c", SERVE, *args], capture_output=True, text=True,
                              timeout=timeout, env=env, preexec_fn=limit)

    def popen(self, *args: str, log=subprocess.DEVNULL) -> subprocess.Popen:
        env = os.environ | {"PYTHONPATH": self.src, "HF_HUB_OFFLINE": "1"}
        return subprocess.Popen([sys.executable, "-c", SERVE, *args], stdout=log, stderr=log, env=env)

    def start(self, log: Path) -> None:
        self.port, self.log = free_port(), log
        grpc = []
        if self.grpc:
            self.grpc_port = free_port()
            grpc = ["--grpc-port", str(self.grpc_port)]
        with open(log, "w") as out:  # the child keeps its own descriptor
            self.proc = self.popen("serve", *self.bundles, "--port", str(self.port), "--log-level", "info",
                                   *grpc, *self.args, log=out)
        wait_ready(self.url, self.proc)

    def sibling(self, bundles: list[str], args: list[str], log_name: str, grpc: bool = False) -> Target:
        """Another server from the same source tree, for a probe that needs its own options (stop it)."""
        t = Target(self.src, bundles, args, self.lookup, grpc)
        t.start((self.log.parent if self.log else Path("/tmp")) / log_name)
        return t

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, limit: float = 90) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if request(url, "GET", "/v2/health/ready", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, bytes]:
    host, port = url.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early (413, 408) and closed while we sent: read what it said
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def expect(resp: tuple[int, dict, bytes], status: int) -> str | None:
    code, headers, body = resp
    if code != status:
        return f"{code} instead of {status}: {body[:120]!r}"
    if status >= 400 and not headers.get("content-type", "").startswith("application/json"):
        return f"{status} without a JSON error body"
    return None


def post_json(t: Target, text: str, path: str = INFER) -> tuple[int, dict, bytes]:
    return request(t.url, "POST", path, text.encode())


def binary_body(spec: dict, blob: bytes, outputs: list | None = None) -> tuple[bytes, dict]:
    doc = {"inputs": [spec]} | ({"outputs": outputs} if outputs else {})
    head = json.dumps(doc).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head))}


def image_json(**extra) -> str:
    return json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [0.0]} | extra]})


def families() -> dict[str, dict[str, Callable[[Target], str | None]]]:
    from serve import probe_bodies, probe_clients, probe_files, probe_generate, probe_hostile

    return {"malformed bodies (4)": probe_bodies.MALFORMED, "large requests (5)": probe_bodies.LOAD,
            "slow clients (6)": probe_clients.SLOW, "option values (7)": probe_clients.OPTIONS,
            "OpenAPI agreement (8)": probe_clients.OPENAPI, "model names": probe_clients.NAMES,
            **probe_hostile.FAMILIES, **probe_files.FAMILIES, **probe_generate.FAMILIES}


def run_all(target: Target) -> dict[str, list[tuple[str, str | None]]]:
    results = {}
    for family, probes in families().items():
        results[family] = []
        for name, probe in probes.items():
            try:
                outcome = probe(target)
            except Exception as exc:  # a probe that cannot complete counts as a failure
                outcome = f"{type(exc).__name__}: {exc}"[:200]
            results[family].append((name, outcome))
    return results


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--text", required=True)
    p.add_argument("--lookup", help="a bundle that fails at run time past its table (see the conftest)")
    p.add_argument("--arg", action="append", default=[], help="an extra `torch2ort serve` argument")
    p.add_argument("--log", default="/tmp/probe-server.log")
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for `serve.probe_*`
    target = Target(a.src, [a.image, a.text], a.arg, a.lookup, grpc=True)
    target.start(Path(a.log))
    try:
        results = run_all(target)
    finally:
        target.stop()
    print("| probe family | cases | failures |\n| --- | --- | --- |")
    for family, rows in results.items():
        print(f"| {family} | {len(rows)} | {sum(1 for _, o in rows if o)} |")
    for family, rows in results.items():
        for name, outcome in rows:
            if outcome:
                print(f"FAIL {family} / {name}: {outcome}")


if __name__ == "__main__":
    main()
