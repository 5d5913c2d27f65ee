"""The predictions in one backbone's stored payloads: made by that backbone's current models, added to the
catalogue's fields when points are written (`store_payloads`), and rewritten after a re-fit (`refresh_payloads`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.db.models import Image
from imgsearch.ingest import payload_sync
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.models.trained import PREDICTION_FIELDS, TrainedModels
from imgsearch.search.payload import payload_for
from imgsearch.search.stores import Stores


def predict(trained: TrainedModels | None, xb: np.ndarray) -> list[dict[str, Any]]:
    """PREDICTION_FIELDS for each row of xb from `trained` (all None without models)."""
    return trained.predict(xb) if trained is not None else [dict.fromkeys(PREDICTION_FIELDS) for _ in range(len(xb))]


def store_payloads(images: Mapping[int, Image], ids: Sequence[int], predictions: Sequence[dict]) -> list[dict]:
    """Payloads for `ids` in one backbone's stores: the catalogue's fields, with `predictions` made by that
    backbone's current models (see `predict`), never copied from the catalogue row: with two backbones in one
    data directory, the row holds whichever backbone's predictions were written last."""
    return [{**payload_for(images[i]), **p} for i, p in zip(ids, predictions, strict=True)]


def refresh_payloads(
    Session: sessionmaker[Session], stores: Stores, cache: FeatureCache, trained: TrainedModels, chunk: int = 1024,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """After a re-fit, rewrite every stored point's predicted class and clusters (SQLite and both stores).

    Vectors come from the feature cache, or from Qdrant for images embedded elsewhere. Images removed
    meanwhile are skipped. `on_progress(done, total)`: after each chunk, images gone through of all.
    """
    stored = set(stores.qdrant.ids().tolist())
    with Session() as s:
        ids = [i for i in repo.image_ids_with_status(s, "indexed") if i in stored]
    cache.refresh()
    n = 0
    for start in range(0, len(ids), chunk):
        with Session() as s:
            images = repo.images_by_ids(s, ids[start : start + chunk])
        part = [i for i in ids[start : start + chunk] if i in images]
        if not part:
            continue
        cached = [i for i in part if images[i].content_hash in cache]
        rest = [i for i in part if images[i].content_hash not in cache]
        xb = np.concatenate(
            [
                cache.get([images[i].content_hash for i in cached]),
                stores.qdrant.get_vectors(rest) if rest else np.zeros((0, cache.backbone.dim), np.float32),
            ]
        )
        part = cached + rest
        updates = trained.predict(xb)
        # Payloads first, the catalogue second: a crash in between leaves the catalogue behind, where
        # `stale_predictions` sees it and the next `train` (or `doctor --repair`) finishes the job.
        stores.set_payload(part, [{**u, "label": images[i].label} for i, u in zip(part, updates, strict=True)])
        payload_sync.settle(Session, stores, {i: {"label": images[i].label} for i in part})
        with Session.begin() as s:
            repo.update_images(s, [{"id": i, **u} for i, u in zip(part, updates, strict=True)])
        n += len(part)
        if on_progress is not None:
            on_progress(min(start + chunk, len(ids)), len(ids))
    return n

