"""Class-aware ranking: neighbours re-ranked by how likely they share the query's class.

score = cosine + λ · p_query(c) · p_c, where c is the candidate's predicted class and p_c its calibrated
probability (both in the payload) and p_query the classifier's distribution for the query. p_query(c) · p_c is
the probability that both belong to c, the candidate's one-class view of the agreement of the two
distributions. λ = 0 is plain cosine ranking; a large λ ranks by class first, cosine second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from imgsearch.search.index import Hit

# Chosen on Caltech-101's training split only (`benchmarks/bench_class_aware.py`: half of the training images
# query the other half, the SVM fitted on that half alone); the README gives val -> train and leave-one-out.
DEFAULT_LAMBDA = 2.0
POOL = 100  # cosine neighbours re-ranked: a same-class image beyond the 100th is rarely worth bringing up


def query_distribution(classifier, vector: np.ndarray) -> dict[str, float]:
    """A fitted probabilistic classifier's class -> probability for one (d,) query vector."""
    proba = classifier.predict_proba(np.asarray(vector)[None, :])[0]
    return dict(zip(map(str, classifier.classes_), proba.tolist(), strict=True))


def agreement(query_proba: Mapping[str, float], payloads: Sequence[Mapping]) -> np.ndarray:
    """(n,) p_query(c) · p_c for each candidate payload (0 for one without a prediction)."""
    out = np.zeros(len(payloads))
    for j, p in enumerate(payloads):
        label, prob = p.get("predicted_label"), p.get("predicted_prob")
        if label is not None and prob is not None:
            out[j] = float(query_proba.get(label, 0.0)) * float(prob)
    return out


def class_aware_scores(cosine: ArrayLike, agree: ArrayLike, lam: float) -> np.ndarray:
    return np.asarray(cosine, dtype=np.float64) + lam * np.asarray(agree, dtype=np.float64)


def rerank(hits: Sequence[Hit], query_proba: Mapping[str, float], lam: float, k: int,
           pool: int = POOL) -> list[tuple[Hit, float | None]]:
    """The k best of `hits` (cosine neighbours with payloads, nearest first): the first `pool` of them by
    class-aware score, then the rest in cosine order. Each hit keeps its cosine score and comes with its
    class-aware score (None past the pool). Only a fixed head is re-ranked so that asking for more results never
    reorders the first ones: pages of results stay consistent."""
    if not hits:
        return []
    head, tail = list(hits[:pool]), list(hits[pool:])
    scores = class_aware_scores([h.score for h in head], agreement(query_proba, [h.payload for h in head]), lam)
    order = np.argsort(-scores, kind="stable")
    ranked: list[tuple[Hit, float | None]] = [(head[i], float(scores[i])) for i in order]
    return (ranked + [(h, None) for h in tail])[:k]
