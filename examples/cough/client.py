"""Seed 001's cough detector, migrated: send a `.wav` to `torch2ort serve`, get the bag probability and
one probability per segment back.

The file's bytes travel base64 in an Open Inference Protocol request to the bundle's ``audio_file``
input; the server decodes, resamples and cuts it into segments with the bundle's own steps, so the
app holds no audio code. Standard library only.

    torch2ort serve out/bundle --port 8000 &
    python examples/cough/client.py localhost:8000 cough examples/cough/cough.wav
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from pathlib import Path


def detect(url: str, model: str, wav: Path) -> dict:
    """{"bag_probability": p, "segment_probabilities": [...]} for one recording."""
    request = {"inputs": [{"name": "audio_file", "datatype": "BYTES", "shape": [1],
                           "data": [base64.b64encode(wav.read_bytes()).decode()]}],
               "outputs": [{"name": "bag_probability"}, {"name": "segment_probabilities"}]}
    req = urllib.request.Request(f"http://{url}/v2/models/{model}/infer", data=json.dumps(request).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        outputs = {o["name"]: o for o in json.loads(resp.read())["outputs"]}
    return {"bag_probability": outputs["bag_probability"]["data"][0],
            "segment_probabilities": outputs["segment_probabilities"]["data"]}


if __name__ == "__main__":
    url, model, wav = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    print(json.dumps(detect(url, model, wav), indent=2))
