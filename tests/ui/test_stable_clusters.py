"""Issue 21: a retrain keeps the cluster ids of the current models (catalogue, payloads, model files agree)."""

from __future__ import annotations

import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from imgsearch.ui.services.stable_clusters import ARTIFACT
from imgsearch.ui.services.training import TrainingParams, run_training
from tests.helpers import TEST_BACKBONE, write_dataset


def _clusters(ctx) -> dict[int, tuple[int, int]]:
    with ctx.Session() as s:
        rows = repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed"))
        return {i: (im.kmeans_cluster, im.agglo_cluster) for i, im in rows.items()}


@pytest.mark.slow
def test_a_retrain_with_another_seed_keeps_every_images_cluster_ids(tmp_path, backbone):
    settings = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=6)
    photos = write_dataset(tmp_path / "photos", per_class=6, seed=0)
    with Context(settings, _backbone=backbone) as ctx:
        ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                      progress=False)
        first = run_training(ctx, progress=False, params=TrainingParams(3, 0, 0.2))
        before = _clusters(ctx)
        assert {k for k, _ in before.values()} == {0, 1, 2}  # a first run numbers as it always did
        # Seed 4's k-means finds the same three groups in another order: without carried ids they would swap.
        second = run_training(ctx, force=True, progress=False, params=TrainingParams(3, 4, 0.2))
        assert second.run_id != first.run_id
        assert _clusters(ctx) == before
        with ctx.Session() as s:
            marks = repo.run_artifact(s, second.run_id, ARTIFACT)
        assert marks["kmeans"] == {"kept": 3, "new": 0, "retired": 0, "next_id": 3}
        trained = ctx.trained()
        payloads = ctx.stores.faiss.get_payloads(sorted(before))
        assert [p["kmeans_cluster"] for p in payloads] == [before[i][0] for i in sorted(before)]
        assert doctor.check(ctx.Session, ctx.stores, trained, cache=ctx.cache).consistent
