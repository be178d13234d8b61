"""The package's layering (issue 22): nothing inside plmlab imports the package façade
(plmlab/__init__.py, the public API a user imports); internal code imports the module that
defines what it needs, so the façade can re-export anything without an import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "plmlab"


def _package_of(path: Path) -> list[str]:
    """The package a module belongs to (what `from . import` means in it), as name parts."""
    return list(path.relative_to(SRC.parent).parent.parts)


def facade_imports() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    package = _package_of(path)
                    base = package[:len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "plmlab":
                    found.append(f"{path.relative_to(SRC.parent)}:{node.lineno} from plmlab import "
                                 + ", ".join(a.name for a in node.names))
            elif isinstance(node, ast.Import) and any(a.name == "plmlab" for a in node.names):
                found.append(f"{path.relative_to(SRC.parent)}:{node.lineno} import plmlab")
    return found


def test_no_module_inside_the_package_imports_its_facade():
    assert facade_imports() == []


def test_the_check_sees_a_relative_facade_import(tmp_path, monkeypatch):
    fake = tmp_path / "plmlab"
    (fake / "train").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "train" / "__init__.py").write_text("")
    (fake / "train" / "x.py").write_text("def f():\n    from .. import generate\n")
    (fake / "train" / "y.py").write_text("from ..hf import load_pretrained\nfrom . import x\n")
    monkeypatch.setattr(__import__(__name__), "SRC", fake)
    assert facade_imports() == ["plmlab/train/x.py:2 from plmlab import generate"]
