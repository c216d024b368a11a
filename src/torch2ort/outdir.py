"""Output folders: refuse to overwrite without --force, and never delete a folder torch2ort did not write.

Example::

    prepare_outdir(Path("out"), force=True, marker="evidence.json", what="a torch2ort migrate output")
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from torch2ort.errors import OutputExistsError, UsageError


def prepare_outdir(out: Path, force: bool, marker: str, what: str) -> Path:
    """An empty ``out``, made if missing. A non-empty one is replaced only with ``force`` and only when
    it holds ``marker``, the file that proves it is ``what`` (something torch2ort wrote)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise OutputExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()):
            if not force:
                raise OutputExistsError(f"{out} already exists and is not empty; pass --force to replace it")
            if not (out / marker).is_file():
                raise OutputExistsError(f"{out} has no {marker}, so it is not {what}; refusing to delete it "
                                        "even with --force")
            shutil.rmtree(out)
    make_dir(out)
    return out


def make_dir(path: Path) -> Path:
    """``mkdir -p``, with a path under a file, in /proc or read-only as a one-line UsageError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {path}: {exc.strerror or exc}") from None
    return path


def check_writable(path: str | Path, force: bool) -> Path:
    """Refuse, before any work, an output that exists (without --force) or that cannot be written at all.

    Probed by opening it for appending (nothing is written; a file the probe created is removed again),
    so `-o /proc/x.onnx` is a one-line error naming the path, not an export failure after the work.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    existed = path.exists()
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the writer creates missing parents
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is not a directory")
        if existed or parent == path.parent:
            with open(path, "ab"):
                pass
            if not existed:
                path.unlink()
        elif not os.access(parent, os.W_OK):
            raise PermissionError(f"{parent} is not writable")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
