"""A Qdrant Edge store's own files beside its shard: `store.json` (format and backbone) and `version` (the write
counter readers poll)."""

from __future__ import annotations

import json
from pathlib import Path

from imgsearch.models.files import atomic_write
from imgsearch.search.index import BackboneId, StoreDamagedError, StoreMismatchError, require_backbone

META_NAME = "store.json"
VERSION_NAME = "version"
SHARD_DIR = "shard"
FORMAT = "imgsearch-qdrant-edge-1"


def read_version(folder: Path) -> int:
    """A store's write counter; changes whenever any process writes. Read without the lock."""
    try:
        return int((folder / VERSION_NAME).read_text())
    except (OSError, ValueError):
        return 0


def check_meta(folder: Path, info: BackboneId) -> None:
    """StoreDamagedError for an unreadable store.json, StoreMismatchError for another format or backbone."""
    try:
        meta = json.loads((folder / META_NAME).read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise StoreDamagedError("Qdrant Edge store", folder, folder / META_NAME, f"unreadable ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise StoreMismatchError(f"{folder} is not an imgsearch Qdrant Edge store ({meta.get('format')})")
    require_backbone(info, BackboneId.from_dict(meta), f"Qdrant Edge store {folder}")


def write_store_files(folder: Path, info: BackboneId) -> None:
    """The files of a new store, once its shard exists: the counter at 0, then store.json, after which the store
    exists for every process."""
    atomic_write(folder / VERSION_NAME, "0")
    meta = {"format": FORMAT, **info.as_dict(), "distance": "cosine"}
    atomic_write(folder / META_NAME, json.dumps(meta, indent=1))
