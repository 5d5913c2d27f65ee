"""Qdrant Edge honours the qdrant_* collection settings the server uses: HNSW, int8 with rescoring, on-disk vectors.

2,000 seeded clustered vectors (dim 32) with a small indexing threshold, so the optimizer really builds HNSW graphs
and quantised copies; recall is measured against numpy's exact top-10 with the payload filters applied."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from imgsearch.models.identity import BackboneId
from imgsearch.search.factory import open_index
from imgsearch.search.index import Filter
from imgsearch.search.options import StoreOptions
from imgsearch.search.qdrant_config import ServerCollectionConfig
from imgsearch.search.qdrant_edge import EdgeIndex
from imgsearch.search.qdrant_edge_files import SHARD_DIR
from imgsearch.ui.services.settings import Settings

DIM, N, K = 32, 2000, 10
INFO = BackboneId("testnet", DIM, "ab" * 32)
LABELS = [f"c{i}" for i in range(10)]
# 2,000 x 32 floats = 250 KB: past an indexing threshold of 20 KB, so segments get HNSW graphs; filters matching
# more than full_scan_threshold (4 KB = 32 vectors) go through the graph too.
HNSW = ServerCollectionConfig(exact=False, hnsw_m=8, hnsw_ef_construct=64, full_scan_threshold=4,
                              indexing_threshold=20)
HNSW_INT8 = ServerCollectionConfig(exact=False, hnsw_m=8, hnsw_ef_construct=64, full_scan_threshold=4,
                                   indexing_threshold=20, quantization="int8")
FILTERS = {
    "none": (None, lambda p: True),
    "label": (Filter(predicted_labels=["c3"]), lambda p: p["predicted_label"] == "c3"),
    "wide": (Filter(min_confidence=0.5), lambda p: p["predicted_prob"] >= 0.5),
}


def data(seed: int = 0) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """Clustered unit vectors (10 centres) with labels and confidences, and 20 held-out queries."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(LABELS), DIM))
    lab = rng.integers(0, len(LABELS), N + 20)
    x = centres[lab] + 0.8 * rng.normal(size=(N + 20, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    payloads = [{"predicted_label": LABELS[v], "predicted_prob": round(float(rng.random()), 3)} for v in lab[:N]]
    return x[:N], payloads, x[N:]


def fill(index: EdgeIndex) -> tuple[np.ndarray, list[dict], np.ndarray]:
    xb, payloads, xq = data()
    for s in range(0, N, 500):
        index.upsert(list(range(s, s + 500)), xb[s:s + 500], payloads[s:s + 500])
    return xb, payloads, xq


def shard_info(index: EdgeIndex):
    with index._lease() as shard:
        return shard.info()


def stored_config(folder: Path) -> dict:
    return json.loads((folder / SHARD_DIR / "edge_config.json").read_text())


def recall_and_check(index: EdgeIndex, xb: np.ndarray, payloads: list[dict], xq: np.ndarray) -> dict[str, float]:
    """recall@10 per filter against exact search; every hit must pass its filter."""
    out = {}
    for name, (flt, keep) in FILTERS.items():
        mask = np.array([keep(p) for p in payloads])
        scores = np.where(mask, xq @ xb.T, -np.inf)
        truth = np.argsort(-scores, axis=1)[:, :K]
        found = index.search(xq, K, flt)
        for q, hits in zip(xq, found, strict=True):
            assert len(hits) == K
            assert all(keep(payloads[h.id]) for h in hits), name  # the payload filter still applies
            # int8 candidates are rescored on the original vectors: every score is the exact cosine
            assert [h.score for h in hits] == pytest.approx((xb[[h.id for h in hits]] @ q).tolist(), abs=1e-5)
        out[name] = float(np.mean([len({h.id for h in hits} & set(t.tolist())) / K
                                   for hits, t in zip(found, truth, strict=True)]))
    return out


@pytest.mark.slow  # the optimizer builds HNSW graphs over 2,000 points: seconds
@pytest.mark.parametrize("config", [HNSW, HNSW_INT8], ids=["hnsw", "hnsw+int8"])
def test_hnsw_store_builds_its_graphs_and_finds_the_neighbours(tmp_path, config):
    index = EdgeIndex(tmp_path, INFO, config=config, linger_s=60)
    try:
        xb, payloads, xq = fill(index)
        assert index.optimize() > 0
        info = shard_info(index)
        assert info.points_count == N and info.indexed_vectors_count >= N  # every point is in an HNSW graph
        stored = stored_config(tmp_path)
        assert stored["hnsw_config"]["m"] == 8 and stored["hnsw_config"]["full_scan_threshold"] == 4
        assert (stored.get("quantization_config") is not None) == (config.quantization == "int8")
        params = index._params
        assert params.exact is False
        if config.quantization == "int8":
            assert params.quantization.rescore is True and params.quantization.oversampling == 2.0
        recalls = recall_and_check(index, xb, payloads, xq)
        assert min(recalls.values()) >= 0.95, recalls
    finally:
        index.close()


@pytest.mark.slow  # builds HNSW graphs
def test_on_disk_vectors_option(tmp_path):
    config = ServerCollectionConfig(on_disk_vectors=True, indexing_threshold=20)
    index = EdgeIndex(tmp_path, INFO, config=config, linger_s=60)
    try:
        xb, payloads, xq = fill(index)
        index.optimize()
        assert stored_config(tmp_path)["vectors"][""]["on_disk"] is True
        assert index._params.exact is True  # on-disk vectors alone keep exact search
        recalls = recall_and_check(index, xb, payloads, xq)
        assert recalls == {name: 1.0 for name in FILTERS}
    finally:
        index.close()


@pytest.mark.slow  # builds HNSW graphs
def test_existing_exact_store_reopens_under_new_settings_and_back(tmp_path):
    old = EdgeIndex(tmp_path, INFO, linger_s=0)  # today's defaults: exact, nothing ever optimised
    xb, payloads, xq = fill(old)
    old.close()
    assert "quantization_config" not in stored_config(tmp_path) or not stored_config(tmp_path)["quantization_config"]

    new = EdgeIndex(tmp_path, INFO, config=HNSW_INT8, linger_s=60)
    assert shard_info(new).indexed_vectors_count == 0  # still the old segments: searched by full scan meanwhile
    assert min(recall_and_check(new, xb, payloads, xq).values()) == 1.0
    new.close()  # the first release applies the new settings: graphs and int8 copies are built
    assert new.optimize_s > 0
    assert stored_config(tmp_path)["quantization_config"]["scalar"]["type"] == "int8"

    again = EdgeIndex(tmp_path, INFO, config=HNSW_INT8, linger_s=60)
    try:
        assert shard_info(again).indexed_vectors_count >= N
        assert min(recall_and_check(again, xb, payloads, xq).values()) >= 0.95
    finally:
        again.close()

    # Back to the defaults: Edge cannot drop the int8 copy, so exact searches ignore it and score exactly.
    back = EdgeIndex(tmp_path, INFO, linger_s=60)
    try:
        assert back._params.exact is True and back._params.quantization.ignore is True
        assert recall_and_check(back, xb, payloads, xq) == {name: 1.0 for name in FILTERS}
        hits = back.search(xq[1], K)
        assert [h.score for h in hits] == pytest.approx(sorted((xq[1] @ xb.T).tolist(), reverse=True)[:K], abs=1e-6)
    finally:
        back.close()


@pytest.mark.slow
def test_default_store_never_runs_the_optimizer(tmp_path):
    index = EdgeIndex(tmp_path, INFO, linger_s=0)
    fill(index)
    index.close()
    assert index.optimize_s == 0.0
    assert shard_info(EdgeIndex(tmp_path, INFO, linger_s=0)).indexed_vectors_count == 0


def test_settings_reach_the_edge_store(tmp_path, monkeypatch):
    for key, value in {"IMGSEARCH_QDRANT_EXACT_SEARCH": "false", "IMGSEARCH_QDRANT_QUANTIZATION": "int8",
                       "IMGSEARCH_QDRANT_HNSW_M": "12", "IMGSEARCH_QDRANT_HNSW_EF": "80",
                       "IMGSEARCH_QDRANT_QUANTIZATION_OVERSAMPLING": "3",
                       "IMGSEARCH_QDRANT_ON_DISK_VECTORS": "true"}.items():
        monkeypatch.setenv(key, value)
    index = open_index("qdrant", tmp_path, INFO, StoreOptions(qdrant_config=Settings().qdrant_collection))
    try:
        assert isinstance(index, EdgeIndex)
        assert index._params.exact is False and index._params.hnsw_ef == 80
        assert index._params.quantization.oversampling == 3.0
        stored = stored_config(index.folder)
        assert stored["hnsw_config"]["m"] == 12 and stored["vectors"][""]["on_disk"] is True
    finally:
        index.close()


@pytest.mark.parametrize("env", [
    {"IMGSEARCH_QDRANT_QUANTIZATION": "int4"},
    {"IMGSEARCH_QDRANT_QUANTIZATION_OVERSAMPLING": "0.5"},
    {"IMGSEARCH_QDRANT_HNSW_EF": "0"},
    {"IMGSEARCH_QDRANT_INDEXING_THRESHOLD": "-1"},
])
def test_settings_validation(monkeypatch, env):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


def test_config_validation():
    with pytest.raises(ValueError, match="oversampling"):
        ServerCollectionConfig(oversampling=0.5)
    with pytest.raises(ValueError, match="hnsw_ef"):
        ServerCollectionConfig(hnsw_ef=0)
