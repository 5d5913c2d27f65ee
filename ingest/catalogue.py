"""Record a scan in the SQLite catalogue: one row per distinct content, extra paths for duplicates."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from db import repository as repo
from db.models import Image
from ingest.scan import ScannedImage, ScanResult


@dataclass
class CatalogueResult:
    """Catalogue ids for the scanned images, in scan order, and which of them were new."""

    ids: list[int] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    n_known: int = 0  # same content already catalogued (possibly under another path)
    n_duplicates: int = 0  # same content twice within this scan


def catalogue_scan(session: Session, scan: ScanResult, run_id: int | None, backbone: str | None) -> CatalogueResult:
    """Add new images (status 'pending'), attach extra paths to known content, record skips. Flushes only."""
    out = CatalogueResult()
    known = repo.ids_by_hash(session, [im.content_hash for im in scan.images])
    for im in scan.images:
        image_id = known.get(im.content_hash)
        if image_id is None:
            image_id = _add(session, im, run_id, backbone)
            out.new_ids.append(image_id)
        else:
            out.n_known += 1
            image = session.get(Image, image_id)
            if image.path != str(im.path):
                repo.add_extra_path(session, image, str(im.path))
            if image.label is None and im.label is not None:
                image.label = im.label
        known[im.content_hash] = image_id
        out.ids.append(image_id)
    for dup in scan.duplicates:
        target = session.get(Image, known[dup.content_hash])
        repo.add_extra_path(session, target, str(dup.path.resolve()))
        out.n_duplicates += 1
        if run_id is not None:
            repo.record_skipped(session, run_id, str(dup.path), "duplicate", dup.message)
    if run_id is not None:
        for skipped in scan.skipped:
            repo.record_skipped(session, run_id, str(skipped.path), skipped.reason, skipped.message)
    session.flush()
    return out


def _add(session: Session, im: ScannedImage, run_id: int | None, backbone: str | None) -> int:
    image = repo.add_image(
        session,
        content_hash=im.content_hash,
        path=str(im.path),
        file_name=im.path.name,
        width=im.width,
        height=im.height,
        size_bytes=im.size_bytes,
        source_folder=im.source_folder,
        label=im.label,
        backbone=backbone,
        ingest_run_id=run_id,
    )
    return image.id
