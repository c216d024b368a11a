"""The bundle manifest (torch2ort.json): schema checks and checksums. Torch-free. See docs/bundle.md."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from torch2ort.errors import BundleError, WireError

FORMAT_VERSION = 1
MANIFEST = "torch2ort.json"

# key -> (type, required)
_SCHEMA: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "format_version": (int, True),
    "name": (str, True),
    "model": (str, True),
    "inputs": (list, True),
    "outputs": (list, True),
    "labels": ((list, type(None)), False),
    "preprocess": (list, False),
    "postprocess": (list, False),
    "provenance": (dict, False),
    "parity": ((dict, type(None)), False),
    "files": (dict, True),
}
_TENSOR_KEYS = {"name": str, "dtype": str, "shape": list}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle_dir: Path) -> dict[str, Any]:
    path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a directory (a bundle is a folder written by torch2ort pack)")
    if not path.is_file():
        raise BundleError(f"{bundle_dir} has no {MANIFEST}; it is not a torch2ort bundle")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    validate(data, str(path))
    return data


def validate(data: Any, where: str = MANIFEST) -> None:
    """Check the manifest's shape; a newer format_version asks for an upgrade."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    version = data.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format_version {version} is newer than this torch2ort supports "
                          f"({FORMAT_VERSION}); upgrade torch2ort (pip install -U torch2ort)")
    for key, (kind, required) in _SCHEMA.items():
        if key not in data:
            if required:
                raise BundleError(f"{where}: missing required key {key!r}")
            continue
        if not isinstance(data[key], kind):
            raise BundleError(f"{where}: {key!r} has the wrong type ({type(data[key]).__name__})")
    if version < 1:
        raise BundleError(f"{where}: format_version must be >= 1")
    for section in ("inputs", "outputs"):
        for i, t in enumerate(data[section]):
            if not isinstance(t, dict):
                raise BundleError(f"{where}: {section}[{i}] must be an object")
            for key, kind in _TENSOR_KEYS.items():
                if not isinstance(t.get(key), kind):
                    raise BundleError(f"{where}: {section}[{i}] needs {key!r} ({kind.__name__})")
    for section in ("preprocess", "postprocess"):
        for i, step in enumerate(data.get(section, [])):
            if not isinstance(step, dict) or not isinstance(step.get("op"), str):
                raise BundleError(f"{where}: {section}[{i}] must be an object with an 'op'")
    for name, digest in data["files"].items():
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"{where}: files[{name!r}] must be a sha256 hex digest")
    if data["model"] not in data["files"]:
        raise BundleError(f"{where}: the model file {data['model']!r} is not listed under 'files'")


def inside(bundle_dir: Path, rel: str) -> Path:
    """Resolve ``rel`` in the bundle, refusing absolute paths and anything that escapes it."""
    root = bundle_dir.resolve()
    if not rel or os.path.isabs(rel) or Path(rel).drive:
        raise BundleError(f"bundle path {rel!r} must be relative to the bundle directory")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise BundleError(f"bundle path {rel!r} resolves outside the bundle directory ({target}); refused")
    return target


def bundle_files(bundle_dir: Path) -> list[str]:
    """Every file in the bundle (relative, POSIX), except the manifest itself."""
    out = []
    for path in sorted(bundle_dir.rglob("*")):
        if path.is_file() or path.is_symlink():
            rel = path.relative_to(bundle_dir).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return out


def verify_files(bundle_dir: Path, files: dict[str, str]) -> None:
    """Every listed file present with its checksum, and nothing unlisted beside them."""
    present = set(bundle_files(bundle_dir))
    for rel, digest in files.items():
        path = inside(bundle_dir, rel)
        if not path.is_file():
            raise BundleError(f"bundle file {rel!r} is missing from {bundle_dir}")
        if sha256_file(path) != digest:
            raise BundleError(f"bundle file {rel!r} has been modified: its sha256 does not match the "
                              "manifest; refusing to load it")
    extra = sorted(present - set(files))
    if extra:
        raise BundleError(f"bundle {bundle_dir} holds files the manifest does not list: {', '.join(extra)}; "
                          "refusing to load (re-pack it, or remove them)")


def check_external_data(bundle_dir: Path, model_rel: str, files: dict[str, str]) -> list[str]:
    """The model's external-data files must stay inside the bundle and be listed with checksums."""
    from torch2ort.runtime.onnx_refs import external_data_locations

    model_path = inside(bundle_dir, model_rel)
    try:
        locations = external_data_locations(model_path.read_bytes())
    except WireError as exc:
        raise BundleError(f"{model_rel} is not a valid ONNX protobuf ({exc})") from None
    base = model_path.parent
    for loc in locations:
        rel = (base / loc).resolve()
        root = bundle_dir.resolve()
        if os.path.isabs(loc) or (rel != root and root not in rel.parents):
            raise BundleError(f"{model_rel} refers to external data {loc!r} outside the bundle directory; refused")
        if rel.relative_to(root).as_posix() not in files:
            raise BundleError(f"{model_rel} refers to external data {loc!r} that the manifest does not list")
    return locations
