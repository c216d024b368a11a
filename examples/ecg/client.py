"""Seed 000's web app, migrated: upload an ECG record to `torch2ort serve`, get its labels back.

The record (``record.hea`` + ``record.dat``) travels as one zip, base64 in an Open Inference Protocol
request to the bundle's ``signal_file`` input; the server reads, resamples and normalises it with the
bundle's own steps, so the app does no signal processing. The labels and each one's threshold come
from the model's metadata (``torch2ort_display``). Standard library only: what a web backend needs.

    torch2ort serve out/bundle --port 8000 &
    python examples/ecg/client.py localhost:8000 ecg examples/ecg/record.hea
"""

from __future__ import annotations

import base64
import io
import json
import sys
import urllib.request
import zipfile
from pathlib import Path


def call(url: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{url}{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def record_zip(header: Path) -> bytes:
    """The .hea and the data files it names, zipped flat: one upload."""
    names = {header.name} | {line.split()[0] for line in header.read_text().splitlines()[1:] if line.strip()
                             and not line.startswith("#")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in sorted(names):
            z.write(header.parent / name, name)
    return buf.getvalue()


def labels(url: str, model: str, header: Path) -> dict:
    """{"labels": [...], "probabilities": {label: p}} for the record whose header is ``header``."""
    meta = call(url, f"/v2/models/{model}")
    shown = meta["parameters"]["torch2ort_display"]["thresholds"]
    request = {"inputs": [{"name": "signal_file", "datatype": "BYTES", "shape": [1],
                           "data": [base64.b64encode(record_zip(header)).decode()]}],
               "outputs": [{"name": shown["output"]}]}
    answer = call(url, f"/v2/models/{model}/infer", request)
    probs = next(o for o in answer["outputs"] if o["name"] == shown["output"])["data"]
    found = [n for n, p, t in zip(shown["labels"], probs, shown["thresholds"]) if p >= t]
    return {"labels": found, "probabilities": dict(zip(shown["labels"], probs))}


if __name__ == "__main__":
    url, model, header = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    print(json.dumps(labels(url, model, header), indent=2))
