"""Record a scan in the catalogue: one row per distinct content, extra paths for duplicates.

Several processes may catalogue at once (two `ingest` commands, workers on other machines): each scan is
catalogued under the catalogue's write lock, and each new content goes in by an idempotent upsert on its hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from imgsearch.db import repository as repo
from imgsearch.db.models import Image
from imgsearch.db.session import take_write_lock
from imgsearch.ingest.scan import ScannedImage, ScanResult, found_path


@dataclass
class CatalogueResult:
    """Catalogue ids for the scanned images, in scan order, and which of them were new."""

    ids: list[int] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    n_known: int = 0  # same content already catalogued (possibly under another path)
    retired_ids: list[int] = field(default_factory=list)  # content replaced in place: delete its vectors
    changed_ids: list[int] = field(default_factory=list)  # path or label changed: refresh their payloads


def catalogue_scan(session: Session, scan: ScanResult, run_id: int | None, backbone: str | None) -> CatalogueResult:
    """Add new images (status 'pending'), attach extra paths to known content, record skips. Flushes only.

    Takes the catalogue's write lock for the rest of the caller's transaction: what is known is read after any
    other process's cataloguing committed, so a path is never taken from content another process just added.
    """
    out = CatalogueResult()
    take_write_lock(session, "catalogue")
    known = repo.ids_by_hash(session, [im.content_hash for im in scan.images])
    for im in scan.images:
        image_id = known.get(im.content_hash)
        added = False
        if image_id is None:
            _release_path(session, str(im.path), out)
            image_id, added = _add(session, im, run_id, backbone)
        if added:
            out.new_ids.append(image_id)
        else:
            out.n_known += 1
            image = _known_row(session, image_id)
            if image.path != str(im.path):
                if not Path(image.path).exists():
                    # The file moved: its new place becomes the primary path (shown and filtered on).
                    _release_path(session, str(im.path), out)
                    image.path, image.file_name, image.source_folder = str(im.path), im.path.name, im.source_folder
                    out.changed_ids.append(image_id)
                else:
                    repo.add_extra_path(session, image, str(im.path))
            if image.label is None and im.label is not None:
                image.label = im.label
                out.changed_ids.append(image_id)
            if image.taken_at_source is None and im.meta is not None:
                # Catalogued before photo metadata was read (migration 0007): ingesting its folder fills it in.
                for key, value in _meta_columns(im).items():
                    setattr(image, key, value)
                if image_id not in out.changed_ids:
                    out.changed_ids.append(image_id)
        known[im.content_hash] = image_id
        out.ids.append(image_id)
    for dup in scan.duplicates:
        assert dup.content_hash is not None  # a duplicate records the content it shares
        target = _known_row(session, known[dup.content_hash])
        repo.add_extra_path(session, target, str(found_path(dup.path)))
        if run_id is not None:
            repo.record_skipped(session, run_id, str(dup.path), "duplicate", dup.message)
    if run_id is not None:
        for skipped in scan.skipped:
            repo.record_skipped(session, run_id, str(skipped.path), skipped.reason, skipped.message)
    session.flush()
    return out


def _release_path(session: Session, path: str, out: CatalogueResult) -> None:
    """`path` now holds other content (a photo edited in place): the old content loses this path."""
    if repo.image_by_path(session, path) is None:
        return
    doomed, promoted, _ = repo.resolve_removal(session, [path])
    repo.delete_images(session, doomed)
    out.retired_ids += doomed
    out.changed_ids += promoted


def _known_row(session: Session, image_id: int) -> Image:
    """The row of an id this transaction found or added (under the catalogue's write lock)."""
    image = session.get(Image, image_id)
    if image is None:
        raise RuntimeError(f"image {image_id} left the catalogue while its folder was being catalogued")
    return image


def _add(session: Session, im: ScannedImage, run_id: int | None, backbone: str | None) -> tuple[int, bool]:
    """(id, whether it is new): the content may have been catalogued by a writer that skipped the lock."""
    image, added = repo.upsert_image(
        session,
        content_hash=im.content_hash,
        path=str(im.path),
        file_name=im.path.name,
        size_bytes=im.size_bytes,
        source_folder=im.source_folder,
        label=im.label,
        backbone=backbone,
        ingest_run_id=run_id,
        **_meta_columns(im),
    )
    return image.id, added


def _meta_columns(im: ScannedImage) -> dict:
    """The photo metadata columns (ingest/photo_meta.py) and the upright size, for a scanned image."""
    return {"width": im.width, "height": im.height, **(im.meta.columns() if im.meta is not None else {})}
