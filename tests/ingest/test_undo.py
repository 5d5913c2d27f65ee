"""The undo list (issue 21, item 5): a removal can be restored until the list is emptied, crash-safely."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from imgsearch.db import repository as repo
from imgsearch.db import undo_list
from imgsearch.ingest import undo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.removals import remove_paths
from imgsearch.search.stores import Stores
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import TEST_BACKBONE


def _settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0)


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def _apples(ctx):
    with ctx.Session() as s:
        rows = repo.images_by_ids(s, repo.image_ids_with_status(s, "indexed"))
    return sorted(i for i, im in rows.items() if im.label == "apples")


def _row(ctx, i):
    with ctx.Session() as s:
        im = repo.images_by_ids(s, [i])[i]
        return ({c.key: getattr(im, c.key) for c in im.__table__.columns},
                [p.path for p in im.extra_paths], [(t.tag, t.prob) for t in im.tags])


def _top(ctx, query):
    hit = ctx.stores.faiss.search(np.asarray(query, np.float32), 1)[0]
    return hit.id, round(float(hit.score), 5)


def _consistent(ctx):
    report = doctor.check(ctx.Session, ctx.stores, ctx.trained(), cache=ctx.cache)
    assert report.consistent, report.lines()


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the process runs."""


@pytest.mark.slow
def test_a_removal_goes_on_the_undo_list_and_a_restore_gives_the_same_image_back(tmp_path, backbone, tiny_dataset):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        apples = _apples(ctx)
        x = apples[0]
        with ctx.Session.begin() as s:
            repo.set_image_tags(s, {x: [("Granny Smith", 0.75), ("orange", 0.5)]})
            repo.add_extra_path(s, repo.images_by_ids(s, [x])[x], str(tiny_dataset / "apples" / "copy.jpg"))
        before = _row(ctx, x)
        query = ctx.stores.faiss.get_vectors([x])[0]
        assert _top(ctx, query) == (x, 1.0)

        assert remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])["removed"] == 6
        with ctx.Session() as s:
            assert sorted(e.image_id for e in undo_list.listed(s)) == apples
            assert not repo.images_by_ids(s, apples)
        assert not set(apples) & (set(ctx.stores.qdrant.ids().tolist()) | set(ctx.stores.faiss.ids().tolist()))
        assert _top(ctx, query)[0] != x

        result = undo.restore(ctx.Session, ctx.stores, [x])
        assert result.restored == [x] and not result.refused and not result.not_in_stores
        after = _row(ctx, x)
        # alone again, it is in no near-duplicate group: the group and uniqueness are computed as an ingest does
        assert after[0]["duplicate_group"] is None
        assert {k: (v, after[0][k]) for k, v in before[0].items()
                if after[0][k] != v and k not in ("duplicate_group", "uniqueness")} == {}
        assert after[1:] == before[1:]
        assert _top(ctx, query) == (x, 1.0)
        assert ctx.stores.qdrant.get_payloads([x])[0]["path"] == before[0]["path"]
        with ctx.Session() as s:
            assert sorted(e.image_id for e in undo_list.listed(s)) == apples[1:]
            assert not repo.removed_ids(s, [x])  # another backbone's stores will not delete it again
        _consistent(ctx)
        # the whole group back: the same rows as before, near-duplicate group included (uniqueness is measured
        # as an ingest measures it, against what was stored when each image came back)
        assert undo.restore(ctx.Session, ctx.stores, apples[1:]).restored == apples[1:]
        after = _row(ctx, x)
        assert {k: (v, after[0][k]) for k, v in before[0].items() if after[0][k] != v and k != "uniqueness"} == {}
        _consistent(ctx)
        again = undo.restore(ctx.Session, ctx.stores, [x])
        assert again.refused == {x: "it is not on the undo list"}


@pytest.mark.slow
def test_emptying_forgets_for_good_and_the_journal_still_applies(tmp_path, backbone, tiny_dataset):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        apples = _apples(ctx)
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])
        assert undo.empty(ctx.Session, tmp_path / "data" / "removed").forgotten == 6
        with ctx.Session() as s:
            assert undo_list.listed(s) == []
            assert repo.removed_ids(s, apples) == set(apples)
            assert repo.outstanding_removals(s, "never-applied")[0] == apples
        assert undo.restore(ctx.Session, ctx.stores, apples[:1]).refused == {apples[0]: "it is not on the undo list"}
        _consistent(ctx)


@pytest.mark.slow
def test_emptying_older_than_keeps_recent_removals(tmp_path, backbone, tiny_dataset):
    from datetime import timedelta

    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])
        assert undo.empty(ctx.Session, tmp_path / "data" / "removed", older_than=timedelta(days=1)).forgotten == 0
        with ctx.Session() as s:
            assert len(undo_list.listed(s)) == 6


