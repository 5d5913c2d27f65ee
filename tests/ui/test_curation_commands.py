"""`imgsearch duplicates`, `suspects` and `relabel` through the console entry point, on the tiny backbone."""

from __future__ import annotations

import json

import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from tests.conftest import run_cli, write_dataset


@pytest.fixture
def ingested(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=4, seed=0)
    ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                  progress=False)
    ctx.close()  # the command opens the embedded stores itself
    return ctx


def test_duplicates_json_lists_groups_and_records_them(ingested, capsys, monkeypatch):
    code, _ = run_cli(["duplicates", "--threshold", "0.9", "--json"], ingested.settings.data_dir, capsys, monkeypatch)
    assert code == 0
    # run_cli collapses whitespace; JSON survives that.
    code, out = run_cli(["duplicates", "--threshold", "0.9", "--json"], ingested.settings.data_dir, capsys,
                        monkeypatch)
    report = json.loads(out)
    assert (report["n_images"], report["n_groups"], report["n_in_groups"]) == (12, 3, 12)
    assert report["n_updated"] == 0  # the second run found the groups already recorded
    for g in report["groups"]:
        assert g["size"] == 4 and len({m["label"] for m in g["members"]}) == 1
        assert g["members"][0]["id"] == g["group"] and g["members"][0]["similarity"] == pytest.approx(1.0)
        assert all(m["width"] == 48 and m["size_bytes"] > 0 and m["path"].endswith(".jpg") for m in g["members"])
    with ingested.Session() as s:
        rows = repo.images_by_ids(s, range(1, 13))
    assert {im.duplicate_group for im in rows.values()} == {g["group"] for g in report["groups"]}


def test_duplicates_table_and_a_threshold_nothing_reaches(ingested, capsys, monkeypatch):
    code, out = run_cli(["duplicates", "--threshold", "0.9", "--limit", "1"], ingested.settings.data_dir, capsys,
                        monkeypatch)
    assert code == 0 and "3 near-duplicate groups (12 images) among 12" in out and "2 more groups" in out
    code, out = run_cli(["duplicates", "--threshold", "1.0"], ingested.settings.data_dir, capsys, monkeypatch)
    assert code == 0 and "0 near-duplicate groups (0 images)" in out
    code, out = run_cli(["duplicates", "--threshold", "1.5"], ingested.settings.data_dir, capsys, monkeypatch)
    assert code == 2 and "less than or equal to 1" in out


def test_duplicates_on_an_empty_collection_says_so(tmp_path, capsys, monkeypatch):
    code, out = run_cli(["duplicates"], tmp_path / "empty", capsys, monkeypatch)
    assert code == 2 and "the collection is empty" in out
