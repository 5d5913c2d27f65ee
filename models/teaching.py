"""Teaching a label from a few examples: rank a collection's images by how much they look like the positive
examples (and unlike the negative ones). Two rankers: a linear model fitted on the examples against a random
sample of the rest of the collection, and Rocchio's mean-of-positives minus mean-of-negatives (what Qdrant's
recommend does with its average-vector strategy). benchmarks/bench_teach.py measures both; `DEFAULT_METHOD`
is the better one."""

from __future__ import annotations

import numpy as np

METHODS = ("linear", "rocchio")
# benchmarks/bench_teach.py on Caltech-101 (docs/teaching.md): over all 77 classes with 45+ images, the linear
# model labels more images in 3 pages (0.969 of what they could hold against 0.963) with a higher precision of
# the first page (0.909 against 0.903); it learns more from rejections (pages 2 and 3). It costs about 0.5 s a
# page against Rocchio's 20 ms, small beside reviewing 40 images.
DEFAULT_METHOD = "linear"
MIN_POSITIVES = 3


class LabelRanker:
    """Scores every row of a feature matrix for one label, fitted on example rows.

    method "linear": logistic regression, positives (1) against the negatives and `n_background` rows drawn at
    random from the rest (0). The background stands in for "everything else": most of a collection is not the
    label, and the few positives that a random draw picks up weigh little against the examples.
    method "rocchio": the score is the cosine to mean(positives) - `beta` * mean(negatives) (unit rows).
    """

    def __init__(self, method: str = DEFAULT_METHOD, n_background: int = 2000, background_weight: float = 0.5,
                 C: float = 1.0, beta: float = 0.5, random_state: int = 0):
        self.method = method
        self.n_background = n_background
        self.background_weight = background_weight
        self.C = C
        self.beta = beta
        self.random_state = random_state

    def fit(self, X: np.ndarray, positive: np.ndarray, negative: np.ndarray | None = None) -> LabelRanker:
        """`positive`, `negative`: row indices into X (unit rows, float32)."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        positive = np.unique(np.asarray(positive, dtype=np.int64))
        negative = np.setdiff1d(np.asarray([] if negative is None else negative, dtype=np.int64), positive)
        if len(positive) < MIN_POSITIVES:
            raise ValueError(f"need at least {MIN_POSITIVES} positive examples; got {len(positive)}")
        if self.method == "rocchio":
            q = X[positive].mean(axis=0)
            if len(negative):
                q = q - self.beta * X[negative].mean(axis=0)
            self.query_ = (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)
            return self
        rng = np.random.default_rng(self.random_state)
        rest = np.setdiff1d(np.arange(len(X)), np.concatenate([positive, negative]))
        background = rng.choice(rest, size=min(self.n_background, len(rest)), replace=False)
        rows = np.concatenate([positive, negative, background])
        y = np.r_[np.ones(len(positive)), np.zeros(len(negative) + len(background))]
        # Each example, positive or negative, weighs the same; the background together weighs
        # `background_weight` times the positives (5 examples against 2,000 background rows would otherwise be
        # predicted "no" everywhere; only the ranking is used). Rescaled to a mean weight of 1, so that C means
        # what it means unweighted.
        w = np.r_[np.ones(len(positive) + len(negative)),
                  np.full(len(background), self.background_weight * len(positive) / max(len(background), 1))]
        w *= len(w) / w.sum()
        from sklearn.linear_model import LogisticRegression  # here: the CLI imports this module for its choices

        model = LogisticRegression(C=self.C, max_iter=1000)
        model.fit(X[rows], y, sample_weight=w)
        self.coef_ = model.coef_[0].astype(np.float32)
        self.intercept_ = float(model.intercept_[0])
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        """Higher = more like the positives; a ranking score (a logit or a cosine), not a probability."""
        if self.method == "rocchio":
            return X @ self.query_
        return X @ self.coef_ + self.intercept_


def rank_candidates(X: np.ndarray, positive: np.ndarray, negative: np.ndarray | None = None,
                    exclude: np.ndarray | None = None, k: int = 40, method: str = DEFAULT_METHOD,
                    random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, scores) of the `k` best-scored rows of X that are not examples nor in `exclude`, best
    first (ties by row order)."""
    ranker = LabelRanker(method=method, random_state=random_state).fit(X, positive, negative)
    scores = ranker.score(X)
    skip = np.zeros(len(X), dtype=bool)
    for part in (positive, negative, exclude):
        if part is not None and len(part):
            skip[np.asarray(part, dtype=np.int64)] = True
    rows = np.flatnonzero(~skip)
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.float32)
    k = min(k, len(rows))
    top = rows[np.argpartition(-scores[rows], k - 1)[:k]] if k < len(rows) else rows
    order = np.lexsort((top, -scores[top]))
    return top[order], scores[top[order]].astype(np.float32)
