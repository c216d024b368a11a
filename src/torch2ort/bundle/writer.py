"""Write a bundle: model + manifest + checksums + pipelines + requirements + README. See docs/bundle.md.

Example::

    from torch2ort.bundle.writer import pack
    pack("emotion.onnx", "emotion-bundle", labels=LABELS, preprocess="image", postprocess="softmax-topk")

Packing an existing .onnx file needs only numpy and onnxruntime; ``pack_model`` exports and
verifies a torch model first and records the parity summary.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from torch2ort import __version__
from torch2ort.errors import OutputExistsError, UsageError, WireError, describe, unknown_name
from torch2ort.outdir import prepare_outdir
from torch2ort.runtime import manifest as mf
from torch2ort.runtime.bundle import ort_dtype
from torch2ort.runtime.processors import check_pipeline, signal

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
DECODER_FILE = "decoder.onnx"  # a speech bundle's second graph (runtime/transcribe.py)


def _image_size(inputs: list[dict]) -> tuple[int, int]:
    shape = inputs[0]["shape"]
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
        raise UsageError(f"image presets need an NCHW input with static H and W; got {shape}")
    return int(shape[2]), int(shape[3])


def preprocess_preset(name: str, inputs: list[dict], tokenizer: bool) -> list[dict]:
    if name == "image":
        h, w = _image_size(inputs)
        return [{"op": "load_image"}, {"op": "resize", "size": [h, w]}, {"op": "scale"}, {"op": "hwc_to_chw"},
                {"op": "add_batch"}]
    if name == "imagenet":
        h, w = _image_size(inputs)
        return [{"op": "load_image"}, {"op": "resize", "size": round(min(h, w) * 256 / 224)},
                {"op": "center_crop", "size": [h, w]}, {"op": "scale"},
                {"op": "normalize", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}, {"op": "hwc_to_chw"},
                {"op": "add_batch"}]
    if name == "text":
        if not tokenizer:
            raise UsageError("--preprocess text needs --tokenizer tokenizer.json")
        return [{"op": "tokenize", "outputs": [t["name"] for t in inputs]}]
    raise UsageError(unknown_name("preprocess preset", name, ["image", "imagenet", "text"]) +
                     ", or a JSON list of steps")


def postprocess_preset(name: str, outputs: list[dict]) -> list[dict]:
    first = outputs[0]["name"]
    presets = {
        "softmax-topk": [{"op": "softmax", "output": first, "name": "probabilities"},
                         {"op": "topk", "output": "probabilities", "k": 5}],
        "sigmoid-threshold": [{"op": "sigmoid", "output": first, "name": "probabilities"},
                              {"op": "threshold", "output": "probabilities", "threshold": 0.5}],
        "threshold": [{"op": "threshold", "output": first, "threshold": 0.5}],
        "argmax": [{"op": "argmax", "output": first}],
        "embeddings": [{"op": "mean_pool", "output": first}, {"op": "l2_normalize"}],
    }
    if name not in presets:
        raise UsageError(unknown_name("postprocess preset", name, list(presets)) + ", or a JSON list of steps")
    return presets[name]


def pipeline_steps(value: str | list | None, preset, *args) -> list[dict]:
    """A pipeline given as a list, a JSON list, a .json file or a preset name -> its steps."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            steps = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"pipeline JSON does not parse: {describe(exc)}") from None
        if not isinstance(steps, list):
            raise UsageError("a pipeline must be a JSON list of steps")
        return steps
    if text.endswith(".json") and Path(text).is_file():
        try:
            steps = json.loads(Path(text).read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"pipeline file {text} does not parse: {describe(exc)}") from None
        if not isinstance(steps, list):
            raise UsageError(f"pipeline file {text} must hold a JSON list of steps")
        return steps
    return preset(text, *args)


