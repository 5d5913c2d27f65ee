"""Fault injection: every state file the system owns is truncated, filled with garbage and deleted; then
`search`, `ingest`, `doctor` and `doctor --repair` run through the real entry point (`imgsearch.ui.cli.run`).

Each must end without a stack trace: exit 2 with a message naming the damaged file (or exit 1 from a
doctor that finds the stores disagreeing), or work; and after `--repair` the stores agree and hold every
image they held before, wherever the data to rebuild it still exists. `FAULT_TABLE=path` writes the
file x damage x command -> outcome table as Markdown.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.training import run_training
from tests.conftest import TEST_BACKBONE, copy_store, run_cli, write_dataset

pytestmark = pytest.mark.slow

N_IMAGES = 18


@dataclass(frozen=True)
class StateFile:
    name: str
    glob: str  # below the data dir; the first match is damaged
    fix: str  # what the messages must name: the file, or its folder


def _store(kind: str) -> str:
    return f"index/{kind}/tiny_*"


STATE_FILES = [
    StateFile("SQLite catalogue", "imgsearch.db", "imgsearch.db"),
    StateFile("feature cache shard", "features/tiny_*/shard-*.npz", "shard-"),
    StateFile("FAISS manifest.json", f"{_store('faiss')}/manifest.json", "manifest.json"),
    StateFile("FAISS segment", f"{_store('faiss')}/seg-*.npz", "seg-"),
    StateFile("FAISS store.json", f"{_store('faiss')}/store.json", "store.json"),
    StateFile("Qdrant Edge store.json", f"{_store('qdrant_edge')}/store.json", "store.json"),
    StateFile("Qdrant Edge segment.json", f"{_store('qdrant_edge')}/shard/segments/*/segment.json", "shard"),
    StateFile("Qdrant Edge WAL", f"{_store('qdrant_edge')}/shard/wal/open-1", "shard"),
    StateFile("Qdrant Edge store (whole folder)", _store("qdrant_edge"), "doctor --repair"),
    StateFile("SVM model file", "models/tiny_*/run-*/svm.skops", "svm.skops"),
]
DAMAGES = ("truncate", "garbage", "delete")
COMMANDS = ("search", "ingest", "doctor", "doctor --repair")


def damage(path: Path, how: str) -> None:
    if how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif path.is_dir():  # a whole store folder: its every file
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            damage(f, how)
    elif how == "truncate":
        os.truncate(path, path.stat().st_size // 2)
    else:  # garbage over the middle (SQLite: pages in the middle, past the header)
        size = path.stat().st_size
        with open(path, "r+b") as f:
            start = size // 3 if size > 300 else 0
            f.seek(start)
            f.write(os.urandom(max(16, min(4096, size - start))))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, backbone):
    """A trained collection: 3 classes x 6 images, its data dir copied for every case."""
    root = tmp_path_factory.mktemp("faults")
    photos = write_dataset(root / "photos", per_class=N_IMAGES // 3, seed=0)
    settings = Settings(data_dir=root / "data", backbone=TEST_BACKBONE, num_workers=0, k_clusters=3)
    with Context(settings, _backbone=backbone) as ctx:
        run_training(ctx, photos, progress=False)
    return root, photos


def command_args(command: str, photos: Path) -> list[str]:
    query = str(photos / "grass" / "grass_002.jpg")
    return {"search": ["search", query], "ingest": ["ingest", str(photos)], "doctor": ["doctor"],
            "doctor --repair": ["doctor", "--repair"]}[command]


RESULTS: dict[tuple[str, str, str], str] = {}


@pytest.fixture(scope="module", autouse=True)
def outcome_table():
    """After the module, with FAULT_TABLE=path: the file x damage x command -> outcome table, as Markdown."""
    yield
    path = os.environ.get("FAULT_TABLE")
    if path and RESULTS:
        lines = ["| file | damage | " + " | ".join(COMMANDS) + " |", "|---|---|" + "---|" * len(COMMANDS)]
        for state in STATE_FILES:
            for how in DAMAGES:
                cells = [RESULTS.get((state.name, how, c), "—") for c in COMMANDS]
                lines.append(f"| {state.name} | {how} | " + " | ".join(cells) + " |")
        Path(path).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", DAMAGES)
# The SQLite file's damage is its own: on the PostgreSQL pass the catalogue is a server database (its loss is
# tests/ui/test_doctor.py's, on both databases).
@pytest.mark.parametrize("state", [pytest.param(s, marks=pytest.mark.sqlite_only) if s.glob == "imgsearch.db" else s
                                   for s in STATE_FILES], ids=lambda s: s.name)
def test_damaged_state_file(state, how, command, pristine, tmp_path, capsys, monkeypatch):
    root, photos = pristine
    data_dir = tmp_path / "data"
    copy_store(root / "data", data_dir)
    target = sorted(data_dir.glob(state.glob))[0]
    damage(target, how)
    code, out = run_cli(command_args(command, photos), data_dir, capsys, monkeypatch, IMGSEARCH_K_CLUSTERS="3")
    assert "Traceback" not in out
    names_it = state.fix in out or target.name in out
    if code == 2:
        assert out.startswith("error:") or "error:" in out, out
        assert names_it, out
        outcome = "clear message"
    elif code == 1:
        assert command == "doctor" and "PROBLEM" in out and "doctor --repair" in out, out
        outcome = "disagreement reported"
    else:
        assert code == 0, out
        outcome = "works" if command != "doctor --repair" else "repaired"
        if command == "search":
            assert "grass_002.jpg" in out, out  # the query's own file is among the results
    if command == "doctor --repair":
        assert code == 0, out
        code, out = run_cli(["doctor"], data_dir, capsys, monkeypatch, IMGSEARCH_K_CLUSTERS="3")
        assert code == 0 and "all three stores agree" in out, out
        assert f"catalogue: {N_IMAGES} indexed images" in out, out
        assert f"Qdrant: {N_IMAGES} points; FAISS mirror: {N_IMAGES} vectors" in out, out
        outcome = "repaired"
    RESULTS[(state.name, how, command)] = outcome
