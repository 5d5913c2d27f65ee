"""No page reads every point: with the stores' reads counted and the PCA map's sample capped at CAP, under half
the tiny collection's 18 images, each page fetches the vectors or payloads of at most CAP points per call (a
duplicate group is read whole: 6 images here), and none lists a whole Qdrant shard (a scroll over every point).
At 1M images a page that did either would stall."""

from __future__ import annotations

import pytest

from imgsearch.search.faiss_index import FaissIndex
from imgsearch.search.qdrant_edge import EdgeIndex
from tests.ui.web.conftest import page

CAP = 8
PAGES = ["search", "filtered", "clusters", "metrics", "duplicates", "suspects"]


@pytest.fixture
def reads(monkeypatch) -> list[tuple[str, int]]:
    """(store method, points read) for every read of vectors or payloads, and every full listing of a shard."""
    seen: list[tuple[str, int]] = []
    def counting(cls, name):
        orig = getattr(cls, name)

        def counted(self, ids):
            seen.append((f"{cls.__name__}.{name}", len(ids)))
            return orig(self, ids)

        return counted

    for cls in (FaissIndex, EdgeIndex):
        for name in ("get_vectors", "get_payloads"):
            monkeypatch.setattr(cls, name, counting(cls, name))

    def listed(self, _orig=EdgeIndex.ids):
        out = _orig(self)
        seen.append(("EdgeIndex.ids", len(out)))
        return out

    monkeypatch.setattr(EdgeIndex, "ids", listed)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("name", PAGES)
def test_no_page_reads_every_point(app_env, reads, monkeypatch, name):
    import streamlit as st

    from imgsearch.ui.web import resources

    st.cache_data.clear()  # what an earlier test cached would hide this page's reads
    monkeypatch.setattr(resources, "MAP_SAMPLE_MAX", CAP)
    at = page(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [r for r in reads if r[0] == "EdgeIndex.ids"], reads
    assert all(n <= CAP for _, n in reads), reads
    if name == "clusters":  # the map was computed by the training run on its own sample: no vectors are read here
        assert not [r for r in reads if r[0] == "FaissIndex.get_vectors"], reads
