"""Two ingests of the same images at once: what one indexes while the other is running, the other skips.

The first test is deterministic, in one process: the second ingest runs to the end inside the first one's first
embedding call (through its own Context, so its own store handles, locks and feature cache, as another process
would). The others start two real `imgsearch ingest` processes at the same moment (both wait at a start line
after their imports), on the same new folder or on the same images under two paths; they run on either catalogue
database (tests/databases.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from imgsearch.db import repository as repo
from imgsearch.db.models import Image, ImagePath
from imgsearch.ingest import pipeline
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests import databases
from tests.helpers import TEST_BACKBONE, wait_until, write_dataset

N_IMAGES, STORE_BATCH = 18, 4  # five chunks


def _ingest(ctx: Context, folder, on_progress=None):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False, on_progress=on_progress)


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_batch_written_twice_at_once_leaves_every_payload_as_the_catalogue_says(tmp_path, monkeypatch):
    """Two ingests write the same images at once, each after annotating them (near-duplicate group, uniqueness)
    in the catalogue. Here the first one reads its rows, then the second runs to the end (in other chunks, so its
    uniqueness differs), then the first writes its now stale payloads: they must not be what stays."""
    photos = write_dataset(tmp_path / "photos")
    first = Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0, store_batch=STORE_BATCH)
    second = first.model_copy(update={"store_batch": N_IMAGES})  # one chunk: other batch neighbours
    real = pipeline.Stores.upsert
    done = []

    def upsert(self, ids, xb, payloads):
        if not done:  # the first ingest's first batch, rows read, nothing stored yet: the other one runs now
            done.append(True)
            with Context(second, role="second ingest") as other:
                assert _ingest(other, photos).n_indexed == N_IMAGES
                with other.Session() as s:  # what the second wrote is what the catalogue holds now
                    now = repo.images_by_ids(s, list(ids))
            assert any(now[i].uniqueness != p["uniqueness"] for i, p in zip(ids, payloads, strict=True))
        return real(self, ids, xb, payloads)

    monkeypatch.setattr(pipeline.Stores, "upsert", upsert)
    with Context(first, role="first ingest") as ctx:
        assert _ingest(ctx, photos).outcome == "ok"
        report = doctor.check(ctx.Session, ctx.stores)
        assert report.consistent, report.lines()
        assert report.n_qdrant == report.n_faiss == N_IMAGES


# `imgsearch ingest FOLDER` as the console entry point runs it, once the start line (a file) appears: the imports
# (torch, the stores) take seconds and vary, which would otherwise decide who goes first.
RACER = """
import sys, time
from pathlib import Path
import imgsearch.ingest.pipeline, imgsearch.ui.services.context
from imgsearch.ui.cli import run
ready, go, folder = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ready.touch()
while not go.exists():
    time.sleep(0.001)
sys.argv = ["imgsearch", "ingest", folder]
run()
"""


def _race(tmp_path: Path, data_dir: Path, folders: list[Path]) -> list[str]:
    """Start one ingest process per folder at the same moment; return their outputs once all succeeded."""
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE=TEST_BACKBONE,
               IMGSEARCH_NUM_WORKERS="0", IMGSEARCH_STORE_BATCH="2", **databases.database_env(data_dir))
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{k}" for k in range(len(folders))]
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(r), str(go), str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r, f in zip(ready, folders, strict=True)]
    try:
        def all_ready() -> bool:
            assert all(p.poll() is None for p in procs), "a racer exited before it was ready"
            return all(r.exists() for r in ready)

        wait_until(all_ready, 120, 0.01, "a racer did not start")
        go.touch()
        outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
        assert "error" not in out.lower(), out
    return outs


def _stored_once(data_dir: Path, backbone, n_images: int) -> Context:
    """Assert each image is catalogued once and in each store once, and doctor agrees; the open Context."""
    ctx = Context(Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0), role="test",
                  _backbone=backbone)
    report = doctor.check(ctx.Session, ctx.stores)
    assert report.consistent, report.lines()
    assert (report.n_indexed, report.n_pending, report.n_qdrant, report.n_faiss) == (n_images, 0, n_images, n_images)
    with ctx.Session() as s:
        assert repo.count_images(s) == n_images
        assert s.scalar(select(func.count(func.distinct(Image.content_hash)))) == n_images
        ids = set(repo.image_ids_with_status(s, "indexed"))
    assert set(ctx.stores.qdrant.ids().tolist()) == set(ctx.stores.faiss.ids().tolist()) == ids
    return ctx


@pytest.mark.slow
def test_two_ingest_processes_started_at_once_on_the_same_new_folder_both_succeed(tmp_path, backbone):
    photos = write_dataset(tmp_path / "photos")
    data_dir = tmp_path / "data"
    _race(tmp_path, data_dir, [photos, photos])
    with _stored_once(data_dir, backbone, N_IMAGES) as ctx, ctx.Session() as s:
        assert s.scalar(select(func.count()).select_from(ImagePath)) == 0  # one path each: no duplicates invented
        runs = repo.list_runs(s, kind="ingest")
    # Both finished. In lockstep both may embed and write the same batch (idempotent upserts, so it is stored
    # once); each skips only what the other had finished when it got there.
    assert sorted(r.outcome for r in runs) == ["ok", "ok"]


@pytest.mark.slow
def test_two_ingest_processes_on_the_same_images_under_two_paths_both_succeed(tmp_path, backbone):
    first = write_dataset(tmp_path / "photos")
    second = tmp_path / "copy"
    shutil.copytree(first, second)  # the same bytes under other paths: the same content hashes
    data_dir = tmp_path / "data"
    _race(tmp_path, data_dir, [first, second])
    with _stored_once(data_dir, backbone, N_IMAGES) as ctx, ctx.Session() as s:
        rows = list(s.scalars(select(Image)))
        extra = {p.image_id: p.path for p in s.scalars(select(ImagePath))}
    # Each content has one primary path and its twin as the extra path, whichever process catalogued it first.
    assert len(extra) == N_IMAGES
    every_path = sorted([r.path for r in rows] + list(extra.values()))
    assert every_path == sorted(str(p) for p in [*first.rglob("*.jpg"), *second.rglob("*.jpg")])
    for row in rows:
        assert Path(row.path).name == Path(extra[row.id]).name and row.label == Path(row.path).parent.name
