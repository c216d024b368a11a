"""The bundle manifest (torch2ort.json): its typed record, checks and checksums. Torch-free. See docs/bundle.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from torch2ort.errors import BundleError, WireError
from torch2ort.runtime.typecheck import Match, Mismatch, Name, Range, Size, check_record

FORMAT_VERSION = 1
MANIFEST = "torch2ort.json"

MAX_MANIFEST_BYTES = 32 << 20
MAX_JSON_DEPTH = 32  # a real manifest nests 5 levels; deeper ones are refused before the check walks them
MODEL_NAME_RULE = ("1 to 128 characters: letters, digits, '_', '-' and '.', starting with a letter, digit or "
                   "'_', and no '..' (it becomes a directory name in a Triton model repository and a URL path "
                   "segment in serve)")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


DType = Literal["float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16",
                "uint8", "bool", "str"]
OrtType = Annotated[str, Match(r"tensor\(\w+\)", "must be a numpy dtype name or an ONNX type such as tensor(float)")]
Dim = Annotated[int, Range(-1)] | Name  # a size, -1, or a symbolic name
Digest = Annotated[str, Match(r"[0-9a-f]{64}", "must be a sha256 hex digest")]


class _Tensor(TypedDict):
    name: Name
    shape: Annotated[list[Dim], Size(0, 64)]


class _Input(_Tensor):
    dtype: DType


class _Output(_Tensor):
    dtype: DType | OrtType  # an output's type may be one numpy has no name for


class InputRecord(_Input, total=False):
    dynamic: list[str]


class OutputRecord(_Output, total=False):
    dynamic: list[str]


class _Required(TypedDict):
    format_version: Annotated[int, Range(1)]
    name: str  # its rule is check_model_name's, the one rule
    model: Annotated[str, Size(1, 256)]
    inputs: list[InputRecord]
    outputs: list[OutputRecord]
    files: dict[str, Digest]


class Manifest(_Required, total=False):
    """torch2ort.json, format_version 1: the keys and types a bundle's manifest holds (docs/bundle.md).

    The steps are lists of ``{"op": NAME, PARAMETER: VALUE}``; each is checked against its own
    function's signature (runtime/processors). Unknown top-level keys are let be.
    """

    labels: list[str] | None
    preprocess: list[Any]
    postprocess: list[Any]
    provenance: dict
    parity: dict | None
    generation: dict  # a decoder with a KV cache: layers, cache shape, EOS, pad, tokenizer (runtime/generate.py)
    speech: dict  # Whisper: the decoder graph, prefix, suppress lists, limits, tokenizer (runtime/transcribe.py)


def check_model_name(name: Any, where: str = "model name") -> str:
    """The one rule for a model name, used by pack, the manifest check, triton and serve.

    >>> check_model_name("resnet-50_v1.5")
    'resnet-50_v1.5'
    """
    if not isinstance(name, str) or not _MODEL_NAME.match(name) or ".." in name:
        raise BundleError(f"{where} {name!r} is not allowed: a model name is {MODEL_NAME_RULE}")
    return name


def safe_model_name(text: str) -> str:
    """A valid model name made from ``text`` (a file stem, a source): for defaults, never for names users gave."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).lstrip(".-")
    name = re.sub(r"\.{2,}", ".", name)[:128]
    return name or "model"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir} is not a directory (a bundle is a folder written by torch2ort pack)")
    path = bundle_dir / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{bundle_dir} has no {MANIFEST}; it is not a torch2ort bundle")
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{path} is not a regular file (a symlink or a special file); refusing to read it")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a torch2ort manifest")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
        raise BundleError(f"{path} is not a torch2ort manifest: {exc}") from None
    except RecursionError:
        raise BundleError(f"{path} nests JSON too deeply to be a torch2ort manifest") from None
    validate(data, str(path))
    return data


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))
    return deepest


