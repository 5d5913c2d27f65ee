"""Teaching a label end to end (ui/services/teaching.py) on a copy of the tiny trained collection: examples,
pages of candidates, accept / reject / skip, both stores and the catalogue in agreement, a session that survives
a new Context; and `imgsearch teach`."""

from __future__ import annotations

import pytest

from imgsearch.db import jobs
from imgsearch.db import repository as repo
from imgsearch.ui.services import doctor, teaching
from imgsearch.ui.services.context import Context
from imgsearch.ui.services.settings import Settings
from tests.helpers import run_cli
from tests.ui.web.conftest import copy_collection


@pytest.fixture
def own(tmp_path, collection):
    return copy_collection(collection, tmp_path)


def _context(col, backbone) -> Context:
    return Context(Settings(data_dir=col.data_dir, backbone=col.backbone, num_workers=0), _backbone=backbone)


def _by_label(ctx) -> dict[str, list[int]]:
    with ctx.Session() as s:
        rows = repo.images_by_ids(s, range(1, 1000))
    out: dict[str, list[int]] = {}
    for i, row in sorted(rows.items()):
        out.setdefault(row.label, []).append(i)
    return out


def _assert_labelled_everywhere(ctx, ids, label) -> None:
    with ctx.Session() as s:
        assert {r.label for r in repo.images_by_ids(s, ids).values()} == {label}
    assert {p["label"] for p in ctx.stores.qdrant.get_payloads(ids)} == {label}
    assert {p["label"] for p in ctx.stores.faiss.get_payloads(ids)} == {label}


@pytest.mark.slow
def test_a_taught_label_is_found_reviewed_and_kept_in_catalogue_and_stores(own, backbone):
    ctx = _context(own, backbone)
    try:
        sky = _by_label(ctx)["sky"]
        examples, rest = sky[:3], sky[3:]
        state = teaching.add_examples(ctx, "blue", examples)
        assert (state.n_labelled, state.ready) == (3, True)
        _assert_labelled_everywhere(ctx, examples, "blue")  # the examples are labelled at once
        page = teaching.candidates(ctx, "blue", k=5)
        assert {c.id for c in page[:3]} == set(rest)  # the rest of the class first
        assert all(c.label == "sky" for c in page[:3]) and page[0].score >= page[-1].score
        others = [c.id for c in page[3:]]
        state = teaching.review(ctx, "blue", accept=rest, reject=others[:1], skip=others[1:])
        # the examples count as reviewed
        assert (state.n_labelled, state.n_negative, state.n_skipped, state.n_reviewed) == (6, 1, 1, 8)
        _assert_labelled_everywhere(ctx, sky, "blue")
        report = doctor.check(ctx.Session, ctx.stores, ctx.trained())
        assert report.consistent, report
        assert not report.payload_mismatches and not report.mirror_payload_mismatches
    finally:
        ctx.close()
    ctx = _context(own, backbone)  # a restart: the session is in the catalogue
    try:
        state = teaching.status(ctx, "blue")
        assert (state.n_labelled, state.n_negative, state.n_skipped) == (6, 1, 1)
        page = teaching.candidates(ctx, "blue", k=100)
        offered = {c.id for c in page}
        assert not offered & (set(sky) | set(others))  # labelled and reviewed images are never offered again
        assert len(page) == 18 - 6 - 2
        job_id = teaching.finish(ctx, "blue")
        with ctx.Session() as s:
            (job,) = [j for j in jobs.list_jobs(s) if j.id == job_id]
        assert (job.kind, job.status) == ("train", "queued")
    finally:
        ctx.close()


def test_rejecting_a_labelled_image_takes_the_label_away(own, backbone):
    ctx = _context(own, backbone)
    try:
        sky = _by_label(ctx)["sky"]
        teaching.add_examples(ctx, "blue", sky[:4])
        state = teaching.review(ctx, "blue", reject=[sky[3]])
        assert (state.n_labelled, state.n_negative) == (3, 1)
        with ctx.Session() as s:
            assert repo.images_by_ids(s, [sky[3]])[sky[3]].label is None
        assert ctx.stores.qdrant.get_payloads([sky[3]])[0].get("label") is None
        assert teaching.forget(ctx, "blue") == 4 and teaching.status(ctx, "blue").n_reviewed == 0
    finally:
        ctx.close()


def test_refusals_change_nothing(own, backbone):
    ctx = _context(own, backbone)
    try:
        with pytest.raises(teaching.TeachingError, match="at least 3"):
            teaching.candidates(ctx, "nothing yet")
        with pytest.raises(teaching.TeachingError, match="empty"):
            teaching.add_examples(ctx, "  ", [1, 2, 3])
        with pytest.raises(teaching.TeachingError, match="more than one"):
            teaching.review(ctx, "blue", accept=[1], reject=[1])
        with pytest.raises(teaching.UnknownImages, match="no image with id 999"):
            teaching.add_examples(ctx, "blue", [1, 2, 999])
        assert teaching.status(ctx, "blue").n_reviewed == 0 and "blue" not in _by_label(ctx)
    finally:
        ctx.close()


@pytest.mark.slow
def test_teach_command_examples_next_accept_reject(own, capsys, monkeypatch):
    from imgsearch.ui.services.context import Context as Ctx

    probe = Ctx(Settings(data_dir=own.data_dir, backbone=own.backbone, num_workers=0))
    try:
        with probe.Session() as s:
            grass = sorted(i for i, r in repo.images_by_ids(s, range(1, 1000)).items() if r.label == "grass")
            apples = sorted(i for i, r in repo.images_by_ids(s, range(1, 1000)).items() if r.label == "apples")
    finally:
        probe.close()
    ex = [str(i) for i in grass[:3]]
    code, out = run_cli(["teach", "green", "--examples", *ex, "--not", str(apples[0])], own.data_dir, capsys,
                        monkeypatch)
    assert code == 0, out
    assert "'green': 3 images labelled, 1 negatives" in out
    code, out = run_cli(["teach", "green", "--next", "--k", "3"], own.data_dir, capsys, monkeypatch)
    assert code == 0, out
    listed = out.split("ids: ")[1].split(" review")[0].split()
    assert sorted(map(int, listed)) == grass[3:]
    code, out = run_cli(["teach", "green", "--accept", *listed[:2], "--reject", listed[2], "--done"],
                        own.data_dir, capsys, monkeypatch)
    assert code == 0, out
    assert "'green': 5 images labelled, 2 negatives" in out and "queued training job" in out
    code, out = run_cli(["teach", "green", "--examples", "x1"], own.data_dir, capsys, monkeypatch)
    assert code == 2 and "'x1' after --examples is not an image id" in out
    code, out = run_cli(["teach", "green", "--examples", "1", "--nxt"], own.data_dir, capsys, monkeypatch)
    assert code == 2 and "no such option '--nxt'" in out
    code, out = run_cli(["teach", "red", "--next"], own.data_dir, capsys, monkeypatch)
    assert code == 2 and "give at least 3" in out
