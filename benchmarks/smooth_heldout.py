"""SmoothQuant on MiniLM, judged on texts its calibration never saw; refreshes the 'smooth' section of BENCHMARKS.md.

``optimize_zoo`` calibrates and gates MiniLM on the same real texts, so its cosine could flatter a
calibrated method. Here the benchmark texts are split in halves: the smoothing scales are measured on
the first 16 paragraphs and 5 sentences, and the minimum cosine against the fp32 export is taken on
the other 16 paragraphs and 5 sentences (and, for comparison, on the calibration half), for
``transformer[attention=mha,skip-norm=unfused]`` + per-channel dynamic int8 with and without
``smooth``. Accuracy only: nothing is timed, so it can run on a busy machine.

    .venv/bin/python benchmarks/smooth_heldout.py [--alpha 0.7] [--no-write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import update_section  # noqa: E402
from texts import long_texts, short_texts, tokenize, tokenizer  # noqa: E402
from zoo_models import MINILM_INPUTS  # noqa: E402

from torch2ort.export import export_onnx  # noqa: E402
from torch2ort.optimization.passes import PassContext  # noqa: E402
from torch2ort.optimization.passes.int8_dynamic import Int8Dynamic  # noqa: E402
from torch2ort.optimization.passes.transformer import TransformerFusion  # noqa: E402
from torch2ort.sources import ModelRequest, load_model  # noqa: E402
from torch2ort.spec import InputSpec  # noqa: E402


def embeddings(path: Path, texts: list[str], tok, batch: int = 8) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = np.concatenate([session.run(None, tokenize(texts[i:i + batch], tok))[0] for i in range(0, len(texts), batch)])
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpha", type=float, default=0.7, help="SmoothQuant alpha (auto's is 0.7)")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    args = parser.parse_args()
    paragraphs, sentences = long_texts(), short_texts()
    fit = {"long": paragraphs[:16], "short": sentences[:5]}
    held = {"long": paragraphs[16:], "short": sentences[5:]}
    tok = tokenizer()
    with tempfile.TemporaryDirectory(prefix="torch2ort-smooth-") as tmp:
        work = Path(tmp)
        fp32 = work / "fp32.onnx"
        export_onnx(load_model(ModelRequest(f"{ROOT}/benchmarks/zoo_models.py:MiniLMEmbed")),
                    InputSpec.from_cli(MINILM_INPUTS), fp32)
        calibration = [tokenize(fit["long"][i:i + 8], tok) for i in (0, 8)] + [tokenize(fit["short"], tok)]
        ctx = PassContext(work, calibration)
        fused = TransformerFusion(attention="mha", skip_norm="unfused")(fp32, work / "fused.onnx", ctx).model
        variants = {"per-channel": Int8Dynamic(per_channel=True),
                    f"per-channel, smooth={args.alpha}": Int8Dynamic(per_channel=True, smooth=args.alpha)}
        rows = []
        for label, quantiser in variants.items():
            model = quantiser(fused, work / f"{len(rows)}.onnx", ctx).model
            cells = []
            for texts in (held["long"], held["short"], fit["long"]):  # the table's three columns
                cos = (embeddings(model, texts, tok) * embeddings(fp32, texts, tok)).sum(axis=1).min()
                cells.append(f"{cos:.5f}")
            rows.append(f"| transformer[attention=mha,skip-norm=unfused]+int8-dynamic[{label}] | {' | '.join(cells)} |")
    body = "\n".join([
        "Command: `.venv/bin/python benchmarks/smooth_heldout.py` (accuracy only). The smoothing scales are measured "
        "on the first 16 benchmark paragraphs and 5 sentences; the minimum cosine against the fp32 export (8 texts "
        "per call) is taken on the other 16 paragraphs and 5 sentences, which calibration never saw.", "",
        "| variant | min cosine, held-out paragraphs | held-out sentences | calibration paragraphs |",
        "| --- | ---: | ---: | ---: |", *rows])
    print(body)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "smooth", "SmoothQuant on held-out text (MiniLM int8)", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
