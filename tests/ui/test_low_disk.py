"""Too little free space to grow the stores: commands that only read or remove still work; writers are refused.

As in tests/faults/test_disk_full.py, a nearly full disk is `shutil.disk_usage` reporting little free space.
"""

from __future__ import annotations

import shutil

import pytest

from imgsearch.search import stores as stores_mod
from tests.helpers import run_cli, write_dataset

MiB = 1 << 20
# Less than a populated Qdrant Edge store's holes plus the write margin (~195 MiB), more than a reader needs.
FREE = 100 * MiB


def nearly_full(monkeypatch, free: int = FREE) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=free))


def _labels(data_dir) -> dict[str, int]:
    """Catalogued images per label."""
    from collections import Counter

    from imgsearch.db.models import Image
    from imgsearch.ui.services.context import open_database
    from imgsearch.ui.services.settings import Settings

    with open_database(Settings(data_dir=data_dir))() as s:
        return dict(Counter(label for (label,) in s.query(Image.label)))


@pytest.mark.slow
def test_read_only_commands_and_removals_work_on_a_nearly_full_disk(tmp_path, capsys, monkeypatch):
    photos = write_dataset(tmp_path / "photos", per_class=2)
    more = write_dataset(tmp_path / "more", per_class=2, seed=1)
    data_dir = (tmp_path / "data").resolve()
    code, out = run_cli(["ingest", str(photos)], data_dir, capsys, monkeypatch)
    assert code == 0, out
    query = str(photos / "sky" / "sky_000.jpg")
    with monkeypatch.context() as m:
        nearly_full(m)
        for command in (["search", query], ["doctor"], ["export", "--query", query]):
            code, out = run_cli(command, data_dir, capsys, m)
            assert code == 0, (command, out)
        code, out = run_cli(["remove", str(photos / "apples")], data_dir, capsys, m)
        assert code == 0, out
        assert _labels(data_dir) == {"grass": 2, "sky": 2}  # the apples' rows went
        # Growing the stores is still refused before anything is written.
        code, out = run_cli(["ingest", str(more)], data_dir, capsys, m)
        assert code == 2 and "DiskFullError" in out and "Traceback" not in out, out
    code, out = run_cli(["doctor"], data_dir, capsys, monkeypatch)
    assert code == 0 and "Traceback" not in out, out


def test_a_write_through_stores_opened_for_reading_checks_the_room_first(ctx, tiny_dataset, monkeypatch):
    """A store opened with the reader's margin (say by `doctor`, which may then repair) still refuses a write
    that could fill its holes, instead of letting Qdrant Edge die of SIGBUS."""
    import numpy as np
    import pytest

    from imgsearch.models.files import DiskFullError
    from imgsearch.search.options import StoreOptions
    from imgsearch.search.stores import open_stores

    ctx.stores.close()
    s = ctx.settings
    stores = open_stores(s.data_dir, ctx.backbone.identity, StoreOptions(light=True))
    try:
        nearly_full(monkeypatch)
        with pytest.raises(DiskFullError):
            stores.upsert([1], np.ones((1, ctx.backbone.dim), np.float32), [{}])
        stores.delete([1])  # removing is allowed
    finally:
        stores.close()
    assert stores_mod.LIGHT_MARGIN_BYTES < FREE
