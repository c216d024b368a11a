"""Output folders: refuse to overwrite without --force, and never delete a folder torch2ort did not write.

Example::

    prepare_outdir(Path("out"), force=True, marker="evidence.json", what="a torch2ort migrate output")
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torch2ort.errors import OutputExistsError


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
    out.mkdir(parents=True, exist_ok=True)
    return out
