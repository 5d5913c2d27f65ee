"""Catalogue records rebuilt from what survived them: image rows from their points' payloads (orphans), training
runs from their saved model files."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgsearch.db import repository as repo
from imgsearch.models.backbones import Backbone
from imgsearch.models.trained import has_models
from imgsearch.search.stores import Stores

log = logging.getLogger(__name__)


def recatalogue(Session, ids: Sequence[int], payloads: Sequence[dict], stores: Stores) -> tuple[int, int, int]:
    """Catalogue rows for orphan points from their payloads, under the same ids.

    Returns (restored, duplicates, useless): points whose content is catalogued under another id, and points
    whose payload names no file, are removed — neither could rebuild anything.
    """
    restored, duplicates, useless = 0, [], []
    with Session.begin() as s:
        for i, p in zip(ids, payloads, strict=True):
            if not p.get("content_hash") or not p.get("path"):
                useless.append(i)
                continue
            if repo.image_by_hash(s, p["content_hash"]) is not None:
                duplicates.append(i)
                continue
            if repo.image_by_path(s, p["path"]) is not None:
                log.warning("point %d: %s is catalogued with other content now: left alone", i, p["path"])
                continue
            repo.restore_image(
                s, i, content_hash=p["content_hash"], path=p["path"],
                file_name=p.get("file_name") or Path(p["path"]).name, label=p.get("label"),
                width=int(p.get("width") or 0), height=int(p.get("height") or 0),
                size_bytes=int(p.get("size_bytes") or _size(p["path"])),
                source_folder=p.get("source_folder") or str(Path(p["path"]).parent), status="indexed",
                predicted_label=p.get("predicted_label"), predicted_prob=p.get("predicted_prob"),
                kmeans_cluster=p.get("kmeans_cluster"), agglo_cluster=p.get("agglo_cluster"),
                model_run_id=p.get("model_run_id"), backbone=stores.qdrant.info.name,
                duplicate_group=p.get("duplicate_group"), uniqueness=p.get("uniqueness"), quality=p.get("quality"),
                quality_flags=p.get("quality_flags"),
                **({"created_at": t} if (t := _parse_time(p.get("time"))) is not None else {}),
                **_photo_meta(p),
            )
            restored += 1
    if duplicates or useless:
        stores.delete(duplicates + useless)
    return restored, len(duplicates), len(useless)


def _photo_meta(p: dict) -> dict[str, Any]:
    """The photo metadata columns for a row rebuilt from a payload: read from the file again when it is there (as
    the ingest read it, with the camera's make and model apart and the date's offset), else what the payload
    kept; taken_at_source then stays None, so the next ingest of its folder reads the file's own."""
    from imgsearch.ingest.decode import ImageRejected, read_file_header
    from imgsearch.ingest.photo_meta import read_meta

    path = Path(p["path"])
    try:
        header = read_file_header(path)
        meta = read_meta(header.exif, header.width, header.height, path.stat().st_mtime, header.xmp).columns()
    except (OSError, ImageRejected):
        pass
    else:
        meta.pop("width"), meta.pop("height")  # the payload's, as the rest of the row
        return meta
    location = p.get("location") or {}
    taken = p.get("taken_at")
    return {"camera": p.get("camera"), "lens": p.get("lens"), "latitude": location.get("lat"),
            "longitude": location.get("lon"),
            # the photo's own clock, as a camera without a zone writes it (offset None: see db.models.Image)
            "taken_at": None if taken is None else datetime.fromtimestamp(taken, UTC)}


def _size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def restore_model_runs(Session, models_dir: Path | None, backbone: Backbone | None) -> list[int]:
    """Training runs whose complete model files exist for this backbone but whose run record is gone."""
    if backbone is None or models_dir is None:
        return []
    from imgsearch.models.trained import backbone_folder

    root = backbone_folder(models_dir, backbone.identity)
    run_ids = sorted(int(p.name.split("-")[1]) for p in root.glob("run-*") if p.name.split("-")[1].isdigit())
    restored = []
    with Session.begin() as s:
        for run_id in run_ids:
            if s.get(repo.Run, run_id) is None and has_models(models_dir, backbone.identity, run_id):
                bb = backbone.identity
                repo.restore_train_run(s, run_id, bb.name, bb.dim, bb.weights_sha256)
                restored.append(run_id)
    return restored
