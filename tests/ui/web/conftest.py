"""A tiny trained collection (3 classes x 6 generated images, the tiny backbone), built once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import TEST_BACKBONE, copy_store, wait_until, write_dataset

UI = Path(__file__).resolve().parents[3] / "ui" / "web"
TIMEOUT = 60  # seconds per AppTest run: the first one imports torch and loads the backbone


@dataclass(frozen=True)
class Collection:
    root: Path
    photos: Path
    data_dir: Path
    backbone: str = TEST_BACKBONE  # the name the app is started with: the one the collection was built with

    def env(self) -> dict[str, str]:
        return {"IMGSEARCH_DATA_DIR": str(self.data_dir), "IMGSEARCH_BACKBONE": self.backbone,
                "IMGSEARCH_NUM_WORKERS": "0", "IMGSEARCH_DATASET_DIR": str(self.photos)}


def build_collection(root: Path, backbone, train_models: bool = True, classes=None) -> Collection:
    """`classes`: folder name -> (colour, stripes) of tests.helpers.write_dataset (its three by default)."""
    from imgsearch.db import repository as repo
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ingest.predictions import refresh_payloads
    from imgsearch.ui.services import embedding_maps
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings
    from imgsearch.ui.services.training import train

    photos = write_dataset(root / "photos", per_class=6, seed=0, **({"classes": classes} if classes else {}))
    settings = Settings(data_dir=root / "data", backbone=backbone.name, num_workers=0, dataset_dir=photos)
    ctx = Context(settings, _backbone=backbone)
    try:
        ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(True),
                      progress=False)
        if train_models:
            b = ctx.backbone
            with ctx.Session.begin() as s:
                run_id = repo.start_run(s, "train", b.name, b.dim, b.weights_sha256, dataset_path=str(photos)).id
            train(ctx.Session, run_id, b, ctx.cache, settings.models_dir, k=3)  # records the run 'ok': current
            refresh_payloads(ctx.Session, ctx.stores, ctx.cache, ctx.trained())
            embedding_maps.record(ctx, run_id)  # as run_training does: the Clusters page's map
    finally:
        ctx.close()  # release the embedded stores: the app opens them itself
    return Collection(root, photos, settings.data_dir, backbone.name)


def build_photo_collection(root: Path, backbone) -> Collection:
    """tests.helpers.photos.write_photo_library (six JPEGs with EXIF dates, cameras and places) ingested with the
    tiny backbone, labels from their folders; not trained."""
    from imgsearch.ingest.pipeline import ingest_folder
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings
    from tests.helpers.photos import write_photo_library

    photos = root / "photos"
    write_photo_library(photos)
    settings = Settings(data_dir=root / "data", backbone=backbone.name, num_workers=0, dataset_dir=photos)
    ctx = Context(settings, _backbone=backbone)
    try:
        report = ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None,
                               ctx.ingest_options(True), progress=False)
        assert report.n_scanned == 6 and not report.skipped, report
    finally:
        ctx.close()
    return Collection(root, photos, settings.data_dir, backbone.name)


def copy_collection(collection: Collection, root: Path) -> Collection:
    """A private copy of a built collection's data dir (catalogue, stores, models) in `root`: a copy takes a
    fraction of the seconds an ingest and a training run take. The photos are not copied (the catalogue records
    their paths): the copy shares them with `collection`, so a test of the copy must not change them."""
    root.mkdir(parents=True, exist_ok=True)
    copy_store(collection.data_dir, root / "data")
    return Collection(root, collection.photos, root / "data", collection.backbone)


@pytest.fixture
def own_collection(tmp_path, collection, monkeypatch) -> Collection:
    """A collection these tests may change (remove, relabel): the session-wide one is shared."""
    col = copy_collection(collection, tmp_path)
    for name, value in col.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    return col


@pytest.fixture
def app_env(collection, monkeypatch) -> Collection:
    for name, value in collection.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("IMGSEARCH_ALLOWED_ROOTS", raising=False)
    return collection


@pytest.fixture
def photo_env(photo_collection, monkeypatch) -> Collection:
    """The app's environment on the photo library (dates, cameras, places): tests.helpers.photos."""
    for name, value in photo_collection.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("IMGSEARCH_ALLOWED_ROOTS", raising=False)
    return photo_collection


@pytest.fixture
def fresh_env(tmp_path, monkeypatch) -> Collection:
    """An empty data dir and a small dataset beside it (nothing ingested)."""
    photos = write_dataset(tmp_path / "photos", per_class=4, seed=1)
    fresh = Collection(tmp_path, photos, tmp_path / "data")
    for name, value in fresh.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("IMGSEARCH_QDRANT_URL", raising=False)
    monkeypatch.delenv("IMGSEARCH_ALLOWED_ROOTS", raising=False)
    return fresh


def page(name: str):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(UI / "screens" / f"{name}_page.py"), default_timeout=TIMEOUT)


def wait_for_jobs(timeout: float = 60.0) -> list:
    """Wait until no job of the current settings' queue is queued or running; the jobs, newest first."""
    from imgsearch.db import jobs
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    Session = open_database(Settings())
    seen: list = []

    def all_final() -> bool:
        with Session() as s:
            seen[:] = jobs.list_jobs(s)
        return not any(j.status in ("queued", "running") for j in seen)

    wait_until(all_final, timeout, 0.1, lambda: f"jobs still active: {seen}")
    return seen
