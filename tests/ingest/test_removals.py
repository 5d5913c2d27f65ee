"""Removals are exact, journalled and reach every backbone's stores (issue 20, items 1, 2 and 5)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from imgsearch.db import repository as repo
from imgsearch.ingest.pipeline import ingest_folder
from imgsearch.ingest.removals import remove_paths
from imgsearch.models.backbones import TinyBackbone
from imgsearch.ui.services import doctor
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import CLASS_STYLES, TEST_BACKBONE, write_dataset


class OtherTiny(TinyBackbone):
    """A second weightless backbone with its own identity (a data directory can hold several)."""

    name = "tiny"
    weights_sha256 = hashlib.sha256(b"another tiny backbone").hexdigest()


def _settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE, num_workers=0)


def _ingest(ctx, folder):
    return ingest_folder(folder, ctx.Session, ctx.backbone, ctx.cache, ctx.stores, ctx.trained(),
                         ctx.ingest_options(), progress=False)


def _state(ctx):
    with ctx.Session() as s:
        catalogue = sorted(repo.image_ids_with_status(s, "indexed") + repo.image_ids_with_status(s, "pending"))
    return catalogue, sorted(ctx.stores.qdrant.ids().tolist()), sorted(ctx.stores.faiss.ids().tolist())


def _check(ctx):
    return doctor.check(ctx.Session, ctx.stores, ctx.trained(), cache=ctx.cache)


def _repair(ctx, report):
    return doctor.repair(ctx.Session, ctx.stores, ctx.cache, report, ctx.trained(), backbone=ctx.backbone,
                         models_dir=ctx.settings.models_dir)


@pytest.mark.slow
def test_removing_a_folder_leaves_its_sibling_that_differs_only_in_case(tmp_path, backbone):
    root = tmp_path / "cs"
    write_dataset(root, per_class=3, seed=1, classes={"Okapi": CLASS_STYLES["apples"]})
    write_dataset(root, per_class=3, seed=2, classes={"okapi": CLASS_STYLES["grass"]})
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, root)
        result = remove_paths(ctx.Session, ctx.stores, [root / "Okapi"])
        assert result["removed"] == 3
        with ctx.Session() as s:
            left = repo.images_by_ids(s, _state(ctx)[0]).values()
        assert sorted(im.label for im in left) == ["okapi"] * 3
        assert len(_state(ctx)[1]) == len(_state(ctx)[2]) == 3
        # a mistyped case removes nothing
        assert remove_paths(ctx.Session, ctx.stores, [root / "OKAPI"])["removed"] == 0


@pytest.mark.slow
def test_a_path_with_dot_dot_is_normalised_before_it_is_matched(tmp_path, backbone, tiny_dataset):
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        assert remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples" / ".."])["removed"] == 18
        assert _state(ctx) == ([], [], [])


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the process runs (the crash-point harness does it for real)."""


def _remove_killed_before_store_deletes(ctx, path, monkeypatch):
    def die(*_a, **_kw):
        raise _Killed

    with monkeypatch.context() as m:
        m.setattr(type(ctx.stores.qdrant), "delete", die)
        with pytest.raises(_Killed):
            remove_paths(ctx.Session, ctx.stores, [path])


