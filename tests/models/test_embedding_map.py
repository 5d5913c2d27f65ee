"""models.embedding_map: the seeded sample and its PCA/UMAP coordinates, and their JSON round trip."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models import embedding_map as em


def _blobs(n_per: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 32)) * 6
    X = np.vstack([c + rng.normal(size=(n_per, 32)) for c in centres]).astype(np.float32)
    return X, np.repeat(np.arange(3), n_per)


def test_sample_is_seeded_sorted_and_capped():
    ids = np.arange(100, 0, -1)
    a, b = em.sample_ids(ids, 10, seed=3), em.sample_ids(ids, 10, seed=3)
    assert len(a) == 10 and np.array_equal(a, b) and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, em.sample_ids(ids, 10, seed=4))
    assert np.array_equal(em.sample_ids(ids[:5], 10), np.sort(ids[:5]))  # fewer than the cap: all of them


@pytest.mark.slow  # UMAP's first call in a process compiles its numba code: about 10 s here
def test_umap_separates_clusters_and_is_reproducible():
    X, y = _blobs()
    ids = np.arange(len(X)) + 100
    first = em.compute(ids, X, n_total=500, seed=0)
    assert first.pca.shape == (60, 2) and first.umap.shape == (60, 2) and first.n_total == 500
    again = em.compute(ids, X, n_total=500, seed=0)
    assert np.allclose(first.umap, again.umap)
    # Each blob's points are nearer their own blob's centre on the UMAP map than any other blob's.
    centres = np.stack([first.umap[y == c].mean(axis=0) for c in range(3)])
    nearest = np.argmin(((first.umap[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() == 1.0


def test_umap_off_draws_the_map_with_pca_only():
    X, _ = _blobs()
    out = em.compute(np.arange(len(X)), X, n_total=60, umap=False)
    assert out.umap is None and out.pca.shape == (60, 2)
    assert np.allclose(out.pca, em.compute(np.arange(len(X)), X, n_total=60, umap=False).pca)


def test_json_round_trip_and_too_few_points_for_umap():
    X, _ = _blobs(n_per=3)
    small = em.compute(np.arange(9), X, n_total=9)
    assert small.umap is None and small.pca.shape == (9, 2)
    back = em.EmbeddingMap.from_json(small.to_json())
    assert back.umap is None and np.array_equal(back.ids, np.arange(9))
    assert np.allclose(back.pca, small.pca, atol=1e-4)


@pytest.mark.parametrize("n", [0, 1])
def test_degenerate_samples(n):
    out = em.compute(np.arange(n), np.zeros((n, 4)), n_total=n)
    assert out.pca.shape == (n, 2) and out.umap is None
