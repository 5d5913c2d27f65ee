"""Walk a folder of class sub-folders: sorted, content-hashed, validated, duplicates found."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS, ImageRejected, read_file_header
from imgsearch.ingest.photo_meta import PhotoMeta, read_meta
from imgsearch.models.files import file_sha256

log = logging.getLogger(__name__)

BACKGROUND_CLASS = "BACKGROUND_Google"
# OS and tool droppings that are never photos; they are counted, not warned about one by one.
IGNORED_NAMES = {"Thumbs.db", "desktop.ini", "Icon\r"}


@dataclass(frozen=True)
class ScannedImage:
    path: Path
    label: str | None
    content_hash: str
    width: int  # upright (EXIF orientation applied), as `meta` has it
    height: int
    size_bytes: int
    source_folder: str
    meta: PhotoMeta | None = None  # date taken, camera, place: read from the header the scan already parsed


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str
    message: str
    content_hash: str | None = None  # set for duplicates: the content they share with a kept image


@dataclass
class ScanResult:
    root: Path
    images: list[ScannedImage] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    duplicates: list[SkippedFile] = field(default_factory=list)
    n_ignored: int = 0

    @property
    def labels(self) -> list[str]:
        return sorted({im.label for im in self.images if im.label is not None})

    def fingerprint(self) -> str:
        """Identifies the exact set of (content, label) pairs, independent of where the folder lives."""
        h = hashlib.sha256()
        for im in sorted(self.images, key=lambda im: (im.content_hash, im.label or "")):
            h.update(f"{im.content_hash}\t{im.label}\n".encode())
        return h.hexdigest()


def _walk_sorted(root: Path):
    """Yield files below root in a stable order (os.walk order depends on the filesystem)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def found_path(path: Path | str) -> Path:
    """An absolute path for a file as it was found: folders resolved, but not a symbolic link to the file itself.

    A linked file is recorded where the user put it, so removing that folder removes it too.
    """
    path = Path(path).expanduser().absolute()
    return path.parent.resolve() / path.name


def printable(path: Path | str) -> str:
    """`path` as text that can be stored and printed: bytes that are not UTF-8 written as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(path: Path) -> bool:
    # Python keeps the bytes of a name that are not UTF-8 as lone surrogates, which no UTF-8 text can hold.
    return printable(path) == str(path)


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    target = path.resolve()
    return any(target == root or target.is_relative_to(root) for root in roots)


def scan_folder(
    root: Path | str,
    labels_from_folders: bool = True,
    include_background: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    confine_to: Sequence[Path] | None = None,
    root_label: str | None = None,
) -> ScanResult:
    """Find every image below `root` by its content.

    With `labels_from_folders`, an image's label is the name of the top-level sub-folder holding it
    (files directly in `root` get `root_label`, by default none). Bad files are skipped with one warning line
    each; files with content already seen are recorded as duplicates of the first (in sorted order).
    `confine_to`: resolved folders every file must really lie in (the app's allowed roots); a symbolic link
    pointing elsewhere is skipped with reason "outside_roots" and never read.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    result = ScanResult(root=root.resolve())
    seen: dict[str, Path] = {}
    for path in _walk_sorted(root):
        rel = path.relative_to(root)
        top = rel.parts[0] if len(rel.parts) > 1 else None
        if not include_background and top == BACKGROUND_CLASS:
            continue
        if path.name.startswith(".") or path.name in IGNORED_NAMES:
            result.n_ignored += 1
            continue
        if not _utf8(path):
            # The catalogue, the stores' payloads and every message hold names as UTF-8 text.
            where = "file" if _utf8(path.parent) else "folder"
            _skip(result, Path(printable(path)), "bad_name",
                  f"the {where} name is not valid UTF-8: rename it (e.g. `convmv -f latin1 -t utf8 -r --notest "
                  f"FOLDER`) and ingest again")
            continue
        if path.is_symlink() and not path.exists():
            _skip(result, path, "unreadable", "broken symbolic link")
            continue
        if confine_to is not None and not _inside(path, confine_to):
            _skip(result, path, "outside_roots", f"links to {path.resolve()}, outside the allowed folders")
            continue
        # The header first, from the file's first bytes: a video next to the photos is never read whole. Then
        # the hash, streamed. The embedder checks the bytes it decodes against this hash ("changed").
        try:
            header = read_file_header(path, max_pixels=max_pixels)
        except ImageRejected as exc:
            _skip(result, path, exc.reason, exc.message)
            continue
        try:
            digest, stat = file_sha256(path), path.stat()
        except OSError as exc:
            _skip(result, path, "unreadable", f"cannot read the file: {exc.strerror or exc}")
            continue
        if digest in seen:
            dup = SkippedFile(path, "duplicate", f"same content as {seen[digest]}", digest)
            result.duplicates.append(dup)
            log.info("duplicate: %s (same content as %s)", path, seen[digest])
            continue
        seen[digest] = path
        meta = read_meta(header.exif, header.width, header.height, stat.st_mtime, header.xmp)
        result.images.append(
            ScannedImage(
                path=found_path(path),
                label=(top or root_label) if labels_from_folders else None,
                content_hash=digest,
                width=meta.width,
                height=meta.height,
                size_bytes=stat.st_size,
                source_folder=str(found_path(path).parent),
                meta=meta,
            )
        )
    return result


def _skip(result: ScanResult, path: Path, reason: str, message: str) -> None:
    result.skipped.append(SkippedFile(path, reason, message))
    log.warning("skipped %s: %s (%s)", path, message, reason)
