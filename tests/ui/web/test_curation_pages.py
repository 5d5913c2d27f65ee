"""AppTest runs of the Duplicates and Suspects pages on their own copy of a tiny trained collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsearch.db import collection as data
from imgsearch.db import repository as repo
from imgsearch.db import undo_list
from imgsearch.db.session import make_engine, session_factory
from imgsearch.ui.services.settings import Settings
from tests.ui.web.conftest import Collection, page


def _ok(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _session(col: Collection):
    engine = make_engine(Settings(data_dir=col.data_dir).db_url)
    return engine, session_factory(engine)


def _stored_payloads(col: Collection, ids: list[int]) -> list[dict]:
    from imgsearch.models.backbones import load_backbone
    from imgsearch.search.stores import open_stores

    stores = open_stores(col.data_dir, load_backbone(col.backbone).identity)
    try:
        return stores.qdrant.get_payloads(ids)
    finally:
        stores.close()


@pytest.mark.slow
def test_duplicates_page_removes_the_unticked_and_keeps_files(own_collection):
    engine, Session = _session(own_collection)
    with Session() as s:
        groups = data.duplicate_groups(s)
    # The tiny backbone sees each generated class as near copies: three groups of six, found at ingest.
    assert [len(m) for _, m in groups] == [6, 6, 6]
    group, members = groups[0]
    at = page("duplicates")
    at.run()
    _ok(at)
    assert [b.proto.label for b in at.get("download_button")] == ["Download CSV", "Download JSON"]
    keep = [cb for cb in at.checkbox if cb.key.startswith(f"dups_keep_{group}_")]
    assert len(keep) == 6 and all(cb.value for cb in keep)  # issue 21, item 5: every member kept by default
    assert not [b for b in at.button if b.key == f"dups_remove_{group}"]  # nothing to remove until one is unticked
    assert any("48×40" in m.value for m in at.markdown)  # resolution shown
    assert any("same picture (resized or re-encoded)" in m.value or "not a copy" in m.value for m in at.markdown)
    # Keep two: untick four, ask to remove them, confirm (files stay).
    for cb in keep[2:]:
        cb.uncheck()
    at.run()
    _ok(at)
    at.button(key=f"dups_remove_{group}").click().run()
    _ok(at)
    with Session() as s:  # asking is not removing
        assert len(repo.images_by_ids(s, [im.id for im in members])) == 6
    assert any("Remove 4 image(s) from the collection" in w.value for w in at.warning)
    at.button(key=f"dups_confirm_yes_{group}").click().run()
    _ok(at)
    assert any("Moved 4 images to the undo list; the files are still on disk" in s.value for s in at.success)
    with Session() as s:
        left = {im.id for im in repo.images_by_ids(s, [im.id for im in members]).values()}
    assert len(left) == 2
    assert all(Path(im.path).exists() for im in members)  # nothing deleted from disk
    with Session() as s:  # the two kept are still one group, named by one of them
        assert {im.duplicate_group for im in repo.images_by_ids(s, left).values()} <= left
        assert len({im.duplicate_group for im in repo.images_by_ids(s, left).values()}) == 1
    engine.dispose()


def _release_app_stores() -> None:
    """The app's cached context holds the embedded store: release it before opening the stores here."""
    import gc

    import streamlit as st

    st.cache_resource.clear()
    gc.collect()


@pytest.mark.slow
def test_removed_images_are_listed_restored_and_found_again(own_collection):
    """Issue 21, item 5: a removal on the Duplicates page (files moved off disk) goes to the undo list; the Removed
    page restores it (file back, in search again) and empties the rest for good after a confirmation."""
    import shutil

    import numpy as np

    from imgsearch.models.backbones import load_backbone
    from imgsearch.search.stores import open_stores

    engine, Session = _session(own_collection)
    with Session() as s:
        group, members = data.duplicate_groups(s)[0]
    # The photos are shared with other tests: the two to remove (with their files) get private copies first.
    gone = members[4:]
    own = own_collection.root / "own-photos"
    own.mkdir()
    with Session.begin() as s:
        for im in gone:
            shutil.copy(im.path, own / im.file_name)
            repo.update_images(s, [{"id": im.id, "path": str(own / im.file_name), "source_folder": str(own)}])
    with Session() as s:
        gone = list(repo.images_by_ids(s, [im.id for im in gone]).values())
    at = page("duplicates")
    at.run()
    for im in gone:
        at.checkbox(key=f"dups_keep_{group}_{im.id}").uncheck()
    at.run()
    at.checkbox(key=f"dups_delete_{group}").check()
    at.button(key=f"dups_remove_{group}").click().run()
    at.button(key=f"dups_confirm_yes_{group}").click().run()
    _ok(at)
    assert any("Moved 2 images to the undo list and moved 2 files off disk" in s.value for s in at.success)
    assert not any(Path(im.path).exists() for im in gone)

    at = page("removed")
    at.run()
    _ok(at)
    assert at.title[0].value == "Removed"
    assert sorted(int(o.split(":")[0]) for o in at.multiselect(key="removed_pick").options) == \
        sorted(im.id for im in gone)
    back = gone[0]
    at.multiselect(key="removed_pick").select(back.id).run()
    at.button(key="removed_restore").click().run()
    _ok(at)
    assert any("Restored 1 images (1 files moved back)" in s.value for s in at.success), [s.value for s in at.success]
    assert Path(back.path).exists() and not Path(gone[1].path).exists()
    at.button(key="removed_empty").click().run()
    with Session() as s:  # asking is not emptying
        assert len(undo_list.listed(s)) == 1
    at.button(key="removed_empty_yes").click().run()
    _ok(at)
    assert any("Emptied 1 images from the undo list for good; 1 moved files deleted" in s.value for s in at.success)
    with Session() as s:
        assert undo_list.listed(s) == [] and back.id in repo.images_by_ids(s, [back.id])
    engine.dispose()
    at = None
    _release_app_stores()
    stores = open_stores(own_collection.data_dir, load_backbone(own_collection.backbone).identity)
    try:
        query = stores.faiss.get_vectors([back.id])[0]
        hit = stores.faiss.search(np.asarray(query, np.float32), 1)[0]
        assert hit.id == back.id and hit.score > 0.999  # in search again, at its old score
        assert stores.qdrant.get_payloads([back.id])[0]["path"] == back.path
    finally:
        stores.close()


