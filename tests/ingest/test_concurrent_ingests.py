"""Two ingests of the same folder at once: what one indexes while the other is running, the other skips.

Deterministic, in one process: the second ingest runs to the end inside the first one's first embedding call
(through its own Context, so its own store handles, locks and feature cache, as another process would).
"""

from __future__ import annotations

from imgsearch.db import repository as repo
from imgsearch.ingest import pipeline
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui import doctor
from imgsearch.ui.context import Context
from imgsearch.ui.settings import Settings
from tests.conftest import TEST_BACKBONE, write_dataset

N_IMAGES, STORE_BATCH = 18, 4  # five chunks


def _ingest(ctx: Context, folder, on_progress=None):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False, on_progress=on_progress)


def test_an_ingest_skips_images_a_concurrent_ingest_indexed_meanwhile(tmp_path, monkeypatch):
    photos = write_dataset(tmp_path / "photos")
    settings = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=STORE_BATCH)
    real = pipeline.embed_with_cache
    calls: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}  # (images asked for, images embedded)
    current = ["first"]
    second = []

    def embed_with_cache(backbone, paths, *args, **kwargs):
        if current[-1] == "first" and not second:  # the first ingest's first chunk: the other one runs now
            current.append("second")
            try:
                with Context(settings, role="second ingest") as other:
                    second.append(_ingest(other, photos))
            finally:
                current.pop()
        result = real(backbone, paths, *args, **kwargs)
        calls[current[-1]].append((len(paths), result.n_embedded))
        return result

    monkeypatch.setattr(pipeline, "embed_with_cache", embed_with_cache)
    progress = []
    with Context(settings, role="first ingest") as ctx:
        first = _ingest(ctx, photos, on_progress=progress.append)

        # The second ingest did all the work; the first wrote only the chunk it was already embedding (from the
        # cache the second had just filled), then found the rest indexed and embedded nothing more.
        assert second[0].n_indexed == N_IMAGES and sum(n for _, n in calls["second"]) == N_IMAGES
        assert calls["first"] == [(STORE_BATCH, 0)]
        assert (first.outcome, first.n_indexed) == ("ok", STORE_BATCH)
        assert progress[-1]["done"] == progress[-1]["total"] == N_IMAGES

        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert (report.n_indexed, report.n_pending, report.n_qdrant, report.n_faiss) == (N_IMAGES, 0, N_IMAGES,
                                                                                         N_IMAGES)
        with ctx.Session() as s:  # each image catalogued once, and that one row is what both stores hold
            ids = set(repo.image_ids_with_status(s, "indexed"))
        assert len(ids) == N_IMAGES
        assert set(ctx.stores.qdrant.ids().tolist()) == set(ctx.stores.faiss.ids().tolist()) == ids
