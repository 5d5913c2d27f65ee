"""`imgsearch duplicates`, `suspects` and `relabel` through the console entry point, on the tiny backbone."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from tests.helpers import run_cli, write_dataset


@pytest.fixture
def ingested(ctx, tmp_path):
    photos = write_dataset(tmp_path / "photos", per_class=4, seed=0)
    ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                  progress=False)
    ctx.close()  # the command opens the embedded stores itself
    return ctx


@pytest.mark.slow
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


@pytest.mark.slow
def test_duplicates_table_and_a_threshold_nothing_reaches(ingested, capsys, monkeypatch):
    code, out = run_cli(["duplicates", "--threshold", "0.9", "--limit", "1"], ingested.settings.data_dir, capsys,
                        monkeypatch)
    assert code == 0 and "3 near-duplicate groups (12 images) among 12" in out and "2 more groups" in out
    code, out = run_cli(["duplicates", "--threshold", "1.0", "--json"], ingested.settings.data_dir, capsys,
                        monkeypatch)
    assert code == 0 and (json.loads(out)["n_groups"], json.loads(out)["n_in_groups"]) == (0, 0)
    code, out = run_cli(["duplicates", "--threshold", "1.5"], ingested.settings.data_dir, capsys, monkeypatch)
    assert code == 2 and "less than or equal to 1" in out


def test_duplicates_threshold_setting_is_the_default(ingested, capsys, monkeypatch):
    code, out = run_cli(["duplicates", "--json"], ingested.settings.data_dir, capsys, monkeypatch,
                        IMGSEARCH_DUPLICATE_THRESHOLD="0.9")
    assert code == 0 and json.loads(out)["threshold"] == 0.9 and json.loads(out)["n_groups"] == 3
    code, out = run_cli(["duplicates"], ingested.settings.data_dir, capsys, monkeypatch,
                        IMGSEARCH_DUPLICATE_THRESHOLD="1.2")
    assert code == 2 and "duplicate_threshold" in out


@pytest.mark.slow
def test_duplicates_on_an_empty_collection_says_so(tmp_path, capsys, monkeypatch):
    code, out = run_cli(["duplicates"], tmp_path / "empty", capsys, monkeypatch)
    assert code == 2 and "the collection is empty" in out


def _mislabel(ctx, image_id: int, label: str) -> None:
    with ctx.Session.begin() as s:
        repo.update_images(s, [{"id": image_id, "label": label}])


@pytest.fixture
def labelled(ctx, tmp_path):
    """3 classes x 15 generated images, one apple filed under grass."""
    photos = write_dataset(tmp_path / "photos", per_class=15, seed=0)
    ingest_folder(photos, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, None, ctx.ingest_options(),
                  progress=False)
    with ctx.Session() as s:
        apple = min(i for i, im in repo.images_by_ids(s, range(1, 46)).items() if im.label == "apples")
    _mislabel(ctx, apple, "grass")
    ctx.close()
    return ctx, apple


@pytest.mark.slow
def test_suspects_finds_the_mislabelled_image_and_relabel_fixes_it(labelled, capsys, monkeypatch):
    ctx, apple = labelled
    data_dir = ctx.settings.data_dir
    code, out = run_cli(["suspects", "--top", "3", "--json"], data_dir, capsys, monkeypatch)
    assert code == 0, out
    report = json.loads(out)
    assert report["n_scored"] == 45
    first = report["suspects"][0]
    assert (first["id"], first["label"], first["suggested"]) == (apple, "grass", "apples")
    assert first["label_score"] < 0.5 and first["top"][0][0] == "apples" and len(first["top"]) == 3
    with ctx.Session() as s:
        row = repo.images_by_ids(s, [apple])[apple]
    assert row.suggested_label == "apples" and row.label_score == pytest.approx(first["label_score"], abs=1e-6)

    code, out = run_cli(["suspects", "--top", "2"], data_dir, capsys, monkeypatch)
    assert code == 0 and "45 labelled images scored" in out and "suspects" in out.split("scored", 1)[1]
    assert f"│ {apple} │ grass │ apples │" in out

    code, out = run_cli(["relabel", "apples", str(apple)], data_dir, capsys, monkeypatch)
    assert code == 0, out  # what it changed is read back from the catalogue and the stores
    with ctx.Session() as s:
        row = repo.images_by_ids(s, [apple])[apple]
    assert (row.label, row.label_score, row.suggested_label) == ("apples", None, None)
    for _, index in ctx.stores.all:
        assert index.get_payloads([apple])[0]["label"] == "apples"
    from imgsearch.ui.services.training import labelled_features

    ids, _, y = labelled_features(ctx.Session, ctx.cache)  # what the next `train` fits on
    assert y[list(ids).index(apple)] == "apples"
    ctx.close()


def test_relabel_refuses_unknown_ids_and_changes_nothing(labelled, capsys, monkeypatch):
    ctx, apple = labelled
    code, out = run_cli(["relabel", "sky", str(apple), "9999"], ctx.settings.data_dir, capsys, monkeypatch)
    assert code == 2 and "no image with id 9999" in out
    with ctx.Session() as s:
        assert repo.images_by_ids(s, [apple])[apple].label == "grass"
    code, out = run_cli(["relabel", " ", str(apple)], ctx.settings.data_dir, capsys, monkeypatch)
    assert code == 2 and "the new label is empty" in out


def test_suspects_needs_two_classes_with_enough_images(ingested, capsys, monkeypatch):
    code, out = run_cli(["suspects"], ingested.settings.data_dir, capsys, monkeypatch)  # 4 images a class
    assert code == 2 and "need at least two classes with 6+ labelled images" in out


@pytest.mark.slow
def test_search_collapses_near_duplicates_and_ranks_plain_or_class_aware(ingested, tmp_path, capsys, monkeypatch):
    from tests.helpers import make_image

    query = tmp_path / "query.png"
    make_image(np.random.default_rng(7), (200, 30, 30), "h").save(query)  # an unseen apple
    data_dir = ingested.settings.data_dir
    code, out = run_cli(["search", str(query), "--k", "6"], data_dir, capsys, monkeypatch)
    assert code == 0 and "FAISS neighbours for query.png" in out  # no models yet: plain ranking
    assert "│ 6 │" in out
    code, out = run_cli(["search", str(query), "--k", "6", "--collapse-duplicates"], data_dir, capsys, monkeypatch)
    # The tiny backbone makes each generated class one near-duplicate group: one image per class remains.
    assert code == 0 and "near-duplicates collapsed" in out
    assert "│ 3 │" in out and "│ 4 │" not in out
    assert "│ apples_0" in out and "│ grass_0" in out and "│ sky_0" in out


def test_collapse_keeps_the_best_of_each_group_and_every_ungrouped_result():
    from imgsearch.search.service import SearchResult, collapse_duplicates

    def r(i, g):
        return SearchResult(i, 1.0 - i / 10, f"/p/{i}.jpg", f"{i}.jpg", None, None, None, None, None, None, g)

    results = [r(1, 5), r(2, None), r(3, 5), r(4, 9), r(5, None), r(6, 9)]
    assert [x.id for x in collapse_duplicates(results)] == [1, 2, 4, 5]
