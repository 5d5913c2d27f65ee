"""Query helpers for images, runs and their results; each takes a Session, adds and flushes, never commits.

The caller owns the transaction: ``with factory() as session, session.begin(): ...``.

The one import every caller uses (``from imgsearch.db import repository as repo``): the helpers live by concern in
db/images.py (catalogued images, tags, near-duplicate groups), db/runs.py (runs and their results) and
db/removal_journal.py (removals), and are named here. Kept as a single name for the ~65 modules and ~390 call
sites that say ``repo.``; new code may import the module that owns a helper.
"""

from __future__ import annotations

from imgsearch.db.images import (
    add_extra_path,
    add_image,
    catalogued_images,
    clusters_from_run,
    count_images,
    curation_state,
    dangling_duplicate_groups,
    duplicate_members,
    ids_by_hash,
    image_by_hash,
    image_by_path,
    image_ids_with_status,
    images_by_ids,
    labelled_images,
    mark_tags_checked,
    relabel,
    restore_image,
    set_image_status,
    set_image_tags,
    untagged_images,
    update_images,
    upsert_image,
)
from imgsearch.db.models import Run
from imgsearch.db.removal_journal import (
    delete_images,
    mark_removals_applied,
    outstanding_removals,
    removed_ids,
    resolve_removal,
)
from imgsearch.db.runs import (
    RUN_COUNTS,
    current_model_run,
    finish_run,
    indexed_with,
    ingest_folders,
    latest_run,
    list_runs,
    record_artifact,
    record_class_metrics,
    record_metrics,
    record_skipped,
    restore_train_run,
    run_artifact,
    run_class_metrics,
    run_metrics,
    skipped_files,
    stale_predictions,
    start_run,
)

__all__ = [
    "RUN_COUNTS", "Run", "add_extra_path", "add_image", "catalogued_images", "clusters_from_run", "count_images",
    "current_model_run", "curation_state", "dangling_duplicate_groups", "delete_images", "duplicate_members",
    "finish_run", "ids_by_hash",
    "image_by_hash", "image_by_path", "image_ids_with_status", "images_by_ids", "indexed_with", "ingest_folders",
    "labelled_images", "latest_run", "list_runs", "mark_removals_applied", "mark_tags_checked", "outstanding_removals",
    "record_artifact", "record_class_metrics", "record_metrics", "record_skipped", "relabel", "removed_ids",
    "resolve_removal", "restore_image", "restore_train_run", "run_artifact", "run_class_metrics", "run_metrics",
    "set_image_status", "set_image_tags", "skipped_files", "stale_predictions", "start_run", "untagged_images",
    "update_images", "upsert_image",
]
