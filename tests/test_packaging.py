"""The installed project is one import name, `imgsearch`: nothing called `models` or `db` lands in site-packages."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_only_imgsearch(tmp_path):
    # Built from a copy: setuptools leaves a build/ folder beside the sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("db", "ingest", "models", "search", "ui"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("imgsearch_selfhosted-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"imgsearch", wheel.name.split("-py3")[0] + ".dist-info"}
    for expected in ("imgsearch/ui/cli/main.py", "imgsearch/ui/services/context.py", "imgsearch/ui/web/app.py",
                     "imgsearch/ui/web/screens/search_page.py",
                     "imgsearch/db/alembic.ini", "imgsearch/db/migrations/env.py",
                     "imgsearch/db/migrations/versions/0002_job_kind.py", "imgsearch/models/backbones.py",
                     "imgsearch/search/stores.py", "imgsearch/ingest/pipeline.py"):
        assert expected in names
    assert "imgsearch/__init__.py" not in names  # a namespace: no code of its own
    # `imgsearch` on PyPI is another project: the distribution has its own name, the command is still `imgsearch`.
    dist_info = wheel.name.split("-py3")[0] + ".dist-info"
    with zipfile.ZipFile(wheel) as whl:
        metadata = whl.read(f"{dist_info}/METADATA").decode()
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
    assert "\nName: imgsearch-selfhosted\n" in metadata
    assert "imgsearch = imgsearch.ui.cli:run" in entry_points


def _typecheck_script():
    spec = importlib.util.spec_from_file_location("typecheck", ROOT / "scripts" / "typecheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_type_check_tree_is_the_installed_package(tmp_path):
    # mypy sees `imgsearch` through scripts/typecheck.py's symlinks: they must be exactly the sub-packages that
    # setuptools installs and Python imports, or a package would go unchecked (or be checked under a wrong name).
    with open(ROOT / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    namespace = _typecheck_script().build_tree(ROOT, tmp_path / "tree")
    linked = {link.name: link.resolve() for link in namespace.iterdir()}
    assert {f"imgsearch.{name}" for name in linked} == set(setuptools["package-dir"])
    for name, target in linked.items():
        assert target == (ROOT / setuptools["package-dir"][f"imgsearch.{name}"]).resolve()
        spec = importlib.util.find_spec(f"imgsearch.{name}")
        assert [Path(p).resolve() for p in spec.submodule_search_locations] == [target]
    for package in setuptools["packages"]:
        assert (namespace.parent / package.replace(".", "/")).is_dir(), package
