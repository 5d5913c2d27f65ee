"""Tags for the images ingested before tags existed: run through the network again, resumable.

Ingest tags an image from the forward pass that embeds it; an image whose feature was already cached is not run
again, and a catalogue from before migration 0008 has no tags at all. The tags cannot be derived from the cached
feature: the head reads the pooled feature *before* normalisation (logits = W p + b), the cache keeps p / |p|, and
|p| varies from image to image (EfficientNet-Lite2 on 400 Caltech-101 images: mean 12.1, sd 2.1, 8.0 to 17.5).
With the mean norm in its place the top class stays (99.8%) but the kept tag set differs for 22% of the images
and probabilities are off by 0.085 (median of the per-image maximum; p95 0.29)
(benchmarks/bench_tag_backfill.py). So the files are decoded and run through the network again.

Resumable: images are done in chunks, each committed as it finishes; an image counts as done only once its
catalogue tags and both stores' payloads are written (`Image.tags_checked_at`, set last), so a killed backfill
redoes at most the chunk it was in. Files that changed or cannot be read are left for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from imgsearch.db import repository as repo
from imgsearch.ingest import payload_sync
from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS
from imgsearch.ingest.embed import embed_paths
from imgsearch.models.backbones import Backbone
from imgsearch.models.tags import TagPolicy
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)

CHUNK = 256  # images per commit: what a killed backfill may have to redo


@dataclass
class BackfillReport:
    todo: int = 0  # untagged images when it started
    tagged: int = 0  # run through the head now (with or without a tag above the threshold)
    failed: dict[str, int] = field(default_factory=dict)  # reason -> images left untagged (changed, unreadable ...)
    stopped: bool = False

    def describe(self) -> str | None:
        if not self.todo:
            return None
        text = f"tagged {self.tagged:,} of {self.todo:,} images ingested before tags existed"
        if self.failed:
            text += " (left untagged: " + ", ".join(f"{n} {why}" for why, n in sorted(self.failed.items())) + ")"
        if self.stopped:
            text += "; stopped: the next `imgsearch train` goes on from there"
        return text


def backfill_tags(Session: sessionmaker[Session], backbone: Backbone, stores: Stores, batch_size: int = 32,
                  num_workers: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True,
                  should_stop: Callable[[], bool] | None = None, chunk: int = CHUNK,
                  policy: TagPolicy | None = None) -> BackfillReport:
    """Tag every indexed image not yet run through an ImageNet head; nothing for a backbone without one."""
    report = BackfillReport()
    if backbone.head is None:
        return report
    with Session() as s:
        todo = repo.untagged_images(s)
    report.todo = len(todo)
    if not todo:
        return report
    bar = tqdm(total=len(todo), desc="tagging", unit="img", disable=not progress)
    try:
        for start in range(0, len(todo), chunk):
            if should_stop is not None and should_stop():
                report.stopped = True
                break
            part = todo[start : start + chunk]
            emb = embed_paths(backbone, [Path(p) for _, p, _ in part], batch_size, num_workers, max_pixels,
                              bar=bar, hashes=[h for _, _, h in part], tag_policy=policy)
            for f in emb.failures:
                report.failed[f.reason] = report.failed.get(f.reason, 0) + 1
            tags = {part[i][0]: emb.tags.get(i, []) for i in emb.ok}
            with Session.begin() as s:
                repo.set_image_tags(s, tags, checked=False)
            payload_sync.sync(Session, stores, list(tags))  # both stores' `tags` field, from the rows
            with Session.begin() as s:
                repo.mark_tags_checked(s, list(tags))
            report.tagged += len(tags)
    finally:
        bar.close()
    log.info("%s", report.describe())
    return report
