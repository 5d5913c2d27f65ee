"""Plain helpers shared by the tests (no fixtures: those live in tests/conftest.py).

Import them from here: `from tests.helpers import write_dataset, wait_until`. tests/conftest.py re-exports the
older names so `from tests.helpers import write_dataset` keeps working.
"""

from tests.helpers.cli import run_cli
from tests.helpers.data import CLASS_STYLES, SHARED_CALTECH, make_image, sphere_blobs, write_dataset
from tests.helpers.stores import TEST_BACKBONE, copy_store
from tests.helpers.wait import wait_until

__all__ = ["CLASS_STYLES", "SHARED_CALTECH", "TEST_BACKBONE", "copy_store", "make_image", "run_cli", "sphere_blobs",
           "wait_until", "write_dataset"]
