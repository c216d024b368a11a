"""The import rules of docs/architecture.md, checked statically over every import statement in src/.

The run-time test (tests/runtime/test_torch_free.py) proves the runtime works with torch blocked;
this one proves no code path under runtime/ or serve/ even names a torch-side module, and that no
package imports one above it in the layer order the architecture document declares, including
imports inside functions that a run-time test might never reach.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "torch2ort"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

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


# --- the layer order -----------------------------------------------------------------------------


def layer_order(doc: Path = ARCHITECTURE) -> list[tuple[str, ...]]:
    """The rows of the fenced block under ``## Layers``, bottom row first; each row's names before its comment."""
    text = doc.read_text()
    block = re.search(r"^## Layers\n.*?^```\n(.*?)^```", text, re.S | re.M)
    assert block, f"{doc.name} has no fenced block under '## Layers'"
    rows = [tuple(re.split(r"\s{2,}", line.strip(), maxsplit=1)[0].split()) for line in block[1].splitlines()
            if line.strip()]
    return rows[::-1]


def _package_of(path: Path) -> str:
    """``errors`` for errors.py, ``runtime`` for runtime/processors/text.py, ``torch2ort`` for the root package."""
    parts = _module_name(path).split(".")
    return parts[1] if len(parts) > 1 else "torch2ort"


def _imported_packages(module: str, names: list[str]) -> list[str]:
    """The top-level torch2ort packages one import statement reaches (``from torch2ort import X`` reaches X)."""
    if module == "torch2ort":
        # __version__ is a constant every layer may read; another name of the root is the public API (top row).
        return [n if (SRC / n).is_dir() or (SRC / f"{n}.py").is_file() else "torch2ort"
                for n in names if n != "__version__"]
    return [module.split(".")[1]] if module.startswith("torch2ort.") else []


def layer_violations(files: list[Path], order: list[tuple[str, ...]]) -> list[str]:
    """Imports of a package in the same row or a row above; the top row (the shell) may import anything."""
    rank = {pkg: i for i, row in enumerate(order) for pkg in row}
    top = len(order) - 1
    bad = []
    for path in files:
        mine = _package_of(path)
        where = path.relative_to(SRC.parent)
        if mine not in rank:
            bad.append(f"{where}: package {mine!r} is not in the layer order of docs/architecture.md")
            continue
        if rank[mine] == top:
            continue
        for line, module, names in imports(path):
            for theirs in _imported_packages(module, names):
                if theirs != mine and rank.get(theirs, top) >= rank[mine]:
                    bad.append(f"{where}:{line} imports {module} ({theirs} is not below {mine})")
    return bad


def test_every_package_imports_only_packages_below_it():
    assert layer_violations(sorted(SRC.rglob("*.py")), layer_order()) == []


def test_the_layer_order_names_every_package_once():
    declared = [pkg for row in layer_order() for pkg in row]
    assert len(declared) == len(set(declared)), declared
    present = {_package_of(p) for p in SRC.rglob("*.py")}
    assert set(declared) == present, (set(declared) ^ present)


def test_the_shell_is_on_top_and_nothing_imports_it():
    order = layer_order()
    assert set(order[-1]) == {"cli", "torch2ort", "__main__"}
    assert order[0] == ("errors", "_env")


@pytest.fixture
def tree_copy(tmp_path, monkeypatch):
    """A copy of src/torch2ort that the checker reads instead of the real one."""
    copy = tmp_path / "torch2ort"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.html", "*.js"))
    monkeypatch.setattr(f"{__name__}.SRC", copy)
    return copy


@pytest.mark.parametrize("where, planted", [
    ("report/planted.py", "from torch2ort.pipeline.stages import Stage\n"),        # the old report <-> pipeline cycle
    ("runtime/planted.py", "def f():\n    from torch2ort.sources import load_model\n"),  # inside a function
    ("evidence/planted.py", "from torch2ort import report\n"),                     # a package through the root
    ("parity/planted.py", "from ..optimization import planner\n"),                 # relative, two levels up
    ("pipeline/planted.py", "import torch2ort.cli.migrate\n"),                     # nothing imports the shell
    ("serve/planted.py", "from torch2ort.batch.job import Job\n"),                 # the same row
    ("bundle/planted.py", "from torch2ort import migrate\n"),                      # the public API is the top row
    ("newpkg/planted.py", "import numpy\n"),                                       # a package the order lacks
])
def test_the_layer_check_catches_a_planted_import(tree_copy, where, planted):
    path = tree_copy / where
    path.parent.mkdir(exist_ok=True)
    path.write_text(planted)
    files = sorted(tree_copy.rglob("*.py"))
    bad = layer_violations(files, layer_order())
    assert len(bad) == 1 and bad[0].startswith(f"torch2ort/{where}"), bad


def test_the_layer_check_passes_an_import_downwards(tree_copy):
    """The control: a planted import that follows the order is not reported."""
    (tree_copy / "report" / "planted.py").write_text("def f():\n    from torch2ort.evidence import Evidence\n"
                                                      "from torch2ort import __version__, errors\n")
    assert layer_violations(sorted(tree_copy.rglob("*.py")), layer_order()) == []