@pytest.mark.slow
def test_a_removal_killed_before_the_store_deletes_is_finished_not_undone(tmp_path, backbone, tiny_dataset,
                                                                           monkeypatch):
    settings = _settings(tmp_path)
    with Context(settings, _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        with ctx.Session() as s:
            doomed = [i for i, im in repo.images_by_ids(s, _state(ctx)[0]).items() if im.label == "sky"]
        _remove_killed_before_store_deletes(ctx, tiny_dataset / "sky", monkeypatch)
        assert set(doomed) <= set(_state(ctx)[1])  # the crash left the points behind
        report = _check(ctx)
        assert report.removed_still_stored == sorted(doomed) and not report.orphans_in_qdrant
        assert not report.consistent
        assert any("deletes them, finishing the removal" in line for line in report.lines())
        _repair(ctx, report)
        catalogue, in_qdrant, in_faiss = _state(ctx)
        assert not set(doomed) & (set(catalogue) | set(in_qdrant) | set(in_faiss))
        assert len(catalogue) == 12 and _check(ctx).consistent
    # Without a repair, the next command that opens the stores finishes it too.
    with Context(settings, _backbone=backbone) as ctx:
        with ctx.Session() as s:
            sky2 = [i for i, im in repo.images_by_ids(s, _state(ctx)[0]).items() if im.label == "grass"]
        _remove_killed_before_store_deletes(ctx, tiny_dataset / "grass", monkeypatch)
    with Context(settings, _backbone=backbone) as ctx:
        assert not set(sky2) & set(ctx.stores.qdrant.ids().tolist())
        assert not set(sky2) & set(ctx.stores.faiss.ids().tolist())
        assert _check(ctx).consistent


@pytest.mark.slow
def test_a_removal_reaches_the_other_backbones_stores_and_its_repair_does_not_undo_it(tmp_path, backbone,
                                                                                      tiny_dataset):
    settings = _settings(tmp_path)
    other = OtherTiny()
    with Context(settings, _backbone=other) as ctx:
        _ingest(ctx, tiny_dataset)
    with Context(settings, _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        with ctx.Session() as s:
            gone = [i for i, im in repo.images_by_ids(s, _state(ctx)[0]).items() if im.label == "apples"]
        query = ctx.stores.faiss.get_vectors(gone[:1])[0]
        remove_paths(ctx.Session, ctx.stores, [tiny_dataset / "apples"])
    with Context(settings, _backbone=other) as ctx:
        catalogue, in_qdrant, in_faiss = _state(ctx)
        assert not set(gone) & (set(in_qdrant) | set(in_faiss))
        hits = ctx.stores.faiss.search(np.asarray(query, np.float32), 18)
        assert not {h.id for h in hits} & set(gone)
        report = _check(ctx)
        assert report.consistent, report.lines()
        _repair(ctx, report)
        assert not set(gone) & set(_state(ctx)[0])  # not catalogued again


@pytest.mark.slow
def test_one_backbones_repair_leaves_the_other_backbones_images_indexed(tmp_path, backbone, tiny_dataset):
    """Images indexed by backbone A that backbone B never embedded are B's to do, not A's to lose."""
    settings = _settings(tmp_path)
    with Context(settings, _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
    extra = write_dataset(tmp_path / "more", per_class=2, seed=5)
    with Context(settings, _backbone=OtherTiny()) as ctx:
        _ingest(ctx, extra)  # B has only these 6
        report = _check(ctx)
        assert len(report.not_embedded) == 18 and report.consistent, report.lines()
        _repair(ctx, report)
    with Context(settings, _backbone=backbone) as ctx:
        with ctx.Session() as s:
            assert repo.image_ids_with_status(s, "pending") == []
        report = _check(ctx)
        assert len(report.not_embedded) == 6 and report.consistent, report.lines()
        _ingest(ctx, extra)
        assert _check(ctx).not_embedded == []


@pytest.mark.slow
def test_a_relabel_killed_between_the_two_stores_is_seen_by_doctor_and_repaired(tmp_path, backbone, tiny_dataset,
                                                                                 monkeypatch):
    """Issue 20, item 3: doctor compared Qdrant's payloads with the catalogue, never the mirror's."""
    from imgsearch.search.faiss_index import FaissIndex
    from imgsearch.ui.services.label_review import relabel

    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        ids = _state(ctx)[0][:4]

        def die(*_a, **_kw):
            raise _Killed

        with monkeypatch.context() as m:
            m.setattr(FaissIndex, "set_payload", die)
            with pytest.raises(_Killed):
                relabel(ctx, ids, "pears")
        assert [p["label"] for p in ctx.stores.faiss.get_payloads(ids)] != ["pears"] * 4
        report = _check(ctx)
        assert report.mirror_payload_mismatches == ids and not report.consistent
        assert any("FAISS mirror payload" in line and "--repair" in line for line in report.lines())
        _repair(ctx, report)
        assert [p["label"] for p in ctx.stores.faiss.get_payloads(ids)] == ["pears"] * 4
        assert _check(ctx).consistent
        # --deep compares every point's payloads, not a sample
        assert _check_deep(ctx).payloads_compared == 18


def _check_deep(ctx):
    return doctor.check(ctx.Session, ctx.stores, ctx.trained(), cache=ctx.cache, deep=True, backbone=ctx.backbone)


@pytest.mark.slow
def test_deep_check_says_when_no_sampled_file_exists_any_more(tmp_path, backbone, tiny_dataset):
    """Issue 20, item 13: after the source folders moved, --deep said all agree and silently checked 0 files."""
    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)
        tiny_dataset.rename(tmp_path / "moved")
        report = _check_deep(ctx)
        assert report.deep_sampled == 18 and report.deep_files_missing == 18 and report.deep_checked == 0
        assert any("0 of 18 sampled files still exist" in line for line in report.lines())


@pytest.mark.slow
def test_the_remove_command_says_when_it_removed_nothing(tmp_path, tiny_dataset):
    from typer.testing import CliRunner

    from imgsearch.ui.cli import app

    runner = CliRunner()
    data = str(tmp_path / "data")
    assert runner.invoke(app, ["ingest", str(tiny_dataset), "--backbone", TEST_BACKBONE, "--data-dir", data]
                         ).exit_code == 0
    result = runner.invoke(app, ["remove", str(tiny_dataset / "APPLES"), "--data-dir", data],
                           env={"IMGSEARCH_BACKBONE": TEST_BACKBONE})
    assert result.exit_code == 0 and "removed nothing" in result.output


@pytest.mark.slow
def test_a_removal_cut_short_before_it_regrouped_is_seen_and_finished(tmp_path, backbone, tiny_dataset,
                                                                      monkeypatch):
    """The crash-point harness's cause 3: the surviving members of a group whose representative was removed kept
    the removed id as their group, and doctor said all agree."""
    import imgsearch.ingest.removals as removals

    with Context(_settings(tmp_path), _backbone=backbone) as ctx:
        _ingest(ctx, tiny_dataset)  # the tiny backbone: each generated class is one near-duplicate group
        with ctx.Session() as s:
            rows = repo.images_by_ids(s, _state(ctx)[0])
        grass = sorted(i for i, im in rows.items() if im.label == "grass")
        (rep,) = {rows[i].duplicate_group for i in grass}  # the group is named after one of its members
        rest = [i for i in grass if i != rep]

        def die(*_a, **_kw):
            raise _Killed

        with monkeypatch.context() as m:
            m.setattr(removals, "regroup_after_removal", die)
            with pytest.raises(_Killed):
                remove_paths(ctx.Session, ctx.stores, [rows[rep].path])
        report = _check(ctx)
        assert report.dangling_groups == [rep] and not report.consistent
        _repair(ctx, report)
        with ctx.Session() as s:
            groups = {im.duplicate_group for im in repo.images_by_ids(s, rest).values()}
        assert len(groups) == 1 and groups <= set(rest)  # one group again, named after a member still there
        assert {p["duplicate_group"] for p in ctx.stores.faiss.get_payloads(rest)} == groups
        assert _check(ctx).consistent