@pytest.mark.slow
def test_a_restore_killed_before_the_store_writes_is_finished_by_the_next_open(tmp_path, backbone, tiny_dataset,
                                                                                monkeypatch):
    settings = _settings(tmp_path)
    with Context(settings, _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        apples = _apples(ctx)
        query = ctx.stores.faiss.get_vectors(apples[:1])[0]
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])

        def die(*_a, **_kw):
            raise _Killed

        with monkeypatch.context() as m:
            m.setattr(Stores, "upsert", die)
            with pytest.raises(_Killed):
                undo.restore(ctx.Session, ctx.stores, apples[:2])
        with ctx.Session() as s:
            assert sorted(repo.images_by_ids(s, apples)) == apples[:2]  # the catalogue step committed
            assert [e.image_id for e in undo_list.restoring(s)] == apples[:2]
        assert not set(apples) & set(ctx.stores.qdrant.ids().tolist())
    with Context(settings, _backbone=backbone) as ctx:
        assert set(apples[:2]) <= set(ctx.stores.qdrant.ids().tolist()) & set(ctx.stores.faiss.ids().tolist())
        assert _top(ctx, query) == (apples[0], 1.0)
        with ctx.Session() as s:
            assert undo_list.restoring(s) == []
            assert sorted(e.image_id for e in undo_list.listed(s)) == apples[2:]
            assert repo.image_ids_with_status(s, "pending") == []
        _consistent(ctx)


@pytest.mark.slow
def test_content_catalogued_again_since_is_not_restored_twice(tmp_path, backbone, tiny_dataset):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        x = _apples(ctx)[0]
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])
        _ingest(ctx, tiny_dataset)  # the files are still there: ingested again, under new ids
        refused = undo.restore(ctx.Session, ctx.stores, [x]).refused
        assert "catalogued again since" in refused[x]
        _consistent(ctx)


@pytest.mark.slow
def test_moved_files_come_back_on_restore_and_go_for_good_when_emptied(tmp_path, backbone, tiny_dataset):
    files_dir = tmp_path / "data" / "removed"
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        a, b = _apples(ctx)[:2]
        with ctx.Session() as s:
            rows = repo.images_by_ids(s, [a, b])
            path_a, path_b = rows[a].path, rows[b].path
        content = open(path_a, "rb").read()
        result = remove_paths(ctx.Session, ctx.stores, [path_a, path_b], files_dir=files_dir)
        assert result["files_moved"] == 2
        assert not (tiny_dataset / path_a).exists() and len(list(files_dir.rglob("*.jpg"))) == 2
        # something else now at the original path: refused, nothing moved
        shutil.copy(tiny_dataset / "sky" / sorted((tiny_dataset / "sky").iterdir())[0].name, path_a)
        assert "something now occupies" in undo.restore(ctx.Session, ctx.stores, [a]).refused[a]
        (tiny_dataset / path_a).unlink()
        assert undo.restore(ctx.Session, ctx.stores, [a]).files_back == 1
        assert open(path_a, "rb").read() == content
        emptied = undo.empty(ctx.Session, files_dir)
        assert emptied.forgotten == 1 and emptied.files_deleted == 1
        assert not list(files_dir.rglob("*.jpg")) and not (tiny_dataset / path_b).exists()
        _consistent(ctx)


@pytest.mark.slow
def test_another_backbones_stores_get_a_restored_image_back_with_their_repair(tmp_path, backbone, tiny_dataset):
    from tests.ingest.test_removals import OtherTiny

    settings, other = _settings(tmp_path), OtherTiny()
    with Context(settings, _backbone=other) as ctx:
        _ingest(ctx, tiny_dataset)
    with Context(settings, _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        apples = _apples(ctx)
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])
    with Context(settings, _backbone=other) as ctx:
        assert not set(apples) & set(ctx.stores.qdrant.ids().tolist())  # the removal reached it
    with Context(settings, _backbone=backbone) as ctx:
        assert undo.restore(ctx.Session, ctx.stores, apples).restored == apples
        _consistent(ctx)
    with Context(settings, _backbone=other) as ctx:
        report = doctor.check(ctx.Session, ctx.stores, ctx.trained(), cache=ctx.cache)
        assert report.missing_in_qdrant == apples and any("--repair" in line for line in report.lines())
        doctor.repair(ctx.Session, ctx.stores, ctx.cache, report, ctx.trained(), backbone=ctx.backbone,
                      models_dir=ctx.settings.models_dir)
        assert set(apples) <= set(ctx.stores.qdrant.ids().tolist()) & set(ctx.stores.faiss.ids().tolist())
        _consistent(ctx)
