"""Label review: score every labelled image's label (`imgsearch suspects`), and relabel (catalogue + payloads)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync
from imgsearch.models.label_issues import LabelIssues, find_label_issues
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.training import labelled_features


@dataclass
class Suspect:
    id: int
    path: str
    label: str
    suggested: str
    label_score: float  # probability of the given label (out of fold, with neighbour agreement); low = suspect
    flagged: bool  # confident learning counts it among the likely errors
    top: list[tuple[str, float]]  # the five most probable classes


def score_labels(ctx: Context, n_splits: int = 5, k: int = 10) -> tuple[np.ndarray, LabelIssues, float]:
    """Score every labelled image with cached features and record label_score / suggested_label in the catalogue.
    Returns (image ids, the scores, seconds). Classes with fewer than max(n_splits, 6) images are left out (their
    rows get no score): out-of-fold probabilities need one image per fold and three per training part."""
    t = time.perf_counter()
    ids, X, y = labelled_features(ctx.Session, ctx.cache)
    labels, counts = np.unique(y, return_counts=True)
    # One image per fold, and 3 in each training part for the SVM's calibration folds.
    min_count = max(n_splits, 6)
    keep = np.isin(y, labels[counts >= min_count])
    ids, X, y = ids[keep], X[keep], y[keep]
    if len(np.unique(y)) < 2:
        raise ValueError(f"need at least two classes with {min_count}+ labelled images to score labels")
    issues = find_label_issues(X, y, n_splits=n_splits, k=k)
    with ctx.Session.begin() as s:
        repo.update_images(s, [{"id": int(i), "label_score": round(float(q), 6), "suggested_label": str(sug)}
                               for i, q, sug in zip(ids, issues.quality, issues.suggested, strict=True)])
    return ids, issues, time.perf_counter() - t


def suspects(ctx: Context, ids: np.ndarray, issues: LabelIssues, top: int) -> list[Suspect]:
    """The `top` most suspect images (see LabelIssues.ranking), with their five most probable classes."""
    rows = issues.ranking()[:top]
    with ctx.Session() as s:
        images = repo.images_by_ids(s, ids[rows].tolist())
    combined = 0.5 * issues.oof_proba + 0.5 * issues.neighbour_proba
    out = []
    for r in rows:
        order = np.argsort(-combined[r], kind="stable")[:5]
        out.append(Suspect(int(ids[r]), images[int(ids[r])].path, str(issues.given[r]), str(issues.suggested[r]),
                           float(issues.quality[r]), bool(issues.is_issue[r]),
                           [(str(issues.classes[j]), round(float(combined[r, j]), 4)) for j in order]))
    return out


def relabel(ctx: Context, image_ids: list[int], label: str | None) -> int:
    """New label for images, in the catalogue and both stores' payloads; the next `train` fits on it (its
    fingerprint covers every label). Returns how many images were relabelled."""
    if label is not None and not label.strip():
        raise ValueError("the new label is empty; pass a class name")
    with ctx.Session.begin() as s:
        missing = sorted(set(int(i) for i in image_ids) - set(repo.images_by_ids(s, image_ids)))
        if missing:  # nothing is changed then
            raise KeyError(f"no image with id {', '.join(map(str, missing))} in the catalogue")
        found = repo.relabel(s, image_ids, label.strip() if label else None)
    payload_sync.sync(ctx.Session, ctx.stores, found)
    return len(found)
