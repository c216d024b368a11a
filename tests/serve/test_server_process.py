"""`torch2ort serve` as a real process, with torch made impossible to import: serve, then drain on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from fixtures.server import free_port
from runtime.test_torch_free import BLOCK
from serve.test_http import IMAGE, call, tensor

SERVE = """
import sys
from torch2ort.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules
print("clean exit", rc, flush=True)
sys.exit(rc)
"""


def test_serve_without_torch_and_drain_on_sigterm(bundles):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BLOCK + SERVE, "serve", str(bundles["mobilenet"]),
                             str(bundles["encoder"]), "--port", str(port), "--max-batch", "8",
                             "--max-delay-ms", "1500", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if call(url, "/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.time() < deadline, "server did not become ready"
            time.sleep(0.1)
        text = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["list files"]}]}
        status, _, body = call(url, "/v2/models/encoder/infer", text)
        assert status == 200 and json.loads(body)["outputs"]
        # A request that waits ~1.5 s in the batcher; SIGTERM arrives while it is in flight.
        result: list = []
        t = threading.Thread(target=lambda: result.append(
            call(url, "/v2/models/mobilenet/infer", {"inputs": [tensor("image", IMAGE)]})))
        t.start()
        time.sleep(0.4)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert result and result[0][0] == 200, (result, err)
    probs = next(o for o in json.loads(result[0][2])["outputs"] if o["name"] == "probabilities")
    assert np.isclose(sum(probs["data"]), 1.0, atol=1e-5)
    assert proc.returncode == 0 and "clean exit 0" in out, err
