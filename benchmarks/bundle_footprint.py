"""Runtime footprint per bundle kind: what `pip install -r requirements.txt` of a real bundle installs.

For each kind (text, image, audio, signal, and the server) a tiny ONNX model is packed with that
kind's pipeline; a fresh venv then installs exactly the bundle's requirements.txt, its
``torch2ort==`` line swapped for a wheel built from this checkout (the server row adds the
``[serve]`` extra). Inside that venv the bundle runs a real predict (the server: `torch2ort serve`
answers ready), `import torch` must fail, and torch2ort.bundle.footprint sums the RECORD sizes of
the requirements' dependency closure. Every installed distribution is listed; one the closure does
not explain is reported. Needs PyPI (or a pip cache) and this checkout's dev environment (onnx,
soundfile) to build the bundles.

    .venv/bin/python benchmarks/bundle_footprint.py            # all kinds, refreshes BENCHMARKS.md
    .venv/bin/python benchmarks/bundle_footprint.py --only signal --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))
from _report import update_section  # noqa: E402

MIB = 1024 * 1024
F, I64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _model(path: Path, inputs: list[tuple[str, int, list]], output: str, nodes: list) -> Path:
    graph = helper.make_graph(nodes, path.stem, [helper.make_tensor_value_info(n, t, d) for n, t, d in inputs],
                              [helper.make_tensor_value_info(output, F, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def _mean_last(src: str, out: str) -> list:
    axes = helper.make_node("Constant", [], [f"{out}_axes"], value_ints=[-1])
    return [axes, helper.make_node("ReduceMean", [src, f"{out}_axes"], [out], keepdims=0)]


def build_text(tmp: Path) -> tuple[Path, dict, object]:
    from fixtures.tokenizer import tiny_tokenizer

    tiny_tokenizer(tmp / "tokenizer.json")
    nodes = [helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
             helper.make_node("Cast", ["kept"], ["kept_f"], to=F), *_mean_last("kept_f", "score")]
    model = _model(tmp / "text.onnx", [("input_ids", I64, ["batch", "tokens"]),
                                       ("attention_mask", I64, ["batch", "tokens"])], "score", nodes)
    return model, {"preprocess": [{"op": "tokenize", "max_length": 16}], "tokenizer": tmp / "tokenizer.json"}, \
        "list files in a directory"


def build_image(tmp: Path) -> tuple[Path, dict, object]:
    from PIL import Image

    axes = helper.make_node("Constant", [], ["hw"], value_ints=[2, 3])
    model = _model(tmp / "image.onnx", [("image", F, ["batch", 3, 8, 8])], "logits",
                   [axes, helper.make_node("ReduceMean", ["image", "hw"], ["logits"], keepdims=0)])
    pre = [{"op": "load_image"}, {"op": "resize", "size": [8, 8]}, {"op": "to_array"}, {"op": "scale"},
           {"op": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3}, {"op": "hwc_to_chw"}, {"op": "add_batch"}]
    post = [{"op": "softmax", "output": "logits", "name": "probs"}, {"op": "topk", "output": "probs", "k": 2}]
    Image.fromarray((np.random.default_rng(0).random((20, 30, 3)) * 255).astype("uint8")).save(tmp / "x.png")
    return model, {"preprocess": pre, "postprocess": post}, str(tmp / "x.png")


def _build_audio(tmp: Path, highpass: bool) -> tuple[Path, dict, object]:
    import soundfile

    nodes = [*_mean_last("segments", "per_segment"), helper.make_node("Cast", ["mask"], ["mask_f"], to=F),
             helper.make_node("Mul", ["per_segment", "mask_f"], ["score"])]
    model = _model(tmp / "audio.onnx", [("segments", F, ["batch", "segments", 8000]), ("mask", BOOL, [
        "batch", "segments"])], "score", nodes)
    pre = [{"op": "load_audio", "sample_rate": 16000}, *([{"op": "highpass", "cutoff": 50}] if highpass else []),
           {"op": "zero_mean_unit_var"}, {"op": "segments", "seconds": 0.5, "max_segments": 4, "fill": True},
           {"op": "add_batch"}]
    t = np.arange(22050) / 22050
    soundfile.write(tmp / "x.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 22050)
    return model, {"preprocess": pre}, str(tmp / "x.wav")


def _build_signal(tmp: Path, fmt: str | None) -> tuple[Path, dict, object]:
    model = _model(tmp / "signal.onnx", [("ecg", F, ["batch", "leads", 500])], "score", _mean_last("ecg", "score"))
    pre = [{"op": "load_signal", **({"format": fmt} if fmt else {})}, {"op": "crop_pad", "length": 500},
           {"op": "standardize"}, {"op": "add_batch"}]
    if fmt == "npy":
        np.save(tmp / "x.npy", np.random.default_rng(0).standard_normal((12, 500)))
        return model, {"preprocess": pre}, str(tmp / "x.npy")
    return model, {"preprocess": pre}, str(ROOT / "examples" / "ecg" / "record.hea")  # a committed WFDB record


# kind -> (how its bundle is built, what its pipeline is, whether the venv adds torch2ort[serve])
KINDS = {
    "text": (build_text, "tokenize", False),
    "image": (build_image, "load_image, resize, normalize; softmax, topk", False),
    "audio": (lambda t: _build_audio(t, False), "load_audio, zero_mean_unit_var, segments", False),
    "audio+highpass": (lambda t: _build_audio(t, True), "load_audio, highpass, zero_mean_unit_var, segments",
                       False),
    "signal (.npy)": (lambda t: _build_signal(t, "npy"), "load_signal format=npy, crop_pad, standardize", False),
    "signal (any format, WFDB)": (lambda t: _build_signal(t, None), "load_signal (by suffix), crop_pad, "
                                  "standardize", False),
    "server (image bundle + [serve])": (build_image, "the image bundle, served", True),
}

# Runs inside the fresh venv: the footprint of the requirements' closure, every distribution, no torch.
PROBE = """
import importlib.metadata as md, importlib.util, json, sys
from torch2ort.bundle.footprint import closure_size
roots = json.loads(sys.argv[1])
closure = closure_size(roots)
onnxruntime_own = closure_size(["onnxruntime"])["packages"]
installed = sorted({d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()} - {"pip", "setuptools"})
print(json.dumps({"closure": closure, "onnxruntime_own": sorted(onnxruntime_own), "installed": installed,
                  "torch_importable": importlib.util.find_spec("torch") is not None}))
