"""The import rules of docs/architecture.md, checked statically over every import statement in src/.

The run-time test (tests/runtime/test_torch_free.py) proves the runtime works with torch blocked;
this one proves no code path under runtime/ or serve/ even names a torch-side module, including
imports inside functions that a run-time test might never reach.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "torch2ort"

# What the torch-free side (runtime/, serve/) may import from torch2ort.
TORCH_FREE_MAY_IMPORT = ("torch2ort.errors", "torch2ort._env", "torch2ort.values", "torch2ort.runtime",
                         "torch2ort.serve")
# Third-party packages that belong to the export side; none may appear under runtime/ or serve/.
EXPORT_SIDE = ("torch", "onnx", "onnxscript", "onnxslim", "transformers", "sentence_transformers", "safetensors")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([module] if module else []))
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def _files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (SRC / pkg).rglob("*.py"))


def _under(module: str, roots: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in roots)


def torch_free_violations(files: list[Path], allowed: tuple[str, ...] = TORCH_FREE_MAY_IMPORT) -> list[str]:
    bad = []
    for path in files:
        for line, module, names in imports(path):
            where = f"{path.relative_to(SRC.parent)}:{line}"
            if _under(module, EXPORT_SIDE):
                bad.append(f"{where} imports {module}")
            elif module == "torch2ort":
                bad += [f"{where} imports torch2ort.{n}" for n in names
                        if n != "__version__" and not _under(f"torch2ort.{n}", allowed)]
            elif module.startswith("torch2ort.") and not _under(module, allowed):
                bad.append(f"{where} imports {module}")
    return bad


def private_cross_package_imports(files: list[Path]) -> list[str]:
    """``from torch2ort.a.b import _helper`` where the importer is outside torch2ort.a."""
    bad = []
    for path in files:
        mine = _module_name(path).split(".")[:2]
        for line, module, names in imports(path):
            theirs = module.split(".")[:2]
            if not module.startswith("torch2ort.") or theirs == mine or theirs[1].startswith("_"):
                continue
            bad += [f"{path.relative_to(SRC.parent)}:{line} imports {module}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
    return bad


def test_runtime_and_serve_import_only_the_torch_free_side():
    assert torch_free_violations(_files("runtime", "serve")) == []


def test_batch_is_torch_free_too():
    """`torch2ort batch` runs on Ray workers and batch nodes that have the runtime only."""
    assert torch_free_violations(_files("batch"), TORCH_FREE_MAY_IMPORT + ("torch2ort.batch",)) == []


def test_the_runtime_does_not_import_the_server():
    bad = [f"{p.name}:{line} {m}" for p in _files("runtime") for line, m, _ in imports(p)
           if _under(m, ("torch2ort.serve",))]
    assert bad == []


def test_no_private_helper_is_imported_across_packages():
    assert private_cross_package_imports(sorted(SRC.rglob("*.py"))) == []


def test_modules_the_runtime_shares_are_standard_library_only():
    for name in ("errors.py", "_env.py", "values.py"):
        third_party = [m for _, m, _ in imports(SRC / name) if m.split(".")[0] not in
                       ("__future__", "os", "platform", "pathlib", "importlib", "math", "numbers", "collections",
                        "torch2ort")]
        assert third_party == [], name


@pytest.mark.parametrize("planted", [
    "import torch\n",
    "def f():\n    from torch2ort.sources import load_model\n",
    "from torch2ort import export_onnx\n",
    "from ..export import graph\n",
    "def g():\n    import onnx.helper\n",
])
def test_the_contract_catches_a_planted_import(tmp_path, planted, monkeypatch):
    pkg = tmp_path / "torch2ort" / "runtime"
    pkg.mkdir(parents=True)
    (pkg / "planted.py").write_text(planted)
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path / "torch2ort")
    assert torch_free_violations([pkg / "planted.py"]) != []


def test_the_contract_catches_a_planted_private_import(tmp_path, monkeypatch):
    pkg = tmp_path / "torch2ort" / "pipeline"
    pkg.mkdir(parents=True)
    (pkg / "planted.py").write_text("from torch2ort.benchmark.run import _versions\n")
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path / "torch2ort")
    assert private_cross_package_imports([pkg / "planted.py"]) != []
