"""Embedding pipeline: parallel decoding gives the same vectors, failures are reported, cache skips work."""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.ingest.embed import embed_paths, embed_with_cache
from imgsearch.ingest.feature_cache import FeatureCache
from imgsearch.ingest.scan import scan_folder


# With lite0 this also checks the real network's preprocessing pickles into the decoder processes and that its
# batched forward pass matches one image at a time.
@pytest.mark.parametrize("which", [pytest.param("backbone", id="tiny"), pytest.param("lite0", marks=pytest.mark.slow)])
def test_parallel_and_serial_pipelines_agree(tiny_dataset, which, request):
    bb = request.getfixturevalue(which)
    paths = [im.path for im in scan_folder(tiny_dataset).images][:8]
    serial = embed_paths(bb, paths, batch_size=1, num_workers=0, progress=False)
    parallel = embed_paths(bb, paths, batch_size=4, num_workers=2, progress=False)
    assert serial.ok == parallel.ok == list(range(8))
    assert serial.vectors.shape == (8, bb.dim)
    np.testing.assert_allclose(serial.vectors, parallel.vectors, atol=1e-4)


def test_decode_failures_are_reported_and_the_rest_embedded(tiny_dataset, backbone):
    paths = [im.path for im in scan_folder(tiny_dataset).images][:4]
    good = paths[1].read_bytes()
    paths[1].write_bytes(good[: len(good) // 3])  # truncated after the scan
    result = embed_paths(backbone, paths, batch_size=2, num_workers=1, progress=False)
    assert result.ok == [0, 2, 3]
    assert [(f.index, f.reason) for f in result.failures] == [(1, "truncated")]
    assert result.vectors.shape == (3, backbone.dim)


def test_cache_rerun_embeds_nothing(tiny_dataset, backbone, tmp_path):
    images = scan_folder(tiny_dataset).images
    paths, hashes = [im.path for im in images], [im.content_hash for im in images]
    cache = FeatureCache(tmp_path / "features", backbone.identity)
    first = embed_with_cache(backbone, paths, hashes, cache, batch_size=4, num_workers=0, flush_every=5,
                             progress=False)
    assert first.n_embedded == len(paths)
    reopened = FeatureCache(tmp_path / "features", backbone.identity)
    assert len(reopened) == len(paths)
    second = embed_with_cache(backbone, paths, hashes, reopened, num_workers=0, progress=False)
    assert second.n_embedded == 0
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_damaged_cache_shard_is_ignored_and_reembedded(tiny_dataset, backbone, tmp_path):
    images = scan_folder(tiny_dataset).images[:3]
    paths, hashes = [im.path for im in images], [im.content_hash for im in images]
    cache = FeatureCache(tmp_path / "f", backbone.identity)
    embed_with_cache(backbone, paths, hashes, cache, num_workers=0, progress=False)
    shard = next(cache.dir.glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:100])
    again = embed_with_cache(
        backbone, paths, hashes, FeatureCache(tmp_path / "f", backbone.identity), num_workers=0, progress=False
    )
    assert again.n_embedded == 3
