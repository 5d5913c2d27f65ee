"""Shared fixtures. Plain helpers (generated datasets, run_cli, copy_store, wait_until) are in tests/helpers."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from tests import databases

# The test collections are tiny, and UMAP's first call in each process compiles numba code for about 10 s (per
# xdist worker and per `imgsearch` subprocess): the tests draw maps with PCA only, unless a test turns UMAP on
# (tests/models/test_embedding_map.py, tests/ui/test_embedding_maps.py). Children inherit it.
os.environ.setdefault("IMGSEARCH_MAP_UMAP", "false")

# Re-exported: tests (and branches not yet merged) import these from here.
from tests.helpers import (  # noqa: F401
    CLASS_STYLES,
    SHARED_CALTECH,
    TEST_BACKBONE,
    copy_store,
    make_image,
    run_cli,
    sphere_blobs,
    write_dataset,
)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three classes x 6 JPEGs, 48x40 px."""
    return write_dataset(tmp_path / "photos")


@pytest.fixture(scope="session")
def backbone():
    """The tiny weightless backbone (192-d thumbnails); see TEST_BACKBONE in tests/helpers/stores.py."""
    from imgsearch.models.backbones import load_backbone

    return load_backbone(TEST_BACKBONE)


@pytest.fixture
def ctx(tmp_path, backbone):
    """A Context on an empty data dir in tmp_path, with the tiny backbone; closed after the test."""
    from imgsearch.ui.services.context import Context
    from imgsearch.ui.services.settings import Settings

    c = Context(Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0), role="test",
                _backbone=backbone)
    yield c
    c.close()


@pytest.fixture(scope="session")
def lite0():
    """Real EfficientNet-Lite0 weights, for tests about the network or real features. Such tests are `slow`."""
    from imgsearch.models.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """`imgsearch worker` run in this process (run_cli) installs its SIGTERM and SIGINT handlers, which only set a
    flag: left in place, a process forked by a later test ignores terminate() (a 30 s wait), and Ctrl-C no longer
    stops pytest."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        if signal.getsignal(sig) is not handler and threading.current_thread() is threading.main_thread():
            signal.signal(sig, handler)


@pytest.fixture(scope="session", autouse=True)
def catalogue_database():
    """The catalogue backend of this run (tests/databases.py): None on SQLite; on PostgreSQL a private cluster
    with a database per data dir, which Settings.db_url hands out in this process (database_env for children)."""
    if databases.backend() == "sqlite":
        yield None
        return
    bindir = databases.find_bindir()
    if bindir is None:
        reason = ("IMGSEARCH_TEST_DATABASE=postgresql, but PostgreSQL's initdb and pg_ctl were not found: install "
                  "Debian's postgresql package (or set IMGSEARCH_PG_BINDIR); this pass is skipped")
        if os.environ.get("IMGSEARCH_REQUIRE_POSTGRESQL") == "1":
            pytest.fail(f"IMGSEARCH_REQUIRE_POSTGRESQL=1 but {reason.split(': ')[0]}", pytrace=False)
        pytest.skip(reason)
    from imgsearch.ui.services.settings import Settings

    cluster = databases.Cluster(bindir).start()
    databases.ACTIVE = databases.Databases(cluster)
    try:
        with pytest.MonkeyPatch.context() as patch:
            # Exactly what setting IMGSEARCH_DATABASE_URL per data dir would do: an explicit URL still wins.
            patch.setattr(Settings, "db_url", property(
                lambda self: self.database_url or databases.ACTIVE.url_for(self.data_dir)))
            yield databases.ACTIVE
    finally:
        databases.ACTIVE = None
        cluster.stop()


@pytest.fixture(autouse=True)
def _drop_test_databases(request, catalogue_database):
    """On PostgreSQL, the databases of a test's own data dirs go with the test (a session's would fill the disk)."""
    yield
    tmp = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if catalogue_database is not None and tmp is not None:
        catalogue_database.drop_under(tmp)


def pytest_report_header(config):
    return f"catalogue database: {databases.backend()} (IMGSEARCH_TEST_DATABASE)"


# models/ and search/ may not import db/ (tests/test_architecture.py enforces it), so their tests cannot reach the
# catalogue: on PostgreSQL they would repeat the SQLite pass byte for byte, and the second pass is kept for what can
# differ (it keeps `make test` well inside CI's 30 minutes).
CATALOGUE_FREE = ("tests/models/", "tests/search/")
# Browser tests of how pages render run once (the SQLite pass): the pages read the catalogue through the same
# code on both databases, which the AppTests and the API tests run on PostgreSQL. The browser tests of jobs,
# reloads and session state, where the database's concurrency shows, run on both.
BROWSER_ON_BOTH = ("tests/browser/test_app_state.py",)


def pytest_collection_modifyitems(config, items):
    if databases.backend() != "sqlite":
        skip = pytest.mark.skip(reason="about the SQLite file itself (marked sqlite_only)")
        same = pytest.mark.skip(reason="models/ and search/ never reach the catalogue: run in the SQLite pass")
        rendering = pytest.mark.skip(reason="how a page renders: run in the SQLite pass (BROWSER_ON_BOTH runs here)")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)
            elif item.nodeid.startswith(CATALOGUE_FREE):
                item.add_marker(same)
            elif item.nodeid.startswith("tests/browser/") and not item.nodeid.startswith(BROWSER_ON_BOTH):
                item.add_marker(rendering)
    # Loading and running the real network takes seconds: a test asking for it must say so, or `make test-fast`
    # quietly stops being fast.
    unmarked = [item.nodeid for item in items if "lite0" in item.fixturenames and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError("tests using the lite0 fixture must be marked slow: " + ", ".join(unmarked))
