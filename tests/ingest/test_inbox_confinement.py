"""`imgsearch worker --inbox`: inbox jobs are confined to the allowed roots, as the app's and the API's ingests are,
so a sub-folder or a file linked out of them is never read."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from imgsearch.db import jobs
from imgsearch.db.models import Image, SkippedFile
from imgsearch.ingest.worker import Worker
from imgsearch.ui.services.context import open_database
from imgsearch.ui.services.settings import Settings
from tests.helpers import TEST_BACKBONE, run_cli, write_dataset


def _inbox_with_links_out(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(allowed root, its inbox, a folder outside it): inbox/good holds 3 images and a link to a file outside;
    inbox/evil is a link to the outside folder (6 images)."""
    root = tmp_path / "allowed"
    inbox = root / "inbox"
    write_dataset(inbox / "good", per_class=1, seed=5)
    elsewhere = write_dataset(tmp_path / "elsewhere", per_class=2, seed=9)
    (inbox / "evil").symlink_to(elsewhere, target_is_directory=True)
    (inbox / "good" / "sky" / "linked.jpg").symlink_to(elsewhere / "grass" / "grass_000.jpg")
    return root, inbox, elsewhere


def test_worker_inbox_never_ingests_what_links_outside_the_allowed_roots(tmp_path, capsys, monkeypatch):
    root, inbox, elsewhere = _inbox_with_links_out(tmp_path)
    data_dir = tmp_path / "data"
    code, out = run_cli(["worker", "--inbox", str(inbox), "--once"], data_dir, capsys, monkeypatch,
                        IMGSEARCH_ALLOWED_ROOTS=json.dumps([str(root)]), IMGSEARCH_INBOX_SETTLE_S="0")
    assert code == 0, out
    Session = open_database(Settings(data_dir=data_dir, backbone=TEST_BACKBONE))
    with Session() as s:
        paths = [Path(p) for p in s.scalars(select(Image.path))]
        skipped = {Path(row.path).name: row.reason for row in s.scalars(select(SkippedFile))}
        queued = [(j.folder, j.options, j.status) for j in jobs.list_jobs(s)]
    assert len(paths) == 3 and all(p.resolve().is_relative_to(root) for p in paths), paths
    assert not any(p.resolve().is_relative_to(elsewhere) for p in paths)
    assert skipped == {"linked.jpg": "outside_roots"}
    # Only the real sub-folder was queued, with the allowed roots as its confinement.
    assert queued == [(str(inbox / "good"), {"labels_from_folders": True, "confine_to": [str(root)]}, "done")]


def test_worker_refuses_an_inbox_outside_the_allowed_roots(tmp_path, capsys, monkeypatch):
    root, inbox, elsewhere = _inbox_with_links_out(tmp_path)
    code, out = run_cli(["worker", "--inbox", str(elsewhere), "--once"], tmp_path / "data", capsys, monkeypatch,
                        IMGSEARCH_ALLOWED_ROOTS=json.dumps([str(root)]), IMGSEARCH_INBOX_SETTLE_S="0")
    assert code == 2 and "IMGSEARCH_ALLOWED_ROOTS" in out and "Traceback" not in out, out
    with open_database(Settings(data_dir=tmp_path / "data", backbone=TEST_BACKBONE))() as s:
        assert jobs.list_jobs(s) == [] and s.scalars(select(Image.id)).first() is None


def test_a_worker_given_no_roots_confines_inbox_jobs_to_the_inbox(ctx, tmp_path):
    _, inbox, _ = _inbox_with_links_out(tmp_path)
    worker = Worker(ctx.Session, {}, inbox=inbox, inbox_settle_s=0)
    assert worker.scan_inbox() == 1 and worker.scan_inbox() == 0  # evil is not queued, now or later
    with ctx.Session() as s:
        assert [(j.folder, j.options["confine_to"]) for j in jobs.list_jobs(s)] == [(str(inbox / "good"),
                                                                                    [str(inbox)])]
