"""`imgsearch remove` onto the undo list, and `imgsearch removed`: list, restore, empty (issue 21, item 5)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run_cli


@pytest.mark.slow
def test_remove_lists_restores_and_empties(tmp_path, tiny_dataset, capsys, monkeypatch):
    data = tmp_path / "data"
    assert run_cli(["ingest", str(tiny_dataset)], data, capsys, monkeypatch)[0] == 0
    code, out = run_cli(["remove", str(tiny_dataset / "apples")], data, capsys, monkeypatch)
    assert code == 0 and "moved 6 images to the undo list" in out
    # a search by another apple (its file is still there) finds no apple while they are all removed
    query = str(tiny_dataset / "apples" / "apples_005.jpg")
    code, out = run_cli(["export", "--query", query, "--format", "json", "--k", "1"], data, capsys, monkeypatch)
    assert code == 0 and '"label": "apples"' not in out

    code, out = run_cli(["removed", "--json"], data, capsys, monkeypatch)
    listed = json.loads(out[out.index("["):])
    assert code == 0 and len(listed) == 6 and not any(e["file_moved"] for e in listed)
    assert {e["path"] for e in listed} == {str(p) for p in (tiny_dataset / "apples").iterdir()}
    first = min(e["id"] for e in listed)
    code, out = run_cli(["removed"], data, capsys, monkeypatch)
    assert code == 0 and "6 removed images" in out

    code, out = run_cli(["removed", "--restore", str(first)], data, capsys, monkeypatch)
    assert code == 0 and "restored 1 images" in out
    restored = next(e["path"] for e in listed if e["id"] == first)
    code, out = run_cli(["export", "--query", query, "--format", "json", "--k", "1"], data, capsys, monkeypatch)
    assert code == 0 and f'"path": "{restored}"' in out
    code, out = run_cli(["removed", "--restore", str(first)], data, capsys, monkeypatch)
    assert code == 1 and "not on the undo list" in out

    code, out = run_cli(["removed", "--empty", "--older-than", "1", "--yes"], data, capsys, monkeypatch)
    assert code == 0 and "emptied 0 images" in out
    code, out = run_cli(["removed", "--empty", "--yes"], data, capsys, monkeypatch)
    assert code == 0 and "emptied 5 images" in out
    code, out = run_cli(["removed"], data, capsys, monkeypatch)
    assert code == 0 and "the undo list is empty" in out
    code, out = run_cli(["doctor"], data, capsys, monkeypatch)
    assert code == 0, out