"""

PREDICT = """
import json, sys
from torch2ort.runtime import Bundle
out = Bundle.load(sys.argv[1]).predict(sys.argv[2])
print(json.dumps(sorted(out)))
"""


# the venvs must see only what they installed: no PYTHONPATH pointing at this checkout's src/
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=CLEAN_ENV, **kw)


def build_wheel(tmp: Path) -> Path:
    """A wheel of this checkout's working tree, built from a copy (so no build/ or egg-info lands here)."""
    src = tmp / "torch2ort-src"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", str(src),
          "-w", str(tmp / "wheel")])
    return next((tmp / "wheel").glob("torch2ort-*.whl"))


def _serve_ready(venv: Path, bundle: Path, name: str) -> bool:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(venv / "bin" / "torch2ort"), "serve", str(bundle), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=CLEAN_ENV)
    try:
        for _ in range(120):
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                if proc.poll() is not None:
                    return False
        return False
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _serve_extra() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]


def measure(kind: str, tmp: Path, wheel: Path) -> dict:
    from torch2ort.bundle.footprint import requirement_names
    from torch2ort.bundle.writer import pack

    build, steps, serve = KINDS[kind]
    work = tmp / kind.split()[0]
    work.mkdir(exist_ok=True)
    model, pack_kwargs, sample = build(work)
    bundle = pack(model, work / "bundle", name=f"{kind.split()[0].replace('+', '_')}-demo", force=True,
                  **pack_kwargs)
    lines = (bundle / "requirements.txt").read_text().splitlines()
    others = [ln for ln in lines if ln.strip() and not ln.startswith(("#", "torch2ort=="))]
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    start = time.perf_counter()
    _run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check",
          f"{wheel}[serve]" if serve else str(wheel), *others])
    install_s = time.perf_counter() - start
    roots = requirement_names("\n".join(lines)) + (requirement_names("\n".join(_serve_extra())) if serve else [])
    probe = json.loads(_run([py, "-c", PROBE, json.dumps(roots)]).stdout)
    no_torch = _run([py, "-c", "import importlib.util as u; print(u.find_spec('torch') is None)"]).stdout.strip()
    if serve:
        ran = "`torch2ort serve` ready" if _serve_ready(venv, bundle, json.loads(
            (bundle / "torch2ort.json").read_text())["name"]) else "`torch2ort serve` NOT ready"
    else:
        ran = "predict -> " + ", ".join(json.loads(_run([py, "-c", PREDICT, str(bundle), sample]).stdout))
    closure = probe["closure"]
    return {"kind": kind, "steps": steps, "requirements": [ln for ln in lines if not ln.startswith("#")],
            "mib": closure["bytes"] / MIB, "packages": closure["packages"], "missing": closure["missing"],
            "onnxruntime_own": probe["onnxruntime_own"], "installed": probe["installed"],
            "unexplained": sorted(set(probe["installed"]) - set(closure["packages"])),
            "torch_free": no_torch == "True" and not probe["torch_importable"], "ran": ran,
            "install_s": install_s}


