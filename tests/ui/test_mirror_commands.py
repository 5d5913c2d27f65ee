"""`imgsearch mirror sync` from the command line (the sync itself: tests/search/test_mirror_sync.py)."""

from __future__ import annotations

from tests.helpers import run_cli


def test_refused_without_a_server(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    code, out = run_cli(["mirror", "sync"], tmp_path / "data", capsys, monkeypatch)
    assert code == 2 and "mirror sync is for a Qdrant server" in out, out


def test_syncs_against_a_server(tmp_path, capsys, monkeypatch):
    code, out = run_cli(["mirror", "sync"], tmp_path / "data", capsys, monkeypatch, IMGSEARCH_QDRANT_URL=":memory:")
    assert code == 0, out
    assert "mirror sync (full): 0 points written, 0 removed; the mirror holds 0 points" in out
    assert (tmp_path / "data" / "index" / "faiss").is_dir()
