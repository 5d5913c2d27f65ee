"""ui.services.embedding_maps: the training run's map honours Settings.map_umap."""

from __future__ import annotations

import pytest

from tests.helpers import TEST_BACKBONE


def _record(tmp_path, backbone, tiny_dataset, map_umap: bool):
    from imgsearch.db import repository as repo
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ui.services import embedding_maps
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, map_umap=map_umap)
    with Context(settings, _backbone=backbone) as ctx:
        ingest_folder(tiny_dataset, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(True),
                      progress=False)
        b = ctx.backbone
        with ctx.Session.begin() as s:
            run_id = repo.start_run(s, "train", b.name, b.dim, b.weights_sha256).id
        recorded = embedding_maps.record(ctx, run_id)
        with ctx.Session() as s:
            stored = embedding_maps.load(s, run_id)
    assert recorded is not None and stored is not None and len(stored.ids) == 18
    return stored


def test_the_map_is_drawn_with_pca_only_when_umap_is_off(tmp_path, backbone, tiny_dataset):
    stored = _record(tmp_path, backbone, tiny_dataset, map_umap=False)
    assert stored.umap is None and stored.pca.shape == (18, 2)


@pytest.mark.slow  # UMAP's first call in a process compiles its numba code: about 10 s here
def test_the_map_has_umap_coordinates_when_umap_is_on(tmp_path, backbone, tiny_dataset):
    stored = _record(tmp_path, backbone, tiny_dataset, map_umap=True)
    assert stored.umap is not None and stored.umap.shape == (18, 2)