def validate(data: Any, where: str = MANIFEST) -> None:
    """Check the manifest against its typed record and each step against its function's signature.

    A newer format_version asks for an upgrade; the first mismatch is the one line of the error.
    """
    if not isinstance(data, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    version = data.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format_version {version} is newer than this torch2ort supports "
                          f"({FORMAT_VERSION}); upgrade torch2ort (pip install -U torch2ort)")
    if _depth(data) > MAX_JSON_DEPTH:
        raise BundleError(f"{where}: nested more than {MAX_JSON_DEPTH} levels deep; not a torch2ort manifest")
    try:
        check_record(data, Manifest)
    except Mismatch as exc:
        if exc.kind == "type" and len(exc.path) == 1:
            raise BundleError(f"{where}: {exc.path[0]!r} has the wrong type ({exc.got}; expected "
                              f"{' or '.join(exc.expected or [])})") from None
        raise BundleError(f"{where}: {exc.describe()}") from None
    from torch2ort.runtime.processors import check_steps

    try:
        check_steps(data.get("preprocess", []), data.get("postprocess", []))
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}") from None
    check_model_name(data["name"], f"{where}: name")
    if data["model"] not in data["files"]:
        raise BundleError(f"{where}: the model file {data['model']!r} is not listed under 'files'")


def check_threads(threads: int | None) -> int | None:
    """``intra_op_num_threads`` a session may ask for: None (the default), or 1 to 4x the logical cores."""
    if threads is None or threads == 0:
        return None
    limit = 4 * (os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise BundleError(f"threads {threads!r} is out of range: give 1 to {limit} (4x the {os.cpu_count()} "
                          "logical cores), or leave it unset for one per physical core")
    return threads


def inside(bundle_dir: Path, rel: str) -> Path:
    """Resolve ``rel`` in the bundle, refusing absolute paths and anything that escapes it."""
    root = bundle_dir.resolve()
    if "\0" in rel:  # the OS cannot name it; Path.resolve would raise ValueError
        raise BundleError(f"bundle path {rel!r} holds a NUL byte; refused")
    if not rel or os.path.isabs(rel) or Path(rel).drive:
        raise BundleError(f"bundle path {rel!r} must be relative to the bundle directory")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise BundleError(f"bundle path {rel!r} resolves outside the bundle directory ({target}); refused")
    return target


def bundle_files(bundle_dir: Path) -> list[str]:
    """Every entry in the bundle that is not a directory (relative, POSIX), except the manifest itself.

    Symlinks and special files (FIFOs, sockets, devices) are listed too, so that an unlisted one is refused.
    """
    out = []
    for path in sorted(bundle_dir.rglob("*")):
        if path.is_symlink() or not path.is_dir():
            rel = path.relative_to(bundle_dir).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return out


def verify_files(bundle_dir: Path, files: dict[str, str]) -> None:
    """Every listed file present with its checksum, and nothing unlisted beside them."""
    present = set(bundle_files(bundle_dir))
    for rel, digest in files.items():
        path = inside(bundle_dir, rel)
        if not path.exists():
            raise BundleError(f"bundle file {rel!r} is missing from {bundle_dir}")
        if not path.is_file():
            raise BundleError(f"bundle file {rel!r} is not a regular file (a FIFO, socket, device or "
                              "directory); refusing to load it")
        if sha256_file(path) != digest:
            raise BundleError(f"bundle file {rel!r} has been modified: its sha256 does not match the "
                              "manifest; refusing to load it")
    extra = sorted(present - set(files))
    if extra:
        special = [rel for rel in extra if not (bundle_dir / rel).is_symlink() and not (bundle_dir / rel).is_file()]
        kind = f" (not regular files: {', '.join(special)})" if special else ""
        raise BundleError(f"bundle {bundle_dir} holds files the manifest does not list: {', '.join(extra)}{kind}; "
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
        if "\0" in loc:
            raise BundleError(f"{model_rel} refers to external data {loc!r} with a NUL byte in its name; refused")
        rel = (base / loc).resolve()
        root = bundle_dir.resolve()
        if os.path.isabs(loc) or (rel != root and root not in rel.parents):
            raise BundleError(f"{model_rel} refers to external data {loc!r} outside the bundle directory; refused")
        if rel.relative_to(root).as_posix() not in files:
            raise BundleError(f"{model_rel} refers to external data {loc!r} that the manifest does not list")
    return locations