@pytest.mark.slow
def test_suspects_page_accepts_a_relabel_into_catalogue_and_payloads(own_collection):
    engine, Session = _session(own_collection)
    at = page("suspects")
    at.run()
    _ok(at)
    assert "imgsearch suspects" in at.info[0].value  # nothing scored yet: says how
    with Session.begin() as s:  # what `imgsearch suspects` records for an apple filed under grass
        apple = min(i for i, im in repo.images_by_ids(s, range(1, 19)).items() if im.label == "apples")
        repo.update_images(s, [{"id": apple, "label": "grass", "label_score": 0.02, "suggested_label": "apples"}])
    at = page("suspects")
    at.run()
    _ok(at)
    assert at.selectbox(key="suspects_pick").options[0].endswith("grass → apples (0.02)")
    assert len(at.get("plotly_chart")) == 1  # the top-5 probabilities
    assert len(at.get("download_button")) == 2  # the suspects list as CSV and JSON
    at.button(key="suspects_accept").click().run()
    _ok(at)
    assert any("now labelled 'apples'" in s.value for s in at.success)
    with Session() as s:
        row = repo.images_by_ids(s, [apple])[apple]
    assert (row.label, row.label_score, row.suggested_label) == ("apples", None, None)
    engine.dispose()
    at = None  # the app's cached context holds the embedded store: release it before opening the stores here
    import gc

    import streamlit as st

    st.cache_resource.clear()
    gc.collect()
    assert _stored_payloads(own_collection, [apple])[0]["label"] == "apples"


@pytest.mark.slow
def test_pages_without_anything_recorded_say_what_to_run(own_collection):
    engine, Session = _session(own_collection)
    with Session.begin() as s:
        repo.update_images(s, [{"id": i, "duplicate_group": None} for i in repo.image_ids_with_status(s, "indexed")])
    engine.dispose()
    at = page("duplicates")
    at.run()
    _ok(at)
    assert "imgsearch duplicates" in at.info[0].value


def test_ingest_page_says_a_label_has_too_few_images_instead_of_asking_to_retrain(own_collection):
    """Issue 21, item 4: a one-image class kept the page asking to retrain, and never said a class needs more."""
    engine, Session = _session(own_collection)
    with Session.begin() as s:
        ids = sorted(repo.images_by_ids(s, range(1, 100)))[:2]
        repo.update_images(s, [{"id": i, "label": "rare"} for i in ids])
    at = page("ingest")
    at.run()
    _ok(at)
    assert not any("Retrain to predict" in w.value for w in at.warning)
    assert any("too few images for the classifier to learn: rare (2)" in i.value and "needs 4 or more" in i.value
               for i in at.info)
    engine.dispose()


@pytest.mark.slow
def test_suspects_page_never_offers_a_relabel_the_evidence_does_not_support(own_collection):
    """Issue 21, item 6: a correctly labelled ant was offered "Relabel as sea_horse" at p = 0.00."""
    engine, Session = _session(own_collection)
    with Session.begin() as s:  # a correct apple, suspected of being sky (as a bad out-of-fold score could say)
        apple = min(i for i, im in repo.images_by_ids(s, range(1, 19)).items() if im.label == "apples")
        repo.update_images(s, [{"id": apple, "label_score": 0.04, "suggested_label": "sky"}])
    engine.dispose()
    at = page("suspects")
    at.run()
    _ok(at)
    assert not [b for b in at.button if b.key == "suspects_accept"]  # no one-click "Relabel as sky"
    keep = at.button(key="suspects_keep")
    assert keep.proto.type == "primary" and keep.label == "Keep the label apples (reviewed)"
    assert any("out-of-fold" in c.value and "current model: apples" in c.value and "neighbours" in c.value
               for c in at.caption)
