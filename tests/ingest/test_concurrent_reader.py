"""Embedded mode: the app-side reader keeps searching while an ingest process writes; both finish."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.search.index import Filter
from imgsearch.search.service import SearchService
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests import databases
from tests.helpers import TEST_BACKBONE, write_dataset

pytestmark = pytest.mark.slow


def test_reader_sees_new_images_while_ingest_runs(tmp_path, backbone):
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir, backbone=TEST_BACKBONE, num_workers=0, store_lock_timeout_s=20)
    app_ctx = Context(settings, role="app", _backbone=backbone)
    first = write_dataset(tmp_path / "first", per_class=2, seed=1)
    ingest_folder(first, app_ctx.Session, backbone, app_ctx.cache, app_ctx.stores, None, app_ctx.ingest_options(),
                  progress=False)
    service = SearchService(backbone, app_ctx.stores.faiss, app_ctx.stores.qdrant)
    xq = app_ctx.stores.faiss.get_vectors(app_ctx.stores.faiss.ids()[:1])[0]

    # 24 images in 12 journalled batches: the tiny backbone is quick, so the batches are many and the polling tight.
    second = write_dataset(tmp_path / "second", per_class=8, seed=2)
    env = dict(os.environ, IMGSEARCH_DATA_DIR=str(data_dir), IMGSEARCH_BACKBONE=TEST_BACKBONE,
               IMGSEARCH_STORE_BATCH="2", IMGSEARCH_NUM_WORKERS="0", **databases.database_env(data_dir))
    proc = subprocess.Popen([sys.executable, "-m", "imgsearch.ui.cli", "ingest", str(second)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen_faiss, seen_qdrant, queries = set(), set(), 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = proc.poll() is not None
        seen_faiss.add(len(service.neighbours(xq, k=100).results))
        seen_qdrant.add(len(service.filtered(xq, 100, Filter(labels=["apples", "grass", "sky"])).results))
        queries += 1
        if done:
            break
        time.sleep(0.01)
    out = proc.communicate()[0].decode()
    assert proc.returncode == 0, out
    assert queries > 3
    # The reader saw the collection grow (not only the before and after states) and ends with all 30 images.
    assert min(seen_faiss) == 6 and max(seen_faiss) == 30 and max(seen_qdrant) == 30
    assert len(seen_faiss) > 2, sorted(seen_faiss)
    report = doctor.check(app_ctx.Session, app_ctx.stores)
    assert report.consistent and report.n_indexed == 30
    np.testing.assert_equal(sorted(app_ctx.stores.faiss.ids()), sorted(app_ctx.stores.qdrant.ids()))
    app_ctx.close()
