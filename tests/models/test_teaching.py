"""Ranking candidates for a label taught from a few examples (models/teaching.py), on seeded blobs."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.models.teaching import METHODS, LabelRanker, rank_candidates
from tests.helpers import sphere_blobs


@pytest.fixture(scope="module")
def blobs():
    return sphere_blobs(seed=0, k=5, per=40, d=32, sigma=0.1, shuffle=True)


@pytest.mark.parametrize("method", METHODS)
def test_a_few_examples_find_the_rest_of_their_blob(blobs, method):
    X, y = blobs
    members = np.flatnonzero(y == "c2")
    positive = members[:3]
    rows, scores = rank_candidates(X, positive, k=37, method=method)
    assert set(rows) == set(members[3:])  # the other 37 of the blob, and nothing else, first
    assert np.all(np.diff(scores) <= 0)  # best first
    assert not set(rows) & set(positive)  # examples are never candidates


@pytest.mark.parametrize("method", METHODS)
def test_negatives_push_their_blob_down(blobs, method):
    X, y = blobs
    c0, c1 = np.flatnonzero(y == "c0"), np.flatnonzero(y == "c1")
    positive = np.r_[c0[:3], c1[:3]]  # two blobs look like the label ...
    before, _ = rank_candidates(X, positive, k=37, method=method)
    after, _ = rank_candidates(X, positive, c1[3:8], k=37, method=method)  # ... until five of one are "not this"
    share_before, share_after = (y[before] == "c0").mean(), (y[after] == "c0").mean()
    assert share_before < 0.6 and share_after >= share_before + 0.3


@pytest.mark.parametrize("method", METHODS)
def test_excluded_rows_are_left_out_and_k_is_capped(blobs, method):
    X, y = blobs
    positive = np.flatnonzero(y == "c3")[:3]
    exclude = np.arange(0, len(X), 2)
    rows, _ = rank_candidates(X, positive, exclude=exclude, k=10_000, method=method)
    assert len(rows) == len(set(range(len(X))) - set(exclude) - set(positive))
    assert not set(rows) & set(exclude)
    again, _ = rank_candidates(X, positive, exclude=exclude, k=10_000, method=method)
    assert np.array_equal(rows, again)  # seeded: the same page twice


def test_too_few_positives_or_an_unknown_method_is_refused(blobs):
    X, _ = blobs
    with pytest.raises(ValueError, match="at least 3 positive"):
        LabelRanker().fit(X, [0, 1, 1])  # duplicates count once
    with pytest.raises(ValueError, match="method must be one of"):
        LabelRanker(method="svm").fit(X, [0, 1, 2])


def test_linear_background_sample_is_capped_by_the_collection(blobs):
    X, y = blobs
    ranker = LabelRanker(method="linear", n_background=10_000).fit(X, np.flatnonzero(y == "c4")[:3])
    assert ranker.coef_.shape == (X.shape[1],) and np.isfinite(ranker.score(X)).all()