def read_labels(path: str | Path) -> list[str]:
    """One label per line, or a JSON list."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--labels {path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
        labels = json.loads(text) if text.lstrip().startswith("[") else None
    except UnicodeDecodeError:
        raise UsageError(f"--labels {path}: not a UTF-8 text file (one label per line, or a JSON list)") from None
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"--labels {path}: starts with '[' but is not a JSON list ({exc})") from None
    if labels is None:
        labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not labels or not all(isinstance(x, str) for x in labels):
        raise UsageError(f"--labels {path}: expected one label per line or a JSON list of strings")
    return labels


def _io(session) -> tuple[list[dict], list[dict]]:
    def describe(values) -> list[dict]:
        out = []
        for v in values:
            shape = [d if isinstance(d, int) else (d or f"{v.name}_dim{i}") for i, d in enumerate(v.shape)]
            out.append({"name": v.name, "dtype": ort_dtype(v.type), "shape": shape,
                        "dynamic": [d for d in shape if isinstance(d, str)]})
        return out

    return describe(session.get_inputs()), describe(session.get_outputs())


def pack(onnx_path: str | Path, out: str | Path, *, name: str | None = None, labels: list[str] | None = None,
         preprocess: str | list | None = None, postprocess: str | list | None = None,
         tokenizer: str | Path | None = None, parity: dict | None = None, force: bool = False,
         web: bool = False, assets: dict[str, Any] | None = None, generation: dict | None = None,
         speech: dict | None = None) -> Path:
    """Write a bundle directory from an ONNX file (with its external data, if any).

    ``generation``: a decoder's KV-cache layout (``ModelHints.generation``); the bundle then generates text
    (``Bundle.generate``) with its tokenizer, which is required.

    ``speech``: a Whisper bundle (``ModelHints.speech``): ``onnx_path`` is the encoder, and the decoder graph
    ``speech["decoder"]`` (a file beside it) is packed as ``decoder.onnx``; ``Bundle.predict`` then transcribes.

    ``assets``: extra numpy arrays a preprocess step reads (name.npy -> array), saved and checksummed.

    ``web=True`` adds ``web/``: a page that runs the model in the browser (see ``torch2ort.bundle.web``).
    """
    import onnxruntime as ort

    src = Path(onnx_path)
    out = Path(out)
    name = mf.check_model_name(name, "--name") if name is not None else mf.safe_model_name(src.stem)
    if not src.is_file():
        raise UsageError(f"ONNX file not found: {src}")
    from torch2ort.runtime.onnx_refs import external_data_locations

    try:
        locations = external_data_locations(src.read_bytes())
    except WireError as exc:
        raise UsageError(f"{src} is not an ONNX model ({exc})") from None
    for loc in locations:
        mf.inside(src.parent, loc)  # refuses escaping references
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # not the warning every overridable initializer gets (a decoder's logits_to_keep)
    try:
        session = ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise UsageError(f"onnxruntime cannot load {src}: {describe(exc)}") from None
    inputs, outputs = _io(session)
    meta = dict(session.get_modelmeta().custom_metadata_map)
    pre = pipeline_steps(preprocess, preprocess_preset, inputs, tokenizer is not None)
    post = pipeline_steps(postprocess, postprocess_preset, outputs)
    # the whole manifest is checked before anything is written; provenance and checksums come last
    mf.validate({"format_version": mf.FORMAT_VERSION, "name": name, "model": MODEL_FILE, "inputs": inputs,
                 "outputs": outputs, "labels": labels, "preprocess": pre, "postprocess": post,
                 "files": {MODEL_FILE: "0" * 64}}, "the bundle's manifest")
    if tokenizer is not None and not Path(tokenizer).is_file():
        raise UsageError(f"--tokenizer {tokenizer}: no such file")
    if generation is not None:
        if tokenizer is None:
            raise UsageError("a text-generation bundle needs its tokenizer (--tokenizer tokenizer.json)")
        if web:
            raise UsageError("--web does not run text generation yet; pack the decoder without --web")
        from torch2ort.runtime.generate import cache_mode

        # the graph's own say: "shared" when GroupQueryAttention writes every present (decoder-fusion stamps it)
        generation = {**generation, "tokenizer": TOKENIZER_FILE, "cache": cache_mode(session, {})}
    decoder_src = None
    if speech is not None:
        if tokenizer is None:
            raise UsageError("a speech-recognition bundle needs its tokenizer (--tokenizer tokenizer.json)")
        if web:
            raise UsageError("--web does not run speech recognition yet; pack without --web")
        decoder_src = src.with_name(Path(speech["decoder"]).name)
        if not decoder_src.is_file():
            raise UsageError(f"the decoder graph {decoder_src} is missing (export writes it beside the encoder)")
        if external_data_locations(decoder_src.read_bytes()):
            raise UsageError(f"{decoder_src} keeps its weights in external data; pack a decoder under 2 GB")
        speech = {**speech, "decoder": DECODER_FILE, "tokenizer": TOKENIZER_FILE}
    if web:
        from torch2ort.bundle.web import check_web, ort_web_files

        check_web(pre, post, inputs)
        ort_web_files()  # fails before anything is written when onnxruntime-web is not installed
    check_pipeline(pre, post, inputs, outputs)

    prepare_outdir(out, force, mf.MANIFEST, "a torch2ort bundle")
    shutil.copyfile(src, out / MODEL_FILE)
    for loc in locations:
        dst = out / loc
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src.parent / loc, dst)
    if tokenizer is not None:
        shutil.copyfile(tokenizer, out / TOKENIZER_FILE)
    if decoder_src is not None:
        shutil.copyfile(decoder_src, out / DECODER_FILE)
    for rel, array in (assets or {}).items():
        import numpy as np

        np.save(mf.inside(out, rel), np.asarray(array), allow_pickle=False)
    web_version = None
    if web:
        from torch2ort.bundle.web import write_web

        web_version = write_web(out)
    manifest: dict[str, Any] = {
        "format_version": mf.FORMAT_VERSION,
        "name": name,
        "model": MODEL_FILE,
        "inputs": inputs,
        "outputs": outputs,
        "labels": labels,
        "preprocess": pre,
        "postprocess": post,
        "provenance": {
            "torch2ort": __version__,
            "source": meta.get("torch2ort.source"),
            "input_spec": meta.get("torch2ort.input_spec"),
            "input_spec_sha256": meta.get("torch2ort.input_spec_sha256"),
            "exporter": meta.get("torch2ort.exporter"),
            "opset": int(meta["onnx.opset"]) if "onnx.opset" in meta else None,
            "torch": meta.get("torch.version"),
            "onnx": meta.get("onnx.version"),
            "onnxruntime": ort.__version__,
            **({"onnxruntime_web": web_version} if web else {}),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "parity": parity,
        **({"generation": generation} if generation is not None else {}),
        **({"speech": speech} if speech is not None else {}),
    }
    (out / "requirements.txt").write_text(_requirements(pre, post, generation is not None or speech is not None))
    (out / "README.md").write_text(_readme(manifest))
    manifest["files"] = {rel: mf.sha256_file(out / rel) for rel in mf.bundle_files(out)}
    mf.validate(manifest)
    (out / mf.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def parity_summary(verify_dict: dict) -> dict:
    """The part of a verify report a bundle keeps: verdict, tolerances, per-output worst errors."""
    parity = verify_dict.get("parity", verify_dict)
    return {
        "passed": parity["passed"],
        "atol": parity["atol"],
        "rtol": parity["rtol"],
        "cases": len(verify_dict.get("cases", [])),
        "outputs": {r["output"]: {"max_abs": r["max_abs"], "min_cosine": r["min_cosine"], "failed": r["failed"]}
                    for r in parity.get("per_output", [])},
    }


def pack_model(loaded, spec, out: str | Path, *, verify_n: int = 3, force: bool = False,
               **pack_kwargs) -> tuple[Path, Any]:
    """Export a torch model, verify it, and pack it; a failed verification writes no bundle."""
    from torch2ort.errors import ParityError
    from torch2ort.export import export_onnx
    from torch2ort.inputs import default_sweep
    from torch2ort.parity.verify import verify_onnx

    if Path(out).exists() and any(Path(out).iterdir()) and not force:
        raise OutputExistsError(f"{out} already exists and is not empty; pass --force to replace it")
    if not pack_kwargs.get("name"):
        pack_kwargs["name"] = mf.safe_model_name(loaded.source.rpartition(":")[2] or Path(loaded.source).stem)
    else:
        mf.check_model_name(pack_kwargs["name"], "--name")
    generation = getattr(loaded.hints, "generation", None)
    if generation:  # a decoder: the bundle generates, with the folder's own tokenizer
        pack_kwargs["generation"] = generation
        pack_kwargs["tokenizer"] = pack_kwargs.get("tokenizer") or loaded.hints.tokenizer
    with tempfile.TemporaryDirectory(prefix="torch2ort-pack-") as tmp:
        onnx_path = Path(tmp) / MODEL_FILE
        export_onnx(loaded, spec, onnx_path)
        result = verify_onnx(loaded, onnx_path, spec, n=verify_n, sweep=default_sweep(spec))
        if not result.report:
            reasons = "; ".join(result.report.failures()[:3])
            raise ParityError(f"verification failed, so no bundle was written: {reasons}")
        path = pack(onnx_path, out, parity=parity_summary(result.to_dict()), force=force, **pack_kwargs)
    return path, result


def _requirements(pre: list[dict], post: list[dict], generates: bool = False) -> str:
    import numpy
    import onnxruntime

    ops = {s["op"] for s in pre + post}
    lines = [f"torch2ort=={__version__}", f"onnxruntime=={onnxruntime.__version__}",
             f"numpy>={numpy.__version__.split('.')[0]}"]
    if ops & {"load_image", "resize", "center_crop"}:
        lines.append("pillow>=10")
    if ops & {"tokenize", "candidate_labels"} or generates:
        lines.append("tokenizers>=0.19")
    if ops & {"load_audio"}:
        lines += ["soundfile>=0.12", "soxr>=0.3"]
    signal_libs = set().union(*(signal.libraries(s) for s in pre if s["op"] == "load_signal"))
    if ops & {"highpass", "resample"} or "scipy" in signal_libs:
        lines.append("scipy>=1.10")
    if "wfdb" in signal_libs:  # pulls pandas, matplotlib, requests: only for a step that may read WFDB records
        lines.append("wfdb>=4.1")
    return "# runtime only: no torch needed\n" + "\n".join(lines) + "\n"


def _readme(m: dict) -> str:
    ins = "\n".join(f"- `{t['name']}`: {t['dtype']} {t['shape']}" for t in m["inputs"])
    outs = "\n".join(f"- `{t['name']}`: {t['dtype']} {t['shape']}" for t in m["outputs"])
    example_feed = ", ".join(f'"{t["name"]}": np.load("{t["name"]}.npy")' for t in m["inputs"])
    cli_inputs = " ".join(f"--input {t['name']}={t['name']}.npy" for t in m["inputs"])
    parity = m.get("parity")
    verdict = ("not verified in this bundle" if not parity else
               f"{'PASSED' if parity['passed'] else 'FAILED'} (atol {parity['atol']:g}, rtol {parity['rtol']:g}, "
               f"{parity['cases']} cases)")
    raw_hint = ""
    if m["preprocess"]:
        raw_hint = ("\nThe bundle declares a preprocess pipeline, so `predict` also takes the raw input "
                    "(an image path, or text) instead of the arrays above.\n")
    web = ""
    if "onnxruntime_web" in (m.get("provenance") or {}):
        web = f"""
## Browser

`web/index.html` runs the model in the browser with onnxruntime-web {m['provenance']['onnxruntime_web']} (in
`web/ort/`, no CDN), preprocessing and postprocessing included. Browsers refuse to fetch files over
`file://`, so serve the folder over HTTP: `torch2ort serve path/to/this/folder` and open
http://127.0.0.1:8000/bundles/{m['name']}/web/ (cross-origin isolated, so WASM threads work), or
`python -m http.server -d path/to/this/folder` and open http://127.0.0.1:8000/web/ (one thread).
"""
    return f"""# {m['name']} (torch2ort bundle)

Runs with ONNX Runtime, no torch: `pip install -r requirements.txt`.

Inputs:
{ins}

Outputs:
{outs}

Parity with PyTorch: {verdict}.

## Python

```python
import numpy as np
from torch2ort.runtime import Bundle

bundle = Bundle.load("path/to/this/folder")   # checks every sha256 first
out = bundle.predict({{{example_feed}}})
print(out.keys(), out.raw.keys())
```
{raw_hint}
## CLI

```bash
torch2ort predict path/to/this/folder {cli_inputs}
```

{web}
`torch2ort.json` is the manifest: inputs, outputs, pipelines, provenance and checksums.
"""
