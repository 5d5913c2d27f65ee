"""On-disk feature cache keyed by (content hash, backbone, weights checksum): reruns embed only new files."""

from __future__ import annotations

import json
import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np

from imgsearch.models.files import atomic_write, ensure_free_space
from imgsearch.models.identity import BackboneId, IdentityMismatch, backbone_folder

log = logging.getLogger(__name__)

# Free space a shard needs beyond its own size (zip headers, the folder's directory block, rounding).
SHARD_MARGIN_BYTES = 1 << 20


class FeatureCache:
    """Append-only shards of (hashes, vectors), one folder per backbone identity.

    Shards are written whole to a temporary name and renamed, so a crash never leaves a half-written
    shard; a rerun simply re-embeds whatever had not been flushed yet. A full disk is DiskFullError before
    the shard is written (or from atomic_write, which removes its temp file), and the cache stays as it was.
    """

    def __init__(self, root: Path, backbone: BackboneId):
        self.backbone = backbone
        self.dir = backbone_folder(Path(root), backbone)
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "backbone.json"
        if meta.exists():
            problem = backbone.mismatch(BackboneId.from_dict(json.loads(meta.read_text())), f"feature cache {self.dir}")
            if problem:
                raise IdentityMismatch(problem)
        else:
            atomic_write(meta, json.dumps(backbone.as_dict(), indent=2))
        self._vectors: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()
        self.unreadable: list[Path] = []  # damaged shards, skipped (doctor reports them, --repair moves them aside)
        self._load()

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def refresh(self) -> int:
        """Load shards other processes wrote since this cache was opened (the worker and app live long)."""
        before = len(self._vectors)
        self._load()
        return len(self._vectors) - before

    def _load(self) -> None:
        for shard in self._shards():
            if shard.name in self._seen:
                continue
            self._seen.add(shard.name)
            try:
                with np.load(shard, allow_pickle=False) as data:
                    hashes, xb = data["hashes"], data["vectors"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                # A damaged shard costs a re-embed of its images, never a crash or wrong vectors.
                log.warning("ignoring unreadable feature shard %s (%s); its images will be re-embedded", shard, exc)
                self.unreadable.append(shard)
                continue
            if xb.ndim != 2 or xb.shape[1] != self.backbone.dim:
                log.warning("ignoring feature shard %s with shape %s", shard, xb.shape)
                continue
            for h, v in zip(hashes.tolist(), xb, strict=True):
                self._vectors[h] = v

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, content_hash: str) -> bool:
        return content_hash in self._vectors

    def get(self, hashes: list[str]) -> np.ndarray:
        """Vectors for `hashes` in that order, shape (len(hashes), dim); all must be present."""
        if not hashes:
            return np.zeros((0, self.backbone.dim), dtype=np.float32)
        return np.stack([self._vectors[h] for h in hashes]).astype(np.float32, copy=False)

    def add(self, hashes: list[str], xb: np.ndarray) -> None:
        """Persist a batch of new vectors as one shard."""
        if len(hashes) == 0:
            return
        if xb.shape != (len(hashes), self.backbone.dim):
            raise ValueError(f"expected vectors of shape ({len(hashes)}, {self.backbone.dim}), got {xb.shape}")
        keys = np.array(hashes)
        vectors = xb.astype(np.float32)
        ensure_free_space(self.dir, keys.nbytes + vectors.nbytes + SHARD_MARGIN_BYTES,
                          f"add {len(hashes)} vectors to the feature cache")
        name = f"shard-{time.time_ns():020d}-{os.getpid()}.npz"
        atomic_write(self.dir / name, lambda f: np.savez(f, hashes=keys, vectors=vectors))
        self._seen.add(name)
        for h, v in zip(hashes, xb, strict=True):
            self._vectors[h] = v
