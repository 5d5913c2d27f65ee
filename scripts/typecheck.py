"""Type-check the package with mypy; exit non-zero on any error. `make typecheck`, `make test-fast` and `make test`
run it.

    python scripts/typecheck.py            # mypy over `imgsearch` with pyproject's [tool.mypy] settings

`imgsearch` has no folder of its own: setuptools maps `imgsearch.db` to db/ and so on
(`[tool.setuptools.package-dir]`), and mypy cannot follow the editable install's import hook. So this builds a
tree of symlinks, `.typecheck/imgsearch/<name>` -> the folder, from that same table, and runs mypy on
`-p imgsearch` with `MYPYPATH=.typecheck`. tests/test_packaging.py checks the tree against the packaging.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT / ".typecheck"


def package_dirs(root: Path = ROOT) -> dict[str, str]:
    """`[tool.setuptools.package-dir]`: `imgsearch.<name>` -> the folder it is installed from."""
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-dir"]


def build_tree(root: Path = ROOT, tree: Path = TREE) -> Path:
    """(Re)build `tree/imgsearch/<name>` -> `root/<folder>` for every mapped package; returns `tree/imgsearch`."""
    namespace = tree / "imgsearch"
    shutil.rmtree(tree, ignore_errors=True)  # a package that left the table must leave the tree too
    namespace.mkdir(parents=True)
    for package, folder in package_dirs(root).items():
        parent, _, name = package.rpartition(".")
        if parent != "imgsearch":
            raise SystemExit(f"typecheck: {package!r} is not a direct sub-package of imgsearch")
        (namespace / name).symlink_to(root / folder, target_is_directory=True)
    return namespace


def main() -> int:
    build_tree()
    env = {**os.environ, "MYPYPATH": str(TREE)}
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--python-executable", sys.executable, "-p", "imgsearch"]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
