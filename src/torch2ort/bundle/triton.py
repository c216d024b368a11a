"""Export a bundle to a Triton Inference Server model repository (torch-free).

Writes ``<repo>/<name>/config.pbtxt`` and ``<repo>/<name>/1/model.onnx`` (a ``model.onnx/``
directory when the model has external data, as Triton's ONNX Runtime backend expects), plus
``<repo>/<name>/README.md`` listing the pre/post-processing Triton will not run and what the client
must do instead. Nothing outside ``<repo>/<name>/`` is written or deleted: the name is checked
(``check_model_name``), and a README.md the user keeps in the repository is never touched.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from torch2ort import values as V
from torch2ort.errors import OutputExistsError, UsageError
from torch2ort.outdir import make_dir
from torch2ort.runtime import manifest as mf
from torch2ort.runtime.onnx_refs import external_data_locations

TRITON_TYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64",
                "str": "TYPE_STRING"}

CLIENT_STEPS = {
    "load_image": "decode the image file to RGB (e.g. Pillow `Image.open(f).convert('RGB')`)",
    "resize": "resize with antialiased bilinear filtering (Pillow `Image.resize(size, Image.BILINEAR)`)",
    "center_crop": "crop the centre to the given size",
    "scale": "convert to float32 and divide by 255",
    "normalize": "subtract `mean` and divide by `std`, per channel",
    "hwc_to_chw": "move channels first (HWC -> CHW)",
    "add_batch": "add a leading batch axis",
    "tokenize": "tokenize with the bundle's tokenizer.json (HF `tokenizers`), padded, int64",
    "softmax": "softmax over the last axis",
    "sigmoid": "apply the logistic sigmoid",
    "topk": "take the k largest scores and map their indices to labels",
    "threshold": "compare with the threshold",
    "argmax": "take the argmax over the last axis (and map it to a label)",
    "mean_pool": "average token vectors over the attention mask",
    "l2_normalize": "divide each vector by its L2 norm",
}


@dataclass
class TritonExport:
    repository: Path
    model_dir: Path
    config: str
    max_batch_size: int
    client_steps: list[str] = field(default_factory=list)


def _dims(shape: list, batched: bool) -> list[int]:
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape]
    return dims[1:] if batched else dims


def _tensor_block(t: dict, batched: bool) -> str:
    dtype = TRITON_TYPES.get(t["dtype"])
    if dtype is None:
        raise UsageError(f"tensor {t['name']!r}: dtype {t['dtype']} has no Triton data type")
    dims = ", ".join(map(str, _dims(t["shape"], batched))) or ""
    return f'  {{\n    name: "{t["name"]}"\n    data_type: {dtype}\n    dims: [ {dims} ]\n  }}'


def batch_dim(manifest: dict) -> str | None:
    """The dynamic label that is the first dim of every input and output, if any."""
    firsts = {t["shape"][0] if t["shape"] else None for t in manifest["inputs"] + manifest["outputs"]}
    label = firsts.pop() if len(firsts) == 1 else None
    return label if isinstance(label, str) else None


def render_config(manifest: dict, max_batch: int = 8, instances: int = 1, gpu: bool = False,
                  max_delay_ms: float = 5.0, tensorrt: bool = False) -> tuple[str, int]:
    batched = max_batch > 0 and batch_dim(manifest) is not None
    mbs = max_batch if batched else 0
    lines = [f'name: "{manifest["name"]}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {mbs}",
             "input [", ",\n".join(_tensor_block(t, batched) for t in manifest["inputs"]), "]",
             "output [", ",\n".join(_tensor_block(t, batched) for t in manifest["outputs"]), "]"]
    if batched:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(round(max_delay_ms * 1000))}\n}}")
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
    if gpu and tensorrt:
        lines.append('optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n'
                     '        name: "tensorrt"\n        parameters { key: "precision_mode" value: "FP32" }\n'
                     '        parameters { key: "max_workspace_size_bytes" value: "1073741824" }\n      }\n'
                     '    ]\n  }\n}')
    return "\n".join(lines) + "\n", mbs


def export_triton(bundle_dir: str | Path, repository: str | Path, *, max_batch: int = 8, instances: int = 1,
                  gpu: bool = False, tensorrt: bool | None = None, max_delay_ms: float = 5.0,
                  force: bool = False) -> TritonExport:
    max_batch = V.count("--max-batch", max_batch, 0, 2**20)
    instances = V.count("--instances", instances, 1, 1024)
    max_delay_ms = V.number("--max-delay-ms", max_delay_ms, 0.0, 60_000.0)  # nan/inf: not a config Triton reads
    bundle_dir, repository = Path(bundle_dir), Path(repository)
    manifest = mf.read_manifest(bundle_dir)
    mf.verify_files(bundle_dir, manifest["files"])
    refs = mf.check_external_data(bundle_dir, manifest["model"], manifest["files"])
    model_dir = repository / mf.check_model_name(manifest["name"], f"{bundle_dir}: name")
    if repository.exists() and not repository.is_dir():
        raise OutputExistsError(f"{repository} exists and is not a directory")
    if model_dir.is_symlink() or (model_dir.exists() and not model_dir.is_dir()):
        raise OutputExistsError(f"{model_dir} is not a model directory (a file or a symlink); refusing to replace it")
    if model_dir.exists():
        if not force:
            raise OutputExistsError(f"{model_dir} already exists; pass --force to replace that model")
        if not (model_dir / "config.pbtxt").is_file():
            raise OutputExistsError(f"{model_dir} has no config.pbtxt, so it is not a Triton model; refusing to "
                                    "delete it even with --force")
        shutil.rmtree(model_dir)
    trt = gpu if tensorrt is None else tensorrt
    config, mbs = render_config(manifest, max_batch, instances, gpu, max_delay_ms, trt)
    version = make_dir(model_dir / "1")
    src = mf.inside(bundle_dir, manifest["model"])
    refs = refs or external_data_locations(src.read_bytes())
    if refs:  # Triton's ONNX backend: a model.onnx directory holding the model and its weight files
        target = version / "model.onnx"
        target.mkdir()
        shutil.copy2(src, target / "model.onnx")
        for ref in refs:
            dest = target / ref
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(mf.inside(src.parent, ref), dest)
    else:
        shutil.copy2(src, version / "model.onnx")
    (model_dir / "config.pbtxt").write_text(config)
    steps = client_steps(manifest)
    _write_readme(model_dir, manifest, steps, mbs)
    return TritonExport(repository, model_dir, config, mbs, steps)


def client_steps(manifest: dict) -> list[str]:
    out = []
    for kind in ("preprocess", "postprocess"):
        for step in manifest.get(kind, []):
            params = {k: v for k, v in step.items() if k != "op"}
            how = CLIENT_STEPS.get(step["op"], "see docs/bundle.md")
            out.append(f"{kind} `{step['op']}`{' ' + json.dumps(params) if params else ''}: {how}")
    return out


def _write_readme(model_dir: Path, manifest: dict, steps: list[str], mbs: int) -> None:
    """Our notes go in the model directory we own (Triton ignores files there that are not versions)."""
    body = [f"# {manifest['name']} (Triton model written by `torch2ort triton`)", "",
            f"Exported by torch2ort from a bundle. `max_batch_size: {mbs}`"
            + (" (dims in config.pbtxt exclude the batch dim)." if mbs else " (no dynamic first dim on every "
               "tensor, so Triton batching is off; dims are complete)."), ""]
    if steps:
        body += ["Triton runs only the ONNX model. The bundle also declares these steps, which the client "
                 "must now do itself (in this order), or which `torch2ort serve` / `torch2ort.runtime` do for you:",
                 "", *[f"{i}. {s}" for i, s in enumerate(steps, 1)]]
    else:
        body.append("No pre/post-processing: clients send and receive the model's tensors as they are.")
    if manifest.get("labels"):
        body += ["", f"Labels (index order): {', '.join(manifest['labels'])}."]
    (model_dir / "README.md").write_text("\n".join(body) + "\n")