def _packages(row: dict) -> str:
    """The distributions, onnxruntime's own dependencies folded under it, largest first."""
    own = set(row["onnxruntime_own"]) - {"onnxruntime", "numpy"}
    main = [p for p in row["packages"] if p not in own]
    text = ", ".join(f"{p} ({row['packages'][p] / MIB:.0f})" if row["packages"][p] >= MIB else p for p in main)
    return text + f"; onnxruntime's own: {', '.join(sorted(own))}"


def _host() -> str:
    """Memory and AVX-512, which the shared machine line leaves out (sizes do not depend on them)."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpuinfo = Path("/proc/cpuinfo")
    avx512 = cpuinfo.exists() and " avx512f" in cpuinfo.read_text()
    return f"{platform.machine()}, {mem:.0f} GiB, AVX-512 {'yes' if avx512 else 'no'}"


def table(rows: list[dict]) -> str:
    out = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bundle_footprint.py` on {_host()}, "
           f"Python {platform.python_version()}: per kind, a tiny model packed with that pipeline, then a fresh "
           "venv that installs exactly the bundle's requirements.txt (torch2ort from a wheel of this checkout; "
           "the server row adds `torch2ort[serve]`). MiB: summed RECORD sizes of the requirements' dependency "
           "closure (torch2ort.bundle.footprint), as installed. Sizes of packages over 1 MiB in brackets.",
           "",
           "| kind | pipeline | MiB | distributions installed | check in the venv |",
           "| --- | --- | ---: | --- | --- |"]
    for r in rows:
        extra = f" (also installed, unexplained: {', '.join(r['unexplained'])})" if r["unexplained"] else ""
        out.append(f"| {r['kind']} | {r['steps']} | {r['mib']:.0f} | {_packages(r)}{extra} | "
                   f"{r['ran']}; torch {'absent' if r['torch_free'] else 'PRESENT'} |")
    out += ["", "- requirements.txt per kind, beyond torch2ort, onnxruntime and numpy: " + "; ".join(
        f"{r['kind']}: {', '.join(x for x in r['requirements'][3:]) or 'nothing'}" for r in rows) + "."]
    by_kind = {r["kind"]: r for r in rows}
    served, image = by_kind.get("server (image bundle + [serve])"), by_kind.get("image")
    if served and image:
        added = [p for p in served["packages"] if p not in image["packages"]]
        out.append(f"- `[serve]` adds {served['mib'] - image['mib']:.0f} MiB to the image bundle's venv: "
                   f"{', '.join(added)}.")
    schema = {"jsonschema", "jsonschema-specifications", "referencing", "rpds-py"}
    holding = [r["kind"] for r in rows if schema & set(r["installed"])]
    out.append("- jsonschema and its dependencies (referencing, rpds-py, jsonschema-specifications): "
               + (f"installed in {', '.join(holding)}." if holding else "in none of these venvs."))
    npy = by_kind.get("signal (.npy)")
    if npy:
        state = {lib: "installed" if lib in npy["installed"] else "absent" for lib in ("scipy", "wfdb")}
        out.append(f"- signal (.npy): scipy {state['scipy']}, wfdb {state['wfdb']}; its predict read the .npy "
                   "file all the same.")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="kinds whose name contains this")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    kinds = [k for k in KINDS if not args.only or args.only in k]
    with tempfile.TemporaryDirectory(prefix="torch2ort-bundle-footprint-") as tmp:
        tmp = Path(tmp)
        wheel = build_wheel(tmp)
        rows = []
        for kind in kinds:
            rows.append(measure(kind, tmp, wheel))
            print(f"{kind}: {rows[-1]['mib']:.1f} MiB, {len(rows[-1]['installed'])} distributions, "
                  f"{rows[-1]['install_s']:.0f} s", file=sys.stderr)
    text = table(rows)
    print(text)
    if not args.no_write and not args.only:
        update_section(ROOT / "BENCHMARKS.md", "footprint-kinds", "Runtime footprint per bundle kind", text)
    return 0 if all(r["torch_free"] and not r["unexplained"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
