"""Install footprint, measured in the running environment: the bundle's requirements vs the torch stack.

Sizes are the summed sizes of the files each installed distribution lists in its RECORD, with its
dependencies (as installed here) included. It is what these packages occupy on this machine, not
a download size; benchmarks/footprint measures fresh venvs instead.

Example::

    closure_size(["onnxruntime", "numpy"])   # {"bytes": ..., "packages": {"onnxruntime": ..., ...}}
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: metadata.Distribution) -> list[str]:
    """Unconditional dependencies only: markers with ``extra ==`` are skipped, others are evaluated."""
    out = []
    for req in dist.requires or []:
        text, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            try:
                from packaging.markers import Marker

                if not Marker(marker).evaluate():
                    continue
            except Exception:  # no packaging, or a marker it cannot read: count the dependency
                pass
        m = _NAME.match(text)
        if m:
            out.append(m.group(1))
    return out


def _dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        try:
            p = Path(dist.locate_file(f))
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            continue
    return total


def closure_size(roots: list[str]) -> dict:
    """Bytes of ``roots`` and everything they depend on, as installed; missing packages are listed."""
    seen: dict[str, int] = {}
    missing: list[str] = []
    todo = [_norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name in missing:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        seen[name] = _dist_bytes(dist)
        todo += [_norm(r) for r in _requires(dist)]
    return {"bytes": sum(seen.values()), "packages": dict(sorted(seen.items(), key=lambda kv: -kv[1])),
            "missing": missing}


def requirement_names(requirements_txt: str) -> list[str]:
    """Package names from a requirements.txt body (comments and blank lines skipped)."""
    names = []
    for line in requirements_txt.splitlines():
        line = line.split("#", 1)[0].strip()
        m = _NAME.match(line)
        if m:
            names.append(m.group(1))
    return names


def tree_bytes(path: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


METHOD = ("summed file sizes of each installed distribution's RECORD in this environment, dependencies "
          "included")


def measure_footprint(bundle: str | Path, requirements_txt: str, torch_roots: list[str]) -> dict:
    """The bundle folder, its runtime requirements and the torch side, measured here (``FootprintInfo``'s form)."""
    return {"bundle_bytes": tree_bytes(bundle), "runtime": closure_size(requirement_names(requirements_txt)),
            "torch": closure_size(torch_roots), "torch_roots": list(torch_roots), "method": METHOD}
