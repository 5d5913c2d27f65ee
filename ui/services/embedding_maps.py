"""The feature map of a training run (PCA and UMAP of a seeded sample), stored with the run as an artifact.

Training records it once (`record`); the app only reads it (`load`), so drawing and recolouring the map never
recompute a projection.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from imgsearch.db import repository as repo
from imgsearch.models import embedding_map
from imgsearch.models.embedding_map import EmbeddingMap
from imgsearch.ui.services.context import Context

log = logging.getLogger(__name__)

ARTIFACT = "embedding_map"


def load(session: Session, run_id: int) -> EmbeddingMap | None:
    data = repo.run_artifact(session, run_id, ARTIFACT)
    return None if data is None else EmbeddingMap.from_json(data)


def record(ctx: Context, run_id: int, force: bool = False, seed: int | None = None) -> EmbeddingMap | None:
    """Compute and store run `run_id`'s map from the indexed vectors (unless it has one and not `force`).

    A failure is logged, not raised: the map is an extra; the run's models and metrics stand without it.
    `seed`: the run's own (default: the settings').
    """
    seed = ctx.settings.seed if seed is None else seed
    if not force:
        with ctx.Session() as s:
            if repo.run_artifact(s, run_id, ARTIFACT) is not None:
                return None
    try:
        faiss = ctx.stores.faiss
        all_ids = faiss.ids()
        ids = embedding_map.sample_ids(all_ids, embedding_map.N_MAX, seed)
        result = embedding_map.compute(ids, faiss.get_vectors([int(i) for i in ids]), len(all_ids),
                                       seed=seed, umap=ctx.settings.map_umap)
        with ctx.Session.begin() as s:
            repo.record_artifact(s, run_id, ARTIFACT, result.to_json())
        return result
    except Exception:
        log.exception("the feature map of training run %d could not be computed", run_id)
        return None
