"""Footprint: site-packages of a fresh runtime-only venv vs a fresh torch==2.13.0 + numpy venv.

Both venvs are built from scratch in a temporary folder; the size reported is what the install
added to an empty venv's site-packages (pip and setuptools are subtracted). The runtime venv then
runs a real bundle's predict, with `import torch` checked to fail there.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import update_section  # noqa: E402


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def biggest(venv: Path, n: int = 5) -> list[tuple[str, float]]:
    """The largest top-level entries of a venv's site-packages, in MiB (dist-info folders merged)."""
    sizes: dict[str, int] = {}
    for entry in site_packages(venv).iterdir():
        key = entry.name.split("-")[0].removesuffix(".libs").lower()
        if key in ("pip", "setuptools", "_distutils_hack", "distutils"):
            continue
        sizes[key] = sizes.get(key, 0) + (tree_bytes(entry) if entry.is_dir() else entry.stat().st_size)
    top = sorted(sizes.items(), key=lambda kv: -kv[1])[:n]
    return [(k, v / (1024 * 1024)) for k, v in top]


def make_venv(path: Path, packages: list[str]) -> tuple[int, float]:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    base = tree_bytes(site_packages(path))
    start = time.perf_counter()
    subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", *packages], check=True)
    return tree_bytes(site_packages(path)) - base, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="torch2ort-footprint-") as tmp:
        tmp = Path(tmp)
        bundle = tmp / "bundle"
        subprocess.run([sys.executable, "-m", "torch2ort", "pack", f"{ROOT}/examples/emotion_cnn.py:EmotionCNN",
                        "--input", "image:batch=1,3,64,64:float32:0..1", "--output-names", "logits",
                        "--preprocess", "image", "--postprocess", "softmax-topk", "-o", str(bundle),
                        "--labels", str(ROOT / "examples" / "emotion_labels.txt")],
                       check=True, capture_output=True)
        runtime_bytes, runtime_s = make_venv(tmp / "rt", [str(ROOT), "pillow"])
        torch_bytes, torch_s = make_venv(tmp / "torch", ["torch==2.13.0", "numpy"])
        import numpy as np
        from PIL import Image

        img = tmp / "face.png"
        Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8")).save(img)
        py = str(tmp / "rt" / "bin" / "python")
        no_torch = subprocess.run([py, "-c", "import torch"], capture_output=True).returncode != 0
        start = time.perf_counter()
        pred = subprocess.run([str(tmp / "rt" / "bin" / "torch2ort"), "predict", str(bundle), "--input",
                               f"image=@{img}"], capture_output=True, text=True, check=True)
        predict_s = time.perf_counter() - start
        top = json.loads(pred.stdout)["outputs"]["topk"][0][0]
        bundle_bytes = tree_bytes(bundle)
        rt_top, torch_top = biggest(tmp / "rt"), biggest(tmp / "torch")
    mb = 1024 * 1024
    rows = [
        ("runtime venv (torch2ort core + pillow)", runtime_bytes / mb, runtime_s),
        ("torch stack venv (torch==2.13.0 CPU + numpy)", torch_bytes / mb, torch_s),
    ]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/footprint` on {platform.machine()}, "
        f"Python {platform.python_version()}. Sizes are what `pip install` added to a fresh venv's site-packages "
        "(pip/setuptools subtracted), summed file sizes in MiB.",
        "",
        "| venv | site-packages added (MiB) | install time (s) |",
        "| --- | ---: | ---: |",
        *[f"| {name} | {size:.1f} | {secs:.0f} |" for name, size, secs in rows],
        "",
        f"- torch stack / runtime: **{torch_bytes / runtime_bytes:.1f}×** larger.",
        "- Largest packages, runtime venv: " + ", ".join(f"{k} {v:.1f}" for k, v in rt_top) + " MiB.",
        "- Largest packages, torch venv: " + ", ".join(f"{k} {v:.1f}" for k, v in torch_top) + " MiB.",
        "- The torch figure is the CPU-only wheel on this machine; PyPI's default CUDA build was not measured.",
        f"- In the runtime venv `import torch` fails ({'confirmed' if no_torch else 'NOT confirmed'}), and "
        f"`torch2ort predict` on the demo bundle ({bundle_bytes / 1024:.0f} KiB) ran in {predict_s:.2f} s wall "
        f"(process start included) and returned top-1 `{top['label']}`.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        update_section(ROOT / "BENCHMARKS.md", "footprint", "Deployment footprint", text)
    return 0 if no_torch else 1


if __name__ == "__main__":
    sys.exit(main())
