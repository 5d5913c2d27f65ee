"""The app says a store was deleted (and how to rebuild it) instead of showing 'no matches' (issue 8, item 7)."""

from __future__ import annotations

import shutil

from tests.ui.web.conftest import copy_collection, page


def test_deleted_qdrant_store_is_an_error_naming_the_repair(tmp_path, collection, monkeypatch):
    collection = copy_collection(collection, tmp_path)
    for name, value in collection.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    edge = next((collection.data_dir / "index" / "qdrant_edge").iterdir())
    shutil.rmtree(edge)
    at = page("filtered")
    at.run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Qdrant store" in errors and "is empty, but the catalogue has 18 indexed images" in errors
    assert "imgsearch doctor --repair" in errors
