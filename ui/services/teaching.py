"""Teaching a label from a few examples: a session per label name, shared by the CLI (`imgsearch teach`), the API
(/v1/labels/{name}/...) and the app's "Teach a label" page.

The session is the `teach_examples` rows of the label (db/teaching.py), so it survives a restart and is the same
in every front end. Positives are the images labelled with the name in the catalogue (given examples and accepted
candidates are labelled at once, with `relabel`: catalogue and both stores' payloads, as `imgsearch relabel`) plus
nothing else; negatives are the "not this" examples and the rejected candidates. Each page of candidates is ranked
afresh from them (models/teaching.py), so the ranking is refitted after every page that is reviewed; reviewed
images (accepted, rejected, skipped) and images already labelled with the name are never offered again.

When done (`finish`), a training job is queued (`imgsearch worker` runs it): the classifiers are refitted on every
label, the new one included, as `imgsearch train` would; a quick update of the current classifier alone is not
made, because the calibrated SVM and the forest are fitted jointly on all classes and a retrain keeps every model,
the clusters' names and the metrics consistent with one catalogue state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.db import teaching as db
from imgsearch.models.teaching import DEFAULT_METHOD, METHODS, MIN_POSITIVES, rank_candidates
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.errors import AppError
from imgsearch.ui.services.label_review import relabel
from imgsearch.ui.services.training import collection_features

PAGE_SIZE = 40


class TeachingError(AppError, ValueError):
    """A request the session cannot take (too few examples, an empty name, the same image twice): a 422."""

    code = "invalid_request"
    status = 422


class UnknownImages(AppError, KeyError):
    code = "not_found"
    status = 404


@dataclass
class TeachStatus:
    label: str
    n_labelled: int  # images with this label in the catalogue: the positives
    n_negative: int  # "not this" examples and rejected candidates
    n_skipped: int
    n_reviewed: int  # every image the session has a verdict for

    @property
    def ready(self) -> bool:
        return self.n_labelled >= MIN_POSITIVES


@dataclass
class Candidate:
    id: int
    path: str
    score: float  # the ranker's score (a logit or a cosine): higher = more like the positives
    label: str | None  # its current label (accepting it replaces that label)


def check_label(label: str) -> str:
    name = (label or "").strip()
    if not name:
        raise TeachingError("the label is empty; pass a name for what the examples show")
    return name


def _ids(values: Iterable[int]) -> list[int]:
    return sorted({int(v) for v in values})


def _require_images(ctx: Context, ids: list[int]) -> None:
    with ctx.Session() as s:
        missing = sorted(set(ids) - set(repo.images_by_ids(s, ids)))
    if missing:
        raise UnknownImages(f"no image with id {', '.join(map(str, missing))} in the catalogue")


def status(ctx: Context, label: str) -> TeachStatus:
    label = check_label(label)
    with ctx.Session() as s:
        seen = db.verdicts(s, label)
        n_labelled = len(db.labelled_ids(s, label))
    values = list(seen.values())
    return TeachStatus(label, n_labelled, values.count("negative"), values.count("skipped"), len(seen))


def review(ctx: Context, label: str, accept: Iterable[int] = (), reject: Iterable[int] = (),
           skip: Iterable[int] = ()) -> TeachStatus:
    """Record a page's verdicts: accepted images are labelled `label` (catalogue and both stores' payloads) and
    become positives; rejected ones become negatives (and lose the label if they had it: the person says they are
    not this); skipped ones are not offered again. An image in two of the lists is refused."""
    label = check_label(label)
    accept, reject, skip = _ids(accept), _ids(reject), _ids(skip)
    twice = (set(accept) & set(reject)) | (set(accept) & set(skip)) | (set(reject) & set(skip))
    if twice:
        raise TeachingError(f"image {', '.join(map(str, sorted(twice)))} is in more than one of accept, reject "
                            "and skip")
    _require_images(ctx, accept + reject + skip)
    if accept:
        relabel(ctx, accept, label)
    with ctx.Session() as s:
        unlabel = sorted(set(reject) & set(db.labelled_ids(s, label)))
    if unlabel:
        relabel(ctx, unlabel, None)
    with ctx.Session.begin() as s:
        for ids, verdict in ((accept, "positive"), (reject, "negative"), (skip, "skipped")):
            if ids:
                db.set_verdicts(s, label, ids, verdict)
    return status(ctx, label)


def add_examples(ctx: Context, label: str, positive: Iterable[int], negative: Iterable[int] = ()) -> TeachStatus:
    """Start (or add to) the session of `label`: the positive examples are labelled at once, the negative ones
    ("not this") are remembered. Ranking needs MIN_POSITIVES images with the label in all."""
    return review(ctx, label, accept=positive, reject=negative)


def candidates(ctx: Context, label: str, k: int = PAGE_SIZE, method: str = DEFAULT_METHOD) -> list[Candidate]:
    """The next page: the `k` images most like the positives, ranked by a model fitted now on the session's
    positives and negatives against the rest of the collection. Reviewed images and those already labelled
    `label` are left out; images whose features are not cached yet (an ingest still running) are not ranked."""
    label = check_label(label)
    if method not in METHODS:
        raise TeachingError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    with ctx.Session() as s:
        seen = db.verdicts(s, label)
        labelled = set(db.labelled_ids(s, label))
    ids, X, _ = collection_features(ctx.Session, ctx.cache)
    row_of = {int(i): r for r, i in enumerate(ids)}
    positive = np.array(sorted(row_of[i] for i in labelled if i in row_of), dtype=np.int64)
    negative = np.array(sorted(row_of[i] for i, v in seen.items() if v == "negative" and i in row_of and
                               i not in labelled), dtype=np.int64)
    exclude = np.array(sorted(row_of[i] for i in seen if i in row_of), dtype=np.int64)
    if len(positive) < MIN_POSITIVES:
        raise TeachingError(f"{label!r} has {len(positive)} example images; give at least {MIN_POSITIVES} "
                            "(examples of what the label shows) to rank candidates")
    rows, scores = rank_candidates(X, positive, negative, exclude=exclude, k=k, method=method)
    chosen = [int(ids[r]) for r in rows]
    with ctx.Session() as s:
        images = repo.images_by_ids(s, chosen)
    return [Candidate(i, images[i].path, round(float(sc), 4), images[i].label)
            for i, sc in zip(chosen, scores, strict=True) if i in images]


def finish(ctx: Context, label: str, force: bool = False) -> int:
    """The session is done: queue a training run (the classifiers learn the label; `imgsearch worker` runs it).
    The session's rows stay, so teaching can go on later without offering the reviewed images again. Returns the
    job's id."""
    check_label(label)
    with ctx.Session.begin() as s:
        return jobs.enqueue_job(s, "", {"force": force}, kind="train").id


def forget(ctx: Context, label: str) -> int:
    """Drop the session's verdicts (the labels given stay). Returns how many were dropped."""
    label = check_label(label)
    with ctx.Session.begin() as s:
        return db.clear(s, label)
