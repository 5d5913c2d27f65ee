"""The documentation cannot drift: docs/configuration.md is what `Settings` says, every relative link resolves, and
the repository paths the docs name exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (a `[x](y)` inside one is code, not a link)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in _prose(page).splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", heading)))
    return out


def test_configuration_md_is_generated_from_settings():
    expected = _generator().render()
    current = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == expected, "docs/configuration.md is out of date: run python scripts/gen_config_docs.py"


def test_every_setting_has_a_description_and_a_row():
    from imgsearch.ui.services.settings import Settings

    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"add Field(description=...) in ui/services/settings.py for: {', '.join(missing)}"
    page = _generator().render()
    for name in Settings.model_fields:
        assert f"| `IMGSEARCH_{name.upper()}` |" in page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_are_closed(page):
    fences = [line for line in page.read_text(encoding="utf-8").splitlines() if line.startswith(("```", "~~~"))]
    assert len(fences) % 2 == 0, f"{page.relative_to(ROOT)}: a code block is never closed (the rest reads as code)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in LINK.findall(_prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {'; '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_named_in_backticks_exist(page):
    """`search/edge_owner.py`, `ui/api/`: a path under one of the repository's folders that was moved or renamed."""
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    missing = []
    for name in re.findall(r"`([\w.-]+/[\w./-]*)`", page.read_text(encoding="utf-8")):
        if name.split("/")[0] in folders and not (ROOT / name).exists():
            missing.append(name)
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {', '.join(missing)}"


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300, "README.md is the front door: move details to docs/"
    # The two set-up commands for a fresh machine, verbatim.
    for command in ("make run     # install into .venv, ingest Caltech-101, train, print the results, then serve the "
                    "app", "make test    # install into .venv, lint, run the test suite"):
        assert command in readme


def test_readme_results_table_is_the_one_in_benchmarks():
    """The README quotes the Caltech-101 run's table; docs/benchmarks.md holds the whole run: the two agree."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = re.search(r"^ +Run \d+ — .*?^└[─┴]+┘$", readme, re.S | re.M)
    assert table, "README.md: the Caltech-101 results table is gone"
    assert table.group(0) in (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
