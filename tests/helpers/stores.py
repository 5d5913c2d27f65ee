"""The test backbone's name and copying a data dir (with its catalogue database on the PostgreSQL pass)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests import databases

# The backbone for everything that tests the machinery, not the network: weightless, deterministic, ~1 ms an
# image. It separates the generated classes of tests/helpers/data.py (same class: cosine > 0.99, other classes:
# < 0), so tests of clustering, classification and search on them still mean something. Subprocess tests set
# IMGSEARCH_BACKBONE.
TEST_BACKBONE = "tiny"


def copy_store(src: Path, dst: Path) -> None:
    """Copy a data dir or store folder keeping its holes: a Qdrant Edge store is ~160 MiB of sparse files that
    take ~0.3 MiB on disk, and shutil.copytree would write every byte (a fault-suite run filled 20 GB).
    On the PostgreSQL pass a data dir's database is copied with it, as its SQLite file would be."""
    subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)
    if databases.ACTIVE is not None:
        databases.ACTIVE.clone(src, dst)
