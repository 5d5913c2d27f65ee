"""Shared fixtures: tiny labelled image folders generated with a fixed seed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import databases

SHARED_CALTECH = Path(__file__).resolve().parents[2] / "shared" / "data" / "caltech101" / "101_ObjectCategories"

# Each class gets its own base colour and stripe direction so even a small CNN separates them.
CLASS_STYLES = {
    "apples": ((200, 30, 30), "h"),
    "grass": ((40, 170, 40), "v"),
    "sky": ((40, 80, 210), "d"),
}


def make_image(rng: np.random.Generator, colour, stripes: str, size=(48, 40)) -> Image.Image:
    w, h = size
    base = np.array(colour, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    phase = {"h": yy, "v": xx, "d": xx + yy}[stripes]
    pattern = ((phase // 4) % 2)[..., None] * 60.0
    noise = rng.normal(0, 12, size=(h, w, 3))
    arr = np.clip(base * 0.8 + pattern + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def write_dataset(root: Path, per_class: int = 6, seed: int = 0, classes=CLASS_STYLES) -> Path:
    rng = np.random.default_rng(seed)
    for name, (colour, stripes) in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(rng, colour, stripes).save(folder / f"{name}_{i:03d}.jpg", quality=92)
    return root


def sphere_blobs(seed: int = 0, k: int = 4, per: int = 25, d: int = 16, sigma: float = 0.03, shuffle: bool = False):
    """k tight blobs around orthogonal unit vectors (pairwise distance sqrt(2)), rows L2-normalised: (X, y)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array([f"c{i}" for i in range(k)]), per)
    X = np.eye(d, dtype=np.float32)[np.repeat(np.arange(k), per)]
    X += sigma * rng.standard_normal(X.shape).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    if shuffle:
        perm = rng.permutation(len(y))
        return X[perm], y[perm]
    return X, y


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three classes x 6 JPEGs, 48x40 px."""
    return write_dataset(tmp_path / "photos")


# The backbone for everything that tests the machinery, not the network: weightless, deterministic, ~1 ms an
# image. It separates the generated classes above (same class: cosine > 0.99, other classes: < 0), so tests of
# clustering, classification and search on them still mean something. Subprocess tests set IMGSEARCH_BACKBONE.
TEST_BACKBONE = "tiny"


@pytest.fixture(scope="session")
def backbone():
    """The tiny weightless backbone (192-d thumbnails); see TEST_BACKBONE."""
    from imgsearch.models.backbones import load_backbone

    return load_backbone(TEST_BACKBONE)


@pytest.fixture
def ctx(tmp_path, backbone):
    """A Context on an empty data dir in tmp_path, with the tiny backbone; closed after the test."""
    from imgsearch.ui.context import Context
    from imgsearch.ui.settings import Settings

    c = Context(Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0), role="test",
                _backbone=backbone)
    yield c
    c.close()


def copy_store(src: Path, dst: Path) -> None:
    """Copy a data dir or store folder keeping its holes: a Qdrant Edge store is ~160 MiB of sparse files that
    take ~0.3 MiB on disk, and shutil.copytree would write every byte (a fault-suite run filled 20 GB).
    On the PostgreSQL pass a data dir's database is copied with it, as its SQLite file would be."""
    import subprocess

    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)
    if databases.ACTIVE is not None:
        databases.ACTIVE.clone(src, dst)


def run_cli(args: list[str], data_dir: Path, capsys, monkeypatch, **env: str) -> tuple[int, str]:
    """`imgsearch ARGS --data-dir DATA_DIR` through the console entry point, `run`, which turns known errors
    into one line and exit code 2 (typer's CliRunner invokes the app without it). Returns (exit code, output
    with whitespace collapsed). A stack trace fails the calling test: the exception is raised here."""
    import sys

    from imgsearch.ui.cli import run

    monkeypatch.setattr(sys, "argv", ["imgsearch", *args, "--data-dir", str(data_dir)])
    for name, value in {"IMGSEARCH_BACKBONE": TEST_BACKBONE, "IMGSEARCH_NUM_WORKERS": "0", **env}.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    code = 0
    try:
        run()
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return int(code), " ".join((out.out + out.err).split())


@pytest.fixture(scope="session")
def lite0():
    """Real EfficientNet-Lite0 weights, for tests about the network or real features. Such tests are `slow`."""
    from imgsearch.models.backbones import load_backbone

    return load_backbone("efficientnet_lite0")


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
    from imgsearch.ui.settings import Settings

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


def pytest_collection_modifyitems(config, items):
    if databases.backend() != "sqlite":
        skip = pytest.mark.skip(reason="about the SQLite file itself (marked sqlite_only)")
        same = pytest.mark.skip(reason="models/ and search/ never reach the catalogue: run in the SQLite pass")
        for item in items:
            if item.get_closest_marker("sqlite_only"):
                item.add_marker(skip)
            elif item.nodeid.startswith(CATALOGUE_FREE):
                item.add_marker(same)
    # Loading and running the real network takes seconds: a test asking for it must say so, or `make test-fast`
    # quietly stops being fast.
    unmarked = [item.nodeid for item in items if "lite0" in item.fixturenames and not item.get_closest_marker("slow")]
    if unmarked:
        raise pytest.UsageError("tests using the lite0 fixture must be marked slow: " + ", ".join(unmarked))
