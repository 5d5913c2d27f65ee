"""Batched feature extraction: decoder processes feed the forward pass; results land in the feature cache."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from imgsearch.ingest.decode import DEFAULT_MAX_PIXELS, ImageRejected, decode, decode_side
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.quality import decoded_quality
from imgsearch.models.backbones import Backbone
from imgsearch.models.files import bytes_sha256
from imgsearch.models.tags import TagPolicy

Tags = list[tuple[str, float]]  # an image's automatic tags: (ImageNet class name, probability), most probable first

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodeFailure:
    index: int
    path: Path
    reason: str
    message: str


@dataclass
class EmbedResult:
    """Vectors for the inputs that decoded, in input order, and the ones that did not."""

    vectors: np.ndarray  # (n_ok, dim) float32, unit rows
    ok: list[int]  # input positions of the rows of `vectors`
    failures: list[DecodeFailure] = field(default_factory=list)
    n_embedded: int = 0  # how many were actually run through the network (the rest came from the cache)
    # (quality, flags) by input position, for the images decoded here: the flags come from the embedding's decode
    quality: dict[int, tuple[str, str]] = field(default_factory=dict)
    # Automatic tags by input position, for the images run through a backbone with an ImageNet head here (the
    # same forward pass as their vectors); images whose vectors came from the cache have none here.
    tags: dict[int, Tags] = field(default_factory=dict)
    probs: np.ndarray | None = None  # with keep_probs: (n_ok, 1000) class probabilities, rows as `vectors`


CHANGED = "changed"  # skip reason: the file's bytes are no longer those that were scanned and catalogued


class _DecodeDataset(Dataset):
    """Decoding and preprocessing run here, in DataLoader worker processes, beside the forward pass.

    With `hashes`, each file is read once, and its bytes are decoded only if they still have the hash the
    scan catalogued them under: a file rewritten meanwhile must not leave the new picture's vector cached
    under the old content's hash, where every later ingest of the old content would reuse it.

    Each file is decoded once, at `min_side` (see decode.decode), for both the network and the quality flags.
    """

    def __init__(self, paths: Sequence[Path], preprocess: Callable, max_pixels: int,
                 hashes: Sequence[str] | None = None, min_side: int | None = None):
        self.paths = list(paths)
        self.preprocess = preprocess
        self.max_pixels = max_pixels
        self.hashes = list(hashes) if hashes is not None else None
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            data = self.paths[i].read_bytes()
        except OSError as exc:
            return i, None, ("unreadable", f"cannot read the file: {exc.strerror or exc}"), None
        if self.hashes is not None and bytes_sha256(data) != self.hashes[i]:
            return i, None, (CHANGED, "the file changed after it was scanned; ingest its folder again to index the "
                                      "new content"), None
        try:
            decoded = decode(data, self.max_pixels, self.min_side)
            return i, self.preprocess(decoded.image), None, decoded_quality(decoded)
        except ImageRejected as exc:
            return i, None, (exc.reason, exc.message), None


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process decides how to stop (finish the batch,
    # journal, exit). A decoder dying on its own would turn a clean stop into a "worker exited" crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _collate(items):
    ok = [(i, t) for i, t, err, _ in items if err is None]
    failed = [(i, err) for i, t, err, _ in items if err is not None]
    quality = {i: q for i, _, err, q in items if err is None}
    tensors = torch.stack([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], tensors, failed, quality


def embed_paths(
    backbone: Backbone,
    paths: Sequence[Path],
    batch_size: int = 32,
    num_workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_batch: Callable[[list[int], np.ndarray], None] | None = None,
    progress: bool = True,
    desc: str = "embedding",
    bar: tqdm | None = None,
    hashes: Sequence[str] | None = None,
    full_decode: bool = False,
    tag_policy: TagPolicy | None = None,
    keep_probs: bool = False,
) -> EmbedResult:
    """Embed images from disk. `on_batch(positions, vectors)` sees every finished batch (for incremental saves).

    Files are decoded at the backbone's `decode_side` (JPEGs at 1/2..1/8 scale when large), as every query path
    decodes; `full_decode` decodes them at full resolution instead (the benchmarks' before).

    `hashes`: the content hash each file was catalogued under; a file whose bytes differ now is not embedded
    but reported as a failure with reason "changed".

    `bar`: an outer progress bar to advance instead of drawing one (a caller embedding in chunks keeps one
    bar, so images/s and the ETA are for the whole job).

    A backbone with an ImageNet head also tags each image from the same forward pass (`tag_policy`, by default
    models/tags.py's: the top classes above its threshold); `keep_probs` keeps all 1000 probabilities too.
    """
    paths = [Path(p) for p in paths]
    policy = tag_policy or TagPolicy()
    # The names of the head's outputs: set exactly when the backbone has an ImageNet head; None: no tags.
    tag_names = backbone.tag_names if backbone.head is not None else None
    dim = backbone.dim
    if not paths:
        return EmbedResult(np.zeros((0, dim), np.float32), [])
    loader = DataLoader(
        _DecodeDataset(paths, backbone.preprocess, max_pixels, hashes, None if full_decode else decode_side(backbone)),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        worker_init_fn=_ignore_sigint,
        pin_memory=backbone.device.type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )
    out = np.zeros((len(paths), dim), dtype=np.float32)
    done = np.zeros(len(paths), dtype=bool)
    failures: list[DecodeFailure] = []
    quality: dict[int, tuple[str, str]] = {}
    tags: dict[int, Tags] = {}
    probs = np.zeros((len(paths), len(tag_names)), np.float32) if keep_probs and tag_names is not None else None
    own_bar = bar is None
    progress_bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, dynamic_ncols=True) \
        if bar is None else bar
    try:
        for positions, batch, failed, batch_quality in loader:
            quality.update(batch_quality)
            for i, (reason, message) in failed:
                failures.append(DecodeFailure(i, paths[i], reason, message))
                log.warning("skipped %s: %s (%s)", paths[i], message, reason)
            if batch is not None:
                if tag_names is not None:
                    xb, pb = backbone.embed_and_classify(batch)
                    assert pb is not None  # a backbone with a head classifies
                    tags.update(zip(positions, policy.select(pb, tag_names), strict=True))
                    if probs is not None:
                        probs[positions] = pb
                else:
                    xb = backbone.embed_batch(batch)
                out[positions] = xb
                done[positions] = True
                if on_batch is not None:
                    on_batch(positions, xb)
            progress_bar.update(len(positions) + len(failed))
    finally:
        if own_bar:
            progress_bar.close()
    ok = np.flatnonzero(done).tolist()
    return EmbedResult(out[ok], ok, sorted(failures, key=lambda f: f.index), n_embedded=len(ok),
                       quality={i: quality[i] for i in ok if i in quality}, tags=tags,
                       probs=None if probs is None else probs[ok])


def embed_with_cache(
    backbone: Backbone,
    paths: Sequence[Path],
    hashes: Sequence[str],
    cache: FeatureCache,
    batch_size: int = 32,
    num_workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    flush_every: int = 512,
    progress: bool = True,
    bar: tqdm | None = None,
    full_decode: bool = False,
    tag_policy: TagPolicy | None = None,
) -> EmbedResult:
    """Like `embed_paths` for (path, content hash) pairs, but only files whose hash is not cached are decoded.

    New vectors are flushed to the cache every `flush_every` images, so an interrupted run keeps its work.
    """
    if cache.backbone.name != backbone.name or cache.backbone.weights_sha256 != backbone.weights_sha256:
        raise ValueError(f"cache is for {cache.backbone}, backbone is {backbone.identity}")
    hashes = list(hashes)
    if any(h not in cache for h in hashes):
        cache.refresh()  # another process may have embedded them meanwhile
    todo = [i for i, h in enumerate(hashes) if h not in cache]
    pending_h: list[str] = []
    pending_x: list[np.ndarray] = []

    def flush() -> None:
        if pending_h:
            cache.add(list(pending_h), np.concatenate(pending_x))
            pending_h.clear()
            pending_x.clear()

    def on_batch(positions: list[int], xb: np.ndarray) -> None:
        pending_h.extend(hashes[todo[p]] for p in positions)
        pending_x.append(xb)
        if len(pending_h) >= flush_every:
            flush()

    if todo:
        log.debug("%d of %d images need embedding (%d cached)", len(todo), len(hashes), len(hashes) - len(todo))
    fresh = embed_paths(
        backbone,
        [paths[i] for i in todo],
        batch_size,
        num_workers,
        max_pixels,
        on_batch=on_batch,
        progress=progress,
        bar=bar,
        hashes=[hashes[i] for i in todo],
        full_decode=full_decode,
        tag_policy=tag_policy,
    )
    flush()
    failed = {todo[f.index] for f in fresh.failures}
    ok = [i for i in range(len(hashes)) if i not in failed]
    failures = [DecodeFailure(todo[f.index], f.path, f.reason, f.message) for f in fresh.failures]
    quality = {todo[p]: q for p, q in fresh.quality.items()}
    tags = {todo[p]: t for p, t in fresh.tags.items()}
    return EmbedResult(cache.get([hashes[i] for i in ok]), ok, failures, n_embedded=fresh.n_embedded, quality=quality,
                       tags=tags)
