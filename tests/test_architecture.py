"""The package layers of docs/ARCHITECTURE.md, enforced: imports go down the layers, never up or sideways."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "db", "search", "ingest", "ui")
# Which other packages each one may import (docs/ARCHITECTURE.md draws the same picture).
ALLOWED = {
    "models": set(),
    "db": set(),
    "search": {"models"},
    "ingest": {"models", "db", "search"},
    "ui": {"models", "db", "search", "ingest"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def modules_of(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layers(package):
    wrong = []
    for path in modules_of(package):
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[0] in PACKAGES:
                wrong.append(f"{path.relative_to(ROOT)}: bare `{module}` (the installed name is imgsearch.{module})")
            elif parts[0] == "imgsearch" and len(parts) > 1:
                target = parts[1]
                if target != package and target not in ALLOWED[package]:
                    wrong.append(f"{path.relative_to(ROOT)}: imports {module} ({package} may not import {target})")
    assert wrong == []


def test_every_package_folder_is_listed():
    folders = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert folders == set(PACKAGES)
