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


@pytest.mark.slow
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


# Inside ui/: the services, and three front ends on them that never import each other.
FRONT_ENDS = ("cli", "web", "api")
# The CLI launches the other two: `imgsearch serve` runs the API's app (the web app is started by its file's path).
LAUNCHES = {"ui/cli/server_commands.py": {"imgsearch.ui.api.app"}}


def ui_part(path: Path) -> str:
    """services, cli, web or api: the part of ui/ a module belongs to ('' for ui/__init__.py)."""
    parts = path.relative_to(ROOT / "ui").parts
    return parts[0] if len(parts) > 1 else ""


def test_every_ui_module_is_a_service_or_in_a_front_end():
    assert {ui_part(p) for p in modules_of("ui")} == {"", "services", *FRONT_ENDS}


@pytest.mark.parametrize("part", ("services", *FRONT_ENDS))
def test_services_import_no_front_end_and_front_ends_not_each_other(part):
    wrong = []
    for path in modules_of("ui"):
        if ui_part(path) != part:
            continue
        allowed = LAUNCHES.get(str(path.relative_to(ROOT)), set())
        for module in imported_modules(path):
            parts = module.split(".")
            if parts[:2] != ["imgsearch", "ui"] or len(parts) < 3 or module in allowed:
                continue
            if parts[2] in FRONT_ENDS and parts[2] != part:
                wrong.append(f"{path.relative_to(ROOT)}: imports {module} (ui/{part}/ may not import "
                             f"ui/{parts[2]}/: what both need belongs in ui/services/)")
    assert wrong == []



def module_names(package: str) -> set[str]:
    """Every importable module and package name under one folder, e.g. imgsearch.ui.services.backup."""
    names = set()
    for path in modules_of(package):
        rel = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(("imgsearch", *(rel[:-1] if rel[-1] == "__init__" else rel))))
    return names


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_uses_another_modules_private_names(package):
    """`from imgsearch.x import _name` and `module._name` on another of the project's modules: a name the module
    keeps to itself. What two modules share is public in the one that owns it."""
    ours = set().union(*(module_names(p) for p in PACKAGES))
    wrong = []
    for path in modules_of(package):
        tree = ast.parse(path.read_text(), filename=str(path))
        modules_bound = set()  # local names bound to one of our modules
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module in ours:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        wrong.append(f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}")
                    if f"{node.module}.{alias.name}" in ours:
                        modules_bound.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                modules_bound.update(alias.asname for alias in node.names if alias.asname and alias.name in ours)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules_bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert wrong == []
