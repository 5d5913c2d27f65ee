"""A training run's clusters numbered after the current run's, read from the catalogue (models/cluster_ids.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from imgsearch.db import repository as repo
from imgsearch.models.cluster_ids import UNKNOWN, carry_ids
from imgsearch.models.identity import BackboneId

ARTIFACT = "cluster_ids"  # per run: {"kmeans": {"kept", "new", "retired", "next_id"}, "agglomerative": {...}}
# k-means is matched by its centroids, Ward by its members (Ward has no centres of its own to compare)
ALGORITHMS = {"kmeans": ("centroids", 1), "agglomerative": ("members", 2)}  # -> (matched by, column of the rows)


def carry_cluster_ids(Session: sessionmaker[Session], backbone: BackboneId, ids: np.ndarray, X: np.ndarray,
                      models: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Renumber the freshly fitted clusterers in `models` (rows `ids`, features X) after the clusters the current
    models gave the same images, as the catalogue stores them; returns what to record as the run's ARTIFACT.

    The previous clusters are read from the catalogue, not from the model files, so a run that refits lost
    model files (doctor) still keeps their ids; images whose stored clusters came from an older run are left
    out. The first id never handed out is kept per run, so a retired id is never given again.
    """
    with Session() as s:
        previous = repo.current_model_run(s, backbone.name, backbone.weights_sha256)
        rows = repo.clusters_from_run(s, previous.id) if previous is not None else []
        marks = (repo.run_artifact(s, previous.id, ARTIFACT) or {}) if previous is not None else {}
    stored = np.array([[UNKNOWN if v is None else v for v in row] for row in rows], dtype=np.int64).reshape(-1, 3)
    at = np.minimum(np.searchsorted(stored[:, 0], ids), max(len(stored) - 1, 0))  # both are sorted by id
    found = stored[at, 0] == ids if len(stored) else np.zeros(len(ids), dtype=bool)
    out = {}
    for name, (by, column) in ALGORITHMS.items():
        before = np.full(len(ids), UNKNOWN, dtype=np.int64)
        before[found] = stored[at[found], column]
        next_id = int(marks.get(name, {}).get("next_id", 0))
        out[name] = carry_ids(models[name], X, before if previous is not None else None, next_id, by)
    return out
