"""`imgsearch doctor --deep`: a sample of files read again; those unchanged since their ingest are re-embedded and
compared with their cached feature vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from imgsearch.db import repository as repo
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.models.backbones import Backbone
from imgsearch.ui.services.doctor_report import DoctorReport

DEEP_SAMPLE = 64  # --deep: files re-read and re-embedded


def deep_check(Session, cache: FeatureCache, backbone: Backbone, ids: list[int], rng, report: DoctorReport) -> None:
    """Re-read a sample of files: unchanged ones are re-embedded and compared with their cached vector."""
    from imgsearch.ingest.decode import ImageRejected, decode_side, load_rgb
    from imgsearch.models.files import bytes_sha256

    sample = sorted(rng.choice(ids, size=min(DEEP_SAMPLE, len(ids)), replace=False).tolist()) if ids else []
    with Session() as s:
        images = repo.images_by_ids(s, sample)
    cache.refresh()
    for i in sample:
        image = images.get(i)
        if image is None:
            continue
        report.deep_sampled += 1
        try:
            data = Path(image.path).read_bytes()
        except OSError:
            report.deep_files_missing += 1  # moved or deleted since: nothing to compare with
            continue
        if image.content_hash not in cache:
            continue
        report.deep_checked += 1
        if bytes_sha256(data) != image.content_hash:
            report.changed_files.append(i)
            continue
        try:
            fresh = backbone.embed_images([load_rgb(data, min_side=decode_side(backbone))])[0]
        except ImageRejected:
            continue
        if float(np.dot(fresh, cache.get([image.content_hash])[0])) < 0.999:
            report.cache_mismatches.append(i)
