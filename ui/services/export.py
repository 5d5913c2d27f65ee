"""Export: search results, a cluster, a near-duplicate group or the suspects list as CSV or JSON rows, and the
files themselves copied or linked into a folder. Nothing existing is ever overwritten."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("csv", "json")
# Catalogue columns every exported row carries (None where unknown); search results add rank and score first.
IMAGE_FIELDS = ("id", "path", "file_name", "label", "predicted_label", "predicted_prob", "kmeans_cluster",
                "agglo_cluster", "duplicate_group", "source_folder")
SUSPECT_FIELDS = ("suggested_label", "label_score")
# Bytes in one file name, and in a whole path, on Linux's file systems (and most others).
NAME_MAX = 255
PATH_MAX = 4096
# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) in a label or a file
# name would): OWASP's CSV injection advice is to make it text with a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ExportError(Exception):
    """An export that cannot be done as asked; nothing was written."""


def result_rows(results: Iterable) -> list[dict]:
    """Search results (SearchResult) -> rows: rank (1 = best), score, then the image's fields."""
    return [{"rank": n, "score": round(float(r.score), 6), **{f: getattr(r, f, None) for f in IMAGE_FIELDS}}
            for n, r in enumerate(results, start=1)]


def image_rows(images: Iterable, extra: Sequence[str] = ()) -> list[dict]:
    """Catalogue rows (db Image) -> rows of IMAGE_FIELDS and `extra` attributes."""
    return [{f: getattr(im, f, None) for f in (*IMAGE_FIELDS, *extra)} for im in images]


def to_text(rows: Sequence[dict], fmt: str) -> str:
    """Rows as CSV (a header from the first row's keys) or as a JSON list."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(list(rows), indent=1, ensure_ascii=False) + "\n"
    out = io.StringIO()
    if rows:
        # Every text cell quoted: a carriage return inside one would otherwise end the row for a reader.
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        writer.writeheader()
        writer.writerows({k: _inert(v) for k, v in row.items()} for row in rows)
    return out.getvalue()


def _inert(value):
    """A CSV cell a spreadsheet shows rather than runs (numbers stay numbers)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value


def exported_name(row: dict) -> str:
    """The file's name in the export folder: its id first, as file names repeat across class folders; shortened
    (the id and the extension kept) where that makes it longer than a file name may be."""
    name = f"{row['id']}_{row['file_name'] or Path(row['path']).name}"
    if len(name.encode()) <= NAME_MAX:
        return name
    _, dot, ext = name.rpartition(".")
    ext = f".{ext}" if dot and len(ext.encode()) <= 16 else ""
    stem = name[: len(name) - len(ext)]  # holds the id: shortened names stay distinct
    return stem.encode()[: NAME_MAX - len(ext.encode())].decode("utf-8", "ignore") + ext


@dataclass
class FolderExport:
    folder: Path
    manifest: Path
    written: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # catalogued files no longer on disk: not exported


def export_to_folder(rows: Sequence[dict], folder: Path, link: bool = False, fmt: str = "csv",
                     manifest_name: str = "export") -> FolderExport:
    """Copy (or symlink, with `link`) each row's file into `folder` (made if missing), named by `exported_name`,
    and write the rows, with the name each file got, to `folder/<manifest_name>.<fmt>`.

    Every name is checked before anything is written: an existing file of the same name is an ExportError
    (never overwritten), as is a `folder` that is a file. Rows whose source file is gone are left out and
    listed in `missing`."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"{folder} exists and is not a folder")
    manifest = folder / f"{manifest_name}.{fmt}"
    present = [r for r in rows if Path(r["path"]).is_file()]
    missing = [r["path"] for r in rows if not Path(r["path"]).is_file()]
    targets = [folder / exported_name(r) for r in present]
    too_long = [p for p in targets if len(os.fsencode(p.absolute())) >= PATH_MAX]
    if too_long:
        raise ExportError(f"{len(too_long)} file(s) would get a path longer than {PATH_MAX} bytes in {folder} "
                          f"(first: {too_long[0].name}). Nothing was written; choose a folder with a shorter path")
    taken = [p for p in [*targets, manifest] if p.exists() or p.is_symlink()]
    if taken:
        shown = ", ".join(str(p) for p in taken[:3]) + (f" and {len(taken) - 3} more" if len(taken) > 3 else "")
        raise ExportError(f"{len(taken)} file(s) already exist in {folder}: {shown}. Nothing was written; "
                          "choose an empty folder or move them away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {folder}: {exc.strerror or exc}") from exc
    done = FolderExport(folder, manifest, missing=missing)
    for row, target in zip(present, targets, strict=True):
        source = Path(row["path"]).resolve()
        try:
            if link:
                os.symlink(source, target)
            else:
                shutil.copy2(source, target)
        except OSError as exc:
            raise ExportError(f"stopped at {target} after {len(done.written)} file(s): {exc.strerror or exc}") \
                from exc
        done.written.append(target)
    manifest_rows = [{**r, "exported_as": t.name} for r, t in zip(present, targets, strict=True)]
    with open(manifest, "x", encoding="utf-8", newline="") as f:  # "x": fails rather than overwrite
        f.write(to_text(manifest_rows, fmt))
    return done
